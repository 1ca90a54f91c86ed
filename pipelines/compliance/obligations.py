"""The legal obligations of the use case (credit scoring: EU AI Act Annex III 5(b), GDPR),
each with a short title and what hilt does for it.

A test that proves an obligation carries ``@pytest.mark.obligation("AI Act 12", ...)``
with the names below; ``compliance/matrix.py`` finds them (a static scan of tests/) and
``hilt docs compliance`` prints obligation → tests → their last result. Names: "AI Act
14(4)(e)", "GDPR 22(3)": the regulation, the article, its paragraphs and points as the
regulation numbers them. A paragraph is its own obligation: a test of "AI Act 14(4)(e)"
does not count for "AI Act 14".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: "AI Act 14", "AI Act 14(4)(e)", "GDPR 5(1)(f)".
NAME = re.compile(r"^(AI Act|GDPR) [1-9][0-9]{0,2}(\([0-9a-z]{1,4}\))*$")


@dataclass(frozen=True)
class Obligation:
    name: str
    title: str
    #: What hilt does for it, in one or two sentences (what the tests must prove).
    hilt: str


def _ai(ref: str, title: str, hilt: str) -> Obligation:
    return Obligation(f"AI Act {ref}", title, hilt)


def _gdpr(ref: str, title: str, hilt: str) -> Obligation:
    return Obligation(f"GDPR {ref}", title, hilt)


OBLIGATIONS: tuple[Obligation, ...] = (
    _ai(
        "10",
        "Data and data governance",
        "Cases are validated against hilt.toml at ingest (a bad row is refused, nothing "
        "written); training snapshots record each label's source, keep a holdout fixed at "
        "creation that never takes feedback, and cap labels a reviewer accepted unchanged.",
    ),
    _ai(
        "11",
        "Technical documentation (Annex IV)",
        "`hilt docs model` writes each version's technical documentation and model card "
        "from MLflow and the audit log, naming where they disagree.",
    ),
    _ai(
        "12",
        "Record-keeping: automatic logs",
        "Every change is written with its event in one hash-chained audit log, in the same "
        "transaction; `hilt audit verify` names the first break.",
    ),
    _ai(
        "13",
        "Transparency and information to deployers",
        "Reviewers see the model's output with its main reasons, whether it is uncertain, "
        "and which inputs lie outside the training range.",
    ),
    _ai(
        "14",
        "Human oversight",
        "Every prediction is reviewed by a person before it takes effect; a lead who did "
        "not train a model approves it; the store enforces who may do what.",
    ),
    _ai(
        "14(4)(a)",
        "Oversight: understand the system and detect anomalies",
        "The oversight dashboard shows the queue, reviewers' statistics, agreement and "
        "alerts; the review panel flags inputs outside the training range.",
    ),
    _ai(
        "14(4)(b)",
        "Oversight: awareness of automation bias",
        "Blind-first review, gold cases with known answers, and a rubber-stamping alert.",
    ),
    _ai(
        "14(4)(c)",
        "Oversight: interpret the output correctly",
        "The explanation a reviewer saw is rendered by a versioned renderer and frozen "
        "with the decision.",
    ),
    _ai(
        "14(4)(d)",
        "Oversight: disregard, override or reverse the output",
        "Override with a reason code, undo by a compensating event, adjudication by a lead.",
    ),
    _ai(
        "14(4)(e)",
        "Oversight: stop the system",
        "A lead halts scoring and retraining at once; a second lead resumes.",
    ),
    _ai(
        "15",
        "Accuracy, robustness and cybersecurity",
        "The promotion gate (floor, subgroup gap, champion comparison); only the registered "
        "model's sha256 may score; a tampered model file is refused; the feedback-loop cap "
        "(Art. 15(4)).",
    ),
    _ai(
        "17",
        "Quality management: change control",
        "Four eyes on models (author ≠ approver) and on loosening hilt.toml; training "
        "reproduces bit for bit from the recorded snapshot and parameters.",
    ),
    _ai(
        "19",
        "Automatically generated logs kept",
        "The audit log is kept at least six months (a shorter period is a config error) "
        "and outlives the records it proves; retention never breaks verification.",
    ),
    _ai(
        "26(5)",
        "Deployer: monitor operation, inform, suspend",
        "Post-market monitoring runs (`hilt monitor`), and a lead can suspend use at once (halt).",
    ),
    _ai(
        "26(6)",
        "Deployer: keep the logs at least six months",
        "A retention period of the audit log below 183 days is refused in hilt.toml.",
    ),
    _ai(
        "26(11)",
        "Deployer: inform the people decided about",
        "The decision notice tells the person that a high-risk AI system was used and how "
        "(`hilt subject notice`).",
    ),
    _ai(
        "27",
        "Fundamental-rights impact assessment (credit scoring)",
        "[governance] records the FRIA's reference and date; `hilt check go-live` fails "
        "while it is missing, not yet done or past its review period.",
    ),
    _ai(
        "72",
        "Post-market monitoring",
        "`hilt monitor`: drift, override and accept rates, realised and estimated "
        "performance against thresholds; each breach is an audit event.",
    ),
    _ai(
        "73",
        "Reporting of serious incidents",
        "An incident register with the Art. 73 deadlines from when the incident was known; "
        "a failed verify or a serious breach opens one.",
    ),
    _ai(
        "86",
        "Right to explanation of individual decision-making",
        "The notice gives the person the main reasons for their decision, from the frozen "
        "explanation, and what would have changed the model's recommendation.",
    ),
    _gdpr(
        "5(1)(c)",
        "Data minimisation",
        "Reviewers see only the columns of fields.display; personal columns only where "
        "declared, and only to the roles that need them.",
    ),
    _gdpr(
        "5(1)(e)",
        "Storage limitation",
        "`hilt retention apply` removes cases, predictions and decisions when their "
        "retention period ends.",
    ),
    _gdpr(
        "5(1)(f)",
        "Integrity and confidentiality",
        "Personal data sealed per subject; a tamper-evident audit log with signed "
        "checkpoints outside the database.",
    ),
    _gdpr(
        "6",
        "Lawfulness of processing",
        "The record of processing names the lawful basis of every table and file.",
    ),
    _gdpr(
        "13",
        "Information when data are collected from the subject",
        "The decision notice, in the use case's words from hilt.toml.",
    ),
    _gdpr(
        "14",
        "Information when data are not obtained from the subject",
        "The decision notice, in the use case's words from hilt.toml.",
    ),
    _gdpr(
        "15",
        "Right of access",
        "`hilt subject export`: everything held about the subject, audited.",
    ),
    _gdpr(
        "16",
        "Right to rectification",
        "`hilt subject rectify`: the new value supersedes the old for the next snapshot; "
        "history kept.",
    ),
    _gdpr(
        "17",
        "Right to erasure",
        "`hilt subject erase`: the subject's key is destroyed, no file keeps their data, "
        "and the log still verifies.",
    ),
    _gdpr(
        "18",
        "Right to restriction of processing",
        "`hilt subject restrict`: out of training and the queue until lifted.",
    ),
    _gdpr(
        "19",
        "Notifying recipients of rectification, erasure or restriction",
        "The store records which subjects' decisions each production system read; each "
        "reads its own feed of their changes (GET /v1/subject-changes) and acknowledges it "
        "(audited); the DPO records telling [processing] recipients (`hilt subject "
        "notify-recipients`); the export lists recipients and who was told when.",
    ),
    _gdpr(
        "20",
        "Right to data portability",
        "The export is JSON against a published schema (docs/subject-export.schema.json).",
    ),
    _gdpr(
        "21",
        "Right to object",
        "`hilt subject object`: out of training and the queue until lifted.",
    ),
    _gdpr(
        "22",
        "Automated individual decision-making",
        "No decision is solely automated: every scored case waits for a reviewer.",
    ),
    _gdpr(
        "22(3)",
        "Human intervention and contesting the decision",
        "`hilt subject contest`: the case comes first to another reviewer than the one who "
        "decided it.",
    ),
    _gdpr(
        "25",
        "Data protection by design and by default",
        "Personal columns sealed apart from the features, never shown to reviewers by "
        "default, never in logs, MLflow or executed notebooks.",
    ),
    _gdpr(
        "30",
        "Records of processing activities",
        "`hilt records`: one entry per table and file of the store; a table without one "
        "fails a test.",
    ),
    _gdpr(
        "32",
        "Security of processing",
        "Encryption per subject, authenticated identities with expiring tokens, roles "
        "enforced by the store, a tamper-evident log; verified online backups that hold no "
        "key, restored without bringing an erased subject back.",
    ),
    _gdpr(
        "33",
        "Notification of a personal data breach (72 h)",
        "An incident of kind personal-data breach carries its 72-hour deadline from when "
        "it was known.",
    ),
    _gdpr(
        "35",
        "Data-protection impact assessment",
        "[governance] records the DPIA's reference and date; `hilt check go-live` fails "
        "while it is missing, not yet done or past its review period.",
    ),
)


def by_name() -> dict[str, Obligation]:
    """The catalogue by name, in its order."""
    return {o.name: o for o in OBLIGATIONS}
