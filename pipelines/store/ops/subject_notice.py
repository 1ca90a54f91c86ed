"""The decision notice to the person decided about (EU AI Act Arts. 86, 26(11); GDPR Arts.
13-15, 22(3)): the facts it is rendered from, and its issue, audited.

- ``subject_notice_facts``: the subject's final decision (their latest, or on a named case
  of theirs), who decided as a role (never a name), the outcome, the stored prediction's
  score and main factors (the contributions frozen with the prediction), the model that
  scored it (version and sha256 from the store's registry), this subject's own feature
  values (opened with their key only), and the use case's words from hilt.toml. Refused for
  a subject that was erased (their key is destroyed), a case without a final decision, or a
  case whose data were removed.
- ``subject_notice_issued``: the store renders the notice itself from the same facts and
  the counterfactual changes the caller found (``hilt.widgets.contracts.notice``), refuses
  if the caller's sha256 differs (nothing written), and records ``subject.notice_issued``
  (object: the decision; payload: renderer, notice sha256, case; nothing personal).

The counterfactual search needs the model, so it runs outside the store
(``hilt.pipelines.loop.counterfactual``); the store checks that the notice it records is the
one its facts give with those changes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from hilt.pipelines.errors import ConflictError, InputError, NotFoundError
from hilt.pipelines.store import sql
from hilt.pipelines.store.ops.review import decisions_where, final_sql
from hilt.pipelines.store.ops.subject_export import received_values
from hilt.pipelines.store.ops.subject_rights import cases_of, find_subject
from hilt.widgets.contracts.explanation import top_contributions
from hilt.widgets.contracts.notice import (
    RENDERERS,
    Change,
    Factor,
    NoticeFacts,
    NoticeWords,
    Value,
    render_notice,
)

if TYPE_CHECKING:
    from hilt.pipelines.config import Settings
    from hilt.pipelines.store.unit import Unit

#: At most this many counterfactual combinations in one notice.
MAX_COMBINATIONS = 2


@dataclass(frozen=True)
class NoticeIssued:
    """The audit record of an issued notice."""

    decision_id: str
    case_id: str
    renderer: str
    notice_sha256: str
    seq: int


def notice_words(settings: Settings, reviewer_role: str) -> NoticeWords:
    """The use case's words for a notice about a decision taken by ``reviewer_role``."""
    n = settings.notice
    features = settings.fields.features
    return NoticeWords(
        system=n.system,
        purpose=n.purpose or settings.use_case.purpose or settings.use_case.description,
        decided_by=n.decided_by.get(reviewer_role, f"a member of staff ({reviewer_role})"),
        contest=n.contest,
        data_sources=n.data_sources,
        controller=settings.processing.controller,
        dpo_contact=settings.processing.dpo_contact,
        class_labels={c: settings.target.label_of(c) for c in settings.target.classes},
        feature_labels={f: settings.columns[f].description or f for f in features},
        feature_formats={f: fmt for f in features if (fmt := settings.columns[f].format)},
        favourable=n.favourable or settings.target.positive,
    )


def _subject_ref(unit: Unit, subject_id: str) -> str:
    try:
        ref = find_subject(unit, subject_id)
    except NotFoundError:
        raise NotFoundError(
            "no notice can be produced: no subject with that id (never ingested, or erased: "
            "their data and key are destroyed)"
        ) from None
    if not unit.keys.store.has(ref):
        raise ConflictError(
            "no notice can be produced: the subject's key was destroyed (their data is shredded)"
        )
    return ref


def _plain(value: Any) -> Value:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def _facts(unit: Unit, subject_id: str, case_id: str | None) -> NoticeFacts:
    settings = unit.settings
    ref = _subject_ref(unit, subject_id)
    cases = {c: removed for c, _, removed in cases_of(unit, ref)}
    if case_id is not None and case_id not in cases:
        raise NotFoundError("the subject has no case with that id")
    wanted = [case_id] if case_id is not None else sorted(cases)
    found = decisions_where(
        unit, final_sql(unit) + " AND d.case_id IN (SELECT unnest(?))", [wanted]
    )
    if not found:
        raise ConflictError(
            "no notice can be produced: "
            + ("that case has" if case_id is not None else "the subject has")
            + " no final decision (accepted, overridden or adjudicated, not undone, settled)"
        )
    decision = found[-1]  # the last final decision wins
    if cases[decision.case_id] is not None:
        raise ConflictError("no notice can be produced: the case's data were removed")
    if decision.prediction_id is None or decision.final_label is None:
        raise ConflictError(
            "no notice can be produced: the decision has no model prediction to explain"
        )
    row = sql.one(
        unit.con,
        "SELECT p.score, p.label, p.explanation, p.model_version, m.model_sha256"
        " FROM predictions p LEFT JOIN models m ON m.model = p.model_version"
        " WHERE p.prediction_id = ?",
        [decision.prediction_id],
    )
    if row is None:
        raise ConflictError("no notice can be produced: the decision's prediction was purged")
    score, label, explanation, model_version, model_sha = row
    if model_sha is None:
        raise ConflictError(
            "no notice can be produced: the model that scored the case is not in the registry"
        )
    contributions = json.loads(str(explanation))
    received = received_values(unit, [decision.case_id])
    values = received.row(0, named=True) if received.height else {}
    features = settings.fields.features
    return NoticeFacts(
        case_id=decision.case_id,
        decision_id=decision.decision_id,
        decision_seq=decision.seq,
        decided_at=decision.created_at,
        action=decision.action,
        final_label=decision.final_label,
        recommended_label=str(label),
        positive_class=settings.target.positive,
        score=float(score),
        threshold=settings.review.decision_threshold,
        model_version=str(model_version),
        model_sha256=str(model_sha),
        explanation_sha256=decision.explanation_sha256,
        factors=[
            Factor(name, value)
            for name, value in top_contributions(contributions, settings.notice.factors)
        ],
        values={f: _plain(values.get(f)) for f in features},
        words=notice_words(settings, decision.reviewer_role),
    )


