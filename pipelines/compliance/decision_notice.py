"""The notice to the person decided about, issued: facts from the store, counterfactuals from
the model that scored the case, rendered (``hilt.widgets.contracts.notice``), and recorded
by the store, which renders it again itself and compares the hashes
(``subject.notice_issued``). What `hilt subject notice` and `hilt subject export --notice`
call.

Nothing personal leaves here except to the caller: the audit event holds the renderer
version, the notice's sha256 and ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from hilt.pipelines.compliance.privacy import write_private
from hilt.pipelines.config import Settings
from hilt.pipelines.errors import ConflictError
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
    facts = store.subject_notice_facts(subject_id, case_id)
    return render_notice(replace(facts, renderer=renderer), changes)


def notices_into(
    ws: Workspace,
    store: Store,
    settings: Settings,
    subject_id: str,
    case_ids: list[str],
    folder: Path,
) -> list[tuple[str, str | None]]:
    """Issue the notice about the final decision on each of ``case_ids`` (the subject's)
    and write it into the new ``folder`` (0700) as CASE.txt and CASE.html (0600, exactly
    the bytes hashed); (case id, notice sha256 or None: no final decision) per case."""
    folder.mkdir(mode=0o700, parents=True)
    out: list[tuple[str, str | None]] = []
    for case_id in case_ids:
        try:
            issued = issue_notice(ws, store, settings, subject_id, case_id)
        except ConflictError:
            out.append((case_id, None))  # no final decision (or the case's data are gone)
            continue
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", case_id)
        write_private(folder / f"{stem}.txt", issued.notice.text)
        write_private(folder / f"{stem}.html", issued.notice.html)
        out.append((case_id, issued.notice.sha256))
    return out
