"""The steps of retraining, one typed function per cell of notebooks/retrain.ipynb.

snapshot → dataset → train → evaluate → compare with the champion → gate → log and register
→ audit. Each step returns something an executed notebook can show an auditor: small
dataclasses with a ``table()`` (polars), figures (matplotlib, PNG in Jupyter), the gate's
verdict. Nothing here prints, and nothing returned for display holds a row of data: tables
are counts, metrics and group-level aggregates (groups smaller than
``evaluate.MIN_GROUP_SIZE`` show their count only).

Reproducibility: the snapshot file is identified by its sha256; training is deterministic
(``model.fit``); ``label_noise`` flips a share of the training labels chosen by a seeded
generator, so even a robustness check reproduces byte for byte.

Importing this module does not import mlflow or xgboost; the steps that need them import
them when called.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.loop import evaluate as ev
from hilt.pipelines.loop.model import TrainedModel, TrainParams, fit, training_frame
from hilt.pipelines.store.protocol import Store
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    from hilt.pipelines.loop.plots import EvaluationFigure

#: The label sources of a snapshot, in display order.
LABEL_SOURCES: tuple[str, ...] = ("original", "reviewer-accepted", "reviewer-corrected")
#: The largest share of training labels ``train`` may flip (0.5 would be pure noise).
MAX_LABEL_NOISE = 0.5
#: Run tags set by the retraining steps (and read by ``hilt runs list`` / promotion).
TAG_GATE = "hilt.gate"
TAG_KIND = "hilt.kind"
TAG_REPRODUCES = "hilt.reproduces"
TAG_VERSION = "hilt.registered_version"
#: Params logged next to the training parameters.
PARAM_LABEL_NOISE = "label_noise"
PARAM_AS_OF_SEQ = "as_of_seq"

_SNAPSHOT_NAME = re.compile(r"^snapshot-(\d{8})-([0-9a-f]{12})\.parquet$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Floats = npt.NDArray[np.float64]


def _file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------- set-up
def configure_display() -> None:
    """Show tables in full in an executed notebook (every row, column and character of a
    hash): an auditor reads them there, without running anything."""
    pl.Config.set_tbl_rows(100)
    pl.Config.set_tbl_cols(20)
    pl.Config.set_fmt_str_lengths(100)
    pl.Config.set_tbl_width_chars(200)
    pl.Config.set_tbl_hide_dataframe_shape(True)


def open_workspace(workspace: str | Path | None) -> tuple[Workspace, Settings]:
    """The workspace (``workspace``, else $HILT_WORKSPACE) and its settings."""
    ws = Workspace.at(workspace or None)
    ws.require()
    return ws, ws.settings()


def ensure_run(ws: Workspace, settings: Settings, run_id: str, author: str, kind: str) -> str:
    """Configure MLflow for the workspace; the run ``run_id`` (made by ``hilt retrain``), or,
    run by hand without one, a new run authored by ``author`` (else the OS user)."""
    from hilt.pipelines.loop import tracking

    tracking.configure(ws, settings=settings)
    if run_id:
        return run_id
    import getpass

    who = author or f"os:{getpass.getuser()}"
    return tracking.create_run(
        ws, settings, run_name=f"{kind}-interactive", author=who, tags={TAG_KIND: kind}
    )


# ---------------------------------------------------------------------------- snapshot
@dataclass(frozen=True)
class Snapshot:
    """A training snapshot file: where it is, its sha256, its counts (no rows)."""

    name: str
    path: Path
    sha256: str
    as_of_seq: int
    rows: int
    train_rows: int
    holdout_rows: int
    #: Training rows by label source (original, reviewer-accepted, reviewer-corrected).
    label_sources: dict[str, int]
    #: Reviewer-accepted labels left out by the cap (training.max_accepted_share); None
    #: when an existing file was reused (the cap was applied when it was made).
    accepted_dropped: int | None
    #: The audit event that recorded the export; None when an existing file was reused.
    audit_seq: int | None

    @property
    def reused(self) -> bool:
        return self.audit_seq is None

    def table(self) -> pl.DataFrame:
        """The snapshot as an auditor reads it: one row per fact."""
        facts: list[tuple[str, str]] = [
            ("file", self.name),
            ("sha256", self.sha256),
            ("as of audit seq", str(self.as_of_seq)),
            (
                "exported by",
                "an existing file, reused and checked"
                if self.reused
                else f"this run (audit seq {self.audit_seq})",
            ),
            ("rows", str(self.rows)),
            ("training rows", str(self.train_rows)),
            ("holdout rows", str(self.holdout_rows)),
        ]
        if self.accepted_dropped is not None:
            facts.append(("accepted labels left out by the cap", str(self.accepted_dropped)))
        return pl.DataFrame(facts, schema=["item", "value"], orient="row")


def take_snapshot(store: Store, as_of_seq: int = 0) -> Snapshot:
    """Export the training view as of ``as_of_seq`` (0: now) and check the file's sha256."""
    if isinstance(as_of_seq, bool) or not isinstance(as_of_seq, int) or as_of_seq < 0:
        raise InputError("as_of_seq must be a non-negative integer (0: now)")
    record = store.snapshot(as_of_seq or None)
    path = Path(record.path)
    if _file_sha256(path.read_bytes()) != record.sha256:
        raise InputError(f"{path.name}: the file does not match the sha256 the store recorded")
    return Snapshot(
        name=record.name,
        path=path,
        sha256=record.sha256,
        as_of_seq=record.as_of_seq,
        rows=record.rows,
        train_rows=record.train_rows,
        holdout_rows=record.holdout_rows,
        label_sources=dict(record.label_sources),
        accepted_dropped=record.accepted_dropped,
        audit_seq=record.seq,
    )


