"""The review queue: lease the next case to a reviewer, and count what waits.

The queue is derived from the store (``review_queue.queue_state_sql``): cases with a
prediction and no final decision, contested ones first, second opinions next, then the
configured strategy; gold cases are mixed in at ``oversight.gold_rate``; during a halt new
cases wait for manual review. A lease holds a case for one reviewer for
``review.lease_seconds``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import ConflictError, InputError, NotFoundError, PermissionDeniedError
from hilt.pipelines.store import double_review, review_queue, sql
from hilt.pipelines.store.audit.chain import utc_timestamp
from hilt.pipelines.store.case_records import LeasedCase, QueueStatus
from hilt.pipelines.store.ops import cases
from hilt.pipelines.store.validation import one_of

if TYPE_CHECKING:
    from hilt.pipelines.store.unit import Unit


def next_case(
    unit: Unit,
    strategy: Annotated[str, Field(pattern=one_of(review_queue.STRATEGY_ORDER))] | None = None,
) -> LeasedCase | None:
    """Lease the next case for this reviewer: their own live lease first, then the
    queue in order (contested first, second opinions next, then the strategy)."""
    chosen = check_strategy(unit, strategy)
    me = unit.actor.name
    now = unit.clock()
    with unit.transaction():
        own = _own_lease(unit, now)
        state = None
        gold = False
        held = waiting = -1
        if own is not None:
            case_id, expires = str(own[0]), own[1]
            state, gold = state_of(unit, case_id, logged_actions(unit, case_id))
            if not state.pending or state.excluded_reviewer == me:
                state = None  # a stale lease (decided meanwhile): take a new case
        if state is None:
            index = unit.queue_index
            if index is not None and chosen in index.ORDERED:
                threshold = float(unit.settings.review.decision_threshold)
                picked = index.choose(me, now, chosen, threshold)
                row: tuple[Any, ...] | None = (picked, *index.counts(me, now))
                context: tuple[Any, ...] | None = (index.manual_cut, index.has_gold)
            else:
                context, row = choose_by_sql(unit, chosen, now)
            assert context is not None
            if row is None or row[0] is None:
                return None
            # A gold case, when one is due, takes the place of the queue's next case.
            gold_case = gold_instead(unit, now) if context[1] else None
            case_id = gold_case or str(row[0])
            # After the lease: this reviewer's other leases are gone, and the chosen
            # queue case (a gold case is never in the queue) is held.
            taken = 0 if gold_case else 1
            held = int(row[2]) - int(row[3]) + taken
            waiting = int(row[1]) + int(row[3]) - taken
            waiting_row = index.waiting.get(case_id) if index is not None else None
            if gold_case is None and waiting_row is not None:
                state, gold = waiting_row.state(), False  # the queue's own row
            else:
                state, gold = state_of(unit, case_id, logged_actions(unit, case_id))
            expires = _take(unit, case_id, chosen, now)
        if held < 0:  # one's own lease again (a reload): the counts from scratch
            status = queue_status(unit)
        else:
            status = QueueStatus(waiting=waiting, leased=held, **done_today(unit, now))
    return _shown(unit, case_id, state, gold, expires, status)


def check_strategy(unit: Unit, strategy: str | None) -> str:
    """The queue order a lease follows: ``strategy``, or the configured one (InputError for
    an unknown one)."""
    chosen = strategy or unit.settings.review.queue_strategy
    if chosen not in review_queue.STRATEGY_ORDER:
        raise InputError(
            f"unknown queue strategy; one of: {', '.join(review_queue.STRATEGY_ORDER)}"
        )
    return chosen


def _own_lease(unit: Unit, now: datetime) -> tuple[Any, ...] | None:
    """(case id, expires at) of this reviewer's live lease, if any."""
    if unit.queue_index is not None:
        return unit.queue_index.own_lease(unit.actor.name, now)
    return sql.one(
        unit.con,
        "SELECT l.case_id, l.expires_at FROM leases l WHERE l.reviewer = ? AND l.expires_at > ?",
        [unit.actor.name, now],
    )


