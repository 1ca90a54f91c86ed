"""Cases and what is decided about them, as they cross the store's boundary: a batch
ingested, a case with its predictions and the reviewers' decisions, a decision as asked
and as recorded, the review queue and its leases, and the training snapshot of the cases.

They are pydantic models so that the HTTP service and its client share one definition and
the OpenAPI document describes them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from hilt.pipelines.store.record_base import Record

#: accept / override end a review (a final decision); flag asks for a second opinion; skip
#: hands the case back; undo compensates an earlier decision (history is never rewritten);
#: blind records the reviewer's own judgement before the model's output is shown.
DecisionAction = Literal["accept", "override", "flag", "skip", "undo", "blind"]


FINAL_ACTIONS = ("accept", "override")


class IngestResult(Record):
    kind: Literal["cases", "predictions", "shadow-predictions"]
    rows: int
    #: The audit event that records the batch.
    seq: int
    #: sha256 of the batch as written (see ``batch_digest``).
    digest: str
    #: A partial ingest (cases only): how many rows were rejected, which (1-based row numbers
    #: of the file) and why (column and problem, never a value), and the sha256 of the
    #: rejects file ``tables.rejects_csv`` makes of them (audited with the batch).
    rejected: int = 0
    rejected_rows: list[int] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    rejects_sha256: str | None = None


class DecisionRequest(Record):
    case_id: str = Field(min_length=1, max_length=128)
    action: DecisionAction
    #: override / blind: the class the reviewer chose. accept: omitted (the model's label).
    final_label: str | None = None
    reason_code: str | None = None
    comment: str | None = None
    #: Ignored: the store measures the time on item itself, from the reviewer's lease (kept
    #: so that clients written before can still send it).
    time_on_item_ms: int = Field(default=0, ge=0, le=86_400_000)
    #: Ignored: the store decides whether the model's output was before the reviewer (not
    #: for a blind judgement or a case without a prediction; under blind-first review, only
    #: after the reviewer's own blind judgement). Kept so that older clients may send it.
    model_shown: bool = True
    #: The prediction the decision is about; default: the case's latest prediction.
    prediction_id: int | None = None
    #: Client-chosen idempotency key: a retried request with the same key is recorded once.
    request_id: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[^\x00\n\r]+$"
    )
    #: For undo: the decision_id it compensates.
    undo_of: str | None = Field(default=None, max_length=64)
    #: sha256 of the explanation fragment the reviewer saw, and the presentation context
    #: it was rendered with (``hilt.widgets.contracts.explanation``); both or neither. The store
    #: re-renders it from the stored prediction and refuses a hash that does not match.
    explanation_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    explanation_context: dict[str, Any] | None = None


class Decision(Record):
    decision_id: str
    request_id: str | None
    case_id: str
    prediction_id: int | None
    model_version: str | None
    reviewer: str
    reviewer_role: str
    action: str
    predicted_label: str | None
    final_label: str | None
    reason_code: str | None
    #: The reviewer's comment, opened with the subject's key (None once shredded).
    comment: str | None
    time_on_item_ms: int
    model_shown: bool
    undo_of: str | None = None
    created_at: str
    seq: int
    #: The comment as stored and audited: sealed with the subject's key (``enc:v1:…``).
    comment_sealed: str | None = None
    #: sha256 of the explanation the reviewer saw (None: none shown, or recorded before
    #: explanations were hashed); its context is in the decision's audit event.
    explanation_sha256: str | None = None


class Prediction(Record):
    prediction_id: int
    case_id: str
    model_version: str
    score: float
    label: str
    #: Signed per-feature contributions to the score (feature → contribution).
    explanation: dict[str, float]
    created_at: str
    batch_seq: int


class CaseRecord(Record):
    case_id: str
    subject_ref: str
    ingest_seq: int
    created_at: str
    #: Feature values, not personal data.
    features: dict[str, Any]
    #: Personal-data values; only those the caller's role may see (see Store.get_case).
    personal: dict[str, Any]
    seed_label: str | None
    predictions: list[Prediction]
    decisions: list[Decision]
    #: The case's data was erased (Art. 17) or passed retention; only its record remains.
    data_removed: bool = False


class QueueStatus(Record):
    """The review queue's counts: waiting (not leased), leased, final decisions today."""

    waiting: int
    leased: int
    done_today: int
    done_today_by_me: int


class LeasedCase(Record):
    """A case leased to one reviewer until ``lease_expires_at``; nobody else gets it meanwhile."""

    case: CaseRecord
    lease_expires_at: str
    #: The subject asked for human review (GDPR Art. 22): served first.
    contested: bool
    #: Flagged by another reviewer for a second opinion.
    second_opinion: bool
    #: This reviewer's blind judgement on the case, if recorded (blind-first mode).
    blind_label: str | None
    #: The queue's counts right after this lease (the panel's progress line needs no
    #: second round trip); None from an older service.
    queue: QueueStatus | None = None


class DecidedNext(Record):
    """A decision and the lease that followed it, written in one transaction
    (``ops/decide_next.decide_and_next``): what the review panel needs after a click."""

    decision: Decision
    #: The reviewer's next case (their own live lease first, then the queue), or None when
    #: nothing waits for them.
    leased: LeasedCase | None


class FeatureRange(Record):
    low: float | None = None
    high: float | None = None
    levels: list[str] | None = None


class SnapshotRecord(Record):
    """A training snapshot: the training view as of an audit seq, as a Parquet file."""

    name: str
    path: str
    sha256: str
    as_of_seq: int
    #: The audit event that records the snapshot.
    seq: int
    rows: int
    train_rows: int
    holdout_rows: int
    #: Training rows by label source: original, reviewer-accepted, reviewer-corrected.
    label_sources: dict[str, int]
    #: Reviewer-accepted labels left out by the cap (training.max_accepted_share).
    accepted_dropped: int
