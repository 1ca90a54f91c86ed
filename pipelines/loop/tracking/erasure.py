"""What an erasure or a retention run means for MLflow.

MLflow never holds rows of training data (``training.training_dataset`` logs a schema,
counts and a digest; the model's input example is synthetic), so no MLflow artifact contains
a subject. Its runs do point at snapshot files; when an erasure or retention run regenerates
a snapshot, every run that trained on the old file is tagged with what became of it
(``hilt.snapshot_removed``, ``hilt.snapshot_regenerated_sha256``), so that an auditor who
reads the run, or `hilt retrain --reproduce`, learns why the file is gone.
"""

from __future__ import annotations

from hilt.pipelines.config import Settings
from hilt.pipelines.loop.tracking.client import configure
from hilt.pipelines.loop.tracking.runs import run_info, set_run_tags
from hilt.pipelines.loop.tracking.tags import TAG_SNAPSHOT_REGENERATED, TAG_SNAPSHOT_REMOVED
from hilt.pipelines.store.subject_records import SnapshotRewrite
from hilt.pipelines.workspace import Workspace


def tag_regenerated_runs(
    ws: Workspace, settings: Settings, rewrites: list[SnapshotRewrite]
) -> list[str]:
    """Tag every MLflow run that trained on a regenerated snapshot; the runs tagged."""
    runs = sorted({r for w in rewrites for r in w.training_runs})
    if not runs:
        return []
    configure(ws, settings=settings)
    by_sha = {w.sha256: w for w in rewrites}
    tagged: list[str] = []
    for run_id in runs:
        rewrite = by_sha.get(run_info(run_id).snapshot_sha256 or "")
        if rewrite is None:
            continue
        set_run_tags(
            run_id,
            {
                TAG_SNAPSHOT_REMOVED: rewrite.name,
                TAG_SNAPSHOT_REGENERATED: rewrite.new_sha256 or "none",
            },
        )
        tagged.append(run_id)
    return tagged
