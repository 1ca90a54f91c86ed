"""The system's halt: a lead stops scoring and retraining at once; a second lead resumes.

EU AI Act Art. 14(4)(e). While halted the store refuses predictions from anyone
(``refuse_if_halted``, called inside the writing transaction) and a model's registration
(retraining's result; a run that asks first is refused by the runner too), and new cases wait
in the review queue for manual review.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from hilt.pipelines.errors import ConflictError, InputError, PermissionDeniedError, SystemHalted
from hilt.pipelines.store import sql
from hilt.pipelines.store.audit.chain import utc_timestamp
from hilt.pipelines.store.oversight_records import SystemState, halted_message
from hilt.pipelines.store.validation import check_text

if TYPE_CHECKING:
    from hilt.pipelines.store.unit import Unit


def system_state(unit: Unit) -> SystemState:
    """Whether the system is halted, by whom, since when and why."""
    row = sql.one(unit.con, "SELECT halted, changed_by, reason, changed_at, seq FROM system_state")
    assert row is not None
    return SystemState(
        halted=bool(row[0]),
        changed_by=row[1],
        reason=row[2],
        changed_at=utc_timestamp(row[3]) if row[3] is not None else None,
        seq=row[4],
    )


def halt(unit: Unit, reason: str) -> SystemState:
    """Stop scoring and retraining at once (a lead; EU AI Act Art. 14(4)(e))."""
    if not reason.strip():
        raise InputError("a halt needs a reason")
    check_text(reason, "reason", unit.settings.limits.max_text_length, multiline=True)
    now = unit.clock()
    with unit.transaction():
        if system_state(unit).halted:
            raise ConflictError("the system is already halted")
        seq = unit.append_audit(
            "system.halted",
            "system",
            "scoring-and-retraining",
            {"reason_sha256": hashlib.sha256(reason.encode()).hexdigest()},
            now,
        )
        unit.con.execute(
            "UPDATE system_state SET halted = true, changed_by = ?, reason = ?,"
            " changed_at = ?, seq = ?",
            [unit.actor.name, reason, now, seq],
        )
    return system_state(unit)


def resume(unit: Unit) -> SystemState:
    """Resume after a halt: needs a second authorised person (not the one who halted)."""
    now = unit.clock()
    with unit.transaction():
        state = system_state(unit)
        if not state.halted:
            raise ConflictError("the system is not halted")
        if state.changed_by == unit.actor.name:
            raise PermissionDeniedError(
                "the person who halted the system cannot resume it; a second lead must"
            )
        seq = unit.append_audit(
            "system.resumed",
            "system",
            "scoring-and-retraining",
            {"halted_at_seq": state.seq},
            now,
        )
        unit.con.execute(
            "UPDATE system_state SET halted = false, changed_by = ?, reason = NULL,"
            " changed_at = ?, seq = ?",
            [unit.actor.name, now, seq],
        )
    return system_state(unit)


def refuse_if_halted(unit: Unit, what: str) -> None:
    """SystemHalted while a lead's halt holds (call inside the writing transaction)."""
    state = system_state(unit)
    if state.halted:
        raise SystemHalted(halted_message(state, what))
