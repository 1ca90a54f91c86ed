"""The attack matrix: what a real insider could try, each row against a real store (the
workspace's file opened embedded, a real `hilt store serve` process, or a real `hilt serve`:
the store service and Voila), each refused with a clear error naming what is wrong, with
nothing written (the audit head and every table's count as they were, but for what the row
says the store records), and recorded where the row says.

What the rows cost is mostly starting servers. A row on a store service gets one of its own
only when what it does would change what a later row sees (users, tokens, leases, a config
change pending or in force: ``Attack.fresh_service``); the others share one service per module
(``shared_service``), and the dashboards rows one `hilt serve` per mode. Each row compares the
audit head and the counts before and after itself, and reads the service's log from where it
stood when the row began. The services and the `hilt` commands of the rows are real `hilt`
processes, forked from a process that has imported hilt once (tests/prewarmed.py).

Every part of issue 12 adds its rows in its own section below. The closing note quotes the
matrix as a table: attack → refused how → recorded where (``Attack.name``, ``.refused``,
``.recorded``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import papermill
import polars as pl
import pytest
from papermill.exceptions import PapermillExecutionError

from hilt.pipelines.dashboards.server import DashboardServer, start_dashboards
from hilt.pipelines.errors import (
    AuthenticationError,
    ConfigDrift,
    ConfigError,
    ConflictError,
    InputError,
    PermissionDeniedError,
    SystemHalted,
)
from hilt.pipelines.loop.promotion import promote, reject
from hilt.pipelines.loop.tracking.client import configure
from hilt.pipelines.loop.tracking.environment import registered_model_name
from hilt.pipelines.loop.tracking.pyfunc import DATA_DIR
from hilt.pipelines.loop.tracking.registry import aliases
from hilt.pipelines.loop.tracking.runs import list_runs
from hilt.pipelines.paths import NOTEBOOKS_DIR
from hilt.pipelines.store import DecisionRequest, Identity, Store, holding, open_store_as
from hilt.pipelines.store.audit.verify import verify_file
from hilt.pipelines.store.authentication import PROXY_SECRET_HEADER, SINGLE_PERSON, UNPROVEN_KEY
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.store.modes.client import StoreClient
from hilt.pipelines.workspace import Workspace
from tests.config_helpers import edit_config, override_without_comment
from tests.conftest import (
    CONFIG,
    PROXY_SECRET,
    RunningService,
    behind_proxy,
    free_port,
    operator,
    predictions_for,
    stand_in,
)
from tests.loop_helpers import (
    LABELLED,
    loop_workspace,
    new_cases_file,
    scheduler_environment,
    train_in_process,
)
from tests.prewarmed import PrewarmedService, prewarmed_service
from tests.prewarmed import run as prewarmed_hilt
from tests.registry_helpers import stand_in_evaluation
from tests.voila_pages import kernel_environment, kernel_pid, process_environ, render

MODES = ("embedded", "service")


@dataclass
class Target:
    """A victim workspace, open in one mode; insiders act through ``store(name)``.

    Modes: ``embedded`` (the file), ``service`` (`hilt store serve`), and two of `hilt
    serve` (the store service and Voila): ``dashboards`` behind a sign-in proxy (the
    workspace's hilt.toml holds the proxy secret's sha256; the tests play the proxy) and
    ``single-person`` (no proxy: the dashboards act as access.local_user, lena)."""

    ws: Workspace
    mode: str
    tokens: dict[str, str]
    log: Path
    service: RunningService | PrewarmedService | None = None
    dashboards: DashboardServer | None = None
    opened: list[Store] = field(default_factory=list)
    #: Where the service's log stood when the row began (a shared service's log holds the
    #: rows before it too).
    log_from: int = 0
    #: The servers are shared with other rows (stopped by their module fixture).
    shared: bool = False
    #: Seconds the row's own service took to start (what a restart may take again).
    started_s: float = 0.0
    #: The dashboards' gateway token once an insider read it from a kernel (see
    #: ``gateway_token``), shared by the rows of one `hilt serve`.
    gateway: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str | None:
        """The store service's URL (None: embedded)."""
        if self.dashboards is not None:
            return f"http://{self.dashboards.host}:{self.dashboards.store_port}"
        return self.service.url if self.service is not None else None

    def store(self, name: str, *, for_config: bool = False) -> Store:
        """The store as the user ``name``, opened through the one door."""
        if self.url is None:
            s = open_store_as(self.ws, Identity(name=name), for_config=for_config)
        else:
            s = open_store_as(self.url, Identity(token=self.tokens[name]), for_config=for_config)
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

    def log_text(self) -> str:
        """What the service logged since the row began."""
        with self.log.open("rb") as f:
            f.seek(self.log_from)
            return f.read().decode("utf-8")

    def close(self) -> None:
        for s in self.opened:
            s.close()
        if self.shared:
            return
        if self.service is not None:
            self.service.stop()
        if self.dashboards is not None:
            self.dashboards.stop()


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
    #: Through a store service, the row gets a service of its own: what it does (users,
    #: tokens, leases, a config change pending or in force) would change what a later row
    #: sees. Otherwise it shares the module's service (``shared_service``).
    fresh_service: bool = False


# ---------------------------------------------------------------------- the victims
USERS = (
    ("dana", "admin"),
    ("max", "lead"),
    ("lena", "lead"),
    ("lena", "admin"),
    ("alice", "reviewer"),
    ("bob", "reviewer"),
    ("otto", "auditor"),
    ("pia", "dpo"),
)
#: What an operator's shell may hold when they start `hilt serve`: the master key (as text
#: and as a file), an admin's token, the audit signing key. None may reach a dashboard kernel.
OPERATOR_SECRETS = (
    "HILT_MASTER_KEY",
    "HILT_MASTER_KEY_FILE",
    "HILT_TOKEN",
    "HILT_AUDIT_SIGNING_KEY",
)


@dataclass(frozen=True)
class Victim:
    """A victim workspace, with a token for each of ``USERS`` (issued by an admin at the
    file); rows act on copies of it (``_copy``), so the tokens hold in every copy."""

    ws: Workspace
    tokens: dict[str, str]


def _with_tokens(ws: Workspace) -> Victim:
    with operator(ws) as op, holding(ws):  # one connection for the loop
        return Victim(ws, {name: op.add_user(name, role).token for name, role in USERS})


def _copy(victim: Victim, root: Path) -> Victim:
    """A copy of the victim's workspace at ``root``: the row's own."""
    ws = Workspace.at(root)
    shutil.copytree(victim.ws.root, ws.root)
    return Victim(ws, victim.tokens)


def _victim(root: Path, cases: pl.DataFrame, proxy: bool) -> Victim:
    config = root / "hilt.toml"
    text = CONFIG.read_text(encoding="utf-8").replace(
        "comment_required = false", "comment_required = true"
    )
    config.write_text(behind_proxy(text) if proxy else text, encoding="utf-8")
    ws = Workspace.at(root / "ws")
    create_workspace(ws, config)
    with operator(ws) as op, holding(ws):  # one connection for the setup
        op.ingest_cases(cases.head(40))
        model = stand_in(ws)
        op.add_predictions(model.model, predictions_for(cases.head(40)), model.sha256)
        op.checkpoint()
    return _with_tokens(ws)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, cases_frame: pl.DataFrame) -> Victim:
    """A workspace whose reviewers must explain every override (review.comment_required),
    with 40 cases, a prediction each, a signed checkpoint and a token for each of
    ``USERS``; lena is lead and admin."""
    return _victim(tmp_path_factory.mktemp("victim"), cases_frame, proxy=False)


