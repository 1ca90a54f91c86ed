"""The explanation a reviewer saw, checked before it is recorded with the decision.

A review session sends the sha256 of the explanation fragment on screen and the
presentation context it was rendered with (``hilt.widgets.contracts.explanation``). Before the
decision is written, the store:

1. checks the context's shape strictly (no field it does not know, numbers in range);
2. allows only names and labels that come from the use case's configuration: class codes
   and their configured labels, feature names and their configured descriptions. The
   context enters the hash-chained audit log, which is never rewritten; free text there
   could be personal data that no erasure could ever reach;
3. renders the fragment itself from the stored prediction and the context, and refuses the
   decision if the hash differs. So every recorded hash can be re-rendered from the records,
   and an auditor who gets a different hash later knows the records changed.

Importing this module imports neither the renderer nor ipywidgets; ``check_explanation``
imports the renderer when a decision carries an explanation.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.store.audit.chain import canonical_json
from hilt.pipelines.store.case_records import DecisionRequest

#: Largest canonical JSON of a recorded explanation context (bytes).
MAX_CONTEXT_BYTES = 4096


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _OutOfRange(_Strict):
    feature: str = Field(min_length=1, max_length=64)
    low: float | None = None
    high: float | None = None
    category: bool = False


class _Context(_Strict):
    renderer: str = Field(min_length=1, max_length=64)
    threshold: float = Field(gt=0.0, lt=1.0)
    uncertain_margin: float = Field(ge=0.0, le=1.0)
    top_n: int = Field(ge=0, le=100)
    positive_class: str = Field(min_length=1, max_length=64)
    class_labels: dict[str, str] = Field(default_factory=dict)
    feature_labels: dict[str, str] = Field(default_factory=dict)
    out_of_range: list[_OutOfRange] = Field(default_factory=list, max_length=200)


def _loose_numbers(data: Any) -> Any:
    """JSON has one number type: accept 1 where a float is meant (strict mode would not)."""
    if isinstance(data, dict):
        out = dict(data)
        for key in ("threshold", "uncertain_margin"):
            if isinstance(out.get(key), int) and not isinstance(out.get(key), bool):
                out[key] = float(out[key])
        if isinstance(out.get("out_of_range"), list):
            out["out_of_range"] = [_loose_numbers(o) for o in out["out_of_range"]]
        for key in ("low", "high"):
            if isinstance(out.get(key), int) and not isinstance(out.get(key), bool):
                out[key] = float(out[key])
        return out
    return data


def _configured_names(settings: Settings, context: _Context) -> None:
    """Every string of the context must be a configured name or label."""
    classes = settings.target.classes
    if context.positive_class != settings.target.positive:
        raise InputError("explanation_context.positive_class is not the configured positive class")
    for code, label in context.class_labels.items():
        if code not in classes:
            raise InputError("explanation_context.class_labels names a class that does not exist")
        if label not in (settings.target.label_of(code), code):
            raise InputError(
                "explanation_context.class_labels must hold the configured class labels"
            )
    features = set(settings.fields.features)
    for name, label in context.feature_labels.items():
        if name not in features:
            raise InputError("explanation_context.feature_labels names a column that is no feature")
        if label not in (settings.columns[name].description or name, name):
            raise InputError(
                "explanation_context.feature_labels must hold the configured column descriptions"
            )
    for entry in context.out_of_range:
        if entry.feature not in features:
            raise InputError("explanation_context.out_of_range names a column that is no feature")
        for bound in (entry.low, entry.high):
            if bound is not None and not math.isfinite(bound):
                raise InputError("explanation_context.out_of_range holds a non-finite bound")


def check_explanation(
    settings: Settings,
    request: DecisionRequest,
    prediction: tuple[float, str, str] | None,
) -> dict[str, Any] | None:
    """The context to record with the decision (canonical), or None without an explanation.

    ``prediction``: (score, label, explanation JSON) of the stored prediction the decision
    is about. InputError, naming what is wrong, for anything that does not hold.
    """
    sha, given = request.explanation_sha256, request.explanation_context
    if sha is None and given is None:
        return None
    if sha is None or given is None:
        raise InputError("explanation_sha256 and explanation_context go together")
    if request.action in ("undo", "blind"):
        raise InputError(f"{request.action} takes no explanation (it is not a decision on one)")
    if not request.model_shown:
        raise InputError("an explanation was sent although the model's output was not shown")
    if prediction is None:
        raise InputError("an explanation needs a prediction; this case has none")
    try:
        size = len(canonical_json(given).encode("utf-8"))
    except (TypeError, ValueError):
        raise InputError("explanation_context must be JSON (no NaN or infinity)") from None
    if size > MAX_CONTEXT_BYTES:
        raise InputError(f"explanation_context is larger than {MAX_CONTEXT_BYTES} bytes")
    try:
        context = _Context.model_validate(_loose_numbers(given))
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        raise InputError(f"explanation_context.{where}: {first.get('msg')}") from None
    _configured_names(settings, context)

    from hilt.widgets.contracts.explanation import (
        RENDERER,
        ExplanationContext,
        StoredPrediction,
        render_explanation,
    )

    if context.renderer != RENDERER:
        raise InputError(f"explanation_context.renderer: this store renders {RENDERER}")
    rebuilt = ExplanationContext.from_dict(context.model_dump())
    score, label, contributions = prediction
    stored = StoredPrediction(
        predicted_label=label, score=score, contributions=json.loads(contributions)
    )
    if render_explanation(stored, rebuilt).sha256 != sha:
        raise InputError(
            "explanation_sha256 is not the hash of the stored prediction's explanation rendered "
            "with this context (another prediction, or a changed renderer); nothing was written"
        )
    return rebuilt.to_dict()
