"""The runner's MLflow relay (``tracking.relay``) on a real Unix socket, a real workspace and a
real MLflow (sqlite) store: the kernel's requests are done only with the relay's key, only
for the operations it serves, and the folder it lends is private and gone afterwards. (A
whole retraining run through it, its kernel unable to import mlflow: the ``first`` run of
tests/notebooks/test_retrain_notebook.py.)"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from hilt.pipelines.loop.tracking.environment import DB_FILE
from hilt.pipelines.loop.tracking.relay import InProcess, RelayClient, RelayError, serve
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
    with serve(lambda folder: InProcess(settings, store.models, folder)) as relay:
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
        # MLflow's own refusal comes back as the kernel's error; the relay serves on.
        with pytest.raises(RelayError, match="no-such-run"):
            kernel.set_run_tags("no-such-run", {"hilt.test": "x"})
        assert run_info(run_id).tags["hilt.test"] == "by the kernel"  # nothing else written
        assert kernel.mirror() is None
    assert not folder.exists()  # the lent folder and the socket with it
    with pytest.raises(RelayError, match="does not answer"):
        kernel.set_run_tags(run_id, {"hilt.test": "late"})
