"""The progress bar of long commands: drawn on standard error only when asked (or on a
terminal), never on standard output, and a no-op callable otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from hilt.pipelines.cli.progress import progress, shown
from hilt.pipelines.store.audit.verify import verify_file
from hilt.pipelines.workspace import Workspace
from tests.conftest import copy_of


def test_progress_is_drawn_on_stderr_when_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HILT_PROGRESS", "1")
    assert shown()
    with progress("verifying", total=10, unit="events") as advance:
        for _ in range(10):
            advance(1)
    out, err = capsys.readouterr()
    assert out == ""
    assert "verifying" in err and "10/10" in err and "events" in err


def test_progress_is_silent_off_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HILT_PROGRESS", raising=False)
    # pytest's captured stderr is not a terminal
    assert not shown()
    with progress("ingesting", total=3, unit="rows") as advance:
        advance(3)
    assert capsys.readouterr() == ("", "")
    monkeypatch.setenv("HILT_PROGRESS", "0")
    assert not shown()


def test_verify_advances_once_per_check(tmp_path: Path, empty_template: Workspace) -> None:
    ws = copy_of(empty_template, tmp_path / "ws")
    done: list[int] = []
    report = verify_file(ws, on_progress=done.append)
    assert report.ok
    # Every check of a full walk of the file, each once: schema, hashes, scan, order,
    # batch digests, batch counts, checkpoints, gold sets, authority, config, registry.
    assert done == [1] * 11
