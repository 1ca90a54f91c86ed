"""In-memory stand-ins for the widgets' collaborators (fakes live here and only here).

``FakeBackend`` implements ``ReviewBackend`` with the store's rules that matter to a panel:
one live lease per reviewer (their own lease is handed back first), accept takes no
final_label (the store uses the model's), an override needs a reason code and another
class than the model's, undo compensates only one's own latest decision and re-leases the
case, flag sends the case to someone else, a request_id is recorded once, a decision and the
next lease (``submit_and_next``) are recorded both or neither.

``FakeOversightBackend`` implements ``OversightBackend`` for the oversight dashboard, with
the store's rules that matter to it (see its docstring); ``SharedSystem`` lets two fake
leads share one halt switch.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field, replace
from typing import Any

from hilt.widgets.contracts.audit import (
    Auditor,
    DecisionChoice,
    EventFilter,
    EventPage,
    EventRow,
    ExplanationReplay,
    IntegrityReport,
    LineageStep,
    LineageView,
    RunNotebook,
    TrainingPage,
    TrainingRow,
)
from hilt.widgets.contracts.common import (
    FeatureRange,
    FieldSpec,
    ReviewConfig,
    Reviewer,
    ReviewItem,
)
from hilt.widgets.contracts.oversight import (
    AdjudicationReceipt,
    Agreement,
    BiasAlert,
    ConflictItem,
    GateCheckView,
    MetricRow,
    ModelComparison,
    ModelDecision,
    OversightOverview,
    QueueHealth,
    ReasonCount,
    ReviewerStats,
    SubgroupRow,
    SystemStatus,
)
from hilt.widgets.contracts.review import Advanced, DecisionInput, DecisionReceipt, QueueStatus


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class BackendDown(RuntimeError):
    """What a failing store raises (with a message meant for people)."""


def make_config(**changes: Any) -> ReviewConfig:
    config = ReviewConfig(
        use_case="loans",
        classes=("1", "0"),
        class_labels={"1": "good risk", "0": "bad risk"},
        positive_class="1",
        decision_threshold=0.5,
        reason_codes={
            "docs-contradict": "Documents contradict the application",
            "income-verified": "Income verified",
            "other": "Other (explain in the comment)",
        },
        comment_required=False,
        max_comment_length=200,
        blind_first=False,
        display=(
            FieldSpec("amount", "Credit amount", "{:,.0f} DM"),
            FieldSpec("term", "Duration", "{} months"),
            FieldSpec("use", "Purpose"),
        ),
        training_ranges={
            "amount": FeatureRange(low=250, high=20000),
            "term": FeatureRange(low=4, high=72),
            "use": FeatureRange(levels=("car", "education", "business")),
        },
    )
    return replace(config, **changes)


def make_item(case_id: str, **changes: Any) -> ReviewItem:
    n = int("".join(ch for ch in case_id if ch.isdigit()) or "0")
    item = ReviewItem(
        case_id=case_id,
        values={"amount": "1169", "term": 12 + n, "use": "car"},
        features={"amount": 1169.0, "term": 12 + n, "use": "car"},
        prediction_id=100 + n,
        model_version="m-1",
        score=0.8731,
        predicted_label="1",
        contributions={"term": -0.25, "amount": 0.1, "bias": 3.0},
        lease_expires_at="2030-01-01T00:00:00Z",
    )
    return replace(item, **changes)


@dataclass
class _Record:
    receipt: DecisionReceipt
    decision: DecisionInput
    reviewer: str
    undone: bool = False


@dataclass
class FakeBackend:
    config: ReviewConfig = field(default_factory=make_config)
    items: list[ReviewItem] = field(default_factory=list)
    me: Reviewer = field(default_factory=lambda: Reviewer("alice", ("reviewer",)))
    #: Every DecisionInput the backend accepted, in order.
    decisions: list[DecisionInput] = field(default_factory=list)
    #: Set to make the next call raise it (then it is cleared).
    fail_next_submit: Exception | None = None
    fail_next_item: Exception | None = None
    fail_queue_status: Exception | None = None
    #: Every submit call, including refused ones.
    submit_calls: list[DecisionInput] = field(default_factory=list)
    #: Number of next_item calls.
    next_item_calls: int = 0
    #: Number of submit_and_next calls (a decision with the next case: one round trip).
    submit_and_next_calls: int = 0

    def __post_init__(self) -> None:
        self._by_id = {item.case_id: item for item in self.items}
        self._order = [item.case_id for item in self.items]
        self._done: set[str] = set()
        self._flagged: set[str] = set()
        self._skips: dict[str, int] = {}
        self._blind: dict[str, str] = {}
        self._blind_of_final: dict[str, str] = {}
        self._lease: str | None = None
        self._records: list[_Record] = []
        self._seq = 0

    # ------------------------------------------------------------------ protocol
    def reviewer(self) -> Reviewer:
        return self.me

    def review_config(self) -> ReviewConfig:
        return self.config

    def next_item(self) -> ReviewItem | None:
        self.next_item_calls += 1
        if self.fail_next_item is not None:
            exc, self.fail_next_item = self.fail_next_item, None
            raise exc
        if self._lease is None:
            pending = [c for c in self._order if c not in self._done and c not in self._flagged]
            if not pending:
                return None
            pending.sort(key=lambda c: self._skips.get(c, 0))
            self._lease = pending[0]
        return replace(self._by_id[self._lease], blind_label=self._blind.get(self._lease))

    def submit(self, decision: DecisionInput) -> DecisionReceipt:
        self.submit_calls.append(decision)
        if self.fail_next_submit is not None:
            exc, self.fail_next_submit = self.fail_next_submit, None
            raise exc
        for record in self._records:
            if (
                decision.request_id is not None
                and record.decision.request_id == decision.request_id
            ):
                return record.receipt
        self._check(decision)
        case = decision.case_id
        item = self._by_id[case]
        final = decision.final_label
        if decision.action == "accept":
            final = item.predicted_label
        self._seq += 1
        receipt = DecisionReceipt(
            decision_id=f"d{self._seq}",
            case_id=case,
            action=decision.action,
            final_label=final,
            seq=self._seq,
        )
        if decision.action == "undo":
            target = next(r for r in self._records if r.receipt.decision_id == decision.undo_of)
            target.undone = True
            action = target.decision.action
            if action in ("accept", "override"):
                self._done.discard(case)
                if case in self._blind_of_final:  # the blind judgement stands again
                    self._blind[case] = self._blind_of_final.pop(case)
            elif action == "flag":
                self._flagged.discard(case)
            elif action == "skip":
                self._skips[case] -= 1
            elif action == "blind":
                self._blind.pop(case, None)
            self._lease = case  # the case comes back to the reviewer who undid
        elif decision.action == "blind":
            assert final is not None
            self._blind[case] = final
        else:
            if decision.action in ("accept", "override"):
                self._done.add(case)
                if case in self._blind:
                    self._blind_of_final[case] = self._blind.pop(case)
            elif decision.action == "flag":
                self._flagged.add(case)
            elif decision.action == "skip":
                self._skips[case] = self._skips.get(case, 0) + 1
            self._lease = None
        self._records.append(_Record(receipt, decision, self.me.name))
        self.decisions.append(decision)
        return receipt

    def submit_and_next(self, decision: DecisionInput) -> Advanced:
        """``submit`` then ``next_item``, both or neither (as the store's one transaction):
        a lease that fails (``fail_next_item``) takes the decision with it."""
        self.submit_and_next_calls += 1
        if self.fail_next_item is not None and self.fail_next_submit is None:
            self.submit_calls.append(decision)
            exc, self.fail_next_item = self.fail_next_item, None
            raise exc
        receipt = self.submit(decision)
        return Advanced(receipt, self.next_item())

    def queue_status(self) -> QueueStatus:
        if self.fail_queue_status is not None:
            raise self.fail_queue_status
        open_cases = [c for c in self._order if c not in self._done and c not in self._flagged]
        leased = 1 if self._lease is not None else 0
        done = sum(
            1 for r in self._records if r.decision.action in ("accept", "override") and not r.undone
        )
        return QueueStatus(
            waiting=len(open_cases) - leased, leased=leased, done_today=done, done_today_by_me=done
        )

    # ------------------------------------------------------------------ helpers
    def add(self, item: ReviewItem) -> None:
        """A new case arrives in the queue."""
        self.items.append(item)
        self._by_id[item.case_id] = item
        self._order.append(item.case_id)

    def actions(self) -> list[str]:
        return [d.action for d in self.decisions]

    def _check(self, d: DecisionInput) -> None:
        """The store's refusals that a well-behaved panel must never trigger."""
        if d.case_id not in self._by_id:
            raise BackendDown("decision on an unknown case id")
        if d.action in ("override", "blind"):
            if d.final_label not in self.config.classes:
                raise BackendDown(f"{d.action} needs final_label")
        elif d.final_label is not None:
            raise BackendDown(f"{d.action} takes no final_label")
        if d.action == "override":
            if d.reason_code not in self.config.reason_codes:
                raise BackendDown("an override needs a reason_code")
            if d.final_label == self._by_id[d.case_id].predicted_label:
                raise BackendDown("an override must choose a class other than the model's")
            if self.config.comment_required and not (d.comment or "").strip():
                raise BackendDown("an override needs a comment")
        elif d.reason_code is not None:
            raise BackendDown(f"{d.action} takes no reason_code")
        if d.comment is not None and len(d.comment) > self.config.max_comment_length:
            raise BackendDown("comment too long")
        if d.action == "undo":
            live = [r for r in self._records if r.receipt.case_id == d.case_id]
            if not live or live[-1].receipt.decision_id != d.undo_of:
                raise BackendDown("only the latest decision on a case can be undone")
            if live[-1].decision.action == "undo" or live[-1].undone:
                raise BackendDown("an undo cannot itself be undone")
        elif d.undo_of is not None:
            raise BackendDown("only undo takes undo_of")
        if d.action != "undo" and self._lease != d.case_id:
            raise BackendDown("you do not hold this case's lease")


# ---------------------------------------------------------------------------- auditing
def make_event(seq: int, action: str = "decision.record", **changes: Any) -> EventRow:
    payload = {"decision_id": f"d{seq}", "action": "accept"} if action == "decision.record" else {}
    row = EventRow(
        seq=seq,
        ts=f"2030-01-0{1 + seq % 9}T10:00:00.000000Z",
        actor="alice" if seq % 2 else "bob",
        role="reviewer",
        action=action,
        object_type="case",
        object_id=f"C-{seq:03d}",
        payload=json.dumps(payload),
        hash=f"{seq:064x}",
    )
    return replace(row, **changes)


def make_lineage(decision_id: str, problems: tuple[str, ...] = ()) -> LineageView:
    rows = tuple(
        TrainingRow(
            seq=i,
            decision_id=f"t{i}",
            case_id=f"C-{i:03d}",
            action="accept",
            reviewer="alice",
            final_label="1",
            label_source="reviewer-accepted",
        )
        for i in range(1, 4)
    )
    return LineageView(
        decision_id=decision_id,
        steps=(
            LineageStep("Decision", (("decision id", decision_id), ("audit seq", "42"))),
            LineageStep("Training run", (("run id", "run-abc"),)),
            LineageStep("Snapshot", (("sha256", "5" * 64), ("as of audit seq", "30"))),
        ),
        problems=problems,
        training=TrainingPage(rows=rows, total=45, offset=0, by_source={"reviewer-accepted": 45}),
        chart_png=b"\x89PNG fake",
    )


@dataclass
class FakeAuditBackend:
    """An AuditBackend over in-memory events; it has no method that writes, and records
    every call (name, arguments) so tests can see what the dashboard asked for."""

    me: Auditor = field(default_factory=lambda: Auditor("otto", ("auditor",)))
    report: IntegrityReport = field(
        default_factory=lambda: IntegrityReport(
            ok=True,
            summary="OK 60 events",
            events=60,
            head_seq=60,
            head_hash="a" * 64,
            checkpoints=2,
            public_key="ed25519:AAAA",
            method=("Hash chain re-computed here.",),
        )
    )
    rows: list[EventRow] = field(default_factory=lambda: [make_event(s) for s in range(60, 0, -1)])
    replay: ExplanationReplay | None = None
    runs: tuple[RunNotebook, ...] = (
        RunNotebook(
            run_id="run-abc",
            kind="retrain",
            status="finished",
            started="2030-01-02 10:00:00",
            author="dana",
            notebook="20300102T100000Z-retrain-run-abc.ipynb",
            sha256="b" * 64,
            file_status="matches",
        ),
    )
    page_html: str = '<html><body><h1>Retraining run</h1><script>alert("x")</script></body></html>'
    #: Set to make the named method raise it (until cleared).
    fail: dict[str, Exception] = field(default_factory=dict)
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    head: int = 60
    #: Set: ``verify`` waits for it (up to 10 s) before it answers, as a long log makes it.
    verify_gate: threading.Event | None = None

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if name in self.fail:
            raise self.fail[name]

    def called(self, name: str) -> list[tuple[Any, ...]]:
        return [args for n, args in self.calls if n == name]

    def __getattr__(self, name: str) -> Any:
        """Any method outside the protocol (a write, say) is recorded in ``calls`` when
        called, then fails: a dashboard that asked for one cannot hide it behind the
        status line it reports the failure on."""
        if name.startswith("_"):
            raise AttributeError(name)

        def not_in_the_protocol(*args: Any, **kwargs: Any) -> None:
            self._call(name, *args, *kwargs.values())
            raise BackendDown(f"{name} is not a method of an AuditBackend")

        return not_in_the_protocol

    # ------------------------------------------------------------------ protocol
    def auditor(self) -> Auditor:
        self._call("auditor")
        return self.me

    def verify(self) -> IntegrityReport:
        self._call("verify")
        if self.verify_gate is not None:
            self.verify_gate.wait(10)
        return self.report

    def events(self, query: EventFilter, offset: int, limit: int) -> EventPage:
        self._call("events", query, offset, limit)
        rows = [
            r
            for r in self.rows
            if (not query.actor or r.actor == query.actor)
            and (not query.action or r.action.startswith(query.action))
            and r.seq <= self.head
        ]
        return EventPage(
            rows=tuple(rows[offset : offset + limit]),
            total=len(rows),
            offset=offset,
            limit=limit,
            head_seq=self.head,
            by_action={"decision.record": len(rows)},
            by_day={"2030-01-01": len(rows)},
            chart_png=b"\x89PNG fake",
        )

    def refresh(self) -> int:
        self._call("refresh")
        return self.head

    def action_names(self) -> tuple[str, ...]:
        self._call("action_names")
        return ("decision.record", "model.")

    def recent_decisions(self, limit: int) -> tuple[DecisionChoice, ...]:
        self._call("recent_decisions", limit)
        return tuple(
            DecisionChoice(f"d{r.seq}", f"seq {r.seq} · {r.actor}")
            for r in self.rows[:limit]
            if r.action == "decision.record"
        )

    def lineage(self, decision_id: str) -> LineageView:
        self._call("lineage", decision_id)
        return make_lineage(decision_id)

    def training_page(self, decision_id: str, offset: int, limit: int) -> TrainingPage:
        self._call("training_page", decision_id, offset, limit)
        page = make_lineage(decision_id).training
        assert page is not None
        return replace(page, offset=offset)

    def explanation(self, decision_id: str) -> ExplanationReplay:
        self._call("explanation", decision_id)
        return self.replay or ExplanationReplay(
            decision_id=decision_id,
            verdict="identical",
            message=f"Identical to what the reviewer saw (sha256 {'c' * 64}).",
            html='<div class="fragment">Predicted: <b>good risk</b></div>',
            recorded_sha256="c" * 64,
            rendered_sha256="c" * 64,
        )

    def crosscheck(self, decision_id: str) -> LineageStep:
        self._call("crosscheck", decision_id)
        return LineageStep("MLflow's record", (("model sha256", "agrees"),))

    def notebooks(self) -> tuple[RunNotebook, ...]:
        self._call("notebooks")
        return self.runs

    def notebook_html(self, run_id: str) -> str:
        self._call("notebook_html", run_id)
        return self.page_html


# ---------------------------------------------------------------------------- oversight

#: A tiny valid PNG (1 x 1 pixel), standing in for a rendered figure.
PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def make_overview(**changes: Any) -> OversightOverview:
    overview = OversightOverview(
        queue=QueueHealth(
            waiting=17,
            leased=2,
            done_today=40,
            done_total=312,
            oldest_waiting_minutes=95.0,
            awaiting_second_review=3,
            adjudication_waiting=1,
            manual_waiting=0,
            gold_cases=12,
        ),
        reviewers=(
            ReviewerStats("alice", 40, 40, 40, 0, 1.0, 0.0, 1.2, 6, 3, 0.5),
            ReviewerStats("bob", 30, 12, 21, 9, 0.7, 0.3, 9.5, 5, 5, 1.0),
        ),
        agreement=Agreement(
            pairs=10,
            agreed=8,
            kappa=0.58,
            awaiting_second_review=3,
            conflicts_open=1,
            conflicts_resolved=1,
        ),
        reasons=(ReasonCount("income-verified", "Income verified", 7),),
        alerts=(
            BiasAlert("alice", "rubber-stamping", "alice accepted 100% of 40 model outputs"),
            BiasAlert("alice", "low-gold-accuracy", "alice decided 3 of 6 gold cases correctly"),
        ),
        window_days=30,
        as_of="2030-01-01T12:00:00.000000Z",
        alert_accept_rate=0.95,
        alert_median_seconds=5.0,
    )
    return replace(overview, **changes)


def make_comparison(**changes: Any) -> ModelComparison:
    comparison = ModelComparison(
        run_id="run-7",
        challenger_version="2",
        champion_version="1",
        author="dana",
        gate="passed",
        metrics=(MetricRow("auc", 0.731, 0.702), MetricRow("accuracy", 0.74, 0.73)),
        checks=(GateCheckView("floor", True, "auc 0.7310 ≥ floor 0.6500"),),
        subgroups=(SubgroupRow("sex", "female", 60, 0.61, 0.58),),
        figure=PNG_1PX,
        can_decide=True,
    )
    return replace(comparison, **changes)


@dataclass
class SharedSystem:
    """The system state, shared by the fake backends of different leads."""

    halted: bool = False
    changed_by: str | None = None
    reason: str | None = None
    events: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class FakeOversightBackend:
    """An OversightBackend with the store's rules that matter to the dashboard: a halt needs
    a reason, the person who halted cannot resume, a lead in a conflict cannot settle it, the
    run's author can neither approve nor reject, a rejection needs a reason."""

    me: Reviewer = field(default_factory=lambda: Reviewer("max", ("lead",)))
    config: ReviewConfig = field(default_factory=make_config)
    overview_value: OversightOverview = field(default_factory=make_overview)
    conflict_items: list[ConflictItem] = field(
        default_factory=lambda: [
            ConflictItem(make_item("APP-7"), "alice", "1", "bob", "0"),
        ]
    )
    comparison_value: ModelComparison | None = field(default_factory=make_comparison)
    system: SharedSystem = field(default_factory=SharedSystem)
    fail_overview: Exception | None = None
    fail_lead: Exception | None = None
    overview_calls: int = 0
    comparison_calls: int = 0
    adjudications: list[tuple[str, str, str | None]] = field(default_factory=list)
    approved: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def lead(self) -> Reviewer:
        if self.fail_lead is not None:
            raise self.fail_lead
        return self.me

    def review_config(self) -> ReviewConfig:
        return self.config

    def overview(self) -> OversightOverview:
        self.overview_calls += 1
        if self.fail_overview is not None:
            raise self.fail_overview
        return self.overview_value

    def conflicts(self) -> tuple[ConflictItem, ...]:
        return tuple(self.conflict_items)

    def adjudicate(
        self, case_id: str, final_label: str, comment: str | None
    ) -> AdjudicationReceipt:
        conflict = next((c for c in self.conflict_items if c.item.case_id == case_id), None)
        if conflict is None:
            raise BackendDown("this case has no conflict to adjudicate")
        if self.me.name in (conflict.first_reviewer, conflict.second_reviewer):
            raise BackendDown("a reviewer in the conflict cannot adjudicate it; another lead must")
        if final_label not in self.config.classes:
            raise BackendDown("final_label must be one of the target classes")
        self.conflict_items.remove(conflict)
        self.adjudications.append((case_id, final_label, comment))
        return AdjudicationReceipt(case_id, final_label, seq=100 + len(self.adjudications))

    def system_status(self) -> SystemStatus:
        s = self.system
        return SystemStatus(
            s.halted, s.changed_by, "2030-01-01T12:00:00Z" if s.halted else None, s.reason
        )

    def halt(self, reason: str) -> SystemStatus:
        if not reason.strip():
            raise BackendDown("a halt needs a reason")
        if self.system.halted:
            raise BackendDown("the system is already halted")
        self.system.halted, self.system.changed_by, self.system.reason = True, self.me.name, reason
        self.system.events.append(("halt", self.me.name))
        return self.system_status()

    def resume(self) -> SystemStatus:
        if not self.system.halted:
            raise BackendDown("the system is not halted")
        if self.system.changed_by == self.me.name:
            raise BackendDown(
                "the person who halted the system cannot resume it; a second lead must"
            )
        self.system.halted, self.system.changed_by, self.system.reason = False, self.me.name, None
        self.system.events.append(("resume", self.me.name))
        return self.system_status()

    def comparison(self) -> ModelComparison | None:
        self.comparison_calls += 1
        c = self.comparison_value
        if c is not None and c.author == self.me.name:
            c = replace(c, can_decide=False, why_not="You trained run run-7 (four eyes).")
        return c

    def _check_decider(self, run_id: str) -> ModelComparison:
        c = self.comparison_value
        if c is None or c.run_id != run_id:
            raise BackendDown(f"run {run_id} is not the current challenger")
        if c.author == self.me.name:
            raise BackendDown(f"{self.me.name!r} trained run {run_id}; another lead must decide")
        return c

    def approve(self, run_id: str) -> ModelDecision:
        c = self._check_decider(run_id)
        if c.gate != "passed":
            raise BackendDown(f"run {run_id} did not pass the gate")
        self.approved.append(run_id)
        self.comparison_value = None
        return ModelDecision(run_id, c.challenger_version, "approved", 200, "Approved: version 2.")

    def reject(self, run_id: str, reason: str) -> ModelDecision:
        c = self._check_decider(run_id)
        if not reason.strip():
            raise BackendDown("a rejection needs a reason")
        self.rejected.append((run_id, reason))
        self.comparison_value = None
        return ModelDecision(run_id, c.challenger_version, "rejected", 201, "Rejected: version 2.")
