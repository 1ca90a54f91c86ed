"""hilt.pipelines.loop.model on the German credit demo data: real xgboost, real DuckDB store."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from hilt.pipelines.config import Settings, load_settings, parse_settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.features import (
    BIAS,
    ModelError,
    TrainingRange,
    binary_classes,
    predicted_labels,
    training_frame,
)
from hilt.pipelines.loop.model import MODEL_FILE, SIDECAR_FILE, TrainedModel, TrainParams, fit
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.workspace import Workspace
from tests.conftest import CONFIG, operator


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(CONFIG)


@pytest.fixture(scope="module")
def german(tmp_path_factory: pytest.TempPathFactory, cases_frame: pl.DataFrame) -> pl.DataFrame:
    """All 1,000 demo cases as the real store returns them (Store.case_frame)."""
    ws = Workspace.at(tmp_path_factory.mktemp("model") / "ws")
    create_workspace(ws, CONFIG)
    op = operator(ws)
    op.ingest_cases(cases_frame)
    return op.case_frame()


@pytest.fixture(scope="module")
def model(german: pl.DataFrame, settings: Settings) -> TrainedModel:
    return fit(*training_frame(german.head(700), settings))


def numeric_features(settings: Settings) -> list[str]:
    return [f for f in settings.fields.features if settings.columns[f].type in ("int", "float")]


def category_features(settings: Settings) -> list[str]:
    return [f for f in settings.fields.features if settings.columns[f].type == "category"]


def with_threshold(settings: Settings, threshold: float) -> Settings:
    review = settings.review.model_copy(update={"decision_threshold": threshold})
    return settings.model_copy(update={"review": review})


# ------------------------------------------------------------------ training frame
def test_training_frame_types_follow_the_config(german: pl.DataFrame, settings: Settings) -> None:
    X, y = training_frame(german, settings)
    assert X.columns == settings.fields.features
    for name in settings.fields.features:
        col = settings.columns[name]
        if col.type == "category":
            assert X.schema[name] == pl.Enum(col.levels or [])
        else:
            assert X.schema[name] == pl.Float64
    assert X.height == y.len() == german.height
    assert y.dtype == pl.Float64
    positive = settings.target.positive
    assert y.to_list() == [1.0 if v == positive else 0.0 for v in german["seed_label"]]


def test_training_frame_drops_unlabelled_rows(german: pl.DataFrame, settings: Settings) -> None:
    frame = german.head(50).with_columns(
        pl.when(pl.int_range(pl.len()) % 5 == 0)
        .then(None)
        .otherwise(pl.col("seed_label"))
        .alias("seed_label")
    )
    X, y = training_frame(frame, settings)
    assert X.height == y.len() == 40


def test_training_frame_takes_another_label_column(
    german: pl.DataFrame, settings: Settings
) -> None:
    frame = german.head(20).with_columns(pl.col("seed_label").alias("final_label"))
    frame = frame.drop("seed_label")
    _, y = training_frame(frame, settings, label_column="final_label")
    assert y.len() == 20
    with pytest.raises(InputError, match="no label column 'seed_label'"):
        training_frame(frame, settings)


def test_training_frame_refuses_unknown_labels(german: pl.DataFrame, settings: Settings) -> None:
    frame = german.head(10).with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(pl.lit("secret-label-xyz"))
        .otherwise(pl.col("seed_label"))
        .alias("seed_label")
    )
    with pytest.raises(InputError) as err:
        training_frame(frame, settings)
    assert "rows 4" in str(err.value)
    assert "secret-label-xyz" not in str(err.value)


def test_text_input_gives_the_same_matrix_and_model(
    german: pl.DataFrame, cases_frame: pl.DataFrame, settings: Settings
) -> None:
    """The CSV as text (what `hilt ingest` reads) encodes to the same matrix."""
    text = cases_frame.rename(
        {settings.use_case.id_column: "case_id", settings.target.column: "seed_label"}
    ).sort("case_id")
    X_text, y_text = training_frame(text, settings)
    X, y = training_frame(german, settings)
    assert X_text.equals(X)
    assert y_text.equals(y)
    params = TrainParams(num_boost_round=20)
    assert fit(X_text, y_text, params).model_sha256() == fit(X, y, params).model_sha256()


def test_unknown_level_is_refused_without_its_value(
    german: pl.DataFrame, settings: Settings, model: TrainedModel
) -> None:
    name = category_features(settings)[0]
    frame = german.head(5).with_columns(
        pl.when(pl.int_range(pl.len()) == 1)
        .then(pl.lit("secret-level-xyz"))
        .otherwise(pl.col(name))
        .alias(name)
    )
    with pytest.raises(InputError) as err:
        model.predict(frame)
    assert name in str(err.value) and "rows 2" in str(err.value)
    assert "secret-level-xyz" not in str(err.value)
    with pytest.raises(InputError, match="not numbers"):
        model.predict(
            german.head(3).with_columns(pl.lit("n/a").alias(numeric_features(settings)[0]))
        )


def test_the_matrix_encodes_to_itself_and_other_enums_are_still_checked(
    german: pl.DataFrame, settings: Settings, model: TrainedModel
) -> None:
    """The training matrix is already the model's matrix (encoded once, not again); an
    Enum with other levels is checked level by level, as text is."""
    X, _ = training_frame(german, settings)
    assert model.matrix(X).equals(X)
    name = category_features(settings)[0]
    wider = pl.Enum([*model.levels[name], "secret-level-xyz"])
    head = X.head(5).with_columns(pl.col(name).cast(pl.String).cast(wider))
    assert model.matrix(head).equals(X.head(5))
    odd = head.with_columns(
        pl.when(pl.int_range(pl.len()) == 1)
        .then(pl.lit("secret-level-xyz"))
        .otherwise(pl.col(name).cast(pl.String))
        .cast(wider)
        .alias(name)
    )
    with pytest.raises(InputError) as err:
        model.predict(odd)
    assert name in str(err.value) and "rows 2" in str(err.value)


def test_a_string_feature_is_refused(settings: Settings) -> None:
    data = tomllib.loads(CONFIG.read_text())
    feature = numeric_features(settings)[0]
    data["columns"][feature] = {"type": "string"}
    data.get("notice", {}).get("actionable", {}).pop(feature, None)  # (numbers only there)
    with pytest.raises(ModelError, match=f"feature '{feature}' has type 'string'"):
        training_frame(pl.DataFrame(), parse_settings(data, "test"))


# ------------------------------------------------------------------ determinism
@pytest.mark.obligation("AI Act 17")
def test_same_params_same_rows_give_a_byte_identical_model(
    german: pl.DataFrame, settings: Settings, model: TrainedModel
) -> None:
    X, y = training_frame(german.head(700), settings)
    again = fit(X, y)
    assert again.model_bytes() == model.model_bytes()
    assert again.model_sha256() == model.model_sha256()
    assert len(model.model_sha256()) == 64

    # One label flipped → another model.
    flipped = y.scatter(17, 1.0 - y[17])
    assert fit(X, flipped).model_sha256() != model.model_sha256()
    # One feature value changed → another model.
    feature = numeric_features(settings)[0]
    changed = X.with_columns(X[feature].scatter(17, X[feature][17] + 7.0))
    assert fit(changed, y).model_sha256() != model.model_sha256()
    # Another seed → another model (subsampling).
    assert fit(X, y, TrainParams(seed=1)).model_sha256() != model.model_sha256()


# ------------------------------------------------------------------ predict and explain
def test_contributions_sum_to_the_margin(german: pl.DataFrame, model: TrainedModel) -> None:
    cases = german.slice(700, 300)
    contrib = model.contributions(cases)
    assert contrib.columns == [*model.features, BIAS]
    margin = model.margin(cases)
    np.testing.assert_allclose(contrib.sum_horizontal().to_numpy(), margin, atol=1e-4)
    scores = model.predict(cases)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-margin)), atol=1e-6)
    assert scores.shape == (300,) and ((scores > 0) & (scores < 1)).all()

    explained = model.explain(cases.head(3))
    assert [set(e) for e in explained] == [{*model.features, BIAS}] * 3
    for e, m in zip(explained, margin[:3], strict=True):
        assert sum(e.values()) == pytest.approx(m, abs=1e-4)
    # The bias is the same for every row (the model's expected margin).
    assert contrib[BIAS].n_unique() == 1


def test_score_and_explain_agree_with_predict_and_contributions(
    german: pl.DataFrame, model: TrainedModel
) -> None:
    cases = german.slice(700, 50)
    scores, contrib = model.score_and_explain(cases)
    np.testing.assert_array_equal(scores, model.predict(cases))
    assert contrib.equals(model.contributions(cases))
    empty_scores, empty_contrib = model.score_and_explain(cases.head(0))
    assert empty_scores.shape == (0,) and empty_contrib.height == 0


def test_columns_are_taken_by_name_not_position(german: pl.DataFrame, model: TrainedModel) -> None:
    cases = german.slice(700, 40)
    shuffled = cases.select(list(reversed(cases.columns)))
    np.testing.assert_array_equal(model.predict(shuffled), model.predict(cases))


def test_predicted_label_by_threshold(settings: Settings) -> None:
    positive, negative = binary_classes(settings)
    assert {positive, negative} == set(settings.target.classes)
    assert positive == settings.target.positive
    at = settings.review.decision_threshold
    assert predicted_labels([at, at - 1e-9, 0.0, 1.0], settings) == [
        positive,
        negative,
        negative,
        positive,
    ]
    strict = with_threshold(settings, 0.8)
    assert predicted_labels(np.array([0.79, 0.8, 0.81]), strict) == [negative, positive, positive]


def test_more_than_two_classes_is_a_clear_error(settings: Settings) -> None:
    data = tomllib.loads(CONFIG.read_text())
    data["target"]["classes"] = [*data["target"]["classes"], "2"]
    three = parse_settings(data, "test")
    with pytest.raises(ModelError, match=r"binary targets only; target\.classes has 3 classes"):
        predicted_labels([0.5], three)
    with pytest.raises(ModelError, match="binary targets only"):
        training_frame(pl.DataFrame(), three)


# ------------------------------------------------------------------ training ranges
def test_training_ranges_describe_the_training_rows(
    german: pl.DataFrame, settings: Settings
) -> None:
    category = category_features(settings)[-1]
    dropped = (settings.columns[category].levels or [])[0]
    train = german.filter(pl.col(category) != dropped)
    m = fit(*training_frame(train, settings), TrainParams(num_boost_round=10))
    assert list(m.training_ranges) == settings.fields.features
    for name in numeric_features(settings):
        assert m.training_ranges[name] == TrainingRange(
            low=float(train[name].min()),  # type: ignore[arg-type]
            high=float(train[name].max()),  # type: ignore[arg-type]
        )
    for name in category_features(settings):
        levels = settings.columns[name].levels or []
        seen = set(train[name].to_list())
        assert m.training_ranges[name] == TrainingRange(
            levels=tuple(v for v in levels if v in seen)
        )
    assert dropped not in (m.training_ranges[category].levels or ())
    # The level stays known to the model (the codes come from the config) and is scored.
    assert m.levels[category] == tuple(settings.columns[category].levels or [])
    assert m.predict(german.filter(pl.col(category) == dropped)).shape[0] > 0
    assert (m.train_rows, m.train_positives) == (
        train.height,
        train.filter(pl.col("seed_label") == settings.target.positive).height,
    )


# ------------------------------------------------------------------ persistence
def test_save_and_load_round_trip(
    german: pl.DataFrame, model: TrainedModel, tmp_path: Path
) -> None:
    path = model.save(tmp_path / "models" / "m1")
    assert sorted(p.name for p in path.iterdir()) == sorted([MODEL_FILE, SIDECAR_FILE])
    loaded = TrainedModel.load(path)
    assert loaded.model_sha256() == model.model_sha256()
    cases = german.slice(700, 300)
    np.testing.assert_array_equal(loaded.predict(cases), model.predict(cases))
    assert loaded.contributions(cases).equals(model.contributions(cases))
    assert loaded.features == model.features
    assert loaded.levels == model.levels
    assert loaded.kinds == model.kinds
    assert loaded.training_ranges == model.training_ranges
    assert loaded.params == model.params
    assert (loaded.train_rows, loaded.train_positives) == (
        model.train_rows,
        model.train_positives,
    )

    sidecar = json.loads((path / SIDECAR_FILE).read_text())
    assert sidecar["model_sha256"] == model.model_sha256()
    assert sidecar["params"] == model.params.to_dict()

    with pytest.raises(ModelError, match="already saved"):
        model.save(path)


@pytest.mark.obligation("AI Act 15")
def test_a_tampered_model_file_is_refused(model: TrainedModel, tmp_path: Path) -> None:
    path = model.save(tmp_path / "m")
    raw = bytearray((path / MODEL_FILE).read_bytes())
    raw[-10] ^= 1
    (path / MODEL_FILE).write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="sha256 does not match"):
        TrainedModel.load(path)
    with pytest.raises(ModelError, match="no saved model"):
        TrainedModel.load(tmp_path / "nothing")


# ------------------------------------------------------------------ parameters
def test_params_are_validated_before_any_data() -> None:
    with pytest.raises(InputError, match="max_depth must be between 1 and 32"):
        TrainParams(max_depth=0)
    with pytest.raises(InputError, match="eta must be in"):
        TrainParams(eta=0.0)
    with pytest.raises(InputError, match="max_depth must be an integer"):
        TrainParams(max_depth=2.5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="unknown \\['depth'\\]"):
        TrainParams.from_mapping({"depth": 3})
    with pytest.raises(InputError, match="num_boost_round must be an integer"):
        TrainParams.from_mapping({"num_boost_round": "many"})
    p = TrainParams.from_mapping({"max_depth": "4", "eta": "0.1", "subsample": 1})
    assert (p.max_depth, p.eta, p.subsample) == (4, 0.1, 1.0)
    assert isinstance(p.subsample, float)
    assert TrainParams.from_mapping(p.to_dict()) == p


def test_importing_model_and_scoring_does_not_import_xgboost() -> None:
    code = (
        "import sys, hilt.pipelines.loop.model, hilt.pipelines.loop.scoring;"
        " print('xgboost' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


_FIT_IN_A_FRESH_PROCESS = """
import sys
import polars as pl
if sys.argv[2] == "sklearn-first":
    import sklearn  # noqa: F401
