"""`hilt store backup` / `hilt store restore`: an online backup through a running store
service, restored into a new workspace that verifies with the same head; refusals that
write nothing; and an erasure made after the backup that a restore does not undo."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hilt.pipelines.errors import InputError, NotFoundError, PermissionDeniedError
from hilt.pipelines.store import Identity, Store, open_store_as
from hilt.pipelines.store.backup import KEPT_APART
from hilt.pipelines.store.ops.backup import BackupReport
from hilt.pipelines.store.restore import restore
from hilt.pipelines.workspace import Workspace
from tests.conftest import RunningService, copy_of, operator, start_service
from tests.loop_helpers import hilt_cli

SUBJECT = "SYN-SUBJ-000007"  # the subject of case APP-000007 in data/german_credit.csv
CASE = "APP-000007"


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, served_template: tuple[Workspace, dict[str, str]]
) -> Iterator[RunningService]:
    template, tokens = served_template
    ws = copy_of(template, tmp_path_factory.mktemp("backup") / "ws")
    svc = start_service(ws)
    svc.tokens = tokens
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def as_user(served: RunningService) -> Iterator[Callable[[str], Store]]:
    opened: dict[str, Store] = {}

    def store(name: str) -> Store:
        if name not in opened:
            opened[name] = open_store_as(served.url, Identity(token=served.tokens[name]))
        return opened[name]

    yield store
    for s in opened.values():
        s.close()


def keep_apart(ws: Workspace, folder: Path) -> Path:
    """What an operator backs up apart from the store, as it is now (the key store copied
    with SQLite's backup API: the service holds it open)."""
    for name in KEPT_APART:
        origin = ws.root / name
        if not origin.is_file():
            continue
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".sqlite"):
            with sqlite3.connect(origin) as src, sqlite3.connect(folder / name) as dst:
                src.backup(dst)
        else:
            shutil.copyfile(origin, folder / name)
    return folder


@pytest.fixture(scope="module")
def backed_up(
    served: RunningService,
    as_user: Callable[[str], Store],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[BackupReport, Path]:
    """One online backup (dana, an admin, through the running service), and the kept-apart
    files as they were then."""
    root = tmp_path_factory.mktemp("backups")
    as_user("dana").checkpoint()  # a signed checkpoint the backup holds
    report = as_user("dana").store_backup(str(root / "b1"))
    return report, keep_apart(served.workspace, root / "kept-at-backup")


def test_a_reviewer_or_a_bad_destination_is_refused_and_nothing_is_written(
    served: RunningService, as_user: Callable[[str], Store], tmp_path: Path
) -> None:
    dana = as_user("dana")
    head = dana.audit_head()
    with pytest.raises(PermissionDeniedError, match="may not back up the store"):
        as_user("alice").store_backup(str(tmp_path / "by-a-reviewer"))
    assert not (tmp_path / "by-a-reviewer").exists()
    existing = tmp_path / "exists"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="already exists"):
        dana.store_backup(str(existing))
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]
    with pytest.raises(InputError, match="does not exist"):
        dana.store_backup(str(tmp_path / "no-such-folder" / "b"))
    with pytest.raises(InputError, match=r"not writable|cannot create"):
        dana.store_backup("/sys/hilt-backup")  # read-only, even for root
    with pytest.raises(InputError, match="absolute"):
        dana.store_backup("relative/b")
    # The CLI says it in one line, exit 2.
    done = hilt_cli(
        "store", "backup", existing, "-w", served.workspace.root,
        env={"HILT_TOKEN": served.tokens["dana"]},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: backup destination {existing} already exists; name a new folder"
    ]
    assert dana.audit_head() == head  # no event, no folder: nothing written


