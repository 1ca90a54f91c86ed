"""The `hilt` command, run as scripts run it: exact forms, exit codes, no stack traces.
`hilt init`, `hilt demo`, the documented forms and the defaults of ``--workspace`` run as
processes; the other tests run the commands in process (``hilt_here``), each with a real
process among them. The processes are forked from one that has imported hilt once
(tests/prewarmed.py: the ``hilt`` entry point with its arguments, environment and working
folder, in a process of its own); the installed ``hilt`` script itself starts `hilt init`
in ``test_workspace_defaults_to_env_then_dot_workspace``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import polars as pl
import pytest

from hilt.pipelines.workspace import Workspace
from tests.cli_helpers import hilt_here
from tests.conftest import CONFIG, CSV, operator, start_service
from tests.loop_helpers import hilt_cli
from tests.prewarmed import run as prewarmed_hilt

HILT = str(Path(sys.executable).parent / "hilt")


def hilt(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`hilt ARGS` in a process of its own (prewarmed), without $HILT_WORKSPACE."""
    env = {k: v for k, v in os.environ.items() if k != "HILT_WORKSPACE"}
    return prewarmed_hilt(*args, env=env, cwd=cwd, timeout_s=120)


def assert_user_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("error: ")
    for needle in needles:
        assert needle in result.stderr


