"""hilt.pipelines.loop.plots: real figures of a real xgboost model on the demo data, rendered to
PNG, with no row-level data in their text."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from hilt.pipelines.config import Settings, load_settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.evaluate import feature_importance
from hilt.pipelines.loop.features import training_frame
from hilt.pipelines.loop.model import TrainedModel, TrainParams, fit
from hilt.pipelines.loop.plots import (
    DPI,
    EvaluationFigure,
    calibration_figure,
    feature_importance_figure,
    png_bytes,
    roc_curve_figure,
    save_png,
    subgroup_figure,
)
from hilt.pipelines.loop.subgroups import protected_groups, subgroup_metrics
from tests.conftest import CONFIG

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(CONFIG)


@pytest.fixture(scope="module")
def holdout_and_models(
    cases_frame: pl.DataFrame, settings: Settings
) -> tuple[pl.DataFrame, pl.Series, TrainedModel, TrainedModel]:
    """A fixed 70/30 split; a challenger and a (shallower) champion trained on the 70 %."""
    perm = np.random.default_rng(0).permutation(cases_frame.height)
    cut = int(0.7 * cases_frame.height)
    train, holdout = cases_frame[perm[:cut]], cases_frame[perm[cut:]]
    label = settings.target.column
    X, y = training_frame(train, settings, label_column=label)
    _, y_holdout = training_frame(holdout, settings, label_column=label)
    challenger = fit(X, y)
    champion = fit(X, y, TrainParams(max_depth=2, num_boost_round=50))
    return holdout, y_holdout, challenger, champion


@pytest.fixture(scope="module")
def figures(
    holdout_and_models: tuple[pl.DataFrame, pl.Series, TrainedModel, TrainedModel],
    settings: Settings,
) -> dict[str, Figure]:
    holdout, y, challenger, champion = holdout_and_models
    scores = challenger.predict(holdout)
    table = subgroup_metrics(
        y, scores, settings.review.decision_threshold, protected_groups(holdout, settings)
    )
    return {
        "roc": roc_curve_figure(y, scores, "challenger", champion_scores=champion.predict(holdout)),
        "calibration": calibration_figure(y, scores, bins=10),
        "importance": feature_importance_figure(feature_importance(challenger), top=5),
        "subgroups": subgroup_figure(table, "positive_rate"),
        "subgroups_tpr": subgroup_figure(table, "tpr"),
    }


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


@pytest.mark.parametrize("name", ["roc", "calibration", "importance", "subgroups", "subgroups_tpr"])
def test_figures_render_to_png_of_the_right_size(
    name: str, figures: dict[str, Figure], tmp_path: Path
) -> None:
    fig = figures[name]
    path = save_png(fig, tmp_path / "plots" / f"{name}.png")
    data = path.read_bytes()
    assert len(data) > 5_000
    w_in, h_in = fig.get_size_inches()
    assert png_size(data) == (round(w_in * DPI), round(h_in * DPI))
    assert png_size(save_png(fig, tmp_path / "hi.png", dpi=200).read_bytes()) == (
        round(w_in * 200),
        round(h_in * 200),
    )
    assert not list((tmp_path / "plots").glob(".*"))  # no temporary file left behind


@pytest.mark.parametrize("name", ["roc", "calibration", "importance", "subgroups"])
def test_figures_show_no_row_level_data(
    name: str,
    figures: dict[str, Figure],
    holdout_and_models: tuple[pl.DataFrame, pl.Series, TrainedModel, TrainedModel],
    settings: Settings,
) -> None:
    fig = figures[name]
    png_bytes(fig)  # draw: tick labels exist only after a draw
    shown = texts(fig)
    assert shown
    holdout = holdout_and_models[0]
    ids = {str(v) for v in holdout[settings.use_case.id_column].to_list()}
    if settings.use_case.subject_column:
        ids |= {str(v) for v in holdout[settings.use_case.subject_column].to_list()}
    leaked = [t for t in shown if any(i in t for i in ids)]
    assert leaked == []


def test_roc_figure_compares_challenger_and_champion(figures: dict[str, Figure]) -> None:
    (ax,) = figures["roc"].axes
    legend = ax.get_legend()
    assert legend is not None
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[0] == "chance"
    assert labels[1].startswith("challenger (AUC 0.") and labels[2].startswith("champion (AUC 0.")


def test_subgroup_figure_has_one_panel_per_attribute_with_counts(
    figures: dict[str, Figure], settings: Settings
) -> None:
    fig = figures["subgroups"]
    png_bytes(fig)
    assert len(fig.axes) == len(settings.fields.protected)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert [t.split(":")[0] for t in titles] == settings.fields.protected
    assert all("positive_rate gap 0." in t for t in titles)
    ticks = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()]
    assert ticks and all("(n=" in t for t in ticks)


def test_importance_figure_shows_the_top_features(
    figures: dict[str, Figure],
    holdout_and_models: tuple[pl.DataFrame, pl.Series, TrainedModel, TrainedModel],
) -> None:
    model = holdout_and_models[2]
    fig = figures["importance"]
    png_bytes(fig)
    (ax,) = fig.axes
    names = [t.get_text() for t in ax.get_yticklabels()]
    expected = list(feature_importance(model))[:5]
    assert names == expected[::-1]  # largest at the top
    assert ax.get_title().endswith(f"top 5 of {len(model.features)}")


def test_png_is_deterministic_and_shown_in_jupyter(figures: dict[str, Figure]) -> None:
    fig = figures["calibration"]
    assert png_bytes(fig) == png_bytes(fig)
    assert isinstance(fig, EvaluationFigure)
    assert fig._repr_png_()[:8] == PNG_SIGNATURE


def test_figures_refuse_bad_input() -> None:
    with pytest.raises(InputError, match="metric must be one of"):
        subgroup_figure(pl.DataFrame({"attribute": ["a"]}), "n")
    with pytest.raises(InputError, match="lacks"):
        subgroup_figure(pl.DataFrame({"attribute": ["a"]}), "tpr")
    with pytest.raises(InputError, match="both classes"):
        roc_curve_figure([1, 1], [0.2, 0.9])
    with pytest.raises(InputError, match="top must be"):
        feature_importance_figure({"a": 1.0}, top=0)


def test_plots_use_neither_pyplot_nor_a_global_backend(tmp_path: Path) -> None:
    """Building and saving figures loads no pyplot, so a Jupyter kernel keeps its backend."""
    code = f"""
import sys
import matplotlib
# Reading rcParams["backend"] would resolve it (and import pyplot); peek at the raw value.
before = dict.__getitem__(matplotlib.rcParams, "backend")
from hilt.pipelines.loop.plots import feature_importance_figure, save_png
save_png(feature_importance_figure({{"f1": 2.0, "f2": 1.0}}), {str(tmp_path / "f.png")!r})
assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
assert dict.__getitem__(matplotlib.rcParams, "backend") is before
assert matplotlib.rcParams["font.size"] == matplotlib.rcParamsDefault["font.size"]
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert (tmp_path / "f.png").stat().st_size > 1000
