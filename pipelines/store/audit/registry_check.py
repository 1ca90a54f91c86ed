"""The model registry against its audit events: scoring obeys the ``models`` table (which
version is the champion, with which sha256), so a row changed behind the store's back is
a break, as a config version's is (``config_check``).

Each row was written with its ``model.registered`` event (at ``registered_seq``: the model,
its sha256, run and author) and, once a lead decided, its ``model.promoted`` or
``model.rejected`` event (at ``decided_seq``, by ``decided_by``). Every event that sets a
state is one of those of some row (a registration supersedes the challenger before it, a
promotion retires the champion before it), so the events are read by the rows' seqs, never
by a scan of the log: a few rows, the same work on a full walk and from a signed checkpoint
(the champion's sha256 swapped for another model's is found whenever verify runs). Each
row must match its events, and its state must be the one the last of them gave it. Events
purged by the audit log's retention are not asked for. (The shadow flag, set by events no
row points to, is not checked here: a shadow model's predictions never reach the queue.)
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from hilt.pipelines.store.audit.chain import Break

if TYPE_CHECKING:
    import duckdb

_ROWS = (
    "SELECT model, model_sha256, run_id, author, state, shadow, registered_seq, decided_by,"
    " decided_seq FROM models ORDER BY registered_seq"
)

MISMATCH = "a model in the registry no longer matches its events"


def _by_seq(con: duckdb.DuckDBPyConnection, seqs: list[int]) -> dict[int, dict[str, Any]]:
    """The events at ``seqs`` (one that is not an event's JSON is left out: a mismatch)."""
    listed = ", ".join(str(int(s)) for s in seqs)  # an IN list: DuckDB's table filter
    rows = con.execute(f"SELECT seq, entry FROM audit_log WHERE seq IN ({listed})").fetchall()
    events = {}
    for seq, entry in rows:
        try:
            e = json.loads(entry)
        except (TypeError, ValueError):
            continue
        if isinstance(e, dict) and isinstance(e.get("payload"), dict):
            events[int(seq)] = e
    return events


def _said(e: dict[str, Any]) -> tuple[Any, Any, Any]:
    return e.get("action"), e.get("object_id"), e.get("actor")


def _row_break(
    row: tuple[Any, ...], events: dict[int, dict[str, Any]], purged: int
) -> Break | None:
    """Where ``row`` departs from the events it was written with, or None. A lead's decision
    is held to the registration too: by a lead who is not its author as registered (the
    author the decision's own payload names is the decider's to write)."""
    model, sha, run_id, author, state, _shadow, registered, decided_by, decided = row
    r = events.get(int(registered))
    p = r["payload"] if r is not None else {}
    mismatch = Break(int(registered), "record-mismatch", MISMATCH)
    if (
        r is None
        or _said(r) != ("model.registered", model, author)
        or (p.get("model_sha256"), p.get("run_id")) != (sha, run_id)
    ):
        return mismatch
    wanted = {"champion": "model.promoted", "rejected": "model.rejected"}.get(str(state))
    if decided is None:
        # Never decided by a lead: a challenger or one the gate rejected, as registered.
        if state in ("champion", "retired") or (
            state in ("challenger", "rejected") and p.get("state") != state
        ):
            return mismatch
        return None
    if int(decided) < purged:
        return None
    d = events.get(int(decided))
    if wanted is not None and (d is None or _said(d) != (wanted, model, decided_by)):
        return Break(int(decided), "record-mismatch", MISMATCH)
    if (
        d is not None
        and d.get("action") in ("model.promoted", "model.rejected")
        and (d.get("role") != "lead" or d.get("actor") == author)
    ):
        return Break(
            int(decided), "four-eyes", "a model decided by its author (as registered) or not a lead"
        )
    return None


def _derived(events: dict[int, dict[str, Any]]) -> dict[str, tuple[int, str]]:
    """model → (the seq of the last of ``events`` that set its state, that state)."""
    state: dict[str, tuple[int, str]] = {}
    for seq, e in sorted(events.items()):
        action, model, p = e.get("action"), str(e.get("object_id")), e["payload"]
        if action == "model.registered":
            state[model] = (seq, str(p.get("state")))
            if p.get("superseded"):
                state[str(p["superseded"])] = (seq, "superseded")
        elif action == "model.promoted":
            state[model] = (seq, "champion")
            if p.get("previous_champion"):
                state[str(p["previous_champion"])] = (seq, "retired")
        elif action == "model.rejected":
            state[model] = (seq, "rejected")
    return state


def first_mismatch(con: duckdb.DuckDBPyConnection) -> Break | None:
    """The earliest seq at which a row of the registry departs from its events."""
    rows = con.execute(_ROWS).fetchall()
    if not rows:
        return None
    wanted = sorted({int(r[6]) for r in rows} | {int(r[8]) for r in rows if r[8] is not None})
    events = _by_seq(con, wanted)
    purged = 0
    if len(events) < len(wanted):  # retention may have purged some: they are not asked for
        first = con.execute("SELECT min(seq) FROM audit_log").fetchone()
        purged = int(first[0]) if first is not None and first[0] is not None else 0
    kept = [r for r in rows if int(r[6]) >= purged]  # registrations retention left
    found = [b for b in (_row_break(r, events, purged) for r in kept) if b is not None]
    registry = {str(r[0]): r for r in rows}
    for model, (seq, state) in _derived(events).items():
        row = registry.get(model)
        if row is None or row[4] != state:
            found.append(Break(seq, "record-mismatch", MISMATCH))
    return min(found, key=lambda b: b.seq) if found else None
