"""`hilt simulate`: the whole loop, headless, on a labelled data set.

The end-to-end proof that feedback improves the model. A fresh workspace is created from the
use-case config; part of the labelled data is ingested with its labels (the seed, from which
the holdout is drawn), the rest without them (the pool, whose true labels only the simulated
reviewers know). Then, round by round:

1. the champion scores the pool cases still waiting for a person (predictions and
   explanations into the review queue);
2. a simulated reviewer takes ``batch`` cases from the queue with the chosen strategy, through
   the same store API as the review panel, and answers from the true label, wrong with
   probability ``reviewer_error``: accept when the model agrees, otherwise override;
3. the retraining notebook runs (papermill, MLflow, gate) on a snapshot of the store;
4. a simulated lead, who is not the run's author, promotes the challenger through the store
   if the store's gate passed it.

Round 0 is the first model, trained on the seed alone; only the store's champion scores, so
if the gate rejects it the simulation stops there (InputError). The holdout AUC of each
round's model is read from its MLflow run. Everything runs through the real store, notebooks
and registry, so the simulation is as slow as a few real retraining runs.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

from hilt.pipelines.config import Settings, load_settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.store import DecisionRequest, Identity, Store, holding, open_store_as
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.workspace import Workspace

Strategy = Literal["uncertainty", "random"]
#: How each round retrains: the retraining notebook through papermill (a real run, with
#: its executed notebook), or the same steps called in this process (no kernel start: what
#: many seeds need to stay quick).
Engine = Literal["notebook", "steps"]
ENGINES: tuple[str, ...] = ("notebook", "steps")
AUTHOR = "sim-data-scientist"
APPROVER = "sim-lead"
REVIEWER = "sim-reviewer"


@dataclass(frozen=True)
class SimulationConfig:
    rounds: int = 3
    batch: int = 100
    strategy: Strategy = "uncertainty"
    reviewer_error: float = 0.0
    seed: int = 0
    #: Share of the data ingested with its labels (the rest forms the pool).
    seed_fraction: float = 0.3
    #: Share of the seed that forms the holdout: most of it, so that the measure is steady
    #: and the first model starts from few labels, as a new use case does.
    holdout_fraction: float = 0.8
    engine: Engine = "notebook"

    def check(self) -> None:
        if self.rounds < 1:
            raise InputError("rounds must be at least 1")
        if self.batch < 1:
            raise InputError("batch must be at least 1")
        if self.strategy not in ("uncertainty", "random"):
            raise InputError("strategy must be uncertainty or random")
        if not 0.0 <= self.reviewer_error < 0.5:
            raise InputError("reviewer-error must be in [0, 0.5)")
        if not 0.05 <= self.seed_fraction <= 0.9:
            raise InputError("seed-fraction must be in [0.05, 0.9]")
        if not 0.05 <= self.holdout_fraction <= 0.8:
            raise InputError("holdout-fraction must be in [0.05, 0.8]")
        if self.engine not in ENGINES:
            raise InputError("engine must be notebook or steps")


@dataclass(frozen=True)
class RoundResult:
    round: int
    reviewed: int
    auc: float
    gate: str
    promoted: bool
    run_id: str


@dataclass
class SimulationResult:
    strategy: str
    rounds: list[RoundResult] = field(default_factory=list)
    plot: str = ""

    def summary(self) -> dict[str, object]:
        return {
            "rounds": [r.round for r in self.rounds],
            "auc": [round(r.auc, 4) for r in self.rounds],
            "strategy": self.strategy,
            "reviewed": [r.reviewed for r in self.rounds],
            "promoted": [r.promoted for r in self.rounds],
            "plot": self.plot,
        }

    def table(self) -> str:
        lines = ["round  reviewed  holdout AUC  gate      promoted  run"]
        for r in self.rounds:
            lines.append(
                f"{r.round:>5}  {r.reviewed:>8}  {r.auc:>11.4f}  {r.gate:<8}  "
                f"{'yes' if r.promoted else 'no':<8}  {r.run_id}"
            )
        return "\n".join(lines)


def _with_training_settings(text: str, holdout_fraction: float) -> str:
    """The config text with [training] holdout_fraction set (the rest kept as it was)."""
    line = f"holdout_fraction = {holdout_fraction}"
    if re.search(r"^holdout_fraction\s*=.*$", text, re.M):
        return re.sub(r"^holdout_fraction\s*=.*$", line, text, count=1, flags=re.M)
    match = re.search(r"^\[training\]\s*$", text, re.M)
    if match:
        return text[: match.end()] + "\n" + line + text[match.end() :]
    return text.rstrip("\n") + "\n\n[training]\n" + line + "\n"


def _in_seed(case_id: str, seed: int, fraction: float) -> bool:
    digest = hashlib.sha256(f"{seed}:{case_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") < fraction * 2**32


def _holdout_auc(run_id: str) -> float:
    from hilt.pipelines.loop.tracking.runs import run_info

    metrics = run_info(run_id).metrics
    for key in ("auc", "holdout_auc", "holdout.auc"):
        if key in metrics:
            return float(metrics[key])
    raise InputError(f"run {run_id} logged no holdout AUC")


def simulate(
    workspace: Workspace,
    config_path: Path,
    data_path: Path,
    sim: SimulationConfig,
    progress: Callable[[str], None] = lambda _: None,
    *,
    on_progress: Callable[[int], None] = lambda _: None,
) -> SimulationResult:
    """Run the loop; returns one result per round (round 0: the model from the seed).

    ``progress``: a line per round; ``on_progress``: called with 1 after each round. The
    workspace's MLflow store starts as a copy of MLflow's empty tables
    (``tracking.client.configure``), not MLflow's migrations again."""
    from hilt.pipelines.loop import promotion
    from hilt.pipelines.loop.model_registry import champion
    from hilt.pipelines.loop.tracking.client import configure

    sim.check()
    if workspace.exists():
        raise InputError(f"{workspace.root} already exists; a simulation needs a new workspace")
    settings = load_settings(config_path)
    id_col = settings.use_case.id_column
    target = settings.target.column
    data = pl.read_csv(data_path, infer_schema=False)
    if target not in data.columns:
        raise InputError(f"{data_path}: a simulation needs labelled data (column {target!r})")
    workspace.root.mkdir(parents=True, exist_ok=False)
    derived = workspace.root.parent / f".{workspace.root.name}-simulation.toml"
    derived.write_text(
        _with_training_settings(config_path.read_text(encoding="utf-8"), sim.holdout_fraction),
        encoding="utf-8",
    )
    workspace.root.rmdir()
    try:
        create_workspace(workspace, derived, holdout_salt=f"simulation-{sim.seed}")
    finally:
        derived.unlink(missing_ok=True)
    settings = workspace.settings()
    operator = open_store_as(workspace, Identity(operator=True))
    in_seed = pl.Series([_in_seed(c, sim.seed, sim.seed_fraction) for c in data[id_col]])
    seed_cases, pool = data.filter(in_seed), data.filter(~in_seed)
    truth = dict(zip(pool[id_col].to_list(), pool[target].to_list(), strict=True))
    users = ((AUTHOR, "data-scientist"), (APPROVER, "lead"), (REVIEWER, "reviewer"))
    with holding(workspace):
        for name, role in users:
            operator.add_user(name, role)
        operator.ingest_cases(seed_cases)
        operator.ingest_cases(pool.drop(target))
    progress(f"seed: {seed_cases.height} labelled cases; pool: {pool.height} without labels")

    result = SimulationResult(strategy=sim.strategy)
    reviewer = open_store_as(workspace, Identity(name=REVIEWER))
    rng = random.Random(sim.seed)
    reviewed = 0
    decided: set[str] = set()
    for round_no in range(sim.rounds + 1):
        if round_no > 0:
            # The scoring and the reviewers' leases and decisions run on one connection of
            # this process (``holding``: each still its own transaction and audit rows), not
            # a DuckDB start each.
            with holding(workspace):
                reviewed += _review(operator, reviewer, sim, settings, truth, decided, rng)
        # A retraining notebook's kernel is another process that opens the store itself:
        # only the steps engine, all in this process, retrains on the held connection.
        held: AbstractContextManager[None] = (
            holding(workspace) if sim.engine == "steps" else nullcontext()
        )
        with held:
            run_id, gate = _retrain(workspace, settings, sim.engine)
            configure(workspace, settings=settings)
            promoted = False
            if gate == "passed":
                promotion.promote(workspace, run_id, APPROVER)
                promoted = True
            elif champion(operator) is None:
                raise InputError(
                    f"round {round_no}: the store's gate rejected the first model (run "
                    f"{run_id}) and there is no champion: nothing may score into the review "
                    "queue; try more labelled cases (--seed-fraction) or a smaller holdout"
                )
        auc = _holdout_auc(run_id)
        result.rounds.append(RoundResult(round_no, reviewed, auc, gate, promoted, run_id))
        progress(f"round {round_no}: {reviewed} reviewed, holdout AUC {auc:.4f}, gate {gate}")
        on_progress(1)
    result.plot = str(_plot(result, workspace.root / f"simulation-{sim.strategy}.png"))
    return result


