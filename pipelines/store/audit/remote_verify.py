"""Verifying a store that a service owns, without trusting the service's own verdict.

The auditor fetches the audit events and the decisions through the API, rebuilds the chain
in an in-memory DuckDB and runs the same checks as on the file itself, against the auditor's
own pinned public key and checkpoint file. Each event's entry is re-serialised canonically;
since the store wrote it that way, the bytes and therefore the hashes are the same.

From a checkpoint (``start_from``), the checkpoint is chosen in the auditor's own file with
the auditor's key first, and only the events from its seq on (its own row, whose hash must
be the signed one, and what came after) and the decisions after it are fetched.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from hilt.pipelines.store.audit.chain import AuditEntry, Break
from hilt.pipelines.store.audit.checkpoints import (
    parse_public_key,
    read_checkpoints,
    starting_point,
)
from hilt.pipelines.store.audit.verify import verify_records
from hilt.pipelines.store.audit_records import VerifyReport
from hilt.pipelines.store.operations import Store

PAGE = 100_000


def fetch_chain(store: Store, after: int = 0) -> pl.DataFrame:
    """The events after seq ``after``."""
    rows: list[dict[str, object]] = []
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


def fetch_decisions(store: Store, after: int = 0) -> pl.DataFrame:
    """The decisions of events after seq ``after``."""
    rows: list[dict[str, object]] = []
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


def verify_remote(
    store: Store,
    public_key: str | None,
    checkpoints_path: Path,
    start_from: str | None = None,
) -> VerifyReport:
    """Verify the chain and decisions fetched from ``store`` (an auditor's or lead's view);
    ``start_from``: from a signed checkpoint of ``checkpoints_path`` (``latest`` or its
    seq), fetching only what came after it."""
    since = 0
    if start_from is not None:
        checkpoints, malformed = read_checkpoints(checkpoints_path)
        pinned = parse_public_key(public_key) if public_key else None
        chosen = None if malformed else starting_point(checkpoints, pinned, start_from)
        if chosen is not None and not isinstance(chosen, Break):
            since = chosen.seq
    # From a checkpoint: its own row too (its stored hash is compared with the signed one).
    chain = fetch_chain(store, max(since - 1, 0))
    decisions = fetch_decisions(store, since)
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    try:
        con.register("chain_frame", chain)
        con.execute("CREATE TABLE audit_log AS SELECT * FROM chain_frame")
        con.register("decisions_frame", decisions)
        con.execute("CREATE TABLE decisions AS SELECT * FROM decisions_frame")
        return verify_records(
            con, public_key, checkpoints_path, batches=False, start_from=start_from
        )
    finally:
        con.close()
