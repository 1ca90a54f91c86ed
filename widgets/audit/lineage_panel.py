"""LineagePanel: any decision, reconstructed from the records (EU AI Act Arts. 12, 19, 86).

Choose a decision (a recent one, or paste its id); the panel shows the chain the backend
reconstructs: decision → prediction → model version → training run → snapshot (seq and
sha256) → the decisions that trained it (paged), where the records stop or disagree, and
the explanation exactly as the reviewer saw it, rendered again from stored data with its
sha256 compared to the one recorded at decision time. "Cross-check with MLflow" compares
the training run with MLflow's own record (slow: it loads MLflow). Everything here reads.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import traitlets

from hilt.widgets.common.colours import AMBER, BORDER, GREEN, MUTED, RED
from hilt.widgets.common.html_table import esc, facts, table, verdict
from hilt.widgets.common.status import StatusLine, describe_error
from hilt.widgets.contracts.audit import (
    AuditBackend,
    ExplanationReplay,
    LineageStep,
    LineageView,
    TrainingPage,
)

_STEP_COLOUR = {"ok": GREEN, "warning": AMBER, "info": MUTED}


def step_html(step: LineageStep) -> str:
    colour = _STEP_COLOUR.get(step.status, MUTED)
    return (
        f'<div class="hilt-lineage-step" style="border-left:4px solid {colour};'
        f'padding:4px 10px;margin:6px 0">'
        f'<div style="font-weight:600">{esc(step.title)}</div>{facts(step.facts)}</div>'
    )


def replay_html(replay: ExplanationReplay) -> str:
    ok = {"identical": True, "differs": False}.get(replay.verdict)
    head = verdict(ok, replay.message)
    if not replay.html:
        return head
    frame_colour = GREEN if ok else RED if ok is False else BORDER
    # The fragment itself, as the reviewer's panel showed it (it is hilt's own markup).
    return (
        head + f'<div class="hilt-replayed-explanation" style="border:1px dashed {frame_colour};'
        f'padding:8px;margin:4px 0;max-width:40em">{replay.html}</div>'
    )


class LineagePanel(widgets.VBox):
    """``show(decision_id)`` reconstructs one decision."""

    #: Training decisions per page.
    page_size = traitlets.Int(20)

    def __init__(self, backend: AuditBackend, status: StatusLine, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-lineage")
        self.backend = backend
        self.status = status
        self.view: LineageView | None = None
        self.replay: ExplanationReplay | None = None
        self.training: TrainingPage | None = None
        self.crosscheck: LineageStep | None = None
        self.recent = widgets.Dropdown(
            description="Recent", options=[], layout=widgets.Layout(width="36em")
        )
        self.decision_id = widgets.Text(
            description="Decision id",
            placeholder="paste a decision id",
            layout=widgets.Layout(width="36em"),
        )
        for w in (self.recent, self.decision_id):
            w.style.description_width = "7em"
        self.recent.observe(self._on_recent, names="value")
        self.show_button = widgets.Button(description="Show lineage", button_style="primary")
        self.show_button.on_click(lambda _b: self.show(self.decision_id.value.strip()))
        self.reload_button = widgets.Button(description="Reload list")
        self.reload_button.on_click(lambda _b: self.load_recent())
        self.mlflow_button = widgets.Button(
            description="Cross-check with MLflow",
            tooltip="Compare the training run with MLflow's record of it (takes a few seconds)",
        )
        self.mlflow_button.on_click(lambda _b: self._crosscheck())
        self.prev_button = widgets.Button(description="◀ Earlier")
        self.next_button = widgets.Button(description="Later ▶")
        self.prev_button.on_click(lambda _b: self._page(-1))
        self.next_button.on_click(lambda _b: self._page(+1))
        self.chooser = widgets.VBox(
            [
                widgets.HBox([self.recent, self.reload_button]),
                widgets.HBox([self.decision_id, self.show_button]),
            ]
        )
        self.chain = widgets.HTML()
        self.explanation = widgets.HTML()
        self.training_html = widgets.HTML()
        self.chart = widgets.Image(format="png", layout=widgets.Layout(max_width="600px"))
        self.pager = widgets.HBox([self.prev_button, self.next_button])
        #: Whether the recent decisions were listed (the dashboard lists them when the tab
        #: is first shown: a search of the whole log, not done before the page shows).
        self.listed = False

    # ------------------------------------------------------------------ public API
    def load_recent(self) -> None:
        self.listed = True
        try:
            choices = self.backend.recent_decisions(50)
        except Exception as exc:
            self.status.error(f"Could not list decisions: {describe_error(exc)}")
            choices = ()
        self.recent.options = [("(choose a decision)", "")] + [
            (c.label, c.decision_id) for c in choices
        ]
        self._compose()

    def show(self, decision_id: str) -> None:
        if not decision_id:
            self.status.error("Choose a decision, or paste its id.")
            return
        self.decision_id.value = decision_id
        self.crosscheck = None
        try:
            self.view = self.backend.lineage(decision_id)
        except Exception as exc:
            self.view = self.replay = self.training = None
            self.status.error(f"No lineage: {describe_error(exc)}")
            self._compose()
            return
        self.training = self.view.training
        try:
            self.replay = self.backend.explanation(decision_id)
        except Exception as exc:
            self.replay = None
            self.status.error(f"The explanation could not be rendered: {describe_error(exc)}")
        else:
            if self.view.problems:
                self.status.error(f"Lineage incomplete: {'; '.join(self.view.problems)}")
            else:
                self.status.success("Lineage complete: every link is in the records.")
        self._compose()

    # ------------------------------------------------------------------ internals
    def _on_recent(self, change: Any) -> None:
        if change["new"]:
            self.show(str(change["new"]))

    def _page(self, step: int) -> None:
        page, view = self.training, self.view
        if page is None or view is None:
            return
        offset = page.offset + step * self.page_size
        if offset < 0 or offset >= page.total:
            return
        try:
            self.training = self.backend.training_page(view.decision_id, offset, self.page_size)
        except Exception as exc:
            self.status.error(f"Could not load the training decisions: {describe_error(exc)}")
            return
        self._compose()

    def _crosscheck(self) -> None:
        if self.view is None:
            self.status.info("Show a lineage first.")
            return
        self.status.info("Asking MLflow…")
        try:
            self.crosscheck = self.backend.crosscheck(self.view.decision_id)
        except Exception as exc:
            self.status.error(f"MLflow cross-check failed: {describe_error(exc)}")
            return
        if self.crosscheck.status == "ok":
            self.status.success("MLflow agrees with the audit log.")
        else:
            self.status.error("MLflow and the audit log disagree (see the cross-check).")
        self._compose()

    def _compose(self) -> None:
        view = self.view
        if view is None:
            self.chain.value = ""
            self.children = (self.chooser,)
            return
        steps = list(view.steps) + ([self.crosscheck] if self.crosscheck else [])
        problems = "".join(f"<li>{esc(p)}</li>" for p in view.problems)
        self.chain.value = "".join(step_html(s) for s in steps) + (
            f'<div style="color:{RED}"><b>Where the records stop or disagree</b>'
            f"<ul>{problems}</ul></div>"
            if problems
            else verdict(True, "Every link of this chain is in the records.")
        )
        self.explanation.value = (
            '<div style="font-weight:600;margin-top:8px">The explanation the reviewer saw</div>'
            + (replay_html(self.replay) if self.replay else verdict(None, "Not available."))
        )
        parts: list[widgets.Widget] = [self.chooser, self.chain, self.explanation]
        page = self.training
        if page is not None:
            counts = ", ".join(f"{n} {src}" for src, n in page.by_source.items())
            self.training_html.value = (
                '<div style="font-weight:600;margin-top:8px">'
                f"The decisions that trained this model: {page.total}</div>"
                f'<div style="color:{MUTED}">{esc(counts)}; showing {page.offset + 1} to '
                f"{page.offset + len(page.rows)}</div>"
                + table(
                    ["seq", "decision", "case", "action", "reviewer", "label", "source", "check"],
                    [
                        (
                            r.seq,
                            r.decision_id,
                            r.case_id,
                            r.action,
                            r.reviewer,
                            r.final_label,
                            r.label_source,
                            r.problem or "agrees with the log",
                        )
                        for r in page.rows
                    ],
                    css_class="hilt-training-decisions",
                )
            )
            self.prev_button.disabled = page.offset == 0
            self.next_button.disabled = page.offset + len(page.rows) >= page.total
            if view.chart_png:
                self.chart.value = view.chart_png
                parts.append(self.chart)
            parts += [self.training_html, self.pager]
        parts.append(self.mlflow_button)
        self.children = tuple(parts)
