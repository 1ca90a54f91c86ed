"""What more than one dashboard uses: who is looking, the refusal shown instead of a
dashboard, and a case as a reviewer may see it with the use case's review settings (the
review panel shows cases, and so does the oversight lead's adjudication queue).

Pure records: no ipywidgets, nothing from ``hilt.pipelines``; ``hilt.pipelines`` builds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldSpec:
    """A column a reviewer may see (data minimisation: only these are ever shown)."""

    name: str
    label: str
    #: Python format string for the value, e.g. "{:,.0f} DM"; None: str(value).
    format: str | None = None


@dataclass(frozen=True)
class FeatureRange:
    """What the model saw in training: numeric bounds or the categories seen."""

    low: float | None = None
    high: float | None = None
    levels: tuple[str, ...] | None = None

    def contains(self, value: Any) -> bool:
        if value is None:
            return True
        if self.levels is not None:
            return str(value) in self.levels
        try:
            v = float(value)
        except (TypeError, ValueError):
            return False
        return (self.low is None or v >= self.low) and (self.high is None or v <= self.high)


@dataclass(frozen=True)
class ReviewConfig:
    """What the review panel needs to know about the use case."""

    use_case: str
    #: The target classes as stored ("1", "0") and their names for people.
    classes: tuple[str, ...]
    class_labels: dict[str, str]
    positive_class: str
    decision_threshold: float
    #: Override reason codes: code → explanation.
    reason_codes: dict[str, str]
    comment_required: bool
    max_comment_length: int
    blind_first: bool
    display: tuple[FieldSpec, ...]
    #: Feature → training range, for the out-of-distribution badge.
    training_ranges: dict[str, FeatureRange] = field(default_factory=dict)

    def class_label(self, cls: str) -> str:
        return self.class_labels.get(cls, cls)


@dataclass(frozen=True)
class Reviewer:
    name: str
    roles: tuple[str, ...]
    #: Why the store could not prove who this is (single-person mode); None: proven.
    unproven: str | None = None


@dataclass(frozen=True)
class ReviewItem:
    """One leased case, as the reviewer may see it."""

    case_id: str
    #: Display-field values only (what ReviewConfig.display allows), unformatted.
    values: dict[str, Any]
    #: Feature values used for the out-of-distribution check (never displayed as such).
    features: dict[str, Any]
    prediction_id: int | None
    model_version: str | None
    score: float | None
    predicted_label: str | None
    #: Signed per-feature contributions to the score, from the stored explanation.
    contributions: dict[str, float]
    lease_expires_at: str
    #: The subject asked for human review (GDPR Art. 22): always served first.
    contested: bool = False
    #: Another reviewer flagged it and asked for a second opinion.
    second_opinion: bool = False
    #: This reviewer's own blind judgement, if already recorded (blind-first mode).
    blind_label: str | None = None


@dataclass(frozen=True)
class Refusal:
    """Why a dashboard is not shown to this person (shown instead of any panel)."""

    title: str
    message: str
