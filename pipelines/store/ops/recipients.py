"""Telling recipients of rectification, erasure and restriction (GDPR Art. 19).

The store knows to whom a subject's decisions were disclosed: each time a production system
(a user with the role ``system``) reads decisions (``decisions``, ``get_decision``, and
those ``get_case`` returns), one statement records which subjects'
decisions went to it (``disclosures``; no audit row: a read, like every read, but kept so
that the store can tell whom to notify). From that:

- ``subject_changes``: the recipient's feed, the rectifications, erasures and restrictions
  (and lifts) after a seq of the subjects it received, each with what to do; only its own,
  from the identity the store authenticated (there is no parameter naming a recipient);
- ``subject_changes_ack``: the recipient acknowledges its feed up to a seq, audited as
  ``subject.recipient_notified`` (channel "api"), so the DPO can prove it was told;
- ``subject_notify_recipient``: the data-protection officer records that a recipient named
  in hilt.toml ``[processing] recipients`` (outside the API, so outside the store's
  knowledge) was told of a subject's changes, audited the same way (channel "dpo");
- ``recipients_of``: for a subject's export (Art. 19, second sentence), the recipients and,
  per change, whether and when each was told.

No personal data in any of it: pseudonymous subject refs, case and decision ids, seqs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from hilt.pipelines.errors import ConflictError, InputError, NotFoundError
from hilt.pipelines.store import sql
from hilt.pipelines.store.audit.chain import utc_timestamp
from hilt.pipelines.store.recipient_records import (
    RECIPIENT_ROLE,
    ChangeKind,
    ExportedRecipient,
    ExportedRecipientNotice,
    RecipientNotice,
    SubjectChange,
    SubjectChanges,
)

if TYPE_CHECKING:
    from hilt.pipelines.store.unit import Unit

NOTIFIED = "subject.recipient_notified"
#: The audit events a recipient must be told of, and what each asks of it.
CHANGE_ACTIONS: dict[str, ChangeKind] = {
    "subject.rectified": "rectify",
    "subject.erased": "erase",
    "subject.restricted": "restrict",
    "subject.objected": "restrict",
    "subject.restriction_lifted": "lift",
}
#: The change events, by the canonical entry's prefix (no JSON parse of every event).
_IS_CHANGE = (
    "(" + " OR ".join(f"""a.entry LIKE '{{"action":"{a}",%'""" for a in CHANGE_ACTIONS) + ")"
)
_OBJECT = "json_extract_string(a.entry, '$.object_id')"


# ----------------------------------------------------------------------- disclosures
def record_disclosures(unit: Unit, read: list[tuple[str, int]]) -> None:
    """Record that the decisions ``read`` ((subject_ref, decision seq) pairs) went to the
    actor, when the actor is a recipient (a production system): one row per subject, in one
    statement per read."""
    if not read or RECIPIENT_ROLE not in unit.actor.roles:
        return
    seqs: dict[str, tuple[int, int]] = {}
    for ref, seq in read:
        first, last = seqs.get(ref, (seq, seq))
        seqs[ref] = (min(first, seq), max(last, seq))
    unit.con.execute(
        "INSERT INTO disclosures SELECT ?, unnest(?), unnest(?), unnest(?), ?",
        [
            unit.actor.name,
            list(seqs),
            [s[0] for s in seqs.values()],
            [s[1] for s in seqs.values()],
            unit.clock(),
        ],
    )


#: The recipient's subjects (subject_ref, first_seq, last_seq), for a join; one parameter,
#: the recipient.
_DISCLOSED = (
    "(SELECT subject_ref, min(first_seq) AS first_seq, max(last_seq) AS last_seq"
    " FROM disclosures WHERE recipient = ? GROUP BY subject_ref)"
)


def _changes_of_recipient(
    unit: Unit, recipient: str, after_seq: int, up_to_seq: int | None, limit: int | None
) -> list[tuple[int, dict[str, Any]]]:
    bound = "" if up_to_seq is None else f" AND a.seq <= {int(up_to_seq)}"
    cap = "" if limit is None else f" LIMIT {int(limit)}"
    rows = unit.con.execute(
        f"SELECT a.seq, a.entry FROM audit_log a JOIN {_DISCLOSED} m"
        f" ON m.subject_ref = {_OBJECT} WHERE a.seq > ?{bound} AND {_IS_CHANGE}"
        f" ORDER BY a.seq{cap}",
        [recipient, after_seq],
    ).fetchall()
    return [(int(s), json.loads(e)) for s, e in rows]


def _changes_of_subject(unit: Unit, subject_ref: str) -> list[tuple[int, dict[str, Any]]]:
    rows = unit.con.execute(
        f"SELECT a.seq, a.entry FROM audit_log a WHERE {_OBJECT} = ? AND {_IS_CHANGE}"
        " ORDER BY a.seq",
        [subject_ref],
    ).fetchall()
    return [(int(s), json.loads(e)) for s, e in rows]


# ----------------------------------------------------------------------- the feed
def subject_changes(
    unit: Unit,
    after_seq: Annotated[int, Field(ge=0)] = 0,
    limit: Annotated[int, Field(ge=1, le=10_000)] = 1000,
) -> SubjectChanges:
    """The rectifications, erasures and restrictions (and lifts) after ``after_seq`` of the
    subjects whose decisions the caller received, with what it must do (GDPR Art. 19)."""
    if after_seq < 0:
        raise InputError("after_seq must be 0 or more")
    if limit < 1 or limit > 10_000:
        raise InputError("limit must be between 1 and 10000")
    me = unit.actor.name
    found = _changes_of_recipient(unit, me, after_seq, None, limit + 1)
    more = len(found) > limit
    found = found[:limit]
    refs = sorted({str(e["object_id"]) for _, e in found})
    decided: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    all_cases: dict[str, list[str]] = defaultdict(list)
    if refs:
        for ref, case_id, decision_id in unit.con.execute(
            f"SELECT c.subject_ref, d.case_id, d.decision_id FROM decisions d"
            f" JOIN cases c USING (case_id) JOIN {_DISCLOSED} m"
            " ON m.subject_ref = c.subject_ref"
            " WHERE d.seq BETWEEN m.first_seq AND m.last_seq"
            " AND c.subject_ref IN (SELECT unnest(?)) ORDER BY d.seq",
            [me, refs],
        ).fetchall():
            decided[str(ref)][str(case_id)].append(str(decision_id))
        for ref, case_id in unit.con.execute(
            "SELECT subject_ref, case_id FROM cases WHERE subject_ref IN (SELECT unnest(?))"
            " ORDER BY case_id",
            [refs],
        ).fetchall():
            all_cases[str(ref)].append(str(case_id))
    acknowledged = sql.scalar(
        unit.con,
        "SELECT coalesce(max(up_to_seq), 0) FROM recipient_notices"
        " WHERE recipient = ? AND channel = 'api'",
        [me],
    )
    return SubjectChanges(
        recipient=me,
        after_seq=after_seq,
        up_to_seq=found[-1][0] if found else after_seq,
        more=more,
        acknowledged_seq=int(acknowledged or 0),
        changes=[
            _change(seq, entry, all_cases[entry["object_id"]], decided[entry["object_id"]])
            for seq, entry in found
        ],
    )


def _change(
    seq: int, entry: dict[str, Any], subject_cases: list[str], decided: dict[str, list[str]]
) -> SubjectChange:
    action = str(entry["action"])
    kind = CHANGE_ACTIONS[action]
    payload: dict[str, Any] = entry.get("payload") or {}
    cases = [str(c) for c in payload.get("cases") or subject_cases]
    decisions = [d for c in cases for d in decided.get(c, [])]
    ref = str(entry["object_id"])
    column = payload.get("column") if kind == "rectify" else None
    restriction = payload.get("kind") if kind in ("restrict", "lift") else None
    held = f"the decisions {', '.join(decisions)}" if decisions else "what you hold of them"
    if kind == "rectify":
        instruction = (
            f"rectify column {column!r} of case(s) {', '.join(cases)} in {held}: read the"
            " case again from the store"
        )
    elif kind == "erase":
        instruction = f"erase subject {ref}'s data: case(s) {', '.join(cases)}, {held}"
    elif kind == "restrict":
        instruction = (
            f"restrict processing ({restriction}) of subject {ref}'s data: store it, do not"
            f" otherwise use it (case(s) {', '.join(cases)}, {held})"
        )
    else:
        instruction = f"the {restriction} of subject {ref}'s data is lifted"
    return SubjectChange(
        seq=seq,
        at=str(entry["ts"]),
        subject_ref=ref,
        change=kind,
        action=action,
        column=None if column is None else str(column),
        restriction=None if restriction is None else str(restriction),
        cases=cases,
        decisions=decisions,
        instruction=instruction,
    )


def _record_notice(
    unit: Unit,
    recipient: str,
    channel: str,
    subject_ref: str | None,
    after_seq: int,
    up_to_seq: int,
    changes: list[tuple[int, dict[str, Any]]],
    now: datetime,
) -> RecipientNotice:
    object_type, object_id = (
        ("recipient", recipient)
        if subject_ref is None
        else (
            "subject",
            subject_ref,
        )
    )
    seqs = [s for s, _ in changes]
    seq = unit.append_audit(
        NOTIFIED,
        object_type,
        object_id,
        {
            "channel": channel,
            "recipient": recipient,
            "after_seq": after_seq,
            "up_to_seq": up_to_seq,
            "changes": seqs,
            "subjects": sorted({str(e["object_id"]) for _, e in changes}),
        },
        now,
    )
    unit.con.execute(
        "INSERT INTO recipient_notices VALUES (?, ?, ?, ?, ?, ?)",
        [recipient, channel, subject_ref, up_to_seq, seq, now],
    )
    return RecipientNotice(
        recipient=recipient,
        channel="api" if channel == "api" else "dpo",
        subject_ref=subject_ref,
        up_to_seq=up_to_seq,
        changes=seqs,
        seq=seq,
    )


def subject_changes_ack(unit: Unit, up_to_seq: int) -> RecipientNotice:
    """The caller (a recipient) acknowledges its feed up to ``up_to_seq``: it was told of
    those changes (GDPR Art. 19). Audited as ``subject.recipient_notified``."""
    me = unit.actor.name
    now = unit.clock()
    with unit.transaction():
        head = unit.head_now()[0]
        if up_to_seq < 1 or up_to_seq > head:
            raise InputError(f"up_to_seq must be a seq of the log (1 to {head})")
        before = int(
            sql.scalar(
                unit.con,
                "SELECT coalesce(max(up_to_seq), 0) FROM recipient_notices"
                " WHERE recipient = ? AND channel = 'api'",
                [me],
            )
            or 0
        )
        if up_to_seq <= before:
            raise ConflictError(f"the feed is already acknowledged up to seq {before}")
        changes = _changes_of_recipient(unit, me, before, up_to_seq, None)
        return _record_notice(unit, me, "api", None, before, up_to_seq, changes, now)


def subject_notify_recipient(
    unit: Unit, recipient: str, subject_id: str | None = None, subject_ref: str | None = None
) -> RecipientNotice:
    """Record that the data-protection officer told ``recipient`` (one of hilt.toml
    [processing] recipients) of the subject's changes not told before (GDPR Art. 19).
    The subject by their own id, or, once erased, by the subject_ref of the erasure."""
    named = unit.settings.processing.recipients
    if recipient not in named:
        raise InputError(
            "unknown recipient; hilt.toml [processing] recipients names: "
            + (", ".join(named) if named else "none")
        )
    if (subject_id is None) == (subject_ref is None):
        raise InputError("name the subject by their id or (once erased) by subject_ref")
    # Here, not at the top: the review's operations import this module, and the subject
    # rights' (removal, frames) are the data-protection officer's, not a review kernel's.
    from hilt.pipelines.store.ops.subject_rights import find_subject

    now = unit.clock()
    with unit.transaction():
        if subject_id is not None:
            ref = find_subject(unit, subject_id)
        else:
            ref = str(subject_ref)
            known = sql.scalar(
                unit.con,
                "SELECT count(*) FROM (SELECT subject_ref FROM identity WHERE subject_ref = ?"
                " UNION ALL SELECT subject_ref FROM removed_subjects WHERE subject_ref = ?)",
                [ref, ref],
            )
            if not known:
                raise NotFoundError("no subject with that subject_ref")
        changes = _changes_of_subject(unit, ref)
        if not changes:
            raise ConflictError(
                "the subject has no rectification, erasure or restriction to tell of"
            )
        before = int(
            sql.scalar(
                unit.con,
                "SELECT coalesce(max(up_to_seq), 0) FROM recipient_notices"
                " WHERE recipient = ? AND channel = 'dpo' AND subject_ref = ?",
                [recipient, ref],
            )
            or 0
        )
        new = [(s, e) for s, e in changes if s > before]
        if not new:
            raise ConflictError(f"{recipient} was already told of the subject's changes")
        return _record_notice(unit, recipient, "dpo", ref, before, new[-1][0], new, now)


# ----------------------------------------------------------------------- the export
def recipients_of(
    unit: Unit, subject_ref: str
) -> tuple[list[ExportedRecipient], list[ExportedRecipientNotice]]:
    """The recipients of the subject's data, and per change whether and when each was told
    (GDPR Art. 19, second sentence)."""
    recipients = [
        ExportedRecipient(
            name=str(name),
            kind="api",
            first_disclosed_at=utc_timestamp(first),
            last_disclosed_at=utc_timestamp(last),
        )
        for name, first, last in unit.con.execute(
            "SELECT recipient, min(disclosed_at), max(disclosed_at) FROM disclosures"
            " WHERE subject_ref = ? GROUP BY recipient ORDER BY recipient",
            [subject_ref],
        ).fetchall()
    ]
    first_at = {r.name: r.first_disclosed_at for r in recipients}
    recipients += [
        ExportedRecipient(name=name, kind="external")
        for name in unit.settings.processing.recipients
    ]
    notices: dict[tuple[str, str], list[tuple[int, int, datetime]]] = defaultdict(list)
    for recipient, channel, up_to, seq, at in unit.con.execute(
        "SELECT recipient, channel, up_to_seq, seq, created_at FROM recipient_notices"
        " WHERE subject_ref = ? OR (subject_ref IS NULL AND recipient IN"
        " (SELECT recipient FROM disclosures WHERE subject_ref = ?)) ORDER BY seq",
        [subject_ref, subject_ref],
    ).fetchall():
        notices[(str(recipient), str(channel))].append((int(up_to), int(seq), at))
    out: list[ExportedRecipientNotice] = []
    for change_seq, entry in _changes_of_subject(unit, subject_ref):
        for r in recipients:
            channel = "api" if r.kind == "api" else "dpo"
            told = next(
                (
                    (seq, at)
                    for up_to, seq, at in notices[(r.name, channel)]
                    if up_to >= change_seq
                    and (r.kind == "external" or utc_timestamp(at) >= str(first_at[r.name]))
                ),
                None,
            )
            out.append(
                ExportedRecipientNotice(
                    change_seq=change_seq,
                    change=CHANGE_ACTIONS[str(entry["action"])],
                    recipient=r.name,
                    told=told is not None,
                    told_at=None if told is None else utc_timestamp(told[1]),
                    told_seq=None if told is None else told[0],
                )
            )
    return recipients, out