def _review(
    operator: Store,
    reviewer: Store,
    sim: SimulationConfig,
    settings: Settings,
    truth: dict[str, str],
    decided: set[str],
    rng: random.Random,
) -> int:
    """One round's reviewing: the store's champion scores the pool cases still waiting for
    a person, then the simulated reviewer decides up to ``sim.batch`` cases from the queue
    with the round's strategy, answering from the true label (wrong with probability
    ``sim.reviewer_error``). Returns how many were decided (their ids join ``decided``)."""
    from hilt.pipelines.loop.scoring import score_into_queue
    from hilt.pipelines.loop.steps import score as batch_scoring

    # Only the store's champion scores into the review queue.
    waiting = [c for c in truth if c not in decided]
    model = batch_scoring.load_model(operator, settings)
    score_into_queue(operator, model.model, waiting, settings, model.label)
    classes = settings.target.classes
    reason = next(iter(settings.review.reason_codes))
    done = 0
    for _ in range(sim.batch):
        leased = reviewer.next_case(sim.strategy)
        if leased is None:
            break
        case_id = leased.case.case_id
        answer = truth[case_id]
        if rng.random() < sim.reviewer_error:
            answer = next(c for c in classes if c != answer)
        predicted = leased.case.predictions[-1].label
        if answer == predicted:
            request = DecisionRequest(case_id=case_id, action="accept")
        else:
            request = DecisionRequest(
                case_id=case_id, action="override", final_label=answer, reason_code=reason
            )
        reviewer.record_decision(request)
        decided.add(case_id)
        done += 1
    return done


def _retrain(workspace: Workspace, settings: Settings, engine: Engine) -> tuple[str, str]:
    """One retraining as ``AUTHOR``: (MLflow run id, the store's gate verdict)."""
    from hilt.pipelines.loop import runner

    if engine == "notebook":
        run = runner.execute(
            workspace, runner.RunRequest(kind="retrain", parameters={}, author=AUTHOR)
        )
        return run.run_id, run.gate or "unknown"
    from hilt.pipelines.loop.model import TrainParams
    from hilt.pipelines.loop.steps import retrain, start
    from hilt.pipelines.loop.tracking.runs import finish_run

    store, author = runner.open_run_store(workspace, AUTHOR)
    runner.refuse_if_halted(store, "retraining")
    run_id = start.ensure_run(workspace, settings, "", author, "retrain")
    registration = retrain.run_in_process(store, run_id, settings, TrainParams())
    finish_run(run_id)
    return run_id, "passed" if registration.gate_passed else "rejected"


def _plot(result: SimulationResult, path: Path) -> Path:
    from hilt.pipelines.loop.plots import save_png, simulation_figure

    return save_png(simulation_figure([asdict(r) for r in result.rounds], result.strategy), path)
