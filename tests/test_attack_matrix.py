"""The attack matrix: what a real insider could try, each row against a real store (the
workspace's file opened embedded, and/or a real `hilt store serve` process), each refused
with a clear error naming what is wrong, with nothing written (the audit head and every
table's count as they were, but for what the row says the store records), and recorded
where the row says.

Every part of issue 12 adds its rows in its own section below. The closing note quotes the
matrix as a table: attack → refused how → recorded where (``Attack.name``, ``.refused``,
``.recorded``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest

from hilt.pipelines.errors import ConfigDrift, ConfigError, InputError, PermissionDeniedError
from hilt.pipelines.store import Identity, Store, open_store_as
from hilt.pipelines.store.audit.verify import verify_file
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.workspace import Workspace
from tests.config_helpers import edit_config, override_without_comment
from tests.conftest import (
    CONFIG,
    RunningService,
    free_port,
    operator,
    predictions_for,
    stand_in,
    start_service_logged,
)

MODES = ("embedded", "service")
SERVE = (sys.executable, "-m", "hilt.pipelines.cli", "store", "serve")


@dataclass
class Target:
    """A victim workspace, open in one mode; insiders act through ``store(name)``."""

    ws: Workspace
    mode: str
    tokens: dict[str, str]
    log: Path
    service: RunningService | None = None
    opened: list[Store] = field(default_factory=list)

    def store(self, name: str, *, for_config: bool = False) -> Store:
        """The store as the user ``name``, opened through the one door."""
        if self.service is None:
            s = open_store_as(self.ws, Identity(name=name), for_config=for_config)
        else:
            who = Identity(token=self.tokens[name])
            s = open_store_as(self.service.url, who, for_config=for_config)
        self.opened.append(s)
        return s

    def state(self) -> tuple[int, str, dict[str, int]]:
        """The audit head and every table's row count, as an admin reads them."""
        with self.store("dana") as s:
            head = s.audit_head()
            return head.seq, head.hash, s.counts()

    def events_after(self, seq: int) -> list[str]:
        with self.store("otto") as s:
            return [e.action for e in s.audit_events(after_seq=seq)]

    def close(self) -> None:
        for s in self.opened:
            s.close()
        if self.service is not None:
            self.service.stop()


@dataclass(frozen=True)
class Recorded:
    """What the store records of an attack: its audit events (actions, in order) and the
    rows it adds to tables other than the log."""

    events: tuple[str, ...] = ()
    rows: dict[str, int] = field(default_factory=dict)


NOTHING = Recorded()


@dataclass(frozen=True)
class Attack:
    name: str
    #: How the store refuses it.
    refused: str
    #: Where it is recorded.
    recorded: str
    #: Carries out the attack on a target, asserts the refusal, undoes what the insider did
    #: outside the store (a file edited), and returns what the store recorded.
    run: Callable[[Target], Recorded]
    modes: tuple[str, ...] = MODES


# ---------------------------------------------------------------------- the victims
USERS = (
    ("dana", "admin"),
    ("max", "lead"),
    ("lena", "lead"),
    ("lena", "admin"),
    ("alice", "reviewer"),
    ("otto", "auditor"),
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, cases_frame: pl.DataFrame) -> Workspace:
    """A workspace whose reviewers must explain every override (review.comment_required),
    with 40 cases, a prediction each and a signed checkpoint; lena is lead and admin."""
    root = tmp_path_factory.mktemp("victim")
    config = root / "hilt.toml"
    config.write_text(
        CONFIG.read_text(encoding="utf-8").replace(
            "comment_required = false", "comment_required = true"
        ),
        encoding="utf-8",
    )
    ws = Workspace.at(root / "ws")
    create_workspace(ws, config)
    with operator(ws) as op:
        op.ingest_cases(cases_frame.head(40))
        model = stand_in(ws)
        op.add_predictions(model.model, predictions_for(cases_frame.head(40)), model.sha256)
        op.checkpoint()
    return ws


@pytest.fixture
def target(request: pytest.FixtureRequest, template: Workspace, tmp_path: Path) -> Iterator[Target]:
    ws = Workspace.at(tmp_path / "ws")
    shutil.copytree(template.root, ws.root)
    with operator(ws) as op:
        tokens = {name: op.add_user(name, role).token for name, role in USERS}
    t = Target(ws, str(request.param), tokens, tmp_path / "service.log")
    if t.mode == "service":
        t.service = start_service_logged(ws, t.log)
    try:
        yield t
    finally:
        t.close()


