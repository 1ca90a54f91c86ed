"""Gold sets against their audit events: an added, changed or deleted gold row is a break.

A gold set is audited as one ``gold.added`` event carrying the sha256 of its rows (case id
and the model version of its predictions; sorted by case id, tab-separated, one line each);
verify recomputes it from ``gold_cases``. The known answers themselves are the cases' seed
labels, kept only in ``seed_labels``: the batch digest of their ingest covers them (an
edited answer breaks there), and an erasure takes them with the case.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hilt.pipelines.store import sql
from hilt.pipelines.store.audit.chain import Break, kind_prefix, picks

if TYPE_CHECKING:
    import duckdb

#: The event that adds a gold set, and the table held to it (with the column of its seq).
KINDS = (kind_prefix("gold.added"),)
TABLES = {"gold_cases": "seq"}


def digest(rows: Iterable[tuple[str, str]]) -> str:
    """sha256 of (case_id, model_version) rows, as ``_MISMATCH_SQL`` computes it in DuckDB."""
    text = "\n".join("\t".join(r) for r in sorted(rows))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_MISMATCH_SQL = f"""
WITH ev AS (
    SELECT seq, json_extract_string(entry, '$.payload.digest') AS digest
    FROM __events__ WHERE seq > $since AND {picks(KINDS)}
), actual AS (
    SELECT seq, sha256(string_agg(case_id || chr(9) || model_version, chr(10) ORDER BY case_id))
        AS digest
    FROM gold_cases WHERE $since = 0 OR seq > $since GROUP BY seq
)
SELECT min(seq) FROM (
    SELECT ev.seq FROM ev LEFT JOIN actual a USING (seq) WHERE a.digest IS DISTINCT FROM ev.digest
    UNION ALL
    SELECT a.seq FROM actual a LEFT JOIN ev USING (seq) WHERE ev.seq IS NULL
)
"""


def first_mismatch(
    con: duckdb.DuckDBPyConnection, since: int = 0, events: str = "audit_log"
) -> Break | None:
    """The earliest gold set that no longer matches its event (a store without the table, a
    copy fetched through the API, is skipped); of the sets added after seq ``since``.
    ``events``: ``after_checkpoint.kind_source(con, since)`` when the caller read it."""
    has_table = sql.scalar(
        con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'gold_cases'"
    )
    if not has_table:
        return None
    seq = sql.scalar(con, _MISMATCH_SQL.replace("__events__", events), {"since": since})
    if seq is None:
        return None
    return Break(int(seq), "record-mismatch", "a gold set's rows no longer match its digest")