def choose_by_sql(
    unit: Unit, chosen: str, now: datetime
) -> tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]:
    """The queue's next case for this reviewer by SQL (the definition; the service's
    ``live_queue`` gives the same from memory): (manual cut, whether there are gold cases),
    and (the case or None, waiting, held, held by this reviewer)."""
    order = review_queue.STRATEGY_ORDER[chosen].replace(
        "$threshold", repr(float(unit.settings.review.decision_threshold))
    )
    context = sql.one(
        unit.con,
        "SELECT " + double_review.MANUAL_CUT_SQL + ", EXISTS (SELECT 1 FROM gold_cases)",
    )
    assert context is not None
    # The queue is computed once for both the choice and the counts that the
    # panel's progress line shows (``LeasedCase.queue``).
    row = sql.one(
        unit.con,
        "WITH j AS MATERIALIZED (SELECT q.*, l.case_id IS NOT NULL AS held,"
        " coalesce(l.reviewer = $me, false) AS mine FROM ("
        + queue_sql(unit, int(context[0]))
        + ") q LEFT JOIN leases l ON l.case_id = q.case_id AND l.expires_at > $now)"
        " SELECT (SELECT q.case_id FROM j q WHERE NOT q.held"
        " AND (q.excluded_reviewer IS NULL OR q.excluded_reviewer <> $me)"
        " ORDER BY q.contested DESC, q.second_opinion DESC, q.second_review DESC,"
        " (SELECT count(*) FROM decisions s WHERE s.case_id = q.case_id"
        "  AND s.action = 'skip' AND s.reviewer = $me), " + order + " LIMIT 1),"
        " (SELECT count(*) FILTER (WHERE NOT held) FROM j),"
        " (SELECT count(*) FILTER (WHERE held) FROM j),"
        " (SELECT count(*) FILTER (WHERE held AND mine) FROM j)",
        {"now": now, "me": unit.actor.name},
    )
    return context, row


def lease_case(unit: Unit, case_id: str) -> LeasedCase:
    """Take a named case: one pending for this reviewer that nobody else holds (a case a
    lead sent them, one they come back to). A gold case is never taken by name: gold cases
    come from the queue, unannounced. The lease is audited as any other."""
    me = unit.actor.name
    now = unit.clock()
    with unit.transaction():
        found = sql.one(
            unit.con,
            "SELECT c.removed_seq, EXISTS (SELECT 1 FROM gold_cases g WHERE g.case_id = c.case_id),"
            " (SELECT reviewer FROM leases l WHERE l.case_id = c.case_id AND l.expires_at > ?),"
            " EXISTS (SELECT 1 FROM restrictions r WHERE r.subject_ref = c.subject_ref"
            "  AND r.lifted_seq IS NULL)"
            " FROM cases c WHERE c.case_id = ?",
            [now, case_id],
        )
        if found is None:
            raise NotFoundError("unknown case id")
        removed, gold, holder, restricted = found
        if removed is not None or restricted or gold:
            raise ConflictError("this case is not open to review by name")
        if holder is not None and holder != me:
            raise ConflictError("another reviewer holds this case's lease")
        history = logged_actions(unit, case_id)
        state, _ = state_of(unit, case_id, history)
        if not state.pending:
            raise ConflictError("this case has no review pending (already decided)")
        if state.excluded_reviewer == me:
            raise PermissionDeniedError("this case must be decided by another reviewer")
        expires = _take(unit, case_id, "named", now)
        status = queue_status(unit)
    return _shown(unit, case_id, state, False, expires, status)


def _take(unit: Unit, case_id: str, how: str, now: datetime) -> datetime:
    """Lease ``case_id`` to this reviewer, audited as ``case.leased``; when it expires."""
    seq = unit.append_audit(
        "case.leased",
        "case",
        case_id,
        {"strategy": how, "lease_seconds": unit.settings.review.lease_seconds},
        now,
    )
    return lease(unit, case_id, now, seq)


def _shown(
    unit: Unit,
    case_id: str,
    state: review_queue.CaseState,
    gold: bool,
    expires: datetime,
    status: QueueStatus,
) -> LeasedCase:
    """The leased case as its reviewer sees it. Independent review: their own decisions on
    the case only, and no seed label, so that a second review is blind to the first and a
    gold case looks like any other."""
    me = unit.actor.name
    case, history = cases.case_and_history(unit, case_id)
    blind = review_queue.blind_label(
        [a for a in history if a.reviewer == me] if gold else history, me
    )
    case = case.model_copy(
        update={
            "seed_label": None,
            "decisions": [d for d in case.decisions if d.reviewer == me],
        }
    )
    return LeasedCase(
        case=case,
        lease_expires_at=utc_timestamp(expires),
        contested=state.contested,
        second_opinion=state.second_opinion,
        blind_label=blind,
        queue=status,
    )


