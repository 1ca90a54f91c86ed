"""EventExplorer: the audit log, filtered by the store, one page at a time.

Filters: actor, action (or a prefix such as ``model.``), object (a case id, a run id, a
model version, a snapshot name), model version, and a time range. The backend filters in
the store and pages newest first under the head seen when the explorer opened ("Refresh"
moves it), so pages do not shift while reviewers keep deciding. A chart shows what the
filter matches per day and per action. Decisions on the page can be opened in the lineage
panel (``on_open_lineage(fn)``). Everything here reads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import traitlets

from hilt.widgets.common.callbacks import Listeners
from hilt.widgets.common.colours import MUTED
from hilt.widgets.common.html_table import note, table
from hilt.widgets.common.status import StatusLine, describe_error
from hilt.widgets.contracts.audit import AuditBackend, EventFilter, EventPage

DECISION_ACTION = "decision.record"


class EventExplorer(widgets.VBox):
    """Filters, a page of events, paging, a chart; ``search()`` runs the current filter."""

    #: Events per page.
    page_size = traitlets.Int(25)

    def __init__(self, backend: AuditBackend, status: StatusLine, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-event-explorer")
        self.backend = backend
        self.status = status
        self.page: EventPage | None = None
        self._offset = 0
        self._open_lineage_listeners = Listeners[str]()
        layout = widgets.Layout(width="24em")
        self.actor = widgets.Text(description="Actor", placeholder="any", layout=layout)
        self.action = widgets.Combobox(
            description="Action",
            placeholder="any, or a prefix like model.",
            options=(),  # filled when the explorer first searches: opening stays quick
            ensure_option=False,
            layout=layout,
        )
        self.object_id = widgets.Text(
            description="Case / object", placeholder="case, run, snapshot id", layout=layout
        )
        self.model_version = widgets.Text(description="Model", placeholder="any", layout=layout)
        self.since = widgets.Text(
            description="From", placeholder="2025-01-31 or …T12:00Z", layout=layout
        )
        self.until = widgets.Text(description="Until", placeholder="(exclusive)", layout=layout)
        for w in (self.actor, self.action, self.object_id, self.model_version):
            w.style.description_width = "7em"
        for w in (self.since, self.until):
            w.style.description_width = "7em"
        self.search_button = widgets.Button(description="Search", button_style="primary")
        self.clear_button = widgets.Button(description="Clear filters")
        self.refresh_button = widgets.Button(
            description="Refresh", tooltip="Include events recorded since the explorer opened"
        )
        self.prev_button = widgets.Button(description="◀ Newer")
        self.next_button = widgets.Button(description="Older ▶")
        self.search_button.on_click(lambda _b: self.search())
        self.clear_button.on_click(lambda _b: self.clear())
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.prev_button.on_click(lambda _b: self._go(-1))
        self.next_button.on_click(lambda _b: self._go(+1))
        self.summary = widgets.HTML()
        self.results = widgets.HTML()
        self.chart = widgets.Image(format="png", layout=widgets.Layout(max_width="800px"))
        self.decision_choice = widgets.Dropdown(
            description="Decision", options=[], layout=widgets.Layout(width="32em")
        )
        self.lineage_button = widgets.Button(
            description="Show its lineage", tooltip="Open this decision in the Lineage tab"
        )
        self.lineage_button.on_click(lambda _b: self._open_lineage())
        self.filters = widgets.VBox(
            [
                widgets.HBox([self.actor, self.action, self.object_id]),
                widgets.HBox([self.model_version, self.since, self.until]),
                widgets.HBox([self.search_button, self.clear_button, self.refresh_button]),
            ]
        )
        self.pager = widgets.HBox([self.prev_button, self.next_button])
        self.open_row = widgets.HBox([self.decision_choice, self.lineage_button])
        self._compose()

    # ------------------------------------------------------------------ public API
    def on_open_lineage(self, fn: Callable[[str], None]) -> None:
        """Register ``fn(decision_id)``, called when the auditor opens a decision's lineage."""
        self._open_lineage_listeners.add(fn)

    @property
    def query(self) -> EventFilter:
        return EventFilter(
            actor=self.actor.value.strip(),
            action=self.action.value.strip(),
            object_id=self.object_id.value.strip(),
            model_version=self.model_version.value.strip(),
            since=self.since.value.strip(),
            until=self.until.value.strip(),
        )

    def search(self) -> None:
        if self.page is None and not self.action.options:
            self.action.options = self._action_options()
        self._offset = 0
        self._load()

    def clear(self) -> None:
        for w in (
            self.actor,
            self.action,
            self.object_id,
            self.model_version,
            self.since,
            self.until,
        ):
            w.value = ""
        self.search()

    def refresh(self) -> None:
        try:
            head = self.backend.refresh()
        except Exception as exc:
            self.status.error(f"Could not refresh: {describe_error(exc)}")
            return
        self.action.options = self._action_options()
        self.status.info(f"Showing events up to seq {head}.")
        self.search()

    # ------------------------------------------------------------------ internals
    def _action_options(self) -> tuple[str, ...]:
        try:
            return tuple(self.backend.action_names())
        except Exception:
            return ()

    def _go(self, step: int) -> None:
        if self.page is None:
            return
        offset = self._offset + step * self.page_size
        if offset < 0 or offset >= max(self.page.total, 1):
            return
        self._offset = offset
        self._load()

    def _load(self) -> None:
        try:
            self.page = self.backend.events(self.query, self._offset, self.page_size)
        except Exception as exc:
            self.status.error(f"Search refused: {describe_error(exc)}")
            self._compose()
            return
        self.status.info(f"{self.page.total} events match.")
        self._compose()

    def _open_lineage(self) -> None:
        decision_id = self.decision_choice.value
        if not decision_id:
            self.status.info("No decision on this page to open.")
            return
        self._open_lineage_listeners(str(decision_id))

    def _compose(self) -> None:
        page = self.page
        filters = self.filters
        if page is None:
            self.summary.value = note("No search yet.")
            self.results.value = ""
            self.children = (filters, self.summary)
            return
        pages = max(1, math.ceil(page.total / max(page.limit, 1)))
        number = page.offset // max(page.limit, 1) + 1
        self.summary.value = (
            f"<div><b>{page.total}</b> events match · page {number} of {pages}"
            f' <span style="color:{MUTED}">(newest first, up to seq {page.head_seq})</span>'
            "</div>"
        )
        self.results.value = table(
            ["seq", "time (UTC)", "actor", "role", "action", "object", "payload", "hash"],
            [
                (
                    r.seq,
                    r.ts,
                    r.actor,
                    r.role,
                    r.action,
                    f"{r.object_type}: {r.object_id}",
                    r.payload,
                    r.hash[:16] + "…",
                )
                for r in page.rows
            ],
            css_class="hilt-events",
        )
        self.prev_button.disabled = page.offset == 0
        self.next_button.disabled = page.offset + page.limit >= page.total
        decisions = [
            (f"seq {r.seq} · {r.actor} · {r.object_id}", _decision_id(r.payload))
            for r in page.rows
            if r.action == DECISION_ACTION and _decision_id(r.payload)
        ]
        self.decision_choice.options = decisions
        self.decision_choice.value = decisions[0][1] if decisions else None
        parts: list[widgets.Widget] = [filters, self.summary]
        if page.chart_png:
            self.chart.value = page.chart_png
            parts.append(self.chart)
        parts += [self.results, self.pager]
        if decisions:
            parts.append(self.open_row)
        self.children = tuple(parts)


def _decision_id(payload: str) -> str:
    """The decision_id in a decision event's payload text ('' if none)."""
    try:
        value = json.loads(payload).get("decision_id")
    except (ValueError, AttributeError):
        return ""
    return str(value) if value else ""
