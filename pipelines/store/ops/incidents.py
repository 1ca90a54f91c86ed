"""The incident register: serious incidents (EU AI Act Art. 73), personal-data breaches
(GDPR Art. 33) and malfunctions (Art. 26(5)), with who was told when.

The store decides everything the law asks here: the deadline (from the kind and the time the
incident became known, ``incidents.KINDS``; never sent by a client), whether it is overdue
(against the store's clock), who may close it, and when a failed verification opens one.

- Leads, admins and the data-protection officer open and update incidents.
- Closing a serious (reportable) incident needs a lead who did not open it (four eyes: the
  person who reported it is not the one who decides it is over); a malfunction is closed by
  anyone who may open one.
- ``open_automatic`` is what another operation calls, inside its own transaction, to open an
  incident from what the store itself found (a failed verify, a monitoring breach); no client
  can open an incident of those sources, nor keep one from opening.
- ``verify_and_record`` verifies the log inside the store (the pinned key, the workspace's
  checkpoint file, the whole log: nothing the caller chooses) and opens a personal-data
  breach when it does not verify, once per broken seq.

Free text (summary, notes, close reasons, who was told) stays in the tables; the audit
payloads carry its sha256, the kind, the deadline and the source.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hilt.pipelines.errors import (
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
)
from hilt.pipelines.store.audit.chain import utc_timestamp
from hilt.pipelines.store.incidents import (
    AUTOMATIC_SOURCES,
    KINDS,
    OPEN_STATUSES,
    VERIFY_KIND,
    Incident,
    IncidentKind,
    IncidentNote,
    IncidentNotification,
    VerifyOutcome,
)
from hilt.pipelines.store.ops.events import parse_time, verify
from hilt.pipelines.store.validation import check_text

if TYPE_CHECKING:
    from hilt.pipelines.store.unit import Unit

#: Longest name of whoever was told (an authority, the provider).
MAX_RECIPIENT = 200
#: The role that closes a serious incident.
CLOSING_ROLE = "lead"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _kind(name: str) -> IncidentKind:
    kind = KINDS.get(name.strip()) if isinstance(name, str) else None
    if kind is None:
        raise InputError(f"kind must be one of {', '.join(KINDS)}; got {str(name)[:64]!r}")
    return kind


def _text(unit: Unit, value: str | None, name: str) -> str:
    if value is None or not value.strip():
        raise InputError(f"{name} must not be empty")
    check_text(value, name, unit.settings.limits.max_text_length, multiline=True)
    return value.strip()


def _past(value: str | None, name: str, now: datetime) -> datetime:
    """A caller's time, not after the store's now (``now`` when not given)."""
    if value is None:
        return now
    moment = parse_time(value, name)
    if moment > now:
        raise InputError(
            f"{name} {utc_timestamp(moment)} is in the future (the store's time is "
            f"{utc_timestamp(now)})"
        )
    return moment


def _payload(row: Incident, **more: Any) -> dict[str, Any]:
    return {
        "kind": row.kind,
        "serious": row.serious,
        "known_at": row.known_at,
        "deadline": row.deadline,
        "source": row.source,
        **more,
    }


def _open(
    unit: Unit,
    kind: IncidentKind,
    source: str,
    summary: str,
    known_at: datetime,
    verify_break_seq: int | None = None,
) -> str:
    """Insert the incident and its ``incident.opened`` event (inside ``unit.transaction()``)."""
    now = unit.clock()
    incident_id = f"INC-{unit.next_seq()}"
    deadline = known_at + kind.deadline if kind.deadline is not None else None
    payload: dict[str, Any] = {
        "kind": kind.name,
        "serious": kind.serious,
        "known_at": utc_timestamp(known_at),
        "deadline": utc_timestamp(deadline) if deadline is not None else None,
        "source": source,
        "summary_sha256": _sha(summary),
    }
    if verify_break_seq is not None:
        payload["verify_break_seq"] = verify_break_seq
    seq = unit.append_audit("incident.opened", "incident", incident_id, payload, now)
    unit.con.execute(
        "INSERT INTO incidents (incident_id, kind, serious, source, summary, status, known_at,"
        " deadline, opened_by, opened_at, opened_seq, verify_break_seq)"
        " VALUES (?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?)",
        [
            incident_id,
            kind.name,
            kind.serious,
            source,
            summary,
            known_at,
            deadline,
            unit.actor.name,
            now,
            seq,
            verify_break_seq,
        ],
    )
    return incident_id


def open_incident(unit: Unit, kind: str, summary: str, known_at: str | None = None) -> Incident:
    """Open an incident of ``kind`` (``incidents.KINDS``), known since ``known_at`` (ISO-8601,
    not in the future; default now). The store computes its deadline."""
    now = unit.clock()
    found = _kind(kind)
    text = _text(unit, summary, "summary")
    known = _past(known_at, "known_at", now)
    with unit.transaction():
        incident_id = _open(unit, found, "manual", text, known)
    return _one(unit, incident_id)


def open_automatic(
    unit: Unit, kind: str, source: str, summary: str, *, reuse_open: bool = False
) -> str:
    """Open an incident from what the store itself found (``source``: verify or monitoring),
    known now, as the unit's actor; for another operation to call inside its own transaction
    (joined, never nested). Returns the incident's id.

    ``reuse_open``: while an incident of this kind from this source is still open, add
    ``summary`` to it as a note (``incident.updated``) instead of opening another (a
    monitoring run that finds the same serious breach every day: one incident, one clock,
    until a lead closes it)."""
    if source not in AUTOMATIC_SOURCES:
        raise InputError(f"source must be one of {', '.join(AUTOMATIC_SOURCES)}")
    found = _kind(kind)
    text = _text(unit, summary, "summary")
    with unit.transaction():
        if reuse_open:
            still = unit.con.execute(
                "SELECT incident_id FROM incidents WHERE source = ? AND kind = ?"
                " AND closed_at IS NULL ORDER BY opened_seq LIMIT 1",
                [source, found.name],
            ).fetchone()
            if still is not None:
                row = _one(unit, str(still[0]))
                now = unit.clock()
                seq = unit.append_audit(
                    "incident.updated",
                    "incident",
                    row.incident_id,
                    _payload(row, note_sha256=_sha(text)),
                    now,
                )
                _add_note(unit, row.incident_id, text, now, seq)
                return row.incident_id
        return _open(unit, found, source, text, unit.clock())


def _add_note(unit: Unit, incident_id: str, text: str, now: datetime, seq: int) -> None:
    unit.con.execute(
        "INSERT INTO incident_notes VALUES (?, ?, ?, ?, ?)",
        [incident_id, unit.actor.name, now, text, seq],
    )


def update_incident(
    unit: Unit,
    incident_id: str,
    note: str | None = None,
    status: str | None = None,
    told: str | None = None,
    told_at: str | None = None,
) -> Incident:
    """Add a note, move the status (open, investigating, contained), or record that
    ``told`` (an authority, the provider) was told at ``told_at`` (default now)."""
    now = unit.clock()
    if told_at is not None and told is None:
        raise InputError("told_at needs told (who was told)")
    if note is None and status is None and told is None:
        raise InputError("nothing to update: give a note, a status or who was told")
    if status is not None and status not in OPEN_STATUSES:
        raise InputError(
            f"status must be one of {', '.join(OPEN_STATUSES)} (close an incident with "
            "close_incident and a reason)"
        )
    text = _text(unit, note, "note") if note is not None else None
    recipient = None
    if told is not None:
        recipient = told.strip()
        if not recipient:
            raise InputError("told must name who was told")
        check_text(recipient, "told", MAX_RECIPIENT)
    when = _past(told_at, "told_at", now) if told is not None else None
    with unit.transaction():
        row = _one(unit, incident_id)
        if row.closed:
            raise ConflictError(f"incident {incident_id} is closed")
        if when is not None and utc_timestamp(when) < row.known_at:
            raise ConflictError(  # (the incident's own time: its state)
                f"told_at {utc_timestamp(when)} is before the incident was known ({row.known_at})"
            )
        more: dict[str, Any] = {}
        if status is not None:
            more["status"] = status
        if text is not None:
            more["note_sha256"] = _sha(text)
        if recipient is not None and when is not None:
            more["told_sha256"] = _sha(recipient)
            more["told_at"] = utc_timestamp(when)
        seq = unit.append_audit(
            "incident.updated", "incident", incident_id, _payload(row, **more), now
        )
        if status is not None:
            unit.con.execute(
                "UPDATE incidents SET status = ? WHERE incident_id = ?", [status, incident_id]
            )
        if text is not None:
            _add_note(unit, incident_id, text, now, seq)
        if recipient is not None:
            unit.con.execute(
                "INSERT INTO incident_notifications VALUES (?, ?, ?, ?, ?)",
                [incident_id, recipient, when, unit.actor.name, seq],
            )
    return _one(unit, incident_id)


def close_incident(unit: Unit, incident_id: str, reason: str) -> Incident:
    """Close an incident with a reason. A serious one needs a lead who did not open it."""
    now = unit.clock()
    text = _text(unit, reason, "reason")
    with unit.transaction():
        row = _one(unit, incident_id)
        if row.closed:
            raise ConflictError(f"incident {incident_id} is already closed")
        role = unit.role
        if row.serious:
            if CLOSING_ROLE not in unit.actor.roles:
                raise PermissionDeniedError(
                    f"a serious incident ({row.provision}) is closed by a lead; "
                    f"user {unit.actor.name!r} is not one"
                )
            if row.opened_by == unit.actor.name:
                raise PermissionDeniedError(
                    "the person who opened a serious incident cannot close it; a second lead must"
                )
            role = CLOSING_ROLE
        seq = unit.append_audit(
            "incident.closed",
            "incident",
            incident_id,
            _payload(row, reason_sha256=_sha(text)),
            now,
            role=role,
        )
        unit.con.execute(
            "UPDATE incidents SET status = 'closed', closed_by = ?, closed_at = ?,"
            " close_reason = ?, closed_seq = ? WHERE incident_id = ?",
            [unit.actor.name, now, text, seq, incident_id],
        )
    return _one(unit, incident_id)


def incidents(unit: Unit, open_only: bool = False) -> list[Incident]:
    """The register, newest first, each with its deadline, the time left and whether it is
    overdue (serious, not closed, nobody told, past its deadline)."""
    return _load(unit, None, open_only)


def verify_and_record(unit: Unit) -> VerifyOutcome:
    """Verify the whole log with the pinned key and the workspace's checkpoint file; when it
    does not verify, open a personal-data breach (``incidents.VERIFY_KIND``, source
    "verify"), unless one was opened for the same broken seq already."""
    report = verify(unit)
    if report.ok or report.first_break is None:
        return VerifyOutcome(report=report)
    broken = report.first_break.seq
    try:
        with unit.transaction():
            known = unit.con.execute(
                "SELECT incident_id FROM incidents WHERE source = 'verify'"
                " AND verify_break_seq = ? ORDER BY opened_seq LIMIT 1",
                [broken],
            ).fetchone()
            if known is not None:
                return VerifyOutcome(report=report, incident_id=str(known[0]))
            incident_id = _open(
                unit,
                KINDS[VERIFY_KIND],
                "verify",
                f"the audit log does not verify: {report.summary()}",
                unit.clock(),
                verify_break_seq=broken,
            )
    except StoreError as e:
        return VerifyOutcome(report=report, not_recorded=str(e))
    return VerifyOutcome(report=report, incident_id=incident_id, opened=True)


# ---------------------------------------------------------------------------- reading
def _one(unit: Unit, incident_id: str) -> Incident:
    found = _load(unit, incident_id, False)
    if not found:
        raise NotFoundError(f"no incident {incident_id!r}")
    return found[0]


def _ts(value: datetime | None) -> str | None:
    return utc_timestamp(value) if value is not None else None


def _load(unit: Unit, incident_id: str | None, open_only: bool) -> list[Incident]:
    where, params = ["true"], []
    if incident_id is not None:
        where.append("incident_id = ?")
        params.append(incident_id)
    if open_only:
        where.append("closed_at IS NULL")
    rows = unit.con.execute(
        "SELECT incident_id, kind, serious, source, summary, status, known_at, deadline,"
        " opened_by, opened_at, opened_seq, verify_break_seq, closed_by, closed_at,"
        f" close_reason FROM incidents WHERE {' AND '.join(where)} ORDER BY opened_seq DESC",
        params,
    ).fetchall()
    if not rows:
        return []
    ids = [r[0] for r in rows]
    told: dict[str, list[IncidentNotification]] = {i: [] for i in ids}
    for iid, recipient, at, by, seq in unit.con.execute(
        "SELECT incident_id, recipient, told_at, recorded_by, seq FROM incident_notifications"
        " WHERE incident_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY told_at, seq",
        [ids],
    ).fetchall():
        told[iid].append(
            IncidentNotification(
                recipient=recipient, told_at=utc_timestamp(at), recorded_by=by, seq=seq
            )
        )
    notes: dict[str, list[IncidentNote]] = {i: [] for i in ids}
    for iid, author, at, text, seq in unit.con.execute(
        "SELECT incident_id, author, noted_at, note, seq FROM incident_notes"
        " WHERE incident_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY seq",
        [ids],
    ).fetchall():
        notes[iid].append(IncidentNote(author=author, at=utc_timestamp(at), note=text, seq=seq))
    now = unit.clock()
    out = []
    for r in rows:
        kind = KINDS[r[1]]
        deadline: datetime | None = r[7]
        closed = r[13] is not None
        first_told = told[r[0]][0].told_at if told[r[0]] else None
        deadline_ts = _ts(deadline)
        out.append(
            Incident(
                incident_id=r[0],
                kind=kind.name,
                provision=kind.provision,
                serious=bool(r[2]),
                source=r[3],
                summary=r[4],
                status=r[5],
                known_at=utc_timestamp(r[6]),
                deadline=deadline_ts,
                report_to=kind.report_to,
                opened_by=r[8],
                opened_at=utc_timestamp(r[9]),
                opened_seq=r[10],
                verify_break_seq=r[11],
                closed_by=r[12],
                closed_at=_ts(r[13]),
                close_reason=r[14],
                notifications=told[r[0]],
                notes=notes[r[0]],
                seconds_left=(
                    (deadline - now).total_seconds()
                    if deadline is not None and not closed
                    else None
                ),
                overdue=bool(
                    deadline is not None and not closed and first_told is None and now > deadline
                ),
                reported_late=bool(
                    deadline_ts is not None and first_told is not None and first_told > deadline_ts
                ),
            )
        )
    return out
