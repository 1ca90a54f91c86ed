"""Who the reviewer dashboard thinks is looking: the identity chain of the review backend
(``X-Forwarded-User`` as Voila passes it, then ``JUPYTERHUB_USER``, then
``access.local_user``) and the refusals, on a real workspace (embedded) and through a real
store service with a gateway token (as `hilt serve` runs the dashboards)."""

from __future__ import annotations

import subprocess
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

from hilt.pipelines.config import Settings, load_settings
from hilt.pipelines.dashboards.access import demo_choice, identity_mode, resolve_identity
from hilt.pipelines.dashboards.review import StoreReviewBackend, open_review_backend
from hilt.pipelines.paths import NOTEBOOKS_DIR
from hilt.pipelines.store.authentication import SINGLE_PERSON
from hilt.pipelines.store.case_records import QueueStatus as StoreQueueStatus
from hilt.pipelines.store.create import create_workspace
from hilt.pipelines.workspace import Workspace
from hilt.widgets.contracts.common import Refusal
from hilt.widgets.contracts.review import DecisionInput, QueueStatus, ReviewBackend
from tests.conftest import (
    CONFIG,
    PROXY_ENV,
    RunningService,
    operator,
    proxied_config,
    start_service,
)

#: The environment names are the contract with Voila (http_header_envs) and JupyterHub.
HEADER = "HTTP_X_FORWARDED_USER"
HUB = "JUPYTERHUB_USER"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(CONFIG)


def without_local_user(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"access": settings.access.model_copy(update={"local_user": None})}
    )


def a_reviewer(settings: Settings) -> str:
    return next(n for n, r in settings.access.users.items() if r == ["reviewer"])


def another_reviewer(settings: Settings) -> str:
    first = a_reviewer(settings)
    return next(n for n, r in settings.access.users.items() if "reviewer" in r and n != first)


def not_a_reviewer(settings: Settings) -> str:
    """A configured user with neither the reviewer nor the lead role."""
    return next(n for n, r in settings.access.users.items() if not {"reviewer", "lead"} & set(r))


# ---------------------------------------------------------------------- resolve_identity
def test_the_proxy_header_comes_first(settings: Settings) -> None:
    env = {HEADER: "alice", HUB: "bob"}
    assert resolve_identity(env, settings) == "alice"


def test_jupyterhub_user_comes_next(settings: Settings) -> None:
    assert resolve_identity({HUB: "bob"}, settings) == "bob"


def test_the_local_user_comes_last(settings: Settings) -> None:
    assert settings.access.local_user is not None
    assert resolve_identity({}, settings) == settings.access.local_user
    assert resolve_identity({"USER": "root", "LOGNAME": "root"}, settings) == (
        settings.access.local_user
    )


def test_blank_sources_are_skipped_and_names_are_trimmed(settings: Settings) -> None:
    assert resolve_identity({HEADER: "  ", HUB: " bob\n"}, settings) == "bob"
    assert resolve_identity({HEADER: "", HUB: ""}, settings) == settings.access.local_user


def test_nothing_resolves_without_a_local_user(settings: Settings) -> None:
    bare = without_local_user(settings)
    assert resolve_identity({}, bare) is None
    assert resolve_identity({HEADER: " ", HUB: ""}, bare) is None
    assert resolve_identity({HUB: "bob"}, bare) == "bob"


# ---------------------------------------------------------------------- embedded mode
@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace.at(tmp_path_factory.mktemp("review-backend") / "ws")
    create_workspace(ws, CONFIG)
    return ws


def reviewer_of(backend: ReviewBackend | Refusal) -> str:
    assert isinstance(backend, StoreReviewBackend), backend
    return backend.reviewer().name


def test_the_backend_acts_as_whoever_the_chain_names(ws: Workspace, settings: Settings) -> None:
    alice, bob = a_reviewer(settings), another_reviewer(settings)
    root = str(ws.root)
    assert reviewer_of(open_review_backend(root, {HEADER: alice, HUB: bob})) == alice
    assert reviewer_of(open_review_backend(root, {HUB: bob})) == bob
    assert reviewer_of(open_review_backend(root, {})) == settings.access.local_user
    # The workspace may also come from the environment.
    assert reviewer_of(open_review_backend(None, {"HILT_WORKSPACE": root, HUB: bob})) == bob


def test_the_local_user_is_marked_as_not_proven(ws: Workspace, settings: Settings) -> None:
    """Single-person mode (no header, no hub: the local user) says so; anyone named by a
    header or the hub is not marked (embedded, whoever runs the kernel holds the files)."""
    local = open_review_backend(str(ws.root), {})
    assert isinstance(local, StoreReviewBackend)
    assert local.reviewer().unproven == SINGLE_PERSON
    named = open_review_backend(str(ws.root), {HUB: a_reviewer(settings)})
    assert isinstance(named, StoreReviewBackend)
    assert named.reviewer().unproven is None


