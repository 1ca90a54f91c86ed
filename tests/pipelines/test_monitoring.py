"""Post-market monitoring (EU AI Act Arts. 72, 26(5)): drift statistics, the store's verdict,
outcomes, and `hilt monitor` end to end.

The computation (``loop/monitoring.py``) on the demo data with fixed seeds: drift injected
into a batch of new cases is found and named, a batch from the training distribution is
not. The store (``ops/monitoring.py``) decides the verdict from its own config and its own
tables; outcomes (``ops/outcomes.py``) raise the realised-performance figures, are validated
whole, and never enter the training snapshot or the holdout.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError
from scipy import stats

from hilt.pipelines.config import load_settings
from hilt.pipelines.dashboards.oversight import StoreOversightBackend
from hilt.pipelines.errors import ConflictError, InputError, NotFoundError, PermissionDeniedError
from hilt.pipelines.loop import monitoring
from hilt.pipelines.loop.promotion import promote
from hilt.pipelines.loop.steps import monitor, score, training_data
from hilt.pipelines.loop.tracking.client import configure
from hilt.pipelines.store import Identity, Store, open_store_as
from hilt.pipelines.store.monitoring_records import (
    EstimatedPerformance,
    FeatureStatistics,
    MonitoringStatistics,
)
from hilt.pipelines.workspace import Workspace
from tests.conftest import CONFIG, StoreFactory, operator
from tests.loop_helpers import (
    LABELLED,
    all_cases,
    events_since,
    hilt_forked,
    loop_workspace,
    personal_findings,
    review_some,
    train_in_process,
)

SETTINGS = load_settings(CONFIG)
TARGET = SETTINGS.target.column
#: New cases scored into the window (from the training distribution: the demo data's tail).
NEW = 200


def drifted(frame: pl.DataFrame, seed: int, prefix: str) -> pl.DataFrame:
    """``frame`` with the amounts tripled and half the purposes set to one rare level."""
    rng = np.random.default_rng(seed)
    flip = pl.Series(rng.random(frame.height) < 0.5)
    return frame.with_columns(
        (pl.col("credit_amount").cast(pl.Float64) * 3).alias("credit_amount"),
        pl.when(flip).then(pl.lit("vacation/others")).otherwise(pl.col("purpose")).alias("purpose"),
        (prefix + pl.col(SETTINGS.use_case.id_column)).alias(SETTINGS.use_case.id_column),
    )


def typed(frame: pl.DataFrame) -> pl.DataFrame:
    """The demo CSV's text columns as the store types them (numbers as numbers)."""
    return frame.with_columns(
        [
            pl.col(n).cast(pl.Float64)
            for n in SETTINGS.fields.features
            if SETTINGS.columns[n].type in ("int", "float")
        ]
    )


def reference_of(train: pl.DataFrame) -> monitoring.Reference:
    rng = np.random.default_rng(0)
    return monitoring.reference(train, rng.random(train.height), SETTINGS)


def compare(ref: monitoring.Reference, live: pl.DataFrame, seed: int) -> MonitoringStatistics:
    rng = np.random.default_rng(seed)
    return monitoring.compare(
        ref,
        live,
        rng.random(live.height),
        SETTINGS,
        model_version="m/v1",
        model_sha256="0" * 64,
        window_days=30,
    )


def drift_named(stats: MonitoringStatistics) -> set[str]:
    cfg = SETTINGS.monitoring
    return {
        f.feature for f in stats.features if f.psi >= cfg.psi_breach and f.p_value < cfg.p_value
    }


# ---------------------------------------------------------------------------- computation
@pytest.mark.obligation("AI Act 72")
def test_injected_drift_is_found_and_named_and_a_training_like_batch_is_not() -> None:
    data = typed(all_cases())
    ref = reference_of(data.head(LABELLED))
    same = compare(ref, data.slice(LABELLED, 300), seed=1)
    assert drift_named(same) == set()
    assert max(f.psi for f in same.features) < SETTINGS.monitoring.psi_breach
    shifted = compare(ref, drifted(data.slice(LABELLED, 300), 2, "D-"), seed=1)
    assert drift_named(shifted) == {"credit_amount", "purpose"}
    by_name = {f.feature: f for f in shifted.features}
    assert by_name["credit_amount"].test == "ks"
    assert by_name["purpose"].test == "chi-square"
    # the untouched features stay quiet
    assert by_name["duration"].psi < SETTINGS.monitoring.psi_warning


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    assert monitoring.psi(np.array([10.0, 20, 30]), np.array([1.0, 2, 3])) == pytest.approx(0)
    small = monitoring.psi(np.array([50.0, 50]), np.array([45.0, 55]))
    large = monitoring.psi(np.array([50.0, 50]), np.array([10.0, 90]))
    assert 0 < small < large


