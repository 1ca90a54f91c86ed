"""Data-subject rights through the Store protocol, in both modes (embedded and service)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from hilt.pipelines.errors import (
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
)
from hilt.pipelines.store import DecisionRequest, Store, holding
from tests.conftest import TEST_MODEL

StoreFactory = Callable[[str], Store]

SUBJECT = "SYN-SUBJ-000007"  # the subject of case APP-000007 in data/german_credit.csv
CASE = "APP-000007"


def state(store: Store) -> tuple[dict[str, int], str]:
    return store.counts(), store.audit_head().hash


def snapshot_rows(store: Store) -> pl.DataFrame:
    return pl.read_parquet(Path(store.snapshot().path))


def decide_with_comment(store_as: StoreFactory, reviewer: str, comment: str) -> str:
    reviewer_store = store_as(reviewer)
    reviewer_store.lease_case(CASE)
    case = reviewer_store.get_case(CASE)
    other = "0" if case.predictions[-1].label == "1" else "1"
    d = reviewer_store.record_decision(
        DecisionRequest(
            case_id=CASE,
            action="override",
            final_label=other,
            reason_code="income-verified",
            comment=comment,
        )
    )
    return d.decision_id


@pytest.mark.obligation("GDPR 15")
def test_export_holds_everything_about_the_subject_and_is_audited(store_as: StoreFactory) -> None:
    decide_with_comment(store_as, "alice", "Phoned the applicant on Tuesday.")
    doc = store_as("pia").subject_export(SUBJECT)
    assert doc.external_subject_id == SUBJECT
    assert [c.case_id for c in doc.cases] == [CASE]
    case = doc.cases[0]
    # Personal data opened with the subject's key; features as received.
    assert case.received["sex"] in ("male", "female")
    assert isinstance(case.received["age"], int)
    assert case.received["duration"] > 0
    assert case.seed_label in ("0", "1")
    # The decision with its comment, and the explanation the reviewer decided on.
    [exported] = case.decisions
    assert exported.decision.comment == "Phoned the applicant on Tuesday."
    assert exported.prediction is not None
    assert exported.prediction.explanation == {"duration": -0.25, "credit_amount": 0.1}
    assert any(e.action == "decision.record" for e in doc.audit_events)
    # The export itself is on record, by pseudonym and case id only.
    last = store_as("otto").audit_events(after_seq=store_as("otto").audit_head().seq - 1)[0]
    assert (last.action, last.object_id, last.actor) == ("subject.exported", doc.subject_ref, "pia")
    assert SUBJECT not in last.model_dump_json()
    assert "Phoned" not in last.model_dump_json()


@pytest.mark.obligation("GDPR 16")
def test_rectify_supersedes_the_value_for_the_next_snapshot(store_as: StoreFactory) -> None:
    pia, dana = store_as("pia"), store_as("dana")
    before = snapshot_rows(dana).filter(pl.col("case_id") == CASE)
    assert before.height == 1
    old_duration, old_age = before["duration"][0], dana.get_case(CASE).personal["age"]
    new_age = 44 if old_age != 44 else 45
    action = pia.subject_rectify(SUBJECT, "duration", str(old_duration + 12))
    assert action.cases == [CASE]
    after = snapshot_rows(dana).filter(pl.col("case_id") == CASE)
    assert after["duration"][0] == old_duration + 12
    # A personal column too. Age is a protected attribute: a snapshot opens it on holdout
    # rows only (subgroup metrics); on a training row it stays sealed (null).
    pia.subject_rectify(SUBJECT, "age", str(new_age))
    rows = snapshot_rows(dana)
    row = rows.filter(pl.col("case_id") == CASE)
    assert row["age"][0] == (new_age if row["split"][0] == "holdout" else None)
    assert (
        rows.filter(pl.col("split") == "train")["age"].null_count()
        == rows["split"].eq("train").sum()
    )
    assert rows.filter(pl.col("split") == "holdout")["age"].null_count() == 0
    assert dana.get_case(CASE).personal["age"] == new_age
    assert dana.get_case(CASE).features["duration"] == old_duration + 12
    doc = pia.subject_export(SUBJECT)
    assert [(r.column, r.value) for r in doc.cases[0].rectifications] == [
        ("duration", old_duration + 12),
        ("age", new_age),
    ]
    assert doc.cases[0].current["age"] == new_age
    assert doc.cases[0].received["age"] == old_age
    # The log holds the value sealed, never in the clear.
    event = store_as("otto").audit_events(after_seq=action.seq - 1, limit=1)[0]
    assert event.action == "subject.rectified"
    assert event.payload["values_sealed"][CASE].startswith("enc:v1:")
    assert store_as("otto").verify().ok


def test_bad_rectifications_write_nothing(store_as: StoreFactory) -> None:
    pia = store_as("pia")
    before = state(pia)
    with pytest.raises(InputError, match="unknown column"):
        pia.subject_rectify(SUBJECT, "shoe_size", "44")
    with pytest.raises(InputError, match="does not fit the column"):
        pia.subject_rectify(SUBJECT, "age", "very old")
    with pytest.raises(InputError, match="does not fit the column"):
        pia.subject_rectify(SUBJECT, "housing", "castle")
    with pytest.raises(NotFoundError, match="no subject with that id"):
        pia.subject_rectify("SYN-SUBJ-999999", "age", "44")
    assert state(pia) == before


#: A subject of each kind of restriction at once (their cases are both in the queue): the
#: queue is drained once for both.
RESTRICTED = {"restrict": (SUBJECT, CASE), "object": ("SYN-SUBJ-000008", "APP-000008")}


@pytest.mark.obligation("GDPR 18", "GDPR 21")
def test_a_restricted_subject_leaves_training_and_the_queue_until_lifted(
    store_as: StoreFactory,
) -> None:
    """A restriction of processing (GDPR 18) and an objection (GDPR 21), one subject each."""
    pia, dana, alice = store_as("pia"), store_as("dana"), store_as("alice")
    waiting = alice.queue_status().waiting
    for n, (kind, (subject, case)) in enumerate(RESTRICTED.items(), start=1):
        pia.subject_restrict(subject, kind)
        assert case not in snapshot_rows(dana)["case_id"].to_list()
        assert alice.queue_status().waiting == waiting - n
    seen = set()
    with holding(alice):  # ~200 decisions: on one connection in the embedded mode
        while (leased := alice.next_case()) is not None:
            seen.add(leased.case.case_id)
            alice.record_decision(DecisionRequest(case_id=leased.case.case_id, action="accept"))
            if len(seen) > 250:
                break
    assert len(seen) == waiting - len(RESTRICTED)  # the whole queue but the restricted cases
    for kind, (subject, case) in RESTRICTED.items():
        assert case not in seen
        with pytest.raises(ConflictError, match="restricted"):
            alice.record_decision(DecisionRequest(case_id=case, action="accept"))
        with pytest.raises(ConflictError, match="already in force"):
            pia.subject_restrict(subject, kind)
    for kind, (subject, case) in RESTRICTED.items():
        pia.subject_restrict(subject, kind, lift=True)
        assert case in snapshot_rows(dana)["case_id"].to_list()
        leased = alice.next_case()
        assert leased is not None and leased.case.case_id == case
        with pytest.raises(ConflictError, match=r"no \w+ in force"):
            pia.subject_restrict(subject, kind, lift=True)
        alice.record_decision(DecisionRequest(case_id=case, action="accept"))


@pytest.mark.obligation("GDPR 22(3)")
def test_a_contested_decision_goes_first_to_another_reviewer(store_as: StoreFactory) -> None:
    alice, bob, pia = store_as("alice"), store_as("bob"), store_as("pia")
    alice.lease_case(CASE)
    alice.record_decision(DecisionRequest(case_id=CASE, action="accept"))
    with pytest.raises(InputError, match="no decided case"):
        pia.subject_contest("SYN-SUBJ-000008")
    action = pia.subject_contest(SUBJECT)
    assert action.cases == [CASE]
    # alice decided it, so she never gets it back; bob gets it first.
    mine = alice.next_case()
    assert mine is not None and mine.case.case_id != CASE
    with pytest.raises(PermissionDeniedError, match="another reviewer"):
        alice.record_decision(DecisionRequest(case_id=CASE, action="accept"))
    first = bob.next_case()
    assert first is not None and first.case.case_id == CASE and first.contested


@pytest.mark.obligation("GDPR 17")
def test_erase_removes_the_subject_and_the_log_still_verifies(store_as: StoreFactory) -> None:
    decide_with_comment(store_as, "alice", "Spoke to the applicant's employer.")
    pia, dana, otto = store_as("pia"), store_as("dana"), store_as("otto")
    snap = dana.snapshot()
    assert CASE in pl.read_parquet(snap.path)["case_id"].to_list()
    report = pia.subject_erase(SUBJECT)
    assert report.cases == [CASE] and report.key_destroyed
    # The old snapshots are gone (dana's, and the champion's training snapshot); regenerated
    # ones without the subject replace them.
    rewrite = next(r for r in report.snapshots if r.sha256 == snap.sha256)
    assert {r.rows_removed for r in report.snapshots} == {1}
    assert rewrite.sha256 == snap.sha256 and rewrite.rows_removed == 1
    assert not Path(snap.path).exists()
    assert rewrite.new_name is not None
    regenerated = pl.read_parquet(Path(snap.path).with_name(rewrite.new_name))
    assert CASE not in regenerated["case_id"].to_list()
    assert regenerated.height == snap.rows - 1
    # Nothing is left to read; the records stay, pseudonymous.
    record = dana.get_case(CASE)
    assert record.data_removed and record.features == {} and record.personal == {}
    assert record.seed_label is None
    assert [d.comment for d in record.decisions] == [None]
    assert record.decisions[0].comment_sealed is not None  # shredded, not deleted
    with pytest.raises(NotFoundError):
        pia.subject_export(SUBJECT)
    with pytest.raises(NotFoundError):
        pia.subject_erase(SUBJECT)
    with pytest.raises(ConflictError, match="erased"):
        store_as("bob").record_decision(DecisionRequest(case_id=CASE, action="accept"))
    assert CASE not in dana.case_frame()["case_id"].to_list()
    assert CASE not in pl.read_parquet(dana.snapshot().path)["case_id"].to_list()
    tombstone = otto.audit_events(after_seq=report.seq - 1, limit=1)[0]
    assert tombstone.action == "subject.erased" and tombstone.object_id == report.subject_ref
    assert SUBJECT not in tombstone.model_dump_json()
    assert otto.verify().ok


@pytest.mark.obligation("GDPR 32")
def test_only_the_dpo_exercises_subject_rights(store_as: StoreFactory) -> None:
    dana = store_as("dana")
    before = state(dana)
    for name in ("alice", "lena", "dana", "otto"):
        store = store_as(name)
        ops: list[Callable[[Store], object]] = [
            lambda s: s.subject_export(SUBJECT),
            lambda s: s.subject_rectify(SUBJECT, "age", "44"),
            lambda s: s.subject_restrict(SUBJECT, "restrict"),
            lambda s: s.subject_contest(SUBJECT),
            lambda s: s.subject_erase(SUBJECT),
        ]
        for op in ops:
            with pytest.raises(PermissionDeniedError):
                op(store)
    with pytest.raises(PermissionDeniedError):
        store_as("alice").retention_apply()
    assert state(dana) == before


@pytest.mark.obligation("GDPR 17")
def test_an_erased_subjects_case_takes_no_new_prediction(store_as: StoreFactory) -> None:
    """After an erasure, a scorer that kept the subject's features (or a production system
    replaying an old batch) sends the champion's prediction for the erased case, with the
    explanation of its features: the store refuses the whole batch (it is processing of the
    erased subject's data) and writes nothing."""
    pia, dana, otto = store_as("pia"), store_as("dana"), store_as("otto")
    pia.subject_erase(SUBJECT)
    head, counts = otto.audit_head().seq, otto.counts()
    batch = pl.DataFrame(
        {
            "case_id": [CASE, "APP-000008"],
            "score": [0.9, 0.2],
            "label": ["1", "0"],
            "explanation": ['{"duration": -0.25, "credit_amount": 0.1}'] * 2,
        }
    )
    with pytest.raises(
        ConflictError, match=r"1 rows name cases whose data was removed: erased, .* \(rows 1\)$"
    ):
        dana.add_predictions(TEST_MODEL.model, batch, TEST_MODEL.sha256)
    assert otto.audit_head().seq == head and otto.counts() == counts
    assert len(dana.get_case(CASE).predictions) == 1  # the one from before the erasure
    # The other case alone is taken.
    dana.add_predictions(TEST_MODEL.model, batch.tail(1), TEST_MODEL.sha256)
    assert len(dana.get_case("APP-000008").predictions) == 2
