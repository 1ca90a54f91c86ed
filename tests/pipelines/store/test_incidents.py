"""The incident register (EU AI Act Art. 73, GDPR Art. 33): deadlines the store computes from
the kind and the time an incident became known, who may open, update and close, and the
incident a failed verify opens by itself. Real DuckDB files; a fixed clock where time
matters."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hilt.pipelines.errors import ConflictError, InputError, PermissionDeniedError
from hilt.pipelines.store import Identity, Store, open_store_as
from hilt.pipelines.store.audit.chain import AuditEntry
from hilt.pipelines.store.incidents import KINDS, VERIFY_KIND
from hilt.pipelines.store.ops.incidents import open_automatic
from hilt.pipelines.store.unit import Unit
from hilt.pipelines.workspace import Workspace
from tests.audit_helpers import append_event, edit_entry, raw_db
from tests.conftest import operator

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

#: What the law allows each kind, from becoming aware to the report.
LAW = {
    "serious_incident": timedelta(days=15),  # AI Act 73(2)
    "widespread_infringement": timedelta(days=2),  # 73(3)
    "critical_infrastructure": timedelta(days=2),  # 73(3)
    "death": timedelta(days=10),  # 73(4)
    "personal_data_breach": timedelta(hours=72),  # GDPR 33(1)
    "malfunction": None,
}


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def as_user(ws: Workspace, name: str, clock: Clock | None = None) -> Store:
    return open_store_as(ws, Identity(name=name), clock=clock)


def state(store: Store) -> tuple[dict[str, int], str]:
    return store.counts(), store.audit_head().hash


def events(ws: Workspace, action: str) -> list[Any]:
    return [e for e in operator(ws).audit_events(limit=100_000) if e.action == action]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.obligation("AI Act 73", "GDPR 33")
@pytest.mark.parametrize("kind", sorted(LAW))
def test_the_deadline_follows_from_the_kind_and_the_known_at_time(
    workspace: Workspace, kind: str
) -> None:
    known = NOW - timedelta(hours=5)
    lena = as_user(workspace, "lena", Clock())
    opened = lena.open_incident(kind, "The model refused every applicant over 60.", iso(known))
    allowed = LAW[kind]
    assert opened.kind == kind and opened.serious == (allowed is not None)
    assert opened.known_at == iso(known) and opened.source == "manual"
    assert opened.deadline == (iso(known + allowed) if allowed else None)
    assert opened.seconds_left == (
        (allowed - timedelta(hours=5)).total_seconds() if allowed else None
    )
    assert not opened.overdue and opened.status == "open" and opened.opened_by == "lena"
    (event,) = events(workspace, "incident.opened")
    assert (event.object_type, event.object_id) == ("incident", opened.incident_id)
    assert event.payload["kind"] == kind and event.payload["serious"] == opened.serious
    assert event.payload["known_at"] == opened.known_at
    assert event.payload["deadline"] == opened.deadline
    assert event.payload["source"] == "manual"
    # The summary may name a person: the table keeps it, the log its sha256.
    assert "applicant" not in event.model_dump_json()
    assert len(event.payload["summary_sha256"]) == 64


@pytest.mark.obligation("AI Act 73", "GDPR 33")
def test_overdue_until_someone_is_told_and_a_late_report_is_marked(workspace: Workspace) -> None:
    clock = Clock()
    pia = as_user(workspace, "pia", clock)
    breach = pia.open_incident("personal_data_breach", "Export sent to a wrong address.")
    assert breach.known_at == iso(NOW)  # default: the store's now, not the client's
    assert breach.seconds_left == 72 * 3600
    clock.now = NOW + timedelta(hours=73)
    late = pia.incidents(open_only=True)[0]
    assert late.overdue and late.seconds_left == -3600
    told = pia.update_incident(breach.incident_id, told="Datenschutzbehörde")
    assert not told.overdue and told.reported_late
    assert [(n.recipient, n.told_at, n.recorded_by) for n in told.notifications] == [
        ("Datenschutzbehörde", iso(clock.now), "pia")
    ]
    (event,) = events(workspace, "incident.updated")
    assert "Datenschutz" not in event.model_dump_json()
    assert event.payload["told_at"] == iso(clock.now) and event.payload["kind"] == breach.kind
    # Told in time: not late.
    other = pia.open_incident("death", "x", iso(NOW))
    on_time = pia.update_incident(other.incident_id, told="MSA", told_at=iso(NOW))
    assert not on_time.overdue and not on_time.reported_late
    # A malfunction is never overdue.
    quiet = pia.open_incident("malfunction", "Slow scoring.", iso(NOW - timedelta(days=400)))
    assert quiet.deadline is None and not quiet.overdue


@pytest.mark.obligation("AI Act 73", "GDPR 33")
def test_bad_input_is_refused_by_name_and_nothing_is_written(workspace: Workspace) -> None:
    lena = as_user(workspace, "lena", Clock())
    opened = lena.open_incident("serious_incident", "x", iso(NOW - timedelta(days=1)))
    before = state(lena)
    refused: list[tuple[Callable[[], object], str]] = [
        (lambda: lena.open_incident("bad_kind", "x"), "kind must be one of"),
        (lambda: lena.open_incident("death", "   "), "summary must not be empty"),
        (lambda: lena.open_incident("death", "x", iso(NOW + timedelta(minutes=1))), "future"),
        (lambda: lena.open_incident("death", "x", "yesterday"), "known_at must be an ISO"),
        (lambda: lena.open_incident("death", "x\x00"), "control characters"),
        (lambda: lena.update_incident(opened.incident_id), "nothing to update"),
        (lambda: lena.update_incident(opened.incident_id, status="closed"), "status must be"),
        (lambda: lena.update_incident(opened.incident_id, told_at=iso(NOW)), "needs told"),
        (
            lambda: lena.update_incident(
                opened.incident_id, told="MSA", told_at=iso(NOW + timedelta(hours=1))
            ),
            "future",
        ),
        (
            lambda: lena.update_incident(
                opened.incident_id, told="MSA", told_at=iso(NOW - timedelta(days=2))
            ),
            "before the incident was known",
        ),
        (lambda: lena.update_incident("INC-999", note="x"), "no incident"),
        (lambda: lena.close_incident(opened.incident_id, " "), "reason must not be empty"),
    ]
    for call, message in refused:
        with pytest.raises(InputError, match=message):
            call()
    assert state(lena) == before


@pytest.mark.obligation("AI Act 73", "AI Act 26(5)", "GDPR 33")
def test_roles_and_four_eyes_on_closing_a_serious_incident(workspace: Workspace) -> None:
    lena, max_, pia, dana = (as_user(workspace, n) for n in ("lena", "max", "pia", "dana"))
    alice, otto = as_user(workspace, "alice"), as_user(workspace, "otto")
    serious = lena.open_incident("serious_incident", "Wrong scores for a whole branch.")
    breach = pia.open_incident("personal_data_breach", "Laptop lost.")
    glitch = dana.open_incident("malfunction", "Dashboard slow.")
    before = state(dana)
    attacks: list[Callable[[], object]] = [
        lambda: alice.open_incident("malfunction", "x"),  # a reviewer
        lambda: otto.open_incident("malfunction", "x"),  # the auditor writes nothing
        lambda: alice.update_incident(serious.incident_id, note="x"),
        lambda: alice.close_incident(serious.incident_id, "x"),
        lambda: otto.close_incident(glitch.incident_id, "x"),
        lambda: lena.close_incident(serious.incident_id, "My own."),  # four eyes
        lambda: pia.close_incident(breach.incident_id, "Not a lead."),
        lambda: dana.close_incident(serious.incident_id, "Admin, not a lead."),
        lambda: alice.incidents(),
    ]
    for attack in attacks:
        with pytest.raises(PermissionDeniedError):
            attack()
    assert state(dana) == before
    assert {i.incident_id for i in otto.incidents()} == {
        serious.incident_id,
        breach.incident_id,
        glitch.incident_id,
    }
    closed = max_.close_incident(serious.incident_id, "Branch data fixed; MSA informed.")
    assert (closed.status, closed.closed_by) == ("closed", "max")
    assert lena.close_incident(breach.incident_id, "Disk encrypted.").closed_by == "lena"
    assert dana.close_incident(glitch.incident_id, "Cache cleared.").closed_by == "dana"
    closings = events(workspace, "incident.closed")
    assert [(e.actor, e.role) for e in closings] == [
        ("max", "lead"),
        ("lena", "lead"),
        ("dana", "admin"),
    ]
    assert "Branch" not in closings[0].model_dump_json()
    with pytest.raises(ConflictError):
        max_.close_incident(serious.incident_id, "again")
    with pytest.raises(ConflictError):
        max_.update_incident(serious.incident_id, note="after")
    assert otto.incidents(open_only=True) == []


def test_no_client_writes_an_incident_event_or_chooses_its_source(workspace: Workspace) -> None:
    dana = as_user(workspace, "dana")
    before = state(dana)
    for action in ("incident.opened", "incident.closed"):
        with pytest.raises(PermissionDeniedError, match="written only by the store"):
            dana.record_event(action, "incident", "INC-1", {"source": "verify"})
    # (the refused attempt itself is audited; no incident row is written)
    assert dana.counts()["incidents"] == before[0]["incidents"] == 0
    # open_incident has no source: whatever a client opens is "manual".
    assert "source" not in Store.open_incident.signature.parameters
    assert "source" not in Store.update_incident.signature.parameters


def test_open_automatic_joins_the_callers_transaction(workspace: Workspace) -> None:
    """Another operation (H1's monitoring) opens an incident inside its own transaction:
    both commit together, or neither does."""
    with unit_of(workspace, "lena") as unit:
        with pytest.raises(RuntimeError), unit.transaction():
            open_automatic(unit, "serious_incident", "monitoring", "PSI 0.4 on amount")
            raise RuntimeError("the monitoring run failed after it")
        assert operator(workspace).counts()["incidents"] == 0
        with unit.transaction():
            unit.append_audit("monitoring.run", "monitoring", "r1", {}, NOW)
            iid = open_automatic(unit, "serious_incident", "monitoring", "PSI 0.4 on amount")
        with pytest.raises(InputError, match="source must be one of"):
            open_automatic(unit, "serious_incident", "manual", "x")
    (row,) = operator(workspace).incidents()
    assert (row.incident_id, row.source, row.known_at) == (iid, "monitoring", iso(NOW))
    assert row.deadline == iso(NOW + timedelta(days=15))
    # The next day's run finds it again: with reuse_open, a note on the open incident (its
    # clock keeps running from the first finding); without, a second incident.
    with unit_of(workspace, "lena") as unit, unit.transaction():
        again = open_automatic(
            unit, "serious_incident", "monitoring", "PSI 0.5 on amount", reuse_open=True
        )
        other = open_automatic(unit, "personal_data_breach", "monitoring", "x", reuse_open=True)
    assert again == iid and other != iid
    (kept,) = [i for i in operator(workspace).incidents() if i.incident_id == iid]
    assert [n.note for n in kept.notes] == ["PSI 0.5 on amount"] and kept.known_at == iso(NOW)
    assert events(workspace, "incident.updated")[-1].payload["source"] == "monitoring"


# ------------------------------------------------------------------- a failed verify


@contextmanager
def unit_of(ws: Workspace, name: str) -> Iterator[Unit]:
    """A unit of work as the store's core makes one for an operation (what another
    operation hands to ``open_automatic``)."""
    from hilt.pipelines.store.authentication import lookup_user
    from hilt.pipelines.store.core import StoreCore
    from hilt.pipelines.store.modes.embedded import connect

    con = connect(ws)
    keys = ws.key_ring()
    try:
        core = StoreCore(con, ws.settings(), ws, lookup_user(con, name), keys, Clock())
        yield core.unit("lead")
    finally:
        keys.close()
        con.close()


def tamper(ws: Workspace) -> int:
    """Change an event's payload in the file, leaving its stored hash: verify must break
    there. Returns that seq."""
    lena = as_user(ws, "lena")
    seq = lena.open_incident("malfunction", "Something to tamper with.").opened_seq

    def change(entry: dict[str, Any]) -> None:
        entry["payload"]["kind"] = "death"

    with raw_db(ws) as con:
        edit_entry(con, seq, change)
    return seq


@pytest.mark.obligation("AI Act 73", "GDPR 33", "AI Act 12")
def test_a_failed_verify_opens_one_breach_per_broken_seq(workspace: Workspace) -> None:
    dana = operator(workspace)
    healthy = state(dana)
    assert dana.verify_and_record().incident_id is None
    assert state(dana) == healthy  # a log that verifies: nothing written
    broken = tamper(workspace)
    first = dana.verify_and_record()
    assert not first.report.ok and first.report.first_break is not None
    assert first.report.first_break.seq == broken and first.opened
    (incident,) = [i for i in dana.incidents() if i.source == "verify"]
    assert incident.incident_id == first.incident_id
    assert (incident.kind, incident.verify_break_seq) == (VERIFY_KIND, broken)
    allowed = KINDS[VERIFY_KIND].deadline
    assert allowed == timedelta(hours=72)
    assert incident.deadline == iso(datetime.fromisoformat(incident.known_at) + allowed)
    (event,) = [e for e in events(workspace, "incident.opened") if e.payload["source"] == "verify"]
    assert event.payload["verify_break_seq"] == broken and event.payload["serious"] is True
    again = as_user(workspace, "lena").verify_and_record()
    assert (again.incident_id, again.opened) == (first.incident_id, False)
    assert len([i for i in dana.incidents() if i.source == "verify"]) == 1
    # The auditor verifies (reads) but writes nothing, so cannot trigger nor suppress one.
    with pytest.raises(PermissionDeniedError):
        as_user(workspace, "otto").verify_and_record()


def test_verify_and_record_takes_nothing_from_the_caller() -> None:
    """No key, no checkpoint file, no starting point: the store verifies with its own."""
    assert list(Store.verify_and_record.signature.parameters) == []


def test_the_register_reads_the_same_in_the_audit_payloads(workspace: Workspace) -> None:
    lena = as_user(workspace, "lena")
    opened = lena.open_incident("death", "x")
    lena.update_incident(opened.incident_id, status="investigating", note="Called the branch.")
    (event,) = events(workspace, "incident.updated")
    assert event.payload["status"] == "investigating"
    assert "branch" not in json.dumps(event.payload)
    (row,) = lena.incidents()
    assert row.status == "investigating"
    assert [n.note for n in row.notes] == ["Called the branch."]


@pytest.mark.obligation("AI Act 73", "AI Act 12")
@pytest.mark.parametrize(
    ("actor", "role"), [("lena", "lead"), ("dana", "admin")], ids=["its-opener", "not-a-lead"]
)
def test_a_forged_closing_written_into_the_file_is_found_by_verify(
    workspace: Workspace, actor: str, role: str
) -> None:
    """Someone with the file appends a well-chained ``incident.closed`` that the store would
    have refused (the opener closing their own serious incident, or an admin closing one):
    verify names it (four eyes)."""
    opened = as_user(workspace, "lena").open_incident("serious_incident", "x")
    head = operator(workspace).audit_head().seq
    forged = AuditEntry(
        seq=head + 1,
        ts=iso(datetime.now(UTC)),
        actor=actor,
        role=role,
        action="incident.closed",
        object_type="incident",
        object_id=opened.incident_id,
        # it even claims the incident was not serious: the opening's kind is what counts
        payload={"kind": "malfunction", "serious": False, "source": "manual"},
    )
    with raw_db(workspace) as con:
        append_event(con, forged)
    report = operator(workspace).verify()
    assert report.first_break is not None
    assert (report.first_break.seq, report.first_break.kind) == (head + 1, "four-eyes")
