"""Single-person mode is said on every dashboard: the one header of widgets/common shows a
banner under the title line whenever the store says nobody proved who is looking, and
nothing of it when someone did."""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets
import pytest

from hilt.widgets.audit.dashboard import audit_panel
from hilt.widgets.common.header import header_html
from hilt.widgets.contracts.audit import Auditor
from hilt.widgets.contracts.common import Reviewer
from hilt.widgets.oversight.dashboard import oversight_panel
from hilt.widgets.review.panel import review_panel
from tests.widgets.fakes import (
    FakeAuditBackend,
    FakeBackend,
    FakeClock,
    FakeOversightBackend,
    make_item,
)
from tests.widgets.tree import all_text

WHY = "single-person mode: no sign-in proxy, acting as access.local_user"
BANNER = "Identity not proven"


def review(unproven: str | None) -> widgets.Widget:
    me = Reviewer("lena", ("lead", "reviewer"), unproven=unproven)
    return review_panel(FakeBackend(items=[make_item("c1")], me=me), clock=FakeClock())


def oversight(unproven: str | None) -> widgets.Widget:
    return oversight_panel(FakeOversightBackend(me=Reviewer("lena", ("lead",), unproven=unproven)))


def audit(unproven: str | None) -> widgets.Widget:
    return audit_panel(FakeAuditBackend(me=Auditor("otto", ("auditor",), unproven=unproven)))


@pytest.mark.parametrize("dashboard", [review, oversight, audit], ids=lambda f: f.__name__)
def test_every_dashboard_says_when_nobody_proved_who_is_looking(
    dashboard: Callable[[str | None], widgets.Widget],
) -> None:
    marked = all_text(dashboard(WHY))
    assert BANNER in marked and WHY in marked
    assert "every record it writes says that who acted was not proven" in marked
    assert BANNER not in all_text(dashboard(None))


def test_the_banner_names_who_the_page_acts_as_and_is_escaped() -> None:
    html = header_html("Review queue", "<lena>", ("lead",), unproven="a & b")
    assert "&lt;lena&gt;" in html and "a &amp; b" in html and "<lena>" not in html
    assert 'role="note"' in html
    assert BANNER not in header_html("Review queue", None, unproven=WHY)