def test_the_ks_test_on_distinct_values_is_scipys() -> None:
    rng = np.random.default_rng(7)
    for a, b in (
        (rng.normal(size=700), rng.normal(0.1, 1.0, 5000)),
        (rng.integers(0, 20, 700).astype(float), rng.integers(0, 22, 3000).astype(float)),
        (np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0, 5.0])),
    ):
        expected = stats.ks_2samp(a, b, method="asymp")
        d, p = monitoring.ks(np.sort(a), monitoring.distinct(b))
        assert d == pytest.approx(expected.statistic, abs=1e-12)
        assert p == pytest.approx(expected.pvalue, rel=1e-9)


def test_bins_of_distinct_values_are_the_bins_of_the_values() -> None:
    values = np.random.default_rng(3).integers(0, 10, 1000).astype(float)
    edges = monitoring.quantile_edges(values)
    assert np.array_equal(
        monitoring.binned_distinct(monitoring.distinct(values), edges),
        monitoring.binned(values, edges),
    )


def test_the_windows_figures_from_polars_are_numpys() -> None:
    """What ``compare`` counts with polars (distinct values and running counts of a
    number, the scores' bins and means) equals the plain numpy computation: the KS test and
    PSI on the sorted values, ``binned`` of the scores (a score on an edge in the bin above
    it, a NaN in the top bin, as numpy's search puts them), the mean and the expected
    accuracy."""
    data = typed(all_cases())
    ref = reference_of(data.head(LABELLED))
    window = data.slice(LABELLED, 300)
    rng = np.random.default_rng(5)
    scores = rng.random(window.height)
    scores[40] = ref.score_edges[2]  # (on an edge: in the bin above it)
    got = monitoring.compare(
        ref, window, scores, SETTINGS, model_version="m", model_sha256="0" * 64, window_days=30
    )
    threshold = SETTINGS.review.decision_threshold
    by_name = {f.feature: f for f in got.features}
    for name, feature_ref in ref.features.items():
        if not isinstance(feature_ref, monitoring.NumericReference):
            continue
        values = window[name].drop_nulls().cast(pl.Float64).to_numpy()
        ordered = np.sort(values[np.isfinite(values)])
        d, _ = stats.ks_2samp(feature_ref.values, ordered, method="asymp")
        assert by_name[name].statistic == round(d, 6)
        bins = monitoring.binned(ordered, feature_ref.edges)
        assert by_name[name].psi == round(monitoring.psi(feature_ref.counts, bins), 6)
    assert got.score_psi == round(
        monitoring.psi(ref.score_counts, monitoring.binned(scores, ref.score_edges)), 6
    )
    chosen = np.where(scores >= threshold, scores, 1.0 - scores)
    assert got.estimated.positive_rate == pytest.approx(scores.mean(), abs=1e-6)
    assert got.estimated.accuracy == pytest.approx(chosen.mean(), abs=1e-6)
    scores[3] = np.nan
    figures = monitoring._score_figures(scores, ref.score_edges, threshold).collect()
    bins = monitoring._score_bins(figures, ref.score_edges)
    assert np.array_equal(bins, monitoring.binned(scores, ref.score_edges))
    assert bins[-1] >= 1 and bins.sum() == scores.size


def test_estimated_performance_comes_from_the_calibrated_probabilities() -> None:
    e = monitoring.estimated_performance(np.array([0.9, 0.2, 0.6, 0.1]), 0.5)
    assert e.positive_rate == pytest.approx(0.45)
    assert e.accuracy == pytest.approx((0.9 + 0.8 + 0.6 + 0.9) / 4)


