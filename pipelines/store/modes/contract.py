"""The store service's HTTP contract: what every answer that is not a 2xx looks like, which
statuses each operation declares, and the routing rules that keep the document honest.

- One error model (``ErrorBody``) for every non-2xx answer: the error's kind (the client
  raises the same exception class, ``errors.ERROR_KINDS``), its message, and for a request
  that failed validation the field-level details (``FieldError``).
- Each operation declares the statuses it can answer (``responses_of``), derived from its
  row in the table (a body: 413; parameters: 404; ...), not written per route.
- A path parameter that takes the rest of the path (``{case_id:path}``) never swallows the
  path of another route (``GuardedRoute``), and a 405 names every method the path has
  (``method_not_allowed``).
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import Scope

from hilt.pipelines.config import Settings
from hilt.pipelines.store.modes import row_contract
from hilt.pipelines.store.operation_row import Operation

#: The header a gateway (the dashboards' server) names the user it acts for with.
ON_BEHALF_HEADER = "x-hilt-on-behalf-of"


class FieldError(BaseModel):
    """One problem of a request that failed validation."""

    #: Where: ``["body", "case_id"]``, ``["query", "limit"]``.
    loc: list[str | int]
    msg: str
    #: pydantic's error type (``missing``, ``string_too_long``, ...).
    type: str


class ErrorBody(BaseModel):
    """Every answer that is not a 2xx."""

    #: The kind of error (``input``, ``not-found``, ``unauthenticated``, ``forbidden``, ...).
    error: str = Field(examples=["input"])
    #: What is wrong, for a person (never personal data).
    detail: str
    #: For a request that failed validation: each field's problem.
    fields: list[FieldError] = Field(default_factory=list)


_DESCRIPTIONS = {
    401: "No bearer token, or one that matches no active user.",
    403: "The caller's roles do not allow the operation.",
    404: "The request names something that does not exist.",
    405: "The path exists, the method does not (see Allow).",
    409: "A conflict with the store's state (a duplicate, a halt, config drift).",
    413: "The request body is too large.",
    422: "The request is invalid; nothing was written (fields: what is wrong).",
    500: "A bug or a failure of the store itself, never the client's input.",
    503: "The store is busy (another process holds it); try again.",
}


def statuses_of(operation: Operation[Any, Any]) -> list[int]:
    """The non-2xx statuses ``operation`` can answer."""
    statuses = {401, 403, 409, 422, 500, 503}
    if operation.route.body is not None or operation.route.method == "POST":
        statuses.add(413)
    if operation.signature.parameters:
        statuses.add(404)
    return sorted(statuses)


def responses_of(operation: Operation[Any, Any]) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of ``operation``'s route: each status it can answer, with the
    error model."""
    return {
        status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]}
        for status in statuses_of(operation)
    }


def error_response(
    status: int,
    kind: str,
    detail: str,
    fields: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=kind, detail=detail, fields=fields or [])
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def validation_response(exc: RequestValidationError) -> JSONResponse:
    """A 422 with the first problems, in words and field by field (no values: they may be
    personal)."""
    fields = [
        FieldError(
            loc=[x if isinstance(x, int) else str(x) for x in err.get("loc", ())],
            msg=str(err.get("msg", "")),
            type=str(err.get("type", "")),
        )
        for err in exc.errors()[:10]
    ]
    words = "; ".join(
        f"{'.'.join(str(x) for x in f.loc if x != 'body') or 'body'}: {f.msg}" for f in fields
    )
    return error_response(422, "input", "invalid request: " + words, fields)


