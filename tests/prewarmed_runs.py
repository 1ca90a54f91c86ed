"""What a forked `hilt retrain` / `hilt score` would pay first, paid once in the fork server
(tests/prewarmed.py names this module in its preload; no test imports it).

The runner warms these on threads while a run's kernel works (``runner._warm_up_html``,
``runner._warm_up_tracking``): in a process of its own that is time saved, but every child
of the fork server paid it again, ~3 s of CPU a run on the 2-core machine. Done here they
are inherited, as the imports of ``PRELOAD`` are: nbconvert's HTML exporter with its
templates compiled (``notebook_render.warm_up``), the relay's model logging imports, xgboost
(loaded, no OpenMP thread started: nothing is trained here) and MLflow's map of installed
packages (``tracking.training.warm_up``), and the kernel manager papermill uses. Also
MLflow's SQL tracking store (imported by MLflow on the first client of a sqlite store: ~0.8 s
of CPU in every child that touches a workspace's MLflow, `hilt init` and `hilt audit verify`
included; importing it opens nothing and starts no thread).
"""

from __future__ import annotations

import jupyter_client.manager  # noqa: F401  (run_kernel.started, papermill's km)
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (a sqlite store's first client)

from hilt.pipelines.loop import notebook_render
from hilt.pipelines.loop.tracking import relay, training  # noqa: F401

notebook_render.warm_up()
training.warm_up()
