"""papermill's engine for hilt's runs: the executed notebook written when the run starts
and ends, and at most every ``SAVE_EVERY_S`` seconds between (``papermill_engine``).

Importing this module imports no papermill; ``papermill_engine`` does.
"""

from __future__ import annotations

import functools
from typing import Any

#: papermill's engine for hilt's runs (``papermill_engine``).
ENGINE_NAME = "hilt"
#: While a run works, its executed notebook is written at most this often (seconds).
SAVE_EVERY_S = 30.0


@functools.cache
def papermill_engine() -> str:
    """papermill's own engine (nbclient), registered as ``ENGINE_NAME``, writing the executed
    notebook when the run starts and ends (also when a cell fails or the kernel dies, so the
    partial notebook is kept) and at most every ``SAVE_EVERY_S`` seconds between: papermill
    writes it before and after every cell, markdown ones too (66 writes of ~4 ms each in a
    retraining; 0.2-0.8 s of CPU a run for a file nobody reads before the run ends)."""
    from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

    class Manager(NotebookExecutionManager):  # type: ignore[misc]
        def save(self, **kwargs: Any) -> None:
            first = not getattr(self, "_written", False)
            since = (self.now() - self.last_save_time).total_seconds()
            if first or self.end_time is not None or since >= SAVE_EVERY_S:
                self._written = True
                super().save(**kwargs)

    class Engine(NBClientEngine):  # type: ignore[misc]
        @classmethod
        def execute_notebook(
            cls,
            nb: Any,
            kernel_name: str,
            output_path: str | None = None,
            progress_bar: Any = True,
            log_output: bool = False,
            autosave_cell_every: int = 30,
            **kwargs: Any,
        ) -> Any:
            # papermill's Engine.execute_notebook, with the manager above.
            nb_man = Manager(
                nb,
                output_path=output_path,
                progress_bar=progress_bar,
                log_output=log_output,
                autosave_cell_every=autosave_cell_every,
            )
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            finally:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

    papermill_engines.register(ENGINE_NAME, Engine)
    return ENGINE_NAME
