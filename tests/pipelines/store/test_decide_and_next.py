"""The review click in one request (``decide_and_next``, POST /v1/queue/decide-next): the
decision, then the next lease, in one transaction, with every check of the two operations it
stands for.

In process, the store service on a real DuckDB file and its own dispatch (the group
committer, as over HTTP), against a twin of the same workspace opened embedded that makes
the same moves with the two operations (``record_decision``, then ``next_case``: the queue
read by SQL there). Then the attacks: another reviewer's case, a decision the store refuses,
a lease that fails after the decision, an explanation that is not the stored prediction's;
each writes nothing and leases nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import duckdb
import polars as pl
import pytest

from hilt.pipelines.dashboards.review import leased_item, review_config
from hilt.pipelines.errors import ConflictError, InputError, PermissionDeniedError, StoreError
from hilt.pipelines.store import DecisionRequest, Identity, Store, open_store_as
from hilt.pipelines.store.case_records import DecidedNext, LeasedCase
from hilt.pipelines.store.modes.service import StoreService
from hilt.pipelines.store.operation_row import Operation
from hilt.pipelines.store.ops import queue
from hilt.pipelines.workspace import Workspace
from hilt.widgets import PredictionView
from hilt.widgets.contracts.common import FeatureRange
from tests.conftest import copy_of, issue_tokens
from tests.pipelines.store.test_group_commit import (
    CountingConnection,
    count,
    in_process_service,
)
from tests.pipelines.store.test_live_queue import sql_queue


def through(service: StoreService, who: str, operation: Operation[Any, Any], **args: Any) -> Any:
    """As over HTTP: the review path through the group committer, the rest run directly."""
    user = service.lookup(who)
    if operation.group_commit:
        return service.submit(user, operation, args).result()
    return service.run(user, operation, args)


def events(service: StoreService, after_seq: int) -> list[tuple[str, str, str, str]]:
    """(action, actor, role, object id) of each audit event after ``after_seq``."""
    rows = service.con.execute(
        "SELECT json_extract_string(entry, '$.action'), json_extract_string(entry, '$.actor'),"
        " json_extract_string(entry, '$.role'), json_extract_string(entry, '$.object_id')"
        " FROM audit_log WHERE seq > ? ORDER BY seq",
        [after_seq],
    ).fetchall()
    return [(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]


def twin_events(ws: Workspace, after_seq: int) -> list[tuple[str, str, str, str]]:
    auditor = open_store_as(ws, Identity(name="otto"))
    found = auditor.audit_events(after_seq=after_seq)
    return [(e.action, e.actor, e.role, e.object_id) for e in found]


def failing_lease(*args: Any, **kwargs: Any) -> Any:
    """``queue.next_case`` failing (a disk error, say) after the decision was written."""
    raise StoreError("the lease failed (test)")


def head(service: StoreService) -> int:
    return int(service.con.execute("SELECT max(seq) FROM audit_log").fetchall()[0][0])


def leases(service: StoreService) -> dict[str, str]:
    rows = service.con.execute("SELECT case_id, reviewer FROM leases").fetchall()
    return {str(c): str(r) for c, r in rows}


def check_live_queue(service: StoreService) -> None:
    """The service's live queue after the click is the queue the database defines (built
    again first where a failure left it to be)."""
    user = service.lookup("alice")
    with service.mutex:
        service.core(user)
        assert service.queue_index.rows_now() == sql_queue(service.con, service)
        held = {k: h.reviewer for k, h in service.queue_index.leases.items()}
        assert held == leases(service)


@contextmanager
def twins(ws: Workspace, tmp_path: Path) -> Iterator[tuple[StoreService, Workspace]]:
    """The service on ``ws``, and an embedded twin of it (a copy taken before either moved)."""
    issue_tokens(ws, ws.settings())
    twin = copy_of(ws, tmp_path / "twin")
    with in_process_service(ws) as service:
        yield service, twin


def step(
    service: StoreService, twin: Workspace, who: str, request: DecisionRequest
) -> tuple[DecidedNext, LeasedCase | None]:
    """The click both ways: one request on the service, two operations on the twin (an
    undo names the twin's own decision: the same request id's)."""
    done = through(service, who, Store.decide_and_next, request=request, strategy=None)
    if request.undo_of is not None:
        request_id = service.con.execute(
            "SELECT request_id FROM decisions WHERE decision_id = ?", [request.undo_of]
        ).fetchall()[0][0]
        undo_of = twin_rows(
            twin, "SELECT decision_id FROM decisions WHERE request_id = ?", [request_id]
        )
        request = request.model_copy(update={"undo_of": undo_of[0][0]})
    store = open_store_as(twin, Identity(name=who))
    store.record_decision(request)
    return done, store.next_case()


@pytest.mark.obligation("AI Act 14")
def test_one_request_records_the_decision_and_leases_the_next_case_as_the_two_operations_do(
    loaded_workspace: Workspace, tmp_path: Path, cases_frame: pl.DataFrame
) -> None:
    with twins(loaded_workspace, tmp_path) as (service, twin):
        leased: dict[str, str] = {}
        for who in ("alice", "bob"):
            mine = through(service, who, Store.next_case, strategy=None)
            theirs = open_store_as(twin, Identity(name=who)).next_case()
            assert mine is not None and theirs is not None
            assert mine.case.case_id == theirs.case.case_id
            leased[who] = mine.case.case_id
        a, b = leased["alice"], leased["bob"]

        def click(who: str, request: DecisionRequest) -> str | None:
            since = head(service)
            done, expected = step(service, twin, who, request)
            got = done.leased
            # The same decision, the same next case (with the same queue counts), the same
            # audit events: the decision's, then the lease's, by the reviewer in their role.
            assert done.decision.case_id == request.case_id
            assert done.decision.action == request.action
            assert done.decision.reviewer == who
            assert (got is None) == (expected is None)
            if got is not None and expected is not None:
                assert got.case.case_id == expected.case.case_id
                assert got.queue == expected.queue
                assert got.case.decisions == [] or all(
                    d.reviewer == who for d in got.case.decisions
                )
            assert events(service, since) == twin_events(twin, since)
            # (An undo leases the case back with its decision's event: one's own lease next.)
            leased_too = ["case.leased"] if request.action != "undo" else []
            assert [e[0] for e in events(service, since)] == ["decision.record", *leased_too]
            assert all(e[1] == who and e[2] == "reviewer" for e in events(service, since))
            assert done.decision.seq == since + 1
            assert leases(service) == twin_leases(twin)
            check_live_queue(service)
            return got.case.case_id if got is not None else None

        # An accept: the next case is the queue's next, never bob's.
        c = click("alice", DecisionRequest(case_id=a, action="accept", request_id="dn-1"))
        assert c is not None and c not in (a, b)
        assert leases(service) == {b: "bob", c: "alice"}
        # Undo: the case comes back to her (her own lease first), as the two operations do.
        first = service.con.execute(
            "SELECT decision_id FROM decisions WHERE request_id = 'dn-1'"
        ).fetchall()[0][0]
        again = click("alice", DecisionRequest(case_id=a, action="undo", undo_of=str(first)))
        assert again == a
        # A retry of a decision already recorded (same request id) records nothing more
        # and leases as next_case does.
        decisions = count(service, "decisions")
        retried = through(
            service,
            "alice",
            Store.decide_and_next,
            request=DecisionRequest(case_id=a, action="accept", request_id="dn-1"),
            strategy=None,
        )
        assert retried.decision.request_id == "dn-1" and count(service, "decisions") == decisions
        check_live_queue(service)
        # During a halt (the queue then takes new cases for manual review): the same.
        through(service, "lena", Store.halt, reason="drift under investigation")
        open_store_as(twin, Identity(name="lena")).halt(reason="drift under investigation")
        arrived = cases_frame.slice(300, 2).drop("risk")
        through(service, "dana", Store.ingest_cases, frame=arrived)
        open_store_as(twin, Identity(name="dana")).ingest_cases(arrived)
        held = retried.leased
        assert held is not None
        click("alice", DecisionRequest(case_id=held.case.case_id, action="skip"))
        click("bob", DecisionRequest(case_id=b, action="flag", comment="a second look"))
        report = service.read(service.lookup("otto"), Store.verify, {})
        assert report.ok, report.summary()


@pytest.mark.obligation("AI Act 14")
def test_a_click_the_store_refuses_leases_nothing_and_a_failed_lease_takes_the_decision_back(
    loaded_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = loaded_workspace
    issue_tokens(ws, ws.settings())
    with in_process_service(ws) as service:
        mine = through(service, "alice", Store.next_case, strategy=None)
        a = mine.case.case_id
        b = through(service, "bob", Store.next_case, strategy=None).case.case_id
        free = next(c for c in service.queue_index.waiting if c not in (a, b))
        before = (head(service), count(service, "decisions"), leases(service))
        assert before[2] == {a: "alice", b: "bob"}

        def refused(who: str, request: DecisionRequest, error: type[Exception]) -> str:
            with pytest.raises(error) as caught:
                through(service, who, Store.decide_and_next, request=request, strategy=None)
            # Nothing written, nothing leased: the audit head, the decisions, the leases.
            assert (head(service), count(service, "decisions"), leases(service)) == before
            check_live_queue(service)
            return str(caught.value)

        # Another reviewer's case: bob's lease stays his, and alice takes no next case.
        assert "another reviewer" in refused(
            "alice", DecisionRequest(case_id=b, action="accept"), ConflictError
        )
        # A case she does not hold (free in the queue): deciding it is no way to take it.
        assert "live lease" in refused(
            "alice", DecisionRequest(case_id=free, action="accept"), ConflictError
        )
        # Every check of the decision still runs: an override naming the model's class.
        model_said = mine.case.predictions[-1].label
        override = DecisionRequest(
            case_id=a,
            action="override",
            final_label=model_said,
            reason_code=next(iter(ws.settings().review.reason_codes)),
            comment="looks fine",
        )
        assert "other than the model" in refused("alice", override, ConflictError)
        # Who may not review may not click: an auditor (the store checks the role).
        refused("otto", DecisionRequest(case_id=a, action="accept"), PermissionDeniedError)

        # A lease that fails after the decision was written: the decision goes with it
        # (its group rolled back, then the request alone, refused again).
        monkeypatch.setattr(queue, "next_case", failing_lease)
        refused("alice", DecisionRequest(case_id=a, action="accept"), StoreError)
        monkeypatch.undo()
        done = through(
            service,
            "alice",
            Store.decide_and_next,
            request=DecisionRequest(case_id=a, action="accept"),
            strategy=None,
        )
        assert done.leased is not None and done.leased.case.case_id not in (a, b)
        assert leases(service) == {b: "bob", done.leased.case.case_id: "alice"}
        check_live_queue(service)
        report = service.read(service.lookup("otto"), Store.verify, {})
        assert report.ok, report.summary()


@pytest.mark.obligation("AI Act 14")
def test_embedded_the_click_is_one_transaction_too(
    loaded_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = loaded_workspace
    alice, otto = (open_store_as(ws, Identity(name=n)) for n in ("alice", "otto"))
    held = alice.next_case()
    assert held is not None
    a = held.case.case_id
    since = otto.audit_head().seq
    monkeypatch.setattr(queue, "next_case", failing_lease)
    with pytest.raises(StoreError):
        alice.decide_and_next(DecisionRequest(case_id=a, action="accept"))
    monkeypatch.undo()
    assert otto.audit_head().seq == since and otto.decisions() == []
    done = alice.decide_and_next(DecisionRequest(case_id=a, action="accept"))
    assert done.decision.case_id == a
    assert done.leased is not None and done.leased.case.case_id != a
    events = otto.audit_events(after_seq=since)
    assert [(e.action, e.actor, e.object_id) for e in events] == [
        ("decision.record", "alice", a),
        ("case.leased", "alice", done.leased.case.case_id),
    ]


@pytest.mark.obligation("AI Act 14(4)(c)")
def test_the_click_checks_the_explanation_against_the_prediction_a_lease_read_ahead(
    loaded_workspace: Workspace,
) -> None:
    """The explanation on screen is checked against the stored prediction as the lease read
    it ahead (the rows the decision's other facts come from), not read again: a wrong hash
    is still refused, with nothing written."""
    ws = loaded_workspace
    issue_tokens(ws, ws.settings())
    with in_process_service(ws, counted=True) as service:
        counting = cast(CountingConnection, service.con)
        settings = service.settings
        leased = through(service, "alice", Store.next_case, strategy=None)
        assert leased is not None and leased.case.case_id in service.queue_index.case_rows
        profile = service.read(service.lookup("alice"), Store.feature_profile, {})
        ranges = {
            name: FeatureRange(r.low, r.high, tuple(r.levels) if r.levels is not None else None)
            for name, r in profile.items()
        }
        view = PredictionView(review_config(settings, ranges))
        item = leased_item(leased, settings)
        view.show(item)
        shown = view.shown_explanation()
        assert shown is not None

        def click(sha: str) -> Any:
            request = DecisionRequest(
                case_id=item.case_id,
                action="accept",
                prediction_id=item.prediction_id,
                explanation_sha256=sha,
                explanation_context=shown.context,
            )
            return through(service, "alice", Store.decide_and_next, request=request, strategy=None)

        before = (head(service), count(service, "decisions"))
        counting.statements.clear()
        with pytest.raises(InputError, match="explanation_sha256 is not the hash"):
            click("0" * 64)
        assert (head(service), count(service, "decisions")) == before
        done = click(shown.sha256)
        assert done.decision.explanation_sha256 == shown.sha256
        assert not [q for q in counting.statements if q.startswith("SELECT score, label")]
        assert service.read(service.lookup("otto"), Store.verify, {}).ok


def twin_rows(ws: Workspace, query: str, params: list[Any] | None = None) -> list[Any]:
    con = duckdb.connect(str(ws.db_path), read_only=True)
    try:
        return con.execute(query, params or []).fetchall()
    finally:
        con.close()


def twin_leases(ws: Workspace) -> dict[str, str]:
    return {str(c): str(r) for c, r in twin_rows(ws, "SELECT case_id, reviewer FROM leases")}
