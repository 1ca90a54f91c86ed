"""The store service's OpenAPI document says what the service really does (issue 17).

Schemathesis (``st run --checks all``) runs against a live service with realistic data (real
case, subject, decision and prediction ids, leased cases: ``openapi_fuzz_hooks.py``) for each
role and without a token, a bounded number of examples per operation, and must find nothing;
its junit report and a HAR of every request are kept under the test's tmp dir. Every status
the fuzzer saw is one its operation declares; the callers who may write nothing (no token, an
auditor) changed neither the audit head nor any count. A client generated from the document
(datamodel-code-generator) pushes cases and predictions, leases, decides (also with the next
lease, in one request) and reads decisions.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import polars as pl
import pytest
from hypothesis.internal import charmap

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
#: Examples per operation and role: bounded, so that the file stays within its 90 s. Fewer
#: for the callers every operation refuses before it looks at the request (no token), or
#: who only read (the auditor).
EXAMPLES = {"anonymous": 1, "auditor": 3}
WRITERS_EXAMPLES = int(os.environ.get("HILT_FUZZ_EXAMPLES", "5"))
#: Helper users the hooks make state with (a halt before a resume, a pending config change
#: before its approval, ...); no fuzzer calls as them.
HELPERS = {"lead": "lena", "admin": "dana", "reviewer": "bob", "reader": "otto"}
#: Users the admin's fuzzer may disable, enable or revoke (no one else uses them).
SPARE_USERS = ("spare-1", "spare-2", "spare-3")
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
    #: Every request as the hooks logged it: operation, status, audit head before, after.
    log: list[dict[str, Any]] = field(default_factory=list)


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


def _fuzz_data(
    svc: RunningService, tokens: dict[str, str], ws: Workspace, tmp: Path
) -> dict[str, Any]:
    """Real identifiers of the workspace, and the state to reach: two decisions by a lead
    (their ids), an open incident, a training snapshot (for a model's evaluation), the
    helper users' tokens (the hooks make state with them), partitions of the cases (to
    decide, to make gold) and of the subjects (to erase), users an admin may disable."""
    lead = {"Authorization": f"Bearer {tokens['lena']}"}
    admin = {"Authorization": f"Bearer {tokens['dana']}"}
    decision_ids = []
    second = {"Authorization": f"Bearer {tokens['bob']}"}
    ids = pl.read_csv(CSV, infer_schema=False)["application_id"].to_list()[80:100]
    with (
        httpx.Client(base_url=svc.url, headers=lead, timeout=60) as http,
        httpx.Client(base_url=svc.url, headers=second, timeout=60) as other,
    ):
        for case_id in ids:  # (two reviewers agree: a final decision)
            accept = {"case_id": case_id, "action": "accept"}
            for reviewer in (http, other):
                if reviewer.post("/v1/queue/lease", json={"case_id": case_id}).status_code != 200:
                    break
                done = reviewer.post("/v1/decisions", json=accept)
                if done.status_code != 200:
                    break
                decision_ids.append(done.json()["decision_id"])
            if len(decision_ids) >= 8:
                break
        incident = http.post(
            "/v1/incidents", json={"kind": "malfunction", "summary": "contract test"}
        )
        incident_ids = [incident.raise_for_status().json()["incident_id"]]
        decisions = http.get("/v1/decisions").raise_for_status().json()
    settings = ws.settings()
    cases = pl.read_csv(CSV, infer_schema=False)
    with httpx.Client(base_url=svc.url, headers=admin, timeout=120) as http:
        snapshot = http.post("/v1/snapshots").raise_for_status().json()
        # Labelled cases without predictions: some in the holdout, candidates for gold.
        http.post("/v1/cases", json={"rows": cases.slice(300, 60).to_dicts()}).raise_for_status()
        gold = http.get("/v1/gold/candidates").raise_for_status().json()
    prediction_ids = sorted({d["prediction_id"] for d in decisions if d["prediction_id"]})
    changed = []
    dpo = {"Authorization": f"Bearer {tokens['pia']}"}
    with httpx.Client(base_url=svc.url, headers=dpo, timeout=60) as http:
        for subject in cases[str(settings.use_case.subject_column)].to_list()[150:153]:
            kind = {"subject_id": subject, "kind": "restrict"}
            if http.post("/v1/subjects/restrict", json=kind).status_code == 200:
                changed.append(subject)
    cases = cases.head(200)
    case_ids = cases["application_id"].to_list()
    conflicts = _conflicts(svc.url, tokens, case_ids[100:120], 4)
    subjects = cases[str(settings.use_case.subject_column)].to_list()
    decided = {d["case_id"] for d in decisions}
    (tmp / "backups").mkdir()
    return {
        "url": svc.url,
        "config": str(ws.root / "hilt.toml"),
        "lock": str(tmp / "config.lock"),
        "backups": str(tmp / "backups"),
        "helpers": {role: tokens[user] for role, user in HELPERS.items()},
        "id_column": settings.use_case.id_column,
        "subject_column": settings.use_case.subject_column,
        "protected": list(settings.fields.protected),
        "features": list(settings.fields.features),
        "case_ids": case_ids,
        # (those of subjects nobody erases)
        "kept_case_ids": case_ids[:150],
        "subject_cases": [[s, c] for s, c in zip(subjects[:150], case_ids[:150], strict=True)],
        "open_case_ids": [c for c in case_ids[:100] if c not in decided],
        "gold_case_ids": gold,
        "recipients": ["loan-platform"],
        "changed_subject_ids": changed,
        "conflict_case_ids": conflicts,
        "decided": [
            [subject, case]
            for case, subject in zip(case_ids, subjects, strict=True)
            if case in decided
        ],
        "subject_ids": subjects[:160],
        "erasable_subject_ids": sorted(set(subjects[160:]) - set(subjects[:160])),
        "classes": list(settings.target.classes),
        "reason_codes": list(settings.review.reason_codes),
        "decision_ids": decision_ids,
        "prediction_ids": prediction_ids,
        "incident_ids": incident_ids,
        "user_names": list(SPARE_USERS),
        "protected_users": sorted({*settings.access.users, *(u for u in ROLES.values() if u)}),
        "models": [TEST_MODEL.model],
        "model": TEST_MODEL.model,
        "model_sha256": TEST_MODEL.sha256,
        "snapshot_sha256": snapshot["sha256"],
    }


def _conflicts(url: str, tokens: dict[str, str], cases: list[str], n: int) -> list[str]:
    """``n`` of ``cases`` two reviewers decided differently (every case is double-reviewed
    here)."""
    found: list[str] = []
    first, second = (
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens[u]}"}, timeout=60)
        for u in ("bob", "lena")
    )
    with first, second:
        for case_id in cases:
            accept = {"case_id": case_id, "action": "accept"}
            if (
                first.post("/v1/queue/lease", json={"case_id": case_id}).status_code != 200
                or first.post("/v1/decisions", json=accept).status_code != 200
                or second.post("/v1/queue/lease", json={"case_id": case_id}).status_code != 200
            ):
                continue
            for label in ("0", "1"):
                override = accept | {"action": "override", "final_label": label}
                override["reason_code"] = "other"
                if second.post("/v1/decisions", json=override).status_code == 200:
                    found.append(case_id)
                    break
            if len(found) == n:
                return found
    raise AssertionError(f"only {len(found)} conflicts")


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
    return names


@cache
def _unicode_tables() -> Path:
    """Hypothesis's Unicode tables (the characters of each category, and those UTF-8
    encodes), made once per test process. Each `st` runs in a fresh folder, so without a
    copy of them each computed them itself (1.7-1.9 s of CPU a process, six a run); the
    tables are the same either way, and so are the examples drawn."""
    charmap.charmap()
    charmap.intervals_from_codec("utf-8")
    return charmap.charmap_file().parent


def _start_fuzzer(
    url: str, role: str, token: str | None, data_file: Path, out: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    out.mkdir(parents=True)
    tables = _unicode_tables()
    if tables.is_dir():  # (not written where the storage folder is read-only)
        shutil.copytree(tables, out / ".hypothesis" / tables.relative_to(tables.parents[1]))
    env = dict(os.environ)
    env["SCHEMATHESIS_HOOKS"] = "openapi_fuzz_hooks"
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    env["HILT_FUZZ_DATA"] = str(data_file)
    env["HILT_FUZZ_LOG"] = str(out / "requests.jsonl")
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "fuzzing",
        "--max-examples",
        str(EXAMPLES.get(role, WRITERS_EXAMPLES)),
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
                log=[json.loads(line) for line in (out / "requests.jsonl").open()],
            )
    finally:
        for proc, _ in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return runs


def _events(url: str, token: str) -> list[tuple[str, str, str]]:
    """Every audit event's time, actor and action."""
    headers = {"Authorization": f"Bearer {token}"}
    found: list[tuple[str, str, str]] = []
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        while True:
            page = (
                http.get(
                    "/v1/audit/search",
                    params={"min_seq": len(found) + 1, "limit": 1000, "newest_first": False},
                )
                .raise_for_status()
                .json()
            )
            found += [(e["ts"], e["actor"], e["action"]) for e in page["events"]]
            if not page["events"]:
                return found


