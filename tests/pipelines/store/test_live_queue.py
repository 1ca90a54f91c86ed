"""The service's live queue (``live_queue.py``) equals the queue the database defines.

A seeded random sequence of every operation that changes the queue (the review click's
decision with its next lease among them) runs through the store service's own dispatch
(``StoreService.run`` / ``run_bulk`` / the group committer; the service on a real DuckDB
file, with a clock the test moves), and after every operation the in-memory queue, its
leases, the case it would lease to each reviewer and the day's count of final decisions are
compared with the SQL (``review_queue.queue_state_sql``, ``queue.choose_by_sql`` and
``queue.done_today_sql``), across midnight too; and the oversight report from what the
service keeps (``oversight_tally.py``) with the report counted by SQL over the whole
tables, across its one-day window's edge too.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

import duckdb
import polars as pl

from hilt.pipelines.errors import HiltError
from hilt.pipelines.store import DecisionRequest, double_review, oversight_stats, review_queue, sql
from hilt.pipelines.store.config_watch import ConfigWatch
from hilt.pipelines.store.live_queue import QUEUE_COLUMNS, Waiting
from hilt.pipelines.store.modes.embedded import connect
from hilt.pipelines.store.modes.service import StoreService
from hilt.pipelines.store.operations import Store
from hilt.pipelines.store.ops import case_facts, cases, queue
from hilt.pipelines.workspace import Workspace
from tests.conftest import TEST_MODEL, issue_tokens, predictions_for
from tests.pipelines.store.test_oversight import HISTORY, NEW, make_workspace

REVIEWERS = ("alice", "bob", "lena")
LEADS = ("max", "lena")
STEPS = 120
Action = Literal["accept", "override", "flag", "skip", "blind"]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=5)
        return self.now


def sql_queue(con: duckdb.DuckDBPyConnection, service: StoreService) -> list[Waiting]:
    cut = int(sql.scalar(con, "SELECT " + double_review.MANUAL_CUT_SQL))
    share = service.settings.oversight.double_review_share
    rows = con.execute(
        f"SELECT {QUEUE_COLUMNS} FROM ({review_queue.queue_state_sql(share, cut)}) ORDER BY case_id"
    ).fetchall()
    return [Waiting(*r) for r in rows]


def check_oversight(service: StoreService, clock: Clock, step: str, served: bool) -> None:
    """The oversight report's figures the service keeps equal their full recount by SQL,
    at the same time; and (``served``) the service's report operation is the one from
    those figures."""
    now = clock.now
    kept = service.kept_oversight(now)
    con, settings = service.con, service.settings
    counted, reviewers = oversight_stats.counted(con, settings, now)
    assert replace(kept, reviewers={}) == counted, step
    assert oversight_stats.with_reviewers(con, kept) == reviewers, step
    if served:
        report = service.read(service.lookup("lena"), Store.oversight_report, {})
        at = clock.now  # the time the operation read
        assert report == oversight_stats.report(con, settings, at, service.kept_oversight(at))


def check_index(service: StoreService, clock: Clock, step: str, turn: int, extra_case: str) -> None:
    """The index, as the service would use it next, equals the database's queue: its
    cases, its leases, and (for one reviewer and strategy in turn) its choice and counts;
    the facts a decision reads about the leased cases, the chosen one and ``extra_case``."""
    users = {name: service.lookup(name) for name in REVIEWERS}
    with service.mutex:
        service.core(users["alice"])  # builds the index if it is due
        index = service.queue_index
        assert not index.staged, step
        assert index.failures == 0, step  # every staged change applied
        assert index.rows_now() == sql_queue(service.con, service), step
        leases = {
            r[0]: (r[1], r[2], r[3])
            for r in service.con.execute(
                "SELECT case_id, reviewer, leased_at, expires_at FROM leases"
            ).fetchall()
        }
        assert {c: (h.reviewer, h.leased_at, h.expires_at) for c, h in index.leases.items()} == (
            leases
        ), step
        decided = service.con.execute("SELECT DISTINCT case_id FROM decisions").fetchall()
        assert index.decided == {str(r[0]) for r in decided}, step
        contested = service.con.execute(
            "SELECT case_id, max(seq) FROM contests GROUP BY case_id"
        ).fetchall()
        assert index.contests == {str(r[0]): int(r[1]) for r in contested}, step
        # The rows read ahead for the leases: waiting cases only, each as the tables hold it.
        held_rows = dict(index.case_rows)
        assert set(held_rows) <= set(index.waiting), step
        assert held_rows == cases.read_case_rows(service.con, [*held_rows, "no-such-case"]), step
    if turn % 4 == 0 or turn >= STEPS:
        check_oversight(service, clock, step, served=turn % 20 == 0)
    with service.mutex:
        now = clock.now
        threshold = float(service.settings.review.decision_threshold)
        name = REVIEWERS[turn % len(REVIEWERS)]
        strategy = index.ORDERED[turn // len(REVIEWERS) % len(index.ORDERED)]
        unit = service.core(users[name]).unit("reviewer")
        _, by_sql = queue.choose_by_sql(unit, strategy, now)
        assert by_sql is not None
        mine = (index.choose(name, now, strategy, threshold), *index.counts(name, now))
        assert mine == tuple(by_sql), (step, name, strategy)
        # The progress line's count of the day's final decisions (kept by the decisions).
        done = queue.done_today_sql(unit, now)
        assert index.done_today(service.con, name, now) == (
            done["done_today"],
            done["done_today_by_me"],
        ), (step, name)
        if turn % 3:
            return  # the rest every third step (a change stays until the next check)
        # What a decision checks, read with the live queue's help and by SQL alone.
        restricted = service.con.execute(
            "SELECT min(case_id) FROM cases c JOIN restrictions r USING (subject_ref)"
            " WHERE r.lifted_seq IS NULL"
        ).fetchall()
        sample = [
            *list(index.leases)[:1],
            *([by_sql[0]] if by_sql[0] else []),
            *(str(r[0]) for r in restricted if r[0] is not None),
            extra_case,
        ]
        if turn % 6 == 0:
            # A case whose row and predictions a lease read ahead, and a contested case (the
            # facts take them from memory).
            sample += [*list(index.case_rows)[-1:], *list(index.contests)[-1:]]
        by_sql_only = replace(unit, queue_index=None)
        for case_id in dict.fromkeys(sample):
            with_index = case_facts.read_case_facts(unit, case_id, "no-such-request", now)
            assert with_index == case_facts.read_case_facts(
                by_sql_only, case_id, "no-such-request", now
            ), (step, case_id)
        # The case as the lease shows it (rectified values, seed label, decisions shown).
        rectified = service.con.execute("SELECT min(case_id) FROM rectifications").fetchall()
        for case_id in {by_sql[0], rectified[0][0]} - {None}:
            assert cases.get_case(unit, case_id) == cases.get_case(by_sql_only, case_id), step


class Run:
    """The random operations, through the service's dispatch."""

    def __init__(self, ws: Workspace, service: StoreService, rng: random.Random) -> None:
        self.ws = ws
        self.service = service
        self.rng = rng
        self.done: dict[str, list[str]] = {n: [] for n in REVIEWERS}
        self.fresh = 0

    def run(self, who: str, operation: Any, **arguments: Any) -> Any:
        user = self.service.lookup(who)
        if operation.group_commit:  # leases: through the group committer, as over HTTP
            return self.service.submit(user, operation, arguments).result()
        method = self.service.run_bulk if operation.bulk else self.service.run
        return method(user, operation, arguments)

    def decide(self, who: str, request: DecisionRequest) -> None:
        decision = self.service.record_decision(self.service.lookup(who), request)
        self.done[who].append(decision.decision_id)

    def any_case(self) -> str:
        return f"APP-{self.rng.randrange(1, HISTORY + NEW + 1 + self.fresh):06d}"


