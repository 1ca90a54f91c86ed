"""Schemathesis hooks for the contract test (``test_openapi_contract.py``): realistic data.

Loaded by each ``st`` process through ``SCHEMATHESIS_HOOKS``; reads the workspace's real
identifiers from the JSON file named by ``HILT_FUZZ_DATA``. A generated value of the right
type and size is swapped for a real one (a case id, a subject id, a decision id, a class, a
reason code, a fresh id where the store wants a new one), and the state an operation needs
is made first, by helper users no fuzzer calls as (a lease before a decision, a halt before a
resume, a pending config change before its approval, an open incident before its update, a
registered model before its promotion), so the fuzzer reaches the store's 2xx paths instead
of a 404 or a 409 on every call. A value the schema forbids is left as it is, so negative
cases stay negative.

Every request is logged (``HILT_FUZZ_LOG``, one JSON line each): the operation, the status,
and when it was sent and answered (as the audit log writes times), so that the test can
prove that no rejected request wrote anything (no audit event by the caller in that window).
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import os
import random
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import schemathesis

from hilt.pipelines.errors import InputError
from hilt.pipelines.store.modes.wire import decode_result
from hilt.pipelines.store.operations import Store
from hilt.pipelines.store.ops.events import audit_time
from hilt.widgets.contracts.notice import RENDERERS, Change

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
#: An RFC 3339 date-time (its year first).
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T")
#: A valid id, as the store checks it (``validation.parse_ids``).
ID = re.compile(r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$")

#: The swaps are reproducible, as the fuzzer's own examples are (``--seed``).
CHOICE = random.Random(17)
FRESH = itertools.count(1)


@cache
def data() -> dict[str, Any]:
    with open(os.environ["HILT_FUZZ_DATA"]) as f:
        loaded: dict[str, Any] = json.load(f)
    return loaded


@cache
def helper(role: str) -> httpx.Client:
    """A client as a helper user (``lead``, ``admin``, ``reviewer``): no fuzzer calls as
    them, so what they write is never taken for a write by a fuzzed caller."""
    token = data()["helpers"][role]
    return httpx.Client(
        base_url=data()["url"], headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


@cache
def me() -> httpx.Client:
    """A client as the user this fuzzer calls as (what it writes is written before the
    request is sent)."""
    auth = os.environ.get("HILT_FUZZ_AUTH", "")
    return httpx.Client(base_url=data()["url"], headers={"Authorization": auth}, timeout=60)


def fresh(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(FRESH)}"


def _real(kind: str, generated: Any) -> Any:
    values = data().get(kind) or []
    numbers = all(isinstance(v, int) for v in values)
    if numbers:
        plausible = isinstance(generated, int) and not isinstance(generated, bool)
    else:
        plausible = isinstance(generated, str) and 0 < len(generated) <= 128
    if not values or not plausible or CHOICE.random() < 0.1:
        return generated
    return CHOICE.choice(values)


def _valid_id(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, str) and len(value) <= 128 and bool(ID.match(value))


def champion() -> tuple[str, str]:
    """The champion's name and sha256 (the hooks register models with the sha256 of their
    name, as the suite's stand-in model is). While another fuzzer's change of hilt.toml
    waits for its apply, the store answers every call with 409 (config drift): then the
    workspace's first model, and the fuzzed request gets the store's answer to the drift."""
    answer = helper("reader").get("/v1/models")
    models = answer.json() if answer.status_code == 200 else []
    name = next((m["model"] for m in models if m["state"] == "champion"), data()["model"])
    return name, hashlib.sha256(name.encode()).hexdigest()


@contextmanager
def workspace_lock() -> Iterator[None]:
    """One fuzzer at a time changes the workspace's hilt.toml (config apply, approve)."""
    with open(data()["lock"], "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ----------------------------------------------------------------------- state to reach
def _rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    rows = body.get("rows")
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def _new_cases(body: dict[str, Any]) -> None:
    id_column, subject_column = data()["id_column"], data()["subject_column"]
    for row in _rows(body):
        if _valid_id(row.get(id_column)):
            row[id_column] = fresh("fz-case")
        if _valid_id(row.get(subject_column)) and CHOICE.random() < 0.5:
            row[subject_column] = fresh("fz-subject")


def _scored_rows(body: dict[str, Any], key: str, kind: str) -> None:
    """Predictions or gold: by the champion, on real, distinct cases."""
    name, sha256 = champion()
    if isinstance(body.get("model_version"), str) and body["model_version"].strip():
        body["model_version"] = name
    if isinstance(body.get("model_sha256"), str) and re.match(
        r"^[0-9a-f]{64}$", body["model_sha256"]
    ):
        body["model_sha256"] = sha256
    rows = _rows(body)
    cases = CHOICE.sample(data()[kind], k=min(len(rows), len(data()[kind])))
    for row, case_id in zip(rows, cases, strict=False):
        if _valid_id(row.get(key)):
            row[key] = case_id


def _predictions(body: dict[str, Any]) -> None:
    _scored_rows(body, "case_id", "kept_case_ids")


def _gold(body: dict[str, Any]) -> None:
    _scored_rows(body, "case_id", "gold_case_ids")


def _outcomes(body: dict[str, Any]) -> None:
    """Outcomes of real, distinct cases, observed in the past."""
    id_column = data()["id_column"]
    rows = _rows(body)
    kept = data()["kept_case_ids"]
    cases = CHOICE.sample(kept, k=min(len(rows), len(kept)))
    for row, case_id in zip(rows, cases, strict=False):
        if _valid_id(row.get(id_column)):
            row[id_column] = case_id
        observed = row.get("observed_at")
        if isinstance(observed, str) and DATE_TIME.match(observed) and observed[:4] > "2000":
            row["observed_at"] = "2000" + observed[4:]


def _event(body: dict[str, Any]) -> None:
    """An event a client may report (``run.*``), where the action has the right shape."""
    action = body.get("action")
    shaped = isinstance(action, str) and re.match(r"^[a-z]+\.[a-z_]{1,48}$", action)
    if shaped and CHOICE.random() < 0.8:
        assert isinstance(action, str)
        body["action"] = "run." + action.partition(".")[2]


def _decision(body: dict[str, Any]) -> None:
    # A production system sends no explanation hash (the review page sends the one it
    # rendered); a hash the store cannot render again is refused.
    body.pop("explanation_sha256", None)
    body.pop("explanation_context", None)
    # A review page names the prediction it showed, or none (the case's latest).
    if isinstance(body.get("prediction_id"), int) and CHOICE.random() < 0.9:
        del body["prediction_id"]
    if _valid_id(body.get("case_id")):
        body["case_id"] = CHOICE.choice(data()["open_case_ids"])
        me().post("/v1/queue/lease", json={"case_id": body["case_id"]})


def _lease(body: dict[str, Any]) -> None:
    if _valid_id(body.get("case_id")):
        body["case_id"] = CHOICE.choice(data()["open_case_ids"])


def _rectify(body: dict[str, Any]) -> None:
    """A subject and a case of theirs."""
    if _valid_id(body.get("subject_id")):
        body["subject_id"], case_id = CHOICE.choice(data()["subject_cases"])
        if _valid_id(body.get("case_id")):
            body["case_id"] = case_id


def _erase(body: dict[str, Any]) -> None:
    if _valid_id(body.get("subject_id")):
        body["subject_id"] = CHOICE.choice(data()["erasable_subject_ids"])


def _halted(body: dict[str, Any]) -> None:
    helper("lead").post("/v1/system/halt", json={"reason": "contract test: before a resume"})


def _pending_config(body: dict[str, Any]) -> None:
    """A change that loosens a rule (a lead must approve it): pending after the apply."""
    _change_config(+1)


def _applicable_config(body: dict[str, Any]) -> None:
    """A change in force at once (the go-live check asks for fresher assessments)."""
    _change_config(-1, apply=False)


def _change_config(step: int, *, apply: bool = True) -> None:
    path = Path(data()["config"])
    with workspace_lock():
        text = path.read_text()
        found = re.search(r"^review_months = (\d+)", text, flags=re.M)
        if found is None:
            return
        months = max(1, min(120, int(found.group(1)) + step))
        # At once (a reader sees the old file or the new one, never half of one).
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text.replace(found.group(0), f"review_months = {months}"))
        os.replace(tmp, path)
        if apply:
            helper("admin").post("/v1/config/apply")


