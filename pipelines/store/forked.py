"""One call run in a forked child process, its result sent back in memory.

For the store's CPU-bound work that holds the GIL (opening sealed documents: the
cryptography library's AES-GCM holds it), so that a second core can share it: the parent
does its part while the child does the other. The child is a fork: it sees the parent's
memory as it was (nothing is sent to it), must not use what the parent opened (database
connections, thread pools: the call opens its own), and ends with ``os._exit`` (no exit
handlers, no buffers of the parent's flushed twice). What it returns is pickled back to the
parent. Personal data opened by the child never leaves the store's operation: it goes back
(in memory, never on a disk) to the parent, which is the operation, and the child exits.

A ``StoreError`` raised in the child is raised again in the parent with its message (the
store's messages carry no personal data); any other failure of the child (an exception of
another kind, a crash, a kill) is reported as ``ForkFailed`` with its type only, and the
caller does the work itself.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import time
from collections.abc import Callable
from typing import Generic, NoReturn, TypeVar

from hilt.pipelines.errors import StoreError

T = TypeVar("T")


class ForkFailed(Exception):
    """The child process did not deliver a result (its failure's type only, no message)."""


def can_fork() -> bool:
    """A fork is possible here and another core is there to run it."""
    if not hasattr(os, "fork") or not hasattr(os, "memfd_create"):
        return False
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return cores >= 2


class ForkedCall(Generic[T]):
    """``fn()`` running in a forked child from construction; ``result()`` waits for it.

    The child writes its pickled result to an anonymous file in memory (``memfd``: never on
    a disk, gone with its last descriptor) that the parent reads once the child has ended.
    Not a pipe: its reader would need the GIL for every 64 KiB while this process works,
    and the child would wait on it."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fd = os.memfd_create("hilt-forked-result", os.MFD_CLOEXEC)
        try:
            pid = os.fork()
        except BaseException:
            os.close(self._fd)
            raise
        if pid == 0:  # the child: never returns
            _child(fn, self._fd)
        self.pid = pid

    def result(self, timeout: float) -> T:
        """The child's return value; its ``StoreError`` raised again; ``ForkFailed`` else,
        also when the child has not ended within ``timeout`` seconds (then it is killed): a
        fork of a process with threads can inherit a lock another thread held, and a child
        stuck on it must not hold up the operation."""
        try:
            status = self._wait(timeout)
            size = os.fstat(self._fd).st_size
            if status != 0 or size == 0:
                raise ForkFailed(f"the worker process ended with status {status} and no result")
            with os.fdopen(os.dup(self._fd), "rb") as file:
                file.seek(0)
                data = file.read()
        finally:
            os.close(self._fd)
        try:
            ok, value = pickle.loads(data)
        except Exception:  # cut short: the child did not finish writing
            raise ForkFailed("the worker process's result is incomplete") from None
        if ok:
            return value  # type: ignore[no-any-return]
        kind, message = value
        if kind == "StoreError":
            raise StoreError(message)
        raise ForkFailed(f"the worker process failed ({kind})")

    def _wait(self, timeout: float) -> int:
        """The child's exit status, once it has ended (killed after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by a handler of the host's: judge by the file
                return 0
            if pid:
                return status
            if time.monotonic() >= deadline:
                self._kill()
                raise ForkFailed(f"the worker process did not end within {timeout:.0f} s")
            time.sleep(pause)
            pause = min(pause * 2, 0.02)

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)

    def cancel(self) -> None:
        """Stop the child (the caller failed before collecting it) and reap it."""
        self._kill()
        os.close(self._fd)


def _child(fn: Callable[[], T], fd: int) -> NoReturn:
    code = 0
    try:
        gc.disable()  # collecting the parent's garbage here could run its finalizers
        try:
            payload = pickle.dumps((True, fn()), protocol=pickle.HIGHEST_PROTOCOL)
        except StoreError as e:
            payload = pickle.dumps((False, ("StoreError", str(e))))
        except BaseException as e:  # reported by type only: no data leaves
            payload = pickle.dumps((False, (type(e).__name__, "")))
        with os.fdopen(fd, "wb") as file:
            file.write(payload)
    except BaseException:  # the parent sees the status
        code = 1
    finally:
        os._exit(code)
