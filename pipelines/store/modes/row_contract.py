"""What a row of a bulk request may hold, declared and enforced from the same hilt.toml.

Rows travel as JSON objects; the service turns each value into text and the store's
validation parses it against the column (``validation.parse_column``), so a CSV file and a
request get the same checks. What the store accepts per column is therefore a JSON value of
the column's type *or* its text: an int column takes ``67`` or ``"67"``, never ``67.5``,
``true`` or ``[67]``. This module says so once, for both ends:

- ``value_schema`` / ``rows_schemas``: the JSON Schema of each column's values and of the
  rows of ``POST /v1/cases``, ``/v1/predictions``, ``/v1/gold`` and ``/v1/outcomes`` (the
  use case's columns, required, no others), and of ``/v1/subjects/rectify`` (one branch per
  column: its value as text);
- ``check_row_types``: the service refuses (422, naming the row and column, never the value)
  a JSON value of a type the column's schema does not name, before anything is parsed.

Limits a schema cannot say are in the descriptions and enforced by the store: case ids
distinct within a batch and not yet in the store, an outcome observed in the past.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from hilt.pipelines.config import Column, Settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.store.validation import (
    MAX_ID_LENGTH,
    OBSERVED_AT_COLUMN,
    OUTCOME_COLUMN,
    one_of,
)

#: Integers without a bound are declared within ±10^15 (their text fits any id or column).
_BIG = 10**15
#: What the store strips from text (Unicode White_Space, as polars' strip_chars).
_WHITE = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: Text that is not blank.
NOT_BLANK = f"[^{_WHITE}]"
#: An id as the store takes it (``validation.parse_ids``): not blank, no control character.
ID_TEXT = f"^[^\\x00-\\x1f\\x7f]*[^{_WHITE}\\x00-\\x1f\\x7f][^\\x00-\\x1f\\x7f]*$"
#: Text the store reads as true or false (``validation._TRUE``/``_FALSE``, lower case).
BOOL_TEXT = ["true", "false", "1", "0", "yes", "no"]


# ----------------------------------------------------------------------- numbers as text
def _same_length(lo: str, hi: str) -> list[str]:
    """Patterns for the decimal numbers from ``lo`` to ``hi`` (as many digits each)."""
    if lo == hi:
        return [lo]
    if len(lo) == 1:
        return [f"[{lo}-{hi}]"]
    rest = len(lo) - 1
    if lo[1:] == "0" * rest and hi[1:] == "9" * rest:  # (keeps the patterns short)
        return [f"[{lo[0]}-{hi[0]}][0-9]{{{rest}}}"]
    if lo[0] == hi[0]:
        return [lo[0] + p for p in _same_length(lo[1:], hi[1:])]
    out = [lo[0] + p for p in _same_length(lo[1:], "9" * rest)]
    if int(hi[0]) - int(lo[0]) > 1:
        out.append(f"[{int(lo[0]) + 1}-{int(hi[0]) - 1}][0-9]{{{rest}}}")
    out += [hi[0] + p for p in _same_length("0" * rest, hi[1:])]
    return out


def _naturals(lo: int, hi: int) -> list[str]:
    """Patterns for the integers ``lo``..``hi`` (0 <= lo <= hi), written canonically."""
    out: list[str] = []
    for digits in range(len(str(lo)), len(str(hi)) + 1):
        a = lo if digits == len(str(lo)) else 10 ** (digits - 1)
        b = hi if digits == len(str(hi)) else 10**digits - 1
        out += _same_length(str(a), str(b))
    return out


def integer_text(lo: int, hi: int) -> str:
    """The alternatives (no anchors) that match exactly the integers ``lo``..``hi`` as
    text, without sign for the positive ones, without leading zeros."""
    parts: list[str] = []
    if lo < 0:
        parts += ["-" + p for p in _naturals(max(1, -hi if hi < 0 else 1), -lo)]
    if hi >= 0:
        parts += _naturals(max(lo, 0), hi)
    return "|".join(parts)


def _bounds(col: Column) -> tuple[int, int]:
    lo = -_BIG if col.min is None else math.ceil(col.min)
    hi = _BIG if col.max is None else math.floor(col.max)
    return lo, hi


def text_pattern(col: Column) -> str | None:
    """A pattern for the text a column takes (None: a string column, any text)."""
    if col.type == "int":
        return f"^({integer_text(*_bounds(col))})$"
    if col.type == "float":
        lo, hi = _bounds(col)
        # A whole part in range with up to six decimals, or the upper bound itself.
        below = f"({integer_text(lo, hi - 1)})(\\.[0-9]{{1,6}})?" if lo < hi else None
        return f"^({below + '|' if below else ''}{integer_text(hi, hi)})$"
    if col.type == "bool":
        return one_of(BOOL_TEXT)
    if col.type == "category":
        return one_of(col.levels or [])
    return None


# ----------------------------------------------------------------------- JSON values
@dataclass(frozen=True)
class Accepts:
    """The JSON types a column's values may have (besides a string: its text)."""

    integer: bool = False
    number: bool = False
    boolean: bool = False
    null: bool = False
    #: A JSON object (only the predictions' explanation: its contributions).
    obj: bool = False