def _pending_version(query: dict[str, Any]) -> None:
    """The version a lead decides on: the pending one (now and then another)."""
    if "version" in query and CHOICE.random() < 0.9:
        status = helper("reader").get("/v1/config").json()
        pending = status.get("pending") or {}
        if isinstance(pending, dict) and "version" in pending:
            query["version"] = pending["version"]


#: A feature's statistics when nothing drifted.
UNCHANGED = {
    "kind": "number",
    "test": "ks",
    "psi": 0.0,
    "statistic": 0.0,
    "p_value": 1.0,
    "missing_rate_training": 0.0,
    "missing_rate": 0.0,
}


def _monitored(body: dict[str, Any]) -> None:
    """Statistics of the champion (the store checks that they are)."""
    statistics = body.get("statistics")
    if isinstance(statistics, dict) and isinstance(statistics.get("model_version"), str):
        statistics["model_version"], sha256 = champion()
        if isinstance(statistics.get("model_sha256"), str):
            statistics["model_sha256"] = sha256
        features = statistics.get("features")
        if isinstance(features, list) and all(isinstance(f, dict) for f in features):
            # Each feature of the use case once, as the monitoring notebook measures them.
            first = features[0] if features else dict(UNCHANGED)
            features[:] = [first | {"feature": name} for name in data()["features"]]
        days = statistics.get("window_days")
        if isinstance(days, int) and 1 <= days <= 3650 and isinstance(statistics.get("cases"), int):
            # The cases the champion scored in the window, as the monitoring notebook counts.
            window = helper("admin").get("/v1/monitoring/window", params={"window_days": days})
            if window.status_code == 200:
                statistics["cases"] = len(window.json()["rows"])


