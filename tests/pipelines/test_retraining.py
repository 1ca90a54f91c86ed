"""The retraining steps (hilt.pipelines.loop.steps: training, holdout, retrain) on a real
workspace, in-process."""

from __future__ import annotations

import math
import shutil

import numpy as np
import polars as pl
import pytest

from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.model import TrainParams
from hilt.pipelines.loop.scoring import score_into_queue
from hilt.pipelines.loop.steps import holdout, training, training_data
from hilt.pipelines.store import Identity, open_store_as
from hilt.pipelines.workspace import Workspace
from tests.conftest import operator
from tests.loop_helpers import all_cases, loop_workspace, review_some
from tests.registry_helpers import approve_model

FAST = TrainParams(num_boost_round=40)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return loop_workspace(tmp_path_factory.mktemp("retraining"), labelled=600)


@pytest.fixture(scope="module")
def dataset(ws: Workspace) -> training_data.Dataset:
    snapshot = training_data.take_snapshot(open_store_as(ws, Identity(name="dana")), 0)
    return training_data.load_dataset(snapshot, ws.settings())


def test_snapshot_and_dataset_show_counts_by_label_source(
    ws: Workspace, dataset: training_data.Dataset
) -> None:
    snap = dataset.snapshot
    assert snap.rows == 600 and snap.train_rows + snap.holdout_rows == 600
    assert not snap.reused and snap.audit_seq is not None
    summary = dataset.summary()
    assert summary.columns == ["split", "label source", "rows", "positive share"]
    assert summary.select("split", "label source").rows() == [
        ("train", "original"),
        ("train", "reviewer-accepted"),
        ("train", "reviewer-corrected"),
        ("holdout", "original"),
    ]
    assert summary["rows"].to_list() == [snap.train_rows, 0, 0, snap.holdout_rows]
    assert dataset.X_train.height == snap.train_rows
    assert set(dataset.groups_holdout) == {"sex", "age"}
    table = snap.table()
    assert dict(table.rows())["sha256"] == snap.sha256