def accepts(col: Column) -> Accepts:
    levels = col.levels or []
    return Accepts(
        integer=col.type in ("int", "float", "bool", "string")
        or (col.type == "category" and any(v.isdigit() for v in levels)),
        number=col.type == "float",
        null=col.nullable,
    )


def value_schema(col: Column) -> dict[str, Any]:
    """The JSON Schema of one column's values in a row."""
    text: dict[str, Any] = {"type": "string"}
    pattern = text_pattern(col)
    if pattern is not None:
        text["pattern"] = pattern
    else:
        text |= {"maxLength": col.max_length, "pattern": NOT_BLANK}
    branches: list[dict[str, Any]] = []
    lo, hi = _bounds(col)
    if col.type == "int":
        branches.append({"type": "integer", "minimum": lo, "maximum": hi})
    elif col.type == "float":
        number: dict[str, Any] = {"type": "number", "minimum": col.min, "maximum": col.max}
        branches.append({k: v for k, v in number.items() if v is not None})
    elif col.type == "bool":
        branches += [{"type": "boolean"}, {"type": "integer", "enum": [0, 1]}]
    elif col.type == "category":
        digits = [int(v) for v in col.levels or [] if v.isdigit() and str(int(v)) == v]
        if digits:
            branches.append({"type": "integer", "enum": digits})
    else:
        low, high = _text_integers(col)
        branches.append({"type": "integer", "minimum": low, "maximum": high})
    branches.append(text)
    if col.nullable:
        branches.append({"type": "null"})
    schema: dict[str, Any] = {"anyOf": branches}
    if col.description:
        schema["description"] = col.description
    return schema


def _text_integers(col: Column) -> tuple[int, int]:
    """The integers a string column (or an id) takes as JSON numbers: those whose text fits."""
    width = min(col.max_length, 15)
    return -(10 ** (width - 1) - 1), 10**width - 1


ID = Column(type="string", max_length=MAX_ID_LENGTH)