@pytest.fixture(scope="module")
def template_behind_proxy(
    tmp_path_factory: pytest.TempPathFactory, cases_frame: pl.DataFrame
) -> Victim:
    """The same, behind a sign-in proxy (``[access] proxy_secret_sha256``, no local user)."""
    return _victim(tmp_path_factory.mktemp("victim-proxied"), cases_frame, proxy=True)


def _service(ws: Workspace, log: Path) -> tuple[PrewarmedService, float]:
    """`hilt store serve` on ``ws`` (its log to ``log``), and the seconds it took to start."""
    started = time.monotonic()
    service = prewarmed_service(ws, log, free_port())
    return service, time.monotonic() - started


@pytest.fixture(scope="module")
def shared_service(tmp_path_factory: pytest.TempPathFactory, template: Victim) -> Iterator[Target]:
    """One store service for the rows that leave nothing a later row could see (not
    ``Attack.fresh_service``); a row that restarts it leaves its successor here."""
    folder = tmp_path_factory.mktemp("shared-service")
    copy = _copy(template, folder / "ws")
    shared = Target(copy.ws, "service", copy.tokens, folder / "service.log", shared=True)
    shared.service, shared.started_s = _service(copy.ws, shared.log)
    try:
        yield shared
    finally:
        shared.service.stop()


def _operator_shell(ws: Workspace, tokens: dict[str, str]) -> dict[str, str]:
    """What the operator's shell holds when they start `hilt serve`: the keys (the store
    service needs them) and an admin token; `hilt serve` must keep them from the kernels."""
    return {
        "HILT_MASTER_KEY": ws.master_key_path.read_text().strip(),
        "HILT_MASTER_KEY_FILE": str(ws.master_key_path),
        "HILT_AUDIT_SIGNING_KEY": str(ws.signing_key_path),
        "HILT_TOKEN": tokens["dana"],
    }


def _shared_dashboards(source: Victim, folder: Path, mode: str) -> Iterator[Target]:
    """One `hilt serve` (the store service and Voila) on a copy of ``source``, shared by
    the rows of ``mode``; started from the operator's shell (``_operator_shell``)."""
    copy = _copy(source, folder / "ws")
    shared = Target(copy.ws, mode, copy.tokens, folder / "service.log", shared=True)
    with pytest.MonkeyPatch.context() as shell:
        for name, value in _operator_shell(copy.ws, copy.tokens).items():
            shell.setenv(name, value)
        shared.dashboards = start_dashboards(copy.ws, port=free_port(), store_port=free_port())
    try:
        assert shared.dashboards.store_log is not None
        shared.log = shared.dashboards.store_log
        yield shared
    finally:
        shared.dashboards.stop()


@pytest.fixture(scope="module")
def dashboards_behind_proxy(
    tmp_path_factory: pytest.TempPathFactory, template_behind_proxy: Victim
) -> Iterator[Target]:
    """`hilt serve` behind the sign-in proxy, for every ``dashboards`` row."""
    yield from _shared_dashboards(
        template_behind_proxy, tmp_path_factory.mktemp("dashboards"), "dashboards"
    )


@pytest.fixture(scope="module")
def dashboards_single_person(
    tmp_path_factory: pytest.TempPathFactory, template: Victim
) -> Iterator[Target]:
    """A plain `hilt serve` (single-person mode), for every ``single-person`` row."""
    yield from _shared_dashboards(
        template, tmp_path_factory.mktemp("single-person"), "single-person"
    )


SHARED = {
    "dashboards": "dashboards_behind_proxy",
    "single-person": "dashboards_single_person",
    "service": "shared_service",
}


@pytest.fixture
def target(
    request: pytest.FixtureRequest,
    template: Victim,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Target]:
    attack, mode = request.param
    if mode in SHARED and not (mode == "service" and attack.fresh_service):
        shared: Target = request.getfixturevalue(SHARED[mode])
        t = Target(
            shared.ws,
            mode,
            shared.tokens,
            shared.log,
            service=shared.service,
            dashboards=shared.dashboards,
            log_from=shared.log.stat().st_size if shared.log.exists() else 0,
            shared=True,
            started_s=shared.started_s,
            gateway=shared.gateway,
        )
        if t.dashboards is not None:
            # The operator's shell, as when `hilt serve` started (the rows compare with it).
            for name, value in _operator_shell(t.ws, t.tokens).items():
                monkeypatch.setenv(name, value)
        try:
            yield t
            if mode == "service":  # it left the shared service as the next row expects it
                with t.store("dana") as admin:
                    status = admin.config_status()
                assert (status.in_force.version, status.pending, status.drift) == (1, None, False)
        finally:
            t.close()
            shared.service = t.service  # a row that restarted it leaves the new one
        return
    # The registry's victim (mode "loop") has MLflow: built only when a row needs it.
    source = request.getfixturevalue("loop_template") if mode == "loop" else template
    copy = _copy(source, tmp_path / "ws")
    t = Target(copy.ws, mode, copy.tokens, tmp_path / "service.log")
    if mode == "service":
        t.service, t.started_s = _service(copy.ws, t.log)
    try:
        yield t
    finally:
        t.close()


# ---- identity: dashboards, users and tokens
# Who acts is proven to the store, or marked as not proven. Behind a sign-in proxy the
# dashboards' gateway acts for the person the proxy names only with the proxy's secret,
# checked by the store service; without one (single-person mode) only as access.local_user,
# and every event says so. Through the gateway, only reviewers, leads and auditors, with
# those roles only. Tokens expire and can be revoked, users disabled or synced from
# hilt.toml, at once on a running service. Dashboard kernels hold no key or admin token.

PROXY_USER = "X-Forwarded-User"
WITH_SECRET = {PROXY_SECRET_HEADER: PROXY_SECRET}


def refusals_in_log(t: Target, what: str) -> int:
    """How often the service logged ``what`` since the row began."""
    return t.log_text().count(what)


def header_spoofing_without_the_proxy_secret(t: Target) -> Recorded:
    assert t.dashboards is not None
    # Voila reached directly, a lead named in the header the proxy would set.
    page = render(t.dashboards, "oversight", {PROXY_USER: "max"})
    assert "the sign-in proxy did not prove itself: no X-Hilt-Proxy-Secret header" in page.text
    assert "Oversight · max" not in page.text
    guessed = render(t.dashboards, "oversight", {PROXY_USER: "max", PROXY_SECRET_HEADER: "guess"})
    assert "X-Hilt-Proxy-Secret does not match hilt.toml [access] proxy_secret_sha256" in (
        guessed.text
    )
    proof = "refused the dashboards' gateway at the sign-in proxy's proof (unauthenticated)"
    assert refusals_in_log(t, proof) == 2
    # Through the proxy (its secret with the header) the same lead gets the dashboard.
    assert (
        "Oversight · max (lead)"
        in render(t.dashboards, "oversight", {PROXY_USER: "max", **WITH_SECRET}).text
    )
    return NOTHING


