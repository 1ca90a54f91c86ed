"""Runs and models: `hilt retrain`, `hilt score`, `hilt promote`, `hilt reject`,
`hilt simulate` and `hilt runs list`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hilt.pipelines.cli.common import (
    EXIT_FAILED,
    EXIT_USER_ERROR,
    AsUserOpt,
    WorkspaceOpt,
    fail,
    guard,
    name_value_pairs,
    quiet_mlflow,
    run_guard,
)
from hilt.pipelines.cli.progress import shown
from hilt.pipelines.workspace import Workspace

runs_app = typer.Typer(help="Retraining and scoring runs (MLflow).", no_args_is_help=True)

#: `hilt retrain` takes the notebook's parameters as extra arguments (-p NAME VALUE).
EXTRA_ARGS: dict[str, Any] = {"allow_extra_args": True, "ignore_unknown_options": True}


def retrain(
    ctx: typer.Context,
    workspace: WorkspaceOpt = None,
    as_user: AsUserOpt = None,
    reproduce: Annotated[
        str | None,
        typer.Option(
            help="Re-run this run with its parameters on its snapshot file; exit 0 only if "
            "the model's sha256 matches.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Retrain: snapshot, train, evaluate, gate, log to MLflow, register the challenger.

    Parameters of notebooks/retrain.ipynb as -p NAME VALUE (repeatable), e.g.
    -p max_depth 4 -p eta 0.1; `papermill --help-notebook notebooks/retrain.ipynb` lists them.
    On a Dask cluster: -p engine dask -p scheduler tcp://HOST:PORT (or hilt.toml
    [training]); a Dask run's --reproduce takes -p scheduler and needs the same cluster shape.

    Exit 0 when the run succeeded, whether or not the gate passed (a rejected challenger is
    a result, not a failure); 1 when the run failed (its partial notebook is kept in runs/)
    or a reproduction gives another model; 2 when refused before anything ran (bad
    parameters, halted system, unknown user).
    """
    from hilt.pipelines.loop import runner

    ws = Workspace.at(workspace)
    quiet_mlflow()
    given = name_value_pairs(list(ctx.args))
    if reproduce is not None:
        scheduler = given.pop("scheduler", "")
        if given:
            fail(
                "--reproduce takes the original run's parameters; do not pass -p "
                "(except -p scheduler for a Dask run)",
                EXIT_USER_ERROR,
            )
        rep = run_guard(lambda: runner.reproduce(ws, reproduce, as_user, scheduler))
        typer.echo(f"reproduction run {rep.result.run_id} of run {rep.original_run_id}")
        typer.echo(f"snapshot sha256 {rep.snapshot_sha256}")
        typer.echo(f"original model sha256   {rep.original_model_sha256}")
        typer.echo(f"reproduced model sha256 {rep.result.model_sha256}")
        typer.echo(f"notebook {rep.result.notebook}")
        if not rep.matches:
            fail(
                f"the model differs: original {rep.original_model_sha256}, "
                f"reproduced {rep.result.model_sha256}",
                EXIT_FAILED,
            )
        typer.echo("identical: the run is reproducible")
        return
    request = runner.RunRequest("retrain", given, author=as_user, progress=shown())
    result = run_guard(lambda: runner.execute(ws, request))
    typer.echo(f"run {result.run_id} (retrain, as {result.author}, {result.seconds:.1f} s)")
    typer.echo(f"model sha256 {result.model_sha256}")
    if result.version is None:
        typer.echo(f"gate {result.gate}; not registered (register=false)")
    elif result.gate == "passed":
        typer.echo(
            f"gate passed: version {result.version} is the challenger; a lead who did not "
            f"train it approves it with `hilt promote {result.run_id} --as LEAD`"
        )
    else:
        typer.echo(
            f"gate rejected: the store rejected version {result.version} and the champion is "
            "unchanged (the run itself succeeded: exit 0)"
        )
    typer.echo(f"notebook {result.notebook}")


