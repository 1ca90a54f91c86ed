"""Evaluation figures with matplotlib: ROC, calibration, feature importance, subgroups.

Figures are made with ``matplotlib.figure.Figure`` and an Agg canvas attached directly:
no pyplot, no ``matplotlib.use``, no GUI and no global figure registry, so building a
figure neither changes a Jupyter kernel's backend nor leaks memory in long runs. Every
figure also renders itself as PNG in Jupyter (``_repr_png_``), whatever backend is active.

The figures show aggregates only (curves, binned rates, group labels with counts, feature
names), never a case id or a row's values. Fonts: DejaVu Sans, which matplotlib ships;
nothing is fetched from the network.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.typing import RcKeyType

from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.evaluate import ArrayLike, calibration_bins, metrics, roc_points
from hilt.pipelines.loop.subgroups import max_subgroup_gap
from hilt.pipelines.store.gate import SUBGROUP_METRICS

#: Resolution of save_png / png_bytes: a (w, h)-inch figure becomes (100 w) by (100 h) px.
DPI = 100
#: Applied while a figure is built and while it is rendered; restored afterwards.
STYLE: dict[RcKeyType, Any] = {
    "font.family": ["DejaVu Sans"],
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
CHALLENGER_COLOR = "#1f77b4"
CHAMPION_COLOR = "#ff7f0e"
EXCLUDED_COLOR = "#bbbbbb"


@contextmanager
def _style() -> Iterator[None]:
    with mpl.rc_context(STYLE):
        yield


class EvaluationFigure(Figure):
    """A Figure with an Agg canvas that shows itself as PNG in Jupyter."""

    def _repr_png_(self) -> bytes:
        return png_bytes(self)


def _figure(figsize: tuple[float, float]) -> EvaluationFigure:
    fig = EvaluationFigure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _horizontal_bars(
    ax: Axes, items: Sequence[tuple[str, float]], *, empty: str, xlabel: str
) -> list[float]:
    """One horizontal bar per (label, value), the first item on top; ``empty`` in place of
    the axes when there are none. Returns the values, bottom to top."""
    if not items:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return []
    names = [label for label, _ in reversed(items)]
    values = [float(v) for _, v in reversed(items)]
    ax.barh(np.arange(len(names)), values, color=CHALLENGER_COLOR)
    ax.set_yticks(np.arange(len(names)), labels=names)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    return values


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes; identical figures give identical bytes (no timestamp)."""
    buf = io.BytesIO()
    with _style():
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def save_png(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write the figure to ``path`` as PNG (parent folders created, replaced atomically).
    Its size in pixels is the figure's size in inches times ``dpi``. Returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = png_bytes(fig, dpi)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# ---------------------------------------------------------------------------- ROC
def roc_curve_figure(
    y_true: ArrayLike,
    scores: ArrayLike,
    label: str = "challenger",
    *,
    champion_scores: ArrayLike | None = None,
    champion_label: str = "champion",
    title: str = "ROC curve",
    figsize: tuple[float, float] = (5.0, 5.0),
) -> EvaluationFigure:
    """The ROC curve of ``scores``; with ``champion_scores`` (the champion's scores on the
    same rows) both curves on one axes. The legend gives each model's AUC."""
    curves = [(label, scores, CHALLENGER_COLOR)]
    if champion_scores is not None:
        curves.append((champion_label, champion_scores, CHAMPION_COLOR))
    with _style():
        fig = _figure(figsize)
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1, label="chance")
        for name, s, color in curves:
            fpr, tpr = roc_points(y_true, s)
            auc = metrics(y_true, s)["auc"]
            ax.step(
                fpr, tpr, where="post", color=color, linewidth=1.8, label=f"{name} (AUC {auc:.3f})"
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(title)
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
    return fig


# ---------------------------------------------------------------------------- calibration
def calibration_figure(
    y_true: ArrayLike,
    scores: ArrayLike,
    bins: int = 10,
    *,
    label: str = "model",
    title: str = "Calibration",
    figsize: tuple[float, float] = (5.0, 6.0),
) -> EvaluationFigure:
    """Reliability diagram (observed positive rate against mean score, per equal-width
    score bin) above a histogram of the scores; the title gives the Brier score."""
    table = calibration_bins(y_true, scores, bins)
    brier = metrics(y_true, scores)["brier"]
    with _style():
        fig = _figure(figsize)
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
        top.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1, label="perfect")
        top.plot(
            table["mean_score"].to_numpy(),
            table["observed_rate"].to_numpy(),
            marker="o",
            color=CHALLENGER_COLOR,
            label=label,
        )
        top.set_xlim(0, 1)
        top.set_ylim(0, 1.01)
        top.set_ylabel("observed positive rate")
        top.set_title(f"{title} (Brier {brier:.3f}, {bins} bins)")
        top.legend(loc="upper left")
        top.grid(alpha=0.3)
        low = table["bin_low"].to_numpy()
        width = table["bin_high"].to_numpy() - low
        bottom.bar(
            low, table["n"].to_numpy(), width=width, align="edge", color=CHALLENGER_COLOR, alpha=0.6
        )
        bottom.set_xlabel("predicted probability of the positive class")
        bottom.set_ylabel("cases")
    return fig


