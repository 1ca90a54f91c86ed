"""The demo's sign-in page (widgets/common/sign_in.py) with a fake backend: it lists the
users with their roles, says that nobody proves who they are, links to the pages the pick
may open, switches when picked again, and says a refusal instead of raising."""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets

from hilt.widgets.common.refusal import RefusalScreen
from hilt.widgets.common.sign_in import DEMO_NOTE, SignInPanel, sign_in_panel
from hilt.widgets.contracts.common import Refusal
from hilt.widgets.contracts.sign_in import DashboardLink, SignedIn, SignInOption
from tests.widgets.tree import all_text, find_widgets

WHY = "signed in without a password: demo mode"


class FakeSignIn:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def choices(self) -> Sequence[SignInOption]:
        return [SignInOption("alice", ("reviewer",)), SignInOption("otto", ("auditor",))]

    def sign_in(self, name: str) -> SignedIn:
        self.calls.append(name)
        if name == "alice":
            raise PermissionError("user 'alice' is disabled")
        page = "audit" if name == "otto" else "review"
        link = DashboardLink(page.title(), f"{page}.ipynb?user={name}&session=s-{name}")
        return SignedIn(name, ("auditor",), WHY, (link,))


def buttons(panel: SignInPanel) -> dict[str, widgets.Button]:
    return {b.description: b for b in find_widgets(panel) if isinstance(b, widgets.Button)}


def test_the_page_lists_the_users_and_links_to_their_pages_once_picked() -> None:
    backend = FakeSignIn()
    panel = SignInPanel(backend)
    assert set(buttons(panel)) == {"alice (reviewer)", "otto (auditor)"}
    assert DEMO_NOTE in all_text(panel)
    assert "Nobody signed in yet." in all_text(panel)
    buttons(panel)["otto (auditor)"].click()
    assert backend.calls == ["otto"]
    assert 'href="audit.ipynb?user=otto&amp;session=s-otto"' in panel.links.value
    # Picked again, someone else: refused here (said on the page), the last pick stays.
    buttons(panel)["alice (reviewer)"].click()
    assert backend.calls == ["otto", "alice"]
    assert panel.status.level == "error"
    assert "Could not sign in" in panel.status.text
    assert panel.signed_in is not None and panel.signed_in.name == "otto"


def test_a_refused_page_is_a_refusal_screen() -> None:
    screen = sign_in_panel(Refusal("Sign-in unavailable", "configures a sign-in proxy"))
    assert isinstance(screen, RefusalScreen)
    assert "configures a sign-in proxy" in all_text(screen)
