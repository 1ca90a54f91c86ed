"""The demo workspace, set up once through the real loop (what `hilt demo` runs).

``set_up_demo(ws, config, data)``:

1. creates the workspace if it does not exist (a fixed holdout salt: every demo shows the
   same split and the same first model);
2. splits the data set into history (the first 70 %, outcomes known), ingested, and new
   applications (the rest, outcomes withheld), written to ``incoming/`` in the workspace;
3. retrains on the history as the config's first data scientist (the retraining notebook,
   MLflow, the store's registry) and has a lead who did not train the model promote it
   through the store (if the store's gate rejects it, the demo stops: only a champion
   scores);
4. scores the new applications into the review queue (the scoring notebook), then shreds
   their clear file: their rows are in the store now, personal data sealed;
5. adds gold cases scored by the champion;
6. runs post-market monitoring once (the monitoring notebook: the new applications against
   the champion's training data) and signs an audit checkpoint, so that the store's go-live
   check (``hilt check go-live``) finds everything it asks for;
7. issues API tokens: the data scientist as admin, and the config's data-protection officer.

Each step runs only if its result is not there yet, so a second call only issues tokens
(and signs a checkpoint when the newest is older than ``[governance]`` allows).
Each step done is passed to ``on_step`` as it finishes (the CLI prints it), and returned in
the ``DemoSetup``.

Importing this module imports neither mlflow nor xgboost.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.promotion import Promotion
from hilt.pipelines.loop.runner import RunResult
from hilt.pipelines.store.audit_records import CheckpointRecord
from hilt.pipelines.store.governance_records import GoLiveReport
from hilt.pipelines.store.oversight_records import GoldResult
from hilt.pipelines.workspace import Workspace

#: The demo's holdout salt: every demo shows the same split and the same first model.
DEMO_HOLDOUT_SALT = "hilt-demo"
#: Share of the data set ingested as history, with known outcomes.
HISTORY_SHARE = 0.7
#: Where the new applications wait to be scored, in the workspace.
INCOMING = Path("incoming") / "new-applications.csv"
#: Gold cases the demo adds once it has a champion.
DEMO_GOLD_CASES = 20


@dataclass(frozen=True)
class WorkspaceCreated:
    root: Path


@dataclass(frozen=True)
class HistoryLoaded:
    #: Past applications ingested with their outcomes.
    rows: int
    #: New applications, outcomes withheld, written to ``incoming``.
    new_applications: int
    incoming: Path


@dataclass(frozen=True)
class Retrained:
    """The first model, trained by ``run.author``; ``run.gate`` says whether it passed."""

    run: RunResult


@dataclass(frozen=True)
class Promoted:
    promotion: Promotion


@dataclass(frozen=True)
class Scored:
    """The new applications scored into the review queue; their clear file is shredded
    right after."""

    run: RunResult


@dataclass(frozen=True)
class GoldAdded:
    gold: GoldResult


@dataclass(frozen=True)
class Monitored:
    """The first monitoring run; ``run.notebook`` is its record."""

    run: RunResult


@dataclass(frozen=True)
class Checkpointed:
    checkpoint: CheckpointRecord


DemoStep = (
    WorkspaceCreated
    | HistoryLoaded
    | Retrained
    | Promoted
    | Scored
    | GoldAdded
    | Monitored
    | Checkpointed
)


@dataclass(frozen=True)
class IssuedToken:
    """A new API token (shown once; the store keeps only its hash)."""

    user: str
    role: str
    token: str


@dataclass(frozen=True)
class DemoSetup:
    workspace: Path
    #: What this call did, in order (nothing on a workspace set up before).
    steps: tuple[DemoStep, ...]
    #: Cases waiting in the shared review queue.
    waiting: int
    tokens: tuple[IssuedToken, ...]
    #: The store's go-live check after the set-up (``hilt check go-live``).
    go_live: GoLiveReport


def _ignore(step: DemoStep) -> None:
    pass


def set_up_demo(
    ws: Workspace,
    config: Path,
    data: Path,
    *,
    on_step: Callable[[DemoStep], None] = _ignore,
    monitor: bool = True,
) -> DemoSetup:
    """Set up the demo workspace ``ws`` from the use-case ``config`` and the labelled
    ``data`` set, as far as it is not set up yet (see the module doc). ``monitor=False``
    leaves out step 6's monitoring run (for benchmarks/monitor.py, which runs `hilt
    monitor` itself next; the go-live check then lists monitoring as missing)."""
    from hilt.pipelines.loop import promotion, runner
    from hilt.pipelines.loop.model_registry import champion
    from hilt.pipelines.loop.oversight import add_gold_with_champion
    from hilt.pipelines.loop.tracking.client import configure
    from hilt.pipelines.store import Identity, open_store_as
    from hilt.pipelines.store.create import create_workspace
    from hilt.pipelines.store.ops.removal import shred_file
    from hilt.pipelines.tables import read_table

    steps: list[DemoStep] = []

    def done(step: DemoStep) -> None:
        steps.append(step)
        on_step(step)

    if not ws.exists():
        create_workspace(ws, config, holdout_salt=DEMO_HOLDOUT_SALT)
        done(WorkspaceCreated(ws.root))
    with closing(open_store_as(ws, Identity(operator=True))) as store:
        settings = ws.settings()
        users = settings.access.users
        author = next((u for u, r in users.items() if "data-scientist" in r), None)
        approver = next((u for u, r in users.items() if "lead" in r and u != author), None)
        if author is None or approver is None:
            raise InputError("the demo needs a data-scientist and a lead in access.users")
        incoming = ws.root / INCOMING
        if store.counts()["cases"] == 0:
            frame = read_table(data)
            cut = int(frame.height * HISTORY_SHARE)
            history = store.ingest_cases(frame.head(cut))
            incoming.parent.mkdir(parents=True, exist_ok=True)
            frame.slice(cut).drop(settings.target.column).write_csv(incoming)
            done(HistoryLoaded(history.rows, frame.height - cut, incoming))
        configure(ws, settings=settings)
        if champion(store) is None:
            trained = runner.execute(ws, runner.RunRequest("retrain", {}, author=author))
            done(Retrained(trained))
            if trained.gate != "passed":
                raise InputError(
                    f"the store's gate rejected the first model (run {trained.run_id}, notebook "
                    f"{trained.notebook}): only a champion scores into the review queue"
                )
            done(Promoted(promotion.promote(ws, trained.run_id, approver)))
        if store.counts()["predictions"] == 0 and incoming.exists():
            params = {"input_path": str(incoming), "model_version": ""}
            done(Scored(runner.execute(ws, runner.RunRequest("score", params, author=author))))
            # Its rows are in the store now, personal data sealed; no clear copy stays behind.
            shred_file(incoming)
        if store.counts()["gold_cases"] == 0 and champion(store) is not None:
            done(GoldAdded(add_gold_with_champion(ws, DEMO_GOLD_CASES, author)))
        if monitor and champion(store) is not None and not store.monitoring_runs(1):
            done(Monitored(runner.execute(ws, runner.RunRequest("monitor", {}, author=author))))
        go_live = store.go_live_check()
        if any(item.check == "checkpoint" and not item.ok for item in go_live.items):
            done(Checkpointed(store.checkpoint()))
            go_live = store.go_live_check()
        waiting = store.queue_status().waiting
        tokens = [IssuedToken(author, "admin", store.add_user(author, "admin").token)]
        dpo = next((u for u, r in users.items() if "dpo" in r), None)
        if dpo is not None:
            tokens.append(IssuedToken(dpo, "dpo", store.add_user(dpo, "dpo").token))
    return DemoSetup(ws.root, tuple(steps), waiting, tuple(tokens), go_live)
