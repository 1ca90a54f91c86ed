"""The live review queue in memory: what the store service serves ``next_case`` from.

The database stays the truth and ``review_queue.queue_state_sql`` the definition: the
service builds this index from that very query at start (``load``), and after an operation
that changes many cases at once (ingest, a halt, an erasure, a config change: the
operations marked ``changes_queue``) it builds it again, under the same lock. The review
path changes one case at a time and updates the index for that case only: a decision by
the Python form of the same rules (``review_queue.case_state``, from the facts the
decision read), a contest or an adjudication by the one-case query
(``review_queue.case_state_sql``). Those updates are staged during the operation and
applied only once it committed (``apply``), or dropped when it did not (``discard``).

What it holds: the waiting cases with their order keys, the leases (as the ``leases``
table holds them, expired ones included: expiry is read against the clock), each
reviewer's skips (they order the queue for that reviewer), the manual-review cut of a halt
and whether the store has gold cases, and the day's final decisions (what the
reviewer's progress line counts, ``queue.done_today``: read once a day, then kept up to
date by the decisions), and which cases have decisions at all (a lease of one that has
none reads none: ``cases.case_and_history``). The embedded mode has no index (``Unit.queue_index``
is None) and reads the queue with SQL.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from hilt.pipelines.store import double_review, review_queue, sql
from hilt.pipelines.store.oversight_tally import OversightTally, Written
from hilt.pipelines.store.request_ids import RequestIds

if TYPE_CHECKING:
    import duckdb

    from hilt.pipelines.config import Settings

log = logging.getLogger("hilt.store.live_queue")

#: Order of the rows of ``review_queue.queue_state_sql`` (and of ``Waiting``'s fields).
QUEUE_COLUMNS = (
    "case_id, created_at, score, prediction_id, contested, second_opinion, second_review,"
    " manual, excluded_reviewer"
)


@dataclass(frozen=True)
class Waiting:
    """A case that needs review, as ``review_queue.queue_state_sql`` returns it."""

    case_id: str
    created_at: datetime
    score: float | None
    prediction_id: int | None
    contested: bool
    second_opinion: bool
    second_review: bool
    manual: bool
    excluded_reviewer: str | None

    def state(self) -> review_queue.CaseState:
        """The case's state as ``review_queue.case_state`` gives it (pending: it waits)."""
        return review_queue.CaseState(
            pending=True,
            contested=self.contested,
            second_opinion=self.second_opinion,
            excluded_reviewer=self.excluded_reviewer,
            second_review=self.second_review,
        )

    def tier(self) -> tuple[bool, bool, bool]:
        """Contested first, second opinions next, then second reviews (False sorts first)."""
        return (not self.contested, not self.second_opinion, not self.second_review)


#: A case's rows as a lease shows it: its cases row (case_id, subject_ref, ingest_seq,
#: created_at, removed_seq; None: no such case), its features by column, its predictions
#: (``cases.PREDICTION_COLUMNS``) by id.
CaseRows = tuple[tuple[Any, ...] | None, dict[str, Any], list[tuple[Any, ...]]]


@dataclass(frozen=True)
class Held:
    reviewer: str
    leased_at: datetime
    expires_at: datetime


def _strategy_key(strategy: str, threshold: float) -> Callable[[Waiting], tuple[Any, ...]]:
    """The order within a tier, as ``review_queue.STRATEGY_ORDER`` (not ``random``)."""
    if strategy == "uncertainty":
        return lambda w: (
            abs((w.score if w.score is not None else threshold) - threshold),
            w.created_at,
            w.case_id,
        )
    if strategy == "oldest":
        return lambda w: (w.created_at, w.case_id)
    raise ValueError(f"no in-memory order for strategy {strategy!r}")


