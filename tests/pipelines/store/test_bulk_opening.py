"""Opening personal data in bulk (what a 1M-row snapshot does): the subject keys read for
thousands of subjects at once, and many sealed documents opened and typed in one pass.
Real AES-GCM, a real SQLite key store."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest

from hilt.pipelines.config import Settings, load_settings
from hilt.pipelines.errors import StoreError
from hilt.pipelines.store import forked, personal_data
from hilt.pipelines.store.subject_keys import _BULK_READ, MasterKey, SubjectKeyStore
from tests.conftest import CONFIG

#: More subjects than an IN list of placeholders takes: the bulk read path.
SUBJECTS = _BULK_READ + 1_000


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(CONFIG)


@pytest.fixture
def key_store(tmp_path: Path) -> Iterator[SubjectKeyStore]:
    store = SubjectKeyStore(tmp_path / "keys.sqlite", MasterKey(os.urandom(32)))
    yield store
    store.close()


def test_bulk_key_read_returns_exactly_the_wanted_keys(key_store: SubjectKeyStore) -> None:
    refs = [f"subj-{i:05d}" for i in range(SUBJECTS)]
    created = key_store.create(refs)
    # Wanted: most subjects, in no particular order, with refs that have no key.
    wanted = [*refs[::-1][: _BULK_READ + 500], "subj-unknown-1", "subj-unknown-2"]
    got = key_store.get(wanted)
    assert len(wanted) > _BULK_READ
    assert set(got) == set(wanted) - {"subj-unknown-1", "subj-unknown-2"}
    assert all(got[ref] == created[ref] for ref in got)
    # A destroyed key is absent from a bulk read, and the small path agrees.
    gone = wanted[:7]
    assert key_store.destroy(gone) == 7
    after = key_store.get(wanted)
    assert set(after) == set(got) - set(gone)
    few = wanted[5:15]
    assert key_store.get(few) == {r: created[r] for r in few if r not in gone}


def _sealed_frame(
    settings: Settings, keys: dict[str, bytes], docs: list[dict[str, object]]
) -> pl.DataFrame:
    """(case_id, subject_ref, ingest_seq, sealed) for one document per subject."""
    refs = list(keys)
    personal = pl.DataFrame(
        {
            "case_id": [f"case-{i}" for i in range(len(docs))],
            **{c: [d.get(c) for d in docs] for c in settings.personal_columns},
        }
    )
    sealed = personal_data.seal_cases(personal, refs, keys, 42, settings.personal_columns)
    return pl.DataFrame(
        {
            "case_id": personal["case_id"],
            "subject_ref": refs,
            "ingest_seq": [42] * len(docs),
            "sealed": pl.Series(sealed, dtype=pl.Binary),
        }
    )


def test_bulk_opening_types_every_column_and_nulls_a_shredded_subject(
    settings: Settings,
) -> None:
    assert settings.personal_columns == ["sex", "age"]
    keys = {f"s{i}": os.urandom(32) for i in range(4)}
    docs: list[dict[str, object]] = [
        {"sex": "female", "age": 31},
        {"sex": "male", "age": None},
        {"sex": "fémale ✓", "age": 2**40},
        {"sex": "male", "age": 67},
    ]
    rows = _sealed_frame(settings, keys, docs)
    shredded = {k: v for k, v in keys.items() if k != "s3"}
    opened = personal_data.open_cases(rows, shredded, settings)
    assert opened.schema == pl.Schema({"case_id": pl.String, "sex": pl.String, "age": pl.Int64})
    assert opened.rows() == [
        ("case-0", "female", 31),
        ("case-1", "male", None),
        ("case-2", "fémale ✓", 2**40),
        ("case-3", None, None),  # the subject's key is gone: nothing opens
    ]
    assert personal_data.open_cases(rows.head(0), keys, settings).height == 0


def test_a_moved_or_changed_document_does_not_open(settings: Settings) -> None:
    keys = {f"s{i}": os.urandom(32) for i in range(3)}
    rows = _sealed_frame(settings, keys, [{"sex": "male", "age": 40 + i} for i in range(3)])
    # Bound to its case: the sealed documents of two cases swapped fail to open.
    swapped = rows.with_columns(pl.col("sealed").reverse())
    with pytest.raises(StoreError, match="does not open"):
        personal_data.open_cases(swapped, keys, settings)
    # Bound to its ingest seq.
    with pytest.raises(StoreError, match="does not open"):
        personal_data.open_cases(rows.with_columns(pl.lit(43).alias("ingest_seq")), keys, settings)


def worker_pid_seen(monkeypatch: pytest.MonkeyPatch, seen: Path) -> Path:
    """Batches from 10 rows up are opened half in a worker process, and the process that
    reads the worker's keys (on a connection of its own) writes its id to ``seen``."""
    monkeypatch.setattr(personal_data, "PARALLEL_MIN_ROWS", 10)
    own_connection = SubjectKeyStore.get_on_own_connection

    def recorded(self: SubjectKeyStore, refs: object) -> dict[str, bytes]:
        seen.write_text(str(os.getpid()))
        return own_connection(self, refs)  # type: ignore[arg-type]

    monkeypatch.setattr(SubjectKeyStore, "get_on_own_connection", recorded)
    return seen


