"""hilt.pipelines.loop.demo called as a notebook would call it (the whole set-up, through the
real loop, is tested by `hilt demo` in test_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.demo import DemoStep, WorkspaceCreated, set_up_demo
from hilt.pipelines.workspace import Workspace
from tests.conftest import CONFIG, CSV, operator


def test_the_demo_needs_a_data_scientist_and_a_lead(tmp_path: Path) -> None:
    """Refused before anything is loaded; the step done so far was reported as it finished."""
    config = tmp_path / "no-lead.toml"
    text = CONFIG.read_text(encoding="utf-8")
    text = text.replace('lena = ["lead", "reviewer"]', 'lena = ["reviewer"]', 1)
    text = text.replace('max = ["lead"]', 'max = ["reviewer"]', 1)
    config.write_text(text, encoding="utf-8")
    ws = Workspace.at(tmp_path / "demo")
    seen: list[DemoStep] = []
    with pytest.raises(InputError, match="the demo needs a data-scientist and a lead"):
        set_up_demo(ws, config, CSV, on_step=seen.append)
    assert seen == [WorkspaceCreated(ws.root)]
    assert operator(ws).counts()["cases"] == 0
