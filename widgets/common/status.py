"""StatusLine: the one place where a panel tells its user what happened.

``print()`` output is invisible in Voila, and an exception raised inside a button callback
disappears into the kernel log. Every widget that can refuse an input or meet a backend
error writes a short, plain-text message here instead. Messages never contain personal
data: they name actions and fields, not values.
"""

from __future__ import annotations

import html
from typing import Any, Literal

import ipywidgets as widgets
import traitlets

from hilt.widgets.common.colours import GREEN, RED, TEXT

StatusLevel = Literal["info", "success", "error"]

#: Longest message shown; backend messages are cut, never allowed to flood the panel.
MAX_STATUS_CHARS = 300

_COLOURS: dict[str, str] = {"info": TEXT, "success": GREEN, "error": RED}
_PREFIX: dict[str, str] = {"info": "", "success": "✓ ", "error": "⚠ "}


class StatusLine(widgets.HTML):
    """A single line of text: ``info()``, ``success()``, ``error()``, ``clear()``.

    ``text`` and ``level`` hold the plain message (tests read them); ``value`` is the HTML
    the browser shows, escaped, inside an ARIA live region so screen readers announce it.
    """

    text = traitlets.Unicode("")
    level = traitlets.Unicode("info")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-status")
        self._compose()

    def info(self, text: str) -> None:
        self._set(text, "info")

    def success(self, text: str) -> None:
        self._set(text, "success")

    def error(self, text: str) -> None:
        self._set(text, "error")

    def clear(self) -> None:
        self._set("", "info")

    def _set(self, text: str, level: StatusLevel) -> None:
        one_line = " ".join(text.split())
        if len(one_line) > MAX_STATUS_CHARS:
            one_line = one_line[: MAX_STATUS_CHARS - 1] + "…"
        with self.hold_trait_notifications():
            self.text = one_line
            self.level = level
        self._compose()

    def _compose(self) -> None:
        if not self.text:
            self.value = '<div role="status" aria-live="polite" style="min-height:1.4em"></div>'
            return
        colour = _COLOURS.get(self.level, _COLOURS["info"])
        role = "alert" if self.level == "error" else "status"
        self.value = (
            f'<div role="{role}" aria-live="polite" style="min-height:1.4em;color:{colour};'
            f'font-weight:{600 if self.level == "error" else 400}">'
            f"{_PREFIX.get(self.level, '')}{html.escape(self.text)}</div>"
        )


def describe_error(exc: BaseException) -> str:
    """A short, single-line description of a backend error for the status line.

    The backend's messages are written for people and carry no personal data (house rule);
    the type name stands in when an exception has no message.
    """
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > MAX_STATUS_CHARS - 60:
        text = text[: MAX_STATUS_CHARS - 61] + "…"
    return text
