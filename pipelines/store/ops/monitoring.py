"""Post-market monitoring (EU AI Act Arts. 72, 26(5)): the store's verdict on a monitoring run.

A monitoring run (``hilt monitor``, notebooks/monitor.ipynb) computes drift statistics of
the cases the champion scored in a window against its training snapshot
(``loop/monitoring.py``) and sends them here. The store decides:

- it counts the champion's scored cases in the window itself, and refuses statistics of
  another model, of another number of cases, or that leave out a feature;
- it applies the thresholds of its own config in force (``[monitoring]``, ``[gate]``); a
  request carries no thresholds (its record forbids extra fields);
- it computes the override and accept rates per model version (over the window, and week
  by week) from its own decisions, and
  the realised performance per model version from its own predictions and the outcomes
  recorded with `hilt outcomes` (``ops/outcomes.py``);
- it writes ``monitoring.run`` (the verdict) and one ``monitoring.breach`` per finding of
  severity breach or serious, in one transaction, and returns the verdict.

A warning is listed in the run's ``breaches`` (with severity "warning") but is no breach
event. No personal data: feature names, counts, rates and statistics only.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from hilt.pipelines.deferred_imports import deferred_module
from hilt.pipelines.errors import ConflictError, InputError, NotFoundError
from hilt.pipelines.store import sql
from hilt.pipelines.store.audit.chain import utc_timestamp
from hilt.pipelines.store.monitoring_kept import MAX_RUNS as MAX_RUNS
from hilt.pipelines.store.monitoring_kept import RUN_ACTION as RUN_ACTION
from hilt.pipelines.store.monitoring_kept import run_rows
from hilt.pipelines.store.monitoring_records import (
    SEVERITY_ORDER,
    BreachRecord,
    MonitoringStatistics,
    MonitoringVerdict,
    RateRecord,
    RealisedRecord,
    Severity,
    Worst,
)
from hilt.pipelines.store.ops.incidents import open_automatic
from hilt.pipelines.workspace import RUN_NOTEBOOK_NAME

if TYPE_CHECKING:
    from datetime import datetime

    import polars as pl

    from hilt.pipelines.store.unit import Unit
else:
    pl = deferred_module("polars")  # on first use: the store's clients never import it

_SEVERITIES: tuple[Severity, ...] = ("warning", "breach", "serious")
BREACH_ACTION = "monitoring.breach"

_LIVE_DECISIONS = (
    "live AS (SELECT * FROM decisions WHERE decision_id NOT IN ("
    "SELECT undo_of FROM decisions WHERE action = 'undo' AND undo_of IS NOT NULL))"
)
#: The champion's predictions in the window: one per live case (its latest).
_WINDOW = (
    "SELECT p.case_id, arg_max(p.score, p.prediction_id) AS score FROM predictions p"
    " JOIN cases c USING (case_id)"
    " WHERE c.removed_seq IS NULL AND p.model_version = ? AND p.created_at >= ?"
    " GROUP BY p.case_id ORDER BY p.case_id"
)
#: Per model version, its latest prediction of each case with an outcome: count,
#: positives, the sum of the positives' average ranks (for the AUC) and the accuracy.
_REALISED = """
WITH latest AS (
    SELECT model_version, case_id, arg_max(score, prediction_id) AS score,
           arg_max(label, prediction_id) AS label
    FROM predictions GROUP BY model_version, case_id),
joined AS (
    SELECT l.model_version, l.score, o.outcome = ? AS positive, o.outcome = l.label AS hit
    FROM latest l JOIN outcomes o USING (case_id)),
ranked AS (
    SELECT *, rank() OVER (PARTITION BY model_version ORDER BY score)
              + (count(*) OVER (PARTITION BY model_version, score) - 1) / 2.0 AS r
    FROM joined)
SELECT model_version, count(*), count(*) FILTER (WHERE positive),
       sum(r) FILTER (WHERE positive), avg(hit::INTEGER)