def test_behind_a_proxy_there_is_no_local_user(settings: Settings) -> None:
    proxied = settings.model_copy(
        update={
            "access": settings.access.model_copy(
                update={"local_user": None, "proxy_secret_sha256": "0" * 64}
            )
        }
    )
    assert resolve_identity({}, proxied) is None
    assert resolve_identity({HEADER: "alice"}, proxied) == "alice"


def test_a_dashboard_forwards_the_name_and_session_picked_on_the_sign_in_page() -> None:
    query = "user=otto&session=hiltdemo_abc"
    assert demo_choice({"QUERY_STRING": query}) == ("otto", "hiltdemo_abc")
    assert demo_choice({"QUERY_STRING": "user=otto"}) is None  # a name alone: nothing
    assert demo_choice({}) is None


def test_hilt_serve_says_how_the_dashboards_learn_who_is_looking(settings: Settings) -> None:
    assert identity_mode(settings.access) == (
        "single-person mode: the dashboards act as lena, or as whoever is picked on the "
        "sign-in page (no password: demo mode), and every record says that identity was not "
        "proven"
    )
    proxied = settings.access.model_copy(update={"local_user": None, "proxy_secret_sha256": "0"})
    assert identity_mode(proxied).startswith("behind a sign-in proxy: X-Forwarded-User counts")
    nobody = settings.access.model_copy(update={"local_user": None})
    assert identity_mode(nobody).startswith("none configured: every dashboard refuses")


def test_an_unknown_user_is_refused_without_falling_back(ws: Workspace, settings: Settings) -> None:
    """A header naming someone the workspace does not know is a refusal, not a reason to try
    JUPYTERHUB_USER or the local user (who may hold more rights)."""
    refusal = open_review_backend(str(ws.root), {HEADER: "mallory", HUB: a_reviewer(settings)})
    assert isinstance(refusal, Refusal)
    assert refusal.title == "Not a reviewer here"
    assert "mallory is not a user of this workspace" in refusal.message


def test_a_user_without_the_reviewer_role_is_refused(ws: Workspace, settings: Settings) -> None:
    name = not_a_reviewer(settings)
    refusal = open_review_backend(str(ws.root), {HEADER: name})
    assert isinstance(refusal, Refusal)
    assert refusal.title == "Not a reviewer here"
    assert refusal.message == f"{name} does not have the reviewer role in this workspace."


def test_nobody_identified_is_refused(tmp_path: Path) -> None:
    """A workspace whose hilt.toml names no local user, opened with no header and no hub."""
    text = CONFIG.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.startswith("local_user")]
    assert len(lines) == len(text.splitlines()) - 1
    config = tmp_path / "hilt.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ws = Workspace.at(tmp_path / "ws")
    create_workspace(ws, config)
    assert ws.settings().access.local_user is None
    refusal = open_review_backend(str(ws.root), {HEADER: " "})
    assert isinstance(refusal, Refusal)
    assert refusal.title == "Who are you?"


def test_no_workspace_is_a_refusal_too(tmp_path: Path) -> None:
    refusal = open_review_backend(str(tmp_path / "nowhere"), {HUB: "bob"})
    assert isinstance(refusal, Refusal)
    assert refusal.title == "The review queue is not available"


# ---------------------------------------------------------------------- service mode
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningService, str, str]]:
    """A workspace behind a sign-in proxy and a real store service; a gateway token (what
    `hilt serve` hands the dashboard kernels) and a reviewer's own token."""
    root = tmp_path_factory.mktemp("review-backend-served")
    ws = Workspace.at(root / "ws")
    create_workspace(ws, proxied_config(root))
    op = operator(ws)
    gateway = op.add_user("voila-gateway", "gateway").token
    own = op.add_user(a_reviewer(ws.settings()), "reviewer").token
    svc = start_service(ws)
    try:
        yield svc, gateway, own
    finally:
        svc.stop()


