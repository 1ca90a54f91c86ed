"""Scoring: a model's predictions and explanations as the store takes them, and the demo's
first model.

- ``predictions_frame``: case_id, score, label, explanation, ready for
  ``Store.add_predictions``;
- ``score_into_queue``: read cases from the store, score them, add the predictions (the
  cases then wait in the review queue);
- ``train_first_model`` and ``demo_first_model``: until the retraining notebook produces a
  champion, ``hilt demo`` trains a first model on 70 % of the seed-labelled cases and puts
  the other 30 % in front of the reviewers.

Importing this module does not import xgboost (``hilt.pipelines.loop.model`` loads it on first use).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError, NotFoundError
from hilt.pipelines.loop.features import SEED_LABEL, ModelError, predicted_labels, training_frame
from hilt.pipelines.loop.model import TrainedModel, TrainParams, fit
from hilt.pipelines.store import Store
from hilt.pipelines.store.records import IngestResult

#: Decimal places kept of each contribution in a stored explanation.
EXPLANATION_DECIMALS = 6
#: Prefix of the demo model's version: "demo-" + the first 12 hex digits of its sha256.
DEMO_VERSION_PREFIX = "demo-"


def _canonical_number(x: float) -> float:
    r = round(float(x), EXPLANATION_DECIMALS)
    if not math.isfinite(r):
        raise ModelError("the model produced a non-finite contribution")
    return r + 0.0  # -0.0 → 0.0: one text per value


def explanation_json(contributions: dict[str, float]) -> str:
    """Canonical JSON text of one explanation: sorted keys, no spaces, 6 decimals."""
    rounded = {k: _canonical_number(v) for k, v in contributions.items()}
    return json.dumps(rounded, sort_keys=True, separators=(",", ":"), allow_nan=False)


def predictions_frame(model: TrainedModel, cases: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """case_id, score (probability of the positive class), label (by the decision
    threshold) and explanation (canonical JSON {feature: contribution, "bias": ...},
    log-odds) per case: what ``Store.add_predictions`` takes."""
    if "case_id" not in cases.columns:
        raise InputError("the cases frame has no column 'case_id'")
    scores, contributions = model.score_and_explain(cases)
    explanations = [explanation_json(row) for row in contributions.iter_rows(named=True)]
    return pl.DataFrame(
        {
            "case_id": cases["case_id"].cast(pl.String),
            "score": pl.Series(scores, dtype=pl.Float64),
            "label": pl.Series(predicted_labels(scores, settings), dtype=pl.String),
            "explanation": pl.Series(explanations, dtype=pl.String),
        }
    )


def split_holdout(
    case_ids: list[str], fraction: float, seed: int = 0
) -> tuple[list[str], list[str]]:
    """(rest, holdout): ``round(len * fraction)`` ids whose sha256(seed:id) ranks lowest.

    Deterministic, independent of the order of ``case_ids``; both lists sorted.
    """
    if not 0 < fraction < 1:
        raise InputError("holdout_fraction must be between 0 and 1")
    ids = sorted(set(case_ids))
    ranked = sorted(ids, key=lambda c: hashlib.sha256(f"{seed}:{c}".encode()).hexdigest())
    n_holdout = round(len(ids) * fraction)
    holdout = set(ranked[:n_holdout])
    return [c for c in ids if c not in holdout], [c for c in ids if c in holdout]


def train_first_model(
    store: Store,
    settings: Settings,
    *,
    holdout_fraction: float = 0.3,
    seed: int = 0,
    params: TrainParams | None = None,
) -> tuple[TrainedModel, list[str]]:
    """Fit a first model on the seed-labelled cases but a held-out share.

    Returns the model and the held-out case ids (sorted): the batch to review. The split is
    by hash of (seed, case id), so it does not depend on the store's row order.
    """
    frame = store.case_frame()
    labelled = frame.filter(pl.col(SEED_LABEL).is_not_null())
    if labelled.height < 10:
        raise InputError(
            f"the store holds {labelled.height} seed-labelled cases; a first model needs 10"
        )
    train_ids, review_ids = split_holdout(labelled["case_id"].to_list(), holdout_fraction, seed)
    train = labelled.filter(pl.col("case_id").is_in(train_ids))
    X, y = training_frame(train, settings, SEED_LABEL)
    return fit(X, y, params or TrainParams(seed=seed)), review_ids


def score_into_queue(
    store: Store,
    model: TrainedModel,
    case_ids: list[str],
    settings: Settings,
    model_version: str,
) -> IngestResult:
    """Score the named cases of the store with ``model`` and add the predictions as
    ``model_version``; the cases then wait in the review queue."""
    if not case_ids:
        raise InputError("no case ids to score")
    wanted = sorted(set(case_ids))
    cases = store.case_frame(wanted)
    if cases.height != len(wanted):
        raise NotFoundError(f"{len(wanted) - cases.height} of {len(wanted)} case ids are unknown")
    return store.add_predictions(model_version, predictions_frame(model, cases, settings))


def model_version_of(model: TrainedModel, prefix: str = DEMO_VERSION_PREFIX) -> str:
    """A version named by the model's content: prefix + the first 12 hex of its sha256."""
    return prefix + model.model_sha256()[:12]


def demo_first_model(store: Store, settings: Settings, models_dir: Path) -> str:
    """The demo's first model: train on 70 % of the seed-labelled cases, save it under
    ``models_dir/<version>/``, score the other 30 % into the review queue. Returns the
    version ("demo-" + 12 hex of the model's sha256).

    Training is deterministic, so a re-run finds the same version; an existing saved model
    of that version is kept if its hash matches (ModelError if it does not). Each call adds
    the batch's predictions again: call it once per workspace.
    """
    model, review_ids = train_first_model(store, settings)
    version = model_version_of(model)
    target = Path(models_dir) / version
    if target.exists() and any(target.iterdir()):
        saved = TrainedModel.load(target)
        if saved.model_sha256() != model.model_sha256():
            raise ModelError(f"{target}: holds a different model than the one just trained")
    else:
        model.save(target)
    score_into_queue(store, model, review_ids, settings, version)
    return version
