"""AdjudicationPanel: the lead settles double-review conflicts.

A double-review case whose two reviewers disagree waits here. The lead picks a case, sees
it as a reviewer saw it (the display fields only), the model's prediction and both reviews,
and settles it with one button per class (an optional comment says why). The adjudication
is the case's final label. A lead who was one of the two reviewers is refused by the store;
the status line says so.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from hilt.widgets.common.callbacks import NOT_REFRESHED, Listeners
from hilt.widgets.common.class_buttons import class_buttons
from hilt.widgets.common.html_table import note
from hilt.widgets.common.status import StatusLine, describe_error
from hilt.widgets.contracts.common import ReviewConfig
from hilt.widgets.contracts.oversight import AdjudicationReceipt, ConflictItem, OversightBackend
from hilt.widgets.review.case_card import CaseCard


class AdjudicationPanel(widgets.VBox):
    """The adjudication queue of ``backend``."""

    def __init__(
        self,
        backend: OversightBackend,
        config: ReviewConfig,
        status: StatusLine | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-adjudication")
        self.backend = backend
        self.config = config
        self.status = status or StatusLine()
        self.summary = widgets.HTML()
        self.picker = widgets.Dropdown(description="Case", options=[])
        self.picker.observe(self._on_pick, names="value")
        self.case_card = CaseCard(config)
        self.reviews = widgets.HTML()
        self.comment = widgets.Textarea(
            placeholder="Why this label (optional; audited as a hash)",
            layout=widgets.Layout(width="36em", height="3.5em"),
        )
        self.class_buttons = class_buttons(
            config,
            lambda label: f"Settle as {label}",
            lambda _i, label: f"The final label of this case becomes {label}",
            self.settle,
        )
        self.buttons = widgets.HBox(list(self.class_buttons.values()))
        self.conflicts: tuple[ConflictItem, ...] = ()
        self._notify = Listeners[AdjudicationReceipt](self.status, NOT_REFRESHED)
        self.refresh()

    @property
    def selected(self) -> ConflictItem | None:
        return next((c for c in self.conflicts if c.item.case_id == self.picker.value), None)

    def on_adjudicated(self, fn: Callable[[AdjudicationReceipt], None]) -> None:
        self._notify.add(fn)

    def refresh(self) -> None:
        try:
            conflicts = self.backend.conflicts()
        except Exception as exc:
            self.status.error(f"Could not load the adjudication queue: {describe_error(exc)}")
            conflicts = ()
        self.conflicts = tuple(conflicts)
        keep = self.picker.value
        ids = [c.item.case_id for c in self.conflicts]
        self.picker.options = ids
        self.picker.value = keep if keep in ids else (ids[0] if ids else None)
        self._compose()

    def select(self, case_id: str) -> None:
        self.picker.value = case_id

    def settle(self, final_label: str) -> None:
        conflict = self.selected
        if conflict is None:
            self.status.error("No conflict is selected: nothing to settle.")
            return
        comment = self.comment.value.strip() or None
        try:
            receipt = self.backend.adjudicate(conflict.item.case_id, final_label, comment)
        except Exception as exc:
            self.status.error(f"Not settled: {describe_error(exc)}")
            return
        self.comment.value = ""
        self.status.success(
            f"Settled {receipt.case_id} as {self.config.class_label(receipt.final_label)}."
        )
        self.refresh()
        self._notify(receipt)

    def _on_pick(self, change: Any) -> None:
        self._compose()

    def _compose(self) -> None:
        n = len(self.conflicts)
        conflict = self.selected
        children: tuple[Any, ...] = (self.summary,)
        if n == 0:
            self.summary.value = note("No conflicts waiting.")
            self.case_card.show(None)
        else:
            self.summary.value = (
                f"<div><b>{n}</b> case{'s' if n != 1 else ''} where two reviewers disagree.</div>"
            )
            children = (self.summary, self.picker)
        if n and conflict is not None:
            self.case_card.show(conflict.item)
            label = self.config.class_label
            model = (
                label(conflict.item.predicted_label)
                if conflict.item.predicted_label is not None
                else "no prediction"
            )
            self.reviews.value = (
                '<div style="margin:0.3em 0">'
                f"Model: <b>{html.escape(model)}</b><br>"
                f"First review ({html.escape(conflict.first_reviewer)}): "
                f"<b>{html.escape(label(conflict.first_label))}</b><br>"
                f"Second review ({html.escape(conflict.second_reviewer)}): "
                f"<b>{html.escape(label(conflict.second_label))}</b></div>"
            )
            children += (self.case_card, self.reviews, self.comment, self.buttons)
        self.children = children
