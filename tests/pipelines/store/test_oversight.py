"""Oversight in the store, in both modes: double review and adjudication, gold cases, the
oversight report with its automation-bias alerts, manual review while halted."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from hilt.pipelines.errors import (
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    SystemHalted,
)
from hilt.pipelines.store import DecisionRequest, Identity, Store, holding, open_store_as
from hilt.pipelines.store import double_review as dr
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.store.oversight_stats import cohens_kappa
from hilt.pipelines.workspace import Workspace
from tests.conftest import (
    CONFIG,
    TEST_MODEL,
    copy_of,
    issue_tokens,
    operator,
    predictions_for,
    stand_in,
    start_service,
)

StoreFactory = Callable[[str], Store]
SALT = "oversight-test-salt"
HISTORY = 200  # labelled cases (their holdout share is the pool of gold cases)
NEW = 60  # unlabelled cases with predictions: the review queue


def oversight_config(tmp_path: Path, **values: float) -> Path:
    text = CONFIG.read_text()
    for key, value in values.items():
        start = text.index(f"\n{key} = ") + 1
        end = text.index("\n", start)
        text = text[:start] + f"{key} = {value}" + text[end:]
    path = tmp_path / "hilt.toml"
    path.write_text(text)
    return path


def make_workspace(tmp_path: Path, cases: pl.DataFrame, **values: float) -> Workspace:
    ws = Workspace.at(tmp_path / "ws")
    create_workspace(ws, oversight_config(tmp_path, **values), holdout_salt=SALT)
    op = operator(ws)
    with holding(ws):  # one connection for the setup
        op.ingest_cases(cases.head(HISTORY))
        new = cases.slice(HISTORY, NEW)
        op.ingest_cases(new.drop("risk"))
        model = stand_in(ws)
        op.add_predictions(model.model, predictions_for(new), model.sha256)
    return ws


#: A workspace of the values given, and the users' tokens (none: not for a service).
Made = tuple[Workspace, dict[str, str]]


@pytest.fixture(scope="module")
def templates(
    tmp_path_factory: pytest.TempPathFactory, cases_frame: pl.DataFrame
) -> Callable[..., Made]:
    """``make_workspace`` once per module for each set of values (with every user's token
    issued when ``served``); tests change only their own copies (``fresh``)."""
    built: dict[tuple[object, ...], Made] = {}

    def template(served: bool = False, **values: float) -> Made:
        key = (served, *sorted(values.items()))
        if key not in built:
            if served:
                plain, _ = template(False, **values)
                ws = copy_of(plain, tmp_path_factory.mktemp("oversight-served") / "ws")
                built[key] = (ws, issue_tokens(ws, ws.settings()))
            else:
                root = tmp_path_factory.mktemp("oversight")
                built[key] = (make_workspace(root, cases_frame, **values), {})
        return built[key]

    return template


@pytest.fixture
def fresh(tmp_path: Path, templates: Callable[..., Made]) -> Callable[..., Made]:
    """A copy of the module's template of the values given, for this test alone."""

    def make(served: bool = False, **values: float) -> Made:
        ws, tokens = templates(served, **values)
        return copy_of(ws, tmp_path / "ws"), tokens

    return make


def factory(
    request: pytest.FixtureRequest, fresh: Callable[..., Made], **values: float
) -> Iterator[StoreFactory]:
    ws, tokens = fresh(request.param == "service", **values)
    if request.param == "embedded":
        yield lambda name: open_store_as(ws, Identity(name=name))
        return
    svc = start_service(ws)
    opened: list[Store] = []

    def make(name: str) -> Store:
        s = open_store_as(svc.url, Identity(token=tokens[name]))
        opened.append(s)
        return s

    try:
        yield make
    finally:
        for s in opened:
            s.close()
        svc.stop()


@pytest.fixture(params=["embedded", "service"])
def double_as(request: pytest.FixtureRequest, fresh: Callable[..., Made]) -> Iterator[StoreFactory]:
    """Every case is double-reviewed; no gold cases are served."""
    yield from factory(request, fresh, double_review_share=1.0, gold_rate=0.0)


