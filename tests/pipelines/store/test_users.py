"""Users and tokens (issue 12): revoke, disable, enable, expiry, sync from hilt.toml, the
list; and how the store recognises callers (store/authentication.py): the dashboards'
gateway rules and the single-person mark on every event. On real workspaces (embedded),
and through a real store service where a cache is involved. The attacks these rules stop
are rows of tests/test_attack_matrix.py."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hilt.pipelines.config import Access, load_settings
from hilt.pipelines.errors import (
    AuthenticationError,
    ConfigError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    UnknownUserError,
)
from hilt.pipelines.store import Identity, open_store_as
from hilt.pipelines.store.audit_records import AuditEvent
from hilt.pipelines.store.authentication import (
    DEMO_SIGN_IN,
    SINGLE_PERSON,
    UNPROVEN_KEY,
    dashboard_actor,
    prove_gateway_request,
    require_single_person,
)
from hilt.pipelines.store.user_records import User
from hilt.pipelines.workspace import Workspace
from tests.conftest import CONFIG, PROXY_SECRET, behind_proxy, operator, start_service


def audit(ws: Workspace, action: str) -> list[AuditEvent]:
    """The events of kind ``action``, oldest first."""
    return [e for e in operator(ws).audit_events(0, 100_000) if e.action == action]


def users(ws: Workspace) -> dict[str, tuple[list[str], bool, bool]]:
    """name → (roles, active, listed in hilt.toml)."""
    return {u.name: (u.roles, u.active, u.in_config) for u in operator(ws).list_users()}


def set_config_users(ws: Workspace, listed: dict[str, list[str]]) -> None:
    """Rewrite [access.users] of the workspace's hilt.toml and apply it (an administrator's
    edit, then `hilt config apply`): the users sync reads the config in force."""
    text = ws.config_path.read_text(encoding="utf-8")
    body = "".join(f"{n} = {json.dumps(r)}\n" for n, r in listed.items())
    new = re.sub(r"(?ms)^\[access\.users\]\n.*?(?=^\[|\Z)", "[access.users]\n" + body + "\n", text)
    assert new != text
    ws.config_path.write_text(new, encoding="utf-8")
    applied = open_store_as(ws, Identity(operator=True), for_config=True).config_apply()
    assert applied.outcome == "applied"


# ---------------------------------------------------------------------- tokens
@pytest.mark.obligation("GDPR 32")
def test_a_token_expires_after_token_days(workspace: Workspace) -> None:
    issued_at = datetime(2026, 1, 1, tzinfo=UTC)
    op = open_store_as(workspace, Identity(operator=True), clock=lambda: issued_at)
    grant = op.add_user("carol", "reviewer")
    days = workspace.settings().access.token_days
    assert days == 90
    assert grant.expires_at == "2026-04-01T00:00:00.000000Z"
    (issued,) = [e for e in audit(workspace, "user.token_issued") if e.object_id == "carol"]
    assert issued.payload["expires_at"] == grant.expires_at
    # Long expired by now: a service refuses it, saying so.
    svc = start_service(workspace)
    try:
        with pytest.raises(AuthenticationError, match="expired at 2026-04-01T00:00:00"):
            open_store_as(svc.url, Identity(token=grant.token)).whoami()
    finally:
        svc.stop()


def test_revoking_revokes_every_token_and_is_audited_once(workspace: Workspace) -> None:
    op = operator(workspace)
    op.add_user("carol", "reviewer")
    op.add_user("carol", "reviewer")
    head = op.audit_head()
    assert op.revoke_tokens("carol") == 2
    (revoked,) = audit(workspace, "user.tokens_revoked")
    assert revoked.payload == {"revoked": 2}
    assert revoked.seq == head.seq + 1
    # Nothing left to revoke: nothing written.
    assert op.revoke_tokens("carol") == 0
    assert op.audit_head().seq == head.seq + 1
    with pytest.raises(NotFoundError, match="unknown user 'nobody'"):
        op.revoke_tokens("nobody")


# ---------------------------------------------------------------------- disable, enable
def test_a_disabled_user_can_no_longer_act_even_on_a_store_already_open(
    workspace: Workspace,
) -> None:
    op = operator(workspace)
    op.add_user("alice", "reviewer")
    alice = open_store_as(workspace, Identity(name="alice"))
    alice.queue_status()
    info = op.disable_user("alice")
    assert (info.active, info.tokens) == (False, 0)
    (disabled,) = audit(workspace, "user.disabled")
    assert disabled.payload == {"roles": ["reviewer"], "tokens_revoked": 1}
    with pytest.raises(AuthenticationError, match=r"user 'alice' is disabled \(audit seq \d+\)"):
        alice.queue_status()
    with pytest.raises(AuthenticationError, match="hilt users enable alice"):
        open_store_as(workspace, Identity(name="alice"))
    with pytest.raises(InputError, match="disabled; enable them first"):
        op.add_user("alice", "reviewer")
    # Disabling again changes nothing and writes nothing.
    head = op.audit_head()
    op.disable_user("alice")
    assert op.audit_head() == head


def test_enabling_lets_them_act_again_with_new_tokens_only(workspace: Workspace) -> None:
    op = operator(workspace)
    old = op.add_user("alice", "reviewer").token
    op.disable_user("alice")
    info = op.enable_user("alice")
    assert (info.active, info.tokens) == (True, 0)
    assert [e.payload for e in audit(workspace, "user.enabled")] == [{"roles": ["reviewer"]}]
    open_store_as(workspace, Identity(name="alice")).queue_status()
    new = op.add_user("alice", "reviewer").token
    svc = start_service(workspace)
    try:
        with pytest.raises(AuthenticationError, match="was revoked"):
            open_store_as(svc.url, Identity(token=old)).whoami()
        assert open_store_as(svc.url, Identity(token=new)).whoami().name == "alice"
    finally:
        svc.stop()


def test_an_administrator_may_not_disable_themselves(workspace: Workspace) -> None:
    dana = open_store_as(workspace, Identity(name="dana"))
    with pytest.raises(InputError, match="may not disable yourself"):
        dana.disable_user("dana")
    with pytest.raises(PermissionDeniedError, match="may not disable users"):
        open_store_as(workspace, Identity(name="lena")).disable_user("alice")


# ---------------------------------------------------------------------- sync
def test_opening_the_store_never_changes_its_users(workspace: Workspace) -> None:
    before = users(workspace)
    listed = {"alice": ["reviewer"], "lena": ["lead"], "zoe": ["reviewer"]}
    set_config_users(workspace, listed)
    assert load_settings(workspace.config_path).access.users.keys() == listed.keys()
    open_store_as(workspace, Identity(name="alice")).queue_status()
    open_store_as(workspace, Identity(name="bob")).queue_status()  # still a user
    assert users(workspace) == before


def test_sync_creates_disables_and_changes_roles_in_one_audited_event(
    workspace: Workspace,
) -> None:
    op = operator(workspace)
    op.add_user("voila-gateway", "gateway")  # never listed in hilt.toml: left alone
    bob_token = op.add_user("bob", "reviewer").token
    listed = dict(load_settings(CONFIG).access.users)
    del listed["bob"]
    listed["lena"] = ["lead"]  # no longer a reviewer
    listed["zoe"] = ["reviewer"]
    set_config_users(workspace, {n: list(r) for n, r in listed.items()})
    head = op.audit_head()
    sync = operator(workspace).users_sync()
    assert sync.created == {"zoe": ["reviewer"]}
    assert sync.disabled == ["bob"]
    assert sync.roles_changed == {"lena": [["lead", "reviewer"], ["lead"]]}
    assert (sync.listed, sync.enabled) == ([], [])
    assert sync.seq == head.seq + 1 == operator(workspace).audit_head().seq
    (event,) = audit(workspace, "user.synced")
    assert event.payload == {
        "created": {"zoe": ["reviewer"]},
        "listed": [],
        "enabled": [],
        "disabled": ["bob"],
        "roles_changed": {"lena": [["lead", "reviewer"], ["lead"]]},
        "tokens_revoked": 1,
    }
    now = users(workspace)
    assert now["bob"] == (["reviewer"], False, False)
    assert now["zoe"] == (["reviewer"], True, True)
    assert now["lena"] == (["lead"], True, True)
    assert now["voila-gateway"] == (["gateway"], True, False)
    with pytest.raises(AuthenticationError, match="'bob' is disabled"):
        open_store_as(workspace, Identity(name="bob"))
    # Nothing left to change: nothing written.
    again = operator(workspace).users_sync()
    assert not again.changed and again.seq is None
    assert operator(workspace).audit_head().seq == sync.seq
    # Listed again: enabled again (with new tokens only).
    listed["bob"] = ["reviewer"]
    set_config_users(workspace, {n: list(r) for n, r in listed.items()})
    back = operator(workspace).users_sync()
    assert (back.listed, back.enabled) == (["bob"], ["bob"])
    open_store_as(workspace, Identity(name="bob")).queue_status()
    svc = start_service(workspace)
    try:
        with pytest.raises(AuthenticationError, match="was revoked"):
            open_store_as(svc.url, Identity(token=bob_token)).whoami()
    finally:
        svc.stop()


def test_sync_does_not_undo_an_explicit_disable(workspace: Workspace) -> None:
    op = operator(workspace)
    op.disable_user("alice")
    sync = operator(workspace).users_sync()
    assert not sync.changed
    assert users(workspace)["alice"][1] is False


def test_a_user_added_by_command_is_listed_once_hilt_toml_names_them(
    workspace: Workspace,
) -> None:
    op = operator(workspace)
    op.add_user("zoe", "reviewer")
    assert users(workspace)["zoe"] == (["reviewer"], True, False)
    listed: dict[str, list[str]] = {
        n: [str(x) for x in r] for n, r in load_settings(CONFIG).access.users.items()
    }
    set_config_users(workspace, {**listed, "zoe": ["reviewer", "auditor"]})
    sync = operator(workspace).users_sync()
    assert (sync.listed, sync.enabled, sync.created) == (["zoe"], [], {})
    assert sync.roles_changed == {"zoe": [["reviewer"], ["reviewer", "auditor"]]}
    assert users(workspace)["zoe"] == (["reviewer", "auditor"], True, True)


def test_only_an_admin_may_sync_or_list(workspace: Workspace) -> None:
    lena = open_store_as(workspace, Identity(name="lena"))
    with pytest.raises(PermissionDeniedError, match="may not sync users"):
        lena.users_sync()
    with pytest.raises(PermissionDeniedError, match="may not list users"):
        lena.list_users()
    listed = {u.name for u in open_store_as(workspace, Identity(name="otto")).list_users()}
    assert listed == set(load_settings(CONFIG).access.users)


# ---------------------------------------------------------------------- the gateway's rules
def access(**changes: object) -> Access:
    return load_settings(CONFIG).access.model_copy(update=changes)


SHA = hashlib.sha256(PROXY_SECRET.encode()).hexdigest()


def test_behind_a_proxy_the_gateway_needs_the_proxys_secret() -> None:
    proxied = access(proxy_secret_sha256=SHA, local_user=None)
    assert prove_gateway_request(proxied, "alice", PROXY_SECRET) is None
    with pytest.raises(AuthenticationError, match="no X-Hilt-Proxy-Secret header"):
        prove_gateway_request(proxied, "alice", None)
    with pytest.raises(AuthenticationError, match="does not match"):
        prove_gateway_request(proxied, "alice", PROXY_SECRET + "x")


def test_without_a_proxy_the_gateway_acts_only_as_the_local_user() -> None:
    single = access()
    assert single.local_user == "lena"
    assert prove_gateway_request(single, "lena", None) == SINGLE_PERSON
    with pytest.raises(PermissionDeniedError, match=r"only as access\.local_user 'lena', not"):
        prove_gateway_request(single, "max", None)
    with pytest.raises(AuthenticationError, match="configures no sign-in proxy"):
        prove_gateway_request(single, "lena", "a-secret")
    with pytest.raises(PermissionDeniedError, match="can act for nobody"):
        prove_gateway_request(access(local_user=None), "lena", None)


def test_a_demo_session_counts_only_in_single_person_mode_and_for_its_user() -> None:
    single = access()
    assert prove_gateway_request(single, "otto", None, session_user="otto") == DEMO_SIGN_IN
    with pytest.raises(PermissionDeniedError, match="issued for 'otto', not 'max'"):
        prove_gateway_request(single, "max", None, session_user="otto")
    require_single_person(single)
    behind = "no sign-in without a password here: hilt.toml configures a sign-in proxy"
    with pytest.raises(PermissionDeniedError, match=behind):
        require_single_person(access(proxy_secret_sha256=SHA, local_user=None))
    with pytest.raises(PermissionDeniedError, match="configures no single-person mode"):
        require_single_person(access(local_user=None))


def test_the_gateway_acts_with_dashboard_roles_only() -> None:
    both = dashboard_actor(User(name="kim", roles=["lead", "admin"]), None)
    assert both.roles == ["lead"]
    lena = dashboard_actor(User(name="lena", roles=["lead", "reviewer"]), SINGLE_PERSON)
    assert (lena.roles, lena.unproven) == (["lead", "reviewer"], SINGLE_PERSON)
    for roles in (["dpo"], ["admin"], ["data-scientist", "admin"], ["system"]):
        with pytest.raises(PermissionDeniedError, match="only for reviewers, leads and auditors"):
            dashboard_actor(User(name="x", roles=roles), None)


def test_a_proxy_and_a_local_user_do_not_go_together(tmp_path: Path) -> None:
    text = CONFIG.read_text(encoding="utf-8").replace(
        "[access]\n", f'[access]\nproxy_secret_sha256 = "{SHA}"\n'
    )
    path = tmp_path / "hilt.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="local_user is for single-person mode"):
        load_settings(path)
    path.write_text(behind_proxy(CONFIG.read_text(encoding="utf-8")), encoding="utf-8")
    assert load_settings(path).access.proxy_secret_sha256 == SHA


# ---------------------------------------------------------------------- single-person mode
def test_every_event_of_an_unproven_identity_says_so(loaded_workspace: Workspace) -> None:
    ws = loaded_workspace
    lena = open_store_as(ws, Identity(name="lena", single_person=True))
    assert lena.whoami().unproven == SINGLE_PERSON
    leased = lena.next_case()
    assert leased is not None
    lena.halt("checking the single-person mark")
    proven = open_store_as(ws, Identity(name="max"))
    assert proven.whoami().unproven is None
    proven.resume()
    by_lena = audit(ws, "case.leased") + audit(ws, "system.halted")
    assert [e.actor for e in by_lena] == ["lena", "lena"]
    assert all(e.payload[UNPROVEN_KEY] == SINGLE_PERSON for e in by_lena)
    (resumed,) = audit(ws, "system.resumed")
    assert UNPROVEN_KEY not in resumed.payload
    assert operator(ws).verify().ok


def clock_at(moment: datetime) -> Callable[[], datetime]:
    """A clock that always reads ``moment``."""
    return lambda: moment


def test_token_expiry_is_checked_on_every_use_of_a_cached_token(workspace: Workspace) -> None:
    """The service caches token → user; a cached token that expires meanwhile is refused.

    The token is issued (at the file, the clock set back) to expire ``window`` seconds from
    now: the service must start and cache it within that. On a busy machine a start can
    take longer; then the next attempt issues a new token with a longer window, and only
    the last one's failure fails the test."""
    days = workspace.settings().access.token_days
    for name, window in (("carol", 3), ("carla", 8), ("cathy", 20), ("cara", 60)):
        soon = datetime.now(UTC) - timedelta(days=days) + timedelta(seconds=window)
        op = open_store_as(workspace, Identity(operator=True), clock=clock_at(soon))
        token = op.add_user(name, "reviewer").token
        svc = start_service(workspace)
        try:
            try:
                user = open_store_as(svc.url, Identity(token=token))
                assert user.whoami().name == name  # cached from now on
            except AuthenticationError as e:
                if "expired at" in str(e) and window < 60:
                    continue  # expired before its first use: the service started too slowly
                raise
            wait = (soon + timedelta(days=days) - datetime.now(UTC)).total_seconds()
            time.sleep(max(0.0, wait) + 0.2)
            with pytest.raises(AuthenticationError, match="expired at"):
                user.whoami()
            return
        finally:
            svc.stop()


def test_unknown_users_are_told_apart(workspace: Workspace) -> None:
    with pytest.raises(UnknownUserError, match="unknown user 'mallory'"):
        open_store_as(workspace, Identity(name="mallory"))