class GuardedRoute(APIRoute):
    """A route whose ``{x:path}`` parameter would also take another route's path (``GET
    /v1/cases/{case_id:path}`` and ``/v1/cases/0/contest``) leaves that path to the more
    specific route, whatever its method: a wrong method is then a 405, not a 404."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        app = scope.get("app")
        if match is Match.NONE or ":path}" not in self.path or app is None:
            return match, child
        path = scope.get("path", "")
        for other in app.router.routes:
            # A longer template is the more specific one: .../{case_id:path}/contest.
            if (
                isinstance(other, Route)
                and len(other.path) > len(self.path)
                and other.path_regex.match(path)
            ):
                return Match.NONE, {}
        return match, child


def allowed_methods(app: Any, path: str) -> list[str]:
    """Every method some route of ``app`` serves ``path`` with."""
    methods: set[str] = set()
    scope = {"type": "http", "path": path, "root_path": "", "method": "", "app": app}
    for route in app.router.routes:
        if isinstance(route, Route) and route.matches(scope)[0] is not Match.NONE:
            methods |= route.methods or set()
    return sorted(methods)


def method_not_allowed(request: Request) -> JSONResponse:
    """405 naming every method of the path in ``Allow`` (Starlette names the first route's)."""
    allow = allowed_methods(request.app, request.url.path)
    return error_response(
        405,
        "method-not-allowed",
        f"{request.method} is not served on this path (allowed: {', '.join(allow)})",
        headers={"Allow": ", ".join(allow)},
    )


def _enum(schema: dict[str, Any], values: list[str]) -> None:
    """Restrict a string (or optional string) property to ``values``."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "string":
            branch["enum"] = values


def declare_workspace_limits(doc: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The limits the use case shapes, from the same hilt.toml the store checks against:
    the target's classes, the reason codes, the rectifiable columns and their values, the
    recipients, the columns of the bulk operations' rows."""
    schemas = doc.get("components", {}).get("schemas", {})
    classes = [str(c) for c in settings.target.classes]
    shaped = {
        ("DecisionRequest", "final_label"): classes,
        ("DecisionRequest", "reason_code"): list(settings.review.reason_codes),
        ("AdjudicationIn", "final_label"): classes,
        ("RectifyIn", "column"): list(settings.columns),
        ("NotifyRecipientIn", "recipient"): list(settings.processing.recipients),
    }
    for (model, name), values in shaped.items():
        prop = schemas.get(model, {}).get("properties", {}).get(name)
        if prop is not None and values:  # (none configured: left open, the store refuses)
            _enum(prop, values)
    if "DecisionRequest" in schemas:
        schemas["DecisionRequest"]["oneOf"] = decision_rules(settings)
    # The rows of the bulk operations: the use case's columns (``row_contract``).
    for model, rows in row_contract.rows_schemas(settings).items():
        if model in schemas:
            schemas[model]["properties"]["rows"] = rows
    monitored = schemas.get("MonitoringStatistics", {}).get("properties", {})
    if "features" in monitored:  # each feature of [fields] once (checked by name)
        n = len(settings.fields.features)
        monitored["features"] |= {"minItems": n, "maxItems": n}
        monitored["features"]["description"] = "Each of the use case's features once"
    notice = schemas.get("NoticeIssuedIn", {}).get("properties", {})
    if "changes" in notice:
        notice["changes"]["items"] = _counterfactual(settings)
    if "RectifyIn" in schemas:
        schemas["RectifyIn"]["oneOf"] = row_contract.rectify_rules(settings)
    return doc


def _counterfactual(settings: Settings) -> dict[str, Any]:
    """One counterfactual of a notice: 1 to ``max_changed`` changes of actionable features
    (``ops/subject_notice.parse_changes``; each feature once)."""
    branches = []
    for feature, spec in settings.notice.actionable.items():
        column = settings.columns[feature]
        value: dict[str, Any]
        if column.type == "category":
            value = {"type": "string", "enum": spec.levels or column.levels or []}
        else:
            lows = [b for b in (spec.min, column.min) if b is not None]
            highs = [b for b in (spec.max, column.max) if b is not None]
            value = {"type": "number"}
            if lows:
                value["minimum"] = max(lows)
            if highs:
                value["maximum"] = min(highs)
        branches.append(
            {
                "type": "object",
                "properties": {"feature": {"const": feature}, "value": value},
                "required": ["feature", "value"],
                "additionalProperties": False,
            }
        )
    change = {"oneOf": branches}
    return {
        "type": "array",
        "items": change,
        "minItems": 1,
        "maxItems": settings.notice.max_changed,
        "description": "Each feature at most once",
    }


def decision_rules(settings: Settings) -> list[dict[str, Any]]:
    """What each decision action takes (``ops/review.check_decision_fields``): override and
    blind a class, override a reason code (and a comment where the use case asks for one),
    undo the decision it compensates; no action anything else."""
    null = {"type": "null"}
    labelled = {"type": "string", "enum": [str(c) for c in settings.target.classes]}
    rules = []
    for action in ("accept", "flag", "skip", "override", "blind", "undo"):
        properties: dict[str, Any] = {
            "action": {"const": action},
            "final_label": labelled if action in ("override", "blind") else null,
            "reason_code": null,
            "undo_of": {"type": "string", "minLength": 1} if action == "undo" else null,
        }
        required = ["action"]
        if action in ("override", "blind"):
            required.append("final_label")
        if action == "override":
            properties["reason_code"] = {
                "type": "string",
                "enum": list(settings.review.reason_codes),
            }
            required.append("reason_code")
            if settings.review.comment_required:
                properties["comment"] = {"type": "string", "pattern": r"\S"}
                required.append("comment")
        if action == "undo":
            required.append("undo_of")
        rules.append({"properties": properties, "required": required})
    return rules