@pytest.fixture(params=["embedded", "service"])
def gold_as(request: pytest.FixtureRequest, fresh: Callable[..., Made]) -> Iterator[StoreFactory]:
    """Gold cases at the highest rate; no double review."""
    yield from factory(request, fresh, double_review_share=0.0, gold_rate=0.5)


def state(store: Store) -> tuple[dict[str, int], str]:
    return store.counts(), store.audit_head().hash


def seed_labels(admin: Store, case_ids: list[str]) -> dict[str, str]:
    frame = admin.case_frame(case_ids)
    return dict(zip(frame["case_id"].to_list(), frame["seed_label"].to_list(), strict=True))


def add_gold(admin: Store, n: int, wrong: int) -> dict[str, str]:
    """n gold cases whose (stand-in) predictions are wrong on the first ``wrong`` of them;
    returns case id → known answer."""
    ids = admin.gold_candidates(limit=n)
    assert len(ids) == n
    truth = seed_labels(admin, ids)
    labels = [
        ("0" if truth[c] == "1" else "1") if i < wrong else truth[c] for i, c in enumerate(ids)
    ]
    frame = pl.DataFrame(
        {
            "case_id": ids,
            "score": [0.9 if lab == "1" else 0.1 for lab in labels],
            "label": labels,
            "explanation": ['{"duration": -0.25, "credit_amount": 0.1}'] * n,
        }
    )
    result = admin.add_gold(TEST_MODEL.model, frame, TEST_MODEL.sha256)
    assert (result.added, result.model_wrong) == (n, wrong)
    return truth


# ---------------------------------------------------------------------------- double review
def test_a_double_review_case_needs_a_second_reviewer_who_does_not_see_the_first(
    double_as: StoreFactory,
) -> None:
    alice, bob, admin = double_as("alice"), double_as("bob"), double_as("dana")
    waiting = alice.queue_status().waiting
    first = alice.next_case()
    assert first is not None
    cid = first.case.case_id
    decided = alice.record_decision(
        DecisionRequest(case_id=cid, action="accept", time_on_item_ms=4000)
    )
    # Still waiting: for someone else.
    assert alice.queue_status().waiting == waiting
    with pytest.raises(PermissionDeniedError, match="double-review"):
        alice.record_decision(DecisionRequest(case_id=cid, action="accept"))
    assert alice.next_case() is not None
    assert alice.next_case().case.case_id != cid  # type: ignore[union-attr]
    second = bob.next_case()
    assert second is not None and second.case.case_id == cid  # second reviews come first
    assert second.case.decisions == []  # blind to alice's decision
    assert second.case.seed_label is None
    # Not final for a consumer until the second review.
    assert cid not in {d.case_id for d in admin.decisions(final_only=True)}
    agreed = bob.record_decision(DecisionRequest(case_id=cid, action="accept"))
    finals = [d for d in admin.decisions(final_only=True) if d.case_id == cid]
    assert [d.decision_id for d in finals] == [decided.decision_id, agreed.decision_id]
    assert double_as("lena").conflicts() == []


