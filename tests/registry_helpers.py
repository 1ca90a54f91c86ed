"""Helpers for tests that need a model in the store's registry: a real trained model (its
sha256) registered with a stand-in evaluation and approved by a lead, so that it may score
into the review queue; and a version that is not the champion.

(``tests.conftest.approve_stand_in`` does the same for a stand-in whose sha256 is that of its
name; this takes the sha256 of a real model.)
"""

from __future__ import annotations

from hilt.pipelines.loop.model import TrainedModel
from hilt.pipelines.store import Store
from hilt.pipelines.store.registry_records import ModelEvaluation, ModelRecord
from tests.conftest import STAND_IN_METRICS


def stand_in_evaluation(store: Store, snapshot_sha256: str | None = None) -> ModelEvaluation:
    """An evaluation that passes the demo config's gate, on the snapshot ``snapshot_sha256``
    (default: one the store makes now), compared with the store's current champion (equal
    metrics)."""
    sha = snapshot_sha256 or store.snapshot().sha256
    champion = next((m.model for m in store.models() if m.state == "champion"), None)
    return ModelEvaluation(
        snapshot_sha256=sha,
        metrics=dict(STAND_IN_METRICS),
        gaps={"sex": 0.0, "age": 0.0},
        champion=champion,
        champion_metrics=dict(STAND_IN_METRICS) if champion else None,
    )


def register(
    author: Store, model: str, sha256: str, snapshot_sha256: str | None = None
) -> ModelRecord:
    """``model`` registered by ``author`` (a data scientist or admin): the challenger."""
    evaluation = stand_in_evaluation(author, snapshot_sha256)
    return author.register_model(model, sha256, f"run-of-{model}", evaluation)


def approve(
    author: Store, lead: Store, model: str, sha256: str, snapshot_sha256: str | None = None
) -> ModelRecord:
    """``model`` registered by ``author`` and approved by ``lead``: the champion."""
    register(author, model, sha256, snapshot_sha256)
    return lead.promote_model(model)


def approve_model(
    author: Store,
    lead: Store,
    model: str,
    trained: TrainedModel,
    snapshot_sha256: str | None = None,
) -> ModelRecord:
    """The real ``trained`` model, registered as ``model`` and approved: it may score."""
    return approve(author, lead, model, trained.model_sha256(), snapshot_sha256)