def _key_store_frame(
    settings: Settings, key_store: SubjectKeyStore, n: int
) -> tuple[pl.DataFrame, dict[str, bytes]]:
    """``n`` sealed rows of ``n // 2`` subjects (two cases each), keys in ``key_store``."""
    keys = key_store.create(f"s{i:03d}" for i in range(n // 2))
    refs = [f"s{i // 2:03d}" for i in range(n)]
    personal = pl.DataFrame(
        {"case_id": [f"case-{i:03d}" for i in range(n)], "sex": ["female", "male"] * (n // 2)}
        | {"age": list(range(20, 20 + n))}
    )
    sealed = personal_data.seal_cases(personal, refs, keys, 42, settings.personal_columns)
    rows = pl.DataFrame(
        {
            "case_id": personal["case_id"],
            "subject_ref": refs,
            "ingest_seq": [42] * n,
            "sealed": pl.Series(sealed, dtype=pl.Binary),
        }
    )
    return rows, keys


def test_a_large_batch_is_opened_half_in_a_worker_process_with_the_same_result(
    settings: Settings,
    key_store: SubjectKeyStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows, keys = _key_store_frame(settings, key_store, 40)
    assert key_store.destroy(["s015"]) == 1  # rows 30 and 31, in the worker's part (from row 18)
    expected = personal_data.open_cases(
        rows, {k: v for k, v in keys.items() if k != "s015"}, settings
    )
    assert expected.filter(pl.col("sex").is_null())["case_id"].to_list() == ["case-030", "case-031"]
    # The worker reads its keys on a connection of its own, in a process of its own.
    seen = worker_pid_seen(monkeypatch, tmp_path / "worker-pid")
    opened = personal_data.open_cases_with(rows, key_store, settings)
    assert opened.equals(expected)
    assert int(seen.read_text()) != os.getpid()
    # Below the threshold: no worker.
    seen.unlink()
    assert personal_data.open_cases_with(rows.head(9), key_store, settings).equals(expected.head(9))
    assert not seen.exists()


def test_a_document_that_does_not_open_in_the_worker_fails_the_whole_batch(
    settings: Settings, key_store: SubjectKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows, _ = _key_store_frame(settings, key_store, 40)
    monkeypatch.setattr(personal_data, "PARALLEL_MIN_ROWS", 10)
    # Rows 30 and 31 (the worker's part) swap their sealed documents: bound to their case,
    # neither opens, and the worker's refusal is the batch's.
    sealed = rows["sealed"].to_list()
    sealed[30], sealed[31] = sealed[31], sealed[30]
    swapped = rows.with_columns(pl.Series("sealed", sealed, dtype=pl.Binary))
    with pytest.raises(StoreError, match="does not open"):
        personal_data.open_cases_with(swapped, key_store, settings)


def test_a_worker_that_fails_otherwise_leaves_its_half_to_this_process(
    settings: Settings, key_store: SubjectKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows, keys = _key_store_frame(settings, key_store, 40)
    monkeypatch.setattr(personal_data, "PARALLEL_MIN_ROWS", 10)

    def broken(self: SubjectKeyStore, refs: object) -> dict[str, bytes]:
        raise RuntimeError("the worker's connection failed")

    monkeypatch.setattr(SubjectKeyStore, "get_on_own_connection", broken)
    opened = personal_data.open_cases_with(rows, key_store, settings)
    assert opened.equals(personal_data.open_cases(rows, keys, settings))
    assert opened["sex"].null_count() == 0


def test_a_stuck_worker_is_killed_and_its_part_opened_here(
    settings: Settings, key_store: SubjectKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows, keys = _key_store_frame(settings, key_store, 40)
    monkeypatch.setattr(personal_data, "PARALLEL_MIN_ROWS", 10)
    monkeypatch.setattr(personal_data, "WORKER_TIMEOUT_MIN_S", 0.5)
    # A fork can inherit a lock another thread held: the worker then never ends.
    monkeypatch.setattr(
        SubjectKeyStore, "get_on_own_connection", lambda self, refs: time.sleep(600)
    )
    made: list[forked.ForkedCall[object]] = []
    real = forked.ForkedCall

    def recording(fn: Callable[[], object]) -> forked.ForkedCall[object]:
        made.append(real(fn))
        return made[-1]

    monkeypatch.setattr(forked, "ForkedCall", recording)
    started = time.monotonic()
    opened = personal_data.open_cases_with(rows, key_store, settings)
    assert time.monotonic() - started < 30
    assert opened.equals(personal_data.open_cases(rows, keys, settings))
    assert len(made) == 1
    with pytest.raises(ChildProcessError):  # killed and reaped: no child left behind
        os.waitpid(made[0].pid, os.WNOHANG)
