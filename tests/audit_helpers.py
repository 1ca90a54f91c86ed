"""A workspace that went round the loop twice, for the auditor's tests (lineage, documents,
the audit dashboard): real DuckDB, real MLflow (sqlite), real papermill runs.

1. dana trains model v1 (in process), lena promotes it, v1 scores 150 new cases;
2. alice reviews 60 of them (accepts, every third overridden) in one session of the review
   panel: each decision carries the explanation she saw;
3. `hilt retrain` as dana (papermill: run events, executed notebook, snapshot with
   alice's labels) → v2; max promotes it;
4. `hilt score` as dana (papermill) scores 40 more cases with v2; alice decides one of
   them: the decision whose lineage the tests follow.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from hilt.pipelines.dashboards.review import StoreReviewBackend
from hilt.pipelines.loop import runner
from hilt.pipelines.loop.promotion import promote
from hilt.pipelines.loop.steps import score as batch_scoring
from hilt.pipelines.loop.tracking.client import configure
from hilt.pipelines.loop.tracking.environment import registered_model_name
from hilt.pipelines.store import Identity, open_store_as
from hilt.pipelines.store.audit.chain import GENESIS_HASH, AuditEntry, chain_hash
from hilt.pipelines.store.case_records import Decision
from hilt.pipelines.store.modes.embedded import connect
from hilt.pipelines.workspace import Workspace
from hilt.widgets import PredictionView
from hilt.widgets.contracts.review import DecisionInput, DecisionReceipt
from tests.conftest import CONFIG, operator
from tests.loop_helpers import FAST, LABELLED, all_cases, loop_workspace, new_cases_file

if TYPE_CHECKING:
    import duckdb

FIRST_BATCH = 150
REVIEWED = 60
SECOND_BATCH = 40


@dataclass(frozen=True)
class AuditedLoop:
    ws: Workspace
    first_run_id: str
    second: runner.RunResult
    scoring: runner.RunResult
    #: alice's decision on a case scored by v2, with the explanation she saw.
    decision: Decision
    explanation_html: str


class ReviewPanel:
    """One reviewer's review panel, as the Voila page keeps it for a session: one backend
    (its store, settings and review config) and one prediction view that shows case after
    case."""

    def __init__(self, ws: Workspace, reviewer: str) -> None:
        self.settings = ws.settings()
        store = open_store_as(ws, Identity(name=reviewer))
        self.backend = StoreReviewBackend(store, self.settings)
        self.view = PredictionView(self.backend.review_config())

    def decide(self, action: str) -> tuple[DecisionReceipt, str]:
        """Lease the next case and decide it the way the review panel does: the prediction
        view renders the explanation, and the decision carries its sha256 and context.
        Returns the receipt and the explanation's HTML as it was on screen."""
        item = self.backend.next_item()
        assert item is not None, "the queue is empty"
        self.view.show(item)
        shown = self.view.shown_explanation()
        assert shown is not None
        on_screen = "".join(w.value for w in self.view.children)
        other = next(c for c in self.settings.target.classes if c != item.predicted_label)
        receipt = self.backend.submit(
            DecisionInput(
                case_id=item.case_id,
                action="override" if action == "override" else "accept",
                final_label=other if action == "override" else None,
                reason_code="data-error" if action == "override" else None,
                time_on_item_ms=1500,
                model_shown=True,
                prediction_id=item.prediction_id,
                explanation_sha256=shown.sha256,
                explanation_context=shown.context,
            )
        )
        return receipt, on_screen


def decide_as_panel(ws: Workspace, reviewer: str, action: str) -> tuple[Decision, str]:
    """``ReviewPanel.decide`` on a panel opened for this one case; returns the decision as
    the store recorded it, and the explanation's HTML as it was on screen."""
    receipt, on_screen = ReviewPanel(ws, reviewer).decide(action)
    return operator(ws).get_decision(receipt.decision_id), on_screen


