"""Config drift: the store acts on the config in force (the version of hilt.toml it
recorded last), refuses an edit nobody applied, and a loosening of a rule that protects
people waits for a lead who is not the admin who applied it.

The attacks themselves (each refused, nothing written, recorded where) are rows of
tests/test_attack_matrix.py; here: the rules, the records and the settings in force.
"""

from __future__ import annotations

import hashlib
import tomllib

import pytest

from hilt.pipelines.config import Settings, load_settings, parse_settings
from hilt.pipelines.errors import (
    ConfigDrift,
    ConfigError,
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
)
from hilt.pipelines.store import Identity, Store, open_store_as
from hilt.pipelines.store.audit.verify import verify_file
from hilt.pipelines.store.audit_records import AuditEvent
from hilt.pipelines.store.config_rules import (
    LOOSENING,
    effective,
    fixed_keys,
    key_diff,
    loosened,
    shown_values,
)
from hilt.pipelines.store.modes.embedded import connect
from hilt.pipelines.workspace import Workspace
from tests.config_helpers import edit_config, override_without_comment
from tests.conftest import CONFIG, operator, start_service

BASE = CONFIG.read_text(encoding="utf-8")


Edit = tuple[str, str]
AS_IS: Edit = ("", "")


def settings_with(*edits: Edit) -> Settings:
    text = BASE
    for old, new in edits:
        if (old, new) != AS_IS:
            assert text.count(old) == 1, old
            text = text.replace(old, new)
    return parse_settings(tomllib.loads(text), "edited")


# ----------------------------------------------------------------------- the rules
#: (the key that loosens, the config before, the config after)
LOOSER: list[tuple[str, Edit, Edit]] = [
    ("gate.floor", AS_IS, ("floor = 0.65 ", "floor = 0.6 ")),
    ("gate.max_subgroup_gap", AS_IS, ("max_subgroup_gap = 0.25", "max_subgroup_gap = 0.3")),
    ("gate.tolerance", AS_IS, ("tolerance = 0.02", "tolerance = 0.05")),
    ("gate.metric", AS_IS, ('metric = "auc"', 'metric = "accuracy"')),
    ("retention.predictions_days", AS_IS, ("predictions_days = 1825", "predictions_days = 1900")),
    ("retention.audit_log_days", AS_IS, ("audit_log_days = 3650", "audit_log_days = 3000")),
    (
        "fields.display_personal",
        AS_IS,
        ("[review]\n", 'display_personal = ["age"]\n\n[review]\n'),
    ),
    ("fields.protected", AS_IS, ('protected = ["sex", "age"]', 'protected = ["sex"]')),
    (
        "review.comment_required",
        ("comment_required = false", "comment_required = true"),
        AS_IS,
    ),
    ("review.blind_first", ("blind_first = false", "blind_first = true"), AS_IS),
    ("oversight.gold_rate", AS_IS, ("gold_rate = 0.05", "gold_rate = 0.01")),
    (
        "oversight.alert_accept_rate",
        AS_IS,
        ("alert_accept_rate = 0.95", "alert_accept_rate = 0.99"),
    ),
    (
        "training.max_accepted_share",
        AS_IS,
        ("max_accepted_share = 0.5", "max_accepted_share = 0.8"),
    ),
    ("access.local_user", AS_IS, ('local_user = "lena"', 'local_user = "max"')),
    ("governance.review_months", AS_IS, ("review_months = 12 ", "review_months = 24 ")),
    (
        "governance.max_checkpoint_age_days",
        AS_IS,
        ("max_checkpoint_age_days = 7 ", "max_checkpoint_age_days = 30 "),
    ),
    (
        "governance.max_monitoring_age_days",
        AS_IS,
        ("max_monitoring_age_days = 31 ", "max_monitoring_age_days = 90 "),
    ),
    # A key taken out falls back to its default: a floor of 0.8 removed loosens the gate.
    (
        "gate.floor",
        ("floor = 0.65 ", "floor = 0.8 "),
        ("floor = 0.65                # a challenger below this is rejected\n", ""),
    ),
]


@pytest.mark.parametrize(("key", "before", "after"), LOOSER, ids=[k for k, _, _ in LOOSER])
def test_a_change_that_loosens_a_rule_that_protects_people_is_named(
    key: str, before: Edit, after: Edit
) -> None:
    assert loosened(settings_with(before), settings_with(after)) == [key]


