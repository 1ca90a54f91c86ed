"""The snapshot file's row order: (split, case_id), the order its bytes (and sha256) depend on."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import polars as pl
import pytest

from hilt.pipelines.store import Identity, open_store_as
from hilt.pipelines.store.ops.snapshot import in_file_order
from hilt.pipelines.workspace import Workspace
from tests.conftest import copy_of
from tests.pipelines.store.test_bulk_opening import worker_pid_seen


def _sha256(frame: pl.DataFrame) -> str:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=False)
    return hashlib.sha256(buffer.getbuffer()).hexdigest()


def test_the_order_and_the_bytes_are_those_of_the_sort_on_both_columns() -> None:
    n = 5_000
    frame = pl.DataFrame(
        {
            "case_id": [f"case-{i:05d}" for i in range(n)],
            "age": list(range(n)),
            "split": ["holdout" if i % 5 == 0 else "train" for i in range(n)],
        }
    ).sample(fraction=1.0, shuffle=True, seed=7)
    frame = pl.concat([frame.head(1_000), frame.tail(n - 1_000)], rechunk=False)
    assert frame.n_chunks() == 2
    expected = frame.sort(["split", "case_id"])
    ordered = in_file_order(frame)
    assert ordered.equals(expected)
    assert ordered.n_chunks() == 1
    assert ordered["split"].head(1_000).unique().to_list() == ["holdout"]
    assert _sha256(ordered) == _sha256(expected)
    # A split the query never makes is still ordered, not lost.
    odd = frame.with_columns(
        pl.when(pl.col("case_id") == "case-00003")
        .then(pl.lit("other"))
        .otherwise("split")
        .alias("split")
    )
    assert in_file_order(odd).equals(odd.sort(["split", "case_id"]))


def test_the_snapshot_is_the_same_file_when_a_worker_process_opens_part_of_the_holdout(
    loaded_template: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = copy_of(loaded_template, tmp_path / "ws")
    store = open_store_as(ws, Identity(operator=True))
    first = store.snapshot()
    assert first.holdout_rows >= 20
    # The holdout's protected attributes opened half in a worker process (seen from here
    # through a file it writes its process id to): the same file, byte for byte.
    seen = worker_pid_seen(monkeypatch, tmp_path / "worker-pid")
    again = store.snapshot(as_of_seq=first.as_of_seq)
    assert int(seen.read_text()) != os.getpid()
    assert again.sha256 == first.sha256
    assert pl.read_parquet(again.path).filter(pl.col("split") == "holdout")["age"].null_count() == 0
