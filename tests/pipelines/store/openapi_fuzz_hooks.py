"""Schemathesis hooks for the contract test (``test_openapi_contract.py``): realistic data.

Loaded by the ``st`` process through ``SCHEMATHESIS_HOOKS``; reads the workspace's real
identifiers from the JSON file named by ``HILT_FUZZ_DATA``. A generated value of the right
type and size is swapped for a real one (a case id, a subject id, a decision id, a class, a
reason code), so the fuzzer reaches the store's decision, prediction, subject and
adjudication paths instead of a 404 on every call; a value the schema forbids is left as it
is, so negative cases stay negative. A reviewer's decision on a case first leases it, as the
review page does.
"""

from __future__ import annotations

import json
import os
import random
import re
from functools import cache
from typing import Any

import httpx
import schemathesis

#: Not yet held to "a request the schema allows is accepted" (every other check still runs
#: on them): the bulk row operations, whose rows' columns (the use case's) the document does
#: not declare yet; a rectification, whose value's shape depends on the column; a
#: recipient, when the workspace names none (the demo's). Only the store's own 422 for
#: them is let pass (``filter_failure``), nothing else.
NOT_DECLARED_YET = re.compile(
    r"^POST /v1/(cases|outcomes|predictions|gold|subjects/rectify|subjects/notify-recipient)$"
)

#: Body field → the list of real values in the data file.
BODY_FIELDS = {
    "case_id": "case_ids",
    "subject_id": "subject_ids",
    "final_label": "classes",
    "reason_code": "reason_codes",
    "undo_of": "decision_ids",
    "model": "models",
}
PATH_FIELDS = {
    "case_id": "case_ids",
    "decision_id": "decision_ids",
    "prediction_id": "prediction_ids",
    "incident_id": "incident_ids",
    "name": "user_names",
}


#: The swaps are reproducible, as the fuzzer's own examples are (``--seed``).
CHOICE = random.Random(17)


@cache
def data() -> dict[str, Any]:
    with open(os.environ["HILT_FUZZ_DATA"]) as f:
        loaded: dict[str, Any] = json.load(f)
    return loaded


def _real(kind: str, generated: Any) -> Any:
    values = data().get(kind) or []
    numbers = all(isinstance(v, int) for v in values)
    if numbers:
        plausible = isinstance(generated, int) and not isinstance(generated, bool)
    else:
        plausible = isinstance(generated, str) and 0 < len(generated) <= 128
    if not values or not plausible or CHOICE.random() < 0.15:
        return generated
    return CHOICE.choice(values)


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    if isinstance(case.body, dict):
        for field, kind in BODY_FIELDS.items():
            if field in case.body:
                case.body[field] = _real(kind, case.body[field])
    for field, kind in PATH_FIELDS.items():
        if case.path_parameters and field in case.path_parameters:
            case.path_parameters[field] = _real(kind, case.path_parameters[field])
    op = case.operation
    if op.method.upper() == "POST" and op.path == "/v1/decisions":
        body = case.body if isinstance(case.body, dict) else {}
        # A production system sends no explanation hash (the review page sends the one it
        # rendered); a hash the store cannot render again is refused.
        body.pop("explanation_sha256", None)
        body.pop("explanation_context", None)
        # A review page names the prediction it showed, or none (the case's latest).
        if isinstance(body.get("prediction_id"), int) and CHOICE.random() < 0.85:
            del body["prediction_id"]
        auth = os.environ.get("HILT_FUZZ_AUTH")
        if isinstance(body.get("case_id"), str) and auth:
            httpx.post(
                data()["url"] + "/v1/queue/lease",
                json={"case_id": body["case_id"]},
                headers={"Authorization": auth},
                timeout=10,
            )


@schemathesis.hook
def filter_failure(ctx: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but a schema-valid request that the store refused as input on
    an operation of ``NOT_DECLARED_YET``."""
    name = f"{case.operation.method.upper()} {case.operation.path}"
    if getattr(failure, "code", None) != "ST202" or not NOT_DECLARED_YET.match(name):
        return True
    try:
        kind = response.json().get("error")
    except ValueError:
        return True
    return not (response.status_code == 422 and kind == "input")
