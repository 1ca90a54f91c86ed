"""Data-subject rights on the store (GDPR Arts. 15-22), next to a log that proves itself.

Every operation finds the subject by their external id (through its HMAC; the id itself is
stored only sealed), acts in one transaction with its audit event, and names only the
pseudonymous ``subject_ref`` and case ids in the log, never personal data:

- ``subject_export`` (Arts. 15, 20): everything held about the subject, in its own
  module;
- ``rectify`` (Art. 16): a superseding, sealed value; later snapshots use it;
- ``restrict`` / ``object`` (Arts. 18, 21): out of training and of the review queue until
  lifted;
- ``contest`` (Art. 22): the subject's latest decided case goes back to the queue, first,
  for a reviewer other than the one who decided it;
- ``erase`` (Art. 17): case data deleted, identity removed, the subject's key destroyed
  (which shreds every sealed copy, in the audit log too), the snapshots that held their rows
  regenerated without them; a tombstone event without personal data restates the digests of
  the batches it touched, so ``hilt audit verify`` still passes (``removal``, shared with
  the retention periods).

What stays after an erasure, and why: the case ids (the controller's own identifiers, used
as the log's object ids), the predictions and the decisions about the cases (the automatic
log of a high-risk system, kept for at least six months, EU AI Act Arts. 12, 19, 26(6);
GDPR Art. 17(3)(b)), all of it pseudonymous and no longer linkable through hilt.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from hilt.pipelines.errors import ConflictError, InputError, NotFoundError
from hilt.pipelines.store import personal_data, sql
from hilt.pipelines.store.ops import review
from hilt.pipelines.store.ops.removal import (
    Removal,
    discard_new_files,
    finish_removals,
    remove_case_data,
    remove_subjects,
    rewrite_snapshots,
)
from hilt.pipelines.store.requests import RESTRICTION_KINDS
from hilt.pipelines.store.subject_records import ErasureReport, SubjectAction
from hilt.pipelines.store.validation import parse_column

if TYPE_CHECKING:
    from hilt.pipelines.store.unit import Unit

_KIND_ACTION = {"restrict": "subject.restricted", "object": "subject.objected"}


def find_subject(unit: Unit, external_id: str) -> str:
    """The subject_ref of an external subject id; the id is never echoed in errors."""
    if not external_id or len(external_id) > 128:
        raise InputError("a subject id is 1 to 128 characters")
    lookup = unit.keys.master.lookup(external_id)
    ref = sql.scalar(unit.con, "SELECT subject_ref FROM identity WHERE lookup = ?", [lookup])
    if ref is None:
        raise NotFoundError("no subject with that id (never ingested, or already erased)")
    return str(ref)


def cases_of(unit: Unit, subject_ref: str) -> list[tuple[str, int, int | None]]:
    rows = unit.con.execute(
        "SELECT case_id, ingest_seq, removed_seq FROM cases WHERE subject_ref = ? ORDER BY case_id",
        [subject_ref],
    ).fetchall()
    return [(str(r[0]), int(r[1]), r[2]) for r in rows]


def remove_subject(
    unit: Unit,
    subject_ref: str,
    reason: str,
    now: datetime,
    removal: Removal,
    **more: Any,
) -> tuple[int, list[str]]:
    """Inside the caller's transaction: the subject's case data deleted, snapshots
    regenerated without them, their identity forgotten, and the ``subject.erased`` tombstone
    (``more``: extra payload) appended; (its seq, every case of theirs). Their key is
    destroyed once the caller's transaction commits (``finish_removals``)."""
    case_ids = [c for c, _, removed in cases_of(unit, subject_ref) if removed is None]
    all_cases = [c for c, _, _ in cases_of(unit, subject_ref)]
    seq = unit.next_seq()
    remove_case_data(unit, case_ids, seq, removal)
    rewrite_snapshots(unit, all_cases, seq, now, removal)
    remove_subjects(unit, [subject_ref], reason, seq, now)
    unit.append_audit(
        "subject.erased",
        "subject",
        subject_ref,
        {
            "cases": all_cases,
            "batches": removal.batches,
            "snapshots": [s.model_dump() for s in removal.snapshots],
            "key": "destroyed",
            **more,
        },
        now,
        expect_seq=seq,
    )
    return seq, all_cases


# ----------------------------------------------------------------------- operations
def subject_erase(unit: Unit, subject_id: str) -> ErasureReport:
    """Erase the subject (GDPR Art. 17): data deleted, key destroyed, snapshots
    regenerated, a tombstone in the log."""
    now = unit.clock()
    removal = Removal()
    try:
        with unit.transaction():
            ref = find_subject(unit, subject_id)
            seq, all_cases = remove_subject(unit, ref, "erasure", now, removal)
    except BaseException:
        discard_new_files(removal)
        raise
    destroyed = finish_removals(unit)
    return ErasureReport(
        subject_ref=ref,
        seq=seq,
        cases=all_cases,
        key_destroyed=destroyed or not unit.keys.store.has(ref),
        snapshots=removal.snapshots,
    )


