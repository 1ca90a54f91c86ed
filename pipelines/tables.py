"""Reading case files: CSV (every column as text, so validation names bad values) or Parquet.

Shared by ``hilt ingest`` and the scoring notebook.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from hilt.pipelines.errors import InputError


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
