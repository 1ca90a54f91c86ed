"""Verifying a store that a service owns, without trusting the service's own verdict.

The auditor fetches the audit events and the decisions through the API, rebuilds the chain
in an in-memory DuckDB and runs the same checks as on the file itself, against the auditor's
own pinned public key and checkpoint file. Each event's entry is re-serialised canonically;
since the store wrote it that way, the bytes and therefore the hashes are the same.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from hilt.pipelines.store.audit.chain import AuditEntry
from hilt.pipelines.store.audit.verify import verify_records
from hilt.pipelines.store.operations import Store
from hilt.pipelines.store.records import VerifyReport

PAGE = 100_000


def fetch_chain(store: Store) -> pl.DataFrame:
    rows: list[dict[str, object]] = []
    after = 0
    while True:
        page = store.audit_events(after_seq=after, limit=PAGE)
        for e in page:
            entry = AuditEntry(**e.model_dump(exclude={"prev_hash", "hash"})).canonical()
            rows.append({"seq": e.seq, "entry": entry, "prev_hash": e.prev_hash, "hash": e.hash})
        if len(page) < PAGE:
            break
        after = page[-1].seq
    return pl.DataFrame(
        rows,
        schema={"seq": pl.Int64, "entry": pl.String, "prev_hash": pl.String, "hash": pl.String},
    )


def fetch_decisions(store: Store) -> pl.DataFrame:
    rows: list[dict[str, object]] = []
    after = 0
    while True:
        page = store.decisions(after_seq=after, limit=PAGE)
        rows.extend(d.model_dump() for d in page)
        if len(page) < PAGE:
            break
        after = page[-1].seq
    schema = {
        "decision_id": pl.String,
        "request_id": pl.String,
        "case_id": pl.String,
        "prediction_id": pl.Int64,
        "model_version": pl.String,
        "reviewer": pl.String,
        "reviewer_role": pl.String,
        "action": pl.String,
        "predicted_label": pl.String,
        "final_label": pl.String,
        "reason_code": pl.String,
        "comment": pl.String,
        "time_on_item_ms": pl.Int64,
        "model_shown": pl.Boolean,
        "undo_of": pl.String,
        "created_at": pl.String,
        "seq": pl.Int64,
        "comment_sealed": pl.String,
        "explanation_sha256": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


def verify_remote(store: Store, public_key: str | None, checkpoints_path: Path) -> VerifyReport:
    """Verify the chain and decisions fetched from ``store`` (an auditor's or lead's view)."""
    chain = fetch_chain(store)
    decisions = fetch_decisions(store)
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    try:
        con.register("chain_frame", chain)
        con.execute("CREATE TABLE audit_log AS SELECT * FROM chain_frame")
        con.register("decisions_frame", decisions)
        con.execute("CREATE TABLE decisions AS SELECT * FROM decisions_frame")
        return verify_records(con, public_key, checkpoints_path, batches=False)
    finally:
        con.close()
