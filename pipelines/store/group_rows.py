"""The review rows of a group commit, held back and written together just before its COMMIT.

A group commit (``modes/service.py``) runs many leases and decisions in one transaction.
Each wrote its own ``decisions`` or ``leases`` row at once, one statement each (a DuckDB
statement costs the service about a millisecond, whatever its size). Here the group's rows
are held, like its audit rows (``HeadCache.defer``), and written with one statement per
table and kind (``flush``): the deletes first, then one multi-row INSERT per table.

What keeps this exact: nothing in the transaction reads a held table before its rows are
written. The group's operations run on ``HeldConnection``, which writes the held rows
before any statement that names a held table (and before any other use of the connection
but fetching a result); the one read written to answer without them
(``case_facts.read_case_facts``) asks ``holds`` first and writes them when any held row is
about its case or its request id. A held delete only ever removes rows written before the group
(one that would match a held insert writes the held rows first), so running the deletes
before the inserts changes nothing. Should writing fail (a request id used twice in the
group, say), the group fails and is rolled back, and each request is retried alone.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import duckdb

#: The tables whose rows a group holds back.
HELD_TABLES = ("decisions", "leases")
_NAMES = re.compile(r"\b(?:" + "|".join(HELD_TABLES) + r")\b", re.IGNORECASE)
#: What may be used on the connection without writing the held rows: reading a result.
_RESULT_ONLY = frozenset({"fetchall", "fetchone", "fetchmany", "description", "rowcount"})


class GroupRows:
    """One group's held rows (see the module). Not thread-safe: use it under the lock."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self._inserts: dict[str, list[dict[str, Any]]] = {t: [] for t in HELD_TABLES}
        #: table → the conditions of each held delete (a row goes if any column matches).
        self._deletes: dict[str, list[dict[str, Any]]] = {t: [] for t in HELD_TABLES}
        #: The error writing the held rows raised (the group must then fail as a whole).
        self.failed: BaseException | None = None

    @property
    def pending(self) -> bool:
        return any(self._inserts.values()) or any(self._deletes.values())

    def insert(self, table: str, row: dict[str, Any]) -> None:
        self._inserts[table].append(row)

    def delete(self, table: str, where: dict[str, Any]) -> None:
        """Delete the rows of ``table`` where any of ``where``'s columns has its value."""
        if any(self.holds(table, column, value) for column, value in where.items()):
            self.flush()  # it would delete a held row: keep the order as written
        self._deletes[table].append(where)

    def holds(self, table: str, column: str, value: Any) -> bool:
        """Whether a held insert into ``table`` has ``value`` in ``column``."""
        return value is not None and any(r.get(column) == value for r in self._inserts[table])

    def holds_any(self, table: str) -> bool:
        return bool(self._inserts[table] or self._deletes[table])

    def mentioned_in(self, query: str) -> bool:
        """Whether ``query`` names a table with held rows."""
        return any(self.holds_any(t) for t in {m.lower() for m in _NAMES.findall(query)})

    def flush(self) -> None:
        """Write the held rows: per table, one DELETE, then one INSERT (see the module)."""
        if self.failed is not None:
            raise self.failed
        deletes, inserts = self._deletes, self._inserts
        self._deletes = {t: [] for t in HELD_TABLES}
        self._inserts = {t: [] for t in HELD_TABLES}
        try:
            for table, wheres in deletes.items():
                if wheres:
                    self._delete(table, wheres)
            for table, rows in inserts.items():
                if rows:
                    self._insert(table, rows)
        except BaseException as e:
            self.failed = e
            raise

    def _delete(self, table: str, wheres: list[dict[str, Any]]) -> None:
        by_column: dict[str, list[Any]] = {}
        for where in wheres:
            for column, value in where.items():
                by_column.setdefault(column, []).append(value)
        clause = " OR ".join(
            f"{column} IN ({', '.join(['?'] * len(values))})"
            for column, values in by_column.items()
        )
        self.con.execute(
            f"DELETE FROM {table} WHERE {clause}",
            [v for values in by_column.values() for v in values],
        )

    def _insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        columns = list(rows[0])
        one = "(" + ", ".join(["?"] * len(columns)) + ")"
        self.con.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([one] * len(rows)),
            [row[c] for row in rows for c in columns],
        )


class HeldConnection:
    """The group's connection as its operations use it: before a statement that names a
    table with held rows, or any other use but reading a result, the held rows are
    written, so that every read sees the transaction as it stands."""

    def __init__(self, con: duckdb.DuckDBPyConnection, rows: GroupRows) -> None:
        self._con = con
        self.rows = rows

    def execute(self, query: str, parameters: Any = None) -> duckdb.DuckDBPyConnection:
        rows = self.rows
        if rows.pending and rows.mentioned_in(query):
            rows.flush()
        if parameters is None:
            return self._con.execute(query)
        return self._con.execute(query, parameters)

    def __getattr__(self, name: str) -> Any:
        if name not in _RESULT_ONLY and self.rows.pending:
            self.rows.flush()
        return getattr(self._con, name)


def held_connection(con: duckdb.DuckDBPyConnection, rows: GroupRows) -> duckdb.DuckDBPyConnection:
    """``con`` as a group's operations use it (``HeldConnection``), typed as the connection
    it stands for."""
    return cast("duckdb.DuckDBPyConnection", HeldConnection(con, rows))
