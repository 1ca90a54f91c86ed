"""The steps of a scoring run, one typed function per cell of notebooks/score.ipynb.

new cases (CSV / Parquet) → the store → the store's champion (or a named registered version,
which the store takes only if a lead allowed it for shadow scoring) → predictions with
explanations (xgboost ``pred_contribs``) and the model's sha256 → the review queue (or, for
a shadow version, kept apart). Refused while the system is halted. The notebook shows
counts only: no case, no score, no explanation of an individual applicant.

Importing this module does not import mlflow or xgboost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError, NotFoundError
from hilt.pipelines.loop.digests import file_sha256
from hilt.pipelines.loop.model import TrainedModel
from hilt.pipelines.loop.scoring import predictions_frame
from hilt.pipelines.store import Store
from hilt.pipelines.store.case_records import IngestResult
from hilt.pipelines.store.registry_records import ModelRecord
from hilt.pipelines.tables import read_table

#: Where a scoring run's predictions went (its MLflow param ``scored_into``).
REVIEW_QUEUE = "review queue"
SHADOW = "shadow"

__all__ = [
    "REVIEW_QUEUE",
    "SHADOW",
    "ScoredBatch",
    "ScoringModel",
    "ScoringRefusal",
    "ingest",
    "load_model",
    "log_scoring",
    "may_score",
    "not_the_registered_model",
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
    """The model that scores, as the store's registry names it and as MLflow gave it."""

    model: TrainedModel
    registered_name: str
    version: str
    #: What the store records as the predictions' model version: "<name>/v<version>".
    label: str
    #: The store's registry: the champion (scores into the review queue), or a version a
    #: lead allowed for shadow scoring (kept apart, never queued).
    champion: bool
    shadow: bool = False
    #: The sha256 the store registered the version with (the store compares it with the
    #: loaded model's, ``model.model_sha256()``, when the predictions arrive).
    registered_sha256: str | None = None

    def table(self) -> pl.DataFrame:
        if self.champion:
            role = "champion (scores into the review queue)"
        elif self.shadow:
            role = "allowed by a lead for shadow scoring (kept apart, never queued for review)"
        else:
            role = "neither the champion nor allowed for shadow scoring: the store refuses it"
        facts = [
            ("model", self.label),
            ("in the store's registry", role),
            ("model sha256 (of the model loaded from MLflow)", self.model.model_sha256()),
            ("model sha256 (registered in the store)", self.registered_sha256 or "—"),
        ]
        return pl.DataFrame(facts, schema=["item", "value"], orient="row")


@dataclass(frozen=True)
class ScoringRefusal:
    """Why the store's registry lets no predictions of ``model`` in (``may_score``)."""

    #: The version asked for ("<name>/v<version>"), or None: no champion to default to.
    model: str | None
    #: Its state in the store's registry ("unregistered", "no-champion", or the state).
    state: str
    message: str


def may_score(
    models: Sequence[ModelRecord], registered: str, model_version: str = ""
) -> ScoringRefusal | None:
    """Whether the store's registry ``models`` lets the version ``model_version`` of
    ``registered`` (empty: the champion) add predictions: None if so, else why not, in the
    store's words. The store decides again when the predictions arrive (and checks the
    model's sha256 then); this lets a run be refused before it ingests anything."""
    current = next((m for m in models if m.state == "champion"), None)
    if not model_version:
        if current is None:
            return ScoringRefusal(
                None,
                "no-champion",
                "there is no champion yet: a lead approves a challenger with `hilt promote`",
            )
        return None
    label = f"{registered}/v{model_version}"
    found = next((m for m in models if m.model == label), None)
    if found is None:
        return ScoringRefusal(
            label, "unregistered", f"{label} is not a model registered in this store"
        )
    if found.state == "champion" or found.shadow:
        return None
    return ScoringRefusal(
        label,
        found.state,
        f"{label} is {found.state}: only the champion "
        f"({current.model if current else 'none yet'}) scores into the review queue, or a "
        "version a lead allowed for shadow scoring",
    )


