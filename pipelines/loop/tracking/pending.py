"""MLflow set up on a thread (no mlflow here): a run's kernel needs MLflow only when it logs,
late; ``start`` begins ``client.configure`` on a thread at the run's start so that importing
mlflow (~2-3 s) overlaps the snapshot and the training, and ``client.configured`` waits for
it (re-raising what it raised) before MLflow is used."""

from __future__ import annotations

import threading
from collections.abc import Callable

_thread: threading.Thread | None = None
_error: list[BaseException] = []


def start(setup: Callable[[], object]) -> None:
    """Run ``setup`` on a thread; ``wait`` joins it."""
    global _thread

    def run() -> None:
        try:
            setup()
        except BaseException as e:  # re-raised by wait(), in the thread that needs MLflow
            _error.append(e)

    wait()
    _thread = threading.Thread(target=run, name="hilt-mlflow-setup", daemon=True)
    _thread.start()


def wait() -> None:
    """Join the setup thread, if one runs (not from that thread itself); re-raise its error."""
    global _thread
    thread = _thread
    if thread is None or thread is threading.current_thread():
        return
    thread.join()
    _thread = None
    if _error:
        raise _error.pop()
