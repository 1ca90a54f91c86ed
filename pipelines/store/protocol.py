"""The one interface of the store, in both modes (embedded and HTTP service).

Widgets and notebooks depend on this Protocol, never on DuckDB; ``open_store`` returns an
object that satisfies it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import polars as pl

from hilt.pipelines.store.records import (
    AuditEvent,
    AuditHead,
    AuditPage,
    AuditQuery,
    CaseRecord,
    CheckpointRecord,
    ConflictRecord,
    Decision,
    DecisionRequest,
    ErasureReport,
    FeatureRange,
    GoldResult,
    IngestResult,
    LeasedCase,
    OversightReport,
    Prediction,
    QueueStatus,
    RetentionReport,
    SnapshotRecord,
    SubjectAction,
    SubjectExport,
    SystemState,
    TokenGrant,
    User,
    VerifyReport,
)


@runtime_checkable
class Store(Protocol):
    """A feedback store opened on behalf of one user; roles are enforced by the store."""

    def whoami(self) -> User: ...

    def ingest_cases(self, frame: pl.DataFrame) -> IngestResult:
        """Add cases (id, subject id, columns of hilt.toml, optional seed label)."""
        ...

    def add_predictions(self, model_version: str, frame: pl.DataFrame) -> IngestResult:
        """Add predictions (case_id, score, label, explanation) of one model version."""
        ...

    def record_decision(self, request: DecisionRequest) -> Decision: ...

    def decisions(
        self, after_seq: int = 0, limit: int = 1000, final_only: bool = False
    ) -> list[Decision]: ...

    def next_case(self, strategy: str | None = None) -> LeasedCase | None:
        """Lease the next case to review (the caller's own live lease first)."""
        ...

    def queue_status(self) -> QueueStatus: ...

    def record_event(
        self, action: str, object_type: str, object_id: str, payload: dict[str, Any]
    ) -> int:
        """Append a run or model event (``run.*``, ``model.*``) to the audit log; its seq."""
        ...

    def contest(self, case_id: str) -> int:
        """The case's subject asked for human review: re-queue it first. Returns the seq."""
        ...

    def feature_profile(self) -> dict[str, FeatureRange]: ...

    def snapshot(self, as_of_seq: int | None = None) -> SnapshotRecord:
        """Export the training view as of an audit seq (default: now) to Parquet."""
        ...

    def system_state(self) -> SystemState: ...

    def halt(self, reason: str) -> SystemState:
        """A lead stops scoring and retraining at once."""
        ...

    def resume(self) -> SystemState:
        """A second lead (not the one who halted) resumes."""
        ...

    def case_frame(self, case_ids: list[str] | None = None) -> pl.DataFrame:
        """Cases with every configured column and the seed label (data-scientist, admin)."""
        ...

    def get_case(self, case_id: str) -> CaseRecord: ...

    def counts(self) -> dict[str, int]: ...

    def audit_head(self) -> AuditHead: ...

    def audit_events(self, after_seq: int = 0, limit: int = 1000) -> list[AuditEvent]: ...

    def verify(self, public_key: str | None = None) -> VerifyReport: ...

    def checkpoint(self) -> CheckpointRecord: ...

    def add_user(self, name: str, role: str) -> TokenGrant: ...

    def revoke_tokens(self, name: str) -> int:
        """Revoke every active token of ``name``; how many were revoked."""
        ...

    # Data-subject rights (role dpo). Subjects are named by their external id, which the
    # store never keeps in the clear; every operation is audited without personal data.
    def subject_export(self, external_id: str) -> SubjectExport:
        """Everything held about the subject (GDPR Arts. 15, 20)."""
        ...

    def subject_rectify(
        self, external_id: str, column: str, value: str | None, case_id: str | None = None
    ) -> SubjectAction:
        """A superseding value for a column of the subject's cases (Art. 16)."""
        ...

    def subject_restrict(self, external_id: str, kind: str, lift: bool = False) -> SubjectAction:
        """kind "restrict" (Art. 18) or "object" (Art. 21); lift=True ends it."""
        ...

    def subject_contest(self, external_id: str) -> SubjectAction:
        """Human review of the subject's latest decision, by another reviewer (Art. 22)."""
        ...

    def subject_erase(self, external_id: str) -> ErasureReport:
        """Erase the subject (Art. 17): data deleted, key destroyed, snapshots regenerated."""
        ...

    def retention_apply(self) -> RetentionReport:
        """Remove what has passed its retention period (idempotent)."""
        ...

    def close(self) -> None: ...

    def audit_search(self, query: AuditQuery) -> AuditPage:
        """Events matching a filter (actor, action, object, model version, time, seqs), one
        page of them, with counts per action and per day; read-only."""
        ...

    def get_decision(self, decision_id: str) -> Decision: ...

    def get_prediction(self, prediction_id: int) -> Prediction:
        """A stored prediction by id (score, label, contributions), for lineage."""

    # Oversight (issue 6): gold cases, the oversight report, adjudication.
    def gold_candidates(self, limit: int = 1000) -> list[str]:
        """Holdout cases that could become gold cases, in an order fixed by the salt."""
        ...

    def add_gold(self, model_version: str, frame: pl.DataFrame) -> GoldResult:
        """Predictions for holdout cases, which become gold cases (known answers)."""
        ...

    def oversight_report(self) -> OversightReport:
        """Queue health, reviewer statistics, agreement, override reasons, alerts."""
        ...

    def conflicts(self) -> list[ConflictRecord]:
        """Double-review cases whose two reviewers disagree (the adjudication queue)."""
        ...

    def adjudicate(
        self,
        case_id: str,
        final_label: str,
        comment: str | None = None,
        request_id: str | None = None,
    ) -> Decision:
        """A lead settles a conflict; the adjudication is the case's final label."""
        ...