@pytest.mark.obligation("GDPR 32")
def test_an_online_backup_restores_into_a_workspace_that_verifies_with_the_same_head(
    backed_up: tuple[BackupReport, Path], as_user: Callable[[str], Store], tmp_path: Path
) -> None:
    report, kept = backed_up
    folder = Path(report.path)
    # Only the store, its config and the manifest: no key, ledger or checkpoint travels.
    assert sorted(p.name for p in folder.iterdir()) == [
        "hilt.toml",
        "manifest.json",
        "store.duckdb",
    ]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["head"] == {"seq": report.head_seq, "hash": report.head_hash}
    assert manifest["files"]["store.duckdb"]["sha256"] == report.store_sha256
    assert set(manifest["kept_apart"]) == set(KEPT_APART)
    # The live store recorded the backup, naming the verified head and the copy's sha256.
    recorded = as_user("dana").audit_events(after_seq=report.head_seq, limit=10)
    event = next(e for e in recorded if e.seq == report.seq)
    assert (event.action, event.actor, event.role) == ("store.backup", "dana", "admin")
    assert event.payload["head_seq"] == report.head_seq
    assert event.payload["head_hash"] == report.head_hash
    assert event.payload["store_sha256"] == report.store_sha256
    assert event.payload["manifest_sha256"] == report.manifest_sha256

    # `hilt store restore`, as an operator runs it.
    new = Workspace.at(tmp_path / "restored")
    done = hilt_cli("store", "restore", folder, "--workspace", new.root, "--keys-from", kept)
    assert done.returncode == 0, done.stderr
    assert f"restored {new.root} at head seq {report.head_seq} {report.head_hash}" in done.stdout
    assert "re-applied 0 removals" in done.stdout
    assert f"verify: OK {report.head_seq} events" in done.stdout
    assert operator(new).audit_head().hash == report.head_hash
    assert operator(new).verify().checkpoints >= 1  # the checkpoint the backup holds
    # A workspace is restored only into a new folder.
    with pytest.raises(InputError, match="already exists"):
        restore(folder, new, kept, Identity(operator=True))


@pytest.mark.obligation("GDPR 17")
def test_an_erasure_after_the_backup_stays_applied_on_restore(
    served: RunningService,
    backed_up: tuple[BackupReport, Path],
    as_user: Callable[[str], Store],
    tmp_path: Path,
) -> None:
    report, kept_then = backed_up
    erased = as_user("pia").subject_erase(SUBJECT)
    ref = erased.subject_ref
    ledger = served.workspace.erasure_ledger_path
    assert ref in ledger.read_text()
    # The worst case: the key store's copy is as old as the backup (it still holds the
    # subject's key); only the erasure ledger, kept apart, is current.
    kept = shutil.copytree(kept_then, tmp_path / "kept")
    shutil.copyfile(ledger, kept / "keys" / "erasures.jsonl")
    with sqlite3.connect(kept / "keys" / "subject-keys.sqlite") as keys:
        assert keys.execute(
            "SELECT count(*) FROM subject_keys WHERE subject_ref = ?", [ref]
        ).fetchone() == (1,)

    new = Workspace.at(tmp_path / "restored")
    done = restore(Path(report.path), new, kept, Identity(operator=True))
    assert done.reapplied.subjects == [ref]
    assert done.reapplied.keys_destroyed == 1
    assert done.verified.ok, done.verified.summary()
    # The backup's events are unchanged; the re-applied erasure is recorded after them.
    events = operator(new).audit_events(after_seq=report.head_seq - 1, limit=10)
    assert (events[0].seq, events[0].hash) == (report.head_seq, report.head_hash)
    assert [(e.action, e.object_id) for e in events[1:]] == [("subject.erased", ref)]
    assert events[1].payload["reapplied"] == {"seq": erased.seq, "reason": "erasure"}
    assert events[1].payload["cases"] == [CASE]
    # Nothing of the subject can be opened: no key, no identity, no personal data.
    with sqlite3.connect(new.subject_keys_path) as keys:
        assert keys.execute(
            "SELECT count(*) FROM subject_keys WHERE subject_ref = ?", [ref]
        ).fetchone() == (0,)
    record = operator(new).get_case(CASE)
    assert record.data_removed and record.personal == {} and record.features == {}
    with pytest.raises(NotFoundError):
        open_store_as(new, Identity(name="pia")).subject_export(SUBJECT)
