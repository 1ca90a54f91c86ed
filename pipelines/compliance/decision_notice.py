"""The notice to the person decided about, issued: facts from the store, counterfactuals from
the model that scored the case, rendered (``hilt.widgets.contracts.notice``), and recorded
by the store, which renders it again itself and compares the hashes
(``subject.notice_issued``). What `hilt subject notice` and `hilt subject export --notice`
call.

Nothing personal leaves here except to the caller: the audit event holds the renderer
version, the notice's sha256 and ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from hilt.pipelines.config import Settings
from hilt.pipelines.loop.counterfactual import Counterfactuals, load_notice_model, search
from hilt.pipelines.store import Store
from hilt.pipelines.store.ops.subject_notice import NoticeIssued
from hilt.pipelines.workspace import Workspace
from hilt.widgets.contracts.notice import Change, NoticeFacts, RenderedNotice, render_notice


@dataclass(frozen=True)
class IssuedNotice:
    facts: NoticeFacts
    counterfactuals: Counterfactuals
    notice: RenderedNotice
    issued: NoticeIssued


def issue_notice(
    ws: Workspace, store: Store, settings: Settings, subject_id: str, case_id: str | None = None
) -> IssuedNotice:
    """Render the notice about the subject's final decision (their latest, or the one on
    ``case_id``) and have the store record its issue."""
    facts = store.subject_notice_facts(subject_id, case_id)
    model = load_notice_model(ws, settings, facts)
    found = search(facts, settings, model)
    notice = render_notice(facts, found.combinations)
    issued = store.subject_notice_issued(
        subject_id, facts.case_id, facts.renderer, notice.sha256, found.as_changes()
    )
    return IssuedNotice(facts, found, notice, issued)


def render_again(
    store: Store, subject_id: str, case_id: str, renderer: str, changes: list[list[Change]]
) -> RenderedNotice:
    """The notice rendered again from the store's facts today, with the renderer recorded
    at issue and the same counterfactual changes (the search is deterministic for the same
    model and values): its sha256 is the recorded one while the facts are unchanged."""
    from dataclasses import replace

    facts = store.subject_notice_facts(subject_id, case_id)
    return render_notice(replace(facts, renderer=renderer), changes)
