"""`hilt retrain`, `hilt score`, `hilt promote`, `hilt runs list` as schedulers run them:
refusals before anything is touched, exit codes, and runs against a store service. Each
command is a process of its own, forked from one that imported hilt once (``hilt_forked``);
one refusal goes through the installed `hilt` script in a fresh interpreter (``hilt_cli``)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from hilt.pipelines.errors import HiltError, InputError
from hilt.pipelines.loop import run_parameters, runner
from hilt.pipelines.loop.tracking.environment import DB_FILE
from hilt.pipelines.workspace import Workspace
from tests.conftest import free_port, issue_tokens, operator
from tests.loop_helpers import (
    LABELLED,
    empty_tracking_store,
    hilt_cli,
    hilt_forked,
    loop_workspace,
    new_cases_file,
)
from tests.prewarmed import prewarmed_service


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return loop_workspace(tmp_path_factory.mktemp("runner-cli"), tracking=False)


def untouched(ws: Workspace, head: int) -> None:
    """Nothing was written: no audit event, no MLflow store, no notebook."""
    assert operator(ws).audit_head().seq == head
    assert not (ws.root / "mlflow.db").exists()
    assert not ws.runs_dir.exists() or not any(ws.runs_dir.iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "max_depht", "4"], "unknown parameters ['max_depht']"),
        (["-p", "max_depth", "deep"], "parameter max_depth must be an integer"),
        (["-p", "max_depth", "-1"], "max_depth must be between 1 and 32"),
        (["-p", "max_depth"], "needs a NAME and a VALUE"),
        (["--as", "alice"], "may not run retraining or scoring"),
    ],
)
def test_bad_retrain_requests_exit_2_before_anything_is_touched(
    ws: Workspace, args: list[str], message: str, tmp_path: Path
) -> None:
    head = operator(ws).audit_head().seq
    r = hilt_forked("retrain", "--workspace", ws.root, *args, folder=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert message in r.stderr
    untouched(ws, head)


@pytest.mark.parametrize(
    ("params", "author", "message"),
    [
        ({"eta": "nan"}, None, "parameter eta must be a finite number"),
        ({"label_noise": "0.9"}, None, "label_noise must be between 0 and 0.5"),
        ({"register": "maybe"}, None, "parameter register must be true or false"),
        ({"run_id": "abc"}, None, "set by the runner"),
        ({"reproduces": "abc"}, None, "set by the runner"),
        ({"snapshot_sha256": "abc"}, None, "64 lowercase hex digits"),
        ({"as_of_seq": "-3"}, None, "as_of_seq must be >= 0"),
        ({}, "nobody", "unknown user 'nobody'"),
        ({}, "otto", "may not run retraining or scoring"),
        ({}, "os:someone-else", "not the operating-system user"),
    ],
)
def test_bad_requests_touch_nothing(
    ws: Workspace, params: dict[str, str], author: str | None, message: str
) -> None:
    head = operator(ws).audit_head().seq
    with pytest.raises(HiltError, match=re.escape(message)):
        runner.execute(ws, runner.RunRequest("retrain", params, author=author))
    untouched(ws, head)


def test_given_twice_and_stray_arguments_exit_2(ws: Workspace, tmp_path: Path) -> None:
    head = operator(ws).audit_head().seq
    r = hilt_forked(
        "retrain", "-w", ws.root, "-p", "eta", "0.1", "-p", "eta", "0.2", "stray", folder=tmp_path
    )
    assert r.returncode == 2 and "given twice" in r.stderr
    r = hilt_forked("retrain", "-w", ws.root, "stray", folder=tmp_path)
    assert r.returncode == 2 and "unexpected argument 'stray'" in r.stderr
    r = hilt_forked(
        "retrain", "-w", ws.root, "--reproduce", "abc", "-p", "eta", "0.1", folder=tmp_path
    )
    assert r.returncode == 2 and "do not pass -p" in r.stderr
    untouched(ws, head)


def test_bad_score_requests_exit_2(ws: Workspace, tmp_path: Path) -> None:
    head = operator(ws).audit_head().seq
    out = tmp_path / "hilt"
    r = hilt_forked("score", tmp_path / "missing.csv", "--workspace", ws.root, folder=out)
    assert r.returncode == 2 and "no such file" in r.stderr
    text = tmp_path / "cases.txt"
    text.write_text("a,b\n")
    r = hilt_forked("score", text, "--workspace", ws.root, folder=out)
    assert r.returncode == 2 and "expected a .csv or .parquet file" in r.stderr
    r = hilt_forked(
        "score", text.with_suffix(".csv"), "--workspace", ws.root, "--model-version", "x",
        folder=out,
    )  # fmt: skip
    assert r.returncode == 2
    untouched(ws, head)


def test_scoring_without_a_champion_is_refused_before_anything_runs(
    ws: Workspace, tmp_path: Path
) -> None:
    """The store's registry has no champion: nothing may score into the review queue. The
    refusal is one line, exit 2, audited as run.refused; nothing else is written."""
    head = operator(ws).audit_head().seq
    cases = new_cases_file(tmp_path / "new.csv", LABELLED, 5)
    r = hilt_forked("score", cases, "--workspace", ws.root, folder=tmp_path / "hilt")
    assert r.returncode == 2, r.stderr
    assert r.stderr == (
        "error: scoring refused: there is no champion yet: a lead approves a challenger with "
        "`hilt promote`; nothing was ingested or scored\n"
    )
    [refused] = operator(ws).audit_events(after_seq=head)
    assert (refused.action, refused.payload) == (
        "run.refused",
        {"kind": "score", "reason": "model", "model": None, "state": "no-champion"},
    )
    untouched(ws, head + 1)


def test_validation_types_parameters_by_the_templates_cell() -> None:
    typed = run_parameters.validate_parameters(
        "retrain", {"max_depth": "4", "eta": "0.1", "register": "false", "label_noise": 0}
    )
    assert typed == {"max_depth": 4, "eta": 0.1, "register": False, "label_noise": 0.0}
    with pytest.raises(InputError, match="must be an integer"):
        run_parameters.validate_parameters("retrain", {"max_depth": 4.5})
    with pytest.raises(InputError, match="unknown run kind"):
        run_parameters.validate_parameters("train", {})
    with pytest.raises(InputError, match="needs an input file"):
        run_parameters.validate_parameters("score", {})


@pytest.mark.slow
def test_runs_go_through_the_store_service_when_one_owns_the_workspace(
    ws: Workspace, tmp_path: Path
) -> None:
    tokens = issue_tokens(ws, ws.settings())
    # The MLflow store `hilt init` creates (the refusals above proved none is made by them).
    shutil.copyfile(empty_tracking_store(), ws.root / DB_FILE)
    out = tmp_path / "hilt"

    def hilt(*args: str | Path, env: dict[str, str] | None = None) -> CompletedProcess[str]:
        return hilt_forked(*args, folder=out, env=env)

    svc = prewarmed_service(ws, tmp_path / "service.log", free_port())
    try:
        head = operator_head_via(svc.url, tokens["otto"])
        # The installed script in a fresh interpreter, as a scheduler starts it.
        r = hilt_cli("retrain", "--workspace", ws.root, "-p", "num_boost_round", "60")
        assert r.returncode == 2
        assert "set HILT_TOKEN" in r.stderr
        r = hilt("retrain", "--workspace", ws.root, env={"HILT_TOKEN": tokens["alice"]})
        assert r.returncode == 2 and "may not run retraining" in r.stderr
        assert operator_head_via(svc.url, tokens["otto"]) == head

        r = hilt(
            "retrain", "--workspace", ws.root, "-p", "num_boost_round", "60",
            env={"HILT_TOKEN": tokens["dana"], "HILT_PROGRESS": "1"},
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "as dana" in r.stdout and "gate passed" in r.stdout
        # Asked for, the notebook's cells count up on stderr; stdout stays the report.
        assert re.search(r"retrain: 100%.*cell", r.stderr), r.stderr[-300:]
        assert "cell" not in r.stdout
        m = re.search(r"^run ([0-9a-f]{32})", r.stdout, re.M)
        assert m is not None
        run_id = m.group(1)
        # The lead approves through the service too (their own token).
        r = hilt("promote", run_id, "--as", "max", "--workspace", ws.root)
        assert r.returncode == 2 and "HILT_TOKEN" in r.stderr
        r = hilt(
            "promote", run_id, "--as", "max", "--workspace", ws.root,
            env={"HILT_TOKEN": tokens["max"]},
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "version 1 is the champion (was: none)" in r.stdout
        cases = new_cases_file(tmp_path / "new.csv", LABELLED, 8)
        r = hilt("score", cases, "--workspace", ws.root, env={"HILT_TOKEN": tokens["dana"]})
        assert r.returncode == 0, r.stderr
        from hilt.pipelines.store import Identity, open_store_as

        otto = open_store_as(svc.url, Identity(token=tokens["otto"]))
        actions = [e.action for e in otto.audit_events(after_seq=head)]
        assert actions == [
            "run.started",
            "snapshot.created",
            "model.registered",
            "run.trained",
            "run.finished",
            "model.promoted",
            "run.started",
            "cases.ingest",
            "predictions.ingest",
            "run.finished",
        ]
        assert otto.verify().ok
        otto.close()
    finally:
        svc.stop()
    r = hilt("runs", "list", "--workspace", ws.root)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == [
        "run", "kind", "status", "author", "start", "seq", "model", "gate", "alias"
    ]  # fmt: skip
    rows = [line.split() for line in lines[1:]]
    assert [row[1] for row in rows] == ["score", "retrain"]
    retrain_row = rows[1]
    assert retrain_row[0] == run_id
    assert retrain_row[2:4] == ["FINISHED", "dana"]
    assert retrain_row[-2:] == ["passed", "champion"]


def operator_head_via(url: str, token: str) -> int:
    from hilt.pipelines.store import Identity, open_store_as

    store = open_store_as(url, Identity(token=token))
    try:
        return store.audit_head().seq
    finally:
        store.close()


def test_a_run_command_ends_its_process_at_once_with_its_code_and_output() -> None:
    """After a run command (``run_guard``) `hilt` ends without tearing the interpreter down
    (``exit_at_once``): with the command's exit code, its output flushed, the exit handlers
    run; not while a non-daemon thread still works, nor for any other command."""
    code = (
        "import atexit, sys, threading, time\n"
        "from hilt.pipelines.cli import common\n"
        "common.exit_at_once(5)\n"  # no run: returns
        "print('not a run')\n"
        "common.run_guard(lambda: print('ran', end=' '))\n"
        "atexit.register(lambda: print('handler'))\n"
        "worker = threading.Thread(target=time.sleep, args=(0.3,))\n"
        "worker.start()\n"
        "common.exit_at_once(5)\n"  # a non-daemon thread: returns
        "worker.join()\n"
        "print('joined', end=' ')\n"
        "common.exit_at_once(3)\n"
        "print('never printed')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 3, out.stderr[-2000:]
    assert out.stdout == "not a run\nran joined handler\n"
