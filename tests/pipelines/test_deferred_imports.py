"""The RFC 3987 grammar that jsonschema's import builds is built only when an IRI is checked,
and the check is the real one (``hilt.pipelines.deferred_imports``); Voila and JupyterLab
start that way (``jupyter_main``). Each case runs in a fresh interpreter: what a process has
imported is the subject."""

from __future__ import annotations

import json
import subprocess
import sys

from hilt.pipelines.dashboards.jupyter_main import SERVERS
from hilt.pipelines.dashboards.lab import lab_command
from hilt.pipelines.dashboards.server import JUPYTER_MAIN, voila_command
from hilt.pipelines.workspace import Workspace

GRAMMAR = "rfc3987_syntax.syntax_helpers"

CHECKS = f"""
import json, sys
import jsonschema
from jsonschema import Draft202012Validator, FormatChecker
built_at_import = {GRAMMAR!r} in sys.modules
iri = Draft202012Validator({{"format": "iri"}}, format_checker=FormatChecker())
ref = Draft202012Validator({{"format": "iri-reference"}}, format_checker=FormatChecker())
print(json.dumps({{
    "built_at_import": built_at_import,
    "iri": [iri.is_valid("https://example.org/caf\\u00e9?q=1"), iri.is_valid("no iri ::")],
    "reference": [ref.is_valid("../a/b#c"), ref.is_valid("http://[::1")],
    "built_after_checks": {GRAMMAR!r} in sys.modules,
}}))
"""


def run(prelude: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", prelude + CHECKS], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_the_iri_grammar_is_built_on_the_first_check_and_checks_as_before() -> None:
    plain = run("")
    deferred = run(
        "from hilt.pipelines.deferred_imports import defer_iri_grammar\n"
        "assert defer_iri_grammar() is True\n"
    )
    # Control: importing jsonschema builds the grammar (the cost this avoids).
    assert plain["built_at_import"] is True
    assert deferred["built_at_import"] is False
    # The checks are the real ones, with the same verdicts, once an IRI is checked.
    assert deferred["iri"] == plain["iri"] == [True, False]
    assert deferred["reference"] == plain["reference"] == [True, False]
    assert deferred["built_after_checks"] is True
    # The runner's path: papermill (nbformat's validation imports jsonschema) after it.
    runner = run(
        "from hilt.pipelines.deferred_imports import defer_iri_grammar\n"
        "defer_iri_grammar()\n"
        "import papermill\n"
    )
    assert runner["built_at_import"] is False
    assert runner["iri"] == plain["iri"] and runner["reference"] == plain["reference"]


def test_voila_and_jupyterlab_start_through_it(workspace: Workspace) -> None:
    voila = voila_command(workspace.root, "127.0.0.1", 8866)
    lab = lab_command(workspace, "127.0.0.1", 8899, "t0ken")
    assert voila[1:4] == ["-m", JUPYTER_MAIN, "voila"]
    assert lab[1:4] == ["-m", JUPYTER_MAIN, "jupyterlab"]
    assert set(SERVERS) == {"voila", "jupyterlab"}
    # Anything else is refused with a usage line, before any server code runs.
    out = subprocess.run(
        [sys.executable, "-m", JUPYTER_MAIN, "jupyter_server"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and out.stderr.startswith("usage: jupyter_main"), out


def test_httpx_imports_its_command_line_client_only_when_it_is_called() -> None:
    """A hilt process imports httpx without its CLI (click, rich, pygments' lexers); the
    CLI's ``main`` still works: calling it imports the real one."""
    code = """
import json, sys
import hilt.pipelines, httpx
before = sorted(m for m in ("rich", "click", "httpx._main") if m in sys.modules and
                getattr(sys.modules[m], "__file__", None))
try:
    httpx.main(["--help"])
except SystemExit as e:
    code = e.code
print(json.dumps({"before": before, "code": code, "rich": "rich.console" in sys.modules}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "Usage: httpx" in out.stdout  # the real CLI answered
    assert result == {"before": [], "code": 0, "rich": True}
