"""DecisionBar: Accept, Override, Flag, Skip, Undo, and the small panels they open.

The bar collects a decision and emits it as a ``DecisionIntent`` to its ``on_decision``
callbacks; it knows nothing about cases, clocks or backends. The coordinator (usually a
``ReviewSession``) turns the intent into a ``DecisionInput`` (case, prediction, timing,
request id), submits it, and calls ``reset()`` when the next case is shown.

- Accept: one click.
- Override: opens a panel with the target class, a reason code (no default: the reviewer
  must choose one), a comment (required when the config says so; its length is capped),
  and "Confirm override". An incomplete override is refused in the status line and
  nothing is emitted.
- Flag: opens a panel for an optional note to the second reviewer, and "Confirm flag".
- Skip: one click; hands the case back.
- Undo: enabled only while there is a decision to undo (``can_undo``); the coordinator
  records a compensating event, history is never rewritten.

Buttons can be pressed by the keyboard shortcuts (``press(action)``), which respect the
same enabled state as the mouse. A click that arrives for a disabled button (queued in the
browser before it was disabled) is ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import ipywidgets as widgets
import traitlets

from hilt.widgets.common.callbacks import Listeners
from hilt.widgets.common.colours import MUTED
from hilt.widgets.common.status import StatusLine
from hilt.widgets.contracts.common import ReviewConfig
from hilt.widgets.review.keyboard import ACTION_KEYS, MAX_CLASS_KEYS

IntentAction = Literal["accept", "override", "flag", "skip", "undo"]
Panel = Literal["", "override", "flag"]

_KEY_FOR: dict[str, str] = {action: key for key, action in ACTION_KEYS.items()}


@dataclass(frozen=True)
class DecisionIntent:
    """A decision as the reviewer made it, before the coordinator adds case and timing."""

    action: IntentAction
    #: override: the class the reviewer chose.
    final_label: str | None = None
    #: override: the reason code (a key of ``ReviewConfig.reason_codes``).
    reason_code: str | None = None
    #: override: the comment; flag: the note for the second reviewer. None when empty.
    comment: str | None = None


def _clean_text(text: str) -> str | None:
    """Strip NUL characters and surrounding blanks; None for an empty text."""
    cleaned = text.replace("\x00", "").strip()
    return cleaned or None


def _text_box(description: str, placeholder: str) -> widgets.Textarea:
    """The comment of an override, the note of a flag: same look, empty at first."""
    return widgets.Textarea(
        value="",
        placeholder=placeholder,
        description=description,
        style={"description_width": "initial"},
        layout=widgets.Layout(width="min(100%, 36em)"),
    )


def _panel(
    action: str,
    title: str,
    fields: list[widgets.Widget],
    confirm: widgets.Button,
    cancel: widgets.Button,
) -> widgets.VBox:
    """The panel an action opens: what it does, its inputs, Confirm and Cancel."""
    panel = widgets.VBox([widgets.HTML(title), *fields, widgets.HBox([confirm, cancel])])
    panel.add_class(f"hilt-{action}-panel")
    return panel


class DecisionBar(widgets.VBox):
    """The decision buttons and their panels for one review config."""

    #: A case is open (False when the queue is empty: only Undo stays usable).
    has_case = traitlets.Bool(True)
    #: Blind-first, before the reviewer's own judgement: Accept and Override are locked.
    awaiting_judgement = traitlets.Bool(False)
    #: The case has a prediction that Accept could confirm.
    can_accept = traitlets.Bool(True)
    #: There is a last decision that Undo would compensate.
    can_undo = traitlets.Bool(False)
    #: The open panel: "", "override" or "flag".
    panel = traitlets.Unicode("")

    def __init__(
        self, config: ReviewConfig, status: StatusLine | None = None, **kwargs: Any
    ) -> None:
        """``status``: where refusals are explained; the bar shows its own line if omitted."""
        super().__init__(**kwargs)
        self.config = config
        self.add_class("hilt-decision-bar")
        self._owns_status = status is None
        self.status = status if status is not None else StatusLine()
        self._emit = Listeners[DecisionIntent](self.status, "The decision could not be handled")
        self._model_label: str | None = None

        self.accept_button = self._button(
            "Accept", "accept", "success", "Accept the model's prediction"
        )
        self.override_button = self._button(
            "Override", "override", "warning", "Decide for another class, with a reason code"
        )
        self.flag_button = self._button(
            "Flag", "flag", "info", "Ask another reviewer for a second opinion"
        )
        self.skip_button = self._button("Skip", "skip", "", "Hand the case back to the queue")
        self.undo_button = self._button("Undo", "undo", "", "Undo your last decision")
        self.accept_button.on_click(self._on_accept)
        self.override_button.on_click(self._on_override)
        self.flag_button.on_click(self._on_flag)
        self.skip_button.on_click(self._on_skip)
        self.undo_button.on_click(self._on_undo)
        self.buttons = widgets.HBox(
            [
                self.accept_button,
                self.override_button,
                self.flag_button,
                self.skip_button,
                self.undo_button,
            ]
        )

        # --- override panel
        n_keys = min(len(config.classes), MAX_CLASS_KEYS)
        self.target_buttons = widgets.ToggleButtons(
            options=[(config.class_label(c), c) for c in config.classes],
            value=None,
            description="Decide for",
            tooltips=[
                f"{config.class_label(c)}" + (f" (shortcut: {i + 1})" if i < n_keys else "")
                for i, c in enumerate(config.classes)
            ],
            style={"description_width": "initial"},
        )
        self.reason_dropdown = widgets.Dropdown(
            options=[(text, code) for code, text in config.reason_codes.items()],
            value=None,
            description="Reason code",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="min(100%, 36em)"),
        )
        need = "required" if config.comment_required else "optional"
        self.comment_area = _text_box(
            "Comment", f"Comment ({need}, at most {config.max_comment_length} characters)"
        )
        self.comment_counter = widgets.HTML()
        self.confirm_override_button, self.cancel_override_button = self._confirm_and_cancel(
            "override",
            "warning",
            "Record the override with the chosen class and reason code",
            self._on_confirm_override,
        )
        self.override_panel = _panel(
            "override",
            "<b>Override</b>: decide for another class and say why.",
            [self.target_buttons, self.reason_dropdown, self.comment_area, self.comment_counter],
            self.confirm_override_button,
            self.cancel_override_button,
        )

        # --- flag panel
        self.flag_note = _text_box(
            "Note",
            f"Note for the second reviewer (optional, at most "
            f"{config.max_comment_length} characters)",
        )
        self.confirm_flag_button, self.cancel_flag_button = self._confirm_and_cancel(
            "flag",
            "info",
            "Send the case to another reviewer for a second opinion",
            self._on_confirm_flag,
        )
        self.flag_panel = _panel(
            "flag",
            "<b>Flag for a second opinion</b>: another reviewer will decide this case.",
            [self.flag_note],
            self.confirm_flag_button,
            self.cancel_flag_button,
        )

        self.comment_area.observe(self._on_text, names="value")
        self.flag_note.observe(self._on_text, names="value")
        self.observe(
            self._on_state, names=["has_case", "awaiting_judgement", "can_accept", "can_undo"]
        )
        self.observe(self._on_panel, names="panel")
        self._update_counter()
        self._update_buttons()
        self._compose()

    # ------------------------------------------------------------------ public API
    def on_decision(self, fn: Callable[[DecisionIntent], None]) -> None:
        """Register ``fn(intent)``, called for every complete decision."""
        self._emit.add(fn)

    def set_model_label(self, label: str | None) -> None:
        """The model's class for the open case, once it may be seen (None while hidden).

        Used to preselect the other class of a two-class problem and to refuse an override
        to the model's own class. Kept out of every trait, so it is never in the tree.
        """
        self._model_label = label

    def press(self, action: str) -> bool:
        """Press a button by action name ("accept", …), as a shortcut does; False if disabled."""
        button = {
            "accept": self.accept_button,
            "override": self.override_button,
            "flag": self.flag_button,
            "skip": self.skip_button,
            "undo": self.undo_button,
        }.get(action)
        if button is None or button.disabled:
            return False
        button.click()
        return True

    def select_target(self, cls: str) -> bool:
        """Choose the override's target class (digit shortcuts); False if the panel is closed."""
        if self.panel != "override" or cls not in self.config.classes:
            return False
        self.target_buttons.value = cls
        return True

    def reset(self) -> None:
        """Close the panels and empty their inputs (a new case is shown)."""
        with self.hold_trait_notifications():
            self.target_buttons.value = None
            self.reason_dropdown.value = None
            self.comment_area.value = ""
            self.flag_note.value = ""
            self.panel = ""
        self._compose()

    # ------------------------------------------------------------------ handlers
    def _button(self, label: str, action: str, style: str, tip: str) -> widgets.Button:
        return widgets.Button(
            description=label,
            button_style=style,
            tooltip=f"{tip} (shortcut: {_KEY_FOR[action]})",
        )

    def _confirm_and_cancel(
        self, action: str, style: str, tip: str, on_confirm: Callable[[Any], None]
    ) -> tuple[widgets.Button, widgets.Button]:
        """The two buttons at the foot of ``action``'s panel."""
        confirm = widgets.Button(description=f"Confirm {action}", button_style=style, tooltip=tip)
        cancel = widgets.Button(description="Cancel", tooltip=f"Close the {action} panel")
        confirm.on_click(on_confirm)
        cancel.on_click(self._on_cancel)
        return confirm, cancel

    def _on_accept(self, _button: Any = None) -> None:
        if not self.accept_button.disabled:
            self._emit(DecisionIntent("accept"))

    def _on_skip(self, _button: Any = None) -> None:
        if not self.skip_button.disabled:
            self._emit(DecisionIntent("skip"))

    def _on_undo(self, _button: Any = None) -> None:
        if not self.undo_button.disabled:
            self._emit(DecisionIntent("undo"))

    def _on_override(self, _button: Any = None) -> None:
        if self.override_button.disabled:
            return
        if (
            self.target_buttons.value is None
            and self._model_label is not None
            and len(self.config.classes) == 2
        ):
            others = [c for c in self.config.classes if c != self._model_label]
            if len(others) == 1:
                self.target_buttons.value = others[0]
        self.panel = "override"

    def _on_flag(self, _button: Any = None) -> None:
        if not self.flag_button.disabled:
            self.panel = "flag"

    def _on_cancel(self, _button: Any = None) -> None:
        self.panel = ""

    def _on_confirm_override(self, _button: Any = None) -> None:
        if self.panel != "override" or self.override_button.disabled:
            return
        target = self.target_buttons.value
        reason = self.reason_dropdown.value
        comment = _clean_text(self.comment_area.value)
        limit = self.config.max_comment_length
        problem = None
        if target is None:
            problem = "Override refused: choose the class you decide for."
        elif reason is None:
            problem = "Override refused: choose a reason code (an override needs one)."
        elif self._model_label is not None and target == self._model_label:
            problem = (
                "Override refused: that is the model's own class. Use Accept, or choose "
                "another class."
            )
        elif self.config.comment_required and comment is None:
            problem = "Override refused: a comment is required for an override."
        elif comment is not None and len(comment) > limit:
            problem = f"Override refused: the comment is longer than {limit} characters."
        if problem is not None:
            self.status.error(problem)
            return
        self._emit(
            DecisionIntent(
                "override", final_label=str(target), reason_code=str(reason), comment=comment
            )
        )

    def _on_confirm_flag(self, _button: Any = None) -> None:
        if self.panel != "flag" or self.flag_button.disabled:
            return
        note = _clean_text(self.flag_note.value)
        limit = self.config.max_comment_length
        if note is not None and len(note) > limit:
            self.status.error(f"Flag refused: the note is longer than {limit} characters.")
            return
        self._emit(DecisionIntent("flag", comment=note))

    def _on_text(self, change: Any) -> None:
        limit = self.config.max_comment_length
        text = change["new"]
        if isinstance(text, str) and len(text) > limit:
            change["owner"].value = text[:limit]
            self.status.error(f"Comments are limited to {limit} characters; the rest was cut.")
        self._update_counter()

    def _update_counter(self) -> None:
        limit = self.config.max_comment_length
        used = len(self.comment_area.value)
        need = "required" if self.config.comment_required else "optional"
        self.comment_counter.value = (
            f'<span style="font-size:0.85em;color:{MUTED}">'
            f"Comment {need} · {used} / {limit} characters</span>"
        )

    def _on_state(self, _change: Any) -> None:
        self._update_buttons()

    def _on_panel(self, _change: Any) -> None:
        self._compose()

    def _update_buttons(self) -> None:
        can_decide = self.has_case and not self.awaiting_judgement
        self.accept_button.disabled = not (can_decide and self.can_accept)
        self.override_button.disabled = not can_decide
        self.flag_button.disabled = not self.has_case
        self.skip_button.disabled = not self.has_case
        self.undo_button.disabled = not self.can_undo
        if (self.panel == "override" and self.override_button.disabled) or (
            self.panel == "flag" and self.flag_button.disabled
        ):
            self.panel = ""

    def _compose(self) -> None:
        parts: list[Any] = [self.buttons]
        if self.panel == "override":
            parts.append(self.override_panel)
        elif self.panel == "flag":
            parts.append(self.flag_panel)
        if self._owns_status:
            parts.append(self.status)
        self.children = tuple(parts)