def step_lease(r: Run) -> None:
    r.run(r.rng.choice(REVIEWERS), Store.next_case, strategy=r.rng.choice(("oldest", None)))


def step_lease_by_name(r: Run) -> None:
    r.run(r.rng.choice(REVIEWERS), Store.lease_case, case_id=r.any_case())


def step_decide(r: Run) -> None:
    who = r.rng.choice(REVIEWERS)
    held = r.run(who, Store.next_case)
    if held is None:
        return
    case = held.case
    predicted = case.predictions[-1].label if case.predictions else None
    actions: tuple[Action, ...] = ("accept", "accept", "override", "flag", "skip", "blind")
    action = r.rng.choice(actions)
    other = "0" if predicted == "1" else "1"
    fields: dict[str, Any] = {}
    if action == "override":
        fields = {"final_label": other, "reason_code": "income-verified", "comment": "checked"}
    elif action == "blind":
        fields = {"final_label": r.rng.choice(("0", "1"))}
    request = DecisionRequest(case_id=case.case_id, action=action, **fields)
    if len(r.done[who]) % 2:
        # Every other decision of a reviewer with the next lease, in one transaction (the
        # review panel's click): the index then follows both.
        done = r.run(who, Store.decide_and_next, request=request, strategy=None)
        r.done[who].append(done.decision.decision_id)
        if done.leased is not None:  # the counts it came with: the queue after the lease
            assert done.leased.queue == r.run(who, Store.queue_status)
        return
    r.decide(who, request)


