"""One conformance suite, run against both modes of the store: embedded and service."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import polars as pl
import pytest

from hilt.pipelines.errors import (
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
)
from hilt.pipelines.store import DecisionRequest, Store
from hilt.pipelines.tables import rejects_csv
from tests.conftest import TEST_MODEL, leased, predictions_for

StoreFactory = Callable[[str], Store]


def state(store: Store) -> tuple[dict[str, int], str]:
    """Row counts of every table and the audit head: what 'nothing was written' means."""
    return store.counts(), store.audit_head().hash


def test_whoami_reports_roles_from_the_store(store_as: StoreFactory) -> None:
    assert store_as("lena").whoami().roles == ["lead", "reviewer"]
    assert store_as("alice").whoami().name == "alice"


@pytest.mark.obligation("AI Act 12")
def test_accept_records_the_models_label_with_its_audit_event(store_as: StoreFactory) -> None:
    alice = store_as("alice")
    cid = leased(alice)
    case = alice.get_case(cid)
    predicted = case.predictions[-1]
    # The client's time on item is not taken: the store measures it from the lease.
    d = alice.record_decision(DecisionRequest(case_id=cid, action="accept", time_on_item_ms=4200))
    assert (d.final_label, d.predicted_label, d.reviewer) == (predicted.label,) * 2 + ("alice",)
    assert d.prediction_id == predicted.prediction_id
    assert d.model_version == TEST_MODEL.model
    assert 0 <= d.time_on_item_ms < 4200
    event = store_as("otto").audit_events(after_seq=d.seq - 1, limit=1)[0]
    assert event.seq == d.seq and event.action == "decision.record"
    assert event.actor == "alice" and event.role == "reviewer"
    assert event.payload["decision_id"] == d.decision_id
    assert event.payload["time_on_item_ms"] == d.time_on_item_ms
    assert store_as("otto").verify().ok


@pytest.mark.obligation("AI Act 14(4)(d)")
def test_override_needs_a_configured_reason_and_another_class(store_as: StoreFactory) -> None:
    alice = store_as("alice")
    admin = store_as("dana")
    cid = leased(alice)
    case = alice.get_case(cid)
    other = "0" if case.predictions[-1].label == "1" else "1"
    before = state(admin)
    bad_requests = [
        DecisionRequest(case_id=cid, action="override", final_label=other),
        DecisionRequest(case_id=cid, action="override", final_label=other, reason_code="whim"),
        DecisionRequest(
            case_id=cid,
            action="override",
            final_label=case.predictions[-1].label,
            reason_code="data-error",
        ),
        DecisionRequest(case_id=cid, action="override", final_label="7", reason_code="data-error"),
        DecisionRequest(case_id=cid, action="accept", reason_code="data-error"),
        DecisionRequest(
            case_id=cid,
            action="override",
            final_label=other,
            reason_code="data-error",
            comment="x" * 2001,
        ),
    ]
    for request in bad_requests:
        with pytest.raises(InputError):
            alice.record_decision(request)
    assert state(admin) == before
    d = alice.record_decision(
        DecisionRequest(
            case_id=cid,
            action="override",
            final_label=other,
            reason_code="income-verified",
            comment="Payslips checked.",
        )
    )
    assert (d.action, d.final_label, d.reason_code) == ("override", other, "income-verified")
    event = store_as("otto").audit_events(after_seq=d.seq - 1, limit=1)[0]
    assert "Payslips" not in event.model_dump_json()  # free text is sealed in the log
    assert event.payload["comment_sealed"].startswith("enc:v1:")
    assert event.payload["comment_sealed"] == d.comment_sealed
    assert d.comment == "Payslips checked."


def test_decision_on_unknown_case_writes_nothing(store_as: StoreFactory) -> None:
    admin = store_as("dana")
    before = state(admin)
    with pytest.raises(NotFoundError):
        store_as("alice").record_decision(DecisionRequest(case_id="APP-999999", action="accept"))
    assert state(admin) == before


def test_a_retried_request_is_recorded_once(store_as: StoreFactory) -> None:
    alice = store_as("alice")
    req = DecisionRequest(case_id=leased(alice), action="accept", request_id="req-3")
    first = alice.record_decision(req)
    again = alice.record_decision(req)
    assert again.decision_id == first.decision_id
    assert [d.decision_id for d in store_as("dana").decisions()].count(first.decision_id) == 1
    with pytest.raises(ConflictError):
        alice.record_decision(
            DecisionRequest(case_id="APP-000004", action="accept", request_id="req-3")
        )


@pytest.mark.obligation("AI Act 14")
def test_a_request_id_replays_only_its_own_reviewers_decision(store_as: StoreFactory) -> None:
    """alice flags a case (it waits for another reviewer, who must not see her judgement);
    bob, who learnt her request id (a client that derives them from the case, a log line),
    sends it with the case: the store does not hand him her decision as his retry."""
    alice, bob = store_as("alice"), store_as("bob")
    case_id = leased(alice)
    alice.record_decision(
        DecisionRequest(case_id=case_id, action="flag", comment="Ask the bank.", request_id="r-7")
    )
    before = state(store_as("dana"))
    replay = DecisionRequest(case_id=case_id, action="accept", request_id="r-7")
    for attempt in (bob.record_decision, bob.decide_and_next):
        with pytest.raises(ConflictError, match="request_id was already used by another reviewer"):
            attempt(replay)
    assert state(store_as("dana")) == before
    assert bob.get_case(case_id).decisions == []


@pytest.mark.obligation("AI Act 14", "GDPR 32")
def test_roles_are_enforced_by_the_store(store_as: StoreFactory) -> None:
    alice, otto, dana = store_as("alice"), store_as("otto"), store_as("dana")
    before = state(dana)
    with pytest.raises(PermissionDeniedError):
        alice.add_user("mallory", "admin")
    with pytest.raises(PermissionDeniedError):
        alice.ingest_cases(pl.DataFrame({"x": [1]}))
    with pytest.raises(PermissionDeniedError):
        alice.audit_events()
    with pytest.raises(PermissionDeniedError):
        otto.record_decision(DecisionRequest(case_id="APP-000005", action="accept"))
    with pytest.raises(PermissionDeniedError):
        otto.add_predictions(TEST_MODEL.model, pl.DataFrame({"case_id": ["x"]}), TEST_MODEL.sha256)
    with pytest.raises(PermissionDeniedError):
        otto.checkpoint()
    assert state(dana) == before
    assert otto.verify().ok  # the auditor reads everything


@pytest.mark.obligation("GDPR 5(1)(c)", "GDPR 25")
def test_personal_data_is_shown_only_to_roles_that_need_it(store_as: StoreFactory) -> None:
    assert store_as("alice").get_case("APP-000001").personal == {}
    assert set(store_as("dana").get_case("APP-000001").personal) == {"sex", "age"}
    features = store_as("alice").get_case("APP-000001").features
    assert "sex" not in features and "age" not in features


@pytest.mark.obligation("AI Act 10")
def test_bad_cases_are_rejected_naming_the_problem_and_nothing_is_written(
    store_as: StoreFactory, cases_frame: pl.DataFrame
) -> None:
    dana = store_as("dana")
    fresh = cases_frame.slice(500, 5)
    before = state(dana)
    bad = {
        "missing column": (fresh.drop("duration"), "missing columns: ['duration']"),
        "unknown column": (fresh.with_columns(pl.lit("x").alias("shoe_size")), "shoe_size"),
        "wrong type": (fresh.with_columns(pl.lit("soon").alias("duration")), "not integers"),
        "unknown level": (fresh.with_columns(pl.lit("castle").alias("housing")), "levels"),
        "NaN": (fresh.with_columns(pl.lit("NaN").alias("credit_amount")), "NaN"),
        "missing id": (
            fresh.with_columns(pl.lit(None, dtype=pl.String).alias("application_id")),
            "no id",
        ),
        "duplicate id": (
            fresh.with_columns(pl.lit("APP-X").alias("application_id")),
            "repeat a case id",
        ),
        "oversized id": (
            fresh.with_columns(pl.lit("A" * 500).alias("application_id")),
            "longer than 128",
        ),
        "existing id": (cases_frame.slice(0, 5), "already exist"),
        "bad label": (fresh.with_columns(pl.lit("maybe").alias("risk")), "target classes"),
        "below min": (fresh.with_columns(pl.lit("3").alias("age")), "below 18"),
    }
    for name, (frame, expected) in bad.items():
        with pytest.raises(InputError) as err:
            dana.ingest_cases(frame)
        assert expected in str(err.value), name
        assert "nothing was written" in str(err.value)
    assert state(dana) == before
    result = dana.ingest_cases(fresh)
    assert result.rows == 5
    assert dana.counts()["cases"] == before[0]["cases"] + 5


@pytest.mark.obligation("AI Act 10", "AI Act 12")
def test_a_partial_ingest_lands_the_valid_rows_and_names_every_rejected_one(
    store_as: StoreFactory, cases_frame: pl.DataFrame
) -> None:
    dana = store_as("dana")
    fresh = cases_frame.slice(500, 20)
    ages, housing = fresh["age"].to_list(), fresh["housing"].to_list()
    ages[2] = ages[6] = "15"
    housing[6] = "castle"
    frame = fresh.with_columns(pl.Series("age", ages), pl.Series("housing", housing))
    before = state(dana)
    # A reviewer may not ingest, partially or not: refused, nothing written.
    with pytest.raises(PermissionDeniedError):
        store_as("alice").ingest_cases(frame, partial=True)
    # Problems of the whole batch, or no valid row, still reject it all.
    for bad, needle in (
        (frame.drop("duration"), "missing columns"),
        (frame.with_columns(pl.lit("3").alias("age")), "below 18"),
    ):
        with pytest.raises(InputError, match=needle):
            dana.ingest_cases(bad, partial=True)
    assert state(dana) == before

    result = dana.ingest_cases(frame, partial=True)
    assert (result.rows, result.rejected, result.rejected_rows) == (18, 2, [3, 7])
    assert result.reasons == [
        "age is below 18",
        "age is below 18; housing is not one of the configured levels",
    ]
    rejects = rejects_csv(frame, result.rejected_rows, result.reasons)
    assert result.rejects_sha256 == hashlib.sha256(rejects).hexdigest()
    assert rejects.decode().splitlines()[2].startswith("7,APP-000507,")
    assert dana.counts()["cases"] == before[0]["cases"] + 18
    with pytest.raises(NotFoundError):
        dana.get_case("APP-000503")
    assert dana.get_case("APP-000504").case_id == "APP-000504"
    event = store_as("otto").audit_events(after_seq=result.seq - 1, limit=1)[0]
    assert event.action == "cases.ingest" and event.payload["rows"] == 18
    assert event.payload["rejected"] == 2
    assert event.payload["rejects_sha256"] == result.rejects_sha256
    # Again with two new rows: the rows already in the store are rejected, the rest land.
    again = pl.concat([frame.slice(0, 3), cases_frame.slice(600, 2)])
    result = dana.ingest_cases(again, partial=True)
    assert (result.rows, result.rejected_rows) == (2, [1, 2, 3])
    assert result.reasons == [
        "application_id is already in the store",
        "application_id is already in the store",
        "age is below 18",
    ]
    after = state(dana)
    with pytest.raises(ConflictError, match="all 2 rows have case ids the store already holds"):
        dana.ingest_cases(cases_frame.slice(600, 2), partial=True)
    assert state(dana) == after
    assert store_as("otto").verify().ok


def test_bad_predictions_are_rejected(store_as: StoreFactory, cases_frame: pl.DataFrame) -> None:
    dana = store_as("dana")
    good = predictions_for(cases_frame.slice(0, 3))
    before = state(dana)
    cases = [
        good.with_columns(pl.lit("APP-999999").alias("case_id")),
        good.with_columns(pl.lit(1.5).alias("score")),
        good.with_columns(pl.lit(float("nan")).alias("score")),
        good.with_columns(pl.lit("maybe").alias("label")),
        good.with_columns(pl.lit('{"shoe_size": 1}').alias("explanation")),
        good.with_columns(pl.lit('{"duration": 1,').alias("explanation")),  # not JSON
        good.with_columns(pl.lit("[1]").alias("explanation")),
        good.drop("score"),
    ]
    for frame in cases:
        with pytest.raises(InputError):
            dana.add_predictions(TEST_MODEL.model, frame, TEST_MODEL.sha256)
    with pytest.raises(InputError):
        dana.add_predictions("", good, TEST_MODEL.sha256)
    assert state(dana) == before
    assert dana.add_predictions(TEST_MODEL.model, good, TEST_MODEL.sha256).rows == 3


def test_final_decisions_feed_pages_by_seq(store_as: StoreFactory) -> None:
    alice = store_as("alice")
    made = [
        alice.record_decision(DecisionRequest(case_id=leased(alice), action="accept"))
        for _ in range(5)
    ]
    feed = store_as("dana").decisions(after_seq=made[1].seq, limit=2)
    assert [d.decision_id for d in feed] == [m.decision_id for m in made[2:4]]


@pytest.mark.obligation("AI Act 12")
def test_checkpoint_then_verify(store_as: StoreFactory) -> None:
    dana = store_as("dana")
    alice = store_as("alice")
    alice.record_decision(DecisionRequest(case_id=leased(alice), action="accept"))
    cp = dana.checkpoint()
    report = dana.verify()
    assert report.ok and report.checkpoints == 1
    # The checkpoint itself is recorded in the log, right after the head it signed.
    assert report.events == cp.seq + 1
    event = store_as("otto").audit_events(after_seq=cp.seq, limit=1)[0]
    assert (event.action, event.payload["seq"]) == ("audit.checkpoint", cp.seq)
    assert report.summary() == f"OK {cp.seq + 1} events"


def test_oversight_operations_and_their_roles(store_as: StoreFactory) -> None:
    """The oversight operations exist in both modes with the same roles and refusals (their
    behaviour in depth: test_oversight.py)."""
    lena, alice, otto, dana = (store_as(n) for n in ("lena", "alice", "otto", "dana"))
    cid = leased(alice)
    d = alice.record_decision(DecisionRequest(case_id=cid, action="accept"))
    report = lena.oversight_report()
    assert report.queue.waiting == 199 and report.queue.done_today == 1
    mine = next(r for r in report.reviewers if r.reviewer == "alice")
    # the time on item is the store's measure (from the lease), not a number sent
    assert (mine.decided, mine.accepted, mine.median_time_ms) == (1, 1, d.time_on_item_ms)
    assert {"alice", "bob", "lena"} <= {r.reviewer for r in report.reviewers}
    audited = otto.oversight_report()  # an auditor may read it too
    assert audited.queue.waiting == report.queue.waiting
    assert audited.reviewers == report.reviewers
    assert lena.conflicts() == [] and otto.conflicts() == []
    before = state(dana)
    for refused in (alice.oversight_report, alice.conflicts, lena.gold_candidates):
        with pytest.raises(PermissionDeniedError):
            refused()
    with pytest.raises(PermissionDeniedError):
        alice.adjudicate(cid, "1")
    with pytest.raises(ConflictError):
        lena.adjudicate(cid, "1")  # no conflict: double review is off here
    assert dana.gold_candidates() == []  # every labelled case here has a prediction
    with pytest.raises(InputError):
        dana.add_gold(
            TEST_MODEL.model,
            predictions_for(pl.DataFrame({"application_id": ["APP-000031"]})),
            TEST_MODEL.sha256,
        )
    assert state(dana) == before


@pytest.mark.obligation("AI Act 73", "GDPR 33")
def test_the_incident_register_in_both_modes(store_as: StoreFactory) -> None:
    """Open, tell, close as the store's rules allow; refusals write nothing (issue 14)."""
    lena, max_, pia, otto = (store_as(n) for n in ("lena", "max", "pia", "otto"))
    opened = lena.open_incident("death", "A person died after a refusal.", "2026-01-01T00:00Z")
    assert opened.deadline == "2026-01-11T00:00:00.000000Z" and opened.overdue
    before = state(otto)
    for attack in (
        lambda: store_as("alice").open_incident("malfunction", "x"),
        lambda: otto.close_incident(opened.incident_id, "x"),
        lambda: lena.close_incident(opened.incident_id, "four eyes"),
        lambda: otto.verify_and_record(),
    ):
        with pytest.raises(PermissionDeniedError):
            attack()
    with pytest.raises(InputError, match="in the future"):
        lena.open_incident("death", "x", "2999-01-01T00:00Z")
    with pytest.raises(NotFoundError):
        pia.update_incident("INC-0", note="x")
    assert state(otto) == before
    told = pia.update_incident(opened.incident_id, told="MSA", told_at="2026-01-02T00:00Z")
    assert not told.overdue and [n.recipient for n in told.notifications] == ["MSA"]
    closed = max_.close_incident(opened.incident_id, "Reported; root cause fixed.")
    assert closed.closed_by == "max" and otto.incidents(open_only=True) == []
    assert max_.verify_and_record().report.ok  # a log that verifies opens nothing
    assert [e.action for e in otto.audit_events(after_seq=opened.opened_seq - 1)] == [
        "incident.opened",
        "incident.updated",
        "incident.closed",
    ]
