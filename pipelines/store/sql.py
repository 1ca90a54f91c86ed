"""Small helpers for DuckDB queries.

DuckDB 2 keeps a result open until a fetch returns no rows, and refuses other work on the
connection meanwhile; ``fetchall`` always finishes the result, so the store reads through
these helpers only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


def of_actions(*actions: str) -> tuple[str, list[str]]:
    """A WHERE clause on audit_log picking events by action, and its parameters: by the
    canonical entry's prefix (its first key is the action), without parsing every entry;
    DuckDB skips the row groups whose entries cannot start with it."""
    clause = " OR ".join("entry LIKE ?" for _ in actions)
    return f"({clause})", [f'{{"action":"{a}",%' for a in actions]


def describe(error: duckdb.Error) -> str:
    """A one-line account of a DuckDB error that carries no data: the error's kind, plus the
    first line of its message for catalog, binder and parser errors (which name tables and
    columns). Other messages can quote stored values (a conversion error, a duplicate key),
    so they are left out."""
    import duckdb

    kind = type(error).__name__
    # These name only tables, columns and functions (never a value).
    if isinstance(error, (duckdb.CatalogException, duckdb.BinderException, duckdb.ParserException)):
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return f"{kind}: {first}" if first else kind
    return kind