def queue_status(unit: Unit) -> QueueStatus:
    """Cases waiting and leased now, and final decisions today (in all and by this user)."""
    now = unit.clock()
    if unit.queue_index is not None and not unit.queue_index.staged:
        waiting, held, _ = unit.queue_index.counts(unit.actor.name, now)
        return QueueStatus(waiting=waiting, leased=held, **done_today(unit, now))
    row = sql.one(
        unit.con,
        "SELECT count(*) FILTER (WHERE l.case_id IS NULL),"
        " count(*) FILTER (WHERE l.case_id IS NOT NULL) FROM ("
        + queue_sql(unit)
        + ") q LEFT JOIN leases l ON l.case_id = q.case_id AND l.expires_at > ?",
        [now],
    )
    return QueueStatus(
        waiting=int(row[0]) if row else 0,
        leased=int(row[1]) if row else 0,
        **done_today(unit, now),
    )


def done_today(unit: Unit, now: datetime) -> dict[str, int]:
    """Final decisions (not undone) since midnight UTC: in all, and by this user (the
    service counts them in its live queue, the embedded mode with ``done_today_sql``)."""
    index = unit.queue_index
    if index is not None and not index.decision_staged:
        done, mine = index.done_today(unit.con, unit.actor.name, now)
        return {"done_today": done, "done_today_by_me": mine}
    return done_today_sql(unit, now)


def done_today_sql(unit: Unit, now: datetime) -> dict[str, int]:
    """``done_today`` by SQL (the definition)."""
    day_start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    done = sql.one(
        unit.con,
        "SELECT count(*), count(*) FILTER (WHERE reviewer = ?)"
        f" FROM ({review_queue.DONE_TODAY_SQL})",
        [unit.actor.name, day_start],
    )
    return {
        "done_today": int(done[0]) if done else 0,
        "done_today_by_me": int(done[1]) if done else 0,
    }


def lease(unit: Unit, case_id: str, now: datetime, seq: int) -> datetime:
    """Lease ``case_id`` to this reviewer (dropping any other lease of theirs) as of the
    audit event ``seq``; returns when it expires."""
    expires = now + timedelta(seconds=unit.settings.review.lease_seconds)
    index = unit.queue_index
    # The service's live queue holds the leases table's rows (expired ones too): a lease
    # with no row to replace is one statement fewer (unless changes wait for this commit).
    if index is None or index.staged or index.has_lease_row(case_id, unit.actor.name):
        unit.delete_rows("leases", {"case_id": case_id, "reviewer": unit.actor.name})
    unit.insert_row(
        "leases",
        {
            "case_id": case_id,
            "reviewer": unit.actor.name,
            "leased_at": now,
            "expires_at": expires,
            "seq": seq,
        },
    )
    if index is not None:
        index.stage_lease(case_id, unit.actor.name, now, expires)
    return expires


def state_of(
    unit: Unit, case_id: str, history: list[review_queue.LoggedAction]
) -> tuple[review_queue.CaseState, bool]:
    """The case's queue state for this reviewer, and whether it is a gold case."""
    row = unit.con.execute(
        "SELECT 'contest', max(seq)::VARCHAR, NULL, NULL, NULL, NULL, NULL FROM contests"
        " WHERE case_id = $cid"
        " UNION ALL SELECT 'prediction', NULL, NULL, NULL, NULL, NULL, NULL"
        " FROM (SELECT 1 FROM predictions WHERE case_id = $cid LIMIT 1)"
        + oversight_arms_sql(unit.settings),
        {"cid": case_id},
    ).fetchall()
    gold, manual, double = oversight_flags(unit.settings, row, case_id)
    has_prediction = any(r[0] == "prediction" for r in row)
    if gold:
        return review_queue.gold_state(history, unit.actor.name, has_prediction), True
    contest = next((r[1] for r in row if r[0] == "contest"), None)
    state = review_queue.case_state(
        history,
        int(contest) if contest is not None else None,
        has_prediction,
        double=double,
        manual=manual,
    )
    return state, False


