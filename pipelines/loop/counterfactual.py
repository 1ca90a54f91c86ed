"""Counterfactuals for the decision notice: the smallest changes, within what the person can
change, that would have changed the model's recommendation (EU AI Act Art. 86, GDPR Art.
22(3)).

Only the features declared in hilt.toml ``[notice] actionable`` are changed, each within
its direction and bounds (and the column's min / max, and what the model saw in training
where no bound is given). One feature first; only if no single change flips the
recommendation, pairs (``[notice] max_changed = 2``). Every candidate is scored by the real
model that scored the case (verified by its sha256) in one batch per stage; a candidate
counts only if it really moves the score across ``[review] decision_threshold``. The
result is deterministic: candidates are generated in a fixed order, and ties are broken by
cost, then feature name, then value.

Cost of a change: for a number, how far it moves as a share of its allowed range; for a
category, how many levels it moves (in hilt.toml's order) as a share of the levels.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from hilt.pipelines.config import Actionable, Settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.features import ModelError
from hilt.pipelines.loop.model import TrainedModel
from hilt.widgets.contracts.notice import Change, NoticeFacts, Value

if TYPE_CHECKING:
    from hilt.pipelines.workspace import Workspace

#: Candidate values per feature and direction.
MAX_STEPS = 40
#: Candidates per feature in a pair (the cheapest ones).
PAIR_CANDIDATES = 20
#: At most this many counterfactuals in a notice.
MAX_RESULTS = 2
#: A re-scored case may differ from the stored score by this much (float rounding).
SCORE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Candidate:
    feature: str
    value: Value
    cost: float


@dataclass(frozen=True)
class Counterfactuals:
    """What the search found: up to two combinations (each of one or two changes), the
    recommendation they lead to, and what the search cost."""

    combinations: list[list[Change]]
    #: The class the model recommends for the case as it is / for each combination.
    recommended: str
    flipped_to: str | None
    #: Candidates scored, and the search's wall time (model loading not included).
    scored: int
    seconds: float

    def as_changes(self) -> list[list[dict[str, Value]]]:
        """The combinations as the store's ``subject_notice_issued`` takes them."""
        return [
            [{"feature": c.feature, "value": c.value} for c in combo] for combo in self.combinations
        ]


def load_notice_model(ws: Workspace, settings: Settings, facts: NoticeFacts) -> TrainedModel:
    """The model that scored the case, loaded from the workspace's MLflow registry and
    verified: its sha256 must be the one the store's registry holds for that version
    (ModelError otherwise)."""
    from hilt.pipelines.loop.tracking.client import configure
    from hilt.pipelines.loop.tracking.environment import registered_model_name
    from hilt.pipelines.loop.tracking.mirror import version_of
    from hilt.pipelines.loop.tracking.pyfunc import load_model_version

    version = version_of(facts.model_version, registered_model_name(settings))
    if version is None:
        raise InputError(
            f"the model that scored the case ({facts.model_version}) is not a version of the "
            "use case's registered model: it cannot be loaded to search counterfactuals"
        )
    configure(ws, settings=settings)
    model = load_model_version(settings, version)
    if model.model_sha256() != facts.model_sha256:
        raise ModelError(
            f"the model MLflow holds as {facts.model_version} is not the one the store "
            "registered (its sha256 differs): no counterfactual from another model"
        )
    return model


def _bounds(
    name: str, spec: Actionable, settings: Settings, model: TrainedModel
) -> tuple[float, float] | None:
    column = settings.columns[name]
    seen = model.training_ranges.get(name)
    lows = [x for x in (spec.min, column.min) if x is not None]
    highs = [x for x in (spec.max, column.max) if x is not None]
    low = max(lows) if lows else (seen.low if seen is not None else None)
    high = min(highs) if highs else (seen.high if seen is not None else None)
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return None
    return (low, high) if low <= high else None


def _numeric(
    name: str, value: float, spec: Actionable, settings: Settings, model: TrainedModel
) -> list[Candidate]:
    bounds = _bounds(name, spec, settings, model)
    if bounds is None:
        return []
    low, high = bounds
    span = high - low
    is_int = settings.columns[name].type == "int"
    step = spec.step or (span / MAX_STEPS if span > 0 else 1.0)
    if is_int:
        step = max(1.0, float(round(step)))
    signs = {"increase": (1,), "decrease": (-1,), "both": (-1, 1)}[spec.direction]
    out: list[Candidate] = []
    for sign in signs:
        for k in range(1, MAX_STEPS + 1):
            new = value + sign * k * step
            if is_int:
                new = float(round(new))
            if new < low or new > high:
                break
            cost = abs(new - value) / span if span > 0 else 1.0
            out.append(Candidate(name, int(new) if is_int else new, cost))
    return out


def _category(name: str, value: str, spec: Actionable, settings: Settings) -> list[Candidate]:
    levels = settings.columns[name].levels or []
    if value not in levels:
        return []
    here = levels.index(value)
    allowed = spec.levels if spec.levels is not None else levels
    width = max(len(levels) - 1, 1)
    return [
        Candidate(name, level, abs(levels.index(level) - here) / width)
        for level in levels
        if level in allowed and level != value
    ]


