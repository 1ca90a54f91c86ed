"""What deciding on one case depends on (``CaseFacts``), read in one round trip: the case,
its predictions, its decisions, its lease, a contest, the oversight arms and an earlier
decision under the same request id. In the service, what the live queue holds as the
database does is taken from there instead (``_facts_in_memory``; the newest contest; and the
case row and its predictions a lease read ahead: ``_read_ahead_rows``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from hilt.pipelines.store import review_queue
from hilt.pipelines.store.ops import queue

if TYPE_CHECKING:
    from hilt.pipelines.store.live_queue import CaseRows, Held, LiveQueue
    from hilt.pipelines.store.unit import Unit

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PredictionRef:
    prediction_id: int
    model_version: str
    label: str


@dataclass(frozen=True)
class CaseFacts:
    """What deciding on one case depends on, read in one round trip (a UNION of point
    queries is far cheaper in DuckDB than the same lookups as scalar subqueries)."""

    known: bool
    subject_ref: str
    removed: bool
    restricted: bool
    #: Newest first.
    predictions: list[PredictionRef]
    #: In audit order.
    history: list[review_queue.LoggedAction]
    any_lease: bool
    #: The holder of a live lease, if any, and since when they hold it (microseconds since
    #: the epoch).
    lease_holder: str | None
    lease_since_us: int | None
    contest_seq: int | None
    gold: bool
    manual: bool
    double: bool
    #: The decision already recorded under the request's id (an idempotent retry).
    recorded_as: str | None


def read_case_facts(unit: Unit, case_id: str, request_id: str | None, now: datetime) -> CaseFacts:
    """The facts, in one round trip. In the service, what its live queue holds as the
    database does (the lease, live restrictions, gold and manual-review arms, the salt, and
    that the case has no decision yet) is taken from there instead of from arms of the
    query (each arm costs a scan)."""
    index = unit.queue_index
    lease_row = index.lease_row(case_id) if index is not None else None
    # The case row and its predictions, as a lease read them ahead (held for waiting cases
    # only, dropped whenever those tables change): no scan of the predictions table.
    read_ahead = index.case_rows.get(case_id) if index is not None else None
    contest_row = index.contest_seq(case_id) if index is not None else None
    arms = []
    # An earlier decision under the request's id: none without an id (NULL matches no row),
    # none where the service's filter of the ids has surely not seen it (request_ids.py).
    if request_id is not None and (index is None or _may_hold(unit, index, request_id)):
        arms.append(
            "SELECT 'request', decision_id, NULL, NULL, NULL, NULL, NULL"
            " FROM decisions WHERE request_id = $rid"
        )
    if contest_row is None:
        arms.append(
            "SELECT 'contest', max(seq)::VARCHAR, NULL, NULL, NULL, NULL, NULL"
            " FROM contests WHERE case_id = $cid"
        )
    if read_ahead is None or read_ahead[0] is None:
        read_ahead = None
        arms[:0] = [
            "SELECT 'case', case_id, subject_ref, removed_seq::VARCHAR, NULL, NULL, NULL"
            " FROM cases WHERE case_id = $cid",
            "SELECT 'prediction', prediction_id::VARCHAR, model_version, label,"
            " NULL, NULL, NULL FROM predictions WHERE case_id = $cid",
        ]
    params: dict[str, Any] = {"rid": request_id, "cid": case_id}
    if index is None or not index.has_no_decisions(case_id):
        arms.append(
            "SELECT 'decision', decision_id, action, reviewer, seq::VARCHAR,"
            " undo_of, final_label FROM decisions WHERE case_id = $cid"
        )
    if index is None:
        arms.append(
            "SELECT 'restricted', kind, NULL, NULL, NULL, NULL, NULL"
            " FROM restrictions WHERE lifted_seq IS NULL"
            " AND subject_ref = (SELECT subject_ref FROM cases WHERE case_id = $cid)"
        )
        oversight = queue.oversight_arms_sql(unit.settings)
    else:
        oversight = queue.oversight_arms_sql(
            unit.settings, gold=index.has_gold, manual=index.manual_cut > 0, salt=False
        )
    if lease_row is None:
        arms.append(
            "SELECT 'lease', reviewer, (expires_at > $now)::VARCHAR,"
            " epoch_us(leased_at)::VARCHAR, NULL, NULL, NULL FROM leases WHERE case_id = $cid"
        )
        params["now"] = now
    con = unit.con
    held = unit.rows  # a group commit's rows not yet written (group_rows.py)
    if held is not None:
        if (
            held.holds("decisions", "case_id", case_id)
            or held.holds("decisions", "request_id", request_id)
            or held.holds("leases", "case_id", case_id)
            or (lease_row is None and held.holds_any("leases"))
        ):
            held.flush()
        # No other held row changes what this reads: it need not wait for them.
        con = held.con
    rows: list[tuple[Any, ...]] = []
    if arms or oversight:
        query = " UNION ALL ".join(arms) + oversight
        if not arms:  # the oversight arms alone: drop their leading UNION ALL
            query = query.removeprefix(" UNION ALL ")
        params = {k: v for k, v in params.items() if "$" + k in query}
        rows = con.execute(query, params).fetchall()
    if read_ahead is not None:
        rows.extend(_read_ahead_rows(read_ahead))
    if contest_row is not None and contest_row[0] is not None:
        rows.append(("contest", str(contest_row[0]), None, None, None, None, None))
    if index is not None:
        rows.extend(_facts_in_memory(unit, index, rows, lease_row, now))
    gold, manual, double = queue.oversight_flags(unit.settings, rows, case_id)
    case_row = next((r for r in rows if r[0] == "case"), None)
    live_lease = next((r for r in rows if r[0] == "lease" and r[2] == "true"), None)
    contest_text = next((r[1] for r in rows if r[0] == "contest"), None)
    return CaseFacts(
        known=case_row is not None,
        subject_ref=str(case_row[2]) if case_row is not None else "",
        removed=case_row is not None and case_row[3] is not None,
        restricted=any(r[0] == "restricted" for r in rows),
        predictions=sorted(
            (PredictionRef(int(r[1]), str(r[2]), str(r[3])) for r in rows if r[0] == "prediction"),
            key=lambda p: -p.prediction_id,
        ),
        history=sorted(
            (
                review_queue.LoggedAction(
                    decision_id=r[1],
                    action=r[2],
                    reviewer=r[3],
                    seq=int(r[4]),
                    undo_of=r[5],
                    final_label=r[6],
                )
                for r in rows
                if r[0] == "decision"
            ),
            key=lambda a: a.seq,
        ),
        any_lease=any(r[0] == "lease" for r in rows),
        lease_holder=live_lease[1] if live_lease else None,
        lease_since_us=int(live_lease[3]) if live_lease else None,
        contest_seq=int(contest_text) if contest_text is not None else None,
        gold=gold,
        manual=manual,
        double=double,
        recorded_as=next((r[1] for r in rows if r[0] == "request"), None),
    )


def _may_hold(unit: Unit, index: LiveQueue, request_id: str) -> bool:
    """Whether a decision row may have ``request_id`` (False: surely none), the filter's
    stored ids read on first use on the connection as the transaction stands."""
    ids = index.request_ids
    if not ids.built:
        held = unit.rows
        ids.ensure(held.con if held is not None else unit.con)
    return ids.may_hold(request_id)


def _read_ahead_rows(found: CaseRows) -> list[tuple[Any, ...]]:
    """The case and prediction arms of ``read_case_facts``, from the rows a lease read ahead
    (``cases.read_case_rows``: the cases row, then each prediction's ``PREDICTION_COLUMNS``)."""
    case, _, predictions = found
    assert case is not None
    removed = case[4]
    out: list[tuple[Any, ...]] = [
        ("case", case[0], case[1], None if removed is None else str(removed), None, None, None)
    ]
    for p in predictions:
        out.append(("prediction", str(p[0]), p[2], p[4], None, None, None))
    return out


def _facts_in_memory(
    unit: Unit,
    index: LiveQueue,
    rows: list[tuple[Any, ...]],
    lease_row: tuple[Held | None] | None,
    now: datetime,
) -> list[tuple[Any, ...]]:
    """The arms ``read_case_facts`` left to the live queue, as the query would return them."""
    out: list[tuple[Any, ...]] = []
    case_row = next((r for r in rows if r[0] == "case"), None)
    if case_row is not None and str(case_row[2]) in index.restricted:
        out.append(("restricted", None, None, None, None, None, None))
    if unit.settings.oversight.double_review_share > 0:
        out.append(("salt", index.salt, None, None, None, None, None))
    if lease_row is not None and lease_row[0] is not None:
        held = lease_row[0]
        since_us = (held.leased_at - EPOCH) // timedelta(microseconds=1)
        live = "true" if held.expires_at > now else "false"
        out.append(("lease", held.reviewer, live, str(since_us), None, None, None))
    return out
