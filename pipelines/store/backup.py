"""Backups of the store, and restoring one into a new workspace.

A backup is a folder::

    DEST/store.duckdb    the store as of one audit head, verified before the backup counts
    DEST/hilt.toml       the workspace's use case (its pinned public key included)
    DEST/manifest.json   the head (seq, hash), every file's sha256 and size, what was verified,
                         and what the backup deliberately does NOT hold

How it is taken (``ops/backup.store_backup``, a store operation, so it runs in the process
that owns the file: the service when one runs, else the embedded mode under the lock): the
destination file is ATTACHed to the store's own connection and ``COPY FROM DATABASE`` copies
every table, view and sequence in ONE transaction, which also reads the head. DuckDB's
snapshot isolation makes the copy exactly the committed state at that head; the writers
wait for it only in the service's lock (the copy of the 200-case test store takes well under
a second). Why not the alternatives: a file copy after CHECKPOINT is only consistent if
nothing writes meanwhile and the WAL is empty, which the service cannot promise without
stopping; ``EXPORT DATABASE`` writes CSV/Parquet plus SQL that must be imported again (a
second, lossier format to trust). The copy is then opened read-only and verified (the chain,
the batch digests, the schema, the checkpoints); only a copy that verifies, at the head it
was taken at, is kept, and the store records ``store.backup`` naming that head and the
copy's sha256.

What is kept apart, never in a backup (``KEPT_APART``): the master key, the subject key
store, the erasure ledger, the checkpoint signing key and the signed checkpoints. Keys
beside the ciphertext they protect would make crypto-shredding meaningless (an erased
subject's key would live on in every backup); checkpoints and the signing key are the
auditor's anchor against a rewritten log, so they must not travel with the log they anchor.

Restoring (``restore``) builds a NEW workspace from a backup and a folder holding the
kept-apart files (the old workspace, or its separately backed-up ``keys/`` and ``audit/``),
then replays the erasure ledger (``erasure_ledger``), so that a subject erased after the
backup stays erased, and verifies the result.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError, StoreError
from hilt.pipelines.store.audit.checkpoints import read_checkpoints
from hilt.pipelines.store.audit.verify import verify_records
from hilt.pipelines.store.audit_records import VerifyReport
from hilt.pipelines.store.modes.connection import connect
from hilt.pipelines.store.schema import SCHEMA_VERSION
from hilt.pipelines.workspace import Workspace

FORMAT = "hilt-backup/v1"
MANIFEST = "manifest.json"
STORE_FILE = "store.duckdb"
CONFIG_FILE = "hilt.toml"
_ATTACHED = "hilt_backup"

#: What a backup never holds, where it lives, and why (also written into each manifest).
KEPT_APART: dict[str, str] = {
    "keys/master.key": "the master key (or $HILT_MASTER_KEY): wraps every subject key",
    "keys/subject-keys.sqlite": "the subject keys: destroying one shreds a subject",
    "keys/erasures.jsonl": "the erasure ledger: replayed on restore",
    "keys/audit-signing-key.pem": "the checkpoint signing key (or $HILT_AUDIT_SIGNING_KEY)",
    "audit/checkpoints.jsonl": "the signed checkpoints: the auditor's anchor",
}


@dataclass(frozen=True)
class Copied:
    head_seq: int
    head_hash: str


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _writable_parent(target: Path, what: str) -> None:
    parent = target.parent
    if not parent.is_dir():
        raise InputError(f"{what} {target}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{what} {target}: the folder {parent} is not writable")


def check_destination(dest: str) -> Path:
    """The backup folder to create: an absolute path that does not exist yet, in a folder
    that does and is writable (InputError otherwise; nothing is written)."""
    if not dest or "\0" in dest:
        raise InputError("name the backup's destination folder")
    target = Path(dest)
    if not target.is_absolute():
        raise InputError(f"the backup destination must be an absolute path, not {dest!r}")
    if target.exists() or target.is_symlink():
        raise InputError(f"backup destination {target} already exists; name a new folder")
    _writable_parent(target, "backup destination")
    return target


def create_folder(target: Path) -> None:
    """Create the backup folder (only a folder this creates is ever removed again)."""
    try:
        target.mkdir(mode=0o700)
    except OSError as e:
        raise InputError(f"cannot create the backup folder {target}: {e.strerror}") from None


def copy_store(con: duckdb.DuckDBPyConnection, target: Path) -> Copied:
    """Copy the store into ``target/store.duckdb`` in one transaction that also reads the
    head: the copy holds exactly the events up to that head."""
    path = str(target / STORE_FILE).replace("'", "''")
    main = con.execute("SELECT current_database()").fetchall()[0][0]
    attached = f"{_ATTACHED}_{secrets.token_hex(6)}"  # two backups may run at once
    con.execute(f"ATTACH '{path}' AS {attached}")
    try:
        con.execute("BEGIN TRANSACTION")
        try:
            row = con.execute(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
            ).fetchall()
            con.execute(f'COPY FROM DATABASE "{main}" TO {attached}')
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.execute(f"DETACH {attached}")
    if not row:
        raise InputError("the store's audit log is empty: nothing to back up")
    return Copied(head_seq=int(row[0][0]), head_hash=str(row[0][1]))


def verify_copy(target: Path, settings: Settings, checkpoints: Path, now: datetime) -> VerifyReport:
    """Verify the copy on its own (read-only): chain, batches, schema, checkpoints."""
    con = connect(Workspace(target), read_only=True)
    try:
        return verify_records(
            con,
            settings.audit.public_key,
            checkpoints,
            batches=True,
            settings=settings,
            now=now,
            parallel=False,
        )
    finally:
        con.close()


def write_manifest(
    target: Path, config: Path, copied: Copied, verified: VerifyReport, now: datetime
) -> str:
    """Copy hilt.toml beside the store, write the manifest; its sha256."""
    shutil.copyfile(config, target / CONFIG_FILE)
    files = {
        name: {"sha256": sha256_file(target / name), "bytes": (target / name).stat().st_size}
        for name in (STORE_FILE, CONFIG_FILE)
    }
    manifest = {
        "format": FORMAT,
        "created": now.isoformat(),
        "schema_version": SCHEMA_VERSION,
        "head": {"seq": copied.head_seq, "hash": copied.head_hash},
        "verified": {"events": verified.events, "checkpoints": verified.checkpoints},
        "files": files,
        "kept_apart": KEPT_APART,
    }
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    (target / MANIFEST).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def discard(target: Path) -> None:
    """Remove a backup folder this operation created (after a failure)."""
    shutil.rmtree(target, ignore_errors=True)


# ----------------------------------------------------------------------- restore
def read_manifest(src: Path) -> dict[str, Any]:
    """The manifest of the backup at ``src``, after checking every file's sha256."""
    try:
        manifest = json.loads((src / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{src} is not a hilt backup (no {MANIFEST})") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{src / MANIFEST}: cannot read it ({type(e).__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{src / MANIFEST}: not a {FORMAT} manifest")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise InputError(
            f"{src}: a backup of store schema {manifest.get('schema_version')}; this hilt "
            f"restores schema {SCHEMA_VERSION}"
        )
    for name in (STORE_FILE, CONFIG_FILE):
        path = src / name
        expected = manifest["files"][name]["sha256"]
        if not path.is_file():
            raise InputError(f"{src}: the backup lacks {name}")
        if sha256_file(path) != expected:
            raise InputError(f"{path}: sha256 differs from the manifest (damaged or altered)")
    return manifest


def _copy_key_store(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite key store (WAL included) with SQLite's backup API."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    try:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        target = sqlite3.connect(dst)
        try:
            source.backup(target)
        finally:
            target.close()
    except sqlite3.Error as e:
        raise StoreError(f"{src}: cannot copy the subject key store ({e})") from e
    finally:
        source.close()


def _copy_private(src: Path, dst: Path) -> None:
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(src.read_bytes())


def _checkpoints_up_to(src: Path, dst: Path, head_seq: int) -> int:
    """The signed checkpoints of seqs the backup holds (later ones describe a log the
    restored workspace does not have); how many."""
    checkpoints, broken = read_checkpoints(src)
    if broken is not None:
        raise InputError(f"{src}: {broken.detail}")
    kept = [c for c in checkpoints if c.seq <= head_seq]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("".join(c.to_line() + "\n" for c in kept), encoding="utf-8")
    return len(kept)


@dataclass(frozen=True)
class Staged:
    head_seq: int
    head_hash: str
    #: The kept-apart files found and copied (workspace-relative names).
    kept_apart: list[str]
    checkpoints: int


def stage_restore(src: Path, new: Workspace, kept_apart: Path) -> Staged:
    """Build the new workspace at ``new.root`` from the backup at ``src`` and the kept-apart
    files under ``kept_apart`` (a workspace's layout: ``keys/…``, ``audit/…``); all or
    nothing (InputError for a bad source or destination, nothing written)."""
    manifest = read_manifest(src)
    head_seq, head_hash = int(manifest["head"]["seq"]), str(manifest["head"]["hash"])
    if new.root.exists() or new.root.is_symlink():
        raise InputError(f"{new.root} already exists; restore only into a new workspace")
    _writable_parent(new.root, "new workspace")
    if not kept_apart.is_dir():
        raise InputError(f"{kept_apart}: no such folder (the kept-apart keys and checkpoints)")
    staging = new.root.with_name(f".{new.root.name}.restoring-{uuid.uuid4().hex[:8]}")
    try:
        (staging / "keys").mkdir(parents=True, mode=0o700)
        shutil.copyfile(src / STORE_FILE, staging / STORE_FILE)
        shutil.copyfile(src / CONFIG_FILE, staging / CONFIG_FILE)
        found: list[str] = []
        checkpoints = 0
        for name in KEPT_APART:
            origin = kept_apart / name
            if not origin.is_file():
                continue
            found.append(name)
            if name == "keys/subject-keys.sqlite":
                _copy_key_store(origin, staging / name)
            elif name == "audit/checkpoints.jsonl":
                checkpoints = _checkpoints_up_to(origin, staging / name, head_seq)
            else:
                _copy_private(origin, staging / name)
        con = connect(Workspace(staging), read_only=True)
        try:
            row = con.execute(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
            ).fetchall()
        finally:
            con.close()
        if not row or (int(row[0][0]), str(row[0][1])) != (head_seq, head_hash):
            raise InputError(f"{src}: the store's head differs from the manifest's")
        staging.rename(new.root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Staged(head_seq, head_hash, found, checkpoints)