TIGHTER: list[Edit] = [
    ("review_months = 12 ", "review_months = 6 "),
    ('dpia_reference = "DPIA-2026-001"', 'dpia_reference = "DPIA-2026-002"'),
    ("floor = 0.65 ", "floor = 0.7 "),
    ("cases_days = 1825", "cases_days = 1000"),
    ("audit_log_days = 3650", "audit_log_days = 4000"),
    ("blind_first = false", "blind_first = true"),
    ("double_review_share = 0.0 ", "double_review_share = 0.1 "),
    ('protected = ["sex", "age"]', 'protected = ["age", "sex"]'),
    ("lease_seconds = 600", "lease_seconds = 300"),
    ('description = "Housing"', 'description = "Housing situation"'),
]


@pytest.mark.parametrize("edit", TIGHTER, ids=[new for _, new in TIGHTER])
def test_a_tightening_or_neutral_change_loosens_nothing(edit: Edit) -> None:
    assert loosened(settings_with(AS_IS), settings_with(edit)) == []


def test_every_rule_names_a_key_that_exists_or_a_section() -> None:
    keys = effective(settings_with(AS_IS))
    for rule in LOOSENING:
        assert rule.key.endswith(".") or rule.key in keys or rule.key.startswith("access."), rule


FIXED_EDITS: list[tuple[list[Edit], list[str]]] = [
    ([('age = { type = "int"', 'age = { type = "float"')], ["columns.age.type"]),
    ([("holdout_fraction = 0.2 ", "holdout_fraction = 0.3 ")], ["training.holdout_fraction"]),
    (
        [
            ('personal = ["sex", "age"]', 'personal = ["sex", "age", "job"]'),
            ('"housing", "job"]', '"housing"]'),
        ],
        ["fields.personal"],
    ),
    ([('id_column = "application_id"', 'id_column = "application"')], ["use_case.id_column"]),
]


@pytest.mark.parametrize(("edits", "fixed"), FIXED_EDITS)
def test_keys_the_store_was_built_on_are_fixed(edits: list[Edit], fixed: list[str]) -> None:
    assert fixed_keys(settings_with(AS_IS), settings_with(*edits)) == fixed


def test_a_column_added_or_removed_is_fixed() -> None:
    before = settings_with(AS_IS)
    extra = before.columns["job"].model_copy(update={"description": "Another"})
    after = before.model_copy(update={"columns": {**before.columns, "extra": extra}})
    assert fixed_keys(before, after) == ["columns.extra"]


def test_values_of_access_and_processing_are_never_shown() -> None:
    before = settings_with(AS_IS)
    after = settings_with(('pia = ["dpo"]', 'pia = ["dpo"]\nnew-admin = ["admin"]\n')).model_copy(
        update={"processing": before.processing.model_copy(update={"controller": "X"})}
    )
    assert shown_values(before, after) == {}
    diff = key_diff(tomllib.loads(BASE), tomllib.loads(BASE.replace("alice", "alicia")))
    assert diff.added == ("access.users.alicia",) and diff.removed == ("access.users.alice",)


# ----------------------------------------------------------------------- the records
def config_events(store: Store) -> list[AuditEvent]:
    return [
        e for e in store.audit_events(after_seq=0, limit=1000) if e.action.startswith("config.")
    ]


def test_init_records_the_workspace_file_as_version_1(workspace: Workspace) -> None:
    status = operator(workspace).config_status()
    sha = hashlib.sha256(workspace.config_path.read_bytes()).hexdigest()
    assert (status.in_force.version, status.in_force.sha256, status.in_force.state) == (
        1,
        sha,
        "in-force",
    )
    assert status.pending is None and not status.drift and status.problem is None
    init = operator(workspace).audit_events(after_seq=0, limit=1)[0]
    assert init.action == "workspace.init" and init.payload["config_sha256"] == sha


