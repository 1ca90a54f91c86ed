"""The explanation of a prediction as a reviewer sees it: a pure function of stored data.

EU AI Act Art. 86 gives the person concerned a right to an explanation of the decision,
and an auditor must be able to show it exactly as it was when the reviewer decided. So the
HTML fragment of the prediction view is rendered here, by ``render_explanation``, from two
things only:

- the stored prediction: predicted class, score and per-feature contributions (the
  ``predictions`` row, immutable and covered by its batch's digest);
- the presentation context (``ExplanationContext``): the renderer version, the decision
  threshold, the uncertainty margin, how many reasons are shown, the labels of the classes
  and features that appear, and which features were outside the training range (names and
  ranges, never a case's values).

The review session records the fragment's sha256 and the context with the decision (in its
audit event, in the same transaction); the audit dashboard renders the fragment again from
the stored prediction and the recorded context and compares the hashes. Same input, same
bytes: no dict order, locale, clock or random number enters the output.

RULE: the output of a released renderer never changes. To change how explanations look,
add a new ``RENDERER`` version and keep the old one rendering exactly as before, so that
every recorded decision can still be re-rendered byte for byte.
"""

from __future__ import annotations

import hashlib
import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: The one renderer version this module implements (see the RULE above).
RENDERER = "hilt-explanation/1"
#: Contribution keys that are not features (the model's base value).
NON_FEATURE_KEYS = frozenset({"bias"})

# The fragment's colours, written out here on purpose and not taken from the dashboards'
# palette (hilt.widgets.common.colours): the fragment is hashed when a reviewer decides and
# must re-render byte for byte for every past decision under RENDERER, whatever later
# happens to the dashboards' colours (GREEN here is not the palette's green); and contracts/
# stays pure, so it cannot import common/ (which loads ipywidgets). New colours: a new
# renderer version.
GREEN = "#15803d"
RED = "#b91c1c"
AMBER = "#b45309"
MUTED = "var(--jp-ui-font-color2, #6b7280)"


@dataclass(frozen=True)
class OutOfRange:
    """A feature whose value lay outside what the model saw in training (no value)."""

    feature: str
    low: float | None = None
    high: float | None = None
    #: A category not seen in training (then low and high are None).
    category: bool = False