def subject_rectify(
    unit: Unit,
    subject_id: str,
    column: str,
    value: str | None,
    case_id: str | None = None,
) -> SubjectAction:
    """A superseding value for one column of the subject's cases (GDPR Art. 16)."""
    settings = unit.settings
    if column not in settings.columns:
        raise InputError(
            f"unknown column {column!r}; rectifiable columns: {', '.join(settings.columns)}"
        )
    col = settings.columns[column]
    problems: list[str] = []
    parsed = parse_column(pl.Series(column, [value], dtype=pl.String), column, col, problems)
    if problems:
        allowed: list[str] = [str(col.type)]
        if col.levels:
            allowed.append("one of: " + ", ".join(col.levels))
        if col.min is not None:
            allowed.append(f"at least {col.min:g}")
        if col.max is not None:
            allowed.append(f"at most {col.max:g}")
        if not col.nullable:
            allowed.append("not empty")
        raise InputError(
            f"rectification rejected, nothing was written: the value for {column!r} does not "
            f"fit the column ({'; '.join(allowed)})"
        )
    typed = parsed.to_list()[0]
    now = unit.clock()
    with unit.transaction():
        ref = find_subject(unit, subject_id)
        live = [c for c, _, removed in cases_of(unit, ref) if removed is None]
        if case_id is not None:
            if case_id not in live:
                raise NotFoundError("the subject has no live case with that case id")
            live = [case_id]
        if not live:
            raise InputError("the subject has no case data left to rectify")
        seq = unit.next_seq()
        key = unit.keys.store.key(ref)
        sealed = {
            c: personal_data.seal_value(
                key, typed, personal_data.RECTIFY_PURPOSE, ref, seq, f"{c}/{column}"
            )
            for c in live
        }
        unit.append_audit(
            "subject.rectified",
            "subject",
            ref,
            {"column": column, "cases": live, "values_sealed": sealed},
            now,
            expect_seq=seq,
        )
        for c, v in sealed.items():
            unit.con.execute(
                "INSERT INTO rectifications VALUES (?, ?, ?, ?, ?, ?)",
                [c, ref, column, v, seq, now],
            )
    return SubjectAction(action="subject.rectified", subject_ref=ref, seq=seq, cases=live)


def subject_restrict(unit: Unit, subject_id: str, kind: str, lift: bool = False) -> SubjectAction:
    """Restrict (Art. 18) or object to (Art. 21) processing, or lift it."""
    if kind not in RESTRICTION_KINDS:
        raise InputError(f"kind must be one of {', '.join(RESTRICTION_KINDS)}")
    now = unit.clock()
    with unit.transaction():
        ref = find_subject(unit, subject_id)
        cases = [c for c, _, _ in cases_of(unit, ref)]
        live = sql.scalar(
            unit.con,
            "SELECT seq FROM restrictions WHERE subject_ref = ? AND kind = ?"
            " AND lifted_seq IS NULL",
            [ref, kind],
        )
        if lift:
            if live is None:
                raise ConflictError(f"the subject has no {kind} in force to lift")
            action = "subject.restriction_lifted"
            seq = unit.append_audit(
                action, "subject", ref, {"kind": kind, "since_seq": int(live)}, now
            )
            unit.con.execute(
                "UPDATE restrictions SET lifted_seq = ? WHERE subject_ref = ? AND kind = ?"
                " AND lifted_seq IS NULL",
                [seq, ref, kind],
            )
        else:
            if live is not None:
                raise ConflictError(f"the subject's {kind} is already in force (since seq {live})")
            action = _KIND_ACTION[kind]
            seq = unit.append_audit(action, "subject", ref, {"kind": kind}, now)
            unit.con.execute(
                "INSERT INTO restrictions VALUES (?, ?, ?, ?, NULL)", [ref, kind, seq, now]
            )
            # Nobody keeps reviewing a case whose processing is now restricted.
            unit.con.execute(
                "DELETE FROM leases WHERE case_id IN"
                " (SELECT case_id FROM cases WHERE subject_ref = ?)",
                [ref],
            )
    return SubjectAction(action=action, subject_ref=ref, seq=seq, cases=cases)


def latest_decided_case(unit: Unit, subject_ref: str) -> str:
    row = sql.one(
        unit.con,
        "SELECT d.case_id FROM decisions d JOIN cases c USING (case_id)"
        " WHERE c.subject_ref = ? AND c.removed_seq IS NULL"
        " AND d.action IN ('accept', 'override') AND d.decision_id NOT IN"
        " (SELECT undo_of FROM decisions WHERE action = 'undo' AND undo_of IS NOT NULL)"
        " ORDER BY d.seq DESC LIMIT 1",
        [subject_ref],
    )
    if row is None:
        raise ConflictError("the subject has no decided case to contest")
    return str(row[0])


def subject_contest(unit: Unit, subject_id: str) -> SubjectAction:
    """The subject asks for human review of their latest decision (GDPR Art. 22)."""
    ref = find_subject(unit, subject_id)
    case_id = latest_decided_case(unit, ref)
    seq = review.contest(unit, case_id)
    return SubjectAction(action="case.contested", subject_ref=ref, seq=seq, cases=[case_id])