def _changed_subject(body: dict[str, Any]) -> None:
    """A subject with a change to tell the recipient of (a restriction)."""
    if _valid_id(body.get("subject_id")) or _valid_id(body.get("subject_ref")):
        body.pop("subject_ref", None)
        body["subject_id"] = CHOICE.choice(data()["changed_subject_ids"])
    if isinstance(body.get("recipient"), str) and CHOICE.random() < 0.9:
        body["recipient"] = CHOICE.choice(data()["recipients"])


def _conflict(body: dict[str, Any]) -> None:
    if _valid_id(body.get("case_id")):
        body["case_id"] = CHOICE.choice(data()["conflict_case_ids"])


def _open_incident(path: dict[str, Any]) -> None:
    if isinstance(path.get("incident_id"), str):
        opened = helper("lead").post(
            "/v1/incidents", json={"kind": "malfunction", "summary": "contract test"}
        )
        if opened.status_code == 200:
            path["incident_id"] = opened.json()["incident_id"]


def _registered(body: dict[str, Any]) -> None:
    """A model the store registered (a challenger) for a lead to decide on."""
    if not isinstance(body.get("model"), str):
        return
    model = fresh("fz").replace("-", "") + "/v1"
    done = helper("admin").post("/v1/models", json=_evaluated(model))
    if done.status_code == 200:
        body["model"] = model


def _evaluated(model: str) -> dict[str, Any]:
    d = data()
    current, _ = champion()
    return {
        "model": model,
        "model_sha256": hashlib.sha256(model.encode()).hexdigest(),
        "run_id": fresh("fz-run"),
        "evaluation": {
            "snapshot_sha256": d["snapshot_sha256"],
            "metrics": {"auc": 0.9},
            "gaps": {name: 0.0 for name in d["protected"]},
            "champion": current,
            "champion_metrics": {"auc": 0.9},
        },
    }


