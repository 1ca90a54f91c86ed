"""Group commit in the store service: leases and decisions that arrive together share one
transaction and one append to the audit chain; one refused inside the group is refused
alone; a group that fails after writing is rolled back and each request retried alone.

In process (``StoreService`` on a real DuckDB file, its own dispatch): the group is handed
to the committer as the writer thread hands it. That every acknowledged decision survives
a kill -9 of the service while groups commit is ``test_concurrency.py``'s kill test.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import duckdb
import pytest

from hilt.pipelines.errors import ConflictError, InputError, StoreError
from hilt.pipelines.store import DecisionRequest
from hilt.pipelines.store.config_watch import ConfigWatch
from hilt.pipelines.store.modes.embedded import connect
from hilt.pipelines.store.modes.service import StoreService
from hilt.pipelines.store.operations import Store
from hilt.pipelines.store.records import Decision, User
from hilt.pipelines.workspace import Workspace
from tests.conftest import issue_tokens


@contextmanager
def in_process_service(ws: Workspace) -> Iterator[StoreService]:
    """The store service of ``ws`` in this process (no HTTP), as ``hilt store serve`` sets
    it up: one connection on one DuckDB thread, the config in force admitted."""
    con = connect(ws)
    con.execute("SET threads = 1")
    try:
        watch = ConfigWatch(ws, owner=True)
        yield StoreService(ws, watch.admit(con, despite_drift=False), con, config=watch)
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
