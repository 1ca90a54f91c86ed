"""The store's model registry as it crosses its boundary: what a training run reports
(the evaluation the store applies its gate to), the gate's checks, a model version and
its state. Scoring and promotion obey these records, not MLflow.

They are pydantic models so that the HTTP service and its client share one definition and
the OpenAPI document describes them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hilt.pipelines.store.record_base import Record

ModelState = Literal["challenger", "champion", "rejected", "retired", "superseded"]


class ModelEvaluation(Record):
    """What a training run reports when it registers a model: the holdout evaluation the
    store applies the gate to. Metrics are the evaluation's (NaN as null)."""

    #: sha256 of the training snapshot the model was trained and evaluated on (a snapshot
    #: the store made).
    snapshot_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    #: The challenger's holdout metrics (auc, accuracy, brier, ...).
    metrics: dict[str, float | None]
    #: The largest subgroup gap per protected attribute.
    gaps: dict[str, float | None]
    #: The champion compared with on the same holdout (None: there was none) and its metrics.
    champion: str | None = None
    champion_metrics: dict[str, float | None] | None = None


class GateCheckRecord(Record):
    name: str
    passed: bool
    value: float | None
    limit: float | None
    explanation: str


class ModelRecord(Record):
    """A model version as the store's registry holds it; scoring and promotion obey this."""

    #: "<registered name>/v<version>", as predictions name it.
    model: str
    model_sha256: str
    run_id: str
    #: Who registered it (the run's author).
    author: str
    #: The store's own gate verdict on the reported evaluation.
    gate: Literal["passed", "rejected"]
    checks: list[GateCheckRecord]
    evaluation: ModelEvaluation
    state: ModelState
    #: A lead allowed it to score in the shadow (never queued for review).
    shadow: bool
    registered_at: str
    registered_seq: int
    #: The lead who promoted or rejected it (None: not decided by a lead).
    decided_by: str | None
    decided_seq: int | None