def find_snapshot(ws: Workspace, sha256: str) -> Path:
    """The snapshot file in ``ws.snapshots_dir`` whose sha256 is ``sha256`` (checked)."""
    if not _SHA256.match(sha256):
        raise InputError("a snapshot sha256 is 64 lowercase hex digits")
    for path in sorted(ws.snapshots_dir.glob(f"snapshot-*-{sha256[:12]}.parquet")):
        if _file_sha256(path.read_bytes()) == sha256:
            return path
    raise InputError(
        f"no snapshot file with sha256 {sha256} in {ws.snapshots_dir} "
        "(deleted, or changed since it was made)"
    )


def reuse_snapshot(ws: Workspace, sha256: str) -> Snapshot:
    """An existing snapshot file, found by its sha256 (to reproduce a past run)."""
    path = find_snapshot(ws, sha256)
    m = _SNAPSHOT_NAME.match(path.name)
    frame = pl.read_parquet(path, columns=["split", "label_source"])
    train = frame.filter(pl.col("split") == "train")
    return Snapshot(
        name=path.name,
        path=path,
        sha256=sha256,
        as_of_seq=int(m.group(1)) if m else 0,
        rows=frame.height,
        train_rows=train.height,
        holdout_rows=frame.height - train.height,
        label_sources={
            s: int(train.filter(pl.col("label_source") == s).height) for s in LABEL_SOURCES
        },
        accepted_dropped=None,
        audit_seq=None,
    )


def get_snapshot(
    store: Store, ws: Workspace, as_of_seq: int = 0, reuse_sha256: str = ""
) -> Snapshot:
    """The run's snapshot: the existing file ``reuse_sha256`` if given, else a new export as
    of ``as_of_seq`` (0: now)."""
    if reuse_sha256:
        return reuse_snapshot(ws, reuse_sha256)
    return take_snapshot(store, as_of_seq)


# ---------------------------------------------------------------------------- dataset
@dataclass(frozen=True)
class Dataset:
    """The snapshot as model input: training and holdout matrices, targets, and the holdout's
    protected attributes (for subgroup metrics only; never a model input unless configured
    as a feature)."""

    snapshot: Snapshot
    X_train: pl.DataFrame = field(repr=False)
    y_train: pl.Series = field(repr=False)
    X_holdout: pl.DataFrame = field(repr=False)
    y_holdout: pl.Series = field(repr=False)
    #: The holdout's feature columns as stored (what a saved model scores).
    holdout_features: pl.DataFrame = field(repr=False)
    groups_holdout: dict[str, pl.Series] = field(repr=False)
    #: (split, label source) → (rows, positives), for the summary.
    counts: dict[tuple[str, str], tuple[int, int]]

    def summary(self) -> pl.DataFrame:
        """Rows and positive share per split and label source: original, reviewer-accepted,
        reviewer-corrected (training), original (holdout)."""
        rows = []
        for (split, source), (n, positives) in self.counts.items():
            rows.append(
                {
                    "split": split,
                    "label source": source,
                    "rows": n,
                    "positive share": round(positives / n, 4) if n else None,
                }
            )
        return pl.DataFrame(
            rows,
            schema={
                "split": pl.String,
                "label source": pl.String,
                "rows": pl.Int64,
                "positive share": pl.Float64,
            },
        )


