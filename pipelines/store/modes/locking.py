"""The cross-process lock that lets many processes share one DuckDB file, one at a time.

DuckDB allows one writing process per file. The embedded mode therefore opens a short-lived
connection under an exclusive ``flock`` on ``store.lock`` for each operation; the store
service holds the same lock for its whole life, so embedded callers get a clear "busy"
error naming the service instead of a DuckDB locking error.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hilt.pipelines.errors import StoreBusyError

DEFAULT_TIMEOUT_S = float(os.environ.get("HILT_LOCK_TIMEOUT", "30"))


def service_info(service_file: Path) -> dict[str, object] | None:
    """The running store service's {url, pid}, or None if none runs (stale files ignored)."""
    try:
        info = json.loads(service_file.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dict(info)


def _busy(service_file: Path) -> StoreBusyError:
    info = service_info(service_file)
    holder = (
        f"by the store service (pid {info['pid']}) at {info['url']}"
        if info
        else "by another process"
    )
    return StoreBusyError(f"the store is held {holder}; use that service, or try again later")


class GaveWay(Exception):
    """Raised by ``exclusive`` instead of taking the lock: while it waited, its ``give_way``
    check answered True (another thread of this process took the lock for a ``holding``
    block, whose connection the waiter may use instead)."""


@contextmanager
def exclusive(
    lock_path: Path,
    service_file: Path,
    timeout_s: float | None = None,
    give_way: Callable[[], bool] | None = None,
) -> Iterator[None]:
    """Hold the store's lock; wait up to ``timeout_s`` for it, then raise StoreBusyError.
    While waiting, ``give_way`` (if given) is asked after each try: True raises GaveWay."""
    limit = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + limit
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # A running service holds the lock for its whole life: say so at once.
                if give_way is not None and give_way():
                    raise GaveWay from None
                if time.monotonic() >= deadline or service_info(service_file) is not None:
                    raise _busy(service_file) from None
                time.sleep(delay)
                # A short cap: the holder of a busy store lets go for well under a
                # millisecond between its calls, and a longer sleep missed every such gap
                # (one embedded writer starved the other until it had finished).
                delay = min(delay * 2, 0.002)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
