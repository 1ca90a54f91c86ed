"""The explanation a reviewer saw, recorded with the decision: checked, re-rendered by the
store from the stored prediction, and covered by reconciliation (both store modes)."""

from __future__ import annotations

import copy
from typing import Any

import duckdb
import pytest

from hilt.pipelines.dashboards.review import StoreReviewBackend
from hilt.pipelines.errors import InputError
from hilt.pipelines.store import DecisionRequest, Store
from hilt.pipelines.store.audit.verify import verify_store
from hilt.pipelines.workspace import Workspace
from hilt.widgets import PredictionView
from hilt.widgets.contracts.common import ReviewItem
from hilt.widgets.contracts.review import ShownExplanation
from tests.conftest import StoreFactory


def _shown(store: Store, ws: Workspace) -> tuple[ReviewItem, ShownExplanation]:
    """Lease a case and render it as the review panel does."""
    backend = StoreReviewBackend(store, ws.settings())
    item = backend.next_item()
    assert item is not None
    view = PredictionView(backend.review_config())
    view.show(item)
    shown = view.shown_explanation()
    assert shown is not None
    return item, shown


def _accept(item: ReviewItem, sha: str | None, context: dict[str, Any] | None) -> DecisionRequest:
    return DecisionRequest(
        case_id=item.case_id,
        action="accept",
        prediction_id=item.prediction_id,
        explanation_sha256=sha,
        explanation_context=context,
    )


@pytest.mark.obligation("AI Act 14(4)(c)", "AI Act 12")
def test_the_explanation_is_recorded_with_the_decision_and_its_event(
    store_as: StoreFactory, loaded_workspace: Workspace
) -> None:
    alice, otto = store_as("alice"), store_as("otto")
    item, shown = _shown(alice, loaded_workspace)
    d = alice.record_decision(_accept(item, shown.sha256, shown.context))
    assert d.explanation_sha256 == shown.sha256
    event = otto.audit_events(after_seq=d.seq - 1, limit=1)[0]
    assert event.payload["explanation_sha256"] == shown.sha256
    assert event.payload["explanation_context"] == shown.context
    assert [x.explanation_sha256 for x in otto.decisions(after_seq=d.seq - 1)] == [shown.sha256]
    assert otto.verify().ok


def test_a_decision_without_an_explanation_records_none(store_as: StoreFactory) -> None:
    alice = store_as("alice")
    leased = alice.next_case()
    assert leased is not None
    d = alice.record_decision(DecisionRequest(case_id=leased.case.case_id, action="accept"))
    assert d.explanation_sha256 is None
    event = store_as("otto").audit_events(after_seq=d.seq - 1, limit=1)[0]
    assert event.payload["explanation_sha256"] is None
    assert event.payload["explanation_context"] is None


def _refused(store: Store, request: DecisionRequest, match: str) -> None:
    before = store.audit_head()
    with pytest.raises(InputError, match=match):
        store.record_decision(request)
    assert store.audit_head() == before


#: What an insider changes in the explanation they send, and the refusal that names it.
TAMPERED = [
    ("sha", "is not the hash of the stored prediction's explanation"),
    ("threshold", "is not the hash"),
    ("free-text-label", "class_labels must hold the configured class labels"),
    ("free-text-feature", "feature_labels must hold the configured column descriptions"),
    ("unknown-feature", "feature_labels names a column that is no feature"),
    ("extra-field", "Extra inputs are not permitted"),
    ("renderer", "this store renders hilt-explanation/1"),
    ("context-only", "explanation_sha256 and explanation_context go together"),
]


def _tampered(shown: ShownExplanation, tamper: str) -> tuple[str | None, dict[str, Any]]:
    """The explanation as shown, changed as ``tamper`` says: (its sha256, its context)."""
    sha: str | None = shown.sha256
    context = copy.deepcopy(shown.context)
    if tamper == "sha":
        sha = "0" * 64
    elif tamper == "threshold":
        context["threshold"] = 0.6
    elif tamper == "free-text-label":
        context["class_labels"] = {"1": "Ms Example, 12 Sample Road"}
    elif tamper == "free-text-feature":
        name = next(iter(context["feature_labels"]))
        context["feature_labels"][name] = "born 1970-01-01"
    elif tamper == "unknown-feature":
        context["feature_labels"]["the_applicant_name"] = "the_applicant_name"
    elif tamper == "extra-field":
        context["note"] = "anything"
    elif tamper == "renderer":
        context["renderer"] = "hilt-explanation/0"
    elif tamper == "context-only":
        sha = None
    return sha, context


def test_an_explanation_that_does_not_hold_is_refused_and_nothing_is_written(
    store_as: StoreFactory, loaded_workspace: Workspace
) -> None:
    """Each tampered explanation in turn, on the case alice holds: each refusal names what
    is wrong and writes nothing, so the case stays hers, undecided, for the next one."""
    alice = store_as("alice")
    item, shown = _shown(alice, loaded_workspace)
    for tamper, match in TAMPERED:
        sha, context = _tampered(shown, tamper)
        _refused(alice, _accept(item, sha, context), match)


def test_an_explanation_with_the_model_hidden_or_on_undo_is_refused(
    store_as: StoreFactory, loaded_workspace: Workspace
) -> None:
    alice = store_as("alice")
    item, shown = _shown(alice, loaded_workspace)
    # A blind judgement is made without the model's output: it takes no explanation.
    blind = _accept(item, shown.sha256, shown.context).model_copy(
        update={"action": "blind", "final_label": "0", "model_shown": True}
    )
    _refused(alice, blind, "blind takes no explanation")
    d = alice.record_decision(_accept(item, shown.sha256, shown.context))
    undo = DecisionRequest(
        case_id=item.case_id,
        action="undo",
        undo_of=d.decision_id,
        explanation_sha256=shown.sha256,
        explanation_context=shown.context,
    )
    _refused(alice, undo, "undo takes no explanation")


def test_a_changed_explanation_hash_in_the_table_breaks_verification(
    loaded_workspace: Workspace,
) -> None:
    from hilt.pipelines.store import Identity, open_store_as

    alice = open_store_as(loaded_workspace, Identity(name="alice"))
    item, shown = _shown(alice, loaded_workspace)
    d = alice.record_decision(_accept(item, shown.sha256, shown.context))
    con = duckdb.connect(str(loaded_workspace.db_path))
    try:
        con.execute("UPDATE decisions SET explanation_sha256 = ? WHERE seq = ?", ["f" * 64, d.seq])
        report = verify_store(con, loaded_workspace.settings(), loaded_workspace)
    finally:
        con.close()
    assert not report.ok
    assert report.first_break is not None
    assert (report.first_break.seq, report.first_break.kind) == (d.seq, "record-mismatch")
