"""Scoring: a model's predictions and explanations as the store takes them, and the demo's
first model.

- ``predictions_frame``: case_id, score, label, explanation, ready for
  ``Store.add_predictions``;
- ``score_into_queue``: read cases from the store, score them, add the predictions (the
  cases then wait in the review queue);
- ``train_first_model`` and ``demo_first_model``: a first model trained on 70 % of the
  seed-labelled cases, registered in the store and approved by a lead, that puts the other
  30 % in front of the reviewers (for tests and benchmarks that need a real champion
  without the retraining notebook).

Importing this module does not import xgboost (``hilt.pipelines.loop.model`` loads it on first use).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError, NotFoundError
from hilt.pipelines.loop.features import SEED_LABEL, ModelError, predicted_labels, training_frame
from hilt.pipelines.loop.model import TrainedModel, TrainParams, fit
from hilt.pipelines.store import Store
from hilt.pipelines.store.case_records import IngestResult

#: Decimal places kept of each contribution in a stored explanation.
EXPLANATION_DECIMALS = 6
#: Prefix of the demo model's name: "demo-" + the first 12 hex digits of its sha256.
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
    ``model_version`` (the store's champion, proven by the model's sha256); the cases then
    wait in the review queue."""
    if not case_ids:
        raise InputError("no case ids to score")
    wanted = sorted(set(case_ids))
    cases = store.case_frame(wanted)
    if cases.height != len(wanted):
        raise NotFoundError(f"{len(wanted) - cases.height} of {len(wanted)} case ids are unknown")
    frame = predictions_frame(model, cases, settings)
    return store.add_predictions(model_version, frame, model.model_sha256())


def model_version_of(model: TrainedModel, prefix: str = DEMO_VERSION_PREFIX) -> str:
    """A name made of the model's content: prefix + the first 12 hex of its sha256."""
    return prefix + model.model_sha256()[:12]


@dataclass(frozen=True)
class FirstModel:
    """The demo's first model, registered in the store and approved by a lead."""

    #: "demo-<12 hex of its sha256>/v1": the champion of the store's registry.
    model: str
    model_sha256: str
    #: Where it is saved (``TrainedModel.load``).
    path: Path


def demo_first_model(
    author: Store, lead: Store, settings: Settings, models_dir: Path
) -> FirstModel:
    """The demo's first model: train on 70 % of the seed-labelled cases, save it under
    ``models_dir/<name>/``, register it in the store's model registry as ``author`` (a data
    scientist or admin) with its evaluation on a snapshot the store makes, have ``lead`` (a
    lead who did not train it) approve it, and score the other 30 % into the review queue.

    A stand-in until the retraining notebook makes a champion (for tests and benchmarks
    that need a real model; `hilt demo` runs the real loop): the store applies its gate to
    the evaluation, on the store's holdout, which overlaps the cases this model was trained
    on, so its metrics are optimistic. The store must have no champion yet, or this very
    model (InputError otherwise).

    Training is deterministic, so a re-run finds the same model, already registered and
    approved; an existing saved model of that name is kept if its hash matches (ModelError
    if it does not). Each call adds the batch's predictions again: call it once per
    workspace."""
    from hilt.pipelines.loop.model_registry import champion
    from hilt.pipelines.loop.steps.holdout import evaluate
    from hilt.pipelines.loop.steps.training_data import load_dataset, take_snapshot
    from hilt.pipelines.store.registry_records import ModelEvaluation

    model, review_ids = train_first_model(author, settings)
    name = model_version_of(model)
    label = f"{name}/v1"
    sha = model.model_sha256()
    target = Path(models_dir) / name
    if target.exists() and any(target.iterdir()):
        saved = TrainedModel.load(target)
        if saved.model_sha256() != sha:
            raise ModelError(f"{target}: holds a different model than the one just trained")
    else:
        model.save(target)
    current = champion(author)
    if current is None:
        dataset = load_dataset(take_snapshot(author), settings)
        measured = evaluate(model, dataset, settings)
        record = author.register_model(
            label,
            sha,
            f"first-model-{name}",
            ModelEvaluation(
                snapshot_sha256=dataset.snapshot.sha256,
                metrics={k: None if math.isnan(v) else v for k, v in measured.metrics.items()},
                gaps={k: None if math.isnan(v) else v for k, v in measured.gaps.items()},
            ),
        )
        if record.gate != "passed":
            failed = "; ".join(c.explanation for c in record.checks if not c.passed)
            raise InputError(f"the store's gate rejected the first model {label}: {failed}")
        lead.promote_model(label)
    elif current.model != label:
        raise InputError(
            f"the store has a champion already ({current.model}): the first model is for a "
            "store without one"
        )
    score_into_queue(author, model, review_ids, settings, label)
    return FirstModel(label, sha, target)
