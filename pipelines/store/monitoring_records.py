"""The records of post-market monitoring (EU AI Act Art. 72) that cross the store's boundary:
the statistics a monitoring run computes (``loop/monitoring.py``), the verdict the store
gives on them (``ops/monitoring.py``), and a batch of outcomes recorded.

Aggregates only: counts, rates, statistics per feature name; never a case's value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["warning", "breach", "serious"]
Worst = Literal["none", "warning", "breach", "serious"]
#: The order of severities, for the worst of a run.
SEVERITY_ORDER: tuple[Worst, ...] = ("none", "warning", "breach", "serious")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class FeatureStatistics(_Record):
    feature: str = Field(min_length=1, max_length=64)
    kind: Literal["number", "category"]
    test: Literal["ks", "chi-square"]
    #: Population stability index over the bins of training.
    psi: float = Field(ge=0.0)
    #: The test's statistic (KS D, chi-square) and its p-value.
    statistic: float = Field(ge=0.0)
    p_value: float = Field(ge=0.0, le=1.0)
    missing_rate_training: float = Field(ge=0.0, le=1.0)
    missing_rate: float = Field(ge=0.0, le=1.0)
    #: Categories: share of the window's values in levels training never had.
    unseen_share: float = Field(default=0.0, ge=0.0, le=1.0)


class EstimatedPerformance(_Record):
    """What the calibrated probabilities expect before outcomes arrive."""

    cases: int = Field(ge=0)
    positive_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    accuracy: float | None = Field(default=None, ge=0.0, le=1.0)


class MonitoringStatistics(_Record):
    """A monitoring run's figures, as computed from the window's cases and the champion's
    training snapshot. No thresholds: the store applies those of its own config."""

    model_version: str = Field(min_length=1, max_length=128)
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    window_days: int = Field(ge=1, le=3650)
    #: Cases the champion scored in the window (the store counts them again itself).
    cases: int = Field(ge=0)
    training_rows: int = Field(ge=0)
    features: list[FeatureStatistics] = Field(max_length=1000)
    score_psi: float = Field(ge=0.0)
    estimated: EstimatedPerformance
    estimated_training: EstimatedPerformance


class BreachRecord(_Record):
    """One finding of a monitoring run: which check, on what, the value and the threshold
    it crossed (the store's), how severe."""

    check: str
    #: The feature, or the model version (rates, realised performance); None: the scores.
    feature: str | None
    statistic: str
    value: float
    threshold: float
    severity: Severity


class RateRecord(_Record):
    """The reviewers' final decisions on one model version's predictions in the window."""

    model_version: str
    #: The week (its Monday, UTC, YYYY-MM-DD) of a week-by-week rate; None: the window.
    week: str | None = None
    decisions: int
    accept_rate: float | None
    override_rate: float | None


class RealisedRecord(_Record):
    """One model version's predictions against the outcomes recorded for their cases."""

    model_version: str
    outcomes: int
    auc: float | None
    accuracy: float | None


class MonitoringVerdict(_Record):
    """The store's verdict on a monitoring run (event ``monitoring.run``)."""

    run_id: str
    seq: int
    ts: str
    window_days: int
    #: Cases the champion scored in the window, as the store counts them.
    cases: int
    model_version: str
    worst: Worst
    breaches: list[BreachRecord]
    rates: list[RateRecord]
    realised: list[RealisedRecord]
    #: The same rates week by week (over time, per model version).
    weekly_rates: list[RateRecord] = []
    notebook: str | None = None
    #: The incident a serious finding opened (or added a note to), EU AI Act Art. 73.
    incident: str | None = None

    @property
    def breached(self) -> bool:
        """A threshold was crossed (breach or serious): `hilt monitor` exits 5."""
        return self.worst in ("breach", "serious")


class OutcomesResult(_Record):
    """A batch of outcomes recorded (event ``outcome.recorded``)."""

    rows: int
    seq: int
    digest: str
    #: Per outcome class, how many.
    by_class: dict[str, int]
