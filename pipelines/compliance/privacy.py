"""Data-subject rights beyond the store: export files and their published schema.

The store does the work that must be one transaction (``Store.subject_*``,
``Store.retention_apply``; see ``hilt.pipelines.store.ops.subject_rights`` and ``retention``).
What an erasure means for MLflow (runs whose snapshot was regenerated are tagged) is
``hilt.pipelines.loop.tracking.erasure``.

Export documents are written readable by their owner only, in the published format
``docs/subject-export.schema.json`` (a test keeps it equal to the code's).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilt.pipelines.paths import DOCS_DIR
from hilt.pipelines.store.subject_records import SubjectExport

if TYPE_CHECKING:
    from hilt.pipelines.loop.tracking.erasure import (
        tag_regenerated_runs as tag_regenerated_runs,
    )

#: Where the JSON schema of a subject export is published (kept equal to the code's).
EXPORT_SCHEMA_PATH = DOCS_DIR / "subject-export.schema.json"


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
    return write_private(path, document.model_dump_json(indent=2) + "\n")


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to a new file readable by its owner only (0600); never overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path