def no_local_user_behind_a_proxy(t: Target) -> Recorded:
    assert t.dashboards is not None
    page = render(t.dashboards, "review", {})
    assert "Who are you?" in page.text
    assert "Open it through your organisation's sign-in." in page.text
    # Nor does the store let the gateway act for the local user of old without the proof.
    gateway = gateway_token(t)
    with pytest.raises(AuthenticationError, match="the sign-in proxy did not prove itself"):
        open_store_as(t.url or "", Identity(token=gateway, on_behalf_of="lena")).whoami()
    # Nor a name picked on the demo's sign-in page: not served behind a proxy, and the store
    # refuses the gateway (held by an insider) the list, a sign-in, and a session.
    signin = httpx.get(t.dashboards.dashboard_url("signin"), headers=WITH_SECRET, timeout=60)
    assert signin.status_code == 404
    as_gateway = open_store_as(t.url or "", Identity(token=gateway))
    t.opened.append(as_gateway)
    behind = "no sign-in without a password here: hilt.toml configures a sign-in proxy"
    with pytest.raises(PermissionDeniedError, match=behind):
        as_gateway.sign_in_choices()
    with pytest.raises(PermissionDeniedError, match=behind):
        as_gateway.demo_sign_in("max")
    chosen = Identity(
        token=gateway, on_behalf_of="max", proxy_secret=PROXY_SECRET, session="hiltdemo_x"
    )
    with pytest.raises(PermissionDeniedError, match=behind):
        open_store_as(t.url or "", chosen).whoami()
    return NOTHING


def header_spoofing_in_single_person_mode(t: Target) -> Recorded:
    assert t.dashboards is not None
    page = render(t.dashboards, "oversight", {PROXY_USER: "max"})
    assert (
        "single-person mode (no sign-in proxy): the dashboards act only as access.local_user "
        "'lena', not as 'max'"
    ) in page.text
    refused = "refused the dashboards' gateway at the sign-in proxy's proof (forbidden)"
    assert refusals_in_log(t, refused) == 1
    # Nor with a session the store never issued, or one it issued for someone else.
    gateway = gateway_token(t)
    with pytest.raises(AuthenticationError, match=r"demo session \w+: this store never issued"):
        open_store_as(
            t.url or "", Identity(token=gateway, on_behalf_of="max", session="hiltdemo_guess")
        ).whoami()
    with open_store_as(t.url or "", Identity(token=gateway)) as as_gateway:
        alice = as_gateway.demo_sign_in("alice")
    with pytest.raises(PermissionDeniedError, match="issued for 'alice', not 'max'"):
        open_store_as(
            t.url or "", Identity(token=gateway, on_behalf_of="max", session=alice.session)
        ).whoami()
    return Recorded(("user.signed_in_unproven",))


def one_person_acting_as_the_local_lead(t: Target) -> Recorded:
    assert t.dashboards is not None
    seq = t.state()[0]
    page = render(t.dashboards, "review", {})
    assert "Review queue · lena (lead, reviewer)" in page.text
    assert "Identity not proven (single-person mode" in page.text
    (leased,) = t.store("otto").audit_events(after_seq=seq)
    assert (leased.action, leased.actor, leased.role) == ("case.leased", "lena", "lead")
    assert leased.payload[UNPROVEN_KEY] == SINGLE_PERSON
    return Recorded(("case.leased",), {"leases": 1})


def gateway_token(t: Target) -> str:
    """The gateway's token as an insider could read it from a dashboard kernel's process
    (read once per `hilt serve`: it holds until the next start)."""
    assert t.dashboards is not None
    if "token" not in t.gateway:
        page = render(t.dashboards, "audit", {PROXY_USER: "otto", **WITH_SECRET})
        environ = process_environ(kernel_pid(t.dashboards, page.kernel_id))
        t.gateway["token"] = environ["HILT_GATEWAY_TOKEN"]
    return t.gateway["token"]


def via_gateway(t: Target, token: str, name: str) -> Store:
    who = Identity(token=token, on_behalf_of=name, proxy_secret=PROXY_SECRET)
    s = open_store_as(t.url or "", who)
    t.opened.append(s)
    return s


def gateway_acting_as_a_dpo(t: Target) -> Recorded:
    expected = r"only for reviewers, leads and auditors; 'pia' \(roles: dpo\) is none of them"
    token = gateway_token(t)
    # Refused as the store opens (its first request) ...
    with pytest.raises(PermissionDeniedError, match=expected):
        via_gateway(t, token, "pia")
    # ... and at every request: a client that skips the door's first request.
    raw = StoreClient(t.url or "", token, on_behalf_of="pia", proxy_secret=PROXY_SECRET)
    t.opened.append(raw)
    with pytest.raises(PermissionDeniedError, match=expected):
        raw.subject_erase("A-000001")
    return NOTHING


def gateway_acting_as_an_admin(t: Target) -> Recorded:
    token = gateway_token(t)
    with pytest.raises(
        PermissionDeniedError, match=r"'dana' \(roles: data-scientist, admin\) is none of them"
    ):
        via_gateway(t, token, "dana")
    # A lead who is also an admin acts through the dashboards as a lead only.
    lena = via_gateway(t, token, "lena")
    assert lena.whoami().roles == ["lead", "reviewer"]
    with pytest.raises(
        PermissionDeniedError, match=r"'lena' \(roles: lead, reviewer\) may not add user"
    ):
        lena.add_user("mallory", "admin")
    return NOTHING


def dashboard_kernels_hold_no_key_or_admin_token(t: Target) -> Recorded:
    assert t.dashboards is not None
    page = render(t.dashboards, "review", {PROXY_USER: "alice", **WITH_SECRET})
    # What the kernel was started with (/proc) and what it holds now: a warm kernel is
    # given its request's environment after its start (pipelines/dashboards/kernels.py).
    launched = process_environ(kernel_pid(t.dashboards, page.kernel_id))
    kernel = kernel_environment(t.dashboards.voila.pid, page.kernel_id)
    voila = process_environ(t.dashboards.voila.pid)
    secrets = {os.environ[name] for name in OPERATOR_SECRETS}
    for env in (launched, kernel, voila):
        assert not set(OPERATOR_SECRETS) & set(env)
        assert not secrets & set(env.values())
    # What a kernel has: the gateway's own token (not an admin's), and who asked.
    assert kernel["HILT_GATEWAY_TOKEN"] == launched["HILT_GATEWAY_TOKEN"]
    assert kernel["HILT_GATEWAY_TOKEN"] != os.environ["HILT_TOKEN"]
    assert kernel["HTTP_X_FORWARDED_USER"] == "alice"
    assert "HTTP_X_FORWARDED_USER" not in voila
    # The page works without them: alice was given a case.
    assert "Review queue · alice (reviewer)" in page.text
    return Recorded(("case.leased",), {"leases": 1})


def revoked_token_on_a_running_service(t: Target) -> Recorded:
    alice = t.store("alice")
    alice.queue_status()  # the service knows her token now
    assert t.store("dana").revoke_tokens("alice") == 1
    with pytest.raises(AuthenticationError, match=r"token [0-9a-f]{16} was revoked \(audit seq"):
        alice.queue_status()
    assert refusals_in_log(t, "refused a token (id ") == 1
    return Recorded(("user.tokens_revoked",))


