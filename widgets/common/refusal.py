"""RefusalScreen: what a person sees instead of a panel they may not use.

A friendly explanation and nothing else: no panel, no input, no button that could write.
Shown, for example, to a user who is not in the workspace's config or lacks the role a
dashboard needs. The message should say what to do next (whom to ask), not why in
technical terms, and must not contain personal data beyond the user's own name.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets


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
            "border:1px solid var(--jp-border-color1, #d1d5db);border-radius:8px;"
            'background:var(--jp-layout-color1, #ffffff)">'
            '<div style="font-size:2em;line-height:1" aria-hidden="true">🔒</div>'
            f'<h2 style="margin:0.4em 0">{html.escape(self.title)}</h2>'
            f'<p style="margin:0;white-space:pre-line">{html.escape(self.message)}</p>'
            "</div>"
        )
        self.children = (self.text,)
