"""Events that carry authority, checked against the rules of the operation that writes them.

The chain proves that no event was changed after it was written, and a signed checkpoint
that nothing before it was; neither proves that an event was written by the store's own
operation. Someone who holds the workspace's files could append, after the last
checkpoint, an event that an operation would never have written: a purge point that hides
recent events as "retention", a digest re-statement that makes edited rows verify, a run
whose notebook is a file outside ``runs/``, a promotion approved by its own author. This
check reads those events and the rows they speak of, and names the first that does not
fit its rule:

- ``forged-purge``: a retention event's audit purge must follow the retention period
  (never under six months), from the event's own time, which is not after the time of
  this verification (a purge dated ahead would make today's events look old), and the
  first event it kept must be younger than its cut;
- ``forged-restatement``: a batch's digest is restated only by the event that removed rows
  of that batch (cases it tombstoned, or predictions retention purged), with the rows that
  remain;
- ``notebook-path``: a run's notebook is a file name inside the workspace's ``runs/``;
- ``four-eyes``: a model is promoted or rejected by a lead who is not its author, a
  halt is resumed by another person than the one who halted, a serious incident is
  closed by a lead who did not open it (issue 14; its id is ``INC-<seq of its opening>``),
  and a config change that waited for a second approval is approved by a lead who is not
  the admin who applied it (held to the ``config.proposed`` event it names, of its
  version; the model's author as registered is held by ``registry_check``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from hilt.pipelines.config import MIN_AUDIT_RETENTION_DAYS
from hilt.pipelines.store.audit.batch_digest import (
    CASES_ACTION,
    RESTATING_ACTIONS,
)
from hilt.pipelines.store.audit.chain import Break, kind_prefix, picks, utc_timestamp
from hilt.pipelines.workspace import RUN_NOTEBOOK_NAME

if TYPE_CHECKING:
    import duckdb

#: Roles that may apply retention (the operation's permission).
RETENTION_ROLES = frozenset({"admin", "system", "dpo"})
#: How far the clock of the machine that wrote the log may run ahead of the verifier's.
CLOCK_SKEW = timedelta(days=1)

#: The events this check judges, or reads as the context of those it judges.
KINDS = (
    *(kind_prefix(a) for a in ("retention.applied", "subject.erased")),
    '{"action":"run.',
    *(
        kind_prefix(a)
        for a in (
            "model.promoted",
            "model.rejected",
            "config.proposed",
            "config.approved",
            "system.halted",
            "system.resumed",
            "incident.opened",
            "incident.closed",
            "cases.ingest",
            "predictions.ingest",
            "predictions.shadow",
        )
    ),
)

_EVENTS_SQL = f"SELECT seq, entry FROM __events__ WHERE seq > ? AND {picks(KINDS)} ORDER BY seq"


def _referred(e: dict[str, Any]) -> list[int]:
    """The seqs of earlier events an event's rule reads: a resume's halt, the batches a
    restatement restates."""
    p = e["payload"]
    if e["action"] == "system.resumed":
        return [int(p.get("halted_at_seq") or 0)]
    if e["action"] == "incident.closed":
        return [_opened_seq(e)]
    if e["action"] == "config.approved":
        return [int(p.get("proposed_seq") or 0)]
    if e["action"] in RESTATING_ACTIONS:
        return [int(b) for b in p.get("batches") or {}]
    return []


def _with_context(
    con: duckdb.DuckDBPyConnection, events: list[tuple[int, dict[str, Any]]], since: int
) -> list[tuple[int, dict[str, Any]]]:
    """``events`` (after ``since``) preceded by the earlier halts and batch events they refer
    to: covered by the checkpoint, they are context (no rule judges a halt or a batch event
    itself)."""
    wanted = sorted({s for _, e in events for s in _referred(e) if 0 < s <= since})
    if not wanted:
        return events
    rows = con.execute(
        "SELECT seq, entry FROM audit_log WHERE seq IN (SELECT unnest($1)) ORDER BY seq",
        [wanted],
    ).fetchall()
    parsed = [(int(s), json.loads(e)) for s, e in rows]
    context = [
        (s, e)
        for s, e in parsed
        if e.get("action")
        in (
            "system.halted",
            "incident.opened",
            "config.proposed",
            CASES_ACTION,
            "predictions.ingest",
        )
    ]
    return context + events


def _opened_seq(e: dict[str, Any]) -> int:
    """The seq of the event that opened the incident an event speaks of (0: not one)."""
    number = str(e.get("object_id", "")).removeprefix("INC-")
    return int(number) if number.isdigit() else 0


def _when(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def first_break(
    con: duckdb.DuckDBPyConnection,
    now: datetime | None = None,
    *,
    with_rows: bool = True,
    since: int = 0,
    events: str = "audit_log",
) -> Break | None:
    """The first event that an operation of the store would not have written, or None;
    ``now``: the time of this verification (default: this machine's clock). Without the
    case and prediction rows (``with_rows=False``: a log fetched from a service) the
    restatements are not checked: they are held to the rows they removed.

    ``since``: only the events after this seq (a signed checkpoint's) are judged; the
    earlier events they refer to (the halt a resume ends, the batch a restatement speaks
    of) are read by their seq. A purge's point is then held to the purges after the
    checkpoint only. ``events``: ``after_checkpoint.kind_source(con, since)`` when the caller
    read it."""
    picked = con.execute(_EVENTS_SQL.replace("__events__", events), [since]).fetchall()
    judged = [(int(s), json.loads(e)) for s, e in picked]
    if since > 0:
        judged = _with_context(con, judged, since)
    found = [
        b
        for b in (
            _purges(con, judged, now or datetime.now(UTC)),
            _restatements(con, judged) if with_rows else None,
            _notebooks(judged),
            _four_eyes(judged, _first_seq(con)),
        )
        if b is not None
    ]
    return min(found, key=lambda b: b.seq) if found else None


def _purges(
    con: duckdb.DuckDBPyConnection, events: list[tuple[int, dict[str, Any]]], now: datetime
) -> Break | None:
    last_through = 0
    for seq, e in events:
        audit = e["payload"].get("audit") if e["action"] == "retention.applied" else None
        if not audit:
            continue
        through = int(audit.get("purged_through") or 0)
        days = audit.get("days")
        problem = None
        if e.get("role") not in RETENTION_ROLES:
            problem = f"written in the role {e.get('role')!r}, which may not apply retention"
        elif not isinstance(days, int) or days < MIN_AUDIT_RETENTION_DAYS:
            problem = f"its audit period is not one retention allows ({days!r} days)"
        elif _when(e["ts"]) > now + CLOCK_SKEW:
            problem = "it is dated after this verification, so its cut reaches recent events"
        elif audit.get("cut") != utc_timestamp(_when(e["ts"]) - timedelta(days=days)):
            problem = "its cut is not its own time minus the audit period"
        elif not last_through <= through < seq:
            problem = "its purge point does not follow the earlier ones"
        if problem is None:
            kept = con.execute(
                "SELECT json_extract_string(entry, '$.ts') FROM audit_log WHERE seq = ?",
                [through + 1],
            ).fetchall()
            if kept and str(kept[0][0]) < str(audit["cut"]):
                problem = "it kept an event older than its cut, so it did not purge by age"
        if problem is not None:
            return Break(seq, "forged-purge", f"a retention event's audit purge: {problem}")
        last_through = through
    return None


def _restatements(
    con: duckdb.DuckDBPyConnection, events: list[tuple[int, dict[str, Any]]]
) -> Break | None:
    batch_action = {
        seq: e["action"] for seq, e in events if e["action"] in (CASES_ACTION, "predictions.ingest")
    }
    for seq, e in events:
        if e["action"] not in RESTATING_ACTIONS:
            continue
        for batch in e["payload"].get("batches") or {}:
            b = int(batch)
            action = batch_action.get(b)
            if action is None:
                continue  # the batch's own event was purged since: nothing to hold it to
            if action == CASES_ACTION:
                removed = con.execute(
                    "SELECT count(*) FROM cases WHERE ingest_seq = ? AND removed_seq = ?",
                    [b, seq],
                ).fetchall()[0][0]
                ok = removed > 0
            else:
                # Only retention purges predictions (an erasure keeps them).
                ok = (
                    action is not None
                    and e["action"] == "retention.applied"
                    and bool((e["payload"].get("predictions") or {}).get("purged"))
                )
            if not ok:
                return Break(
                    seq,
                    "forged-restatement",
                    f"restates the digest of batch {b} without removing any of its rows",
                )
    return None


def _notebooks(events: list[tuple[int, dict[str, Any]]]) -> Break | None:
    for seq, e in events:
        if not str(e["action"]).startswith("run."):
            continue
        name = e["payload"].get("notebook")
        if name is not None and not RUN_NOTEBOOK_NAME.match(str(name)):
            return Break(seq, "notebook-path", "a run names a notebook that is not a file in runs/")
    return None


def _first_seq(con: duckdb.DuckDBPyConnection) -> int:
    """The first seq the log still holds (retention purges the oldest events)."""
    row = con.execute("SELECT coalesce(min(seq), 1) FROM audit_log").fetchone()
    return int(row[0]) if row is not None else 1


def _four_eyes(events: list[tuple[int, dict[str, Any]]], first_seq: int = 1) -> Break | None:
    opened_by: dict[int, str] = {}
    serious: dict[int, bool] = {}
    #: config.proposed seq → (who applied it, its version).
    proposed: dict[int, tuple[str, Any]] = {}
    for seq, e in events:
        action, p = e["action"], e["payload"]
        if action in ("system.halted", "incident.opened"):
            opened_by[seq] = str(e["actor"])
            serious[seq] = p.get("serious") is True
        elif action == "config.proposed":
            proposed[seq] = (str(e["actor"]), p.get("version"))
        elif action == "config.approved":
            # Held to the proposal it names (its payload's proposed_by where retention
            # purged that), which must be of the version it approves.
            at = int(p.get("proposed_seq") or 0)
            proposal = proposed.get(at)
            if proposal is None and at < first_seq:
                proposal = (str(p.get("proposed_by")), p.get("version"))
            if (
                e.get("role") != "lead"
                or proposal is None
                or proposal[1] != p.get("version")
                or proposal[0] == e["actor"]
            ):
                return Break(
                    seq,
                    "four-eyes",
                    "a config change approved by the admin who applied it, by someone not a "
                    "lead, or naming no proposal of its version",
                )
        elif action == "incident.closed" and serious.get(
            _opened_seq(e), p.get("serious") is not False
        ):
            # (judged by its opening's kind, not by what the closing says of itself, unless
            # retention purged the opening)
            if e.get("role") != "lead" or opened_by.get(_opened_seq(e)) == e["actor"]:
                return Break(
                    seq, "four-eyes", "a serious incident closed by its opener or not by a lead"
                )
        elif action == "system.resumed":
            # (a halt that retention purged from the log is no longer there to compare)
            if opened_by.get(int(p.get("halted_at_seq") or 0)) == e["actor"]:
                return Break(seq, "four-eyes", "a halt resumed by the person who halted it")
        elif action in ("model.promoted", "model.rejected") and (
            e.get("role") != "lead"
            or p.get("approver") != e["actor"]
            or p.get("author") == e["actor"]
        ):
            return Break(seq, "four-eyes", "a model decided by its author or by someone not a lead")
    return None