def expired_token_on_a_running_service(t: Target) -> Recorded:
    assert t.service is not None
    t.service.stop()  # the tokens are issued by an admin at the file, at past moments
    # The token must still be in force when the restarted service first sees it: give it
    # a window of a few service starts as this row's own start took (a fixed 8 s failed
    # under load in CI runs; a start takes longer then).
    window_s = max(3.0, 3 * t.started_s + 2)
    days = t.ws.settings().access.token_days
    issued_long_ago = datetime.now(UTC) - timedelta(days=days + 1)
    issued_then = datetime.now(UTC) - timedelta(days=days) + timedelta(seconds=window_s)
    old = open_store_as(t.ws, Identity(operator=True), clock=lambda: issued_long_ago)
    expired = old.add_user("carol", "reviewer").token
    soon = open_store_as(t.ws, Identity(operator=True), clock=lambda: issued_then)
    expiring = soon.add_user("carol", "reviewer").token
    t.service, _ = _service(t.ws, t.log)
    with pytest.raises(AuthenticationError, match=r"token [0-9a-f]{16} expired at "):
        open_store_as(t.service.url, Identity(token=expired)).whoami()
    carol = open_store_as(t.service.url, Identity(token=expiring))
    assert carol.whoami().name == "carol"  # in force, and cached by the service now
    expires = issued_then + timedelta(days=days)
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()))
    # From then on the service refuses her (asked until it does, within a deadline).
    deadline = time.monotonic() + 30
    while True:
        try:
            carol.queue_status()
        except AuthenticationError as refused:
            assert re.search(r"expired at .*ask an administrator", str(refused)), refused
            break
        assert time.monotonic() < deadline, "the token still acts 30 s after it expired"
        time.sleep(0.05)
    assert datetime.now(UTC) >= expires
    assert refusals_in_log(t, "expired at") == 2
    return Recorded(("user.token_issued", "user.token_issued"), {"users": 1, "api_tokens": 2})


def a_disabled_user_acts(t: Target) -> Recorded:
    alice = t.store("alice")
    alice.queue_status()  # opened (and, through a service, her token known) before
    t.store("dana").disable_user("alice")
    disabled = r"user 'alice' is disabled \(audit seq \d+\); an administrator can enable them"
    with pytest.raises(AuthenticationError, match=disabled):
        alice.queue_status()
    with pytest.raises(AuthenticationError, match=disabled):
        t.store("alice").whoami()
    return Recorded(("user.disabled",))


def a_user_removed_from_hilt_toml(t: Target) -> Recorded:
    alice = t.store("alice")
    text = t.ws.config_path.read_text(encoding="utf-8")
    assert text.count('alice = ["reviewer"]\n') == 1
    t.ws.config_path.write_text(text.replace('alice = ["reviewer"]\n', ""), encoding="utf-8")
    admin = t.store("dana", for_config=True)
    assert admin.config_apply().outcome == "applied"
    # Before the sync: editing hilt.toml, applying it, or opening the store changes no user.
    alice.queue_status()
    assert t.store("alice").whoami().name == "alice"
    sync = t.store("dana").users_sync()
    assert sync.disabled == ["alice"]
    # lena's admin role came from `users add`, not from hilt.toml: the sync takes it back.
    assert sync.roles_changed == {"lena": [["lead", "reviewer", "admin"], ["lead", "reviewer"]]}
    with pytest.raises(AuthenticationError, match=r"user 'alice' is disabled \(audit seq"):
        alice.queue_status()
    return Recorded(("config.applied", "user.synced"), {"config_versions": 1})


IDENTITY_ATTACKS = [
    Attack(
        "header spoofing: Voila reached directly with a forged X-Forwarded-User (a lead), "
        "without or with a guessed proxy secret",
        "the page is a refusal: the sign-in proxy did not prove itself (no X-Hilt-Proxy-Secret "
        "header / it does not match [access] proxy_secret_sha256), decided by the store service",
        "the store service's log (store-service.log in the workspace): one line per refusal",
        header_spoofing_without_the_proxy_secret,
        modes=("dashboards",),
    ),
    Attack(
        "no header behind the sign-in proxy: falling back to the local user, or to a name "
        "picked on the demo's sign-in page",
        "the page is a refusal (Who are you? open it through your organisation's sign-in); the "
        "gateway for the local user without the proxy's proof: AuthenticationError; the "
        "sign-in page is not served, and the store refuses the gateway its list, a sign-in and "
        "a session (PermissionDeniedError: hilt.toml configures a sign-in proxy)",
        "nowhere (the store is not asked / refused before acting)",
        no_local_user_behind_a_proxy,
        modes=("dashboards",),
    ),
    Attack(
        "header spoofing on a plain `hilt serve` (no proxy): another lead named in "
        "X-Forwarded-User, or with a forged demo session, or one issued for someone else",
        "the page is a refusal: single-person mode, the dashboards act only as "
        "access.local_user 'lena', not as 'max' (or the user picked on the sign-in page, with "
        "the session the store issued for that pick)",
        "the store service's log",
        header_spoofing_in_single_person_mode,
        modes=("single-person",),
    ),
    Attack(
        "one person at a plain `hilt serve` acting as the local lead",
        "not refused (single-person mode): every page shows 'Identity not proven'",
        "every event it writes carries identity_unproven (here case.leased)",
        one_person_acting_as_the_local_lead,
        modes=("single-person",),
    ),
    Attack(
        "the gateway token (read from a kernel) acting for a DPO, with the proxy's secret",
        "PermissionDeniedError: the dashboards act only for reviewers, leads and auditors; "
        "'pia' (roles: dpo) is none of them",
        "nowhere (refused before acting)",
        gateway_acting_as_a_dpo,
        modes=("dashboards",),
    ),
    Attack(
        "the gateway token acting for an admin; for a lead who is also an admin",
        "PermissionDeniedError: none of the dashboard roles; the lead+admin acts as lead and "
        "reviewer only: may not add user",
        "nowhere (refused before acting)",
        gateway_acting_as_an_admin,
        modes=("dashboards",),
    ),
    Attack(
        "looking for the master key or an admin token in a dashboard kernel's environment",
        "not there: HILT_MASTER_KEY, HILT_MASTER_KEY_FILE, HILT_TOKEN, HILT_AUDIT_SIGNING_KEY "
        "stripped from Voila and every kernel (/proc/<pid>/environ, and os.environ once a warm "
        "kernel is given its request's); only the gateway token",
        "not applicable (nothing to refuse); the page's lease as usual",
        dashboard_kernels_hold_no_key_or_admin_token,
        modes=("dashboards",),
    ),
    Attack(
        "a revoked token used on a running service (cached by it before)",
        "AuthenticationError: token <id> was revoked (audit seq N)",
        "user.tokens_revoked in the audit log; the refused use in the service's log",
        revoked_token_on_a_running_service,
        modes=("service",),
        fresh_service=True,
    ),
    Attack(
        "an expired token on a running service (long expired; expiring while cached)",
        "AuthenticationError: token <id> expired at <time> (tokens last [access] token_days)",
        "user.token_issued (with expires_at) in the audit log; the refused uses in the "
        "service's log",
        expired_token_on_a_running_service,
        modes=("service",),
        fresh_service=True,
    ),
    Attack(
        "a disabled user acting (a store or token opened before)",
        "AuthenticationError: user 'alice' is disabled (audit seq N)",
        "user.disabled (tokens revoked) in the audit log",
        a_disabled_user_acts,
        fresh_service=True,
    ),
    Attack(
        "a user removed from hilt.toml, before and after `hilt users sync`",
        "before: still a user (editing the file changes nobody); after: AuthenticationError, "
        "disabled (audit seq N)",
        "user.synced (created, disabled, roles changed, tokens revoked) in the audit log",
        a_user_removed_from_hilt_toml,
        fresh_service=True,
    ),
]


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
        log = t.log_text()
        assert "refusing every operation but the config ones" in log and "gate.floor" in log
    edit_config(t.ws, "floor = 0.5 ", "floor = 0.65 ")
    return NOTHING