class LiveQueue:
    """The service's queue index. Not thread-safe: use it under the service's lock."""

    #: Strategies served from memory (``random`` stays a SQL choice).
    ORDERED = ("uncertainty", "oldest")

    def __init__(self) -> None:
        self.waiting: dict[str, Waiting] = {}
        self.leases: dict[str, Held] = {}
        #: reviewer → the case of their lease (a reviewer holds at most one).
        self.lease_of: dict[str, str] = {}
        #: reviewer → case → how many times they skipped it.
        self.skips: dict[str, dict[str, int]] = {}
        self.manual_cut = 0
        self.has_gold = False
        self._double_share = 0.0
        #: (strategy, threshold) → the waiting cases sorted by (tier, strategy key, id).
        self._orders: dict[tuple[str, float], list[tuple[Any, ...]]] = {}
        self._staged: list[Callable[[duckdb.DuckDBPyConnection], None]] = []
        #: The UTC day whose final decisions ``_done`` holds (None: not read yet).
        self._done_day: date | None = None
        #: That day's final decisions not undone: decision id → reviewer.
        self._done: dict[str, str] = {}
        #: reviewer → how many of them are theirs.
        self._done_by: dict[str, int] = {}
        #: Whether a decision waits for its commit (the day's count is behind it).
        self.decision_staged = False
        #: Cases and reviewers whose leases staged changes touch (``lease_row``).
        self._touched_cases: set[str] = set()
        self._touched_reviewers: set[str] = set()
        self._touched_contests: set[str] = set()
        #: Subjects whose processing is restricted now (a live restriction or objection).
        self.restricted: set[str] = set()
        #: The store's holdout salt (fixed at ``hilt init``; double review reads it).
        self.salt = ""
        #: Cases with a rectification (``get_case`` applies them).
        self.rectified: set[str] = set()
        #: Cases with at least one row in the decisions table.
        self.decided: set[str] = set()
        #: Contested cases: case → the newest contest's seq (``review.contest``).
        self.contests: dict[str, int] = {}
        #: The decisions' request ids (``request_ids.py``): kept across ``load``, as every
        #: decision row is written by this process and an id that went stays a "maybe".
        self.request_ids = RequestIds()
        #: Waiting cases' rows as a lease shows them (``cases.case_rows``: the cases row, the
        #: features, the predictions), read ahead in the queue's order a batch at a time;
        #: a case's go when it leaves the queue, all of them when the index is built again
        #: (every operation marked to change those tables builds it again) and after any
        #: write off the review path (``forget_case_rows``), marked or not.
        self.case_rows: dict[str, CaseRows] = {}
        #: The oversight report's decision figures (``oversight_tally.py``).
        self.tally = OversightTally()
        self.loaded = False
        #: How often applying staged changes failed (the index was built again each time).
        self.failures = 0

    # ------------------------------------------------------------------ building
    def load(self, con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
        """Build everything from the database (the queue SQL, the leases, the skips)."""
        context = sql.one(
            con,
            "SELECT " + double_review.MANUAL_CUT_SQL + ", EXISTS (SELECT 1 FROM gold_cases),"
            " (SELECT value FROM meta WHERE key = 'holdout_salt')",
        )
        assert context is not None
        self.manual_cut = int(context[0])
        self.has_gold = bool(context[1])
        self.salt = str(context[2] or "")
        self.restricted = {
            str(r[0])
            for r in con.execute(
                "SELECT subject_ref FROM restrictions WHERE lifted_seq IS NULL"
            ).fetchall()
        }
        self.rectified = {
            str(r[0]) for r in con.execute("SELECT DISTINCT case_id FROM rectifications").fetchall()
        }
        self.decided = {
            str(r[0]) for r in con.execute("SELECT DISTINCT case_id FROM decisions").fetchall()
        }
        self.contests = {
            str(r[0]): int(r[1])
            for r in con.execute(
                "SELECT case_id, max(seq) FROM contests GROUP BY case_id"
            ).fetchall()
        }
        self._double_share = settings.oversight.double_review_share
        rows = con.execute(
            f"SELECT {QUEUE_COLUMNS} FROM ("
            + review_queue.queue_state_sql(self._double_share, self.manual_cut)
            + ")"
        ).fetchall()
        self.waiting = {str(r[0]): Waiting(*r) for r in rows}
        self.leases, self.lease_of = {}, {}
        for case_id, reviewer, leased_at, expires_at in con.execute(
            "SELECT case_id, reviewer, leased_at, expires_at FROM leases"
        ).fetchall():
            self.leases[case_id] = Held(reviewer, leased_at, expires_at)
            self.lease_of[reviewer] = case_id
        self.skips = {}
        for reviewer, case_id, n in con.execute(
            "SELECT reviewer, case_id, count(*) FROM decisions WHERE action = 'skip'"
            " GROUP BY reviewer, case_id"
        ).fetchall():
            self.skips.setdefault(reviewer, {})[case_id] = int(n)
        self._orders = {}
        self.case_rows = {}
        self._staged = []
        self.decision_staged = False
        self._touched_cases.clear()
        self._touched_reviewers.clear()
        self._touched_contests.clear()
        self._done_day = None  # read again on first use
        self.tally.check = True  # the operation may have changed decisions or gold cases
        self.loaded = True

    def rows_now(self) -> list[Waiting]:
        """The waiting cases, sorted by id (to compare with the SQL's)."""
        return sorted(self.waiting.values(), key=lambda w: w.case_id)

    # ------------------------------------------------------------------ staged changes
    def stage_lease(self, case_id: str, reviewer: str, now: datetime, expires: datetime) -> None:
        self._touched_cases.add(case_id)
        self._touched_reviewers.add(reviewer)
        self._staged.append(lambda con: self._lease(case_id, Held(reviewer, now, expires)))

    def stage_unlease(self, case_id: str) -> None:
        self._touched_cases.add(case_id)
        self._staged.append(lambda con: self._unlease(case_id))

    def stage_skip(self, reviewer: str, case_id: str) -> None:
        def skip(con: duckdb.DuckDBPyConnection) -> None:
            mine = self.skips.setdefault(reviewer, {})
            mine[case_id] = mine.get(case_id, 0) + 1

        self._staged.append(skip)

    def stage_state(self, case_id: str, state: review_queue.CaseState) -> None:
        """The case's new state by the Python rules: its flags change in place; a case
        that leaves the queue goes; one that comes back is read with the one-case SQL."""

        def change(con: duckdb.DuckDBPyConnection) -> None:
            known = self.waiting.get(case_id)
            if not state.pending:
                self._put(case_id, None)
            elif known is None:
                self._refresh(con, case_id)
            else:
                self._put(
                    case_id,
                    replace(
                        known,
                        contested=state.contested,
                        second_opinion=state.second_opinion,
                        second_review=state.second_review,
                        excluded_reviewer=state.excluded_reviewer,
                    ),
                )

        self._staged.append(change)

    def stage_decision(
        self, decision_id: str, reviewer: str, action: str, undo_of: str | None, at: datetime
    ) -> None:
        """A decision counts into the day's final decisions (an accept or override of the
        day held) or takes one out of them (its undo)."""

        day = at.astimezone(UTC).date()

        def change(con: duckdb.DuckDBPyConnection) -> None:
            if self._done_day is None:
                return
            if action in review_queue.DONE_ACTIONS and day == self._done_day:
                self._done[decision_id] = reviewer
                self._done_by[reviewer] = self._done_by.get(reviewer, 0) + 1
            elif action == "undo" and undo_of in self._done:
                who = self._done.pop(undo_of)
                self._done_by[who] -= 1

        self._staged.append(change)
        self.decision_staged = True

    def stage_written(self, written: Written) -> None:
        """A decision row is written (``review.write_decision``): its case has decisions,
        and the oversight figures count it."""

        def change(con: duckdb.DuckDBPyConnection) -> None:
            self.decided.add(written.case_id)
            self.tally.written(con, written)

        self._staged.append(change)
        self.decision_staged = True

    def has_no_decisions(self, case_id: str) -> bool:
        """Whether the decisions table surely has no row on the case (False: ask it)."""
        return not self.decision_staged and case_id not in self.decided

    def stage_contest(self, case_id: str, seq: int) -> None:
        """A contest of the case is written (its seq is the newest: seqs only grow)."""
        self._touched_contests.add(case_id)

        def change(con: duckdb.DuckDBPyConnection) -> None:
            self.contests[case_id] = seq

        self._staged.append(change)

    def contest_seq(self, case_id: str) -> tuple[int | None] | None:
        """The case's newest contest's seq as the contests table holds it ((None,): none),
        or None when a change staged in this transaction touches it (ask the database)."""
        if case_id in self._touched_contests:
            return None
        return (self.contests.get(case_id),)

    def stage_refresh(self, case_id: str) -> None:
        """Read the case's state again with the one-case SQL once the change committed."""
        self._staged.append(lambda con: self._refresh(con, case_id))

    def apply(self, con: duckdb.DuckDBPyConnection) -> None:
        """The operation committed: apply what it staged."""
        staged, self._staged = self._staged, []
        self.decision_staged = False
        self._touched_cases.clear()
        self._touched_reviewers.clear()
        self._touched_contests.clear()
        try:
            for change in staged:
                change(con)
        except Exception:
            # The change committed; the index is built again before its next use.
            log.warning("the live queue failed to update; it is built again")
            self.failures += 1
            self.loaded = False
            self.tally.built = False

    @property
    def staged(self) -> bool:
        """Whether changes wait for their operation's commit (the index is behind it)."""
        return bool(self._staged)

    def discard(self) -> None:
        """The operation wrote nothing: forget what it staged."""
        self._staged = []
        self.decision_staged = False
        self._touched_cases.clear()
        self._touched_reviewers.clear()
        self._touched_contests.clear()

    # ------------------------------------------------------------------ reading
    def held_now(self, now: datetime) -> Iterator[tuple[str, Held]]:
        """The live leases (case id, lease)."""
        for case_id, held in self.leases.items():
            if held.expires_at > now:
                yield case_id, held

    def queue_figures(self, now: datetime) -> tuple[int, int, datetime | None, int, int]:
        """(waiting and not held, held, when the oldest not held arrived, awaiting a second
        review, waiting for manual review), as the oversight report's SQL counts them."""
        held = {case_id for case_id, _ in self.held_now(now)}
        waiting = leased = second = manual = 0
        oldest: datetime | None = None
        for w in self.waiting.values():
            if w.case_id in held:
                leased += 1
            else:
                waiting += 1
                oldest = w.created_at if oldest is None else min(oldest, w.created_at)
            second += w.second_review
            manual += w.manual
        return waiting, leased, oldest, second, manual

    def has_lease_row(self, case_id: str, reviewer: str) -> bool:
        """Whether the leases table has a row for the case or the reviewer (live or not)."""
        return case_id in self.leases or reviewer in self.lease_of

    def lease_row(self, case_id: str) -> tuple[Held | None] | None:
        """The case's row of the leases table as the transaction sees it ((None,): none),
        or None when changes staged in this transaction touch it (ask the database)."""
        if case_id in self._touched_cases:
            return None
        held = self.leases.get(case_id)
        if held is not None and held.reviewer in self._touched_reviewers:
            return None
        return (held,)

    def own_lease(self, reviewer: str, now: datetime) -> tuple[str, datetime] | None:
        case_id = self.lease_of.get(reviewer)
        if case_id is None:
            return None
        held = self.leases[case_id]
        return (case_id, held.expires_at) if held.expires_at > now else None

    def counts(self, reviewer: str, now: datetime) -> tuple[int, int, int]:
        """(waiting and not held, held, held by ``reviewer``), as ``next_case`` counts."""
        held = mine = 0
        for case_id, lease in self.held_now(now):
            if case_id in self.waiting:
                held += 1
                mine += lease.reviewer == reviewer
        return len(self.waiting) - held, held, mine

    def done_today(
        self, con: duckdb.DuckDBPyConnection, reviewer: str, now: datetime
    ) -> tuple[int, int]:
        """(final decisions since midnight UTC, those by ``reviewer``), as
        ``queue.done_today_sql`` counts them; the day's are read once, on its first use."""
        day = now.astimezone(UTC).date()
        if self._done_day != day:
            rows = con.execute(
                review_queue.DONE_TODAY_SQL,
                [datetime(day.year, day.month, day.day, tzinfo=UTC)],
            ).fetchall()
            self._done = {str(r[0]): str(r[1]) for r in rows}
            self._done_by = {}
            for who in self._done.values():
                self._done_by[who] = self._done_by.get(who, 0) + 1
            self._done_day = day
        return len(self._done), self._done_by.get(reviewer, 0)

    def choose(self, reviewer: str, now: datetime, strategy: str, threshold: float) -> str | None:
        """The case ``next_case``'s SQL would choose for ``reviewer``: free, not excluded
        for them; by tier, then fewest skips by them, then the strategy's order."""
        order = self._order(strategy, threshold)
        skipped = self.skips.get(reviewer, {})
        best: tuple[int, str] | None = None
        tier: tuple[bool, bool, bool] | None = None
        for key in order:
            if tier is not None and key[:3] != tier:
                break
            case_id: str = key[-1]
            w = self.waiting[case_id]
            if w.excluded_reviewer == reviewer:
                continue
            held = self.leases.get(case_id)
            if held is not None and held.expires_at > now:
                continue
            tier = key[:3]
            n = skipped.get(case_id, 0)
            if n == 0:
                return case_id  # every free case before it in the tier was skipped
            if best is None or n < best[0]:
                best = (n, case_id)
        return best[1] if best is not None else None

    def read_ahead(self, case_id: str, batch: int) -> list[str]:
        """``case_id`` and up to ``batch - 1`` more waiting cases whose rows are not held
        yet, the next in the order last served (what the next leases will likely show)."""
        wanted = [case_id]
        order = next(iter(self._orders.values()), None)
        for key in order or ():
            if len(wanted) >= batch:
                break
            other: str = key[-1]
            if other != case_id and other not in self.case_rows:
                wanted.append(other)
        return wanted

    def forget_case_rows(self) -> None:
        """Drop every case's rows read ahead (read again on the next lease)."""
        self.case_rows = {}

    def keep_case_rows(self, rows: dict[str, CaseRows]) -> None:
        """Hold the rows read of the cases that wait (of others: not kept)."""
        for case_id, found in rows.items():
            if case_id in self.waiting:
                self.case_rows[case_id] = found

    # ------------------------------------------------------------------ internals
    def _order(self, strategy: str, threshold: float) -> list[tuple[Any, ...]]:
        found = self._orders.get((strategy, threshold))
        if found is None:
            key = _strategy_key(strategy, threshold)
            found = sorted((*w.tier(), *key(w), w.case_id) for w in self.waiting.values())
            self._orders[(strategy, threshold)] = found
        return found

    def _key(self, strategy: str, threshold: float, w: Waiting) -> tuple[Any, ...]:
        return (*w.tier(), *_strategy_key(strategy, threshold)(w), w.case_id)

    def _put(self, case_id: str, row: Waiting | None) -> None:
        old = self.waiting.pop(case_id, None)
        if row is not None:
            self.waiting[case_id] = row
        else:
            self.case_rows.pop(case_id, None)
        for (strategy, threshold), order in self._orders.items():
            if old is not None:
                key = self._key(strategy, threshold, old)
                i = bisect.bisect_left(order, key)
                if i < len(order) and order[i] == key:
                    del order[i]
            if row is not None:
                bisect.insort(order, self._key(strategy, threshold, row))

    def _refresh(self, con: duckdb.DuckDBPyConnection, case_id: str) -> None:
        row = sql.one(
            con,
            f"SELECT {QUEUE_COLUMNS} FROM ("
            + review_queue.case_state_sql(self._double_share, self.manual_cut)
            + ")",
            {"case_id": case_id},
        )
        self._put(case_id, Waiting(*row) if row is not None else None)

    def _lease(self, case_id: str, held: Held) -> None:
        # As ``queue.lease``: the case's old lease and the reviewer's other one go.
        self._unlease(case_id)
        other = self.lease_of.pop(held.reviewer, None)
        if other is not None:
            self.leases.pop(other, None)
        self.leases[case_id] = held
        self.lease_of[held.reviewer] = case_id

    def _unlease(self, case_id: str) -> None:
        old = self.leases.pop(case_id, None)
        if old is not None and self.lease_of.get(old.reviewer) == case_id:
            del self.lease_of[old.reviewer]
