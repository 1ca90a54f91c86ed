"""store_concurrency's click latency (benchmarks/_load.py ``Clicks``): a click sent as two
requests is the decision and the lease that follows it, summed; one sent as decide-next is
that request alone; a failure in between leaves no half click behind."""

from __future__ import annotations

from benchmarks._load import Clicks


def test_two_requests_make_one_click_and_one_request_is_one() -> None:
    clicks = Clicks()
    clicks.leased(3.0)  # the first lease: no decision before it, not a click
    clicks.decided(5.0, with_lease=False)
    clicks.leased(2.0)  # decision + the next lease: one click of 7 ms
    clicks.decided(4.0, with_lease=True)  # decide-next: the click is the one request
    assert clicks.ms == [7.0, 4.0]


def test_a_failure_between_decision_and_lease_leaves_no_click() -> None:
    clicks = Clicks()
    clicks.decided(5.0, with_lease=False)
    clicks.failed()  # e.g. the lease was refused
    clicks.leased(2.0)
    clicks.decided(6.0, with_lease=False)
    clicks.decided(1.0, with_lease=True)  # a decide-next after it drops the decision alone
    clicks.leased(9.0)
    assert clicks.ms == [1.0]
