"""The published export schema, processing records and the subject CLI's contract."""

from __future__ import annotations

import json

import duckdb
import jsonschema  # type: ignore[import-untyped]
import pytest

from hilt.pipelines.compliance import privacy
from hilt.pipelines.compliance.processing_records import (
    as_markdown,
    missing_entries,
    register,
)
from hilt.pipelines.store.modes.embedded import connect
from hilt.pipelines.store.schema import object_names
from hilt.pipelines.workspace import Workspace


def test_the_published_export_schema_is_the_codes() -> None:
    assert privacy.EXPORT_SCHEMA_PATH.read_text(encoding="utf-8") == privacy.export_schema_text(), (
        "docs/subject-export.schema.json is stale: run `hilt subject schema > "
        "docs/subject-export.schema.json`"
    )


@pytest.mark.obligation("GDPR 20")
def test_an_export_validates_against_the_published_schema(loaded_workspace: Workspace) -> None:
    from hilt.pipelines.store import Identity, open_store_as

    doc = open_store_as(loaded_workspace, Identity(name="pia")).subject_export("SYN-SUBJ-000010")
    schema = json.loads(privacy.EXPORT_SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.validate(json.loads(doc.model_dump_json()), schema)
    broken = json.loads(doc.model_dump_json())
    del broken["cases"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def tables_of(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every table and view of a store's database."""
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows]


@pytest.mark.obligation("GDPR 30")
def test_every_table_of_the_store_has_a_processing_record(workspace: Workspace) -> None:
    settings = workspace.settings()
    con = connect(workspace, read_only=True)
    try:
        assert missing_entries(settings, tables_of(con)) == []
        # What the register checks without a database is what a store holds.
        assert object_names(settings) == tables_of(con)
        assert missing_entries(settings) == []
        # The check itself can fail: a table nobody described is named.
        con.close()
        con = duckdb.connect(str(workspace.db_path))
        con.execute("CREATE TABLE undocumented_things (x INT)")
        assert missing_entries(settings, tables_of(con)) == ["undocumented_things"]
    finally:
        con.close()
    described = {e.name for e in register(settings) if e.kind == "table"}
    con = connect(workspace, read_only=True)
    try:
        tables = set(tables_of(con))
    finally:
        con.close()
    assert described - tables == set(), "entries for tables that no longer exist"
    text = as_markdown(settings)
    for column in settings.personal_columns:
        assert column in text  # the categories of personal data are named
    assert f"{settings.retention.cases_days} days" in text


@pytest.mark.obligation("GDPR 6", "GDPR 30")
def test_every_processing_record_names_a_lawful_basis_and_the_cases_take_the_use_cases(
    workspace: Workspace,
) -> None:
    settings = workspace.settings()
    entries = register(settings)
    assert entries
    for entry in entries:
        # Every entry that holds personal data (of applicants or staff) names its basis.
        article_6 = entry.lawful_basis.startswith("GDPR Art. 6(1)(")
        assert article_6 or entry.lawful_basis == "not personal data", entry
        assert article_6 or entry.data_subjects == "none", entry
    assert sum(e.data_subjects != "none" for e in entries) > len(entries) // 2
    own = "GDPR Art. 6(1)(a): the applicant's consent (test)"
    changed = settings.model_copy(
        update={"processing": settings.processing.model_copy(update={"lawful_basis": own})}
    )
    with_own = {e.name: e.lawful_basis for e in register(changed)}
    assert with_own["case_features"] == with_own["case_personal"] == own
    assert own in as_markdown(changed)
    # Only the use case's processing takes its basis; the log keeps its own legal duty.
    assert with_own["audit_log"] != own