def a_service_restarted_on_an_edited_hilt_toml(t: Target) -> Recorded:
    assert t.service is not None
    t.service.stop()
    edit_config(t.ws, "blind_first = false", "blind_first = true")
    port = free_port()
    started = prewarmed_hilt(
        "store", "serve", "--workspace", t.ws.root, "--port", str(port),
        folder=t.log.parent / "refused-start", timeout_s=60,
    )  # fmt: skip
    assert started.returncode == 2, started.stderr
    assert "Traceback" not in started.stderr
    assert "changed since the config in force (version 1" in started.stderr
    assert "in review.blind_first; nothing runs until an admin" in started.stderr
    assert not t.ws.service_file.exists()
    edit_config(t.ws, "blind_first = true", "blind_first = false")
    t.service, _ = _service(t.ws, t.log)
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
        fresh_service=True,
    ),
    Attack(
        "an admin shows reviewers a personal column (fields.display_personal grows)",
        "pending, not in force: reviewers still see no age",
        "config.proposed",
        personal_columns_shown_without_a_second_approval,
        fresh_service=True,
    ),
    Attack(
        "an admin (also a lead) approves their own loosening of the gate",
        "PermissionDeniedError: they applied it, a second person must approve; a second "
        "lead's approval puts it in force",
        "config.proposed, then config.approved by the second lead",
        an_admin_approves_their_own_loosening,
        fresh_service=True,
    ),
    Attack(
        "the pinned audit public key swapped in hilt.toml",
        "ConfigDrift while unapplied (verify keeps the key in force); applied by an admin, "
        "pending a lead's approval",
        "config.proposed (the old and the new public key)",
        the_pinned_audit_key_swapped,
        fresh_service=True,
    ),
    Attack(
        "a key the store was built on changed (the holdout fraction)",
        "ConfigError: training.holdout_fraction cannot change; a new workspace is needed",
        "nowhere (nothing was written)",
        a_key_the_store_was_built_on_changed,
    ),
]


# ---- registry: scoring and promotion through the loop
# The store's model registry decides which model scores and who approves it; MLflow only
# mirrors it. The victim (mode "loop": embedded, with a real MLflow store): a champion v1
# (trained by dana, approved by lena), v2 rejected by lena, v3 a challenger nobody approved,
# trained by max (a lead who also trains models). The insiders use the real `hilt` commands,
# MLflow's files and the scoring notebook itself. Besides the audit head and the counts,
# each row checks that the store's registry, MLflow's aliases, MLflow's runs and runs/ are
# as they were (but for what the row says).

V1, V2, V3 = (f"hilt-german-credit/v{n}" for n in (1, 2, 3))


@pytest.fixture(scope="module")
def loop_template(tmp_path_factory: pytest.TempPathFactory) -> Victim:
    """The registry's victim, built once; each row acts on a copy (its MLflow store is
    copied too; the model files stay where MLflow logged them, here)."""
    ws = loop_workspace(tmp_path_factory.mktemp("registry-victim"))
    operator(ws).add_user("max", "data-scientist")  # max: a lead who also trains models
    v1 = train_in_process(ws, "dana")
    promote(ws, v1.run_id, "lena")
    v2 = train_in_process(ws, "dana", seed=1)
    reject(ws, v2.run_id, "lena", "The age gap grew.")
    v3 = train_in_process(ws, "max", seed=2)
    assert (v1.model, v2.model, v3.model) == (V1, V2, V3)
    assert {m.model: m.state for m in operator(ws).models()} == {
        V1: "champion",
        V2: "rejected",
        V3: "challenger",
    }
    return _with_tokens(ws)


@contextmanager
def registry_kept(t: Target, *, mlflow_runs: int = 0, notebooks: int = 0) -> Iterator[None]:
    """The store's registry and MLflow's aliases are as they were afterwards; MLflow holds
    ``mlflow_runs`` more runs and runs/ ``notebooks`` more executed notebooks."""

    def look() -> tuple[dict[str, str], dict[str, str], int, int]:
        settings = t.ws.settings()
        configure(t.ws, settings=settings)
        registry = {m.model: str(m.state) for m in t.store("otto").models()}
        runs = len(list_runs(settings, max_results=1000))
        return registry, aliases(settings), runs, len(list(t.ws.runs_dir.glob("*.ipynb")))

    registry, held, runs, executed = look()
    assert (registry, held) == (
        {V1: "champion", V2: "rejected", V3: "challenger"},
        {"champion": "1", "challenger": "3"},
    )
    yield
    assert look() == (registry, held, runs + mlflow_runs, executed + notebooks)


def payloads(t: Target, seq: int) -> list[tuple[str, str, dict[str, object]]]:
    """The events after ``seq``: (action, object, payload)."""
    return [(e.action, e.object_id, e.payload) for e in t.store("otto").audit_events(seq)]


def run_of(t: Target, model: str) -> str:
    """The training run that registered ``model`` (as the store's registry names it)."""
    return next(m.run_id for m in t.store("otto").models() if m.model == model)


def new_cases(t: Target) -> Path:
    """Five new applications in a file outside the workspace, as a scheduler drops them."""
    return new_cases_file(t.log.parent / "new.csv", LABELLED, 5)


