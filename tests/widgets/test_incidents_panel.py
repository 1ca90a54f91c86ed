"""The incidents panel of the oversight dashboard with a fake backend: what the lead sees
(deadline, time left, overdue in red and in words, who was told) and what each click sends
(or refuses to send)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import ipywidgets as widgets
import pytest

from hilt.widgets.common.colours import RED
from hilt.widgets.common.status import StatusLine
from hilt.widgets.contracts.oversight import IncidentBackend, IncidentView, time_left
from hilt.widgets.oversight.dashboard import OversightDashboard
from hilt.widgets.oversight.incidents_panel import IncidentsPanel, incidents_table
from tests.widgets.fakes import FakeOversightBackend
from tests.widgets.tree import all_text, find_widgets, visible_buttons


def incident(iid: str, **changes: object) -> IncidentView:
    base = IncidentView(
        incident_id=iid,
        kind="serious_incident",
        provision="AI Act 73(2)",
        serious=True,
        source="manual",
        status="open",
        summary="Scores wrong for a branch.",
        known_at="2026-03-01T10:00:00.000000Z",
        deadline="2026-03-16T10:00:00.000000Z",
        seconds_left=5 * 86400.0,
        overdue=False,
        report_to="the market surveillance authority",
        opened_by="lena",
        told=(),
        can_close=True,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@dataclass
class FakeIncidents:
    """An IncidentBackend with the store's rules that matter here: a serious incident is
    closed by someone other than its opener, closing needs a reason."""

    closer: str = "max"
    items: list[IncidentView] = field(
        default_factory=lambda: [
            incident("INC-7"),
            incident(
                "INC-9",
                kind="personal_data_breach",
                provision="GDPR 33(1)",
                seconds_left=-3 * 3600.0,
                overdue=True,
            ),
            incident("INC-12", opened_by="max", can_close=False, why_not="You opened INC-12."),
        ]
    )
    told: list[tuple[str, str, str | None]] = field(default_factory=list)
    closed: list[tuple[str, str]] = field(default_factory=list)

    def open_incidents(self) -> tuple[IncidentView, ...]:
        return tuple(self.items)

    def record_told(self, incident_id: str, recipient: str, told_at: str | None) -> IncidentView:
        self.told.append((incident_id, recipient, told_at))
        i = next(x for x in self.items if x.incident_id == incident_id)
        new = replace(i, told=(*i.told, f"{recipient} at now"), overdue=False)
        self.items = [new if x is i else x for x in self.items]
        return new

    def close_incident(self, incident_id: str, reason: str) -> IncidentView:
        i = next(x for x in self.items if x.incident_id == incident_id)
        if i.serious and i.opened_by == self.closer:
            raise PermissionError("the person who opened a serious incident cannot close it")
        self.closed.append((incident_id, reason))
        self.items.remove(i)
        return replace(i, status="closed")


@dataclass
class FakeOversightWithIncidents(FakeOversightBackend, FakeIncidents):
    pass


def button(root: widgets.Widget, description: str) -> widgets.Button:
    found = [
        w
        for w in find_widgets(root)
        if isinstance(w, widgets.Button) and w.description == description
    ]
    assert len(found) == 1, (description, visible_buttons(root))
    return found[0]


def test_time_left_reads_in_hours_days_or_overdue() -> None:
    assert time_left(None) == "-"
    assert time_left(5 * 3600) == "5.0 h"
    assert time_left(3 * 86400) == "3.0 d"
    assert time_left(-2 * 3600) == "2.0 h overdue"


@pytest.mark.obligation("AI Act 73", "GDPR 33")
def test_open_incidents_show_deadline_time_left_and_overdue_in_red_and_in_words() -> None:
    panel = IncidentsPanel(FakeIncidents())
    text = all_text(panel)
    assert "2026-03-16T10:00:00.000000Z" in text and "5.0 d" in text
    assert "OVERDUE INC-9" in text and "3.0 h overdue" in text
    assert "nobody yet" in text
    overdue_row = next(r for r in panel.table.value.split("<tr") if "INC-9" in r)
    assert RED in overdue_row
    assert RED not in next(r for r in panel.table.value.split("<tr") if "INC-7" in r)
    assert "No open incidents" in incidents_table(())


def test_recording_who_was_told_sends_it_and_shows_it() -> None:
    backend, status = FakeIncidents(), StatusLine()
    panel = IncidentsPanel(backend, status)
    panel.choice.value = "INC-9"
    button(panel, "Record told").click()
    assert backend.told == [] and "Say who was told" in status.value
    panel.recipient.value = "Datenschutzbehörde"
    panel.told_at.value = "2026-03-02T09:00:00Z"
    button(panel, "Record told").click()
    assert backend.told == [("INC-9", "Datenschutzbehörde", "2026-03-02T09:00:00Z")]
    assert "Datenschutzbehörde at now" in all_text(panel)
    assert "OVERDUE INC-9" not in all_text(panel)
    assert panel.recipient.value == "" and panel.choice.value == "INC-9"


def test_closing_needs_a_reason_and_is_disabled_for_the_opener_of_a_serious_one() -> None:
    backend, status = FakeIncidents(), StatusLine()
    panel = IncidentsPanel(backend, status)
    panel.choice.value = "INC-12"
    assert button(panel, "Close incident").disabled
    assert "You opened INC-12." in all_text(panel)
    panel.reason.value = "Mine anyway."
    panel.close()  # the button is disabled; the backend refuses it all the same
    assert backend.closed == [] and "Not closed" in status.value
    panel.choice.value = "INC-7"
    assert not button(panel, "Close incident").disabled
    panel.reason.value = " "
    button(panel, "Close incident").click()
    assert backend.closed == [] and "needs a reason" in status.value
    panel.reason.value = "Fixed; authority informed."
    button(panel, "Close incident").click()
    assert backend.closed == [("INC-7", "Fixed; authority informed.")]
    assert "INC-7" not in panel.choice.options


def test_the_dashboard_shows_the_panel_only_for_a_backend_with_the_register() -> None:
    with_register = FakeOversightWithIncidents()
    assert isinstance(with_register, IncidentBackend)
    dashboard = OversightDashboard(with_register)
    assert dashboard.incidents is not None and "Open incidents" in all_text(dashboard)
    assert "INC-7" in all_text(dashboard)
    without = OversightDashboard(FakeOversightBackend())
    assert without.incidents is None and "Open incidents" not in all_text(without)