# ---------------------------------------------------------------------------- importance
def feature_importance_figure(
    importance: Mapping[str, float],
    top: int = 15,
    *,
    title: str = "Feature importance (total gain)",
    figsize: tuple[float, float] = (6.0, 4.5),
) -> EvaluationFigure:
    """Horizontal bars of the ``top`` largest importances (e.g. from
    ``hilt.pipelines.loop.evaluate.feature_importance``), largest at the top."""
    if top < 1:
        raise InputError("top must be at least 1")
    bad = [k for k, v in importance.items() if not math.isfinite(float(v))]
    if bad:
        raise InputError(f"importance of {bad} is not a finite number")
    items = sorted(importance.items(), key=lambda kv: (-float(kv[1]), kv[0]))[:top]
    with _style():
        fig = _figure(figsize)
        ax = fig.add_subplot()
        _horizontal_bars(ax, items, empty="no features", xlabel="total gain")
        shown = f"top {len(items)} of {len(importance)}" if len(importance) > len(items) else ""
        ax.set_title(f"{title} {shown}".strip())
    return fig


# ---------------------------------------------------------------------------- subgroups
def subgroup_figure(
    table: pl.DataFrame,
    metric: str = "positive_rate",
    *,
    figsize: tuple[float, float] | None = None,
) -> EvaluationFigure:
    """One panel per protected attribute of a ``subgroup_metrics`` table: ``metric`` per
    group as horizontal bars, labelled "group (n=…)"; groups too small to compare are
    listed without a bar. Each panel's title gives the attribute's gap (max - min)."""
    if metric not in SUBGROUP_METRICS:
        raise InputError(f"metric must be one of {list(SUBGROUP_METRICS)}, not {metric!r}")
    needed = ["attribute", "group", "n", "included", metric]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InputError(f"not a subgroup_metrics table: it lacks {missing}")
    if table.height == 0:
        raise InputError("the subgroup table is empty")
    gaps = max_subgroup_gap(table, metric)
    attributes = list(gaps)
    if figsize is None:
        figsize = (6.0, 0.8 + 0.6 * len(attributes) + 0.35 * table.height)
    with _style():
        fig = _figure(figsize)
        axes: list[Axes] = []
        heights = [max(1, table.filter(pl.col("attribute") == a).height) for a in attributes]
        grid = fig.add_gridspec(len(attributes), 1, height_ratios=heights)
        for i, attribute in enumerate(attributes):
            ax = fig.add_subplot(grid[i, 0], sharex=axes[0] if axes else None)
            axes.append(ax)
            part = table.filter(pl.col("attribute") == attribute)
            groups = part["group"].to_list()[::-1]
            counts = part["n"].to_list()[::-1]
            included = part["included"].to_list()[::-1]
            values = part[metric].to_list()[::-1]
            y = np.arange(len(groups))
            for yi, v, inc in zip(range(len(groups)), values, included, strict=True):
                if inc and v is not None:
                    ax.barh(yi, v, color=CHALLENGER_COLOR)
                    ax.text(v, yi, f" {v:.2f}", va="center", fontsize=8)
                else:
                    why = "too small to compare" if not inc else "undefined"
                    ax.barh(yi, 0, color=EXCLUDED_COLOR)
                    ax.text(0.01, yi, f"({why})", va="center", fontsize=8, color="grey")
            ticks = [f"{g} (n={n})" for g, n in zip(groups, counts, strict=True)]
            ax.set_yticks(y, labels=ticks)
            gap = gaps[attribute]
            gap_text = "not measurable" if math.isnan(gap) else f"{gap:.3f}"
            ax.set_title(f"{attribute}: {metric} gap {gap_text}", loc="left")
            ax.set_xlim(0, 1.1)
            ax.grid(axis="x", alpha=0.3)
        axes[-1].set_xlabel(metric)
    return fig


