"""The embedded mode: short-lived DuckDB connections under a cross-process lock.

Right for one data scientist or one scheduler run. Each call takes the lock, opens the file
(~20 ms), runs one operation of the table in one transaction, and closes the file again, so
that other processes can take their turn. Each call acts on the config in force, read from
the store (another process may have applied a change), and is refused while hilt.toml
differs from it (``config_watch.py``); so is the opening itself, unless it is for the
config operations.

What it costs, and what is not paid twice (issue 13; ``benchmarks/store_open.py``): starting
DuckDB on the file takes ~15 ms of CPU whatever the file (its built-in catalog), and a fresh
start reads every table cold. So:

- An opening (``for_user``: schema, user, config in force) of a file whose committed state
  (``connection.committed_state``: its headers, which every checkpoint rewrites, inode, size,
  time; read under the lock) is the one this process last read, for the same user, is
  answered from what it read then, without starting DuckDB; so is one after this process's
  own operations that change no user and not the config in force. hilt.toml is compared with
  the config in force as ever. The opening only makes a refusal come first: each operation
  looks its user and the config up again in its own connection.
- ``holding(workspace)``: a loop of operations (any user's) on one connection, under the
  lock for the whole block.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import duckdb

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import StoreError
from hilt.pipelines.store.authentication import lookup_user
from hilt.pipelines.store.config_watch import ConfigWatch
from hilt.pipelines.store.core import StoreCore
from hilt.pipelines.store.modes import locking
from hilt.pipelines.store.modes.connection import DUCKDB_CONFIG as DUCKDB_CONFIG
from hilt.pipelines.store.modes.connection import committed_state
from hilt.pipelines.store.modes.connection import connect as connect
from hilt.pipelines.store.operation_row import Operation
from hilt.pipelines.store.operations import Store
from hilt.pipelines.store.ops.config import InForce, in_force
from hilt.pipelines.store.schema import check_schema_version
from hilt.pipelines.store.unit import Clock, system_clock
from hilt.pipelines.store.user_records import User
from hilt.pipelines.workspace import Workspace

R = TypeVar("R")


@dataclass(frozen=True)
class _Opened:
    """What an opening read from a store file whose content was ``state`` (see
    ``committed_state``): the schema was this hilt's, the user (None: the operator, who is
    not looked up) and the config in force."""

    state: bytes
    actor: User | None
    config: InForce


#: The last opening of each (file, user) in this process. Opening the same unchanged file
#: again (the state is read under the store's lock) learns nothing new, so it is answered
#: from here without starting DuckDB (~15 ms of CPU per start). Every operation still reads
#: the user and the config in force from the file itself, in its own connection.
_OPENED: dict[tuple[Path, str | None], _Opened] = {}
_OPENED_MAX = 256

#: The connections this process holds open across operations (``holding``), by file.
_HELD: dict[Path, duckdb.DuckDBPyConnection] = {}
_HELD_MUTEX = threading.RLock()


def _file(workspace: Workspace) -> Path:
    """The store's file, as the caches and the held connections know it (one name for
    one file, however the workspace was named)."""
    return Path(os.path.realpath(workspace.db_path))


@contextmanager
def holding(workspace: Workspace, timeout_s: float | None = None) -> Iterator[None]:
    """Hold the store's lock and one connection to its file for the block: every embedded
    operation this process runs on ``workspace`` meanwhile (any user's, opening included)
    runs on that connection instead of opening the file for itself (DuckDB's start, its
    cold caches and the checkpoint at close: most of an embedded operation's cost). Each
    operation is still its own transaction with its own audit rows, looks its user and the
    config in force up again, and is checked as ever. Other processes wait for the lock
    until the block ends: for a loop of operations by one process, not for a dashboard
    that waits for people. Nested blocks join the outer one, and so do the operations and
    blocks of other threads of this process that were waiting for the lock when it began."""
    key = _file(workspace)
    if key in _HELD:
        yield
        return
    with ExitStack() as lock:
        try:
            lock.enter_context(
                locking.exclusive(
                    workspace.lock_path, workspace.service_file, timeout_s, _held_here(key)
                )
            )
        except locking.GaveWay:  # another thread of this process began a block meanwhile
            yield
            return
        con = connect(workspace)
        with _HELD_MUTEX:
            _HELD[key] = con
        try:
            yield
        finally:
            with _HELD_MUTEX:
                del _HELD[key]
                con.close()


def _held_here(key: Path) -> Callable[[], bool]:
    """For a thread waiting for the store's lock: has another thread of this process taken
    it for a ``holding`` block meanwhile? Then the waiter uses that block's connection
    rather than waiting for the block to end (which could be never: the block may be
    waiting for what the waiter does)."""
    return lambda: key in _HELD


def _read_opening(
    con: duckdb.DuckDBPyConnection, workspace: Workspace, user: str | User
) -> tuple[User, InForce]:
    """The schema checked, the user looked up (or the operator as given), the config in force."""
    try:
        check_schema_version(con, workspace.db_path)
        actor = user if isinstance(user, User) else lookup_user(con, user)
        return actor, in_force(con)
    except duckdb.Error as e:
        raise StoreError(f"cannot read the store's users or config ({type(e).__name__})") from e


def _opening(workspace: Workspace, user: str | User) -> tuple[User, InForce]:
    """``_read_opening`` on the held connection, else on a connection of its own under the
    lock, unless this process opened the same unchanged file for the same user before."""
    path = _file(workspace)
    name = None if isinstance(user, User) else user
    key = (path, name)
    while True:
        with _HELD_MUTEX:
            held = _HELD.get(path)
            if held is not None:
                return _read_opening(held, workspace, user)
        try:
            with locking.exclusive(
                workspace.lock_path, workspace.service_file, give_way=_held_here(path)
            ):
                state = committed_state(workspace)
                known = _OPENED.get(key)
                if state is not None and known is not None and known.state == state:
                    return known.actor or cast(User, user), known.config
                con = connect(workspace)
                try:
                    actor, config = _read_opening(con, workspace, user)
                finally:
                    con.close()
                after = committed_state(workspace)
            break
        except locking.GaveWay:
            continue
    if after is not None:
        if len(_OPENED) >= _OPENED_MAX:
            _OPENED.clear()
        _OPENED[key] = _Opened(after, None if name is None else actor, config)
    return actor, config


def _carry_over(path: Path, before: bytes | None, after: bytes | None) -> None:
    """An operation of this process changed the file from ``before`` to ``after`` under
    the lock, and it is not one that changes users or the config in force (the operations
    table says which do: ``changes_identities``, ``changes_config``; the service forgets
    what it cached after them too). What the openings of ``before`` read still holds."""
    if before is None or after is None or before == after:
        return
    for key, known in list(_OPENED.items()):
        if key[0] == path and known.state == before:
            _OPENED[key] = _Opened(after, known.actor, known.config)


class EmbeddedStore(Store):
    """A Store on a workspace folder, acting as ``actor``. Open it through the door
    (``open_store_as``), which looks the user up in the store's users table."""

    def __init__(
        self,
        workspace: Workspace,
        settings: Settings,
        actor: User,
        clock: Clock = system_clock,
        lock_timeout_s: float | None = None,
        config: ConfigWatch | None = None,
        *,
        store_user: bool = False,
    ) -> None:
        self.workspace = workspace
        self.settings = settings
        self.actor = actor
        self.clock = clock
        self.lock_timeout_s = lock_timeout_s
        self.config = config or ConfigWatch(workspace)
        #: The actor is a user of the store's users table: each operation looks them up
        #: again, so that a disabled user or changed roles count at once here too.
        self.store_user = store_user

    @classmethod
    def for_user(
        cls,
        workspace: Workspace,
        user: str | User,
        clock: Clock = system_clock,
        *,
        for_config: bool = False,
        unproven: str | None = None,
    ) -> EmbeddedStore:
        """The store acting as the active store user ``user`` (AuthenticationError if the
        store has no such user, or they are disabled), or as ``user`` itself when it is a
        ``User`` (the operator), with the settings in force. ConfigDrift while hilt.toml
        differs from them, unless the store is opened ``for_config`` (then only the config
        operations run). ``unproven``: see ``User``."""
        config = ConfigWatch(workspace)
        actor, current = _opening(workspace, user)
        config.adopt(current)
        settings = config.check(despite_drift=for_config)
        if isinstance(user, User):
            return cls(workspace, settings, actor, clock, config=config)
        actor = actor.model_copy(update={"unproven": unproven})
        return cls(workspace, settings, actor, clock, config=config, store_user=True)

    def perform(self, operation: Operation[Any, R], arguments: dict[str, Any]) -> R:
        if operation is Store.whoami:
            return cast(R, self.actor)  # known without opening the file
        path = _file(self.workspace)
        while True:
            with _HELD_MUTEX:
                held = _HELD.get(path)
                if held is not None:
                    return self._perform_on(held, operation, arguments)
            try:
                with locking.exclusive(
                    self.workspace.lock_path,
                    self.workspace.service_file,
                    self.lock_timeout_s,
                    give_way=_held_here(path),
                ):
                    before = committed_state(self.workspace)
                    con = connect(self.workspace)
                    try:
                        return self._perform_on(con, operation, arguments)
                    finally:
                        con.close()
                        if not (operation.changes_identities or operation.changes_config):
                            _carry_over(path, before, committed_state(self.workspace))
            except locking.GaveWay:
                continue

    def _perform_on(
        self,
        con: duckdb.DuckDBPyConnection,
        operation: Operation[Any, R],
        arguments: dict[str, Any],
    ) -> R:
        keys = self.workspace.key_ring()
        core = None
        try:
            if self.store_user:
                self.actor = self._looked_up_again(con)
            core = StoreCore(
                con,
                self.settings,
                self.workspace,
                self.actor,
                keys,
                self.clock,
                config=self.config,
            )
            return core.call(operation, arguments)
        finally:
            if core is not None:
                self.settings = core.settings  # the version in force, as last read
            keys.close()

    def _looked_up_again(self, con: duckdb.DuckDBPyConnection) -> User:
        try:
            found = lookup_user(con, self.actor.name)
        except duckdb.Error as e:
            raise StoreError(f"cannot read the store's users ({type(e).__name__})") from e
        return found.model_copy(update={"unproven": self.actor.unproven})
