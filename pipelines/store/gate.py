"""The promotion gate: what a challenger must meet to be offered to a lead for approval.

``gate`` checks a metric floor, the largest subgroup gap per protected attribute, and that
the challenger is not worse than the champion beyond a tolerance, with one plain-language
line per check for an auditor. Pure and deterministic; hilt.toml's ``[gate]`` configures it
(``GateConfig.from_settings``).

The rule belongs to the store: when a model is registered, the store applies it itself to
the evaluation the run reports (``ops/models.register_model``), so a gate verdict is never
taken from a client or an MLflow tag. The retraining notebook shows the same verdict by
calling the same function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, NamedTuple

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError

#: Metrics a gate may use (keys of the loop's ``evaluate.metrics``).
GATE_METRICS = frozenset({"auc", "accuracy", "precision", "recall", "f1", "brier", "log_loss"})
#: Of those, the ones where a lower value is better.
LOWER_IS_BETTER = frozenset({"brier", "log_loss"})
#: The metrics computed per subgroup (the loop's ``subgroups``), of which a gap is bounded.
SUBGROUP_METRICS: tuple[str, ...] = ("positive_rate", "tpr", "fpr", "auc", "accuracy")


class GateCheck(NamedTuple):
    """One check of the gate: its name, outcome, measured value, limit and a sentence."""

    name: str
    passed: bool
    value: float | None
    limit: float | None
    explanation: str


@dataclass(frozen=True)
class GateConfig:
    """What a challenger must meet to be offered for promotion.

    Invalid values raise InputError at construction.
    """

    #: The model metric of the floor and the champion comparison (a key of ``metrics``).
    metric: str = "auc"
    #: The challenger's metric must be at least this (at most, for brier and log_loss).
    floor: float = 0.65
    #: Largest allowed gap of ``gap_metric`` between groups, per protected attribute.
    max_subgroup_gap: float = 0.2
    #: The subgroup metric whose gap is bounded (positive_rate: demographic parity).
    gap_metric: str = "positive_rate"
    #: How much worse than the champion's metric the challenger may be.
    tolerance: float = 0.02
    #: Protected attributes that must have a measured gap (e.g. settings.fields.protected).
    required_attributes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.metric not in GATE_METRICS:
            problems.append(f"metric must be one of {sorted(GATE_METRICS)}")
        if self.gap_metric not in SUBGROUP_METRICS:
            problems.append(f"gap_metric must be one of {list(SUBGROUP_METRICS)}")
        for name in ("floor", "max_subgroup_gap", "tolerance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"{name} must be a number")
            elif not math.isfinite(value):
                problems.append(f"{name} must be finite")
            else:
                object.__setattr__(self, name, float(value))
        if not problems:
            if not 0.0 <= self.max_subgroup_gap <= 1.0:
                problems.append("max_subgroup_gap must be in [0, 1]")
            if self.tolerance < 0.0:
                problems.append("tolerance must be >= 0")
        object.__setattr__(self, "required_attributes", tuple(self.required_attributes))
        if problems:
            raise InputError("gate configuration: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> GateConfig:
        """From a mapping (papermill parameters); unknown names are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"gate configuration: unknown {unknown}; known are {sorted(known)}")
        return cls(**values)

    @classmethod
    def from_settings(cls, settings: Settings) -> GateConfig:
        """The gate of hilt.toml (``[gate]``), requiring a gap for every protected attribute
        (``settings.fields.protected``)."""
        g = settings.gate
        return cls(
            metric=g.metric,
            floor=g.floor,
            max_subgroup_gap=g.max_subgroup_gap,
            tolerance=g.tolerance,
            required_attributes=tuple(settings.fields.protected),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["required_attributes"] = list(self.required_attributes)
        return d


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict: passed only if every check passed."""

    passed: bool
    checks: list[GateCheck]

    def summary(self) -> str:
        """The verdict and one line per check, for an executed notebook or an audit note."""
        head = "PASSED: every check passed" if self.passed else "REJECTED: a check failed"
        failed = [c.name for c in self.checks if not c.passed]
        if failed:
            head += f" ({', '.join(failed)})"
        lines = [f"gate {head}"]
        lines += [
            f"[{'pass' if c.passed else 'FAIL'}] {c.name}: {c.explanation}" for c in self.checks
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes None)."""

        def clean(v: float | None) -> float | None:
            return None if v is None or math.isnan(v) else v

        return {
            "passed": self.passed,
            "checks": [
                {
                    "name": c.name,
                    "passed": c.passed,
                    "value": clean(c.value),
                    "limit": clean(c.limit),
                    "explanation": c.explanation,
                }
                for c in self.checks
            ],
        }


def _num(x: float) -> str:
    return f"{x:.4f}"


def _metric_value(m: Mapping[str, float], name: str) -> float | None:
    v = m.get(name)
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def gate(
    challenger_metrics: Mapping[str, float],
    challenger_gaps: Mapping[str, float],
    champion_metrics: Mapping[str, float] | None,
    config: GateConfig | None = None,
) -> GateResult:
    """Check a challenger for promotion; deterministic, one explained check per rule.

    - floor: ``config.metric`` at least ``config.floor`` (at most, for brier / log_loss);
    - one check per attribute of ``challenger_gaps`` (attribute → gap of
      ``config.gap_metric``, from ``max_subgroup_gap``), in name order: gap ≤
      ``config.max_subgroup_gap``; a gap that could not be measured (NaN) fails, and so
      does a ``config.required_attributes`` entry without a gap;
    - champion: not worse than ``champion_metrics[config.metric]`` by more than
      ``config.tolerance``; skipped (passed, explained) when there is no champion. Both
      sets of metrics must come from the same holdout.
    """
    config = config or GateConfig()
    m = config.metric
    lower = m in LOWER_IS_BETTER
    checks: list[GateCheck] = []

    value = _metric_value(challenger_metrics, m)
    if value is None:
        checks.append(
            GateCheck("floor", False, None, config.floor, f"the challenger has no {m} value")
        )
    else:
        ok = value <= config.floor if lower else value >= config.floor
        rel = ("≤" if ok else ">") if lower else ("≥" if ok else "<")
        kind = "ceiling" if lower else "floor"
        checks.append(
            GateCheck(
                "floor",
                ok,
                value,
                config.floor,
                f"{m} {_num(value)} {rel} {kind} {_num(config.floor)}",
            )
        )

    gm = config.gap_metric
    missing = [a for a in config.required_attributes if a not in challenger_gaps]
    for attribute in sorted(set(challenger_gaps) | set(missing)):
        name = f"gap:{attribute}"
        limit = config.max_subgroup_gap
        if attribute in missing:
            checks.append(
                GateCheck(name, False, None, limit, f"no {gm} gap was measured for {attribute}")
            )
            continue
        gap = float(challenger_gaps[attribute])
        if math.isnan(gap):
            checks.append(
                GateCheck(
                    name,
                    False,
                    gap,
                    limit,
                    f"the {gm} gap across {attribute} groups could not be measured "
                    "(fewer than two groups large enough to compare)",
                )
            )
            continue
        ok = gap <= limit
        checks.append(
            GateCheck(
                name,
                ok,
                gap,
                limit,
                f"largest difference in {gm} between {attribute} groups {_num(gap)} "
                f"{'≤' if ok else '>'} maximum {_num(limit)}",
            )
        )

    if champion_metrics is None:
        checks.append(
            GateCheck(
                "champion",
                True,
                value,
                None,
                "no champion yet: comparison skipped",
            )
        )
    else:
        champ = _metric_value(champion_metrics, m)
        if champ is None or value is None:
            whose = "champion" if champ is None else "challenger"
            checks.append(
                GateCheck(
                    "champion", False, value, None, f"the {whose} has no {m} value to compare"
                )
            )
        else:
            limit = champ + config.tolerance if lower else champ - config.tolerance
            ok = value <= limit if lower else value >= limit
            worse = value - champ if lower else champ - value
            if worse > 0:
                how = f"worse by {_num(worse)}, tolerance {_num(config.tolerance)}"
            elif worse < 0:
                how = f"better by {_num(-worse)}"
            else:
                how = "equal"
            checks.append(
                GateCheck(
                    "champion",
                    ok,
                    value,
                    limit,
                    f"{m} {_num(value)} vs champion {_num(champ)}: {how}",
                )
            )
    return GateResult(passed=all(c.passed for c in checks), checks=checks)
