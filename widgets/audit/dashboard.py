"""AuditDashboard: the auditor's read-only view of everything; it only coordinates.

Four tabs over one ``AuditBackend`` (which has no method that writes):

- Integrity: the hash chain, the signed checkpoints and the records, verified (in the
  background: the dashboard shows before the verdict, which arrives when it is ready);
- Events: the audit log filtered by actor, action, object, model version and time (loaded
  when the tab is first shown);
- Lineage: any decision back to the data that trained its model, and its explanation as
  the reviewer saw it (recent decisions listed when the tab is first shown);
- Notebooks: every executed run notebook, readable in place (listed when first shown).

One ``StatusLine`` for all of them. The dashboard offers no control that writes: no
decision, no lease, no checkpoint, no event; its buttons search, page, verify and render.
``audit_panel(access)`` is what the notebook displays: the dashboard for an
``AuditBackend``, a ``RefusalScreen`` for a ``Refusal``; it never raises.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from hilt.widgets.audit.event_explorer import EventExplorer
from hilt.widgets.audit.integrity_panel import IntegrityPanel
from hilt.widgets.audit.lineage_panel import LineagePanel
from hilt.widgets.audit.notebooks_panel import NotebooksPanel
from hilt.widgets.common.header import header_html
from hilt.widgets.common.refusal import RefusalScreen, panel_for
from hilt.widgets.common.status import StatusLine
from hilt.widgets.contracts.audit import UNAVAILABLE, AuditBackend, Auditor
from hilt.widgets.contracts.common import Refusal

TAB_TITLES = ("Integrity", "Events", "Lineage", "Notebooks")


class AuditDashboard(widgets.VBox):
    """The auditor's dashboard over ``backend``; display it."""

    def __init__(self, backend: AuditBackend, auditor: Auditor, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-audit-dashboard")
        self.backend = backend
        self.auditor = auditor
        self.status = StatusLine()
        self.header = widgets.HTML()
        self.integrity = IntegrityPanel(backend, self.status)
        self.explorer = EventExplorer(backend, self.status)
        self.lineage = LineagePanel(backend, self.status)
        self.notebooks = NotebooksPanel(backend, self.status)
        self.tabs = widgets.Tab(
            children=(self.integrity, self.explorer, self.lineage, self.notebooks)
        )
        self.tabs.titles = TAB_TITLES
        self.explorer.on_open_lineage(self.open_lineage)
        self.tabs.observe(self._on_tab, names="selected_index")
        self.integrity.start()
        self._compose()

    def _on_tab(self, change: Any) -> None:
        # Each tab reads the log when first shown: opening the dashboard stays quick.
        shown = TAB_TITLES[change["new"]] if change["new"] is not None else ""
        if shown == "Events" and self.explorer.page is None:
            self.explorer.search()
        elif shown == "Lineage" and not self.lineage.listed:
            self.lineage.load_recent()
        elif shown == "Notebooks" and not self.notebooks.listed:
            self.notebooks.load()

    def open_lineage(self, decision_id: str) -> None:
        """Show ``decision_id`` in the Lineage tab."""
        self.tabs.selected_index = TAB_TITLES.index("Lineage")
        self.lineage.show(decision_id)

    def _compose(self) -> None:
        self.header.value = header_html(
            "Audit",
            self.auditor.name,
            self.auditor.roles,
            note="read-only: nothing on this page changes the records",
            unproven=self.auditor.unproven,
        )
        self.children = (self.header, self.tabs, self.status)


def audit_panel(access: AuditBackend | Refusal) -> AuditDashboard | RefusalScreen:
    """The auditor's dashboard for ``access``, or the refusal to show instead."""
    return panel_for(access, UNAVAILABLE, lambda backend: backend.auditor(), AuditDashboard)
