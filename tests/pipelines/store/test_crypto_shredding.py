"""Personal data at rest: sealed per subject, unreadable without the master key, shredded
with the subject's key, and the audit log still verifies. Byte scans of the real files."""

from __future__ import annotations

import base64
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest

from hilt.pipelines.errors import ConfigError, StoreError
from hilt.pipelines.store import DecisionRequest, Identity, open_store_as
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.store.subject_keys import MasterKey, SubjectKeyStore
from hilt.pipelines.workspace import Workspace
from tests.conftest import CONFIG, TEST_MODEL, operator, predictions_for, stand_in

STRING_PERSONAL = """
full_name = { type = "string", description = "Applicant's name", max_length = 200 }
"""


def canary_config(tmp_path: Path) -> Path:
    """The demo use case with one more personal column, a free-text name."""
    text = CONFIG.read_text(encoding="utf-8")
    text = text.replace("[columns]\n", "[columns]\n" + STRING_PERSONAL, 1)
    text = text.replace('personal = ["sex", "age"]', 'personal = ["sex", "age", "full_name"]', 1)
    path = tmp_path / "canary.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def canaries() -> dict[str, str]:
    tag = uuid.uuid4().hex[:12]
    return {
        "name": f"CANARYNAME{tag}",
        "subject": f"CANARYSUBJ{tag}",
        "comment": f"CANARYCOMMENT{tag}",
        "rectified": f"CANARYFIX{tag}",
    }


@pytest.fixture
def canary_ws(tmp_path: Path, cases_frame: pl.DataFrame, canaries: dict[str, str]) -> Workspace:
    ws = Workspace.at(tmp_path / "ws")
    create_workspace(ws, canary_config(tmp_path))
    frame = cases_frame.head(60).with_columns(
        pl.format("Applicant {}", pl.col("application_id")).alias("full_name")
    )
    frame = frame.with_columns(
        pl.when(pl.col("application_id") == "APP-000003")
        .then(pl.lit(canaries["name"]))
        .otherwise(pl.col("full_name"))
        .alias("full_name"),
        pl.when(pl.col("application_id") == "APP-000003")
        .then(pl.lit(canaries["subject"]))
        .otherwise(pl.col("applicant_id"))
        .alias("applicant_id"),
    )
    op = operator(ws)
    op.ingest_cases(frame)
    stand_in(ws)
    op.add_predictions(TEST_MODEL.model, predictions_for(frame), TEST_MODEL.sha256)
    return ws


def files_of(ws: Workspace) -> Iterator[Path]:
    for path in sorted(ws.root.rglob("*")):
        if path.is_file():
            yield path


def holding(ws: Workspace, needle: str) -> list[str]:
    """Every file of the workspace whose bytes contain ``needle`` (UTF-8)."""
    raw = needle.encode("utf-8")
    return [str(p.relative_to(ws.root)) for p in files_of(ws) if raw in p.read_bytes()]


def store_files(ws: Workspace) -> list[Path]:
    return [p for p in files_of(ws) if p.name.startswith("store.duckdb")]


def canary_in_store(ws: Workspace, needle: str) -> bool:
    return any(needle.encode() in p.read_bytes() for p in store_files(ws))


@pytest.mark.obligation("GDPR 5(1)(f)", "GDPR 25", "GDPR 32")
def test_personal_data_is_never_in_the_clear_in_the_store_file(
    canary_ws: Workspace, canaries: dict[str, str]
) -> None:
    ws = canary_ws
    for needle in canaries.values():
        assert not canary_in_store(ws, needle)
    alice = open_store_as(ws, Identity(name="alice"))
    alice.lease_case("APP-000003")  # the canary subject's case
    case = alice.get_case("APP-000003")
    other = "0" if case.predictions[-1].label == "1" else "1"
    alice.record_decision(
        DecisionRequest(
            case_id="APP-000003",
            action="override",
            final_label=other,
            reason_code="other",
            comment=f"Met {canaries['comment']} in person",
        )
    )
    pia = open_store_as(ws, Identity(name="pia"))
    pia.subject_rectify(canaries["subject"], "full_name", canaries["rectified"])
    doc = pia.subject_export(canaries["subject"])
    # The export holds every occurrence, opened ...
    text = doc.model_dump_json()
    for needle in canaries.values():
        assert needle in text, needle
    # ... the store file and its WAL none, at any point so far.
    for needle in canaries.values():
        assert not canary_in_store(ws, needle), needle
    # The only copies in the clear are in the key-holder's hands: nowhere in the workspace.
    for needle in canaries.values():
        assert holding(ws, needle) == [], needle
    # Reviewers do not see personal columns; the DPO and data scientists do.
    assert "full_name" not in alice.get_case("APP-000003").personal
    assert (
        open_store_as(ws, Identity(name="dana")).get_case("APP-000003").personal["full_name"]
        == (canaries["rectified"])
    )


