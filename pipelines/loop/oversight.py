"""Oversight outside the dashboard: gold cases (`hilt halt` and `hilt resume` only open the
store as the lead and call its ``halt`` / ``resume``: pipelines/cli/oversight.py).

- ``choose_gold`` / ``add_gold_cases`` / ``add_gold_with_champion``: what `hilt gold add`
  runs. Gold cases are holdout cases (known answers, never training labels) scored by the
  champion and mixed into every reviewer's queue at ``oversight.gold_rate``. A gold set is
  chosen so that the champion is wrong on ``oversight.gold_error_share`` of it (as far as the
  holdout has such cases): a reviewer who only ever agrees with the model scores about
  that share wrong, which is what makes gold accuracy a measure of automation bias.

Importing this module imports neither mlflow nor xgboost.
"""

from __future__ import annotations

import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.model import TrainedModel
from hilt.pipelines.store import Store
from hilt.pipelines.store.oversight_records import GoldResult
from hilt.pipelines.workspace import Workspace

#: How many holdout candidates are scored to choose a gold set from.
CANDIDATE_POOL = 5000


def choose_gold(
    candidates: list[str],
    truth: dict[str, str],
    predicted: dict[str, str],
    count: int,
    wrong_share: float,
) -> list[str]:
    """``count`` of ``candidates`` (in their given order): ``round(count * wrong_share)`` on
    which ``predicted`` differs from ``truth`` where there are that many, the rest where it
    agrees; short of either kind, the other fills in."""
    if count < 1:
        raise InputError("count must be at least 1")
    wrong = [c for c in candidates if predicted[c] != truth[c]]
    right = [c for c in candidates if predicted[c] == truth[c]]
    n_wrong = min(len(wrong), round(count * wrong_share))
    n_right = min(len(right), count - n_wrong)
    n_wrong = min(len(wrong), count - n_right)
    chosen = set(wrong[:n_wrong]) | set(right[:n_right])
    return [c for c in candidates if c in chosen]


def add_gold_cases(
    store: Store, settings: Settings, model: TrainedModel, model_version: str, count: int
) -> GoldResult:
    """Score holdout candidates with ``model``, choose ``count`` of them (``choose_gold``)
    and make them gold cases with the model's predictions, in one store transaction; the
    store takes them only from its champion ``model_version``, proven by the model's
    sha256."""
    from hilt.pipelines.loop.scoring import predictions_frame

    if count < 1:
        raise InputError("count must be at least 1")
    candidates = store.gold_candidates(limit=max(CANDIDATE_POOL, count))
    if len(candidates) < count:
        raise InputError(
            f"only {len(candidates)} holdout cases can become gold cases (a known answer, no "
            f"prediction, no decision); asked for {count}"
        )
    cases = store.case_frame(candidates)
    truth = {
        str(c): str(label)
        for c, label in zip(cases["case_id"].to_list(), cases["seed_label"].to_list(), strict=True)
    }
    frame = predictions_frame(model, cases, settings)
    predicted = dict(zip(frame["case_id"].to_list(), frame["label"].to_list(), strict=True))
    chosen = choose_gold(candidates, truth, predicted, count, settings.oversight.gold_error_share)
    chosen_frame = frame.filter(pl.col("case_id").is_in(chosen))
    return store.add_gold(model_version, chosen_frame, model.model_sha256())


def add_gold_with_champion(ws: Workspace, count: int, as_user: str | None = None) -> GoldResult:
    """`hilt gold add`: the store's champion, loaded from MLflow, scores the gold set
    (refused while halted)."""
    from hilt.pipelines.loop.runner import open_run_store, refuse_if_halted
    from hilt.pipelines.loop.steps.score import load_model
    from hilt.pipelines.loop.tracking.client import configure

    store, _author = open_run_store(ws, as_user)
    try:
        refuse_if_halted(store, "adding gold cases")
        settings = ws.settings()
        configure(ws, settings=settings)
        champion = load_model(store, settings)
        return add_gold_cases(store, settings, champion.model, champion.label, count)
    finally:
        store.close()