def step_undo(r: Run) -> None:
    who = r.rng.choice(REVIEWERS)
    if not r.done[who]:
        return
    last = r.done[who][-1]
    found = r.service.con.execute(
        "SELECT case_id FROM decisions WHERE decision_id = ?", [last]
    ).fetchall()
    if found:
        r.decide(who, DecisionRequest(case_id=found[0][0], action="undo", undo_of=last))


def step_contest(r: Run) -> None:
    r.run("pia", Store.contest, case_id=r.any_case())


def step_adjudicate(r: Run) -> None:
    lead = r.rng.choice(LEADS)
    conflicts = r.service.read(r.service.lookup(lead), Store.conflicts, {})
    if conflicts:
        r.run(lead, Store.adjudicate, case_id=conflicts[0].case_id, final_label="1")


def subject(r: Run) -> str:
    return f"SYN-SUBJ-{r.rng.randrange(1, HISTORY + NEW + 1):06d}"


def step_restrict(r: Run) -> None:
    r.run(
        "pia",
        Store.subject_restrict,
        subject_id=subject(r),
        kind=r.rng.choice(("restrict", "object")),
        lift=r.rng.random() < 0.4,
    )


def step_rectify(r: Run) -> None:
    value = str(r.rng.randint(6, 48))
    r.run("pia", Store.subject_rectify, subject_id=subject(r), column="duration", value=value)


def step_erase(r: Run) -> None:
    r.run("pia", Store.subject_erase, subject_id=subject(r))


def step_gold(r: Run) -> None:
    admin = r.service.lookup("dana")
    ids = r.service.read(admin, Store.gold_candidates, {"limit": 1})
    if ids:
        frame = pl.DataFrame(
            {"case_id": ids, "score": [0.9], "label": ["1"], "explanation": ['{"duration": 0.1}']}
        )
        r.run(
            "dana",
            Store.add_gold,
            model_version=TEST_MODEL.model,
            frame=frame,
            model_sha256=TEST_MODEL.sha256,
        )


def step_halt_or_resume(r: Run) -> None:
    halted = bool(sql.scalar(r.service.con, "SELECT halted FROM system_state"))
    if halted:
        r.run("max", Store.resume)
    else:
        r.run("lena", Store.halt, reason="drift under investigation")


def step_ingest(r: Run, cases: pl.DataFrame) -> None:
    """New cases; a prediction for them only sometimes (the rest wait for manual review
    during a halt, or for a score)."""
    start = HISTORY + NEW + r.fresh
    batch = cases.slice(start, 2).drop("risk")
    r.fresh += batch.height
    r.run("dana", Store.ingest_cases, frame=batch)
    if r.rng.random() < 0.6:
        r.run(
            "dana",
            Store.add_predictions,
            model_version=TEST_MODEL.model,
            frame=predictions_for(batch),
            model_sha256=TEST_MODEL.sha256,
        )


