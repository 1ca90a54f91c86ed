"""The service's live queue (``live_queue.py``) equals the queue the database defines.

A seeded random sequence of every operation that changes the queue runs through the store
service's own dispatch (``StoreService.run`` / ``run_bulk`` / the group committer; the
service on a real DuckDB file, with a clock the test moves), and after every operation the
in-memory queue, its leases and the case it would lease to each reviewer are compared
with the SQL (``review_queue.queue_state_sql`` and ``queue.choose_by_sql``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import duckdb
import polars as pl

from hilt.pipelines.errors import HiltError
from hilt.pipelines.store import DecisionRequest, double_review, review_queue, sql
from hilt.pipelines.store.config_watch import ConfigWatch
from hilt.pipelines.store.live_queue import QUEUE_COLUMNS, Waiting
from hilt.pipelines.store.modes.embedded import connect
from hilt.pipelines.store.modes.service import StoreService
from hilt.pipelines.store.operations import Store
from hilt.pipelines.store.ops import queue
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


def check_index(service: StoreService, clock: Clock, step: str, turn: int) -> None:
    """The index, as the service would use it next, equals the database's queue: its
    cases, its leases, and (for one reviewer and strategy in turn) its choice and counts."""
    users = {name: service.lookup(name) for name in REVIEWERS}
    with service.mutex:
        service.core(users["alice"])  # builds the index if it is due
        index = service.queue_index
        assert not index.staged, step
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
        now = clock.now
        threshold = float(service.settings.review.decision_threshold)
        name = REVIEWERS[turn % len(REVIEWERS)]
        strategy = index.ORDERED[turn // len(REVIEWERS) % len(index.ORDERED)]
        unit = service.core(users[name]).unit("reviewer")
        _, by_sql = queue.choose_by_sql(unit, strategy, now)
        assert by_sql is not None
        mine = (index.choose(name, now, strategy, threshold), *index.counts(name, now))
        assert mine == tuple(by_sql), (step, name, strategy)


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
    r.decide(who, DecisionRequest(case_id=case.case_id, action=action, **fields))


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
    ws = make_workspace(tmp_path, cases_frame, double_review_share=0.5, gold_rate=0.3)
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
        (3, step_contest), (3, step_adjudicate), (3, step_restrict), (1, step_erase),
        (1, step_gold), (2, step_halt_or_resume), (2, lambda run: step_ingest(run, cases_frame)),
    ]  # fmt: skip
    kinds: dict[str, int] = {}
    try:
        for n in range(STEPS):
            roll = rng.random()
            if roll < 0.04:
                name = "expire"
                clock.now += timedelta(seconds=service.settings.review.lease_seconds + 1)
            elif roll < 0.06:
                name = "restart"
                service = r.service = start()
            else:
                weights = [w for w, _ in steps]
                action = rng.choices([f for _, f in steps], weights)[0]
                name = getattr(action, "__name__", "ingest")
                try:
                    action(r)
                except HiltError as e:  # a refusal: nothing written, the index unchanged
                    name += f" refused ({type(e).__name__})"
            kinds[name.split(" ")[0]] = kinds.get(name.split(" ")[0], 0) + 1
            check_index(service, clock, f"step {n}: {name}", n)
    finally:
        con.close()
    # The sequence covered the review path and the rare operations alike.
    assert {"step_decide", "step_undo", "step_adjudicate", "step_erase", "restart"} <= set(kinds), (
        kinds
    )
    assert kinds["step_decide"] > 30
