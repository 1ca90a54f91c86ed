"""BlindJudgement: the reviewer's own call, recorded before the model's output is shown.

In blind-first mode (``ReviewConfig.blind_first``) anchoring on the model is avoided by
asking first: one button per class ("My judgement: good risk"), digits as shortcuts.
The choice goes to ``on_judgement`` callbacks; the coordinator stores it (action "blind",
model_shown False) and only then reveals the prediction. Afterwards the widget shows the
recorded judgement next to the model's output, so the two can be compared.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import traitlets

from hilt.widgets.common.callbacks import Listeners
from hilt.widgets.common.class_buttons import class_buttons
from hilt.widgets.common.status import StatusLine
from hilt.widgets.contracts.common import ReviewConfig
from hilt.widgets.review.keyboard import MAX_CLASS_KEYS


class BlindJudgement(widgets.VBox):
    """Ask for the reviewer's judgement (``ask()``), or show it (``show_recorded(cls)``)."""

    #: "off" (nothing shown), "asking" (buttons), "recorded" (the judgement as text).
    state = traitlets.Unicode("off")

    def __init__(
        self, config: ReviewConfig, status: StatusLine | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.add_class("hilt-blind-judgement")
        self.status = status if status is not None else StatusLine()
        self._listeners = Listeners[str](self.status, "The judgement could not be handled")
        self.recorded: str | None = None
        self.prompt = widgets.HTML(
            "<b>Your judgement first.</b> The model's output stays hidden until you record "
            "your own assessment of this case."
        )
        self.class_buttons = class_buttons(
            config,
            lambda label: f"My judgement: {label}",
            lambda i, label: (
                f"Record your own judgement: {label}"
                + (f" (shortcut: {i + 1})" if i < MAX_CLASS_KEYS else "")
            ),
            self.choose,
        )
        self.buttons = widgets.HBox(list(self.class_buttons.values()))
        self.summary = widgets.HTML()
        self.observe(lambda _change: self._compose(), names="state")
        self._compose()

    def on_judgement(self, fn: Callable[[str], None]) -> None:
        """Register ``fn(cls)``, called when the reviewer records a class."""
        self._listeners.add(fn)

    def ask(self) -> None:
        self.recorded = None
        self.state = "asking"
        self._compose()

    def show_recorded(self, cls: str | None) -> None:
        """Show the recorded judgement; ``None`` hides the widget (no blind judgement)."""
        self.recorded = cls
        self.state = "off" if cls is None else "recorded"
        self._compose()

    def off(self) -> None:
        self.show_recorded(None)

    def choose(self, cls: str) -> bool:
        """Record ``cls`` as the judgement (button or digit); False when not asking."""
        if self.state != "asking" or cls not in self.config.classes:
            return False
        self._listeners(cls)
        return True

    def _compose(self) -> None:
        children: tuple[Any, ...] = ()
        self.summary.value = ""
        if self.state == "asking":
            children = (self.prompt, self.buttons)
        elif self.state == "recorded" and self.recorded is not None:
            label = self.config.class_label(self.recorded)
            self.summary.value = (
                f"Your blind judgement: <b>{html.escape(label)}</b> (recorded before the "
                "model's output was shown)"
            )
            children = (self.summary,)
        self.children = children
