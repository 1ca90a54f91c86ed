#!/usr/bin/env python
"""Verifying the audit log: how long `hilt audit verify` takes on a million events.

What it measures
----------------
``verify_store`` (hilt.pipelines.store.audit.verify; what `hilt audit verify` runs) on a workspace
whose audit log holds 1,000,000 chained events plus a signed checkpoint at the head: the
hash chain (every row's sha256 and link to its predecessor), every signed checkpoint
against the pinned public key, and the records against their events (every decision row
equals its ``decision.record`` event, every batch holds the rows its event recorded, and
each batch's digest is recomputed from its stored rows). It is timed two ways:

- in process: ``connect`` + ``verify_store`` on the workspace (repeated ``--repeat``
  times; the first run reads a cold DuckDB buffer, the OS page cache is warm);
- end to end: the real CLI, ``python -m hilt.pipelines.cli audit verify --workspace DIR``
  as a subprocess, wall time including interpreter start-up and imports (also repeated);
  the start-up alone is measured with ``audit verify --help`` for comparison.

Then ``--after`` (10,000) more decision events and rows are appended after the signed
checkpoint, the same way, and verify from that checkpoint is timed (``verify_store(...,
start_from="latest")`` in process, and `hilt audit verify --from latest`): the stored hash
at the checkpoint's seq against the signed one, then everything after it.

Targets (issue 13): the full walk of 1,000,000 events <= 1.5 s, CLI end to end (fresh
process); from the checkpoint, the 10,000 new events <= 50 ms (the verification itself,
in process; the CLI line adds the interpreter's start-up).

Setup (untimed, but fast)
-------------------------
A workspace from data/hilt.toml; the 1,000 demo cases and one prediction each go in through
the store (real ``cases.ingest`` / ``predictions.ingest`` events). Recording a million
decisions one by one through ``record_decision`` would take an hour, so the benchmark
builds the same rows the store would write, in bulk: realistic ``decision.record`` events
(reviewers alice and bob, 90 % accept / 10 % override with a configured reason code, the
case's prediction, a time on item, a fresh decision id and request id), each entry the
canonical JSON of ``AuditEntry`` (vectorised with polars; a sample of entries is checked to
be byte-identical to ``AuditEntry.canonical()``), chained with ``chain_hash`` from
``GENESIS``/the current head in a plain Python loop, and inserted with one
``INSERT ... SELECT`` from the frame into ``audit_log`` - together with the MATCHING rows of
the ``decisions`` table, so the reconciliation of records against events does its full work
on a million decisions (nothing is skipped). Then ``EmbeddedStore.checkpoint()`` as an admin
signs the head. A verify that does not report OK is printed as such (and exit code 1).

Nothing about speed is asserted; the script prints whether the target was met. The last
line of output is one JSON object with every number.

Usage: benchmarks/verify.py [--quick] [--events N] [--after N] [--repeat N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from hilt.pipelines.store import DecisionRequest, Identity, open_store_as, sql
from hilt.pipelines.store.audit import batch_digest, reconcile, schema_check
from hilt.pipelines.store.audit import chain as audit_chain
from hilt.pipelines.store.audit.chain import GENESIS_HASH, AuditEntry, chain_hash, utc_timestamp
from hilt.pipelines.store.audit.verify import verify_store
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.store.modes.embedded import connect
from hilt.pipelines.store.registry_records import ModelEvaluation
from hilt.pipelines.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import CONFIG, CSV, begin, cleanup, finish  # noqa: E402

#: Issue 13's targets: the full walk, CLI end to end; from a checkpoint, the verification of
#: ``--after`` (10,000) events appended after it on the 1M-event log.
TARGET_S = 1.5
FROM_TARGET_S = 0.05
#: The stand-in model the predictions are added under (the store takes them only from its
#: champion, with the sha256 it was registered with): its sha256 is that of its name.
MODEL_VERSION = "bench-model/v1"
STAND_IN_METRICS: dict[str, float | None] = {"auc": 0.8, "accuracy": 0.75, "brier": 0.18}
REVIEWERS = ("alice", "bob")
OVERRIDE_SHARE = 0.1
TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"  # chrono spelling of audit_chain.utc_timestamp


def synthetic_cases(n: int) -> pl.DataFrame:
    """The demo cases, then copies of them with new ids (SYN-APP-...), n in all."""
    demo = pl.read_csv(CSV, infer_schema=False)
    if n <= demo.height:
        return demo.head(n)
    extra = n - demo.height
    copies = pl.concat([demo] * (extra // demo.height + 1)).head(extra)
    ids = pl.format("SYN-APP-{}", pl.int_range(1, extra + 1).cast(pl.String).str.zfill(7))
    return pl.concat([demo, copies.with_columns(ids.alias("application_id"))])


def predictions_for(case_ids: pl.Series, seed: int) -> pl.DataFrame:
    """One stand-in prediction per case (the model arrives with the retraining issue)."""
    n = case_ids.len()
    scores = np.random.default_rng(seed).random(n)
    return pl.DataFrame(
        {
            "case_id": case_ids,
            "score": scores,
            "label": np.where(scores >= 0.5, "1", "0"),
            "explanation": ['{"duration": -0.25, "credit_amount": 0.1}'] * n,
        }
    )


def _q(col: str) -> pl.Expr:
    """A text column as a JSON string literal (values here need no escaping: checked)."""
    return pl.concat_str([pl.lit('"'), pl.col(col), pl.lit('"')])


def _json_value(col: str, dtype: pl.DataType) -> pl.Expr:
    """Column → its canonical JSON text (null → null)."""
    if dtype == pl.String:
        text = _q(col)
    elif dtype == pl.Boolean:
        text = pl.when(pl.col(col)).then(pl.lit("true")).otherwise(pl.lit("false"))
    elif dtype.is_integer():
        text = pl.col(col).cast(pl.String)
    else:
        raise RuntimeError(f"no JSON encoding for column {col!r} of type {dtype}")
    return pl.when(pl.col(col).is_null()).then(pl.lit("null")).otherwise(text)


def decision_frame(
    n: int,
    first_seq: int,
    start_us: int,
    preds: pl.DataFrame,
    codes: list[str],
    seed: int,
    tag: str = "bench-req",
) -> pl.DataFrame:
    """n decisions as the store would write them (one per case while cases last)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(preds.height)
    chosen = preds[order[np.arange(n) % preds.height]]
    override = rng.random(n) < OVERRIDE_SHARE
    raw_ids = os.urandom(16 * n).hex()
    # 10 ms apart, in microseconds since the epoch
    moments = pl.Series("created_at", start_us + 10_000 * np.arange(n, dtype=np.int64))
    frame = pl.DataFrame(
        {
            "decision_id": [raw_ids[32 * k : 32 * k + 32] for k in range(n)],
            "request_id": [f"{tag}-{k:07d}" for k in range(1, n + 1)],
            "case_id": chosen["case_id"],
            "prediction_id": chosen["prediction_id"],
            "model_version": chosen["model_version"],
            "reviewer": np.array(REVIEWERS)[rng.integers(0, len(REVIEWERS), n)],
            "reviewer_role": ["reviewer"] * n,
            "action": np.where(override, "override", "accept"),
            "predicted_label": chosen["label"],
            "reason_code": pl.Series(
                "reason_code",
                np.array(codes)[rng.integers(0, len(codes), n)],
                dtype=pl.String,
            ).zip_with(pl.Series(override), pl.Series([None] * n, dtype=pl.String)),
            "comment_sealed": pl.Series("comment_sealed", [None] * n, dtype=pl.String),
            "time_on_item_ms": rng.integers(3_000, 180_000, n),
            "model_shown": [True] * n,
            "created_at": moments.cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            "seq": np.arange(first_seq, first_seq + n, dtype=np.int64),
        }
    )
    return frame.with_columns(
        pl.when(pl.col("action") == "override")
        .then(pl.when(pl.col("predicted_label") == "1").then(pl.lit("0")).otherwise(pl.lit("1")))
        .otherwise(pl.col("predicted_label"))
        .alias("final_label")
    )


