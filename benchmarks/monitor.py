#!/usr/bin/env python
"""Post-market monitoring: `hilt monitor` end to end, and the monitoring computation on 1M
scored cases against the time to read them once.

What it measures
----------------
1. The demo workspace (``hilt.pipelines.loop.demo.set_up_demo``, untimed: the first model
   trained and promoted, the new applications scored into the window), then
   ``<venv>/bin/hilt monitor --workspace W`` as a subprocess: interpreter start-up, the
   runner, papermill executing notebooks/monitor.ipynb on a fresh kernel (the champion from
   MLflow, its training snapshot, the window's cases from the store, the statistics, the
   store's verdict and audit events, MLflow logging), the notebook rendered and logged.
   Reported: wall clock and the exit code (0: no breach, 5: a breach).
   ``--no-setup-monitoring``: the set-up leaves out the demo's own monitoring run (its step
   6, a papermill run like the measured one), so the measured run is the workspace's first
   (the suite's quick run; by default it is the second, as after `hilt demo`).
2. The computation on ``--rows`` scored cases (default 1,000,000; --quick: 10,000) in the
   demo schema, each feature resampled from the demo CSV's values (the typed columns the
   store holds) with a score each, written to a Parquet file (untimed). The baseline: reading
   that file once (``polars.read_parquet``). The measured: the reference built from the
   demo's training rows (``loop.monitoring.reference``) and the comparison of the read frame
   (``loop.monitoring.compare``: PSI over the training bins for every feature and the
   scores, KS / chi-square, missing rates, estimated performance). Each is the best of 3
   (``--repeat``; --quick: timed once). Target (issue 14): computation <= 2 x the read. The
   store's own read of a million cases (``case_frame``, which opens sealed personal data
   subject by subject) is not part of this figure.

Nothing is asserted; the script prints whether the target was met. The last line of output
is one JSON object with every number.

Usage: benchmarks/monitor.py [--quick] [--rows N] [--repeat N] [--seed N] [--keep]
       [--mlflow-template DB] [--no-setup-monitoring]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from hilt.pipelines.config import load_settings
from hilt.pipelines.loop import monitoring
from hilt.pipelines.store.monitoring_records import MonitoringStatistics
from hilt.pipelines.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import (  # noqa: E402
    CONFIG,
    CSV,
    add_tracking_template_option,
    begin,
    cleanup,
    empty_tracking_store,
    finish,
    hilt_command,
    with_empty_tracking_store,
)

TARGET_RATIO = 2.0
CLI_TIMEOUT_S = 600.0


def typed_demo() -> pl.DataFrame:
    """The demo CSV with the feature columns typed as the store types them."""
    settings = load_settings(CONFIG)
    frame = pl.read_csv(CSV, infer_schema=False)
    return frame.with_columns(
        [
            pl.col(n).cast(pl.Float64)
            for n in settings.fields.features
            if settings.columns[n].type in ("int", "float")
        ]
    )


def synthetic(rows: int, seed: int) -> pl.DataFrame:
    """``rows`` scored cases: each feature resampled from the demo's values, a score each."""
    settings = load_settings(CONFIG)
    demo = typed_demo()
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {"case_id": [f"SYN-{k:07d}" for k in range(rows)]}
    for name in settings.fields.features:
        values = demo[name]
        columns[name] = values.gather(rng.integers(0, values.len(), rows))
    columns["score"] = rng.random(rows)
    return pl.DataFrame(columns)


