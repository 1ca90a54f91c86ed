"""SignInPanel: the demo's sign-in page (single-person mode, no sign-in proxy).

Lists the workspace's users with their roles; a click signs in as that person without a
password (the store issues a session and records the sign-in), then links to the pages
that person may open. Signing in again, as someone else, switches role. Every page opened
so says that nobody proved who is looking (the header's banner, in the store's words).
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from hilt.widgets.common.colours import MUTED
from hilt.widgets.common.header import unproven_note_html
from hilt.widgets.common.html_table import esc
from hilt.widgets.common.refusal import RefusalScreen
from hilt.widgets.common.status import StatusLine, describe_error
from hilt.widgets.contracts.common import Refusal
from hilt.widgets.contracts.sign_in import SignedIn, SignInBackend, SignInOption

DEMO_NOTE = "signed in without a password: demo mode"


class SignInPanel(widgets.VBox):
    """One button per user; ``signed_in`` is the last choice (None: none yet)."""

    def __init__(self, backend: SignInBackend, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-sign-in")
        self.backend = backend
        self.status = StatusLine()
        self.signed_in: SignedIn | None = None
        self.options: tuple[SignInOption, ...] = tuple(backend.choices())
        self.buttons = [self._button(o) for o in self.options]
        self.intro = widgets.HTML()
        self.links = widgets.HTML()
        self._compose()

    def _button(self, option: SignInOption) -> widgets.Button:
        button = widgets.Button(
            description=f"{option.name} ({', '.join(option.roles)})",
            tooltip=f"Sign in as {option.name}",
            layout=widgets.Layout(width="auto"),
        )
        button.add_class("hilt-sign-in-as")
        button.on_click(lambda _b: self.choose(option.name))
        return button

    def choose(self, name: str) -> None:
        """Sign in as ``name`` (again: switch to them)."""
        try:
            self.signed_in = self.backend.sign_in(name)
        except Exception as exc:  # said on the page: Voila hides tracebacks
            self.status.error(f"Could not sign in: {describe_error(exc)}")
            return
        self.status.success(f"Signed in as {name} (no password: demo mode).")
        self._compose()

    def _compose(self) -> None:
        self.intro.value = (
            '<div style="font-size:1.1em"><b>Sign in</b> · demo mode</div>'
            + unproven_note_html(
                "<b>No password</b>: pick who you are. Pages then act as that person and every "
                f"record they write says {DEMO_NOTE}. Behind a sign-in proxy this page does not "
                "exist."
            )
        )
        done = self.signed_in
        if done is None:
            self.links.value = f'<p style="color:{MUTED}">Nobody signed in yet.</p>'
        else:
            items = "".join(
                f'<li><a href="{esc(link.href)}" class="hilt-dashboard-link">'
                f"{esc(link.title)}</a></li>"
                for link in done.links
            )
            self.links.value = (
                f"<p>Signed in as <b>{esc(done.name)}</b> ({esc(', '.join(done.roles))}); "
                f"open:</p><ul>{items or '<li>no dashboard for these roles</li>'}</ul>"
            )
        self.children = (
            self.intro,
            widgets.HBox(self.buttons, layout=widgets.Layout(flex_flow="row wrap")),
            self.status,
            self.links,
        )


def sign_in_panel(access: SignInBackend | Refusal) -> SignInPanel | RefusalScreen:
    """The sign-in page for ``access``, or the refusal to show instead."""
    if isinstance(access, Refusal):
        return RefusalScreen(access.title, access.message)
    try:
        return SignInPanel(access)
    except Exception as exc:  # the first read failed: say why instead of a traceback
        return RefusalScreen("Sign-in unavailable", describe_error(exc))
