"""Training snapshots (label provenance, fixed holdout, accept cap) and the halt switch."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from hilt.pipelines.errors import ConflictError, InputError, PermissionDeniedError, SystemHalted
from hilt.pipelines.store import DecisionRequest, Identity, Store, holding, open_store_as
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.workspace import Workspace
from tests.conftest import CONFIG, TEST_MODEL, operator, predictions_for, stand_in
from tests.registry_helpers import stand_in_evaluation

StoreFactory = Callable[[str], Store]


@pytest.mark.obligation("AI Act 10")
def test_a_snapshot_keeps_label_provenance_and_a_fixed_holdout(store_as: StoreFactory) -> None:
    dana, alice = store_as("dana"), store_as("alice")
    first = dana.snapshot()
    frame = pl.read_parquet(first.path)
    assert hashlib.sha256(Path(first.path).read_bytes()).hexdigest() == first.sha256
    assert first.rows == frame.height == 200
    assert first.train_rows + first.holdout_rows == 200
    assert 20 <= first.holdout_rows <= 60  # 20 % of 200, by a salted hash
    assert first.label_sources == {
        "original": first.train_rows,
        "reviewer-accepted": 0,
        "reviewer-corrected": 0,
    }
    holdout = set(frame.filter(pl.col("split") == "holdout")["case_id"])
    train = frame.filter(pl.col("split") == "train")
    # Feedback on a training case and on a holdout case:
    train_case = train["case_id"][0]
    holdout_case = sorted(holdout)[0]
    alice.lease_case(train_case)
    accepted = alice.record_decision(DecisionRequest(case_id=train_case, action="accept"))
    for case_id in (holdout_case, train["case_id"][1]):
        predicted = alice.get_case(case_id).predictions[-1].label
        alice.lease_case(case_id)
        alice.record_decision(
            DecisionRequest(
                case_id=case_id,
                action="override",
                final_label="0" if predicted == "1" else "1",
                reason_code="data-error",
            )
        )
    second = dana.snapshot()
    later = pl.read_parquet(second.path)
    assert set(later.filter(pl.col("split") == "holdout")["case_id"]) == holdout  # fixed
    assert second.label_sources["reviewer-accepted"] == 1
    assert second.label_sources["reviewer-corrected"] == 1  # the holdout override is not used
    row = later.filter(pl.col("case_id") == holdout_case)
    assert row["label_source"][0] == "original"
    # As of the first snapshot's seq, the same bytes come back: snapshots are reproducible.
    again = dana.snapshot(as_of_seq=first.as_of_seq)
    assert again.sha256 == first.sha256
    assert accepted.seq > first.as_of_seq
    # The audit event carries counts and the digest, no rows.
    event = store_as("otto").audit_events(after_seq=second.seq - 1, limit=1)[0]
    assert event.action == "snapshot.created"
    assert event.payload["sha256"] == second.sha256
    assert set(event.payload) >= {"as_of_seq", "rows", "label_sources", "accepted_dropped"}
    with pytest.raises(InputError):
        dana.snapshot(as_of_seq=10**9)
    with pytest.raises(PermissionDeniedError):
        alice.snapshot()


@pytest.mark.obligation("AI Act 10", "AI Act 15")
def test_the_accept_cap_keeps_the_model_from_confirming_itself(
    tmp_path: Path, cases_frame: pl.DataFrame
) -> None:
    config = tmp_path / "hilt.toml"
    config.write_text(
        CONFIG.read_text().replace("max_accepted_share = 0.5", "max_accepted_share = 0.1")
    )
    ws = Workspace.at(tmp_path / "ws")
    create_workspace(ws, config)
    op = operator(ws)
    # 100 labelled cases, 100 unlabelled ones the reviewers label by accepting.
    op.ingest_cases(cases_frame.head(100))
    op.ingest_cases(cases_frame.slice(100, 100).drop("risk"))
    stand_in(ws)
    op.add_predictions(
        TEST_MODEL.model, predictions_for(cases_frame.slice(100, 100)), TEST_MODEL.sha256
    )
    alice = open_store_as(ws, Identity(name="alice"))
    with holding(ws):  # 200 operations on one connection
        for case_id in cases_frame.slice(100, 100)["application_id"]:
            alice.lease_case(case_id)
            alice.record_decision(DecisionRequest(case_id=case_id, action="accept"))
    snap = op.snapshot()
    other = snap.label_sources["original"]
    kept = snap.label_sources["reviewer-accepted"]
    assert kept == int(0.1 * other / 0.9)
    assert snap.accepted_dropped == 100 - kept
    assert kept / (kept + other) <= 0.1


@pytest.mark.obligation("AI Act 14(4)(e)")
def test_halt_needs_a_reason_and_a_second_lead_to_resume(store_as: StoreFactory) -> None:
    lena, dana = store_as("lena"), store_as("dana")
    assert not dana.system_state().halted
    with pytest.raises(PermissionDeniedError):
        store_as("otto").halt("audit")
    with pytest.raises(InputError):
        lena.halt("  ")
    state = lena.halt("Drift in incoming applications")
    assert state.halted and state.changed_by == "lena"
    with pytest.raises(ConflictError):
        lena.halt("again")
    with pytest.raises(PermissionDeniedError):
        lena.resume()
    with pytest.raises(PermissionDeniedError):
        dana.resume()  # not a lead
    resumed = store_as("max").resume()
    assert not resumed.halted and resumed.changed_by == "max"
    actions = [e.action for e in store_as("otto").audit_events(after_seq=0, limit=100_000)]
    assert actions[-2:] == ["system.halted", "system.resumed"]


@pytest.mark.obligation("AI Act 14(4)(e)")
def test_while_halted_the_store_itself_refuses_to_register_a_model(
    store_as: StoreFactory,
) -> None:
    """The halt stops retraining in the store, not only in `hilt retrain` and the retrain
    notebook's cell (clients that ask): a data scientist's own code, or the notebook with
    that cell removed, registers its model through the store and is refused while the halt
    holds; nothing is written. Resumed by a second lead, the same registration is taken."""
    dana, lena = store_as("dana"), store_as("lena")
    evaluation = stand_in_evaluation(dana)  # its snapshot taken before the halt
    lena.halt("Investigating complaints")
    auditor = store_as("otto")
    head, counts = auditor.audit_head().seq, auditor.counts()
    sha = hashlib.sha256(b"test-model/v2").hexdigest()
    with pytest.raises(SystemHalted, match="registering the model refused: the system is halted"):
        dana.register_model("test-model/v2", sha, "run-of-test-model/v2", evaluation)
    assert auditor.audit_head().seq == head and auditor.counts() == counts
    assert [m.model for m in dana.models()] == [TEST_MODEL.model]
    store_as("max").resume()
    registered = dana.register_model("test-model/v2", sha, "run-of-test-model/v2", evaluation)
    assert (registered.state, registered.author) == ("challenger", "dana")