def hilt(t: Target, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """`hilt ARGS` as a scheduler runs it (``scheduler_environment``), in a process of its
    own (tests/prewarmed.py); its output files kept next to the row's workspace."""
    return prewarmed_hilt(*args, folder=t.log.parent / "hilt", env=scheduler_environment())


def one_line_exit_2(r: subprocess.CompletedProcess[str], message: str) -> None:
    """`hilt` refused: exit 2, exactly one line on stderr, ``message`` in it, no trace."""
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert message in r.stderr, r.stderr


def scoring_refused(model: str | None, state: str) -> tuple[str, str, dict[str, object]]:
    payload: dict[str, object] = {"kind": "score", "reason": "model", "model": model}
    return ("run.refused", "", {**payload, "state": state})


def assert_events(t: Target, seq: int, *expected: tuple[str, str, dict[str, object]]) -> None:
    """The events after ``seq`` are ``expected``: action, object (if given), payload items."""
    found = payloads(t, seq)
    assert [e[0] for e in found] == [e[0] for e in expected]
    for (action, obj, payload), (_, want_obj, want) in zip(found, expected, strict=True):
        assert not want_obj or obj == want_obj, action
        assert {k: payload.get(k) for k in want} == want, action


def score_with_a_rejected_version(t: Target) -> Recorded:
    seq = t.state()[0]
    with registry_kept(t):
        r = hilt(
            t, "score", new_cases(t), "--workspace", t.ws.root, "--as", "dana",
            "--model-version", "2",
        )  # fmt: skip
    one_line_exit_2(
        r,
        f"scoring refused: {V2} is rejected: only the champion ({V1}) scores into the review "
        "queue, or a version a lead allowed for shadow scoring; nothing was ingested or scored",
    )
    assert_events(t, seq, scoring_refused(V2, "rejected"))
    return Recorded(("run.refused",))


def score_with_a_never_promoted_version(t: Target) -> Recorded:
    seq = t.state()[0]
    never = "hilt-german-credit/v9"
    with registry_kept(t):
        for version in ("3", "9"):
            r = hilt(
                t, "score", new_cases(t), "--workspace", t.ws.root, "--as", "dana",
                "--model-version", version,
            )  # fmt: skip
            if version == "3":
                one_line_exit_2(r, f"{V3} is challenger: only the champion ({V1}) scores")
            else:
                one_line_exit_2(r, f"{never} is not a model registered in this store")
    assert_events(t, seq, scoring_refused(V3, "challenger"), scoring_refused(never, "unregistered"))
    return Recorded(("run.refused", "run.refused"))


def model_files(ws: Workspace, version: str) -> Path:
    """Where MLflow keeps a registered version's model files (model.ubj and its sidecar)."""
    from mlflow import MlflowClient

    configure(ws, settings=ws.settings())
    client = MlflowClient()
    name = registered_model_name(ws.settings())
    model_id = str(client.get_model_version(name, version).source).removeprefix("models:/")
    location = client.get_logged_model(model_id).artifact_location.removeprefix("file://")
    path = Path(location) / "data" / DATA_DIR
    assert (path / "model.ubj").is_file(), path
    return path


@contextmanager
def tampered_champion(t: Target) -> Iterator[None]:
    """The champion's model files in MLflow's artifact store replaced by another real model
    (v2's booster and sidecar: they agree with each other, so it loads); put back after."""
    champion, other = model_files(t.ws, "1"), model_files(t.ws, "2")
    backup = t.log.parent / "champion-files"
    shutil.copytree(champion, backup)
    for f in ("model.ubj", "model.json"):
        shutil.copyfile(other / f, champion / f)
    try:
        yield
    finally:
        for f in ("model.ubj", "model.json"):
            shutil.copyfile(backup / f, champion / f)


def score_with_a_tampered_model_file(t: Target) -> Recorded:
    seq = t.state()[0]
    with tampered_champion(t), registry_kept(t):
        r = hilt(t, "score", new_cases(t), "--workspace", t.ws.root, "--as", "dana")
    one_line_exit_2(
        r,
        f"scoring refused: the model MLflow holds as {V1} is not the one the store registered "
        "(its sha256 differs): a tampered or another model; nothing was ingested or scored",
    )
    assert_events(t, seq, scoring_refused(V1, "sha256-mismatch"))
    return Recorded(("run.refused",))


def score_with_a_tampered_model_bypassing_hilt_score(t: Target) -> Recorded:
    """The scoring notebook run by hand (papermill), so hilt score's own check is skipped:
    the store itself refuses the predictions, whose model's sha256 is not the registered
    one, and records the refusal."""
    seq = t.state()[0]
    with (
        tampered_champion(t),
        registry_kept(t, mlflow_runs=1),
        pytest.raises(PapermillExecutionError) as caught,
    ):
        papermill.execute_notebook(
            str(NOTEBOOKS_DIR / "score.ipynb"),
            str(t.log.parent / "by-hand.ipynb"),
            parameters={
                "workspace": str(t.ws.root),
                "input_path": str(new_cases(t)),
                "author": "dana",
            },
            kernel_name="python3",
            progress_bar=False,
        )
    assert caught.value.ename == "PermissionDeniedError"
    assert (
        f"predictions refused, nothing was written: the model presented as {V1} is not the one "
        "registered (its sha256 differs): a tampered or another model"
    ) in caught.value.evalue
    assert_events(
        t,
        seq,
        ("cases.ingest", "", {"rows": 5}),
        ("model.use_refused", V1, {"reason": "sha256-mismatch", "rows": 5}),
    )
    return Recorded(
        ("cases.ingest", "model.use_refused"),
        {"cases": 5, "identity": 5, "case_features": 5, "case_personal": 5},
    )


def promote_own_run(t: Target) -> Recorded:
    run = run_of(t, V3)
    with registry_kept(t):
        r = hilt(t, "promote", run, "--as", "max", "--workspace", t.ws.root)
        one_line_exit_2(
            r, f"run {run}: 'max' trained {V3}; a lead who did not train it must approve it"
        )
        # Nor through the store directly, nor may the author reject it.
        with pytest.raises(PermissionDeniedError, match=f"'max' trained {V3}"):
            t.store("max").promote_model(V3)
        r = hilt(t, "reject", run, "--as", "max", "--reason", "x", "--workspace", t.ws.root)
        one_line_exit_2(r, f"'max' trained {V3}; a lead who did not train it must reject it")
    return NOTHING


def approve_as_a_non_lead(t: Target) -> Recorded:
    run = run_of(t, V3)
    with registry_kept(t):
        for who, roles in (("alice", "reviewer"), ("dana", "data-scientist, admin")):
            r = hilt(t, "promote", run, "--as", who, "--workspace", t.ws.root)
            one_line_exit_2(r, f"user '{who}' (roles: {roles}) may not decide on models")
        with pytest.raises(PermissionDeniedError, match="may not decide on models"):
            t.store("otto").promote_model(V3)
    return NOTHING


REGISTRY_ATTACKS = [
    Attack(
        "score with a version a lead rejected (`hilt score --model-version 2`)",
        "exit 2 before anything runs: scoring refused: …/v2 is rejected: only the champion "
        "(…/v1) scores into the review queue (the store's registry); the store refuses such "
        "predictions itself too (PermissionDeniedError)",
        "run.refused (kind score, model, state rejected) in the audit log; no MLflow run, no "
        "notebook, nothing ingested",
        score_with_a_rejected_version,
        modes=("loop",),
    ),
    Attack(
        "score with a version never promoted (a challenger) or never registered",
        "exit 2 before anything runs: …/v3 is challenger: only the champion scores …; …/v9 is "
        "not a model registered in this store",
        "run.refused (state challenger / unregistered) in the audit log; nothing else",
        score_with_a_never_promoted_version,
        modes=("loop",),
    ),
    Attack(
        "score with the champion's model file in MLflow replaced by another model",
        "exit 2 before anything runs: the model MLflow holds as …/v1 is not the one the store "
        "registered (its sha256 differs)",
        "run.refused (state sha256-mismatch) in the audit log; nothing else",
        score_with_a_tampered_model_file,
        modes=("loop",),
    ),
    Attack(
        "the same tampered model, the scoring notebook run by hand (skipping hilt score's check)",
        "the store refuses the predictions: PermissionDeniedError, predictions refused, "
        "nothing was written: the model presented as …/v1 is not the one registered (its "
        "sha256 differs)",
        "model.use_refused (reason sha256-mismatch, rows) in the audit log; the notebook had "
        "ingested the new cases first (cases.ingest): they wait without a prediction",
        score_with_a_tampered_model_bypassing_hilt_score,
        modes=("loop",),
    ),
    Attack(
        "a lead promotes (or rejects) the model they trained (`hilt promote RUN --as max`)",
        "exit 2: run …: 'max' trained …/v3; a lead who did not train it must approve it (the "
        "store's four eyes, PermissionDeniedError through the API too)",
        "nowhere: nothing changed (the store's registry and MLflow's aliases as they were)",
        promote_own_run,
        modes=("loop",),
    ),
    Attack(
        "approve a challenger as a reviewer, a data scientist/admin or an auditor",
        "exit 2: user 'alice' (roles: reviewer) may not decide on models (the store's "
        "permission, PermissionDeniedError through the API too)",
        "nowhere: nothing changed",
        approve_as_a_non_lead,
        modes=("loop",),
    ),
]


# ---- the store decides: events only its operations write, what a reviewer sees, leases
# Every event that carries authority is written by the store's own operation, in the
# transaction of its change: a client may report only a run's progress (``run.*``), and an
# attempt to report anything else is refused and itself recorded. A reviewer never sees a
# seed label (the answers of the gold cases) nor another reviewer's judgement on a case
# still open, by any door; a decision needs the reviewer's own live lease.

FORGED: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("model.promoted", "model", "test-model/v9", {"approver": "max", "author": "dana"}),
    ("retention.applied", "retention", "run", {"audit": {"purged_through": 30, "days": 183}}),
    ("subject.erased", "subject", "x", {"batches": {"2": {"rows": 0, "digest": "0" * 64}}}),
    ("decision.record", "case", "APP-000001", {"action": "override", "final_label": "1"}),
)


