"""The newest monitoring runs the store service keeps (``monitoring_kept.py``, issue 13):
what it answers equals a full recount of the log (every entry's JSON parsed) after each
operation that adds events, a refused one, and on a log that is not the one it read."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from hilt.pipelines.errors import PermissionDeniedError
from hilt.pipelines.store import sql
from hilt.pipelines.store.config_watch import ConfigWatch
from hilt.pipelines.store.modes.embedded import connect
from hilt.pipelines.store.modes.service import StoreService
from hilt.pipelines.store.monitoring_kept import MAX_RUNS, KeptRuns
from hilt.pipelines.store.operations import Store
from hilt.pipelines.workspace import Workspace
from tests.conftest import copy_of
from tests.pipelines.test_monitoring import flat_statistics


def recount(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str]]:
    """Every ``monitoring.run`` event, newest first, found by parsing every entry."""
    rows = con.execute(
        "SELECT seq, json_extract_string(entry, '$.object_id') FROM audit_log"
        " WHERE json_extract_string(entry, '$.action') = 'monitoring.run' ORDER BY seq DESC"
    ).fetchall()
    return [(int(s), str(r)) for s, r in rows]


def test_the_kept_runs_equal_a_full_recount_after_every_operation_that_adds_events(
    tmp_path: Path, loaded_template: Workspace
) -> None:
    ws = copy_of(loaded_template, tmp_path / "ws")
    con = connect(ws)
    con.execute("SET threads = 1")
    watch = ConfigWatch(ws, owner=True)
    service = StoreService(ws, watch.admit(con, despite_drift=False), con, config=watch)
    otto, lena, max_ = (service.lookup(n) for n in ("otto", "lena", "max"))

    def shown(limit: int = MAX_RUNS) -> list[tuple[int, str]]:
        runs = service.read(otto, Store.monitoring_runs, {"limit": limit})
        return [(v.seq, v.run_id) for v in runs]

    try:
        service.warm()  # as `hilt store serve` does at start: the runs read once, whole
        assert shown() == recount(con) == []
        [model] = [m for m in service.read(max_, Store.models, {}) if m.state == "champion"]
        stats = flat_statistics(model.model, model.model_sha256)
        for i in range(2):
            service.run(max_, Store.record_monitoring, {"statistics": stats, "run_id": f"r{i}"})
            assert shown() == recount(con)
            assert shown(1) == recount(con)[:1] == [(recount(con)[0][0], f"r{i}")]
            # Events of other kinds after it: still the same runs.
            service.run(lena, Store.halt, {"reason": "drift under investigation"})
            service.run(max_, Store.resume, {})
            assert shown() == recount(con)
        assert [r for _, r in shown()] == ["r1", "r0"]
        # Each read looked only at what came after the head it had seen.
        head = sql.scalar(con, "SELECT max(seq) FROM audit_log")
        assert service.kept_runs.through == head
        # A refused run writes nothing, and nothing is kept of it.
        with pytest.raises(PermissionDeniedError):
            service.run(service.lookup("alice"), Store.record_monitoring, {
                "statistics": stats, "run_id": "r-reviewer",
            })  # fmt: skip
        assert shown() == recount(con) and len(recount(con)) == 2
        # Another log under the same kept list (a restore): that log's runs, not the old.
        other = connect(copy_of(loaded_template, tmp_path / "other"))
        try:
            assert KeptRuns().newest(other, MAX_RUNS) == []
            assert [r[:1] for r in service.kept_runs.newest(other, MAX_RUNS)] == []
            assert service.kept_runs.through == sql.scalar(other, "SELECT max(seq) FROM audit_log")
        finally:
            other.close()
        # And back on this log: read again whole, the same as a recount.
        assert [(r[0], r[2]) for r in service.kept_runs.newest(con, MAX_RUNS)] == recount(con)
    finally:
        con.close()