def test_reviewer_labels_enter_training_and_reuse_finds_the_old_file(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    ws = loop_workspace(tmp_path_factory.mktemp("feedback"), labelled=400)
    dana = open_store_as(ws, Identity(name="dana"))
    first = training_data.take_snapshot(dana, 0)
    # New cases scored into the queue, then reviewed: labels from reviewers.
    new = all_cases().slice(400, 30).drop("risk")
    dana.ingest_cases(new)
    model = training.train(training_data.load_dataset(first, ws.settings()), FAST)
    approve_model(dana, open_store_as(ws, Identity(name="lena")), "m/v1", model, first.sha256)
    score_into_queue(dana, model, new["application_id"].to_list(), ws.settings(), "m/v1")
    assert review_some(ws, "alice", 12) == 12
    second = training_data.load_dataset(training_data.take_snapshot(dana, 0), ws.settings())
    counts = dict(zip(second.summary()["label source"], second.summary()["rows"], strict=False))
    assert counts["reviewer-accepted"] + counts["reviewer-corrected"] == 12
    assert counts["reviewer-corrected"] == 4
    # The first snapshot's file is still there and is found by its sha256.
    again = training_data.reuse_snapshot(ws, first.sha256)
    assert (again.path, again.rows, again.as_of_seq) == (first.path, first.rows, first.as_of_seq)
    assert again.reused and again.label_sources == first.label_sources
    # A changed file is not accepted.
    copy = ws.snapshots_dir / "copy.bin"
    shutil.copy(first.path, copy)
    with first.path.open("ab") as f:
        f.write(b"x")
    with pytest.raises(InputError, match="no snapshot file with sha256"):
        training_data.reuse_snapshot(ws, first.sha256)
    with pytest.raises(InputError, match="changed since"):
        training_data.load_dataset(first, ws.settings())
    shutil.copy(copy, first.path)
    with pytest.raises(InputError, match="64 lowercase hex"):
        training_data.reuse_snapshot(ws, "abc")


def test_training_is_deterministic_and_label_noise_is_seeded(
    dataset: training_data.Dataset,
) -> None:
    a = training.train(dataset, FAST)
    b = training.train(dataset, FAST)
    assert a.model_sha256() == b.model_sha256()
    y = dataset.y_train
    noisy = training.noisy_labels(y, 0.25, seed=3)
    assert int((noisy != y).sum()) == round(0.25 * y.len())
    assert noisy.to_list() == training.noisy_labels(y, 0.25, seed=3).to_list()
    assert noisy.to_list() != training.noisy_labels(y, 0.25, seed=4).to_list()
    assert training.noisy_labels(y, 0.0, seed=3) is y
    c = training.train(dataset, FAST, label_noise=0.25)
    assert c.model_sha256() == training.train(dataset, FAST, label_noise=0.25).model_sha256()
    assert c.model_sha256() != a.model_sha256()
    for bad in (-0.1, 0.6, math.nan):
        with pytest.raises(InputError, match="label_noise"):
            training.train(dataset, FAST, label_noise=bad)


def test_training_imports_what_the_figures_need_while_the_model_trains(
    dataset: training_data.Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retraining's figures (matplotlib) are imported while the model trains, which
    leaves a core partly idle, not as the run's kernel starts (which a run waits for):
    ``train`` starts that import (``start.import_while_training``) and trains as before."""
    started: list[str] = []
    monkeypatch.setattr(training, "import_while_training", lambda: started.append("imports"))
    model = training.train(dataset, FAST)
    assert started == ["imports"]
    assert model.model_sha256() == training.train(dataset, FAST).model_sha256()


def test_evaluation_and_the_gate_reject_a_model_trained_on_noisy_labels(
    ws: Workspace, dataset: training_data.Dataset
) -> None:
    settings = ws.settings()
    clean = holdout.evaluate(training.train(dataset, FAST), dataset, settings)
    assert clean.metrics["n"] == dataset.X_holdout.height
    assert clean.metrics["auc"] > 0.65
    assert clean.metrics_table()["metric"].to_list()[:3] == ["n", "positive_rate", "auc"]
    assert set(clean.subgroups["attribute"]) == {"sex", "age"}
    assert set(clean.gaps) == {"sex", "age"}
    assert clean.subgroups.filter(~pl.col("included"))["positive_rate"].null_count() == (
        clean.subgroups.filter(~pl.col("included")).height
    )
    for figure in (
        clean.calibration_figure(),
        clean.importance_figure(),
        clean.subgroup_figure(),
        holdout.roc_figure(clean),
    ):
        assert figure._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
    # No champion: the comparison is skipped, explained.
    none = holdout.Comparison(None, None, None, dict(clean.metrics))
    assert holdout.apply_gate(clean, none, settings).passed
    noisy = holdout.evaluate(training.train(dataset, FAST, label_noise=0.4), dataset, settings)
    vs_clean = holdout.Comparison("1", "x", dict(clean.metrics), dict(noisy.metrics))
    verdict = holdout.apply_gate(noisy, vs_clean, settings)
    assert not verdict.passed
    failed = [c.name for c in verdict.checks if not c.passed]
    assert "champion" in failed
    table = holdout.gate_table(verdict)
    assert table["result"].to_list().count("FAIL") == len(failed)
    assert np.isfinite(vs_clean.table()["challenger - champion"].to_numpy()).all()


def test_take_snapshot_refuses_bad_seqs(ws: Workspace) -> None:
    dana = open_store_as(ws, Identity(name="dana"))
    with pytest.raises(InputError, match="no labelled cases"):
        training_data.take_snapshot(dana, 1)
    with pytest.raises(InputError, match="non-negative"):
        training_data.take_snapshot(dana, -1)
    assert operator(ws).counts()["cases"] == 600
