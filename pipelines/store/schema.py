"""The store's tables, created from the use-case settings.

Feature and personal columns come from hilt.toml; their names were checked against
``config.IDENTIFIER`` and are quoted here all the same.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from hilt.pipelines.config import Column, Settings
from hilt.pipelines.errors import StoreError
from hilt.pipelines.store import sql

if TYPE_CHECKING:
    import duckdb

SCHEMA_VERSION = "5"  # 2: sealed personal data, subject keys; 3: gold cases; 4: issue 12;
# 5: issue 14 (outcomes, the incident register, disclosures to recipients and their
#    acknowledgements: GDPR Art. 19)

_SQL_TYPES = {
    "int": "BIGINT",
    "float": "DOUBLE",
    "category": "VARCHAR",
    "bool": "BOOLEAN",
    "string": "VARCHAR",
}


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _column_sql(name: str, col: Column) -> str:
    null = "" if col.nullable else " NOT NULL"
    return f"{quote(name)} {_SQL_TYPES[col.type]}{null}"


def create_statements(settings: Settings) -> list[str]:
    feature_cols = "".join(
        f",\n    {_column_sql(n, settings.columns[n])}" for n in settings.feature_only_columns
    )
    return [
        """CREATE TABLE meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
)""",
        # ---- issue 12, config drift: every version of hilt.toml the store recorded, with
        # its whole text. The store's settings are those of the version in force, never the
        # file's; the file must match it (see ops/config.py). state: in-force (exactly
        # one) | superseded | pending (at most one: a loosening waiting for a lead) |
        # rejected | withdrawn. ``diff``: canonical JSON of what changed (key names, the
        # values that may be shown, the keys that loosen a rule that protects people).
        """CREATE TABLE config_versions (
    version BIGINT PRIMARY KEY,
    sha256 VARCHAR NOT NULL,
    text VARCHAR NOT NULL,
    base_version BIGINT,
    state VARCHAR NOT NULL,
    diff VARCHAR NOT NULL,
    applied_by VARCHAR NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL,
    applied_seq BIGINT NOT NULL,
    decided_by VARCHAR,
    decided_at TIMESTAMPTZ,
    decided_seq BIGINT
)""",
        # The only place where the external subject id appears, and only sealed with the
        # subject's key; ``lookup`` is its HMAC under a key derived from the master key, so a
        # subject can be found by their id without the id being stored.
        """CREATE TABLE identity (
    subject_ref VARCHAR PRIMARY KEY,
    lookup VARCHAR NOT NULL UNIQUE,
    subject_id_sealed BLOB NOT NULL,
    seq BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
)""",
        # removed_seq: the event that removed the case's data (an erasure, or retention);
        # the row itself stays, so decisions and predictions keep their case.
        """CREATE TABLE cases (
    case_id VARCHAR PRIMARY KEY,
    subject_ref VARCHAR NOT NULL,
    ingest_seq BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    removed_seq BIGINT
)""",
        f"""CREATE TABLE case_features (
    case_id VARCHAR PRIMARY KEY{feature_cols}
)""",
        # Personal-data columns of a case, as one canonical JSON object sealed with the
        # subject's key (AES-256-GCM, bound to subject_ref, the ingest seq and the case id).
        """CREATE TABLE case_personal (
    case_id VARCHAR PRIMARY KEY,
    subject_ref VARCHAR NOT NULL,
    sealed BLOB NOT NULL
)""",
        # Labels that came with the data (label source 'original').
        """CREATE TABLE seed_labels (
    case_id VARCHAR PRIMARY KEY,
    label VARCHAR NOT NULL,
    ingest_seq BIGINT NOT NULL
)""",
        "CREATE SEQUENCE prediction_ids START 1",
        # No index: ids come from the sequence, and bulk ingest stays fast.
        """CREATE TABLE predictions (
    prediction_id BIGINT NOT NULL,
    case_id VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    score DOUBLE NOT NULL,
    label VARCHAR NOT NULL,
    explanation VARCHAR NOT NULL,
    batch_seq BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
)""",
        """CREATE TABLE decisions (
    decision_id VARCHAR PRIMARY KEY,
    request_id VARCHAR UNIQUE,
    case_id VARCHAR NOT NULL,
    prediction_id BIGINT,
    model_version VARCHAR,
    reviewer VARCHAR NOT NULL,
    reviewer_role VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    predicted_label VARCHAR,
    final_label VARCHAR,
    reason_code VARCHAR,
    comment_sealed VARCHAR,
    time_on_item_ms BIGINT NOT NULL,
    model_shown BOOLEAN NOT NULL,
    undo_of VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    seq BIGINT NOT NULL,
    explanation_sha256 VARCHAR
)""",
        # At most one live lease per case: who holds it and until when.
        """CREATE TABLE leases (
    case_id VARCHAR PRIMARY KEY,
    reviewer VARCHAR NOT NULL,
    leased_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    seq BIGINT NOT NULL
)""",
        # Superseding values (GDPR Art. 16): the latest as of a snapshot's seq wins. The value
        # is canonical JSON sealed with the subject's key, as in the audit payload.
        """CREATE TABLE rectifications (
    case_id VARCHAR NOT NULL,
    subject_ref VARCHAR NOT NULL,
    column_name VARCHAR NOT NULL,
    value_sealed VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
)""",
        # Restriction (Art. 18) and objection (Art. 21): out of training and of the review
        # queue from seq until lifted_seq.
        """CREATE TABLE restrictions (
    subject_ref VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    lifted_seq BIGINT
)""",
        # Subjects whose data is gone: erased on request (Art. 17) or past retention. No
        # personal data: the pseudonym, the event, and why.
        """CREATE TABLE removed_subjects (
    subject_ref VARCHAR PRIMARY KEY,
    reason VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    removed_at TIMESTAMPTZ NOT NULL
)""",
        # GDPR Art. 19: whose final decisions went to which recipient (a user with the
        # role system reading decisions; one row per subject per read, append-only), and
        # which recipient was told of the subjects' rectifications, erasures and
        # restrictions up to which seq (channel "api": the recipient acknowledged its feed,
        # for all its subjects, subject_ref NULL; "dpo": the data-protection officer
        # recorded telling a recipient of [processing] recipients about one subject).
        # No personal data: pseudonyms, seqs, names of users and recipients.
        """CREATE TABLE disclosures (
    recipient VARCHAR NOT NULL,
    subject_ref VARCHAR NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    disclosed_at TIMESTAMPTZ NOT NULL
)""",
        """CREATE TABLE recipient_notices (
    recipient VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    subject_ref VARCHAR,
    up_to_seq BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
)""",
        # A subject asked for human review of a case (GDPR Art. 22).
        """CREATE TABLE contests (
    case_id VARCHAR NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL,
    seq BIGINT NOT NULL
)""",
        # Training snapshots exported as Parquet (outside the database), with their digest.
        """CREATE TABLE snapshots (
    name VARCHAR PRIMARY KEY,
    as_of_seq BIGINT NOT NULL,
    sha256 VARCHAR NOT NULL,
    rows BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    seq BIGINT NOT NULL,
    regenerated_from VARCHAR,
    removed_seq BIGINT
)""",
        # One row: whether a lead has halted scoring and retraining (EU AI Act Art. 14(4)(e)).
        """CREATE TABLE system_state (
    halted BOOLEAN NOT NULL,
    changed_by VARCHAR,
    reason VARCHAR,
    changed_at TIMESTAMPTZ,
    seq BIGINT
)""",
        "INSERT INTO system_state VALUES (false, NULL, NULL, NULL, NULL)",
        # Issue 12 (identity: users and tokens): in_config, disabled_seq; a disabled user
        # (active false) can no longer act in any mode, and their tokens are revoked.
        """CREATE TABLE users (
    name VARCHAR PRIMARY KEY,
    roles VARCHAR[] NOT NULL,
    active BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    in_config BOOLEAN NOT NULL,
    disabled_seq BIGINT
)""",
        # Only token hashes are stored; the token itself is shown once. Issue 12 (identity):
        # expires_at ([access] token_days after issue), revoked_seq (the revoking event).
        """CREATE TABLE api_tokens (
    token_hash VARCHAR PRIMARY KEY,
    user_name VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    revoked BOOLEAN NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_seq BIGINT
)""",
        # Append-only, hash-chained. The entry is the canonical JSON the hash covers.
        """CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    entry VARCHAR NOT NULL,
    prev_hash VARCHAR NOT NULL,
    hash VARCHAR NOT NULL
)""",
        """CREATE VIEW audit_events AS
