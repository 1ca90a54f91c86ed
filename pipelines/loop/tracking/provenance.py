"""Where a run came from: the hilt user it acts as, the git commit hilt runs from, and the
versions of the packages it uses, as the tags every hilt run carries."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Final

from mlflow.utils.mlflow_tags import MLFLOW_USER

from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.tracking.tags import (
    TAG_AUTHOR,
    TAG_GIT_COMMIT,
    TAG_GIT_DIRTY,
    TAG_VERSION_PREFIX,
)
from hilt.pipelines.paths import PROJECT_ROOT

#: Distributions that install the ``xgboost`` module, in the order they are looked for: the
#: CPU-only build hilt installs (pyproject.toml), or the full one (README "GPU").
XGBOOST_DISTRIBUTIONS: Final = ("xgboost-cpu", "xgboost")
#: Distributions whose versions every run records (tag hilt.version.<key>); ``xgboost``: the
#: one of ``XGBOOST_DISTRIBUTIONS`` that is installed (``xgboost_distribution``).
PACKAGES: Final = {
    "hilt": "hilt-workbench",
    "xgboost": "xgboost",
    "polars": "polars",
    "duckdb": "duckdb",
    "mlflow": "mlflow",
    "papermill": "papermill",
}


def _git(*args: str) -> str:
    """The output of ``git -C <hilt's checkout> ARGS`` (no optional locks, 10 s at most)."""
    return subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), *args],
        capture_output=True,
        text=True,
        timeout=10,
        env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        check=True,
    ).stdout


def git_commit() -> tuple[str, bool | None]:
    """(commit, dirty) of the git checkout hilt runs from; ("unknown", None) when hilt is not
    running from a git checkout of its own (an installed wheel, no git)."""
    try:
        out = _git("rev-parse", "--show-toplevel", "HEAD").split()
        # Only hilt's own checkout counts, not a repository that happens to contain a venv.
        if len(out) != 2 or Path(out[0]).resolve() != PROJECT_ROOT:
            return "unknown", None
        status = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    return out[1], bool(status.strip())


def installed_version(dist: str) -> str | None:
    """The installed version of a distribution, None if it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def xgboost_distribution() -> str:
    """The installed distribution that provides the ``xgboost`` module (its metadata, not an
    import: xgboost's import costs a second); "xgboost" when none is installed."""
    for dist in XGBOOST_DISTRIBUTIONS:
        if installed_version(dist) is not None:
            return dist
    return "xgboost"


def package_versions() -> dict[str, str]:
    """Versions of hilt, xgboost, polars, duckdb, mlflow, papermill and python."""
    versions = {
        key: installed_version(xgboost_distribution() if key == "xgboost" else dist)
        or "not installed"
        for key, dist in PACKAGES.items()
    }
    versions["python"] = platform.python_version()
    return versions


def provenance_tags(author: str) -> dict[str, str]:
    """The tags every hilt run carries: author, git commit, package versions."""
    if not author.strip():
        raise InputError("a run needs an author (the hilt user it runs as)")
    commit, dirty = git_commit()
    tags = {
        TAG_AUTHOR: author,
        MLFLOW_USER: author,
        TAG_GIT_COMMIT: commit,
        TAG_GIT_DIRTY: "unknown" if dirty is None else str(dirty).lower(),
    }
    tags.update({TAG_VERSION_PREFIX + k: v for k, v in package_versions().items()})
    return tags
