"""The fork server of tests/prewarmed.py: its children start cheaply because what it
imported is frozen out of their garbage collections (``tests.forkserver_frozen``). The fork
server imports its preload by name and skips a name it cannot import without a word, so
this checks, in a real child, that the freeze happened."""

from __future__ import annotations

from pathlib import Path

from tests.prewarmed import run


def test_a_child_finds_what_the_fork_server_imported_frozen(tmp_path: Path) -> None:
    script = tmp_path / "frozen.py"
    script.write_text(
        "import gc, sys\n"
        "print(gc.get_freeze_count(), 'hilt.pipelines.store.modes.service_http' in sys.modules)\n"
    )
    child = run(script=script, folder=tmp_path / "out")
    assert child.returncode == 0, child.stderr
    frozen, preloaded = child.stdout.split()
    assert preloaded == "True"  # (forked from the server, not a fresh interpreter)
    # Everything the server imported: hundreds of thousands of objects, not a few.
    assert int(frozen) > 100_000, frozen
