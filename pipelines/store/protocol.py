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
    Decision,
    DecisionRequest,
    FeatureRange,
    IngestResult,
    LeasedCase,
    Prediction,
    QueueStatus,
    SnapshotRecord,
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

    def close(self) -> None: ...

    def audit_search(self, query: AuditQuery) -> AuditPage:
        """Events matching a filter (actor, action, object, model version, time, seqs), one
        page of them, with counts per action and per day; read-only."""
        ...

    def get_decision(self, decision_id: str) -> Decision: ...

    def get_prediction(self, prediction_id: int) -> Prediction:
        """A stored prediction by id (score, label, contributions), for lineage."""
        ...
