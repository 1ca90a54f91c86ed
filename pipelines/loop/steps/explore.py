"""What ``notebooks/explore.ipynb`` calls: a data scientist's first look at a workspace,
read-only, one step a cell.

The store is opened through its one door (``open_store_as``) as whoever is signed in (the
token's owner through a store service; embedded, the operating-system user) with a read-only
need: only reads follow (queue counts, table counts, final decisions, models, one
prediction). Every table holds counts, ids, metrics or model versions, never an applicant's
data; the explanation shown is the stored prediction's (feature names and contributions, no
values), for the review panel's own widget (``PredictionView``, which the notebook makes:
pipelines import only ``hilt.widgets.contracts``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError, NotFoundError
from hilt.pipelines.store import Identity, Need, Store, open_store_as
from hilt.pipelines.workspace import Workspace
from hilt.widgets.contracts.common import ReviewConfig, ReviewItem

#: Who may explore: roles that may read decisions, models and predictions.
EXPLORE_ROLES = frozenset({"data-scientist", "admin", "lead", "auditor"})
EXPLORE_NEED = Need(EXPLORE_ROLES, "explore the store")
#: Metrics shown side by side per run (holdout metrics and subgroup gaps).
METRIC_PREFIXES = ("holdout_", "gap_")
#: Final decisions read for the label provenance (at most).
MAX_DECISIONS = 100_000


@dataclass(frozen=True)
class Exploration:
    workspace: Workspace
    settings: Settings
    store: Store
    user: str


def open_exploration(workspace: str | Path | None = None) -> Exploration:
    """The workspace (``workspace``, else $HILT_WORKSPACE) and its store, opened as the
    signed-in user with the read-only need; refused (PermissionDeniedError) for a role
    that may not explore."""
    ws = Workspace.at(workspace or None).require()
    store = open_store_as(ws, Identity(operator=True), need=EXPLORE_NEED)
    return Exploration(ws, ws.settings(), store, store.whoami().name)


def queue_table(ex: Exploration) -> pl.DataFrame:
    """The review queue's counts and the store's row counts."""
    q = ex.store.queue_status()
    counts = ex.store.counts()
    rows = [
        ("queue: waiting", q.waiting),
        ("queue: leased", q.leased),
        ("queue: final decisions today", q.done_today),
        *((f"table: {name}", n) for name, n in counts.items() if n),
    ]
    return pl.DataFrame(rows, schema=["what", "count"], orient="row")


def label_provenance(ex: Exploration) -> pl.DataFrame:
    """Where the labels come from: the cases ingested with their label, and the reviewers'
    final decisions by action (accepted the model's label, or overrode it) and role."""
    seed = ex.store.counts().get("seed_labels", 0)
    decisions = ex.store.decisions(limit=MAX_DECISIONS, final_only=True)
    by = Counter((d.action, d.reviewer_role) for d in decisions)
    rows: list[tuple[str, str, int]] = [("ingested with the case", "-", seed)]
    rows += [(f"reviewer: {action}", role, n) for (action, role), n in sorted(by.items())]
    return pl.DataFrame(rows, schema=["label source", "role", "labels"], orient="row")


def runs_table(ex: Exploration, limit: int = 50) -> pl.DataFrame:
    """The retraining runs side by side, newest first: run, status, gate, store state of its
    model, and the holdout metrics and subgroup gaps it logged."""
    from hilt.pipelines.loop.tracking.client import configure
    from hilt.pipelines.loop.tracking.environment import has_tracking_store
    from hilt.pipelines.loop.tracking.runs import list_runs
    from hilt.pipelines.loop.tracking.tags import TAG_GATE, TAG_KIND

    if not has_tracking_store(ex.workspace):
        return pl.DataFrame({"run": []}, schema={"run": pl.String})
    configure(ex.workspace, settings=ex.settings)
    states = {m.run_id: m.state for m in ex.store.models()}
    rows: list[dict[str, object]] = []
    for r in list_runs(ex.settings, max_results=limit):
        if r.tags.get(TAG_KIND) != "retrain":
            continue
        row: dict[str, object] = {
            "run": r.run_id[:12],
            "started": r.start_time.strftime("%Y-%m-%d %H:%M"),
            "status": r.status,
            "gate": r.tags.get(TAG_GATE, "-"),
            "model": states.get(r.run_id, "-"),
        }
        row |= {
            k: round(v, 4) for k, v in sorted(r.metrics.items()) if k.startswith(METRIC_PREFIXES)
        }
        rows.append(row)
    return pl.DataFrame(rows) if rows else pl.DataFrame({"run": []}, schema={"run": pl.String})


def latest_prediction_case(ex: Exploration) -> str:
    """The case of the newest stored prediction (NotFoundError when nothing was scored)."""
    total = ex.store.counts().get("predictions", 0)
    for prediction_id in range(total, 0, -1):
        try:
            return ex.store.get_prediction(prediction_id).case_id
        except NotFoundError:
            continue
    raise NotFoundError("no prediction in the store yet: score cases first (`hilt score`)")


def explanation_item(ex: Exploration, case_id: str | None = None) -> ReviewItem:
    """A case (default: the newest prediction's) as the review panel's PredictionView takes
    it, with its latest prediction and stored explanation."""
    from hilt.pipelines.dashboards.review import review_item

    chosen = case_id or latest_prediction_case(ex)
    item = review_item(ex.store.get_case(chosen), ex.settings)
    if item.prediction_id is None:
        raise InputError(f"case {chosen} has no prediction")
    return item


def review_setup(ex: Exploration) -> ReviewConfig:
    """The review panel's configuration, as the review dashboard makes it (labels, threshold,
    the training ranges of the out-of-distribution badge), for its PredictionView."""
    from hilt.pipelines.dashboards.review import StoreReviewBackend

    return StoreReviewBackend(ex.store, ex.settings).review_config()
