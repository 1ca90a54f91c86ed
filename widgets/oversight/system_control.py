"""SystemControl: the lead's Halt and Resume (EU AI Act Art. 14(4)(e)).

A banner says whether scoring and retraining run. Halt needs a reason (kept in the store,
audited as its sha256) and takes effect at once: runs are refused and new cases wait for
manual review. Resume needs a second lead: the person who halted sees the button disabled
with the reason why, and the store refuses it anyway. Errors go to the status line.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import traitlets

from hilt.widgets.common.callbacks import NOT_REFRESHED, Listeners
from hilt.widgets.common.colours import GREEN, RED
from hilt.widgets.common.html_table import note
from hilt.widgets.common.status import StatusLine, describe_error
from hilt.widgets.contracts.oversight import OversightBackend, SystemStatus


class SystemControl(widgets.VBox):
    """Halt and resume for ``backend``, acting as the lead named ``me``."""

    halted = traitlets.Bool(False)

    def __init__(
        self,
        backend: OversightBackend,
        me: str | None,
        status: StatusLine | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-system-control")
        self.backend = backend
        self.me = me
        self.status = status or StatusLine()
        self.banner = widgets.HTML()
        self.reason = widgets.Textarea(
            placeholder="Why halt? Required; kept in the store, shown to leads, audited as a hash.",
            layout=widgets.Layout(width="36em", height="4em"),
        )
        self.halt_button = widgets.Button(
            description="Halt scoring and retraining",
            button_style="danger",
            tooltip="Refuse every scoring and retraining run at once; new cases: manual review",
            layout=widgets.Layout(width="auto", align_self="flex-start"),
        )
        self.resume_button = widgets.Button(
            description="Resume",
            button_style="success",
            tooltip="Scoring and retraining run again (a second lead, not the one who halted)",
            layout=widgets.Layout(width="auto", align_self="flex-start"),
        )
        self.note = widgets.HTML()
        self.halt_button.on_click(lambda _b: self.halt())
        self.resume_button.on_click(lambda _b: self.resume())
        self.state: SystemStatus | None = None
        self._notify = Listeners[SystemStatus](self.status, NOT_REFRESHED)
        self.refresh()

    def on_change(self, fn: Callable[[SystemStatus], None]) -> None:
        """Register ``fn(state)``, called after a halt or a resume the store recorded."""
        self._notify.add(fn)

    def refresh(self) -> None:
        try:
            self._set(self.backend.system_status())
        except Exception as exc:
            self.status.error(f"Could not read the system state: {describe_error(exc)}")
            self._compose()

    def halt(self) -> None:
        reason = self.reason.value.strip()
        if not reason:
            self.status.error("A halt needs a reason: say why in the box above the button.")
            return
        try:
            state = self.backend.halt(reason)
        except Exception as exc:
            self.status.error(f"Not halted: {describe_error(exc)}")
            self.refresh()
            return
        self.reason.value = ""
        self._set(state)
        self.status.success(
            "Halted: scoring and retraining are refused, new cases wait for manual review."
        )
        self._notify(state)

    def resume(self) -> None:
        try:
            state = self.backend.resume()
        except Exception as exc:
            self.status.error(f"Not resumed: {describe_error(exc)}")
            self.refresh()
            return
        self._set(state)
        self.status.success("Resumed: scoring and retraining run again.")
        self._notify(state)

    def _set(self, state: SystemStatus) -> None:
        self.state = state
        self.halted = state.halted
        self._compose()

    def _compose(self) -> None:
        state = self.state
        children: tuple[Any, ...] = (self.banner,)
        if state is None:
            self.banner.value = ""
        elif state.halted:
            when = f" at {state.changed_at}" if state.changed_at else ""
            reason = (
                f'<div style="font-weight:400;margin-top:0.2em">Reason: '
                f"{html.escape(state.reason)}</div>"
                if state.reason
                else ""
            )
            self.banner.value = (
                f'<div role="alert" style="border:2px solid {RED};color:{RED};border-radius:6px;'
                'padding:0.5em 0.9em;font-weight:600">'
                f"HALTED by {html.escape(state.changed_by or '?')}{html.escape(when)}: scoring "
                "and retraining are refused; new cases wait for manual review."
                f"{reason}</div>"
            )
            mine = state.changed_by is not None and state.changed_by == self.me
            self.resume_button.disabled = mine
            self.note.value = (
                note("You halted the system: a second lead must resume it.") if mine else ""
            )
            children = (self.banner, self.resume_button)
            if mine:
                children += (self.note,)
        else:
            self.banner.value = (
                f'<div style="border:1px solid {GREEN};color:{GREEN};border-radius:6px;'
                'padding:0.5em 0.9em;font-weight:600">Running: scoring and retraining are '
                "allowed.</div>"
            )
            children = (self.banner, self.reason, self.halt_button)
        self.children = children
