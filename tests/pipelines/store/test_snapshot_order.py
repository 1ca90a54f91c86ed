"""The snapshot file's row order: (split, case_id), the order its bytes (and sha256) depend on."""

from __future__ import annotations

import hashlib
import io

import polars as pl

from hilt.pipelines.store.ops.snapshot import in_file_order


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
