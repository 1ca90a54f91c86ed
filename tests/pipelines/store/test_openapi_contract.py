"""The store service's OpenAPI document says what the service really does (issue 17).

Schemathesis (``st run --checks all``) runs against a live service with realistic data (real
case, subject, decision and prediction ids, leased cases: ``openapi_fuzz_hooks.py``) for each
role and without a token, a bounded number of examples per operation, and must find nothing;
its junit report and a HAR of every request are kept under the test's tmp dir. Every status
the fuzzer saw is one its operation declares; the callers who may write nothing (no token, an
auditor) changed neither the audit head nor any count. A client generated from the document
(datamodel-code-generator) pushes cases and predictions, leases, decides and reads decisions.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import types
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import polars as pl
import pytest

from hilt.pipelines.store.operations import Store
from hilt.pipelines.workspace import Workspace
from tests.conftest import (
    CSV,
    TEST_MODEL,
    RunningService,
    copy_of,
    operator,
    predictions_for,
    start_service,
)

HERE = Path(__file__).parent
#: Examples per operation and role: bounded, so the file stays within its 90 s; more for
#: the reviewer, whose few operations are the decision path.
EXAMPLES = {"reviewer": 5}
#: Left out of the fuzzing: a halt stops every other caller's writes for the rest of the run
#: (the halt and its refusals have their own tests: test_snapshot_and_halt.py); a backup
#: writes a folder wherever its (absolute) destination names on the service's host
#: (its refusals have their own tests: store/test_backup.py).
NOT_FUZZED = {"POST /v1/system/halt", "POST /v1/store/backup"}
#: Who the fuzzer calls as (user of the demo config, or an admin added here; None: no token).
ROLES: dict[str, str | None] = {
    "admin": "ada",
    "reviewer": "alice",
    "lead": "max",
    "dpo": "pia",
    "auditor": "otto",
    "anonymous": None,
}
#: The callers who may write nothing: their runs leave the audit head and the counts as
#: they were.
WRITE_NOTHING = ("auditor", "anonymous")


@dataclass
class Fuzzed:
    """What the fuzzer did as one role."""

    returncode: int
    output: str
    junit: Path
    #: (method, path template, status) of every request.
    requests: list[tuple[str, str, int]] = field(default_factory=list)


def _templates(doc: dict[str, Any]) -> list[tuple[re.Pattern[str], str]]:
    out = []
    for template in doc["paths"]:
        pattern = re.sub(r"\{[^}]+\}", "[^/]+", template)
        out.append((re.compile(f"^{pattern}$"), template))
    # Literal paths before templated ones (/v1/users/sync before /v1/users/{name}).
    return sorted(out, key=lambda t: t[1].count("{"))


def _requests(har: Path, doc: dict[str, Any]) -> list[tuple[str, str, int]]:
    templates = _templates(doc)
    seen = []
    for entry in json.loads(har.read_text())["log"]["entries"]:
        path = httpx.URL(entry["request"]["url"]).path
        template = next((t for p, t in templates if p.match(path)), path)
        seen.append((entry["request"]["method"], template, int(entry["response"]["status"])))
    return seen


def _fuzz_data(svc: RunningService, tokens: dict[str, str], ws: Workspace) -> dict[str, Any]:
    """Real identifiers of the workspace, and some state to reach: two decisions by a lead
    (their ids), an open incident."""
    lead = {"Authorization": f"Bearer {tokens['max']}"}
    decision_ids = []
    with httpx.Client(base_url=svc.url, headers=lead, timeout=30) as http:
        for _ in range(2):
            case_id = http.post("/v1/queue/next").raise_for_status().json()["case"]["case_id"]
            done = http.post("/v1/decisions", json={"case_id": case_id, "action": "accept"})
            decision_ids.append(done.raise_for_status().json()["decision_id"])
        incident = http.post(
            "/v1/incidents", json={"kind": "malfunction", "summary": "contract test"}
        )
        incident_ids = [incident.raise_for_status().json()["incident_id"]]
        decisions = http.get("/v1/decisions").raise_for_status().json()
    prediction_ids = sorted({d["prediction_id"] for d in decisions if d["prediction_id"]})
    settings = ws.settings()
    cases = pl.read_csv(CSV, infer_schema=False)
    cases = cases.head(200)
    return {
        "url": svc.url,
        "case_ids": cases["application_id"].to_list(),
        "subject_ids": cases[str(settings.use_case.subject_column)].to_list()[:50],
        "classes": list(settings.target.classes),
        "reason_codes": list(settings.review.reason_codes),
        "decision_ids": decision_ids,
        "prediction_ids": prediction_ids,
        "incident_ids": incident_ids,
        # Users the admin's fuzzer may disable or revoke: not those the fuzzers call as.
        "user_names": sorted(set(settings.access.users) - {u for u in ROLES.values() if u}),
        "models": ["test-model/v1"],
    }


def _failures(junit: Path) -> list[str]:
    """The failed test cases of a junit report: the operation and what failed, briefly."""
    found = []
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        for failure in case:
            if failure.tag in ("failure", "error"):
                text = " ".join((failure.get("message") or failure.text or "").split())
                found.append(f"{case.get('name')}: {text[:240]}")
    return found


def _operations_of(role: str) -> list[str]:
    """What the fuzzer calls as ``role``: the operations the role may perform (without a
    token: every operation, each must answer 401)."""
    names = [f"{op.route.method} {op.route.path.replace(':path', '')}" for op in Store.operations()]
    if ROLES[role] is not None:
        names = [
            n
            for n, op in zip(names, Store.operations(), strict=True)
            if role in op.permission.roles
        ]
    return [n for n in names if n not in NOT_FUZZED]


def _start_fuzzer(
    url: str, role: str, token: str | None, data_file: Path, out: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    out.mkdir(parents=True)
    env = dict(os.environ)
    env["SCHEMATHESIS_HOOKS"] = "openapi_fuzz_hooks"
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    env["HILT_FUZZ_DATA"] = str(data_file)
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "fuzzing",
        "--max-examples",
        str(EXAMPLES.get(role, 1)),
        "--seed",
        "17",
        "--workers",
        "1",
        "--no-shrink",
        "--suppress-health-check",
        "all",
        "--warnings",
        "off",
        "--report",
        "junit,har",
        "--report-dir",
        str(out),
        "--request-timeout",
        "60",
    ]
    for name in _operations_of(role):
        command += ["--include-name", name]
    if token is not None:
        env["HILT_FUZZ_AUTH"] = f"Bearer {token}"
        command += ["-H", f"Authorization: Bearer {token}"]
    log = out / "st.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, env=env, cwd=out, stdout=sink, stderr=subprocess.STDOUT)
    return proc, log


def _state(url: str, token: str) -> tuple[Any, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    head = httpx.get(f"{url}/v1/audit/head", headers=headers, timeout=30).json()
    counts = httpx.get(f"{url}/v1/counts", headers=headers, timeout=30).json()
    return head, counts


def _run_all(
    svc: RunningService, tokens: dict[str, str], data_file: Path, tmp: Path, roles: list[str]
) -> dict[str, Fuzzed]:
    def token(role: str) -> str | None:
        user = ROLES[role]
        return None if user is None else tokens[user]

    started = {
        role: _start_fuzzer(svc.url, role, token(role), data_file, tmp / role) for role in roles
    }
    doc = httpx.get(f"{svc.url}/openapi.json", timeout=30).json()
    runs = {}
    try:
        for role, (proc, log) in started.items():
            code = proc.wait(timeout=300)
            out = tmp / role
            har = next(out.glob("har-*.json"))
            runs[role] = Fuzzed(
                returncode=code,
                output=log.read_text(errors="replace"),
                junit=next(out.glob("junit-*.xml")),
                requests=_requests(har, doc),
            )
    finally:
        for proc, _ in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return runs


def _generated_models(url: str, out: Path) -> types.ModuleType:
    """Pydantic models generated from the service's document, as a bank's team would."""
    document = out / "openapi.json"
    document.write_text(httpx.get(f"{url}/openapi.json", timeout=30).text)
    models = out / "generated_models.py"
    subprocess.run(
        [
            str(Path(sys.executable).with_name("datamodel-codegen")),
            "--input",
            str(document),
            "--input-file-type",
            "openapi",
            "--output",
            str(models),
            "--output-model-type",
            "pydantic_v2.BaseModel",
        ],
        check=True,
        capture_output=True,
    )
    spec = importlib.util.spec_from_file_location("generated_models", models)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' references through it
    spec.loader.exec_module(module)
    return module


def _generated_client_round_trip(
    svc: RunningService, tokens: dict[str, str], out: Path
) -> dict[str, Any]:
    """With only the generated models and httpx: an admin pushes ten new cases and their
    predictions, a reviewer leases one and decides, an auditor reads the decisions; an
    error answer parses as the declared error model."""
    m = _generated_models(svc.url, out)
    new = pl.read_csv(CSV, infer_schema=False).slice(200, 10)
    rows = new.to_dicts()
    predictions = predictions_for(new).with_columns(pl.col("score").cast(pl.String))

    def client(user: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {tokens[user]}"}
        return httpx.Client(base_url=svc.url, headers=headers, timeout=60)

    def send(http: httpx.Client, path: str, body: Any) -> Any:
        answer = http.post(path, json=body.model_dump(mode="json", exclude_none=True))
        assert answer.status_code == 200, answer.text
        return answer.json()

    with client("ada") as admin, client("alice") as reviewer, client("otto") as auditor:
        send(admin, "/v1/cases", m.RowsIn(rows=rows))
        send(
            admin,
            "/v1/predictions",
            m.PredictionsIn(
                rows=predictions.to_dicts(),
                model_version=TEST_MODEL.model,
                model_sha256=TEST_MODEL.sha256,
            ),
        )
        case_id = rows[0]["application_id"]
        lease = m.LeasedCase.model_validate(
            send(reviewer, "/v1/queue/lease", m.CaseIn(case_id=case_id))
        )
        decided = m.Decision.model_validate(
            send(reviewer, "/v1/decisions", m.DecisionRequest(case_id=case_id, action="accept"))
        )
        read = auditor.get("/v1/decisions", params={"limit": 100000})
        listed = [m.Decision.model_validate(d) for d in read.raise_for_status().json()]
        refused = auditor.post("/v1/queue/lease", json={"case_id": case_id})
        error = m.ErrorBody.model_validate(refused.json())
    return {
        "leased": lease.case.case_id,
        "decision": decided,
        "listed": {d.decision_id for d in listed},
        "refused": (refused.status_code, error.error),
    }


@dataclass
class Contract:
    svc: RunningService
    doc: dict[str, Any]
    runs: dict[str, Fuzzed]
    tokens: dict[str, str]
    generated: dict[str, Any]
    before: tuple[Any, Any]
    between: tuple[Any, Any]


@pytest.fixture(scope="module")
def contract(
    tmp_path_factory: pytest.TempPathFactory, served_template: tuple[Workspace, dict[str, str]]
) -> Iterator[Contract]:
    template, issued = served_template
    tmp = tmp_path_factory.mktemp("openapi-contract")
    ws = copy_of(template, tmp / "ws")
    tokens = dict(issued)
    tokens["ada"] = operator(ws).add_user("ada", "admin").token
    svc = start_service(ws)
    try:
        generated = _generated_client_round_trip(svc, tokens, tmp)
        data_file = tmp / "fuzz-data.json"
        data_file.write_text(json.dumps(_fuzz_data(svc, tokens, ws)))
        auditor = tokens["otto"]
        before = _state(svc.url, auditor)
        runs = _run_all(svc, tokens, data_file, tmp, list(WRITE_NOTHING))
        between = _state(svc.url, auditor)
        writers = [r for r in ROLES if r not in WRITE_NOTHING]
        runs |= _run_all(svc, tokens, data_file, tmp, writers)
        doc = httpx.get(f"{svc.url}/openapi.json", timeout=30).json()
        yield Contract(svc, doc, runs, tokens, generated, before, between)
    finally:
        svc.stop()


def test_the_fuzzer_finds_nothing_for_any_role(contract: Contract) -> None:
    failed = {role: _failures(run.junit) for role, run in contract.runs.items()}
    assert not any(failed.values()), failed
    for role, run in contract.runs.items():
        assert run.requests, f"{role}: no requests"
        assert run.returncode == 0, f"{role}:\n{run.output[-3000:]}"
    # The write path is really exercised: decisions recorded by the fuzzer as a reviewer
    # and a lead, cases read by id.
    reached = Counter(
        (m, t) for run in contract.runs.values() for m, t, s in run.requests if 200 <= s < 300
    )
    assert reached[("POST", "/v1/queue/lease")] > 0
    assert reached[("GET", "/v1/cases/{case_id}")] > 0


def test_every_status_seen_is_declared(contract: Contract) -> None:
    undeclared = set()
    for run in contract.runs.values():
        for method, template, status in run.requests:
            operation = contract.doc["paths"].get(template, {}).get(method.lower())
            if operation is None:
                continue  # a method the path has not (405, checked by the fuzzer)
            if str(status) not in operation["responses"]:
                undeclared.add((method, template, status))
    assert not undeclared


def test_callers_who_may_write_nothing_changed_nothing(contract: Contract) -> None:
    assert contract.between == contract.before


def test_the_contract_basics(contract: Contract) -> None:
    """The shapes the issue names: a bearer scheme; the gateway's header only where a
    gateway may act; one error model; 401 before validation; 405 with Allow; a bad public
    key is the client's error."""
    doc, url = contract.doc, contract.svc.url
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"

    def headers_of(path: str, method: str) -> set[str]:
        params = doc["paths"][path][method].get("parameters", [])
        return {p["name"] for p in params if p["in"] == "header"}

    assert "x-hilt-on-behalf-of" in headers_of("/v1/decisions", "post")
    assert "x-hilt-on-behalf-of" not in headers_of("/v1/users", "post")
    assert "authorization" not in headers_of("/v1/decisions", "post")
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path in doc["paths"].values():
        for operation in path.values():
            for status, response in operation["responses"].items():
                if not status.startswith("2"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}

    unauthenticated = httpx.post(f"{url}/v1/queue/lease", content=b"{not json", timeout=30)
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"] == "unauthenticated"
    wrong = httpx.get(f"{url}/v1/cases/0/contest", timeout=30)
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")
    both = httpx.options(f"{url}/v1/decisions", timeout=30)
    assert (both.status_code, both.headers["allow"]) == (405, "GET, POST")
    auditor = {"Authorization": f"Bearer {contract.tokens['otto']}"}
    for key in ("foo", "ed25519:AAAA"):
        bad = httpx.get(
            f"{url}/v1/audit/verify", params={"public_key": key}, headers=auditor, timeout=60
        )
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"] == "input"
    # The role before the shape: an auditor may not lease, whatever they send ...
    forbidden = httpx.post(f"{url}/v1/queue/lease", json={}, headers=auditor, timeout=30)
    assert (forbidden.status_code, forbidden.json()["fields"]) == (403, [])
    # ... a reviewer is told, field by field, what is wrong.
    reviewer = {"Authorization": f"Bearer {contract.tokens['alice']}"}
    invalid = httpx.post(f"{url}/v1/queue/lease", json={}, headers=reviewer, timeout=30)
    assert invalid.status_code == 422
    assert invalid.json()["fields"][0]["loc"] == ["body", "case_id"]
    too_many = httpx.get(f"{url}/v1/decisions", params={"limit": 100_001}, headers=auditor)
    assert (too_many.status_code, too_many.json()["fields"][0]["loc"]) == (422, ["query", "limit"])


def test_a_generated_client_pushes_leases_decides_and_reads(contract: Contract) -> None:
    done = contract.generated
    decision = done["decision"]
    assert done["leased"] == decision.case_id
    assert (decision.action, decision.reviewer) == ("accept", "alice")
    assert decision.decision_id in done["listed"]
    assert done["refused"] == (403, "forbidden")