def test_the_documented_forms_work_end_to_end(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    r = hilt("init", "--workspace", ws, "--config", CONFIG)
    assert r.returncode == 0, r.stderr
    assert "ed25519:" in r.stdout
    # The MLflow database is made here, once, quietly (no run waits for it).
    assert (ws / "mlflow.db").is_file() and "mlflow" not in r.stderr.lower()
    r = hilt("ingest", CSV, "--workspace", ws)
    assert r.returncode == 0, r.stderr
    assert "ingested 1000 cases" in r.stdout
    r = hilt("users", "add", "carol", "--role", "reviewer", "--workspace", ws)
    assert r.returncode == 0, r.stderr
    token = re.search(r"hilt_[A-Za-z0-9_-]+", r.stdout)
    assert token is not None
    r = hilt("users", "add", "otto", "--role", "auditor", "--workspace", ws)
    auditor = re.search(r"hilt_[A-Za-z0-9_-]+", r.stdout)
    assert auditor is not None
    r = hilt("audit", "checkpoint", "--workspace", ws)
    assert r.returncode == 0, r.stderr
    r = hilt("audit", "verify", "--workspace", ws)
    assert (r.returncode, r.stdout.strip().splitlines()) == (
        0,
        # (the MLflow database exists since `hilt init`: verify compares the registries)
        ["OK 5 events", "MLflow's registry mirrors the store's model registry"],
    )
    # The token works against the service, which `hilt store serve` starts.
    with store_served(ws) as url:
        me = httpx.get(url + "/v1/me", headers={"Authorization": f"Bearer {token.group(0)}"})
        assert me.json() == {"name": "carol", "roles": ["reviewer"]}
        # An auditor verifies the served store from its records, with their own pinned key.
        r = hilt("audit", "verify", "--workspace", ws, "--url", url, "--token", auditor.group(0))
        assert (r.returncode, r.stdout.strip()) == (0, "OK 5 events"), r.stderr
        r = hilt("audit", "verify", "--workspace", ws, "--url", url, "--token", token.group(0))
        assert_user_error(r, "may not audit read")
        # While the service owns the store, embedded commands say so at once.
        r = hilt("users", "add", "dave", "--role", "reviewer", "--workspace", ws)
        assert_user_error(r, "store service", url)
    assert not (ws / "service.json").exists()


@contextmanager
def store_served(ws: Path) -> Iterator[str]:
    """`hilt store serve` on the workspace, answering at the URL given, until the end."""
    service = start_service(Workspace.at(ws))
    try:
        yield service.url
    finally:
        service.stop()


def test_parquet_ingest(tmp_path: Path, workspace: Workspace) -> None:
    pq = tmp_path / "cases.parquet"
    pl.read_csv(CSV).head(50).write_parquet(pq)
    r = hilt_here("ingest", pq, "--workspace", workspace.root)
    assert r.returncode == 0, r.stderr
    assert "ingested 50 cases" in r.stdout


def test_workspace_defaults_to_env_then_dot_workspace(tmp_path: Path) -> None:
    env = dict(os.environ, HILT_WORKSPACE=str(tmp_path / "from-env"))
    r = subprocess.run(
        [HILT, "init", "--config", str(CONFIG)], capture_output=True, text=True, env=env
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "from-env" / "store.duckdb").exists()
    r = hilt("init", "--config", CONFIG, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "workspace" / "store.duckdb").exists()


@pytest.fixture
def ws(workspace: Workspace, cases_frame: pl.DataFrame) -> Path:
    """`hilt init` of the demo config, then `hilt ingest` of the demo cases."""
    operator(workspace).ingest_cases(cases_frame)
    return workspace.root


def test_user_errors_exit_2_with_one_line_and_write_nothing(ws: Path, tmp_path: Path) -> None:
    store = ws / "store.duckdb"
    before = hilt_here("audit", "verify", "--workspace", ws).stdout
    bad_csv = tmp_path / "bad.csv"
    pl.read_csv(CSV).head(3).with_columns(pl.lit("soon").alias("duration")).write_csv(bad_csv)
    txt = tmp_path / "cases.txt"
    txt.write_text("x")
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text(CONFIG.read_text().replace('type = "int", min = 18', 'type = "integer"'))
    cases = [
        (hilt("ingest", CSV, "--workspace", ws), ["already exist"]),
        (hilt_here("ingest", bad_csv, "--workspace", ws), ["'duration'", "not integers"]),
        (hilt_here("ingest", tmp_path / "missing.csv", "--workspace", ws), ["no such file"]),
        (hilt_here("ingest", txt, "--workspace", ws), [".csv or .parquet"]),
        (hilt_here("users", "add", "eve", "--role", "wizard", "--workspace", ws), ["unknown role"]),
        (
            hilt_here("users", "add", "bad name!", "--role", "reviewer", "--workspace", ws),
            ["match"],
        ),
        (hilt_here("init", "--workspace", ws, "--config", CONFIG), ["already a hilt workspace"]),
        (
            hilt_here("init", "--workspace", tmp_path / "w2", "--config", bad_toml),
            ["columns.age.type"],
        ),
        (
            hilt_here("audit", "verify", "--workspace", tmp_path / "nowhere"),
            ["not a hilt workspace"],
        ),
    ]
    for result, needles in cases:
        assert_user_error(result, *needles)
    assert not (tmp_path / "w2").exists()
    assert hilt_here("audit", "verify", "--workspace", ws).stdout == before
    assert store.exists()


def test_demo_sets_up_once_and_prints_a_working_token(tmp_path: Path) -> None:
    ws = tmp_path / "demo"
    args: list[str | Path] = [
        "demo",
        "--workspace",
        ws,
        "--config",
        CONFIG,
        "--data",
        CSV,
        "--no-serve",
    ]
    first = hilt(*args)
    assert first.returncode == 0, first.stderr
    assert "loaded 700 past applications with known outcomes" in first.stdout
    assert "retrained as dana" in first.stdout
    assert re.search(r"promoted to champion by (lena|max)", first.stdout)
    assert "scored the new applications" in first.stdout
    assert "review queue: 300 cases waiting" in first.stdout
    assert "20 gold cases" in first.stdout  # not in the shared queue: still 300 waiting
    assert "monitored the champion (post-market monitoring)" in first.stdout
    assert "signed an audit checkpoint" in first.stdout
    assert "go-live check: ready" in first.stdout  # the store's check finds everything
    check = hilt("check", "go-live", "--workspace", ws)
    assert check.returncode == 0, check.stdout + check.stderr
    second = hilt(*args)
    assert second.returncode == 0, second.stderr
    assert "loaded" not in second.stdout  # idempotent: cases are loaded once,
    assert "retrained" not in second.stdout  # the first model trained once,
    assert "scored" not in second.stdout  # the new applications scored once
    assert "gold cases" not in second.stdout  # and the gold set added once
    assert "monitored" not in second.stdout  # monitoring ran once,
    assert "signed an audit checkpoint" not in second.stdout  # the checkpoint is recent
    assert re.search(r"API token for dana \(admin\): hilt_", second.stdout)
    verify = hilt("audit", "verify", "--workspace", ws)
    assert verify.returncode == 0, verify.stdout


# ---------------------------------------------------------------------- users (issue 12)
def hilt_as(token: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """`hilt` with ``$HILT_TOKEN`` set, as an administrator runs it against a service (in
    process)."""
    return hilt_here(*args, env={"HILT_TOKEN": token})


def test_users_commands_take_effect_at_once_on_a_running_service(workspace: Workspace) -> None:
    ws = workspace.root  # `hilt init` of the demo config
    r = hilt_here("users", "add", "dana", "--role", "admin", "--workspace", ws)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^expires \d{4}-\d\d-\d\dT", r.stdout, re.M)  # [access] token_days
    admin = re.search(r"hilt_[A-Za-z0-9_-]+", r.stdout)
    carol = re.search(
        r"hilt_[A-Za-z0-9_-]+",
        hilt_here("users", "add", "carol", "--role", "reviewer", "--workspace", ws).stdout,
    )
    assert admin is not None and carol is not None
    listed = hilt_here("users", "list", "--workspace", ws)
    assert listed.returncode == 0, listed.stderr
    assert re.search(
        r"^carol\treviewer\tactive\tadded\t1 token \(last expires ", listed.stdout, re.M
    )
    assert re.search(r"^bob\treviewer\tactive\thilt\.toml\t0 tokens$", listed.stdout, re.M)
    assert_user_error(
        hilt_here("users", "disable", "nobody", "--workspace", ws), "unknown user 'nobody'"
    )

    with store_served(ws) as url:
        admin_env = {"HILT_TOKEN": admin.group(0)}  # a real process: the token from $HILT_TOKEN
        as_carol = {"Authorization": f"Bearer {carol.group(0)}"}
        assert httpx.get(url + "/v1/me", headers=as_carol).status_code == 200
        r = hilt_cli("users", "revoke", "carol", "--workspace", ws, env=admin_env)
        assert (r.returncode, r.stdout.strip()) == (0, "revoked 1 token of carol"), r.stderr
        refused = httpx.get(url + "/v1/me", headers=as_carol)
        assert refused.status_code == 401 and "was revoked (audit seq" in refused.json()["detail"]
        r = hilt_as(admin.group(0), "users", "disable", "bob", "--workspace", ws)
        assert r.stdout.strip() == "user bob is disabled: they can no longer act, and hold no token"
        r = hilt_as(admin.group(0), "users", "enable", "bob", "--workspace", ws)
        assert r.stdout.strip() == "user bob is enabled (roles: reviewer)"
        # bob leaves hilt.toml: the sync disables him, once.
        config = ws / "hilt.toml"
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace('bob = ["reviewer"]\n', ""), encoding="utf-8")
        r = hilt_as(admin.group(0), "users", "sync", "--workspace", ws)
        assert_user_error(r, "hilt config apply")  # the edit is not in force yet
        r = hilt_as(admin.group(0), "config", "apply", "--workspace", ws)
        assert r.returncode == 0, r.stderr
        r = hilt_as(admin.group(0), "users", "sync", "--workspace", ws)
        assert r.returncode == 0, r.stderr
        assert "disabled bob (no longer in hilt.toml; tokens revoked)" in r.stdout
        assert re.search(r"^recorded as audit seq \d+$", r.stdout, re.M)
        r = hilt_as(admin.group(0), "users", "sync", "--workspace", ws)
        assert r.stdout.strip() == "the users already match hilt.toml: nothing written"
        r = hilt_as(carol.group(0), "users", "sync", "--workspace", ws)
        assert_user_error(r, "was revoked")