def test_through_the_service_the_gateway_acts_for_the_named_user(
    settings: Settings, served: tuple[RunningService, str, str]
) -> None:
    svc, gateway, _ = served
    base = {"HILT_STORE_URL": svc.url, "HILT_GATEWAY_TOKEN": gateway, **PROXY_ENV}
    alice, bob = a_reviewer(settings), another_reviewer(settings)
    root = str(svc.workspace.root)
    backend = open_review_backend(root, {**base, HEADER: alice, HUB: bob})
    try:
        assert reviewer_of(backend) == alice
    finally:
        assert isinstance(backend, StoreReviewBackend)
        backend.store.close()
    backend = open_review_backend(root, {**base, HUB: bob})
    try:
        assert reviewer_of(backend) == bob
    finally:
        assert isinstance(backend, StoreReviewBackend)
        backend.store.close()

    unknown = open_review_backend(root, {**base, HEADER: "mallory", HUB: alice})
    assert isinstance(unknown, Refusal) and unknown.title == "Not a reviewer here"
    assert "mallory" in unknown.message
    # An auditor may use the dashboards, not this one: the door says so.
    name = next(n for n, r in settings.access.users.items() if r == ["auditor"])
    no_role = open_review_backend(root, {**base, HEADER: name})
    assert isinstance(no_role, Refusal)
    assert no_role.message == f"{name} does not have the reviewer role in this workspace."
    # Someone with no dashboard role at all: the store refuses the gateway before the door.
    name = not_a_reviewer(settings)
    no_role = open_review_backend(root, {**base, HEADER: name})
    assert isinstance(no_role, Refusal)
    assert no_role.message.startswith(
        f"the dashboards act only for reviewers, leads and auditors; {name!r} (roles: "
    )


def test_a_token_that_is_not_the_gateways_cannot_act_for_someone_else(
    settings: Settings, served: tuple[RunningService, str, str]
) -> None:
    svc, _, own = served
    env = {"HILT_STORE_URL": svc.url, "HILT_GATEWAY_TOKEN": own, **PROXY_ENV}
    root = str(svc.workspace.root)
    result = open_review_backend(root, {**env, HEADER: another_reviewer(settings)})
    assert isinstance(result, Refusal), result
    assert result.title == "The review queue is not available"
    assert "only a gateway token may act on behalf of a user" in result.message


def test_the_progress_line_after_a_lease_costs_no_second_query_and_is_never_stale(
    loaded_workspace: Workspace,
) -> None:
    """The counts that came with the lease answer the panel's progress refresh once; a
    decision in between means asking the store again."""
    settings = loaded_workspace.settings()
    backend = open_review_backend(str(loaded_workspace.root), {HUB: a_reviewer(settings)})
    assert isinstance(backend, StoreReviewBackend)
    fresh = backend.store.queue_status
    asked: list[int] = []

    def counted() -> StoreQueueStatus:
        asked.append(1)
        return fresh()

    backend.store.queue_status = counted
    item = backend.next_item()
    assert item is not None
    assert backend.queue_status() == QueueStatus(**fresh().model_dump())
    assert asked == []  # answered from the lease
    backend.queue_status()
    assert asked == [1]  # only once: a later refresh asks the store
    backend.next_item()
    backend.submit(DecisionInput(case_id=item.case_id, action="accept"))
    after = backend.queue_status()
    assert asked == [1, 1]
    assert (after.done_today_by_me, after.leased) == (1, 0)


def test_hilt_serve_prints_the_sign_in_page_first_in_single_person_mode(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    from hilt.pipelines.cli.serve import _echo_dashboards
    from hilt.pipelines.dashboards.server import DashboardServer, served_notebooks

    idle = typing.cast(subprocess.Popen[bytes], None)
    server = DashboardServer(ws, "127.0.0.1", 8866, 8765, idle, idle)
    _echo_dashboards(server)
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "sign in (demo):    http://127.0.0.1:8866/voila/render/signin.ipynb"
    served = sorted(p.name for p in served_notebooks(ws, NOTEBOOKS_DIR).iterdir())
    assert served == ["audit.ipynb", "oversight.ipynb", "review.ipynb", "signin.ipynb"]


def test_who_is_looking_is_asked_once_at_the_door_not_again_before_the_first_paint(
    ws: Workspace, settings: Settings
) -> None:
    """The door's ``whoami`` answers the panel's header too: opening the review page asks
    the store who is looking once (a round trip less before the first case), and the answer
    is the store's, with its roles and proof."""
    alice = a_reviewer(settings)
    backend = open_review_backend(str(ws.root), {HUB: alice})
    assert isinstance(backend, StoreReviewBackend)
    truth = backend.store.whoami()
    asked: list[int] = []

    def counted() -> typing.Any:
        asked.append(1)
        return truth

    backend.store.whoami = counted
    me = backend.reviewer()
    assert (me.name, me.roles, me.unproven) == (alice, tuple(truth.roles), truth.unproven)
    assert asked == []
    # A backend made without the door's answer asks the store, once.
    plain = StoreReviewBackend(backend.store, settings)
    assert plain.reviewer() == me
    assert plain.reviewer() == me
    assert asked == [1]
