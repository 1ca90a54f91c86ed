"""Blind-first: the model's output is absent until the reviewer's own judgement is saved."""

from __future__ import annotations

import pytest

from hilt.widgets import ReviewSession
from tests.widgets.fakes import BackendDown, FakeBackend, FakeClock, make_config, make_item
from tests.widgets.tree import all_text, visible_buttons

SCORE_TEXT = "0.87"  # make_item's score 0.8731 as the panel would print it


def start(*items_blind: str | None) -> tuple[ReviewSession, FakeBackend, FakeClock]:
    labels = items_blind or (None, None)
    backend = FakeBackend(
        config=make_config(blind_first=True),
        items=[make_item(f"c{i}") for i in range(1, len(labels) + 1)],
    )
    clock = FakeClock()
    return ReviewSession(backend, clock=clock), backend, clock


def model_output_in(session: ReviewSession) -> bool:
    text = all_text(session)
    return SCORE_TEXT in text or "Model prediction" in text or "Predicted:" in text


@pytest.mark.obligation("AI Act 14(4)(b)")
def test_model_output_is_hidden_until_the_judgement_is_saved() -> None:
    session, backend, clock = start()
    assert session.phase == "blind"
    assert not model_output_in(session)
    assert session.prediction_view.children == (session.prediction_view.placeholder,)
    assert not session.prediction_view.model_visible
    assert "Credit amount" in all_text(session)  # the case itself is shown
    assert "My judgement: good risk" in visible_buttons(session)
    assert "My judgement: bad risk" in visible_buttons(session)
    bar = session.decision_bar
    assert bar.accept_button.disabled and bar.override_button.disabled

    clock.advance(12)
    session.blind_judgement.class_buttons["0"].click()

    [blind] = backend.decisions
    assert (blind.action, blind.final_label, blind.model_shown) == ("blind", "0", False)
    assert blind.time_on_item_ms == 12000
    assert blind.prediction_id == 101
    assert session.phase == "review"
    assert model_output_in(session)
    assert "Your blind judgement" in all_text(session) and "bad risk" in all_text(session)
    assert not bar.accept_button.disabled
    assert session.item is not None and session.item.case_id == "c1"  # same case, confirm next

    clock.advance(3)
    bar.accept_button.click()
    blind, accept = backend.decisions
    assert (accept.action, accept.model_shown, accept.case_id) == ("accept", True, "c1")
    assert accept.time_on_item_ms == 15000  # from the moment the case was shown
    assert blind.request_id != accept.request_id

    # The next case is blind again.
    assert session.item is not None and session.item.case_id == "c2"
    assert session.phase == "blind"
    assert not model_output_in(session)


def test_override_after_the_blind_judgement() -> None:
    session, backend, clock = start()
    clock.advance(2)
    session.blind_judgement.class_buttons["0"].click()
    bar = session.decision_bar
    bar.override_button.click()
    bar.reason_dropdown.value = "docs-contradict"
    bar.confirm_override_button.click()
    assert backend.actions() == ["blind", "override"]
    assert backend.decisions[1].final_label == "0"
    assert backend.decisions[1].model_shown is True


def test_accept_and_override_are_refused_before_the_judgement() -> None:
    session, backend, clock = start()
    clock.advance(5)
    session.decision_bar.accept_button.click()  # a stale click on a disabled button
    session.handle_key("a")
    session.handle_key("o")
    assert backend.submit_calls == []
    assert "judgement first" in session.status.text
    assert not model_output_in(session)


def test_skip_and_flag_before_the_judgement_record_model_not_shown() -> None:
    session, backend, clock = start()
    clock.advance(1)
    session.decision_bar.skip_button.click()
    assert backend.decisions[0].action == "skip"
    assert backend.decisions[0].model_shown is False


def test_digit_records_the_blind_judgement() -> None:
    session, backend, clock = start()
    clock.advance(4)
    session.handle_key("1")
    assert backend.decisions[0].action == "blind"
    assert backend.decisions[0].final_label == "1"
    assert model_output_in(session)


def test_a_reloaded_case_with_a_blind_label_starts_revealed() -> None:
    backend = FakeBackend(config=make_config(blind_first=True), items=[make_item("c1")])
    first = ReviewSession(backend, clock=FakeClock())
    first.blind_judgement.class_buttons["1"].click()
    # A new panel (page reload) gets the same leased case back, with its blind label.
    again = ReviewSession(backend, clock=FakeClock())
    assert again.item is not None and again.item.blind_label == "1"
    assert again.phase == "review"
    assert model_output_in(again)
    assert "Your blind judgement" in all_text(again)
    assert "My judgement: good risk" not in visible_buttons(again)


def test_after_undoing_the_blind_judgement_no_second_blind_judgement_is_asked() -> None:
    """The reviewer has seen the model's output: a new judgement could not be blind."""
    session, backend, clock = start()
    clock.advance(2)
    session.blind_judgement.class_buttons["1"].click()
    assert model_output_in(session)
    session.decision_bar.undo_button.click()
    assert backend.actions() == ["blind", "undo"]
    assert backend.decisions[1].undo_of == "d1"
    assert session.item is not None and session.item.case_id == "c1"
    assert session.item.blind_label is None  # the store forgot the undone judgement
    assert session.phase == "review"
    assert model_output_in(session)
    clock.advance(1)
    session.decision_bar.accept_button.click()
    assert backend.decisions[2].model_shown is True


def test_undo_after_blind_and_accept_returns_to_the_revealed_case() -> None:
    session, backend, clock = start()
    clock.advance(2)
    session.blind_judgement.class_buttons["1"].click()
    session.decision_bar.accept_button.click()
    session.decision_bar.undo_button.click()
    assert backend.actions() == ["blind", "accept", "undo"]
    assert backend.decisions[2].undo_of == "d2"
    assert session.item is not None and session.item.case_id == "c1"
    assert session.phase == "review"  # the blind judgement stands
    assert model_output_in(session)


def test_a_failed_blind_submission_keeps_the_model_hidden() -> None:
    session, backend, clock = start()
    backend.fail_next_submit = BackendDown("store unavailable")
    clock.advance(2)
    session.blind_judgement.class_buttons["1"].click()
    assert backend.decisions == []
    assert session.phase == "blind"
    assert not model_output_in(session)
    assert "store unavailable" in session.status.text


def test_a_double_click_on_the_judgement_records_it_once() -> None:
    session, backend, clock = start()
    clock.advance(2)
    button = session.blind_judgement.class_buttons["1"]
    button.click()
    button.click()
    assert backend.actions() == ["blind"]
