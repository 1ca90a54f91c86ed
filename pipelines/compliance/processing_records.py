"""The record of processing activities (GDPR Art. 30), generated from the config and the
schema: `hilt records --workspace DIR`.

One entry per table of the store and per kind of file in the workspace: purpose, lawful
basis, categories of data subjects and of data, retention, recipients. The categories of
case data come from hilt.toml (which columns are features, personal data, protected
attributes); retention periods from ``[retention]``; the controller, the DPO contact, the
lawful basis of the use case and extra recipients from ``[processing]``. A test fails when
the store has a table without an entry here (``missing_entries``), so the register cannot fall
behind the schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from hilt.pipelines.config import MIN_AUDIT_RETENTION_DAYS, Settings
from hilt.pipelines.store.schema import object_names

LOG_BASIS = (
    "GDPR Art. 6(1)(c): legal obligation to keep automatically generated logs of a "
    "high-risk AI system (EU AI Act Arts. 12, 19, 26(6))"
)
SECURITY_BASIS = "GDPR Art. 6(1)(f) and Art. 32: security of processing (access control)"
OVERSIGHT_BASIS = (
    "GDPR Art. 6(1)(c): human oversight of a high-risk AI system (EU AI Act Arts. 14, 26)"
)
RIGHTS_BASIS = "GDPR Art. 6(1)(c): honouring data-subject rights (Arts. 15-22)"
INCIDENT_BASIS = (
    "GDPR Art. 6(1)(c): reporting serious incidents and personal-data breaches "
    "(EU AI Act Art. 73, GDPR Arts. 33-34)"
)

APPLICANTS = "data subjects of the use case (the people the decisions are about)"
STAFF = "staff: reviewers, leads, data scientists, auditors, DPO, administrators"


@dataclass(frozen=True)
class ProcessingEntry:
    name: str
    kind: str  # "table" or "file"
    purpose: str
    lawful_basis: str
    data_subjects: str
    categories: str
    retention: str
    recipients: str


def _days(n: int) -> str:
    return f"{n} days ({n / 365.25:.1f} years)"


def register(settings: Settings) -> list[ProcessingEntry]:
    """Every entry of the register for this use case."""
    r = settings.retention
    p = settings.processing
    personal = ", ".join(settings.personal_columns) or "none"
    features = ", ".join(settings.feature_only_columns) or "none"
    protected = ", ".join(settings.fields.protected) or "none"
    shown = ", ".join(settings.fields.display) or "none"
    case_basis = p.lawful_basis
    extra = "; ".join(p.recipients)
    reviewers = f"reviewers (only: {shown}), leads, data scientists, DPO" + (
        f"; {extra}" if extra else ""
    )
    log_retention = _days(r.audit_log_days) + f", never less than {MIN_AUDIT_RETENTION_DAYS} days"

    def t(
        name: str, purpose: str, basis: str, who: str, cats: str, keep: str, to: str
    ) -> ProcessingEntry:
        return ProcessingEntry(name, "table", purpose, basis, who, cats, keep, to)

    def f(
        name: str, purpose: str, basis: str, who: str, cats: str, keep: str, to: str
    ) -> ProcessingEntry:
        return ProcessingEntry(name, "file", purpose, basis, who, cats, keep, to)

    uc = settings.use_case.name
    return [
        t(
            "meta",
            "workspace facts (schema version, use case, holdout salt)",
            "not personal data",
            "none",
            "none",
            "life of the workspace",
            "administrators",
        ),
        t(
            "config_versions",
            "every version of hilt.toml the store recorded, which one is in force, who "
            "applied and who approved it (a loosening of a rule that protects people needs a "
            "lead's second approval)",
            LOG_BASIS,
            STAFF,
            "the config text (staff user names and roles, the controller's contact details), "
            "who applied, approved or rejected it, time",
            "life of the workspace",
            "administrators, leads, auditors",
        ),
        t(
            "identity",
            "find a data subject by their own id to honour their rights",
            RIGHTS_BASIS,
            APPLICANTS,
            "external subject id, sealed with the subject's key; its keyed hash",
            f"until the subject's last case is removed ({_days(r.cases_days)}) or erased",
            "DPO",
        ),
        t(
            "cases",
            f"the cases of {uc} under review, by pseudonym",
            case_basis,
            APPLICANTS,
            "case id, pseudonymous subject_ref, times; a tombstone after removal",
            log_retention,
            "every role",
        ),
        t(
            "case_features",
            "model inputs shown to reviewers and used for training",
            case_basis,
            APPLICANTS,
            f"features: {features}",
            _days(r.cases_days),
            reviewers,
        ),
        t(
            "case_personal",
            "personal data kept apart, sealed per subject",
            case_basis,
            APPLICANTS,
            f"personal columns: {personal} (protected attributes: {protected}),"
            " sealed with the subject's key",
            _days(r.cases_days),
            "DPO, data scientists (training and subgroup metrics), administrators",
        ),
        t(
            "seed_labels",
            "known outcomes that came with the data (training, holdout)",
            case_basis,
            APPLICANTS,
            f"outcome ({settings.target.column})",
            _days(r.cases_days),
            "data scientists",
        ),
        t(
            "rectifications",
            "superseding values (GDPR Art. 16)",
            RIGHTS_BASIS,
            APPLICANTS,
            "the corrected column and value, sealed with the subject's key",
            _days(r.cases_days),
            "DPO, data scientists (training)",
        ),
        t(
            "restrictions",
            "restriction of and objection to processing (Arts. 18, 21)",
            RIGHTS_BASIS,
            APPLICANTS,
            "pseudonym, kind, when set and lifted",
            "until the subject is removed",
            "DPO, the store (queue and training)",
        ),
        t(
            "removed_subjects",
            "proof that a subject's data was erased or expired",
            LOG_BASIS,
            APPLICANTS,
            "pseudonym, reason, audit seq (no personal data)",
            log_retention,
            "auditors, DPO",
        ),
        t(
            "disclosures",
            "to which recipient (a production system reading decisions) each subject's "
            "decisions were disclosed, so that it can be told of their rectification, erasure "
            "or restriction (GDPR Art. 19)",
            RIGHTS_BASIS,
            APPLICANTS,
            "recipient (a user name), pseudonym, seqs of the decisions read, time (no "
            "personal data)",
            log_retention,
            "DPO, auditors",
        ),
        t(
            "recipient_notices",
            "proof that each recipient was told of the subjects' rectifications, erasures "
            "and restrictions (GDPR Art. 19)",
            RIGHTS_BASIS,
            APPLICANTS,
            "recipient, channel, pseudonym (when told of one subject), audit seqs, time",
            log_retention,
            "DPO, auditors",
        ),
        t(
            "predictions",
            "the model's output for each case, with its explanation",
            case_basis,
            APPLICANTS,
            "score, label, per-feature contributions, model version",
            _days(r.predictions_days),
            reviewers,
        ),
        t(
            "shadow_predictions",
            "the output of a model version a lead allowed to score in the shadow (compared "
            "with the champion's; never shown to reviewers, never queued)",
            case_basis,
            APPLICANTS,
            "score, label, per-feature contributions, model version",
            _days(r.predictions_days),
            "data scientists, leads",
        ),
        t(
            "models",
            "the model registry: which version may score, who trained and who approved it "
            "(EU AI Act Arts. 14, 17)",
            OVERSIGHT_BASIS,
            STAFF,
            "version, model sha256, run id, author, the gate's verdict on the holdout "
            "metrics (aggregates, no rows), state, the approving lead",
            "life of the workspace",
            "every role",
        ),
        t(
            "decisions",
            "the human decision on each case (EU AI Act Art. 14)",
            OVERSIGHT_BASIS,
            f"{APPLICANTS}; {STAFF}",
            "reviewer, action, final label, reason code, comment (sealed with the subject's"
            " key), time on item, whether the model output was shown",
            _days(r.decisions_days),
            "leads, auditors, data scientists, the production system",
        ),
        t(
            "leases",
            "which reviewer holds which case, for how long",
            OVERSIGHT_BASIS,
            STAFF,
            "reviewer name, case id, times",
            f"until decided (lease {settings.review.lease_seconds} s)",
            "the store",
        ),
        t(
            "contests",
            "requests for human review of a decision (GDPR Art. 22)",
            RIGHTS_BASIS,
            APPLICANTS,
            "case id, time",
            log_retention,
            "reviewers, leads, DPO",
        ),
        t(
            "snapshots",
            "which training snapshot files exist, with their digests",
            case_basis,
            APPLICANTS,
            "file name, seq, sha256, row count (no rows)",
            "life of the workspace",
            "data scientists, auditors",
        ),
        t(
            "system_state",
            "halt and resume of scoring and retraining (Art. 14(4)(e))",
            OVERSIGHT_BASIS,
            STAFF,
            "who halted or resumed, reason, time",
            "life of the workspace",
            "leads, auditors",
        ),
        t(
            "gold_cases",
            "gold cases: holdout cases whose known answer (their seed label) measures "
            "reviewers' accuracy and automation bias (Art. 14(4)(b)); never training labels",
            OVERSIGHT_BASIS,
            APPLICANTS,
            "case id, model version, who added it, time (the answer stays in seed_labels)",
            f"as the case ({_days(r.cases_days)}); its answer goes with the case's erasure",
            "leads, auditors",
        ),
        t(
            "outcomes",
            "post-market monitoring (EU AI Act Art. 72): the later truth about a scored case "
            "(e.g. default within 12 months), for the model's realised performance; never a "
            "training or holdout label",
            OVERSIGHT_BASIS,
            APPLICANTS,
            "case id, outcome class, when observed, batch audit seq",
            f"as the case ({_days(r.cases_days)}); removed with the case's data",
            "data scientists, leads, auditors (aggregates in monitoring runs)",
        ),
        t(
            "incidents",
            "the incident register: serious incidents (EU AI Act Art. 73), personal-data "
            "breaches (GDPR Art. 33) and malfunctions, with their deadlines",
            INCIDENT_BASIS,
            STAFF,
            "kind, status, summary (free text: no personal data), known-at, deadline, who "
            "opened and closed it, audit seqs",
            log_retention,
            "leads, DPO, administrators, auditors",
        ),
        t(
            "incident_notifications",
            "who was told of an incident (an authority, the provider) and when",
            INCIDENT_BASIS,
            STAFF,
            "recipient, time told, who recorded it, audit seq",
            log_retention,
            "leads, DPO, administrators, auditors",
        ),
        t(
            "incident_notes",
            "notes on an incident's investigation",
            INCIDENT_BASIS,
            STAFF,
            "author, time, note (free text: no personal data), audit seq",
            log_retention,
            "leads, DPO, administrators, auditors",
        ),
        t(
            "users",
            "who may do what",
            SECURITY_BASIS,
            STAFF,
            "user name, roles",
            "while the user has access",
            "administrators, auditors",
        ),
        t(
            "api_tokens",
            "authenticating callers of the store service",
            SECURITY_BASIS,
            STAFF,
            "sha256 of each token (never the token), owner, time",
            "until revoked or expired ([access] token_days)",
            "the store",
        ),
        t(
            "audit_log",
            "the tamper-evident log of every event (EU AI Act Arts. 12, 19)",
            LOG_BASIS,
            f"{APPLICANTS}; {STAFF}",
            "actor, role, action, object ids, payload; personal values only sealed with the"
            " subject's key (shredded on erasure)",
            log_retention,
            "auditors, leads, DPO, data scientists, administrators",
        ),
        t(
            "audit_events",
            "a readable view of audit_log (no data of its own)",
            LOG_BASIS,
            f"{APPLICANTS}; {STAFF}",
            "as audit_log",
            "as audit_log",
            "as audit_log",
        ),
        f(
            "keys/master.key",
            "wraps the subject keys; without it nothing personal can be read",
            SECURITY_BASIS,
            "none",
            "a random key",
            "life of the workspace",
            "the store",
        ),
        f(
            "keys/subject-keys.sqlite",
            "one key per data subject (crypto-shredding)",
            RIGHTS_BASIS,
            APPLICANTS,
            "pseudonym, wrapped key",
            "destroyed when the subject is erased or expires",
            "the store",
        ),
        f(
            "keys/erasures.jsonl",
            "the erasure ledger: which subjects were forgotten, replayed when a backup is "
            "restored so that an erasure made after the backup stays applied",
            RIGHTS_BASIS,
            APPLICANTS,
            "pseudonym of an erased subject, reason, audit seq",
            "life of the workspace and of its backups",
            "the store",
        ),
        f(
            "keys/audit-signing-key.pem",
            "signs audit checkpoints",
            LOG_BASIS,
            "none",
            "a signing key",
            "life of the workspace",
            "the store",
        ),
        f(
            "audit/checkpoints.jsonl",
            "signed checkpoints of the audit chain",
            LOG_BASIS,
            "none",
            "seq, head hash, time, signature",
            "life of the workspace",
            "auditors",
        ),
        f(
            "snapshots/*.parquet",
            "training data as of an audit seq (reproducible retraining)",
            case_basis,
            APPLICANTS,
            f"case id, features, protected attributes ({protected}), label and its provenance",
            f"regenerated without a subject when they are erased or expire ({_days(r.cases_days)})",
            "data scientists",
        ),
        f(
            "runs/*.ipynb",
            "executed retraining and scoring notebooks (Annex IV evidence)",
            LOG_BASIS,
            "none (counts, metrics, digests; checked to hold no personal data)",
            "parameters, metrics, plots",
            log_retention,
            "auditors, data scientists, leads",
        ),
        f(
            (
                f"MLflow server {settings.tracking.uri} ([tracking] uri)"
                if settings.tracking.uri
                else "mlflow.db, mlartifacts/"
            ),
            "experiment tracking and the model registry",
            LOG_BASIS,
            "none (no rows: schema, counts, digests, synthetic input examples)",
            "params, metrics, models, executed notebooks",
            log_retention,
            "data scientists, leads, auditors",
        ),
    ]


#: The name a CREATE TABLE / CREATE VIEW statement of the store's schema gives.


def missing_entries(settings: Settings, objects: Iterable[str] | None = None) -> list[str]:
    """Tables and views of the store (``objects``; by default all of them, as
    ``store.schema.object_names`` lists them) that the register does not describe, sorted."""
    described = {e.name for e in register(settings) if e.kind == "table"}
    names = object_names(settings) if objects is None else sorted(set(objects))
    return [name for name in names if name not in described]


def as_markdown(settings: Settings) -> str:
    p = settings.processing
    lines = [
        f"# Record of processing activities: {settings.use_case.name}",
        "",
        "GDPR Art. 30(1). Generated by `hilt records` from hilt.toml and the store's schema.",
        "",
        f"- Controller: {p.controller}",
        f"- Data-protection officer: {p.dpo_contact}",
        f"- Purpose of the use case: {settings.use_case.purpose or settings.use_case.description}",
        f"- Transfers to third countries: {p.transfers}",
        "- Security measures (Art. 32): personal data sealed per subject (AES-256-GCM), keys"
        " outside the database; hash-chained, signed audit log; role-based access enforced"
        " by the store; API tokens stored as hashes only.",
        "",
        "| table / file | purpose | lawful basis | data subjects | categories of data |"
        " retention | recipients |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in register(settings):
        cells = [
            e.name,
            e.purpose,
            e.lawful_basis,
            e.data_subjects,
            e.categories,
            e.retention,
            e.recipients,
        ]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def as_json(settings: Settings) -> list[dict[str, str]]:
    return [asdict(e) for e in register(settings)]
