"""Every benchmark runs in its quick form and ends with one JSON object (no speed asserted),
and leaves nothing in the repository it runs from (its workspaces live in temporary folders;
an MLflow ./mlruns or ./mlflow.db there would be a leak out of a workspace).

Each script runs as `python SCRIPT --quick ...` in a process of its own, forked from one that
has imported hilt once (tests/prewarmed.py: a fresh interpreter would spend seconds on the
same imports for every script), with the repository as its folder. Scripts that make MLflow
stores copy the empty one this test session made (``--mlflow-template``) instead of running
MLflow's migrations again: untimed set-up, and the full runs make their own."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.loop_helpers import empty_tracking_store
from tests.prewarmed import run as prewarmed_run

REPO = Path(__file__).resolve().parents[1]
#: The scripts; benchmarks/_common.py and the like are what they share, not benchmarks.
BENCHMARKS = sorted(p for p in (REPO / "benchmarks").glob("*.py") if not p.name.startswith("_"))
#: What running Python code leaves anyway (bytecode, tool caches): not a leak.
CACHES = ("__pycache__/", ".pytest_cache/", ".mypy_cache/", ".ruff_cache/", ".hypothesis/")
#: Smaller sizes than --quick's where a size is all that changes: every phase still runs
#: (the numbers are not what is tested here). The others' --quick is their smallest run
#: that still takes every step.
SMALLER = {
    "ingest": ["--rows", "10000"],
    "retrain": ["--rows", "2000"],
    # One Dask worker process instead of 2 (2,000 rows are one partition: the second idled).
    "training_engines": ["--rows", "2000", "--dask-workers", "1"],
    # The demo set-up without its own monitoring run (a papermill run like the measured
    # `hilt monitor`, which is then the workspace's first).
    "monitor": ["--no-setup-monitoring"],
    # 5,000 events cycling over 500 cases, 1,000 more after the checkpoint (defaults: a
    # case per event, 10,000 after): both walks and the checkpoint still run.
    "verify": ["--events", "5000", "--cases", "500", "--after", "1000", "--repeat", "1"],
    # 300 cases in the store instead of 3,000 (every pair still leases from the live queue).
    "service_cpu": ["--cases", "300"],
    # One start of each kind instead of 2 (both paths still run).
    "kernel_start": ["--repeat", "1"],
    # 2 reviewers instead of 6, pausing 0.1 s on average instead of 2 s: 1 s paced phases
    # (instead of 4) still decide ~10 times each (none at all: a chance of ~1 in 10^8); 1 s
    # of saturation through the service (instead of 1.5), the embedded phases as --quick
    # (an embedded decision opens the store: up to 0.5 s under the suite's load), 20 raw rows.
    "store_concurrency": [
        "--workers",
        "2",
        "--mean-interval",
        "0.1",
        "--paced-seconds",
        "1",
        "--sat-seconds",
        "1",
        "--sat-decisions",
        "100",
        "--embedded-paced-seconds",
        "1.5",
        "--embedded-sat-seconds",
        "1.5",
        "--raw-rows",
        "20",
    ],
}
#: The scripts that create MLflow stores (``benchmarks/_common.add_tracking_template_option``).
TAKE_TEMPLATE = frozenset({"monitor", "retrain"})


def top_level() -> set[str]:
    """The entries at the top of the checkout (folders with a trailing "/"), where a
    benchmark run with cwd=REPO would leave ./mlruns or ./mlflow.db (even empty), tools'
    caches left out. Deeper paths are left out: someone may be editing the sources while the
    suite runs. (A directory listing: `git status --ignored` walked the whole tree, .venv
    included, twice per benchmark.)"""
    return {
        f"{e.name}/" if e.is_dir() else e.name
        for e in os.scandir(REPO)
        if not f"{e.name}/".endswith(CACHES)
    }


def arguments(script: Path) -> list[str]:
    """What the test runs ``script`` with: --quick, the smaller sizes, the MLflow template."""
    args = ["--quick", *SMALLER.get(script.stem, [])]
    if script.stem in TAKE_TEMPLATE:
        args += ["--mlflow-template", str(empty_tracking_store())]
    return args


@pytest.mark.slow
@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_benchmark_quick_run_prints_its_numbers(script: Path, tmp_path: Path) -> None:
    before = top_level()
    result = prewarmed_run(
        *arguments(script), script=script, cwd=REPO, folder=tmp_path / "output", timeout_s=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    numbers = json.loads(last)
    assert isinstance(numbers, dict) and numbers
    assert "Traceback" not in result.stderr
    if script.stem == "store_concurrency":  # every phase decided, none refused or lost
        service = numbers["service"]
        # A click as two requests (decision, then the next lease) and, as the review panel
        # sends it, as one (decide-next, after the first lease): paced and from one process.
        two = ("paced", "paced_while_verifying", "saturation", "saturation_one_process")
        one = ("paced_one_request", "saturation_one_process_one_request")
        for phase in two + one:
            assert service[phase]["decisions"] > 0 and service[phase]["errors"] == {}, phase
            assert service[phase]["requests_per_click"] == (1 if phase in one else 2), phase
            assert service[phase]["click"]["p50_ms"] > 0, phase
            # the service's CPU a decision, except beside the auditor (verify's CPU too)
            cpu = service[phase].get("service_cpu_ms_per_decision")
            assert (cpu is None) if phase == "paced_while_verifying" else cpu > 0, phase
        # Every phase's acknowledged decisions were looked for in the store, and found.
        assert service["acknowledged"] == sum(service[p]["decisions"] for p in two + one)
        assert service["lost"] == 0 and service["verify_ok"]
        assert service["paced_while_verifying"]["verify_calls"] > 0
        embedded = numbers["embedded"]
        for phase in ("paced", "saturation"):
            assert embedded[phase]["decisions"] > 0, phase
        assert embedded["lost"] == 0 and embedded["verify_ok"]
        # The sizes given are the sizes run.
        assert numbers["workers"] == 2 and numbers["mean_interval_s"] == 0.1
        assert numbers["phases"] == {
            "paced_seconds": 1.0,
            "sat_seconds": 1.0,
            "sat_decisions": 100,
            "embedded_paced_seconds": 1.5,
            "embedded_sat_seconds": 1.5,
            "raw_rows": 20,
        }
        assert service["paced"]["workers"] == 2 and service["paced"]["offered_per_s"] == 20.0
        raw = numbers["raw"]
        assert raw["rows"] == 20 and raw["insert"]["per_s"] > 0 and raw["chained"]["per_s"] > 0
    # The sizes given are the sizes run, and every phase ran.
    if script.stem == "ingest":
        assert numbers["rows"] == 10_000 and numbers["verify_ok"] is True
    if script.stem == "verify":
        assert numbers["generated_events"] == 5_000 and numbers["verify_ok"] is True
        assert numbers["after_checkpoint_events"] == 1_000
    if script.stem == "review_latency":  # the panel's click: one request, decide-next
        assert numbers["store_requests_per_decision"] == {"decide_and_next": 1.0}
        assert numbers["requests_per_click"] == 1.0 and numbers["audit_ok"] is True
    if script.stem == "service_cpu":
        assert numbers["cases"] == 300
    if script.stem == "retrain":
        assert numbers["synthetic"]["rows"] == 2_000 and numbers["synthetic"]["same_model_bytes"]
        # the run's kernel was reaped by the run: its CPU is counted
        assert numbers["synthetic"]["cpu"]["kernel_s"] > 0 < numbers["synthetic"]["cpu"]["runner_s"]
        assert numbers["synthetic"]["bare"]["train_cpu_s"] > 0
        assert numbers["demo"]["cli"]["exit_code"] == 0 and numbers["demo"]["second_s"] > 0
    if script.stem == "training_engines":  # both engines trained the same rows
        assert numbers["local"]["train_rows"] == numbers["dask"]["train_rows"] > 0
        assert numbers["dask"]["partitions"] >= 1
        assert numbers["rows"] == 2_000 and numbers["dask_workers"] == 1
        assert len(numbers["dask"]["worker_rss_mb"]) == 1
    if script.stem == "monitor":  # the set-up's runs, then `hilt monitor`, then the numbers
        assert numbers["demo_setup_runs"] == ["Retrained", "Scored"]
        assert numbers["demo_monitor_exit_code"] in (0, 5)
        assert numbers["rows"] == 10_000 and numbers["compute_s"] > 0
    assert sorted(top_level() - before) == []
