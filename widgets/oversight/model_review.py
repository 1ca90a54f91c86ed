"""ModelReview: the challenger against the champion, and the lead's Approve / Reject.

Reading the model registry is slow (MLflow), so nothing is loaded until the lead asks
(``load()``, the "Compare" button): the dashboard opens fast. Then: metrics side by side,
the gate's checks, the selection rate per protected group under both models, a figure,
and Approve / Reject. Four eyes: a lead who trained the run sees both buttons disabled
with the reason, and the backend (the same function as `hilt promote`) refuses anyway.
A rejection needs a reason.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import traitlets

from hilt.widgets.common.callbacks import NOT_REFRESHED, Listeners
from hilt.widgets.common.colours import GREEN, RED
from hilt.widgets.common.figure import figure_image
from hilt.widgets.common.formats import DASH
from hilt.widgets.common.html_table import compact_table, note
from hilt.widgets.common.status import StatusLine, describe_error
from hilt.widgets.contracts.oversight import ModelComparison, ModelDecision, OversightBackend


def _value(x: float | None) -> str:
    return DASH if x is None else f"{x:.3f}"


class ModelReview(widgets.VBox):
    """Challenger against champion for ``backend``; load on demand."""

    #: "idle" (nothing loaded), "none" (no challenger), "loaded", "decided", "error".
    phase = traitlets.Unicode("idle")

    def __init__(
        self, backend: OversightBackend, status: StatusLine | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-model-review")
        self.backend = backend
        self.status = status or StatusLine()
        self.load_button = widgets.Button(
            description="Compare challenger with champion",
            tooltip="Read both models' evaluation from the model registry",
            layout=widgets.Layout(width="auto", align_self="flex-start"),
        )
        self.load_button.on_click(lambda _b: self.load())
        self.summary = widgets.HTML()
        self.details = widgets.HTML()
        self.figure: widgets.Image | None = None
        self.reason = widgets.Textarea(
            placeholder="Reason for a rejection (required to reject; audited as a hash)",
            layout=widgets.Layout(width="36em", height="3.5em"),
        )
        self.approve_button = widgets.Button(
            description="Approve: make it the champion",
            button_style="success",
            layout=widgets.Layout(width="auto"),
        )
        self.reject_button = widgets.Button(
            description="Reject", button_style="warning", layout=widgets.Layout(width="auto")
        )
        self.approve_button.on_click(lambda _b: self.approve())
        self.reject_button.on_click(lambda _b: self.reject())
        self.decision_buttons = widgets.HBox([self.approve_button, self.reject_button])
        self.why_not = widgets.HTML()
        self.comparison: ModelComparison | None = None
        self._notify = Listeners[ModelDecision](self.status, NOT_REFRESHED)
        self._compose()

    def on_decided(self, fn: Callable[[ModelDecision], None]) -> None:
        self._notify.add(fn)

    def load(self) -> None:
        self.status.info("Reading the challenger and the champion from the model registry…")
        try:
            comparison = self.backend.comparison()
        except Exception as exc:
            self.phase = "error"
            self.status.error(f"Could not compare the models: {describe_error(exc)}")
            self._compose()
            return
        self.comparison = comparison
        self.phase = "none" if comparison is None else "loaded"
        self.figure = figure_image(comparison.figure) if comparison else None
        self.status.clear()
        self._compose()

    def approve(self) -> None:
        c = self.comparison
        if c is None or self.phase != "loaded":
            self.status.error("Load the comparison first: nothing to approve.")
            return
        self._decide(lambda: self.backend.approve(c.run_id), "Not approved")

    def reject(self) -> None:
        c = self.comparison
        if c is None or self.phase != "loaded":
            self.status.error("Load the comparison first: nothing to reject.")
            return
        reason = self.reason.value.strip()
        if not reason:
            self.status.error("A rejection needs a reason: say why in the box above the buttons.")
            return
        self._decide(lambda: self.backend.reject(c.run_id, reason), "Not rejected")

    def _decide(self, call: Callable[[], ModelDecision], refused: str) -> None:
        try:
            decision = call()
        except Exception as exc:
            self.status.error(f"{refused}: {describe_error(exc)}")
            return
        self.reason.value = ""
        self.phase = "decided"
        self.status.success(decision.message)
        self._compose()
        self._notify(decision)

    def _compose(self) -> None:
        c = self.comparison
        if self.phase in ("idle", "error") or c is None:
            if c is None and self.phase == "none":
                text = "No challenger waits for a decision."
                self.load_button.description = "Check again"
            else:
                text = "Metrics, subgroup metrics and the gate of the challenger and the champion."
            self.summary.value = note(text)
            self.children = (self.summary, self.load_button)
            return
        champion = f"version {c.champion_version}" if c.champion_version else "none yet"
        gate_colour = GREEN if c.gate == "passed" else RED
        self.summary.value = (
            f"<div>Challenger: <b>version {html.escape(c.challenger_version)}</b> (run "
            f"{html.escape(c.run_id)}, trained by {html.escape(c.author or '?')}) · Champion: "
            f"<b>{html.escape(champion)}</b> · Gate: "
            f'<b style="color:{gate_colour}">{html.escape(c.gate or "no result")}</b></div>'
        )
        metrics = compact_table(
            ["Holdout metric", "Challenger", "Champion"],
            [([m.name, _value(m.challenger), _value(m.champion)], None) for m in c.metrics],
        )
        checks = compact_table(
            ["Gate check", "Result", "Why"],
            [
                ([g.name, "pass" if g.passed else "FAIL", g.explanation], None if g.passed else RED)
                for g in c.checks
            ],
        )
        groups = compact_table(
            ["Attribute", "Group", "n", "Selection rate: challenger", "champion"],
            [
                ([s.attribute, s.group, str(s.n), _value(s.challenger), _value(s.champion)], None)
                for s in c.subgroups
            ],
        )
        how = note(
            "Each model on the holdout as of its own training snapshot; the gate's champion "
            "check compared both on the challenger's.",
            size="0.85em",
        )
        self.details.value = metrics + how + checks + groups
        parts: list[widgets.Widget] = [self.summary, self.details]
        if self.figure is not None:
            parts.append(self.figure)
        if self.phase == "decided":
            self.load_button.description = "Check again"
            parts.append(self.load_button)
        else:
            self.approve_button.disabled = not c.can_decide or c.gate != "passed"
            self.reject_button.disabled = not c.can_decide
            why = c.why_not if not c.can_decide else None
            if c.can_decide and c.gate != "passed":
                why = "The gate did not pass: this challenger cannot be approved."
            self.why_not.value = f'<div style="color:{RED}">{html.escape(why)}</div>' if why else ""
            if why:
                parts.append(self.why_not)
            parts += [self.reason, self.decision_buttons]
        self.children = tuple(parts)
