"""Each mode's watch on the config: the settings in force, and hilt.toml compared with them.

``StoreCore.call`` asks the watch before every operation (``admit``): it gets the settings
of the version in force (the store's record, never the file) and, unless the operation
runs despite a drift (the config operations, ``whoami``), a ``ConfigDrift`` refusal while
the workspace's hilt.toml differs from that version. The file is read and hashed each
time (a few kilobytes: microseconds), so an edit is seen at the next operation.

- The embedded mode's watch asks the store for the version in force at each operation:
  another process may have applied a change since.
- The service's watch (``owner=True``) knows it without asking: only the service changes
  it, and it refreshes after each operation that does (``Operation.changes_config``). It
  logs a drift once, when it first sees it (no personal data: the keys and versions).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hilt.pipelines.errors import ConfigDrift
from hilt.pipelines.store.ops.config import (
    InForce,
    drift_problem,
    in_force,
    parse,
    read_file,
    sha256_of,
)
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    import duckdb

    from hilt.pipelines.config import Settings

log = logging.getLogger("hilt.store.config")

#: Settings parsed from a config text, by the text's sha256: each process parses a version
#: once (tomllib and the validation take milliseconds, and every embedded opening of the
#: store reads the version in force). Settings are frozen; only valid texts are kept.
_PARSED: dict[str, Settings] = {}
_PARSED_MAX = 32


def settings_of(text: str, source: str) -> Settings:
    """The settings of a config text in force (ConfigError naming ``source``), parsed once
    per process and text."""
    key = sha256_of(text.encode("utf-8"))
    found = _PARSED.get(key)
    if found is None:
        found = parse(text, source)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = found
    return found


class ConfigWatch:
    """The config in force for one mode, and the workspace's hilt.toml compared with it."""

    def __init__(self, workspace: Workspace, *, owner: bool = False) -> None:
        self.workspace = workspace
        #: The one process that owns the store (the service): only it changes the config.
        self.owner = owner
        self._current: InForce | None = None
        self._settings: Settings | None = None
        #: (file sha256, version in force) → the problem, as last found.
        self._seen: tuple[tuple[str | None, int], str | None] | None = None

    @property
    def settings(self) -> Settings:
        """The settings of the version in force (as last read)."""
        if self._settings is None:
            raise RuntimeError("the config in force has not been read yet")
        return self._settings

    @property
    def current(self) -> InForce | None:
        """The version in force, as last read (None: not read yet)."""
        return self._current

    def refresh(self, con: duckdb.DuckDBPyConnection) -> Settings:
        """Read the version in force (its settings are parsed again only when it changed)."""
        return self.adopt(in_force(con))

    def adopt(self, current: InForce) -> Settings:
        """Act on ``current``, the version in force as the store records it (read from the
        store by ``refresh``, or by an earlier opening of the same unchanged file)."""
        if self._current is None or current.sha256 != self._current.sha256:
            source = f"{self.workspace.config_path} (version {current.version} in force)"
            self._settings = settings_of(current.text, source)
        self._current = current
        return self.settings

    def admit(self, con: duckdb.DuckDBPyConnection, despite_drift: bool) -> Settings:
        """The settings in force for the next operation; ConfigDrift while hilt.toml differs
        from them, unless the operation runs ``despite_drift``."""
        if not self.owner or self._current is None:
            self.refresh(con)
        return self.check(despite_drift)

    def check(self, despite_drift: bool) -> Settings:
        """The settings in force as last read; ConfigDrift while hilt.toml differs from
        them, unless ``despite_drift``."""
        if not despite_drift:
            problem = self.problem()
            if problem is not None:
                raise ConfigDrift(problem)
        return self.settings

    def problem(self) -> str | None:
        """Why the file is not the config in force (None: it is)."""
        assert self._current is not None
        data = read_file(self.workspace.config_path)
        key = (sha256_of(data) if data is not None else None, self._current.version)
        if self._seen is not None and self._seen[0] == key:
            return self._seen[1]
        problem = drift_problem(self.workspace.config_path, self._current, data)
        if problem is not None and self.owner:
            log.warning("refusing every operation but the config ones: %s", problem)
        self._seen = (key, problem)
        return problem