def not_the_registered_model(scoring_model: ScoringModel) -> ScoringRefusal | None:
    """A refusal if the model loaded from MLflow is not the one the store registered under
    its version (its sha256 differs: a tampered file, or another model), else None. The
    store refuses such predictions itself; this lets a run be refused before it ingests."""
    if scoring_model.registered_sha256 == scoring_model.model.model_sha256():
        return None
    return ScoringRefusal(
        scoring_model.label,
        "sha256-mismatch",
        f"the model MLflow holds as {scoring_model.label} is not the one the store registered "
        "(its sha256 differs): a tampered or another model",
    )


def load_model(store: Store, settings: Settings, model_version: str = "") -> ScoringModel:
    """The store's champion (``model_version`` empty) or the named version of the use
    case's registered model, loaded from MLflow (by the runner's relay in a run's kernel;
    else call ``start.ensure_run`` or ``tracking.client.configure`` first). Its sha256 is
    computed from the loaded model; the store decides, when the predictions arrive, whether
    that model may score."""
    from hilt.pipelines.loop.model_registry import champion, find_model
    from hilt.pipelines.loop.tracking.environment import registered_model_name
    from hilt.pipelines.loop.tracking.mirror import version_of
    from hilt.pipelines.loop.tracking.relay import load_version, tracking_here

    name = registered_model_name(settings)
    if model_version:
        label = f"{name}/v{model_version}"
        record = find_model(store, label)
        version = str(model_version)
    else:
        record = champion(store)
        if record is None:
            raise InputError(
                "there is no champion yet: a lead approves a challenger with `hilt promote`"
            )
        label = record.model
        found = version_of(label, name)
        if found is None:
            raise InputError(
                f"the champion {label} is not a version of {name} in MLflow: it cannot be "
                "loaded to score"
            )
        version = found
    model = load_version(tracking_here(settings, store.models), settings, version)
    return ScoringModel(
        model=model,
        registered_name=name,
        version=version,
        label=label,
        champion=record is not None and record.state == "champion",
        shadow=record is not None and record.shadow,
        registered_sha256=record.model_sha256 if record is not None else None,
    )


@dataclass(frozen=True)
class ScoredBatch:
    """The predictions added: the store's record of the batch, and how many cases the model
    put in each class (aggregate counts, for the run's summary and metrics)."""

    result: IngestResult
    by_label: dict[str, int]

    @property
    def shadow(self) -> bool:
        """The store kept them apart as shadow predictions (never queued for review)."""
        return self.result.kind == "shadow-predictions"


def score_cases(
    store: Store, scoring_model: ScoringModel, cases: pl.DataFrame, settings: Settings
) -> ScoredBatch:
    """Score the cases just ingested (read back from the store, so the model sees exactly
    what was stored) and add predictions with explanations, proving the model by the sha256
    of its bytes: the store takes them only from its champion (they join the review queue)
    or from a version a lead allowed for shadow scoring (kept apart, never queued); any other
    model is refused (PermissionDeniedError, the refusal audited) and nothing is added."""
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
    result = store.add_predictions(scoring_model.label, frame, scoring_model.model.model_sha256())
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
    added = (
        "shadow predictions added (kept apart, never queued for review)"
        if scored.shadow
        else "predictions added"
    )
    facts: list[tuple[str, str]] = [
        ("cases ingested", f"{ingested.rows} (audit seq {ingested.seq})"),
        (added, f"{scored.result.rows} (audit seq {scored.result.seq})"),
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
    from hilt.pipelines.loop.tracking.relay import log_run_values

    path = Path(input_path)
    log_run_values(
        run_id,
        params={
            "input_file": path.name,
            "input_sha256": file_sha256(path),
            "model_version": scoring_model.label,
            "model_sha256": scoring_model.model.model_sha256(),
            "scored_into": SHADOW if scored.shadow else REVIEW_QUEUE,
        },
        metrics={
            "cases_ingested": ingested.rows,
            "predictions_added": scored.result.rows,
            **{f"predicted_{cls}": n for cls, n in scored.by_label.items()},
        },
    )
