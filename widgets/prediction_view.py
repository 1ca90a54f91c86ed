"""PredictionView: what the model said about the case, and how far to trust it.

- the predicted class (by its label for people),
- the score with an uncertainty cue: a bar from 0 to 1 with the decision threshold marked,
  and an "uncertain" badge when the score lies within ``uncertain_margin`` of it,
- the top reason codes: the largest signed per-feature contributions as a small diverging
  bar chart (HTML/CSS only; green pushes towards the positive class, red away from it;
  the number and the side carry the sign too, so colour is never the only cue),
- an out-of-distribution badge naming the features whose value lies outside the range the
  model saw in training. Values themselves are not shown, only the feature and the range.

``hide()`` / ``reveal()`` serve blind-first review: while hidden, none of the model's output
is in the widget tree at all (not merely invisible), so the browser never receives it.
"""

from __future__ import annotations

import html
import math
from typing import Any

import ipywidgets as widgets
import traitlets

from hilt.widgets.protocols import FeatureRange, ReviewConfig, ReviewItem

#: Contribution keys that are not features (the model's base value).
NON_FEATURE_KEYS = frozenset({"bias"})

GREEN = "#15803d"
RED = "#b91c1c"
AMBER = "#b45309"
MUTED = "var(--jp-ui-font-color2, #6b7280)"

HIDDEN_TEXT = (
    "The model's output is hidden until you record your own judgement (blind-first review)."
)


def _badge(text: str, colour: str, title: str = "") -> str:
    title_attr = f' title="{html.escape(title)}"' if title else ""
    return (
        f'<span{title_attr} style="display:inline-block;padding:1px 8px;margin-right:6px;'
        f"border-radius:10px;border:1px solid {colour};color:{colour};font-size:0.85em;"
        f'line-height:1.3;font-weight:600">{html.escape(text)}</span>'
    )


def _number(x: float) -> str:
    return f"{x:g}"


def describe_range(rng: FeatureRange) -> str:
    """The training range in words (no case value in it)."""
    if rng.levels is not None:
        return "a category not seen in training"
    if rng.low is not None and rng.high is not None:
        return f"outside {_number(rng.low)} to {_number(rng.high)} seen in training"
    if rng.low is not None:
        return f"below {_number(rng.low)}, the lowest value seen in training"
    if rng.high is not None:
        return f"above {_number(rng.high)}, the highest value seen in training"
    return "outside the training range"


class PredictionView(widgets.VBox):
    """The model's prediction for the current case: ``show(item)``, ``hide()``, ``reveal()``."""

    #: Whether the model's output is in the tree (False in blind-first until the judgement).
    revealed = traitlets.Bool(True)
    #: |score - threshold| below this counts as uncertain.
    uncertain_margin = traitlets.Float(0.1)
    #: How many reason codes (largest |contribution|) to show.
    top_n = traitlets.Int(5)

    def __init__(self, config: ReviewConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.add_class("hilt-prediction")
        self._item: ReviewItem | None = None
        self._labels = {spec.name: spec.label for spec in config.display}
        self.summary = widgets.HTML()
        self.reasons = widgets.HTML()
        self.ood_badge = widgets.HTML()
        self.placeholder = widgets.HTML()
        self.observe(self._on_setting, names=["revealed", "uncertain_margin", "top_n"])
        self._compose()

    # ------------------------------------------------------------------ public API
    @property
    def item(self) -> ReviewItem | None:
        return self._item

    @property
    def model_visible(self) -> bool:
        """True when a prediction is currently on screen (for ``DecisionInput.model_shown``)."""
        item = self._item
        return (
            self.revealed
            and item is not None
            and (item.predicted_label is not None or item.score is not None)
        )

    def show(self, item: ReviewItem | None) -> None:
        self._item = item
        self._compose()

    def hide(self) -> None:
        self.revealed = False

    def reveal(self) -> None:
        self.revealed = True

    def label_for(self, feature: str) -> str:
        """The display label of a feature if the config has one, else its name."""
        return self._labels.get(feature, feature)

    def top_contributions(self, item: ReviewItem) -> list[tuple[str, float]]:
        """The ``top_n`` largest |contributions|, "bias" and non-finite values left out."""
        pairs: list[tuple[str, float]] = []
        for name, value in item.contributions.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if name not in NON_FEATURE_KEYS and math.isfinite(number):
                pairs.append((name, number))
        pairs.sort(key=lambda p: (-abs(p[1]), p[0]))
        return pairs[: max(self.top_n, 0)]

    def out_of_range(self, item: ReviewItem) -> list[str]:
        """Features whose value lies outside the training range, in config order."""
        return [
            feature
            for feature, rng in self.config.training_ranges.items()
            if feature in item.features and not rng.contains(item.features[feature])
        ]

    # ------------------------------------------------------------------ rendering
    def _on_setting(self, change: Any) -> None:
        self._compose()

    def _compose(self) -> None:
        item = self._item
        children: tuple[Any, ...] = ()
        if item is None:
            self._clear()
        elif not self.revealed:
            # Clear the content too: hidden means absent, not merely out of sight.
            self._clear()
            self.placeholder.value = (
                f'<div style="color:{MUTED};font-style:italic;padding:6px 0">'
                f"{html.escape(HIDDEN_TEXT)}</div>"
            )
            children = (self.placeholder,)
        else:
            self.placeholder.value = ""
            self.summary.value = self._summary_html(item)
            self.reasons.value = self._reasons_html(item)
            self.ood_badge.value = self._ood_html(item)
            children = tuple(w for w in (self.summary, self.ood_badge, self.reasons) if w.value)
        self.children = children

    def _clear(self) -> None:
        self.summary.value = ""
        self.reasons.value = ""
        self.ood_badge.value = ""

    def _summary_html(self, item: ReviewItem) -> str:
        if item.predicted_label is None and item.score is None:
            return f'<div style="color:{MUTED}">No model prediction for this case.</div>'
        parts = ['<div style="font-weight:600;margin-bottom:4px">Model prediction</div>']
        if item.predicted_label is not None:
            label = self.config.class_label(item.predicted_label)
            parts.append(
                f'<div style="font-size:1.15em">Predicted: <b>{html.escape(label)}</b></div>'
            )
        if item.score is not None and math.isfinite(item.score):
            parts.append(self._score_html(item.score))
        return "".join(parts)

    def _score_html(self, score: float) -> str:
        threshold = self.config.decision_threshold
        distance = abs(score - threshold)
        uncertain = distance < self.uncertain_margin
        positive = self.config.class_label(self.config.positive_class)
        cue = (
            _badge(
                "uncertain",
                AMBER,
                f"The score is within {self.uncertain_margin:.2f} of the decision threshold",
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

    def _reasons_html(self, item: ReviewItem) -> str:
        top = self.top_contributions(item)
        if not top:
            return ""
        biggest = max(abs(v) for _, v in top) or 1.0
        positive = html.escape(self.config.class_label(self.config.positive_class))
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
                f"{html.escape(self.label_for(name))}</td>"
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

    def _ood_html(self, item: ReviewItem) -> str:
        outside = self.out_of_range(item)
        if not outside:
            return ""
        entries = "; ".join(
            f"{self.label_for(f)} ({describe_range(self.config.training_ranges[f])})"
            for f in outside
        )
        return (
            f'<div style="margin:4px 0">{_badge("out of distribution", RED)}'
            f'<span style="color:{RED}">Outside the training data: {html.escape(entries)}. '
            "Trust the prediction less.</span></div>"
        )
