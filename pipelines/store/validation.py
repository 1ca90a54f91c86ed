"""Validation of incoming frames against the use-case settings.

Every problem is named (column, kind, row numbers), never the offending value: values may be
personal data. Validation happens before anything is written; the store then writes the clean
frames in one transaction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hilt.pipelines.config import Column, Settings
from hilt.pipelines.deferred_imports import deferred_module
from hilt.pipelines.errors import InputError

if TYPE_CHECKING:
    import polars as pl
else:
    pl = deferred_module("polars")  # on first use: the store's clients never import it

MAX_ID_LENGTH = 128
_SHOW_ROWS = 5
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


@dataclass(frozen=True)
class CleanCases:
    """A validated batch of cases, split the way the store keeps them."""

    case_ids: pl.Series
    subject_ids: pl.Series
    #: case_id + feature-only columns, typed.
    features: pl.DataFrame
    #: case_id + personal columns, typed.
    personal: pl.DataFrame
    #: case_id + label, only rows that carry a label.
    labels: pl.DataFrame


def _rows(mask: pl.Series) -> str:
    idx = [i + 1 for i in mask.arg_true().head(_SHOW_ROWS).to_list()]
    n = int(mask.sum())
    more = f" and {n - len(idx)} more" if n > len(idx) else ""
    noun = "row" if n == 1 else "rows"
    return f"{n} {noun} ({', '.join(map(str, idx))}{more})"


class RowProblems(list[str]):
    """Problems found, with the rows each one concerns (for a partial ingest: the rows
    rejected and why, while the valid rows land)."""

    def __init__(self) -> None:
        super().__init__()
        #: (the rows concerned, "column: what is wrong"), in the order found.
        self.masks: list[tuple[pl.Series, str]] = []


def _note(problems: list[str], mask: pl.Series, name: str, what: str) -> None:
    """Name a problem of the rows in ``mask`` (count and row numbers, never a value)."""
    problems.append(f"column {name!r}: {_rows(mask)} {what}")
    if isinstance(problems, RowProblems):
        problems.masks.append((mask, f"{name} {_one_row(what)}"))


def _one_row(what: str) -> str:
    """A problem said of many rows, said of one: "are below 18" → "is below 18"."""
    verb, _, rest = what.partition(" ")
    one = {"are": "is", "have": "has", "repeat": "repeats", "contain": "contains"}
    return f"{one.get(verb, verb)} {rest}"


def _as_text(s: pl.Series) -> pl.Series:
    """Strings stripped, empty → null; other dtypes cast to their text form."""
    if s.dtype == pl.String:
        t = s.str.strip_chars()
    elif s.dtype == pl.Boolean:
        t = s.cast(pl.String).str.to_lowercase()
    elif s.dtype.is_float():
        # 2.0 → "2.0"; a category level "2" written as a float would not match, as it should not.
        t = s.cast(pl.String)
    else:
        t = s.cast(pl.String)
    return pl.Series(s.name, t).replace("", None)


def parse_column(s: pl.Series, name: str, col: Column, problems: list[str]) -> pl.Series:
    """Parse one input column into its typed form, appending problems found."""
    text = _as_text(s)
    present = text.is_not_null()
    out: pl.Series
    if col.type == "int":
        if s.dtype.is_integer():
            out = s.cast(pl.Int64)
        elif s.dtype.is_float():
            f = s.cast(pl.Float64)
            bad = present & (f.is_nan() | f.is_infinite() | (f != f.round(0))).fill_null(False)
            if bad.any():
                _note(problems, bad, name, "are not whole numbers")
            out = f.cast(pl.Int64, strict=False)
        else:
            out = text.cast(pl.Int64, strict=False)
            bad = present & out.is_null()
            if bad.any():
                _note(problems, bad, name, "are not integers")
    elif col.type == "float":
        out = s.cast(pl.Float64) if s.dtype.is_numeric() else text.cast(pl.Float64, strict=False)
        bad_parse = present & out.is_null()
        if bad_parse.any():
            _note(problems, bad_parse, name, "are not numbers")
        bad_nan = (out.is_nan() | out.is_infinite()).fill_null(False)
        if bad_nan.any():
            _note(problems, bad_nan, name, "are NaN or infinite")
            out = pl.Series(name, [None if v is None or not math.isfinite(v) else v for v in out])
    elif col.type == "bool":
        low = text.str.to_lowercase()
        out = (
            pl.select(
                pl.when(low.is_in(list(_TRUE)))
                .then(True)
                .when(low.is_in(list(_FALSE)))
                .then(False)
                .otherwise(None)
            )
            .to_series()
            .alias(name)
        )
        bad = present & out.is_null()
        if bad.any():
            _note(problems, bad, name, "are not true/false")
    elif col.type == "category":
        levels = col.levels or []
        bad = present & ~text.is_in(levels)
        if bad.any():
            _note(problems, bad, name, "are not one of the configured levels")
        out = text
    else:  # string
        out = text
        bad = present & (text.str.len_chars() > col.max_length)
        if bad.any():
            _note(problems, bad, name, f"are longer than {col.max_length} characters")
    out = out.alias(name)
    if not col.nullable:
        missing = ~present
        if missing.any():
            _note(problems, missing, name, "are missing a value")
    if col.type in ("int", "float"):
        v = out.cast(pl.Float64)
        if col.min is not None:
            low_mask = (v < col.min).fill_null(False)
            if low_mask.any():
                _note(problems, low_mask, name, f"are below {col.min:g}")
        if col.max is not None:
            high_mask = (v > col.max).fill_null(False)
            if high_mask.any():
                _note(problems, high_mask, name, f"are above {col.max:g}")
    return out


def parse_ids(s: pl.Series, name: str, problems: list[str], *, unique: bool) -> pl.Series:
    text = _as_text(s).alias(name)
    missing = text.is_null()
    if missing.any():
        _note(problems, missing, name, "have no id")
    too_long = (text.str.len_chars() > MAX_ID_LENGTH).fill_null(False)
    if too_long.any():
        _note(problems, too_long, name, f"are longer than {MAX_ID_LENGTH}")
    control = text.str.contains(r"[\x00-\x1f\x7f]").fill_null(False)
    if control.any():
        _note(problems, control, name, "contain control characters")
    if unique:
        dup = text.is_duplicated() & text.is_not_null()
        if dup.any():
            _note(problems, dup, name, "repeat a case id within the batch")
    return text


def _raise(problems: list[str], what: str) -> None:
    if problems:
        shown = problems[:20]
        more = f"\n… and {len(problems) - 20} more problems" if len(problems) > 20 else ""
        raise InputError(f"{what} rejected, nothing was written:\n- " + "\n- ".join(shown) + more)


def check_columns(frame: pl.DataFrame, required: list[str], optional: list[str], what: str) -> None:
    present = list(frame.columns)
    missing = [c for c in required if c not in present]
    unknown = [c for c in present if c not in required and c not in optional]
    dupes = sorted({c for c in present if present.count(c) > 1})
    problems = []
    if missing:
        problems.append(f"missing columns: {missing}")
    if unknown:
        problems.append(f"unknown columns: {unknown}")
    if dupes:
        problems.append(f"duplicate columns: {dupes}")
    if frame.height == 0:
        problems.append("no rows")
    _raise(problems, what)


def _check_case_columns(frame: pl.DataFrame, settings: Settings) -> None:
    """Problems of the whole batch (its columns, its size): no row can be kept then."""
    uc = settings.use_case
    required = [uc.id_column, *settings.columns]
    if uc.subject_column:
        required.append(uc.subject_column)
    check_columns(frame, required, [settings.target.column], "cases")
    if frame.height > settings.limits.max_rows_per_request * 100:
        _raise([f"{frame.height} rows exceed the batch limit"], "cases")


def clean_cases(frame: pl.DataFrame, settings: Settings) -> CleanCases:
    """Validate a batch of cases (optionally with a seed label) against the settings; any
    problem rejects the whole batch."""
    _check_case_columns(frame, settings)
    problems: list[str] = []
    clean = _parse_cases(frame, settings, problems)
    _raise(problems, "cases")
    return clean


def split_cases(
    frame: pl.DataFrame,
    settings: Settings,
    known_ids: Callable[[pl.Series], set[str]] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a batch into the rows that pass validation and the rejected ones: ``(valid
    rows of frame, rejects)``, where rejects has the 1-based ``row`` number of each rejected
    row in ``frame`` and the ``reason`` (every problem of the row: column and what is wrong,
    never its value). Problems of the whole batch (missing or unknown columns, no rows)
    still reject it all. ``known_ids``: which of the batch's case ids the store already
    holds (those rows are rejected too)."""
    _check_case_columns(frame, settings)
    problems = RowProblems()
    clean = _parse_cases(frame, settings, problems)
    known = known_ids(clean.case_ids.drop_nulls()) if known_ids is not None else set()
    if known:
        clash = clean.case_ids.is_in(sorted(known)).fill_null(False)
        _note(problems, clash, settings.use_case.id_column, "are already in the store")
    if not problems.masks:
        return frame, pl.DataFrame(schema={"row": pl.Int64, "reason": pl.String})
    reason = pl.concat_str(
        [pl.when(mask.fill_null(False)).then(pl.lit(what)) for mask, what in problems.masks],
        separator="; ",
        ignore_nulls=True,
    ).replace("", None)  # a row without a problem: no reason
    marked = frame.select(
        pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias("row"), reason.alias("reason")
    )
    rejected = marked["reason"].is_not_null()  # (every reason names a column: never empty)
    rejects = marked.filter(rejected)
    return frame.filter(~rejected), rejects


