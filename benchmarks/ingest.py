#!/usr/bin/env python
"""Bulk ingest: how fast the store takes a million predictions (and a million cases).

What it measures
----------------
The store's bulk path, ``EmbeddedStore.add_predictions(model_version, frame, sha256)``, on a
polars frame of 1,000,000 predictions (``case_id``, ``score``, ``label``, ``explanation`` as
JSON text with one signed contribution per model feature), in batches of ``--batch-size``
rows (default: one batch of 1,000,000). Each call is what `hilt` does for a batch: take the
cross-process lock, open the file, validate the frame, check that the model is the store's
champion with the sha256 it was registered with, check that every case exists,
insert the rows, compute the batch digest (``batch_digest`` v2: sha256 over the inserted
rows column by column, from the frame that was inserted), append one ``predictions.ingest``
audit event carrying it, commit, close. The reported rate is rows
divided by the wall time of all calls together. Target (from the issue): >= 500,000 rows/s.

Setup: the predictions need their cases, so 1,000,000 synthetic cases in the demo schema
are ingested first through ``EmbeddedStore.ingest_cases`` (every column sampled
independently from the demo CSV's own values; ids SYN-APP-0000001..., one subject per
case; all columns as text, as `hilt ingest` reads a CSV). That ingest is timed too and
reported as a secondary number (it builds five primary-key indexes, so it is slower).
Then (untimed) a stand-in model is registered on a snapshot of them and approved by a
lead: the store takes predictions only from its champion.

Afterwards (untimed) the first batch is ingested once more as a second model version
under cProfile, and the functions that take the time are printed (DuckDB statements count
as the own time of the store function that runs them; polars' native calls, such as JSON
encoding of the struct explanations, and hashing appear by name); then ``verify()`` checks
the log, the batch row counts and digests.

Nothing is asserted; the script prints whether the target was met. The last line of
output is one JSON object with every number.

Usage: benchmarks/ingest.py [--quick] [--rows N] [--batch-size N] [--case-batch-size N]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from hilt.pipelines.store import Identity, Store, open_store_as
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.store.registry_records import ModelEvaluation
from hilt.pipelines.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import CONFIG, begin, cleanup, finish, synthetic_cases  # noqa: E402

TARGET_ROWS_PER_S = 500_000.0
#: The stand-in model the synthetic predictions are added under: the store takes
#: predictions only from its champion, with the sha256 it was registered with.
MODEL_VERSION = "bench-model/v1"
STAND_IN_METRICS: dict[str, float | None] = {"auc": 0.8, "accuracy": 0.75, "brier": 0.18}


def approve_stand_in(ws: Workspace, model: str) -> str:
    """Register ``model`` in the store's registry as the operator (a stand-in: its sha256 is
    that of its name, its evaluation made up to pass the gate; the predictions are
    synthetic) on a snapshot the store makes, and have the lead lena approve it: the
    champion. Returns its sha256."""
    op = open_store_as(ws, Identity(operator=True))
    sha = hashlib.sha256(model.encode()).hexdigest()
    champion = next((m.model for m in op.models() if m.state == "champion"), None)
    evaluation = ModelEvaluation(
        snapshot_sha256=op.snapshot().sha256,
        metrics=STAND_IN_METRICS,
        gaps={"sex": 0.0, "age": 0.0},
        champion=champion,
        champion_metrics=STAND_IN_METRICS if champion else None,
    )
    op.register_model(model, sha, f"bench-{model}", evaluation)
    open_store_as(ws, Identity(name="lena")).promote_model(model)
    return sha


def synthetic_predictions(
    case_ids: pl.Series, features: list[str], seed: int, explanations: str = "struct"
) -> pl.DataFrame:
    """One prediction per case; explanation = {feature: contribution} for every feature, as
    a struct column (the bulk format: what a model's contribution matrix gives, no JSON to
    parse) or as JSON text (what an HTTP client sends; every row parsed to validate it)."""
    n = case_ids.len()
    rng = np.random.default_rng(seed)
    score = rng.beta(2.0, 2.0, n)
    contrib = np.round(rng.normal(0.0, 0.3, (len(features), n)), 4)
    parts: list[pl.Expr] = []
    for j, name in enumerate(features):
        parts.append(pl.lit(("{" if j == 0 else ",") + json.dumps(name) + ":"))
        parts.append(pl.lit(pl.Series(name, contrib[j])).cast(pl.String))
    parts.append(pl.lit("}"))
    explanation = pl.select(pl.concat_str(parts).alias("explanation")).to_series()
    if explanations == "struct":
        explanation = pl.select(
            pl.struct(
                [pl.lit(pl.Series(name, contrib[j])) for j, name in enumerate(features)]
            ).alias("explanation")
        ).to_series()
    return pl.DataFrame(
        {
            "case_id": case_ids,
            "score": score,
            "label": np.where(score >= 0.5, "1", "0"),
            "explanation": explanation,
        }
    )


def batches(frame: pl.DataFrame, size: int) -> list[pl.DataFrame]:
    return [frame.slice(off, size) for off in range(0, frame.height, size)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="100,000 rows (smoke test)")
    p.add_argument("--rows", type=int, default=None, help="predictions (and cases) to ingest")
    p.add_argument("--batch-size", type=int, default=None, help="prediction rows per batch")
    p.add_argument("--case-batch-size", type=int, default=None, help="case rows per batch")
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument(
        "--explanations",
        choices=["struct", "json"],
        default="struct",
        help="struct column (bulk format, default) or JSON text (each row parsed)",
    )
    p.add_argument("--no-breakdown", action="store_true", help="skip the profiled second batch")
    p.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    args = p.parse_args(argv)
    if args.rows is None:
        args.rows = 100_000 if args.quick else 1_000_000
    if args.batch_size is None:
        args.batch_size = args.rows
    if args.case_batch_size is None:
        args.case_batch_size = args.rows
    if args.rows < 1 or args.batch_size < 1 or args.case_batch_size < 1:
        p.error("--rows, --batch-size and --case-batch-size must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="hilt-bench-ingest-"))
    result = begin(
        "ingest",
        quick=args.quick,
        rows=args.rows,
        batch_size=args.batch_size,
        case_batch_size=args.case_batch_size,
    )
    try:
        ws = Workspace.at(tmp / "ws")
        create_workspace(ws, CONFIG)
        settings = ws.settings()
        op = open_store_as(ws, Identity(operator=True))
        print(f"bulk ingest: {args.rows:,} rows, {os.cpu_count()} CPUs, workspace {ws.root}")

        t = time.perf_counter()
        cases = synthetic_cases(args.rows, args.seed)
        preds = synthetic_predictions(
            cases["application_id"], list(settings.fields.features), args.seed, args.explanations
        )
        gen_s = time.perf_counter() - t
        as_text = preds["explanation"]
        if args.explanations == "struct":
            as_text = as_text.struct.json_encode()
        mean_expl = float(pl.select(as_text.str.len_bytes().mean()).item() or 0.0)
        print(
            f"  generated {cases.height:,} cases and {preds.height:,} predictions in "
            f"{gen_s:.2f} s (explanations as {args.explanations}: {mean_expl:.0f} bytes of JSON"
            " on average)"
        )

        # ---- setup, timed as the secondary number: the cases
        case_batches = batches(cases, args.case_batch_size)
        t = time.perf_counter()
        for b in case_batches:
            op.ingest_cases(b)
        cases_s = time.perf_counter() - t
        cases_rate = cases.height / cases_s
        print(
            f"  cases: {cases.height:,} rows in {len(case_batches)} batch(es) in {cases_s:.2f} s "
            f"= {cases_rate:,.0f} rows/s"
        )

        # ---- untimed: the stand-in model, registered and approved (a snapshot of the cases)
        sha = approve_stand_in(ws, MODEL_VERSION)

        # ---- the measurement: the predictions
        pred_batches = batches(preds, args.batch_size)
        per_batch: list[float] = []
        seqs: list[int] = []
        t = time.perf_counter()
        for b in pred_batches:
            tb = time.perf_counter()
            res = op.add_predictions(MODEL_VERSION, b, sha)
            per_batch.append(time.perf_counter() - tb)
            seqs.append(res.seq)
        preds_s = time.perf_counter() - t
        preds_rate = preds.height / preds_s
        print(
            f"  predictions: {preds.height:,} rows in {len(pred_batches)} batch(es) in "
            f"{preds_s:.2f} s = {preds_rate:,.0f} rows/s "
            f"(slowest batch {max(per_batch):.2f} s; audit events seq {seqs[0]}..{seqs[-1]})"
        )
        result.update(
            {
                "generate_s": round(gen_s, 3),
                "explanation_mean_bytes": round(mean_expl, 1),
                "cases_batches": len(case_batches),
                "cases_s": round(cases_s, 3),
                "cases_rows_per_s": round(cases_rate, 1),
                "predictions_batches": len(pred_batches),
                "predictions_s": round(preds_s, 3),
                "predictions_rows_per_s": round(preds_rate, 1),
                "predictions_slowest_batch_s": round(max(per_batch), 3),
                "audit_events_for_predictions": len(seqs),
            }
        )

        # ---- untimed: where the time goes, and verify
        if not args.no_breakdown:
            result["breakdown"] = breakdown(ws, op, pred_batches[0])
        t = time.perf_counter()
        report = op.verify()
        verify_s = time.perf_counter() - t
        counts = op.counts()
        print(
            f"  verify: {report.summary()} in {verify_s:.2f} s; store holds "
            f"{counts['cases']:,} cases, {counts['predictions']:,} predictions"
        )
        result.update(
            {
                "verify_ok": report.ok,
                "verify_s": round(verify_s, 3),
                "stored_predictions": counts["predictions"],
                "stored_cases": counts["cases"],
            }
        )
        met = preds_rate >= TARGET_ROWS_PER_S
        result["target_met"] = met
        print(
            f"target: predictions >= {TARGET_ROWS_PER_S:,.0f} rows/s: {preds_rate:,.0f} rows/s "
            f"-> target met: {'yes' if met else 'no'}"
        )
    finally:
        cleanup(tmp, args.keep)
    finish(result, started)
    return 0


def breakdown(ws: Workspace, op: Store, batch: pl.DataFrame, top: int = 12) -> dict[str, float]:
    """The same bulk path once more (a second model version, approved first) under
    cProfile: where it goes.

    Sorted by own time, so DuckDB statements show up as the time of the store function
    that runs them, and polars' native calls (JSON encoding) and sha256 by name.
    """
    second = MODEL_VERSION.replace("/v1", "/v2")
    sha = approve_stand_in(ws, second)
    profiler = cProfile.Profile()
    t = time.perf_counter()
    profiler.enable()
    op.add_predictions(second, batch, sha)
    profiler.disable()
    wall = time.perf_counter() - t
    stats = pstats.Stats(profiler)
    rows: list[tuple[float, str]] = []
    for (filename, line, func), entry in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(filename).stem}.{func}:{line}" if line else func
        rows.append((float(entry[2]), where))
    rows.sort(reverse=True)
    print(
        f"  profile of one more {batch.height:,}-row prediction batch (model version 2, "
        f"{wall:.2f} s under cProfile; own time, top {top}):"
    )
    for seconds, where in rows[:top]:
        print(f"    {seconds:7.3f} s  {where}")
    return {"profiled_batch_s": round(wall, 3)} | {w: round(v, 3) for v, w in rows[:top]}


if __name__ == "__main__":
    sys.exit(main())
