"""The fork server of tests/prewarmed.py: its children start cheaply because it built
`hilt`'s command tree once, imported what a store service's start imports, and froze what
it imported out of their garbage collections (``tests.forkserver_ready``). The fork server
imports its preload by name and skips a name it cannot import without a word, so this
checks, in a real child, that all of it happened."""

from __future__ import annotations

from pathlib import Path

from tests.prewarmed import run


def test_a_child_finds_the_command_tree_built_and_the_imports_frozen(tmp_path: Path) -> None:
    script = tmp_path / "ready.py"
    script.write_text(
        "import gc, sys\n"
        "import typer.main\n"
        "from hilt.pipelines.cli import app\n"
        "built = typer.main.get_command(app) is typer.main.get_command(app)\n"
        "preloaded = 'hilt.pipelines.store.modes.service_http' in sys.modules\n"
        "served = all(m in sys.modules for m in ('uvloop', 'httptools', 'pydantic.v1'))\n"
        "warm = 'mlflow.store.tracking.sqlalchemy_store' in sys.modules\n"
        "print(gc.get_freeze_count(), preloaded, built, served, warm)\n"
    )
    child = run(script=script, folder=tmp_path / "out")
    assert child.returncode == 0, child.stderr
    frozen, preloaded, built, served, warm = child.stdout.split()
    assert preloaded == "True"  # (forked from the server, not a fresh interpreter)
    # Everything the server imported: hundreds of thousands of objects, not a few.
    assert int(frozen) > 100_000, frozen
    assert built == "True"  # (typer builds a new tree on each call otherwise)
    # What a store service's start imports, by building its app and serving it, was
    # imported by the server (each `hilt store serve` child imported it again otherwise).
    assert served == "True"
    # A run's warm-ups (tests/prewarmed_runs.py) are inherited too: MLflow's SQL store.
    assert warm == "True"
