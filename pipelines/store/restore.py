"""`hilt store restore`: a new workspace from a backup and the files kept apart from it.

Three steps (see ``backup.py`` for what a backup holds and why):

1. ``stage_restore``: the backup's store and hilt.toml (their sha256 checked against the
   manifest) and the kept-apart files (the key store copied with SQLite's backup API, the
   checkpoints of seqs the backup holds) become the new workspace, all or nothing;
2. ``reapply_removals``, a store operation on the new workspace: the erasure ledger is
   replayed, so a subject erased after the backup is removed again, in the log, and their
   key destroyed, however old the key store's copy is;
3. ``verify``: the restored log verifies; its events up to the backup's head are the
   backup's, unchanged (the head's seq and hash are those of the manifest).
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from hilt.pipelines.store import Identity, Need, open_store_as
from hilt.pipelines.store.audit_records import VerifyReport
from hilt.pipelines.store.backup import Staged, stage_restore
from hilt.pipelines.store.ops.backup import RemovalsReapplied
from hilt.pipelines.workspace import Workspace


@dataclass(frozen=True)
class Restored:
    staged: Staged
    reapplied: RemovalsReapplied
    verified: VerifyReport


def restore(src: Path, new: Workspace, kept_apart: Path, who: Identity) -> Restored:
    """Restore the backup at ``src`` into the new workspace ``new`` with the keys, ledger
    and checkpoints under ``kept_apart``, acting as ``who`` (an administrator)."""
    staged = stage_restore(src, new, kept_apart)
    need = Need(frozenset({"admin"}), "restore a store")
    with closing(open_store_as(new, who, need=need)) as store:
        reapplied = store.reapply_removals()
        verified = store.verify()
    return Restored(staged=staged, reapplied=reapplied, verified=verified)
