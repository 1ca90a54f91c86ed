"""The hash check of the full walk in worker processes (``audit/parallel_hash.py``).

The log is split into seq ranges, one per process, each read from the real DuckDB file by
its own read-only connection: every row must be in exactly one part, and a changed entry is
found whichever part holds it (the earliest one when several are), exactly as the check in
one thread finds it. Then `hilt audit verify` names it, through the processes.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import duckdb
import pytest

from hilt.pipelines.store.audit import chain as audit_chain
from hilt.pipelines.store.audit import parallel_hash
from hilt.pipelines.store.audit.chain import GENESIS_HASH, chain_hash, first_bad_hash
from hilt.pipelines.workspace import Workspace
from tests.audit_helpers import raw_db
from tests.pipelines.store.test_audit_tamper import verify_cli


@pytest.mark.parametrize(("lo", "hi"), [(1, 1), (1, 2), (1, 10), (5, 1_000_003), (0, 7)])
@pytest.mark.parametrize("parts", [1, 2, 3, 8])
def test_every_seq_is_in_exactly_one_part(lo: int, hi: int, parts: int) -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE audit_log AS SELECT range AS seq FROM range(?, ?)", [lo - 1, hi + 2])
    counts = [
        con.execute(
            f"SELECT count(*) FROM {parallel_hash.part_source(lo, hi, k, parts)}"
        ).fetchall()[0][0]
        for k in range(parts)
    ]
    # seqs lo-1 and hi+1 too: the first part is open below, the last open above
    assert sum(counts) == hi - lo + 3, counts


def _tamper(ws: Workspace, seq: int) -> None:
    with raw_db(ws) as con:
        con.execute("UPDATE audit_log SET entry = entry || ' ' WHERE seq = ?", [seq])


_PARTED = """
import sys
from pathlib import Path

import duckdb

from hilt.pipelines.store.audit import parallel_hash

parallel_hash.MIN_FILE_BYTES = 0  # the test's file is small
check = parallel_hash.start(Path(sys.argv[1]), int(sys.argv[2]))
assert check is not None, "not forked"  # one thread here, fork on Linux
con = duckdb.connect(sys.argv[1], read_only=True)
print(check.result(con))
"""


def _parted(ws: Workspace, parts: int) -> int | None:
    """The parted check, from a fresh (single-threaded) process, as the CLI runs it."""
    out = subprocess.run(
        [sys.executable, "-c", _PARTED, str(ws.db_path), str(parts)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if "BinderException" in out.stderr:
        raise duckdb.BinderException(out.stderr.strip().splitlines()[-1])
    assert out.returncode == 0, out.stderr[-2000:]
    found = out.stdout.strip()
    return None if found == "None" else int(found)


def _threaded(ws: Workspace) -> int | None:
    with raw_db(ws) as con:
        return first_bad_hash(con)


@pytest.mark.obligation("AI Act 12")
def test_a_changed_entry_is_found_in_any_part(loaded_workspace: Workspace) -> None:
    ws = loaded_workspace
    with raw_db(ws) as con:
        head = int(con.execute("SELECT max(seq) FROM audit_log").fetchall()[0][0])
    assert head >= 3, head
    assert _parted(ws, 2) is None
    _tamper(ws, head)  # the last part
    assert _parted(ws, 2) == head == _threaded(ws)
    assert _parted(ws, 3) == head
    _tamper(ws, 1)  # the first part: the earliest is named
    assert _parted(ws, 2) == 1 == _threaded(ws)
    cli = verify_cli(ws)
    assert cli.returncode == 1, (cli.stdout, cli.stderr)
    assert "BROKEN at seq 1: hash-mismatch:" in cli.stdout, cli.stdout


_CLI_FORKS = """
import sys

from hilt.pipelines.store.audit import parallel_hash

started = parallel_hash.start


def start(*args, **kwargs):
    check = started(*args, **kwargs)
    print("forked" if check is not None else "in a thread", file=sys.stderr)
    return check


parallel_hash.start = start
parallel_hash.MIN_FILE_BYTES = 0  # the test's file is small
sys.argv = ["hilt", "audit", "verify", "--workspace", sys.argv[1]]
from hilt.pipelines.cli import app