def id_schema(description: str) -> dict[str, Any]:
    low, high = _text_integers(ID)
    return {
        "anyOf": [
            {"type": "integer", "minimum": low, "maximum": high},
            {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": ID_TEXT},
        ],
        "description": description,
    }


def _classes(settings: Settings) -> Column:
    return Column(type="category", levels=[str(c) for c in settings.target.classes])


def row_columns(settings: Settings, body: str) -> dict[str, tuple[Column, bool]]:
    """The columns of a row of ``body`` (a request model's name): column → (its rules,
    required). Ids are string columns of ``MAX_ID_LENGTH``."""
    uc = settings.use_case
    if body == "CasesIn":
        out = {uc.id_column: (ID, True)}
        if uc.subject_column:
            out[uc.subject_column] = (ID, True)
        out |= {name: (col, True) for name, col in settings.columns.items()}
        label = _classes(settings).model_copy(update={"nullable": True})
        return out | {settings.target.column: (label, False)}
    if body == "PredictionsIn":
        score = Column(type="float", min=0.0, max=1.0, description="The model's score")
        return {
            "case_id": (ID, True),
            "score": (score, True),
            "label": (_classes(settings), True),
        }
    if body == "RowsIn":
        return {
            uc.id_column: (ID, True),
            OUTCOME_COLUMN: (_classes(settings), True),
            OBSERVED_AT_COLUMN: (Column(type="string", max_length=64), True),
        }
    return {}


def _explanation(settings: Settings) -> dict[str, Any]:
    """A prediction's explanation: contributions per feature (an object, or its JSON text
    in the simplest form: ``{"<feature>": -0.25}``)."""
    names = [*settings.fields.features, "bias"]
    contribution = {"anyOf": [{"type": "number"}, {"type": "null"}]}
    key = "(" + "|".join(re.escape(n) for n in names) + ")"
    number = r"-?(0|[1-9][0-9]{0,8})(\.[0-9]{1,6})?"
    pair = f'"{key}": {number}'
    return {
        "anyOf": [
            {
                "type": "object",
                "properties": dict.fromkeys(names, contribution),
                "additionalProperties": False,
            },
            {"type": "string", "pattern": f"^\\{{({pair}(, {pair})*)?\\}}$"},
            {"type": "null"},
        ],
        "description": "Contributions per feature (JSON object, or its text)",
    }


def rows_schemas(settings: Settings) -> dict[str, dict[str, Any]]:
    """Per request model with rows: the schema of its ``rows`` array."""
    out = {}
    for body in ("CasesIn", "PredictionsIn", "RowsIn"):
        columns = row_columns(settings, body)
        properties = {
            name: id_schema("An id") if col is ID else value_schema(col)
            for name, (col, _) in columns.items()
        }
        if body == "PredictionsIn":
            properties["explanation"] = _explanation(settings)
        if body == "RowsIn":
            observed = {"type": "string", "format": "date-time", "maxLength": 64}
            properties[OBSERVED_AT_COLUMN] = observed | {
                "description": "When the outcome was observed (ISO 8601, not in the future)"
            }
        required = [name for name, (_, needed) in columns.items() if needed]
        out[body] = {
            "type": "array",
            "minItems": 1,
            "maxItems": settings.limits.max_rows_per_request,
            "description": "Each row's ids distinct within the request",
            "items": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        }
    return out


def rectify_rules(settings: Settings) -> list[dict[str, Any]]:
    """``POST /v1/subjects/rectify``: per column, the value as text (null: none, where the
    column may be empty)."""
    rules = []
    for name, col in settings.columns.items():
        pattern = text_pattern(col)
        text: dict[str, Any] = {"type": "string"}
        text |= (
            {"pattern": pattern} if pattern else {"maxLength": col.max_length, "pattern": NOT_BLANK}
        )
        value = {"anyOf": [text, {"type": "null"}]} if col.nullable else text
        rules.append(
            {
                "properties": {"column": {"const": name}, "value": value},
                "required": ["column", *([] if col.nullable else ["value"])],
            }
        )
    return rules


# ----------------------------------------------------------------------- the service's check
def _fits(value: Any, col: Column) -> bool:
    if isinstance(value, str):
        return True
    taken = accepts(col)
    if value is None:
        return True  # (the store names a missing value, or takes it where it may)
    if isinstance(value, bool):
        return col.type == "bool"
    if isinstance(value, int):
        if col.type == "string":  # (an id too): an integer whose text fits
            low, high = _text_integers(col)
            return low <= value <= high
        return taken.integer
    if isinstance(value, float):
        return taken.number
    return False


def check_row_types(rows: list[dict[str, Any]], settings: Settings, body: str) -> None:
    """Refuse a value of a JSON type its column does not take (a float id, a list, ...):
    InputError naming the row and the column, never the value. A whole number written as
    a float (``67.0``: a JSON Schema integer) is taken as the integer, where one is."""
    columns = row_columns(settings, body)
    for i, row in enumerate(rows, start=1):
        for name, value in row.items():
            col = columns.get(name, (ID, False))[0]
            if isinstance(value, float) and value.is_integer() and col.type != "float":
                row[name] = value = int(value)
            if name == "explanation" and body == "PredictionsIn":
                fits = value is None or isinstance(value, str | dict)
            else:
                fits = _fits(value, col)
            if not fits:
                raise InputError(f"row {i}, field {name!r}: a value of the wrong JSON type")
