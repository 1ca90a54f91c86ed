"""Papermill execution and its records: what `hilt retrain` and `hilt score` run.

One run, in this order, so that a refused run leaves nothing behind and a failed one leaves
everything an auditor needs:

1. the parameters are checked against the template's parameters cell (names, and types as
   papermill infers them from ``name: type = value  # help``) and, for retraining, by
   ``TrainParams``; bad → InputError (exit 2): no MLflow run, no audit event, no notebook;
2. the store is opened as the run's author (``open_run_store``) and a halted system refuses
   the run (``SystemHalted``, exit 4), audited as ``run.refused``; so does, for scoring, a
   model the store's registry does not let score (``ScoringRefused``, exit 2): not the
   champion and not allowed for shadow scoring, no champion at all, or a model in MLflow
   whose sha256 is not the one the store registered;
3. the MLflow run is created (author and provenance tags) and ``run.started`` is audited with
   the parameters and the template's sha256;
4. papermill executes the template on the ``python3`` kernel (the project's venv), with the
   run id and the author as parameters, into ``<workspace>/runs/<UTC
   yyyymmddThhmmssZ>-<kind>-<run id>.ipynb``;
5. success: the executed notebook (and its HTML) is logged to the run, the run is finished and
   ``run.finished`` is audited with the notebook's sha256. Failure: the partial notebook is
   kept (and logged), the MLflow run is marked FAILED, ``run.failed`` is audited with the
   notebook's sha256 and the error's class, and ``RunFailed`` is raised (exit 1; exit 4 when
   a halt stopped it, exit 2 when the store refused what it did, e.g. predictions of a model
   whose sha256 is not the one registered).

Importing this module imports neither papermill nor mlflow.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilt.pipelines.config import Settings
from hilt.pipelines.deferred_imports import defer_iri_grammar
from hilt.pipelines.errors import (
    HiltError,
    InputError,
    PermissionDeniedError,
    SystemHalted,
)
from hilt.pipelines.loop.digests import file_sha256
from hilt.pipelines.loop.model import LEGACY_NTHREAD, TrainParams
from hilt.pipelines.loop.run_kernel import KERNEL_NAME as KERNEL_NAME
from hilt.pipelines.loop.run_parameters import (
    audit_parameters,
    template_path,
    validate_parameters,
)
from hilt.pipelines.loop.tracking.environment import (
    child_environment,
    require_reachable,
    tracking_choice,
)
from hilt.pipelines.loop.tracking.tags import (
    PARAM_AS_OF_SEQ,
    PARAM_ENGINE,
    PARAM_LABEL_NOISE,
    PARAM_WORKERS,
    TAG_GATE,
    TAG_KIND,
    TAG_NOTEBOOK,
    TAG_REGISTERED_VERSION,
    TAG_REPRODUCES,
    TAG_SNAPSHOT_REGENERATED,
    TAG_SNAPSHOT_REMOVED,
    TAG_TEMPLATE_SHA256,
)
from hilt.pipelines.store import Store
from hilt.pipelines.store.records import halted_message

if TYPE_CHECKING:
    from hilt.pipelines.loop.tracking.relay import Relay
from hilt.pipelines.workspace import Workspace

#: Roles that may run retraining and scoring (snapshot, ingest, predictions, events).
RUN_ROLES = frozenset({"data-scientist", "admin", "system"})
#: Roles that may run monitoring: read the window's cases and record the run (the
#: scheduler's system user, or an admin).
MONITOR_ROLES = frozenset({"admin", "system"})
#: Longest error text carried into RunFailed's message.
MAX_ERROR_TEXT = 300


class RunFailed(HiltError):
    """The notebook failed (or its kernel died); the partial notebook is kept."""

    kind = "run-failed"

    def __init__(self, message: str, run_id: str, notebook: Path | None, error: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.notebook = notebook
        self.error = error


# ---------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class RunRequest:
    """A run to execute: its kind and parameters (text, as ``-p NAME VALUE`` gives them, or
    typed values), who runs it, and (a reproduction) which run it reproduces."""

    kind: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    #: The hilt user the run acts as; None: the token's owner (service) or the OS user.
    author: str | None = None
    reproduces: str | None = None
    #: Papermill's bar of the notebook's cells on standard error (``cli.progress.shown()``).
    progress: bool = False


# ---------------------------------------------------------------------------- the store
def open_run_store(
    ws: Workspace, author: str | None = None, kind: str = "retrain"
) -> tuple[Store, str]:
    """The store as a run uses it, and the run's author.

    - A store service owns the workspace: its URL ($HILT_STORE_URL, else the service file's)
      with $HILT_TOKEN, which must belong to a data-scientist, admin or system user (the
      author is the token's owner; ``author``, if given, must be that user).
    - Else the embedded store, acting as ``author`` (a store user with one of those roles),
      or, without an author, as the operating-system user with the admin role (like the
      other `hilt` commands: whoever can write the workspace's files holds the store anyway).
    """
    from hilt.pipelines.store import Identity, Need, open_store_as

    need = (
        Need(MONITOR_ROLES, "run monitoring")
        if kind == "monitor"
        else Need(RUN_ROLES, "run retraining or scoring")
    )
    store = open_store_as(ws, Identity(name=author, operator=True), need=need)
    return store, store.whoami().name


#: What a refused run is called in its message.
_REFUSED = {"retrain": "retraining", "score": "scoring", "monitor": "monitoring"}


class ScoringRefused(PermissionDeniedError):
    """The store's model registry lets the version a scoring run names (or, naming none,
    its champion: there is none) add no predictions; nothing ran."""

    kind = "scoring-refused"


def _refuse_and_record_if_model_may_not_score(
    ws: Workspace, store: Store, settings: Settings, typed: Mapping[str, Any]
) -> None:
    """A scoring run whose model the store's registry does not let score (not registered,
    rejected, a challenger not allowed for shadow scoring, ...; or no champion), or whose
    model in MLflow is not the one the store registered (its sha256), is refused before
    anything is ingested, audited as ``run.refused`` with the model and why. (The store
    decides again, sha256 included, when the predictions arrive.)"""
    from hilt.pipelines.loop.steps.score import load_model, may_score, not_the_registered_model
    from hilt.pipelines.loop.tracking.client import configure
    from hilt.pipelines.loop.tracking.environment import registered_model_name

    version = str(typed.get("model_version") or "")
    refusal = may_score(store.models(), registered_model_name(settings), version)
    if refusal is None:
        configure(ws, settings=settings)
        refusal = not_the_registered_model(load_model(store, settings, version))
    if refusal is None:
        return
    store.record_event(
        "run.refused",
        "run",
        f"score-{utc_stamp()}",
        {"kind": "score", "reason": "model", "model": refusal.model, "state": refusal.state},
    )
    raise ScoringRefused(f"scoring refused: {refusal.message}; nothing was ingested or scored")


def refuse_if_halted(store: Store, what: str = "the run") -> None:
    """SystemHalted ("<what> refused: the system is halted (by <lead> at <time>, audit seq
    <n>); ...") while a lead's halt holds. The halt's reason is not repeated (free text)."""
    state = store.system_state()
    if state.halted:
        raise SystemHalted(halted_message(state, what))


def _refuse_and_record_if_halted(store: Store, kind: str) -> None:
    """A run refused by a halt is audited as ``run.refused`` (nothing else is written: no
    MLflow run, no notebook), so the log shows that the halt held."""
    try:
        refuse_if_halted(store, _REFUSED.get(kind, kind))
    except SystemHalted:
        state = store.system_state()
        store.record_event(
            "run.refused",
            "run",
            f"{kind}-{utc_stamp()}",
            {
                "kind": kind,
                "reason": "halted",
                "halted_by": state.changed_by,
                "halt_seq": state.seq,
            },
        )
        raise


# ---------------------------------------------------------------------------- running
@dataclass(frozen=True)
class RunResult:
    run_id: str
    kind: str
    author: str
    notebook: Path
    notebook_sha256: str
    parameters: dict[str, Any]
    seconds: float
    #: Retraining: the model's sha256, the gate's verdict, the registered version.
    model_sha256: str | None = None
    gate: str | None = None
    version: str | None = None
    #: The run's MLflow metrics (e.g. holdout_auc; cases_ingested, predictions_added).
    metrics: dict[str, float] = field(default_factory=dict)
    #: The run's MLflow params (e.g. model_version of a scoring run).
    logged_params: dict[str, str] = field(default_factory=dict)


def utc_stamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _kernel_environment(ws: Workspace, settings: Settings, store: Store) -> dict[str, str]:
    """The kernel's environment on top of this process's: the workspace, no GUI backend,
    unbuffered output, MLflow quiet (no telemetry, no progress bars, WARNING and up) and its
    tracking URI (as ``client.configure`` sets it here), and the store service's URL when one
    owns the workspace."""
    from hilt.pipelines.store import STORE_URL_ENV
    from hilt.pipelines.store.modes.client import StoreClient

    env = {
        **os.environ,
        "HILT_WORKSPACE": str(ws.root),
        "MPLBACKEND": "Agg",
        "PYTHONUNBUFFERED": "1",
        "MLFLOW_TRACKING_URI": tracking_choice(ws, settings=settings).uri,
        **child_environment(),
    }
    if isinstance(store, StoreClient):
        env[STORE_URL_ENV] = store.url
    return env


def execute(ws: Workspace, request: RunRequest) -> RunResult:
    """Run one papermill template; see the module's docstring for the order of things."""
    started = time.perf_counter()
    template = template_path(request.kind)
    typed = validate_parameters(request.kind, request.parameters)
    ws.require()
    settings = ws.settings()
    # A tracking server that does not answer: one line now, before anything is written.
    require_reachable(tracking_choice(ws, settings=settings))
    if request.kind == "retrain":
        # The engine, threads and (Dask) workers decide the model's bytes: fixed here,
        # before anything is written (an unreachable or other-shaped cluster is refused).
        from hilt.pipelines.loop.steps.engine import settle_run_parameters

        settle_run_parameters(settings, typed)
    store, author = open_run_store(ws, request.author, request.kind)
    try:
        if request.kind != "monitor":  # monitoring watches a halted system too
            _refuse_and_record_if_halted(store, request.kind)
        if request.kind == "score":
            _refuse_and_record_if_model_may_not_score(ws, store, settings, typed)
        elif request.kind == "monitor" and not any(m.state == "champion" for m in store.models()):
            raise InputError("monitoring refused: there is no champion to monitor; nothing ran")
        return _execute(ws, settings, store, author, request, template, typed, started)
    finally:
        store.close()


def _execute(
    ws: Workspace,
    settings: Settings,
    store: Store,
    author: str,
    request: RunRequest,
    template: Path,
    typed: dict[str, Any],
    started: float,
) -> RunResult:
    from hilt.pipelines.loop import run_kernel
    from hilt.pipelines.loop.tracking.relay import reserve

    kind = request.kind
    with (
        reserve() as relay_at,
        run_kernel.started(
            kind, {**_kernel_environment(ws, settings, store), **relay_at.environment()}, ws.root
        ) as kernel,
    ):
        # The kernel starts, and imports what the notebook will, in its own process while
        # this one imports mlflow and makes the run (``run_kernel``).
        defer_iri_grammar()
        import papermill
        from papermill.exceptions import PapermillExecutionError

        from hilt.pipelines.loop.tracking import notebooks, runs

        template_sha = file_sha256(template)
        stamp = utc_stamp()
        tags = {TAG_KIND: kind, TAG_TEMPLATE_SHA256: template_sha}
        if request.reproduces:
            tags[TAG_REPRODUCES] = request.reproduces
        run_id = runs.create_run(ws, settings, run_name=f"{kind}-{stamp}", author=author, tags=tags)
        ws.runs_dir.mkdir(parents=True, exist_ok=True)
        out = ws.runs_dir / f"{stamp}-{kind}-{run_id}.ipynb"
        base = {"kind": kind, "run_id": run_id, "notebook": out.name}
        try:
            runs.set_run_tags(run_id, {TAG_NOTEBOOK: out.name})
            store.record_event(
                "run.started",
                "run",
                run_id,
                {
                    **base,
                    "template": template.name,
                    "template_sha256": template_sha,
                    "parameters": audit_parameters(kind, typed),
                    "reproduces": request.reproduces,
                },
            )
        except BaseException:
            runs.mark_failed(run_id)
            raise
        parameters = {**typed, "workspace": str(ws.root), "run_id": run_id, "author": author}
        if kind == "retrain":
            parameters["reproduces"] = request.reproduces or ""
        # The kernel works in its own process; meanwhile this one loads nbconvert for the
        # notebook's HTML (joined before it is rendered).
        html_ready = threading.Thread(target=_warm_up_html, name="hilt-nbconvert", daemon=True)
        html_ready.start()
        try:
            with _relay(kind, settings, store, run_id, relay_at):
                papermill.execute_notebook(
                    str(template),
                    str(out),
                    parameters=parameters,
                    kernel_name=KERNEL_NAME,
                    km=kernel,
                    progress_bar={"desc": kind, "unit": "cell"} if request.progress else False,
                    log_output=False,
                    request_save_on_cell_execute=True,
                    engine_name=papermill_engine(),
                )
        except BaseException as e:
            error = e.ename if isinstance(e, PapermillExecutionError) else type(e).__name__
            where = f" in cell {e.exec_count}" if isinstance(e, PapermillExecutionError) else ""
            detail = str(e.evalue) if isinstance(e, PapermillExecutionError) else str(e)
            nb_sha = file_sha256(out) if out.exists() else None
            _record_failure(store, run_id, out, nb_sha, base, error)
            if not isinstance(e, Exception):
                raise
            message = " ".join(detail.split())[:MAX_ERROR_TEXT]
            raise RunFailed(
                f"{kind} run {run_id} failed{where}: {error}: {message}; "
                f"the partial notebook is kept at {out}",
                run_id,
                out if out.exists() else None,
                error,
            ) from None
    # (the kernel was stopped at once: every cell's output was saved as it finished, and
    # waiting for its Python to unwind mlflow, xgboost and matplotlib costs ~2 s a run)
    nb_sha = file_sha256(out)
    html_ready.join()
    notebooks.log_notebook(run_id, out)
    runs.finish_run(run_id)
    seconds = time.perf_counter() - started
    store.record_event(
        "run.finished",
        "run",
        run_id,
        {**base, "notebook_sha256": nb_sha, "seconds": round(seconds, 3)},
    )
    info = runs.run_info(run_id)
    return RunResult(
        run_id=run_id,
        kind=kind,
        author=author,
        notebook=out,
        notebook_sha256=nb_sha,
        parameters=typed,
        seconds=seconds,
        model_sha256=info.model_sha256,
        gate=info.tags.get(TAG_GATE),
        version=info.tags.get(TAG_REGISTERED_VERSION),
        metrics=dict(info.metrics),
        logged_params=dict(info.params),
    )


@contextmanager
def _relay(kind: str, settings: Settings, store: Store, run_id: str, at: Relay) -> Iterator[None]:
    """This process does the kernel's MLflow work (``tracking.relay``: it has mlflow loaded
    and the run made), so the kernel never imports mlflow; it listens where the kernel was
    told to call (``at``)."""
    from hilt.pipelines.loop.tracking.relay import InProcess, serve

    if kind == "retrain":
        threading.Thread(target=_warm_up_tracking, name="hilt-mlflow-warm", daemon=True).start()
    with serve(lambda folder: InProcess(settings, store.models, folder), run_id, at):
        yield


def _warm_up_tracking() -> None:
    """``tracking.training.warm_up`` (the relay's first model log, paid while the kernel
    works); a failure here only costs the time it would have saved."""
    with contextlib.suppress(Exception):
        from hilt.pipelines.loop.tracking import training

        training.warm_up()


def _warm_up_html() -> None:
    """``notebook_render.warm_up``; a failure here only costs the time it would have saved
    (the rendering itself reports it)."""
    from hilt.pipelines.loop import notebook_render

    with contextlib.suppress(Exception):
        notebook_render.warm_up()


#: papermill's engine for hilt's runs (``papermill_engine``).
ENGINE_NAME = "hilt"
#: While a run works, its executed notebook is written at most this often (seconds).
SAVE_EVERY_S = 30.0


@functools.cache
def papermill_engine() -> str:
    """papermill's own engine (nbclient), registered as ``ENGINE_NAME``, writing the executed
    notebook when the run starts and ends (also when a cell fails or the kernel dies, so the
    partial notebook is kept) and at most every ``SAVE_EVERY_S`` seconds between: papermill
    writes it before and after every cell, markdown ones too (66 writes of ~4 ms each in a
    retraining; 0.2-0.8 s of CPU a run for a file nobody reads before the run ends)."""
    from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

    class Manager(NotebookExecutionManager):  # type: ignore[misc]
        def save(self, **kwargs: Any) -> None:
            first = not getattr(self, "_written", False)
            since = (self.now() - self.last_save_time).total_seconds()
            if first or self.end_time is not None or since >= SAVE_EVERY_S:
                self._written = True
                super().save(**kwargs)

    class Engine(NBClientEngine):  # type: ignore[misc]
        @classmethod
        def execute_notebook(
            cls,
            nb: Any,
            kernel_name: str,
            output_path: str | None = None,
            progress_bar: Any = True,
            log_output: bool = False,
            autosave_cell_every: int = 30,
            **kwargs: Any,
        ) -> Any:
            # papermill's Engine.execute_notebook, with the manager above.
            nb_man = Manager(
                nb,
                output_path=output_path,
                progress_bar=progress_bar,
                log_output=log_output,
                autosave_cell_every=autosave_cell_every,
            )
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            finally:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

    papermill_engines.register(ENGINE_NAME, Engine)
    return ENGINE_NAME


def _record_failure(
    store: Store,
    run_id: str,
    out: Path,
    nb_sha: str | None,
    base: Mapping[str, Any],
    error: str,
) -> None:
    """Mark the run FAILED, log the partial notebook, audit ``run.failed``; each step is
    attempted even if an earlier one fails (the first failure is re-raised at the end)."""
    from hilt.pipelines.loop.tracking import notebooks, runs

    problems: list[BaseException] = []
    try:
        runs.mark_failed(run_id)
    except Exception as e:
        problems.append(e)
    if nb_sha is not None:
        # A partial notebook that does not render is still kept on disk.
        with contextlib.suppress(Exception):
            notebooks.log_notebook(run_id, out)
    try:
        store.record_event(
            "run.failed", "run", run_id, {**base, "notebook_sha256": nb_sha, "error": error}
        )
    except Exception as e:
        problems.append(e)
    if problems:
        raise problems[0]


# ---------------------------------------------------------------------------- reproduce
@dataclass(frozen=True)
class Reproduction:
    original_run_id: str
    original_model_sha256: str
    snapshot_sha256: str
    result: RunResult

    @property
    def matches(self) -> bool:
        return self.result.model_sha256 == self.original_model_sha256


def reproduce(
    ws: Workspace, run_id: str, author: str | None = None, scheduler: str = ""
) -> Reproduction:
    """Re-run a past retraining with its parameters (its recorded nthread included; 1 for a
    run that recorded none) on its snapshot file (found by sha256 in the workspace's
    snapshots folder and checked), logged but not registered. On its engine: a Dask run
    again on Dask (at ``scheduler``, else hilt.toml's), on a cluster of the same shape
    (workers, threads per worker; refused otherwise, nothing written)."""
    from hilt.pipelines.loop.steps.training_data import find_snapshot
    from hilt.pipelines.loop.tracking.client import TrackingError, configure
    from hilt.pipelines.loop.tracking.runs import run_info

    ws.require()
    settings = ws.settings()
    configure(ws, settings=settings)
    try:
        original = run_info(run_id)
    except TrackingError:
        raise InputError(f"no MLflow run {run_id!r} in this workspace") from None
    if original.tags.get(TAG_KIND) != "retrain" or not original.model_sha256:
        raise InputError(f"run {run_id} is not a retraining run with a logged model")
    if not original.snapshot_sha256:
        raise InputError(f"run {run_id} records no snapshot sha256")
    removed = original.tags.get(TAG_SNAPSHOT_REMOVED)
    if removed:
        regenerated = original.tags.get(TAG_SNAPSHOT_REGENERATED, "none")
        raise InputError(
            f"run {run_id} trained on {removed}, which was regenerated without data subjects "
            "who were erased or whose data passed retention (GDPR Arts. 17, 5(1)(e)); the "
            "original model cannot be reproduced byte for byte. The regenerated snapshot: "
            + (regenerated if regenerated != "none" else "none (no rows were left)")
        )
    find_snapshot(ws, original.snapshot_sha256)  # exists and matches, before anything runs
    train_names = {f.name for f in fields(TrainParams)}
    params: dict[str, Any] = {k: v for k, v in original.params.items() if k in train_names}
    params[PARAM_LABEL_NOISE] = original.params.get(PARAM_LABEL_NOISE, "0.0")
    # The model's bytes depend on the threads: a run that recorded none trained on one.
    params.setdefault("nthread", str(LEGACY_NTHREAD))
    # A run that recorded no engine trained locally.
    params[PARAM_ENGINE] = original.params.get(PARAM_ENGINE, "local")
    if params[PARAM_ENGINE] == "dask":
        params[PARAM_WORKERS] = original.params.get(PARAM_WORKERS, "0")
        params["scheduler"] = scheduler
    elif scheduler:
        raise InputError(f"run {run_id} trained locally: a reproduction needs no scheduler")
    if PARAM_AS_OF_SEQ in original.params:
        params[PARAM_AS_OF_SEQ] = original.params[PARAM_AS_OF_SEQ]
    params["snapshot_sha256"] = original.snapshot_sha256
    params["register"] = "false"
    result = execute(ws, RunRequest("retrain", params, author=author, reproduces=run_id))
    return Reproduction(
        original_run_id=run_id,
        original_model_sha256=original.model_sha256,
        snapshot_sha256=original.snapshot_sha256,
        result=result,
    )
