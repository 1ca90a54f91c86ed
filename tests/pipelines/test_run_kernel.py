"""What makes a run's first seconds cheaper without changing what it does: the kernel started
before papermill needs it (``run_kernel``) and warmed up without touching the notebook's
namespace (``steps.start.warm_up``). That papermill's import builds no IRI grammar is
``test_deferred_imports``'s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from hilt.pipelines.deferred_imports import defer_iri_grammar
from hilt.pipelines.kernels.forked import ForkedProvisioner
from hilt.pipelines.loop import run_kernel
from hilt.pipelines.loop.steps import start


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


def test_the_retraining_kernel_imports_its_figures_as_it_trains_not_as_it_starts() -> None:
    """A run waits for its kernel's warm-up, not for what the kernel imports while the
    model trains: the retraining kernel's warm-up leaves the figures (matplotlib) to
    ``start.import_while_training``, which imports them on a thread (and, once they are
    imported, starts none). In a fresh interpreter, as a kernel starts."""
    code = (
        "import sys\n"
        "from hilt.pipelines.loop.steps import start\n"
        "start.warm_up('retrain')\n"
        "print('warm-up', 'matplotlib' in sys.modules)\n"
        "thread = start.import_while_training()\n"
        "thread.join(120)\n"
        "print('training', all(m in sys.modules for m in start.AFTER_TRAINING))\n"
        "print('again', start.import_while_training())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["warm-up False", "training True", "again None"]


def test_a_run_kernel_starts_in_its_folder_with_its_environment_warm_and_is_stopped(
    tmp_path: Path,
) -> None:
    """papermill executes a notebook on the kernel ``started`` gave it: in the folder and
    with the environment it was given, the warm-up's modules already imported and no name
    of theirs in the notebook's namespace; the kernel's process is gone when the block
    ends, even when it ends with an error."""
    defer_iri_grammar()
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
        # forked from the zygote the suite names (tests/conftest.py), not launched
        assert isinstance(kernel.provisioner, ForkedProvisioner)
        assert kernel.provisioner.forked is not None
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
