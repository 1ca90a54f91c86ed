"""What a change of hilt.toml changes, and which changes loosen a rule that protects people.

Pure and deterministic: two config texts (the one in force, the one proposed) in, the
difference out. ``ops/config.py`` records it; nothing here touches the store.

- ``key_diff``: the keys of the file that changed, were added or removed (names only: the
  file's own keys, as an auditor would read them).
- ``LOOSENING``: per key, which direction loosens a rule that protects people, and why. It
  is judged on the settings in effect (defaults filled in), so removing ``floor = 0.8``
  from ``[gate]`` loosens the gate to its default. A loosening needs a lead's second
  approval; every other change is in force at once. "Loosen" means, per key:

  - retention of cases, predictions and decisions (personal data) getting *longer*: the
    data subject's data is kept longer (GDPR Art. 5(1)(e));
  - retention of the audit log getting *shorter*: the record that proves oversight is kept
    for less time (EU AI Act Arts. 12, 19, 26(6));
  - ``fields.display`` or ``fields.display_personal`` gaining a column: reviewers see more
    about a person (GDPR Art. 5(1)(c)); ``fields.protected`` losing one: the gate and the
    subgroup metrics stop checking that attribute;
  - the gate: a lower ``floor``, a higher ``max_subgroup_gap`` or ``tolerance``, another
    ``metric`` (its floor then means something else);
  - review safeguards: ``comment_required`` or ``blind_first`` turned off;
  - oversight: less gold (``gold_rate``, ``gold_error_share``) or double review, alerts that
    fire later (a higher ``alert_accept_rate``, ``alert_min_decisions``, ``alert_min_gold``,
    a lower ``alert_median_seconds`` or ``alert_gold_accuracy``), another ``window_days``;
  - training: a higher ``max_accepted_share`` (the model may learn more of its own output);
  - governance: the go-live check accepting older proof (a higher ``review_months``,
    ``max_checkpoint_age_days`` or ``max_monitoring_age_days``);
  - ``tracking.uri`` (the MLflow server), any change: the models trained on people's data,
    the executed notebooks, the subgroup metrics and the run records that document each
    model (EU AI Act Arts. 11, 12, Annex IV) would go to another server, and the past runs
    and the registry mirror `hilt audit verify` compares stay behind on the old one. (The
    approved-model rule does not depend on it: a scorer proves the model's sha256 to the
    store.)
  - the pinned audit public key, and how people are identified (``[access]`` but its
    users): any change, but for a shorter ``token_days`` (API tokens expire sooner).

  ``[access.users]`` is not judged here: the store's users change only through the users
  sync, an operation of its own.
- ``FIXED``: keys the store was built on (its tables, the id and target columns, the
  holdout). A change to them cannot be applied to this store at all.
- ``shown_values``: old and new values of the keys whose values carry no personal data and
  no secret (the gate, retention, review, training, oversight, limits, fields, the public
  key, the MLflow server's URL (no credentials: hilt.toml refuses them), the go-live check's
  ages); every other key is named without its values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from hilt.pipelines.config import Settings

Direction = Literal["higher", "lower", "any", "off", "grows", "shrinks", "users"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(prefix: str, name: str) -> str:
    part = name if _BARE_KEY.match(name) else json.dumps(name)
    return f"{prefix}.{part}" if prefix else part


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"gate": {"floor": 0.6}}`` → ``{"gate.floor": 0.6}``; lists are values; names that
    are not bare TOML keys are quoted (``access.users."j.doe"``)."""
    flat: dict[str, Any] = {}
    for name, value in data.items():
        key = _key(prefix, str(name))
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, key))
        else:
            flat[key] = value
    return flat


@dataclass(frozen=True)
class KeyDiff:
    """The keys of the file that changed value, appeared or disappeared (sorted)."""

    changed: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(sorted({*self.changed, *self.added, *self.removed}))


def key_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> KeyDiff:
    """The difference between two parsed TOML documents, by flattened key."""
    a, b = flatten(old), flatten(new)
    return KeyDiff(
        changed=tuple(sorted(k for k in a.keys() & b.keys() if a[k] != b[k])),
        added=tuple(sorted(b.keys() - a.keys())),
        removed=tuple(sorted(a.keys() - b.keys())),
    )