# ---------------------------------------------------------------------------- the store
@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A champion (trained by dana, approved by max) that scored NEW cases from the
    training distribution into the window."""
    ws = loop_workspace(tmp_path_factory.mktemp("monitoring"))
    registration = train_in_process(ws, "dana")
    promote(ws, registration.run_id, "max")
    store = open_store_as(ws, Identity(name="dana"))
    settings = ws.settings()
    configure(ws, settings=settings)
    model = score.load_model(store, settings)
    cases = all_cases().slice(LABELLED, NEW).drop(TARGET)
    store.ingest_cases(cases)
    score.score_cases(store, model, cases, settings)
    return ws


def statistics_of(ws: Workspace, store: Store) -> MonitoringStatistics:
    settings = ws.settings()
    model = monitor.champion(store, settings)
    ref = monitor.training_reference(ws, store, model, settings)
    live = monitor.window(store, 30)
    return monitor.compute(ref, live, model, settings)


def quiet(stats: MonitoringStatistics) -> MonitoringStatistics:
    """The same statistics with every drift figure zeroed (what a client hiding drift sends)."""
    features = [
        f.model_copy(update={"psi": 0.0, "p_value": 1.0, "missing_rate": 0.0})
        for f in stats.features
    ]
    return stats.model_copy(update={"features": features, "score_psi": 0.0})


@pytest.mark.obligation("AI Act 72", "AI Act 26(5)")
def test_the_store_gives_the_verdict_and_audits_it(ws: Workspace) -> None:
    store = operator(ws)
    stats = statistics_of(ws, store)
    assert stats.cases == NEW
    assert drift_named(stats) == set()
    before = store.audit_head().seq
    verdict = store.record_monitoring(stats, "run-quiet")
    assert verdict.worst in ("none", "warning")
    assert not verdict.breached
    assert verdict.cases == NEW
    [event] = events_since(ws, before)
    assert event.action == "monitoring.run"
    assert event.object_id == "run-quiet"
    assert event.payload["worst"] == verdict.worst
    assert event.payload["model_version"] == "hilt-german-credit/v1"
    assert store.monitoring_runs(1)[0].run_id == "run-quiet"
    # The oversight dashboard shows the store's verdict to a lead.
    lead = open_store_as(ws, Identity(name="max"))
    shown = StoreOversightBackend(lead, ws.settings(), ws).latest_monitoring()
    assert shown is not None
    assert (shown.run_id, shown.seq, shown.worst) == ("run-quiet", verdict.seq, verdict.worst)


@pytest.mark.obligation("AI Act 72", "AI Act 26(5)")
def test_a_client_cannot_hide_a_breach_the_stores_own_rates_show(ws: Workspace) -> None:
    """The override rate comes from the store's decisions, the thresholds from the store's
    config: zeroed drift figures do not hide reviewers overriding the model."""
    decided = review_some(ws, "alice", 21)  # overrides every third: 1/3 > 0.3
    assert decided == 21
    store = operator(ws)
    stats = quiet(statistics_of(ws, store))
    before = store.audit_head().seq
    verdict = store.record_monitoring(stats, "run-overrides")
    assert verdict.breached
    [breach] = [b for b in verdict.breaches if b.check == "override_rate"]
    assert breach.feature == "hilt-german-credit/v1"
    assert breach.threshold == ws.settings().monitoring.override_rate_max
    # ... and over time: week by week, the same decisions.
    assert verdict.weekly_rates and all(r.week for r in verdict.weekly_rates)
    assert sum(r.decisions for r in verdict.weekly_rates) == 21
    events = events_since(ws, before)
    assert [e.action for e in events] == ["monitoring.run", "monitoring.breach"]
    assert events[1].object_id == "override_rate"
    # A request cannot bring its own thresholds ...
    with pytest.raises(ValidationError):
        MonitoringStatistics(**stats.model_dump(), psi_breach=99.0)  # type: ignore[call-arg]
    # ... nor leave cases out of the window, nor a feature: refused, nothing written.
    head = store.audit_head().seq
    with pytest.raises(InputError, match="cover"):
        store.record_monitoring(stats.model_copy(update={"cases": 10}), "run-subset")
    with pytest.raises(InputError, match="missing"):
        store.record_monitoring(stats.model_copy(update={"features": []}), "run-subset")
    assert store.audit_head().seq == head


@pytest.mark.obligation("AI Act 72", "AI Act 73")
def test_severities_follow_the_stores_thresholds_and_only_breaches_are_breach_events(
    ws: Workspace,
) -> None:
    store = operator(ws)
    stats = statistics_of(ws, store)
    changed = {
        "job": {"psi": 0.6, "p_value": 0.0},  # serious
        "housing": {"psi": 0.15, "p_value": 0.0},  # warning
        "purpose": {"psi": 0.6, "p_value": 0.5},  # the test does not agree: nothing
    }
    features = [f.model_copy(update=changed.get(f.feature, {})) for f in stats.features]
    before = store.audit_head().seq
    verdict = store.record_monitoring(stats.model_copy(update={"features": features}), "run-s")
    assert verdict.worst == "serious"
    drift = {b.feature: b.severity for b in verdict.breaches if b.check == "feature_drift"}
    assert drift == {"job": "serious", "housing": "warning"}
    breach_events = [e for e in events_since(ws, before) if e.action == "monitoring.breach"]
    assert {(e.object_id, e.payload["feature"]) for e in breach_events} >= {
        ("feature_drift", "job")
    }
    assert ("feature_drift", "housing") not in {
        (e.object_id, e.payload["feature"]) for e in breach_events
    }
    # A serious finding opens a serious incident in the same transaction, its clock running
    # (Art. 73: 15 days); the next serious run adds a note to it instead of another.
    assert verdict.incident is not None
    opened = [e for e in events_since(ws, before) if e.action == "incident.opened"]
    assert [(e.object_id, e.payload["source"], e.payload["serious"]) for e in opened] == [
        (verdict.incident, "monitoring", True)
    ]
    incident = next(i for i in store.incidents(open_only=True) if i.incident_id == verdict.incident)
    assert (incident.kind, incident.source) == ("serious_incident", "monitoring")
    assert "feature_drift job" in incident.summary and "housing" not in incident.summary
    again_from = store.audit_head().seq
    again = store.record_monitoring(stats.model_copy(update={"features": features}), "run-s2")
    assert again.incident == verdict.incident
    assert [e.action for e in events_since(ws, again_from) if e.action.startswith("incident.")] == [
        "incident.updated"
    ]
    # A run with no serious finding opens none.
    calm_from = store.audit_head().seq
    assert store.record_monitoring(stats, "run-calm").incident is None
    assert not [e for e in events_since(ws, calm_from) if e.action.startswith("incident.")]


def test_a_reviewer_may_not_record_a_monitoring_run(ws: Workspace) -> None:
    store = operator(ws)
    stats = statistics_of(ws, store)
    head = store.audit_head().seq
    with pytest.raises(PermissionDeniedError):
        open_store_as(ws, Identity(name="alice")).record_monitoring(stats, "run-reviewer")
    assert store.audit_head().seq == head


# ---------------------------------------------------------------------------- outcomes
def outcomes_file(tmp_path: Path, ids: list[str], outcomes: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            SETTINGS.use_case.id_column: ids,
            "outcome": outcomes,
            "observed_at": ["2026-01-31"] * len(ids),
        }
    )


@pytest.mark.obligation("AI Act 72", "AI Act 10")
def test_outcomes_raise_realised_figures_and_never_enter_the_snapshot(
    ws: Workspace, tmp_path: Path
) -> None:
    store = operator(ws)
    snapshot_before = pl.read_parquet(training_data.take_snapshot(store).path)
    # The holdout's cases, each with the opposite of its seed label as the "outcome".
    holdout = snapshot_before.filter(pl.col("split") == "holdout").sort("case_id")
    classes = SETTINGS.target.classes
    flipped = [classes[1 - classes.index(x)] for x in holdout["label"].cast(pl.String)]
    # ... and the window's scored cases, with outcomes from the data set.
    scored = all_cases().slice(LABELLED, NEW)
    ids = [*holdout["case_id"].to_list(), *scored[SETTINGS.use_case.id_column].to_list()]
    values = [*flipped, *scored[TARGET].to_list()]
    assert store.monitoring_runs(1)[0].realised == []
    before = store.audit_head().seq
    result = store.record_outcomes(outcomes_file(tmp_path, ids, values))
    assert result.rows == len(ids)
    [event] = events_since(ws, before)
    assert event.action == "outcome.recorded"
    assert set(event.payload) >= {"rows", "digest", "by_class"}
    assert store.verify().ok
    stats = statistics_of(ws, store)
    verdict = store.record_monitoring(stats, "run-outcomes")
    [champion] = [r for r in verdict.realised if r.model_version == "hilt-german-credit/v1"]
    assert champion.outcomes == NEW
    assert champion.auc is not None and champion.auc > 0.6
    # Never training data, never the holdout: the snapshot is the same as before, row for
    # row (its labels are the seed labels and the reviewers' decisions, not the outcomes).
    snapshot_after = pl.read_parquet(training_data.take_snapshot(store).path)
    columns = ["case_id", "split", "label", "label_source"]
    assert (
        snapshot_after.select(columns)
        .sort("case_id")
        .equals(snapshot_before.select(columns).sort("case_id"))
    )
    assert "outcome" not in snapshot_after.columns


def test_bad_outcomes_are_refused_whole(ws: Workspace, tmp_path: Path) -> None:
    store = operator(ws)
    scored = all_cases().slice(LABELLED, 1)[SETTINGS.use_case.id_column].to_list()
    # The case whose outcome is recorded twice below: recorded once here, unless an earlier
    # test of this module did (the module's workspace is shared; run alone, none did).
    with contextlib.suppress(ConflictError):
        store.record_outcomes(outcomes_file(tmp_path, scored, ["1"]))
    head = store.audit_head().seq
    rows = store.counts()["outcomes"]
    with pytest.raises(NotFoundError, match="unknown case ids"):
        store.record_outcomes(outcomes_file(tmp_path, ["NO-SUCH-CASE"], ["1"]))
    with pytest.raises(InputError, match="target classes"):
        store.record_outcomes(outcomes_file(tmp_path, ["APP-000001"], ["maybe"]))
    with pytest.raises(InputError, match="repeat"):
        store.record_outcomes(outcomes_file(tmp_path, ["APP-000001", "APP-000001"], ["1", "0"]))
    with pytest.raises(ConflictError, match="already"):
        store.record_outcomes(outcomes_file(tmp_path, scored, ["1"]))
    assert store.audit_head().seq == head
    assert store.counts()["outcomes"] == rows


@pytest.mark.obligation("GDPR 17")
def test_an_erasure_removes_the_subjects_outcomes_and_verify_still_passes(ws: Workspace) -> None:
    store = operator(ws)
    row = all_cases().slice(LABELLED, 1)
    case_id = row[SETTINGS.use_case.id_column][0]
    subject = row[str(SETTINGS.use_case.subject_column)][0]
    rows = store.counts()["outcomes"]
    assert rows > 0
    open_store_as(ws, Identity(name="pia")).subject_erase(subject)
    assert store.counts()["outcomes"] < rows
    assert store.get_case(case_id).data_removed
    assert store.verify().ok


# ---------------------------------------------------------------------------- hilt monitor
@pytest.mark.slow
@pytest.mark.obligation("AI Act 72", "AI Act 26(5)")
def test_hilt_monitor_runs_the_notebook_and_exits_5_on_injected_drift(
    ws: Workspace, tmp_path: Path
) -> None:
    store = open_store_as(ws, Identity(name="dana"))
    settings = ws.settings()
    configure(ws, settings=settings)
    model = score.load_model(store, settings)
    cases = drifted(all_cases().slice(LABELLED + NEW, 100), 3, "D-").drop(TARGET)
    store.ingest_cases(cases)
    score.score_cases(store, model, cases, settings)
    before = store.audit_head().seq
    done = hilt_forked("monitor", "--workspace", ws.root, folder=tmp_path / "hilt")
    assert done.returncode == 5, done.stdout + done.stderr
    assert "credit_amount" in done.stdout
    events = events_since(ws, before)
    [run] = [e for e in events if e.action == "monitoring.run"]
    named = {b["feature"] for b in run.payload["breaches"] if b["check"] == "feature_drift"}
    assert "credit_amount" in named
    breaches = [e for e in events if e.action == "monitoring.breach"]
    assert {e.object_id for e in breaches} >= {"feature_drift"}
    notebook = ws.runs_dir / str(run.payload["notebook"])
    assert notebook.is_file()
    assert [e.action for e in events if e.action.startswith("run.")] == [
        "run.started",
        "run.finished",
    ]
    assert personal_findings(notebook) == []


def test_hilt_monitor_without_a_champion_is_refused_and_hilt_outcomes_checks_its_file(
    tmp_path: Path,
) -> None:
    ws = loop_workspace(tmp_path, labelled=50, tracking=False)
    before = operator(ws).audit_head().seq
    done = hilt_forked("monitor", "--workspace", ws.root, folder=tmp_path / "hilt")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no champion" in done.stderr
    assert "Traceback" not in done.stderr
    assert operator(ws).audit_head().seq == before
    assert not ws.runs_dir.exists() or not list(ws.runs_dir.iterdir())
    # `hilt outcomes`: one line and exit 2 for a bad file, nothing written; then a good one.
    bad = tmp_path / "bad.csv"
    outcomes_file(tmp_path, ["APP-000001", "NO-SUCH-CASE"], ["1", "0"]).write_csv(bad)
    done = hilt_forked("outcomes", bad, "--workspace", ws.root, folder=tmp_path / "hilt")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unknown case ids" in done.stderr and "Traceback" not in done.stderr
    assert operator(ws).counts()["outcomes"] == 0
    good = tmp_path / "good.csv"
    outcomes_file(tmp_path, ["APP-000001", "APP-000002"], ["1", "0"]).write_csv(good)
    done = hilt_forked("outcomes", good, "--workspace", ws.root, folder=tmp_path / "hilt")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "recorded 2 outcomes" in done.stdout
    assert operator(ws).counts()["outcomes"] == 2


def flat_statistics(model_version: str, model_sha256: str) -> MonitoringStatistics:
    """Statistics of 200 cases in a 30-day window showing no drift at all."""
    features = [
        FeatureStatistics(
            feature=name,
            kind="number" if SETTINGS.columns[name].type in ("int", "float") else "category",
            test="ks" if SETTINGS.columns[name].type in ("int", "float") else "chi-square",
            psi=0.0,
            statistic=0.0,
            p_value=1.0,
            missing_rate_training=0.0,
            missing_rate=0.0,
        )
        for name in SETTINGS.fields.features
    ]
    none = EstimatedPerformance(cases=0)
    return MonitoringStatistics(
        model_version=model_version,
        model_sha256=model_sha256,
        window_days=30,
        cases=200,
        training_rows=100,
        features=features,
        score_psi=0.0,
        estimated=none,
        estimated_training=none,
    )


def test_monitoring_and_outcomes_work_the_same_through_the_service(store_as: StoreFactory) -> None:
    """The operations are rows of the table: embedded and over HTTP alike (window, outcomes,
    verdict, the latest runs)."""
    dana = store_as("dana")
    window = dana.monitoring_window(30)
    assert window.height == 200
    [model] = [m for m in dana.models() if m.state == "champion"]
    assert set(window["model_version"]) == {model.model}
    ids = window["case_id"].head(40).to_list()
    result = dana.record_outcomes(
        pl.DataFrame(
            {
                SETTINGS.use_case.id_column: ids,
                "outcome": ["1", "0"] * 20,
                "observed_at": ["2026-01-31T12:00:00Z"] * 40,
            }
        )
    )
    assert result.rows == 40 and sum(result.by_class.values()) == 40
    stats = flat_statistics(model.model, model.model_sha256)
    verdict = store_as("max").record_monitoring(stats, "run-service")
    [realised] = [r for r in verdict.realised if r.model_version == model.model]
    assert realised.outcomes == 40
    assert store_as("otto").monitoring_runs(5)[0].run_id == "run-service"
    with pytest.raises(PermissionDeniedError):
        store_as("alice").record_monitoring(stats, "run-reviewer")
