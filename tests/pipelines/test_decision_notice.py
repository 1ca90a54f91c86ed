"""The decision notice to the person decided about (`hilt subject notice`): on a real loop
(a model trained and registered through MLflow, promoted by a lead, scoring new cases that a
reviewer decides), the notice names the role that decided, the outcome and the main
factors, its counterfactuals really flip the real model's recommendation, it holds no other
person's data, it renders again byte for byte, its issue is audited without personal data,
and it cannot be produced for an erased subject, without a final decision, or by the wrong
role."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl
import pytest

from hilt.pipelines.compliance.decision_notice import issue_notice, render_again
from hilt.pipelines.config import Settings, load_settings, parse_settings
from hilt.pipelines.errors import (
    ConfigError,
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
)
from hilt.pipelines.loop.counterfactual import apply, load_notice_model, search
from hilt.pipelines.loop.features import ModelError
from hilt.pipelines.loop.promotion import promote
from hilt.pipelines.loop.steps.score import load_model, score_cases
from hilt.pipelines.loop.tracking.client import configure, environment_kept
from hilt.pipelines.loop.tracking.environment import DB_FILE
from hilt.pipelines.store import Identity, Store, open_store_as
from hilt.pipelines.workspace import Workspace
from hilt.widgets.contracts.notice import (
    NOTICE_RENDERER_VERSION,
    Change,
    notice_sha256,
    render_notice,
)
from tests.conftest import CONFIG, free_port
from tests.loop_helpers import (
    all_cases,
    events_since,
    hilt_forked,
    loop_workspace,
    review_some,
    train_in_process,
)
from tests.prewarmed import prewarmed_service

NEW = (700, 24)


@dataclass(frozen=True)
class Loop:
    ws: Workspace
    settings: Settings
    new: pl.DataFrame
    #: The external subject ids of the decided cases.
    subjects: list[str]


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    root = tmp_path_factory.mktemp("notice")
    ws = loop_workspace(root)
    uri = f"sqlite:///{(ws.root / DB_FILE).as_posix()}"
    with environment_kept(("MLFLOW_TRACKING_URI", "HILT_MLFLOW_TRACKING_URI")):
        os.environ["MLFLOW_TRACKING_URI"] = os.environ["HILT_MLFLOW_TRACKING_URI"] = uri
        registration = train_in_process(ws, "dana")
        assert registration.gate_passed
        promote(ws, registration.run_id, "lena")
        settings = ws.settings()
        dana = open_store_as(ws, Identity(name="dana"))
        configure(ws, settings=settings)
        new = all_cases().slice(*NEW).drop(settings.target.column)
        dana.ingest_cases(new)
        score_cases(dana, load_model(dana, settings), new, settings)
        assert review_some(ws, "alice", new.height) == new.height
        subject = settings.use_case.subject_column
        assert subject is not None
        yield Loop(ws, settings, new, new[subject].to_list())


def as_user(loop: Loop, name: str) -> Store:
    return open_store_as(loop.ws, Identity(name=name))


def head_seq(loop: Loop) -> int:
    return as_user(loop, "otto").audit_head().seq


@pytest.mark.obligation("AI Act 86", "AI Act 26(11)", "GDPR 13", "GDPR 14", "GDPR 15", "GDPR 22(3)")
def test_the_notice_names_role_outcome_factors_and_how_to_contest(loop: Loop) -> None:
    pia = as_user(loop, "pia")
    before = head_seq(loop)
    issued = issue_notice(loop.ws, pia, loop.settings, loop.subjects[0])
    facts, text = issued.facts, issued.notice.text
    words = loop.settings.notice
    assert facts.case_id == loop.new[loop.settings.use_case.id_column][0]
    assert "high-risk AI system" in text and words.system in text
    assert words.decided_by["reviewer"] in text
    assert "alice" not in text  # the role decided, not the reviewer's name
    assert f"Outcome: {loop.settings.target.label_of(facts.final_label)}." in text
    assert words.contest in text
    assert f"The data it used: {words.data_sources}" in text  # where they came from (Art. 14)
    for factor in facts.factors:
        assert loop.settings.columns[factor.feature].description in text
    assert len(facts.factors) == words.factors
    assert issued.notice.html.startswith('<article class="hilt-notice">')
    # Its issue is audited, with the renderer and the hash, and nothing personal.
    events = events_since(loop.ws, before)
    assert [e.action for e in events] == ["subject.notice_issued"]
    event = events[0]
    assert (event.object_type, event.object_id, event.actor) == (
        "decision",
        facts.decision_id,
        "pia",
    )
    assert event.payload == {
        "renderer": NOTICE_RENDERER_VERSION,
        "notice_sha256": issued.notice.sha256,
        "case_id": facts.case_id,
        "counterfactuals": len(issued.counterfactuals.combinations),
    }
    # (the payload is exactly that: ids, a version, a hash and a count, no value of theirs)
    assert loop.subjects[0] not in json.dumps(event.payload)


@pytest.mark.obligation("AI Act 86", "GDPR 22(3)")
def test_every_counterfactual_really_flips_the_real_models_recommendation(loop: Loop) -> None:
    pia = as_user(loop, "pia")
    actionable = loop.settings.notice.actionable
    found = favourable = 0
    positive = loop.settings.target.positive  # the demo's favourable outcome
    for subject in loop.subjects:
        facts = pia.subject_notice_facts(subject)
        model = load_notice_model(loop.ws, loop.settings, facts)
        result = search(facts, loop.settings, model)
        assert result == replace(search(facts, loop.settings, model), seconds=result.seconds)
        assert result.seconds < 2.0  # target 200 ms (benchmarks/notice.py), slack for load
        if facts.recommended_label == positive:
            # What the person applied for: no change is looked for, none offered.
            favourable += 1
            assert (result.combinations, result.scored) == ([], 0)
            assert "the outcome you applied for: there was nothing to change" in (
                render_notice(facts, []).text
            )
            continue
        for combination in result.combinations:
            found += 1
            for change in combination:
                spec = actionable[change.feature]
                was = facts.values[change.feature]
                if spec.levels is not None:
                    assert change.value in spec.levels
                else:
                    assert isinstance(change.value, (int, float)) and isinstance(was, (int, float))
                    assert spec.min is None or change.value >= spec.min
                    assert spec.direction != "decrease" or change.value < was
                    assert spec.direction != "increase" or change.value > was
            changed = pl.DataFrame([apply(facts, combination)])
            score = float(model.predict(changed)[0])
            now = loop.settings.target.positive if score >= facts.threshold else "other"
            was_positive = facts.recommended_label == loop.settings.target.positive
            assert (now == loop.settings.target.positive) != was_positive, combination
        if not result.combinations:
            assert result.flipped_to is None
    assert found > 0, "no counterfactual found: the search proves nothing"
    assert 0 < favourable < len(loop.subjects), "both kinds of recommendation must be seen"


@pytest.mark.obligation("AI Act 86")
def test_only_the_model_that_scored_the_case_searches_its_counterfactuals(loop: Loop) -> None:
    facts = as_user(loop, "pia").subject_notice_facts(loop.subjects[8])
    model = load_notice_model(loop.ws, loop.settings, facts)
    assert model.model_sha256() == facts.model_sha256
    with pytest.raises(ModelError, match="sha256 differs"):
        load_notice_model(loop.ws, loop.settings, replace(facts, model_sha256="0" * 64))
    with pytest.raises(ModelError, match="does not reproduce the stored score"):
        search(replace(facts, score=facts.score / 2 + 0.01), loop.settings, model)
    with pytest.raises(InputError, match="not a version of the use case's registered model"):
        load_notice_model(loop.ws, loop.settings, replace(facts, model_version="other/v1"))


@pytest.mark.obligation("AI Act 86", "GDPR 15")
def test_the_notice_renders_again_byte_for_byte_from_the_records(loop: Loop) -> None:
    pia = as_user(loop, "pia")
    issued = issue_notice(loop.ws, pia, loop.settings, loop.subjects[1])
    again = render_again(
        pia,
        loop.subjects[1],
        issued.facts.case_id,
        issued.issued.renderer,
        issued.counterfactuals.combinations,
    )
    assert (again.text, again.html) == (issued.notice.text, issued.notice.html)
    recorded = [
        e
        for e in events_since(loop.ws, 0)
        if e.action == "subject.notice_issued" and e.object_id == issued.facts.decision_id
    ][-1]
    assert again.sha256 == recorded.payload["notice_sha256"]
    # The store renders it itself: a hash of another notice is refused, nothing written.
    before = head_seq(loop)
    changes = issued.counterfactuals.as_changes()
    with pytest.raises(InputError, match="nothing was written"):
        pia.subject_notice_issued(
            loop.subjects[1], issued.facts.case_id, NOTICE_RENDERER_VERSION, "0" * 64, changes
        )
    with pytest.raises(InputError, match="actionable"):
        pia.subject_notice_issued(
            loop.subjects[1],
            issued.facts.case_id,
            NOTICE_RENDERER_VERSION,
            issued.notice.sha256,
            [[{"feature": "purpose", "value": "car"}]],
        )
    # Nor a change against its feature's direction or bounds, nor any change where the model
    # recommended what the person applied for: the store checks what it can without the model.
    positive = loop.settings.target.positive
    facts_of = {s: pia.subject_notice_facts(s) for s in loop.subjects}
    unfavourable = next(s for s, f in facts_of.items() if f.recommended_label != positive)
    favourable = next(s for s, f in facts_of.items() if f.recommended_label == positive)
    amount = facts_of[unfavourable].values["credit_amount"]
    assert isinstance(amount, (int, float))
    forgeries: list[tuple[str, str, str | int | float]] = [
        (unfavourable, "credit_amount", amount + 250),  # must decrease
        (unfavourable, "duration", 3),  # below its min of 6
        (unfavourable, "saving_accounts", "offshore"),  # no such level
        (favourable, "duration", 6),
    ]
    for subject, feature, value in forgeries:
        facts = facts_of[subject]
        forged = render_notice(facts, [[Change(feature, value)]])
        with pytest.raises(InputError, match="nothing was written"):
            pia.subject_notice_issued(
                subject,
                facts.case_id,
                NOTICE_RENDERER_VERSION,
                forged.sha256,
                [[{"feature": feature, "value": value}]],
            )
    assert head_seq(loop) == before


@pytest.mark.obligation("AI Act 86", "GDPR 15")
def test_the_notice_holds_no_other_subjects_data(loop: Loop) -> None:
    pia = as_user(loop, "pia")
    mine = issue_notice(loop.ws, pia, loop.settings, loop.subjects[2])
    other = pia.subject_notice_facts(loop.subjects[3])
    text = mine.notice.text + mine.notice.html
    for identifier in (loop.subjects[3], other.case_id, other.decision_id):
        assert identifier not in text
    fmt = loop.settings.columns["credit_amount"].format
    assert fmt is not None
    theirs, own = other.values["credit_amount"], mine.facts.values["credit_amount"]
    assert theirs != own
    assert fmt.format(theirs) not in text
    assert fmt.format(own) in text
    assert loop.subjects[2] not in text  # the notice goes to them; their id is not needed


@pytest.mark.obligation("AI Act 86", "GDPR 17", "GDPR 22(3)")
def test_no_notice_for_an_erased_subject_and_nothing_written(loop: Loop) -> None:
    pia = as_user(loop, "pia")
    subject = loop.subjects[-1]
    pia.subject_notice_facts(subject)  # before: there is one
    pia.subject_erase(subject)
    before = head_seq(loop)
    with pytest.raises(NotFoundError, match="erased"):
        issue_notice(loop.ws, pia, loop.settings, subject)
    with pytest.raises(NotFoundError, match="erased"):
        pia.subject_notice_issued(subject, "APP-000724", NOTICE_RENDERER_VERSION, "0" * 64, [])
    assert head_seq(loop) == before


@pytest.mark.obligation("AI Act 86", "GDPR 22(3)")
def test_refused_without_a_final_decision_or_for_the_wrong_role(loop: Loop) -> None:
    pia = as_user(loop, "pia")
    subject_column = loop.settings.use_case.subject_column
    assert subject_column is not None
    undecided = all_cases()[subject_column][0]  # a labelled history case: nobody decided it
    before = head_seq(loop)
    with pytest.raises(ConflictError, match="no final decision"):
        pia.subject_notice_facts(undecided)
    with pytest.raises(NotFoundError, match="no case with that id"):
        pia.subject_notice_facts(loop.subjects[0], "APP-999999")
    for name in ("alice", "lena", "otto", "dana"):
        if "admin" in loop.settings.roles_of(name):
            continue
        with pytest.raises(PermissionDeniedError, match="may not issue decision notices"):
            as_user(loop, name).subject_notice_facts(loop.subjects[0])
        with pytest.raises(PermissionDeniedError, match="may not issue decision notices"):
            as_user(loop, name).subject_notice_issued(
                loop.subjects[0], "APP-000701", NOTICE_RENDERER_VERSION, "0" * 64, []
            )
    assert head_seq(loop) == before


def hilt_notice(
    loop: Loop, *args: str | Path, command: str = "notice"
) -> subprocess.CompletedProcess[str]:
    uri = f"sqlite:///{(loop.ws.root / DB_FILE).as_posix()}"
    return hilt_forked(
        "subject", command, *args, "--workspace", loop.ws.root,
        folder=loop.ws.root.parent / "hilt",
        env={"MLFLOW_TRACKING_URI": uri, "HILT_MLFLOW_TRACKING_URI": uri},
    )  # fmt: skip


@pytest.mark.obligation("AI Act 86", "GDPR 13", "GDPR 22(3)")
def test_cli_prints_the_notice_writes_html_and_refuses_in_one_line(
    loop: Loop, tmp_path: Path
) -> None:
    out = tmp_path / "notice.html"
    r = hilt_notice(loop, loop.subjects[4], "--as", "pia", "--html", out)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Notice about a decision on your application")
    assert "audit seq" in r.stderr and NOTICE_RENDERER_VERSION in r.stderr
    assert out.read_text(encoding="utf-8").startswith('<article class="hilt-notice">')
    assert out.stat().st_mode & 0o777 == 0o600
    for args, needle in (
        ((loop.subjects[4], "--as", "alice"), "may not"),
        (("NO-SUCH-SUBJECT", "--as", "pia"), "no subject with that id"),
        ((loop.subjects[4], "--as", "pia", "--html", out), "exists"),
    ):
        r = hilt_notice(loop, *args)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "Traceback" not in r.stdout + r.stderr
        assert r.stderr.startswith("error: ") and needle in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert "NO-SUCH-SUBJECT" not in r.stderr


@pytest.mark.obligation("AI Act 86", "GDPR 15")
def test_the_subject_export_writes_the_notice_of_each_final_decision(
    loop: Loop, tmp_path: Path
) -> None:
    folder, document = tmp_path / "notices", tmp_path / "export.json"
    subject = loop.subjects[6]
    r = hilt_notice(
        loop, subject, "--as", "pia", "--output", document, "--notices", folder, command="export"
    )
    assert r.returncode == 0, r.stderr
    case_id = json.loads(document.read_text(encoding="utf-8"))["cases"][0]["case_id"]
    text = (folder / f"{case_id}.txt").read_text(encoding="utf-8")
    fragment = (folder / f"{case_id}.html").read_text(encoding="utf-8")
    sha = notice_sha256(text, fragment)
    assert f"case {case_id}: notice sha256 {sha}" in r.stderr
    recorded = [e for e in events_since(loop.ws, 0) if e.action == "subject.notice_issued"]
    assert recorded[-1].payload["notice_sha256"] == sha
    assert folder.stat().st_mode & 0o777 == 0o700


@pytest.mark.obligation("AI Act 86")
def test_the_same_notice_through_a_store_service(loop: Loop) -> None:
    embedded = as_user(loop, "pia").subject_notice_facts(loop.subjects[7])
    token = as_user(loop, "dana").add_user("pia-service", "dpo").token
    svc = prewarmed_service(loop.ws, loop.ws.root.parent / "service.log", free_port())
    try:
        served = open_store_as(svc.url, Identity(token=token))
        assert served.subject_notice_facts(loop.subjects[7]) == embedded
        issued = issue_notice(loop.ws, served, loop.settings, loop.subjects[7])
        assert (
            issued.issued.notice_sha256
            == render_notice(embedded, issued.counterfactuals.combinations).sha256
        )
    finally:
        svc.stop()


def test_the_renderer_is_versioned_and_refuses_an_unknown_version(loop: Loop) -> None:
    facts = as_user(loop, "pia").subject_notice_facts(loop.subjects[5])
    one = render_notice(facts, [[Change("duration", 6)]])
    assert one == render_notice(facts, [[Change("duration", 6)]])
    assert "If your Duration had been 6 months instead of" in one.text
    unfavourable = replace(facts, recommended_label="unfavourable")
    assert render_notice(unfavourable, []).text.count("No single change within the allowed") == 1
    with pytest.raises(ValueError, match="unknown notice renderer"):
        render_notice(replace(facts, renderer="hilt-notice/0"), [])


def test_actionable_features_are_checked_against_the_columns() -> None:
    import tomllib

    data = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    assert load_settings(CONFIG).notice.actionable  # the demo declares some
    for bad, needle in (
        ({"age": {"direction": "increase"}}, "not a feature"),
        ({"purpose": {"levels": ["yacht"]}}, "levels not in the column's levels"),
        ({"credit_amount": {"levels": ["x"]}}, "only for category features"),
        ({"purpose": {"min": 1}}, "only for int and float"),
        ({"duration": {"min": 10, "max": 5}}, "min is larger than max"),
    ):
        data["notice"]["actionable"] = bad
        with pytest.raises(ConfigError, match=needle):
            parse_settings(data, "hilt.toml")
    data.pop("notice")
    assert parse_settings(data, "hilt.toml").notice.actionable == {}  # old files still load