def _register(body: dict[str, Any]) -> None:
    if isinstance(body.get("model"), str) and isinstance(body.get("evaluation"), dict):
        good = _evaluated(fresh("fz").replace("-", "") + "/v1")
        body["model"] = good["model"]
        evaluation = body["evaluation"]
        if isinstance(evaluation.get("snapshot_sha256"), str):
            evaluation["snapshot_sha256"] = good["evaluation"]["snapshot_sha256"]
        evaluation["champion"] = good["evaluation"]["champion"]
        if isinstance(body.get("model_sha256"), str) and re.match(
            r"^[0-9a-f]{64}$", body["model_sha256"]
        ):
            body["model_sha256"] = good["model_sha256"]
        if not isinstance(evaluation.get("champion_metrics"), dict):
            evaluation["champion_metrics"] = good["evaluation"]["champion_metrics"]


def _past_times(body: dict[str, Any]) -> None:
    """An incident's times (known, told) in the past, where they are date-times."""
    for name in ("known_at", "told_at"):
        value = body.get(name)
        if isinstance(value, str) and DATE_TIME.match(value) and value[:4] > "2000":
            body[name] = "2000" + value[4:]


def _decided(body: dict[str, Any]) -> None:
    """A subject with a final decision (and that case, where the body names one)."""
    if _valid_id(body.get("subject_id")):
        body["subject_id"], case_id = CHOICE.choice(data()["decided"])
        if _valid_id(body.get("case_id")):
            body["case_id"] = case_id


def _once_each(combination: list[Any]) -> list[Any]:
    """The changes of a counterfactual, each feature's first only."""
    seen: set[Any] = set()
    kept = []
    for change in combination:
        feature = change.get("feature") if isinstance(change, dict) else None
        if feature is None or feature not in seen:
            kept.append(change)
            seen.add(feature)
    return kept


def _notice(body: dict[str, Any]) -> None:
    """The notice the store renders from its facts: its sha256, as the notice page sends
    it (each counterfactual naming a feature once)."""
    _decided(body)
    changes = body.get("changes")
    if not isinstance(changes, list) or not _valid_id(body.get("case_id")):
        return
    for combination in changes:
        if isinstance(combination, list):
            combination[:] = _once_each(combination)
    renderer = body.get("renderer")
    facts = me().post(
        "/v1/subjects/notice/facts",
        json={"subject_id": body["subject_id"], "case_id": body["case_id"]},
    )
    if facts.status_code != 200 or renderer not in RENDERERS or CHOICE.random() < 0.1:
        return
    try:
        parsed = [[Change(c["feature"], c["value"]) for c in combo] for combo in changes]
        notice = RENDERERS[renderer](
            decode_result(Store.subject_notice_facts, facts.json()), parsed
        )
    except (KeyError, TypeError, ValueError):
        return
    body["notice_sha256"] = notice.sha256


def _backup(body: dict[str, Any]) -> None:
    if isinstance(body.get("dest"), str) and body["dest"].strip():
        body["dest"] = str(Path(data()["backups"]) / fresh("backup"))


def _spare_user(path: dict[str, Any]) -> None:
    """Never a user another fuzzer or a helper calls as (the fuzzer also learns names from
    the answers it saw, e.g. the list of users)."""
    if path.get("name") in data()["protected_users"] or CHOICE.random() < 0.9:
        path["name"] = CHOICE.choice(data()["user_names"])


def _new_user(body: dict[str, Any]) -> None:
    if body.get("name") in data()["protected_users"]:
        body["name"] = fresh("fz-user")


#: "METHOD path" → what to do to the body (or the path parameters) before the call.
BODY_SETUP: dict[str, Callable[[dict[str, Any]], None]] = {
    "POST /v1/cases": _new_cases,
    "POST /v1/predictions": _predictions,
    "POST /v1/gold": _gold,
    "POST /v1/outcomes": _outcomes,
    "POST /v1/decisions": _decision,
    "POST /v1/queue/decide-next": _decision,
    "POST /v1/queue/lease": _lease,
    "POST /v1/subjects/erase": _erase,
    "POST /v1/subjects/rectify": _rectify,
    "POST /v1/system/resume": _halted,
    "POST /v1/config/approve": _pending_config,
    "POST /v1/config/reject": _pending_config,
    "POST /v1/config/apply": _applicable_config,
    "POST /v1/models": _register,
    "POST /v1/models/promote": _registered,
    "POST /v1/models/reject": _registered,
    "POST /v1/models/shadow": _registered,
    "POST /v1/store/backup": _backup,
    "POST /v1/events": _event,
    "POST /v1/monitoring/runs": _monitored,
    "POST /v1/subjects/notify-recipient": _changed_subject,
    "POST /v1/oversight/adjudications": _conflict,
    "POST /v1/incidents": _past_times,
    "POST /v1/incidents/{incident_id}/update": _past_times,
    "POST /v1/subjects/contest": _decided,
    "POST /v1/subjects/notice/facts": _decided,
    "POST /v1/subjects/notice/issued": _notice,
    "POST /v1/users": _new_user,
}


