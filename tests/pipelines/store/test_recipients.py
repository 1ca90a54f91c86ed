"""Telling recipients of rectification, erasure and restriction (GDPR Art. 19), through the
Store protocol in both modes: the store records which subjects' decisions went to which
production system, gives each its own feed of changes, and audits its acknowledgement."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hilt.pipelines.errors import ConflictError, InputError, PermissionDeniedError
from hilt.pipelines.store import DecisionRequest, Identity, Store, open_store_as
from hilt.pipelines.workspace import Workspace

StoreFactory = Callable[[str], Store]

SUBJECT, CASE = "SYN-SUBJ-000007", "APP-000007"
OTHER_SUBJECT, OTHER_CASE = "SYN-SUBJ-000008", "APP-000008"


def state(store: Store) -> tuple[dict[str, int], str]:
    return store.counts(), store.audit_head().hash


def decide(store: Store, case_id: str) -> str:
    store.lease_case(case_id)
    return store.record_decision(DecisionRequest(case_id=case_id, action="accept")).decision_id


def recipient(ws: Workspace, store_as: StoreFactory, name: str) -> Store:
    """A production system (role system) as the admin registers it, acting with its token."""
    grant = store_as("dana").add_user(name, "system")
    return open_store_as(ws, Identity(name=name, token=grant.token))


@pytest.mark.obligation("GDPR 19")
def test_a_recipient_is_told_of_the_changes_to_the_subjects_it_received(
    store_as: StoreFactory, loaded_workspace: Workspace
) -> None:
    alice, pia, otto = store_as("alice"), store_as("pia"), store_as("otto")
    mine, theirs = decide(alice, CASE), decide(alice, OTHER_CASE)
    prod = recipient(loaded_workspace, store_as, "prod")
    other = recipient(loaded_workspace, store_as, "ledger")
    # prod receives SUBJECT's decision only; ledger OTHER_SUBJECT's only.
    assert prod.get_decision(mine).case_id == CASE
    assert other.get_decision(theirs).case_id == OTHER_CASE
    # Reading through the bulk feed records the same, once per subject.
    assert [d.case_id for d in prod.decisions(final_only=True)] == [CASE, OTHER_CASE]
    prod2 = recipient(loaded_workspace, store_as, "prod2")
    assert prod2.subject_changes().changes == []

    rectified = pia.subject_rectify(SUBJECT, "duration", "30")
    restricted = pia.subject_restrict(SUBJECT, "restrict")
    erased = pia.subject_erase(OTHER_SUBJECT)
    lifted = pia.subject_restrict(SUBJECT, "restrict", lift=True)

    # ledger never received SUBJECT: it sees the erasure of the subject it received, only.
    feed = other.subject_changes()
    assert [(c.seq, c.change, c.subject_ref) for c in feed.changes] == [
        (erased.seq, "erase", erased.subject_ref)
    ]
    assert feed.changes[0].cases == [OTHER_CASE] and feed.changes[0].decisions == [theirs]

    # prod received both (the bulk read): every change, in order, with what to do.
    feed = prod.subject_changes()
    assert [(c.seq, c.change) for c in feed.changes] == [
        (rectified.seq, "rectify"),
        (restricted.seq, "restrict"),
        (erased.seq, "erase"),
        (lifted.seq, "lift"),
    ]
    fix = feed.changes[0]
    assert (fix.column, fix.cases, fix.decisions) == ("duration", [CASE], [mine])
    assert "rectify column 'duration'" in fix.instruction and mine in fix.instruction
    assert feed.changes[1].restriction == "restrict"
    assert feed.up_to_seq == lifted.seq and not feed.more and feed.acknowledged_seq == 0
    # Paging: after a seq, with a limit.
    page = prod.subject_changes(after_seq=rectified.seq, limit=1)
    assert [c.seq for c in page.changes] == [restricted.seq] and page.more
    # A case read with its decisions is a disclosure of them too.
    assert prod2.subject_changes().changes == []
    assert [d.decision_id for d in prod2.get_case(CASE).decisions] == [mine]
    assert [c.change for c in prod2.subject_changes().changes] == ["rectify", "restrict", "lift"]
    # Nothing personal in the feed: pseudonyms and ids only.
    assert SUBJECT not in feed.model_dump_json() and "SYN-SUBJ" not in feed.model_dump_json()

    # The acknowledgement is audited: the DPO can prove prod was told.
    notice = prod.subject_changes_ack(restricted.seq)
    assert notice.changes == [rectified.seq, restricted.seq] and notice.channel == "api"
    event = otto.audit_events(after_seq=notice.seq - 1, limit=1)[0]
    assert (event.action, event.actor, event.object_type, event.object_id) == (
        "subject.recipient_notified",
        "prod",
        "recipient",
        "prod",
    )
    assert event.payload["changes"] == [rectified.seq, restricted.seq]
    assert event.payload["up_to_seq"] == restricted.seq
    assert SUBJECT not in event.model_dump_json()
    assert prod.subject_changes().acknowledged_seq == restricted.seq
    with pytest.raises(ConflictError, match="already acknowledged"):
        prod.subject_changes_ack(rectified.seq)
    with pytest.raises(InputError, match="seq of the log"):
        prod.subject_changes_ack(10**9)

    # The export lists the recipients, and per change whether and when each was told.
    doc = pia.subject_export(SUBJECT)
    assert [(r.name, r.kind) for r in doc.recipients] == [("prod", "api"), ("prod2", "api")]
    told = {(n.change_seq, n.recipient): n for n in doc.recipient_notices}
    assert set(told) == {
        (seq, name)
        for seq in (rectified.seq, restricted.seq, lifted.seq)
        for name in ("prod", "prod2")
    }
    assert not any(told[seq, "prod2"].told for seq in (rectified.seq, restricted.seq))
    assert told[rectified.seq, "prod"].told and told[rectified.seq, "prod"].told_seq == notice.seq
    assert told[rectified.seq, "prod"].told_at == event.ts
    assert not told[lifted.seq, "prod"].told and told[lifted.seq, "prod"].told_at is None
    assert otto.verify().ok


@pytest.mark.obligation("GDPR 19", "GDPR 32")
def test_nobody_reads_or_acknowledges_another_recipients_feed(
    store_as: StoreFactory, loaded_workspace: Workspace
) -> None:
    alice, pia = store_as("alice"), store_as("pia")
    mine = decide(alice, CASE)
    prod = recipient(loaded_workspace, store_as, "prod")
    other = recipient(loaded_workspace, store_as, "ledger")
    prod.get_decision(mine)
    change = pia.subject_rectify(SUBJECT, "duration", "30")
    before = state(pia)
    # The attack: staff reading a recipient's feed or acknowledging for it are refused, and
    # nothing is written.
    for name in ("alice", "lena", "dana", "otto", "pia"):
        store = store_as(name)
        with pytest.raises(PermissionDeniedError):
            store.subject_changes()
        with pytest.raises(PermissionDeniedError):
            store.subject_changes_ack(change.seq)
    # Reading decisions as staff is no disclosure to a recipient.
    store_as("otto").get_decision(mine)
    store_as("lena").decisions()
    assert state(pia) == before
    # Another recipient sees its own feed, never prod's; its acknowledgement is its own and
    # leaves prod untold.
    assert other.subject_changes().changes == []
    other.subject_changes_ack(change.seq)
    assert prod.subject_changes().acknowledged_seq == 0
    doc = pia.subject_export(SUBJECT)
    assert [r.name for r in doc.recipients] == ["prod"]
    [notice] = doc.recipient_notices
    assert (notice.recipient, notice.told) == ("prod", False)
    # A recipient outside the API is recorded by the DPO only, and only one of hilt.toml's.
    with pytest.raises(InputError, match=r"\[processing\] recipients"):
        pia.subject_notify_recipient("prod", subject_id=SUBJECT)
    with pytest.raises(PermissionDeniedError):
        prod.subject_notify_recipient("prod", subject_id=SUBJECT)
