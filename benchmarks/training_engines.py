#!/usr/bin/env python
"""Training locally and on a 2-worker Dask ``LocalCluster``: time, and the client's memory.

What it measures
----------------
A fresh workspace with N synthetic labelled cases in the demo schema (``--rows``; made as
benchmarks/retrain.py makes them: every column resampled from the demo CSV, so the label
carries no signal and the AUC is ~0.5; that changes no cost; without MLflow, which no
step here uses), ingested untimed, and one
training snapshot exported by the store (the Parquet file a retraining run reads). Then,
each in a fresh child process (so that its peak RSS is its own), what the retraining
notebook does from the snapshot on (untimed: the imports):

- ``local``: ``training_data.load_dataset`` (the whole file read, encoded) and
  ``training.train`` with ``TrainParams`` defaults (200 rounds, depth 3) on every core;
- ``dask``: a ``distributed.LocalCluster(n_workers=2, threads_per_worker=1,
  processes=True)`` started by this script (``--dask-workers``: another number of
  workers); the child is the client (the notebook's kernel):
  ``load_dataset(..., train_on_client=False)`` reads the holdout only, and
  ``training.train`` on the engine: the workers read the snapshot in partitions (its row
  groups) and train with ``xgboost.dask``;

and both evaluate the model on the holdout (AUC). Reported per engine: seconds (dataset +
training), the client's peak RSS (``VmHWM``, see ``peak_rss_mb``) and its RSS
after the imports, before any data (the difference is what the data cost the client), the
model's sha256, train rows, partitions; for Dask also the workers' RSS at the end.
The claim to check: the Dask client's peak does not grow with the training frame.

Nothing is asserted. The last line of output is one JSON object with every number.

Usage: benchmarks/training_engines.py [--quick] [--rows N] [--dask-workers N] [--seed N] [--keep]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import begin, cleanup, finish  # noqa: E402

#: benchmarks/retrain.py: its synthetic cases and fresh workspace, made the same way here.
RETRAIN: Any = importlib.import_module("benchmarks.retrain")

FULL_ROWS = 1_000_000
QUICK_ROWS = 100_000
#: Worker processes of the Dask LocalCluster (one thread each).
DASK_WORKERS = 2


def rss_now_mb() -> float:
    """This process's resident set size now (Linux: /proc/self/statm)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux: VmHWM of /proc/self/status). Not
    ``getrusage``'s ru_maxrss: a child inherits its parent's at fork and keeps it through
    exec, so a child of a parent that held the frame would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(workspace: str, sha256: str, engine: str, scheduler: str) -> dict[str, Any]:
    """One training as the retraining notebook does it, in this (fresh) process."""
    from hilt.pipelines.loop.model import TrainParams
    from hilt.pipelines.loop.steps import holdout, training, training_data
    from hilt.pipelines.loop.steps.engine import open_engine
    from hilt.pipelines.workspace import Workspace

    if engine == "dask":
        import distributed  # noqa: F401  (imports before the data, like the local xgboost)
    import xgboost  # noqa: F401

    ws = Workspace.at(workspace)
    settings = ws.settings()
    after_imports = rss_now_mb()
    nthread = 1 if engine == "dask" else 0
    training_engine = open_engine(settings, engine, scheduler, 0, nthread)
    params = TrainParams(nthread=nthread)
    t = time.perf_counter()
    snapshot = training_data.reuse_snapshot(ws, sha256)
    dataset = training_data.load_dataset(snapshot, settings, train_on_client=training_engine.local)
    dataset_s = time.perf_counter() - t
    model = training.train(dataset, params, engine=training_engine)
    seconds = time.perf_counter() - t
    evaluation = holdout.evaluate(model, dataset, settings)
    return {
        "engine": engine,
        "seconds": round(seconds, 2),
        "dataset_s": round(dataset_s, 2),
        "train_s": round(seconds - dataset_s, 2),
        "client_peak_rss_mb": round(peak_rss_mb(), 1),
        "client_rss_after_imports_mb": round(after_imports, 1),
        "train_rows": model.train_rows,
        "nthread": model.params.nthread,
        "partitions": training_engine.partitions,
        "auc": round(evaluation.metrics["auc"], 4),
        "model_sha256": model.model_sha256(),
    }