def subject_notice_facts(unit: Unit, subject_id: str, case_id: str | None = None) -> NoticeFacts:
    """What the notice about the subject's final decision is rendered from (their latest,
    or the one on ``case_id``, a case of theirs); reads only."""
    return _facts(unit, subject_id, case_id)


def parse_changes(settings: Settings, changes: list[list[dict[str, Any]]]) -> list[list[Change]]:
    """Counterfactual combinations as sent ([[{"feature", "value"}, ...], ...]): at most
    two combinations of one or two actionable features each; InputError otherwise."""
    if len(changes) > MAX_COMBINATIONS:
        raise InputError(f"a notice names at most {MAX_COMBINATIONS} counterfactuals")
    out: list[list[Change]] = []
    actionable = settings.notice.actionable
    for combination in changes:
        if not 1 <= len(combination) <= settings.notice.max_changed:
            raise InputError(
                f"a counterfactual changes 1 to {settings.notice.max_changed} features"
            )
        parsed = []
        for change in combination:
            if set(change) != {"feature", "value"}:
                raise InputError("a counterfactual change is {feature, value}")
            feature, value = change["feature"], change["value"]
            if feature not in actionable:
                raise InputError("a counterfactual changes only features in [notice] actionable")
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise InputError("a counterfactual value is a number or a level")
            parsed.append(Change(str(feature), value))
        if len({c.feature for c in parsed}) != len(parsed):
            raise InputError("a counterfactual changes each feature once")
        out.append(parsed)
    return out


def _check_changes(settings: Settings, facts: NoticeFacts, changes: list[list[Change]]) -> None:
    """What the store can check of a counterfactual without the model: none where the model
    recommended the outcome the person applied for, and each change within its feature's
    ``[notice.actionable]`` direction, bounds and levels (that it flips the recommendation
    is the model's to show: ``loop/counterfactual.py`` scores it)."""
    # What depends on the case (its recommendation, the person's values) is a conflict
    # (409); what the request alone gets wrong (levels, bounds, types) is invalid (422).
    if changes and facts.recommended_label == facts.words.favourable:
        raise ConflictError(
            "the model recommended the outcome the person applied for: a notice offers no "
            "change; nothing was written"
        )
    for combination in changes:
        for change in combination:
            spec = settings.notice.actionable[change.feature]
            column = settings.columns[change.feature]
            value, was = change.value, facts.values.get(change.feature)
            if column.type == "category":
                allowed = spec.levels if spec.levels is not None else column.levels or []
                ok = isinstance(value, str) and value in allowed
                fits = ok and value != was
            else:
                lows = [b for b in (spec.min, column.min) if b is not None]
                highs = [b for b in (spec.max, column.max) if b is not None]
                ok = (
                    isinstance(value, (int, float))
                    and all(value >= b for b in lows)
                    and all(value <= b for b in highs)
                )
                fits = (
                    ok
                    and isinstance(value, (int, float))
                    and isinstance(was, (int, float))
                    and value != was
                    and (spec.direction != "decrease" or value < was)
                    and (spec.direction != "increase" or value > was)
                )
            if not fits:
                refusal = InputError if not ok else ConflictError
                raise refusal(
                    f"a counterfactual change of {change.feature} is outside its [notice."
                    "actionable] direction, bounds or levels; nothing was written"
                )


def subject_notice_issued(
    unit: Unit,
    subject_id: str,
    case_id: str,
    renderer: str,
    notice_sha256: str,
    changes: list[list[dict[str, Any]]],
) -> NoticeIssued:
    """Record that the notice about the final decision on ``case_id`` (a case of the
    subject's) was issued: the store renders it from its facts and ``changes`` with
    ``renderer`` and refuses if the hash is not ``notice_sha256`` (nothing written)."""
    if renderer not in RENDERERS:
        raise InputError(f"unknown notice renderer (known: {sorted(RENDERERS)})")
    parsed = parse_changes(unit.settings, changes)
    now = unit.clock()
    with unit.transaction():
        facts = _facts(unit, subject_id, case_id)
        _check_changes(unit.settings, facts, parsed)
        rendered = render_notice(replace(facts, renderer=renderer), parsed)
        if rendered.sha256 != notice_sha256:
            # The facts are the store's state (a later decision changes them): 409.
            raise ConflictError(
                "notice_sha256 is not the hash of the notice the store renders from its facts "
                "and these changes (other facts, or a changed renderer); nothing was written"
            )
        seq = unit.append_audit(
            "subject.notice_issued",
            "decision",
            facts.decision_id,
            {
                "renderer": renderer,
                "notice_sha256": notice_sha256,
                "case_id": facts.case_id,
                "counterfactuals": len(parsed),
            },
            now,
        )
    return NoticeIssued(facts.decision_id, facts.case_id, renderer, notice_sha256, seq)
