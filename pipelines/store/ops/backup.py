"""Backing up the store, and re-applying, on a restored one, the removals made after its
backup (see ``store/backup.py`` and ``store/erasure_ledger.py`` for the design).

- ``store_backup``: a verified copy of the store as of one head, and ``store.backup`` in the
  log naming that head and the copy's sha256 (the event is written only once the copy
  verified; a copy that does not, or whose event cannot be written, is removed);
- ``reapply_removals``: after a restore, every subject the erasure ledger names that the
  restored file still holds is removed again (``subject.erased``, with ``reapplied``: the
  seq and reason of the original removal), and every key the ledger names is destroyed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from hilt.pipelines.errors import StoreError
from hilt.pipelines.store import backup
from hilt.pipelines.store.erasure_ledger import read_ledger
from hilt.pipelines.store.ops.removal import Removal, discard_new_files, finish_removals

if TYPE_CHECKING:
    from hilt.pipelines.store.unit import Unit

BACKUP_ACTION = "store.backup"


class BackupReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    #: The head the copy holds, verified: its last event's seq and hash.
    head_seq: int
    head_hash: str
    store_sha256: str
    manifest_sha256: str
    bytes: int
    #: The seq of the ``store.backup`` event that records it.
    seq: int


class RemovalsReapplied(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Subjects removed again (the ledger named them; the restored file still held them).
    subjects: list[str]
    #: Their ``subject.erased`` events.
    seqs: list[int]
    #: How many entries the erasure ledger has.
    ledger_entries: int
    #: How many subject keys were destroyed in the restored key store.
    keys_destroyed: int


def store_backup(unit: Unit, dest: str) -> BackupReport:
    """Back the store up into the new folder ``dest`` (on the store's host), verified."""
    now = unit.clock()
    target = backup.check_destination(dest)
    backup.create_folder(target)
    try:
        # The copy and its verification take seconds on a large store: the service's writer
        # serves the reviewers meanwhile (the copy reads one snapshot of its own).
        with unit.writer_let_go() as con:
            copied = backup.copy_store(con, target)
            verified = backup.verify_copy(
                target, unit.settings, unit.workspace.checkpoints_path, now
            )
        if not verified.ok or verified.head_hash != copied.head_hash:
            detail = verified.summary() if not verified.ok else "the verified head moved"
            raise StoreError(f"the store does not verify; no backup kept: {detail}")
        manifest_sha = backup.write_manifest(
            target, unit.workspace.config_path, copied, verified, now
        )
        store_file = target / backup.STORE_FILE
        store_sha = backup.sha256_file(store_file)
        size = store_file.stat().st_size
        with unit.transaction():
            seq = unit.append_audit(
                BACKUP_ACTION,
                "store",
                manifest_sha[:16],
                {
                    "head_seq": copied.head_seq,
                    "head_hash": copied.head_hash,
                    "store_sha256": store_sha,
                    "manifest_sha256": manifest_sha,
                    "bytes": size,
                    "events_verified": verified.events,
                },
                now,
            )
    except BaseException:
        backup.discard(target)
        raise
    return BackupReport(
        path=str(target),
        head_seq=copied.head_seq,
        head_hash=copied.head_hash,
        store_sha256=store_sha,
        manifest_sha256=manifest_sha,
        bytes=size,
        seq=seq,
    )


def reapply_removals(unit: Unit) -> RemovalsReapplied:
    """Replay the workspace's erasure ledger: remove again every subject it names that this
    store still holds (one audited transaction each), destroy every key it names."""
    # Here, not at the top: subject_rights imports review, which imports back into it.
    from hilt.pipelines.store.ops.subject_rights import cases_of, remove_subject

    now = unit.clock()
    entries = read_ledger(unit.workspace.erasure_ledger_path)
    removed = {
        str(r[0]) for r in unit.con.execute("SELECT subject_ref FROM removed_subjects").fetchall()
    }
    subjects: list[str] = []
    seqs: list[int] = []
    for entry in entries:
        ref = entry.subject_ref
        if ref in removed:
            continue
        cases = cases_of(unit, ref)
        known = unit.con.execute(
            "SELECT count(*) FROM identity WHERE subject_ref = ?", [ref]
        ).fetchall()[0][0]
        if not cases and not known:
            continue  # came after the backup: nothing of theirs is here
        removal = Removal()
        try:
            with unit.transaction():
                seq, _ = remove_subject(
                    unit,
                    ref,
                    entry.reason,
                    now,
                    removal,
                    reapplied={"seq": entry.seq, "reason": entry.reason},
                )
        except BaseException:
            discard_new_files(removal)
            raise
        removed.add(ref)
        subjects.append(ref)
        seqs.append(seq)
    destroyed = unit.keys.store.destroy([e.subject_ref for e in entries]) if entries else 0
    finish_removals(unit)
    return RemovalsReapplied(
        subjects=subjects,
        seqs=seqs,
        ledger_entries=len(entries),
        keys_destroyed=destroyed,
    )
