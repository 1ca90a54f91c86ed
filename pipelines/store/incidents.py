"""Incidents: the kinds the law names, their reporting deadlines, and the records the
register returns (no DuckDB here; the operations are ``ops/incidents.py``).

The deadline of an incident follows from its kind and the time it became known, never from
the client:

- EU AI Act Art. 73(2), a serious incident: report immediately, at the latest 15 days after
  becoming aware of it;
- Art. 73(3), a widespread infringement, or a serious and irreversible disruption of the
  management or operation of critical infrastructure: at the latest 2 days;
- Art. 73(4), the death of a person: at the latest 10 days;
- GDPR Art. 33(1), a personal-data breach: to the supervisory authority within 72 hours;
- a malfunction: recorded, not reportable (no deadline).

``serious`` means reportable: every kind with a deadline. An open serious incident is what
the go-live check and the oversight dashboard look for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from hilt.pipelines.store.audit_records import VerifyReport

IncidentSource = Literal["manual", "verify", "monitoring"]
#: Sources only the store's own operations open incidents from (``open_automatic``).
AUTOMATIC_SOURCES: tuple[str, ...] = ("verify", "monitoring")
#: Where an incident stands until it is closed (closing is its own operation, with a reason).
OPEN_STATUSES: tuple[str, ...] = ("open", "investigating", "contained")


@dataclass(frozen=True)
class IncidentKind:
    """One kind of incident: the provision that names it and the time it allows."""

    name: str
    provision: str
    #: From becoming aware to the report; None: not reportable.
    deadline: timedelta | None
    #: To whom the report goes (for the person filing it).
    report_to: str

    @property
    def serious(self) -> bool:
        return self.deadline is not None


KINDS: dict[str, IncidentKind] = {
    k.name: k
    for k in (
        IncidentKind(
            "serious_incident",
            "AI Act 73(2)",
            timedelta(days=15),
            "the market surveillance authority",
        ),
        IncidentKind(
            "widespread_infringement",
            "AI Act 73(3)",
            timedelta(days=2),
            "the market surveillance authority",
        ),
        IncidentKind(
            "critical_infrastructure",
            "AI Act 73(3)",
            timedelta(days=2),
            "the market surveillance authority",
        ),
        IncidentKind(
            "death",
            "AI Act 73(4)",
            timedelta(days=10),
            "the market surveillance authority",
        ),
        IncidentKind(
            "personal_data_breach",
            "GDPR 33(1)",
            timedelta(hours=72),
            "the supervisory authority",
        ),
        IncidentKind("malfunction", "AI Act 26(5)", None, "the provider, where it matters"),
    )
}

#: The kind a failed verify opens. The audit log of a high-risk system is the record Art. 12
#: and 19 require, and it holds what was decided about people (pseudonymised, which is still
#: personal data): a log that does not verify means that someone or something altered or
#: destroyed it outside the store's operations. That is at least a malfunction, and the
#: store cannot tell an accidental corruption from an unauthorised alteration, which is a
#: personal-data breach (GDPR Art. 4(12)). So it is opened as a breach and the 72-hour clock
#: runs from the verify that found it; a lead closes it with the assessment (e.g. a disk
#: fault, no personal data affected), which GDPR Art. 33(5) asks to be documented anyway.
VERIFY_KIND = "personal_data_breach"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class IncidentNotification(_Record):
    """Who was told about an incident, when, recorded by whom."""

    recipient: str
    told_at: str
    recorded_by: str
    seq: int


class IncidentNote(_Record):
    author: str
    at: str
    note: str
    seq: int


class Incident(_Record):
    """One incident of the register, with its deadline computed by the store."""

    incident_id: str
    kind: str
    provision: str
    serious: bool
    source: IncidentSource
    summary: str
    status: str
    known_at: str
    #: known_at + the kind's time; None for a malfunction.
    deadline: str | None
    report_to: str
    opened_by: str
    opened_at: str
    opened_seq: int
    #: The first seq of the log the failed verify found broken (source "verify").
    verify_break_seq: int | None = None
    closed_by: str | None = None
    closed_at: str | None = None
    close_reason: str | None = None
    notifications: list[IncidentNotification] = []
    notes: list[IncidentNote] = []
    #: Seconds from the store's now to the deadline (negative once past); None: no deadline
    #: or closed.
    seconds_left: float | None = None
    #: Serious, not closed, nobody told, and the deadline has passed.
    overdue: bool = False
    #: The first notification came after the deadline.
    reported_late: bool = False

    @property
    def closed(self) -> bool:
        return self.closed_at is not None


class VerifyOutcome(_Record):
    """``verify_and_record``: the store's own verification, and the incident it opened (or
    the one already open for the same broken seq)."""

    report: VerifyReport
    incident_id: str | None = None
    #: Whether this verification opened the incident (False: one was already there).
    opened: bool = False
    #: Why no incident could be written (the store refused the write: e.g. its incident
    #: tables are gone); the report stands all the same.
    not_recorded: str | None = None