from hilt.pipelines.loop.model import fit
X = pl.read_ipc(sys.argv[1] + "/X.arrow")
y = pl.read_ipc(sys.argv[1] + "/y.arrow")["y"]
sha = fit(X, y).model_sha256()
print(sha, "sklearn" in sys.modules, sys.modules.get("sklearn", 0) is None)
import sklearn.base  # still importable after xgboost was
print(sklearn.base.BaseEstimator.__name__)
"""


def test_xgboost_is_imported_without_sklearn_and_trains_the_same_model(
    german: pl.DataFrame, settings: Settings, model: TrainedModel, tmp_path: Path
) -> None:
    """``load_xgboost`` keeps scikit-learn out of xgboost's import (~1 s of every kernel),
    leaves it importable, and the model's bytes are those of an xgboost that did import it."""
    X, y = training_frame(german.head(700), settings)
    X.write_ipc(tmp_path / "X.arrow")
    pl.DataFrame({"y": y}).write_ipc(tmp_path / "y.arrow")
    outputs = {}
    for mode in ("without", "sklearn-first"):
        out = subprocess.run(
            [sys.executable, "-c", _FIT_IN_A_FRESH_PROCESS, str(tmp_path), mode],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        outputs[mode] = out.stdout.split()
    sha, loaded, halted, base = outputs["without"]
    assert (loaded, halted, base) == ("False", "False", "BaseEstimator")
    assert outputs["sklearn-first"] == [sha, "True", "False", "BaseEstimator"]
    assert sha == model.model_sha256()


def test_bool_features_are_0_and_1(german: pl.DataFrame, settings: Settings) -> None:
    """No bool column in the demo config: add one and check its encoding and range."""
    data = tomllib.loads(CONFIG.read_text())
    data["columns"]["has_guarantor"] = {"type": "bool"}
    data["fields"]["features"].append("has_guarantor")
    with_bool = parse_settings(data, "test")
    flags = [["true", "false", "1", "0", None][i % 5] for i in range(german.height)]
    frame = german.with_columns(pl.Series("has_guarantor", flags))
    X, y = training_frame(frame, with_bool)
    assert X.schema["has_guarantor"] == pl.Int8
    assert X["has_guarantor"].head(5).to_list() == [1, 0, 1, 0, None]
    m = fit(X, y, TrainParams(num_boost_round=10))
    assert m.kinds["has_guarantor"] == "bool"
    assert m.training_ranges["has_guarantor"] == TrainingRange(low=0.0, high=1.0)
    as_bool = frame.with_columns(
        pl.col("has_guarantor").replace_strict(
            {"true": True, "1": True, "false": False, "0": False}, return_dtype=pl.Boolean
        )
    )
    np.testing.assert_array_equal(m.predict(as_bool), m.predict(frame))
    with pytest.raises(InputError, match="are not true/false"):
        m.predict(frame.with_columns(pl.lit("maybe").alias("has_guarantor")))
