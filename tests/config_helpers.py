"""Config drift in tests: editing a workspace's hilt.toml as an admin (or an attacker)
with a text editor would, and a decision that shows which review rules are in force."""

from __future__ import annotations

from hilt.pipelines.store import DecisionRequest, Store
from hilt.pipelines.workspace import Workspace


def edit_config(ws: Workspace, old: str, new: str) -> None:
    """Replace the one occurrence of ``old`` in the workspace's hilt.toml by ``new``."""
    text = ws.config_path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in hilt.toml"
    ws.config_path.write_text(text.replace(old, new), encoding="utf-8")


def override_without_comment(store: Store) -> None:
    """Lease the next case and override it with a reason code but no comment (refused while
    the config in force requires comments)."""
    leased = store.next_case()
    assert leased is not None
    predicted = leased.case.predictions[-1].label
    store.record_decision(
        DecisionRequest(
            case_id=leased.case.case_id,
            action="override",
            final_label="0" if predicted == "1" else "1",
            reason_code="data-error",
        )
    )