@pytest.mark.obligation("AI Act 14(4)(d)")
def test_a_disagreement_goes_to_a_lead_whose_adjudication_is_the_final_label(
    double_as: StoreFactory,
) -> None:
    alice, bob, lena, mx = (double_as(n) for n in ("alice", "bob", "lena", "max"))
    admin, otto = double_as("dana"), double_as("otto")
    leased = alice.next_case()
    assert leased is not None
    cid = leased.case.case_id
    model = leased.case.predictions[-1].label
    other = "0" if model == "1" else "1"
    alice.record_decision(DecisionRequest(case_id=cid, action="accept"))
    assert bob.next_case().case.case_id == cid  # type: ignore[union-attr]
    bob.record_decision(
        DecisionRequest(
            case_id=cid,
            action="override",
            final_label=other,
            reason_code="data-error",
            request_id="bob-1",
        )
    )
    [conflict] = lena.conflicts()
    assert (conflict.case_id, conflict.first_reviewer, conflict.first_label) == (
        cid,
        "alice",
        model,
    )
    assert (conflict.second_reviewer, conflict.second_label) == ("bob", other)
    assert conflict.predicted_label == model
    # Out of the reviewers' queue, not final, not a training label.
    assert cid not in {d.case_id for d in admin.decisions(final_only=True)}
    with pytest.raises(ConflictError):
        double_as("lena").record_decision(DecisionRequest(case_id=cid, action="accept"))
    snap = admin.snapshot()
    assert cid not in pl.read_parquet(snap.path)["case_id"].to_list()
    report = otto.oversight_report()
    assert report.queue.adjudication_waiting == 1
    assert (report.agreement.pairs, report.agreement.agreed) == (1, 0)
    # Who may adjudicate: a lead who was not in the conflict.
    before = state(admin)
    with pytest.raises(PermissionDeniedError):
        alice.adjudicate(cid, other)
    with pytest.raises(InputError):
        mx.adjudicate(cid, "maybe")
    with pytest.raises(NotFoundError):
        mx.adjudicate("APP-999999", other)
    # A request id replays only its own author's decision: bob's override is no lead's
    # adjudication (the conflict would stay open while the lead's client saw it settled).
    with pytest.raises(ConflictError, match="request_id was already used by another reviewer"):
        mx.adjudicate(cid, other, request_id="bob-1")
    assert state(admin) == before
    adjudication = mx.adjudicate(cid, other, comment="Documents confirm the override.")
    assert (adjudication.action, adjudication.final_label, adjudication.reviewer) == (
        "adjudicate",
        other,
        "max",
    )
    assert adjudication.reviewer_role == "lead"
    with pytest.raises(ConflictError):
        lena.adjudicate(cid, model)  # settled
    assert lena.conflicts() == []
    finals = [d for d in admin.decisions(final_only=True) if d.case_id == cid]
    assert finals[-1].decision_id == adjudication.decision_id
    # The snapshot takes the adjudicated label.
    row = pl.read_parquet(admin.snapshot().path).filter(pl.col("case_id") == cid)
    assert row["label"].to_list() == [other]
    assert row["label_source"].to_list() == ["reviewer-corrected"]
    event = otto.audit_events(after_seq=adjudication.seq - 1, limit=1)[0]
    assert (event.action, event.actor, event.role) == ("decision.record", "max", "lead")
    assert event.payload["action"] == "adjudicate"
    assert event.payload["conflict"]["second_label"] == other
    assert "Documents" not in str(event.payload)  # the comment only as its sha256
    assert otto.oversight_report().agreement.conflicts_resolved == 1
    assert otto.verify().ok


def test_cohens_kappa_matches_the_textbook() -> None:
    # 50 pairs: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no: po 0.7, pe 0.5, kappa 0.4.
    pairs = [("1", "1")] * 20 + [("1", "0")] * 5 + [("0", "1")] * 10 + [("0", "0")] * 15
    assert cohens_kappa(pairs) == pytest.approx(0.4)
    assert cohens_kappa([("1", "1")] * 3) is None  # chance agreement 1: undefined
    assert cohens_kappa([]) is None
    assert cohens_kappa([("1", "0"), ("0", "1")]) == pytest.approx(-1.0)


def test_kappa_over_double_reviews_in_the_report(double_as: StoreFactory) -> None:
    alice, bob = double_as("alice"), double_as("bob")
    pairs: list[tuple[str, str]] = []
    for i in range(6):
        leased = alice.next_case()
        assert leased is not None
        cid = leased.case.case_id
        model = leased.case.predictions[-1].label
        other = "0" if model == "1" else "1"
        alice.record_decision(DecisionRequest(case_id=cid, action="accept"))
        second = bob.next_case()
        assert second is not None and second.case.case_id == cid
        if i % 3 == 0:
            bob.record_decision(
                DecisionRequest(
                    case_id=cid, action="override", final_label=other, reason_code="other"
                )
            )
            pairs.append((model, other))
        else:
            bob.record_decision(DecisionRequest(case_id=cid, action="accept"))
            pairs.append((model, model))
    agreement = double_as("lena").oversight_report().agreement
    assert (agreement.pairs, agreement.agreed, agreement.conflicts_open) == (6, 4, 2)
    assert agreement.kappa == cohens_kappa(pairs)


