"""Group commit in the store service: leases and decisions that arrive together share one
transaction and one append to the audit chain; one refused inside the group is refused
alone; a group that fails after writing is rolled back and each request retried alone.

In process (``StoreService`` on a real DuckDB file, its own dispatch): the group is handed
to the committer as the writer thread hands it. That every acknowledged decision survives
a kill -9 of the service while groups commit is ``test_concurrency.py``'s kill test.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import duckdb
import polars as pl
import pytest

from hilt.pipelines.errors import ConflictError, InputError, StoreError
from hilt.pipelines.store import DecisionRequest
from hilt.pipelines.store.audit.chain import utc_timestamp
from hilt.pipelines.store.case_records import Decision
from hilt.pipelines.store.config_watch import ConfigWatch
from hilt.pipelines.store.group_rows import GroupRows
from hilt.pipelines.store.modes.embedded import connect
from hilt.pipelines.store.modes.service import SERVICE_USER, StoreService
from hilt.pipelines.store.operations import Store
from hilt.pipelines.store.ops import cases
from hilt.pipelines.store.user_records import User
from hilt.pipelines.workspace import Workspace
from tests.conftest import TEST_MODEL, issue_tokens


@contextmanager
def in_process_service(ws: Workspace, *, counted: bool = False) -> Iterator[StoreService]:
    """The store service of ``ws`` in this process (no HTTP), as ``hilt store serve`` sets
    it up: one connection on one DuckDB thread, the config in force admitted. ``counted``:
    its connection counts the statements run on it (``CountingConnection``)."""
    con = connect(ws)
    con.execute("SET threads = 1")
    try:
        watch = ConfigWatch(ws, owner=True)
        served = CountingConnection(con) if counted else con
        yield StoreService(
            ws, watch.admit(con, despite_drift=False), cast(Any, served), config=watch
        )
    finally:
        con.close()


def count(service: StoreService, table: str) -> int:
    return int(service.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


@pytest.mark.obligation("AI Act 12")
def test_a_group_commits_together_and_a_refusal_inside_it_is_refused_alone(
    loaded_workspace: Workspace,
) -> None:
    ws = loaded_workspace
    issue_tokens(ws, ws.settings())
    with in_process_service(ws) as service:
        alice, bob, lena = (service.lookup(n) for n in ("alice", "bob", "lena"))
        held: dict[str, str] = {}
        for user in (alice, bob, lena):
            leased = service.run(user, Store.next_case, {"strategy": None})
            assert leased is not None
            held[user.name] = leased.case.case_id
        a, b, c = held["alice"], held["bob"], held["lena"]
        decisions, events = count(service, "decisions"), count(service, "audit_log")

        group: list[tuple[User, DecisionRequest]] = [
            (alice, DecisionRequest(case_id=a, action="accept", request_id="g-1")),
            # Authority: alice's case, decided a moment ago in this same transaction.
            (bob, DecisionRequest(case_id=a, action="accept", request_id="g-2")),
            # Validation: an override names the class the reviewer chose.
            (bob, DecisionRequest(case_id=b, action="override", request_id="g-3")),
            (bob, DecisionRequest(case_id=b, action="accept", request_id="g-4")),
            # An idempotency key already used (by g-1, in this transaction) for another case.
            (lena, DecisionRequest(case_id=c, action="accept", request_id="g-1")),
            (lena, DecisionRequest(case_id=c, action="accept", request_id="g-5")),
        ]
        answers: list[Future[Decision]] = [Future() for _ in group]
        with service.mutex:
            service._commit_group(
                [
                    (u, Store.record_decision, {"request": r}, f)
                    for (u, r), f in zip(group, answers, strict=True)
                ]
            )
        # One transaction for all six requests.
        assert service.group_stats == {"groups": 1, "requests": 6, "largest": 6}
        refused = [
            (u.name, r.request_id, type(f.exception()))
            for (u, r), f in zip(group, answers, strict=True)
            if f.exception() is not None
        ]
        # The second "g-1" is lena's: refused with nothing of hers written.
        assert refused == [
            ("bob", "g-2", ConflictError),
            ("bob", "g-3", InputError),
            ("lena", "g-1", ConflictError),
        ]
        committed = {f.result().request_id: f.result() for f in answers if f.exception() is None}
        assert {rid: d.case_id for rid, d in committed.items()} == {"g-1": a, "g-4": b, "g-5": c}

        # In the store: the three, each with its own chained audit event, and nothing else.
        assert count(service, "decisions") == decisions + 3
        assert count(service, "audit_log") == events + 3
        stored = service.con.execute(
            "SELECT request_id, case_id, reviewer, seq FROM decisions"
            " WHERE request_id LIKE 'g-%' ORDER BY seq"
        ).fetchall()
        assert [(r[0], r[1], r[2]) for r in stored] == [
            ("g-1", a, "alice"),
            ("g-4", b, "bob"),
            ("g-5", c, "lena"),
        ]
        assert [r[3] for r in stored] == [d.seq for d in committed.values()]
        report = service.read(service.lookup("otto"), Store.verify, {})
        assert report.ok, report.summary()
        # The live queue followed the commit: the three cases left it, their leases went.
        assert not ({a, b, c} & set(service.queue_index.waiting))
        assert not ({a, b, c} & set(service.queue_index.leases))


@pytest.mark.obligation("AI Act 14")
def test_leases_share_a_group_and_never_hold_one_case_twice_and_a_failed_group_is_retried_alone(
    loaded_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = loaded_workspace
    with in_process_service(ws) as service:
        alice, bob, lena = (service.lookup(n) for n in ("alice", "bob", "lena"))
        events = count(service, "audit_log")
        nxt = {"strategy": None}
        leases: list[tuple[User, Any, dict[str, Any]]] = [
            (alice, Store.next_case, nxt),
            (bob, Store.next_case, nxt),
            (lena, Store.next_case, nxt),
            # Her own lease again, leased a moment ago in this same transaction.
            (alice, Store.next_case, nxt),
        ]
        answers: list[Future[Any]] = [Future() for _ in leases]
        with service.mutex:
            service._commit_group(
                [(u, op, a, f) for (u, op, a), f in zip(leases, answers, strict=True)]
            )
        assert service.group_stats == {"groups": 1, "requests": 4, "largest": 4}
        got = [f.result().case.case_id for f in answers]
        # Each leased the queue's next case as the transaction stood: three cases, none
        # held twice; alice's second request is her own lease again.
        assert len(set(got[:3])) == 3 and got[3] == got[0], got
        a, b, c = got[:3]
        # Authority: bob's case, leased in this group, cannot be taken by name by alice.
        taken: Future[Any] = Future()
        with service.mutex:
            service._commit_group([(alice, Store.lease_case, {"case_id": b}, taken)])
        assert isinstance(taken.exception(), ConflictError)
        stored = service.con.execute("SELECT case_id, reviewer FROM leases").fetchall()
        assert dict(stored) == {a: "alice", b: "bob", c: "lena"}
        assert count(service, "audit_log") == events + 3  # the refused lease wrote nothing
        assert {k: h.reviewer for k, h in service.queue_index.leases.items()} == dict(stored)

        # A group that fails after writing (here: its audit rows' INSERT) is rolled back
        # whole, and each request is then run in its own transaction: all three decided.
        def fail(con: duckdb.DuckDBPyConnection) -> None:
            raise StoreError("disk full (test)")

        decisions = count(service, "decisions")
        monkeypatch.setattr(service.head, "flush", fail)
        group = [
            (u, Store.record_decision, {"request": DecisionRequest(case_id=k, action="accept")})
            for u, k in ((alice, a), (bob, b), (lena, c))
        ]
        answers = [Future() for _ in group]
        with service.mutex:
            service._commit_group(
                [(u, op, r, f) for (u, op, r), f in zip(group, answers, strict=True)]
            )
        assert [f.result().case_id for f in answers] == [a, b, c]
        assert service.group_stats["groups"] == 2  # the failed group is not counted
        assert count(service, "decisions") == decisions + 3
        assert count(service, "leases") == 0
        with service.mutex:
            service.core(alice)  # the live queue, built again from the database
        assert not ({a, b, c} & set(service.queue_index.waiting))
        assert not service.queue_index.leases
        report = service.read(service.lookup("otto"), Store.verify, {})
        assert report.ok, report.summary()


class CountingConnection:
    """The service's connection, counting the statements run on it by their first words."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self.statements: list[str] = []

    def execute(self, query: str, *args: Any) -> Any:
        self.statements.append(" ".join(query.split()[:3]))
        return self._con.execute(query, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def run_group(service: StoreService, group: list[tuple[User, Any, dict[str, Any]]]) -> list[Any]:
    """Hand ``group`` to the committer as its writer thread does; each request's future."""
    answers: list[Future[Any]] = [Future() for _ in group]
    with service.mutex:
        service._commit_group([(u, op, a, f) for (u, op, a), f in zip(group, answers, strict=True)])
    return answers


@pytest.mark.obligation("AI Act 14")
def test_a_groups_rows_are_written_together_and_every_check_reads_them(
    loaded_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = loaded_workspace
    con = connect(ws)
    con.execute("SET threads = 1")
    counting = CountingConnection(con)
    try:
        watch = ConfigWatch(ws, owner=True)
        service = StoreService(
            ws, watch.admit(con, despite_drift=False), cast(Any, counting), config=watch
        )
        alice, bob, lena = (service.lookup(n) for n in ("alice", "bob", "lena"))
        nxt = {"strategy": None}

        # Three leases in one group: one INSERT INTO leases for the three rows.
        counting.statements.clear()
        leased = run_group(service, [(u, Store.next_case, nxt) for u in (alice, bob, lena)])
        a, b, c = (f.result().case.case_id for f in leased)
        assert counting.statements.count("INSERT INTO leases") == 1, counting.statements
        stored = con.execute(
            "SELECT case_id, reviewer, leased_at, expires_at FROM leases"
        ).fetchall()
        assert {r[0]: r[1] for r in stored} == {a: "alice", b: "bob", c: "lena"}
        held = service.queue_index.leases
        assert {r[0]: (r[1], r[2], r[3]) for r in stored} == {
            k: (h.reviewer, h.leased_at, h.expires_at) for k, h in held.items()
        }

        # Three decisions in one group: one INSERT INTO decisions, one DELETE of leases.
        counting.statements.clear()
        decided = run_group(
            service,
            [
                (
                    u,
                    Store.record_decision,
                    {"request": DecisionRequest(case_id=k, action="accept", request_id=f"h-{k}")},
                )
                for u, k in ((alice, a), (bob, b), (lena, c))
            ],
        )
        assert counting.statements.count("INSERT INTO decisions") == 1, counting.statements
        assert counting.statements.count("DELETE FROM leases") == 1, counting.statements
        rows = con.execute(
            "SELECT decision_id, request_id, case_id, reviewer, action, final_label, seq,"
            " created_at, time_on_item_ms FROM decisions WHERE request_id LIKE 'h-%' ORDER BY seq"
        ).fetchall()
        made = [f.result() for f in decided]
        assert [
            (d.decision_id, d.request_id, d.case_id, d.reviewer, d.action, d.final_label, d.seq)
            for d in made
        ] == [r[:7] for r in rows]
        assert [utc_timestamp(r[7]) for r in rows] == [d.created_at for d in made]
        assert count(service, "leases") == 0 and not service.queue_index.leases
        d_a = made[0].decision_id

        # Attack: the same undo sent twice in one group (a double click, a replay with a new
        # request id). The second must see the first, though its row is not yet written:
        # refused, and only one undo is stored.
        undo = {"request": DecisionRequest(case_id=a, action="undo", undo_of=d_a)}
        undo2 = {"request": DecisionRequest(case_id=a, action="undo", undo_of=d_a)}
        twice = run_group(
            service, [(alice, Store.record_decision, undo), (alice, Store.record_decision, undo2)]
        )
        assert twice[0].result().action == "undo"
        assert isinstance(twice[1].exception(), ConflictError)
        undos = con.execute(
            "SELECT count(*) FROM decisions WHERE case_id = ? AND action = 'undo'", [a]
        ).fetchall()
        assert undos == [(1,)]
        # The undo gave alice her lease on the case back, in the table as in memory.
        assert con.execute("SELECT case_id, reviewer FROM leases").fetchall() == [(a, "alice")]
        assert {k: h.reviewer for k, h in service.queue_index.leases.items()} == {a: "alice"}

        # Held rows that fail to be written (here: at the first statement that needs them,
        # inside the next request) fail the whole group: it is rolled back and each request
        # is retried alone, none refused for another's failure.
        real_insert = GroupRows._insert
        failures = iter([True])

        def insert_once_failing(self: GroupRows, table: str, rows: list[dict[str, Any]]) -> None:
            if next(failures, False):
                raise duckdb.IOException("disk full (test)")
            real_insert(self, table, rows)

        monkeypatch.setattr(GroupRows, "_insert", insert_once_failing)
        groups = service.group_stats["groups"]
        again = run_group(
            service,
            [
                (
                    alice,
                    Store.record_decision,
                    {"request": DecisionRequest(case_id=a, action="accept", request_id="h-again")},
                ),
                (
                    alice,
                    Store.record_decision,
                    {"request": DecisionRequest(case_id=a, action="accept", request_id="h-twice")},
                ),
            ],
        )
        assert again[0].result().request_id == "h-again"
        assert isinstance(again[1].exception(), ConflictError)  # her lease went with h-again
        assert service.group_stats["groups"] == groups  # the failed group is not counted
        assert count(service, "decisions") == 5
        report = service.read(service.lookup("otto"), Store.verify, {})
        assert report.ok, report.summary()
    finally:
        con.close()


@pytest.mark.obligation("AI Act 14")
@pytest.mark.parametrize("marked", [True, False], ids=["marked", "writer-not-marked"])
def test_a_lease_shows_the_case_as_stored_after_the_rows_read_ahead_changed(
    loaded_workspace: Workspace, monkeypatch: pytest.MonkeyPatch, marked: bool
) -> None:
    """The service reads the next waiting cases' rows ahead, a batch at a time; a change to
    them (here: the champion scores the queue again) is what the reviewer is shown next.
    Also when the writing operation forgot to say it changes the queue (``changes_queue``):
    any write off the review path drops the rows read ahead."""
    if not marked:
        monkeypatch.setattr(Store.add_predictions, "changes_queue", False)
    ws = loaded_workspace
    with in_process_service(ws) as service:
        alice, bob = service.lookup("alice"), service.lookup("bob")
        first = run_group(service, [(alice, Store.next_case, {"strategy": None})])[0].result()
        index = service.queue_index
        ahead = sorted(set(index.case_rows) - {first.case.case_id})
        assert len(ahead) >= 2, ahead  # the next leases' rows were read with the first's
        target = ahead[0]
        before = index.case_rows[target][2]
        assert before == cases.read_case_rows(service.con, [target])[target][2]
        frame = pl.DataFrame(
            {
                "case_id": [target],
                "score": [0.97],
                "label": ["1"],
                "explanation": ['{"duration": 0.4}'],
            }
        )
        service.run_bulk(
            SERVICE_USER,
            Store.add_predictions,
            {"model_version": TEST_MODEL.model, "frame": frame, "model_sha256": TEST_MODEL.sha256},
        )
        shown = run_group(service, [(bob, Store.lease_case, {"case_id": target})])[0].result()
        stored = cases.read_case_rows(service.con, [target])[target]
        assert len(stored[2]) == len(before) + 1
        assert [p.prediction_id for p in shown.case.predictions] == [int(p[0]) for p in stored[2]]
        assert shown.case.predictions[-1].score == 0.97
        assert index.case_rows[target] == stored


@pytest.mark.obligation("GDPR 32")
def test_reviewers_decide_while_a_backup_copies_the_store(
    loaded_workspace: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A backup's copy and its verification take seconds on a large store; the service lets
    its writer go meanwhile, so a reviewer's lease and decision are answered before the copy
    is done. The copy holds the head it read; its event comes after the decision."""
    from hilt.pipelines.store import backup

    ws = loaded_workspace
    issue_tokens(ws, ws.settings())
    copying, go_on = threading.Event(), threading.Event()
    real_verify = backup.verify_copy

    def held_verify(*args: Any, **kwargs: Any) -> Any:
        copying.set()
        assert go_on.wait(60), "the decision never came"
        return real_verify(*args, **kwargs)

    monkeypatch.setattr(backup, "verify_copy", held_verify)
    with in_process_service(ws) as service, ThreadPoolExecutor(1) as pool:
        alice, dana = service.lookup("alice"), service.lookup("dana")
        before = service.read(dana, Store.audit_head, {})
        taken = pool.submit(
            service.run_bulk, dana, Store.store_backup, {"dest": str(tmp_path / "b")}
        )
        assert copying.wait(60), taken.exception(timeout=0) if taken.done() else "no copy"
        # The writer is free: a lease and a decision go through while the backup waits.
        lease = run_group(service, [(alice, Store.next_case, {"strategy": None})])[0].result()
        request = DecisionRequest(case_id=lease.case.case_id, action="accept", request_id="b-1")
        decided = run_group(service, [(alice, Store.record_decision, {"request": request})])
        decision = decided[0].result(timeout=0)
        assert not taken.done()
        go_on.set()
        report = taken.result(timeout=120)
    assert before.seq <= report.head_seq < decision.seq < report.seq
    with in_process_service(ws) as service:
        verified = service.read(service.lookup("otto"), Store.verify, {})
        assert verified.ok, verified.summary()


class Recording:
    """A connection that notes each statement run on it (``execute``)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, statements: list[str]) -> None:
        self._con = con
        self.statements = statements

    def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self.statements.append(query)
        return self._con.execute(query, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


@pytest.mark.obligation("AI Act 12")
def test_a_retried_request_id_finds_its_decision_after_a_restart_and_a_new_one_is_not_looked_up(
    loaded_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service asks the decisions table about a request id only when its filter of the
    ids (``request_ids.py``) may have seen it. Attack: a client retries a decision after
    the service restarted (the filter built again from the table): the stored decision is
    the answer, and nothing is written twice."""
    ws = loaded_workspace
    issue_tokens(ws, ws.settings())
    with in_process_service(ws) as service:
        alice = service.lookup("alice")
        leased = service.run(alice, Store.next_case, {"strategy": None})
        assert leased is not None
        case_id = leased.case.case_id
        first = service.record_decision(
            alice, DecisionRequest(case_id=case_id, action="accept", request_id="r-1")
        )
        assert service.queue_index.request_ids.may_hold("r-1")
    with in_process_service(ws) as service:  # restarted
        alice = service.lookup("alice")
        decisions, events = count(service, "decisions"), count(service, "audit_log")
        again = service.record_decision(
            alice, DecisionRequest(case_id=case_id, action="accept", request_id="r-1")
        )
        assert again.decision_id == first.decision_id
        assert (count(service, "decisions"), count(service, "audit_log")) == (decisions, events)
        assert service.queue_index.request_ids.built
        # A new id is not looked up: the decision runs no statement that reads it.
        second = service.run(alice, Store.next_case, {"strategy": None})
        assert second is not None
        statements: list[str] = []
        monkeypatch.setattr(service, "con", Recording(service.con, statements))
        new = service.record_decision(
            alice,
            DecisionRequest(case_id=second.case.case_id, action="accept", request_id="r-new"),
        )
        assert new.request_id == "r-new"
        assert any("INSERT INTO decisions" in s for s in statements)  # (the recording works)
        assert not [s for s in statements if "request_id =" in s]
        assert count(service, "decisions") == decisions + 1
