"""The sha256 of a file, read in chunks: how hilt identifies a snapshot, a template, an
executed notebook or an input file in its records.

Imports neither mlflow nor the store, so every part of hilt can use it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: Bytes read at a time.
CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """The sha256 of the file's bytes, as 64 lowercase hex digits."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()
