"""The model registry against its audit events: scoring obeys the ``models`` table (which
version is the champion, with which sha256), so a row changed behind the store's back is
a break, as a config version's is (``config_check``).

Each row was written with its ``model.registered`` event (at ``registered_seq``: the model,
its sha256, run and author) and, once a lead decided, its ``model.promoted`` or
``model.rejected`` event (at ``decided_seq``, by ``decided_by``). Those events are read by
their seqs for every row, from a signed checkpoint too (a few rows: the champion's sha256
swapped for another model's is found whenever verify runs). The state and the shadow flag
are further held to the last event that set them among the events judged (all of them on a
full walk; those after the checkpoint otherwise): a registration (challenger, or rejected
by the gate; a challenger it supersedes), a promotion (the champion; the former one
retired), a rejection, a shadow allowed or ended. Events purged by the audit log's
retention are not asked for.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from hilt.pipelines.store import sql
from hilt.pipelines.store.audit.chain import Break, kind_prefix, picks

if TYPE_CHECKING:
    import duckdb

#: The events that write or change a row of the registry (the shadow's two by their common
#: start: LIKE reads an underscore as any character).
KINDS = (
    *(kind_prefix(a) for a in ("model.registered", "model.promoted", "model.rejected")),
    '{"action":"model.shadow',
)

_ROWS = (
    "SELECT model, model_sha256, run_id, author, state, shadow, registered_seq, decided_by,"
    " decided_seq FROM models ORDER BY registered_seq"
)
_EVENTS = f"SELECT seq, entry FROM __events__ WHERE seq > $since AND {picks(KINDS)} ORDER BY seq"

MISMATCH = "a model in the registry no longer matches its events"


def _by_seq(con: duckdb.DuckDBPyConnection, seqs: list[int]) -> dict[int, dict[str, Any]]:
    rows = con.execute(
        "SELECT seq, entry FROM audit_log WHERE seq IN (SELECT unnest($1))", [seqs]
    ).fetchall()
    return {int(s): json.loads(e) for s, e in rows}


def _row_break(row: tuple[Any, ...], events: dict[int, dict[str, Any]], purged: int) -> int | None:
    """The seq at which ``row`` departs from the events it was written with, or None."""
    model, sha, run_id, author, state, _shadow, registered, decided_by, decided = row
    r = events.get(int(registered))
    p = r["payload"] if r is not None else {}
    if (
        r is None
        or (r["action"], r["object_id"], r["actor"]) != ("model.registered", model, author)
        or (p.get("model_sha256"), p.get("run_id")) != (sha, run_id)
    ):
        return int(registered)
    wanted = {"champion": "model.promoted", "rejected": "model.rejected"}.get(str(state))
    if decided is None:
        # Never decided by a lead: a challenger or one the gate rejected, as registered.
        if state in ("champion", "retired") or (
            state in ("challenger", "rejected") and p.get("state") != state
        ):
            return int(registered)
        return None
    if int(decided) < purged:
        return None
    d = events.get(int(decided))
    if wanted is not None and (
        d is None or (d["action"], d["object_id"], d["actor"]) != (wanted, model, decided_by)
    ):
        return int(decided)
    return None


def _derived(events: list[tuple[int, dict[str, Any]]]) -> dict[str, tuple[int, str, bool | None]]:
    """model → (seq of the last event that set its state, that state, its shadow flag as
    the last shadow event set it or None)."""
    state: dict[str, tuple[int, str]] = {}
    shadow: dict[str, bool] = {}
    for seq, e in events:
        action, model, p = e["action"], str(e["object_id"]), e["payload"]
        if action == "model.registered":
            state[model] = (seq, str(p.get("state")))
            if p.get("superseded"):
                state[str(p["superseded"])] = (seq, "superseded")
            shadow[model] = False
        elif action == "model.promoted":
            state[model] = (seq, "champion")
            if p.get("previous_champion"):
                state[str(p["previous_champion"])] = (seq, "retired")
        elif action == "model.rejected":
            state[model] = (seq, "rejected")
        elif action in ("model.shadow_allowed", "model.shadow_ended"):
            shadow[model] = action == "model.shadow_allowed"
    return {m: (seq, s, shadow.get(m)) for m, (seq, s) in state.items()}


def first_mismatch(
    con: duckdb.DuckDBPyConnection, since: int = 0, events: str = "audit_log"
) -> Break | None:
    """The earliest seq at which a row of the registry departs from its events (a copy
    fetched through the API, without the table, is skipped). ``since``: the states are
    held to the events after this seq (a signed checkpoint's) only. ``events``:
    ``after_checkpoint.kind_source(con, since)`` when the caller read it."""
    has_table = sql.scalar(con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'models'")
    if not has_table:
        return None
    rows = con.execute(_ROWS).fetchall()
    purged = int(sql.scalar(con, "SELECT coalesce(min(seq), 0) FROM audit_log") or 0)
    kept = [r for r in rows if int(r[6]) >= purged]  # registrations retention left
    wanted = sorted({int(r[6]) for r in kept} | {int(r[8]) for r in kept if r[8] is not None})
    looked_up = _by_seq(con, wanted) if wanted else {}
    found = [b for b in (_row_break(r, looked_up, purged) for r in kept) if b is not None]
    judged = [
        (int(s), json.loads(e))
        for s, e in con.execute(_EVENTS.replace("__events__", events), {"since": since}).fetchall()
    ]
    registry = {str(r[0]): r for r in rows}
    for model, (seq, state, shadow) in _derived(judged).items():
        row = registry.get(model)
        if row is None:
            found.append(seq)  # registered (or decided) in the log, not in the table
            continue
        if row[4] != state or (shadow is not None and bool(row[5]) != shadow):
            found.append(seq)
    if not found:
        return None
    return Break(min(found), "record-mismatch", MISMATCH)