# ---------------------------------------------------------------------------- simulation
def simulation_figure(
    rounds: Sequence[Mapping[str, Any]],
    strategy: str,
    *,
    figsize: tuple[float, float] = (6.0, 4.0),
) -> EvaluationFigure:
    """Holdout AUC after each round of a simulated review loop (``hilt simulate``); the
    x axis gives the round and, below it, how many cases reviewers had labelled by then."""
    xs = [int(r["round"]) for r in rounds]
    aucs = [float(r["auc"]) for r in rounds]
    reviewed = [int(r["reviewed"]) for r in rounds]
    with _style():
        fig = _figure(figsize)
        ax = fig.add_subplot()
        ax.plot(xs, aucs, marker="o", color=CHALLENGER_COLOR, linewidth=1.8)
        for x, auc in zip(xs, aucs, strict=True):
            ax.annotate(
                f"{auc:.3f}",
                (x, auc),
                textcoords="offset points",
                xytext=(0, 7),
                ha="center",
                fontsize=8,
            )
        ax.set_xticks(xs, [f"{x}\n({n} reviewed)" for x, n in zip(xs, reviewed, strict=True)])
        ax.set_xlabel("round")
        ax.set_ylabel("holdout AUC")
        ax.set_title(f"Feedback loop, {strategy} sampling")
        ax.grid(alpha=0.3)
    return fig


#: Per strategy of ``hilt simulate --strategy``: its colour.
STRATEGY_COLORS: dict[str, str] = {"uncertainty": CHALLENGER_COLOR, "random": CHAMPION_COLOR}


