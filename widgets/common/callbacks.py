"""Listeners: the callbacks a widget's ``on_…(fn)`` registers, called in order.

With a status line, an exception in one callback is said there (Voila hides tracebacks, and
print() is invisible) and the others still run; without one, it propagates to the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from hilt.widgets.common.status import StatusLine, describe_error

T = TypeVar("T")


class Listeners(Generic[T]):
    """``add(fn)`` registers ``fn(value)``; calling the Listeners calls each with ``value``."""

    def __init__(self, status: StatusLine | None = None, failed: str = "") -> None:
        """``failed``: how the status line begins when a callback raises."""
        self._fns: list[Callable[[T], None]] = []
        self._status = status
        self._failed = failed

    def add(self, fn: Callable[[T], None]) -> None:
        self._fns.append(fn)

    def __call__(self, value: T) -> None:
        for fn in list(self._fns):
            if self._status is None:
                fn(value)
                continue
            try:
                fn(value)
            except Exception as exc:  # never into the void: Voila hides the traceback
                self._status.error(f"{self._failed}: {describe_error(exc)}")


#: How the status line begins when a change was saved but a listener could not show it.
NOT_REFRESHED = "Saved, but the dashboard could not refresh"
