"""hilt.toml validation: errors name the file and the key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from hilt.pipelines.config import load_settings, parse_settings
from hilt.pipelines.errors import ConfigError
from tests.conftest import CONFIG


def demo() -> dict[str, Any]:
    return tomllib.loads(CONFIG.read_text())


def test_the_demo_config_is_valid() -> None:
    s = load_settings(CONFIG)
    assert s.target.positive in s.target.classes
    assert not set(s.fields.personal) & set(s.feature_only_columns)
    assert set(s.fields.display).isdisjoint(s.fields.personal)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["columns"]["age"].update(type="integer"), "columns.age.type"),
        (lambda d: d["retention"].update(audit_log_days=90), "at least 183"),
        (lambda d: d.update(bogus=1), "bogus: Extra inputs"),
        (lambda d: d["fields"]["display"].append("sex"), "display_personal"),
        (lambda d: d["fields"]["features"].append("income"), "not in [columns]"),
        (lambda d: d["target"].update(positive="2"), "positive class"),
        (lambda d: d["access"]["users"].update(eve=["wizard"]), "access.users.eve"),
        (lambda d: d["access"].update(local_user="nobody"), "local_user"),
        (lambda d: d["review"].update(reason_codes={}), "review.reason_codes"),
        (lambda d: d["columns"].update({"bad name": {"type": "int"}}), "must match"),
        (lambda d: d["columns"]["housing"].pop("levels"), "levels"),
        (lambda d: d["use_case"].pop("id_column"), "use_case.id_column: Field required"),
    ],
)
def test_invalid_configs_name_the_file_and_key(change: Any, message: str) -> None:
    data = demo()
    change(data)
    with pytest.raises(ConfigError) as err:
        parse_settings(data, "my/hilt.toml")
    assert str(err.value).startswith("my/hilt.toml: ")
    assert message in str(err.value)


def test_unreadable_configs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[use_case\nname=")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML"):
        load_settings(broken)