def _usable(url: str, tokens: dict[str, str]) -> dict[str, Any]:
    """The store after the fuzzing: not halted, and a reviewer can still take a case."""
    reviewer = {"Authorization": f"Bearer {tokens['bob']}"}
    with httpx.Client(base_url=url, headers=reviewer, timeout=60) as http:
        return {
            "halted": http.get("/v1/system").raise_for_status().json()["halted"],
            "next": http.post("/v1/queue/next").status_code,
        }


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
        send(admin, "/v1/cases", m.CasesIn(rows=rows))
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
        # The review panel's click: a decision with the next lease, in one request.
        second = rows[1]["application_id"]
        send(reviewer, "/v1/queue/lease", m.CaseIn(case_id=second))
        clicked = m.DecidedNext.model_validate(
            send(
                reviewer, "/v1/queue/decide-next", m.DecisionRequest(case_id=second, action="skip")
            )
        )
        read = auditor.get("/v1/decisions", params={"limit": 100000})
        listed = [m.Decision.model_validate(d) for d in read.raise_for_status().json()]
        refused = auditor.post("/v1/queue/lease", json={"case_id": case_id})
        error = m.ErrorBody.model_validate(refused.json())
    return {
        "leased": lease.case.case_id,
        "decision": decided,
        "clicked": (second, clicked),
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
    #: Every audit event at the end: (time, actor, action).
    events: list[tuple[str, str, str]]
    #: The system state and a lease at the end (the store still usable).
    after: dict[str, Any]


@pytest.fixture(scope="module")
def contract(
    tmp_path_factory: pytest.TempPathFactory, served_template: tuple[Workspace, dict[str, str]]
) -> Iterator[Contract]:
    template, issued = served_template
    tmp = tmp_path_factory.mktemp("openapi-contract")
    ws = copy_of(template, tmp / "ws")
    tokens = dict(issued)
    op = operator(ws)
    tokens["ada"] = op.add_user("ada", "admin").token
    for name in SPARE_USERS:
        op.add_user(name, "reviewer")
    # A recipient of the decisions (GDPR Art. 19), for the dpo to tell of a change; every
    # case reviewed twice (so that two reviewers can disagree, for a lead to adjudicate).
    config = ws.root / "hilt.toml"
    text = config.read_text().replace("double_review_share = 0.0", "double_review_share = 1.0")
    config.write_text(text + '\n[processing]\nrecipients = ["loan-platform"]\n')
    op.config_apply()
    svc = start_service(ws)
    try:
        generated = _generated_client_round_trip(svc, tokens, tmp)
        data_file = tmp / "fuzz-data.json"
        data_file.write_text(json.dumps(_fuzz_data(svc, tokens, ws, tmp)))
        auditor = tokens["otto"]
        before = _state(svc.url, auditor)
        runs = _run_all(svc, tokens, data_file, tmp, list(WRITE_NOTHING))
        between = _state(svc.url, auditor)
        writers = [r for r in ROLES if r not in WRITE_NOTHING]
        runs |= _run_all(svc, tokens, data_file, tmp, writers)
        doc = httpx.get(f"{svc.url}/openapi.json", timeout=30).json()
        yield Contract(
            svc,
            doc,
            runs,
            tokens,
            generated,
            before,
            between,
            _events(svc.url, auditor),
            _usable(svc.url, tokens),
        )
    finally:
        svc.stop()


def _write_operations() -> dict[str, frozenset[str]]:
    """Each operation that may write ("METHOD path") → the fuzzed roles allowed to do it."""
    fuzzed = {r for r, user in ROLES.items() if user is not None}
    return {
        f"{op.route.method} {op.route.path.replace(':path', '')}": op.permission.roles & fuzzed
        for op in Store.operations()
        if op.route.method == "POST" and not op.read_only
    }


def reached(contract: Contract) -> dict[str, tuple[int, int]]:
    """Per write operation: (requests that reached a 2xx, requests) by its allowed roles."""
    shares: dict[str, tuple[int, int]] = {}
    for name, roles in _write_operations().items():
        seen = [e["status"] for r in roles for e in contract.runs[r].log if e["operation"] == name]
        shares[name] = (sum(200 <= s < 300 for s in seen), len(seen))
    return shares


def test_the_fuzzer_finds_nothing_for_any_role(contract: Contract) -> None:
    failed = {role: _failures(run.junit) for role, run in contract.runs.items()}
    assert not any(failed.values()), failed
    for role, run in contract.runs.items():
        assert run.requests, f"{role}: no requests"
        assert run.returncode == 0, f"{role}:\n{run.output[-3000:]}"
        print(f"{role}: {len(run.requests)} requests")
    # The write paths are really exercised: each write operation reached a 2xx for a role
    # allowed to do it (but those no fuzzed role may do: the gateway's, a recipient's).
    shares = reached(contract)
    for name, (ok, total) in sorted(shares.items()):
        print(f"{name}: {ok}/{total} reached a 2xx")
    allowed = _write_operations()
    missed = sorted(n for n, (ok, _) in shares.items() if allowed[n] and not ok)
    assert not missed, missed
    # The halt was fuzzed, and the store is usable at the end.
    assert shares["POST /v1/system/halt"][0] > 0
    assert contract.after == {"halted": False, "next": 200}


#: What the store records of a refused request, by design.
RECORDED = {"audit.event_refused", "model.use_refused"}


def test_no_rejected_request_wrote_anything(contract: Contract) -> None:
    """For every role: while a request that was refused (4xx) was under way (from when it
    was sent to its answer), the audit log gained no event by its caller (others' events
    may interleave: the roles run at once); and the callers who may write nothing changed
    no count at all."""
    # (A refused attempt to write an event that carries authority, or to score with a model
    # that may not, is itself recorded, by design: ``ops/events.record_event``,
    # ``ops/models.scoring_target``.)
    written = [(ts, actor) for ts, actor, action in contract.events if action not in RECORDED]
    wrote = []
    for role, run in contract.runs.items():
        user = ROLES[role]
        for entry in run.log:
            if not 400 <= entry["status"] < 500:
                continue
            during = [actor for ts, actor in written if entry["sent"] <= ts <= entry["answered"]]
            if user in during or (user is None and during):
                wrote.append((role, entry))
    assert not wrote
    assert sum(len(run.log) for run in contract.runs.values()) > 0
    assert contract.between == contract.before


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
    assert "x-hilt-on-behalf-of" in headers_of("/v1/queue/decide-next", "post")
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
    second, clicked = done["clicked"]
    assert (clicked.decision.case_id, clicked.decision.action) == (second, "skip")
    assert clicked.decision.reviewer == "alice" and clicked.decision.decision_id in done["listed"]
    assert clicked.leased is not None and clicked.leased.case.case_id != second
