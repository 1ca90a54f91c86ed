"""`hilt config …`, run as scripts run it: the forms, the exit codes, one line per refusal.
The commands run in process; one through a real `hilt` process."""

from __future__ import annotations

from hilt.pipelines.workspace import Workspace
from tests.cli_helpers import hilt_here as hilt
from tests.config_helpers import edit_config
from tests.conftest import CSV
from tests.loop_helpers import hilt_cli
from tests.pipelines.test_cli import assert_user_error


def test_an_edit_is_refused_until_applied_and_a_loosening_until_a_lead_approves(
    workspace: Workspace,
) -> None:
    ws = workspace.root  # `hilt init` of the demo config
    r = hilt("config", "status", "--workspace", ws)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("in force: version 1 (sha256 ")
    assert r.stdout.rstrip().endswith("hilt.toml: the config in force")

    edit_config(workspace, "floor = 0.65 ", "floor = 0.5 ")
    r = hilt("ingest", CSV, "--workspace", ws)
    assert_user_error(
        r,
        "hilt.toml changed since the config in force (version 1, audit seq 1, ",
        ") in gate.floor; nothing runs until an admin records the change with "
        "`hilt config apply --as ADMIN`",
    )
    assert r.stderr.count("\n") == 1
    r = hilt("config", "status", "--workspace", ws)
    assert r.returncode == 0 and "changed since the config in force" in r.stdout

    assert_user_error(
        hilt_cli("config", "apply", "--as", "alice", "--workspace", ws),
        "user 'alice' (roles: reviewer) may not apply config changes",
    )
    r = hilt("config", "apply", "--workspace", ws)  # the operating-system user, an admin
    assert r.returncode == 0, r.stderr
    assert "config version 2 waits for a lead's approval" in r.stdout
    assert "loosens gate.floor 0.65 → 0.5: a lower floor lets weaker models pass" in r.stdout
    assert "`hilt config approve 2 --as LEAD`" in r.stdout
    assert hilt("ingest", CSV, "--workspace", ws).returncode == 0  # version 1 in force

    assert_user_error(
        hilt("config", "approve", "--as", "dana", "--workspace", ws),
        "may not approve or reject config changes",
    )
    r = hilt("config", "approve", "2", "--as", "lena", "--workspace", ws)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("config version 2 in force, approved by lena (audit seq ")
    assert_user_error(
        hilt("config", "reject", "--as", "max", "--workspace", ws),
        "no config change is pending; nothing to reject",
    )
    r = hilt("config", "status", "--workspace", ws)
    assert "in force: version 2" in r.stdout and "approved by lena" in r.stdout
