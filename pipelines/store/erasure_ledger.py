"""The erasure ledger: which subjects the store has forgotten, kept apart from the database.

A backup of the store (``backup.py``) is a copy of the DuckDB file as of one verified audit
head. A subject erased after that head (or removed at the end of their retention period) is
still in that copy: their sealed personal data, their identity row. Restoring the copy must
not bring them back. Two things, both kept apart from the backup, make sure of it:

- the subject key store is never part of a backup (it is restored from its own copy, which
  lacks the keys destroyed before that copy was made);
- this ledger, ``keys/erasures.jsonl``: one line per forgotten subject (``subject_ref``,
  reason, the seq of the event that removed them; pseudonymous, nothing personal), appended
  after each removal commits and before the keys are destroyed. Restoring replays it
  (``ops/backup.reapply_removals``): every subject it names that the restored file still
  holds is removed again, in an audited transaction, and every key it names is destroyed in
  the restored key store, however old that key store's copy is.

The ledger lives next to the key store and is backed up with it (and, for a deployment,
replicated off the host as it grows: it is small and holds no personal data).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hilt.pipelines.errors import StoreError


@dataclass(frozen=True)
class LedgerEntry:
    subject_ref: str
    reason: str
    #: The seq of the audit event that removed the subject, in the store that removed them.
    seq: int


def read_ledger(path: Path) -> list[LedgerEntry]:
    """Every entry, oldest first ([] when there is no ledger yet)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as e:
        raise StoreError(f"{path}: cannot read the erasure ledger ({type(e).__name__})") from e
    out: list[LedgerEntry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            out.append(LedgerEntry(str(d["subject_ref"]), str(d["reason"]), int(d["seq"])))
        except (ValueError, KeyError, TypeError):
            raise StoreError(f"{path}: line {number} of the erasure ledger is malformed") from None
    return out


def record_removed(path: Path, removed: Iterable[tuple[str, str, int]]) -> int:
    """Append the (subject_ref, reason, seq) not in the ledger yet, fsynced; how many."""
    known = {e.subject_ref for e in read_ledger(path)}
    lines = [
        json.dumps({"subject_ref": ref, "reason": reason, "seq": seq}, sort_keys=True) + "\n"
        for ref, reason, seq in removed
        if ref not in known
    ]
    if not lines:
        return 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, "".join(lines).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise StoreError(f"{path}: cannot append to the erasure ledger ({type(e).__name__})") from e
    return len(lines)
