"""Config drift: the store keeps the config in force; hilt.toml is what an admin proposes.

The config in force is the version of hilt.toml the store recorded last (table
``config_versions``, with its whole text), and the store's settings are always that
version's, never the file's. Every open of the store compares the workspace's hilt.toml with
it (``config_watch.ConfigWatch``) and, while they differ, refuses everything but the
operations below, naming the version in force and the keys that differ.

- ``config_apply`` (an admin) records the file as a new version in ONE audited
  transaction: the old and new sha256, the keys changed, added and removed, the old and new
  values of the keys whose values may be shown (``config_rules.SHOWN_SECTIONS``; never
  anything of ``[access]``, never a token). A change that loosens a rule that protects
  people (``config_rules.LOOSENING``) is recorded as pending (``config.proposed``) and the
  file is put back to the config in force, so that nothing runs under it; any other change
  is in force at once (``config.applied``). A change to a key the store was built on (its
  tables, the id and target columns, the holdout) is refused. A newer change withdraws a
  pending one (``config.withdrawn``).
- ``config_approve`` (a lead who is not the admin who applied the change) brings the pending
  change into force (``config.approved``) and writes it to hilt.toml; ``config_reject`` (a
  lead) refuses it (``config.rejected``).
- ``config_status`` (everyone): the version in force, the pending change, and whether the
  file differs.
- ``config_in_force`` (the dashboards' gateway only): the text of the version in force, which
  dashboards on another host run under (`hilt serve --store-url`).

``[access.users]`` is recorded like any key, but the store's users change only through the
users sync, an operation of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilt.pipelines.config import Settings, parse_settings
from hilt.pipelines.errors import (
    ConfigDrift,
    ConfigError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)
from hilt.pipelines.store import config_rules, sql
from hilt.pipelines.store.audit.chain import canonical_json, utc_timestamp
from hilt.pipelines.store.config_records import (
    ConfigApplied,
    ConfigInForce,
    ConfigStatus,
    ConfigVersion,
)
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    import duckdb

    from hilt.pipelines.store.unit import Unit

_COLUMNS = (
    "version, sha256, state, base_version, diff, applied_by, applied_at, applied_seq,"
    " decided_by, decided_at, decided_seq"
)
#: How many differing keys a drift message names.
_MAX_KEYS = 8


@dataclass(frozen=True)
class InForce:
    """The version of hilt.toml in force, with its text."""

    version: int
    sha256: str
    text: str
    applied_seq: int
    applied_at: str


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_file(path: Path) -> bytes | None:
    """The file's bytes (None: there is no such file)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({type(e).__name__})") from None


def parse(text: str, source: str) -> Settings:
    """Validated settings from a config text (ConfigError naming ``source`` and the key)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    return parse_settings(data, source)


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8") from None


def write_file(path: Path, text: str) -> None:
    """Replace the file's content at once (a reader sees the old or the new file, never
    half of one), keeping its permissions."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(text.encode("utf-8"))
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write config file ({type(e).__name__})") from None


# ----------------------------------------------------------------------- reading
def in_force(con: duckdb.DuckDBPyConnection) -> InForce:
    row = sql.one(
        con,
        "SELECT version, sha256, text, applied_seq, applied_at FROM config_versions"
        " WHERE state = 'in-force'",
    )
    if row is None:
        raise ConfigError("the store records no config in force")
    return InForce(int(row[0]), str(row[1]), str(row[2]), int(row[3]), utc_timestamp(row[4]))


def settings_in_force(con: duckdb.DuckDBPyConnection, workspace: Workspace) -> Settings:
    """The settings the store acts on: those of the version in force, not the file's."""
    current = in_force(con)
    return parse(current.text, f"{workspace.config_path} (version {current.version} in force)")


def _version(row: tuple[Any, ...]) -> ConfigVersion:
    diff = json.loads(row[4])
    return ConfigVersion(
        version=int(row[0]),
        sha256=str(row[1]),
        state=row[2],
        base_version=row[3],
        changed=diff["changed"],
        added=diff["added"],
        removed=diff["removed"],
        values=diff["values"],
        loosens=[config_rules.describe_loosening(k, diff["values"]) for k in diff["loosens"]],
        users_changed=diff["users_changed"],
        applied_by=str(row[5]),
        applied_at=utc_timestamp(row[6]),
        applied_seq=int(row[7]),
        decided_by=row[8],
        decided_at=utc_timestamp(row[9]) if row[9] is not None else None,
        decided_seq=row[10],
    )


def _one(unit: Unit, state: str) -> ConfigVersion | None:
    row = sql.one(unit.con, f"SELECT {_COLUMNS} FROM config_versions WHERE state = ?", [state])
    return _version(row) if row is not None else None


