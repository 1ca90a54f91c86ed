"""The feedback store: cases, predictions, human decisions and a hash-chained audit log.

One door: ``open_store_as(where, who)``. ``where`` is a workspace (a folder or a
``Workspace``) or the URL of a store service; ``who`` is an ``Identity``: who acts, and how
the store learns that it is them. Every caller opens the store here (the CLI, the
dashboards, runs, promotion, the compliance documents, tests), so the rules of who may act
as whom are written once:

- A service URL, or a workspace that a store service owns (``service.json`` with a live
  pid): the HTTP client, acting as the owner of the bearer token (``Identity.token``, else
  ``$HILT_TOKEN``; the URL is ``$HILT_STORE_URL`` if set, else the service file's). A named
  user must be that owner. A gateway token (the dashboard server) acts on behalf of the
  user it names, as far as the service allows it (the sign-in proxy's proof it forwards,
  or single-person mode: see ``store/authentication.py``).
- Otherwise the workspace's file (embedded mode), acting as the named store user, or, where
  the caller allows it (``operator=True``) and names nobody, as the operating-system user
  with the admin role: whoever can write the workspace's files holds the store anyway, and
  the audit log records which login it was (``os:<login>``).

Either way the store itself checks the roles of every operation; ``need`` only makes the
refusal come first and read clearly.

Either way, too, the store acts on the config in force (the version of hilt.toml it
recorded last), never on an edit nobody applied: while the workspace's hilt.toml differs
from it, the opening is refused (``ConfigDrift``: what changed since which version, and
`hilt config apply --as ADMIN`), and so is every operation but the config ones. Only
``for_config`` (the `hilt config …` commands) opens such a store.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilt.pipelines.errors import ConfigDrift, InputError, PermissionDeniedError
from hilt.pipelines.store.case_records import DecisionRequest
from hilt.pipelines.store.modes.locking import service_info
from hilt.pipelines.store.unit import Clock, system_clock
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    from hilt.pipelines.store.operations import Store

__all__ = [
    "STORE_URL_ENV",
    "TOKEN_ENV",
    "DecisionRequest",
    "Identity",
    "Need",
    "Store",
    "holding",
    "open_store_as",
    "os_user",
]

#: The bearer token of whoever acts through a store service.
TOKEN_ENV = "HILT_TOKEN"
#: The store service's URL, when it differs from the one its service file names.
STORE_URL_ENV = "HILT_STORE_URL"


def __getattr__(name: str) -> Any:
    """``Store`` is imported when first asked for: the operations table imports every
    operation (polars, the model registry...), which `hilt audit verify` and the other
    readers of a submodule (``hilt.pipelines.store.audit...``) do not need."""
    if name == "Store":
        from hilt.pipelines.store.operations import Store

        return Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def os_user() -> str:
    """The audit name of the operating-system user running this process."""
    return f"os:{getpass.getuser()}"


@dataclass(frozen=True)
class Identity:
    """Who acts on the store, and how that is proven.

    - ``name``: a store user (``--as``). Embedded: looked up in the users table. Through a
      service: must be the token's owner.
    - ``operator``: with no name, the operating-system user with the admin role (embedded);
      through a service, the token's owner.
    - ``token``: a bearer token for a service (default: ``$HILT_TOKEN``).
    - ``on_behalf_of``: with a gateway token, the user the gateway acts for (never read
      from ``$HILT_TOKEN``: a gateway names its own token).
    - ``proxy_secret``: with ``on_behalf_of``, the secret by which the sign-in proxy proved
      itself to the dashboard (the service checks it; the dashboard only forwards it).
    - ``session``: with ``on_behalf_of``, the demo session the store issued when that user
      was picked on the sign-in page (single-person mode; the service checks it).
    - ``single_person``: embedded, a named user nobody signed in as (a dashboard acting as
      ``access.local_user``): every event records that the identity was not proven. A
      service decides this itself, from how the request reached it.
    """

    name: str | None = None
    operator: bool = False
    token: str | None = None
    on_behalf_of: str | None = None
    proxy_secret: str | None = None
    session: str | None = None
    single_person: bool = False


@dataclass(frozen=True)
class Need:
    """What the caller is about to do, and the roles of which one is needed for it."""

    roles: frozenset[str]
    #: For messages: "may not <what>".
    what: str


def open_store_as(
    where: Workspace | str | Path,
    who: Identity,
    *,
    need: Need | None = None,
    clock: Clock | None = None,
    for_config: bool = False,
) -> Store:
    """The store at ``where`` acting as ``who`` (see the module doc); refused with a clear
    error, and nothing opened, when ``who`` cannot act there or lacks every role of
    ``need``, or when hilt.toml differs from the config in force (unless ``for_config``).
    ``clock``: the time the embedded store acts at (tests of periods and leases); a service
    keeps its own."""
    served = True
    if isinstance(where, str) and where.startswith(("http://", "https://")):
        store = _through_service(where, who, need, owned=None, clock=clock)
    else:
        ws = where if isinstance(where, Workspace) else Workspace.at(where)
        ws.require()
        info = service_info(ws.service_file)
        if info is not None:
            url = os.environ.get(STORE_URL_ENV) or str(info["url"])
            store = _through_service(url, who, need, owned=ws, clock=clock)
        else:
            served = False
            store = _embedded(ws, who, need, clock or system_clock, for_config)
    if served and not for_config:
        # The embedded store compared hilt.toml with the config in force as it opened; a
        # service compares it at each request, and says so here first.
        try:
            status = store.config_status()
        except BaseException:
            store.close()
            raise
        if status.drift:
            store.close()
            raise ConfigDrift(status.problem or "hilt.toml differs from the config in force")
    if need is not None:
        me = store.whoami()
        if not need.roles & set(me.roles):
            store.close()
            raise PermissionDeniedError(
                f"user {me.name!r} (roles: {', '.join(me.roles) or 'none'}) may not "
                f"{need.what}; that needs the role {' or '.join(sorted(need.roles))}"
            )
    return store


@contextmanager
def holding(where: Workspace | str | Path | Store) -> Iterator[None]:
    """For a loop of operations on a workspace's file: this process holds the store's lock
    and one open connection for the block, and every embedded operation on it meanwhile
    runs there, each in its own transaction with its audit rows and every check, instead of
    starting DuckDB for itself (``modes/embedded.py``: ``holding``). Other processes wait
    until the block ends. ``where``: the workspace, or a store opened on it. Nothing to
    hold for a store service (its URL, a workspace it owns, a store opened through it):
    the service holds the file already."""
    if not isinstance(where, Workspace | str | Path):
        from hilt.pipelines.store.modes.embedded import EmbeddedStore

        if not isinstance(where, EmbeddedStore):
            yield
            return
        where = where.workspace
    if isinstance(where, str) and where.startswith(("http://", "https://")):
        yield
        return
    ws = where if isinstance(where, Workspace) else Workspace.at(where)
    ws.require()
    if service_info(ws.service_file) is not None:
        yield
        return
    from hilt.pipelines.store.modes.embedded import holding as hold_file

    with hold_file(ws):
        yield


def _through_service(
    url: str, who: Identity, need: Need | None, owned: Workspace | None, clock: Clock | None
) -> Store:
    from hilt.pipelines.store.modes.client import StoreClient

    if clock is not None:
        raise InputError("a store service keeps its own clock; a clock is for the embedded store")

    if who.on_behalf_of is not None:
        if not who.token:
            raise InputError("acting on behalf of a user needs the gateway's own token")
        return StoreClient(
            url,
            who.token,
            on_behalf_of=who.on_behalf_of,
            proxy_secret=who.proxy_secret,
            session=who.session,
        )
    token = who.token or os.environ.get(TOKEN_ENV)
    if not token:
        may = f"a user who may {need.what}" if need else "a user of the store"
        where = f"the store service at {url} owns {owned.root}" if owned else url
        raise InputError(f"{where}: set {TOKEN_ENV} to the API token of {may}")
    store = StoreClient(url, token)
    if who.name is not None:
        me = store.whoami()
        if who.name != me.name:
            store.close()
            raise InputError(f"--as {who.name}, but {TOKEN_ENV} belongs to {me.name}")
    return store


def _embedded(
    ws: Workspace, who: Identity, need: Need | None, clock: Clock, for_config: bool
) -> Store:
    from hilt.pipelines.store.authentication import SINGLE_PERSON
    from hilt.pipelines.store.modes.embedded import EmbeddedStore
    from hilt.pipelines.store.user_records import User

    if (
        who.on_behalf_of is not None
        or who.session is not None
        or (who.token is not None and who.name is None)
    ):
        raise InputError(f"no store service owns {ws.root}; a token works only through one")
    name = who.name
    if name is None or name == os_user():
        if name is None and not who.operator:
            may = f" (a user who may {need.what})" if need else ""
            raise InputError(f"say who you are: --as USER{may}")
        operator = User(name=os_user(), roles=["admin"])
        return EmbeddedStore.for_user(ws, operator, clock, for_config=for_config)
    if name.startswith("os:"):
        raise InputError(
            f"{name!r} is not the operating-system user running this command, nor a store "
            "user; name a store user with --as"
        )
    unproven = SINGLE_PERSON if who.single_person else None
    return EmbeddedStore.for_user(ws, name, clock, for_config=for_config, unproven=unproven)
