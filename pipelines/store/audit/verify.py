"""Verification: the chain, the signed checkpoints, and the records against their events.

``verify_file`` is what `hilt audit verify` runs on a workspace's own file (under the
store's lock, without an actor); ``verify_store`` the same on an open connection (what the
``verify`` operation runs); ``verify_records`` the checks on any connection holding an
``audit_log`` and a ``decisions`` table (the store's file, or an in-memory copy fetched
from a service).

Each takes ``start_from``: None walks the whole log (the default of the CLI, and what a
scheduled job runs); ``latest`` or a checkpoint's seq verifies from a signed checkpoint
(``checkpoints.starting_point``): the stored hash at its seq must be the signed one, then
the chain, the records and the authority events after it are checked as in the full walk.
What came before the checkpoint is trusted to its signature and not re-read: a tamper
before it is found by the full walk only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import duckdb

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import HiltError, StoreError
from hilt.pipelines.store import sql
from hilt.pipelines.store.audit import (
    after_checkpoint,
    authority,
    batch_digest,
    config_check,
    gold_digest,
    parallel_hash,
    reconcile,
    registry_check,
    schema_check,
)
from hilt.pipelines.store.audit import chain as audit_chain
from hilt.pipelines.store.audit.authority import first_break as authority_break
from hilt.pipelines.store.audit.chain import (
    GENESIS_HASH,
    RETENTION_KINDS,
    Break,
    hash_at,
    purge_anchor,
    tail,
)
from hilt.pipelines.store.audit.checkpoints import (
    RECORDED_KINDS,
    Checkpoint,
    check_checkpoints,
    missing_from_file,
    parse_public_key,
    read_checkpoints,
    starting_point,
)
from hilt.pipelines.store.audit.gold_digest import first_mismatch as gold_mismatch
from hilt.pipelines.store.audit_records import BreakRecord, VerifyReport
from hilt.pipelines.store.sql import describe
from hilt.pipelines.workspace import Workspace

T = TypeVar("T")
R = TypeVar("R")

#: The hash check of the whole log, given the connection: the earliest seq whose stored hash
#: does not match, or None, and the run the rows form (``audit_chain.hash_scan``).
HashCheck = Callable[[duckdb.DuckDBPyConnection], tuple[int | None, audit_chain.Run | None]]

#: The scan that reconciles the decisions of the whole log, computed elsewhere, given the
#: connection: the earliest (seq-mismatch, decision record-mismatch) seqs, or None where it
#: was not (the scan then runs here).
ContentCheck = Callable[[duckdb.DuckDBPyConnection], tuple[int | None, int | None] | None]

#: The tables the checks by kind hold to their events, and the column of the seq of the
#: event that wrote a row (``after_checkpoint.After.idle``).
ROW_TABLES: Mapping[str, str] = {
    **reconcile.COUNTED_TABLES,
    **gold_digest.TABLES,
    **config_check.TABLES,
}


def verify_file(
    workspace: Workspace,
    public_key: str | None = None,
    checkpoints: Path | None = None,
    start_from: str | None = None,
    *,
    processes: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Verify the workspace's store file, holding the store's lock while it reads.

    ``processes``: a full walk hashes the rows in one forked process per core
    (``parallel_hash``); for a caller that has no DuckDB database open (the CLI).
    ``on_progress``: see ``verify_records``."""
    from hilt.pipelines.store.modes import locking
    from hilt.pipelines.store.modes.connection import connect
    from hilt.pipelines.store.ops.config import settings_in_force

    workspace.require()
    with locking.exclusive(workspace.lock_path, workspace.service_file):
        # The full walk hashes every row: in worker processes, forked before this process
        # opens the file (``parallel_hash``), which it then opens read-only beside them.
        full = processes and start_from is None
        hashing = parallel_hash.start(workspace.db_path) if full else None
        try:
            con = connect(workspace, read_only=hashing is not None)
        except BaseException:
            if hashing is not None:
                hashing.close()
            raise
        try:
            # The config in force (its pinned key), not an edit of hilt.toml nobody applied;
            # the file only when the store's record of it is damaged (the schema check
            # then names the damage).
            try:
                settings = settings_in_force(con, workspace)
            except (duckdb.Error, HiltError):
                settings = workspace.settings()
            return verify_store(
                con,
                settings,
                workspace,
                public_key,
                checkpoints,
                start_from=start_from,
                hash_check=hashing.scan if hashing is not None else None,
                content_check=hashing.content if hashing is not None else None,
                on_progress=on_progress,
            )
        except duckdb.Error as e:
            raise StoreError(f"the store failed ({describe(e)})") from e
        finally:
            if hashing is not None:
                hashing.close()
            con.close()


