"""What the reviewer saw, rendered again: a decision's explanation replayed from the stored
prediction and the context recorded in its audit event, and compared with the sha256 the
store recorded at decision time (the audit dashboard's "explanation replay").

Nothing here writes: not the store, not the workspace.
"""

from __future__ import annotations

from hilt.pipelines.config import Settings
from hilt.pipelines.store import Store
from hilt.pipelines.store.audit_records import AuditQuery
from hilt.pipelines.store.case_records import Prediction
from hilt.widgets.contracts.audit import ExplanationReplay
from hilt.widgets.contracts.explanation import (
    ExplanationContext,
    StoredPrediction,
    explanation_sha256,
    render_explanation,
    used_labels,
)


def reference_context(settings: Settings, prediction: Prediction) -> ExplanationContext:
    """The presentation context the review panel would use today (no out-of-range badge:
    what the model had seen in training then is not part of the records)."""
    margin, top_n = 0.1, 5  # PredictionView's defaults
    labels = {n: settings.columns[n].description or n for n in settings.fields.display}
    stored = StoredPrediction(prediction.label, prediction.score, prediction.explanation)
    classes, features = used_labels(
        stored, top_n, (), settings.target.positive, dict(settings.target.labels), labels
    )
    return ExplanationContext(
        threshold=settings.review.decision_threshold,
        uncertain_margin=margin,
        top_n=top_n,
        positive_class=settings.target.positive,
        class_labels=classes,
        feature_labels=features,
    )


def replay_explanation(store: Store, settings: Settings, decision_id: str) -> ExplanationReplay:
    """The decision's explanation rendered again from the stored prediction and the context
    recorded in its audit event, compared with the sha256 recorded at decision time."""
    decision = store.get_decision(decision_id)
    recorded = decision.explanation_sha256
    if decision.action == "undo":
        return ExplanationReplay(
            decision_id,
            "not-applicable",
            "An undo compensates an earlier decision; it carries no explanation of its own.",
        )
    if decision.prediction_id is None:
        return ExplanationReplay(
            decision_id, "not-applicable", "The case had no prediction: no model output to explain."
        )
    prediction = store.get_prediction(decision.prediction_id)
    stored = StoredPrediction(prediction.label, prediction.score, prediction.explanation)
    if recorded is None:
        if not decision.model_shown:
            return ExplanationReplay(
                decision_id,
                "not-shown",
                "The model's output was hidden from the reviewer when they decided "
                "(blind-first judgement): there was no explanation on screen.",
            )
        reference = render_explanation(stored, reference_context(settings, prediction))
        return ExplanationReplay(
            decision_id,
            "not-recorded",
            "This decision was recorded without the hash of its explanation (before hilt "
            "recorded them): what the reviewer saw cannot be proven. Shown below for reference "
            "only: the stored prediction under today's settings.",
            html=reference.html,
            rendered_sha256=reference.sha256,
        )
    page = store.audit_search(AuditQuery(seqs=[decision.seq], limit=1))
    event = page.events[0] if page.events else None
    given = event.payload.get("explanation_context") if event is not None else None
    if event is None or event.payload.get("explanation_sha256") != recorded or not given:
        return ExplanationReplay(
            decision_id,
            "differs",
            "The decision's audit event does not hold the explanation the decision records.",
            recorded_sha256=recorded,
        )
    try:
        rendered = render_explanation(stored, ExplanationContext.from_dict(given))
    except ValueError as e:
        return ExplanationReplay(
            decision_id,
            "differs",
            f"The recorded context cannot be rendered: {e}",
            recorded_sha256=recorded,
        )
    now = explanation_sha256(rendered.html)
    if now == recorded:
        return ExplanationReplay(
            decision_id,
            "identical",
            f"Identical to what the reviewer saw (sha256 {recorded}), rendered again from the "
            f"stored prediction {prediction.prediction_id} and the context recorded at audit "
            f"seq {decision.seq}.",
            html=rendered.html,
            recorded_sha256=recorded,
            rendered_sha256=now,
        )
    return ExplanationReplay(
        decision_id,
        "differs",
        f"DIFFERS from what the reviewer saw: recorded sha256 {recorded}, rendered now {now}. "
        "The stored prediction or the recorded context changed since the decision.",
        html=rendered.html,
        recorded_sha256=recorded,
        rendered_sha256=now,
    )
