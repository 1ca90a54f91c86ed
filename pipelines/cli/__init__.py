"""The `hilt` command.

Every command takes ``--workspace DIR`` (default: $HILT_WORKSPACE, else ./workspace).
Exit codes: 0 done; 1 the audit log does not verify, a retraining or scoring run failed (its
partial notebook is kept), or a reproduction gave another model; 2 a user error or a refusal
(bad input or parameters, bad config, unknown user or role, store busy, promotion refused),
with a one-line message and no stack trace, and nothing written; 3 an internal error of the
store, or a DuckDB error that no hilt code wrapped, also one line (set HILT_DEBUG=1 to see
its trace); 4 refused because a lead halted the system (a run refused so is audited as
``run.refused``; a run stopped by a halt while it ran exits 4 too), until a second lead
resumes it.

Commands run on the workspace folder act as the operating-system user, with the admin role:
whoever can write the workspace's files holds the store anyway, and the audit log records
which login did it (``os:<login>``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeGuard, TypeVar

import typer

from hilt.pipelines.errors import HiltError, InputError, StoreError, SystemHalted
from hilt.pipelines.tables import read_table
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:
    import duckdb

    from hilt.pipelines.store import Store
    from hilt.pipelines.store.records import (
        CheckpointRecord,
        RetentionReport,
        SubjectAction,
        TokenGrant,
        VerifyReport,
    )

T = TypeVar("T")

app = typer.Typer(
    name="hilt",
    help="hilt: human-in-the-loop review and retraining of ML decisions, with a "
    "tamper-evident audit log.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
store_app = typer.Typer(help="The feedback store.", no_args_is_help=True)
users_app = typer.Typer(help="Users and API tokens.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
app.add_typer(store_app, name="store")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace folder (default: $HILT_WORKSPACE, else ./workspace).",
        show_default=False,
    ),
]


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


#: Exit code of a command refused because the system is halted.
EXIT_HALTED = 4


def _driver_error(e: Exception) -> TypeGuard[duckdb.Error]:
    """Whether ``e`` is a DuckDB error that no hilt code wrapped (duckdb is imported lazily:
    if it was never imported, no error can come from it)."""
    duckdb = sys.modules.get("duckdb")
    return duckdb is not None and isinstance(e, duckdb.Error)


def _guard(fn: Callable[[], T]) -> T:
    """Run a command body; user errors become one line and exit 2, never a trace; store
    errors, and any DuckDB error no hilt code wrapped, one line and exit 3 (the trace only
    with HILT_DEBUG=1)."""
    try:
        return fn()
    except SystemHalted as e:
        _fail(str(e), EXIT_HALTED)
    except StoreError as e:
        if os.environ.get("HILT_DEBUG"):
            raise
        code = 2 if e.kind == "busy" else 3
        _fail(str(e), code)
    except HiltError as e:
        _fail(str(e), 2)
    except Exception as e:
        if not _driver_error(e) or os.environ.get("HILT_DEBUG"):
            raise
        from hilt.pipelines.store.sql import describe

        _fail(f"the store failed ({describe(e)}); set HILT_DEBUG=1 to see the trace", 3)


def _acting(ws: Workspace, roles: set[str], what: str) -> Store:
    """The store for a scheduler's command: through the store service with $HILT_TOKEN when
    one owns the workspace, else embedded as the operating-system user (admin)."""
    from hilt.pipelines.store import Identity, Need, open_store_as

    return open_store_as(ws, Identity(operator=True), need=Need(frozenset(roles), what))


def _operator(ws: Workspace) -> Store:
    """The workspace's store, acting as the operating-system user with the admin role."""
    from hilt.pipelines.store import Identity, open_store_as

    return open_store_as(ws, Identity(operator=True))


