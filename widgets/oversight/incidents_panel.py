"""IncidentsPanel: the open incidents (EU AI Act Art. 73, GDPR Art. 33) on the oversight
dashboard.

A table of the open incidents: kind and the provision that names it, the deadline and the
time left (the store's, from the kind and the time it became known), overdue ones in red
and saying so in words, who was told. Below it, for the incident chosen: record that
someone was told (an authority, the provider; when, default now), and close it with a
reason. A serious incident is closed by a lead who did not open it: for the person who
opened it the button is disabled with the reason, and the store refuses it anyway. Errors go
to the status line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets

from hilt.widgets.common.colours import RED
from hilt.widgets.common.html_table import compact_table, note
from hilt.widgets.common.status import StatusLine, describe_error
from hilt.widgets.contracts.oversight import IncidentBackend, IncidentView, time_left


def incidents_table(items: Sequence[IncidentView]) -> str:
    """The open incidents, overdue rows in red (and 'OVERDUE' in words)."""
    if not items:
        return note("No open incidents.")
    rows = [
        (
            [
                ("OVERDUE " if i.overdue else "") + i.incident_id,
                f"{i.kind} ({i.provision})",
                i.status,
                i.deadline or "no deadline",
                time_left(i.seconds_left),
                ", ".join(i.told) or "nobody yet",
                i.summary,
            ],
            RED if i.overdue else None,
        )
        for i in items
    ]
    return compact_table(
        ["Incident", "Kind", "Status", "Deadline", "Time left", "Told", "Summary"], rows
    )


class IncidentsPanel(widgets.VBox):
    """The open incidents of ``backend``; record who was told, close with a reason."""

    def __init__(
        self, backend: IncidentBackend, status: StatusLine | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-incidents")
        self.backend = backend
        self.status = status or StatusLine()
        self.items: tuple[IncidentView, ...] = ()
        self.table = widgets.HTML()
        self.choice = widgets.Dropdown(description="Incident", options=[])
        self.recipient = widgets.Text(
            placeholder="Who was told (e.g. the supervisory authority)",
            layout=widgets.Layout(width="24em"),
        )
        self.told_at = widgets.Text(
            placeholder="When (ISO-8601; empty: now)", layout=widgets.Layout(width="16em")
        )
        self.told_button = widgets.Button(description="Record told", button_style="primary")
        self.reason = widgets.Textarea(
            placeholder="Why it is over (required; kept in the store, audited as a hash).",
            layout=widgets.Layout(width="36em", height="3.5em"),
        )
        self.close_button = widgets.Button(description="Close incident", button_style="warning")
        self.note = widgets.HTML()
        self.told_button.on_click(lambda _b: self.record_told())
        self.close_button.on_click(lambda _b: self.close())
        self.choice.observe(lambda _c: self._show_choice(), names="value")
        self.refresh()

    def refresh(self) -> None:
        try:
            items = self.backend.open_incidents()
        except Exception as exc:
            self.status.error(f"Could not read the incidents: {describe_error(exc)}")
            return
        self._set(items)

    def selected(self) -> IncidentView | None:
        return next((i for i in self.items if i.incident_id == self.choice.value), None)

    def record_told(self) -> None:
        chosen = self.selected()
        who = self.recipient.value.strip()
        if chosen is None:
            self.status.error("Choose an incident first.")
            return
        if not who:
            self.status.error("Say who was told in the box next to the button.")
            return
        try:
            self.backend.record_told(chosen.incident_id, who, self.told_at.value.strip() or None)
        except Exception as exc:
            self.status.error(f"Not recorded: {describe_error(exc)}")
            return
        self.recipient.value = self.told_at.value = ""
        self.status.success(f"Recorded: {who} was told about {chosen.incident_id}.")
        self.refresh()

    def close(self) -> None:
        chosen = self.selected()
        reason = self.reason.value.strip()
        if chosen is None:
            self.status.error("Choose an incident first.")
            return
        if not reason:
            self.status.error("Closing needs a reason: say why in the box above the button.")
            return
        try:
            self.backend.close_incident(chosen.incident_id, reason)
        except Exception as exc:
            self.status.error(f"Not closed: {describe_error(exc)}")
            self.refresh()
            return
        self.reason.value = ""
        self.status.success(f"Closed {chosen.incident_id}.")
        self.refresh()

    def _set(self, items: tuple[IncidentView, ...]) -> None:
        self.items = items
        self.table.value = incidents_table(items)
        previous = self.choice.value
        ids = [i.incident_id for i in items]
        self.choice.options = ids
        self.choice.value = previous if previous in ids else (ids[0] if ids else None)
        self._show_choice()

    def _show_choice(self) -> None:
        chosen = self.selected()
        children: tuple[widgets.Widget, ...] = (self.table,)
        if chosen is None:
            self.children = children
            return
        self.close_button.disabled = not chosen.can_close
        self.note.value = note(chosen.why_not) if chosen.why_not else ""
        self.children = (
            *children,
            self.choice,
            widgets.HBox([self.recipient, self.told_at, self.told_button]),
            self.reason,
            self.close_button,
            self.note,
        )
