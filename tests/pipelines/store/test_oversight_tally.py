"""The times on item the store service keeps for the oversight report (``oversight_tally``):
their median is DuckDB's ``median`` of the same values, after additions and removals (an
undo takes a decision's time back out). The kept figures as a whole are compared with the
report's full recount in ``test_live_queue.py``."""

from __future__ import annotations

import random

import duckdb

from hilt.pipelines.store.oversight_tally import Times, median_ms


def test_the_median_of_the_kept_times_is_duckdbs_median() -> None:
    rng = random.Random(11)
    con = duckdb.connect()
    for n in (1, 2, 3, 4, 10, 99, 1000):
        # Short and long times: several bins, repeated values within a bin.
        values = [rng.choice((rng.randrange(0, 3000), rng.randrange(0, 200_000))) for _ in range(n)]
        undone = [rng.randrange(0, 200_000) for _ in range(n // 3)]
        parts = [Times(), Times(), Times()]
        for v in values + undone:
            parts[rng.randrange(3)].add(v)
        for v in undone:  # taken out again, from whichever part holds it
            holder = next(t for t in parts if v in t.fine.get(v >> 10, {}))
            holder.add(v, -1)
        expected = con.execute(
            "SELECT median(v) FROM (SELECT unnest($v::BIGINT[]) AS v)", {"v": values}
        ).fetchall()[0][0]
        assert median_ms(parts) == expected, n
        assert sum(t.n for t in parts) == n
    emptied = Times()
    emptied.add(5)
    emptied.add(5, -1)
    assert median_ms([emptied, Times()]) is None
    assert emptied.bins == {} and emptied.fine == {}  # nothing left behind