def score(
    file: Annotated[Path, typer.Argument(help="New cases as .csv or .parquet.")],
    workspace: WorkspaceOpt = None,
    as_user: AsUserOpt = None,
    model_version: Annotated[
        str,
        typer.Option(help="Registered version to score with (default: the champion)."),
    ] = "",
) -> None:
    """Score new cases with the champion into the review queue (refused while halted).

    The store's model registry decides which model may score: its champion, or a version a
    lead allowed for shadow scoring (its predictions kept apart, never queued). Any other
    version, or a model in MLflow whose sha256 is not the one the store registered, is
    refused (exit 2) before anything is ingested; the store refuses such predictions itself
    too.
    """
    from hilt.pipelines.loop import runner
    from hilt.pipelines.loop.steps.score import SHADOW

    ws = Workspace.at(workspace)
    quiet_mlflow()
    params = {"input_path": str(file.expanduser().resolve()), "model_version": model_version}
    request = runner.RunRequest("score", params, author=as_user, progress=shown())
    result = run_guard(lambda: runner.execute(ws, request))
    typer.echo(f"run {result.run_id} (score, as {result.author}, {result.seconds:.1f} s)")
    ingested = int(result.metrics.get("cases_ingested", 0))
    added = int(result.metrics.get("predictions_added", 0))
    model = result.logged_params.get("model_version", "?")
    if result.logged_params.get("scored_into") == SHADOW:
        where = "as shadow predictions (kept apart, never queued for review)"
    else:
        where = "into the review queue"
    typer.echo(f"{ingested} cases ingested, {added} scored by {model} {where}")
    typer.echo(f"notebook {result.notebook}")


def promote(
    run_id: Annotated[str, typer.Argument(help="The retraining run whose model to promote.")],
    as_user: Annotated[
        str, typer.Option("--as", help="The approving lead (not the run's author).")
    ],
    workspace: WorkspaceOpt = None,
) -> None:
    """Approve a challenger: its version becomes the champion (a lead who did not train it).

    The store's model registry decides (lead role, four eyes, the challenger); MLflow's
    aliases follow it."""
    from hilt.pipelines.loop.promotion import promote as do_promote

    ws = Workspace.at(workspace)
    quiet_mlflow()
    p = guard(lambda: do_promote(ws, run_id, as_user))
    before = f"version {p.previous_version}" if p.previous_version else "none"
    typer.echo(
        f"{p.registered_name} version {p.version} is the champion (was: {before}); "
        f"approved by {p.approver}, trained by {p.author}; audit seq {p.audit_seq}"
    )
    mirror_warning(p.mirror_problem)