#: Payload fields these bulk decisions leave empty (no comment, no explanation shown).
NULL_PAYLOAD = frozenset({"comment_sealed", "explanation_sha256", "explanation_context"})


def entry_expr(template: dict[str, Any], schema: pl.Schema) -> pl.Expr:
    """Canonical JSON of the entry, column-wise, with the keys of the store's own event.

    ``template`` is a real ``decision.record`` entry written by ``record_decision``; its
    keys (sorted, as canonical_json sorts them) decide the layout, so a field the store
    adds to its events shows up here, or stops the benchmark with a clear message.
    """
    top = {
        "action": pl.lit('"decision.record"'),
        "actor": _q("reviewer"),
        "object_id": _q("case_id"),
        "object_type": pl.lit('"case"'),
        "role": _q("reviewer_role"),
        "seq": pl.col("seq").cast(pl.String),
        "ts": pl.concat_str(
            [pl.lit('"'), pl.col("created_at").dt.strftime(TS_FORMAT), pl.lit('"')]
        ),
    }
    parts: list[pl.Expr] = []
    for i, key in enumerate(sorted(template)):
        parts.append(pl.lit(("{" if i == 0 else ",") + json.dumps(key) + ":"))
        if key == "payload":
            for j, pkey in enumerate(sorted(template["payload"])):
                parts.append(pl.lit(("{" if j == 0 else ",") + json.dumps(pkey) + ":"))
                if pkey in NULL_PAYLOAD:
                    parts.append(pl.lit("null"))  # no comments or explanation hashes here
                elif pkey in schema:
                    parts.append(_json_value(pkey, schema[pkey]))
                else:
                    raise RuntimeError(
                        f"decision events carry payload.{pkey}, unknown to benchmarks/verify.py"
                    )
            parts.append(pl.lit("}"))
        elif key in top:
            parts.append(top[key])
        else:
            raise RuntimeError(f"decision events carry {key!r}, unknown to benchmarks/verify.py")
    parts.append(pl.lit("}"))
    return pl.concat_str(parts)


