"""The records of the data-subject rights (GDPR Arts. 15-22) that cross the store's
boundary: what a restriction, objection, contest or rectification did, an erasure's and a
retention run's reports (with the snapshots they rewrote), and the subject export (Art. 15,
Art. 20) with everything the store holds about one person.

Pydantic models like every record (``case_records.py``, ``audit_records.py``...), so the HTTP
service and its client share one definition and the OpenAPI document describes them.
"""

from __future__ import annotations

from typing import Any, Literal

from hilt.pipelines.store.audit_records import AuditEvent
from hilt.pipelines.store.case_records import Decision, Prediction
from hilt.pipelines.store.recipient_records import ExportedRecipient, ExportedRecipientNotice
from hilt.pipelines.store.record_base import Record


class SubjectAction(Record):
    """What a subject-rights operation did (no personal data: the pseudonym and ids)."""

    action: str
    subject_ref: str
    #: The audit event that records it.
    seq: int
    cases: list[str]


class SnapshotRewrite(Record):
    """A training snapshot that held removed subjects' rows, and what became of it."""

    name: str
    sha256: str
    rows_removed: int
    #: The regenerated file without those rows (None: nothing was left, the file is gone).
    new_name: str | None
    new_sha256: str | None
    #: Training runs (``run.trained`` events) that used the old file.
    training_runs: list[str]


class ErasureReport(Record):
    subject_ref: str
    seq: int
    cases: list[str]
    key_destroyed: bool
    snapshots: list[SnapshotRewrite]


class RetentionReport(Record):
    """What `hilt retention apply` removed; ``seq`` is None when nothing was due."""

    seq: int | None
    as_of: str
    cases_removed: int
    subjects_removed: int
    predictions_purged: int
    decisions_purged: int
    #: The audit log's oldest rows purged through this seq (the new anchor), if any.
    audit_purged_through: int | None
    snapshots: list[SnapshotRewrite]


class ExportedRectification(Record):
    column: str
    value: Any
    seq: int
    at: str
    by: str


class ExportedDecision(Record):
    decision: Decision
    #: The prediction the reviewer decided on, with its explanation (per-feature
    #: contributions), as stored at decision time.
    prediction: Prediction | None


class ExportedCase(Record):
    case_id: str
    created_at: str
    ingest_seq: int
    #: The values as received (features and personal data), before any rectification.
    received: dict[str, Any]
    #: The values in force: received, with rectifications applied.
    current: dict[str, Any]
    seed_label: str | None
    rectifications: list[ExportedRectification]
    predictions: list[Prediction]
    decisions: list[ExportedDecision]
    contests: list[int]
    data_removed: bool
    #: The outcome recorded for the case (`hilt outcomes`, issue 14), if any.
    outcome: ExportedOutcome | None = None


class ExportedOutcome(Record):
    outcome: str
    observed_at: str
    #: The audit seq of the batch that recorded it.
    batch_seq: int


class ExportedSnapshot(Record):
    name: str
    sha256: str
    as_of_seq: int
    created_at: str
    #: The subject's rows in the snapshot file, as the model was trained on them.
    rows: list[dict[str, Any]]


class ExportedRun(Record):
    """A training run whose snapshot held the subject's data, from its audit event."""

    run_id: str
    seq: int
    at: str
    snapshot: str
    snapshot_sha256: str
    model_sha256: str | None


class ExportedRestriction(Record):
    kind: str
    since_seq: int
    at: str
    lifted_seq: int | None


class SubjectExport(Record):
    """Everything hilt holds about one data subject (GDPR Arts. 15, 20).

    The JSON schema of this document is published as docs/subject-export.schema.json.
    """

    format: Literal["hilt-subject-export/1"] = "hilt-subject-export/1"
    use_case: str
    exported_at: str
    subject_ref: str
    external_subject_id: str
    restrictions: list[ExportedRestriction]
    cases: list[ExportedCase]
    snapshots: list[ExportedSnapshot]
    training_runs: list[ExportedRun]
    #: Audit events about the subject or their cases (sealed values stay sealed here; the
    #: opened values are in ``cases``).
    audit_events: list[AuditEvent]
    #: To whom the subject's data was disclosed (GDPR Art. 19, second sentence) ...
    recipients: list[ExportedRecipient]
    #: ... and, for each rectification, erasure or restriction, whether and when each
    #: recipient was told of it.
    recipient_notices: list[ExportedRecipientNotice]
