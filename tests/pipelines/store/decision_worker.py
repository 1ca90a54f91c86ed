"""A load-test worker: a reviewer who takes the next case from the queue and accepts it,
again and again, writing down which decisions were acknowledged.

Run as a script (``python decision_worker.py SPEC.json``) by tests/pipelines/store/
test_concurrency.py, so that every worker is its own process with its own connection.
The spec names the mode ("http": the store service, "embedded":
``open_store_as(path, Identity(name=…))``), the requests ``[{"request_id"}, …]`` (one
decision each, on the case the queue leases) and an output file. Each request ends in one
JSON line in the output, written and flushed as it happens, so that what a worker saw
acknowledged survives the service (or the worker) being killed:

    {"request_id": …, "case_id": …, "decision_id": …, "seq": …, "at": …}   acknowledged
    {"request_id": …, "case_id": … or null, "error": "…", "at": …}        not acknowledged

(``case_id``: the case the queue leased for the request; ``at``: when the answer came.)
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def http_recorder(spec: dict[str, Any]) -> Callable[[dict[str, str]], dict[str, Any]]:
    import httpx

    client = httpx.Client(
        base_url=spec["url"],
        headers={"Authorization": f"Bearer {spec['token']}"},
        timeout=spec.get("timeout_s", 30.0),
    )

    def record(req: dict[str, str]) -> dict[str, Any]:
        case_id = None
        try:
            lease = client.post("/v1/queue/next")
            if lease.status_code != 200 or lease.json() is None:
                return {"case_id": None, "error": f"no lease: HTTP {lease.status_code}"}
            case_id = lease.json()["case"]["case_id"]
            body = {"case_id": case_id, "action": "accept", "request_id": req["request_id"]}
            r = client.post("/v1/decisions", json=body)
        except httpx.HTTPError as e:
            return {"case_id": case_id, "error": type(e).__name__}
        if r.status_code != 200:
            return {"case_id": case_id, "error": f"HTTP {r.status_code}: {r.text[:200]}"}
        d = r.json()
        return {"case_id": case_id, "decision_id": d["decision_id"], "seq": d["seq"]}

    return record


def embedded_recorder(spec: dict[str, Any]) -> Callable[[dict[str, str]], dict[str, Any]]:
    from hilt.pipelines.errors import HiltError
    from hilt.pipelines.store import DecisionRequest, Identity, open_store_as

    store = open_store_as(spec["workspace"], Identity(name=spec["user"]))
    store.queue_status()  # the first call's imports and connection, before any barrier

    def record(req: dict[str, str]) -> dict[str, Any]:
        case_id = None
        try:
            lease = store.next_case()
            if lease is None:
                return {"case_id": None, "error": "no lease: the queue is empty"}
            case_id = lease.case.case_id
            request = DecisionRequest(
                case_id=case_id, action="accept", request_id=req["request_id"]
            )
            d = store.record_decision(request)
        except HiltError as e:
            return {"case_id": case_id, "error": f"{type(e).__name__}: {e}"}
        return {"case_id": case_id, "decision_id": d.decision_id, "seq": d.seq}

    return record


def wait_at_barrier(folder: Path, parties: int, me: str, timeout_s: float = 120) -> None:
    """Start together: say this worker is ready (its imports done), then wait until
    ``parties`` workers are, so that a slow start cannot serialise them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{me}.ready").touch()
    deadline = time.monotonic() + timeout_s
    while len(list(folder.glob("*.ready"))) < parties:
        if time.monotonic() > deadline:
            raise SystemExit(f"barrier: only {len(list(folder.glob('*.ready')))} of {parties}")
        time.sleep(0.01)


def main(spec_path: str) -> int:
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    record = (http_recorder if spec["mode"] == "http" else embedded_recorder)(spec)
    if "barrier" in spec:
        wait_at_barrier(Path(spec["barrier"]), int(spec["barrier_parties"]), spec["user"])
    deadline = time.monotonic() + float(spec.get("deadline_s", 120))
    with open(spec["out"], "a", encoding="utf-8", buffering=1) as out:
        for req in spec["requests"]:
            if time.monotonic() > deadline:
                result: dict[str, Any] = {"error": "deadline"}
            else:
                result = record(req)
            # When the answer came (epoch seconds): tests compare the workers' intervals.
            result["at"] = time.time()
            out.write(json.dumps({"request_id": req["request_id"], **result}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