def load_dataset(snapshot: Snapshot, settings: Settings) -> Dataset:
    """Read the snapshot file (its sha256 checked on the very bytes read) into training and
    holdout matrices (``model.training_frame``) and the holdout's protected attributes."""
    data = snapshot.path.read_bytes()
    if _file_sha256(data) != snapshot.sha256:
        raise InputError(f"{snapshot.name}: the file changed since the snapshot was taken")
    frame = pl.read_parquet(io.BytesIO(data))
    needed = ["split", "label", "label_source"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InputError(f"{snapshot.name}: not a training snapshot (lacks {missing})")
    train = frame.filter(pl.col("split") == "train")
    holdout = frame.filter(pl.col("split") == "holdout")
    if train.height == 0:
        raise InputError(f"{snapshot.name}: no training rows")
    if holdout.height == 0:
        raise InputError(f"{snapshot.name}: no holdout rows to evaluate on")
    X_train, y_train = training_frame(train, settings, label_column="label")
    X_holdout, y_holdout = training_frame(holdout, settings, label_column="label")
    positive = settings.target.positive
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    for split, part, sources in (
        ("train", train, LABEL_SOURCES),
        ("holdout", holdout, ("original",)),
    ):
        for source in sources:
            rows = part.filter(pl.col("label_source") == source)
            positives = int((rows["label"].cast(pl.String) == positive).sum())
            counts[(split, source)] = (rows.height, positives)
    return Dataset(
        snapshot=snapshot,
        X_train=X_train,
        y_train=y_train,
        X_holdout=X_holdout,
        y_holdout=y_holdout,
        holdout_features=holdout.select(settings.fields.features),
        groups_holdout=ev.protected_groups(holdout, settings),
        counts=counts,
    )


# ---------------------------------------------------------------------------- training
def noisy_labels(y: pl.Series, share: float, seed: int) -> pl.Series:
    """``y`` with ``round(share * len(y))`` labels flipped (0 ↔ 1), the rows drawn without
    replacement by ``numpy.random.default_rng(seed)``: deterministic."""
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not math.isfinite(share):
        raise InputError("label_noise must be a number")
    if not 0.0 <= share <= MAX_LABEL_NOISE:
        raise InputError(f"label_noise must be between 0 and {MAX_LABEL_NOISE}")
    n_flip = round(share * y.len())
    if n_flip == 0:
        return y
    arr = y.cast(pl.Float64).to_numpy().copy()
    rows = np.random.default_rng(seed).choice(arr.size, size=n_flip, replace=False)
    arr[rows] = 1.0 - arr[rows]
    return pl.Series(y.name, arr, dtype=pl.Float64)


def train(
    dataset: Dataset,
    params: TrainParams,
    label_noise: float = 0.0,
    seed: int | None = None,
) -> TrainedModel:
    """Fit the model on the training rows (deterministic: same snapshot and parameters, same
    model bytes).

    ``label_noise`` is a robustness check only: that share of the training labels is flipped
    (rows drawn with ``seed``, default ``params.seed``) before fitting, to show that the gate
    rejects a model trained on corrupted labels. Keep it 0 for a model meant for promotion.
    """
    y = noisy_labels(dataset.y_train, label_noise, params.seed if seed is None else seed)
    return fit(dataset.X_train, y, params)


def model_table(model: TrainedModel) -> pl.DataFrame:
    """The trained model in one table: its sha256, rows and positives it was trained on."""
    facts = [
        ("model sha256", model.model_sha256()),
        ("training rows", str(model.train_rows)),
        ("positive training rows", str(model.train_positives)),
        ("features", ", ".join(model.features)),
    ]
    return pl.DataFrame(facts, schema=["item", "value"], orient="row")


# ---------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class Evaluation:
    """One model on the holdout: metrics, subgroup metrics and gaps, feature importance."""

    metrics: dict[str, float]
    #: ``evaluate.subgroup_metrics``: group labels, counts, rates (aggregates only).
    subgroups: pl.DataFrame
    #: Per protected attribute, max - min of ``gap_metric`` over comparable groups.
    gaps: dict[str, float]
    gap_metric: str
    importance: dict[str, float]
    threshold: float
    y: Floats = field(repr=False)
    scores: Floats = field(repr=False)

    def metrics_table(self) -> pl.DataFrame:
        return pl.DataFrame(
            [(k, self.metrics[k]) for k in ev.METRIC_NAMES if k in self.metrics],
            schema={"metric": pl.String, "holdout": pl.Float64},
            orient="row",
        )

    def gaps_table(self) -> pl.DataFrame:
        return pl.DataFrame(
            [(k, None if math.isnan(v) else v) for k, v in self.gaps.items()],
            schema={"protected attribute": pl.String, f"{self.gap_metric} gap": pl.Float64},
            orient="row",
        )

    def calibration_figure(self) -> EvaluationFigure:
        from hilt.pipelines.loop.plots import calibration_figure

        return calibration_figure(self.y, self.scores, label="challenger")

    def importance_figure(self) -> EvaluationFigure:
        from hilt.pipelines.loop.plots import feature_importance_figure

        return feature_importance_figure(self.importance)

    def subgroup_figure(self) -> EvaluationFigure:
        from hilt.pipelines.loop.plots import subgroup_figure

        return subgroup_figure(self.subgroups, self.gap_metric)


def evaluate(model: TrainedModel, dataset: Dataset, settings: Settings) -> Evaluation:
    """Metrics, subgroup metrics (per protected attribute) and their gaps on the holdout."""
    gate_config = ev.GateConfig.from_settings(settings)
    threshold = settings.review.decision_threshold
    y = dataset.y_holdout.cast(pl.Float64).to_numpy()
    scores = model.predict(dataset.holdout_features)
    subgroups = ev.subgroup_metrics(y, scores, threshold, dataset.groups_holdout)
    return Evaluation(
        metrics=ev.metrics(y, scores, threshold),
        subgroups=subgroups,
        gaps=ev.max_subgroup_gap(subgroups, gate_config.gap_metric),
        gap_metric=gate_config.gap_metric,
        importance=ev.feature_importance(model),
        threshold=threshold,
        y=y,
        scores=scores,
    )


@dataclass(frozen=True)
class Comparison:
    """The champion on the same holdout (or the absence of one)."""

    version: str | None
    model_sha256: str | None
    metrics: dict[str, float] | None
    challenger_metrics: dict[str, float]
    scores: Floats | None = field(default=None, repr=False)

    def table(self) -> pl.DataFrame:
        """Challenger and champion side by side (champion columns null without a champion)."""
        rows = []
        for k in ev.METRIC_NAMES:
            if k == "n":
                continue
            mine = self.challenger_metrics.get(k)
            theirs = None if self.metrics is None else self.metrics.get(k)
            diff = None if mine is None or theirs is None else mine - theirs
            rows.append((k, mine, theirs, diff))
        return pl.DataFrame(
            rows,
            schema={
                "metric": pl.String,
                "challenger": pl.Float64,
                f"champion (v{self.version})" if self.version else "champion (none)": pl.Float64,
                "challenger - champion": pl.Float64,
            },
            orient="row",
        )


def compare_with_champion(
    dataset: Dataset, settings: Settings, evaluation: Evaluation
) -> Comparison:
    """Load the champion (via MLflow's registry; call ``ensure_run`` or
    ``tracking.configure`` first) and evaluate it on the same holdout."""
    from hilt.pipelines.loop import tracking

    version = tracking.champion_version(settings)
    if version is None:
        return Comparison(None, None, None, dict(evaluation.metrics))
    champion = tracking.load_model_version(settings, version)
    scores = champion.predict(dataset.holdout_features)
    return Comparison(
        version=version,
        model_sha256=champion.model_sha256(),
        metrics=ev.metrics(evaluation.y, scores, evaluation.threshold),
        challenger_metrics=dict(evaluation.metrics),
        scores=scores,
    )


def roc_figure(evaluation: Evaluation, comparison: Comparison | None = None) -> EvaluationFigure:
    """The challenger's ROC curve on the holdout, with the champion's when there is one."""
    from hilt.pipelines.loop.plots import roc_curve_figure

    champion = comparison.scores if comparison is not None else None
    label = f"champion v{comparison.version}" if comparison and comparison.version else "champion"
    return roc_curve_figure(
        evaluation.y,
        evaluation.scores,
        "challenger",
        champion_scores=champion,
        champion_label=label,
    )


def apply_gate(evaluation: Evaluation, comparison: Comparison, settings: Settings) -> ev.GateResult:
    """The promotion gate of hilt.toml: floor, subgroup gaps, not worse than the champion."""
    return ev.gate(
        evaluation.metrics,
        evaluation.gaps,
        comparison.metrics,
        ev.GateConfig.from_settings(settings),
    )


def gate_table(result: ev.GateResult) -> pl.DataFrame:
    """One row per check of the gate, with its plain-language explanation."""
    return pl.DataFrame(
        [
            (
                c.name,
                "pass" if c.passed else "FAIL",
                None if c.value is None or math.isnan(c.value) else c.value,
                c.limit,
                c.explanation,
            )
            for c in result.checks
        ],
        schema={
            "check": pl.String,
            "result": pl.String,
            "value": pl.Float64,
            "limit": pl.Float64,
            "explanation": pl.String,
        },
        orient="row",
    )


# ---------------------------------------------------------------------------- logging
@contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """MLflow's INFO lines and its note on how it reads a local dataset source would land in
    the executed notebook's stderr; they say nothing an auditor needs."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="The specified dataset source can be interpreted"
            )
            yield
    finally:
        logger.setLevel(level)


@dataclass(frozen=True)
class Registration:
    """What the run logged and registered."""

    run_id: str
    model_sha256: str
    gate_passed: bool
    #: The registered model's name and the new version (None: logged only, not registered).
    registered_name: str
    version: str | None
    #: The challenger alias points at ``version`` (the gate passed).
    challenger: bool
    #: The pending challenger that a rejected version would have displaced, restored.
    restored_challenger: str | None = None

    def table(self) -> pl.DataFrame:
        facts = [
            ("MLflow run", self.run_id),
            ("model sha256", self.model_sha256),
            ("gate", "passed" if self.gate_passed else "rejected"),
            (
                "registered version",
                f"{self.registered_name} v{self.version}" if self.version else "not registered",
            ),
            (
                "alias",
                "challenger (awaiting a lead's approval: hilt promote)"
                if self.challenger
                else "none (the champion alias is untouched)",
            ),
        ]
        return pl.DataFrame(facts, schema=["item", "value"], orient="row")


def training_params(params: TrainParams, label_noise: float, as_of_seq: int) -> dict[str, Any]:
    """The MLflow params of a retraining run: TrainParams, label_noise, the requested seq."""
    return {**params.to_dict(), PARAM_LABEL_NOISE: float(label_noise), PARAM_AS_OF_SEQ: as_of_seq}


def run_metrics(evaluation: Evaluation) -> dict[str, float]:
    """holdout_<metric> and gap_<attribute> (NaN where undefined)."""
    out = {f"holdout_{k}": float(v) for k, v in evaluation.metrics.items()}
    out.update({f"gap_{k}": float(v) for k, v in evaluation.gaps.items()})
    return out


def log_and_register(
    run_id: str,
    settings: Settings,
    *,
    model: TrainedModel,
    dataset: Dataset,
    evaluation: Evaluation,
    gate_result: ev.GateResult,
    params: TrainParams,
    label_noise: float = 0.0,
    as_of_seq: int = 0,
    register: bool = True,
) -> Registration:
    """Log the training to the MLflow run (params, metrics, dataset input with the snapshot's
    path and sha256, the model, the subgroup table, the gate's verdict) and, with
    ``register``, register the model: it becomes the challenger when the gate passed; when
    it failed, the new version is rejected at once (tagged, no alias) and the champion alias
    is untouched (as is a pending challenger of an earlier run)."""
    from hilt.pipelines.loop import tracking

    snapshot = dataset.snapshot
    with _quiet_mlflow():
        logged = tracking.log_training(
            run_id,
            params=training_params(params, label_noise, as_of_seq),
            metrics=run_metrics(evaluation),
            subgroup_table=evaluation.subgroups,
            dataset_frame=dataset.X_train,
            dataset_name=snapshot.name,
            dataset_digest=snapshot.sha256,
            snapshot_seq=snapshot.as_of_seq,
            model=model,
            dataset_source=snapshot.path,
        )
    verdict = "passed" if gate_result.passed else "rejected"
    tracking.log_run_dict(run_id, gate_result.to_dict(), "evaluation/gate.json")
    tracking.set_run_tags(run_id, {TAG_GATE: verdict})
    name = tracking.registered_model_name(settings)
    if not register:
        return Registration(run_id, logged.model_sha256, gate_result.passed, name, None, False)
    previous = tracking.challenger_version(settings)
    version = tracking.register_challenger(settings, run_id)
    tracking.set_run_tags(run_id, {TAG_VERSION: version})
    restored = None
    if not gate_result.passed:
        tracking.reject_challenger(settings, version)
        if previous is not None and previous != version:
            tracking.set_challenger(settings, previous)
            restored = previous
    return Registration(
        run_id=run_id,
        model_sha256=logged.model_sha256,
        gate_passed=gate_result.passed,
        registered_name=name,
        version=version,
        challenger=gate_result.passed,
        restored_challenger=restored,
    )


def _gate_payload(result: ev.GateResult) -> list[dict[str, Any]]:
    return [
        {
            "name": c.name,
            "passed": c.passed,
            "value": None if c.value is None or math.isnan(c.value) else round(c.value, 6),
            "limit": c.limit,
        }
        for c in result.checks
    ]


def record(
    store: Store,
    registration: Registration,
    dataset: Dataset,
    gate_result: ev.GateResult,
    reproduces: str = "",
) -> pl.DataFrame:
    """Audit the outcome: ``model.trained`` always; then ``model.challenger`` (gate passed)
    or ``model.gate_failed`` (rejected) for a registered version. Payloads: ids, hashes,
    counts and gate values, no data. Returns the events written (action, seq)."""
    snapshot = dataset.snapshot
    written: list[tuple[str, int]] = []
    trained: dict[str, Any] = {
        "run_id": registration.run_id,
        "model_sha256": registration.model_sha256,
        "snapshot": snapshot.name,
        "snapshot_sha256": snapshot.sha256,
        "snapshot_as_of_seq": snapshot.as_of_seq,
        "train_rows": dataset.X_train.height,
        "holdout_rows": dataset.X_holdout.height,
        "label_sources": {s: dataset.counts[("train", s)][0] for s in LABEL_SOURCES},
        "gate": "passed" if gate_result.passed else "rejected",
    }
    if reproduces:
        trained["reproduces"] = reproduces
    seq = store.record_event("model.trained", "run", registration.run_id, trained)
    written.append(("model.trained", seq))
    if registration.version is not None:
        object_id = f"{registration.registered_name}/v{registration.version}"
        payload: dict[str, Any] = {
            "run_id": registration.run_id,
            "version": registration.version,
            "model_sha256": registration.model_sha256,
            "checks": _gate_payload(gate_result),
        }
        if registration.challenger:
            action = "model.challenger"
        else:
            action = "model.gate_failed"
            payload["champion_unchanged"] = True
            payload["challenger_restored"] = registration.restored_challenger
        seq = store.record_event(action, "model", object_id, payload)
        written.append((action, seq))
    return pl.DataFrame(written, schema=["audit event", "seq"], orient="row")


def parameters_table(values: Mapping[str, Any]) -> pl.DataFrame:
    """The run's parameters, as text, for the first cell an auditor reads."""
    return pl.DataFrame(
        [(k, str(v)) for k, v in values.items()], schema=["parameter", "value"], orient="row"
    )