def strategies_figure(
    series: Sequence[tuple[str, Sequence[int], Sequence[int], Sequence[float], Sequence[float]]],
    seeds: int,
    *,
    figsize: tuple[float, float] = (6.5, 4.2),
) -> EvaluationFigure:
    """Holdout AUC per round for several sampling strategies over ``seeds`` seeds: per
    strategy (name, rounds, reviewed, mean, spread) the mean as a line and mean ± spread as
    a band; the x axis gives the round and how many cases reviewers had labelled by then."""
    if not series:
        raise InputError("no strategy to plot")
    with _style():
        fig = _figure(figsize)
        ax = fig.add_subplot()
        for name, rounds, _, mean, spread in series:
            colour = STRATEGY_COLORS.get(name, EXCLUDED_COLOR)
            xs = np.asarray(rounds, dtype=float)
            mid = np.asarray(mean, dtype=float)
            band = np.asarray(spread, dtype=float)
            ax.plot(xs, mid, marker="o", color=colour, linewidth=1.8, label=name)
            ax.fill_between(xs, mid - band, mid + band, color=colour, alpha=0.2, linewidth=0)
        _, rounds, reviewed, _, _ = series[0]
        ax.set_xticks(
            list(rounds), [f"{x}\n({n} reviewed)" for x, n in zip(rounds, reviewed, strict=True)]
        )
        ax.set_xlabel("round")
        ax.set_ylabel("holdout AUC")
        ax.set_title(f"Feedback loop by sampling strategy (mean ± sd over {seeds} seeds)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    return fig


# ---------------------------------------------------------------------------- auditing
#: Action families of the audit log and their colours (the first word of an action).
ACTION_FAMILIES: dict[str, str] = {
    "decision": "#1f77b4",
    "case": "#9467bd",
    "cases": "#8c564b",
    "predictions": "#17becf",
    "snapshot": "#bcbd22",
    "run": "#ff7f0e",
    "model": "#2ca02c",
    "audit": "#7f7f7f",
    "system": "#d62728",
}
OTHER_COLOR = "#c7c7c7"


def audit_activity_figure(
    by_day: Mapping[str, int],
    by_action: Mapping[str, int],
    *,
    title: str = "Events matching the filter",
    figsize: tuple[float, float] = (8.0, 2.6),
) -> EvaluationFigure:
    """What an audit-log filter matches: events per UTC day (bars) and per action
    (horizontal bars, coloured by family). Counts only, no event content."""
    with _style():
        fig = _figure(figsize)
        left, right = fig.subplots(1, 2, width_ratios=[3, 2])
        days = list(by_day)
        left.bar(range(len(days)), [by_day[d] for d in days], color=CHALLENGER_COLOR)
        step = max(1, len(days) // 8)
        left.set_xticks(range(0, len(days), step), [days[i] for i in range(0, len(days), step)])
        left.tick_params(axis="x", labelrotation=30, labelsize=7)
        left.set_ylabel("events")
        left.set_title(f"{title}, per day (UTC)", loc="left")
        left.grid(axis="y", alpha=0.3)
        actions = sorted(by_action, key=lambda a: (-by_action[a], a))[:12][::-1]
        colours = [ACTION_FAMILIES.get(a.split(".")[0], OTHER_COLOR) for a in actions]
        right.barh(range(len(actions)), [by_action[a] for a in actions], color=colours)
        right.set_yticks(range(len(actions)), actions, fontsize=7)
        right.set_title("per action", loc="left")
        right.grid(axis="x", alpha=0.3)
        if not days:
            left.text(0.5, 0.5, "no events", ha="center", va="center", transform=left.transAxes)
    return fig


def label_sources_figure(
    counts: Mapping[str, int],
    *,
    title: str = "Training rows by label source",
    figsize: tuple[float, float] = (6.0, 1.9),
) -> EvaluationFigure:
    """One stacked bar: training rows whose label came with the data, was accepted by a
    reviewer unchanged, or was corrected by a reviewer. Counts only."""
    colours = {
        "original": "#7f7f7f",
        "reviewer-accepted": "#1f77b4",
        "reviewer-corrected": "#ff7f0e",
    }
    with _style():
        fig = _figure(figsize)
        ax = fig.add_subplot()
        start = 0
        for source, n in counts.items():
            ax.barh(
                0, n, left=start, color=colours.get(source, OTHER_COLOR), label=f"{source} ({n})"
            )
            start += n
        ax.set_yticks([])
        ax.set_xlabel("rows")
        ax.set_title(title, loc="left")
        fig.legend(loc="outside lower center", ncol=3, frameon=False)
    return fig


def metric_history_figure(
    versions: Sequence[str],
    values: Mapping[str, Sequence[float]],
    *,
    highlight: str | None = None,
    title: str = "Holdout metrics per model version",
    figsize: tuple[float, float] = (6.0, 3.0),
) -> EvaluationFigure:
    """Each metric (a line) over the registered versions in order; ``highlight`` marks the
    version a document is about. NaN points are left out."""
    with _style():
        fig = _figure(figsize)
        ax = fig.add_subplot()
        xs = list(range(len(versions)))
        for name, series in values.items():
            pts = [(x, v) for x, v in zip(xs, series, strict=True) if not math.isnan(v)]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        if highlight is not None and highlight in versions:
            ax.axvline(versions.index(highlight), color="grey", linestyle=":", linewidth=1)
        ax.set_xticks(xs, [f"v{v}" for v in versions])
        ax.set_xlabel("registered version")
        ax.set_title(title, loc="left")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    return fig


def comparison_figure(
    metric_rows: Sequence[tuple[str, float | None, float | None]],
    group_rows: Sequence[tuple[str, float | None, float | None]],
    *,
    challenger_label: str = "challenger",
    champion_label: str = "champion",
    figsize: tuple[float, float] | None = None,
) -> EvaluationFigure:
    """Two panels: holdout metrics (name, challenger, champion) as paired bars, and the
    selection rate per protected group (label, challenger, champion) as paired bars."""
    panels = [("Holdout metrics", metric_rows), ("Selection rate per group", group_rows)]
    panels = [(t, rows) for t, rows in panels if rows]
    if figsize is None:
        figsize = (6.5, 0.8 + sum(0.9 + 0.45 * len(rows) for _, rows in panels))
    with _style():
        fig = _figure(figsize)
        if not panels:
            ax = fig.add_subplot()
            ax.text(0.5, 0.5, "nothing to compare", ha="center", va="center")
            ax.set_axis_off()
            return fig
        grid = fig.add_gridspec(len(panels), 1, height_ratios=[len(r) + 1 for _, r in panels])
        for i, (title, rows) in enumerate(panels):
            ax = fig.add_subplot(grid[i, 0])
            y = np.arange(len(rows))[::-1]
            h = 0.38
            for offset, values, label, color in (
                (h / 2, [r[1] for r in rows], challenger_label, CHALLENGER_COLOR),
                (-h / 2, [r[2] for r in rows], champion_label, CHAMPION_COLOR),
            ):
                ax.barh(
                    y + offset,
                    [0.0 if v is None or not math.isfinite(v) else v for v in values],
                    height=h,
                    color=color,
                    label=label,
                )
            ax.set_yticks(y, labels=[r[0] for r in rows])
            ax.set_xlim(0, 1.05)
            ax.set_title(title, loc="left")
            ax.grid(axis="x", alpha=0.3)
            if i == 0:
                ax.legend(loc="lower right", fontsize=8)
    return fig
