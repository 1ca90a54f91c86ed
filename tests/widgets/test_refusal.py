"""Refusal: a clear screen, nothing that writes."""

from __future__ import annotations

import ipywidgets as widgets

from hilt.widgets import RefusalScreen, ReviewSession, review_panel
from hilt.widgets.contracts.common import Refusal, Reviewer
from tests.widgets.fakes import BackendDown, FakeBackend, FakeClock, make_item
from tests.widgets.tree import all_text, find_widgets

INPUTS = (widgets.Button, widgets.Textarea, widgets.Text, widgets.Dropdown, widgets.ToggleButtons)


def test_refusal_screen_has_title_message_and_no_controls() -> None:
    screen = RefusalScreen("Not a reviewer here", "Ask <your> lead.")
    text = all_text(screen)
    assert "Not a reviewer here" in text
    assert "Ask &lt;your&gt; lead." in text
    assert not any(isinstance(w, INPUTS) for w in find_widgets(screen))


def test_review_panel_shows_a_refusal_as_a_refusal_screen() -> None:
    panel = review_panel(Refusal("Not a reviewer here", "otto does not have the reviewer role."))
    assert isinstance(panel, RefusalScreen)
    assert "Not a reviewer here" in all_text(panel)
    assert "otto does not have the reviewer role." in all_text(panel)
    assert not any(isinstance(w, INPUTS) for w in find_widgets(panel))


def test_review_panel_refuses_when_the_identity_cannot_be_confirmed() -> None:
    class Unknown(FakeBackend):
        def reviewer(self) -> Reviewer:
            raise BackendDown("unknown user")

    backend = Unknown(items=[make_item("c1")])
    panel = review_panel(backend, clock=FakeClock())
    assert isinstance(panel, RefusalScreen)
    assert "unknown user" in all_text(panel)
    assert backend.next_item_calls == 0  # not even a lease
    assert backend.submit_calls == []


def test_review_panel_for_a_backend_is_a_session() -> None:
    backend = FakeBackend(items=[make_item("c1")], me=Reviewer("lena", ("lead",)))
    panel = review_panel(backend, clock=FakeClock(), min_dwell_ms=0)
    assert isinstance(panel, ReviewSession)
    assert panel.min_dwell_ms == 0
    assert "lena" in all_text(panel)
    assert panel.item is not None and panel.item.case_id == "c1"