SELECT seq,
       json_extract_string(entry, '$.ts') AS ts,
       json_extract_string(entry, '$.actor') AS actor,
       json_extract_string(entry, '$.role') AS role,
       json_extract_string(entry, '$.action') AS action,
       json_extract_string(entry, '$.object_type') AS object_type,
       json_extract_string(entry, '$.object_id') AS object_id,
       json_extract(entry, '$.payload') AS payload,
       prev_hash, hash
FROM audit_log""",
        # Gold cases: holdout cases with known answers (their seed labels, kept nowhere else,
        # so they are erased with the case), served to every reviewer on their own
        # (automation-bias monitoring, EU AI Act Art. 14(4)(b)); never training labels.
        """CREATE TABLE gold_cases (
    case_id VARCHAR PRIMARY KEY,
    model_version VARCHAR NOT NULL,
    added_by VARCHAR NOT NULL,
    added_at TIMESTAMPTZ NOT NULL,
    seq BIGINT NOT NULL
)""",
        # ---- issue 12, the model registry: the versions the store knows and which may
        # score. ``model`` is "<registered name>/v<version>" (what predictions name);
        # ``evaluation`` the canonical JSON of what the run reported and the store's own
        # gate checks on it; state: challenger | champion | rejected | retired | superseded.
        """CREATE TABLE models (
    model VARCHAR PRIMARY KEY,
    model_sha256 VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    author VARCHAR NOT NULL,
    gate VARCHAR NOT NULL,
    evaluation VARCHAR NOT NULL,
    state VARCHAR NOT NULL,
    shadow BOOLEAN NOT NULL,
    registered_at TIMESTAMPTZ NOT NULL,
    registered_seq BIGINT NOT NULL,
    decided_by VARCHAR,
    decided_seq BIGINT
)""",
        # Predictions of a version a lead allowed for shadow scoring: kept apart, so that
        # nothing that serves reviewers or decides a case can ever read them.
        """CREATE TABLE shadow_predictions (
    prediction_id BIGINT NOT NULL,
    case_id VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    score DOUBLE NOT NULL,
    label VARCHAR NOT NULL,
    explanation VARCHAR NOT NULL,
    batch_seq BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
)""",
        # ---- issue 14: outcomes, the later truth about a case (e.g. default within 12
        # months), recorded in batches by `hilt outcomes` for post-market monitoring
        # (EU AI Act Art. 72). Never a training or holdout label: the snapshot reads
        # seed_labels and decisions only. Removed with the case's data (erasure, retention).
        """CREATE TABLE outcomes (
    case_id VARCHAR PRIMARY KEY,
    outcome VARCHAR NOT NULL,
    observed_at TIMESTAMPTZ NOT NULL,
    batch_seq BIGINT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
)""",
        # ---- issue 14, the incident register (ops/incidents.py): EU AI Act Art. 73, GDPR
        # Art. 33. The deadline is the store's (kind + known_at); the free text (summary,
        # notes, reasons, who was told) lives only here, the audit payloads carry its sha256.
        # verify_break_seq: the first broken seq a failed verify opened it for (once each).
        """CREATE TABLE incidents (
    incident_id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    serious BOOLEAN NOT NULL,
    source VARCHAR NOT NULL,
    summary VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    known_at TIMESTAMPTZ NOT NULL,
    deadline TIMESTAMPTZ,
    opened_by VARCHAR NOT NULL,
    opened_at TIMESTAMPTZ NOT NULL,
    opened_seq BIGINT NOT NULL,
    verify_break_seq BIGINT,
    closed_by VARCHAR,
    closed_at TIMESTAMPTZ,
    close_reason VARCHAR,
    closed_seq BIGINT
)""",
        # Who was told (an authority, the provider), when, recorded by whom.
        """CREATE TABLE incident_notifications (
    incident_id VARCHAR NOT NULL,
    recipient VARCHAR NOT NULL,
    told_at TIMESTAMPTZ NOT NULL,
    recorded_by VARCHAR NOT NULL,
    seq BIGINT NOT NULL
)""",
        """CREATE TABLE incident_notes (
    incident_id VARCHAR NOT NULL,
    author VARCHAR NOT NULL,
    noted_at TIMESTAMPTZ NOT NULL,
    note VARCHAR NOT NULL,
    seq BIGINT NOT NULL
)""",
    ]


#: Tables whose rows a caller may count (``Store.counts``).
COUNTED_TABLES = (
    "config_versions",  # issue 12, config drift
    "cases",
    "identity",
    "case_features",
    "case_personal",
    "seed_labels",
    "predictions",
    "decisions",
    "leases",
    "rectifications",
    "restrictions",
    "removed_subjects",
    "contests",
    "disclosures",
    "recipient_notices",
    "snapshots",
    "users",
    "api_tokens",
    "audit_log",
    "gold_cases",
    "models",
    "shadow_predictions",
    "outcomes",  # issue 14
    "incidents",  # issue 14
    "incident_notifications",
    "incident_notes",
)


_CREATED = re.compile(r"CREATE\s+(?:TABLE|VIEW)\s+(\w+)", re.IGNORECASE)


def object_names(settings: Settings) -> list[str]:
    """Every table and view a store of this use case has, sorted (no connection needed)."""
    found = (_CREATED.match(s.strip()) for s in create_statements(settings))
    return sorted({m.group(1) for m in found if m is not None})


def check_schema_version(con: duckdb.DuckDBPyConnection, db_path: Path) -> None:
    """Refuse a store made by another version of hilt's schema, with what to do."""
    import duckdb

    try:
        found = sql.scalar(con, "SELECT value FROM meta WHERE key = 'schema_version'")
    except duckdb.Error:
        found = None
    if found != SCHEMA_VERSION:
        raise StoreError(
            f"{db_path} has store schema {found or 'unknown'}, this hilt "
            f"needs schema {SCHEMA_VERSION} (sealed personal data, subject keys, gold cases); "
            "create a new workspace with `hilt init` (a demo workspace can simply be deleted)"
        )