def test_which_cases_are_double_reviewed_is_the_same_in_python_and_sql(
    fresh: Callable[..., Made],
) -> None:
    ws, _ = fresh(double_review_share=0.3)
    con = duckdb.connect(str(ws.db_path), read_only=True)
    try:
        rows = con.execute(
            f"SELECT case_id, {dr.double_sql('case_id', 0.3)} FROM cases ORDER BY case_id"
        ).fetchall()
    finally:
        con.close()
    in_sql = {str(c) for c, d in rows if d}
    in_python = {str(c) for c, _ in rows if dr.is_double(SALT, str(c), 0.3)}
    assert in_sql == in_python
    assert 0.2 < len(in_sql) / len(rows) < 0.4


# ---------------------------------------------------------------------------- gold cases
def new_ids(cases: pl.DataFrame) -> set[str]:
    """The unlabelled cases with predictions: the shared review queue."""
    return set(cases.slice(HISTORY, NEW)["application_id"].to_list())


def test_gold_cases_must_be_holdout_cases_without_predictions(
    gold_as: StoreFactory, cases_frame: pl.DataFrame
) -> None:
    admin = gold_as("dana")
    holdout = admin.gold_candidates(limit=1000)
    labelled = set(cases_frame.head(HISTORY)["application_id"].to_list())
    assert holdout and set(holdout) < labelled
    # About the configured holdout share of the labelled cases, in a fixed order.
    assert 0.1 < len(holdout) / len(labelled) < 0.3
    assert admin.gold_candidates(limit=3) == holdout[:3]
    outside = next(c for c in sorted(labelled) if c not in holdout)
    scored = sorted(new_ids(cases_frame))[0]
    before = state(admin)
    for bad in ([outside], [scored], ["APP-999999"], [holdout[0], holdout[0]]):
        frame = predictions_for(pl.DataFrame({"application_id": bad}))
        with pytest.raises(InputError):
            admin.add_gold(TEST_MODEL.model, frame, TEST_MODEL.sha256)
    one = predictions_for(pl.DataFrame({"application_id": holdout[:1]}))
    with pytest.raises(PermissionDeniedError):
        gold_as("lena").add_gold(TEST_MODEL.model, one, TEST_MODEL.sha256)
    with pytest.raises(PermissionDeniedError):
        gold_as("alice").gold_candidates()
    assert state(admin) == before
    admin.add_gold(TEST_MODEL.model, one, TEST_MODEL.sha256)
    with pytest.raises(InputError, match=r"gold already|predictions"):
        admin.add_gold(TEST_MODEL.model, one, TEST_MODEL.sha256)
    assert holdout[0] not in admin.gold_candidates()


def test_every_reviewer_meets_gold_cases_on_their_own_and_they_never_train(
    gold_as: StoreFactory, cases_frame: pl.DataFrame
) -> None:
    admin, otto = gold_as("dana"), gold_as("otto")
    truth = add_gold(admin, 12, wrong=6)
    waiting = admin.queue_status().waiting
    assert waiting == NEW  # gold cases are not in the shared queue
    seen: dict[str, list[str]] = {"alice": [], "bob": []}
    reviewers = {name: gold_as(name) for name in seen}
    active = set(seen)
    # The two take turns until the queue is empty for both (one connection, embedded).
    with holding(admin):
        while active:
            for name in sorted(active):
                leased = reviewers[name].next_case()
                if leased is None:
                    active.discard(name)
                    continue
                case = leased.case
                # The counts carried by the lease hold when a gold case took the queue's place.
                assert leased.queue == reviewers[name].queue_status()
                assert case.seed_label is None
                assert all(d.reviewer == name for d in case.decisions)
                assert case.predictions, "a gold case shows a prediction like any other"
                reviewers[name].record_decision(
                    DecisionRequest(case_id=case.case_id, action="accept")
                )
                seen[name].append(case.case_id)
    gold_alice = [c for c in seen["alice"] if c in truth]
    gold_bob = [c for c in seen["bob"] if c in truth]
    assert gold_alice and gold_bob
    # The shared queue was shared; gold cases were met by each reviewer on their own.
    normal = new_ids(cases_frame)
    assert set(seen["alice"]) - set(truth) | set(seen["bob"]) - set(truth) == normal
    assert not (set(seen["alice"]) - set(truth)) & (set(seen["bob"]) - set(truth))
    # Never final for a consumer, never a training label: the holdout keeps the known answer.
    assert not {d.case_id for d in admin.decisions(final_only=True)} & set(truth)
    snap = pl.read_parquet(admin.snapshot().path)
    gold_rows = snap.filter(pl.col("case_id").is_in(list(truth)))
    assert set(gold_rows["split"].to_list()) == {"holdout"}
    assert dict(zip(gold_rows["case_id"], gold_rows["label"], strict=True)) == truth
    report = otto.oversight_report()
    by_name = {r.reviewer: r for r in report.reviewers}
    for name, gold in (("alice", gold_alice), ("bob", gold_bob)):
        predicted = {c: admin.get_case(c).predictions[-1].label for c in gold}
        correct = sum(1 for c in gold if predicted[c] == truth[c])
        stats = by_name[name]
        assert (stats.gold_decided, stats.gold_correct) == (len(gold), correct)
        assert stats.gold_accuracy == correct / len(gold)
    assert report.queue.gold_cases == 12
    assert otto.verify().ok


