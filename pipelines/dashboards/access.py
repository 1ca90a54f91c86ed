"""Who opens a dashboard, and whether they may: the one door of the review, oversight and
audit dashboards.

In order: the workspace (argument or ``$HILT_WORKSPACE``), the person (``resolve_identity``:
the sign-in proxy's header Voila passes, then ``JUPYTERHUB_USER``, then, only without a
sign-in proxy, the configured local user: single-person mode), the store as that person,
and their roles. Every way of failing is a ``Refusal`` to show instead of the dashboard.

Served (`hilt serve` gives the kernel ``HILT_STORE_URL`` and a gateway token), the kernel
only forwards what Voila gave it (the user header and the proxy's secret header) with the
gateway token; the store service decides whether the gateway may act for that person
(``store/authentication.py``) and says, in ``whoami``, when nobody proved who they are.
On another host than the store's (`hilt serve --store-url`: a store URL and a gateway token,
no workspace), the settings are the config the store has in force, read from it with the
gateway's own token (``remote.settings_in_force``), and a dashboard that reads the
workspace's files (oversight, audit) is refused, saying where to open it. Embedded (no
service: JupyterLab on the workspace's files), the local user is marked as single-person
too. Either way the dashboards show it on every page (the header's banner).

``DashboardBackend`` is what the three backends (review, oversight, audit) share once the
person is in: the store acting as them, the workspace's settings, and who they are."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import parse_qs

from hilt.pipelines.config import Access, Settings
from hilt.pipelines.dashboards.remote import settings_in_force
from hilt.pipelines.errors import HiltError, InputError, UnknownUserError
from hilt.pipelines.store import Identity, Store, open_store_as
from hilt.pipelines.store.user_records import User
from hilt.pipelines.workspace import Workspace
from hilt.widgets.contracts.common import Refusal, Reviewer

Backend = TypeVar("Backend")

#: Where a dashboard kernel learns who is looking, first match wins (the environment names
#: are the contract with Voila's http_header_envs and with JupyterHub).
IDENTITY_SOURCES = ("HTTP_X_FORWARDED_USER", "JUPYTERHUB_USER")
#: The sign-in proxy's secret header (``X-Hilt-Proxy-Secret``) as Voila passes it.
PROXY_SECRET_ENV = "HTTP_X_HILT_PROXY_SECRET"


#: The query of a dashboard's URL after the sign-in page (single-person mode): the name
#: picked and the session the store issued for it (Voila gives the kernel ``QUERY_STRING``).
SESSION_QUERY = ("user", "session")


def demo_choice(env: Mapping[str, str]) -> tuple[str, str] | None:
    """(the user picked on the sign-in page, the store's session for it) from the page's
    query, or None. Only forwarded: the store service decides whether it counts."""
    query = parse_qs(env.get("QUERY_STRING", ""))
    user, session = (query.get(k, [""])[0].strip() for k in SESSION_QUERY)
    return (user, session) if user and session else None


def _claim(env: Mapping[str, str], settings: Settings) -> tuple[str | None, bool]:
    """(the user, whether that is single-person mode's local user)."""
    for key in IDENTITY_SOURCES:
        value = env.get(key, "").strip()
        if value:
            return value, False
    if settings.access.proxy_secret_sha256 is not None:
        return None, False  # behind a sign-in proxy there is no local user
    return settings.access.local_user, settings.access.local_user is not None


def resolve_identity(env: Mapping[str, str], settings: Settings) -> str | None:
    """The user looking at the dashboard, or None when nothing identifies anyone."""
    return _claim(env, settings)[0]


def identity_mode(access: Access) -> str:
    """How the served dashboards learn who is looking, in one line (`hilt serve` prints it)."""
    if access.proxy_secret_sha256 is not None:
        return (
            "behind a sign-in proxy: X-Forwarded-User counts only with the proxy's "
            "X-Hilt-Proxy-Secret"
        )
    if access.local_user is not None:
        return (
            f"single-person mode: the dashboards act as {access.local_user}, or as whoever "
            "is picked on the sign-in page (no password: demo mode), and every record says "
            "that identity was not proven"
        )
    return (
        "none configured: every dashboard refuses (set [access] proxy_secret_sha256, or "
        "local_user for one person)"
    )


@dataclass(frozen=True)
class DashboardDoor:
    """What one dashboard says at its door."""

    #: Title of the refusal when the workspace or the store cannot be opened.
    unavailable: str
    #: Title of the refusal for someone who is not a user, or lacks the role.
    not_allowed: str
    #: The roles that may pass (any one of them).
    roles: frozenset[str]
    #: The message for a known user without the role; ``{name}`` is the user.
    no_role: str
    #: Whom someone who is not a user of the workspace should ask.
    ask: str = "an administrator"


@dataclass(frozen=True)
class DashboardAccess:
    """Let in: the workspace, its settings, and the store acting as the person."""

    local: Workspace | None
    settings: Settings
    store: Store
    #: Who the store said is acting, when it let them in (so the backend need not ask again).
    me: User

    @property
    def workspace(self) -> Workspace:
        """The workspace's files (runs, MLflow); InputError for dashboards served on another
        host than the store's (`hilt serve --store-url`), which have none."""
        if self.local is None:
            raise InputError(
                "this dashboard reads the workspace's files (its runs and models), which the "
                "dashboards served on another host than the store's do not have; open it on "
                "the dashboards served next to the store (hilt serve --workspace)"
            )
        return self.local


def open_dashboard(
    door: DashboardDoor,
    workspace: str | None,
    env: Mapping[str, str] | None,
    backend: Callable[[DashboardAccess], Backend],
) -> Backend | Refusal:
    """``backend(access)`` for the person at ``door``, let in with their store, or the
    refusal to show instead (also when the backend cannot start: a ``HiltError``)."""
    environ = os.environ if env is None else env
    url = environ.get("HILT_STORE_URL")
    token = environ.get("HILT_GATEWAY_TOKEN")
    folder = workspace or environ.get("HILT_WORKSPACE") or None
    ws: Workspace | None = None
    try:
        if url and token and folder is None:
            # On another host than the store's: the config the store has in force.
            settings = settings_in_force(url, token)
        else:
            ws = Workspace.at(folder)
            settings = ws.settings()
    except HiltError as e:
        return Refusal(door.unavailable, str(e))
    user, single_person = _claim(environ, settings)
    chosen = demo_choice(environ)
    if chosen is not None and (user is None or single_person):
        # Nobody's header names anyone: the name picked on the sign-in page, with its
        # session (refused by the store behind a proxy, or without a service).
        user, single_person = chosen[0], True
    if user is None:
        return Refusal(
            "Who are you?",
            "This dashboard could not tell who you are. Open it through your organisation's "
            "sign-in"
            + (
                "."
                if settings.access.proxy_secret_sha256 is not None
                else ", or ask an administrator to configure a local user."
            ),
        )
    try:
        if url:
            gateway = Identity(
                token=token,
                on_behalf_of=user,
                proxy_secret=environ.get(PROXY_SECRET_ENV) or None,
                session=chosen[1] if chosen else None,
            )
            store = open_store_as(url, gateway)
        else:
            assert ws is not None  # no store URL: the workspace was opened above
            who = Identity(
                name=user, single_person=single_person, session=chosen[1] if chosen else None
            )
            store = open_store_as(ws, who)
        me = store.whoami()
    except UnknownUserError:
        return Refusal(
            door.not_allowed,
            f"{user} is not a user of this workspace. Ask {door.ask} to add you.",
        )
    except HiltError as e:
        return Refusal(door.unavailable, str(e))
    if not door.roles & set(me.roles):
        store.close()
        return Refusal(door.not_allowed, door.no_role.format(name=me.name))
    try:
        return backend(DashboardAccess(ws, settings, store, me))
    except HiltError as e:
        store.close()
        return Refusal(door.unavailable, str(e))


class DashboardBackend:
    """The part every dashboard backend shares: the store acting as one person, the
    workspace's settings, and who that person is (asked of the store once, on first use;
    ``me``: what the store already answered at the dashboard's door, which saves the page a
    round trip before its first paint)."""

    def __init__(self, store: Store, settings: Settings, *, me: User | None = None) -> None:
        self.store = store
        self.settings = settings
        self._person: Reviewer | None = None if me is None else _person(me)

    def person(self) -> Reviewer:
        """Who the store says is acting, with their roles (and, when nobody proved who they
        are, why not: every page shows it)."""
        if self._person is None:
            self._person = _person(self.store.whoami())
        return self._person


def _person(me: User) -> Reviewer:
    return Reviewer(name=me.name, roles=tuple(me.roles), unproven=me.unproven)
