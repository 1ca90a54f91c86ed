"""A workspace: one folder holding one use case's store, keys, checkpoints and runs.

Layout::

    DIR/hilt.toml                  the use case (copied at init, with the pinned public key)
    DIR/store.duckdb               the feedback store (one DuckDB file)
    DIR/store.lock                 the cross-process lock of the embedded mode
    DIR/service.json               present while `hilt store serve` owns the store
    DIR/keys/audit-signing-key.pem the checkpoint signing key (0600; or HILT_AUDIT_SIGNING_KEY)
    DIR/keys/master.key            the master key that wraps subject keys (0600; or
                                   HILT_MASTER_KEY / HILT_MASTER_KEY_FILE)
    DIR/keys/subject-keys.sqlite   per-subject keys, wrapped (destroyed on erasure)
    DIR/keys/erasures.jsonl        the erasure ledger: subjects forgotten (replayed on restore)
    DIR/audit/checkpoints.jsonl    signed checkpoints, outside the database
    DIR/runs/  DIR/snapshots/      executed notebooks and training snapshots
    DIR/dashboards/                the dashboards Voila serves (copied at each `hilt serve`)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hilt.pipelines.config import Settings, load_settings
from hilt.pipelines.errors import InputError

if TYPE_CHECKING:
    from hilt.pipelines.store.subject_keys import KeyRing

DEFAULT_WORKSPACE = "workspace"
#: What a run's executed notebook may be called: a file name in ``runs/``, no path.
RUN_NOTEBOOK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.ipynb$")


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def at(cls, path: str | Path | None) -> Workspace:
        """The workspace at ``path``, else $HILT_WORKSPACE, else ./workspace."""
        chosen = path or os.environ.get("HILT_WORKSPACE") or DEFAULT_WORKSPACE
        return cls(Path(chosen).expanduser().resolve())

    @property
    def config_path(self) -> Path:
        return self.root / "hilt.toml"

    @property
    def db_path(self) -> Path:
        return self.root / "store.duckdb"

    @property
    def lock_path(self) -> Path:
        return self.root / "store.lock"

    @property
    def service_file(self) -> Path:
        return self.root / "service.json"

    @property
    def signing_key_path(self) -> Path:
        env = os.environ.get("HILT_AUDIT_SIGNING_KEY")
        return Path(env) if env else self.root / "keys" / "audit-signing-key.pem"

    @property
    def master_key_path(self) -> Path:
        env = os.environ.get("HILT_MASTER_KEY_FILE")
        return Path(env) if env else self.root / "keys" / "master.key"

    @property
    def subject_keys_path(self) -> Path:
        return self.root / "keys" / "subject-keys.sqlite"

    @property
    def erasure_ledger_path(self) -> Path:
        """Subjects the store forgot, kept apart from the database (``erasure_ledger``)."""
        return self.root / "keys" / "erasures.jsonl"

    def key_ring(self) -> KeyRing:
        """The master key and subject key store (opened when first used)."""
        from hilt.pipelines.store.subject_keys import KeyRing

        return KeyRing(self.master_key_path, self.subject_keys_path)

    @property
    def checkpoints_path(self) -> Path:
        return self.root / "audit" / "checkpoints.jsonl"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_notebook(self, name: str) -> Path:
        """The executed notebook ``name`` of a run, in ``runs/``; InputError for a name that
        is not a plain notebook file name (a path read from an audit event is never opened
        as it stands: ``../store.duckdb`` must not reach the file beside ``runs/``)."""
        if not RUN_NOTEBOOK_NAME.match(name):
            raise InputError(f"{name!r} is not the name of a run's notebook in runs/")
        return self.runs_dir / name

    @property
    def snapshots_dir(self) -> Path:
        return self.root / "snapshots"

    def exists(self) -> bool:
        return self.db_path.exists()

    def require(self) -> Workspace:
        """This workspace, or InputError when there is none at its folder; the message names
        the workspaces right inside it (``make demo`` makes ./workspace/demo, while the
        commands' default is ./workspace)."""
        if not self.exists():
            inside = self.workspaces_inside()
            hint = (
                "; the workspaces in it: " + ", ".join(f"--workspace {p}" for p in inside)
                if inside
                else ""
            )
            raise InputError(
                f"{self.root} is not a hilt workspace (create one with `hilt init`{hint})"
            )
        return self

    def workspaces_inside(self) -> list[Path]:
        """The workspaces in the folders right inside this folder, by name (at most 5)."""
        if not self.root.is_dir():
            return []
        folders = sorted(p for p in self.root.iterdir() if p.is_dir())
        return [p for p in folders if Workspace(p).exists()][:5]

    def settings(self) -> Settings:
        return load_settings(self.config_path)
