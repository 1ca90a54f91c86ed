"""`hilt simulate` on German credit: reviewer feedback improves the model (slow: it runs the
real retraining notebook once per round)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CONFIG, CSV

HILT = str(Path(sys.executable).parent / "hilt")


@pytest.mark.slow
def test_uncertainty_sampling_improves_the_holdout_auc(tmp_path: Path) -> None:
    ws = tmp_path / "sim"
    result = subprocess.run(
        [
            HILT,
            "simulate",
            "--workspace",
            str(ws),
            "--config",
            str(CONFIG),
            "--data",
            str(CSV),
            "--rounds",
            "2",
            "--batch",
            "150",
            "--strategy",
            "uncertainty",
            "--reviewer-error",
            "0.05",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["strategy"] == "uncertainty"
    # Two rounds after the seed model (each runs the retraining notebook once): the pool
    # scored by the store's champion, reviewed, retrained; twice, so round 2 starts from
    # what round 1 left.
    assert summary["rounds"] == [0, 1, 2]
    auc = summary["auc"]
    assert auc[2] > auc[0], auc
    assert summary["reviewed"] == [0, 150, 300]
    assert Path(summary["plot"]).stat().st_size > 5000
    assert "holdout AUC" in result.stdout  # the table
    verify = subprocess.run(
        [HILT, "audit", "verify", "--workspace", str(ws)], capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout
