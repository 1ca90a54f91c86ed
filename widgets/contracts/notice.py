"""The decision notice to the person decided about: a pure function of stored facts.

EU AI Act Art. 86 (right to an explanation of an individual decision), Art. 26(11) (inform
the natural persons that a high-risk AI system was used), GDPR Arts. 13-15 and 22(3): the
person gets, in plain language and in the use case's words, that an AI system was used and
for what, that a person in a named role decided, the outcome, the main factors of the
model's recommendation for their case (from the contributions frozen with the stored
prediction), one or two changes that would have changed the recommendation, and how to
contest.

``render_notice`` renders the notice, as plain text and as an HTML fragment, from three
things only: the facts the store returns (``NoticeFacts``: the decision, the stored
prediction, the person's own feature values, and the words from hilt.toml ``[notice]``),
the counterfactual changes found for the case (``Change``), and the renderer version. Same
input, same bytes: no clock, locale, dict order or random number enters the output. The
store records the notice's sha256 with the renderer version (``subject.notice_issued``),
having rendered it itself from the facts and the changes and compared the hashes.

RULE: the output of a released renderer never changes. To change how notices read, add a
new version to ``RENDERERS`` and keep the old one rendering exactly as before, so that every
issued notice can still be rendered again byte for byte.

Pure: the standard library only (the store, the CLI and the dashboards import it).
"""

from __future__ import annotations

import hashlib
import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field

#: The renderer new notices are rendered with (see the RULE above).
NOTICE_RENDERER_VERSION = "hilt-notice/1"

Value = str | int | float | bool | None


@dataclass(frozen=True)
class NoticeWords:
    """The use case's words (hilt.toml ``[notice]``, ``[use_case]``, ``[target]``,
    ``[processing]``, column descriptions and formats): configuration, never personal."""

    #: What the AI system is, in a phrase.
    system: str
    #: What it was used for.
    purpose: str
    #: The role of whoever decided, in words ("a credit officer"): never a name.
    decided_by: str
    #: How to contest.
    contest: str
    controller: str
    dpo_contact: str
    #: Class code → its label.
    class_labels: dict[str, str] = field(default_factory=dict)
    #: Feature → its description.
    feature_labels: dict[str, str] = field(default_factory=dict)
    #: Feature → how a value reads ("{:,.0f} DM").
    feature_formats: dict[str, str] = field(default_factory=dict)
    #: Where the data the system used came from.
    data_sources: str = ""
    #: The outcome the person applied for (a class code; empty: none named): where the
    #: model recommended it, the notice looks for no change.
    favourable: str = ""


@dataclass(frozen=True)
class Factor:
    """One of the main factors of the recommendation: a feature and its contribution
    (log-odds towards the positive class) from the stored prediction."""

    feature: str
    contribution: float


@dataclass(frozen=True)
class NoticeFacts:
    """Everything a notice says besides the counterfactual, as the store holds it."""

    case_id: str
    decision_id: str
    #: The decision's audit seq and time.
    decision_seq: int
    decided_at: str
    #: accept | override | adjudicate
    action: str
    #: The outcome: the class the person decided.
    final_label: str
    #: The model's recommendation: its predicted class at the decision threshold.
    recommended_label: str
    positive_class: str
    score: float
    threshold: float
    #: The model that scored the case, as the store's registry holds it.
    model_version: str
    model_sha256: str
    #: The sha256 of the explanation the decider saw, recorded with the decision (None:
    #: not recorded, or the model's output was hidden).
    explanation_sha256: str | None
    #: The main factors, largest |contribution| first (ties by name).
    factors: list[Factor]
    #: The person's own feature values for this case (as stored; nobody else's).
    values: dict[str, Value]
    words: NoticeWords
    #: The renderer the notice is rendered with.
    renderer: str = NOTICE_RENDERER_VERSION


@dataclass(frozen=True)
class Change:
    """A feature of the person's case set to another value (a counterfactual)."""

    feature: str
    value: Value


@dataclass(frozen=True)
class RenderedNotice:
    renderer: str
    text: str
    html: str

    @property
    def sha256(self) -> str:
        return notice_sha256(self.text, self.html)


