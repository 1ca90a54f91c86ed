"""ReviewSession driven by clicks into a fake backend: what reaches the store, what shows."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from hilt.widgets import ReviewSession
from hilt.widgets.review.session import EMPTY_QUEUE_TEXT
from tests.widgets.fakes import BackendDown, FakeBackend, FakeClock, make_config, make_item
from tests.widgets.tree import all_text, visible_buttons


def start(n: int = 3, **config: Any) -> tuple[ReviewSession, FakeBackend, FakeClock]:
    backend = FakeBackend(
        config=make_config(**config), items=[make_item(f"c{i}") for i in range(1, n + 1)]
    )
    clock = FakeClock()
    return ReviewSession(backend, clock=clock), backend, clock


def current(session: ReviewSession) -> str:
    assert session.item is not None
    return session.item.case_id


def test_panel_shows_reviewer_progress_case_prediction_and_buttons() -> None:
    session, _, _ = start()
    text = all_text(session)
    assert "alice" in text and "reviewer" in text
    assert "Done today" in text and "Left in queue" in text
    assert "Credit amount" in text and "0.87" in text
    assert visible_buttons(session.decision_bar) == ["Accept", "Override", "Flag", "Skip", "Undo"]
    assert session.decision_bar.undo_button.disabled


def test_button_descriptions_and_shortcut_tooltips() -> None:
    session, _, _ = start()
    bar = session.decision_bar
    for button, key in [
        (bar.accept_button, "a"),
        (bar.override_button, "o"),
        (bar.flag_button, "f"),
        (bar.skip_button, "s"),
        (bar.undo_button, "u"),
    ]:
        assert f"(shortcut: {key})" in button.tooltip


def test_accept_records_one_accept_with_prediction_and_time() -> None:
    session, backend, clock = start()
    first = session.item
    assert first is not None
    clock.advance(4.25)
    session.decision_bar.accept_button.click()

    assert len(backend.decisions) == 1
    d = backend.decisions[0]
    assert d.action == "accept"
    assert d.case_id == first.case_id
    assert d.prediction_id == first.prediction_id
    assert d.final_label is None  # the store takes the model's label
    assert d.time_on_item_ms == 4250
    assert d.model_shown is True
    assert d.request_id is not None and uuid.UUID(d.request_id).version == 4
    assert current(session) == "c2"
    assert "Accepted: good risk" in session.status.text
    assert "<b>1</b> by you" in session.progress.value


def test_time_on_item_restarts_for_each_case_and_request_ids_are_fresh() -> None:
    session, backend, clock = start()
    clock.advance(2)
    session.decision_bar.accept_button.click()
    clock.advance(7.5)
    session.decision_bar.accept_button.click()
    assert [d.time_on_item_ms for d in backend.decisions] == [2000, 7500]
    assert len({d.request_id for d in backend.decisions}) == 2


def test_a_double_click_does_not_accept_the_next_case_unseen() -> None:
    session, backend, clock = start()
    clock.advance(3)
    session.decision_bar.accept_button.click()
    clock.advance(0.05)  # the second click of a double click
    session.decision_bar.accept_button.click()
    assert backend.actions() == ["accept"]
    assert current(session) == "c2"
    assert "appeared a moment ago" in session.status.text


def test_override_without_reason_code_is_refused() -> None:
    session, backend, clock = start()
    clock.advance(5)
    bar = session.decision_bar
    bar.override_button.click()
    assert bar.override_panel in bar.children
    bar.target_buttons.value = "0"
    bar.confirm_override_button.click()

    assert backend.submit_calls == []
    assert session.status.level == "error"
    assert "reason code" in session.status.text
    assert current(session) == "c1"


def test_override_reason_code_has_no_default() -> None:
    session, _, _ = start()
    session.decision_bar.override_button.click()
    assert session.decision_bar.reason_dropdown.value is None
    assert "Confirm override" in visible_buttons(session.decision_bar)


def test_override_with_class_and_reason_submits() -> None:
    session, backend, clock = start()
    clock.advance(9)
    bar = session.decision_bar
    bar.override_button.click()
    assert bar.target_buttons.value == "0"  # two classes: the other one is preselected
    bar.reason_dropdown.value = "income-verified"
    bar.comment_area.value = "  payslips checked  "
    bar.confirm_override_button.click()

    [d] = backend.decisions
    assert (d.action, d.final_label, d.reason_code, d.comment) == (
        "override",
        "0",
        "income-verified",
        "payslips checked",
    )
    assert d.time_on_item_ms == 9000 and d.prediction_id == 101 and d.model_shown
    assert current(session) == "c2"
    assert bar.override_panel not in bar.children  # closed for the next case
    assert bar.reason_dropdown.value is None and bar.comment_area.value == ""


def test_override_to_the_models_own_class_is_refused() -> None:
    session, backend, _ = start()
    bar = session.decision_bar
    bar.override_button.click()
    bar.target_buttons.value = "1"  # the model said "1"
    bar.reason_dropdown.value = "other"
    bar.confirm_override_button.click()
    assert backend.submit_calls == []
    assert "model's own class" in session.status.text


def test_comment_required_when_configured() -> None:
    session, backend, _ = start(comment_required=True)
    bar = session.decision_bar
    bar.override_button.click()
    bar.target_buttons.value = "0"
    bar.reason_dropdown.value = "other"
    bar.comment_area.value = "   "
    bar.confirm_override_button.click()
    assert backend.submit_calls == []
    assert "comment is required" in session.status.text

    bar.comment_area.value = "income verified by phone"
    bar.confirm_override_button.click()
    assert backend.actions() == ["override"]
    assert backend.decisions[0].comment == "income verified by phone"


def test_comment_length_is_capped() -> None:
    session, backend, _ = start(max_comment_length=20)
    bar = session.decision_bar
    bar.override_button.click()
    bar.comment_area.value = "x" * 50
    assert bar.comment_area.value == "x" * 20
    assert "limited to 20 characters" in session.status.text
    assert "20 / 20" in bar.comment_counter.value
    bar.reason_dropdown.value = "other"
    bar.confirm_override_button.click()
    assert backend.decisions[0].comment == "x" * 20


def test_cancel_closes_the_override_panel_without_writing() -> None:
    session, backend, _ = start()
    bar = session.decision_bar
    bar.override_button.click()
    bar.cancel_override_button.click()
    assert bar.override_panel not in bar.children
    bar.confirm_override_button.click()  # a late click on a closed panel
    assert backend.submit_calls == []


def test_undo_writes_a_compensating_event_and_the_case_comes_back() -> None:
    session, backend, clock = start()
    assert session.decision_bar.undo_button.disabled
    clock.advance(3)
    session.decision_bar.accept_button.click()
    assert current(session) == "c2"
    assert not session.decision_bar.undo_button.disabled

    clock.advance(1.5)
    session.decision_bar.undo_button.click()
    accept, undo = backend.decisions
    assert undo.action == "undo"
    assert undo.case_id == "c1"
    assert undo.undo_of == "d1"  # the accept's decision_id, from its receipt
    assert undo.prediction_id == accept.prediction_id
    assert undo.time_on_item_ms == 1500
    assert undo.request_id not in (None, accept.request_id)
    assert current(session) == "c1"  # shown again, to be decided anew
    assert session.decision_bar.undo_button.disabled  # one level
    assert "Undone" in session.status.text
    # History is never rewritten: both events are there.
    assert backend.actions() == ["accept", "undo"]

    clock.advance(2)
    session.decision_bar.skip_button.click()
    assert backend.actions() == ["accept", "undo", "skip"]


def test_undo_click_when_nothing_to_undo_writes_nothing() -> None:
    session, backend, _ = start()
    session.decision_bar.undo_button.click()  # disabled: a stale click is ignored
    session.handle_key("u")
    assert backend.submit_calls == []


def test_flag_submits_a_flag_with_the_note() -> None:
    session, backend, clock = start()
    bar = session.decision_bar
    clock.advance(6)
    bar.flag_button.click()
    assert bar.flag_panel in bar.children
    assert "Confirm flag" in visible_buttons(bar)
    bar.flag_note.value = "Unusual term for this purpose"
    bar.confirm_flag_button.click()
    [d] = backend.decisions
    assert (d.action, d.comment, d.final_label, d.reason_code) == (
        "flag",
        "Unusual term for this purpose",
        None,
        None,
    )
    assert d.time_on_item_ms == 6000
    assert current(session) == "c2"


def test_flag_note_is_optional() -> None:
    session, backend, _ = start()
    session.decision_bar.flag_button.click()
    session.decision_bar.confirm_flag_button.click()
    assert backend.decisions[0].action == "flag"
    assert backend.decisions[0].comment is None


def test_skip_submits_skip_and_the_next_case_shows() -> None:
    session, backend, clock = start()
    clock.advance(1)
    session.decision_bar.skip_button.click()
    [d] = backend.decisions
    assert (d.action, d.case_id, d.final_label) == ("skip", "c1", None)
    assert current(session) == "c2"
    assert "Skipped" in session.status.text


def test_empty_queue_shows_a_clear_message_and_undo_stays_possible() -> None:
    session, backend, clock = start(n=1)
    clock.advance(2)
    session.decision_bar.accept_button.click()
    assert session.item is None
    assert session.phase == "empty"
    assert EMPTY_QUEUE_TEXT in all_text(session)
    assert "Queue is empty" in all_text(session)
    bar = session.decision_bar
    assert [bar.accept_button.disabled, bar.override_button.disabled] == [True, True]
    assert [bar.flag_button.disabled, bar.skip_button.disabled] == [True, True]
    assert not bar.undo_button.disabled
    assert "Credit amount" not in all_text(session)

    bar.accept_button.click()  # a stale click on an empty queue writes nothing
    assert backend.actions() == ["accept"]

    bar.undo_button.click()
    assert backend.actions() == ["accept", "undo"]
    assert current(session) == "c1"


def test_empty_from_the_start_and_check_again() -> None:
    backend = FakeBackend(items=[])
    session = ReviewSession(backend, clock=FakeClock())
    assert "Queue is empty" in all_text(session)
    assert session.reload_button in session.children
    backend.add(make_item("c9"))
    session.reload_button.click()
    assert current(session) == "c9"


def test_submit_error_goes_to_the_status_line_and_the_case_stays() -> None:
    session, backend, clock = start()
    clock.advance(2)
    backend.fail_next_submit = BackendDown("the store is not reachable")
    session.decision_bar.accept_button.click()
    assert backend.decisions == []
    assert session.status.level == "error"
    assert "the store is not reachable" in session.status.text
    assert current(session) == "c1"
    assert session.reload_button in session.children

    # The retry of the same decision re-uses the idempotency key.
    session.decision_bar.accept_button.click()
    assert len(backend.decisions) == 1
    assert backend.submit_calls[0].request_id == backend.submit_calls[1].request_id
    assert current(session) == "c2"


def test_a_click_is_one_round_trip_the_decision_with_the_next_case() -> None:
    session, backend, clock = start()
    leases = backend.next_item_calls
    for expected in ("c2", "c3"):
        clock.advance(2)
        session.decision_bar.accept_button.click()
        assert current(session) == expected
    session.decision_bar.undo_button.click()
    assert current(session) == "c2"
    assert backend.actions() == ["accept", "accept", "undo"]
    # Each click one call, which brought the next case: no lease asked for on its own.
    assert backend.submit_and_next_calls == 3
    assert backend.next_item_calls - leases == 3


def test_a_lease_that_fails_after_a_decision_saves_neither_and_the_retry_saves_once() -> None:
    session, backend, clock = start()
    backend.fail_next_item = BackendDown("lease service timed out")
    clock.advance(2)
    session.decision_bar.accept_button.click()
    assert backend.actions() == []
    assert session.status.level == "error"
    assert "Not saved" in session.status.text
    assert "lease service timed out" in session.status.text
    assert current(session) == "c1"
    assert session.reload_button in session.children
    session.decision_bar.accept_button.click()
    assert backend.actions() == ["accept"]
    assert backend.submit_calls[0].request_id == backend.submit_calls[1].request_id
    assert current(session) == "c2"


def test_next_item_error_goes_to_the_status_line() -> None:
    backend = FakeBackend(items=[make_item("c1")])
    backend.fail_next_item = BackendDown("lease service timed out")
    session = ReviewSession(backend, clock=FakeClock())
    assert session.phase == "error"
    assert "lease service timed out" in session.status.text
    assert session.reload_button in session.children
    session.reload_button.click()
    assert current(session) == "c1"


def test_errors_while_starting_go_to_the_status_line() -> None:
    class NoConfig(FakeBackend):
        def review_config(self) -> Any:
            raise BackendDown("configuration unreadable")

    session = ReviewSession(NoConfig(items=[make_item("c1")]), clock=FakeClock())
    assert session.phase == "error"
    assert "configuration unreadable" in session.status.text
    assert session.status in session.children
    assert visible_buttons(session) == []


def test_queue_status_error_does_not_break_the_panel() -> None:
    backend = FakeBackend(items=[make_item("c1")])
    backend.fail_queue_status = BackendDown("no")
    session = ReviewSession(backend, clock=FakeClock())
    assert "Progress is unavailable" in session.progress.value
    assert current(session) == "c1"


def test_a_failing_receipt_listener_is_reported_not_raised() -> None:
    session, backend, clock = start()

    def boom(_receipt: Any) -> None:
        raise ValueError("listener broke")

    session.on_receipt(boom)
    clock.advance(1)
    session.decision_bar.accept_button.click()
    assert backend.actions() == ["accept"]
    assert "listener broke" in session.status.text


def test_contested_and_second_opinion_badges() -> None:
    backend = FakeBackend(items=[make_item("c1", contested=True, second_opinion=True)])
    session = ReviewSession(backend, clock=FakeClock())
    text = all_text(session)
    assert "asked for a human review" in text
    assert "Second opinion" in text


@pytest.mark.parametrize("action", ["accept", "skip"])
def test_one_click_decisions_respect_min_dwell_setting(action: str) -> None:
    backend = FakeBackend(items=[make_item("c1"), make_item("c2")])
    session = ReviewSession(backend, clock=FakeClock(), min_dwell_ms=0)
    session.decision_bar.press(action)
    assert backend.actions() == [action]


def test_time_on_item_is_capped_at_a_day() -> None:
    session, backend, clock = start()
    clock.advance(3 * 86_400)  # left open over a long weekend
    session.decision_bar.accept_button.click()
    assert backend.decisions[0].time_on_item_ms == 86_400_000