def candidates(facts: NoticeFacts, settings: Settings, model: TrainedModel) -> list[Candidate]:
    """Every single change the search tries, cheapest first per feature."""
    out: list[Candidate] = []
    for name in sorted(settings.notice.actionable):
        spec = settings.notice.actionable[name]
        if name not in model.features:
            continue
        value = facts.values.get(name)
        if value is None:
            continue
        kind = model.kinds[name]
        if kind == "numeric" and isinstance(value, (int, float)) and not isinstance(value, bool):
            found = _numeric(name, float(value), spec, settings, model)
        elif kind == "category":
            found = _category(name, str(value), spec, settings)
        else:
            continue
        out += sorted(found, key=lambda c: (c.cost, str(c.value)))
    return out


def _frame(facts: NoticeFacts, model: TrainedModel, rows: list[dict[str, Value]]) -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {}
    for f in model.features:
        kind = model.kinds[f]
        schema[f] = (
            pl.String()
            if kind == "category"
            else (pl.Boolean() if kind == "bool" else pl.Float64())
        )
    data = {
        f: [
            (str(r[f]) if r[f] is not None else None) if model.kinds[f] == "category" else r[f]
            for r in rows
        ]
        for f in model.features
    }
    return pl.DataFrame(data, schema=schema)


def _label(score: float, settings: Settings, facts: NoticeFacts) -> str:
    positive = settings.target.positive
    negative = next(c for c in settings.target.classes if c != positive)
    return positive if score >= facts.threshold else negative


def search(facts: NoticeFacts, settings: Settings, model: TrainedModel) -> Counterfactuals:
    """Up to two smallest combinations of actionable changes that flip the model's
    recommendation for the case at ``facts.threshold``: single changes first, pairs only
    when no single change does. ModelError if the model does not reproduce the stored
    score of the case (another model, or other values)."""
    started = time.perf_counter()
    base = {f: facts.values.get(f) for f in model.features}
    base_score = float(model.predict(_frame(facts, model, [base]))[0])
    if abs(base_score - facts.score) > SCORE_TOLERANCE:
        raise ModelError(
            "the model does not reproduce the stored score of the case: no counterfactual "
            "from other values or another model"
        )
    recommended = _label(base_score, settings, facts)
    if recommended == (settings.notice.favourable or settings.target.positive):
        # The recommendation was what the person applied for: nothing to look for (a
        # change that would have made it worse is no help to them).
        return Counterfactuals([], recommended, None, 0, time.perf_counter() - started)
    singles = candidates(facts, settings, model)
    scored = 0
    combinations: list[list[Candidate]] = []
    if singles:
        rows = [{**base, c.feature: c.value} for c in singles]
        scores = model.predict(_frame(facts, model, rows))
        scored += len(rows)
        best: dict[str, Candidate] = {}
        for c, s in zip(singles, scores, strict=True):
            if _label(float(s), settings, facts) != recommended and c.feature not in best:
                best[c.feature] = c  # candidates are cheapest first per feature
        ranked = sorted(best.values(), key=lambda c: (c.cost, c.feature, str(c.value)))
        combinations = [[c] for c in ranked[:MAX_RESULTS]]
    if not combinations and settings.notice.max_changed >= 2:
        by_feature: dict[str, list[Candidate]] = {}
        for c in singles:
            by_feature.setdefault(c.feature, []).append(c)
        pairs: list[tuple[Candidate, Candidate]] = []
        for f, g in itertools.combinations(sorted(by_feature), 2):
            pairs += itertools.product(
                by_feature[f][:PAIR_CANDIDATES], by_feature[g][:PAIR_CANDIDATES]
            )
        if pairs:
            rows = [{**base, a.feature: a.value, b.feature: b.value} for a, b in pairs]
            scores = model.predict(_frame(facts, model, rows))
            scored += len(rows)
            flipped = [
                p
                for p, s in zip(pairs, scores, strict=True)
                if _label(float(s), settings, facts) != recommended
            ]
            flipped.sort(
                key=lambda p: (
                    p[0].cost + p[1].cost,
                    p[0].feature,
                    p[1].feature,
                    str(p[0].value),
                    str(p[1].value),
                )
            )
            used: set[tuple[str, str]] = set()
            for a, b in flipped:
                if (a.feature, b.feature) not in used:
                    used.add((a.feature, b.feature))
                    combinations.append([a, b])
                if len(combinations) == MAX_RESULTS:
                    break
    negative = next(c for c in settings.target.classes if c != recommended)
    return Counterfactuals(
        combinations=[[Change(c.feature, c.value) for c in combo] for combo in combinations],
        recommended=recommended,
        flipped_to=negative if combinations else None,
        scored=scored,
        seconds=time.perf_counter() - started,
    )


def apply(facts: NoticeFacts, combination: list[Change]) -> dict[str, Value]:
    """The case's feature values with ``combination`` applied (to score it again)."""
    return {**facts.values, **{c.feature: c.value for c in combination}}