def _stored(unit: Unit, version: int, column: str) -> str:
    """The ``text`` or ``diff`` of a version, as stored."""
    return str(
        sql.scalar(unit.con, f"SELECT {column} FROM config_versions WHERE version = ?", [version])
    )


# ----------------------------------------------------------------------- drift
def drift_problem(path: Path, current: InForce, data: bytes | None) -> str | None:
    """Why the file at ``path`` (its bytes: ``data``) is not the config in force, in one
    line naming the version in force and the keys that differ (None: it is)."""
    since = f"version {current.version}, audit seq {current.applied_seq}, {current.applied_at}"
    if data is None:
        return (
            f"{path} is missing; the config in force is {since}: restore the file "
            "(nothing runs until it is back)"
        )
    if sha256_of(data) == current.sha256:
        return None
    return (
        f"{path} changed since the config in force ({since}){_what_differs(path, current, data)};"
        " nothing runs until an admin records the change with `hilt config apply --as ADMIN`"
        " (or restores the file)"
    )


def _what_differs(path: Path, current: InForce, data: bytes) -> str:
    try:
        keys = file_keys(path, current, data)
    except ConfigError as e:
        return f" and is not a valid config ({str(e).splitlines()[0]})"
    if not keys:
        return " (comments or layout only)"
    more = f" and {len(keys) - _MAX_KEYS} more" if len(keys) > _MAX_KEYS else ""
    return " in " + ", ".join(keys[:_MAX_KEYS]) + more


def file_keys(path: Path, current: InForce, data: bytes) -> list[str]:
    """The keys of the file that differ from the config in force (ConfigError: the file is
    not valid TOML)."""
    try:
        new = tomllib.loads(_decode(data, path))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return list(config_rules.key_diff(tomllib.loads(current.text), new).keys)


# ----------------------------------------------------------------------- operations
def config_status(unit: Unit) -> ConfigStatus:
    """The config in force, the change waiting for a lead, and whether hilt.toml differs."""
    path = unit.workspace.config_path
    current = in_force(unit.con)
    data = read_file(path)
    problem = drift_problem(path, current, data)
    keys: list[str] = []
    if data is not None and problem is not None:
        try:
            keys = file_keys(path, current, data)
        except ConfigError:
            keys = []
    shown = _one(unit, "in-force")
    assert shown is not None
    return ConfigStatus(
        in_force=shown,
        pending=_one(unit, "pending"),
        file_sha256=sha256_of(data) if data is not None else None,
        drift=problem is not None,
        problem=problem,
        file_keys=keys,
    )


def config_in_force(unit: Unit) -> ConfigInForce:
    """The text of the config in force, for the dashboards' gateway: dashboards served on
    another host (`hilt serve --store-url`) act under the store's config, never a local copy
    of hilt.toml that could differ from it. Read despite drift: it is the version in force."""
    current = in_force(unit.con)
    return ConfigInForce(version=current.version, sha256=current.sha256, text=current.text)


def record_first(unit: Unit, text: str) -> str:
    """Record ``text`` as version 1, in force (at init, inside its transaction, before its
    ``workspace.init`` event, whose seq it takes). Returns its sha256."""
    sha = sha256_of(text.encode("utf-8"))
    diff = {
        "changed": [],
        "added": [],
        "removed": [],
        "values": {},
        "loosens": [],
        "users_changed": False,
    }
    unit.con.execute(
        "INSERT INTO config_versions VALUES (1, ?, ?, NULL, 'in-force', ?, ?, ?, ?,"
        " NULL, NULL, NULL)",
        [sha, text, canonical_json(diff), unit.actor.name, unit.clock(), unit.next_seq()],
    )
    return sha


