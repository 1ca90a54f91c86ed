"""Small helpers for DuckDB queries.

DuckDB 2 keeps a result open until a fetch returns no rows, and refuses other work on the
connection meanwhile; ``fetchall`` always finishes the result, so the store reads through
these helpers only.
"""

from __future__ import annotations

from typing import Any

import duckdb


def one(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: list[Any] | dict[str, Any] | None = None,
) -> tuple[Any, ...] | None:
    """The first row of the query's result, or None; the result is always finished."""
    rows = con.execute(sql, params or []).fetchall()
    return tuple(rows[0]) if rows else None


def scalar(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: list[Any] | dict[str, Any] | None = None,
) -> Any:
    row = one(con, sql, params)
    return row[0] if row else None
