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
from collections.abc import Callable

import duckdb
import pytest

from hilt.pipelines.store.audit import chain as audit_chain
from hilt.pipelines.store.audit import parallel_hash
from hilt.pipelines.store.audit.chain import GENESIS_HASH, chain_hash, first_bad_hash
from hilt.pipelines.workspace import Workspace
from tests.audit_helpers import raw_db
from tests.pipelines.store.test_audit_tamper import (
    ATTACKS,
    Expected,
    Layout,
    template,
    verify_cli,
    victim,
)

__all__ = ["template", "victim"]  # the tamper matrix's fixtures, used here


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


def _python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by a fresh Python process (with one thread: the workers may be forked
    from it)."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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
    out = _python(_PARTED, str(ws.db_path), str(parts))
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
    out = _python(_CLI_FORKS, str(loaded_workspace.root))
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


def _run(rows: int, first: int, prev: str, last: int, last_hash: str) -> audit_chain.Run:
    return audit_chain.Run(rows, first, prev, last, last_hash)


def test_the_parts_runs_join_only_where_each_follows_the_one_before() -> None:
    """``chain.joined``: the parts' runs, in seq order, are one run where each starts at the
    seq after the one before ends and links to its last stored hash; an empty part is left
    out; a part that is no run, a gap, an overlap or another link is no run at all."""
    first, second = _run(3, 1, GENESIS_HASH, 3, "h3"), _run(2, 4, "h3", 5, "h5")
    empty = _run(0, 0, "", 0, "")
    whole = _run(5, 1, GENESIS_HASH, 5, "h5")
    assert audit_chain.joined([first, second]) == whole
    assert audit_chain.joined([empty, first, empty, second, empty]) == whole
    assert audit_chain.joined([first]) == first
    assert audit_chain.joined([empty, empty]) == empty
    assert audit_chain.joined([]) == empty
    assert audit_chain.joined([first, None, second]) is None
    assert audit_chain.joined([first, _run(2, 5, "h3", 6, "h6")]) is None  # seq 4 missing
    assert audit_chain.joined([first, _run(2, 3, "h3", 4, "h5")]) is None  # seq 3 twice
    assert audit_chain.joined([first, _run(2, 4, "H3", 5, "h5")]) is None  # another link
    assert audit_chain.joined([second, first]) is None  # out of order


_SCANNED = """
import sys
from pathlib import Path

import duckdb

from hilt.pipelines.store.audit import chain as audit_chain
from hilt.pipelines.store.audit import parallel_hash

parallel_hash.MIN_FILE_BYTES = 0  # the test's file is small
check = parallel_hash.start(Path(sys.argv[1]), int(sys.argv[2]))
assert check is not None, "not forked"
con = duckdb.connect(sys.argv[1], read_only=True)
bad, run = check.scan(con)
order = audit_chain.order_of_run(run, audit_chain.purge_anchor(con))
print(bad, "no run" if order is None else order == audit_chain.check_order(con))
"""


def _scanned(ws: Workspace, parts: int) -> str:
    """What the parted check finds, from a fresh process: the earliest bad hash, and
    whether the order the parts' joined run gives equals the order scan's ("no run": none
    is given)."""
    out = _python(_SCANNED, str(ws.db_path), str(parts))
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def _second_part_starts(ws: Workspace) -> int:
    """The first seq of the second of two parts."""
    with raw_db(ws) as con:
        lo, hi = con.execute("SELECT min(seq), max(seq) FROM audit_log").fetchall()[0]
        n = con.execute(
            f"SELECT count(*) FROM {parallel_hash.part_source(lo, hi, 0, 2)}"
        ).fetchall()[0][0]
    return int(lo) + int(n)


def test_the_parts_give_the_order_scans_answer_as_one_run(loaded_workspace: Workspace) -> None:
    """An intact log: the parts' runs join into the order the order scan finds, for any
    number of parts (then the full walk does not scan the order again)."""
    for parts in (2, 3, 8):
        assert _scanned(loaded_workspace, parts) == "None True"


def test_a_link_changed_where_a_part_starts_is_no_run(loaded_workspace: Workspace) -> None:
    """The first row of the second part no longer links to the last of the first: each part
    alone is a run, together they are none (and the row's hash no longer matches)."""
    ws = loaded_workspace
    seq = _second_part_starts(ws)
    with raw_db(ws) as con:
        con.execute("UPDATE audit_log SET prev_hash = ? WHERE seq = ?", [GENESIS_HASH, seq])
    assert _scanned(ws, 2) == f"{seq} no run"


def test_a_row_removed_where_a_part_ends_is_no_run(loaded_workspace: Workspace) -> None:
    ws = loaded_workspace
    seq = _second_part_starts(ws) - 1
    with raw_db(ws) as con:
        con.execute("DELETE FROM audit_log WHERE seq = ?", [seq])
    assert _scanned(ws, 2) == "None no run"


def test_a_row_in_no_part_leaves_no_run(loaded_workspace: Workspace) -> None:
    """A row whose seq is NULL (the table rebuilt without its constraints) is read by no
    part: the joined run then holds fewer rows than the log, and is not taken (the order
    scan counts it)."""
    ws = loaded_workspace
    with raw_db(ws) as con:
        con.execute("CREATE TABLE rebuilt AS SELECT * FROM audit_log")
        con.execute("DROP TABLE audit_log CASCADE")
        con.execute("ALTER TABLE rebuilt RENAME TO audit_log")
        con.execute(
            "INSERT INTO audit_log SELECT NULL, entry, prev_hash, hash FROM audit_log WHERE seq = 1"
        )
    assert _scanned(ws, 2) == "None no run"