# ---- config: drift and second approval
# hilt.toml is the workspace's; the store acts on the version it recorded last (the config
# in force) and refuses everything but the config operations while the file differs. A
# change is recorded by an admin (`hilt config apply`); one that loosens a rule that
# protects people waits for a lead who is not that admin (`hilt config approve`).


def edited_hilt_toml_is_refused_at_open(t: Target) -> Recorded:
    reviewer = t.store("alice")  # open before the edit
    edit_config(t.ws, "floor = 0.65 ", "floor = 0.5 ")
    expected = r"changed since the config in force \(version 1, .*\) in gate\.floor; "
    with pytest.raises(ConfigDrift, match=expected + r".*hilt config apply --as ADMIN"):
        t.store("dana")
    with pytest.raises(ConfigDrift, match=expected):
        reviewer.next_case()  # a store opened before the edit: refused at its next step
    if t.service is not None:
        log = t.log.read_text(encoding="utf-8")
        assert "refusing every operation but the config ones" in log and "gate.floor" in log
    edit_config(t.ws, "floor = 0.5 ", "floor = 0.65 ")
    return NOTHING


def a_service_restarted_on_an_edited_hilt_toml(t: Target) -> Recorded:
    assert t.service is not None
    t.service.stop()
    edit_config(t.ws, "blind_first = false", "blind_first = true")
    port = free_port()
    started = subprocess.run(
        [*SERVE, "--workspace", str(t.ws.root), "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 2, started.stderr
    assert "Traceback" not in started.stderr
    assert "changed since the config in force (version 1" in started.stderr
    assert "in review.blind_first; nothing runs until an admin" in started.stderr
    assert not t.ws.service_file.exists()
    edit_config(t.ws, "blind_first = true", "blind_first = false")
    t.service = start_service_logged(t.ws, t.log)
    return NOTHING


def config_applied_by_a_non_admin(t: Target) -> Recorded:
    edit_config(t.ws, "lease_seconds = 600", "lease_seconds = 60")
    lead = t.store("max", for_config=True)
    with pytest.raises(PermissionDeniedError, match=r"'max' \(roles: lead\) may not apply config"):
        lead.config_apply()
    edit_config(t.ws, "lease_seconds = 60", "lease_seconds = 600")
    return NOTHING


def a_loosening_applied_by_an_admin_is_not_in_force(t: Target) -> Recorded:
    edit_config(t.ws, "comment_required = true", "comment_required = false")
    admin = t.store("dana", for_config=True)
    done = admin.config_apply()
    assert (done.outcome, done.version.state) == ("pending", "pending")
    assert done.version.loosens == [
        "review.comment_required true → false: overrides no longer need a reason in words"
    ]
    # Not in force: hilt.toml is back to version 1, and overrides still need a comment.
    assert "comment_required = true" in t.ws.config_path.read_text(encoding="utf-8")
    with pytest.raises(InputError, match="needs a comment"):
        override_without_comment(t.store("alice"))
    status = admin.config_status()
    assert status.in_force.version == 1 and status.pending is not None
    assert not status.drift
    # The reviewer's lease is the one other thing written (the refused override wrote nothing).
    return Recorded(("config.proposed", "case.leased"), {"config_versions": 1, "leases": 1})


def personal_columns_shown_without_a_second_approval(t: Target) -> Recorded:
    edit_config(t.ws, "[review]\n", 'display_personal = ["age"]\n\n[review]\n')
    edit_config(t.ws, '"housing", "job"]', '"housing", "job", "age"]')
    done = t.store("dana", for_config=True).config_apply()
    assert done.outcome == "pending"
    assert any(
        line.startswith('fields.display_personal [] → ["age"]') for line in done.version.loosens
    )
    leased = t.store("alice").next_case()
    assert leased is not None and "age" not in leased.case.personal
    return Recorded(("config.proposed", "case.leased"), {"config_versions": 1, "leases": 1})


def an_admin_approves_their_own_loosening(t: Target) -> Recorded:
    edit_config(t.ws, "floor = 0.65 ", "floor = 0.5 ")
    lena = t.store("lena", for_config=True)  # lead and admin
    assert lena.config_apply().outcome == "pending"
    with pytest.raises(
        PermissionDeniedError, match="lena applied config version 2; a second person, a lead"
    ):
        lena.config_approve(2)
    assert lena.config_status().in_force.version == 1
    # A second person, a lead, approves it: in force, and hilt.toml holds it.
    approved = t.store("max").config_approve(2)
    assert (approved.state, approved.decided_by, approved.applied_by) == ("in-force", "max", "lena")
    assert "floor = 0.5 " in t.ws.config_path.read_text(encoding="utf-8")
    return Recorded(("config.proposed", "config.approved"), {"config_versions": 1})


def the_pinned_audit_key_swapped(t: Target) -> Recorded:
    text = t.ws.config_path.read_text(encoding="utf-8")
    pinned = next(line for line in text.splitlines() if line.startswith("public_key = "))
    forged = 'public_key = "ed25519:' + "A" * 43 + '="'
    edit_config(t.ws, pinned, forged)
    # Unapplied: nothing opens, and verify keeps the key in force (embedded: the file).
    with pytest.raises(ConfigDrift, match=r"in audit\.public_key"):
        t.store("otto")
    if t.mode == "embedded":
        assert verify_file(t.ws).ok
    # Applied by an admin: any change of the key waits for a lead.
    done = t.store("dana", for_config=True).config_apply()
    assert done.outcome == "pending"
    assert [line.split(" ")[0] for line in done.version.loosens] == ["audit.public_key"]
    assert pinned in t.ws.config_path.read_text(encoding="utf-8")
    report = t.store("otto").verify()
    assert report.ok, report.summary()
    return Recorded(("config.proposed",), {"config_versions": 1})


def a_key_the_store_was_built_on_changed(t: Target) -> Recorded:
    edit_config(t.ws, "holdout_fraction = 0.2 ", "holdout_fraction = 0.5 ")
    admin = t.store("dana", for_config=True)
    with pytest.raises(
        ConfigError, match=r"training\.holdout_fraction cannot change: the store was built on"
    ):
        admin.config_apply()
    edit_config(t.ws, "holdout_fraction = 0.5 ", "holdout_fraction = 0.2 ")
    return NOTHING


CONFIG_ATTACKS = [
    Attack(
        "hilt.toml edited after init (the gate loosened) and used without applying it",
        "ConfigDrift at open and at the next operation of a store already open: the file "
        "changed since version N (audit seq, time) in gate.floor; `hilt config apply`",
        "nowhere in the audit log (the edit took no effect); the service's log, once",
        edited_hilt_toml_is_refused_at_open,
    ),
    Attack(
        "the store service restarted on an edited hilt.toml",
        "`hilt store serve` exits 2 before serving: the file changed since version N",
        "nowhere (nothing was served)",
        a_service_restarted_on_an_edited_hilt_toml,
        modes=("service",),
    ),
    Attack(
        "a config change applied by a non-admin (a lead)",
        "PermissionDeniedError: may not apply config changes",
        "nowhere (nothing was done)",
        config_applied_by_a_non_admin,
    ),
    Attack(
        "an admin turns off the comments required on overrides (a loosening)",
        "pending, not in force: hilt.toml goes back to the config in force; overrides "
        "without a comment are still refused",
        "config.proposed (old and new sha256, keys, old and new values, what loosens)",
        a_loosening_applied_by_an_admin_is_not_in_force,
    ),
    Attack(
        "an admin shows reviewers a personal column (fields.display_personal grows)",
        "pending, not in force: reviewers still see no age",
        "config.proposed",
        personal_columns_shown_without_a_second_approval,
    ),
    Attack(
        "an admin (also a lead) approves their own loosening of the gate",
        "PermissionDeniedError: they applied it, a second person must approve; a second "
        "lead's approval puts it in force",
        "config.proposed, then config.approved by the second lead",
        an_admin_approves_their_own_loosening,
    ),
    Attack(
        "the pinned audit public key swapped in hilt.toml",
        "ConfigDrift while unapplied (verify keeps the key in force); applied by an admin, "
        "pending a lead's approval",
        "config.proposed (the old and the new public key)",
        the_pinned_audit_key_swapped,
    ),
    Attack(
        "a key the store was built on changed (the holdout fraction)",
        "ConfigError: training.holdout_fraction cannot change; a new workspace is needed",
        "nowhere (nothing was written)",
        a_key_the_store_was_built_on_changed,
    ),
]


# ---------------------------------------------------------------------- the matrix
ATTACKS = [*CONFIG_ATTACKS]
ROWS = [(a, m) for a in ATTACKS for m in a.modes]


@pytest.mark.parametrize(
    ("attack", "target"),
    ROWS,
    ids=[f"{a.run.__name__}-{m}" for a, m in ROWS],
    indirect=["target"],
)
def test_the_attack_is_refused_and_nothing_else_is_written(attack: Attack, target: Target) -> None:
    seq, _, counts = target.state()
    recorded = attack.run(target)
    after_seq, _, after_counts = target.state()
    assert target.events_after(seq) == list(recorded.events)
    assert after_seq == seq + len(recorded.events)
    expected = dict(counts)
    expected["audit_log"] += len(recorded.events)
    for table, added in recorded.rows.items():
        expected[table] += added
    assert after_counts == expected
