"""The HTTP client of the store service: the same methods as the embedded store.

Errors come back as the same exception classes (the service sends their kind), so code
written against ``Store`` behaves the same in both modes.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import polars as pl
from pydantic import BaseModel, TypeAdapter

from hilt.pipelines.errors import ERROR_KINDS, HiltError, StoreError
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

M = TypeVar("M", bound=BaseModel)
ON_BEHALF_HEADER = "X-Hilt-On-Behalf-Of"
_DECISIONS = TypeAdapter(list[Decision])
_EVENTS = TypeAdapter(list[AuditEvent])
_PROFILE = TypeAdapter(dict[str, FeatureRange])
_CONFLICTS = TypeAdapter(list[ConflictRecord])


def _json_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-safe dicts; NaN/inf become strings so the service can name them."""
    rows = frame.to_dicts()
    for row in rows:
        for k, v in row.items():
            if isinstance(v, float) and not math.isfinite(v):
                row[k] = str(v)
    return rows


class StoreClient:
    """A Store backed by the store service at ``url``, acting as the owner of ``token``."""

    def __init__(
        self,
        url: str,
        token: str,
        timeout_s: float = 60.0,
        on_behalf_of: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"}
        if on_behalf_of is not None:
            # Only a gateway token (the dashboard server) may act for a named user.
            headers[ON_BEHALF_HEADER] = on_behalf_of
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise StoreError(
                f"cannot reach the store service at {self.url} ({type(e).__name__})"
            ) from None
        if response.status_code >= 400:
            try:
                body = response.json()
                kind, detail = str(body.get("error", "error")), str(body.get("detail", ""))
            except ValueError:
                kind, detail = "error", response.text[:200]
            cls = ERROR_KINDS.get(kind, HiltError)
            raise cls(detail or f"HTTP {response.status_code}")
        return response.json()

    def _model(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate(self._request(method, path, **kwargs))

    def whoami(self) -> User:
        return self._model(User, "GET", "/v1/me")

    def ingest_cases(self, frame: pl.DataFrame) -> IngestResult:
        return self._model(IngestResult, "POST", "/v1/cases", json={"rows": _json_rows(frame)})

    def add_predictions(self, model_version: str, frame: pl.DataFrame) -> IngestResult:
        body = {"model_version": model_version, "rows": _json_rows(frame)}
        return self._model(IngestResult, "POST", "/v1/predictions", json=body)

    def record_decision(self, request: DecisionRequest) -> Decision:
        return self._model(
            Decision, "POST", "/v1/decisions", json=request.model_dump(exclude_none=True)
        )

    def decisions(
        self, after_seq: int = 0, limit: int = 1000, final_only: bool = False
    ) -> list[Decision]:
        params = {"after_seq": after_seq, "limit": limit, "final_only": final_only}
        return _DECISIONS.validate_python(self._request("GET", "/v1/decisions", params=params))

    def next_case(self, strategy: str | None = None) -> LeasedCase | None:
        params = {"strategy": strategy} if strategy else {}
        data = self._request("POST", "/v1/queue/next", params=params)
        return None if data is None else LeasedCase.model_validate(data)

    def queue_status(self) -> QueueStatus:
        return self._model(QueueStatus, "GET", "/v1/queue/status")

    def record_event(
        self, action: str, object_type: str, object_id: str, payload: dict[str, Any]
    ) -> int:
        body = {
            "action": action,
            "object_type": object_type,
            "object_id": object_id,
            "payload": payload,
        }
        return int(self._request("POST", "/v1/events", json=body))

    def contest(self, case_id: str) -> int:
        return int(self._request("POST", f"/v1/cases/{quote(case_id, safe='')}/contest"))

    def feature_profile(self) -> dict[str, FeatureRange]:
        return _PROFILE.validate_python(self._request("GET", "/v1/feature-profile"))

    def snapshot(self, as_of_seq: int | None = None) -> SnapshotRecord:
        params = {"as_of_seq": as_of_seq} if as_of_seq is not None else {}
        return self._model(SnapshotRecord, "POST", "/v1/snapshots", params=params)

    def system_state(self) -> SystemState:
        return self._model(SystemState, "GET", "/v1/system")

    def halt(self, reason: str) -> SystemState:
        return self._model(SystemState, "POST", "/v1/system/halt", json={"reason": reason})

    def resume(self) -> SystemState:
        return self._model(SystemState, "POST", "/v1/system/resume")

    def case_frame(self, case_ids: list[str] | None = None) -> pl.DataFrame:
        body = {"case_ids": case_ids}
        data = self._request("POST", "/v1/case-frame", json=body)
        return pl.DataFrame(data["rows"], schema=data["columns"], orient="row")

    def get_case(self, case_id: str) -> CaseRecord:
        return self._model(CaseRecord, "GET", f"/v1/cases/{quote(case_id, safe='')}")

    def counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self._request("GET", "/v1/counts").items()}

    def audit_head(self) -> AuditHead:
        return self._model(AuditHead, "GET", "/v1/audit/head")

    def audit_events(self, after_seq: int = 0, limit: int = 1000) -> list[AuditEvent]:
        data = self._request(
            "GET", "/v1/audit/events", params={"after_seq": after_seq, "limit": limit}
        )
        return _EVENTS.validate_python(data)

    def verify(self, public_key: str | None = None) -> VerifyReport:
        params = {"public_key": public_key} if public_key else {}
        return self._model(VerifyReport, "GET", "/v1/audit/verify", params=params)

    def checkpoint(self) -> CheckpointRecord:
        return self._model(CheckpointRecord, "POST", "/v1/audit/checkpoint")

    def add_user(self, name: str, role: str) -> TokenGrant:
        return self._model(TokenGrant, "POST", "/v1/users", json={"name": name, "role": role})

    def revoke_tokens(self, name: str) -> int:
        return int(self._request("POST", f"/v1/users/{quote(name, safe='')}/revoke-tokens"))

    # Subject ids travel in request bodies, never in URLs (which proxies log).
    def subject_export(self, external_id: str) -> SubjectExport:
        return self._model(
            SubjectExport, "POST", "/v1/subjects/export", json={"subject_id": external_id}
        )

    def subject_rectify(
        self, external_id: str, column: str, value: str | None, case_id: str | None = None
    ) -> SubjectAction:
        body = {"subject_id": external_id, "column": column, "value": value, "case_id": case_id}
        return self._model(SubjectAction, "POST", "/v1/subjects/rectify", json=body)

    def subject_restrict(self, external_id: str, kind: str, lift: bool = False) -> SubjectAction:
        body = {"subject_id": external_id, "kind": kind, "lift": lift}
        return self._model(SubjectAction, "POST", "/v1/subjects/restrict", json=body)

    def subject_contest(self, external_id: str) -> SubjectAction:
        return self._model(
            SubjectAction, "POST", "/v1/subjects/contest", json={"subject_id": external_id}
        )

    def subject_erase(self, external_id: str) -> ErasureReport:
        return self._model(
            ErasureReport, "POST", "/v1/subjects/erase", json={"subject_id": external_id}
        )

    def retention_apply(self) -> RetentionReport:
        return self._model(RetentionReport, "POST", "/v1/retention/apply")

    def close(self) -> None:
        self._http.close()

    def audit_search(self, query: AuditQuery) -> AuditPage:
        params = query.model_dump(exclude_none=True)
        return self._model(AuditPage, "GET", "/v1/audit/search", params=params)

    def get_decision(self, decision_id: str) -> Decision:
        return self._model(Decision, "GET", f"/v1/decisions/{quote(decision_id, safe='')}")

    def get_prediction(self, prediction_id: int) -> Prediction:
        return self._model(Prediction, "GET", f"/v1/predictions/{int(prediction_id)}")

    def gold_candidates(self, limit: int = 1000) -> list[str]:
        data = self._request("GET", "/v1/gold/candidates", params={"limit": limit})
        return [str(c) for c in data]

    def add_gold(self, model_version: str, frame: pl.DataFrame) -> GoldResult:
        body = {"model_version": model_version, "rows": _json_rows(frame)}
        return self._model(GoldResult, "POST", "/v1/gold", json=body)

    def oversight_report(self) -> OversightReport:
        return self._model(OversightReport, "GET", "/v1/oversight/report")

    def conflicts(self) -> list[ConflictRecord]:
        return _CONFLICTS.validate_python(self._request("GET", "/v1/oversight/conflicts"))

    def adjudicate(
        self,
        case_id: str,
        final_label: str,
        comment: str | None = None,
        request_id: str | None = None,
    ) -> Decision:
        body = {
            "case_id": case_id,
            "final_label": final_label,
            "comment": comment,
            "request_id": request_id,
        }
        return self._model(Decision, "POST", "/v1/oversight/adjudications", json=body)