def run_child(ws: Path, sha256: str, engine: str, scheduler: str = "") -> dict[str, Any]:
    args = [sys.executable, __file__, "--child", engine, str(ws), sha256, scheduler]
    out = subprocess.run(args, capture_output=True, text=True, timeout=3600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{engine} training failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        engine, workspace, sha256, *rest = argv[1:]
        print(json.dumps(child(workspace, sha256, engine, rest[0] if rest else "")))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows")
    p.add_argument("--rows", type=int, default=None, help="synthetic labelled cases")
    p.add_argument(
        "--dask-workers",
        type=int,
        default=DASK_WORKERS,
        help=f"worker processes of the LocalCluster (default {DASK_WORKERS})",
    )
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    args = p.parse_args(argv)
    if args.dask_workers < 1:
        p.error("--dask-workers must be at least 1")
    rows = args.rows or (QUICK_ROWS if args.quick else FULL_ROWS)
    os.environ.pop("HILT_MLFLOW_TRACKING_URI", None)
    tmp = Path(tempfile.mkdtemp(prefix="hilt-bench-engines-"))
    result = begin("training_engines", rows=rows, dask_workers=args.dask_workers)
    started = time.perf_counter()
    try:
        from distributed import LocalCluster

        from hilt.pipelines.loop.steps import training_data
        from hilt.pipelines.store import Identity, open_store_as

        print(f"training engines: {rows:,} rows, {os.cpu_count()} CPUs, workspace under {tmp}")
        cases = RETRAIN.synthetic_cases(rows, args.seed)
        ws, ingest_s = RETRAIN.new_workspace(tmp / "ws", cases, tracking=False)
        snapshot = training_data.take_snapshot(open_store_as(ws, Identity(operator=True)))
        result["ingest_s"] = round(ingest_s, 2)
        result["snapshot_mb"] = round(snapshot.path.stat().st_size / 2**20, 1)
        result["train_rows"] = snapshot.train_rows
        print(f"  ingested in {ingest_s:.1f} s; snapshot {result['snapshot_mb']} MB (untimed)")
        result["local"] = run_child(ws.root, snapshot.sha256, "local")
        cluster = LocalCluster(
            n_workers=args.dask_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        try:
            result["dask"] = run_child(
                ws.root, snapshot.sha256, "dask", str(cluster.scheduler_address)
            )
            with cluster.get_client() as client:
                rss = client.run(rss_now_mb)
            result["dask"]["worker_rss_mb"] = [round(v, 1) for v in rss.values()]
        finally:
            # The workers first, then the scheduler: closed together, a worker's heartbeat
            # can meet the closed scheduler and log a traceback on the way out.
            cluster.scale(0)
            gone = time.monotonic() + 30
            while cluster.workers and time.monotonic() < gone:
                time.sleep(0.05)
            cluster.close()
        for name in ("local", "dask"):
            r = result[name]
            print(
                f"  {name:5}: {r['seconds']:7.2f} s (dataset {r['dataset_s']:.2f} s, training "
                f"{r['train_s']:.2f} s), client peak RSS {r['client_peak_rss_mb']:.0f} MB "
                f"(after imports {r['client_rss_after_imports_mb']:.0f} MB), AUC {r['auc']}, "
                f"nthread {r['nthread']}, partitions {r['partitions']}"
            )
        print(f"  Dask workers' RSS at the end: {result['dask']['worker_rss_mb']} MB")
        same = result["local"]["model_sha256"] == result["dask"]["model_sha256"]
        result["same_model_bytes"] = same
        result["auc_difference"] = round(abs(result["local"]["auc"] - result["dask"]["auc"]), 4)
        print(
            f"  same model bytes: {'yes' if same else 'no'}; AUC difference "
            f"{result['auc_difference']}"
        )
    finally:
        cleanup(tmp, args.keep)
    finish(result, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