app()
"""


def test_the_cli_walk_of_the_file_forks(loaded_workspace: Workspace) -> None:
    """The CLI's process is one the workers may be forked from (numpy and pyarrow start
    threads of their own at import, which survive a fork; no Python thread, no DuckDB
    database is open yet): its full walk hashes in processes, not in the fallback."""
    out = subprocess.run(
        [sys.executable, "-c", _CLI_FORKS, str(loaded_workspace.root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("OK "), out.stdout
    assert out.stderr.strip().splitlines()[-1] == "forked", out.stderr[-2000:]


def test_a_small_file_is_hashed_in_a_thread(loaded_workspace: Workspace) -> None:
    """Forking the workers costs more than hashing a small file's events: nothing is
    forked below ``MIN_FILE_BYTES``, and the walk hashes in a thread."""
    size = loaded_workspace.db_path.stat().st_size
    assert 0 < size < parallel_hash.MIN_FILE_BYTES
    assert parallel_hash.start(loaded_workspace.db_path, 2) is None


def test_with_other_threads_running_nothing_is_forked(
    loaded_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fork copies the locks other threads hold: then the caller hashes in a thread."""
    monkeypatch.setattr(parallel_hash, "MIN_FILE_BYTES", 0)  # the file is small
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert parallel_hash.start(loaded_workspace.db_path, 2) is None
    finally:
        release.set()
        other.join()


def test_a_part_whose_query_fails_raises_duckdbs_error(loaded_workspace: Workspace) -> None:
    """A hash column dropped behind the store's back: each part's query fails, and the
    error comes back as DuckDB's own kind (verify names it as a schema break)."""
    ws = loaded_workspace
    with raw_db(ws) as con:
        con.execute("ALTER TABLE audit_log RENAME COLUMN hash TO was_hash")
    with pytest.raises(duckdb.BinderException):
        _parted(ws, 2)
    cli = verify_cli(ws)
    assert cli.returncode == 1, (cli.stdout, cli.stderr)
    assert "BROKEN at seq 0: schema:" in cli.stdout, cli.stdout
    assert "Traceback" not in cli.stderr, cli.stderr


def _chain_table(n: int) -> duckdb.DuckDBPyConnection:
    """An in-memory audit_log of n chained rows (entries of different lengths, one with
    text outside ASCII)."""
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE audit_log (seq BIGINT, entry VARCHAR, prev_hash VARCHAR, hash VARCHAR)"
    )
    prev, rows = GENESIS_HASH, []
    for seq in range(1, n + 1):
        entry = f'{{"action":"x","payload":{{"note":"{"é" * (seq % 7)}{"a" * seq}"}},"seq":{seq}}}'
        rows.append((seq, entry, prev, chain_hash(prev, entry)))
        prev = rows[-1][3]
    con.executemany("INSERT INTO audit_log VALUES (?, ?, ?, ?)", rows)
    return con


#: Each tamper of a stored hash or a hashed text, and the seq that must be named.
_HASH_TAMPERS = [
    ("UPDATE audit_log SET entry = entry || ' ' WHERE seq = 30", 30),
    ("UPDATE audit_log SET prev_hash = NULL WHERE seq = 9", 9),
    ("UPDATE audit_log SET entry = NULL WHERE seq = 41", 41),
    ("UPDATE audit_log SET hash = NULL WHERE seq = 17", 17),
    ("UPDATE audit_log SET hash = upper(hash) WHERE seq = 3", 3),
    # the last character of one stored hash moved to the front of the next: together the
    # two texts are what they were, each one is wrong
    (
        "UPDATE audit_log SET hash = CASE seq WHEN 20 THEN hash[:63]"
        " ELSE (SELECT hash[64:] FROM audit_log WHERE seq = 20) || hash END"
        " WHERE seq IN (20, 21)",
        20,
    ),
]


@pytest.mark.parametrize(("tamper", "expected"), _HASH_TAMPERS)
def test_the_bulk_hash_check_names_what_the_row_by_row_one_names(
    tamper: str, expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``first_bad_hash`` over Arrow batches (the full walk's) and row by row (a verify
    from a checkpoint in a fresh process) agree: clean, and on every tamper, over several
    batches, the earliest bad seq."""
    monkeypatch.setattr(audit_chain, "_HASH_BATCH", 8)
    con = _chain_table(50)
    assert first_bad_hash(con, bulk=True) is None
    assert first_bad_hash(con, bulk=False) is None
    con.execute(tamper)
    assert first_bad_hash(con, bulk=True) == expected
    assert first_bad_hash(con, bulk=False) == expected
    con.execute("UPDATE audit_log SET entry = entry || ' ' WHERE seq = 45")  # a later one too
    for bulk in (True, False):
        assert first_bad_hash(con, bulk=bulk) == expected
        assert first_bad_hash(con, audit_chain.tail(expected + 1), bulk=bulk) == 45
