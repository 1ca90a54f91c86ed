"""The request bodies of the store service's routes: one pydantic model per body an
operation of the table (``operations.py``) takes, its fields named like the operation's
parameters (``rows`` carries the one ``DataFrame`` parameter), with the limits the store
enforces declared on them (lengths, patterns, the store's own lists) so that the OpenAPI
document says what the service really accepts.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo

from hilt.pipelines.config import ROLES, USER_NAME
from hilt.pipelines.store.audit_records import AuditQuery
from hilt.pipelines.store.incidents import KINDS as INCIDENT_KINDS
from hilt.pipelines.store.incidents import OPEN_STATUSES
from hilt.pipelines.store.monitoring_records import MonitoringStatistics
from hilt.pipelines.store.registry_records import ModelEvaluation
from hilt.pipelines.store.validation import one_of
from hilt.pipelines.workspace import RUN_NOTEBOOK_NAME
from hilt.widgets.contracts.notice import RENDERERS

#: Text the store takes (``validation.check_text``): not blank, no NUL; a line: no newline.
TEXT = r"^[^\x00]*\S[^\x00]*$"
LINE = r"^[^\x00\n\r]*\S[^\x00\n\r]*$"
#: One line of text, not empty (``validation.check_text`` without newlines).
ONE_LINE = r"^[^\x00\n\r]+$"
#: A time a caller gives: ISO 8601 (a date-time, as declared; a date is taken too).
ISO_TIME: dict[str, Any] = {"format": "date-time"}
#: The action of an event a caller reports (``ops/events.record_event`` checks it too).
EVENT_ACTION = re.compile(r"^[a-z]+\.[a-z_]{1,48}$")
#: "<registered name>/v<version>": what a prediction names as its model (``ops/models``).
MODEL_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,100}/v[1-9][0-9]{0,8}$")
#: What a data subject may ask the processing of their data to stop for (``ops/subject_rights``).
RESTRICTION_KINDS = ("restrict", "object")


class _In(BaseModel):
    """A request body. Its validator is built when first used, not at import (a dashboard
    kernel or a CLI command imports every body and validates one or two)."""

    model_config = ConfigDict(defer_build=True)


class RowsIn(_In):
    rows: list[dict[str, Any]] = Field(min_length=1)


class CasesIn(RowsIn):
    #: Land the valid rows and return the invalid ones (row numbers and reasons).
    partial: bool = False


class PredictionsIn(RowsIn):
    model_version: str = Field(min_length=1, max_length=128)
    #: The sha256 of the model that scored: the store accepts the rows only from the model
    #: registered under ``model_version``.
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class CaseIn(_In):
    case_id: str = Field(min_length=1, max_length=128)


class HaltIn(_In):
    reason: str = Field(min_length=1, max_length=2000, pattern=TEXT)


class CaseIdsIn(_In):
    case_ids: list[str] | None = None


class EventIn(_In):
    action: str = Field(min_length=1, max_length=64, pattern=EVENT_ACTION.pattern)
    object_type: str = Field(min_length=1, max_length=128, pattern=ONE_LINE)
    object_id: str = Field(min_length=1, max_length=128, pattern=ONE_LINE)
    #: Any JSON object (its canonical JSON at most ``events.MAX_EVENT_PAYLOAD`` bytes); a
    #: ``notebook`` names an executed notebook in runs/.
    payload: dict[str, Any] = Field(
        default_factory=dict,
        json_schema_extra={
            "properties": {"notebook": {"type": "string", "pattern": RUN_NOTEBOOK_NAME.pattern}}
        },
    )


class UserIn(_In):
    name: str = Field(pattern=USER_NAME.pattern)
    role: str = Field(pattern=one_of(ROLES))


class BackupIn(_In):
    #: A new folder on the store's host (absolute path).
    dest: str = Field(min_length=1, max_length=4096)


class SubjectIn(_In):
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
    kind: str = Field(pattern=one_of(RESTRICTION_KINDS))
    lift: bool = False


class AckIn(_In):
    up_to_seq: int = Field(ge=1)


class NotifyRecipientIn(_In):
    # The subject by their id or (once erased) by subject_ref: exactly one of them.
    model_config = {
        "json_schema_extra": {
            "oneOf": [
                {
                    "required": ["subject_id"],
                    "properties": {
                        "subject_id": {"type": "string"},
                        "subject_ref": {"type": "null"},
                    },
                },
                {
                    "required": ["subject_ref"],
                    "properties": {
                        "subject_ref": {"type": "string"},
                        "subject_id": {"type": "null"},
                    },
                },
            ]
        }
    }

    recipient: str = Field(min_length=1, max_length=200)
    #: The external subject id (in the body, never in the URL: proxies log URLs) ...
    subject_id: str | None = Field(default=None, min_length=1, max_length=128)
    #: ... or, once the subject is erased, the subject_ref of the erasure.
    subject_ref: str | None = Field(default=None, min_length=1, max_length=128)


class ModelIn(_In):
    #: "<registered name>/v<version>"
    model: str = Field(min_length=1, max_length=128, pattern=MODEL_NAME.pattern)


class RegisterModelIn(ModelIn):
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    run_id: str = Field(min_length=1, max_length=128)
    evaluation: ModelEvaluation


class RejectModelIn(ModelIn):
    reason: str = Field(min_length=1, max_length=2000, pattern=TEXT)


class ShadowIn(ModelIn):
    allowed: bool = True


class MonitoringIn(_In):
    statistics: MonitoringStatistics
    #: One line, no "/" (``ops/monitoring.record_monitoring``).
    run_id: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00\n\r/]+$")
    notebook: str | None = Field(default=None, max_length=256, pattern=RUN_NOTEBOOK_NAME.pattern)


class OpenIncidentIn(_In):
    kind: str = Field(min_length=1, max_length=64, pattern=one_of(INCIDENT_KINDS))
    summary: str = Field(min_length=1, max_length=100_000, pattern=TEXT)
    #: ISO 8601 (UTC unless it says otherwise), not in the future.
    known_at: str | None = Field(default=None, max_length=64, json_schema_extra=ISO_TIME)


class UpdateIncidentIn(_In):
    # At least one of note, status, told (ops/incidents.update_incident); told_at with told.
    model_config = {
        "json_schema_extra": {
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "string"}}}
                for name in ("note", "status", "told")
            ],
            # told_at only with told (said without dependentRequired, for older tools)
            "allOf": [
                {
                    "anyOf": [
                        {"not": {"required": ["told_at"]}},
                        {"properties": {"told_at": {"type": "null"}}},
                        {"required": ["told"], "properties": {"told": {"type": "string"}}},
                    ]
                }
            ],
        }
    }

    note: str | None = Field(default=None, max_length=100_000, pattern=TEXT)
    status: str | None = Field(default=None, max_length=64, pattern=one_of(OPEN_STATUSES))
    told: str | None = Field(default=None, max_length=1000, pattern=LINE)
    #: ISO 8601 (UTC unless it says otherwise), not in the future.
    told_at: str | None = Field(default=None, max_length=64, json_schema_extra=ISO_TIME)


class CloseIncidentIn(_In):
    reason: str = Field(min_length=1, max_length=100_000, pattern=TEXT)


class AdjudicationIn(_In):
    case_id: str = Field(min_length=1, max_length=128)
    final_label: str = Field(min_length=1, max_length=128)
    comment: str | None = Field(default=None, pattern=r"^[^\x00]*$")
    request_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=ONE_LINE)


#: An RFC 3339 date-time (``format: date-time``): a date, a time, an offset or Z.
DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII
)


def _date_time(value: str | None, info: ValidationInfo) -> str | None:
    if value is not None:
        try:
            if not DATE_TIME.match(value):
                raise ValueError
            datetime.fromisoformat(value.upper())
        except ValueError:
            raise ValueError(
                f"{info.field_name} must be an ISO-8601 time, e.g. 2025-01-31T12:00:00Z"
                " (an RFC 3339 date-time)"
            ) from None
    return value


DateTime = Annotated[
    str | None,
    AfterValidator(_date_time),
    Field(default=None, max_length=40, json_schema_extra={"format": "date-time"}),
]


class AuditQueryIn(AuditQuery):
    """``AuditQuery`` as the service takes it: its times RFC 3339 date-times, anything else
    a 422 (the client sends them so: ``AuditQuery._as_date_time``)."""

    since: DateTime = None
    until: DateTime = None
