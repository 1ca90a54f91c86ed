"""What makes a run's first seconds cheaper without changing what it does: the kernel started
before papermill needs it (``run_kernel``) and warmed up without touching the notebook's
namespace (``steps.start.warm_up``), and nbformat imported without compiling grammars that
jsonschema's IRI checks take only when used (``notebook_imports``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from hilt.pipelines.loop import run_kernel
from hilt.pipelines.loop.notebook_imports import load_nbformat
from hilt.pipelines.loop.steps import start


def test_nbformat_loads_without_the_iri_grammars_and_jsonschema_checks_iris_as_before() -> None:
    """In a fresh interpreter (this one may hold jsonschema already): nbformat (papermill's,
    nbclient's and nbconvert's first import) imports without rfc3987_syntax; jsonschema's
    "iri" and "iri-reference" checks still give rfc3987_syntax's verdicts (valid, invalid,
    invalid), importing it when first asked."""
    code = (
        "import sys\n"
        "from hilt.pipelines.loop.notebook_imports import load_nbformat\n"
        "load_nbformat()\n"
        "import jsonschema\n"
        "print('rfc3987_syntax' in sys.modules)\n"
        "checker = jsonschema.FormatChecker()\n"
        "print(checker.conforms('http://example.com/ü?q=1', 'iri'),"
        " checker.conforms('http://[bad', 'iri'),"
        " checker.conforms('a b', 'iri-reference'))\n"
        "print(getattr(sys.modules.get('rfc3987_syntax'), '__file__', None) is not None)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    # not imported by papermill; the checks' verdicts; the real module imported for them
    assert out.stdout.split("\n")[:3] == ["False", "True False False", "True"], out.stdout


def test_the_warm_up_binds_no_name_and_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel's start-up line is a call whose value is None (IPython binds nothing for
    it, and it takes no execution count); a module that fails to import is left to the
    cell that imports it."""
    (line,) = [
        a.split("=", 1)[1]
        for a in run_kernel.kernel_arguments("nothing")
        if a.startswith("--IPKernelApp.exec_lines=")
    ]
    namespace: dict[str, object] = {}
    assert eval(compile(line, "<exec_lines>", "eval"), namespace) is None
    assert set(namespace) == {"__builtins__"}
    monkeypatch.setitem(start.WARM_UP, "broken", ("hilt.pipelines.no_such_module",))
    start.warm_up("broken")  # raises nothing


def test_a_run_kernel_starts_in_its_folder_with_its_environment_warm_and_is_stopped(
    tmp_path: Path,
) -> None:
    """papermill executes a notebook on the kernel ``started`` gave it: in the folder and
    with the environment it was given, the warm-up's modules already imported and no name
    of theirs in the notebook's namespace; the kernel's process is gone when the block
    ends, even when it ends with an error."""
    load_nbformat()
    import papermill

    nb = nbformat.v4.new_notebook()
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "import json, os, sys\n"
            "print(json.dumps([os.getcwd(), os.environ.get('HILT_TEST_MARK'),"
            " 'hilt.pipelines.loop.steps.score' in sys.modules, 'xgboost' in sys.modules,"
            " [k for k in ('hilt', 'score', 'start', 'importlib') if k in dir()]]))"
        )
    )
    source, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, str(source))
    folder = tmp_path / "cwd"
    folder.mkdir()
    env = {**os.environ, "HILT_TEST_MARK": "marked", "MPLBACKEND": "Agg"}
    pid = 0
    with (
        pytest.raises(RuntimeError, match="after the notebook"),
        run_kernel.started("score", env, folder) as kernel,
    ):
        pid = kernel.provisioner.pid  # type: ignore[union-attr]
        papermill.execute_notebook(
            str(source),
            str(out),
            kernel_name=run_kernel.KERNEL_NAME,
            km=kernel,
            progress_bar=False,
        )
        raise RuntimeError("after the notebook")
    executed = nbformat.read(str(out), as_version=4)
    (cell,) = executed.cells
    assert cell.execution_count == 1
    printed = json.loads("".join(o["text"] for o in cell.outputs if o.get("name") == "stdout"))
    assert printed == [str(folder), "marked", True, True, []]
    assert pid > 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
