"""The request ids of the decisions table, as the service knows them (``RequestIds``): a
decision's idempotency check (``case_facts.read_case_facts``: "is a decision already
recorded under this request id?") asks the database only when its id may be there.

A Bloom filter in a fixed 2 MiB: an id it has never seen is surely not in the table, so the
lookup is left out; an id it may have seen (one that is there, or a false positive, about
1 % at a million decisions) is looked up as before. It only ever answers "maybe" for more
ids than the table holds, never fewer, and that is all it needs to be exact:
- every decision row is written by ``review.write_decision`` in this process (the service
  owns the file), which adds its id (``add``) as soon as the row is in the transaction;
- rows that go (retention) or never commit (a rolled-back group) leave their ids in: a
  "maybe", looked up, not found;
- the rows already stored are added from the table on first use (``ensure``), on the
  connection as the transaction stands (a group's held rows are written first).
Not thread-safe: use it under the service's lock, like the live queue.
"""

from __future__ import annotations

from typing import Any

#: Bits of the filter (a power of two): 2 MiB.
BITS = 1 << 24
_MASK = BITS - 1


class RequestIds:
    def __init__(self) -> None:
        self._bits = bytearray(BITS // 8)
        #: Whether the table's stored ids are in (``ensure``).
        self.built = False
        #: Ids added (the table's and the written ones; a measure of the false positives).
        self.added = 0

    @staticmethod
    def _slots(request_id: str) -> tuple[int, int]:
        h = hash(request_id)
        return h & _MASK, (h >> 32) & _MASK

    def add(self, request_id: str) -> None:
        for slot in self._slots(request_id):
            self._bits[slot >> 3] |= 1 << (slot & 7)
        self.added += 1

    def ensure(self, con: Any) -> None:
        """Add the ids the decisions table holds, once (``con``: the writer's connection,
        as the transaction stands)."""
        if self.built:
            return
        for (request_id,) in con.execute(
            "SELECT request_id FROM decisions WHERE request_id IS NOT NULL"
        ).fetchall():
            self.add(str(request_id))
        self.built = True

    def may_hold(self, request_id: str) -> bool:
        """False: no decision row has this request id (True: ask the table)."""
        if not self.built:
            return True
        bits = self._bits
        return all(bits[slot >> 3] & (1 << (slot & 7)) for slot in self._slots(request_id))