def reference_entry(row: dict[str, Any], payload_keys: list[str]) -> str:
    """The entry exactly as StoreCore.record_decision writes it (AuditEntry.canonical)."""
    return AuditEntry(
        seq=int(row["seq"]),
        ts=utc_timestamp(row["created_at"]),
        actor=row["reviewer"],
        role=row["reviewer_role"],
        action="decision.record",
        object_type="case",
        object_id=row["case_id"],
        payload={k: None if k in NULL_PAYLOAD else row[k] for k in payload_keys},
    ).canonical()


def approve_stand_in(ws: Workspace) -> str:
    """Register ``MODEL_VERSION`` as the operator, its evaluation made up to pass the gate on
    a snapshot the store makes, and have the lead lena approve it. Returns its sha256."""
    op = open_store_as(ws, Identity(operator=True))
    sha = hashlib.sha256(MODEL_VERSION.encode()).hexdigest()
    evaluation = ModelEvaluation(
        snapshot_sha256=op.snapshot().sha256,
        metrics=STAND_IN_METRICS,
        gaps={"sex": 0.0, "age": 0.0},
    )
    op.register_model(MODEL_VERSION, sha, "bench-run", evaluation)
    open_store_as(ws, Identity(name="lena")).promote_model(MODEL_VERSION)
    return sha


def build_workspace(ws: Workspace, n: int, n_cases: int, seed: int) -> dict[str, float]:
    """Cases and one real decision through the store, n decision events + rows in bulk,
    then a signed checkpoint."""
    timings: dict[str, float] = {}
    settings = ws.settings()
    op = open_store_as(ws, Identity(operator=True))
    t = time.perf_counter()
    cases = synthetic_cases(n_cases)
    op.ingest_cases(cases)
    ingest_s = time.perf_counter() - t
    sha = approve_stand_in(ws)
    t = time.perf_counter()
    op.add_predictions(MODEL_VERSION, predictions_for(cases["application_id"], seed), sha)
    timings["cases_s"] = ingest_s + time.perf_counter() - t

    # One real decision through the store (on the case its queue leases first): its event is
    # the template of the bulk ones.
    reviewer = open_store_as(ws, Identity(name=REVIEWERS[0]))
    leased = reviewer.next_case()
    assert leased is not None, "the review queue is empty"
    probe_case = leased.case.case_id
    probe = reviewer.record_decision(
        DecisionRequest(
            case_id=probe_case, action="accept", request_id="bench-probe", time_on_item_ms=9_000
        )
    )
    reviewer.close()

    con = connect(ws)
    try:
        rows = con.execute("SELECT entry FROM audit_log WHERE seq = ?", [probe.seq]).fetchall()
        template: dict[str, Any] = json.loads(rows[0][0])
        table_columns = [str(r[0]) for r in con.execute("DESCRIBE decisions").fetchall()]
        head = con.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchall()
        head_seq, head_hash = (int(head[0][0]), str(head[0][1])) if head else (0, GENESIS_HASH)
        preds = pl.DataFrame(
            con.execute(
                "SELECT prediction_id, case_id, model_version, label FROM predictions"
                " WHERE case_id <> ? ORDER BY prediction_id",
                [probe_case],
            ).fetchall(),
            schema=["prediction_id", "case_id", "model_version", "label"],
            orient="row",
        )

        bulk_decisions(
            con, n, head_seq, head_hash, preds, template, table_columns, settings, seed, timings
        )
    finally:
        con.close()
    cp = op.checkpoint()
    timings["checkpoint_seq"] = cp.seq
    return timings