def notice_sha256(text: str, fragment: str) -> str:
    """The notice's hash: over its text and its HTML (a NUL between them)."""
    return hashlib.sha256((text + "\0" + fragment).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------- version 1
def _value(words: NoticeWords, feature: str, value: Value) -> str:
    if value is None:
        return "not given"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    fmt = words.feature_formats.get(feature)
    if fmt:
        try:
            return fmt.format(value)
        except (ValueError, TypeError, IndexError, KeyError):
            pass
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _label(words: NoticeWords, feature: str) -> str:
    return words.feature_labels.get(feature, feature) or feature


def _class(words: NoticeWords, code: str) -> str:
    return words.class_labels.get(code, code)


def _paragraphs_v1(facts: NoticeFacts, changes: list[list[Change]]) -> list[tuple[str, list[str]]]:
    """(heading, paragraphs) in order; the text and the HTML are two spellings of them."""
    w = facts.words
    outcome = _class(w, facts.final_label)
    recommended = _class(w, facts.recommended_label)
    positive = _class(w, facts.positive_class)
    other = next((c for c in sorted(w.class_labels) if c != facts.recommended_label), None)
    if facts.action == "accept":
        human = (
            f"The decision was taken by {w.decided_by}, a person, who reviewed your case and "
            f"agreed with the model's recommendation."
        )
    elif facts.action == "adjudicate":
        human = (
            f"The decision was taken by {w.decided_by}, a person, after two reviews of your "
            "case that did not agree."
        )
    else:
        human = (
            f"The decision was taken by {w.decided_by}, a person, who reviewed your case and "
            f"did not follow the model's recommendation ({recommended})."
        )
    sections: list[tuple[str, list[str]]] = [
        (
            "The decision",
            [
                f"Outcome: {outcome}. Decided on {facts.decided_at[:10]} "
                f"(reference {facts.case_id})."
            ],
        ),
        (
            "How it was made",
            [
                f"We used {w.system}. This is a high-risk AI system under the EU AI Act. "
                f"What it is used for: {w.purpose}",
                *([f"The data it used: {w.data_sources}."] if w.data_sources else []),
                f"For your case the model recommended: {recommended} (it estimated the "
                f"probability of {positive} at {facts.score:.2f}; it recommends {positive} "
                f"from {facts.threshold:.2f}).",
                human,
            ],
        ),
    ]
    factor_lines = []
    for f in facts.factors:
        direction = f"towards {positive}" if f.contribution >= 0 else f"away from {positive}"
        factor_lines.append(
            f"{_label(w, f.feature)}: {_value(w, f.feature, facts.values.get(f.feature))} "
            f"(weighed {direction})"
        )
    sections.append(
        (
            "The main factors of the recommendation for your case",
            factor_lines or ["The model's record holds no factors for this case."],
        )
    )
    if changes and other is not None:
        lines = []
        for combination in changes:
            parts = [
                f"{_label(w, c.feature)} had been {_value(w, c.feature, c.value)} instead of "
                f"{_value(w, c.feature, facts.values.get(c.feature))}"
                for c in combination
            ]
            lines.append(
                "If your " + " and your ".join(parts) + ", the model would have recommended "
                f"{_class(w, other)}."
            )
        lines.append(
            "These are changes to your data that we looked for, within the ranges we allow; "
            "the final decision is always taken by a person."
        )
    elif w.favourable and facts.recommended_label == w.favourable:
        lines = [
            f"The model recommended {recommended}, the outcome you applied for: there was "
            "nothing to change."
        ]
    else:
        lines = ["No single change within the allowed ranges would change the recommendation."]
    sections.append(("What would have changed the recommendation", lines))
    sections.append(
        (
            "Your rights",
            [
                w.contest,
                f"Controller: {w.controller}. Data-protection officer: {w.dpo_contact}.",
            ],
        )
    )
    sections.append(
        (
            "Record",
            [
                f"Model {facts.model_version} (sha256 {facts.model_sha256[:12]}); decision "
                f"{facts.decision_id}; notice {facts.renderer}."
            ],
        )
    )
    return sections


def _render_v1(facts: NoticeFacts, changes: list[list[Change]]) -> RenderedNotice:
    sections = _paragraphs_v1(facts, changes)
    text_parts = ["Notice about a decision on your application", ""]
    html_parts = [
        '<article class="hilt-notice"><h2>Notice about a decision on your application</h2>'
    ]
    for heading, paragraphs in sections:
        text_parts += [heading, "-" * len(heading), *paragraphs, ""]
        html_parts.append(f"<h3>{html.escape(heading)}</h3>")
        html_parts += [f"<p>{html.escape(p)}</p>" for p in paragraphs]
    html_parts.append("</article>")
    return RenderedNotice(NOTICE_RENDERER_VERSION, "\n".join(text_parts), "".join(html_parts))


#: Every released renderer, by version (never change one; add a version).
RENDERERS: dict[str, Callable[[NoticeFacts, list[list[Change]]], RenderedNotice]] = {
    NOTICE_RENDERER_VERSION: _render_v1,
}


def render_notice(facts: NoticeFacts, changes: list[list[Change]]) -> RenderedNotice:
    """The notice of ``facts`` with the counterfactual ``changes`` (each a combination of
    one or two changed features), by the renderer ``facts.renderer``; ValueError for a
    renderer version that does not exist or a non-finite number."""
    renderer = RENDERERS.get(facts.renderer)
    if renderer is None:
        raise ValueError(f"unknown notice renderer {facts.renderer!r} (known: {sorted(RENDERERS)})")
    if not (math.isfinite(facts.score) and math.isfinite(facts.threshold)):
        raise ValueError("the notice's score and threshold must be finite")
    return renderer(facts, changes)
