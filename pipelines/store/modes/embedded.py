"""The embedded mode: short-lived DuckDB connections under a cross-process lock.

Right for one data scientist or one scheduler run. Each call takes the lock, opens the file
(~20 ms), runs one operation of the table in one transaction, and closes the file again, so
that other processes can take their turn. Each call acts on the config in force, read from
the store (another process may have applied a change), and is refused while hilt.toml
differs from it (``config_watch.py``); so is the opening itself, unless it is for the
config operations.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

import duckdb

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import StoreError
from hilt.pipelines.store.authentication import lookup_user
from hilt.pipelines.store.config_watch import ConfigWatch
from hilt.pipelines.store.core import StoreCore
from hilt.pipelines.store.modes import locking
from hilt.pipelines.store.modes.connection import DUCKDB_CONFIG as DUCKDB_CONFIG
from hilt.pipelines.store.modes.connection import connect as connect
from hilt.pipelines.store.operations import Operation, Store
from hilt.pipelines.store.records import User
from hilt.pipelines.store.schema import check_schema_version
from hilt.pipelines.store.unit import Clock, system_clock
from hilt.pipelines.workspace import Workspace

R = TypeVar("R")


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
        with locking.exclusive(workspace.lock_path, workspace.service_file):
            con = connect(workspace)
            try:
                check_schema_version(con, workspace.db_path)
                actor = user if isinstance(user, User) else lookup_user(con, user)
                settings = config.admit(con, despite_drift=for_config)
            except duckdb.Error as e:
                raise StoreError(
                    f"cannot read the store's users or config ({type(e).__name__})"
                ) from e
            finally:
                con.close()
        if isinstance(user, User):
            return cls(workspace, settings, actor, clock, config=config)
        actor = actor.model_copy(update={"unproven": unproven})
        return cls(workspace, settings, actor, clock, config=config, store_user=True)

    def perform(self, operation: Operation[Any, R], arguments: dict[str, Any]) -> R:
        if operation is Store.whoami:
            return cast(R, self.actor)  # known without opening the file
        with locking.exclusive(
            self.workspace.lock_path, self.workspace.service_file, self.lock_timeout_s
        ):
            con = connect(self.workspace)
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
                con.close()

    def _looked_up_again(self, con: duckdb.DuckDBPyConnection) -> User:
        try:
            found = lookup_user(con, self.actor.name)
        except duckdb.Error as e:
            raise StoreError(f"cannot read the store's users ({type(e).__name__})") from e
        return found.model_copy(update={"unproven": self.actor.unproven})