def test_without_the_master_key_nothing_personal_can_be_read_or_written(
    canary_ws: Workspace, canaries: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = canary_ws
    key_file = ws.master_key_path
    moved = key_file.with_name("elsewhere.key")
    key_file.rename(moved)
    dana = open_store_as(ws, Identity(name="dana"))
    with pytest.raises(ConfigError, match="no master key"):
        dana.get_case("APP-000003")
    with pytest.raises(ConfigError, match="no master key"):
        dana.snapshot()
    # What needs no personal data still works: the log verifies without the key.
    assert open_store_as(ws, Identity(name="otto")).verify().ok
    # The raw file holds ciphertext only, and another master key does not open it.
    con = duckdb.connect(str(ws.db_path), read_only=True)
    try:
        sealed = con.execute(
            "SELECT p.sealed FROM case_personal p WHERE case_id = 'APP-000003'"
        ).fetchall()[0][0]
        ids = [r[0] for r in con.execute("SELECT subject_id_sealed FROM identity").fetchall()]
    finally:
        con.close()
    assert canaries["name"].encode() not in bytes(sealed)
    assert all(canaries["subject"].encode() not in bytes(i) for i in ids)
    wrong = MasterKey(b"\x01" * 32)
    store = SubjectKeyStore(ws.subject_keys_path, wrong)
    try:
        with pytest.raises(StoreError, match="wrong master key"):
            store.get(
                [
                    r[0]
                    for r in sqlite3.connect(ws.subject_keys_path).execute(
                        "SELECT subject_ref FROM subject_keys LIMIT 1"
                    )
                ]
            )
    finally:
        store.close()
    # A key file readable by others is refused.
    moved.rename(key_file)
    key_file.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        open_store_as(ws, Identity(name="dana")).get_case("APP-000003")
    key_file.chmod(0o600)
    # The key may come from the environment instead of the file.
    text = key_file.read_text().strip()
    key_file.unlink()
    monkeypatch.setenv("HILT_MASTER_KEY", text)
    assert (
        open_store_as(ws, Identity(name="dana")).get_case("APP-000003").personal["full_name"]
        == (canaries["name"])
    )
    monkeypatch.setenv("HILT_MASTER_KEY", base64.b64encode(b"short").decode())
    with pytest.raises(ConfigError, match="32 bytes"):
        open_store_as(ws, Identity(name="dana")).get_case("APP-000003")


@pytest.mark.obligation("GDPR 17")
def test_erasure_destroys_the_key_for_good_and_verify_still_passes(
    canary_ws: Workspace, canaries: dict[str, str]
) -> None:
    ws = canary_ws
    alice = open_store_as(ws, Identity(name="alice"))
    alice.lease_case("APP-000003")  # the canary subject's case
    alice.record_decision(
        DecisionRequest(
            case_id="APP-000003", action="flag", comment=f"Ask about {canaries['comment']}"
        )
    )
    pia = open_store_as(ws, Identity(name="pia"))
    ref = pia.subject_export(canaries["subject"]).subject_ref
    con = sqlite3.connect(ws.subject_keys_path)
    try:
        wrapped = con.execute(
            "SELECT wrapped FROM subject_keys WHERE subject_ref = ?", [ref]
        ).fetchall()[0][0]
    finally:
        con.close()
    # Before the erasure: the wrapped key is in the key file's bytes, and the DPO opens
    # every canary (so the checks after it cannot pass for want of anything to find).
    key_files = [p for p in files_of(ws) if p.name.startswith("subject-keys.sqlite")]
    assert any(bytes(wrapped) in p.read_bytes() for p in key_files)
    export = pia.subject_export(canaries["subject"]).model_dump_json()
    assert all(canaries[k] in export for k in ("name", "subject", "comment")), export
    report = pia.subject_erase(canaries["subject"])
    assert report.key_destroyed
    key_files = [p for p in files_of(ws) if p.name.startswith("subject-keys.sqlite")]
    assert key_files and all(bytes(wrapped) not in p.read_bytes() for p in key_files)
    # The comment's ciphertext stays in the audit log, and nobody can open it any more.
    dana = open_store_as(ws, Identity(name="dana"))
    [decision] = dana.get_case("APP-000003").decisions
    assert decision.comment is None and decision.comment_sealed is not None
    events = open_store_as(ws, Identity(name="otto")).audit_events(limit=10_000)
    assert decision.comment_sealed in {e.payload.get("comment_sealed") for e in events}
    for needle in canaries.values():
        assert holding(ws, needle) == [], needle
    assert open_store_as(ws, Identity(name="otto")).verify().ok


def test_a_returning_subject_after_erasure_is_a_new_pseudonym(
    canary_ws: Workspace, canaries: dict[str, str], cases_frame: pl.DataFrame
) -> None:
    ws = canary_ws
    pia = open_store_as(ws, Identity(name="pia"))
    old = pia.subject_export(canaries["subject"]).subject_ref
    pia.subject_erase(canaries["subject"])
    again = cases_frame.slice(100, 1).with_columns(
        pl.lit(canaries["subject"]).alias("applicant_id"), pl.lit("Someone").alias("full_name")
    )
    operator(ws).ingest_cases(again)
    doc = pia.subject_export(canaries["subject"])
    assert doc.subject_ref != old
    assert [c.case_id for c in doc.cases] == [again["application_id"][0]]
    assert open_store_as(ws, Identity(name="otto")).verify().ok