def forging_events_that_carry_authority(t: Target) -> Recorded:
    """Leads and an admin report events only the store's operations write."""
    for who, (action, kind, obj, payload) in zip(
        ("max", "dana", "dana", "lena"), FORGED, strict=True
    ):
        with pytest.raises(
            PermissionDeniedError, match=f"{action} is written only by the store's own operation"
        ):
            t.store(who).record_event(action, kind, obj, payload)
    return Recorded(("audit.event_refused",) * len(FORGED))


def a_run_event_naming_a_file_outside_runs(t: Target) -> Recorded:
    """A run's notebook is what an auditor opens from the log: never a path elsewhere."""
    for name in ("../store.duckdb", "/etc/passwd", "runs/../../hilt.toml"):
        with pytest.raises(
            InputError, match=r"payload\.notebook must be the file name of a notebook in runs/"
        ):
            t.store("dana").record_event("run.finished", "run", "r1", {"notebook": name})
    return NOTHING


def a_reviewer_reads_the_gold_answers(t: Target) -> Recorded:
    """Every victim case has a seed label (the gold cases' answers are seed labels): a
    reviewer reads none, through get_case or a lease; an auditor reads them all."""
    alice = t.store("alice")
    for case_id in ("APP-000001", "APP-000002"):
        assert alice.get_case(case_id).seed_label is None
        assert t.store("otto").get_case(case_id).seed_label in ("0", "1")
    with pytest.raises(PermissionDeniedError, match="may not case frame"):
        alice.case_frame(["APP-000001"])
    leased = alice.next_case()
    assert leased is not None and leased.case.seed_label is None
    return Recorded(("case.leased",), {"leases": 1})


def a_reviewer_reads_another_reviewers_open_judgement(t: Target) -> Recorded:
    """alice flags a case (it waits for another reviewer's opinion); bob reads the case by
    id and then leases it: he sees no judgement of hers, while a lead does."""
    alice, bob = t.store("alice"), t.store("bob")
    leased = alice.next_case()
    assert leased is not None
    case_id = leased.case.case_id
    alice.record_decision(DecisionRequest(case_id=case_id, action="flag"))
    assert bob.get_case(case_id).decisions == []
    again = bob.next_case()
    assert again is not None and again.case.case_id == case_id
    assert again.case.decisions == []
    assert [d.reviewer for d in t.store("max").get_case(case_id).decisions] == ["alice"]
    return Recorded(
        ("case.leased", "decision.record", "case.leased"), {"decisions": 1, "leases": 1}
    )


def a_decision_without_the_reviewers_lease(t: Target) -> Recorded:
    """alice decides a case nobody leased, then one bob holds."""
    alice, bob = t.store("alice"), t.store("bob")
    with pytest.raises(ConflictError, match="a decision needs your live lease on the case"):
        alice.record_decision(DecisionRequest(case_id="APP-000003", action="accept"))
    held = bob.next_case()
    assert held is not None
    with pytest.raises(ConflictError, match="another reviewer holds this case's lease"):
        alice.record_decision(DecisionRequest(case_id=held.case.case_id, action="accept"))
    return Recorded(("case.leased",), {"leases": 1})


AUTHORITY_ATTACKS = [
    Attack(
        "report an event that carries authority (a promotion, a retention purge, an erasure, "
        "a decision) through record_event, as a lead or an admin",
        "PermissionDeniedError: <action> is written only by the store's own operation, in the "
        "transaction of its change; a client reports only run.*",
        "audit.event_refused (the action named, none of the caller's payload) in the audit log",
        forging_events_that_carry_authority,
    ),
    Attack(
        "a run event whose notebook is a path outside runs/ (../store.duckdb, /etc/passwd)",
        "InputError: payload.notebook must be the file name of a notebook in runs/ (and verify "
        "names such an event forged into the file: notebook-path)",
        "nowhere (nothing was written)",
        a_run_event_naming_a_file_outside_runs,
    ),
    Attack(
        "a reviewer reads the seed labels (the gold cases' answers) by case id, as a frame, "
        "in a lease",
        "the store leaves seed_label out for anyone not a lead, auditor, admin, DPO or data "
        "scientist; the case frame: PermissionDeniedError",
        "nowhere but the lease the reviewer took (case.leased)",
        a_reviewer_reads_the_gold_answers,
        fresh_service=True,
    ),
    Attack(
        "a second reviewer reads the first one's judgement on a case still open (by id, in "
        "the lease)",
        "the store shows a reviewer only their own decisions on an open case",
        "nowhere but the flag and the two leases, as any review",
        a_reviewer_reads_another_reviewers_open_judgement,
        fresh_service=True,
    ),
    Attack(
        "a decision without the reviewer's own live lease (none taken; another reviewer's)",
        "ConflictError: a decision needs your live lease on the case: take it from the queue",
        "nowhere but the other reviewer's lease (case.leased)",
        a_decision_without_the_reviewers_lease,
        fresh_service=True,
    ),
]


# ---- incidents (issue 14): the register of serious incidents and personal-data breaches
# The store computes each deadline (kind + known-at, never in the future), decides who closes
# (a serious incident: a lead who did not open it) and alone opens incidents from what it
# finds itself (its own verify, with nothing the caller chooses; the auditor only reads).


