"""The audit dashboard's contract: ``AuditBackend`` (every method reads, none writes) and
the records that cross it. ``hilt.pipelines.dashboards.audit`` implements it on the store;
``hilt.pipelines.compliance.lineage`` makes the ``ExplanationReplay``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

#: The title of the refusal shown when the audit dashboard cannot be opened.
UNAVAILABLE = "The audit dashboard is not available"

ReplayVerdict = Literal["identical", "differs", "not-recorded", "not-shown", "not-applicable"]


@dataclass(frozen=True)
class ExplanationReplay:
    """A decision's explanation rendered again from the records (EU AI Act Art. 86).

    ``identical``: the fragment rendered from the stored prediction and the recorded context
    has the sha256 recorded at decision time; ``differs``: it has not (the records changed);
    ``not-recorded``: the decision was recorded without a hash (``html``, if any, is the
    stored prediction under today's settings, for reference only, not proof);
    ``not-shown``: the model's output was hidden from the reviewer; ``not-applicable``: an
    undo, or no prediction.
    """

    decision_id: str
    verdict: ReplayVerdict
    message: str
    html: str = ""
    recorded_sha256: str | None = None
    rendered_sha256: str | None = None


@dataclass(frozen=True)
class Auditor:
    name: str
    roles: tuple[str, ...]
    #: Why the store could not prove who this is (single-person mode); None: proven.
    unproven: str | None = None


@dataclass(frozen=True)
class IntegrityReport:
    """The audit log and its signed checkpoints, verified."""

    ok: bool
    #: "OK <n> events" or "BROKEN at seq <n>: <kind>: <detail>".
    summary: str
    events: int
    head_seq: int
    head_hash: str
    checkpoints: int
    #: The public key the checkpoints were checked against, and where it came from.
    public_key: str | None
    #: How the check was made, in one sentence per line.
    method: tuple[str, ...] = ()
    #: Verified from the signed checkpoint at this seq (None: the whole log).
    from_checkpoint: int | None = None


@dataclass(frozen=True)
class EventFilter:
    """The event explorer's filters; empty strings mean "any"."""

    actor: str = ""
    #: An action, or a prefix ending in a dot ("model.").
    action: str = ""
    #: The object acted on (a case id, a run id, a model version, a snapshot name).
    object_id: str = ""
    model_version: str = ""
    #: ISO-8601 times or dates (UTC unless they say otherwise); since ≤ time < until.
    since: str = ""
    until: str = ""


@dataclass(frozen=True)
class EventRow:
    seq: int
    ts: str
    actor: str
    role: str
    action: str
    object_type: str
    object_id: str
    #: The payload as one line of JSON (hashes of free text, never the text).
    payload: str
    hash: str


@dataclass(frozen=True)
class EventPage:
    rows: tuple[EventRow, ...]
    #: Events matching the filter, on every page.
    total: int
    offset: int
    limit: int
    #: The head seq the explorer pages under (new events appear after "Refresh").
    head_seq: int
    by_action: dict[str, int] = field(default_factory=dict)
    by_day: dict[str, int] = field(default_factory=dict)
    #: A PNG of by_day and by_action (empty: no chart).
    chart_png: bytes = b""


@dataclass(frozen=True)
class DecisionChoice:
    decision_id: str
    #: How the decision is listed: seq, time, reviewer, action, case.
    label: str


LineageStatus = Literal["ok", "warning", "info"]


@dataclass(frozen=True)
class LineageStep:
    """One link of a lineage (decision, prediction, model, run, snapshot, ...)."""

    title: str
    facts: tuple[tuple[str, str], ...]
    status: LineageStatus = "ok"


@dataclass(frozen=True)
class TrainingRow:
    """A decision whose label entered the model's training data."""

    seq: int
    decision_id: str
    case_id: str
    action: str
    reviewer: str
    final_label: str
    label_source: str
    #: Empty when the log agrees with the snapshot; else what disagrees.
    problem: str = ""


@dataclass(frozen=True)
class TrainingPage:
    rows: tuple[TrainingRow, ...]
    total: int
    offset: int
    by_source: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class LineageView:
    decision_id: str
    steps: tuple[LineageStep, ...]
    #: Where the records stop or disagree, in plain words (empty: the chain is complete).
    problems: tuple[str, ...]
    training: TrainingPage | None = None
    #: A PNG of the training data by label source (empty: no chart).
    chart_png: bytes = b""


@dataclass(frozen=True)
class RunNotebook:
    """An executed notebook of a retraining or scoring run, as the audit log records it."""

    run_id: str
    kind: str
    status: str
    started: str
    author: str
    notebook: str
    sha256: str | None
    #: "matches", "differs", "missing" or "not recorded".
    file_status: str


class AuditBackend(Protocol):
    """What the audit dashboard reads. Every method reads; none writes (the auditor may
    read everything and write nothing)."""

    def auditor(self) -> Auditor: ...

    def verify(self) -> IntegrityReport: ...

    def events(self, query: EventFilter, offset: int, limit: int) -> EventPage:
        """One page of events matching ``query``, newest first."""
        ...

    def refresh(self) -> int:
        """Page under the log's current head from now on; returns it."""
        ...

    def action_names(self) -> tuple[str, ...]: ...

    def recent_decisions(self, limit: int) -> tuple[DecisionChoice, ...]: ...

    def lineage(self, decision_id: str) -> LineageView: ...

    def training_page(self, decision_id: str, offset: int, limit: int) -> TrainingPage: ...

    def explanation(self, decision_id: str) -> ExplanationReplay: ...

    def crosscheck(self, decision_id: str) -> LineageStep:
        """The lineage's training run as MLflow records it, against the log (slow: MLflow)."""
        ...

    def notebooks(self) -> tuple[RunNotebook, ...]: ...

    def notebook_html(self, run_id: str) -> str:
        """The run's executed notebook as one offline HTML page (only if its sha256 matches
        the log)."""
        ...
