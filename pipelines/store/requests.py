"""The request bodies of the store service's routes: one pydantic model per body an
operation of the table (``operations.py``) takes, its fields named like the operation's
parameters (``rows`` carries the one ``DataFrame`` parameter), with the limits the store
enforces declared on them (lengths, patterns, the store's own lists) so that the OpenAPI
document says what the service really accepts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from hilt.pipelines.config import ROLES, USER_NAME
from hilt.pipelines.store.incidents import KINDS as INCIDENT_KINDS
from hilt.pipelines.store.incidents import OPEN_STATUSES
from hilt.pipelines.store.monitoring_records import MonitoringStatistics
from hilt.pipelines.store.ops import events, subject_rights
from hilt.pipelines.store.records import ModelEvaluation
from hilt.pipelines.store.validation import one_of
from hilt.widgets.contracts.notice import RENDERERS


class RowsIn(BaseModel):
    rows: list[dict[str, Any]] = Field(min_length=1)


class CasesIn(RowsIn):
    #: Land the valid rows and return the invalid ones (row numbers and reasons).
    partial: bool = False


class PredictionsIn(RowsIn):
    model_version: str = Field(min_length=1, max_length=128)
    #: The sha256 of the model that scored: the store accepts the rows only from the model
    #: registered under ``model_version``.
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class CaseIn(BaseModel):
    case_id: str = Field(min_length=1, max_length=128)


class HaltIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class CaseIdsIn(BaseModel):
    case_ids: list[str] | None = None


class EventIn(BaseModel):
    action: str = Field(min_length=1, max_length=64, pattern=events.EVENT_ACTION.pattern)
    object_type: str = Field(min_length=1, max_length=128)
    object_id: str = Field(min_length=1, max_length=128)
    payload: dict[str, Any] = Field(default_factory=dict)


class UserIn(BaseModel):
    name: str = Field(pattern=USER_NAME.pattern)
    role: str = Field(pattern=one_of(ROLES))


class BackupIn(BaseModel):
    #: A new folder on the store's host (absolute path).
    dest: str = Field(min_length=1, max_length=4096)


class SubjectIn(BaseModel):
    #: The external subject id (in the body, never in the URL: proxies log URLs).
    subject_id: str = Field(min_length=1, max_length=128)


class NoticeFactsIn(SubjectIn):
    case_id: str | None = Field(default=None, min_length=1, max_length=128)


class NoticeIssuedIn(SubjectIn):
    case_id: str = Field(min_length=1, max_length=128)
    renderer: str = Field(min_length=1, max_length=64, pattern=one_of(RENDERERS))
    notice_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    #: Counterfactual combinations: [[{"feature", "value"}, ...], ...] (the person's own
    #: values: in the body, never in a URL or the audit log).
    changes: list[list[dict[str, Any]]] = Field(default_factory=list, max_length=2)


class RectifyIn(SubjectIn):
    column: str = Field(min_length=1, max_length=64)
    value: str | None = Field(default=None, max_length=100_000)
    case_id: str | None = Field(default=None, min_length=1, max_length=128)


class RestrictIn(SubjectIn):
    kind: str = Field(pattern=one_of(subject_rights.RESTRICTION_KINDS))
    lift: bool = False


class AckIn(BaseModel):
    up_to_seq: int = Field(ge=1)


class NotifyRecipientIn(BaseModel):
    recipient: str = Field(min_length=1, max_length=200)
    #: The external subject id (in the body, never in the URL: proxies log URLs) ...
    subject_id: str | None = Field(default=None, min_length=1, max_length=128)
    #: ... or, once the subject is erased, the subject_ref of the erasure.
    subject_ref: str | None = Field(default=None, min_length=1, max_length=128)


class ModelIn(BaseModel):
    #: "<registered name>/v<version>"
    model: str = Field(min_length=1, max_length=128)


class RegisterModelIn(ModelIn):
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    run_id: str = Field(min_length=1, max_length=128)
    evaluation: ModelEvaluation


class RejectModelIn(ModelIn):
    reason: str = Field(min_length=1, max_length=2000)


class ShadowIn(ModelIn):
    allowed: bool = True


class MonitoringIn(BaseModel):
    statistics: MonitoringStatistics
    run_id: str = Field(min_length=1, max_length=128)
    notebook: str | None = Field(default=None, max_length=256)


#: Text the store takes (``validation.check_text``): not blank, no NUL; a line: no newline.
TEXT = r"^[^\x00]*\S[^\x00]*$"
LINE = r"^[^\x00\n\r]*\S[^\x00\n\r]*$"


class OpenIncidentIn(BaseModel):
    kind: str = Field(min_length=1, max_length=64, pattern=one_of(INCIDENT_KINDS))
    summary: str = Field(min_length=1, max_length=100_000)
    known_at: str | None = Field(default=None, max_length=64)


class UpdateIncidentIn(BaseModel):
    # At least one of note, status, told (ops/incidents.update_incident); told_at with told.
    model_config = {
        "json_schema_extra": {
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "string"}}}
                for name in ("note", "status", "told")
            ],
            "dependentRequired": {"told_at": ["told"]},
        }
    }

    note: str | None = Field(default=None, max_length=100_000, pattern=TEXT)
    status: str | None = Field(default=None, max_length=64, pattern=one_of(OPEN_STATUSES))
    told: str | None = Field(default=None, max_length=1000, pattern=LINE)
    told_at: str | None = Field(default=None, max_length=64)


class CloseIncidentIn(BaseModel):
    reason: str = Field(min_length=1, max_length=100_000)


class AdjudicationIn(BaseModel):
    case_id: str = Field(min_length=1, max_length=128)
    final_label: str = Field(min_length=1, max_length=128)
    comment: str | None = None
    request_id: str | None = Field(default=None, min_length=1, max_length=128)
