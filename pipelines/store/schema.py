"""The store's tables, created from the use-case settings.

Feature and personal columns come from hilt.toml; their names were checked against
``config.IDENTIFIER`` and are quoted here all the same.
"""

from __future__ import annotations

from hilt.pipelines.config import Column, Settings

SCHEMA_VERSION = "1"

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
    personal_cols = "".join(
        f",\n    {_column_sql(n, settings.columns[n])}" for n in settings.personal_columns
    )
    return [
        """CREATE TABLE meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
)""",
        # The only place where the external subject id appears.
        """CREATE TABLE identity (
    subject_ref VARCHAR PRIMARY KEY,
    external_subject_id VARCHAR NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL
)""",
        """CREATE TABLE cases (
    case_id VARCHAR PRIMARY KEY,
    subject_ref VARCHAR NOT NULL,
    ingest_seq BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
)""",
        f"""CREATE TABLE case_features (
    case_id VARCHAR PRIMARY KEY{feature_cols}
)""",
        # Personal-data columns, kept apart so they can be encrypted and erased per subject.
        f"""CREATE TABLE case_personal (
    case_id VARCHAR PRIMARY KEY,
    subject_ref VARCHAR NOT NULL{personal_cols}
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
    comment VARCHAR,
    time_on_item_ms BIGINT NOT NULL,
    model_shown BOOLEAN NOT NULL,
    undo_of VARCHAR,
    created_at TIMESTAMPTZ NOT NULL,
    seq BIGINT NOT NULL
)""",
        # At most one live lease per case: who holds it and until when.
        """CREATE TABLE leases (
    case_id VARCHAR PRIMARY KEY,
    reviewer VARCHAR NOT NULL,
    leased_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    seq BIGINT NOT NULL
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
    seq BIGINT NOT NULL
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
        """CREATE TABLE users (
    name VARCHAR PRIMARY KEY,
    roles VARCHAR[] NOT NULL,
    active BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
)""",
        # Only token hashes are stored; the token itself is shown once.
        """CREATE TABLE api_tokens (
    token_hash VARCHAR PRIMARY KEY,
    user_name VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    revoked BOOLEAN NOT NULL
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
        # Gold cases: holdout cases with known answers, served to every reviewer on their
        # own (automation-bias monitoring, EU AI Act Art. 14(4)(b)); never training labels.
        """CREATE TABLE gold_cases (
    case_id VARCHAR PRIMARY KEY,
    expected_label VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    added_by VARCHAR NOT NULL,
    added_at TIMESTAMPTZ NOT NULL,
    seq BIGINT NOT NULL
)""",
    ]


#: Tables whose rows a caller may count (``Store.counts``).
COUNTED_TABLES = (
    "cases",
    "identity",
    "case_features",
    "case_personal",
    "seed_labels",
    "predictions",
    "decisions",
    "leases",
    "contests",
    "snapshots",
    "users",
    "api_tokens",
    "audit_log",
    "gold_cases",
)
