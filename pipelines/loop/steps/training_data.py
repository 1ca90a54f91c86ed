"""A retraining run's training data: the snapshot file and the matrices read from it.

The store exports its training view as of an audit seq to Parquet (``Store.snapshot``); the
file is identified by its sha256, checked when it is made, found again, and read (the sha256
checked on the very bytes read). Label provenance: original, reviewer-accepted,
reviewer-corrected; the holdout was fixed when the workspace was created.

Nothing returned for display holds a row of data: the tables are counts.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.digests import file_sha256
from hilt.pipelines.loop.features import training_frame
from hilt.pipelines.loop.subgroups import protected_groups
from hilt.pipelines.store import Store
from hilt.pipelines.workspace import Workspace

#: The label sources of a snapshot, in display order.
LABEL_SOURCES: tuple[str, ...] = ("original", "reviewer-accepted", "reviewer-corrected")

_SNAPSHOT_NAME = re.compile(r"^snapshot-(\d{8})-([0-9a-f]{12})\.parquet$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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
    """Export the training view as of ``as_of_seq`` (0: now). The file is read once, by
    ``load_dataset``, which checks the sha256 the store recorded on the very bytes read."""
    if isinstance(as_of_seq, bool) or not isinstance(as_of_seq, int) or as_of_seq < 0:
        raise InputError("as_of_seq must be a non-negative integer (0: now)")
    record = store.snapshot(as_of_seq or None)
    path = Path(record.path)
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
        if file_sha256(path) == sha256:
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
    #: Training rows left on the snapshot file for a cluster's workers to read (Dask): then
    #: ``X_train`` / ``y_train`` hold no rows (the matrix's columns only) and this is the
    #: number of labelled training rows. None: the training rows are in ``X_train``.
    remote_train_rows: int | None = None

    @property
    def train_on_client(self) -> bool:
        return self.remote_train_rows is None

    @property
    def train_rows(self) -> int:
        """Labelled training rows (in ``X_train``, or on the file for the workers)."""
        return self.X_train.height if self.remote_train_rows is None else self.remote_train_rows

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


def load_dataset(
    snapshot: Snapshot, settings: Settings, *, train_on_client: bool = True
) -> Dataset:
    """Read the snapshot file (its sha256 checked on the very bytes read) into training and
    holdout matrices (``model.training_frame``) and the holdout's protected attributes.

    Without ``train_on_client`` (a Dask training) only the holdout is read into this
    process, and the counts; the training rows stay on the file for the workers
    (``model_dask.fit_dask``): the file's sha256 is checked here, streaming, before."""
    if not train_on_client:
        return _load_holdout_only(snapshot, settings)
    data = snapshot.path.read_bytes()
    if hashlib.sha256(data).hexdigest() != snapshot.sha256:
        raise InputError(f"{snapshot.name}: the file changed since the snapshot was taken")
    frame = pl.read_parquet(io.BytesIO(data))
    _require_columns(snapshot, frame.columns)
    train = frame.filter(pl.col("split") == "train")
    holdout = frame.filter(pl.col("split") == "holdout")
    return _dataset(snapshot, settings, train, holdout, frame.lazy())


def _require_columns(snapshot: Snapshot, names: list[str]) -> None:
    missing = [c for c in ("split", "label", "label_source") if c not in names]
    if missing:
        raise InputError(f"{snapshot.name}: not a training snapshot (lacks {missing})")


def _dataset(
    snapshot: Snapshot,
    settings: Settings,
    train: pl.DataFrame,
    holdout: pl.DataFrame,
    whole: pl.LazyFrame,
    remote_train_rows: int | None = None,
) -> Dataset:
    """The Dataset of the training rows ``train`` (none: ``remote_train_rows`` are left on
    the file), the ``holdout`` rows, and the counts of the ``whole`` file."""
    if (train.height if remote_train_rows is None else remote_train_rows) == 0:
        raise InputError(f"{snapshot.name}: no training rows")
    if holdout.height == 0:
        raise InputError(f"{snapshot.name}: no holdout rows to evaluate on")
    X_train, y_train = training_frame(train, settings, label_column="label")
    X_holdout, y_holdout = training_frame(holdout, settings, label_column="label")
    return Dataset(
        snapshot=snapshot,
        X_train=X_train,
        y_train=y_train,
        X_holdout=X_holdout,
        y_holdout=y_holdout,
        holdout_features=holdout.select(settings.fields.features),
        groups_holdout=protected_groups(holdout, settings),
        counts=_counts(whole, settings),
        remote_train_rows=remote_train_rows,
    )


def _counts(frame: pl.LazyFrame, settings: Settings) -> dict[tuple[str, str], tuple[int, int]]:
    """(split, label source) → (rows, positives): train by every label source, the
    holdout's original labels."""
    positive = settings.target.positive
    found = {
        (str(r["split"]), str(r["label_source"])): (int(r["rows"]), int(r["positives"]))
        for r in frame.group_by("split", "label_source")
        .agg(
            pl.len().alias("rows"),
            (pl.col("label").cast(pl.String) == positive).sum().alias("positives"),
        )
        .collect()
        .iter_rows(named=True)
    }
    return {
        (split, source): found.get((split, source), (0, 0))
        for split, sources in (("train", LABEL_SOURCES), ("holdout", ("original",)))
        for source in sources
    }


#: Snapshot rows read at a time by ``training_batches``.
BATCH_ROWS = 100_000


def training_batches(dataset: Dataset, settings: Settings) -> Iterator[pl.DataFrame]:
    """The training rows' features of the dataset's snapshot file, ``BATCH_ROWS`` rows of
    the file at a time (each batch only its training rows): what a training on a cluster
    left on the file, read without holding it all in this process."""
    scan = pl.scan_parquet(dataset.snapshot.path)
    total = int(scan.select(pl.len()).collect().item())
    features = list(settings.fields.features)
    for offset in range(0, total, BATCH_ROWS):
        yield (
            scan.slice(offset, BATCH_ROWS)
            .filter(pl.col("split") == "train")
            .select(features)
            .collect()
        )


def _load_holdout_only(snapshot: Snapshot, settings: Settings) -> Dataset:
    """``load_dataset`` for a training on a cluster: the holdout and the counts only."""
    if file_sha256(snapshot.path) != snapshot.sha256:
        raise InputError(f"{snapshot.name}: the file changed since the snapshot was taken")
    scan = pl.scan_parquet(snapshot.path)
    _require_columns(snapshot, scan.collect_schema().names())
    holdout = scan.filter(pl.col("split") == "holdout").collect()
    no_rows = scan.filter(pl.col("split") == "train").head(0).collect()
    labelled = (
        scan.filter((pl.col("split") == "train") & pl.col("label").is_not_null())
        .select(pl.len())
        .collect()
        .item()
    )
    return _dataset(snapshot, settings, no_rows, holdout, scan, int(labelled))
