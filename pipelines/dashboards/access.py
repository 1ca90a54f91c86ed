"""Who opens a dashboard, and whether they may: the one door of the review, oversight and
audit dashboards.

In order: the workspace (argument or ``$HILT_WORKSPACE``), the person (``resolve_identity``:
the trusted proxy header Voila passes, then ``JUPYTERHUB_USER``, then the configured local
user), the store as that person (through the store service with the gateway token when
``HILT_STORE_URL`` is set, as `hilt serve` runs the kernels; else the workspace file), and
their roles. Every way of failing is a ``Refusal`` to show instead of the dashboard.

``DashboardBackend`` is what the three backends (review, oversight, audit) share once the
person is in: the store acting as them, the workspace's settings, and who they are."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import AuthenticationError, HiltError
from hilt.pipelines.store import Identity, Store, open_store_as
from hilt.pipelines.workspace import Workspace
from hilt.widgets.contracts.common import Refusal, Reviewer

Backend = TypeVar("Backend")

#: Where a dashboard kernel learns who is looking, first match wins (the environment names
#: are the contract with Voila's http_header_envs and with JupyterHub).
IDENTITY_SOURCES = ("HTTP_X_FORWARDED_USER", "JUPYTERHUB_USER")


def resolve_identity(env: Mapping[str, str], settings: Settings) -> str | None:
    """The user looking at the dashboard, or None when nothing identifies anyone."""
    for key in IDENTITY_SOURCES:
        value = env.get(key, "").strip()
        if value:
            return value
    return settings.access.local_user


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

    workspace: Workspace
    settings: Settings
    store: Store


def open_dashboard(
    door: DashboardDoor,
    workspace: str | None,
    env: Mapping[str, str] | None,
    backend: Callable[[DashboardAccess], Backend],
) -> Backend | Refusal:
    """``backend(access)`` for the person at ``door``, let in with their store, or the
    refusal to show instead (also when the backend cannot start: a ``HiltError``)."""
    environ = os.environ if env is None else env
    try:
        ws = Workspace.at(workspace or environ.get("HILT_WORKSPACE") or None)
        settings = ws.settings()
    except HiltError as e:
        return Refusal(door.unavailable, str(e))
    user = resolve_identity(environ, settings)
    if user is None:
        return Refusal(
            "Who are you?",
            "This dashboard could not tell who you are. Open it through your organisation's "
            "sign-in, or ask an administrator to configure a local user.",
        )
    url = environ.get("HILT_STORE_URL")
    try:
        if url:
            gateway = Identity(token=environ.get("HILT_GATEWAY_TOKEN"), on_behalf_of=user)
            store = open_store_as(url, gateway)
        else:
            store = open_store_as(ws, Identity(name=user))
        me = store.whoami()
    except AuthenticationError:
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
        return backend(DashboardAccess(ws, settings, store))
    except HiltError as e:
        store.close()
        return Refusal(door.unavailable, str(e))


class DashboardBackend:
    """The part every dashboard backend shares: the store acting as one person, the
    workspace's settings, and who that person is (asked of the store once, on first use)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._person: Reviewer | None = None

    def person(self) -> Reviewer:
        """Who the store says is acting, with their roles."""
        if self._person is None:
            me = self.store.whoami()
            self._person = Reviewer(name=me.name, roles=tuple(me.roles))
        return self._person