def test_an_edited_known_answer_or_gold_set_breaks_verification(
    fresh: Callable[..., Made],
) -> None:
    """The known answers are the seed labels (covered by their batch's digest); the gold set
    itself by the digest of its event."""
    ws, _ = fresh(gold_rate=0.5)
    admin = open_store_as(ws, Identity(name="dana"))
    truth = add_gold(admin, 4, wrong=0)
    assert admin.verify().ok
    victim = sorted(truth)[0]
    flipped = "0" if truth[victim] == "1" else "1"
    con = duckdb.connect(str(ws.db_path))
    try:
        con.execute("UPDATE seed_labels SET label = ? WHERE case_id = ?", [flipped, victim])
        ingest_seq = con.execute(
            "SELECT ingest_seq FROM cases WHERE case_id = ?", [victim]
        ).fetchone()
    finally:
        con.close()
    report = admin.verify()
    assert not report.ok and report.first_break is not None
    assert ingest_seq is not None
    assert (report.first_break.kind, report.first_break.seq) == ("record-mismatch", ingest_seq[0])
    con = duckdb.connect(str(ws.db_path))
    try:
        con.execute("UPDATE seed_labels SET label = ? WHERE case_id = ?", [truth[victim], victim])
        gold_seq = con.execute("SELECT max(seq) FROM gold_cases").fetchone()
        con.execute("DELETE FROM gold_cases WHERE case_id = ?", [victim])
    finally:
        con.close()
    report = admin.verify()
    assert not report.ok and report.first_break is not None
    assert gold_seq is not None
    assert (report.first_break.kind, report.first_break.seq) == ("record-mismatch", gold_seq[0])


