"""The runner's MLflow relay (``tracking.relay``) on a real Unix socket, a real workspace and a
real MLflow (sqlite) store: the kernel's requests are done only with the relay's key, only
for the operations it serves, and the folder it lends is private and gone afterwards. (A
whole retraining run through it, its kernel unable to import mlflow: the ``first`` run of
tests/notebooks/test_retrain_notebook.py.)"""

from __future__ import annotations

import json
import shutil
import socket
import stat
import tempfile
import threading
from pathlib import Path
from typing import cast

import pytest

from hilt.pipelines.loop.tracking import relay as relay_module
from hilt.pipelines.loop.tracking.environment import DB_FILE
from hilt.pipelines.loop.tracking.relay import (
    MAX_SOCKET_PATH,
    RELAY_ENV,
    RELAY_KEY_ENV,
    InProcess,
    RelayClient,
    RelayError,
    Tracking,
    reserve,
    serve,
)
from hilt.pipelines.loop.tracking.runs import create_run, run_info
from hilt.pipelines.loop.tracking.tags import TAG_KIND
from hilt.pipelines.workspace import Workspace
from tests.conftest import copy_of, operator
from tests.loop_helpers import empty_tracking_store


def test_the_relay_does_only_what_its_key_and_its_table_allow(
    tmp_path: Path, empty_template: Workspace
) -> None:
    ws = copy_of(empty_template, tmp_path / "ws")
    shutil.copyfile(empty_tracking_store(), ws.root / DB_FILE)
    settings = ws.settings()
    run_id = create_run(ws, settings, run_name="relay", author="os:test", tags={TAG_KIND: "x"})
    store = operator(ws)
    other = create_run(ws, settings, run_name="other", author="os:test", tags={TAG_KIND: "x"})
    with serve(lambda folder: InProcess(settings, store.models, folder), run_id) as relay:
        folder = Path(relay.folder)
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        kernel = RelayClient(relay.path, relay.key)
        kernel.set_run_tags(run_id, {"hilt.test": "by the kernel"})
        assert run_info(run_id).tags["hilt.test"] == "by the kernel"
        lent = Path(kernel.folder())
        assert lent.parent == folder and lent.is_dir()

        # Attacks: another key, an operation the relay does not serve, wrong arguments.
        forged = RelayClient(relay.path, "0" * 64)
        with pytest.raises(RelayError, match="without its key"):
            forged.set_run_tags(run_id, {"hilt.test": "forged"})
        with pytest.raises(RelayError, match="has no operation 'delete_run'"):
            kernel.call("delete_run", run_id=run_id)
        with pytest.raises(RelayError, match="set_run_tags: takes run_id, tags"):
            kernel.call("set_run_tags", run_id=run_id, tags={"hilt.test": "x"}, extra=1)
        # Bound to its run: another run, a version it did not register, a version that is
        # a path, files outside its folder, a key that is not ASCII.
        with pytest.raises(RelayError, match="only the run it was started for"):
            kernel.set_run_tags(other, {"hilt.test": "elsewhere"})
        with pytest.raises(RelayError, match="only the run it was started for"):
            kernel.call("register_version", run_id=other)
        with pytest.raises(RelayError, match="only a version this run registered"):
            kernel.delete_version("1")
        with pytest.raises(RelayError, match="positive whole number"):
            kernel.model_dir("1/../../escaped")
        outside = json.dumps({"folder": str(tmp_path)})
        with pytest.raises(RelayError, match="in the relay's folder"):
            kernel.write_training_log(run_id, outside)
        with pytest.raises(RelayError, match="without its key"):
            RelayClient(relay.path, "é" * 64).set_run_tags(run_id, {"hilt.test": "x"})
        # A peer that connects and stalls does not block the kernel's next call.
        stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stalled.connect(relay.path)
        stalled.sendall(b"\x00\x00")
        assert "hilt.test" not in run_info(other).tags
        assert run_info(run_id).tags["hilt.test"] == "by the kernel"  # nothing else written
        assert kernel.mirror() is None
        stalled.close()
    assert not folder.exists()  # the lent folder and the socket with it
    with pytest.raises(RelayError, match="does not answer"):
        kernel.set_run_tags(run_id, {"hilt.test": "late"})


def test_a_long_tmpdir_still_gives_a_socket_the_kernel_can_reach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    long = tmp_path / ("x" * 90)
    long.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long))
    with serve(lambda folder: cast(Tracking, object()), "run") as relay:
        assert len(relay.path) <= MAX_SOCKET_PATH
        with pytest.raises(RelayError, match="without its key"):
            RelayClient(relay.path, "0" * 64).call("mirror")
    assert not Path(relay.folder).exists()
    assert not list(long.iterdir())  # nothing left behind where it did not fit


def test_a_reserved_relay_is_private_before_it_serves_and_gone_after() -> None:
    """The runner gives a run's kernel the relay's address and key as the kernel starts,
    before the run (and so the relay's binding) exists: the folder is private from the
    start, the relay serves there later, its socket goes when it stops, the folder when the
    reservation ends."""
    with reserve() as at:
        folder = Path(at.folder)
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert Path(at.path).parent == folder and not Path(at.path).exists()
        assert at.environment() == {RELAY_ENV: at.path, RELAY_KEY_ENV: at.key}
        with serve(lambda f: cast(Tracking, object()), "run", at) as relay:
            assert relay == at
            with pytest.raises(RelayError, match="without its key"):
                RelayClient(at.path, "0" * 64).call("mirror")
        assert not Path(at.path).exists() and folder.is_dir()
        with pytest.raises(RelayError, match="does not answer"):
            RelayClient(at.path, at.key).call("mirror")
    assert not folder.exists()


def test_the_relay_stops_without_waiting_for_its_loop_to_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every run ends by stopping its relay: the stop wakes the relay's loop instead of
    waiting for its next poll (was up to half a second at the end of every run). With the
    poll a minute apart, the relay still answers, then stops at once."""
    monkeypatch.setattr(relay_module, "POLL_INTERVAL_S", 60.0)
    stopped = threading.Event()

    def serve_and_stop() -> None:
        with (
            serve(lambda f: cast(Tracking, object()), "run") as relay,
            pytest.raises(RelayError, match="without its key"),
        ):
            RelayClient(relay.path, "0" * 64).call("mirror")
        stopped.set()

    server = threading.Thread(target=serve_and_stop, daemon=True)
    server.start()
    # (far below the poll's minute: the stop did not wait for it)
    assert stopped.wait(20.0), "the relay's stop waited for its loop's next poll"
