"""`hilt docs model VERSION`: the Annex IV document of a version, written by the real CLI
from a real MLflow store and audit log; every metric in it equals MLflow's logged value,
the subgroup table equals the logged CSV, the HTML fetches nothing, no case id appears. The
documents are written by the CLI in this process (``hilt_here``: a process would pay its
interpreter start and MLflow's import for each); the refusals run as a scheduler runs them,
in a `hilt` process of their own (exit code 2, one line), forked from one that imported hilt
once (``hilt_forked``)."""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

import polars as pl
import pytest

from hilt.pipelines.loop.notebook_render import remote_resources
from hilt.pipelines.loop.promotion import promote
from hilt.pipelines.loop.tracking.artifacts import download_run_artifact
from hilt.pipelines.loop.tracking.client import configure
from hilt.pipelines.loop.tracking.registry import version_run_id
from hilt.pipelines.loop.tracking.runs import run_info, set_run_tags
from hilt.pipelines.loop.tracking.tags import SUBGROUP_ARTIFACT
from hilt.pipelines.workspace import Workspace
from tests.cli_helpers import hilt_here
from tests.loop_helpers import (
    hilt_forked,
    loop_workspace,
    personal_data,
    text_findings,
    train_in_process,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = loop_workspace(tmp_path_factory.mktemp("model-docs"))
    first = train_in_process(ws, "dana")
    promote(ws, first.run_id, "lena")
    second = train_in_process(ws, "dana", seed=1)
    assert second.version == "2"
    return ws


def tables(markdown: str) -> list[list[list[str]]]:
    """Every Markdown table of the document: rows of cells (header row first)."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            if not all(set(c) <= {"-", " "} for c in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


def table_with(markdown: str, header: list[str]) -> list[list[str]]:
    hits = [t for t in tables(markdown) if t[0][: len(header)] == header]
    assert len(hits) == 1, header
    return hits[0][1:]


def logged_subgroups(run_id: str) -> pl.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        path = download_run_artifact(run_id, SUBGROUP_ARTIFACT, tmp)
        assert path is not None
        return pl.read_csv(path, infer_schema=False)


@pytest.mark.obligation("AI Act 11")
@pytest.mark.parametrize("version", ["1", "v2"])
def test_every_metric_in_the_document_equals_mlflows(ws: Workspace, version: str) -> None:
    out = hilt_here("docs", "model", version, "--workspace", ws.root)
    assert out.returncode == 0, out.stderr
    number = version.removeprefix("v")
    md_path = ws.root / "docs" / f"model-{number}.md"
    html_path = ws.root / "docs" / f"model-{number}.html"
    assert f"wrote {md_path}" in out.stdout and f"wrote {html_path}" in out.stdout
    markdown = md_path.read_text()
    settings = ws.settings()
    configure(ws, settings=settings)
    run_id = version_run_id(settings, number)
    assert run_id is not None
    run = run_info(run_id)

    rows = table_with(markdown, ["metric", "value (as logged)"])
    in_doc = {name: float(value) for name, value, _ in rows}
    assert set(in_doc) == set(run.metrics)
    for name, logged in run.metrics.items():
        shown = in_doc[name]
        assert shown == logged or (math.isnan(shown) and math.isnan(logged)), name

    params = {k: v for k, v in table_with(markdown, ["training parameter (MLflow)", "value"])}
    assert params == run.params

    subgroups = logged_subgroups(run_id)
    rows = table_with(markdown, subgroups.columns)
    assert rows == [["" if v is None else v for v in r] for r in subgroups.rows()]

    facts = {k: v for k, v in table_with(markdown, ["item", "value"])}
    assert facts["model sha256"] == run.model_sha256
    assert facts["training run (MLflow)"] == run_id
    agree = table_with(markdown, ["fact", "audit log", "MLflow", "verdict"])
    assert [r[3] for r in agree] == ["agree"] * len(agree)
    # The store's registry decided; MLflow mirrors it, fact by fact.
    registry = {r[0]: r[1:] for r in table_with(markdown, ["fact", "store registry", "MLflow"])}
    assert [v[2] for v in registry.values()] == ["agree"] * len(registry)
    state = "promoted" if number == "1" else "pending"
    assert registry[f"hilt-german-credit/v{number} hilt.gate"][:2] == [state, state]
    assert registry["alias champion"][:2] == ["1", "1"]
    assert facts["state in the store's model registry"].startswith(
        "champion (decided by lena)" if number == "1" else "challenger"
    )
    assert facts["gate"] == "passed (the store's verdict)"
    assert "DISAGREE" not in out.stdout

    page = html_path.read_text()
    assert remote_resources(page) == []
    assert "<script" not in page and "<link" not in page
    for name, value, _ in table_with(markdown, ["metric", "value (as logged)"]):
        assert f"<td>{name}</td><td>{value}</td>" in page
    for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown):
        assert (md_path.parent / image).read_bytes().startswith(b"\x89PNG")
    assert page.count('src="data:image/png;base64,') == len(
        re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown)
    )


def test_the_document_holds_no_case_or_subject_id(ws: Workspace) -> None:
    assert hilt_here("docs", "model", "1", "--workspace", ws.root).returncode == 0
    text = (ws.root / "docs" / "model-1.md").read_text()
    assert text_findings(text, "model-1.md", personal_data(ws.settings()), aggregate=True) == []


def test_a_disagreement_between_mlflow_and_the_log_is_printed(ws: Workspace) -> None:
    settings = ws.settings()
    configure(ws, settings=settings)
    run_id = version_run_id(settings, "2")
    assert run_id is not None
    set_run_tags(run_id, {"hilt.model_sha256": "0" * 64})
    assert hilt_here("docs", "model", "2", "--workspace", ws.root).returncode == 0
    markdown = (ws.root / "docs" / "model-2.md").read_text()
    rows = {r[0]: r for r in table_with(markdown, ["fact", "audit log", "MLflow", "verdict"])}
    assert rows["model sha256"][2:] == ["0" * 64, "DISAGREE"]


def test_mlflow_aliases_that_disagree_with_the_store_are_printed(ws: Workspace) -> None:
    """Someone moves MLflow's champion alias to version 2 and tags it promoted: the store's
    registry still says version 1 is the champion (what scores), and the document, the
    command and `hilt audit verify` say where MLflow disagrees."""
    from mlflow import MlflowClient

    from hilt.pipelines.loop.model_registry import mirror_to_mlflow
    from hilt.pipelines.store import Identity, open_store_as

    settings = ws.settings()
    configure(ws, settings=settings)
    client = MlflowClient()
    client.set_registered_model_alias("hilt-german-credit", "champion", "2")
    client.set_model_version_tag("hilt-german-credit", "2", "hilt.gate", "promoted")
    try:
        out = hilt_here("docs", "model", "2", "--workspace", ws.root)
        assert out.returncode == 0, out.stderr
        markdown = (ws.root / "docs" / "model-2.md").read_text()
        registry = {r[0]: r[1:] for r in table_with(markdown, ["fact", "store registry", "MLflow"])}
        assert registry["alias champion"] == ["1", "2", "DISAGREE"]
        assert registry["hilt-german-credit/v2 hilt.gate"] == ["pending", "promoted", "DISAGREE"]
        assert "DISAGREE alias champion: store registry 1; MLflow 2" in out.stdout
        assert (
            "DISAGREE hilt-german-credit/v2 hilt.gate: store registry pending; MLflow promoted"
        ) in out.stdout
        verify = hilt_here("audit", "verify", "--workspace", ws.root)
        assert verify.returncode == 1, verify.stdout
        assert verify.stdout.splitlines()[0].startswith("OK ")
        assert "DISAGREE alias champion: store registry 1; MLflow 2" in verify.stdout
        assert "disagrees with the store's model registry in 2 facts" in verify.stdout
    finally:
        lena = open_store_as(ws, Identity(name="lena"))
        assert mirror_to_mlflow(lena, settings) is None
    verify = hilt_here("audit", "verify", "--workspace", ws.root)
    assert verify.returncode == 0, verify.stdout
    assert "MLflow's registry mirrors the store's model registry" in verify.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["docs", "model", "7"], "error: hilt-german-credit has no registered version 7"),
        (["docs", "model", "latest"], "error: a model version is a registered version number"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    ws: Workspace, args: list[str], message: str, tmp_path: Path
) -> None:
    docs = ws.root / "docs"
    before = sorted(p.name for p in docs.glob("*"))
    out = hilt_forked(*args, "--workspace", ws.root, folder=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith(message)
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert sorted(p.name for p in docs.glob("*")) == before


def test_not_a_workspace_exits_2(tmp_path: Path) -> None:
    out = hilt_forked("docs", "model", "1", "--workspace", tmp_path / "nothing", folder=tmp_path)
    assert out.returncode == 2
    assert "is not a hilt workspace" in out.stderr