@app.command()
def init(
    config: Annotated[Path, typer.Option("--config", "-c", help="The use case's hilt.toml.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Create a workspace: store, signing key, pinned public key, users from the config."""
    from hilt.pipelines.store.create import create_workspace

    ws = Workspace.at(workspace)
    public = _guard(lambda: create_workspace(ws, config))
    typer.echo(f"created workspace {ws.root}")
    typer.echo(f"audit public key (pinned in {ws.config_path.name}; keep a copy): {public}")


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(help="Cases as .csv or .parquet.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Add cases; an optional target column seeds the training data (label source 'original')."""
    ws = Workspace.at(workspace)

    def run() -> str:
        frame = read_table(file)
        store = _acting(ws, {"admin", "system", "data-scientist"}, "ingest cases")
        try:
            result = store.ingest_cases(frame)
        finally:
            store.close()
        return (
            f"ingested {result.rows} cases as audit seq {result.seq} "
            f"(batch digest sha256:{result.digest})"
        )

    typer.echo(_guard(run))


@store_app.command("serve")
def store_serve(
    workspace: WorkspaceOpt = None,
    port: Annotated[int, typer.Option(help="TCP port.")] = 8765,
    host: Annotated[str, typer.Option(help="Interface; keep 127.0.0.1 behind a proxy.")] = (
        "127.0.0.1"
    ),
) -> None:
    """Own the store and serve it over HTTP (OpenAPI at /openapi.json) until Ctrl-C."""
    from hilt.pipelines.store.modes.service import serve

    ws = Workspace.at(workspace)

    def run() -> None:
        ws.require()
        typer.echo(f"hilt store service for {ws.root} at http://{host}:{port}", err=True)
        serve(ws, host=host, port=port)

    _guard(run)


@app.command()
def serve(
    workspace: WorkspaceOpt = None,
    port: Annotated[int, typer.Option(help="Dashboard (Voila) port.")] = 8866,
    store_port: Annotated[int, typer.Option(help="Store service port.")] = 8765,
    host: Annotated[
        str, typer.Option(help="Interface; keep 127.0.0.1, put a sign-in proxy in front.")
    ] = "127.0.0.1",
) -> None:
    """Serve the dashboards: the store service plus Voila, until Ctrl-C."""
    from hilt.pipelines.dashboards.server import serve_until_stopped, start_dashboards

    ws = Workspace.at(workspace)
    server = _guard(lambda: start_dashboards(ws, host=host, port=port, store_port=store_port))
    typer.echo(f"store service:     http://{host}:{store_port}")
    typer.echo(f"review dashboard:  {server.dashboard_url('review')}")
    typer.echo(f"audit dashboard:   {server.dashboard_url('audit')}")
    typer.echo(f"oversight (leads): {server.dashboard_url('oversight')}")
    typer.echo("(Ctrl-C stops both)")
    serve_until_stopped(server)


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option(help="Role to grant.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Grant NAME a role and print a new API token for NAME (shown once)."""
    ws = Workspace.at(workspace)

    def run() -> TokenGrant:
        store = _acting(ws, {"admin"}, "add users")
        try:
            return store.add_user(name, role)
        finally:
            store.close()

    grant = _guard(run)
    typer.echo(f"user {grant.user} (roles: {', '.join(grant.roles)})")
    typer.echo(f"token (shown once, only its hash is stored): {grant.token}")


@audit_app.command("verify")
def audit_verify(
    workspace: WorkspaceOpt = None,
    public_key: Annotated[
        str | None,
        typer.Option(help="Verify checkpoints with this key instead of the one in hilt.toml."),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="Verify a store that a service owns: fetch its log from this URL."),
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="API token for --url (default: $HILT_TOKEN).")
    ] = None,
    checkpoints: Annotated[
        Path | None,
        typer.Option(help="Checkpoint file (default: the workspace's audit/checkpoints.jsonl)."),
    ] = None,
) -> None:
    """Check the hash chain, every signed checkpoint, and the records against their events.

    On the workspace's file by default. With --url the log and the decisions are fetched
    through the API and checked here. Auditors keep their own copies of the public key and
    of the checkpoint file and pass them with --public-key and --checkpoints: whoever can
    rewrite the workspace can rewrite its copies too.
    """
    ws = Workspace.at(workspace)

    def run() -> VerifyReport:
        from hilt.pipelines.store import TOKEN_ENV, Identity, open_store_as
        from hilt.pipelines.store.audit.remote_verify import verify_remote
        from hilt.pipelines.store.audit.verify import verify_file
        from hilt.pipelines.store.modes.locking import service_info

        served = ws.exists() and service_info(ws.service_file) is not None
        # A service owns the file and we hold a token: verify what it serves, here, with
        # our own key. Otherwise the file itself.
        if url is None and not (served and (token or os.environ.get(TOKEN_ENV))):
            return verify_file(ws, public_key, checkpoints)
        key = public_key or (ws.settings().audit.public_key if ws.exists() else None)
        store = open_store_as(url or ws, Identity(token=token))
        try:
            return verify_remote(store, key, checkpoints or ws.checkpoints_path)
        finally:
            store.close()

    report = _guard(run)
    typer.echo(report.summary())
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint(workspace: WorkspaceOpt = None) -> None:
    """Sign (seq, head hash, time) and append it to the checkpoint file outside the database."""
    ws = Workspace.at(workspace)

    def run() -> CheckpointRecord:
        store = _acting(ws, {"admin", "system", "lead"}, "sign checkpoints")
        try:
            return store.checkpoint()
        finally:
            store.close()

    cp = _guard(run)
    typer.echo(f"checkpoint seq {cp.seq} head {cp.head_hash} at {cp.time}")


#: Gold cases the demo adds once it has a champion.
DEMO_GOLD_CASES = 20


@app.command()
def demo(
    workspace: WorkspaceOpt = None,
    config: Annotated[Path, typer.Option(help="Use-case config.")] = Path("data/hilt.toml"),
    data: Annotated[Path, typer.Option(help="Cases to load.")] = Path("data/german_credit.csv"),
    port: Annotated[int, typer.Option(help="Dashboard (Voila) port.")] = 8866,
    store_port: Annotated[int, typer.Option(help="Store service port.")] = 8765,
    serve_dashboards: Annotated[bool, typer.Option("--serve/--no-serve")] = True,
) -> None:
    """Set up the demo workspace once, through the real loop, then serve the dashboards.

    The data set is split into history (the first 70 %, outcomes known) and new applications
    (the rest, outcomes withheld). A data scientist of the config retrains on the history
    (the retraining notebook, MLflow), a lead who did not train it promotes the model if it
    passed the gate, and the scoring notebook scores the new applications into the queue."""
    from hilt.pipelines.store.create import create_workspace

    ws = Workspace.at(workspace or "workspace/demo")
    _quiet_mlflow()

    def run() -> list[tuple[str, str, str]]:
        from hilt.pipelines.loop import promotion, runner, tracking

        if not ws.exists():
            # A fixed holdout salt: every demo shows the same split and the same first model.
            create_workspace(ws, config, holdout_salt="hilt-demo")
            typer.echo(f"created demo workspace {ws.root}")
        store = _operator(ws)
        settings = ws.settings()
        users = settings.access.users
        author = next((u for u, r in users.items() if "data-scientist" in r), None)
        approver = next((u for u, r in users.items() if "lead" in r and u != author), None)
        if author is None or approver is None:
            raise InputError("the demo needs a data-scientist and a lead in access.users")
        incoming = ws.root / "incoming" / "new-applications.csv"
        if store.counts()["cases"] == 0:
            frame = read_table(data)
            cut = int(frame.height * 0.7)
            history = store.ingest_cases(frame.head(cut))
            incoming.parent.mkdir(parents=True, exist_ok=True)
            frame.slice(cut).drop(settings.target.column).write_csv(incoming)
            typer.echo(
                f"loaded {history.rows} past applications with known outcomes; "
                f"{frame.height - cut} new ones wait in {incoming.relative_to(ws.root)}"
            )
        tracking.configure(ws, settings=settings)
        version = tracking.champion_version(settings)
        if version is None:
            trained = runner.execute(ws, runner.RunRequest("retrain", {}, author=author))
            typer.echo(f"retrained as {author}: run {trained.run_id}, gate {trained.gate}")
            if trained.gate == "passed":
                promotion.promote(ws, trained.run_id, approver)
                typer.echo(f"promoted to champion by {approver} (four eyes)")
            else:
                typer.echo("the gate rejected the first model; the demo scores with it anyway")
                version = trained.version
        if store.counts()["predictions"] == 0 and incoming.exists():
            params = {"input_path": str(incoming), "model_version": version or ""}
            scored = runner.execute(ws, runner.RunRequest("score", params, author=author))
            typer.echo(f"scored the new applications: run {scored.run_id}")
            # Its rows are in the store now, personal data sealed; no clear copy stays behind.
            from hilt.pipelines.store.ops.removal import shred_file

            shred_file(incoming)
        if store.counts()["gold_cases"] == 0 and tracking.champion_version(settings):
            from hilt.pipelines.loop.oversight import add_gold_with_champion

            gold = add_gold_with_champion(ws, DEMO_GOLD_CASES, author)
            typer.echo(
                f"{gold.added} gold cases (known answers, the champion wrong on "
                f"{gold.model_wrong}) are mixed into the reviewers' queues"
            )
        status = store.queue_status()
        typer.echo(f"review queue: {status.waiting} cases waiting")
        grant = store.add_user(author, "admin")
        tokens = [(author, "admin", grant.token)]
        dpo = next((u for u, r in users.items() if "dpo" in r), None)
        if dpo is not None:
            tokens.append((dpo, "dpo", store.add_user(dpo, "dpo").token))
        return tokens

    for name, role, token in _run_guard(run):
        typer.echo(f"API token for {name} ({role}): {token}")

    if not serve_dashboards:
        return
    from hilt.pipelines.dashboards.server import serve_until_stopped, start_dashboards

    server = _guard(lambda: start_dashboards(ws, port=port, store_port=store_port))
    typer.echo("")
    typer.echo(f"store service:     http://127.0.0.1:{store_port}   (OpenAPI: /openapi.json)")
    typer.echo(f"review dashboard:  {server.dashboard_url('review')}")
    typer.echo(f"audit dashboard:   {server.dashboard_url('audit')}")
    typer.echo(f"oversight (leads): {server.dashboard_url('oversight')}")
    typer.echo("(the dashboard acts as the workspace's local user; Ctrl-C stops everything)")
    serve_until_stopped(server)


# ---------------------------------------------------------------------------- runs
runs_app = typer.Typer(help="Retraining and scoring runs (MLflow).", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

AsUserOpt = Annotated[
    str | None,
    typer.Option(
        "--as",
        help="The hilt user the run acts as (default: the token's owner when a store service "
        "owns the workspace, else the operating-system user with the admin role).",
        show_default=False,
    ),
]


def _run_guard(fn: Callable[[], T]) -> T:
    """Like _guard; a run that failed (its notebook raised, its kernel died) exits 1."""
    from hilt.pipelines.loop.runner import RunFailed

    def body() -> T:
        try:
            return fn()
        except RunFailed as e:
            _fail(str(e), EXIT_HALTED if e.error == SystemHalted.__name__ else 1)

    return _guard(body)


def _quiet_mlflow() -> None:
    """MLflow's INFO lines (creating its tables, validating examples) are not for schedulers."""
    import logging

    # Read by mlflow when it is imported (here and in the kernels papermill starts).
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def _name_value_pairs(args: list[str]) -> dict[str, str]:
    """``-p NAME VALUE`` / ``--param NAME VALUE`` pairs (papermill's form), nothing else."""
    given: dict[str, str] = {}
    i = 0
    while i < len(args):
        if args[i] not in ("-p", "--param"):
            _fail(f"unexpected argument {args[i]!r} (parameters: -p NAME VALUE)", 2)
        if i + 2 >= len(args):
            _fail(f"{args[i]} needs a NAME and a VALUE", 2)
        name, value = args[i + 1], args[i + 2]
        if name in given:
            _fail(f"parameter {name} is given twice", 2)
        given[name] = value
        i += 3
    return given


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
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

    Exit 0 when the run succeeded, whether or not the gate passed (a rejected challenger is
    a result, not a failure); 1 when the run failed (its partial notebook is kept in runs/)
    or a reproduction gives another model; 2 when refused before anything ran (bad
    parameters, halted system, unknown user).
    """
    from hilt.pipelines.loop import runner

    ws = Workspace.at(workspace)
    _quiet_mlflow()
    given = _name_value_pairs(list(ctx.args))
    if reproduce is not None:
        if given:
            _fail("--reproduce takes the original run's parameters; do not pass -p", 2)
        rep = _run_guard(lambda: runner.reproduce(ws, reproduce, as_user))
        typer.echo(f"reproduction run {rep.result.run_id} of run {rep.original_run_id}")
        typer.echo(f"snapshot sha256 {rep.snapshot_sha256}")
        typer.echo(f"original model sha256   {rep.original_model_sha256}")
        typer.echo(f"reproduced model sha256 {rep.result.model_sha256}")
        typer.echo(f"notebook {rep.result.notebook}")
        if not rep.matches:
            _fail(
                f"the model differs: original {rep.original_model_sha256}, "
                f"reproduced {rep.result.model_sha256}",
                1,
            )
        typer.echo("identical: the run is reproducible")
        return
    result = _run_guard(
        lambda: runner.execute(ws, runner.RunRequest("retrain", given, author=as_user))
    )
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
            f"gate rejected: version {result.version} is tagged rejected and the champion is "
            "unchanged (the run itself succeeded: exit 0)"
        )
    typer.echo(f"notebook {result.notebook}")


@app.command()
def score(
    file: Annotated[Path, typer.Argument(help="New cases as .csv or .parquet.")],
    workspace: WorkspaceOpt = None,
    as_user: AsUserOpt = None,
    model_version: Annotated[
        str,
        typer.Option(help="Registered version to score with (default: the champion)."),
    ] = "",
) -> None:
    """Score new cases with the champion into the review queue (refused while halted)."""
    from hilt.pipelines.loop import runner

    ws = Workspace.at(workspace)
    _quiet_mlflow()
    params = {"input_path": str(file.expanduser().resolve()), "model_version": model_version}
    result = _run_guard(
        lambda: runner.execute(ws, runner.RunRequest("score", params, author=as_user))
    )
    typer.echo(f"run {result.run_id} (score, as {result.author}, {result.seconds:.1f} s)")
    ingested = int(result.metrics.get("cases_ingested", 0))
    added = int(result.metrics.get("predictions_added", 0))
    model = result.logged_params.get("model_version", "?")
    typer.echo(f"{ingested} cases ingested, {added} scored by {model} into the review queue")
    typer.echo(f"notebook {result.notebook}")


@app.command()
def promote(
    run_id: Annotated[str, typer.Argument(help="The retraining run whose model to promote.")],
    as_user: Annotated[
        str, typer.Option("--as", help="The approving lead (not the run's author).")
    ],
    workspace: WorkspaceOpt = None,
) -> None:
    """Approve a challenger: its version becomes the champion (a lead who did not train it)."""
    from hilt.pipelines.loop.promotion import promote as do_promote

    ws = Workspace.at(workspace)
    _quiet_mlflow()
    p = _guard(lambda: do_promote(ws, run_id, as_user))
    before = f"version {p.previous_version}" if p.previous_version else "none"
    typer.echo(
        f"{p.registered_name} version {p.version} is the champion (was: {before}); "
        f"approved by {p.approver}, trained by {p.author}; audit seq {p.audit_seq}"
    )


@app.command()
def simulate(
    workspace: WorkspaceOpt = None,
    rounds: Annotated[int, typer.Option(help="Review-and-retrain rounds after round 0.")] = 3,
    batch: Annotated[int, typer.Option(help="Cases the simulated reviewers decide per round.")] = (
        100
    ),
    strategy: Annotated[str, typer.Option(help="Queue strategy: uncertainty or random.")] = (
        "uncertainty"
    ),
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
    config: Annotated[Path, typer.Option(help="Use-case config.")] = Path("data/hilt.toml"),
    data: Annotated[Path, typer.Option(help="A labelled data set.")] = Path(
        "data/german_credit.csv"
    ),
) -> None:
    """Run the whole loop headless on a labelled data set: score, simulated reviewers answer
    from the true label, retrain through the notebook, a lead promotes. Prints the holdout
    AUC per round, writes a PNG plot, and ends with one JSON line."""
    import json

    from hilt.pipelines.loop.simulation import SimulationConfig
    from hilt.pipelines.loop.simulation import simulate as run_simulation

    ws = Workspace.at(workspace or "workspace/simulation")
    _quiet_mlflow()
    if strategy not in ("uncertainty", "random"):
        _fail("strategy must be uncertainty or random", 2)
    sim = SimulationConfig(
        rounds=rounds,
        batch=batch,
        strategy="uncertainty" if strategy == "uncertainty" else "random",
        reviewer_error=reviewer_error,
        seed=seed,
        seed_fraction=seed_fraction,
        holdout_fraction=holdout_fraction,
    )
    result = _run_guard(
        lambda: run_simulation(ws, config, data, sim, progress=lambda m: typer.echo(m, err=True))
    )
    typer.echo(result.table())
    typer.echo(f"plot: {result.plot}")
    typer.echo(json.dumps(result.summary()))


@runs_app.command("list")
def runs_list(
    workspace: WorkspaceOpt = None,
    limit: Annotated[int, typer.Option(help="At most this many runs, newest first.")] = 50,
) -> None:
    """The workspace's runs: id, kind, status, author, start, snapshot seq, model, gate, alias."""

    def run() -> list[list[str]]:
        from hilt.pipelines.loop import tracking

        ws.require()
        settings = ws.settings()
        tracking.configure(ws, settings=settings)
        rows = []
        for r in tracking.list_runs(settings, max_results=limit):
            rows.append(
                [
                    r.run_id,
                    "reproduce" if r.tags.get("hilt.reproduces") else r.tags.get("hilt.kind", "-"),
                    r.status,
                    r.author or "-",
                    r.start_time.strftime("%Y-%m-%d %H:%M:%SZ"),
                    str(r.snapshot_seq) if r.snapshot_seq is not None else "-",
                    (r.model_sha256 or "-")[:12],
                    r.tags.get("hilt.gate", "-"),
                    ",".join(r.aliases) or "-",
                ]
            )
        return rows

    ws = Workspace.at(workspace)
    _quiet_mlflow()
    rows = _guard(run)
    header = ["run", "kind", "status", "author", "start", "seq", "model", "gate", "alias"]
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=False)]
    for line in [header, *rows]:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


# ---------------------------------------------------------------------------- privacy
subject_app = typer.Typer(
    help="Data-subject rights (GDPR Arts. 15-22), as the data-protection officer (role dpo). "
    "The subject is named by their own id; the store keeps it only sealed.",
    no_args_is_help=True,
)
retention_app = typer.Typer(help="Retention periods (GDPR Art. 5(1)(e)).", no_args_is_help=True)
app.add_typer(subject_app, name="subject")
app.add_typer(retention_app, name="retention")

SubjectArg = Annotated[
    str,
    typer.Argument(metavar="EXTERNAL_ID", help="The subject's own id (the data's subject column)."),
]
DpoOpt = Annotated[
    str | None,
    typer.Option(
        "--as",
        help="The data-protection officer acting (a user with the role dpo; with a store "
        "service, the owner of $HILT_TOKEN).",
        show_default=False,
    ),
]


def _dpo_store(ws: Workspace, as_user: str | None) -> Store:
    from hilt.pipelines.store import Identity, Need, open_store_as

    return open_store_as(
        ws,
        Identity(name=as_user),
        need=Need(frozenset({"dpo"}), "exercise data-subject rights"),
    )


def _subject_action(ws: Workspace, as_user: str | None, op: Callable[[Store], T]) -> T:
    def run() -> T:
        store = _dpo_store(ws, as_user)
        try:
            return op(store)
        finally:
            store.close()

    return _guard(run)


def _said(action: SubjectAction) -> str:
    cases = ", ".join(action.cases) if action.cases else "none"
    return f"{action.action}: subject {action.subject_ref} (cases: {cases}); audit seq {action.seq}"


@subject_app.command("export")
def subject_export(
    external_id: SubjectArg,
    workspace: WorkspaceOpt = None,
    as_user: DpoOpt = None,
    output: Annotated[
        Path | None,
        typer.Option(help="Write the JSON here (mode 0600) instead of standard output."),
    ] = None,
) -> None:
    """Everything held about the subject, as JSON (Arts. 15, 20; schema: `hilt subject schema`)."""
    from hilt.pipelines.compliance.privacy import write_export

    ws = Workspace.at(workspace)
    if output is not None and output.exists():
        _fail(f"{output} exists; refusing to overwrite it", 2)
    document = _subject_action(ws, as_user, lambda s: s.subject_export(external_id))
    if output is None:
        typer.echo(document.model_dump_json(indent=2))
        return
    write_export(document, output)
    typer.echo(
        f"exported subject {document.subject_ref}: {len(document.cases)} cases, "
        f"{len(document.snapshots)} snapshots, {len(document.training_runs)} training runs, "
        f"{len(document.audit_events)} audit events -> {output}"
    )


@subject_app.command("schema")
def subject_schema() -> None:
    """Print the published JSON schema of `hilt subject export` documents."""
    from hilt.pipelines.compliance.privacy import export_schema_text

    typer.echo(export_schema_text(), nl=False)


@subject_app.command("rectify")
def subject_rectify(
    external_id: SubjectArg,
    set_value: Annotated[
        str, typer.Option("--set", help="COLUMN=VALUE: the corrected value (empty: no value).")
    ],
    workspace: WorkspaceOpt = None,
    as_user: DpoOpt = None,
    case: Annotated[
        str | None, typer.Option(help="Only this case of the subject (default: all of them).")
    ] = None,
) -> None:
    """Rectify a value (Art. 16): a superseding record; the next snapshot uses it."""
    if "=" not in set_value:
        _fail("--set takes COLUMN=VALUE", 2)
    column, value = set_value.split("=", 1)
    ws = Workspace.at(workspace)
    action = _subject_action(
        ws, as_user, lambda s: s.subject_rectify(external_id, column, value or None, case)
    )
    typer.echo(_said(action))


def _restriction(
    kind: str, external_id: str, ws: Workspace, as_user: str | None, lift: bool
) -> None:
    action = _subject_action(ws, as_user, lambda s: s.subject_restrict(external_id, kind, lift))
    typer.echo(_said(action))


LiftOpt = Annotated[bool, typer.Option("--lift", help="End it.")]


@subject_app.command("restrict")
def subject_restrict(
    external_id: SubjectArg,
    workspace: WorkspaceOpt = None,
    as_user: DpoOpt = None,
    lift: LiftOpt = False,
) -> None:
    """Restrict processing (Art. 18): out of training and the review queue until lifted."""
    _restriction("restrict", external_id, Workspace.at(workspace), as_user, lift)


@subject_app.command("object")
def subject_object(
    external_id: SubjectArg,
    workspace: WorkspaceOpt = None,
    as_user: DpoOpt = None,
    lift: LiftOpt = False,
) -> None:
    """Record an objection (Art. 21): out of training and the review queue until lifted."""
    _restriction("object", external_id, Workspace.at(workspace), as_user, lift)


@subject_app.command("contest")
def subject_contest(
    external_id: SubjectArg,
    workspace: WorkspaceOpt = None,
    as_user: DpoOpt = None,
) -> None:
    """Human review of the subject's latest decision (Art. 22): first in the queue, for a
    reviewer other than the one who decided it."""
    action = _subject_action(
        Workspace.at(workspace), as_user, lambda s: s.subject_contest(external_id)
    )
    typer.echo(_said(action))


@subject_app.command("erase")
def subject_erase(
    external_id: SubjectArg,
    workspace: WorkspaceOpt = None,
    as_user: DpoOpt = None,
) -> None:
    """Erase the subject (Art. 17): case data deleted, key destroyed (every sealed copy is
    shredded, in the audit log too), identity removed, snapshots regenerated without them,
    MLflow runs that trained on those snapshots tagged. `hilt audit verify` still passes."""
    from hilt.pipelines.compliance.privacy import tag_regenerated_runs

    ws = Workspace.at(workspace)
    _quiet_mlflow()
    report = _subject_action(ws, as_user, lambda s: s.subject_erase(external_id))
    typer.echo(
        f"erased subject {report.subject_ref}: {len(report.cases)} cases, key "
        f"{'destroyed' if report.key_destroyed else 'NOT destroyed'}; audit seq {report.seq}"
    )
    for w in report.snapshots:
        after = f"regenerated as {w.new_name}" if w.new_name else "deleted (no rows left)"
        typer.echo(f"snapshot {w.name}: {w.rows_removed} rows removed, {after}")
    tagged = _guard(lambda: tag_regenerated_runs(ws, ws.settings(), report.snapshots))
    for run_id in tagged:
        typer.echo(f"MLflow run {run_id}: tagged (its snapshot was regenerated)")
    if not report.key_destroyed:
        _fail("the subject's key could not be destroyed; run `hilt retention apply`", 3)


@retention_app.command("apply")
def retention_apply(
    workspace: WorkspaceOpt = None,
    as_user: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="Who applies it (admin, system or dpo; default: the operating-system user "
            "as admin, or the owner of $HILT_TOKEN with a store service).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Remove what has passed its retention period (hilt.toml [retention]); idempotent:
    a run with nothing due writes nothing. Exit 0 either way."""
    from hilt.pipelines.compliance.privacy import tag_regenerated_runs
    from hilt.pipelines.store import Identity, Need, open_store_as

    ws = Workspace.at(workspace)
    _quiet_mlflow()

    def run() -> RetentionReport:
        store = open_store_as(
            ws,
            Identity(name=as_user, operator=True),
            need=Need(frozenset({"admin", "system", "dpo"}), "apply retention"),
        )
        try:
            return store.retention_apply()
        finally:
            store.close()

    report = _guard(run)
    if report.seq is None:
        typer.echo(f"retention as of {report.as_of}: nothing due")
        return
    typer.echo(
        f"retention as of {report.as_of} (audit seq {report.seq}): "
        f"{report.cases_removed} cases' data removed, {report.subjects_removed} subjects "
        f"forgotten (keys destroyed), {report.predictions_purged} predictions and "
        f"{report.decisions_purged} decision rows purged"
        + (
            f", audit log purged through seq {report.audit_purged_through}"
            if report.audit_purged_through
            else ""
        )
    )
    for w in report.snapshots:
        after = f"regenerated as {w.new_name}" if w.new_name else "deleted (no rows left)"
        typer.echo(f"snapshot {w.name}: {w.rows_removed} rows removed, {after}")
    for run_id in _guard(lambda: tag_regenerated_runs(ws, ws.settings(), report.snapshots)):
        typer.echo(f"MLflow run {run_id}: tagged (its snapshot was regenerated)")


@app.command()
def records(
    workspace: WorkspaceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of Markdown.")] = False,
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """The record of processing activities (GDPR Art. 30), from hilt.toml and the schema."""
    import json

    from hilt.pipelines.compliance.processing_records import as_json as register_json
    from hilt.pipelines.compliance.processing_records import as_markdown

    ws = Workspace.at(workspace)

    def run() -> str:
        ws.require()
        settings = ws.settings()
        if as_json:
            return json.dumps(register_json(settings), indent=2) + "\n"
        return as_markdown(settings)

    text = _guard(run)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote the record of processing activities to {output}")


# ---------------------------------------------------------------------------- docs
docs_app = typer.Typer(
    help="Technical documentation (EU AI Act Art. 11, Annex IV).", no_args_is_help=True
)
app.add_typer(docs_app, name="docs")


@docs_app.command("model")
def docs_model(
    version: Annotated[str, typer.Argument(help="Registered version: 3, v3 or NAME/v3.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Write the version's technical documentation and model card (Markdown and offline
    HTML) into the workspace's docs/, from MLflow and the audit log."""
    from hilt.pipelines.compliance.model_docs import write_model_docs

    ws = Workspace.at(workspace)
    _quiet_mlflow()
    written = _guard(lambda: write_model_docs(ws, version))
    typer.echo(f"wrote {written.markdown}")
    typer.echo(f"wrote {written.html}")
    for image in written.images:
        typer.echo(f"wrote {image}")


# ---------------------------------------------------------------------------- oversight
gold_app = typer.Typer(help="Gold cases: known answers mixed into the review queues.")
app.add_typer(gold_app, name="gold")
LeadOpt = Annotated[
    str, typer.Option("--as", help="The lead acting (a store user with the lead role).")
]


@app.command()
def halt(
    as_user: LeadOpt,
    reason: Annotated[str, typer.Option(help="Why (kept in the store; audited as its sha256).")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Stop scoring and retraining at once (a lead); new cases wait for manual review."""
    from hilt.pipelines.loop import oversight

    ws = Workspace.at(workspace)
    state = _guard(lambda: oversight.halt(ws, as_user, reason))
    typer.echo(
        f"halted by {state.changed_by} (audit seq {state.seq}): scoring and retraining are "
        "refused, new cases wait for manual review; a second lead resumes with "
        "`hilt resume --as LEAD`"
    )


@app.command()
def resume(as_user: LeadOpt, workspace: WorkspaceOpt = None) -> None:
    """Resume after a halt: a second lead, not the one who halted."""
    from hilt.pipelines.loop import oversight

    ws = Workspace.at(workspace)
    state = _guard(lambda: oversight.resume(ws, as_user))
    typer.echo(f"resumed by {state.changed_by} (audit seq {state.seq})")


@gold_app.command("add")
def gold_add(
    count: Annotated[int, typer.Option(help="How many gold cases to add.")],
    workspace: WorkspaceOpt = None,
    as_user: AsUserOpt = None,
) -> None:
    """Score holdout cases with the champion and make COUNT of them gold cases."""
    from hilt.pipelines.loop import oversight

    ws = Workspace.at(workspace)
    _quiet_mlflow()
    result = _guard(lambda: oversight.add_gold_with_champion(ws, count, as_user))
    typer.echo(
        f"{result.added} gold cases added, scored by {result.model_version} (wrong on "
        f"{result.model_wrong} of them); audit seq {result.seq}"
    )


@app.command()
def reject(
    run_id: Annotated[str, typer.Argument(help="The retraining run whose challenger to reject.")],
    as_user: Annotated[
        str, typer.Option("--as", help="The rejecting lead (not the run's author).")
    ],
    reason: Annotated[str, typer.Option(help="Why (audited as its sha256).")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Reject a challenger: it stops being the challenger (a lead who did not train it)."""
    from hilt.pipelines.loop.promotion import reject as do_reject

    ws = Workspace.at(workspace)
    _quiet_mlflow()
    r = _guard(lambda: do_reject(ws, run_id, as_user, reason))
    typer.echo(
        f"{r.registered_name} version {r.version} rejected by {r.approver} (trained by "
        f"{r.author}); audit seq {r.audit_seq}"
    )


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