def closing_a_serious_incident_without_four_eyes(t: Target) -> Recorded:
    """lena (lead) opens a serious incident; she, an admin who is no lead, a reviewer and
    the auditor try to close it; a reviewer and the auditor try to open one."""
    opened = t.store("lena").open_incident("serious_incident", "Wrong scores for a branch.")
    for who, match in (
        ("lena", "the person who opened a serious incident cannot close it"),
        ("dana", r"a serious incident .* is closed by a lead"),
        ("alice", "may not open, update or close incidents"),
        ("otto", "may not open, update or close incidents"),
    ):
        with pytest.raises(PermissionDeniedError, match=match):
            t.store(who).close_incident(opened.incident_id, "It is over.")
    for who in ("alice", "otto"):
        with pytest.raises(PermissionDeniedError, match="may not open, update or close"):
            t.store(who).open_incident("malfunction", "x")
    return Recorded(("incident.opened",), {"incidents": 1})


def forging_an_incident_or_its_clock(t: Target) -> Recorded:
    """A lead reports incident events (a fake "verify" incident, a closing), dates one in the
    future (a later deadline); the auditor asks the store to verify and record; the store's
    own verify of an intact log records nothing."""
    for action in ("incident.opened", "incident.closed"):
        with pytest.raises(
            PermissionDeniedError, match=f"{action} is written only by the store's own operation"
        ):
            t.store("max").record_event(
                action, "incident", "INC-1", {"source": "verify", "serious": False}
            )
    with pytest.raises(InputError, match=r"known_at .* is in the future"):
        t.store("max").open_incident("personal_data_breach", "x", "2999-01-01T00:00Z")
    with pytest.raises(PermissionDeniedError, match="may not verify the audit log and record"):
        t.store("otto").verify_and_record()
    assert t.store("dana").verify_and_record().incident_id is None
    return Recorded(("audit.event_refused",) * 2)


INCIDENT_ATTACKS = [
    Attack(
        "a lead closes the serious incident they opened; an admin who is no lead, a reviewer "
        "or the auditor closes one; a reviewer or the auditor opens one",
        "PermissionDeniedError: four eyes (a second lead closes a serious incident); the "
        "others may not handle incidents",
        "nowhere but the incident the lead opened (incident.opened)",
        closing_a_serious_incident_without_four_eyes,
    ),
    Attack(
        "incident events reported by a client (a fake verify incident, a closing), an "
        "incident dated in the future, the auditor's verify asked to record",
        "PermissionDeniedError (written only by the store's own operation; the auditor "
        "writes nothing); InputError: known_at is in the future",
        "the refused reports (audit.event_refused)",
        forging_an_incident_or_its_clock,
    ),
]


# ---- session 29: what a client, the file or a payload still decided (issue 13's attack)
# The halt stops retraining in the store, not in the notebook's cell; an erased subject's
# case takes no new prediction; a request id replays only its own reviewer's decision. (The
# file-level attacks found then are rows of tests/pipelines/store/test_audit_tamper.py.)


def registering_a_model_while_halted(t: Target) -> Recorded:
    """The retrain notebook with its halt cell removed (or a data scientist's own code)
    registers its model through the store while a lead's halt holds."""
    dana = t.store("dana")
    evaluation = stand_in_evaluation(dana)  # the run's snapshot, taken before the halt
    t.store("lena").halt("Complaints about young applicants")
    with pytest.raises(SystemHalted, match="registering the model refused: the system is halted"):
        dana.register_model("test-model/v2", "ab" * 32, "run-of-test-model/v2", evaluation)
    return Recorded(("snapshot.created", "system.halted"), {"snapshots": 1})


def a_prediction_for_an_erased_subjects_case(t: Target) -> Recorded:
    """After an erasure, a scorer that kept the subject's features sends the champion's
    prediction for the erased case (with the explanation of its features)."""
    seq, _, before = t.state()
    case_id = "APP-000007"
    t.store("pia").subject_erase("SYN-SUBJ-000007")
    erased_at, _, erased = t.state()
    erasure = t.events_after(seq)
    frame = predictions_for(pl.DataFrame({"application_id": [case_id]}))
    model = t.store("dana").models()[0]
    with pytest.raises(ConflictError, match="rows name cases whose data was removed"):
        t.store("dana").add_predictions(model.model, frame, model.model_sha256)
    assert t.state()[0] == erased_at
    rows = {k: erased[k] - before[k] for k in before if k != "audit_log"}  # (its events)
    return Recorded(tuple(erasure), rows)


def replaying_another_reviewers_request_id(t: Target) -> Recorded:
    """alice flags a case (another reviewer decides it, blind to her judgement); bob sends
    her request id with the case, to be handed her decision as his retry."""
    alice, bob = t.store("alice"), t.store("bob")
    leased = alice.next_case()
    assert leased is not None
    case_id = leased.case.case_id
    alice.record_decision(
        DecisionRequest(case_id=case_id, action="flag", comment="Ask the bank.", request_id="a-1")
    )
    replay = DecisionRequest(case_id=case_id, action="accept", request_id="a-1")
    for attempt in (bob.record_decision, bob.decide_and_next):
        with pytest.raises(ConflictError, match="request_id was already used by another reviewer"):
            attempt(replay)
    return Recorded(("case.leased", "decision.record"), {"decisions": 1})


SESSION_29_ATTACKS = [
    Attack(
        "register a model while a lead's halt holds (the retrain notebook's halt cell "
        "removed, or one's own code)",
        "SystemHalted: registering the model refused: the system is halted (by <lead>, audit "
        "seq N), decided by the store in the registration's transaction",
        "nowhere but the run's snapshot and the halt",
        registering_a_model_while_halted,
        fresh_service=True,
    ),
    Attack(
        "a prediction for an erased subject's case (a scorer that kept the features)",
        "ConflictError: predictions rejected, nothing was written: 1 rows name cases whose "
        "data was removed",
        "nowhere but the erasure itself (subject.erased)",
        a_prediction_for_an_erased_subjects_case,
        fresh_service=True,
    ),
    Attack(
        "a reviewer replays another reviewer's request id on a case still open "
        "(record_decision, decide-next)",
        "ConflictError: request_id was already used by another reviewer (her flag and comment "
        "are not handed over, no lease taken)",
        "nowhere but the first reviewer's lease and flag",
        replaying_another_reviewers_request_id,
        fresh_service=True,
    ),
]


# ---------------------------------------------------------------------- the matrix
ATTACKS = [
    *CONFIG_ATTACKS,
    *IDENTITY_ATTACKS,
    *REGISTRY_ATTACKS,
    *AUTHORITY_ATTACKS,
    *INCIDENT_ATTACKS,
    *SESSION_29_ATTACKS,
]
ROWS = [(a, m) for a in ATTACKS for m in a.modes]


@pytest.mark.obligation("AI Act 15", "GDPR 32")
@pytest.mark.parametrize(
    ("attack", "target"),
    [(a, (a, m)) for a, m in ROWS],
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


def test_the_rows_name_what_is_refused_and_where_it_is_recorded() -> None:
    for attack in ATTACKS:
        assert attack.name and attack.refused and attack.recorded, attack
        assert re.fullmatch(r"[a-z_]+", attack.run.__name__)
