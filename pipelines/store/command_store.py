"""The store as a `hilt` command acts on it, whether or not a store service owns it.

- A store service owns the workspace (``service.json``, a live pid): the command goes
  through its API with ``$HILT_TOKEN`` (and ``$HILT_STORE_URL`` if the URL differs); the
  token's owner is who acts, and ``--as``, if given, must name that owner.
- Otherwise the embedded store: as ``--as USER`` (a store user), or, where the command
  allows it, as the operating-system user with the admin role (whoever can write the
  workspace's files holds the store anyway; the log records ``os:<login>``).

Either way the store checks the roles, so a refusal reads the same in both modes.
"""

from __future__ import annotations

import getpass
import os

from hilt.pipelines.errors import InputError, PermissionDeniedError
from hilt.pipelines.store import Store, open_store
from hilt.pipelines.store.modes import locking
from hilt.pipelines.workspace import Workspace

TOKEN_ENV = "HILT_TOKEN"
STORE_URL_ENV = "HILT_STORE_URL"


def os_user() -> str:
    return f"os:{getpass.getuser()}"


def open_command_store(
    ws: Workspace,
    as_user: str | None,
    *,
    roles: frozenset[str],
    what: str,
    operator_allowed: bool,
) -> Store:
    """The store acting for ``as_user`` (see the module doc); ``roles``: one of them is
    needed for ``what`` (checked here for a clear message, and again by the store)."""
    if not ws.exists():
        raise InputError(f"{ws.root} is not a hilt workspace (create one with `hilt init`)")
    info = locking.service_info(ws.service_file)
    if info is not None:
        url = os.environ.get(STORE_URL_ENV) or str(info["url"])
        token = os.environ.get(TOKEN_ENV)
        if not token:
            raise InputError(
                f"the store service at {url} owns {ws.root}: set {TOKEN_ENV} to the API token "
                f"of a user who may {what}"
            )
        store = open_store(url, token=token)
        me = store.whoami()
        if as_user and as_user != me.name:
            store.close()
            raise InputError(f"--as {as_user}, but {TOKEN_ENV} belongs to {me.name}")
        _check(me.name, me.roles, roles, what, store)
        return store
    if not as_user:
        if not operator_allowed:
            raise InputError(f"say who you are: --as USER (a user who may {what})")
        from hilt.pipelines.store.modes.embedded import EmbeddedStore
        from hilt.pipelines.store.records import User

        return EmbeddedStore(ws, ws.settings(), User(name=os_user(), roles=["admin"]))
    if as_user.startswith("os:"):
        raise InputError(f"{as_user!r} is not a store user; name one with --as")
    store = open_store(ws, user=as_user)
    _check(as_user, store.whoami().roles, roles, what, store)
    return store


def _check(name: str, have: list[str], need: frozenset[str], what: str, store: Store) -> None:
    if not need & set(have):
        store.close()
        raise PermissionDeniedError(
            f"user {name!r} (roles: {', '.join(have) or 'none'}) may not {what}; "
            f"that needs the role {' or '.join(sorted(need))}"
        )