def effective(settings: Settings) -> dict[str, Any]:
    """The settings in effect (defaults filled in), by flattened key."""
    return flatten(settings.model_dump(mode="json"))


@dataclass(frozen=True)
class Rule:
    """Which change of ``key`` (a flattened key, or a prefix ending in a dot) loosens a rule
    that protects people, and why."""

    key: str
    loosens_when: Direction
    why: str

    def matches(self, key: str) -> bool:
        return key.startswith(self.key) if self.key.endswith(".") else key == self.key

    def loosens(self, old: Any, new: Any) -> bool:
        tests: dict[Direction, Callable[[Any, Any], bool]] = {
            "higher": lambda a, b: a is not None and b is not None and b > a,
            "lower": lambda a, b: a is not None and b is not None and b < a,
            "any": lambda a, b: a != b,
            "off": lambda a, b: bool(a) and not b,
            "grows": lambda a, b: bool(set(b or ()) - set(a or ())),
            "shrinks": lambda a, b: bool(set(a or ()) - set(b or ())),
            "users": lambda a, b: False,
        }
        return tests[self.loosens_when](old, new)


_PERSONAL_RETENTION = "personal data kept longer (GDPR Art. 5(1)(e))"
_ALERTS = "automation-bias alerts fire later (EU AI Act Art. 14(4)(b))"
_GO_LIVE = "the go-live check accepts older assessments, checkpoints or monitoring"
_DRIFT = "post-market monitoring names a breach later (EU AI Act Art. 72)"

#: The rules that protect people, by key; the first rule that matches a key decides.
LOOSENING: tuple[Rule, ...] = (
    Rule("retention.cases_days", "higher", _PERSONAL_RETENTION),
    Rule("retention.predictions_days", "higher", _PERSONAL_RETENTION),
    Rule("retention.decisions_days", "higher", _PERSONAL_RETENTION),
    Rule(
        "retention.audit_log_days",
        "lower",
        "the log that proves oversight is kept for less time (EU AI Act Arts. 19, 26(6))",
    ),
    Rule(
        "fields.display_personal",
        "grows",
        "reviewers see more personal data (GDPR Art. 5(1)(c))",
    ),
    Rule("fields.display", "grows", "reviewers see more about a person (GDPR Art. 5(1)(c))"),
    Rule(
        "fields.protected",
        "shrinks",
        "the gate and the subgroup metrics stop checking a protected attribute",
    ),
    Rule("gate.floor", "lower", "a lower floor lets weaker models pass the gate"),
    Rule("gate.max_subgroup_gap", "higher", "a larger gap between groups passes the gate"),
    Rule("gate.tolerance", "higher", "a challenger may be worse than the champion by more"),
    Rule("gate.metric", "any", "the floor then measures something else"),
    Rule("review.comment_required", "off", "overrides no longer need a reason in words"),
    Rule("review.blind_first", "off", "reviewers see the model's answer before their own"),
    Rule("oversight.gold_rate", "lower", "fewer gold cases check the reviewers"),
    Rule("oversight.gold_error_share", "lower", "gold cases catch fewer rubber stamps"),
    Rule("oversight.double_review_share", "lower", "fewer cases get a second reviewer"),
    Rule("oversight.alert_accept_rate", "higher", _ALERTS),
    Rule("oversight.alert_median_seconds", "lower", _ALERTS),
    Rule("oversight.alert_gold_accuracy", "lower", _ALERTS),
    Rule("oversight.alert_min_decisions", "higher", _ALERTS),
    Rule("oversight.alert_min_gold", "higher", _ALERTS),
    Rule("oversight.window_days", "any", "the reviewer statistics cover another period"),
    # issue 14, post-market monitoring (EU AI Act Art. 72): drift named later, or never.
    Rule("monitoring.window_days", "any", "the monitoring compares another period"),
    Rule("monitoring.min_cases", "higher", _DRIFT),
    Rule("monitoring.p_value", "lower", _DRIFT),
    Rule("monitoring.min_decisions", "higher", _DRIFT),
    Rule("monitoring.min_outcomes", "higher", _DRIFT),
    Rule("monitoring.realised_floor", "lower", "a weaker realised performance passes"),
    Rule("monitoring.", "higher", _DRIFT),
    Rule(
        "training.max_accepted_share",
        "higher",
        "the model may learn more of its own output (EU AI Act Art. 15(4))",
    ),
    Rule("governance.review_months", "higher", _GO_LIVE),
    Rule("governance.max_checkpoint_age_days", "higher", _GO_LIVE),
    Rule("governance.max_monitoring_age_days", "higher", _GO_LIVE),
    Rule(
        "audit.public_key",
        "any",
        "the key that verifies the signed audit checkpoints is another",
    ),
    Rule(
        "tracking.uri",
        "any",
        "models, notebooks and run records go to another MLflow server; past runs stay behind",
    ),
    # The store's users change only through the users sync (its own audited operation).
    Rule("access.users.", "users", "users change through `hilt users sync`"),
    Rule("access.token_days", "higher", "API tokens stay valid for longer"),
    Rule(
        "access.proxy_secret_sha256",
        "any",
        "another sign-in proxy, or none, vouches for who is at the dashboards",
    ),
    Rule("access.local_user", "any", "the dashboards act as another person without sign-in"),
    # Any other way of identifying people (keys added to [access] later).
    Rule("access.", "any", "how people are identified changes"),
)

