"""Reading personal data: sealed rows opened with their subjects' keys, rectifications applied.

Personal columns are stored only sealed, per subject (``personal_data``, ``subject_keys``);
an erased subject's rows cannot be opened again. Every operation that shows or exports
personal values reads them here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hilt.pipelines.deferred_imports import deferred_module
from hilt.pipelines.store import personal_data

if TYPE_CHECKING:
    import polars as pl

    from hilt.pipelines.store.unit import Unit
else:
    pl = deferred_module("polars")  # on first use: the store's clients never import it


def sealed_rows(unit: Unit, where: str, params: list[Any]) -> pl.DataFrame:
    """(case_id, subject_ref, ingest_seq, sealed) of live cases matching ``where``."""
    rel = unit.con.sql(
        "SELECT c.case_id, c.subject_ref, c.ingest_seq, p.sealed FROM cases c"
        " JOIN case_personal p USING (case_id) WHERE c.removed_seq IS NULL AND " + where,
        params=params,
    )
    frame = pl.from_arrow(rel.to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def open_personal(unit: Unit, sealed_rows: pl.DataFrame) -> pl.DataFrame:
    """case_id + the personal columns, opened with the subjects' keys."""
    return personal_data.open_cases_with(sealed_rows, unit.keys.store, unit.settings)


def rectified(unit: Unit, frame: pl.DataFrame, as_of_seq: int | None = None) -> pl.DataFrame:
    """``frame`` (case_id + configured columns) with each (case, column)'s latest
    rectification as of ``as_of_seq`` (default: all) applied."""
    columns = [c for c in frame.columns if c in unit.settings.columns]
    if not columns or frame.height == 0:
        return frame
    rows = unit.con.execute(
        "SELECT case_id, subject_ref, column_name, value_sealed, seq FROM rectifications"
        " WHERE seq <= ? AND column_name IN (SELECT unnest(?)) ORDER BY seq",
        [as_of_seq if as_of_seq is not None else 2**62, columns],
    ).fetchall()
    wanted = set(frame["case_id"].to_list()) if rows else set()
    rows = [r for r in rows if r[0] in wanted]
    if not rows:
        return frame
    keys = unit.keys.store.get({str(r[1]) for r in rows})
    latest: dict[str, dict[str, Any]] = {}
    for case_id, ref, column, sealed, seq in rows:
        key = keys.get(ref)
        if key is None:
            continue
        value = personal_data.open_value(
            key, sealed, personal_data.RECTIFY_PURPOSE, ref, int(seq), f"{case_id}/{column}"
        )
        latest.setdefault(column, {})[case_id] = value
    for column, values in latest.items():
        dtype = personal_data.polars_type(unit.settings.columns[column])
        update = pl.DataFrame(
            {
                "case_id": list(values),
                "__rectified": pl.Series(list(values.values()), dtype=dtype),
                "__has": [True] * len(values),
            }
        )
        frame = (
            frame.join(update, on="case_id", how="left")
            .with_columns(
                pl.when(pl.col("__has").fill_null(False))
                .then(pl.col("__rectified"))
                .otherwise(pl.col(column))
                .alias(column)
            )
            .drop("__rectified", "__has")
        )
    return frame
