"""The records of GDPR Art. 19 that cross the store's boundary: a recipient's feed of
changes, an acknowledgement, and what a subject's export says about their recipients.

No personal data: pseudonymous subject refs, case and decision ids, column names, seqs.
"""

from __future__ import annotations

from typing import Literal

from hilt.pipelines.store.record_base import Record

#: The role of a recipient that reads decisions through the store.
RECIPIENT_ROLE = "system"
#: What a recipient must do about a change (rectify, erase, restrict, lift a restriction).
ChangeKind = Literal["rectify", "erase", "restrict", "lift"]
#: How a recipient is told: through its feed, acknowledged ("api"), or by the
#: data-protection officer, recorded in the store ("dpo").
Channel = Literal["api", "dpo"]


class SubjectChange(Record):
    """One rectification, erasure or restriction (or lift) of a subject whose data the
    recipient received, and what the recipient must do."""

    #: The audit event of the change (acknowledge up to it).
    seq: int
    at: str
    subject_ref: str
    change: ChangeKind
    #: The event's action (subject.rectified, subject.erased, ...).
    action: str
    #: The rectified column (change "rectify").
    column: str | None = None
    #: restrict / object (change "restrict" or "lift").
    restriction: str | None = None
    #: The subject's cases the change is about.
    cases: list[str]
    #: The decisions about those cases that the recipient received.
    decisions: list[str]
    #: What to do, in words, e.g. "rectify column X of case C in the decisions D".
    instruction: str


class SubjectChanges(Record):
    """A recipient's feed (``GET /v1/subject-changes``): the changes after ``after_seq`` to
    subjects whose decisions it received; acknowledge up to ``up_to_seq``."""

    recipient: str
    after_seq: int
    #: The seq of the last change in ``changes`` (``after_seq`` when there is none).
    up_to_seq: int
    #: Whether more changes follow (read again after ``up_to_seq``).
    more: bool
    #: The seq the recipient last acknowledged (0: never).
    acknowledged_seq: int
    changes: list[SubjectChange]


class RecipientNotice(Record):
    """A recipient was told of the changes up to ``up_to_seq`` (audited as
    ``subject.recipient_notified``)."""

    recipient: str
    channel: Channel
    #: The subject (channel "dpo"); None: every subject in the recipient's feed ("api").
    subject_ref: str | None
    up_to_seq: int
    #: The changes this notice covers that no earlier notice did.
    changes: list[int]
    #: The audit event that records it.
    seq: int


class ExportedRecipient(Record):
    """A recipient of the subject's data (GDPR Art. 19, second sentence)."""

    name: str
    #: "api": a production system that read the subject's decisions through the store;
    #: "external": named in hilt.toml [processing] recipients.
    kind: Literal["api", "external"]
    #: When the subject's decisions were first / last read by it (kind "api").
    first_disclosed_at: str | None = None
    last_disclosed_at: str | None = None


class ExportedRecipientNotice(Record):
    """Whether, and when, one recipient was told of one change to the subject's data."""

    change_seq: int
    change: ChangeKind
    recipient: str
    told: bool
    told_at: str | None = None
    #: The audit event (``subject.recipient_notified``) that records it.
    told_seq: int | None = None
