"""Many writers at once: nothing acknowledged is lost, nothing is recorded twice.

Every writer is its own OS process (decision_worker.py run as a script, forked from a
process that has imported hilt once: tests/prewarmed.py), as every Voila kernel is in
production. Each writer writes down, line by line, which decisions it saw
acknowledged; afterwards the store is read back through its own feed and verified.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from starlette.testclient import TestClient

from hilt.pipelines.store import DecisionRequest, Identity, holding, open_store_as
from hilt.pipelines.store.case_records import Decision
from hilt.pipelines.store.config_watch import ConfigWatch
from hilt.pipelines.store.modes.client import StoreClient
from hilt.pipelines.store.modes.embedded import connect
from hilt.pipelines.store.modes.service import StoreService
from hilt.pipelines.store.modes.service_http import create_app
from hilt.pipelines.workspace import Workspace
from tests import prewarmed
from tests.conftest import (
    TEST_MODEL,
    RunningService,
    issue_tokens,
    operator,
    predictions_for,
    stand_in,
    start_service,
)

WORKER = Path(__file__).with_name("decision_worker.py")


# ---------------------------------------------------------------------- helpers


def synthetic_cases(cases: pl.DataFrame, n: int, prefix: str) -> pl.DataFrame:
    """``n`` copies of the demo rows (cycled) with fresh case and subject ids."""
    repeats = -(-n // cases.height)
    rows = pl.concat([cases] * repeats).head(n)
    return rows.with_columns(
        pl.Series("application_id", [f"{prefix}-{i:06d}" for i in range(n)]),
        pl.Series("applicant_id", [f"{prefix}-SUBJ-{i:06d}" for i in range(n)]),
    )


def requests_for(n: int, tag: str) -> list[dict[str, str]]:
    """``n`` decisions of one worker, each on the case the queue leases it."""
    return [{"request_id": f"{tag}-{i:04d}"} for i in range(n)]


def spawn_worker(tmp: Path, name: str, spec: dict[str, Any]) -> tuple[prewarmed.Hilt, Path]:
    """``python decision_worker.py SPEC`` in a process of its own, forked from one that has
    imported hilt and httpx once (tests/prewarmed.py); its stderr in ``NAME.err``."""
    out = tmp / f"{name}.jsonl"
    spec_path = tmp / f"{name}.spec.json"
    spec_path.write_text(json.dumps({**spec, "out": str(out)}), encoding="utf-8")
    proc = prewarmed.start(
        [spec_path], stdout=tmp / f"{name}.stdout", stderr=tmp / f"{name}.err", script=WORKER
    )
    return proc, out


def wait_all(workers: list[tuple[prewarmed.Hilt, Path]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    procs = [p for p, _ in workers]
    try:
        for p in procs:
            p.wait(max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        pytest.fail(f"workers did not finish within {timeout_s} s")
    for p, out in workers:
        err = out.with_suffix(".err")
        assert p.returncode == 0, err.read_text(encoding="utf-8") if err.exists() else ""


def results(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    lines = out.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def acknowledged(outs: list[Path]) -> dict[str, str]:
    """request_id → decision_id of every acknowledged request."""
    return {
        r["request_id"]: r["decision_id"] for o in outs for r in results(o) if "decision_id" in r
    }


def read_all_decisions(store: Any, page: int = 1000) -> list[Decision]:
    """The whole final-decisions feed, paging by seq as a production system would."""
    out: list[Decision] = []
    after = 0
    while True:
        batch = store.decisions(after_seq=after, limit=page)
        out.extend(batch)
        if len(batch) < page:
            return out
        after = batch[-1].seq


def assert_gapless_and_verified(store: Any) -> int:
    seqs: list[int] = []
    after = 0
    while True:
        events = store.audit_events(after_seq=after, limit=5000)
        seqs.extend(e.seq for e in events)
        if len(events) < 5000:
            break
        after = events[-1].seq
    assert seqs == list(range(1, len(seqs) + 1))
    report = store.verify()
    assert report.ok, report.summary()
    assert report.events == len(seqs)
    return len(seqs)


def assert_no_case_twice(decisions: list[Decision]) -> None:
    """The queue leased no case to two reviewers: every case was decided once."""
    per_case = Counter(d.case_id for d in decisions)
    assert [c for c, n in per_case.items() if n > 1] == []


def assert_each_once(ack: dict[str, str], decisions: list[Decision]) -> None:
    """Every acknowledged decision is in the feed exactly once, under its request id."""
    times = Counter(d.decision_id for d in decisions)
    assert [d for d, n in times.items() if n > 1] == []
    by_id = {d.decision_id: d for d in decisions}
    missing = [rid for rid, did in ack.items() if did not in by_id]
    assert missing == [], f"{len(missing)} acknowledged decisions are missing"
    assert all(by_id[did].request_id == rid for rid, did in ack.items())
    per_request = Counter(d.request_id for d in decisions)
    assert [r for r, n in per_request.items() if n > 1] == []


# ---------------------------------------------------------------------- (a) service load

WORKERS = 32
#: Each decision is a lease and a decision: 32 x 15 keeps the test within the suite's time.
PER_WORKER = 15


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_32_processes_lease_and_decide_480_cases_through_the_service(
    workspace: Workspace, cases_frame: pl.DataFrame, tmp_path: Path
) -> None:
    cases = synthetic_cases(cases_frame, WORKERS * PER_WORKER, "LOAD")
    admin = operator(workspace)
    with holding(workspace):  # the setup's ~50 operations on one connection
        admin.ingest_cases(cases)
        stand_in(workspace)
        admin.add_predictions(TEST_MODEL.model, predictions_for(cases), TEST_MODEL.sha256)
        reviewer_tokens = [
            admin.add_user(f"load-rev-{w:02d}", "reviewer").token for w in range(WORKERS)
        ]
        tokens = issue_tokens(workspace, workspace.settings())
    svc = start_service(workspace)
    try:
        started = time.monotonic()
        workers = [
            spawn_worker(
                tmp_path,
                f"w{w:02d}",
                {
                    "mode": "http",
                    "url": svc.url,
                    "token": reviewer_tokens[w],
                    "requests": requests_for(PER_WORKER, f"w{w}"),
                    "deadline_s": 400,
                },
            )
            for w in range(WORKERS)
        ]
        wait_all(workers, timeout_s=420)
        elapsed = time.monotonic() - started
        outs = [o for _, o in workers]
        failures = [r for o in outs for r in results(o) if "error" in r]
        assert failures[:5] == []
        ack = acknowledged(outs)
        assert len(ack) == WORKERS * PER_WORKER
        # No case was leased twice: a case leased to two reviewers at once would be here
        # twice (each worker decides the case it leased before it leases another).
        leased = Counter(r["case_id"] for o in outs for r in results(o))
        assert [c for c, n in leased.items() if n > 1] == []

        dana = StoreClient(svc.url, tokens["dana"])
        try:
            decisions = read_all_decisions(dana)
            assert len(decisions) == WORKERS * PER_WORKER
            assert_each_once(ack, decisions)
            assert_no_case_twice(decisions)
            assert {d.reviewer for d in decisions} == {f"load-rev-{w:02d}" for w in range(WORKERS)}
            assert dana.counts()["decisions"] == WORKERS * PER_WORKER
            assert_gapless_and_verified(dana)
        finally:
            dana.close()
        print(f"{len(ack)} decisions from {WORKERS} processes in {elapsed:.1f} s")
    finally:
        svc.stop()


# ---------------------------------------------------------------------- (b) kill -9


#: Many concurrent deciders, so that the kill lands while groups of decisions commit.
KILL_WORKERS = 16
KILL_PER_WORKER = 20
KILL_AFTER_ACKS = 200


def retry(http: httpx.Client, request_id: str, case_id: str | None) -> httpx.Response:
    """A reviewer's retry after the service came back: the same request id, on the case it
    was about (written before the kill: the first decision comes back; the lease survived:
    decided now), else on the case the queue leases them now."""
    if case_id is not None:
        body = {"case_id": case_id, "action": "accept", "request_id": request_id}
        resp = http.post("/v1/decisions", json=body)
        if resp.status_code != 409:
            return resp
    lease = http.post("/v1/queue/next")
    assert lease.status_code == 200 and lease.json() is not None, lease.text
    body = {
        "case_id": lease.json()["case"]["case_id"],
        "action": "accept",
        "request_id": request_id,
    }
    return http.post("/v1/decisions", json=body)


def wait_for_acks(outs: list[Path], n: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = len(acknowledged(outs))
        if seen >= n:
            return seen
        time.sleep(0.01)
    pytest.fail(f"fewer than {n} decisions acknowledged within {timeout_s} s")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_kill_9_of_the_service_loses_no_acknowledged_decision(
    workspace: Workspace, cases_frame: pl.DataFrame, tmp_path: Path
) -> None:
    n = KILL_WORKERS * KILL_PER_WORKER
    cases = synthetic_cases(cases_frame, n, "KILL")
    admin = operator(workspace)
    reviewers = [f"kill-rev-{w:02d}" for w in range(KILL_WORKERS)]
    with holding(workspace):  # the setup's ~30 operations on one connection
        admin.ingest_cases(cases)
        stand_in(workspace)
        admin.add_predictions(TEST_MODEL.model, predictions_for(cases), TEST_MODEL.sha256)
        tokens = issue_tokens(workspace, workspace.settings())
        tokens.update({r: admin.add_user(r, "reviewer").token for r in reviewers})
    plans = [requests_for(KILL_PER_WORKER, f"k{w}") for w in range(KILL_WORKERS)]

    svc = start_service(workspace)
    restarted: RunningService | None = None
    try:
        workers = [
            spawn_worker(
                tmp_path,
                f"k{w}",
                {
                    "mode": "http",
                    "url": svc.url,
                    "token": tokens[reviewers[w]],
                    "requests": plans[w],
                    "timeout_s": 10,
                    "deadline_s": 60,
                },
            )
            for w in range(KILL_WORKERS)
        ]
        outs = [o for _, o in workers]
        wait_for_acks(outs, KILL_AFTER_ACKS, timeout_s=60)
        # The decisions were group-committed: several requests shared a transaction (so
        # what is checked below holds for the batched path, not only for lone commits).
        grouped = httpx.get(svc.url + "/health", timeout=10).json()["group_commit"]
        os.kill(svc.process.pid, signal.SIGKILL)
        assert svc.process.wait(10) == -signal.SIGKILL
        wait_all(workers, timeout_s=90)

        ack = acknowledged(outs)
        unacked = [r for o in outs for r in results(o) if "error" in r]
        assert KILL_AFTER_ACKS <= len(ack) < n, "the kill did not land mid-load"
        assert grouped["largest"] > 1 and grouped["groups"] < grouped["requests"], grouped
        assert len(ack) + len(unacked) == n
        # Decisions sent and unanswered at the kill (the rest were leases in flight).
        in_flight = sum(1 for r in unacked if r.get("case_id"))
        assert workspace.service_file.exists()  # left behind, stale: the process is gone

        # The kernel released the lock; a new service takes over the same file.
        restarted = start_service(workspace)
        dana = StoreClient(restarted.url, tokens["dana"])
        try:
            before_retry = read_all_decisions(dana)
            assert_each_once(ack, before_retry)
            # At most the requests in flight at the kill were written without an answer.
            assert len(before_retry) - len(ack) <= KILL_WORKERS
            assert_gapless_and_verified(dana)

            # Retrying every unacknowledged request with its request_id records each once:
            # on the case it was about when it had one (the lease survived, or the decision
            # was written before the kill), else on the case the queue leases now.
            retry_ack: dict[str, str] = {}
            by_request = {r["request_id"]: r for plan in plans for r in plan}
            for w, reviewer in enumerate(reviewers):
                mine = [r for r in results(outs[w]) if "error" in r]
                with httpx.Client(
                    base_url=restarted.url,
                    headers={"Authorization": f"Bearer {tokens[reviewer]}"},
                    timeout=30,
                ) as http:
                    for r in mine:
                        resp = retry(http, r["request_id"], r.get("case_id"))
                        assert resp.status_code == 200, resp.text
                        retry_ack[r["request_id"]] = resp.json()["decision_id"]
            # A request written before the kill comes back with its first decision id.
            first_time = {d.request_id: d.decision_id for d in before_retry}
            for rid, did in retry_ack.items():
                if rid in first_time:
                    assert did == first_time[rid]

            after_retry = read_all_decisions(dana)
            assert len(after_retry) == n
            assert_each_once({**ack, **retry_ack}, after_retry)
            assert_no_case_twice(after_retry)
            assert {d.request_id for d in after_retry} == set(by_request)
            events = assert_gapless_and_verified(dana)
            assert dana.counts()["decisions"] == n
        finally:
            dana.close()
        print(
            f"killed after {len(ack)} acknowledged ({in_flight} decisions in flight); "
            f"{len(unacked)} retried; {events} events; group commit before the kill: {grouped}"
        )
    finally:
        svc.stop()
        if restarted is not None:
            restarted.stop()


# ---------------------------------------------------------------------- (c) embedded


EMBEDDED_PER_WORKER = 40


def test_two_embedded_processes_share_the_file_under_the_lock(
    loaded_workspace: Workspace, tmp_path: Path
) -> None:
    workers = [
        spawn_worker(
            tmp_path,
            user,
            {
                "mode": "embedded",
                "workspace": str(loaded_workspace.root),
                "user": user,
                "requests": requests_for(EMBEDDED_PER_WORKER, user),
                "deadline_s": 100,
                # Both begin writing once both have imported (a slow start under load
                # must not turn the test into one writer after the other).
                "barrier": str(tmp_path / "barrier"),
                "barrier_parties": 2,
            },
        )
        for user in ["alice", "bob"]
    ]
    wait_all(workers, timeout_s=120)
    outs = [o for _, o in workers]
    assert [r for o in outs for r in results(o) if "error" in r] == []
    ack = acknowledged(outs)
    assert len(ack) == 2 * EMBEDDED_PER_WORKER
    # The two writers overlapped in time (not one after the other): each one's first
    # acknowledged write came before the other's last.
    (a_first, a_last), (b_first, b_last) = (
        (min(r["at"] for r in results(o)), max(r["at"] for r in results(o))) for o in outs
    )
    assert a_first < b_last and b_first < a_last, "the two writers did not overlap"
    # And their writes interleave in the log: the reviewer changes more than once.
    by_seq = [
        r["request_id"].split("-")[0]
        for r in sorted((r for o in outs for r in results(o)), key=lambda r: r["seq"])
    ]
    assert sum(1 for x, y in itertools.pairwise(by_seq) if x != y) >= 2

    dana = open_store_as(loaded_workspace, Identity(name="dana"))
    decisions = read_all_decisions(dana, page=30)
    assert len(decisions) == 2 * EMBEDDED_PER_WORKER
    assert_each_once(ack, decisions)
    assert_no_case_twice(decisions)
    n = EMBEDDED_PER_WORKER
    assert Counter(d.reviewer for d in decisions) == {"alice": n, "bob": n}
    assert_gapless_and_verified(dana)


# ---------------------------------------------------------------------- (d) an auditor's verify

VERIFY_REVIEWERS = 8
VERIFY_PER_REVIEWER = 20
#: A reviewer's pause between taking a case and deciding it (they read it).
VERIFY_PAUSE_S = 0.05


def test_an_auditors_verify_loop_beside_eight_reviewers(loaded_workspace: Workspace) -> None:
    """8 reviewers lease and decide while an auditor calls verify back to back on the same
    service: every decision is acknowledged, and every verify, reading its snapshot while
    the writer commits, finds a consistent store (OK). No time is asserted: the reviewers'
    p95 with and without the auditor is measured by benchmarks/store_concurrency.py."""
    admin = operator(loaded_workspace)
    with holding(loaded_workspace):
        tokens = [admin.add_user(f"rev-{r}", "reviewer").token for r in range(VERIFY_REVIEWERS)]
        auditor_token = admin.add_user("audra", "auditor").token
    admin.close()
    svc = start_service(loaded_workspace)
    decided: list[str] = []
    verified: list[tuple[bool, int]] = []
    failures: list[str] = []
    reviewing = threading.Event()
    reviewing.set()

    def review(token: str) -> None:
        with StoreClient(svc.url, token) as me:
            for _ in range(VERIFY_PER_REVIEWER):
                try:
                    leased = me.next_case()
                    assert leased is not None
                    time.sleep(VERIFY_PAUSE_S)
                    request = DecisionRequest(case_id=leased.case.case_id, action="accept")
                    decided.append(me.record_decision(request).decision_id)
                except Exception as e:
                    failures.append(f"{type(e).__name__}: {e}")

    def audit() -> None:
        with StoreClient(svc.url, auditor_token, timeout_s=120.0) as auditor:
            while reviewing.is_set():
                report = auditor.verify()
                verified.append((report.ok, report.events))

    try:
        auditing = threading.Thread(target=audit)
        auditing.start()
        while not verified:  # the auditor's loop runs before the reviewers start
            time.sleep(0.05)
        reviewers = [threading.Thread(target=review, args=(t,)) for t in tokens]
        for r in reviewers:
            r.start()
        for r in reviewers:
            r.join(240)
        reviewing.clear()
        auditing.join(240)
        with StoreClient(svc.url, auditor_token) as auditor:
            final = assert_gapless_and_verified(auditor)
    finally:
        svc.stop()
    assert failures == []
    assert len(set(decided)) == VERIFY_REVIEWERS * VERIFY_PER_REVIEWER
    assert all(ok for ok, _ in verified), "a verify beside the writer failed"
    seen = [events for _, events in verified]
    assert seen == sorted(seen) and seen[0] < seen[-1] <= final, "verify read the log moving"


def test_verify_and_other_reads_never_wait_for_the_writers_lock(
    loaded_workspace: Workspace,
) -> None:
    """The service's writer holds its lock (a long write in progress; here the test holds
    it): an auditor's verify and the other read-only operations, through the service's
    own routes, complete all the same, while a reviewer's lease waits for the lock (so
    the lock is really held) and completes once it is released. (A token's first use
    reads the store under the lock; both sign in before.)"""
    admin = operator(loaded_workspace)
    auditor = {"Authorization": f"Bearer {admin.add_user('audra', 'auditor').token}"}
    reviewer = {"Authorization": f"Bearer {admin.add_user('rita', 'reviewer').token}"}
    admin.close()
    con = connect(loaded_workspace)
    con.execute("SET threads = 1")
    watch = ConfigWatch(loaded_workspace, owner=True)
    service = StoreService(
        loaded_workspace, watch.admit(con, despite_drift=False), con, config=watch
    )
    reads = ("/v1/audit/verify", "/v1/audit/events", "/v1/audit/stats", "/v1/counts")
    try:
        with TestClient(create_app(service)) as http, ThreadPoolExecutor(4) as pool:
            for who in (auditor, reviewer):  # signed in (a token's first use reads the store)
                assert http.get("/v1/me", headers=who).status_code == 200
            with service.mutex:
                lease = pool.submit(http.post, "/v1/queue/next", headers=reviewer)
                answers = [pool.submit(http.get, path, headers=auditor) for path in reads]
                for path, answer in zip(reads, answers, strict=True):
                    r = answer.result(timeout=30)
                    assert r.status_code == 200, (path, r.text)
                assert answers[0].result().json()["ok"] is True
                assert not lease.done(), "the lease did not wait for the writer's lock"
            assert lease.result(timeout=60).status_code == 200
    finally:
        con.close()
