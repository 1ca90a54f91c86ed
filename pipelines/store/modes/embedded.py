"""The embedded mode: short-lived DuckDB connections under a cross-process lock.

Right for one data scientist or one scheduler run. Each call takes the lock, opens the file
(~20 ms), runs one StoreCore operation in one transaction, and closes the file again, so
that other processes can take their turn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import duckdb
import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import StoreError
from hilt.pipelines.store.core import Clock, StoreCore, system_clock
from hilt.pipelines.store.modes import locking
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
from hilt.pipelines.workspace import Workspace

T = TypeVar("T")

#: No extension is ever downloaded at run time.
DUCKDB_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


def connect(workspace: Workspace, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(workspace.db_path), read_only=read_only, config=DUCKDB_CONFIG)
    except duckdb.IOException as e:
        raise StoreError(f"cannot open the store at {workspace.db_path}: {e}") from e


class EmbeddedStore:
    """A Store on a workspace folder, acting as ``user`` (checked against the users table)."""

    def __init__(
        self,
        workspace: Workspace,
        settings: Settings,
        actor: User,
        clock: Clock = system_clock,
        lock_timeout_s: float | None = None,
    ) -> None:
        self.workspace = workspace
        self.settings = settings
        self.actor = actor
        self.clock = clock
        self.lock_timeout_s = lock_timeout_s

    @classmethod
    def for_user(
        cls,
        workspace: Workspace,
        settings: Settings,
        user: str,
        clock: Clock = system_clock,
    ) -> EmbeddedStore:
        probe = cls(workspace, settings, User(name=user, roles=[]), clock)

        def identify(core: StoreCore) -> User:
            core.check_schema_version()
            return StoreCore.lookup_user(core.con, user)

        actor = probe._run(identify)
        return cls(workspace, settings, actor, clock)

    def _run(self, op: Callable[[StoreCore], T]) -> T:
        with locking.exclusive(
            self.workspace.lock_path, self.workspace.service_file, self.lock_timeout_s
        ):
            con = connect(self.workspace)
            keys = self.workspace.key_ring()
            try:
                return op(
                    StoreCore(con, self.settings, self.workspace, self.actor, self.clock, keys=keys)
                )
            finally:
                keys.close()
                con.close()

    def whoami(self) -> User:
        return self.actor

    def ingest_cases(self, frame: pl.DataFrame) -> IngestResult:
        return self._run(lambda c: c.ingest_cases(frame))

    def add_predictions(self, model_version: str, frame: pl.DataFrame) -> IngestResult:
        return self._run(lambda c: c.add_predictions(model_version, frame))

    def record_decision(self, request: DecisionRequest) -> Decision:
        return self._run(lambda c: c.record_decision(request))

    def decisions(
        self, after_seq: int = 0, limit: int = 1000, final_only: bool = False
    ) -> list[Decision]:
        return self._run(lambda c: c.decisions(after_seq, limit, final_only))

    def next_case(self, strategy: str | None = None) -> LeasedCase | None:
        return self._run(lambda c: c.next_case(strategy))

    def queue_status(self) -> QueueStatus:
        return self._run(lambda c: c.queue_status())

    def record_event(
        self, action: str, object_type: str, object_id: str, payload: dict[str, Any]
    ) -> int:
        return self._run(lambda c: c.record_event(action, object_type, object_id, payload))

    def contest(self, case_id: str) -> int:
        return self._run(lambda c: c.contest(case_id))

    def feature_profile(self) -> dict[str, FeatureRange]:
        return self._run(lambda c: c.feature_profile())

    def snapshot(self, as_of_seq: int | None = None) -> SnapshotRecord:
        return self._run(lambda c: c.snapshot(as_of_seq))

    def system_state(self) -> SystemState:
        return self._run(lambda c: c.system_state())

    def halt(self, reason: str) -> SystemState:
        return self._run(lambda c: c.halt(reason))

    def resume(self) -> SystemState:
        return self._run(lambda c: c.resume())

    def case_frame(self, case_ids: list[str] | None = None) -> pl.DataFrame:
        return self._run(lambda c: c.case_frame(case_ids))

    def get_case(self, case_id: str) -> CaseRecord:
        return self._run(lambda c: c.get_case(case_id))

    def counts(self) -> dict[str, int]:
        return self._run(lambda c: c.counts())

    def audit_head(self) -> AuditHead:
        return self._run(lambda c: c.audit_head())

    def audit_events(self, after_seq: int = 0, limit: int = 1000) -> list[AuditEvent]:
        return self._run(lambda c: c.audit_events(after_seq, limit))

    def verify(self, public_key: str | None = None) -> VerifyReport:
        return self._run(lambda c: c.verify(public_key))

    def checkpoint(self) -> CheckpointRecord:
        return self._run(lambda c: c.checkpoint())

    def add_user(self, name: str, role: str) -> TokenGrant:
        return self._run(lambda c: c.add_user(name, role))

    def revoke_tokens(self, name: str) -> int:
        return self._run(lambda c: c.revoke_tokens(name))

    def subject_export(self, external_id: str) -> SubjectExport:
        return self._run(lambda c: c.subject_export(external_id))

    def subject_rectify(
        self, external_id: str, column: str, value: str | None, case_id: str | None = None
    ) -> SubjectAction:
        return self._run(lambda c: c.subject_rectify(external_id, column, value, case_id))

    def subject_restrict(self, external_id: str, kind: str, lift: bool = False) -> SubjectAction:
        return self._run(lambda c: c.subject_restrict(external_id, kind, lift))

    def subject_contest(self, external_id: str) -> SubjectAction:
        return self._run(lambda c: c.subject_contest(external_id))

    def subject_erase(self, external_id: str) -> ErasureReport:
        return self._run(lambda c: c.subject_erase(external_id))

    def retention_apply(self) -> RetentionReport:
        return self._run(lambda c: c.retention_apply())

    def close(self) -> None:
        """Nothing stays open between calls."""

    def audit_search(self, query: AuditQuery) -> AuditPage:
        return self._run(lambda c: c.audit_search(query))

    def get_decision(self, decision_id: str) -> Decision:
        return self._run(lambda c: c.get_decision(decision_id))

    def get_prediction(self, prediction_id: int) -> Prediction:
        return self._run(lambda c: c.get_prediction(prediction_id))

    def gold_candidates(self, limit: int = 1000) -> list[str]:
        return self._run(lambda c: c.gold_candidates(limit))

    def add_gold(self, model_version: str, frame: pl.DataFrame) -> GoldResult:
        return self._run(lambda c: c.add_gold(model_version, frame))

    def oversight_report(self) -> OversightReport:
        return self._run(lambda c: c.oversight_report())

    def conflicts(self) -> list[ConflictRecord]:
        return self._run(lambda c: c.conflicts())

    def adjudicate(
        self,
        case_id: str,
        final_label: str,
        comment: str | None = None,
        request_id: str | None = None,
    ) -> Decision:
        return self._run(lambda c: c.adjudicate(case_id, final_label, comment, request_id))
