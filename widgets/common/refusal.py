"""RefusalScreen: what a person sees instead of a panel they may not use.

A friendly explanation and nothing else: no panel, no input, no button that could write.
Shown, for example, to a user who is not in the workspace's config or lacks the role a
dashboard needs. The message should say what to do next (whom to ask), not why in
technical terms, and must not contain personal data beyond the user's own name.

``panel_for(access, …)`` is how each dashboard's ``…_panel(access)`` turns what its backend
opener returned into what the notebook displays, without ever raising.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any, TypeVar

import ipywidgets as widgets

from hilt.widgets.common.colours import BACKGROUND, FRAME
from hilt.widgets.common.icons import lock_svg
from hilt.widgets.common.status import describe_error
from hilt.widgets.contracts.common import Refusal

Backend = TypeVar("Backend")
Person = TypeVar("Person")
Panel = TypeVar("Panel", bound=widgets.Widget)


class RefusalScreen(widgets.VBox):
    """A read-only refusal: a title and a message, both shown as plain text."""

    def __init__(self, title: str, message: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.message = message
        self.add_class("hilt-refusal")
        self.text = widgets.HTML()
        self._compose()

    def _compose(self) -> None:
        self.text.value = (
            '<div role="alert" style="max-width:40em;margin:2em auto;padding:1.5em 2em;'
            f"border:1px solid {FRAME};border-radius:8px;"
            f'background:{BACKGROUND}">'
            f'<div style="font-size:2em;line-height:1">{lock_svg()}</div>'
            f'<h2 style="margin:0.4em 0">{html.escape(self.title)}</h2>'
            f'<p style="margin:0;white-space:pre-line">{html.escape(self.message)}</p>'
            "</div>"
        )
        self.children = (self.text,)


def panel_for(
    access: Backend | Refusal,
    unavailable: str,
    identify: Callable[[Backend], Person],
    build: Callable[[Backend, Person], Panel],
) -> Panel | RefusalScreen:
    """The dashboard for ``access``, or the refusal to show instead; never raises.

    A ``Refusal`` (the backend's door said no) becomes its ``RefusalScreen``. Otherwise
    ``identify(backend)`` asks who is looking: without an answer there is no panel, only a
    refusal titled ``unavailable``. Then ``build(backend, person)``.
    """
    if isinstance(access, Refusal):
        return RefusalScreen(access.title, access.message)
    try:
        person = identify(access)
    except Exception as exc:
        why = describe_error(exc)
        return RefusalScreen(unavailable, f"Your identity could not be confirmed: {why}")
    return build(access, person)