@pytest.mark.obligation("AI Act 17")
def test_a_tightening_is_in_force_at_once_and_a_loosening_only_once_a_lead_approves(
    loaded_workspace: Workspace,
) -> None:
    ws = loaded_workspace
    admin = open_store_as(ws, Identity(name="dana"), for_config=True)
    edit_config(ws, "comment_required = false", "comment_required = true")
    done = admin.config_apply()
    assert (done.outcome, done.version.version, done.version.state) == ("applied", 2, "in-force")
    assert done.version.values == {"review.comment_required": [False, True]}
    alice = open_store_as(ws, Identity(name="alice"))
    with pytest.raises(InputError, match="comment_required"):
        override_without_comment(alice)

    edit_config(ws, "comment_required = true", "comment_required = false")
    proposed = ws.config_path.read_bytes()
    done = admin.config_apply()
    assert (done.outcome, done.version.version, done.version.state) == ("pending", 3, "pending")
    assert done.version.loosens == [
        "review.comment_required true → false: overrides no longer need a reason in words"
    ]
    # Not in force: the file is back to version 2, and the store still wants a comment.
    assert "comment_required = true" in ws.config_path.read_text()
    with pytest.raises(InputError, match="comment_required"):
        override_without_comment(alice)
    status = alice.config_status()
    assert (status.in_force.version, status.pending and status.pending.version) == (2, 3)

    lead = open_store_as(ws, Identity(name="max"))
    approved = lead.config_approve(3)
    assert (approved.version, approved.state, approved.decided_by) == (3, "in-force", "max")
    assert ws.config_path.read_bytes() == proposed
    override_without_comment(alice)  # in force now: no comment needed

    events = config_events(open_store_as(ws, Identity(name="otto")))
    assert [(e.action, e.actor, e.object_id) for e in events] == [
        ("config.applied", "dana", "v2"),
        ("config.proposed", "dana", "v3"),
        ("config.approved", "max", "v3"),
    ]
    applied = events[0].payload
    assert applied["old_sha256"] != applied["new_sha256"]
    assert applied["changed"] == ["review.comment_required"]
    assert events[2].payload["loosens"] == ["review.comment_required"]


def test_the_admin_who_applied_a_loosening_cannot_approve_it(workspace: Workspace) -> None:
    operator(workspace).add_user("lena", "admin")  # lena: lead and admin
    lena = open_store_as(workspace, Identity(name="lena"), for_config=True)
    edit_config(workspace, "floor = 0.65 ", "floor = 0.5 ")
    assert lena.config_apply().outcome == "pending"
    with pytest.raises(PermissionDeniedError, match="lena applied config version 2"):
        lena.config_approve()
    rejected = open_store_as(workspace, Identity(name="max")).config_reject(2)
    assert (rejected.state, rejected.decided_by) == ("rejected", "max")
    with pytest.raises(ConflictError, match="no config change is pending"):
        lena.config_approve()
    assert operator(workspace).config_status().in_force.version == 1


def test_a_newer_change_withdraws_the_pending_one(workspace: Workspace) -> None:
    admin = open_store_as(workspace, Identity(name="dana"), for_config=True)
    edit_config(workspace, "floor = 0.65 ", "floor = 0.5 ")
    assert admin.config_apply().version.version == 2
    edit_config(workspace, "lease_seconds = 600", "lease_seconds = 300")
    done = admin.config_apply()
    assert (done.outcome, done.version.version, done.withdrawn) == ("applied", 3, 2)
    with pytest.raises(ConflictError):
        open_store_as(workspace, Identity(name="max")).config_approve(2)
    status = admin.config_status()
    assert status.pending is None and status.in_force.version == 3
    # The same file applied twice: nothing written.
    head = admin.audit_head()
    assert admin.config_apply().outcome == "unchanged"
    assert admin.audit_head() == head


def test_approving_names_the_pending_version_and_waits_for_a_clean_file(
    workspace: Workspace,
) -> None:
    admin = open_store_as(workspace, Identity(name="dana"), for_config=True)
    edit_config(workspace, "gold_rate = 0.05", "gold_rate = 0.0 ")
    admin.config_apply()
    lead = open_store_as(workspace, Identity(name="max"))
    with pytest.raises(NotFoundError, match="version 7 is not pending"):
        lead.config_approve(7)
    edit_config(workspace, "lease_seconds = 600", "lease_seconds = 300")
    with pytest.raises(ConfigDrift, match="cannot approve version 2 now"):
        lead.config_approve(2)


def test_keys_the_store_was_built_on_cannot_be_applied(workspace: Workspace) -> None:
    admin = open_store_as(workspace, Identity(name="dana"), for_config=True)
    head = admin.audit_head()
    edit_config(workspace, "holdout_fraction = 0.2 ", "holdout_fraction = 0.3 ")
    with pytest.raises(ConfigError, match=r"training\.holdout_fraction cannot change"):
        admin.config_apply()
    edit_config(workspace, "holdout_fraction = 0.3 ", "holdout_fraction = 0.2 ")
    edit_config(workspace, "floor = 0.65 ", "floor = 'high' ")
    with pytest.raises(ConfigError, match=r"gate\.floor"):
        admin.config_apply()
    edit_config(workspace, "floor = 'high' ", "floor = 0.65 ")
    assert admin.audit_head() == head


