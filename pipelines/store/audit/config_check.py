"""The config versions against their audit events: the store acts on the version in force,
so a version's text, hash or state changed behind the store's back is a break.

Each version of hilt.toml is recorded by one event at its ``applied_seq`` (``workspace.init``
for version 1, else ``config.applied`` or ``config.proposed``) naming its version and
sha256; the row keeps the whole text, whose sha256 must be that. The version in force must
be the one the log last put in force (``workspace.init``, ``config.applied``,
``config.approved``). Events purged by the audit log's retention are not asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hilt.pipelines.store import sql
from hilt.pipelines.store.audit.chain import Break, kind_prefix, picks

if TYPE_CHECKING:
    import duckdb


#: The events that record a config version or put one in force.
KINDS = tuple(
    kind_prefix(a)
    for a in ("workspace.init", "config.applied", "config.proposed", "config.approved")
)
#: The table held to them, and the column of the seq of the event that wrote a row.
TABLES = {"config_versions": "applied_seq"}

_EVENTS = f"""
SELECT seq,
       json_extract_string(entry, '$.action') AS action,
       coalesce(try_cast(json_extract(entry, '$.payload.version') AS BIGINT), 1) AS version,
       coalesce(json_extract_string(entry, '$.payload.new_sha256'),
                json_extract_string(entry, '$.payload.config_sha256')) AS sha
FROM __events__
WHERE seq > $since
  AND {picks(KINDS)}
"""

#: Two answers from one reading of the events: the earliest config version that does not
#: match its event, and the event that put in force another version than the store's.
_CHECK_SQL = f"""
WITH ev AS ({_EVENTS}),
recorded AS (SELECT * FROM ev WHERE action <> 'config.approved'),
kept AS (SELECT * FROM config_versions
         WHERE applied_seq >= (SELECT coalesce(min(seq), 0) FROM audit_log)
           AND ($since = 0 OR applied_seq > $since)),
last AS (SELECT seq, version FROM ev WHERE action <> 'config.proposed' ORDER BY seq DESC LIMIT 1)
SELECT
  (SELECT min(seq) FROM (
    SELECT k.applied_seq AS seq FROM kept k LEFT JOIN recorded r ON r.seq = k.applied_seq
    WHERE r.seq IS NULL OR r.version <> k.version OR r.sha <> k.sha256
       OR sha256(k.text) <> k.sha256
    UNION ALL
    SELECT r.seq FROM recorded r LEFT JOIN config_versions v ON v.applied_seq = r.seq
    WHERE v.version IS NULL
  )),
  (SELECT last.seq FROM last
   WHERE (SELECT count(*) FROM config_versions WHERE state = 'in-force') <> 1
      OR last.version IS DISTINCT FROM
         (SELECT version FROM config_versions WHERE state = 'in-force'))
"""


def first_mismatch(
    con: duckdb.DuckDBPyConnection, since: int = 0, events: str = "audit_log"
) -> Break | None:
    """The earliest config version that no longer matches its event, or the event that put
    in force another version than the store's (a copy fetched through the API, without
    the table, is skipped). ``since``: the versions recorded after this seq (a signed
    checkpoint's) only, and the version in force only if an event after it set it.
    ``events``: ``after_checkpoint.kind_source(con, since)`` when the caller read it."""
    has_table = sql.scalar(
        con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'config_versions'"
    )
    if not has_table:
        return None
    row = sql.one(con, _CHECK_SQL.replace("__events__", events), {"since": since})
    mismatch, in_force = row if row is not None else (None, None)
    if mismatch is not None:
        return Break(
            int(mismatch), "record-mismatch", "a config version no longer matches its event"
        )
    if in_force is not None:
        return Break(
            int(in_force),
            "record-mismatch",
            "the config in force is not the version the log last put in force",
        )
    return None
