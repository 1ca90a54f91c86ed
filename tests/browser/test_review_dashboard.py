"""The reviewer dashboard in a real browser: `hilt serve`, headless Debian Chromium.

Identity arrives as an authenticating proxy would send it (``X-Forwarded-User``, set on the
browser context); everything written is read back through the store service with an admin
token, and the audit log is verified by the real `hilt audit verify` command.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from hilt.pipelines.dashboards.kernels import ALLOWED_KERNEL_MESSAGES
from hilt.pipelines.store.authentication import PROXY_SECRET_HEADER
from tests.browser.conftest import Dashboards, OpenAs, proxied_context
from tests.browser.pages import (
    DWELL_S,
    accept_button,
    audit_events,
    click_accept,
    current_leases,
    done_by_me,
    poll_until,
    predicted_label,
    probe_kernel,
    replies_to,
    status_text,
    wait_for_case,
    wait_for_kernel_settled,
    wait_for_next_case,
)
from tests.conftest import PROXY_SECRET
from tests.loop_helpers import hilt_forked

pytestmark = pytest.mark.browser

REASON_CODE = "data-error"


@dataclass(frozen=True)
class OpenedPage:
    page: Page
    #: From asking for the page to its first case on screen.
    first_case_visible_s: float
    #: The page's own response as the browser got it: its URL, status and HTML.
    response: tuple[str, int, str]


@pytest.fixture(scope="module")
def alices_page(dashboards: Dashboards, browser: Browser) -> Iterator[OpenedPage]:
    """alice's review page, opened once per module (its own browser context, as
    ``context_as`` makes them): the tests in which she decides on it (alone, then beside
    bob), the tests that only probe its kernel over the websocket (any live review page's
    kernel will do) and the control of the served pages share it, so the module starts one
    Voila kernel for them instead of one each."""
    ctx = proxied_context(browser, "alice")
    try:
        page = ctx.new_page()
        t0 = time.monotonic()
        response = page.goto(dashboards.review_url, wait_until="commit")
        assert response is not None
        wait_for_case(page)
        visible_s = time.monotonic() - t0
        yield OpenedPage(page, visible_s, (response.url, response.status, response.text()))
    finally:
        ctx.close()


def test_reviewer_accepts_and_overrides_and_the_store_has_both_under_her_name(
    dashboards: Dashboards,
    alices_page: OpenedPage,
    record_property: Callable[[str, object], None],
    tmp_path: Path,
) -> None:
    settings = dashboards.workspace.settings()
    labels = dict(settings.target.labels)  # class → label
    class_of = {label: cls for cls, label in labels.items()}
    reason_text = settings.review.reason_codes[REASON_CODE]
    admin = dashboards.admin()
    start_seq = admin.audit_head().seq

    page = alices_page.page
    wait_for_case(page)
    first_visible_s = alices_page.first_case_visible_s
    print(f"\nvoila first case visible: {first_visible_s:.2f} s")
    record_property("voila_first_case_visible_s", round(first_visible_s, 2))
    # Who is looking comes from the proxy header, shown in the panel, never typed in.
    expect(page.locator(".hilt-review-session")).to_contain_text("alice (reviewer)")

    # Accept the first case.
    accepted_label = predicted_label(page)
    click_accept(page)
    expect(page.locator(".hilt-status")).to_contain_text("Accepted")

    # Override the next one: the other class, a reason code, confirm.
    model_label = predicted_label(page)
    other = next(label for label in labels.values() if label != model_label)
    before = done_by_me(page)
    page.get_by_role("button", name="Override", exact=True).click()
    panel = page.locator(".hilt-override-panel")
    expect(panel).to_be_visible()
    panel.get_by_role("button", name=other, exact=True).click()
    expect(panel.get_by_role("button", name=other, exact=True)).to_have_class(
        re.compile(r"\bmod-active\b")
    )
    panel.locator("select").select_option(label=reason_text)
    panel.get_by_role("button", name="Confirm override", exact=True).click()
    wait_for_next_case(page, before)
    expect(page.locator(".hilt-status")).to_contain_text(f"Overridden: {other}")

    # Read back through the store service.
    mine = [d for d in admin.decisions(after_seq=start_seq) if d.reviewer == "alice"]
    assert [d.action for d in mine] == ["accept", "override"], mine
    accept, override = mine
    for d in mine:
        assert d.reviewer == "alice"
        assert d.reviewer_role == "reviewer"
        assert d.model_shown is True
        assert d.prediction_id is not None
    assert accept.predicted_label == class_of[accepted_label]
    assert accept.final_label == class_of[accepted_label]
    assert accept.reason_code is None
    assert accept.time_on_item_ms >= 300  # the dwell guard let it through, so it was shown
    assert override.predicted_label == class_of[model_label]
    assert override.final_label == class_of[other]
    assert override.reason_code == REASON_CODE
    assert accept.case_id != override.case_id

    by_seq = {e.seq: e for e in audit_events(admin, after_seq=start_seq)}
    for d in mine:
        event = by_seq[d.seq]
        assert event.action == "decision.record"
        assert event.actor == "alice"
        assert event.role == "reviewer"
        assert event.object_id == d.case_id
        assert event.payload["decision_id"] == d.decision_id
        assert event.payload["action"] == d.action
    assert by_seq[override.seq].payload["reason_code"] == REASON_CODE

    report = admin.verify()
    assert report.ok, report.summary()
    admin.close()

    cli = hilt_forked(
        "audit", "verify", "--url", dashboards.store_url, "--token", dashboards.admin_token,
        "--workspace", dashboards.workspace.root, folder=tmp_path,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert cli.stdout.startswith("OK"), cli.stdout


@pytest.mark.parametrize(
    ("user", "explanation"),
    [
        ("mallory", "mallory is not a user of this workspace"),
        ("otto", "otto does not have the reviewer role in this workspace"),
    ],
    ids=["not-in-config", "auditor-without-reviewer-role"],
)
def test_someone_who_may_not_review_sees_a_refusal_and_writes_nothing(
    dashboards: Dashboards, context_as: OpenAs, user: str, explanation: str
) -> None:
    admin = dashboards.admin()
    before = (admin.counts(), admin.audit_head(), admin.queue_status().leased)

    page = context_as(user).new_page()
    page.goto(dashboards.review_url)
    refusal = page.locator(".hilt-refusal")
    expect(refusal).to_be_visible()
    expect(refusal).to_contain_text("Not a reviewer here")
    expect(refusal).to_contain_text(explanation)
    # Nothing that could write: no Accept, no button, no input at all.
    assert accept_button(page).count() == 0
    assert page.locator(".jupyter-widgets button, .jupyter-widgets input").count() == 0
    assert page.locator("select, textarea").count() == 0
    assert page.locator(".hilt-review-session").count() == 0

    wait_for_kernel_settled(page)  # whatever the page made the kernel do is done
    after = (admin.counts(), admin.audit_head(), admin.queue_status().leased)
    assert after == before
    admin.close()


def test_execute_request_over_the_dashboard_kernel_websocket_is_refused(
    alices_page: OpenedPage, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    token = "HILT-EXECUTED-" + tmp_path.name
    code = f"open({str(marker)!r}, 'w').write('x'); print({token!r})"

    page = alices_page.page
    wait_for_case(page)
    result = probe_kernel(
        page,
        [
            # Control: an allowed message, framed the same way, is answered. So the socket
            # works and the framing is right; silence for execute_request is the filter.
            {"msgType": "kernel_info_request", "channel": "shell", "content": {}},
            {
                "msgType": "execute_request",
                "channel": "shell",
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
            },
        ],
        barrier_channel="shell",
    )
    info = replies_to(result, "kernel_info_request")
    assert any(m["msg_type"] == "kernel_info_reply" for m in info), result["received"]
    # Answered after the execute_request on the same channel: it would have come first.
    assert result["barrierAnswered"] is True, result["received"]

    assert replies_to(result, "execute_request") == []
    assert token not in str(result["received"])
    assert not marker.exists()
    # The dashboard itself still works.
    wait_for_case(page)


def test_kernel_websocket_refuses_message_types_hilt_does_not_allow(
    alices_page: OpenedPage,
) -> None:
    """`hilt serve` restricts the kernel websocket to ALLOWED_KERNEL_MESSAGES. Voila passes
    its own list (which has shutdown_request) to the kernel manager's constructor, and
    constructor arguments beat command-line config in traitlets; shutdown_request is the one
    type on Voila's list and not on hilt's, so it shows which list is in force."""
    assert "shutdown_request" not in ALLOWED_KERNEL_MESSAGES, (
        "hilt allows shutdown_request: no message type tells hilt's list from Voila's"
    )
    page = alices_page.page
    wait_for_case(page)
    result = probe_kernel(
        page,
        [
            # Control: an allowed message on the same channel, framed the same way, is
            # answered. So the socket works and the framing is right; silence for
            # shutdown_request is the filter, not a dead connection.
            {"msgType": "kernel_info_request", "channel": "control", "content": {}},
            {"msgType": "shutdown_request", "channel": "control", "content": {"restart": False}},
        ],
        barrier_channel="control",
    )
    info = replies_to(result, "kernel_info_request")
    assert any(m["msg_type"] == "kernel_info_reply" for m in info), result["received"]
    replies = [m["msg_type"] for m in replies_to(result, "shutdown_request")]
    assert "shutdown_reply" not in replies, (
        "the kernel obeyed a shutdown_request from the page: the websocket filter in force is "
        "Voila's built-in list, not hilt's ALLOWED_KERNEL_MESSAGES "
        "(--MappingKernelManager.allowed_message_types has no effect)"
    )
    # Answered after the shutdown_request on the same channel: a reply would have come first.
    assert result["barrierAnswered"] is True, result["received"]
    # The kernel is still there: the page's own widgets still get answers.
    wait_for_kernel_settled(page)


def test_the_shortcut_keys_decide_and_undo(dashboards: Dashboards, context_as: OpenAs) -> None:
    """Real key presses on the page (the keyboard widget listens on the document): "a"
    accepts the case on screen, "u" undoes that decision; both land in the store. As lena
    (a lead who also reviews): the undone case stays leased to her, away from the reviewers
    the other tests follow."""
    admin = dashboards.admin()
    start_seq = admin.audit_head().seq
    page = context_as("lena").new_page()
    page.goto(dashboards.review_url, wait_until="commit")
    wait_for_case(page)
    before = done_by_me(page)
    time.sleep(DWELL_S)  # past the panel's one-key dwell guard (see pages.DWELL_S)
    page.keyboard.press("a")
    wait_for_next_case(page, before)
    [accepted] = admin.decisions(after_seq=start_seq)
    assert (accepted.reviewer, accepted.action) == ("lena", "accept")

    page.keyboard.press("u")
    poll_until(
        lambda: [d.action for d in admin.decisions(after_seq=start_seq)] == ["accept", "undo"],
        "the undo pressed on the page reaches the store",
    )
    undo = admin.decisions(after_seq=accepted.seq)[0]
    assert undo.reviewer == "lena" and undo.undo_of == accepted.decision_id
    admin.close()


def test_two_reviewers_at_once_never_hold_the_same_case(
    dashboards: Dashboards, alices_page: OpenedPage, context_as: OpenAs
) -> None:
    """Both dashboards open at once (alice's is the module's, ``alices_page``; bob opens
    his), then three rounds of simultaneous Accept clicks.

    The panel does not show case ids (data minimisation), so which case each page holds is
    read from the store: each reviewer's latest ``case.leased`` audit event (one live lease
    per reviewer). Each round checks that the two live leases are on different cases, and
    then that each reviewer's accept landed on exactly the case their lease named, which
    ties the lease to the case on screen.
    """
    reviewers = ("alice", "bob")
    admin = dashboards.admin()
    start_seq = admin.audit_head().seq
    pages = {"alice": alices_page.page, "bob": context_as("bob").new_page()}
    pages["bob"].goto(dashboards.review_url, wait_until="commit")
    for page in pages.values():
        wait_for_case(page)

    decided: dict[str, list[str]] = {name: [] for name in reviewers}
    for _round in range(3):
        leases = current_leases(admin, reviewers)
        assert set(leases) == set(reviewers), leases
        assert leases["alice"] != leases["bob"], leases
        assert admin.queue_status().leased >= 2

        done = {name: done_by_me(page) for name, page in pages.items()}
        time.sleep(DWELL_S)
        for page in pages.values():  # both clicks go out before either reply comes back
            accept_button(page).click()
        for name, page in pages.items():
            wait_for_next_case(page, done[name])

        new = admin.decisions(after_seq=start_seq)
        start_seq = max([start_seq, *(d.seq for d in new)])
        for name in reviewers:
            theirs = [d for d in new if d.reviewer == name]
            assert [d.action for d in theirs] == ["accept"], (
                name,
                theirs,
                status_text(pages[name]),
            )
            assert theirs[0].case_id == leases[name]
            decided[name].append(theirs[0].case_id)

    assert not set(decided["alice"]) & set(decided["bob"]), decided
    assert len(set(decided["alice"] + decided["bob"])) == 6
    report = admin.verify()
    assert report.ok, report.summary()
    admin.close()


def test_the_page_asks_for_its_front_end_before_the_notebook_runs(
    alices_page: OpenedPage,
) -> None:
    """hilt's template asks for Voila's front end (voila.js) right after the page's
    configuration, before the notebook's first cell, not after its last: the browser fetches
    and runs its scripts while the kernel runs the cells. Asked for once; the page works
    (the case on screen: ``alices_page``, and the other tests of this file)."""
    _, status, html = alices_page.response
    assert status == 200
    script = '/voila.js"></script>'
    assert html.count(script) == 1
    config = html.index('id="jupyter-config-data"')
    assert config < html.index(script) < html.index('cell-index="1"')


def test_only_the_dashboards_are_served_not_the_run_templates(
    dashboards: Dashboards, alices_page: OpenedPage
) -> None:
    base = dashboards.review_url.split("/voila/render/")[0]
    # otto (an auditor) is refused the review queue: the page renders, and writes nothing.
    headers = {"X-Forwarded-User": "otto", PROXY_SECRET_HEADER: PROXY_SECRET}
    # Control: a dashboard at the same place is served (alice's review page, as her
    # browser got it), so the 404s below are refusals of the templates, not a wrong
    # address or a server that is down.
    url, status, html = alices_page.response
    assert url == dashboards.review_url
    assert status == 200, status
    assert "Review queue" in html
    for name in ("retrain", "score"):
        r = httpx.get(f"{base}/voila/render/{name}.ipynb", headers=headers, timeout=30)
        assert r.status_code == 404, name
    served = sorted(p.name for p in (dashboards.workspace.root / "dashboards").iterdir())
    assert served == ["audit.ipynb", "oversight.ipynb", "review.ipynb"]