#: Keys the store was built on: its tables (see ``fixed_keys``), the id, subject and
#: target columns, the classes, and the holdout (fixed at init by a salted hash).
FIXED = (
    "use_case.id_column",
    "use_case.subject_column",
    "target.column",
    "target.classes",
    "target.positive",
    "training.holdout_fraction",
    "fields.personal",
)
_COLUMN_SHAPE = re.compile(r"^columns\.[^.]+\.(type|nullable)$")

#: Keys whose values may be written to the audit log: no personal data, no secret.
SHOWN_SECTIONS = (
    "gate.",
    "retention.",
    "review.",
    "training.",
    "oversight.",
    "monitoring.",
    "limits.",
    "fields.",
    "audit.public_key",
    "tracking.uri",
    "governance.review_months",
    "governance.max_checkpoint_age_days",
    "governance.max_monitoring_age_days",
)


def rule_for(key: str) -> Rule | None:
    return next((r for r in LOOSENING if r.matches(key)), None)


def effective_changes(old: Settings, new: Settings) -> dict[str, tuple[Any, Any]]:
    """Every key whose value in effect differs: key → (old, new)."""
    a, b = effective(old), effective(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def loosened(old: Settings, new: Settings) -> list[str]:
    """The keys whose change loosens a rule that protects people (sorted)."""
    found = []
    for key, (before, after) in effective_changes(old, new).items():
        rule = rule_for(key)
        if rule is not None and rule.loosens(before, after):
            found.append(key)
    return found


def fixed_keys(old: Settings, new: Settings) -> list[str]:
    """The keys the store was built on that this change would alter (sorted): the FIXED
    keys, a column added or removed, a column's type or nullability."""
    both = set(old.columns) & set(new.columns)
    found = {
        key
        for key in effective_changes(old, new)
        if key in FIXED or (_COLUMN_SHAPE.match(key) and key.split(".")[1] in both)
    }
    found.update(f"columns.{n}" for n in set(old.columns) ^ set(new.columns))
    return sorted(found)


def users_changed(old: Settings, new: Settings) -> bool:
    return old.access.users != new.access.users


def shown(key: str) -> bool:
    return any(key.startswith(s) if s.endswith(".") else key == s for s in SHOWN_SECTIONS)


def shown_values(old: Settings, new: Settings) -> dict[str, list[Any]]:
    """[old, new] of each changed key whose values may be shown (see ``SHOWN_SECTIONS``)."""
    return {k: [a, b] for k, (a, b) in effective_changes(old, new).items() if shown(k)}


def describe_loosening(key: str, values: Mapping[str, list[Any]]) -> str:
    """One line: the key, its old and new values where they may be shown, and why it
    loosens (for messages and the status)."""
    rule = rule_for(key)
    why = rule.why if rule is not None else "it loosens a rule that protects people"
    if key in values:
        before, after = values[key]
        return f"{key} {_show(before)} → {_show(after)}: {why}"
    return f"{key}: {why}"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return "true" if value is True else "false" if value is False else str(value)
