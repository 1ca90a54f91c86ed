"""Data-subject rights beyond the store: export files, their published schema, and what an
erasure means for MLflow.

The store does the work that must be one transaction (``Store.subject_*``,
``Store.retention_apply``; see ``hilt.pipelines.store.ops.subject_rights`` and ``retention``).
This module does what follows it, where MLflow lives:

- MLflow never holds rows of training data (``tracking.training_dataset`` logs a schema,
  counts and a digest; the model's input example is synthetic), so no MLflow artifact
  contains a subject. Its runs do point at snapshot files; when an erasure or retention run
  regenerates a snapshot, every run that trained on the old file is tagged with what became
  of it (``hilt.snapshot_removed``, ``hilt.snapshot_regenerated_sha256``), so that an auditor
  who reads the run, or `hilt retrain --reproduce`, learns why the file is gone.
- Export documents are written readable by their owner only, in the published format
  ``docs/subject-export.schema.json`` (a test keeps it equal to the code's).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hilt.pipelines.config import Settings
from hilt.pipelines.paths import DOCS_DIR
from hilt.pipelines.store.records import SnapshotRewrite, SubjectExport
from hilt.pipelines.workspace import Workspace

#: Where the JSON schema of a subject export is published (kept equal to the code's).
EXPORT_SCHEMA_PATH = DOCS_DIR / "subject-export.schema.json"
TAG_SNAPSHOT_REMOVED = "hilt.snapshot_removed"
TAG_SNAPSHOT_REGENERATED = "hilt.snapshot_regenerated_sha256"


def export_schema() -> dict[str, Any]:
    """The JSON schema of ``SubjectExport`` (draft 2020-12, as pydantic writes it)."""
    schema = SubjectExport.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://hilt.invalid/schemas/subject-export-1.json"
    return schema


def export_schema_text() -> str:
    return json.dumps(export_schema(), indent=2, sort_keys=True) + "\n"


def write_export(document: SubjectExport, path: Path) -> Path:
    """Write the export as JSON, readable by its owner only (0600); never overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(document.model_dump_json(indent=2) + "\n")
    return path


def tag_regenerated_runs(
    ws: Workspace, settings: Settings, rewrites: list[SnapshotRewrite]
) -> list[str]:
    """Tag every MLflow run that trained on a regenerated snapshot; the runs tagged."""
    runs = sorted({r for w in rewrites for r in w.training_runs})
    if not runs:
        return []
    from hilt.pipelines.loop import tracking

    tracking.configure(ws, settings=settings)
    by_sha = {w.sha256: w for w in rewrites}
    tagged: list[str] = []
    for run_id in runs:
        info = tracking.run_info(run_id)
        rewrite = by_sha.get(info.snapshot_sha256 or "")
        if rewrite is None:
            continue
        tracking.set_run_tags(
            run_id,
            {
                TAG_SNAPSHOT_REMOVED: rewrite.name,
                TAG_SNAPSHOT_REGENERATED: rewrite.new_sha256 or "none",
            },
        )
        tagged.append(run_id)
    return tagged
