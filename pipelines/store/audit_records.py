"""The audit log as it crosses the store's boundary: its events, its head, checkpoints,
what verifying it found, and the auditor's searches over it.

They are pydantic models so that the HTTP service and its client share one definition and
the OpenAPI document describes them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import Field, field_serializer

from hilt.pipelines.store.record_base import Record

#: The largest audit seq a query may name (DuckDB's BIGINT).
MAX_SEQ = 2**63 - 1


class AuditEvent(Record):
    seq: int
    ts: str
    actor: str
    role: str
    action: str
    object_type: str
    object_id: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class AuditHead(Record):
    seq: int
    hash: str


class CheckpointRecord(Record):
    seq: int
    head_hash: str
    time: str


class BreakRecord(Record):
    seq: int
    kind: str
    detail: str


class VerifyReport(Record):
    ok: bool
    events: int
    head_hash: str
    checkpoints: int
    first_break: BreakRecord | None = None
    #: Verified from the signed checkpoint at this seq (``events``: the events after it);
    #: None: the whole log was walked.
    from_checkpoint: int | None = None

    def summary(self) -> str:
        since = self.from_checkpoint
        if self.ok:
            if since is not None:
                return (
                    f"OK {self.events} events after checkpoint seq {since} (verified from "
                    "that signed checkpoint; the log up to it was not re-read)"
                )
            return f"OK {self.events} events"
        b = self.first_break
        assert b is not None
        broken = f"BROKEN at seq {b.seq}: {b.kind}: {b.detail}"
        return broken + (f" (verifying from checkpoint seq {since})" if since is not None else "")


class AuditQuery(Record):
    """A filter over the audit log (``Store.audit_search``); every given filter must hold."""

    #: Who acted (exact user name).
    actor: str | None = Field(default=None, max_length=128)
    #: An action ("decision.record"), or a prefix ending in a dot ("model.").
    action: str | None = Field(default=None, max_length=64)
    #: The object acted on: a case id, a run id, a model version, a snapshot name.
    object_id: str | None = Field(default=None, max_length=128)
    #: Events about a model version: its own events and those whose payload names it
    #: (predictions, decisions), e.g. "hilt-german-credit/v3".
    model_version: str | None = Field(default=None, max_length=128)
    #: ISO-8601 times (UTC unless they say otherwise); since ≤ ts < until. Over HTTP an
    #: RFC 3339 date-time (``requests.AuditQueryIn``): sent as one (``_as_date_time``).
    since: str | None = Field(default=None, max_length=40)
    until: str | None = Field(default=None, max_length=40)
    #: min_seq ≤ seq ≤ max_seq (max_seq: the head an explorer opened at, for stable pages).
    min_seq: int | None = Field(default=None, ge=0, le=MAX_SEQ)
    max_seq: int | None = Field(default=None, ge=0, le=MAX_SEQ)
    #: Only these seqs (at most 1000).
    seqs: list[Annotated[int, Field(ge=0, le=MAX_SEQ)]] | None = Field(
        default=None, max_length=1000
    )
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=50, ge=1, le=1000)
    newest_first: bool = True

    @field_serializer("since", "until")
    def _as_date_time(self, value: str | None) -> str | None:
        """An ISO-8601 time as an RFC 3339 date-time (a day: its midnight; UTC unless it
        says otherwise), as the service takes it; anything else as it is, for the store to
        refuse naming it."""
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.isoformat()


class AuditPage(Record):
    """One page of events matching an ``AuditQuery``, and counts over all that match."""

    events: list[AuditEvent]
    #: Events matching the filter (all pages).
    total: int
    offset: int
    #: Matching events per action, and per UTC day ("YYYY-MM-DD").
    by_action: dict[str, int]
    by_day: dict[str, int]


class AuditStats(Record):
    """The audit log at a glance: how many events, over which seqs and times, of which kinds."""

    events: int
    #: The oldest seq still in the log (later than 1 once retention purged the start).
    first_seq: int | None
    head_seq: int
    first_at: str | None
    last_at: str | None
    by_action: dict[str, int]
