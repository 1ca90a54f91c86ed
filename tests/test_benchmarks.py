"""Every benchmark runs in its quick form and ends with one JSON object (no speed asserted),
and leaves nothing in the repository it runs from (its workspaces live in temporary folders;
an MLflow ./mlruns or ./mlflow.db there would be a leak out of a workspace)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    "training_engines": ["--rows", "2000"],
    "verify": ["--events", "5000", "--repeat", "1"],
}


def untracked() -> set[str]:
    """Untracked and ignored entries at the top of the checkout, as git lists them (folders
    collapsed), where a benchmark run with cwd=REPO would leave ./mlruns or ./mlflow.db.
    Deeper paths are left out: someone may be editing the sources while the suite runs.
    Empty when REPO is not a git checkout."""
    out = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--ignored", "--untracked-files=normal"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = out.stdout.splitlines() if out.returncode == 0 else []
    paths = {line[3:] for line in lines}
    return {p for p in paths if "/" not in p.rstrip("/") and not p.endswith(CACHES)}


@pytest.mark.slow
@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_benchmark_quick_run_prints_its_numbers(script: Path) -> None:
    before = untracked()
    result = subprocess.run(
        [sys.executable, str(script), "--quick", *SMALLER.get(script.stem, [])],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    numbers = json.loads(last)
    assert isinstance(numbers, dict) and numbers
    assert "Traceback" not in result.stderr
    if script.stem == "store_concurrency":  # every phase decided, none refused or lost
        service = numbers["service"]
        for phase in ("paced", "paced_while_verifying", "saturation", "saturation_one_process"):
            assert service[phase]["decisions"] > 0 and service[phase]["errors"] == {}, phase
        assert service["lost"] == 0 and service["verify_ok"]
        assert service["paced_while_verifying"]["verify_calls"] > 0
    # The sizes given are the sizes run, and every phase ran.
    if script.stem == "ingest":
        assert numbers["rows"] == 10_000 and numbers["verify_ok"] is True
    if script.stem == "verify":
        assert numbers["generated_events"] == 5_000 and numbers["verify_ok"] is True
    if script.stem == "retrain":
        assert numbers["synthetic"]["rows"] == 2_000 and numbers["synthetic"]["same_model_bytes"]
        assert numbers["demo"]["cli"]["exit_code"] == 0 and numbers["demo"]["second_s"] > 0
    if script.stem == "training_engines":  # both engines trained the same rows
        assert numbers["local"]["train_rows"] == numbers["dask"]["train_rows"] > 0
        assert numbers["dask"]["partitions"] >= 1
    assert sorted(untracked() - before) == []