def test_an_open_store_sees_a_change_applied_elsewhere_and_an_edit_made_since(
    loaded_workspace: Workspace,
) -> None:
    ws = loaded_workspace
    alice = open_store_as(ws, Identity(name="alice"))
    edit_config(ws, "comment_required = false", "comment_required = true")
    with pytest.raises(ConfigDrift, match=r"in review\.comment_required"):
        alice.next_case()
    open_store_as(ws, Identity(name="dana"), for_config=True).config_apply()
    with pytest.raises(InputError, match="comment_required"):
        override_without_comment(alice)  # the same store object, the new config in force


def test_comments_and_layout_are_applied_without_a_lead(workspace: Workspace) -> None:
    with workspace.config_path.open("a", encoding="utf-8") as f:
        f.write("\n# reviewed by the DPO\n")
    with pytest.raises(ConfigDrift, match="comments or layout only"):
        operator(workspace)
    done = open_store_as(workspace, Identity(operator=True), for_config=True).config_apply()
    assert done.outcome == "applied"
    assert (done.version.changed, done.version.added, done.version.removed) == ([], [], [])


def test_verify_uses_the_pinned_key_in_force_not_the_files(workspace: Workspace) -> None:
    op = operator(workspace)
    op.checkpoint()
    pinned = load_settings(workspace.config_path).audit.public_key
    assert pinned is not None
    edit_config(workspace, pinned, "ed25519:" + "A" * 43 + "=")
    report = verify_file(workspace)
    assert report.ok, report.summary()


def test_the_service_acts_on_the_config_in_force(loaded_workspace: Workspace) -> None:
    ws = loaded_workspace
    tokens = {n: operator(ws).add_user(n, r).token for n, r in (("dana", "admin"), ("max", "lead"))}
    svc = start_service(ws)
    try:
        admin = open_store_as(svc.url, Identity(token=tokens["dana"]), for_config=True)
        edit_config(ws, "floor = 0.65 ", "floor = 0.6 ")
        assert admin.config_apply().outcome == "pending"
        assert "floor = 0.65 " in ws.config_path.read_text()
        lead = open_store_as(svc.url, Identity(token=tokens["max"]))
        assert lead.config_approve().version == 2
        assert "floor = 0.6 " in ws.config_path.read_text()
        assert lead.config_status().in_force.version == 2
    finally:
        svc.stop()
    # The next start serves version 2, as the file says.
    svc = start_service(ws)
    svc.stop()


def test_verify_catches_the_config_in_force_changed_behind_the_stores_back(
    workspace: Workspace,
) -> None:
    """An attacker with write access to the file and the database loosens the gate in both
    the store's record of the config in force and hilt.toml: every open agrees with itself,
    but the record no longer matches the event that recorded it."""
    edit_config(workspace, "floor = 0.65 ", "floor = 0.5 ")
    text = workspace.config_path.read_text(encoding="utf-8")
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    con = connect(workspace)
    try:
        con.execute(
            "UPDATE config_versions SET text = ?, sha256 = ? WHERE version = 1", [text, sha]
        )
    finally:
        con.close()
    report = operator(workspace).verify()  # opens: the file matches the forged record
    assert report.first_break is not None
    assert (report.first_break.seq, report.first_break.kind) == (1, "record-mismatch")
    assert "config version" in report.first_break.detail


def test_verify_catches_a_pending_change_put_in_force_behind_the_stores_back(
    workspace: Workspace,
) -> None:
    edit_config(workspace, "floor = 0.65 ", "floor = 0.5 ")
    done = open_store_as(workspace, Identity(name="dana"), for_config=True).config_apply()
    con = connect(workspace)
    try:
        con.execute("UPDATE config_versions SET state = 'superseded' WHERE version = 1")
        con.execute("UPDATE config_versions SET state = 'in-force' WHERE version = 2")
    finally:
        con.close()
    edit_config(workspace, "floor = 0.65 ", "floor = 0.5 ")
    report = verify_file(workspace)
    assert report.first_break is not None
    assert (report.first_break.seq, report.first_break.kind) == (1, "record-mismatch")
    assert "not the version the log last put in force" in report.first_break.detail
    assert done.version.applied_seq > 1
