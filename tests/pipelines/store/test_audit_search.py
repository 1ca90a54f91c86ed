"""The auditor's read-only queries: audit_search (filtered in the store, checked against a
plain filter over every event), get_decision and get_prediction; both store modes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hilt.pipelines.errors import InputError, NotFoundError, PermissionDeniedError
from hilt.pipelines.store import DecisionRequest, Store, holding
from hilt.pipelines.store.audit_records import AuditEvent, AuditQuery
from tests.conftest import StoreFactory


def _decide(store: Store, n: int) -> list[str]:
    cases = []
    with holding(store):  # embedded: the loop on one connection
        for i in range(n):
            leased = store.next_case()
            assert leased is not None
            request = DecisionRequest(case_id=leased.case.case_id, action="accept")
            if i % 2:
                request = DecisionRequest(case_id=leased.case.case_id, action="skip")
            store.record_decision(request)
            cases.append(leased.case.case_id)
    return cases


def _all(store: Store) -> list[AuditEvent]:
    return store.audit_events(after_seq=0, limit=100_000)


def _check(otto: Store, query: AuditQuery, keep: Callable[[AuditEvent], bool]) -> None:
    """audit_search(query) equals a plain filter over every event (first page, counts)."""
    expected = [e for e in _all(otto) if keep(e)]
    page = otto.audit_search(query)
    assert page.total == len(expected)
    ordered = sorted(expected, key=lambda e: -e.seq if query.newest_first else e.seq)
    assert page.events == ordered[query.offset : query.offset + query.limit]
    assert sum(page.by_action.values()) == page.total == sum(page.by_day.values())
    for action in {e.action for e in expected}:
        assert page.by_action[action] == sum(1 for e in expected if e.action == action)


def test_filters_equal_a_plain_filter_over_every_event(store_as: StoreFactory) -> None:
    alice, bob, otto = store_as("alice"), store_as("bob"), store_as("otto")
    cases = _decide(alice, 4) + _decide(bob, 3)
    head = otto.audit_head()
    _check(otto, AuditQuery(actor="alice", limit=1000), lambda e: e.actor == "alice")
    _check(
        otto,
        AuditQuery(action="decision.record", limit=3),
        lambda e: e.action == "decision.record",
    )
    _check(otto, AuditQuery(action="case.", limit=1000), lambda e: e.action.startswith("case."))
    _check(otto, AuditQuery(object_id=cases[0]), lambda e: e.object_id == cases[0])
    _check(
        otto,
        AuditQuery(model_version="test-model-1", limit=1000),
        lambda e: e.object_id == "test-model-1" or e.payload.get("model_version") == "test-model-1",
    )
    _check(
        otto,
        AuditQuery(actor="bob", action="decision.record", newest_first=False),
        lambda e: e.actor == "bob" and e.action == "decision.record",
    )
    _check(otto, AuditQuery(seqs=[1, 3, head.seq, 10**9]), lambda e: e.seq in {1, 3, head.seq})
    _check(otto, AuditQuery(min_seq=2, max_seq=5), lambda e: 2 <= e.seq <= 5)
    # Reading wrote nothing.
    assert otto.audit_head() == head


def test_pages_are_stable_under_max_seq_while_the_log_grows(store_as: StoreFactory) -> None:
    alice, otto = store_as("alice"), store_as("otto")
    _decide(alice, 3)
    head = otto.audit_head().seq
    first = otto.audit_search(AuditQuery(max_seq=head, limit=2))
    _decide(alice, 2)  # new events arrive while the auditor pages
    second = otto.audit_search(AuditQuery(max_seq=head, limit=2, offset=2))
    assert [e.seq for e in first.events] == [head, head - 1]
    assert [e.seq for e in second.events] == [head - 2, head - 3]
    assert first.total == second.total == head


def test_time_range(store_as: StoreFactory) -> None:
    alice, otto = store_as("alice"), store_as("otto")
    _decide(alice, 2)
    events = _all(otto)
    cut = events[2].ts
    _check(otto, AuditQuery(since=cut, limit=1000), lambda e: e.ts >= cut)
    _check(otto, AuditQuery(until=cut, limit=1000), lambda e: e.ts < cut)
    day = events[0].ts[:10]
    assert otto.audit_search(AuditQuery(since=day)).total == len(events)
    assert list(otto.audit_search(AuditQuery()).by_day) == sorted({e.ts[:10] for e in events})
    assert otto.audit_search(AuditQuery(since="2999-01-01T00:00:00+02:00")).total == 0


#: Filters the store refuses, and what it says of each.
BAD_FILTERS = [
    (AuditQuery(since="yesterday"), "since must be an ISO-8601 time"),
    (AuditQuery(until="31.01.2025"), "until must be an ISO-8601 time"),
    (
        AuditQuery(since="2025-02-01T00:00:00Z", until="2025-01-01T00:00:00Z"),
        "since must be earlier than until",
    ),
]


def test_a_bad_filter_is_refused_naming_it(store_as: StoreFactory) -> None:
    otto = store_as("otto")
    for query, match in BAD_FILTERS:
        with pytest.raises(InputError, match=match):
            otto.audit_search(query)


def test_get_decision_and_prediction(store_as: StoreFactory) -> None:
    alice, otto = store_as("alice"), store_as("otto")
    leased = alice.next_case()
    assert leased is not None
    d = alice.record_decision(DecisionRequest(case_id=leased.case.case_id, action="accept"))
    assert otto.get_decision(d.decision_id) == d
    assert d.prediction_id is not None
    p = otto.get_prediction(d.prediction_id)
    assert p == leased.case.predictions[-1]
    with pytest.raises(NotFoundError, match="unknown decision id"):
        otto.get_decision("nope")
    with pytest.raises(NotFoundError, match="unknown prediction id"):
        otto.get_prediction(10**9)


def test_a_reviewer_may_not_search_the_log_or_read_predictions_by_id(
    store_as: StoreFactory,
) -> None:
    alice = store_as("alice")
    with pytest.raises(PermissionDeniedError):
        alice.audit_search(AuditQuery())
    with pytest.raises(PermissionDeniedError):
        alice.get_prediction(1)


def test_audit_stats_sum_up_the_log_as_its_events_do(store_as: StoreFactory) -> None:
    _decide(store_as("alice"), 4)
    otto = store_as("otto")
    events = _all(otto)
    stats = otto.audit_stats()
    assert stats.events == len(events)
    assert (stats.first_seq, stats.head_seq) == (events[0].seq, events[-1].seq)
    assert (stats.first_at, stats.last_at) == (events[0].ts, events[-1].ts)
    by_action: dict[str, int] = {}
    for e in events:
        by_action[e.action] = by_action.get(e.action, 0) + 1
    assert stats.by_action == by_action
    with pytest.raises(PermissionDeniedError):
        store_as("alice").audit_stats()
