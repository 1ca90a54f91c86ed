"""Keyboard shortcuts drive the same actions as the buttons, and never while typing."""

from __future__ import annotations

import re

from hilt.widgets import KeyboardShortcuts, ReviewSession, Shortcut
from hilt.widgets.review.keyboard import _CSS, _ESM
from tests.widgets.fakes import FakeBackend, FakeClock, make_config, make_item
from tests.widgets.tree import find_widgets


def start(**config: object) -> tuple[ReviewSession, FakeBackend, FakeClock]:
    backend = FakeBackend(
        config=make_config(**config), items=[make_item(f"c{i}") for i in range(1, 4)]
    )
    clock = FakeClock()
    session = ReviewSession(backend, clock=clock)
    clock.advance(2)
    return session, backend, clock


def test_key_map() -> None:
    kb = KeyboardShortcuts(["good risk", "bad risk"])
    got: list[Shortcut] = []
    kb.on_shortcut(got.append)
    for key in ["a", "o", "f", "s", "u", "1", "2", "3", "x", "A", "Enter"]:
        kb.handle_key(key, in_text_field=False)
    assert got == [
        Shortcut("accept"),
        Shortcut("override"),
        Shortcut("flag"),
        Shortcut("skip"),
        Shortcut("undo"),
        Shortcut("class", 0),
        Shortcut("class", 1),
        Shortcut("accept"),  # "A" (shift or caps lock) is still a
    ]
    assert kb.shortcut_keys == ["a", "o", "f", "s", "u", "1", "2"]
    assert "1 good risk" in kb.legend


def test_keys_inside_text_fields_are_ignored() -> None:
    kb = KeyboardShortcuts(["good risk", "bad risk"])
    got: list[Shortcut] = []
    kb.on_shortcut(got.append)
    assert kb.handle_key("a", in_text_field=True) is None
    assert kb.handle_key("1", in_text_field=True) is None
    assert got == []


def test_messages_from_the_browser_reach_handle_key_and_bad_ones_are_dropped() -> None:
    kb = KeyboardShortcuts(["good risk", "bad risk"])
    got: list[Shortcut] = []
    kb.on_shortcut(got.append)
    kb._on_frontend_message(kb, {"key": "s", "in_text_field": False}, [])
    kb._on_frontend_message(kb, {"key": "s", "in_text_field": True}, [])
    kb._on_frontend_message(kb, {"key": "s"}, [])
    kb._on_frontend_message(kb, "s", [])
    assert got == [Shortcut("skip")]


def test_a_accepts() -> None:
    session, backend, _ = start()
    session.handle_key("a")
    assert backend.actions() == ["accept"]
    assert session.item is not None and session.item.case_id == "c2"


def test_shortcuts_are_ignored_while_typing() -> None:
    session, backend, _ = start()
    bar = session.decision_bar
    session.handle_key("o")
    for key in "a note: first salary paid in full, 1 2 s u f o":
        session.handle_key(key, in_text_field=True)
    assert backend.submit_calls == []
    assert bar.panel == "override"
    assert bar.target_buttons.value == "0"  # not changed by the typed digits


def test_o_opens_override_digit_picks_target() -> None:
    session, backend, _ = start()
    bar = session.decision_bar
    session.handle_key("2")  # digits outside a panel do nothing but explain
    assert bar.panel == ""
    assert "press o first" in session.status.text
    session.handle_key("o")
    assert bar.panel == "override"
    session.handle_key("1")
    assert bar.target_buttons.value == "1"
    session.handle_key("2")
    assert bar.target_buttons.value == "0"
    bar.reason_dropdown.value = "income-verified"
    bar.confirm_override_button.click()
    assert backend.actions() == ["override"]
    assert backend.decisions[0].final_label == "0"


def test_f_s_u_drive_flag_skip_undo() -> None:
    session, backend, clock = start()
    session.handle_key("f")
    assert session.decision_bar.panel == "flag"
    session.decision_bar.confirm_flag_button.click()
    clock.advance(1)
    session.handle_key("s")
    session.handle_key("u")
    assert backend.actions() == ["flag", "skip", "undo"]
    assert backend.decisions[2].undo_of == "d2"


def test_the_browser_module_is_inline_and_loads_nothing() -> None:
    assert "http://" not in _ESM and "https://" not in _ESM and "//cdn" not in _ESM
    assert not re.search(r"^\s*import\s", _ESM, re.MULTILINE)
    assert "import(" not in _ESM
    assert "@import" not in _CSS and "url(" not in _CSS
    assert 'addEventListener("keydown"' in _ESM
    assert 'removeEventListener("keydown"' in _ESM
    kb = KeyboardShortcuts(["x"])
    assert kb._esm == _ESM


def test_every_widget_in_the_panel_serialises_its_model_state() -> None:
    """A trait that shadows an ipywidgets name (``keys`` once did) breaks the front end."""
    session, _, _ = start()
    for widget in [*find_widgets(session), session.keyboard]:
        state = widget.get_state()
        assert "_model_module" in state and "_view_name" in state
