"""The steps of a scoring run, one typed function per cell of notebooks/score.ipynb.

new cases (CSV / Parquet) → the store → the champion (or a named registered version) →
predictions with explanations (xgboost ``pred_contribs``) → the review queue. Refused while
the system is halted. The notebook shows counts only: no case, no score, no explanation of
an individual applicant.

Importing this module does not import mlflow or xgboost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError, NotFoundError
from hilt.pipelines.loop.digests import file_sha256
from hilt.pipelines.loop.model import TrainedModel
from hilt.pipelines.loop.scoring import predictions_frame
from hilt.pipelines.store import Store
from hilt.pipelines.store.records import IngestResult
from hilt.pipelines.tables import read_table

__all__ = [
    "ScoredBatch",
    "ScoringModel",
    "ingest",
    "load_model",
    "log_scoring",
    "read_cases",
    "score_cases",
    "summary",
]


def read_cases(input_path: str | Path) -> pl.DataFrame:
    """The new cases: a CSV (read as text; the store's validation types it) or Parquet."""
    if not str(input_path):
        raise InputError("no input file given (input_path)")
    return read_table(input_path)


def ingest(store: Store, cases: pl.DataFrame) -> IngestResult:
    """Add the cases to the store; ids that exist already are an input error (ConflictError),
    and nothing is written then."""
    return store.ingest_cases(cases)


@dataclass(frozen=True)
class ScoringModel:
    model: TrainedModel
    registered_name: str
    version: str
    #: What the store records as the predictions' model version: "<name>/v<version>".
    label: str
    champion: bool

    def table(self) -> pl.DataFrame:
        facts = [
            ("model", self.label),
            ("alias", "champion" if self.champion else "none (a version named by the caller)"),
            ("model sha256", self.model.model_sha256()),
        ]
        return pl.DataFrame(facts, schema=["item", "value"], orient="row")


def load_model(settings: Settings, model_version: str = "") -> ScoringModel:
    """The champion (``model_version`` empty) or the named registered version, from MLflow
    (call ``start.ensure_run`` or ``tracking.client.configure`` first)."""
    from hilt.pipelines.loop.tracking.environment import registered_model_name
    from hilt.pipelines.loop.tracking.pyfunc import load_model_version
    from hilt.pipelines.loop.tracking.registry import champion_version

    champion = champion_version(settings)
    version = model_version or champion
    if version is None:
        raise InputError(
            "there is no champion yet: approve a challenger with `hilt promote`, "
            "or name a registered version (model_version)"
        )
    model = load_model_version(settings, version)
    name = registered_model_name(settings)
    return ScoringModel(
        model=model,
        registered_name=name,
        version=str(version),
        label=f"{name}/v{version}",
        champion=str(version) == champion,
    )


@dataclass(frozen=True)
class ScoredBatch:
    """The predictions added: the store's record of the batch, and how many cases the model
    put in each class (aggregate counts, for the run's summary and metrics)."""

    result: IngestResult
    by_label: dict[str, int]


def score_cases(
    store: Store, scoring_model: ScoringModel, cases: pl.DataFrame, settings: Settings
) -> ScoredBatch:
    """Score the cases just ingested (read back from the store, so the model sees exactly
    what was stored) and add predictions with explanations: they join the review queue."""
    id_column = settings.use_case.id_column
    if id_column not in cases.columns:
        raise InputError(f"the cases have no id column {id_column!r}")
    wanted = sorted(set(cases[id_column].cast(pl.String).to_list()))
    if not wanted:
        raise InputError("the input file holds no cases")
    stored = store.case_frame(wanted)
    if stored.height != len(wanted):
        raise NotFoundError(f"{len(wanted) - stored.height} of {len(wanted)} cases are not stored")
    frame = predictions_frame(scoring_model.model, stored, settings)
    result = store.add_predictions(scoring_model.label, frame)
    counts = frame["label"].value_counts()
    by_label = {
        cls: int(counts.filter(pl.col("label") == cls)["count"].sum())
        for cls in settings.target.classes
    }
    return ScoredBatch(result=result, by_label=by_label)


def summary(
    store: Store, ingested: IngestResult, scored: ScoredBatch, settings: Settings
) -> pl.DataFrame:
    """Counts only: cases ingested, predictions added (and per predicted class), the review
    queue afterwards."""
    status = store.queue_status()
    facts: list[tuple[str, str]] = [
        ("cases ingested", f"{ingested.rows} (audit seq {ingested.seq})"),
        ("predictions added", f"{scored.result.rows} (audit seq {scored.result.seq})"),
        ("predictions batch sha256", scored.result.digest),
    ]
    facts += [
        (f"predicted {settings.target.label_of(cls)}", str(n)) for cls, n in scored.by_label.items()
    ]
    facts += [
        ("review queue: waiting", str(status.waiting)),
        ("review queue: leased", str(status.leased)),
    ]
    return pl.DataFrame(facts, schema=["item", "value"], orient="row")


def log_scoring(
    run_id: str,
    input_path: str | Path,
    scoring_model: ScoringModel,
    ingested: IngestResult,
    scored: ScoredBatch,
) -> None:
    """Params and metrics of the scoring run in MLflow: the input file's name and sha256, the
    model version, the counts."""
    from hilt.pipelines.loop.tracking.runs import log_run_values

    path = Path(input_path)
    log_run_values(
        run_id,
        params={
            "input_file": path.name,
            "input_sha256": file_sha256(path),
            "model_version": scoring_model.label,
            "model_sha256": scoring_model.model.model_sha256(),
        },
        metrics={
            "cases_ingested": ingested.rows,
            "predictions_added": scored.result.rows,
            **{f"predicted_{cls}": n for cls, n in scored.by_label.items()},
        },
    )
