"""PredictionView: what the model said about the case, and how far to trust it.

- the predicted class (by its label for people),
- the score with an uncertainty cue: a bar from 0 to 1 with the decision threshold marked,
  and an "uncertain" badge when the score lies within ``uncertain_margin`` of it,
- the top reason codes: the largest signed per-feature contributions as a small diverging
  bar chart (HTML/CSS only; green pushes towards the positive class, red away from it;
  the number and the side carry the sign too, so colour is never the only cue),
- an out-of-distribution badge naming the features whose value lies outside the range the
  model saw in training. Values themselves are not shown, only the feature and the range.

The HTML is made by ``hilt.widgets.contracts.explanation.render_explanation``, a pure function of
the stored prediction and a small presentation context, so that what the reviewer saw can be
rendered again byte for byte from the records (EU AI Act Art. 86): ``shown_explanation()``
gives its sha256 and context for the decision record.

``hide()`` / ``reveal()`` serve blind-first review: while hidden, none of the model's output
is in the widget tree at all (not merely invisible), so the browser never receives it.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
import traitlets

from hilt.widgets.common.colours import MUTED
from hilt.widgets.contracts.common import ReviewConfig, ReviewItem
from hilt.widgets.contracts.explanation import (
    ExplanationContext,
    OutOfRange,
    RenderedExplanation,
    StoredPrediction,
    render_explanation,
    top_contributions,
    used_labels,
)
from hilt.widgets.contracts.review import ShownExplanation

HIDDEN_TEXT = (
    "The model's output is hidden until you record your own judgement (blind-first review)."
)


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
        self._rendered: tuple[ExplanationContext, RenderedExplanation] | None = None
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
        return top_contributions(item.contributions, self.top_n)

    def out_of_range(self, item: ReviewItem) -> list[str]:
        """Features whose value lies outside the training range, in config order."""
        return [
            feature
            for feature, rng in self.config.training_ranges.items()
            if feature in item.features and not rng.contains(item.features[feature])
        ]

    def explanation_context(self, item: ReviewItem) -> ExplanationContext:
        """The presentation context of ``item``'s explanation under the current settings."""
        ranges = tuple(
            OutOfRange(
                feature=f,
                low=self.config.training_ranges[f].low,
                high=self.config.training_ranges[f].high,
                category=self.config.training_ranges[f].levels is not None,
            )
            for f in self.out_of_range(item)
        )
        classes, features = used_labels(
            self._stored(item),
            self.top_n,
            ranges,
            self.config.positive_class,
            self.config.class_labels,
            self._labels,
        )
        return ExplanationContext(
            threshold=self.config.decision_threshold,
            uncertain_margin=self.uncertain_margin,
            top_n=self.top_n,
            positive_class=self.config.positive_class,
            class_labels=classes,
            feature_labels=features,
            out_of_range=ranges,
        )

    def shown_explanation(self) -> ShownExplanation | None:
        """The sha256 and context of the explanation on screen, or None when no model
        output is shown (hidden, or no prediction)."""
        if not self.model_visible or self._rendered is None:
            return None
        context, rendered = self._rendered
        return ShownExplanation(sha256=rendered.sha256, context=context.to_dict())

    # ------------------------------------------------------------------ rendering
    @staticmethod
    def _stored(item: ReviewItem) -> StoredPrediction:
        return StoredPrediction(
            predicted_label=item.predicted_label,
            score=item.score,
            contributions=item.contributions,
        )

    def _on_setting(self, change: Any) -> None:
        self._compose()

    def _compose(self) -> None:
        item = self._item
        children: tuple[Any, ...] = ()
        self._rendered = None
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
            context = self.explanation_context(item)
            rendered = render_explanation(self._stored(item), context)
            self._rendered = (context, rendered)
            self.summary.value = rendered.summary
            self.reasons.value = rendered.reasons
            self.ood_badge.value = rendered.ood
            children = tuple(w for w in (self.summary, self.ood_badge, self.reasons) if w.value)
        self.children = children

    def _clear(self) -> None:
        self.summary.value = ""
        self.reasons.value = ""
        self.ood_badge.value = ""