def best_of(n: int, fn: Any) -> tuple[float, Any]:
    """The shortest of ``n`` timed calls of ``fn``, and what the last call returned."""
    best, out = float("inf"), None
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def demo_end_to_end(
    root: Path, template: Path | None = None, *, setup_monitoring: bool = True
) -> dict[str, Any]:
    from hilt.pipelines.loop.demo import set_up_demo

    ws = Workspace.at(root / "demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HILT_", "MLFLOW_"))}
    os.environ.pop("HILT_MLFLOW_TRACKING_URI", None)
    t = time.perf_counter()
    if template is not None:  # MLflow's empty tables copied in, not migrated anew
        with_empty_tracking_store(ws.root, empty_tracking_store(root, template))
    setup = set_up_demo(ws, CONFIG, CSV, monitor=setup_monitoring)
    setup_s = time.perf_counter() - t
    setup_runs = [type(step).__name__ for step in setup.steps if hasattr(step, "run")]
    t = time.perf_counter()
    done = subprocess.run(
        [*hilt_command(), "monitor", "--workspace", str(ws.root)],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=env,
        cwd=root,
    )
    seconds = time.perf_counter() - t
    if done.returncode not in (0, 5):
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"hilt monitor failed with exit code {done.returncode}")
    for line in done.stdout.splitlines():
        print(f"  | {line}")
    return {
        "demo_setup_s": round(setup_s, 2),
        "demo_setup_runs": setup_runs,
        "demo_monitor_cli_s": round(seconds, 2),
        "demo_monitor_exit_code": done.returncode,
    }


def computation(root: Path, rows: int, seed: int, repeat: int) -> dict[str, Any]:
    settings = load_settings(CONFIG)
    demo = typed_demo()
    train = demo.head(700)
    train_scores = np.random.default_rng(seed).random(train.height)
    path = root / "scored.parquet"
    synthetic(rows, seed).write_parquet(path)
    read_s, frame = best_of(repeat, lambda: pl.read_parquet(path))

    def monitor() -> MonitoringStatistics:
        ref = monitoring.reference(train, train_scores, settings)
        return monitoring.compare(
            ref,
            frame,
            frame["score"].to_numpy(),
            settings,
            model_version="bench/v1",
            model_sha256="0" * 64,
            window_days=30,
        )

    compute_s, stats = best_of(repeat, monitor)
    assert stats.cases == rows
    return {
        "rows": rows,
        "repeat": repeat,
        "read_s": round(read_s, 4),
        "compute_s": round(compute_s, 4),
        "compute_over_read": round(compute_s / read_s, 3),
        "target_ratio": TARGET_RATIO,
        "target_met": compute_s / read_s <= TARGET_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="10,000 rows instead of 1M, each timed once"
    )
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=None, help="timed runs (best of; 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    add_tracking_template_option(parser)
    parser.add_argument(
        "--no-setup-monitoring",
        dest="setup_monitoring",
        action="store_false",
        help="leave the demo set-up's own monitoring run out (the measured one is the first)",
    )
    args = parser.parse_args()
    rows = args.rows or (10_000 if args.quick else 1_000_000)
    repeat = args.repeat or (1 if args.quick else 3)
    started = time.perf_counter()
    numbers = begin("monitor", quick=args.quick)
    root = Path(tempfile.mkdtemp(prefix="hilt-bench-monitor-"))
    try:
        print("1. hilt monitor on the demo workspace")
        numbers.update(
            demo_end_to_end(root, args.mlflow_template, setup_monitoring=args.setup_monitoring)
        )
        print(
            f"   demo set-up {numbers['demo_setup_s']} s (untimed part; runs: "
            f"{', '.join(numbers['demo_setup_runs'])}); `hilt monitor` "
            f"{numbers['demo_monitor_cli_s']} s, exit code {numbers['demo_monitor_exit_code']}"
        )
        print(f"2. the monitoring computation on {rows:,} scored cases")
        comp = computation(root, rows, args.seed, repeat)
        numbers.update(comp)
        verdict = "met" if comp["target_met"] else "NOT met"
        print(
            f"   read once {comp['read_s']} s, computation {comp['compute_s']} s: "
            f"{comp['compute_over_read']} x the read (target <= {TARGET_RATIO} x: {verdict})"
        )
    finally:
        cleanup(root, args.keep)
    finish(numbers, started)


if __name__ == "__main__":
    main()
