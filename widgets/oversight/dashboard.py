"""OversightDashboard: what the oversight lead sees; it only coordinates.

Sections, top to bottom: who is looking; the system's state with Halt / Resume
(``SystemControl``); queue health; reviewers with the automation-bias alerts; agreement on
double review and the adjudication queue (``AdjudicationPanel``); override reasons; the
challenger against the champion with Approve / Reject (``ModelReview``, loaded on demand).
One ``StatusLine`` for everything that goes wrong (print() is invisible in Voila). After a
halt, a resume, an adjudication or a model decision, the overview is read again. Issue 14:
the open incidents with their deadlines (``IncidentsPanel``) below the system's state, when
the backend keeps the incident register (``IncidentBackend``).

``oversight_panel(access)`` is what the dashboard notebook displays: the dashboard for an
``OversightBackend``, a ``RefusalScreen`` for a ``Refusal``; it never raises.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from hilt.widgets.common.colours import MUTED
from hilt.widgets.common.header import header_html
from hilt.widgets.common.refusal import RefusalScreen, panel_for
from hilt.widgets.common.status import StatusLine, describe_error
from hilt.widgets.contracts.common import Refusal, ReviewConfig, Reviewer
from hilt.widgets.contracts.monitoring import MonitoringSource
from hilt.widgets.contracts.oversight import (
    UNAVAILABLE,
    IncidentBackend,
    OversightBackend,
    OversightOverview,
)
from hilt.widgets.oversight.adjudication import AdjudicationPanel
from hilt.widgets.oversight.incidents_panel import IncidentsPanel
from hilt.widgets.oversight.model_review import ModelReview
from hilt.widgets.oversight.monitor_views import (
    AgreementView,
    OverrideReasonsView,
    QueueHealthView,
    ReviewerStatsView,
)
from hilt.widgets.oversight.monitoring_panel import MonitoringPanel
from hilt.widgets.oversight.system_control import SystemControl


def _heading(text: str) -> widgets.HTML:
    return widgets.HTML(f'<h3 style="margin:1em 0 0.3em 0">{html.escape(text)}</h3>')


class OversightDashboard(widgets.VBox):
    """The oversight lead's dashboard over an ``OversightBackend``."""

    def __init__(self, backend: OversightBackend, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-oversight")
        self.backend = backend
        self.status = StatusLine()
        self.header = widgets.HTML()
        self.as_of = widgets.HTML()
        self.lead: Reviewer | None = None
        try:
            self.lead = backend.lead()
        except Exception as exc:
            self.status.error(f"Could not identify you: {describe_error(exc)}")
        self._render_header()
        self.config: ReviewConfig | None = None
        try:
            self.config = backend.review_config()
        except Exception as exc:
            self.status.error(f"Could not load the configuration: {describe_error(exc)}")
        self.overview: OversightOverview | None = None
        self.refresh_button = widgets.Button(
            description="Refresh", tooltip="Read the queue and the reviewers' statistics again"
        )
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.system = SystemControl(backend, self.lead.name if self.lead else None, self.status)
        self.queue_view = QueueHealthView()
        self.reviewer_view = ReviewerStatsView()
        self.agreement_view = AgreementView()
        self.reasons_view = OverrideReasonsView()
        self.adjudication: AdjudicationPanel | None = None
        if self.config is not None:
            self.adjudication = AdjudicationPanel(backend, self.config, self.status)
            self.adjudication.on_adjudicated(lambda _r: self.refresh_overview())
        self.models = ModelReview(backend, self.status)
        self.models.on_decided(lambda _d: self.refresh_overview())
        self.system.on_change(lambda _s: self.refresh_overview())
        # Post-market monitoring (issue 14): the latest verdict, and a halt from there.
        self.monitoring: MonitoringPanel | None = None
        if isinstance(backend, MonitoringSource):
            self.monitoring = MonitoringPanel(backend, self.status, on_halt=self.halt_for)
        self.incidents: IncidentsPanel | None = None
        if isinstance(backend, IncidentBackend):
            self.incidents = IncidentsPanel(backend, self.status)
        self.refresh_overview()
        self._compose()

    def refresh(self) -> None:
        """Everything that is cheap to read again (not the model comparison)."""
        self.status.clear()
        self.system.refresh()
        if self.adjudication is not None:
            self.adjudication.refresh()
        if self.monitoring is not None:
            self.monitoring.refresh()
        if self.incidents is not None:
            self.incidents.refresh()
        self.refresh_overview()

    def halt_for(self, reason: str) -> None:
        """Halt through the system control with ``reason`` (the monitoring panel's way)."""
        self.system.reason.value = reason
        self.system.halt()

    def refresh_overview(self) -> None:
        try:
            overview = self.backend.overview()
        except Exception as exc:
            self.status.error(f"Could not read the statistics: {describe_error(exc)}")
            return
        self.overview = overview
        self.queue_view.show(overview.queue)
        self.reviewer_view.show(
            overview.reviewers,
            overview.alerts,
            overview.window_days,
            (overview.alert_accept_rate, overview.alert_median_seconds),
        )
        self.agreement_view.show(overview.agreement)
        self.reasons_view.show(overview.reasons)
        self.as_of.value = f'<span style="color:{MUTED}">As of {html.escape(overview.as_of)}</span>'

    def _render_header(self) -> None:
        lead = self.lead
        self.header.value = header_html(
            "Oversight",
            lead.name if lead else None,
            lead.roles if lead else (),
            unproven=lead.unproven if lead else None,
        )

    def _compose(self) -> None:
        parts: list[widgets.Widget] = [
            self.header,
            self.status,
            self.system,
            widgets.HBox([self.refresh_button, self.as_of]),
        ]
        if self.monitoring is not None:
            parts += [_heading("Post-market monitoring"), self.monitoring]
        if self.incidents is not None:
            parts += [_heading("Open incidents"), self.incidents]
        parts += [
            _heading("Queue"),
            self.queue_view,
            _heading("Reviewers"),
            self.reviewer_view,
            _heading("Agreement on double review"),
            self.agreement_view,
        ]
        if self.adjudication is not None:
            parts += [_heading("Adjudication queue"), self.adjudication]
        parts += [
            _heading("Override reasons"),
            self.reasons_view,
            _heading("Challenger against champion"),
            self.models,
        ]
        self.children = tuple(parts)


def oversight_panel(access: OversightBackend | Refusal) -> OversightDashboard | RefusalScreen:
    """The lead's dashboard for ``access``, or the refusal to show instead."""
    return panel_for(
        access,
        UNAVAILABLE,
        lambda backend: backend.lead(),
        lambda backend, _lead: OversightDashboard(backend),
    )
