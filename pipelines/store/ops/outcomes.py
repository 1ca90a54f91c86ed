"""Outcomes: the later truth about scored cases (e.g. default within 12 months), recorded in
batches (`hilt outcomes FILE`) for post-market monitoring (EU AI Act Art. 72).

A batch is validated whole (unknown case ids, classes that are not the target's, an id
twice, a case that has an outcome already, a time that is not ISO 8601 or lies in the
future: a clear error naming the rows, and nothing is written) and audited by one
``outcome.recorded`` event carrying the batch's digest (``audit.batch_digest``), in the
transaction of the insert; `hilt audit verify` recomputes it.

Outcomes never enter training or the holdout: the snapshot reads seed labels and reviewer
decisions only. They are the data subject's data: an erasure or a retention run removes
them with the case's data and restates the batch's digest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from hilt.pipelines.errors import ConflictError, NotFoundError
from hilt.pipelines.store import sql
from hilt.pipelines.store.monitoring_records import OutcomesResult

if TYPE_CHECKING:
    from hilt.pipelines.store.unit import Unit


def _first_rows(unit: Unit, condition: str) -> str:
    rows = sql.scalar(
        unit.con,
        "SELECT list(rn ORDER BY rn)[1:5] FROM (SELECT row_number() OVER () AS rn, case_id"
        f" FROM hilt_outcomes) b WHERE {condition}",
    )
    return ", ".join(map(str, rows or []))


def record_outcomes(unit: Unit, frame: pl.DataFrame) -> OutcomesResult:
    """Record a batch of outcomes (the id column, ``outcome``, ``observed_at``); see the
    module's doc. Counts and the digest are audited, never an id or an outcome."""
    from hilt.pipelines.store.audit import batch_digest
    from hilt.pipelines.store.validation import clean_outcomes

    now = unit.clock()
    clean = clean_outcomes(frame, unit.settings, now)
    unit.con.register("hilt_outcomes", clean.to_arrow())
    try:
        with unit.transaction():
            unknown = sql.scalar(
                unit.con,
                "SELECT count(*) FROM hilt_outcomes o WHERE NOT EXISTS"
                " (SELECT 1 FROM cases c WHERE c.case_id = o.case_id AND c.removed_seq IS NULL)",
            )
            if unknown:
                where = "case_id NOT IN (SELECT case_id FROM cases WHERE removed_seq IS NULL)"
                raise NotFoundError(
                    f"outcomes rejected, nothing was written:\n- {unknown} rows name unknown "
                    f"case ids, or cases whose data was removed (rows {_first_rows(unit, where)})"
                )
            known = sql.scalar(
                unit.con,
                "SELECT count(*) FROM hilt_outcomes o JOIN outcomes USING (case_id)",
            )
            if known:
                where = "case_id IN (SELECT case_id FROM outcomes)"
                raise ConflictError(
                    f"outcomes rejected, nothing was written:\n- {known} rows name cases that "
                    f"have an outcome already (rows {_first_rows(unit, where)})"
                )
            seq = unit.next_seq()
            unit.con.execute(
                "INSERT INTO outcomes SELECT case_id, outcome, observed_at, ?, ?"
                " FROM hilt_outcomes",
                [seq, now],
            )
            digest = batch_digest.digest(unit.con, batch_digest.OUTCOMES_SQL, seq)
            counts = clean["outcome"].value_counts()
            by_class = {
                cls: int(counts.filter(pl.col("outcome") == cls)["count"].sum())
                for cls in unit.settings.target.classes
            }
            unit.append_audit(
                batch_digest.OUTCOMES_ACTION,
                "batch",
                f"outcomes:{now.strftime('%Y%m%dT%H%M%S%fZ')}",
                {
                    "rows": clean.height,
                    "by_class": by_class,
                    "digest": digest,
                    "digest_method": batch_digest.METHOD,
                },
                now,
                expect_seq=seq,
            )
    finally:
        unit.con.unregister("hilt_outcomes")
    return OutcomesResult(rows=clean.height, seq=seq, digest=digest, by_class=by_class)
