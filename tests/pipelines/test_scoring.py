"""hilt.pipelines.loop.scoring against the real store (DuckDB workspace) with real xgboost."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest

from hilt.pipelines.config import Settings, load_settings
from hilt.pipelines.errors import InputError, NotFoundError, PermissionDeniedError
from hilt.pipelines.loop.features import BIAS, training_frame
from hilt.pipelines.loop.model import TrainedModel, TrainParams, fit
from hilt.pipelines.loop.scoring import (
    demo_first_model,
    explanation_json,
    model_version_of,
    predictions_frame,
    score_into_queue,
    split_holdout,
    train_first_model,
)
from hilt.pipelines.store import Identity, Store, open_store_as
from hilt.pipelines.workspace import Workspace
from tests.conftest import CONFIG, StoreFactory, issue_tokens, operator, start_service
from tests.registry_helpers import approve_model


def auc(y: npt.NDArray[np.float64], scores: npt.NDArray[np.float64]) -> float:
    """Rank-based ROC AUC (Mann-Whitney U), ties counted half."""
    pos, neg = scores[y == 1.0], scores[y == 0.0]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def test_auc_helper() -> None:
    y = np.array([0.0, 0.0, 1.0, 1.0])
    assert auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5


@pytest.fixture
def full_store(workspace: Workspace, cases_frame: pl.DataFrame) -> Store:
    """All 1,000 demo cases, seed-labelled, no predictions yet."""
    op = operator(workspace)
    op.ingest_cases(cases_frame)
    return op


def lena(ws: Workspace) -> Store:
    """A lead of the demo config (who trains nothing here)."""
    return open_store_as(ws, Identity(name="lena"))


def small_model(store: Store, settings: Settings) -> TrainedModel:
    X, y = training_frame(store.case_frame(), settings)
    return fit(X, y, TrainParams(num_boost_round=30))


# ------------------------------------------------------------------ predictions_frame
def test_predictions_frame_is_taken_by_the_real_store(loaded_workspace: Workspace) -> None:
    settings = loaded_workspace.settings()
    store = operator(loaded_workspace)
    model = small_model(store, settings)
    cases = store.case_frame()
    frame = predictions_frame(model, cases, settings)

    assert frame.columns == ["case_id", "score", "label", "explanation"]
    assert frame.schema["score"] == pl.Float64
    assert frame["case_id"].to_list() == cases["case_id"].to_list()
    scores = frame["score"].to_numpy()
    assert ((scores >= 0) & (scores <= 1)).all()
    positive = settings.target.positive
    at = settings.review.decision_threshold
    assert [label == positive for label in frame["label"]] == [s >= at for s in scores]

    allowed = {*settings.fields.features, BIAS}
    for text in frame["explanation"]:
        parsed = json.loads(text)
        assert set(parsed) == allowed  # every feature, and only features (plus bias)
        assert text == json.dumps(parsed, sort_keys=True, separators=(",", ":"))
        assert all(round(v, 6) == v for v in parsed.values())
    # Rounded contributions still add up to the margin (to rounding).
    margin = model.margin(cases)
    sums = np.array([sum(json.loads(t).values()) for t in frame["explanation"]])
    np.testing.assert_allclose(sums, margin, atol=1e-4)

    approve_model(store, lena(loaded_workspace), "pytest-model/v1", model)
    result = store.add_predictions("pytest-model/v1", frame, model.model_sha256())
    assert result.kind == "predictions" and result.rows == cases.height
    case_id = cases["case_id"][0]
    stored = [
        p for p in store.get_case(case_id).predictions if p.model_version == "pytest-model/v1"
    ]
    assert len(stored) == 1
    assert stored[0].explanation == json.loads(frame["explanation"][0])
    assert stored[0].score == pytest.approx(frame["score"][0])
    assert stored[0].label == frame["label"][0]


def test_explanation_json_is_canonical() -> None:
    text = explanation_json({"b": -1e-9, "a": 0.12345678, BIAS: 1.0})
    assert text == '{"a":0.123457,"b":0.0,"bias":1.0}'
    with pytest.raises(Exception, match="non-finite"):
        explanation_json({"a": float("nan")})


# ------------------------------------------------------------------ split and first model
def test_split_holdout_is_deterministic_and_exact() -> None:
    ids = [f"case-{i:04d}" for i in range(1000)]
    rest, holdout = split_holdout(ids, 0.3)
    assert len(holdout) == 300 and len(rest) == 700
    assert set(rest).isdisjoint(holdout) and set(rest) | set(holdout) == set(ids)
    assert holdout == sorted(holdout)
    assert split_holdout(list(reversed(ids)), 0.3) == (rest, holdout)
    assert split_holdout(ids, 0.3, seed=1)[1] != holdout
    with pytest.raises(InputError):
        split_holdout(ids, 1.0)


def test_train_first_model_holds_out_the_review_batch(
    full_store: Store, workspace: Workspace
) -> None:
    settings = workspace.settings()
    model, review_ids = train_first_model(full_store, settings)
    assert len(review_ids) == 300
    assert model.train_rows == 700
    again, again_ids = train_first_model(full_store, settings)
    assert again_ids == review_ids
    assert again.model_sha256() == model.model_sha256()


def test_score_into_queue_refuses_unknown_and_empty(
    full_store: Store, workspace: Workspace
) -> None:
    settings = workspace.settings()
    model = small_model(full_store, settings)
    approve_model(full_store, lena(workspace), "m/v1", model)
    before = full_store.counts()
    ids = full_store.case_frame()["case_id"].head(3).to_list()
    with pytest.raises(NotFoundError, match="1 of 4 case ids are unknown"):
        score_into_queue(full_store, model, [*ids, "no-such-case"], settings, "m/v1")
    with pytest.raises(InputError, match="no case ids"):
        score_into_queue(full_store, model, [], settings, "m/v1")
    assert full_store.counts() == before
    result = score_into_queue(full_store, model, ids, settings, "m/v1")
    assert result.rows == 3


@pytest.mark.obligation("AI Act 15")
def test_score_into_queue_only_with_the_champion_it_presents(
    full_store: Store, workspace: Workspace
) -> None:
    """The store takes predictions only from its champion, proven by the model's sha256:
    another model presented as the champion, or a version never approved, is refused, the
    refusal audited, nothing else written."""
    settings = workspace.settings()
    model = small_model(full_store, settings)
    approve_model(full_store, lena(workspace), "m/v1", model)
    other = fit(*training_frame(full_store.case_frame().head(500), settings), TrainParams())
    ids = full_store.case_frame()["case_id"].head(3).to_list()
    for presented, version, why in (
        (other, "m/v1", "sha256 differs"),
        (model, "m/v2", "not a model registered"),
    ):
        before = full_store.counts()
        head = full_store.audit_head().seq
        with pytest.raises(PermissionDeniedError, match=why):
            score_into_queue(full_store, presented, ids, settings, version)
        after = full_store.counts()
        assert after == {**before, "audit_log": before["audit_log"] + 1}
        [refused] = full_store.audit_events(after_seq=head)
        assert (refused.action, refused.object_id) == ("model.use_refused", version)


def test_demo_first_model_fills_the_review_queue(
    full_store: Store, workspace: Workspace, tmp_path: Path
) -> None:
    settings = workspace.settings()
    models_dir = tmp_path / "models"
    first = demo_first_model(full_store, lena(workspace), settings, models_dir)

    assert re.fullmatch(r"demo-[0-9a-f]{12}/v1", first.model)
    saved = TrainedModel.load(first.path)
    assert f"{model_version_of(saved)}/v1" == first.model
    assert first.path == models_dir / model_version_of(saved)
    # Registered in the store (its gate passed) and approved by a lead: the champion.
    [record] = full_store.models()
    assert (record.model, record.state, record.gate) == (first.model, "champion", "passed")
    assert record.model_sha256 == saved.model_sha256() == first.model_sha256
    assert (record.author, record.decided_by) == (full_store.whoami().name, "lena")

    # Predictions of this version for 30 % of the labelled cases, nothing else.
    frame = full_store.case_frame()
    labelled = frame.filter(pl.col("seed_label").is_not_null())
    _, review_ids = train_first_model(full_store, settings)
    assert len(review_ids) == round(0.3 * labelled.height)
    assert full_store.counts()["predictions"] == len(review_ids)
    ingests = [e for e in full_store.audit_events() if e.action == "predictions.ingest"]
    assert [(e.object_id, e.payload["rows"]) for e in ingests] == [(first.model, len(review_ids))]
    assert full_store.queue_status().waiting == len(review_ids)
    trained_on = sorted(set(labelled["case_id"]) - set(review_ids))
    for cid in [*review_ids[:3], *trained_on[:3]]:
        versions = [p.model_version for p in full_store.get_case(cid).predictions]
        assert versions == ([first.model] if cid in review_ids else [])

    # Holdout AUC of the first model on German credit: the review batch was not trained on.
    batch = frame.filter(pl.col("case_id").is_in(review_ids))
    _, y = training_frame(batch, settings)
    holdout_auc = auc(y.to_numpy(), saved.predict(batch))
    print(f"first model holdout AUC on {batch.height} cases: {holdout_auc:.3f}")
    assert holdout_auc > 0.65

    # Deterministic: a re-run trains the same model and keeps the saved one.
    assert demo_first_model(full_store, lena(workspace), settings, models_dir) == first
    assert [p.name for p in models_dir.iterdir()] == [first.path.name]
    assert [m.model for m in full_store.models()] == [first.model]


def test_demo_first_model_is_for_a_store_without_a_champion(
    loaded_workspace: Workspace, tmp_path: Path
) -> None:
    before = operator(loaded_workspace).counts()
    with pytest.raises(InputError, match="has a champion already \\(test-model/v1\\)"):
        demo_first_model(
            operator(loaded_workspace),
            lena(loaded_workspace),
            loaded_workspace.settings(),
            tmp_path / "models",
        )
    assert operator(loaded_workspace).counts() == before


@pytest.fixture(params=["embedded", "service"])
def new_store_as(
    request: pytest.FixtureRequest, workspace: Workspace, cases_frame: pl.DataFrame
) -> Iterator[StoreFactory]:
    """The 1,000 demo cases, no model yet, in either mode: ``new_store_as("dana")``."""
    operator(workspace).ingest_cases(cases_frame)
    if request.param == "embedded":
        yield lambda name: open_store_as(workspace, Identity(name=name))
        return
    tokens = issue_tokens(workspace, workspace.settings())
    svc = start_service(workspace)
    try:
        yield lambda name: open_store_as(svc.url, Identity(token=tokens[name]))
    finally:
        svc.stop()


def test_demo_first_model_through_either_store_mode(
    new_store_as: StoreFactory, tmp_path: Path
) -> None:
    """Embedded and HTTP service: the same calls, the same data scientist and lead."""
    store = new_store_as("dana")
    settings = load_settings(CONFIG)
    first = demo_first_model(store, new_store_as("lena"), settings, tmp_path / "models")
    _, review_ids = train_first_model(store, settings)
    assert len(review_ids) == 300  # 30 % of the 1,000 seed-labelled cases
    case = store.get_case(review_ids[0])
    assert first.model in [p.model_version for p in case.predictions]
    assert set(case.predictions[-1].explanation) == {*settings.fields.features, BIAS}
    [record] = store.models()
    assert (record.author, record.decided_by, record.state) == ("dana", "lena", "champion")
