"""NotebooksPanel: every executed notebook of a retraining or scoring run, readable as is.

The list comes from the audit log (``run.*`` events: kind, time, author, run id, the
notebook's name and sha256) with the file checked against that sha256. "Open" shows the
notebook rendered as one offline HTML page inside a sandboxed frame (no script runs,
nothing is fetched). Everything here reads.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from hilt.widgets.common.colours import MUTED
from hilt.widgets.common.html_table import note, table
from hilt.widgets.common.status import StatusLine, describe_error
from hilt.widgets.contracts.audit import AuditBackend, RunNotebook


def sandboxed(page: str, height: str = "70vh") -> str:
    """A whole HTML page inside an iframe with every sandbox restriction on: no scripts,
    no forms, no plugins, no top navigation, an opaque origin."""
    return (
        f'<iframe class="hilt-notebook-frame" sandbox="" referrerpolicy="no-referrer" '
        f'srcdoc="{html.escape(page, quote=True)}" '
        f'style="width:100%;height:{height};border:1px solid {MUTED}"></iframe>'
    )


class NotebooksPanel(widgets.VBox):
    """``load()`` lists the runs; ``show(run_id)`` shows one notebook."""

    def __init__(self, backend: AuditBackend, status: StatusLine, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-notebooks")
        self.backend = backend
        self.status = status
        self.runs: tuple[RunNotebook, ...] = ()
        self.opened: str | None = None
        self.listing = widgets.HTML()
        self.choice = widgets.Dropdown(
            description="Notebook", options=[], layout=widgets.Layout(width="40em")
        )
        self.choice.style.description_width = "7em"
        self.open_button = widgets.Button(description="Open", button_style="primary")
        self.open_button.on_click(lambda _b: self.show(str(self.choice.value or "")))
        self.reload_button = widgets.Button(description="Reload list")
        self.reload_button.on_click(lambda _b: self.load())
        self.viewer = widgets.HTML()
        self.controls = widgets.HBox([self.choice, self.open_button, self.reload_button])
        #: Whether the runs were listed (the dashboard lists them when the tab is first shown).
        self.listed = False
        self._compose()

    def load(self) -> None:
        self.listed = True
        try:
            self.runs = self.backend.notebooks()
        except Exception as exc:
            self.status.error(f"Could not list the runs: {describe_error(exc)}")
            self.runs = ()
        options = [
            (f"{r.started} · {r.kind} · {r.run_id}", r.run_id) for r in self.runs if r.notebook
        ]
        self.choice.options = options
        self.choice.value = options[0][1] if options else None
        self._compose()

    def show(self, run_id: str) -> None:
        if not run_id:
            self.status.info("No executed notebook to open.")
            return
        self.status.info("Rendering the notebook…")
        try:
            page = self.backend.notebook_html(run_id)
        except Exception as exc:
            self.opened = None
            self.viewer.value = ""
            self.status.error(f"Not shown: {describe_error(exc)}")
            self._compose()
            return
        self.opened = run_id
        self.viewer.value = sandboxed(page)
        self.status.success(f"Notebook of run {run_id}, as executed.")
        self._compose()

    def _compose(self) -> None:
        if not self.runs:
            self.listing.value = note(
                "No runs in the audit log yet." if self.listed else "Listing the runs…"
            )
            self.children = (self.listing, self.reload_button)
            return
        self.listing.value = table(
            ["started (UTC)", "kind", "run", "author", "status", "notebook", "sha256", "file"],
            [
                (
                    r.started,
                    r.kind,
                    r.run_id,
                    r.author,
                    r.status,
                    r.notebook,
                    r.sha256 or "—",
                    r.file_status,
                )
                for r in self.runs
            ],
            css_class="hilt-runs",
        )
        parts: list[widgets.Widget] = [self.listing, self.controls]
        if self.opened:
            parts.append(self.viewer)
        self.children = tuple(parts)
