"""Where the project's own files are: the checkout that hilt runs from.

The notebooks (papermill templates and dashboards) and docs/ live beside the two import
roots, not inside a package; every module that needs them asks here.
"""

from __future__ import annotations

from pathlib import Path

#: The checkout: the folder that holds pipelines/, widgets/, notebooks/ and docs/.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: The papermill templates (retrain, score) and the dashboards (review, oversight, audit).
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
#: Published documents (e.g. the subject-export JSON schema).
DOCS_DIR = PROJECT_ROOT / "docs"
