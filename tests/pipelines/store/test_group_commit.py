"""Group commit in the store service: decisions that arrive together share one transaction
and one append to the audit chain; one refused inside the group is refused alone.

In process (``StoreService`` on a real DuckDB file, its own dispatch): the group is handed
to the committer as the writer thread hands it. That every acknowledged decision survives
a kill -9 of the service while groups commit is ``test_concurrency.py``'s kill test.
"""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from hilt.pipelines.errors import ConflictError, InputError
from hilt.pipelines.store import DecisionRequest
from hilt.pipelines.store.config_watch import ConfigWatch
from hilt.pipelines.store.modes.embedded import connect
from hilt.pipelines.store.modes.service import StoreService
from hilt.pipelines.store.operations import Store
from hilt.pipelines.store.records import Decision, User
from hilt.pipelines.workspace import Workspace
from tests.conftest import issue_tokens


def count(service: StoreService, table: str) -> int:
    return int(service.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


@pytest.mark.obligation("AI Act 12")
def test_a_group_commits_together_and_a_refusal_inside_it_is_refused_alone(
    loaded_workspace: Workspace,
) -> None:
    ws = loaded_workspace
    issue_tokens(ws, ws.settings())
    con = connect(ws)
    con.execute("SET threads = 1")
    try:
        watch = ConfigWatch(ws, owner=True)
        service = StoreService(ws, watch.admit(con, despite_drift=False), con, config=watch)
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
    finally:
        con.close()