def verify_store(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    workspace: Workspace,
    public_key: str | None = None,
    checkpoints: Path | None = None,
    now: datetime | None = None,
    *,
    parallel: bool = True,
    start_from: str | None = None,
    hash_check: HashCheck | None = None,
    content_check: ContentCheck | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Verify the store's own file without an actor (what `hilt audit verify` runs).

    ``public_key`` and ``checkpoints`` let an auditor bring their own copies (the pinned key
    and the checkpoint file as they last saw them), so that an attacker who rewrites the
    workspace's copies as well is still caught. ``now``: the time of this verification
    (the store's clock; default this machine's), which no purge may be dated after.
    ``parallel=False``: the checks one after another (beside the service's writer).
    ``start_from``: from a signed checkpoint (see the module's docstring).
    ``hash_check``, ``content_check``: see ``verify_records``.
    """
    return verify_records(
        con,
        public_key or settings.audit.public_key,
        checkpoints or workspace.checkpoints_path,
        batches=True,
        settings=settings,
        now=now,
        parallel=parallel,
        start_from=start_from,
        hash_check=hash_check,
        content_check=content_check,
        on_progress=on_progress,
    )


def verify_records(
    con: duckdb.DuckDBPyConnection,
    public_key: str | None,
    checkpoints_path: Path,
    *,
    batches: bool,
    settings: Settings | None = None,
    now: datetime | None = None,
    parallel: bool = True,
    start_from: str | None = None,
    hash_check: HashCheck | None = None,
    content_check: ContentCheck | None = None,
    on_progress: Callable[[int], None] | None = None,
    skip_idle: bool = True,
) -> VerifyReport:
    """Check the chain in ``con``'s audit_log, the signed checkpoints, and the records.

    ``con`` holds an ``audit_log`` and a ``decisions`` table: the store's own file, or an
    in-memory copy fetched from the service (then ``batches=False`` and no settings: case
    and prediction rows are not fetched, so batches are not reconciled).

    With settings, the file's tables are first compared with the schema hilt creates
    (``schema_check``). Tampering with the tables themselves is reported, never raised: a
    check whose query DuckDB refuses (a table or column it needs is gone) is a ``schema``
    break at seq 0 naming that check, and the checks that can still run do.

    The checks are independent, so they run at the same time, each on its own cursor
    (DuckDB releases the GIL while a query runs, and so does sha256 on large buffers): the
    scan that hashes every entry and reconciles the decisions with their events, the order
    of the chain, the batches and their digests, the schema and the checkpoints. Beside
    the service's writer (``parallel=False``) they run one after another instead, on one
    core: the reviewers' decisions keep the others (measured on 2 cores: the reviewers'
    p95 while an auditor verifies in a loop 2.1-2.5x the idle one with the checks in
    parallel, 1.2-2.1x one after another). The hashes are recomputed with hashlib in a
    thread of their own (``audit_chain.hash_scan``), beside DuckDB's scans; on the
    CLI's full walk of the file, in one process per core instead (``hash_check``). Where
    the hashing read the rows as one run from the anchor (``audit_chain.Run``; the
    processes' parts joined), that is the order check's answer, and the order scan does not
    read them again.

    ``start_from``: verify from a signed checkpoint (``latest`` or its seq; see the
    module's docstring): every check then reads only what came after it, and a check by kind
    with nothing to judge after it (``after_checkpoint``: no event of its kinds, no row of
    its tables) is not run. Where a writer appended meanwhile, what came after the head that
    read saw is read again, and if it gives such a check something to judge, every check
    runs again (``skip_idle=False``: each one runs, whatever came after the checkpoint).

    ``hash_check``: the earliest seq whose stored hash does not match and the run of the
    rows, computed elsewhere for the whole log (``parallel_hash``: worker processes reading
    the same file), instead of ``audit_chain.hash_scan`` in a thread here. Only for a full
    walk. ``content_check``: likewise the scan that reconciles the decisions (each worker
    process scans its part right after hashing it, reading the entries it has just read);
    where it gives None, the scan runs here.

    ``on_progress``: called with 1 as each check finishes (a command's progress of checks;
    the checks run at once, so their count, not the events, is what advances).
    """
    if (hash_check is not None or content_check is not None) and start_from is not None:
        raise ValueError("a check computed elsewhere covers the whole log: no start_from")
    checkpoints, cp_break = read_checkpoints(checkpoints_path)
    pinned = parse_public_key(public_key) if public_key else None
    start: Checkpoint | None = None
    if start_from is not None and cp_break is None:
        chosen = starting_point(checkpoints, pinned, start_from)
        if isinstance(chosen, Break):
            return _report([chosen], 0, GENESIS_HASH, len(checkpoints), int(chosen.seq) or None)
        start = chosen
    since = start.seq if start is not None else 0
    source = tail(since)
    failed: dict[str, Break] = {}

    def attempt(
        what: str, check: Callable[[duckdb.DuckDBPyConnection], T]
    ) -> Callable[[], T | None]:
        def run() -> T | None:
            cursor = con.cursor()
            try:
                return check(cursor)
            except duckdb.Error as e:
                failed[what] = schema_check.query_failed(what, e)
                return None
            finally:
                cursor.close()

        return run

    chain_check = "the hash chain check"
    reconcile_check = "the reconciliation of records with their events"
    events_read = "the read of the events to check"
    # What several checks need, read first in the pool (not before it: the hashing starts
    # at once beside them); each check that needs one waits for it.
    purged_read: Future[int | None]
    restated_read: Future[batch_digest.Restated | None] | None
    anchor_read: Future[tuple[int, str] | None]
    after_read: Future[after_checkpoint.After | None]
    hashed: Future[tuple[int | None, audit_chain.Run | None] | None]
    tables = ROW_TABLES if batches else {}
    #: The kinds and tables of each check found idle (not run).
    skipped: list[tuple[tuple[str, ...], tuple[str, ...]]] = []

    def kinds() -> str:
        # The rows the checks that pick events by kind read (all those after ``since`` where
        # the read failed: each check then names its own failure).
        seen = after_read.result()
        return seen.source if seen is not None else source

    def idle(kinds_of: tuple[str, ...], tables_of: Mapping[str, str] | None = None) -> bool:
        # A check by kind with nothing to judge after the checkpoint: its answer is nothing.
        seen = after_read.result() if skip_idle else None
        if seen is None or not seen.idle(kinds_of, tables_of or ()):
            return False
        skipped.append((kinds_of, tuple(tables_of or ())))
        return True

    def unless_idle(
        check: Callable[[duckdb.DuckDBPyConnection], T],
        nothing: T,
        kinds_of: tuple[str, ...],
        tables_of: Mapping[str, str] | None = None,
    ) -> Callable[[duckdb.DuckDBPyConnection], T]:
        # ``check``, or ``nothing`` (what it finds with nothing to judge) where it is idle.
        return lambda c: nothing if idle(kinds_of, tables_of) else check(c)

    def purged() -> int:
        return purged_read.result() or 0

    def restated() -> batch_digest.Restated | None:
        # Read once for both batch checks (None where it failed: each then names its failure).
        return restated_read.result() if restated_read is not None else None

    def content_and_decisions(
        c: duckdb.DuckDBPyConnection,
    ) -> tuple[int | None, int | None]:
        found = content_check(c) if content_check is not None else None
        if found is not None:
            return found
        row = sql.one(
            c,
            reconcile.CONTENT_AND_DECISIONS_SQL,
            {"decisions_purged_through": purged(), "since": since},
        )
        assert row is not None
        return row[0], row[1]

    def checkpoint_checks(c: duckdb.DuckDBPyConnection) -> list[Break]:
        head_seq = int(sql.scalar(c, "SELECT coalesce(max(seq), 0) FROM audit_log"))
        anchor_seq, anchor_hash = anchor_read.result() or purge_anchor(c, kinds())
        # From a checkpoint: it and the later ones (the earlier ones it supersedes).
        judged = [cp for cp in checkpoints if cp.seq >= since]
        hashes = hash_at(c, [cp.seq for cp in judged])
        if anchor_seq:
            hashes[anchor_seq] = anchor_hash
        cp = check_checkpoints(judged, pinned, head_seq, hashes, purged_through=anchor_seq)
        missing = (
            None if idle(RECORDED_KINDS) else missing_from_file(c, checkpoints, since, kinds())
        )
        return [b for b in (cp, missing) if b is not None]

    start_at = (since, start.head_hash) if start is not None else (0, GENESIS_HASH)

    def ordered(c: duckdb.DuckDBPyConnection) -> audit_chain.ChainOrder:
        # Where the hash scan (here, or in worker processes) read the rows as one run from
        # the anchor, that is the answer; else the order scan (which names the break).
        purged_at = anchor_read.result()
        found = hashed.result() if purged_at is not None else None
        if purged_at is not None and found is not None:
            fast = audit_chain.order_of_run(found[1], purged_at, start_at)
            if fast is not None:
                return fast
        return audit_chain.check_order(c, source, start_at, purged_at)

    def hash_scan(c: duckdb.DuckDBPyConnection) -> tuple[int | None, audit_chain.Run | None]:
        if hash_check is not None:
            return hash_check(c)
        return audit_chain.hash_scan(c, source)

    with ThreadPoolExecutor(
        max_workers=3 if parallel else 1, thread_name_prefix="hilt-verify"
    ) as pool:

        def submit(check: Callable[[], R]) -> Future[R]:
            future = pool.submit(check)
            if on_progress is not None:
                future.add_done_callback(lambda _: on_progress(1))
            return future

        # Submitted before the checks that wait for them, so a worker is free to read them
        # (the pool starts them in this order: each waits only for one started before it).
        after_read = pool.submit(
            attempt(events_read, lambda c: after_checkpoint.read(c, since, tables))
        )
        # The longest first: every entry hashed (in Python, holding the GIL), and every
        # entry parsed once in DuckDB, joined with the decisions.
        hashed = submit(attempt(chain_check, hash_scan))
        purged_read = pool.submit(
            attempt(
                reconcile_check,
                unless_idle(
                    lambda c: reconcile.decisions_purged_through(c, since, kinds()),
                    0,
                    RETENTION_KINDS,
                ),
            )
        )
        restated_read = (
            pool.submit(
                attempt(
                    reconcile_check,
                    unless_idle(
                        lambda c: batch_digest.restatements(c, since, kinds()),
                        {},
                        batch_digest.RESTATING_KINDS,
                    ),
                )
            )
            if batches or settings is not None
            else None
        )
        anchor_read = pool.submit(
            attempt(
                chain_check,
                unless_idle(lambda c: purge_anchor(c, kinds()), (0, GENESIS_HASH), RETENTION_KINDS),
            )
        )
        scan = submit(attempt("the combined scan", content_and_decisions))
        digests = (
            submit(
                attempt(
                    "the batch digest check",
                    unless_idle(
                        lambda c: batch_digest.first_mismatch(
                            c, settings, since, restated(), kinds()
                        ),
                        None,
                        batch_digest.BATCH_KINDS,
                    ),
                )
            )
            if settings is not None
            else None
        )
        counted = (
            submit(
                attempt(
                    reconcile_check,
                    unless_idle(
                        lambda c: reconcile.first_batch_mismatch(c, since, restated(), kinds()),
                        None,
                        reconcile.COUNTED_KINDS,
                        reconcile.COUNTED_TABLES,
                    ),
                )
            )
            if batches
            else None
        )
        altered = (
            submit(attempt("the schema check", lambda c: schema_check.first_break(c, settings)))
            if settings is not None
            else None
        )
        cps = submit(attempt("the checkpoint check", checkpoint_checks))
        gold = submit(
            attempt(
                "the gold set check",
                unless_idle(
                    lambda c: gold_mismatch(c, since, kinds()),
                    None,
                    gold_digest.KINDS,
                    gold_digest.TABLES,
                ),
            )
        )
        authorised = submit(
            attempt(
                "the authority check",
                unless_idle(
                    lambda c: authority_break(
                        c, now, with_rows=batches, since=since, events=kinds()
                    ),
                    None,
                    authority.KINDS,
                ),
            )
        )
        configs = submit(
            attempt(
                "the config check",
                unless_idle(
                    lambda c: config_check.first_mismatch(c, since, kinds()),
                    None,
                    config_check.KINDS,
                    config_check.TABLES,
                ),
            )
        )
        # Never idle: the registry's few rows are held to their events, read by seq (not
        # in a copy fetched from a service, which holds no registry).
        registry = (
            submit(attempt("the registry check", registry_check.first_mismatch))
            if batches
            else None
        )
        # Last: it waits for the hash scan, and reads the rows again only where they were
        # not one run.
        order = submit(attempt(chain_check, ordered))
        scanned = scan.result()
        hash_found = hashed.result()
        bad_hash = hash_found[0] if hash_found is not None else None
        content_ok = chain_check not in failed
        if scanned is not None:
            mismatch, decision_seq = scanned
        else:
            # The one scan failed (a table or column it needs is gone): check the chain and
            # the decisions apart, so that each failure is named and the rest still runs.
            failed.pop("the combined scan", None)
            content = attempt(chain_check, lambda c: audit_chain.check_content(c, source))()
            content_ok = content is not None
            mismatch, bad_hash = content if content is not None else (None, None)
            decision_seq = attempt(
                reconcile_check,
                lambda c: reconcile.first_decision_mismatch(c, purged(), since),
            )()
        chain_order = order.result()
        batch_seq = counted.result() if counted is not None else None
        schema_break = altered.result() if altered is not None else None
        cp_breaks = cps.result()
        bad_batch = digests.result() if digests is not None else None
        bad_gold = gold.result()
        forged = authorised.result()
        bad_config = configs.result()
        bad_registry = registry.result() if registry is not None else None
    # A failed read of the events to check is no break of its own: the checks then read
    # every row after ``since``, and each names its own failure.
    failed.pop(events_read, None)
    seen = after_read.result()
    if (
        skipped
        and seen is not None
        and chain_order is not None
        and chain_order.head_seq > seen.head
    ):
        # A writer appended after the read of what came after the checkpoint, and the chain
        # was checked through its later head: what came after the head that read saw must
        # leave each check found idle idle, or every check runs again.
        later = attempt(events_read, lambda c: after_checkpoint.read(c, seen.head, tables))()
        failed.pop(events_read, None)
        if later is None or not all(later.idle(k, t) for k, t in skipped):
            return verify_records(
                con,
                public_key,
                checkpoints_path,
                batches=batches,
                settings=settings,
                now=now,
                parallel=parallel,
                start_from=start_from,
                skip_idle=False,
            )

    # Assembled in a fixed order, so that on a tie (several breaks at one seq) the same one
    # is named as when the checks ran one after another.
    breaks: list[Break] = []
    if settings is not None:
        if "the schema check" in failed:
            breaks.append(failed["the schema check"])
        elif schema_break is not None:
            breaks.append(schema_break)
    if chain_check in failed:
        breaks.append(failed[chain_check])
    events, head_hash = 0, start_at[1]
    if chain_order is not None and content_ok:
        events, head_hash = chain_order.events, chain_order.head_hash
        first = audit_chain.first_chain_break(chain_order, mismatch, bad_hash)
        breaks += [first] if first is not None else []
    if cp_break is not None:
        breaks.append(cp_break)
    if "the checkpoint check" in failed:
        breaks.append(failed["the checkpoint check"])
    breaks += cp_breaks or []
    if reconcile_check in failed:
        breaks.append(failed[reconcile_check])
    else:
        rec = reconcile.as_break(decision_seq, batch_seq)
        breaks += [rec] if rec is not None else []
    if "the authority check" in failed:
        breaks.append(failed["the authority check"])
    elif forged is not None:
        breaks.append(forged)
    if "the gold set check" in failed:
        breaks.append(failed["the gold set check"])
    elif bad_gold is not None:
        breaks.append(bad_gold)
    if "the config check" in failed:
        breaks.append(failed["the config check"])
    elif bad_config is not None:
        breaks.append(bad_config)
    if "the registry check" in failed:
        breaks.append(failed["the registry check"])
    elif bad_registry is not None:
        breaks.append(bad_registry)
    if settings is not None:
        if "the batch digest check" in failed:
            breaks.append(failed["the batch digest check"])
        elif bad_batch is not None:
            breaks.append(
                Break(bad_batch, "record-mismatch", "a batch's rows no longer match its digest")
            )
    return _report(breaks, events, head_hash, len(checkpoints), since if start else None)


def _report(
    breaks: list[Break], events: int, head_hash: str, checkpoints: int, from_checkpoint: int | None
) -> VerifyReport:
    worst = min(breaks, key=lambda b: b.seq) if breaks else None
    return VerifyReport(
        ok=worst is None,
        events=events,
        head_hash=head_hash,
        checkpoints=checkpoints,
        first_break=BreakRecord(seq=worst.seq, kind=worst.kind, detail=worst.detail)
        if worst
        else None,
        from_checkpoint=from_checkpoint,
    )
