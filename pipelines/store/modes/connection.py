"""Opening the store's DuckDB file: the one place that says how (nothing downloaded).

Kept apart from the embedded mode (which imports the whole operations table) so that a
reader of the file alone, `hilt audit verify`, starts without it.
"""

from __future__ import annotations

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
