"""How an operation's arguments and result cross HTTP, derived from its row in the table.

The client encodes with ``request_parts`` and ``decode_result``; the service decodes with
``arguments_from_request`` and encodes with ``result_body``. Both read the same
``HttpShape``, so the two ends cannot drift apart.

Frames travel as JSON rows; the service turns them into text columns and the store's
validation parses and types them, so a bad value gets the same clear error whether it
came from a CSV file or a request.
"""

from __future__ import annotations

import inspect
import json
import math
import sys
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import BaseModel, TypeAdapter

from hilt.pipelines.deferred_imports import deferred_module
from hilt.pipelines.errors import InputError
from hilt.pipelines.store.operation_row import Operation

if TYPE_CHECKING:
    import polars as pl
else:
    pl = deferred_module("polars")  # on first use: the store's clients never import it


@dataclass(frozen=True)
class HttpShape:
    """Where each argument of an operation travels."""

    #: Parameters in the path.
    path: tuple[str, ...]
    #: The request body's model (None: no body).
    body_model: type[BaseModel] | None
    #: The parameter that is the body itself (its type is the body's model).
    body_param: str | None
    #: Parameters carried as fields of the body.
    body_fields: tuple[str, ...]
    #: The DataFrame parameter, carried as the body's ``rows``.
    frame_param: str | None
    #: Parameters in the query string.
    query: tuple[str, ...]
    #: A model parameter whose fields are spread over the query string.
    query_model_param: str | None
    #: The result is a DataFrame (sent as ``{"columns", "rows"}``).
    frame_result: bool


def _is_frame(hint: Any) -> bool:
    """Whether ``hint`` is polars' DataFrame (never while polars is not imported: a hint
    that names it imports it as it resolves, and a client asks about the others only)."""
    polars = sys.modules.get("polars")
    return polars is not None and hint is polars.DataFrame


def _is_model(hint: Any) -> bool:
    return inspect.isclass(hint) and issubclass(hint, BaseModel)


@cache
def shape_of(op: Operation[Any, Any]) -> HttpShape:
    route = op.route
    path = route.path_params
    body_param = query_model = frame_param = None
    body_fields: list[str] = []
    query: list[str] = []
    body_model = route.body
    for name in op.signature.parameters:
        hint = op.hints[name]
        if name in path:
            continue
        if route.body is not None:
            if _is_frame(hint):
                frame_param = name
            else:
                body_fields.append(name)
        elif _is_model(hint) and route.method == "POST":
            body_param, body_model = name, hint
        elif _is_model(hint):
            query_model = name
        else:
            query.append(name)
    if route.body is not None:
        carried = {*body_fields, *(["rows"] if frame_param else [])}
        if carried != set(route.body.model_fields):
            raise TypeError(
                f"{op.name}: the fields of {route.body.__name__} must be the parameters "
                f"{sorted(carried)}"
            )
    return HttpShape(
        path=path,
        body_model=body_model,
        body_param=body_param,
        body_fields=tuple(body_fields),
        frame_param=frame_param,
        query=tuple(query),
        query_model_param=query_model,
        frame_result=_is_frame(op.hints["return"]),
    )


@cache
def _result_adapter(op: Operation[Any, Any]) -> TypeAdapter[Any]:
    return TypeAdapter(op.hints["return"])


# ----------------------------------------------------------------------- client side
def json_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-safe dicts; NaN/inf become strings so the service can name them."""
    rows = frame.to_dicts()
    for row in rows:
        for k, v in row.items():
            if isinstance(v, float) and not math.isfinite(v):
                row[k] = str(v)
    return rows


def request_parts(
    op: Operation[Any, Any], arguments: dict[str, Any]
) -> tuple[str, dict[str, Any], Any]:
    """(path, query parameters, JSON body or None) of a call."""
    shape = shape_of(op)
    path = op.route.path
    for name in shape.path:
        value = quote(str(arguments[name]), safe="")
        path = path.replace(f"{{{name}:path}}", value).replace(f"{{{name}}}", value)
    query = {n: arguments[n] for n in shape.query if arguments[n] is not None}
    if shape.query_model_param is not None:
        query.update(arguments[shape.query_model_param].model_dump(exclude_none=True))
    body: Any = None
    if shape.body_param is not None:
        body = arguments[shape.body_param].model_dump(exclude_none=True)
    elif shape.body_model is not None:
        body = {
            n: v.model_dump(mode="json") if isinstance(v, BaseModel) else v
            for n, v in ((n, arguments[n]) for n in shape.body_fields)
        }
        if shape.frame_param is not None:
            body["rows"] = json_rows(arguments[shape.frame_param])
    return path, query, body


def decode_result(op: Operation[Any, Any], data: Any) -> Any:
    if shape_of(op).frame_result:
        return pl.DataFrame(data["rows"], schema=data["columns"], orient="row")
    return _result_adapter(op).validate_python(data)


# ----------------------------------------------------------------------- service side
def rows_to_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """JSON rows → a frame of text columns; the store's validation parses and types them.

    Going through text keeps one parser for CSV files and JSON requests, so the same bad
    value gets the same clear error whichever way it arrives.
    """
    # A field a row leaves out is null there (as the document declares: the columns that
    # are not required); a column the store needs is then named as missing a value.
    columns = list(dict.fromkeys(name for row in rows for name in row))

    def text(v: Any) -> str | None:
        if v is None:
            return None
        if isinstance(v, dict | list):
            return json.dumps(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)

    values = {c: [text(r.get(c)) for r in rows] for c in columns}
    try:
        return pl.DataFrame({c: pl.Series(c, v, dtype=pl.String) for c, v in values.items()})
    except UnicodeEncodeError:
        for c, column in values.items():
            for i, v in enumerate(column, start=1):
                if v is not None and not v.isascii():
                    try:
                        v.encode("utf-8")
                    except UnicodeEncodeError:
                        raise InputError(f"row {i}, field {c!r}: not valid Unicode text") from None
        raise


def arguments_from_request(
    op: Operation[Any, Any], values: dict[str, Any], max_rows: int
) -> dict[str, Any]:
    """The operation's arguments from what FastAPI parsed (path and query parameters by
    name, the body as ``body``); a frame of more than ``max_rows`` rows is refused."""
    shape = shape_of(op)
    arguments = {n: values[n] for n in (*shape.path, *shape.query)}
    if shape.query_model_param is not None:
        arguments[shape.query_model_param] = values[shape.query_model_param]
    body = values.get("body")
    if shape.body_param is not None:
        arguments[shape.body_param] = body
    elif body is not None:
        for name in shape.body_fields:
            arguments[name] = getattr(body, name)
        if shape.frame_param is not None:
            rows = body.rows
            if len(rows) > max_rows:
                raise InputError(
                    f"{len(rows)} rows exceed limits.max_rows_per_request ({max_rows})"
                )
            arguments[shape.frame_param] = rows_to_frame(rows)
    return arguments


def result_body(op: Operation[Any, Any], result: Any) -> Any:
    """The result as the route returns it (FastAPI serialises it by the declared type)."""
    if shape_of(op).frame_result:
        return {"columns": result.columns, "rows": result.rows()}
    return result
