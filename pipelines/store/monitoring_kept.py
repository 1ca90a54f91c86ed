"""The newest monitoring runs' events, as the store service keeps them (issue 13).

The oversight page asks for the latest monitoring verdict at every start. Read from the log,
that is a scan of every audit row. The events are picked by their canonical entry's prefix
(``sql.of_actions``: DuckDB compares strings and skips the row groups whose entries cannot
start with it, rather than parsing every entry's JSON), and the service keeps the newest
``MAX_RUNS`` of them: once built, each read scans only the events after the newest it has
seen (``seq > through``, which DuckDB answers from the row groups' seq ranges). The audit log
is append-only, so that is all that can have changed; a log that is not the one it read
(a restore: the hash at ``through`` differs or is gone) is read again whole. Nothing is
updated by the operations themselves: a rolled-back one left no event to find.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from hilt.pipelines.store import sql

if TYPE_CHECKING:
    import duckdb

#: The store's verdict on a monitoring run (written by ``ops/monitoring.record_monitoring``).
RUN_ACTION = "monitoring.run"
#: The most runs one request may ask for, and so the most the service keeps.
MAX_RUNS = 1000

#: A ``monitoring.run`` event: seq, ts, run id (its object id), payload (JSON text).
RunRow = tuple[int, str, str, str]


def run_rows(con: duckdb.DuckDBPyConnection, limit: int, after_seq: int = 0) -> list[RunRow]:
    """The newest ``limit`` ``monitoring.run`` events after ``after_seq``, newest first."""
    where, params = sql.of_actions(RUN_ACTION)
    rows = con.execute(
        "SELECT seq, json_extract_string(entry, '$.ts'),"
        " json_extract_string(entry, '$.object_id'), json_extract(entry, '$.payload')"
        f" FROM audit_log WHERE seq > ? AND {where} ORDER BY seq DESC LIMIT ?",
        [after_seq, *params, limit],
    ).fetchall()
    return [(int(s), str(ts), str(r), str(p)) for s, ts, r, p in rows]


class KeptRuns:
    """The newest ``MAX_RUNS`` monitoring run events, brought up to date at each read (safe
    from several reader threads: one catches up at a time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Every event up to this seq has been looked at (0: nothing yet), and its hash.
        self.through = 0
        self._through_hash: str | None = None
        self._rows: list[RunRow] = []

    def newest(self, con: duckdb.DuckDBPyConnection, limit: int) -> list[RunRow]:
        """The newest ``limit`` runs as committed when this read began, newest first."""
        with self._lock:
            self._catch_up(con)
            return self._rows[:limit]

    def _catch_up(self, con: duckdb.DuckDBPyConnection) -> None:
        if (
            self.through
            and sql.scalar(con, "SELECT hash FROM audit_log WHERE seq = ?", [self.through])
            != self._through_hash
        ):
            # Not the log that was read (a restore): read this one whole.
            self.through, self._through_hash, self._rows = 0, None, []
        # The head first: an event committed after it is after ``through`` next time; one
        # found beyond it now is kept and skipped next time (seq > through excludes none).
        head = sql.one(
            con,
            "SELECT seq, hash FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)",
        )
        if head is None:
            return
        new = run_rows(con, MAX_RUNS, self.through)
        new = [r for r in new if r[0] <= int(head[0])]
        self._rows = (new + self._rows)[:MAX_RUNS]
        self.through, self._through_hash = int(head[0]), str(head[1])