FROM ranked GROUP BY model_version ORDER BY model_version
"""


def _champion(unit: Unit) -> tuple[str, str]:
    row = sql.one(unit.con, "SELECT model, model_sha256 FROM models WHERE state = 'champion'")
    if row is None:
        raise NotFoundError(
            "there is no champion to monitor: a lead approves a challenger with `hilt promote`"
        )
    return str(row[0]), str(row[1])


def _since(unit: Unit, window_days: int) -> datetime:
    if not 1 <= window_days <= 3650:
        raise InputError("window_days must be between 1 and 3650")
    return unit.clock() - timedelta(days=window_days)


def monitoring_window(
    unit: Unit, window_days: Annotated[int, Field(ge=1, le=3650)]
) -> pl.DataFrame:
    """The cases the champion scored in the last ``window_days`` days (live cases only, the
    latest prediction of each): case_id, model_version, score."""
    model, _ = _champion(unit)
    rel = unit.con.sql(_WINDOW, params=[model, _since(unit, window_days)])
    frame = pl.from_arrow(rel.to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.select(
        pl.col("case_id").cast(pl.String),
        pl.lit(model, dtype=pl.String).alias("model_version"),
        pl.col("score").cast(pl.Float64),
    )


def _graded(
    check: str, feature: str | None, value: float, levels: tuple[float, float, float]
) -> BreachRecord | None:
    """The finding for a PSI ``value`` against (warning, breach, serious) ``levels``: the
    highest level it reaches, or None below the warning."""
    reached = [(sev, t) for sev, t in zip(_SEVERITIES, levels, strict=True) if value >= t]
    if not reached:
        return None
    severity, threshold = reached[-1]
    return BreachRecord(
        check=check,
        feature=feature,
        statistic="psi",
        value=value,
        threshold=threshold,
        severity=severity,
    )


def _rates(unit: Unit, since: datetime, *, weekly: bool = False) -> list[RateRecord]:
    """The reviewers' live final decisions since ``since`` per model version (``weekly``:
    and per week, from its Monday, UTC): how many, the accept and the override rate."""
    week = "strftime(date_trunc('week', created_at AT TIME ZONE 'UTC'), '%Y-%m-%d')"
    period = week if weekly else "NULL"
    rows = unit.con.execute(
        f"WITH {_LIVE_DECISIONS} SELECT model_version, {period} AS week, count(*),"
        " count(*) FILTER (WHERE action = 'accept'), count(*) FILTER (WHERE action = 'override')"
        " FROM live WHERE action IN ('accept', 'override') AND model_version IS NOT NULL"
        " AND created_at >= ? GROUP BY ALL ORDER BY model_version, week",
        [since],
    ).fetchall()
    return [
        RateRecord(
            model_version=str(m),
            week=None if w is None else str(w),
            decisions=int(n),
            accept_rate=round(int(a) / int(n), 6),
            override_rate=round(int(o) / int(n), 6),
        )
        for m, w, n, a, o in rows
    ]


def realised(unit: Unit) -> list[RealisedRecord]:
    """Per model version, its predictions against the outcomes recorded for their cases:
    the AUC (rank-based, ties counted one half) and the accuracy of its labels."""
    rows = unit.con.execute(_REALISED, [unit.settings.target.positive]).fetchall()
    out = []
    for model, n, pos, rank_sum, accuracy in rows:
        n, pos = int(n), int(pos)
        neg = n - pos
        auc = None
        if pos and neg:
            auc = round((float(rank_sum) - pos * (pos + 1) / 2.0) / (pos * neg), 6)
        out.append(
            RealisedRecord(
                model_version=str(model),
                outcomes=n,
                auc=auc,
                accuracy=None if accuracy is None else round(float(accuracy), 6),
            )
        )
    return out


def _check_statistics(
    unit: Unit, statistics: MonitoringStatistics, model: str, sha: str, cases: int
) -> None:
    if statistics.model_version != model or statistics.model_sha256 != sha:
        raise ConflictError(
            f"the statistics are of {statistics.model_version}, not of the champion {model} "
            "(or of another model under its name: the sha256 differs); nothing was written"
        )
    if statistics.cases != cases:
        raise ConflictError(
            f"the statistics cover {statistics.cases} cases, but the champion scored {cases} "
            f"live cases in the last {statistics.window_days} days; nothing was written"
        )
    names = [f.feature for f in statistics.features]
    wanted = list(unit.settings.fields.features)
    if sorted(names) != sorted(wanted) or len(set(names)) != len(names):
        missing = sorted(set(wanted) - set(names))
        extra = sorted(set(names) - set(wanted))
        raise InputError(
            "the statistics must cover each feature once"
            + (f"; missing {missing}" if missing else "")
            + (f"; not features {extra}" if extra else "")
            + "; nothing was written"
        )


def _findings(
    unit: Unit,
    statistics: MonitoringStatistics,
    cases: int,
    rates: list[RateRecord],
    performance: list[RealisedRecord],
) -> list[BreachRecord]:
    cfg = unit.settings.monitoring
    out: list[BreachRecord] = []
    if cases >= cfg.min_cases:
        for f in statistics.features:
            levels = (cfg.psi_warning, cfg.psi_breach, cfg.psi_serious)
            drift = _graded("feature_drift", f.feature, f.psi, levels)
            if drift is not None and f.p_value < cfg.p_value:
                out.append(drift)
            increase = f.missing_rate - f.missing_rate_training
            if increase >= cfg.missing_rate_increase:
                out.append(
                    BreachRecord(
                        check="missing_rate",
                        feature=f.feature,
                        statistic="missing_rate_increase",
                        value=round(increase, 6),
                        threshold=cfg.missing_rate_increase,
                        severity="breach",
                    )
                )
        levels = (cfg.score_psi_warning, cfg.score_psi_breach, cfg.score_psi_serious)
        scores = _graded("score_drift", None, statistics.score_psi, levels)
        if scores is not None:
            out.append(scores)
    for r in rates:
        if (
            r.override_rate is not None
            and r.decisions >= cfg.min_decisions
            and r.override_rate > cfg.override_rate_max
        ):
            out.append(
                BreachRecord(
                    check="override_rate",
                    feature=r.model_version,
                    statistic="override_rate",
                    value=r.override_rate,
                    threshold=cfg.override_rate_max,
                    severity="breach",
                )
            )
    floor = cfg.realised_floor if cfg.realised_floor is not None else unit.settings.gate.floor
    metric = "accuracy" if unit.settings.gate.metric == "accuracy" else "auc"
    for p in performance:
        value = p.accuracy if metric == "accuracy" else p.auc
        if (
            p.model_version == statistics.model_version
            and p.outcomes >= cfg.min_outcomes
            and value is not None
            and value < floor
        ):
            out.append(
                BreachRecord(
                    check="realised_performance",
                    feature=p.model_version,
                    statistic=metric,
                    value=value,
                    threshold=floor,
                    severity="breach",
                )
            )
    return out


def record_monitoring(
    unit: Unit, statistics: MonitoringStatistics, run_id: str, notebook: str | None = None
) -> MonitoringVerdict:
    """The store's verdict on a monitoring run's ``statistics`` (see the module's doc),
    audited as ``monitoring.run`` with one ``monitoring.breach`` per breach, in one
    transaction. ``run_id``: the run's id (its MLflow run); ``notebook``: the executed
    notebook's file name in runs/."""
    if not run_id or len(run_id) > 128 or any(c in run_id for c in "\x00\n\r/"):
        raise InputError("run_id must be 1 to 128 characters on one line, without '/'")
    if notebook is not None and not RUN_NOTEBOOK_NAME.match(notebook):
        raise InputError("notebook must be the file name of a notebook in runs/")
    with unit.transaction():
        now = unit.clock()
        since = now - timedelta(days=statistics.window_days)
        model, sha = _champion(unit)
        counted = sql.scalar(unit.con, f"SELECT count(*) FROM ({_WINDOW})", [model, since])
        cases = int(counted or 0)
        _check_statistics(unit, statistics, model, sha, cases)
        rates = _rates(unit, since)
        weekly = _rates(unit, since, weekly=True)
        performance = realised(unit)
        breaches = _findings(unit, statistics, cases, rates, performance)
        worst: Worst = max((b.severity for b in breaches), key=SEVERITY_ORDER.index, default="none")
        payload: dict[str, Any] = {
            "window_days": statistics.window_days,
            "cases": cases,
            "drift_checked": cases >= unit.settings.monitoring.min_cases,
            "model_version": model,
            "champion_sha256": sha,
            "breaches": [b.model_dump() for b in breaches],
            "worst": worst,
            "rates": [r.model_dump() for r in rates],
            "weekly_rates": [r.model_dump() for r in weekly],
            "realised": [p.model_dump() for p in performance],
            "notebook": notebook,
        }
        if worst == "serious":
            # A serious finding may be a serious incident (EU AI Act Art. 73): the store opens
            # one in this transaction, its clock running from now; while it stays open, the
            # next serious run adds a note to it instead of opening another.
            found = "; ".join(
                f"{b.check} {b.feature or 'scores'}: {b.statistic} {b.value:.4g} (threshold "
                f"{b.threshold:.4g})"
                for b in breaches
                if b.severity == "serious"
            )
            payload["incident"] = open_automatic(
                unit,
                "serious_incident",
                "monitoring",
                f"monitoring run {run_id} of {model}: serious findings: {found}",
                reuse_open=True,
            )
        seq = unit.append_audit(RUN_ACTION, "monitoring", run_id, payload, now)
        for b in breaches:
            if b.severity in ("breach", "serious"):
                unit.append_audit(BREACH_ACTION, "monitoring", b.check, b.model_dump(), now)
    return _verdict(run_id, seq, utc_timestamp(now), payload)


def _verdict(run_id: str, seq: int, ts: str, payload: dict[str, Any]) -> MonitoringVerdict:
    return MonitoringVerdict(
        run_id=run_id,
        seq=seq,
        ts=ts,
        window_days=int(payload["window_days"]),
        cases=int(payload["cases"]),
        model_version=str(payload["model_version"]),
        worst=payload["worst"],
        breaches=[BreachRecord(**b) for b in payload["breaches"]],
        rates=[RateRecord(**r) for r in payload.get("rates", [])],
        weekly_rates=[RateRecord(**r) for r in payload.get("weekly_rates", [])],
        realised=[RealisedRecord(**p) for p in payload.get("realised", [])],
        notebook=payload.get("notebook"),
        incident=payload.get("incident"),
    )


def monitoring_runs(
    unit: Unit, limit: Annotated[int, Field(ge=1, le=MAX_RUNS)] = 20
) -> list[MonitoringVerdict]:
    """The store's verdicts on the latest monitoring runs, newest first."""
    if not 1 <= limit <= MAX_RUNS:
        raise InputError(f"limit must be between 1 and {MAX_RUNS}")
    rows = (
        unit.kept_runs.newest(unit.con, limit)
        if unit.kept_runs is not None
        else run_rows(unit.con, limit)
    )
    return [_verdict(str(r), int(s), str(ts), json.loads(p)) for s, ts, r, p in rows]
