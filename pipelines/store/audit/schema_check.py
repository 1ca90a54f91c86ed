"""The store file's tables against the ones hilt creates: a dropped, renamed or retyped table
or column is a break too, reported as kind ``schema``.

The expected schema is not listed by hand: ``schema.create_statements(settings)`` is run on
an in-memory DuckDB and its tables, views, columns and types are read back from
``information_schema``, so whatever the schema becomes, verify compares the file with it.
Only what is missing or changed counts; extra tables or columns prove nothing either way
(and constraints are not compared: a rebuilt table without its keys shows up as the
duplicate rows it lets in, which the chain check names).

Schema damage belongs to no event, so its break is at seq 0 and comes before any other.
"""

from __future__ import annotations

from functools import lru_cache

import duckdb

from hilt.pipelines.config import Settings
from hilt.pipelines.store import sql
from hilt.pipelines.store.audit.chain import Break
from hilt.pipelines.store.modes.connection import DUCKDB_CONFIG
from hilt.pipelines.store.schema import create_statements

KIND = "schema"

#: ``information_schema.columns`` is a view of ``duckdb_columns()`` (its catalog, schema and
#: ordinal position are the database, the schema and the column index): read directly, a
#: third of the cost.
_COLUMNS_SQL = """
SELECT table_name, column_name, data_type
FROM duckdb_columns()
WHERE database_name = current_database() AND schema_name = 'main'
ORDER BY table_name, column_index
"""

Columns = dict[str, dict[str, str]]


def live_columns(con: duckdb.DuckDBPyConnection) -> Columns:
    """{table or view: {column: type}} of the database behind ``con`` (schema main)."""
    out: Columns = {}
    for table, column, data_type in con.execute(_COLUMNS_SQL).fetchall():
        out.setdefault(str(table), {})[str(column)] = str(data_type)
    return out


def expected_columns(settings: Settings) -> Columns:
    """{table or view: {column: type}} of a store created for ``settings`` today (read
    only: the same mapping is handed out again for the same statements)."""
    return _created_by(tuple(create_statements(settings)))


@lru_cache(maxsize=8)
def _created_by(statements: tuple[str, ...]) -> Columns:
    """The columns the statements create (~40 ms: a service or a dashboard that verifies
    again reuses them)."""
    con = duckdb.connect(":memory:", config=DUCKDB_CONFIG)
    try:
        for statement in statements:
            con.execute(statement)
        return live_columns(con)
    finally:
        con.close()


def differences(expected: Columns, live: Columns) -> list[str]:
    """What ``live`` lacks or has changed, one phrase each, in the expected order."""
    found: list[str] = []
    for table, columns in expected.items():
        have = live.get(table)
        if have is None:
            found.append(f"table {table} is missing")
            continue
        for column, data_type in columns.items():
            if column not in have:
                found.append(f"table {table}: column {column} is missing")
            elif have[column] != data_type:
                found.append(f"table {table}: column {column} is {have[column]}, not {data_type}")
    return found


def first_break(con: duckdb.DuckDBPyConnection, settings: Settings) -> Break | None:
    """A ``schema`` break at seq 0 naming the first difference (and how many more), or None."""
    found = differences(expected_columns(settings), live_columns(con))
    if not found:
        return None
    more = f" (and {len(found) - 1} more schema difference(s))" if len(found) > 1 else ""
    return Break(0, KIND, f"{found[0]}{more}; the store's tables were altered")


def query_failed(what: str, error: duckdb.Error) -> Break:
    """The break for a verification query that DuckDB refused (a table or column it needs is
    gone or changed). Names what failed and DuckDB's kind of error; see ``sql.describe``."""
    return Break(0, KIND, f"{what} failed: {sql.describe(error)}")