def bulk_decisions(
    con: Any,
    n: int,
    head_seq: int,
    head_hash: str,
    preds: pl.DataFrame,
    template: dict[str, Any],
    table_columns: list[str],
    settings: Any,
    seed: int,
    timings: dict[str, float],
    tag: str = "bench-req",
) -> None:
    """n decision events chained after (head_seq, head_hash), with their decisions rows,
    inserted in one transaction (see the module's docstring)."""
    t = time.perf_counter()
    start = int(datetime.now(UTC).timestamp() * 1_000_000) + 1_000_000
    frame = decision_frame(
        n, head_seq + 1, start, preds, list(settings.review.reason_codes), seed, tag
    )
    payload_keys = sorted(template["payload"])
    missing = [
        k for k in payload_keys if k not in frame.columns and k in table_columns
    ]  # e.g. undo_of: null for these decisions
    frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(k) for k in missing)
    frame = frame.with_columns(entry_expr(template, frame.schema).alias("entry"))
    timings["build_entries_s"] = time.perf_counter() - t
    unsafe = frame.select(
        pl.any_horizontal(
            pl.col(c).str.contains(r'["\\\x00-\x1f]').any()
            for c in ("case_id", "decision_id", "request_id", "model_version", "reviewer")
        )
    ).item()
    if unsafe:
        raise RuntimeError("a value would need JSON escaping; the fast path does not do that")
    sample = sorted({0, n - 1, *range(0, n, max(1, n // 200))})
    for row in frame[sample].to_dicts():
        if row["entry"] != reference_entry(row, payload_keys):
            raise RuntimeError(f"entry at seq {row['seq']} differs from AuditEntry.canonical")

    t = time.perf_counter()
    entries: list[str] = frame["entry"].to_list()
    prevs: list[str] = []
    hashes: list[str] = []
    prev = head_hash
    for entry in entries:
        prevs.append(prev)
        prev = chain_hash(prev, entry)
        hashes.append(prev)
    timings["chain_s"] = time.perf_counter() - t

    t = time.perf_counter()
    audit = pl.DataFrame(
        {"seq": frame["seq"], "entry": entries, "prev_hash": prevs, "hash": hashes}
    )
    del entries, prevs, hashes
    decisions = frame.select(c for c in frame.columns if c in table_columns)
    con.register("bench_audit", audit)
    con.register("bench_decisions", decisions)
    con.execute("BEGIN TRANSACTION")
    con.execute("INSERT INTO audit_log SELECT seq, entry, prev_hash, hash FROM bench_audit")
    con.execute("INSERT INTO decisions BY NAME SELECT * FROM bench_decisions")
    con.execute("COMMIT")
    con.unregister("bench_audit")
    con.unregister("bench_decisions")
    con.execute("CHECKPOINT")
    timings["insert_s"] = time.perf_counter() - t


def append_after_checkpoint(ws: Workspace, n: int, seed: int) -> int:
    """n more decision events (and rows) after the head, past the signed checkpoint, as in
    ``build_workspace``: what a verify from the checkpoint reads. Returns the new head seq."""
    con = connect(ws)
    try:
        rows = con.execute(
            "SELECT entry FROM audit_log"
            """ WHERE entry LIKE '{"action":"decision.record",%' ORDER BY seq LIMIT 1"""
        ).fetchall()
        template: dict[str, Any] = json.loads(rows[0][0])
        table_columns = [str(r[0]) for r in con.execute("DESCRIBE decisions").fetchall()]
        head = con.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchall()
        head_seq, head_hash = int(head[0][0]), str(head[0][1])
        preds = pl.DataFrame(
            con.execute(
                "SELECT prediction_id, case_id, model_version, label FROM predictions"
                " ORDER BY prediction_id"
            ).fetchall(),
            schema=["prediction_id", "case_id", "model_version", "label"],
            orient="row",
        )
        bulk_decisions(
            con,
            n,
            head_seq,
            head_hash,
            preds,
            template,
            table_columns,
            ws.settings(),
            seed + 1,
            {},
            tag="bench-after",
        )
        return head_seq + n
    finally:
        con.close()


def profile_verify(ws: Workspace) -> dict[str, float]:
    """Each check of verify_store on its own, one after another (verify_store runs them at
    the same time on separate cursors, which cProfile cannot follow): where the time goes."""
    settings = ws.settings()
    con = connect(ws)
    parts: dict[str, Callable[[], object]] = {
        "hash of every entry (hashlib, one thread)": lambda: audit_chain.first_bad_hash(con),
        "seq of every entry, decisions reconciled (one scan)": lambda: sql.one(
            con,
            reconcile.CONTENT_AND_DECISIONS_SQL,
            {"decisions_purged_through": reconcile.decisions_purged_through(con), "since": 0},
        ),
        "chain order (gaps, duplicates, links)": lambda: audit_chain.check_order(con),
        "batch row counts": lambda: reconcile.first_batch_mismatch(con),
        "batch digests (recomputed)": lambda: batch_digest.first_mismatch(con, settings),
        "schema": lambda: schema_check.first_break(con, settings),
    }
    out: dict[str, float] = {}
    try:
        print("  each check alone, one after another (s):")
        for name, run in parts.items():
            t = time.perf_counter()
            run()
            out[name] = round(time.perf_counter() - t, 3)
            print(f"    {out[name]:7.3f}  {name}")
    finally:
        con.close()
    return out


#: CPU seconds (user + system) of every CLI run so far, with its worker processes: on a
#: shared machine the wall time says more about the neighbours than about verify.
CLI_CPU_S: list[float] = []


def run_cli(args: list[str], timeout_s: float) -> tuple[float, int, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "hilt.pipelines.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CLI_CPU_S.append(
        after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
    )
    return wall, proc.returncode, (proc.stdout + proc.stderr).strip()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="100,000 events (smoke test)")
    p.add_argument("--events", type=int, default=None, help="decision events to generate")
    p.add_argument(
        "--cases",
        type=int,
        default=None,
        help="cases to ingest (default: one per decision; fewer: decisions cycle over them)",
    )
    p.add_argument("--after", type=int, default=10_000, help="events appended after the checkpoint")
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each kind")
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument(
        "--profile", action="store_true", help="also time each check of verify_store alone"
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    args = p.parse_args(argv)
    if args.events is None:
        args.events = 100_000 if args.quick else 1_000_000
    if args.cases is None:
        args.cases = args.events + 1
    if args.events < 1 or args.cases < 2 or args.after < 1 or not 1 <= args.repeat <= 20:
        p.error(
            "--events and --after must be positive, --cases at least 2, --repeat between 1 and 20"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="hilt-bench-verify-"))
    result = begin("verify", quick=args.quick, generated_events=args.events)
    ok = True
    try:
        ws = Workspace.at(tmp / "ws")
        create_workspace(ws, CONFIG)
        print(f"audit verify: {args.events:,} decision events, {os.cpu_count()} CPUs, {ws.root}")
        t = time.perf_counter()
        setup = build_workspace(ws, args.events, args.cases, args.seed)
        setup_s = time.perf_counter() - t
        print(
            f"  setup {setup_s:.1f} s (untimed): cases + predictions through the store "
            f"{setup['cases_s']:.2f} s, entries {setup['build_entries_s']:.2f} s, "
            f"hash chain {setup['chain_s']:.2f} s, insert {setup['insert_s']:.2f} s; "
            f"checkpoint signed at seq {int(setup['checkpoint_seq'])}"
        )
        print(f"  database file {ws.db_path.stat().st_size / 1e6:,.0f} MB")
        result["setup_s"] = round(setup_s, 2)
        result["setup"] = {k: round(v, 3) for k, v in setup.items()}
        result["db_mb"] = round(ws.db_path.stat().st_size / 1e6, 1)

        settings = ws.settings()
        inproc: list[float] = []
        verify_only: list[float] = []
        events = 0
        for i in range(args.repeat):
            t = time.perf_counter()
            con = connect(ws)
            try:
                tv = time.perf_counter()
                report = verify_store(con, settings, ws)
                verify_only.append(time.perf_counter() - tv)
            finally:
                con.close()
            inproc.append(time.perf_counter() - t)
            events = report.events
            ok = ok and report.ok
            print(
                f"  in process, run {i + 1}: connect + verify_store {inproc[-1]:.2f} s "
                f"(verify_store alone {verify_only[-1]:.2f} s): {report.summary()}, "
                f"{report.checkpoints} checkpoint(s)"
            )
        cli: list[float] = []
        for i in range(args.repeat):
            wall, rc, out = run_cli(["audit", "verify", "--workspace", str(ws.root)], 300.0)
            cli.append(wall)
            ok = ok and rc == 0
            print(
                f"  CLI `hilt audit verify`, run {i + 1}: {wall:.2f} s wall "
                f"({CLI_CPU_S[-1]:.2f} s CPU), exit {rc}: {out}"
            )
        cli_cpu = CLI_CPU_S[-args.repeat :]
        if args.profile:
            result["profile_s"] = profile_verify(ws)
        startup, rc, _ = run_cli(["audit", "verify", "--help"], 60.0)
        print(f"  CLI start-up alone (`hilt audit verify --help`): {startup:.2f} s")

        checkpoint_seq = int(setup["checkpoint_seq"])
        head = append_after_checkpoint(ws, args.after, args.seed)
        print(
            f"  appended {args.after:,} decision events after the checkpoint at seq "
            f"{checkpoint_seq} (head now seq {head})"
        )
        since: list[float] = []
        since_only: list[float] = []
        for i in range(args.repeat):
            t = time.perf_counter()
            con = connect(ws)
            try:
                tv = time.perf_counter()
                report = verify_store(con, settings, ws, start_from="latest")
                since_only.append(time.perf_counter() - tv)
            finally:
                con.close()
            since.append(time.perf_counter() - t)
            ok = ok and report.ok and report.from_checkpoint == checkpoint_seq
            print(
                f"  from the checkpoint, in process, run {i + 1}: connect + verify_store "
                f"{since[-1] * 1000:.1f} ms (verify_store alone {since_only[-1] * 1000:.1f} ms):"
                f" {report.summary()}"
            )
        since_cli: list[float] = []
        for i in range(args.repeat):
            wall, rc, out = run_cli(
                ["audit", "verify", "--workspace", str(ws.root), "--from", "latest"], 60.0
            )
            since_cli.append(wall)
            ok = ok and rc == 0
            print(
                f"  CLI `hilt audit verify --from latest`, run {i + 1}: {wall:.2f} s wall "
                f"({CLI_CPU_S[-1]:.2f} s CPU), exit {rc}: {out}"
            )

        best = min(inproc)
        cli_best = min(cli)
        since_best = min(since_only)
        result.update(
            {
                "events": events,
                "verify_ok": ok,
                "inprocess_s": [round(v, 3) for v in inproc],
                "inprocess_best_s": round(best, 3),
                "inprocess_median_s": round(statistics.median(inproc), 3),
                "verify_store_only_best_s": round(min(verify_only), 3),
                "events_per_s": round(events / best, 1),
                "cli_s": [round(v, 3) for v in cli],
                "cli_best_s": round(cli_best, 3),
                "cli_median_s": round(statistics.median(cli), 3),
                "cli_cpu_s": [round(v, 3) for v in cli_cpu],
                "cli_startup_s": round(startup, 3),
                "target_s": TARGET_S,
                "target_met_inprocess": best <= TARGET_S,
                "target_met_cli": cli_best <= TARGET_S,
                "after_checkpoint_events": args.after,
                "from_checkpoint_s": [round(v, 4) for v in since_only],
                "from_checkpoint_best_s": round(since_best, 4),
                "from_checkpoint_connect_best_s": round(min(since), 4),
                "from_checkpoint_cli_s": [round(v, 3) for v in since_cli],
                "from_checkpoint_target_s": FROM_TARGET_S,
                "from_checkpoint_target_met": since_best <= FROM_TARGET_S,
            }
        )
        yes = {True: "yes", False: "no"}
        print(
            f"target: verify {events:,} events <= {TARGET_S:g} s: in process {best:.2f} s "
            f"(median {statistics.median(inproc):.2f} s) -> target met: {yes[best <= TARGET_S]}; "
            f"CLI end to end {cli_best:.2f} s (median {statistics.median(cli):.2f} s) "
            f"-> target met: {yes[cli_best <= TARGET_S]}"
        )
        print(
            f"target: verify the {args.after:,} events after a checkpoint <= "
            f"{FROM_TARGET_S * 1000:g} ms: {since_best * 1000:.1f} ms in process "
            f"(CLI end to end {min(since_cli):.2f} s) -> target met: "
            f"{yes[since_best <= FROM_TARGET_S]}"
        )
        if not ok:
            print("WARNING: verify did not report OK")
    finally:
        cleanup(tmp, args.keep)
    finish(result, started)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
