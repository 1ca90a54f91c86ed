"""The backend of the demo's sign-in page (notebooks/signin.ipynb; single-person mode).

The page's kernel holds only the gateway's token (``hilt serve``) and asks the store
service, acting as the gateway itself: the users to list, then a session for the one
picked. The store refuses both behind a sign-in proxy (``store/ops/sign_in.py``); the page
shows that refusal. Links carry the picked name and the session in their query
(``access.SESSION_QUERY``), which the dashboards forward to the store with every request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlencode

from hilt.pipelines.dashboards.access import SESSION_QUERY
from hilt.pipelines.dashboards.audit import AUDIT_DOOR
from hilt.pipelines.dashboards.oversight import OVERSIGHT_DOOR
from hilt.pipelines.dashboards.review import REVIEW_DOOR
from hilt.pipelines.errors import HiltError
from hilt.pipelines.store import Identity, Store, open_store_as
from hilt.pipelines.store.authentication import DEMO_SIGN_IN
from hilt.widgets.contracts.common import Refusal
from hilt.widgets.contracts.sign_in import DashboardLink, SignedIn, SignInOption

TITLE = "Sign-in unavailable"
#: The dashboards the sign-in page links to, each with the door whose roles open it.
PAGES = (
    ("Review queue", "review", REVIEW_DOOR.roles),
    ("Oversight", "oversight", OVERSIGHT_DOOR.roles),
    ("Audit", "audit", AUDIT_DOOR.roles),
)


class SignInService:
    """``SignInBackend`` on the store service, as the dashboards' gateway."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def choices(self) -> list[SignInOption]:
        return [SignInOption(c.name, tuple(c.roles)) for c in self.store.sign_in_choices()]

    def sign_in(self, name: str) -> SignedIn:
        session = self.store.demo_sign_in(name)
        query = urlencode(dict(zip(SESSION_QUERY, (session.name, session.session), strict=True)))
        links = tuple(
            DashboardLink(title, f"{page}.ipynb?{query}")
            for title, page, roles in PAGES
            if roles & set(session.roles)
        )
        return SignedIn(session.name, tuple(session.roles), DEMO_SIGN_IN, links)


def open_sign_in(env: Mapping[str, str] | None = None) -> SignInService | Refusal:
    """The sign-in page's backend, or the refusal to show instead: without the served
    dashboards (no store service), or when the store refuses (behind a sign-in proxy)."""
    environ = os.environ if env is None else env
    url = environ.get("HILT_STORE_URL")
    token = environ.get("HILT_GATEWAY_TOKEN")
    if not url or not token:
        return Refusal(
            TITLE, "The sign-in page works only in the served dashboards (hilt serve, hilt demo)."
        )
    try:
        store = open_store_as(url, Identity(token=token))
    except HiltError as e:
        return Refusal(TITLE, str(e))
    try:
        store.sign_in_choices()  # the store decides here whether this page may exist at all
    except HiltError as e:
        store.close()
        return Refusal(TITLE, str(e))
    return SignInService(store)
