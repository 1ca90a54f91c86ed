"""A retraining run's snapshot, taken by the runner while the run's kernel starts.

The store's export of its training view (``Store.snapshot``: the query, the opening of the
sealed columns it needs, the Parquet file and its audit row, in one transaction) is the
longest step of a run beside the training (~2 s of a quiet 1M-row run). Taken in the
kernel, it waited for the kernel to start and for the notebook's first cells. The runner
takes it instead (``taking``): with the store it opened, acting as the run's authenticated
author, once the halt was checked (a halted store refuses the run before any snapshot) and
``run.started`` is audited; on a thread, while the kernel starts and runs those cells. It is
audited as ever (``snapshot.created``, by the author), and the store decides as ever: it
refuses what it refused before, and registers a model only from a snapshot it made.

The kernel gets it in its snapshot step (``training_data.get_snapshot``) through the runner's
relay (``tracking.relay``: the ``snapshot`` operation; ``from_runner``): the store's record,
which the step shows (file, sha256, as-of seq, rows, the audit seq) and whose file it reads
(the sha256 checked on the very bytes read), or the store's refusal, raised there as the
store raised it (its class and message: the run fails in that cell, as it did). A
reproduction takes no snapshot (it reuses its file), and neither does a notebook run by hand
(no relay: the step takes it itself).

An embedded store's lock is the runner's while it exports: the kernel, which opens the store
in an earlier cell, waits for the snapshot first (``settled``) rather than for the lock,
whose wait has a limit (``HILT_LOCK_TIMEOUT``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from hilt.pipelines.store import Store
from hilt.pipelines.store.records import SnapshotRecord


class Taking:
    """The run's snapshot, being exported by the store on a thread of the runner."""

    def __init__(self, store: Store, as_of_seq: int) -> None:
        self._record: SnapshotRecord | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._take, args=(store, as_of_seq), name="hilt-snapshot", daemon=True
        )
        self._thread.start()

    def _take(self, store: Store, as_of_seq: int) -> None:
        try:
            self._record = store.snapshot(as_of_seq or None)
        except BaseException as e:  # raised to the kernel's snapshot step (``result``)
            self._error = e

    def join(self) -> None:
        self._thread.join()

    def result(self) -> dict[str, Any]:
        """The store's record (JSON), once exported; raises what the store raised."""
        self.join()
        if self._error is not None:
            raise self._error
        assert self._record is not None
        return self._record.model_dump(mode="json")


@contextlib.contextmanager
def taking(store: Store, kind: str, parameters: Mapping[str, Any]) -> Iterator[Taking | None]:
    """The run's snapshot, started now (None: the run takes none: not a retraining, or a
    reproduction, which reuses its file); waited for when the block ends, so that nothing
    the runner records afterwards (``run.finished``, ``run.failed``) waits for the store's
    lock behind it."""
    if kind != "retrain" or parameters.get("snapshot_sha256"):
        yield None
        return
    taken = Taking(store, int(parameters.get("as_of_seq") or 0))
    try:
        yield taken
    finally:
        taken.join()


# ---------------------------------------------------------------------------- the kernel's side
#: The runner's answer, asked once per relay (a kernel serves one run).
_ANSWERS: dict[str, SnapshotRecord | BaseException | None] = {}


def from_runner() -> SnapshotRecord | None:
    """The store's record of the snapshot this run's runner took (waited for), or None: no
    runner took one (no relay: a notebook run by hand; a reproduction). The store's refusal
    is raised as the store raised it."""
    from hilt.pipelines.loop.tracking.relay import RelayClient

    relay = RelayClient.from_environment()
    if relay is None:
        return None
    if relay.path not in _ANSWERS:
        try:
            answer = relay.snapshot()
            _ANSWERS[relay.path] = None if answer is None else SnapshotRecord(**answer)
        except Exception as e:
            _ANSWERS[relay.path] = e
    found = _ANSWERS[relay.path]
    if isinstance(found, BaseException):
        raise found
    return found


def settled() -> None:
    """Wait until the runner's snapshot (if any) is done; its refusal is left for the
    snapshot step (``from_runner``), where the run fails as it did."""
    with contextlib.suppress(Exception):
        from_runner()
