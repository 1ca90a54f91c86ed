"""The `hilt` command: the typer app, assembled from one module per command group.

- common.py: exit codes, the error guard, the ``--workspace`` / ``--as`` options;
- workspace.py: init, ingest;  serve.py: serve, demo;  store.py: store serve, store backup,
  store restore, users add /
  revoke / disable / enable / sync / list;
- runs.py: retrain, score, promote, reject, simulate, runs list;  audit.py: audit verify,
  audit checkpoint;  privacy.py: subject ..., retention apply, records;
- oversight.py: halt, resume, gold add;  docs.py: docs model, docs compliance;
- check.py: check go-live;  monitoring.py: monitor, outcomes (post-market monitoring);
- incidents.py: incident open, update, close, list;
- config.py: config draft, config status, config apply, config approve, config reject;
- lab.py: lab, tracking ui (the data scientist's JupyterLab and MLflow UI).

Every command takes ``--workspace DIR`` (default: $HILT_WORKSPACE, else ./workspace).
Exit codes: 0 done; 1 the audit log does not verify, a retraining or scoring run failed (its
partial notebook is kept), or a reproduction gave another model; 2 a user error or a refusal
(bad input or parameters, bad config, unknown user or role, store busy, promotion refused),
with a one-line message and no stack trace, and nothing written; 3 an internal error of the
store, or a DuckDB error that no hilt code wrapped, also one line (set HILT_DEBUG=1 to see
its trace); 4 refused because a lead halted the system (a run refused so is audited as
``run.refused``; a run stopped by a halt while it ran exits 4 too), until a second lead
resumes it; 5 `hilt monitor` found a monitoring threshold breached (the store's verdict,
each breach audited as ``monitoring.breach``; 0 when none was, warnings included); 6 `hilt
check go-live` found something missing (no champion, an assessment missing or expired, no
recent signed checkpoint or monitoring run, a serious incident open).

Commands run on the workspace folder act as the operating-system user, with the admin role:
whoever can write the workspace's files holds the store anyway, and the audit log records
which login did it (``os:<login>``).
"""

from __future__ import annotations

import sys

import typer

from hilt.pipelines.cli import (
    audit,
    check,
    common,
    config,
    docs,
    incidents,
    lab,
    monitoring,
    oversight,
    privacy,
    runs,
    serve,
    store,
    workspace,
)

app = typer.Typer(
    name="hilt",
    help="hilt: human-in-the-loop review and retraining of ML decisions, with a "
    "tamper-evident audit log.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

# In the order `hilt --help` lists them: the commands, then the command groups.
app.command()(workspace.init)
app.command()(workspace.ingest)
app.command()(serve.serve)
app.command()(serve.demo)
app.command(context_settings=runs.EXTRA_ARGS)(runs.retrain)
app.command()(runs.score)
app.command()(runs.promote)
app.command()(runs.simulate)
app.command()(privacy.records)
app.command()(oversight.halt)
app.command()(oversight.resume)
app.command()(runs.reject)
app.command()(monitoring.monitor)
app.command()(monitoring.outcomes)
app.command()(lab.lab)
app.add_typer(store.store_app, name="store")
app.add_typer(store.users_app, name="users")
app.add_typer(audit.audit_app, name="audit")
app.add_typer(runs.runs_app, name="runs")
app.add_typer(privacy.subject_app, name="subject")
app.add_typer(privacy.retention_app, name="retention")
app.add_typer(docs.docs_app, name="docs")
app.add_typer(oversight.gold_app, name="gold")
app.add_typer(config.config_app, name="config")
app.add_typer(check.check_app, name="check")
app.add_typer(incidents.incident_app, name="incident")
app.add_typer(lab.tracking_app, name="tracking")


def main() -> None:
    """The `hilt` command (its console script). A run command ends its process at once when
    it is done (``common.exit_at_once``)."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit as e:
        common.exit_at_once(e.code)
        raise


if __name__ == "__main__":
    main()