# ---------------------------------------------------------------------------- automation bias
class Ticking:
    """A clock that stands still until a test moves it (a reviewer's time on a case)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.mark.obligation("AI Act 14(4)(a)", "AI Act 14(4)(b)")
def test_a_rubber_stamping_reviewer_raises_the_alert_and_gold_measures_accuracy(
    fresh: Callable[..., Made],
) -> None:
    """alice accepts everything in under 2 s; bob looks (9 s) and corrects the model where
    he knows it is wrong (the gold cases' known answers stand in for his judgement). The time
    on item is the store's own measure, from the lease to the decision: the store's clock
    is moved by the time each of them spends on a case."""
    ws, _ = fresh(double_review_share=0.0, gold_rate=0.5)
    clock = Ticking()

    def as_user(name: str) -> Store:
        return open_store_as(ws, Identity(name=name), clock=clock)

    admin = as_user("dana")
    truth = add_gold(admin, 16, wrong=8)
    alice, bob = as_user("alice"), as_user("bob")
    with holding(ws):  # 100 operations on one connection
        for _ in range(25):
            leased = alice.next_case()
            assert leased is not None
            clock.advance(1.5)
            alice.record_decision(DecisionRequest(case_id=leased.case.case_id, action="accept"))
        for _ in range(25):
            leased = bob.next_case()
            assert leased is not None
            cid, model = leased.case.case_id, leased.case.predictions[-1].label
            clock.advance(9)
            if cid in truth and truth[cid] != model:
                request = DecisionRequest(
                    case_id=cid, action="override", final_label=truth[cid], reason_code="data-error"
                )
            else:
                request = DecisionRequest(case_id=cid, action="accept")
            bob.record_decision(request)
    report = as_user("lena").oversight_report()
    stats = {r.reviewer: r for r in report.reviewers}
    a, b = stats["alice"], stats["bob"]
    assert (a.decided, a.accepted, a.accept_rate, a.median_time_ms) == (25, 25, 1.0, 1500.0)
    assert (b.decided, b.median_time_ms) == (25, 9000.0)
    alerts = {(x.reviewer, x.kind) for x in report.alerts}
    assert ("alice", "rubber-stamping") in alerts
    assert not {k for r, k in alerts if r == "bob"}
    assert b.gold_accuracy == 1.0
    # Gold accuracy counts the known answers, independently of the model.
    alice_gold = [
        d for d in admin.decisions(limit=100_000) if d.reviewer == "alice" and d.case_id in truth
    ]
    expected = sum(1 for d in alice_gold if d.final_label == truth[d.case_id])
    assert a.gold_decided >= 5
    assert (a.gold_decided, a.gold_correct) == (len(alice_gold), expected)
    assert a.gold_accuracy == expected / len(alice_gold)
    assert (("alice", "low-gold-accuracy") in alerts) == (expected / len(alice_gold) < 0.8)
    # Overrides by reason, and the lead's view is refused to a reviewer.
    reasons = {r.reason_code: r.count for r in report.reasons}
    assert reasons == ({"data-error": b.overridden} if b.overridden else {})
    with pytest.raises(PermissionDeniedError):
        alice.oversight_report()
    with pytest.raises(PermissionDeniedError):
        alice.conflicts()


# ---------------------------------------------------------------------------- halt
@pytest.mark.obligation("AI Act 14(4)(e)", "AI Act 26(5)")
def test_while_halted_predictions_are_refused_and_new_cases_wait_for_manual_review(
    gold_as: StoreFactory, cases_frame: pl.DataFrame
) -> None:
    admin, lena, alice = gold_as("dana"), gold_as("lena"), gold_as("alice")
    lena.halt("Drift in incoming applications")
    incoming = cases_frame.slice(HISTORY + NEW, 3).drop("risk")
    before = state(admin)
    with pytest.raises(SystemHalted, match="halted") as caught:
        admin.add_predictions(
            TEST_MODEL.model, predictions_for(cases_frame.slice(0, 3)), TEST_MODEL.sha256
        )
    assert "Drift" not in str(caught.value)  # the reason stays in the store
    assert state(admin) == before
    waiting = admin.queue_status().waiting
    admin.ingest_cases(incoming)
    assert admin.queue_status().waiting == waiting + 3
    manual_ids = set(incoming["application_id"].to_list())
    assert lena.oversight_report().queue.manual_waiting == 3
    # The uncertainty strategy counts a case without a score as the most uncertain.
    leased = alice.next_case()
    for _ in range(3):
        assert leased is not None
        if leased.case.case_id in manual_ids:
            break
        alice.record_decision(DecisionRequest(case_id=leased.case.case_id, action="skip"))
        leased = alice.next_case()
    assert leased is not None and leased.case.case_id in manual_ids
    assert leased.case.predictions == []
    with pytest.raises(InputError, match="prediction"):
        alice.record_decision(DecisionRequest(case_id=leased.case.case_id, action="accept"))
    decided = alice.record_decision(
        DecisionRequest(
            case_id=leased.case.case_id,
            action="override",
            final_label="0",
            reason_code="policy-exception",
            model_shown=False,
        )
    )
    assert (decided.predicted_label, decided.final_label) == (None, "0")
    with pytest.raises(PermissionDeniedError):
        lena.resume()  # not by the person who halted
    gold_as("max").resume()
    # After the resume: the manual cases stay in the queue, new ones wait for scoring.
    admin.ingest_cases(cases_frame.slice(HISTORY + NEW + 3, 2).drop("risk"))
    assert admin.queue_status().waiting == waiting + 2
    actions = [e.action for e in admin.audit_events(after_seq=0, limit=100_000)]
    assert actions.count("system.halted") == 1 and actions.count("system.resumed") == 1
    assert admin.verify().ok
