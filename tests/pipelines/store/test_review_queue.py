"""The review queue in both modes: leases, strategies, flag / skip / undo / blind, contests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from hilt.pipelines.errors import (
    AuthenticationError,
    ConflictError,
    PermissionDeniedError,
)
from hilt.pipelines.store import DecisionRequest, Identity, Store, open_store_as
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.workspace import Workspace
from tests.config_helpers import edit_config
from tests.conftest import (
    CONFIG,
    PROXY_SECRET,
    copy_of,
    leased,
    load_cases,
    operator,
    start_service,
)

StoreFactory = Callable[[str], Store]


def test_two_reviewers_never_hold_the_same_case(store_as: StoreFactory) -> None:
    alice, bob = store_as("alice"), store_as("bob")
    a = alice.next_case()
    b = bob.next_case()
    assert a is not None and b is not None
    assert a.case.case_id != b.case.case_id
    again = alice.next_case()
    assert again is not None and again.case.case_id == a.case.case_id  # own lease first
    with pytest.raises(ConflictError):
        bob.record_decision(DecisionRequest(case_id=a.case.case_id, action="accept"))
    status = alice.queue_status()
    assert status.leased == 2
    assert status.waiting == 198


def test_the_counts_that_come_with_a_lease_equal_a_fresh_queue_status(
    store_as: StoreFactory,
) -> None:
    """The lease carries the queue's counts (the panel's progress line) as of right after
    it: the same numbers as asking again, whatever came before (own lease taken back on a
    reload, a flag, a skip, decisions by others, another reviewer's lease)."""
    alice, bob = store_as("alice"), store_as("bob")

    def lease_and_compare(store: Store) -> str:
        leased = store.next_case()
        assert leased is not None and leased.queue is not None
        assert leased.queue == store.queue_status()
        return leased.case.case_id

    first = lease_and_compare(alice)
    assert lease_and_compare(alice) == first  # a reload: one's own lease again
    lease_and_compare(bob)
    alice.record_decision(DecisionRequest(case_id=first, action="flag"))
    second = lease_and_compare(alice)  # the flagged case stays with bob's second opinion
    alice.record_decision(DecisionRequest(case_id=second, action="skip"))
    third = lease_and_compare(alice)
    alice.record_decision(DecisionRequest(case_id=third, action="accept"))
    lease_and_compare(alice)
    status = alice.queue_status()
    assert (status.leased, status.done_today_by_me, status.done_today) == (2, 1, 1)
    assert status.waiting + status.leased == 199  # 200 cases, one decided


def test_uncertainty_strategy_serves_the_closest_to_the_threshold_first(
    store_as: StoreFactory,
) -> None:
    leased = store_as("alice").next_case("uncertainty")
    assert leased is not None
    score = leased.case.predictions[-1].score
    assert abs(score - 0.5) == 0.0  # the fixture's scores include exactly 0.5
    oldest = store_as("bob").next_case("oldest")
    assert oldest is not None and oldest.case.case_id == "APP-000001"
    assert store_as("lena").next_case("random") is not None


def taken_in_random_order(ws: Workspace, reviewer: str, n: int = 4) -> list[str]:
    """The first ``n`` cases ``reviewer`` leases (and accepts) with the random strategy."""
    store = open_store_as(ws, Identity(name=reviewer))
    taken = []
    for _ in range(n):
        leased = store.next_case("random")
        assert leased is not None
        taken.append(leased.case.case_id)
        store.record_decision(DecisionRequest(case_id=leased.case.case_id, action="accept"))
    return taken


def test_the_random_order_is_the_stores_fixed_by_its_secret_salt(
    tmp_path: Path, loaded_template: Workspace, cases_frame: pl.DataFrame
) -> None:
    """``random`` is decided by the store: a hash of the case id with the workspace's secret
    salt (random at `hilt init`; `hilt simulate` fixes it from its seed) and the reviewer.
    The same store (same salt, same cases) gives the same order, so a simulation is
    reproducible from its seed; another salt or another reviewer gives another order, and
    it is not the order of another strategy. (It was DuckDB's unseeded random(): two copies
    of one store gave two orders.)"""
    first, second, third = (copy_of(loaded_template, tmp_path / n) for n in "abc")
    order = taken_in_random_order(first, "alice")
    assert taken_in_random_order(second, "alice") == order
    assert taken_in_random_order(third, "bob") != order
    assert order != [f"APP-{i:06d}" for i in range(1, 5)]  # not the oldest first
    other_salt = Workspace.at(tmp_path / "d")
    create_workspace(other_salt, CONFIG, holdout_salt="another secret")
    load_cases(other_salt, cases_frame)
    assert taken_in_random_order(other_salt, "alice") != order


@pytest.mark.obligation("GDPR 5(1)(c)", "GDPR 25")
def test_reviewers_see_no_personal_data_in_leased_cases(store_as: StoreFactory) -> None:
    leased = store_as("alice").next_case()
    assert leased is not None
    assert leased.case.personal == {}


def test_flag_asks_for_a_second_opinion_from_someone_else(store_as: StoreFactory) -> None:
    alice, bob = store_as("alice"), store_as("bob")
    case = alice.next_case()
    assert case is not None
    cid = case.case.case_id
    alice.record_decision(
        DecisionRequest(case_id=cid, action="flag", comment="Income looks inconsistent.")
    )
    nxt = alice.next_case()
    assert nxt is not None and nxt.case.case_id != cid
    with pytest.raises(PermissionDeniedError):
        alice.record_decision(DecisionRequest(case_id=cid, action="accept"))
    second = bob.next_case()
    assert second is not None
    assert (second.case.case_id, second.second_opinion) == (cid, True)
    bob.record_decision(DecisionRequest(case_id=cid, action="accept"))
    assert [d.action for d in store_as("dana").get_case(cid).decisions] == ["flag", "accept"]


def test_skip_hands_the_case_back(store_as: StoreFactory) -> None:
    alice = store_as("alice")
    first = alice.next_case()
    assert first is not None
    alice.record_decision(DecisionRequest(case_id=first.case.case_id, action="skip"))
    nxt = alice.next_case()
    assert nxt is not None and nxt.case.case_id != first.case.case_id
    # Someone else may take the skipped case.
    other = store_as("bob").next_case()
    assert other is not None and other.case.case_id == first.case.case_id


@pytest.mark.obligation("AI Act 14(4)(d)")
def test_undo_records_a_compensating_event_and_returns_the_case(store_as: StoreFactory) -> None:
    alice, bob, dana = store_as("alice"), store_as("bob"), store_as("dana")
    leased = alice.next_case()
    assert leased is not None
    cid = leased.case.case_id
    decided = alice.record_decision(DecisionRequest(case_id=cid, action="accept"))
    with pytest.raises(PermissionDeniedError):
        bob.record_decision(
            DecisionRequest(case_id=cid, action="undo", undo_of=decided.decision_id)
        )
    undo = alice.record_decision(
        DecisionRequest(case_id=cid, action="undo", undo_of=decided.decision_id)
    )
    assert undo.undo_of == decided.decision_id
    back = alice.next_case()
    assert back is not None and back.case.case_id == cid
    history = [d.action for d in dana.get_case(cid).decisions]
    assert history == ["accept", "undo"]  # nothing rewritten
    assert decided.decision_id not in {d.decision_id for d in dana.decisions(final_only=True)}
    alice.record_decision(DecisionRequest(case_id=cid, action="accept"))
    assert store_as("otto").verify().ok


def test_blind_first_keeps_both_judgements(store_as: StoreFactory) -> None:
    alice = store_as("alice")
    leased = alice.next_case()
    assert leased is not None and leased.blind_label is None
    cid = leased.case.case_id
    alice.record_decision(
        DecisionRequest(case_id=cid, action="blind", final_label="0", model_shown=False)
    )
    again = alice.next_case()
    assert again is not None and (again.case.case_id, again.blind_label) == (cid, "0")
    accepted = alice.record_decision(DecisionRequest(case_id=cid, action="accept"))
    actions = [(d.action, d.final_label, d.model_shown) for d in alice.get_case(cid).decisions]
    assert actions[0] == ("blind", "0", False)
    assert actions[1][0] == "accept" and actions[1][2] is True
    # After undoing the accept, the blind judgement still stands: the model was seen.
    alice.record_decision(DecisionRequest(case_id=cid, action="undo", undo_of=accepted.decision_id))
    back = alice.next_case()
    assert back is not None and (back.case.case_id, back.blind_label) == (cid, "0")


@pytest.mark.obligation("AI Act 14(4)(b)")
def test_the_store_decides_what_the_reviewer_was_shown(loaded_workspace: Workspace) -> None:
    """model_shown is the store's: a client's claim is not asked. Under blind-first review
    an accept or override before the reviewer's own blind judgement is refused (a client
    that skips the judgement cannot make the automation-bias measure look better)."""
    alice = open_store_as(loaded_workspace, Identity(name="alice"))
    first = alice.next_case()
    assert first is not None
    claimed = DecisionRequest(case_id=first.case.case_id, action="accept", model_shown=False)
    assert alice.record_decision(claimed).model_shown is True  # the lease carried it
    edit_config(loaded_workspace, "blind_first = false", "blind_first = true")
    with open_store_as(loaded_workspace, Identity(operator=True), for_config=True) as admin:
        assert admin.config_apply().outcome == "applied"  # tightening: in force at once
    alice = open_store_as(loaded_workspace, Identity(name="alice"))
    leased = alice.next_case()
    assert leased is not None
    cid = leased.case.case_id
    before = alice.counts()
    with pytest.raises(ConflictError, match=r"blind-first review: record your own judgement"):
        alice.record_decision(DecisionRequest(case_id=cid, action="accept"))
    assert alice.counts() == before  # nothing written
    skipped = alice.record_decision(DecisionRequest(case_id=cid, action="skip"))
    assert skipped.model_shown is False
    again = alice.lease_case(cid)
    blind = DecisionRequest(case_id=cid, action="blind", final_label="1", model_shown=True)
    assert alice.record_decision(blind).model_shown is False
    assert again.case.case_id == cid
    accepted = alice.record_decision(DecisionRequest(case_id=cid, action="accept"))
    assert accepted.model_shown is True


@pytest.mark.obligation("GDPR 22(3)")
def test_a_contested_case_comes_first_and_goes_to_another_reviewer(
    store_as: StoreFactory,
) -> None:
    alice, bob = store_as("alice"), store_as("bob")
    leased = alice.next_case()
    assert leased is not None
    cid = leased.case.case_id
    alice.record_decision(DecisionRequest(case_id=cid, action="accept"))
    with pytest.raises(PermissionDeniedError):
        alice.contest(cid)
    store_as("pia").contest(cid)
    mine = alice.next_case()
    assert mine is not None and mine.case.case_id != cid
    with pytest.raises(PermissionDeniedError):
        alice.record_decision(DecisionRequest(case_id=cid, action="accept"))
    theirs = bob.next_case()
    assert theirs is not None and (theirs.case.case_id, theirs.contested) == (cid, True)
    bob.record_decision(DecisionRequest(case_id=cid, action="accept"))
    assert bob.next_case() is not None


def test_a_decided_case_cannot_be_decided_again(store_as: StoreFactory) -> None:
    alice = store_as("alice")
    cid = leased(alice)
    alice.record_decision(DecisionRequest(case_id=cid, action="accept"))
    with pytest.raises(ConflictError):
        store_as("bob").record_decision(DecisionRequest(case_id=cid, action="accept"))


def test_an_expired_lease_releases_the_case(loaded_workspace: Workspace) -> None:
    settings = loaded_workspace.settings()
    now = [datetime(2026, 11, 26, 9, 0, tzinfo=UTC)]

    def clock() -> datetime:
        return now[0]

    def as_user(name: str) -> Store:
        return open_store_as(loaded_workspace, Identity(name=name), clock=clock)

    alice, bob = as_user("alice"), as_user("bob")
    held = alice.next_case("oldest")
    assert held is not None
    assert bob.next_case("oldest") is not None
    now[0] += timedelta(seconds=settings.review.lease_seconds + 1)
    carol = as_user("lena")
    taken = carol.next_case("oldest")
    assert taken is not None and taken.case.case_id == held.case.case_id


def test_the_gateway_acts_only_on_behalf_of_known_users(
    loaded_workspace_behind_proxy: Workspace,
) -> None:
    ws = loaded_workspace_behind_proxy  # the gateway acts for alice behind a sign-in proxy
    op = operator(ws)
    gateway = op.add_user("voila-gateway", "gateway").token
    alice_token = op.add_user("alice", "reviewer").token
    svc = start_service(ws)
    try:

        def via_gateway(name: str) -> Identity:
            return Identity(token=gateway, on_behalf_of=name, proxy_secret=PROXY_SECRET)

        as_alice = open_store_as(svc.url, via_gateway("alice"))
        assert as_alice.whoami().name == "alice"
        d = as_alice.record_decision(DecisionRequest(case_id=leased(as_alice), action="accept"))
        assert (d.reviewer, d.reviewer_role) == ("alice", "reviewer")
        with pytest.raises(PermissionDeniedError):
            open_store_as(svc.url, Identity(token=gateway)).next_case()  # no permissions of its own
        with pytest.raises(AuthenticationError):
            open_store_as(svc.url, via_gateway("mallory")).whoami()
        with pytest.raises(PermissionDeniedError):
            open_store_as(svc.url, Identity(token=alice_token, on_behalf_of="lena")).whoami()
    finally:
        svc.stop()


def test_a_case_contested_before_anyone_decided_it_comes_first_to_anyone(
    store_as: StoreFactory,
) -> None:
    """A subject may ask for human review while the case still waits: it is served first,
    to any reviewer (nobody decided it, so nobody is excluded)."""
    last = "APP-000200"
    store_as("pia").contest(last)
    alice = store_as("alice")
    leased = alice.next_case()
    assert leased is not None
    assert (leased.case.case_id, leased.contested) == (last, True)
    decision = alice.record_decision(DecisionRequest(case_id=last, action="accept"))
    assert decision.action == "accept"