_CLI_ORDER_SCANS = """
import sys

from hilt.pipelines.store.audit import chain as audit_chain
from hilt.pipelines.store.audit import parallel_hash

scanned = audit_chain.check_order


def check_order(*args, **kwargs):
    print("order scanned", file=sys.stderr)
    return scanned(*args, **kwargs)


audit_chain.check_order = check_order
parallel_hash.MIN_FILE_BYTES = 0  # the test's file is small
sys.argv = ["hilt", "audit", "verify", "--workspace", sys.argv[1]]
from hilt.pipelines.cli import app

app()
"""


def test_the_cli_walk_takes_the_order_from_the_parts(loaded_workspace: Workspace) -> None:
    """`hilt audit verify` hashing in processes: on an intact log the order comes from the
    parts' run, and the log is not scanned for it again; a link broken where a part starts
    is named, by the order scan."""
    ws = loaded_workspace

    def cli() -> subprocess.CompletedProcess[str]:
        return _python(_CLI_ORDER_SCANS, str(ws.root))

    intact = cli()
    assert intact.returncode == 0, intact.stderr[-2000:]
    assert intact.stdout.startswith("OK "), intact.stdout
    assert "order scanned" not in intact.stderr, intact.stderr[-2000:]
    seq = _second_part_starts(ws)
    with raw_db(ws) as con:
        stored = con.execute("SELECT hash FROM audit_log WHERE seq = ?", [seq - 1]).fetchall()
        # the link changed and the row re-hashed: only the link is wrong
        entry = con.execute("SELECT entry FROM audit_log WHERE seq = ?", [seq]).fetchall()
        forged = "1" * 64
        assert stored[0][0] != forged
        con.execute(
            "UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?",
            [forged, chain_hash(forged, entry[0][0]), seq],
        )
    broken = cli()
    assert broken.returncode == 1, (broken.stdout, broken.stderr[-2000:])
    assert f"BROKEN at seq {seq}: link-broken:" in broken.stdout, broken.stdout
    assert "order scanned" in broken.stderr, broken.stderr[-2000:]


_FORKED_WALK = """
import sys

from hilt.pipelines.store import sql
from hilt.pipelines.store.audit import parallel_hash, reconcile
from hilt.pipelines.store.audit import verify as verify_module
from hilt.pipelines.workspace import Workspace

parallel_hash.MIN_FILE_BYTES = 0  # the test's file is small
started = parallel_hash.start
forked = []


def start(*args, **kwargs):
    check = started(*args, **kwargs)
    forked.append(check is not None)
    return check


class Spy:
    # verify's own queries (the workers' go through parallel_hash's)
    def __getattr__(self, name):
        return getattr(sql, name)

    def one(self, con, query, params=None):
        if query == reconcile.CONTENT_AND_DECISIONS_SQL:
            print("scanned here", file=sys.stderr)
        return sql.one(con, query, params)


parallel_hash.start = start
verify_module.sql = Spy()
report = verify_module.verify_file(Workspace.at(sys.argv[1]), processes=True)
assert forked == [True], forked
print(report.summary())
"""


def _forked_walk(ws: Workspace) -> subprocess.CompletedProcess[str]:
    """The CLI's full walk of the file (``verify_file(processes=True)``: the hash check and
    the scan that reconciles the decisions in worker processes), from a fresh process;
    prints its report, and "scanned here" where verify ran that scan itself."""
    out = _python(_FORKED_WALK, str(ws.root))
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def test_the_walk_in_processes_reconciles_the_decisions_there(
    victim: tuple[Workspace, Layout],
) -> None:
    """An untouched log with decisions: the workers' parts of the scan that reconciles them
    are the answer, and verify does not scan the log again for it."""
    ws, at = victim
    out = _forked_walk(ws)
    assert out.stdout.startswith(f"OK {at.head_seq} events"), out.stdout
    assert "scanned here" not in out.stderr, out.stderr[-2000:]


#: The attacks on what the workers read: the log's rows (their hashes, their order), the
#: decisions, and the tables' schema.
_ON_THE_WORKERS_ROWS = {
    "change-payload",
    "delete-row",
    "delete-row-renumber",
    "insert-row-duplicate-seq",
    "swap-rows",
    "decision-row-edited",
    "decision-comment-edited",
    "decision-row-deleted",
    "column-dropped",
    "column-retyped",
    "audit-log-dropped",
    "forged-purge-short-period",
}


@pytest.mark.parametrize("attack", [a for a in ATTACKS if a.id in _ON_THE_WORKERS_ROWS])
def test_the_walk_in_processes_names_the_first_break(
    attack: Callable[[Workspace, Layout], Expected], victim: tuple[Workspace, Layout]
) -> None:
    """The tamper matrix, walked as the CLI walks a large file (hashing, and reconciling
    the decisions, in worker processes): the same first break as verify in one process
    (test_audit_tamper)."""
    ws, at = victim
    seq, kind = attack(ws, at)
    out = _forked_walk(ws)
    assert out.stdout.startswith(f"BROKEN at seq {seq}: {kind}:"), out.stdout
