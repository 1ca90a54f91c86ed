"""Editing a workspace's hilt.toml in tests, as an admin (or an attacker) with a text
editor would: one exact fragment replaced by another."""

from __future__ import annotations

from hilt.pipelines.workspace import Workspace


def edit_config(ws: Workspace, old: str, new: str) -> None:
    """Replace the one occurrence of ``old`` in the workspace's hilt.toml by ``new``."""
    text = ws.config_path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in hilt.toml"
    ws.config_path.write_text(text.replace(old, new), encoding="utf-8")
