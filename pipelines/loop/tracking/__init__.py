"""MLflow: the workspace's experiment, training runs, their artifacts and the model registry.

No hilt module outside this package imports mlflow (``import mlflow`` costs ~1-2 s), and
importing a module of this package changes nothing in the process (no environment variable,
no MLflow state): ``client.configure(ws)`` does, once, before MLflow is used. Import the
module of the concern you need:

- ``tags``: every MLflow tag, param and artifact name hilt uses, defined once (no mlflow);
- ``environment``: the tracking URI, experiment and registered-model names, and MLflow kept
  quiet (no telemetry, no progress bars), for this process and its kernels (no mlflow);
- ``client``: ``configure``, the configured client, ``TrackingError``;
- ``provenance``: author, git commit and package versions, the tags every run carries;
- ``runs``: create, start, finish or fail a run; tag it, log values; ``RunRecord``s;
- ``pyfunc``: the logged model (pyfunc, signature, requirements, synthetic input example)
  and loading a registered version;
- ``training``: what a training run logs (``log_training``: params, metrics, dataset, model);
- ``notebooks``: the executed notebook and its offline HTML, logged to a run;
- ``registry``: aliases (``challenger``, ``champion``), register, promote, reject, gate tags;
- ``artifacts``: a run's artifacts read back (a file, a text, the subgroup table);
- ``erasure``: runs whose snapshot an erasure or retention regenerated, tagged.

Attribute access on this package (``tracking.configure``, ``tracking.run_info``, ...) still
resolves, lazily, to those modules, for the callers outside hilt.pipelines.loop and
hilt.pipelines.compliance written before the split (the CLI, the dashboards, the oversight
actions, some tests); new code imports the concern module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hilt.pipelines.loop.tracking.artifacts import run_artifact_text as run_artifact_text
    from hilt.pipelines.loop.tracking.artifacts import run_subgroups as run_subgroups
    from hilt.pipelines.loop.tracking.client import configure as configure
    from hilt.pipelines.loop.tracking.environment import (
        registered_model_name as registered_model_name,
    )
    from hilt.pipelines.loop.tracking.registry import challenger_version as challenger_version
    from hilt.pipelines.loop.tracking.registry import champion_version as champion_version
    from hilt.pipelines.loop.tracking.registry import version_run_id as version_run_id
    from hilt.pipelines.loop.tracking.runs import list_runs as list_runs
    from hilt.pipelines.loop.tracking.runs import run_info as run_info

#: name → the module of this package that defines it, for the callers written before the
#: split (pipelines/cli, pipelines/dashboards/oversight.py, pipelines/loop/oversight.py and
#: demo.py, tests/audit_helpers.py, tests/browser/test_audit_dashboard.py,
#: tests/test_subject_erasure_end_to_end.py). Remove a line when its callers have moved.
_MOVED = {
    "run_artifact_text": "artifacts",
    "run_subgroups": "artifacts",
    "configure": "client",
    "registered_model_name": "environment",
    "challenger_version": "registry",
    "champion_version": "registry",
    "version_run_id": "registry",
    "list_runs": "runs",
    "run_info": "runs",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