def config_apply(unit: Unit) -> ConfigApplied:
    """Record the workspace's hilt.toml as the config in force, or, where it loosens a rule
    that protects people, as a change pending a lead's approval (see the module doc)."""
    path = unit.workspace.config_path
    data = read_file(path)
    if data is None:
        raise ConfigError(f"{path}: no such config file")
    text = _decode(data, path)
    sha = sha256_of(data)
    now = unit.clock()
    with unit.transaction():
        current = in_force(unit.con)
        pending = _one(unit, "pending")
        if sha == current.sha256:
            shown = _one(unit, "in-force")
            assert shown is not None
            return ConfigApplied(outcome="unchanged", version=shown, withdrawn=None)
        if pending is not None and sha == pending.sha256:
            # The same proposal again: it is waiting already; the file goes back.
            write_file(path, current.text)
            return ConfigApplied(outcome="pending", version=pending, withdrawn=None)
        old = parse(current.text, f"{path} (version {current.version} in force)")
        new = parse(text, str(path))
        fixed = config_rules.fixed_keys(old, new)
        if fixed:
            raise ConfigError(
                f"{path}: {', '.join(fixed)} cannot change: the store was built on them (its "
                "tables, the id and target columns, the holdout); restore them to apply the "
                "rest, or create a new workspace with `hilt init`"
            )
        keys = config_rules.key_diff(tomllib.loads(current.text), tomllib.loads(text))
        loosens = config_rules.loosened(old, new)
        version = int(sql.scalar(unit.con, "SELECT max(version) FROM config_versions")) + 1
        withdrawn = None
        if pending is not None:
            withdrawn = pending.version
            seq = unit.append_audit(
                "config.withdrawn",
                "config",
                f"v{pending.version}",
                {"version": pending.version, "sha256": pending.sha256, "by_version": version},
                now,
            )
            _decide(unit, pending.version, "withdrawn", now, seq)
        diff = {
            "changed": list(keys.changed),
            "added": list(keys.added),
            "removed": list(keys.removed),
            "values": config_rules.shown_values(old, new),
            "loosens": loosens,
            "users_changed": config_rules.users_changed(old, new),
        }
        state = "pending" if loosens else "in-force"
        seq = unit.append_audit(
            "config.proposed" if loosens else "config.applied",
            "config",
            f"v{version}",
            {
                "version": version,
                "old_version": current.version,
                "old_sha256": current.sha256,
                "new_sha256": sha,
                "state": state,
                **diff,
            },
            now,
        )
        if not loosens:
            _decide(unit, current.version, "superseded", now, seq)
        unit.con.execute(
            "INSERT INTO config_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL)",
            [
                version,
                sha,
                text,
                current.version,
                state,
                canonical_json(diff),
                unit.actor.name,
                now,
                seq,
            ],
        )
        if loosens:
            # Nothing may run under a change a lead has not approved.
            write_file(path, current.text)
        recorded = _one(unit, state)
    assert recorded is not None
    return ConfigApplied(
        outcome="pending" if loosens else "applied", version=recorded, withdrawn=withdrawn
    )


def _decide(unit: Unit, version: int, state: str, now: datetime, seq: int) -> None:
    """Mark ``version`` as ``state``. A superseded version keeps its own decision (who
    approved it); the others record who decided and when."""
    if state == "superseded":
        unit.con.execute(
            "UPDATE config_versions SET state = 'superseded' WHERE version = ?", [version]
        )
        return
    unit.con.execute(
        "UPDATE config_versions SET state = ?, decided_by = ?, decided_at = ?, decided_seq = ?"
        " WHERE version = ?",
        [state, unit.actor.name, now, seq, version],
    )


def _pending(unit: Unit, version: int | None, verb: str) -> ConfigVersion:
    pending = _one(unit, "pending")
    if pending is None:
        raise ConflictError(f"no config change is pending; nothing to {verb}")
    if version is not None and version != pending.version:
        raise NotFoundError(
            f"config version {version} is not pending (version {pending.version} is)"
        )
    return pending


def config_approve(unit: Unit, version: int | None = None) -> ConfigVersion:
    """Bring the pending change into force (a lead who is not the admin who applied it):
    recorded as ``config.approved``, and written to hilt.toml."""
    path = unit.workspace.config_path
    now = unit.clock()
    with unit.transaction():
        pending = _pending(unit, version, "approve")
        if pending.applied_by == unit.actor.name:
            raise PermissionDeniedError(
                f"{unit.actor.name} applied config version {pending.version}; a second "
                "person, a lead, must approve it"
            )
        current = in_force(unit.con)
        problem = drift_problem(path, current, read_file(path))
        if problem is not None:
            raise ConfigDrift(f"cannot approve version {pending.version} now: {problem}")
        seq = unit.append_audit(
            "config.approved",
            "config",
            f"v{pending.version}",
            {
                "version": pending.version,
                "old_version": current.version,
                "old_sha256": current.sha256,
                "new_sha256": pending.sha256,
                "proposed_seq": pending.applied_seq,
                "proposed_by": pending.applied_by,
                "loosens": json.loads(_stored(unit, pending.version, "diff"))["loosens"],
            },
            now,
        )
        _decide(unit, current.version, "superseded", now, seq)
        _decide(unit, pending.version, "in-force", now, seq)
        write_file(path, _stored(unit, pending.version, "text"))
        approved = _one(unit, "in-force")
    assert approved is not None
    return approved


def config_reject(unit: Unit, version: int | None = None) -> ConfigVersion:
    """Refuse the pending change (a lead): recorded as ``config.rejected``; the config in
    force stays."""
    now = unit.clock()
    with unit.transaction():
        pending = _pending(unit, version, "reject")
        seq = unit.append_audit(
            "config.rejected",
            "config",
            f"v{pending.version}",
            {"version": pending.version, "sha256": pending.sha256},
            now,
        )
        _decide(unit, pending.version, "rejected", now, seq)
        row = sql.one(
            unit.con,
            f"SELECT {_COLUMNS} FROM config_versions WHERE version = ?",
            [pending.version],
        )
    assert row is not None
    return _version(row)
