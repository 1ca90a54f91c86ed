"""Without /usr/bin/chromium the browser tests skip on a developer's machine and fail in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import conftest


@pytest.mark.parametrize("ci", ["true", "1"])
def test_a_missing_chromium_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str
) -> None:
    monkeypatch.setattr(conftest, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="must run, not skip"):
        conftest.require_chromium()


def test_a_missing_chromium_skips_outside_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(conftest, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        conftest.require_chromium()


def test_an_installed_chromium_passes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    present = tmp_path / "chromium"
    present.write_text("")
    monkeypatch.setattr(conftest, "CHROMIUM", present)
    monkeypatch.setenv("CI", "true")
    conftest.require_chromium()