@dataclass(frozen=True)
class ExplanationContext:
    """Everything the fragment depends on besides the stored prediction."""

    threshold: float
    uncertain_margin: float
    top_n: int
    positive_class: str
    #: Class code → label, for the classes the fragment names.
    class_labels: Mapping[str, str] = field(default_factory=dict)
    #: Feature → label, for the features the fragment names.
    feature_labels: Mapping[str, str] = field(default_factory=dict)
    out_of_range: tuple[OutOfRange, ...] = ()
    renderer: str = RENDERER

    def to_dict(self) -> dict[str, Any]:
        """The context as JSON-ready data (what is recorded with the decision)."""
        return {
            "renderer": self.renderer,
            "threshold": self.threshold,
            "uncertain_margin": self.uncertain_margin,
            "top_n": self.top_n,
            "positive_class": self.positive_class,
            "class_labels": dict(sorted(self.class_labels.items())),
            "feature_labels": dict(sorted(self.feature_labels.items())),
            "out_of_range": [
                {"feature": o.feature, "low": o.low, "high": o.high, "category": o.category}
                for o in self.out_of_range
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExplanationContext:
        """The inverse of ``to_dict``; ValueError naming what is wrong."""
        try:
            ranges = tuple(
                OutOfRange(
                    feature=str(o["feature"]),
                    low=None if o.get("low") is None else float(o["low"]),
                    high=None if o.get("high") is None else float(o["high"]),
                    category=bool(o.get("category", False)),
                )
                for o in data.get("out_of_range", [])
            )
            return cls(
                renderer=str(data["renderer"]),
                threshold=float(data["threshold"]),
                uncertain_margin=float(data["uncertain_margin"]),
                top_n=int(data["top_n"]),
                positive_class=str(data["positive_class"]),
                class_labels={str(k): str(v) for k, v in data.get("class_labels", {}).items()},
                feature_labels={str(k): str(v) for k, v in data.get("feature_labels", {}).items()},
                out_of_range=ranges,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"not an explanation context ({type(e).__name__}: {e})") from None

    def class_label(self, cls: str) -> str:
        return self.class_labels.get(cls, cls)

    def feature_label(self, feature: str) -> str:
        return self.feature_labels.get(feature, feature)


@dataclass(frozen=True)
class StoredPrediction:
    """The parts of a stored prediction that the explanation shows."""

    predicted_label: str | None
    score: float | None
    contributions: Mapping[str, float]


@dataclass(frozen=True)
class RenderedExplanation:
    """The fragment in its three parts, as the prediction view shows them (empty parts are
    left out of the view); ``html`` is their concatenation, and what ``sha256`` covers."""

    summary: str
    ood: str
    reasons: str

    @property
    def html(self) -> str:
        return self.summary + self.ood + self.reasons

    @property
    def sha256(self) -> str:
        return explanation_sha256(self.html)


def explanation_sha256(fragment: str) -> str:
    return hashlib.sha256(fragment.encode("utf-8")).hexdigest()


def top_contributions(contributions: Mapping[str, Any], top_n: int) -> list[tuple[str, float]]:
    """The ``top_n`` largest |contributions|, "bias" and non-finite values left out; ties
    by feature name."""
    pairs: list[tuple[str, float]] = []
    for name, value in contributions.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if name not in NON_FEATURE_KEYS and math.isfinite(number):
            pairs.append((name, number))
    pairs.sort(key=lambda p: (-abs(p[1]), p[0]))
    return pairs[: max(top_n, 0)]


def _badge(text: str, colour: str, title: str = "") -> str:
    title_attr = f' title="{html.escape(title)}"' if title else ""
    return (
        f'<span{title_attr} style="display:inline-block;padding:1px 8px;margin-right:6px;'
        f"border-radius:10px;border:1px solid {colour};color:{colour};font-size:0.85em;"
        f'line-height:1.3;font-weight:600">{html.escape(text)}</span>'
    )


def _number(x: float) -> str:
    return f"{x:g}"


def describe_range(low: float | None, high: float | None, category: bool) -> str:
    """The training range in words (no case value in it)."""
    if category:
        return "a category not seen in training"
    if low is not None and high is not None:
        return f"outside {_number(low)} to {_number(high)} seen in training"
    if low is not None:
        return f"below {_number(low)}, the lowest value seen in training"
    if high is not None:
        return f"above {_number(high)}, the highest value seen in training"
    return "outside the training range"


def _score_html(score: float, ctx: ExplanationContext) -> str:
    threshold = ctx.threshold
    distance = abs(score - threshold)
    uncertain = distance < ctx.uncertain_margin
    positive = ctx.class_label(ctx.positive_class)
    cue = (
        _badge(
            "uncertain",
            AMBER,
            f"The score is within {ctx.uncertain_margin:.2f} of the decision threshold",
        )
        if uncertain
        else _badge("clear", MUTED, "The score is far from the decision threshold")
    )
    s = min(max(score, 0.0), 1.0) * 100
    t = min(max(threshold, 0.0), 1.0) * 100
    left, width = min(s, t), abs(s - t)
    colour = AMBER if uncertain else MUTED
    track = (
        f'<div role="img" aria-label="score {score:.2f}, threshold {threshold:.2f}" '
        'style="position:relative;height:10px;width:240px;max-width:100%;'
        'background:var(--jp-layout-color3, #e5e7eb);border-radius:5px;margin:4px 0">'
        f'<div style="position:absolute;left:{left:.1f}%;width:{width:.1f}%;top:0;'
        f'height:10px;background:{colour};opacity:0.45"></div>'
        f'<div title="decision threshold {threshold:.2f}" style="position:absolute;'
        f'left:{t:.1f}%;top:-3px;height:16px;width:2px;background:#111827"></div>'
        f'<div title="score {score:.2f}" style="position:absolute;left:calc({s:.1f}% - 5px);'
        f'top:0;height:10px;width:10px;border-radius:5px;background:{colour}"></div></div>'
    )
    return (
        f"<div>Score <b>{score:.2f}</b> "
        f'<span style="color:{MUTED}">(probability of {html.escape(positive)}; '
        f"threshold {threshold:.2f}, distance {distance:.2f})</span> {cue}</div>{track}"
    )


def _summary_html(pred: StoredPrediction, ctx: ExplanationContext) -> str:
    if pred.predicted_label is None and pred.score is None:
        return f'<div style="color:{MUTED}">No model prediction for this case.</div>'
    parts = ['<div style="font-weight:600;margin-bottom:4px">Model prediction</div>']
    if pred.predicted_label is not None:
        label = ctx.class_label(pred.predicted_label)
        parts.append(f'<div style="font-size:1.15em">Predicted: <b>{html.escape(label)}</b></div>')
    if pred.score is not None and math.isfinite(pred.score):
        parts.append(_score_html(pred.score, ctx))
    return "".join(parts)


def _reasons_html(pred: StoredPrediction, ctx: ExplanationContext) -> str:
    top = top_contributions(pred.contributions, ctx.top_n)
    if not top:
        return ""
    biggest = max(abs(v) for _, v in top) or 1.0
    positive = html.escape(ctx.class_label(ctx.positive_class))
    rows = []
    for name, value in top:
        pct = abs(value) / biggest * 100
        bar_colour = GREEN if value >= 0 else RED
        bar = (
            f'<div style="height:10px;width:{pct:.1f}%;background:{bar_colour};'
            f'border-radius:2px;{"margin-left:auto;" if value < 0 else ""}"></div>'
        )
        neg_cell = bar if value < 0 else ""
        pos_cell = bar if value >= 0 else ""
        rows.append(
            "<tr>"
            f'<td style="padding:1px 8px 1px 0;white-space:nowrap">'
            f"{html.escape(ctx.feature_label(name))}</td>"
            f'<td style="width:90px;padding:1px 0;border-right:1px solid {MUTED}">'
            f"{neg_cell}</td>"
            f'<td style="width:90px;padding:1px 0">{pos_cell}</td>'
            f'<td style="padding:1px 0 1px 8px;text-align:right;color:{bar_colour};'
            f'font-variant-numeric:tabular-nums">{value:+.2f}</td>'
            "</tr>"
        )
    return (
        '<div style="font-weight:600;margin:6px 0 2px">Top reasons</div>'
        f'<div style="color:{MUTED};font-size:0.85em">'
        f'<span style="color:{RED}">◀ away from {positive}</span> · '
        f'<span style="color:{GREEN}">towards {positive} ▶</span></div>'
        f'<table style="border-collapse:collapse;margin-bottom:8px">{"".join(rows)}</table>'
    )


def _ood_html(ctx: ExplanationContext) -> str:
    if not ctx.out_of_range:
        return ""
    entries = "; ".join(
        f"{ctx.feature_label(o.feature)} ({describe_range(o.low, o.high, o.category)})"
        for o in ctx.out_of_range
    )
    return (
        f'<div style="margin:4px 0">{_badge("out of distribution", RED)}'
        f'<span style="color:{RED}">Outside the training data: {html.escape(entries)}. '
        "Trust the prediction less.</span></div>"
    )


def render_explanation(pred: StoredPrediction, ctx: ExplanationContext) -> RenderedExplanation:
    """The explanation fragment of ``pred`` under ``ctx``; ValueError for a renderer version
    this code does not implement."""
    if ctx.renderer != RENDERER:
        raise ValueError(f"unknown explanation renderer {ctx.renderer!r} (this is {RENDERER})")
    return RenderedExplanation(
        summary=_summary_html(pred, ctx),
        ood=_ood_html(ctx),
        reasons=_reasons_html(pred, ctx),
    )


def used_labels(
    pred: StoredPrediction,
    ctx_top_n: int,
    out_of_range: tuple[OutOfRange, ...],
    positive_class: str,
    class_label: Mapping[str, str],
    feature_label: Mapping[str, str],
) -> tuple[dict[str, str], dict[str, str]]:
    """(class labels, feature labels) that the fragment of ``pred`` names: the context a
    review session records holds these and no others."""
    classes = {positive_class}
    if pred.predicted_label is not None:
        classes.add(pred.predicted_label)
    features = {name for name, _ in top_contributions(pred.contributions, ctx_top_n)}
    features |= {o.feature for o in out_of_range}
    return (
        {c: class_label.get(c, c) for c in sorted(classes)},
        {f: feature_label.get(f, f) for f in sorted(features)},
    )
