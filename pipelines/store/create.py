"""Creating a workspace: folders, the use-case config with its pinned key, keys, the schema."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tomllib
from pathlib import Path

from hilt.pipelines.config import load_settings, parse_settings
from hilt.pipelines.errors import ConfigError, InputError
from hilt.pipelines.store.audit.checkpoints import create_signing_key, public_key_text
from hilt.pipelines.store.modes.embedded import connect
from hilt.pipelines.store.ops.config import record_first
from hilt.pipelines.store.schema import SCHEMA_VERSION, create_statements
from hilt.pipelines.store.subject_keys import MASTER_KEY_ENV, create_master_key
from hilt.pipelines.store.unit import Clock, Unit, system_clock
from hilt.pipelines.store.user_records import User
from hilt.pipelines.workspace import Workspace

_AUDIT_TABLE = re.compile(r"^\[audit\]\s*(#.*)?$", re.M)


def _pin_public_key(text: str, key: str) -> str:
    """Return the config text with ``[audit] public_key`` set, keeping everything else."""
    line = f'public_key = "{key}"  # pinned at init: verifies the signed audit checkpoints'
    match = _AUDIT_TABLE.search(text)
    if match is None:
        return text.rstrip("\n") + "\n\n[audit]\n" + line + "\n"
    return text[: match.end()] + "\n" + line + text[match.end() :]


def create_workspace(
    workspace: Workspace,
    config_path: str | Path,
    clock: Clock = system_clock,
    holdout_salt: str | None = None,
) -> str:
    """Create a new workspace from a use-case config. Returns the pinned public key."""
    settings = load_settings(config_path)  # validate before anything is written
    if settings.audit.public_key is not None:
        raise ConfigError(
            f"{config_path}: audit.public_key: a source config must not pin a key; "
            "init creates the workspace's own"
        )
    if workspace.exists() or workspace.config_path.exists():
        raise InputError(f"{workspace.root} is already a hilt workspace")
    if workspace.signing_key_path.exists():
        raise InputError(f"{workspace.signing_key_path} already exists; refusing to reuse a key")
    make_master = not os.environ.get(MASTER_KEY_ENV) and not workspace.master_key_path.exists()
    created_root = not workspace.root.exists()
    try:
        workspace.root.mkdir(parents=True, exist_ok=True)
        for d in (workspace.runs_dir, workspace.snapshots_dir, workspace.checkpoints_path.parent):
            d.mkdir(parents=True, exist_ok=True)
        key = create_signing_key(workspace.signing_key_path)
        if make_master:
            # A supplied key (environment, or a key file kept elsewhere) is used as it is.
            create_master_key(workspace.master_key_path)
        public = public_key_text(key.public_key())
        source = Path(config_path).read_text(encoding="utf-8")
        pinned_text = _pin_public_key(source, public)
        pinned = parse_settings(tomllib.loads(pinned_text), str(workspace.config_path))
        workspace.config_path.write_bytes(pinned_text.encode("utf-8"))
        con = connect(workspace)
        keys = workspace.key_ring()
        try:
            operator = User(name="hilt-init", roles=["admin"])
            unit = Unit(con, pinned, workspace, operator, "admin", keys, clock)
            create_schema(unit, pinned_text, public, holdout_salt)
            con.execute("CHECKPOINT")
        finally:
            keys.close()
            con.close()
    except BaseException:
        if created_root:
            shutil.rmtree(workspace.root, ignore_errors=True)
        raise
    return public


def create_schema(
    unit: Unit, config_text: str, public_key: str, holdout_salt: str | None = None
) -> None:
    """Create the tables and seed the users of the config (once, at init; afterwards only
    ``users_sync`` changes them), audited as ``workspace.init`` (the log's first event).
    ``config_text`` (the workspace's hilt.toml, with its pinned key) is recorded as the
    config in force, version 1; the store compares the file with it at every open from now
    on (``ops/config.py``).

    ``holdout_salt`` fixes which labelled cases form the holdout; random unless given
    (a simulation passes its seed so that its runs are repeatable)."""
    now = unit.clock()
    with unit.transaction():
        for statement in create_statements(unit.settings):
            unit.con.execute(statement)
        config_sha256 = record_first(unit, config_text)
        unit.con.execute(
            "INSERT INTO meta VALUES ('schema_version', ?), ('use_case', ?), ('holdout_salt', ?)",
            [
                SCHEMA_VERSION,
                unit.settings.use_case.name,
                holdout_salt or secrets.token_hex(16),
            ],
        )
        users = unit.settings.access.users
        for name, roles in users.items():
            unit.con.execute(
                "INSERT INTO users (name, roles, active, created_at, in_config) "
                "VALUES (?, ?, true, ?, true)",
                [name, list(roles), now],
            )
        unit.append_audit(
            "workspace.init",
            "workspace",
            unit.settings.use_case.name,
            {
                "schema_version": SCHEMA_VERSION,
                "config_sha256": config_sha256,
                "audit_public_key": public_key,
                "users": {n: list(r) for n, r in users.items()},
            },
            now,
        )