def _parse_cases(frame: pl.DataFrame, settings: Settings, problems: list[str]) -> CleanCases:
    uc = settings.use_case
    ids = parse_ids(frame[uc.id_column], uc.id_column, problems, unique=True).alias("case_id")
    subjects = (
        parse_ids(frame[uc.subject_column], uc.subject_column, problems, unique=False)
        if uc.subject_column
        else ids
    ).alias("subject_id")
    typed = {
        name: parse_column(frame[name], name, col, problems)
        for name, col in settings.columns.items()
    }
    labels = pl.DataFrame({"case_id": ids})
    if settings.target.column in frame.columns:
        tname = settings.target.column
        label = _as_text(frame[tname])
        # "1.0" from a float column means class "1"
        if frame[tname].dtype.is_float():
            label = label.str.replace(r"\.0$", "")
        bad = label.is_not_null() & ~label.is_in(settings.target.classes)
        if bad.any():
            _note(problems, bad, tname, "are not one of the target classes")
        labels = pl.DataFrame({"case_id": ids, "label": label}).filter(
            pl.col("label").is_not_null()
        )
    else:
        labels = pl.DataFrame(schema={"case_id": pl.String, "label": pl.String})
    features = pl.DataFrame([ids, *(typed[n] for n in settings.feature_only_columns)])
    personal = pl.DataFrame([ids, *(typed[n] for n in settings.personal_columns)])
    return CleanCases(ids, subjects, features, personal, labels)


