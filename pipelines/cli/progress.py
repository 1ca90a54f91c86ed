"""Progress of a long command (ingest of a large file, verify of a long log, simulate,
retrain) on standard error, drawn with rich (typer brings it).

The work itself lives outside the CLI and knows nothing of rich: it takes an optional
``on_progress`` callable and calls it with the number of units done since the last call
(rows, events, rounds, cells). The command wraps the work in ``progress(...)`` and passes
what it yields on::

    with progress("verifying", total=head, unit="events") as advance:
        verify_file(path, on_progress=advance)

A bar is drawn only on a terminal (a scheduler's log gets no control characters), or
everywhere with ``HILT_PROGRESS=1`` (``HILT_PROGRESS=0`` turns it off). Standard output is
never touched: commands that print JSON keep printing only JSON there.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: What long work calls with the units done since its last call.
Advance = Callable[[int], None]


def _nothing(_: int) -> None:
    return None


def shown() -> bool:
    """Whether progress is drawn: ``HILT_PROGRESS`` if set, else only on a terminal."""
    wanted = os.environ.get("HILT_PROGRESS", "").strip()
    if wanted:
        return wanted not in ("0", "false", "no")
    return sys.stderr.isatty()


@contextmanager
def progress(description: str, *, total: int | None, unit: str) -> Iterator[Advance]:
    """A progress bar of ``total`` ``unit`` (``None``: unknown, a counter) on standard error;
    yields the callable that advances it. Yields a no-op where progress is not shown."""
    if not shown():
        yield _nothing
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True, force_terminal=True if os.environ.get("HILT_PROGRESS") else None)
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total)

        def advance(done: int) -> None:
            bar.advance(task, done)

        yield advance
