"""Storage limitation (GDPR Art. 5(1)(e)) against the log-keeping duty (EU AI Act Arts. 12,
19, 26(6)): `hilt retention apply` removes what is due, and nothing younger.

Periods come from ``[retention]`` in hilt.toml, counted from when a record was written:

- ``cases_days``: a case's data (features, sealed personal data, seed label,
  rectifications) is deleted; the case row stays as a tombstone. A subject with no live case
  left is forgotten: identity removed and key destroyed, which shreds every sealed copy of
  their data (comments and rectified values in the audit log included). Snapshots holding
  removed cases are regenerated without them.
- ``predictions_days``: prediction rows are deleted.
- ``decisions_days``: decision rows are deleted; their audit events remain until
  ``audit_log_days``.
- ``audit_log_days`` (at least six months, a config error otherwise): the oldest audit rows
  are deleted; the retention event records the last purged seq and its hash, from which the
  remaining chain verifies.

The config requires cases_days <= predictions_days, decisions_days <= audit_log_days, so
records always outlive the data they describe, and the log outlives them all. Every removal
is one transaction with one ``retention.applied`` event that restates the digests of the
batches it touched; a run with nothing due writes nothing (idempotent, scheduler-friendly).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from hilt.pipelines.config import MIN_AUDIT_RETENTION_DAYS
from hilt.pipelines.store import sql
from hilt.pipelines.store.audit import batch_digest
from hilt.pipelines.store.audit.chain import utc_timestamp
from hilt.pipelines.store.ops.removal import (
    Removal,
    discard_new_files,
    finish_removals,
    remove_case_data,
    remove_subjects,
    rewrite_snapshots,
)
from hilt.pipelines.store.subject_records import RetentionReport

if TYPE_CHECKING:
    from hilt.pipelines.store.unit import Unit


def retention_apply(unit: Unit) -> RetentionReport:
    """Remove what has passed its retention period (idempotent: a run with nothing due
    writes nothing)."""
    now = unit.clock()
    periods = unit.settings.retention
    cut_cases = now - timedelta(days=periods.cases_days)
    cut_predictions = now - timedelta(days=periods.predictions_days)
    cut_decisions = now - timedelta(days=periods.decisions_days)
    # Never younger than the legal minimum, whatever the config says.
    cut_audit = audit_cut(unit, now)[1]
    removal = Removal()
    report = RetentionReport(
        seq=None,
        as_of=utc_timestamp(now),
        cases_removed=0,
        subjects_removed=0,
        predictions_purged=0,
        decisions_purged=0,
        audit_purged_through=None,
        snapshots=[],
    )
    try:
        with unit.transaction():
            due_cases = [
                str(r[0])
                for r in unit.con.execute(
                    "SELECT case_id FROM cases WHERE removed_seq IS NULL AND created_at < ?"
                    " ORDER BY case_id",
                    [cut_cases],
                ).fetchall()
            ]
            due_predictions = int(
                sql.scalar(
                    unit.con,
                    "SELECT (SELECT count(*) FROM predictions WHERE created_at < $cut)"
                    " + (SELECT count(*) FROM shadow_predictions WHERE created_at < $cut)",
                    {"cut": cut_predictions},
                )
            )
            decisions_row = sql.one(
                unit.con,
                "SELECT count(*), max(seq) FROM decisions WHERE created_at < ?",
                [cut_decisions],
            )
            due_decisions = int(decisions_row[0]) if decisions_row else 0
            audit_row = sql.one(
                unit.con,
                "SELECT max(seq) FROM audit_log WHERE json_extract_string(entry, '$.ts') < ?",
                [cut_audit],
            )
            audit_through = int(audit_row[0]) if audit_row and audit_row[0] is not None else 0
            nothing_due = not (due_cases or due_predictions or due_decisions or audit_through)
            if not nothing_due:
                seq, subjects = _remove(
                    unit,
                    removal,
                    due_cases,
                    due_predictions,
                    cut_predictions,
                    due_decisions,
                    decisions_row,
                    audit_through,
                    now,
                )
    except BaseException:
        discard_new_files(removal)
        raise
    finish_removals(unit)  # also completes a removal that crashed after its commit
    if nothing_due:
        return report
    return RetentionReport(
        seq=seq,
        as_of=utc_timestamp(now),
        cases_removed=len(due_cases),
        subjects_removed=len(subjects),
        predictions_purged=due_predictions,
        decisions_purged=due_decisions,
        audit_purged_through=audit_through or None,
        snapshots=removal.snapshots,
    )


def audit_cut(unit: Unit, now: datetime) -> tuple[int, str]:
    """(days, cut): the audit log's retention period in force, never under the legal
    minimum whatever the config says, and the time before which events are due."""
    days = max(unit.settings.retention.audit_log_days, MIN_AUDIT_RETENTION_DAYS)
    return days, utc_timestamp(now - timedelta(days=days))


def _remove(
    unit: Unit,
    removal: Removal,
    due_cases: list[str],
    due_predictions: int,
    cut_predictions: datetime,
    due_decisions: int,
    decisions_row: tuple[Any, ...] | None,
    audit_through: int,
    now: datetime,
) -> tuple[int, list[str]]:
    """Remove what is due, inside the caller's transaction; (event seq, subjects forgotten)."""
    periods = unit.settings.retention
    seq = unit.next_seq()
    payload: dict[str, Any] = {
        "as_of": utc_timestamp(now),
        "periods_days": periods.model_dump(),
    }
    subjects: list[str] = []
    if due_cases:
        affected = sorted(
            {
                str(r[0])
                for r in unit.con.execute(
                    "SELECT DISTINCT subject_ref FROM cases WHERE case_id IN (SELECT unnest(?))",
                    [due_cases],
                ).fetchall()
            }
        )
        remove_case_data(unit, due_cases, seq, removal)
        live = {
            str(r[0])
            for r in unit.con.execute(
                "SELECT DISTINCT subject_ref FROM cases WHERE removed_seq IS NULL"
                " AND subject_ref IN (SELECT unnest(?))",
                [affected],
            ).fetchall()
        }
        subjects = [ref for ref in affected if ref not in live]
        remove_subjects(unit, subjects, "retention", seq, now)
        rewrite_snapshots(unit, due_cases, seq, now, removal)
        payload["cases"] = {"removed": len(due_cases), "subjects_forgotten": subjects}
    for table in ("predictions", "shadow_predictions") if due_predictions else ():
        batches = [
            int(r[0])
            for r in unit.con.execute(
                f"SELECT DISTINCT batch_seq FROM {table} WHERE created_at < ? ORDER BY 1",
                [cut_predictions],
            ).fetchall()
        ]
        unit.con.execute(f"DELETE FROM {table} WHERE created_at < ?", [cut_predictions])
        for batch in batches:
            rows = int(
                sql.scalar(unit.con, f"SELECT count(*) FROM {table} WHERE batch_seq = ?", [batch])
            )
            removal.batches[str(batch)] = {
                "rows": rows,
                "digest": batch_digest.restated_digest(unit.con, unit.settings, batch),
            }
    if due_predictions:
        payload["predictions"] = {"purged": due_predictions}
    if due_decisions:
        assert decisions_row is not None
        through = int(decisions_row[1])
        unit.con.execute("DELETE FROM decisions WHERE seq <= ?", [through])
        payload["decisions"] = {"purged": due_decisions, "purged_through": through}
    if audit_through:
        anchor = sql.scalar(unit.con, "SELECT hash FROM audit_log WHERE seq = ?", [audit_through])
        unit.con.execute("DELETE FROM audit_log WHERE seq <= ?", [audit_through])
        payload["audit"] = {
            "purged_through": audit_through,
            "anchor_hash": anchor,
            # what verify checks the purge against (``audit.authority``)
            **dict(zip(("days", "cut"), audit_cut(unit, now), strict=True)),
        }
    payload["batches"] = removal.batches
    payload["snapshots"] = [s.model_dump() for s in removal.snapshots]
    unit.append_audit(
        "retention.applied",
        "retention",
        utc_timestamp(now),
        payload,
        now,
        expect_seq=seq,
    )
    return seq, subjects