def clean_predictions(frame: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """Validate predictions: case_id, score in [0, 1], label in classes, explanation."""
    check_columns(frame, ["case_id", "score", "label"], ["explanation"], "predictions")
    problems: list[str] = []
    ids = parse_ids(frame["case_id"], "case_id", problems, unique=False)
    score_col = Column(type="float", min=0.0, max=1.0)
    score = parse_column(frame["score"], "score", score_col, problems)
    label = _as_text(frame["label"])
    if frame["label"].dtype.is_float():
        label = label.str.replace(r"\.0$", "")
    bad = ~label.is_in(settings.target.classes).fill_null(False)
    if bad.any():
        problems.append(f"column 'label': {_rows(bad)} are not one of the target classes")
    if "explanation" in frame.columns:
        explanation = _explanations(frame["explanation"], settings, problems)
    else:
        explanation = pl.Series("explanation", ["{}"] * frame.height, dtype=pl.String)
    _raise(problems, "predictions")
    return pl.DataFrame(
        [ids.alias("case_id"), score.alias("score"), label.alias("label"), explanation]
    )


def _explanations(s: pl.Series, settings: Settings, problems: list[str]) -> pl.Series:
    """Explanations as canonical JSON text {feature: contribution}; only known names."""
    if isinstance(s.dtype, pl.Struct):
        names = [f.name for f in s.dtype.fields]
        unknown = [n for n in names if n not in settings.fields.features and n != "bias"]
        if unknown:
            problems.append(f"column 'explanation': unknown features {unknown}")
        not_numeric = [
            f.name for f in s.dtype.fields if not (f.dtype.is_numeric() or f.dtype == pl.Null)
        ]
        if not_numeric:
            problems.append(f"column 'explanation': non-numeric contributions for {not_numeric}")
        return s.struct.json_encode().alias("explanation")
    if s.dtype != pl.String:
        problems.append("column 'explanation': must be JSON text or a struct of contributions")
        return pl.Series("explanation", ["{}"] * s.len())
    text = s.fill_null("{}").alias("explanation")
    # Checked in DuckDB: parsing a million JSON objects there is several times faster than
    # decoding them into polars structs, and nothing but the names and types is needed.
    import duckdb

    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    try:
        con.register("explanations", pl.DataFrame([text]))
        # CASE, not AND: DuckDB evaluates both sides of an AND, and json_type fails on text
        # that is not JSON.
        not_object = "NOT coalesce(CASE WHEN json_valid(x) THEN json_type(x) = 'OBJECT' END, false)"
        try:
            # One parse of every row on the happy path; json_each fails on invalid JSON.
            # (A root that is not an object is caught without parsing: it cannot start
            # with a brace.)
            n_bad = con.execute(
                "SELECT count(*) FROM explanations WHERE NOT ltrim(explanation) LIKE '{%'"
            ).fetchall()[0][0]
            found = con.execute(
                "SELECT j.key, list(DISTINCT j.type) FROM explanations e,"
                " json_each(e.explanation) AS j GROUP BY j.key ORDER BY j.key"
            ).fetchall()
        except duckdb.Error:
            n_bad = 1
        if n_bad:
            bad = con.execute(
                "SELECT count(*), list(rn ORDER BY rn)[1:5] FROM (SELECT row_number() OVER ()"
                f" AS rn, explanation AS x FROM explanations) WHERE {not_object}"
            ).fetchall()[0]
            rows = ", ".join(map(str, bad[1]))
            problems.append(
                f"column 'explanation': {bad[0]} rows ({rows}) are not a JSON object each"
            )
            return text
    finally:
        con.close()
    allowed = {*settings.fields.features, "bias"}
    unknown = [str(k) for k, _ in found if k not in allowed]
    if unknown:
        problems.append(f"column 'explanation': unknown features {unknown}")
    numeric = {"DOUBLE", "BIGINT", "UBIGINT", "NULL"}
    bad_types = [str(k) for k, types in found if not set(types) <= numeric]
    if bad_types:
        problems.append(f"column 'explanation': non-numeric contributions for {bad_types}")
    return s.fill_null("{}").alias("explanation")


def one_of(values: Iterable[str]) -> str:
    """A pattern that takes exactly one of ``values`` (declared in the OpenAPI document, and
    enforced, from the same list the store checks against)."""
    return "^(" + "|".join(re.sub(r"([.^$*+?()[\]{}|\\])", r"\\\1", v) for v in values) + ")$"


def check_text(value: str | None, name: str, limit: int, *, multiline: bool = False) -> None:
    """InputError unless ``value`` (if given) fits in ``limit`` characters without control
    characters (newlines allowed when ``multiline``)."""
    if value is None:
        return
    if len(value) > limit:
        raise InputError(f"{name} is longer than {limit} characters")
    bad = "\x00" if multiline else "\x00\n\r"
    if any(c in value for c in bad):
        raise InputError(f"{name} contains control characters")


#: The columns of an outcomes file besides the use case's id column (`hilt outcomes`).
OUTCOME_COLUMN = "outcome"
OBSERVED_AT_COLUMN = "observed_at"


def _instant(text: str | None) -> datetime | None:
    """An ISO 8601 date or date-time as an aware UTC datetime (naive: UTC); None if not."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def clean_outcomes(frame: pl.DataFrame, settings: Settings, now: datetime) -> pl.DataFrame:
    """Validate a batch of outcomes: the case id (the use case's id column), the outcome (one
    of the target classes) and when it was observed (ISO 8601, not in the future); one
    outcome per case. Returns case_id, outcome, observed_at (UTC)."""
    id_column = settings.use_case.id_column
    what = "outcomes"
    check_columns(frame, [id_column, OUTCOME_COLUMN, OBSERVED_AT_COLUMN], [], what)
    problems: list[str] = []
    ids = parse_ids(frame[id_column], id_column, problems, unique=False).alias("case_id")
    dup = ids.is_duplicated() & ids.is_not_null()
    if dup.any():
        problems.append(f"column {id_column!r}: {_rows(dup)} repeat a case id within the batch")
    outcome = _as_text(frame[OUTCOME_COLUMN])
    if frame[OUTCOME_COLUMN].dtype.is_float():
        outcome = outcome.str.replace(r"\.0$", "")
    bad = ~outcome.is_in(settings.target.classes).fill_null(False)
    if bad.any():
        problems.append(
            f"column {OUTCOME_COLUMN!r}: {_rows(bad)} are not one of the target classes"
        )
    texts = _as_text(frame[OBSERVED_AT_COLUMN]).to_list()
    moments = [_instant(t) for t in texts]
    unparsed = pl.Series([m is None for m in moments])
    if unparsed.any():
        problems.append(
            f"column {OBSERVED_AT_COLUMN!r}: {_rows(unparsed)} are not ISO 8601 dates or times"
        )
    future = pl.Series([m is not None and m > now for m in moments])
    if future.any():
        problems.append(f"column {OBSERVED_AT_COLUMN!r}: {_rows(future)} lie in the future")
    _raise(problems, what)
    return pl.DataFrame(
        {
            "case_id": ids,
            "outcome": outcome.alias("outcome"),
            "observed_at": pl.Series(moments, dtype=pl.Datetime("us", "UTC")),
        }
    )
