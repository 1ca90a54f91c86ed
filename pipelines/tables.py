"""Reading case files: CSV (every column as text, so validation names bad values) or Parquet;
writing the rows an ingest rejected.

Shared by ``hilt ingest``, the store (which audits the rejects file's sha256) and the scoring
notebook.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hilt.pipelines.deferred_imports import deferred_module
from hilt.pipelines.errors import InputError

if TYPE_CHECKING:
    import polars as pl
else:
    pl = deferred_module("polars")  # on first use: the store's clients never import it


def read_table(path: str | Path) -> pl.DataFrame:
    """Read a CSV (every column as text, so validation names bad values) or Parquet file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pl.read_csv(path, infer_schema=False)
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise InputError(f"{path}: cannot read the file ({type(e).__name__})") from None
    raise InputError(f"{path}: expected a .csv or .parquet file")


#: The columns a rejects file adds in front of and after the rejected rows' own columns.
REJECT_ROW, REJECT_REASON = "row", "reason"


def rejects_csv(frame: pl.DataFrame, rows: list[int], reasons: list[str]) -> bytes:
    """The rejects file of a partial ingest: the rows of ``frame`` numbered ``rows`` (1-based,
    as validation names them), every column as text, with their row number first and the
    ``reason`` last. The same bytes for the same input, so the store can audit their sha256
    and the command can write them."""
    if len(rows) != len(reasons):
        raise InputError("rejects: as many reasons as rows are needed")
    order = pl.DataFrame(
        {REJECT_ROW: rows, REJECT_REASON: reasons},
        schema={REJECT_ROW: pl.Int64, REJECT_REASON: pl.String},
    )
    texts = frame.select(pl.all().cast(pl.String)).with_row_index(REJECT_ROW, offset=1)
    picked = order.join(
        texts.with_columns(pl.col(REJECT_ROW).cast(pl.Int64)), on=REJECT_ROW, how="left"
    )
    columns = [REJECT_ROW, *frame.columns, REJECT_REASON]
    return picked.select(columns).write_csv().encode("utf-8")