def test_the_live_queue_equals_the_queue_sql_after_every_operation(
    tmp_path: Path, cases_frame: pl.DataFrame
) -> None:
    # A window of one day: the oversight report's window starts inside a day of decisions.
    ws = make_workspace(
        tmp_path, cases_frame, double_review_share=0.5, gold_rate=0.3, window_days=1
    )
    issue_tokens(ws, ws.settings())
    clock = Clock()
    rng = random.Random(13)
    con = connect(ws)
    con.execute("SET threads = 1")

    def start() -> StoreService:
        watch = ConfigWatch(ws, owner=True)
        return StoreService(ws, watch.admit(con, despite_drift=False), con, clock, config=watch)

    service = start()
    r = Run(ws, service, rng)
    steps: list[tuple[float, Callable[[Run], None]]] = [
        (14, step_lease), (3, step_lease_by_name), (30, step_decide), (5, step_undo),
        (3, step_contest), (3, step_adjudicate), (3, step_restrict), (2, step_rectify),
        (1, step_erase), (1, step_gold), (2, step_halt_or_resume),
        (2, lambda run: step_ingest(run, cases_frame)),
    ]  # fmt: skip
    kinds: dict[str, int] = {}
    rare: dict[str, Callable[[Run], None]] = {
        f.__name__: f for f in (step_undo, step_adjudicate, step_rectify, step_erase)
    }

    def act(n: int, roll: float, action: Callable[[Run], None] | None = None) -> None:
        nonlocal service
        if action is not None:
            name = action.__name__
        elif roll < 0.04:
            name = "expire"
            clock.now += timedelta(seconds=service.settings.review.lease_seconds + 1)
        elif roll < 0.06:
            name = "restart"
            service = r.service = start()
        elif roll < 0.075:
            # Just before midnight UTC: the next operations count into a new day.
            name = "midnight"
            midnight = datetime.combine(clock.now.date() + timedelta(days=1), time(), UTC)
            clock.now = midnight - timedelta(milliseconds=12)
        elif roll < 0.085:
            # Most of a day later: the report's window now starts among the decisions.
            name = "later"
            clock.now += timedelta(hours=17)
        else:
            weights = [w for w, _ in steps]
            action = rng.choices([f for _, f in steps], weights)[0]
            name = getattr(action, "__name__", "ingest")
        if action is not None:
            try:
                action(r)
            except HiltError as e:  # a refusal: nothing written, the index unchanged
                name += f" refused ({type(e).__name__})"
        kinds[name.split(" ")[0]] = kinds.get(name.split(" ")[0], 0) + 1
        check_index(service, clock, f"step {n}: {name}", n, r.any_case())

    try:
        for n in range(STEPS):
            act(n, rng.random())
        # The rare operations the seeded sequence missed, then a restart and a midnight.
        tail = [rare[k] for k in rare if k not in kinds]
        for n, action in enumerate(tail, start=STEPS):
            act(n, 1.0, action)
        act(STEPS + len(tail), 0.05)
        act(STEPS + len(tail) + 1, 0.07)
        act(STEPS + len(tail) + 2, 1.0, step_decide)
        act(STEPS + len(tail) + 3, 0.08)  # later: the window's edge among the decisions
        act(STEPS + len(tail) + 4, 1.0, step_decide)
        act(STEPS + len(tail) + 5, 1.0, step_undo)

        def retention(run: Run) -> None:
            """Years later: retention removes the cases and decisions past their period
            (decisions leave the table behind the figures the service keeps)."""
            clock.now += timedelta(days=service.settings.retention.decisions_days + 1)
            removed = run.run("pia", Store.retention_apply)
            assert removed.decisions_purged > 0

        act(STEPS + len(tail) + 6, 1.0, retention)
        act(STEPS + len(tail) + 7, 1.0, lambda run: step_ingest(run, cases_frame))
        act(STEPS + len(tail) + 8, 1.0, step_decide)
    finally:
        con.close()
    # Every operation kind ran, and the index was checked after it.
    covered = {"step_decide", "step_undo", "step_adjudicate", "step_erase", "step_rectify"}
    covered |= {"restart", "midnight", "later", "retention"}
    assert covered <= set(kinds), kinds
    assert kinds["step_decide"] > 30