def gold_instead(unit: Unit, now: datetime) -> str | None:
    """A gold case for this reviewer when one is due (``oversight.gold_rate``) and one
    they have not yet decided, flagged or skipped is free; else None. (Call it only when
    the store has gold cases.)"""
    rate = unit.settings.oversight.gold_rate
    if rate <= 0:
        return None
    me = unit.actor.name
    row = sql.one(
        unit.con,
        "SELECT (SELECT value FROM meta WHERE key = 'holdout_salt'),"
        " (SELECT count(*) FROM decisions WHERE reviewer = ?"
        "  AND action IN ('accept', 'override'))",
        [me],
    )
    if row is None:
        return None
    salt, ordinal = str(row[0]), int(row[1])
    if not double_review.gold_due(salt, me, ordinal, rate):
        return None
    found = sql.scalar(
        unit.con,
        "SELECT g.case_id FROM gold_cases g"
        " WHERE EXISTS (SELECT 1 FROM predictions p WHERE p.case_id = g.case_id)"
        # Its known answer still there (not erased), its processing not restricted.
        " AND EXISTS (SELECT 1 FROM seed_labels s WHERE s.case_id = g.case_id)"
        " AND g.case_id IN " + double_review.LIVE_CASES_SQL + ""
        " AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.case_id = g.case_id"
        "  AND l.expires_at > ?)"
        " AND g.case_id NOT IN (SELECT d.case_id FROM decisions d WHERE d.reviewer = ?"
        "  AND d.action IN ('accept', 'override', 'flag', 'skip') AND d.decision_id NOT IN"
        "  (SELECT undo_of FROM decisions WHERE action = 'undo' AND undo_of IS NOT NULL))"
        " ORDER BY sha256(? || g.case_id) LIMIT 1",
        [now, me, f"{double_review.GOLD_PREFIX}{salt}:{me}:"],
    )
    return str(found) if found is not None else None


def queue_sql(unit: Unit, manual_cut: int | None = None) -> str:
    """The queue's SQL for this store now: double review as configured; cases without a
    prediction only if they were in the store during a halt (``manual_cut``: read from
    system_state unless given)."""
    if manual_cut is None:
        manual_cut = int(sql.scalar(unit.con, "SELECT " + double_review.MANUAL_CUT_SQL))
    share = unit.settings.oversight.double_review_share
    return review_queue.queue_state_sql(share, manual_cut)


def oversight_arms_sql(
    settings: Settings, *, gold: bool = True, manual: bool = True, salt: bool = True
) -> str:
    """More arms of record_decision's one round trip: gold, manual review, and the salt
    (only when double review is on). The service leaves out what its live queue knows: no
    gold arm while the store has no gold case, no manual arm while nothing was ever halted
    (the cut is 0), the salt from memory."""
    arms = ""
    if gold:
        arms += (
            " UNION ALL SELECT 'gold', model_version, NULL, NULL, NULL, NULL, NULL"
            " FROM gold_cases WHERE case_id = $cid"
        )
    if manual:
        arms += (
            " UNION ALL SELECT 'manual', NULL, NULL, NULL, NULL, NULL, NULL FROM cases"
            " WHERE case_id = $cid AND ingest_seq < " + double_review.MANUAL_CUT_SQL + ""
            " AND NOT EXISTS (SELECT 1 FROM seed_labels WHERE case_id = $cid)"
        )
    if salt and settings.oversight.double_review_share > 0:
        arms += (
            " UNION ALL SELECT 'salt', value, NULL, NULL, NULL, NULL, NULL FROM meta"
            " WHERE key = 'holdout_salt'"
        )
    return arms


def oversight_flags(
    settings: Settings, rows: list[tuple[Any, ...]], case_id: str
) -> tuple[bool, bool, bool]:
    """(gold, manual, double) of a case, from the arms of ``oversight_arms_sql``."""
    gold = any(r[0] == "gold" for r in rows)
    manual = any(r[0] == "manual" for r in rows)
    salt = next((str(r[1]) for r in rows if r[0] == "salt"), "")
    share = settings.oversight.double_review_share
    double = not gold and share > 0 and double_review.is_double(salt, case_id, share)
    return gold, manual, double


def logged_actions(unit: Unit, case_id: str) -> list[review_queue.LoggedAction]:
    """The decisions on a case, in audit order, as the review rules read them."""
    rows = unit.con.execute(
        "SELECT decision_id, action, reviewer, seq, undo_of, final_label FROM decisions"
        " WHERE case_id = ? ORDER BY seq",
        [case_id],
    ).fetchall()
    return [review_queue.LoggedAction(*r) for r in rows]
