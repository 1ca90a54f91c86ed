"""Removing data: what an erasure (``subject_rights``) and the retention periods
(``retention``) share.

Case data is deleted and its rows kept as tombstones (``removed_seq``); the digests of the
batches touched are restated in the removal's own audit event, so verify still passes;
snapshots that held the rows are regenerated without them; subjects forgotten lose their
identity and, once the transaction commits, their key (``finish_removals``), which shreds
every sealed copy, in the audit log too.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilt.pipelines.deferred_imports import deferred_module
from hilt.pipelines.store import sql
from hilt.pipelines.store.audit import batch_digest
from hilt.pipelines.store.erasure_ledger import record_removed
from hilt.pipelines.store.subject_records import SnapshotRewrite

if TYPE_CHECKING:
    import polars as pl

    from hilt.pipelines.store.unit import Unit
else:
    pl = deferred_module("polars")  # on first use: the store's clients never import it


@dataclass
class Removal:
    """Rows removed in one transaction, and the files to delete once it commits."""

    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshots: list[SnapshotRewrite] = field(default_factory=list)
    new_files: list[Path] = field(default_factory=list)


def _register_ids(unit: Unit, name: str, ids: list[str]) -> None:
    unit.con.register(name, pl.DataFrame({"case_id": ids}, schema={"case_id": pl.String}))


def remove_case_data(unit: Unit, case_ids: list[str], seq: int, removal: Removal) -> None:
    """Delete the data of these cases (features, personal data, seed label, rectifications,
    leases), keep their rows as tombstones (removed_seq), and restate the digests of the
    batches they came in."""
    if not case_ids:
        return
    _register_ids(unit, "hilt_removed", case_ids)
    try:
        batches = [
            int(r[0])
            for r in unit.con.execute(
                "SELECT DISTINCT ingest_seq FROM cases WHERE case_id IN"
                " (SELECT case_id FROM hilt_removed) ORDER BY 1"
            ).fetchall()
        ]
        # Outcomes (`hilt outcomes`) are the subject's data too, batched on their own.
        outcome_batches = [
            int(r[0])
            for r in unit.con.execute(
                "SELECT DISTINCT batch_seq FROM outcomes WHERE case_id IN"
                " (SELECT case_id FROM hilt_removed) ORDER BY 1"
            ).fetchall()
        ]
        for table in (
            "case_features",
            "case_personal",
            "seed_labels",
            "rectifications",
            "leases",
            "outcomes",
        ):
            unit.con.execute(
                f"DELETE FROM {table} WHERE case_id IN (SELECT case_id FROM hilt_removed)"
            )
        unit.con.execute(
            "UPDATE cases SET removed_seq = ? WHERE case_id IN (SELECT case_id FROM hilt_removed)",
            [seq],
        )
    finally:
        unit.con.unregister("hilt_removed")
    for batch in batches:
        rows = int(
            sql.scalar(
                unit.con,
                "SELECT count(*) FROM cases WHERE ingest_seq = ? AND removed_seq IS NULL",
                [batch],
            )
        )
        removal.batches[str(batch)] = {
            "rows": rows,
            "digest": batch_digest.restated_digest(unit.con, unit.settings, batch),
        }
    for batch in outcome_batches:
        count = sql.scalar(unit.con, "SELECT count(*) FROM outcomes WHERE batch_seq = ?", [batch])
        rows = int(count)
        removal.batches[str(batch)] = {
            "rows": rows,
            "digest": batch_digest.restated_digest(unit.con, unit.settings, batch),
        }


def remove_subjects(
    unit: Unit, subject_refs: list[str], reason: str, seq: int, now: datetime
) -> None:
    """Forget who the subjects were: identity and restrictions go; a tombstone stays. Their
    keys are destroyed after the commit (``finish_removals``)."""
    for ref in subject_refs:
        unit.con.execute("DELETE FROM identity WHERE subject_ref = ?", [ref])
        unit.con.execute("DELETE FROM restrictions WHERE subject_ref = ?", [ref])
        unit.con.execute(
            "INSERT INTO removed_subjects VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [ref, reason, seq, now],
        )


def _training_runs(unit: Unit, sha256: str) -> list[str]:
    rows = unit.con.execute(
        "SELECT DISTINCT json_extract_string(entry, '$.payload.run_id') FROM audit_log"
        """ WHERE entry LIKE '{"action":"run.trained",%'"""
        " AND json_extract_string(entry, '$.payload.snapshot_sha256') = ? ORDER BY 1",
        [sha256],
    ).fetchall()
    return [str(r[0]) for r in rows if r[0]]


def rewrite_snapshots(
    unit: Unit, case_ids: list[str], seq: int, now: datetime, removal: Removal
) -> None:
    """Regenerate every live snapshot file that holds any of ``case_ids`` without them.

    The new file is written now; the old one is marked removed and deleted after the commit.
    """
    removed = set(case_ids)
    if not removed:
        return
    snapshots = unit.con.execute(
        "SELECT name, as_of_seq, sha256 FROM snapshots WHERE removed_seq IS NULL ORDER BY name"
    ).fetchall()
    folder = unit.workspace.snapshots_dir
    for name, as_of, sha in snapshots:
        path = folder / str(name)
        if not path.exists():
            continue
        ids = pl.read_parquet(path, columns=["case_id"])["case_id"]
        hit = int(ids.is_in(list(removed)).sum())
        if not hit:
            continue
        frame = pl.read_parquet(path).filter(~pl.col("case_id").is_in(list(removed)))
        new_name: str | None = None
        new_sha: str | None = None
        if frame.height:
            new_name, new_sha = write_snapshot_file(folder, frame, int(as_of))
            removal.new_files.append(folder / new_name)
            unit.con.execute(
                "INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?, NULL) ON CONFLICT DO NOTHING",
                [new_name, int(as_of), new_sha, frame.height, now, seq, str(name)],
            )
        unit.con.execute("UPDATE snapshots SET removed_seq = ? WHERE name = ?", [seq, str(name)])
        removal.snapshots.append(
            SnapshotRewrite(
                name=str(name),
                sha256=str(sha),
                rows_removed=hit,
                new_name=new_name,
                new_sha256=new_sha,
                training_runs=_training_runs(unit, str(sha)),
            )
        )


def write_snapshot_file(folder: Path, frame: pl.DataFrame, as_of_seq: int) -> tuple[str, str]:
    """Write a snapshot as Parquet the one way snapshots are written; (name, sha256)."""
    import hashlib
    import io

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".snapshot-{uuid.uuid4().hex}.parquet"
    try:
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression="zstd", statistics=False)
        data = buffer.getbuffer()
        digest = hashlib.sha256(data).hexdigest()
        tmp.write_bytes(data)
        name = f"snapshot-{as_of_seq:08d}-{digest[:12]}.parquet"
        tmp.replace(folder / name)
    finally:
        tmp.unlink(missing_ok=True)
    return name, digest


def shred_file(path: Path) -> None:
    """Overwrite a file with zeros, flush it, then delete it."""
    try:
        size = path.stat().st_size
        with path.open("r+b") as f:
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
        path.unlink()
    except FileNotFoundError:
        return


def discard_new_files(removal: Removal) -> None:
    for path in removal.new_files:
        path.unlink(missing_ok=True)


def finish_removals(unit: Unit) -> bool:
    """After a removal committed (or crashed after committing): destroy the keys of removed
    subjects (first naming them in the erasure ledger kept apart, which a restore of an
    older backup replays: ``erasure_ledger``), delete the snapshot files that were replaced,
    and checkpoint DuckDB so that its WAL no longer holds the deleted rows. Idempotent.
    Returns whether a key was destroyed."""
    removed = [
        (str(r[0]), str(r[1]), int(r[2]))
        for r in unit.con.execute(
            "SELECT subject_ref, reason, seq FROM removed_subjects ORDER BY seq, subject_ref"
        ).fetchall()
    ]
    if removed:
        record_removed(unit.workspace.erasure_ledger_path, removed)
    refs = [ref for ref, _, _ in removed]
    destroyed = unit.keys.store.destroy(refs) > 0 if refs else False
    stale = unit.con.execute(
        "SELECT name FROM snapshots WHERE removed_seq IS NOT NULL ORDER BY name"
    ).fetchall()
    for (name,) in stale:
        shred_file(unit.workspace.snapshots_dir / str(name))
    if not unit.in_transaction:
        unit.con.execute("CHECKPOINT")
    return destroyed