def audited_loop(root: Path, config: Path = CONFIG) -> AuditedLoop:
    from tests.loop_helpers import train_in_process

    ws = loop_workspace(root, config=config)
    settings = ws.settings()
    first = train_in_process(ws, "dana")
    assert first.gate_passed, "the first model must pass the gate for the loop to go on"
    promote(ws, first.run_id, "lena")

    configure(ws, settings=settings)
    dana = open_store_as(ws, Identity(name="dana"))
    champion = batch_scoring.load_model(dana, settings)
    new = all_cases().slice(LABELLED, FIRST_BATCH).drop(settings.target.column)
    batch_scoring.ingest(dana, new)
    batch_scoring.score_cases(dana, champion, new, settings)
    panel = ReviewPanel(ws, "alice")  # one session of alice's for the whole batch
    for i in range(REVIEWED):
        panel.decide("override" if i % 3 == 2 else "accept")

    second = runner.execute(ws, runner.RunRequest("retrain", FAST, author="dana"))
    assert second.gate == "passed", "the second model must pass the gate"
    promote(ws, second.run_id, "max")
    more = new_cases_file(root / "incoming.csv", LABELLED + FIRST_BATCH, SECOND_BATCH)
    scoring = runner.execute(ws, runner.RunRequest("score", {"input_path": str(more)}, "dana"))
    # The person concerned asks for human review (GDPR Art. 22): the case is served first.
    case_id = str(all_cases()[ws.settings().use_case.id_column][LABELLED + FIRST_BATCH])
    open_store_as(ws, Identity(name="pia")).contest(case_id)
    decision, html = decide_as_panel(ws, "alice", "accept")
    assert decision.case_id == case_id
    assert decision.model_version == f"{registered_model_name(settings)}/v2"
    return AuditedLoop(ws, first.run_id, second, scoring, decision, html)


# ---------------------------------------------------------------------- attacker's tools


@contextmanager
def raw_db(ws: Workspace) -> Iterator[duckdb.DuckDBPyConnection]:
    """The store file, opened behind the store's back."""
    con = connect(ws)
    try:
        yield con
    finally:
        con.close()


def fetch_one(con: duckdb.DuckDBPyConnection, query: str, params: list[object]) -> tuple[Any, ...]:
    rows = con.execute(query, params).fetchall()
    assert len(rows) == 1, (query, params, rows)
    return tuple(rows[0])


def edit_entry(
    con: duckdb.DuckDBPyConnection, seq: int, change: Callable[[dict[str, Any]], None]
) -> None:
    """Rewrite the hashed entry of one row (canonical JSON, as the store writes it)."""
    (entry,) = fetch_one(con, "SELECT entry FROM audit_log WHERE seq = ?", [seq])
    data = json.loads(entry)
    change(data)
    text = AuditEntry(**data).canonical()
    con.execute("UPDATE audit_log SET entry = ? WHERE seq = ?", [text, seq])


def row_hash(con: duckdb.DuckDBPyConnection, seq: int) -> str:
    if seq == 0:
        return GENESIS_HASH
    return str(fetch_one(con, "SELECT hash FROM audit_log WHERE seq = ?", [seq])[0])


def append_event(con: duckdb.DuckDBPyConnection, entry: AuditEntry) -> None:
    """Write ``entry`` at its seq, chained onto the row before it, as the store would."""
    text = entry.canonical()
    prev = row_hash(con, entry.seq - 1)
    con.execute(
        "INSERT INTO audit_log VALUES (?, ?, ?, ?)",
        [entry.seq, text, prev, chain_hash(prev, text)],
    )


_T = TypeVar("_T")
#: What ``built_once`` built in this test process, by name.
_BUILT: dict[str, Any] = {}


def built_once(name: str, build: Callable[[], _T]) -> _T:
    """``build()`` once per test process (per xdist worker), under ``name``. A test module
    whose fixtures another test module imports is loaded twice (by pytest under its own
    name, and by the import as ``tests....``), each with its own module-scoped fixtures: a
    template built through this is built once for both."""
    if name not in _BUILT:
        _BUILT[name] = build()
    return cast(_T, _BUILT[name])