def reject(
    run_id: Annotated[str, typer.Argument(help="The retraining run whose challenger to reject.")],
    as_user: Annotated[
        str, typer.Option("--as", help="The rejecting lead (not the run's author).")
    ],
    reason: Annotated[str, typer.Option(help="Why (audited as its sha256).")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Reject a challenger: it stops being the challenger (a lead who did not train it).

    The store's model registry decides (lead role, four eyes, the challenger); MLflow's
    aliases follow it."""
    from hilt.pipelines.loop.promotion import reject as do_reject

    ws = Workspace.at(workspace)
    quiet_mlflow()
    r = guard(lambda: do_reject(ws, run_id, as_user, reason))
    typer.echo(
        f"{r.registered_name} version {r.version} rejected by {r.approver} (trained by "
        f"{r.author}); audit seq {r.audit_seq}"
    )
    mirror_warning(r.mirror_problem)


def mirror_warning(problem: str | None) -> None:
    """The store decided; say so on standard error if MLflow's aliases could not follow."""
    if problem is not None:
        typer.echo(
            f"warning: the store's registry decided, but MLflow's aliases were not updated "
            f"({problem}); `hilt audit verify` reports the disagreement",
            err=True,
        )


def simulate(
    workspace: WorkspaceOpt = None,
    rounds: Annotated[int, typer.Option(help="Review-and-retrain rounds after round 0.")] = 3,
    batch: Annotated[int, typer.Option(help="Cases the simulated reviewers decide per round.")] = (
        100
    ),
    strategy: Annotated[
        str,
        typer.Option(help="Queue strategy: uncertainty or random, or both: uncertainty,random."),
    ] = "uncertainty",
    seeds: Annotated[
        int,
        typer.Option(
            help="Repeat over this many seeds (--seed, --seed + 1, ...): mean and spread per "
            "round and strategy, one workspace each under --workspace."
        ),
    ] = 1,
    reviewer_error: Annotated[
        float, typer.Option(help="Probability that a simulated reviewer answers wrongly.")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the split, the holdout and the errors.")] = 0,
    seed_fraction: Annotated[
        float, typer.Option(help="Share of the data ingested with its labels.")
    ] = 0.3,
    holdout_fraction: Annotated[
        float, typer.Option(help="Share of those labelled cases kept as the holdout.")
    ] = 0.8,
    engine: Annotated[
        str,
        typer.Option(
            help="Retrain each round with the notebook (papermill, an executed notebook per "
            "run) or with its steps in this process (steps: no kernel start, quicker)."
        ),
    ] = "notebook",
    config: Annotated[Path, typer.Option(help="Use-case config.")] = Path("data/hilt.toml"),
    data: Annotated[Path, typer.Option(help="A labelled data set.")] = Path(
        "data/german_credit.csv"
    ),
) -> None:
    """Run the whole loop headless on a labelled data set: score, simulated reviewers answer
    from the true label, retrain, a lead promotes. Prints the holdout AUC per round (with
    several seeds or strategies: its mean and spread per strategy), writes a PNG plot, and
    ends with one JSON line."""
    import json

    from hilt.pipelines.cli.progress import progress
    from hilt.pipelines.loop.simulation import ENGINES, SimulationConfig
    from hilt.pipelines.loop.simulation import simulate as run_simulation
    from hilt.pipelines.loop.simulation_seeds import parse_strategies, simulate_seeds

    ws = Workspace.at(workspace or "workspace/simulation")
    quiet_mlflow()
    strategies = guard(lambda: parse_strategies(strategy))
    if engine not in ENGINES:
        fail("engine must be notebook or steps", EXIT_USER_ERROR)
    sim = SimulationConfig(
        rounds=rounds,
        batch=batch,
        strategy=strategies[0],
        reviewer_error=reviewer_error,
        seed=seed,
        seed_fraction=seed_fraction,
        holdout_fraction=holdout_fraction,
        engine="steps" if engine == "steps" else "notebook",
    )
    lines = lambda m: typer.echo(m, err=True)  # noqa: E731
    total = (rounds + 1) * max(seeds, 1) * len(strategies)
    with progress("simulating", total=total, unit="rounds") as advance:
        if seeds == 1 and len(strategies) == 1:
            result = run_guard(
                lambda: run_simulation(ws, config, data, sim, lines, on_progress=advance)
            )
            table, plot, summary = result.table(), result.plot, result.summary()
        else:
            comparison = run_guard(
                lambda: simulate_seeds(
                    ws.root,
                    config,
                    data,
                    sim,
                    seeds=seeds,
                    strategies=strategies,
                    progress=lines,
                    on_progress=advance,
                )
            )
            table, plot, summary = comparison.table(), comparison.plot, comparison.summary()
    typer.echo(table)
    typer.echo(f"plot: {plot}")
    typer.echo(json.dumps(summary))


@runs_app.command("list")
def runs_list(
    workspace: WorkspaceOpt = None,
    limit: Annotated[int, typer.Option(help="At most this many runs, newest first.", min=1)] = 50,
) -> None:
    """The workspace's runs: id, kind, status, author, start, snapshot seq, model, gate, alias."""

    def run() -> list[list[str]]:
        from hilt.pipelines.loop.tracking.client import configure
        from hilt.pipelines.loop.tracking.runs import list_runs
        from hilt.pipelines.loop.tracking.tags import TAG_GATE, TAG_KIND, TAG_REPRODUCES

        ws.require()
        settings = ws.settings()
        configure(ws, settings=settings)
        rows = []
        for r in list_runs(settings, max_results=limit):
            rows.append(
                [
                    r.run_id,
                    "reproduce" if r.tags.get(TAG_REPRODUCES) else r.tags.get(TAG_KIND, "-"),
                    r.status,
                    r.author or "-",
                    r.start_time.strftime("%Y-%m-%d %H:%M:%SZ"),
                    str(r.snapshot_seq) if r.snapshot_seq is not None else "-",
                    (r.model_sha256 or "-")[:12],
                    r.tags.get(TAG_GATE, "-"),
                    ",".join(r.aliases) or "-",
                ]
            )
        return rows

    ws = Workspace.at(workspace)
    quiet_mlflow()
    rows = guard(run)
    header = ["run", "kind", "status", "author", "start", "seq", "model", "gate", "alias"]
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=False)]
    for line in [header, *rows]:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
