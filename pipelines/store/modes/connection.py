"""Opening the store's DuckDB file: the one place that says how (nothing downloaded).

Kept apart from the embedded mode (which imports the whole operations table) so that a
reader of the file alone, `hilt audit verify`, starts without it.
"""

from __future__ import annotations

import os
import struct

import duckdb

from hilt.pipelines.errors import StoreError
from hilt.pipelines.workspace import Workspace

#: No extension is ever downloaded at run time.
DUCKDB_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


def connect(workspace: Workspace, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(workspace.db_path), read_only=read_only, config=DUCKDB_CONFIG)
    except duckdb.IOException as e:
        raise StoreError(f"cannot open the store at {workspace.db_path}: {e}") from e


#: A DuckDB file starts with its main header and two database headers (4 KiB each); a
#: checkpoint, which every write that reaches the file goes through, writes the older
#: database header anew with the next checkpoint iteration.
_HEADERS = 3 * 4096


def committed_state(workspace: Workspace) -> bytes | None:
    """What identifies the content of the store's file as last written: its three headers,
    inode, size and modification time. Equal states, read under the store's lock, mean
    nothing was written in between. None when the file cannot tell: a write-ahead log holds
    changes not yet checkpointed into it, or it cannot be read."""
    path = workspace.db_path
    try:
        if os.stat(f"{path}.wal").st_size > 0:
            return None
    except FileNotFoundError:
        pass
    except OSError:
        return None
    try:
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            headers = f.read(_HEADERS)
    except OSError:
        return None
    if len(headers) < _HEADERS:
        return None
    return struct.pack("<QQqq", st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) + headers