def _time_range(query: dict[str, Any]) -> None:
    """since before until, where both are times (the schema cannot say it)."""
    since, until = query.get("since"), query.get("until")
    try:
        first, last = (audit_time(str(t), "time") for t in (since, until))  # (the store's)
        if first == last:
            del query["until"]
        elif first > last:
            query["since"], query["until"] = until, since
    except (InputError, TypeError):
        return


QUERY_SETUP: dict[str, Callable[[dict[str, Any]], None]] = {
    "GET /v1/audit/search": _time_range,
    "POST /v1/config/approve": _pending_version,
    "POST /v1/config/reject": _pending_version,
}
PATH_SETUP: dict[str, Callable[[dict[str, Any]], None]] = {
    "POST /v1/users/{name}/disable": _spare_user,
    "POST /v1/users/{name}/enable": _spare_user,
    "POST /v1/users/{name}/revoke-tokens": _spare_user,
    "POST /v1/incidents/{incident_id}/update": _open_incident,
    "POST /v1/incidents/{incident_id}/close": _open_incident,
}


# ----------------------------------------------------------------------- the hooks
#: When the request now under way was sent (one request at a time: --workers 1).
SENT: dict[str, str] = {}


def _now() -> str:
    """The time as the audit log writes it (the store runs on this host's clock)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    name = f"{case.operation.method.upper()} {case.operation.path}"
    body = case.body if isinstance(case.body, dict) else None
    if body is not None:
        for field, kind in BODY_FIELDS.items():
            if field in body:
                body[field] = _real(kind, body[field])
    for field, kind in PATH_FIELDS.items():
        if case.path_parameters and field in case.path_parameters:
            case.path_parameters[field] = _real(kind, case.path_parameters[field])
    # The gateway's headers, on the operations that declare them, are refused for anyone
    # but the gateway: sent now and then, not on every call.
    if case.headers and CHOICE.random() < 0.85:
        for header in [h for h in case.headers if h.lower().startswith("x-hilt-")]:
            del case.headers[header]
    if os.environ.get("HILT_FUZZ_AUTH"):  # (without a token: every call is refused first)
        if name in BODY_SETUP:
            BODY_SETUP[name](body if body is not None else {})
        if name in QUERY_SETUP and case.query:
            QUERY_SETUP[name](case.query)
        if case.path_parameters and name in PATH_SETUP:
            PATH_SETUP[name](case.path_parameters)
    SENT["at"] = _now()


@schemathesis.hook
def after_call(ctx: Any, case: Any, response: Any) -> None:
    name = f"{case.operation.method.upper()} {case.operation.path}"
    entry = {
        "operation": name,
        "status": response.status_code,
        "sent": SENT.pop("at", None),
        "answered": _now(),
    }
    with open(os.environ["HILT_FUZZ_LOG"], "a") as log:
        log.write(json.dumps(entry) + "\n")
    if name == "POST /v1/system/halt" and response.status_code == 200:
        # Leave the store usable for every other caller: a second lead resumes at once.
        helper("lead").post("/v1/system/resume")
    if name == "POST /v1/config/apply" and response.status_code != 200:
        # Leave no drift behind (every other caller's request would get 409): the change
        # the hook wrote to hilt.toml is applied by a helper admin.
        with workspace_lock():
            helper("admin").post("/v1/config/apply")
