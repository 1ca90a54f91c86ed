"""The store's operations on one open DuckDB connection, on behalf of one user.

Both modes run exactly this code: the embedded mode opens a short-lived connection under a
cross-process lock for each call; the service keeps one connection and one StoreCore per
request. Roles are enforced here, so they hold in both modes.

Every state change writes its audit row in the same transaction as the change (DuckDB has
no triggers, so the store does it itself).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import duckdb
import polars as pl

from hilt.pipelines.config import ROLES, USER_NAME, Settings
from hilt.pipelines.errors import (
    AuthenticationError,
    ConflictError,
    HiltError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
    SystemHalted,
)
from hilt.pipelines.store import (
    double_review,
    explanations,
    oversight_stats,
    personal_data,
    review_queue,
    sql,
)
from hilt.pipelines.store.audit import batch_digest
from hilt.pipelines.store.audit.chain import (
    GENESIS_HASH,
    AuditEntry,
    canonical_json,
    chain_hash,
    utc_timestamp,
)
from hilt.pipelines.store.audit.checkpoints import (
    append_checkpoint,
    load_signing_key,
    sign_checkpoint,
)
from hilt.pipelines.store.audit.gold_digest import digest as gold_digest
from hilt.pipelines.store.ops import retention, snapshot, subject_rights
from hilt.pipelines.store.records import (
    AuditEvent,
    AuditHead,
    AuditPage,
    AuditQuery,
    CaseRecord,
    CheckpointRecord,
    ConflictRecord,
    Decision,
    DecisionRequest,
    ErasureReport,
    FeatureRange,
    GoldResult,
    IngestResult,
    LeasedCase,
    OversightReport,
    Prediction,
    QueueStatus,
    RetentionReport,
    SnapshotRecord,
    SubjectAction,
    SubjectExport,
    SystemState,
    TokenGrant,
    User,
    VerifyReport,
    halted_message,
)
from hilt.pipelines.store.schema import COUNTED_TABLES, SCHEMA_VERSION, create_statements, quote
from hilt.pipelines.store.subject_keys import KeyRing
from hilt.pipelines.store.validation import clean_cases, clean_predictions
from hilt.pipelines.workspace import Workspace

Clock = Callable[[], datetime]
T = TypeVar("T")

ALL_ROLES = frozenset(ROLES) - {"gateway"}
#: operation → roles allowed to perform it. The auditor may read everything, write nothing.
PERMISSIONS: dict[str, frozenset[str]] = {
    "ingest_cases": frozenset({"admin", "system", "data-scientist"}),
    "add_predictions": frozenset({"admin", "system", "data-scientist"}),
    "record_decision": frozenset({"reviewer", "lead"}),
    "get_case": ALL_ROLES,
    "decisions": frozenset({"lead", "data-scientist", "auditor", "admin", "system", "dpo"}),
    "audit_read": frozenset({"auditor", "admin", "lead", "dpo", "data-scientist"}),
    "checkpoint": frozenset({"admin", "system", "lead"}),
    "add_user": frozenset({"admin"}),
    "counts": ALL_ROLES,
    "next_case": frozenset({"reviewer", "lead"}),
    "queue_status": ALL_ROLES,
    "contest": frozenset({"dpo", "admin"}),
    "feature_profile": ALL_ROLES,
    "case_frame": frozenset({"data-scientist", "admin", "system"}),
    "snapshot": frozenset({"data-scientist", "admin", "system"}),
    "halt": frozenset({"lead"}),
    "system_state": ALL_ROLES,
    "record_event": frozenset({"data-scientist", "admin", "system", "lead"}),
    # Data-subject rights are the data-protection officer's (GDPR Arts. 15-22).
    "subject_rights": frozenset({"dpo"}),
    "retention": frozenset({"admin", "system", "dpo"}),
    "get_prediction": frozenset({"auditor", "admin", "lead", "dpo", "data-scientist"}),
    # Oversight (EU AI Act Art. 14): gold cases, the oversight report, adjudication.
    "gold": frozenset({"data-scientist", "admin"}),
    "oversight_read": frozenset({"lead", "auditor", "admin"}),
    "adjudicate": frozenset({"lead"}),
}
#: Actions a caller may append with ``record_event`` (the events of runs and models); every
#: other action is written by the store itself, in the transaction of its change.
EVENT_PREFIXES: tuple[str, ...] = ("run.", "model.")
EVENT_ACTION = re.compile(r"^[a-z]+\.[a-z_]{1,48}$")
#: Largest canonical JSON of a recorded event's payload (bytes).
MAX_EVENT_PAYLOAD = 16_384
#: Roles that see every personal-data column of a case; others see only display_personal.
PERSONAL_READERS = frozenset({"admin", "dpo", "data-scientist", "system"})

TOKEN_PREFIX = "hilt_"


def system_clock() -> datetime:
    return datetime.now(UTC)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _cap_accepted(frame: pl.DataFrame, share: float) -> tuple[pl.DataFrame, int]:
    """Keep at most ``share`` of the training rows with reviewer-accepted labels."""
    accepted = (pl.col("split") == "train") & (pl.col("label_source") == "reviewer-accepted")
    n_accepted = frame.filter(accepted).height
    if share >= 1.0 or n_accepted == 0:
        return frame, 0
    n_other = frame.filter((pl.col("split") == "train") & ~accepted).height
    keep = int(share * n_other / (1.0 - share)) if share > 0 else 0
    if keep >= n_accepted:
        return frame, 0
    kept = frame.filter(accepted).sort("bucket", "case_id").head(keep)
    return pl.concat([frame.filter(~accepted), kept]), n_accepted - keep


def _text_ok(value: str | None, name: str, limit: int, *, multiline: bool = False) -> None:
    if value is None:
        return
    if len(value) > limit:
        raise InputError(f"{name} is longer than {limit} characters")
    bad = "\x00" if multiline else "\x00\n\r"
    if any(c in value for c in bad):
        raise InputError(f"{name} contains control characters")


def _iso(value: datetime) -> str:
    return utc_timestamp(value)


#: The predictions columns that ``_prediction`` reads, in its order.
_PREDICTION_COLUMNS = (
    "prediction_id, case_id, model_version, score, label, explanation, created_at, batch_seq"
)


def _prediction(p: tuple[Any, ...]) -> Prediction:
    """A Prediction from a row of ``SELECT _PREDICTION_COLUMNS FROM predictions``."""
    return Prediction(
        prediction_id=int(p[0]),
        case_id=p[1],
        model_version=p[2],
        score=float(p[3]),
        label=p[4],
        explanation=json.loads(p[5]),
        created_at=_iso(p[6]),
        batch_seq=int(p[7]),
    )


class HeadCache:
    """The audit head as last committed, kept by the one process that owns the store.

    Only the owner writes, so it need not ask the database for the head before each event.
    A fresh cache (embedded mode: one per operation) knows nothing and asks.
    """

    def __init__(self) -> None:
        self.committed: tuple[int, str] | None = None
        self.pending: tuple[int, str] | None = None

    def commit(self) -> None:
        if self.pending is not None:
            self.committed = self.pending
        self.pending = None

    def forget(self) -> None:
        self.committed = None
        self.pending = None


class StoreCore:
    """Store operations on ``con`` for ``actor``. Not thread-safe; one per connection."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        settings: Settings,
        workspace: Workspace,
        actor: User,
        clock: Clock = system_clock,
        head: HeadCache | None = None,
        in_group: bool = False,
        keys: KeyRing | None = None,
    ) -> None:
        self.con = con
        self.settings = settings
        self.workspace = workspace
        self.actor = actor
        self.clock = clock
        self.head = head or HeadCache()
        #: Part of a group commit: the caller owns the transaction (see StoreService).
        self.in_group = in_group
        #: Whether this operation has written anything (a failed one that has not can be
        #: dropped from a group without undoing the others).
        self.wrote = False
        #: The master key and the subject keys; opened only by operations on personal data.
        self.keys = keys if keys is not None else workspace.key_ring()

    # ------------------------------------------------------------------ plumbing
    def _role_for(self, operation: str) -> str:
        allowed = PERMISSIONS[operation]
        for role in self.actor.roles:
            if role in allowed:
                return role
        raise PermissionDeniedError(
            f"user {self.actor.name!r} (roles: {', '.join(self.actor.roles) or 'none'}) "
            f"may not {operation.replace('_', ' ')}"
        )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        if self.in_group:
            yield
            return
        try:
            self.con.execute("BEGIN TRANSACTION")
        except duckdb.Error as e:
            raise StoreError(f"cannot start a transaction: {type(e).__name__}") from e
        try:
            yield
            self.con.execute("COMMIT")
            self.head.commit()
        except HiltError:
            self._rollback()
            raise
        except duckdb.Error as e:
            self._rollback()
            raise StoreError(f"the store rejected the write ({type(e).__name__}): {e}") from e
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        self.head.forget()
        self.con.execute("ROLLBACK")

    def _current_head(self) -> tuple[int, str]:
        """(seq, hash) of the log's last event, including one written in this transaction."""
        known = self.head.pending or self.head.committed
        if known is not None:
            return known
        row = sql.one(
            self.con,
            "SELECT seq, hash FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)",
        )
        found = (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)
        self.head.committed = found
        return found

    def _append_audit(
        self,
        role: str,
        action: str,
        object_type: str,
        object_id: str,
        payload: dict[str, Any],
        now: datetime,
        expect_seq: int | None = None,
    ) -> int:
        """Chain one event onto the log. Call inside the change's transaction."""
        last_seq, prev = self._current_head()
        seq = last_seq + 1
        if expect_seq is not None and seq != expect_seq:
            raise StoreError("the audit log moved during a write; nothing was written")
        entry = AuditEntry(
            seq=seq,
            ts=_iso(now),
            actor=self.actor.name,
            role=role,
            action=action,
            object_type=object_type,
            object_id=object_id,
            payload=payload,
        ).canonical()
        digest = chain_hash(prev, entry)
        self.wrote = True
        self.con.execute("INSERT INTO audit_log VALUES (?, ?, ?, ?)", [seq, entry, prev, digest])
        self.head.pending = (seq, digest)
        return seq

    def _next_seq(self) -> int:
        """The seq the next audit event will get (inside the writing transaction)."""
        return self._current_head()[0] + 1

    # ------------------------------------------------------------------ set-up
    def create_schema(
        self, config_sha256: str, public_key: str, holdout_salt: str | None = None
    ) -> None:
        """Create the tables and seed the users of the config (once, at init).

        ``holdout_salt`` fixes which labelled cases form the holdout; random unless given
        (a simulation passes its seed so that its runs are repeatable)."""
        now = self.clock()
        with self._transaction():
            for statement in create_statements(self.settings):
                self.con.execute(statement)
            self.con.execute(
                "INSERT INTO meta VALUES ('schema_version', ?), ('config_sha256', ?), "
                "('use_case', ?), ('holdout_salt', ?)",
                [
                    SCHEMA_VERSION,
                    config_sha256,
                    self.settings.use_case.name,
                    holdout_salt or secrets.token_hex(16),
                ],
            )
            users = self.settings.access.users
            for name, roles in users.items():
                self.con.execute(
                    "INSERT INTO users VALUES (?, ?, true, ?)", [name, list(roles), now]
                )
            self._append_audit(
                "admin",
                "workspace.init",
                "workspace",
                self.settings.use_case.name,
                {
                    "schema_version": SCHEMA_VERSION,
                    "config_sha256": config_sha256,
                    "audit_public_key": public_key,
                    "users": {n: list(r) for n, r in users.items()},
                },
                now,
            )

    def check_schema_version(self) -> None:
        """Refuse a store made by another version of hilt's schema, with what to do."""
        try:
            found = sql.scalar(self.con, "SELECT value FROM meta WHERE key = 'schema_version'")
        except duckdb.Error:
            found = None
        if found != SCHEMA_VERSION:
            raise StoreError(
                f"{self.workspace.db_path} has store schema {found or 'unknown'}, this hilt "
                f"needs schema {SCHEMA_VERSION} (sealed personal data, subject keys, gold cases); "
                "create a new workspace with `hilt init` (a demo workspace can simply be deleted)"
            )

    # ------------------------------------------------------------------ identity
    def whoami(self) -> User:
        return self.actor

    @staticmethod
    def lookup_user(con: duckdb.DuckDBPyConnection, name: str) -> User:
        row = sql.one(con, "SELECT roles FROM users WHERE name = ? AND active", [name])
        if row is None:
            raise AuthenticationError(f"unknown user {name!r}")
        return User(name=name, roles=list(row[0]))

    @staticmethod
    def authenticate(con: duckdb.DuckDBPyConnection, token: str) -> User:
        row = sql.one(
            con,
            "SELECT u.name, u.roles FROM api_tokens t JOIN users u ON u.name = t.user_name "
            "WHERE t.token_hash = ? AND NOT t.revoked AND u.active",
            [token_hash(token)],
        )
        if row is None:
            raise AuthenticationError("invalid or revoked token")
        return User(name=str(row[0]), roles=list(row[1]))

    def add_user(self, name: str, role: str) -> TokenGrant:
        acting_role = self._role_for("add_user")
        if not USER_NAME.match(name):
            raise InputError(f"user name must match {USER_NAME.pattern}")
        if role not in ROLES:
            raise InputError(f"unknown role {role!r}; roles are: {', '.join(ROLES)}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        hashed = token_hash(token)
        now = self.clock()
        with self._transaction():
            row = sql.one(self.con, "SELECT roles FROM users WHERE name = ?", [name])
            if row is None:
                roles = [role]
                self.con.execute("INSERT INTO users VALUES (?, ?, true, ?)", [name, roles, now])
            else:
                roles = list(row[0])
                if role not in roles:
                    roles.append(role)
                    self.con.execute(
                        "UPDATE users SET roles = ?, active = true WHERE name = ?", [roles, name]
                    )
            self.con.execute("INSERT INTO api_tokens VALUES (?, ?, ?, false)", [hashed, name, now])
            self._append_audit(
                acting_role,
                "user.token_issued",
                "user",
                name,
                {"roles": roles, "role_added": role, "token_id": hashed[:16]},
                now,
            )
        return TokenGrant(user=name, roles=roles, token=token)

    def revoke_tokens(self, name: str) -> int:
        """Revoke every active token of ``name``; returns how many were revoked."""
        acting_role = self._role_for("add_user")
        now = self.clock()
        with self._transaction():
            n = int(
                sql.scalar(
                    self.con,
                    "SELECT count(*) FROM api_tokens WHERE user_name = ? AND NOT revoked",
                    [name],
                )
            )
            if n:
                self.con.execute(
                    "UPDATE api_tokens SET revoked = true WHERE user_name = ? AND NOT revoked",
                    [name],
                )
                self._append_audit(
                    acting_role, "user.tokens_revoked", "user", name, {"revoked": n}, now
                )
        return n

    # ------------------------------------------------------------------ cases
    def ingest_cases(self, frame: pl.DataFrame) -> IngestResult:
        """Add a batch of cases. A subject seen for the first time gets a random
        ``subject_ref`` and a key of their own; their external id and the personal columns
        are stored only sealed with that key (see ``subject_keys``)."""
        role = self._role_for("ingest_cases")
        clean = clean_cases(frame, self.settings)
        now = self.clock()
        master = self.keys.master  # no master key: a clear error before anything is written
        subject_ids = clean.subject_ids.to_list()
        lookup_of = {sid: master.lookup(sid) for sid in dict.fromkeys(subject_ids)}
        lookups = [lookup_of[sid] for sid in subject_ids]
        batch = pl.DataFrame({"case_id": clean.case_ids, "lookup": lookups})
        feats, labels = clean.features, clean.labels
        new_keys: dict[str, bytes] = {}
        try:
            with self._transaction():
                self.con.register("hilt_batch", batch)
                try:
                    clash = sql.one(
                        self.con,
                        "SELECT count(*) FROM hilt_batch b JOIN cases c USING (case_id)",
                    )
                    if clash and clash[0]:
                        rows = sql.one(
                            self.con,
                            "SELECT list(rn ORDER BY rn)[1:5] FROM (SELECT row_number() OVER ()"
                            " AS rn, case_id FROM hilt_batch) b"
                            " WHERE case_id IN (SELECT case_id FROM cases)",
                        )
                        raise ConflictError(
                            f"cases rejected, nothing was written:\n- {clash[0]} rows have case"
                            " ids that already exist (rows "
                            f"{', '.join(map(str, rows[0] if rows else []))})"
                        )
                    seq = self._next_seq()
                    known: dict[str, str] = dict(
                        self.con.execute(
                            "SELECT lookup, subject_ref FROM identity"
                            " WHERE lookup IN (SELECT DISTINCT lookup FROM hilt_batch)"
                        ).fetchall()
                    )
                    first_id = {lk: sid for sid, lk in lookup_of.items()}
                    fresh = {
                        lk: "subj_" + secrets.token_hex(16) for lk in first_id if lk not in known
                    }
                    new_keys = self.keys.store.create(fresh.values())
                    keys = {**self.keys.store.get(known.values()), **new_keys}
                    lost = [ref for ref in known.values() if ref not in keys]
                    if lost:
                        raise StoreError(
                            f"{len(lost)} known subjects have no key in the subject key store "
                            "(was keys/subject-keys.sqlite replaced?); nothing was written"
                        )
                    ref_of = {**known, **fresh}
                    subject_refs = [ref_of[lk] for lk in lookups]
                    identity = pl.DataFrame(
                        {
                            "subject_ref": [fresh[lk] for lk in fresh],
                            "lookup": list(fresh),
                            "subject_id_sealed": [
                                personal_data.seal_value(
                                    keys[fresh[lk]],
                                    first_id[lk],
                                    personal_data.SUBJECT_ID_PURPOSE,
                                    fresh[lk],
                                    seq,
                                    "",
                                ).encode("ascii")
                                for lk in fresh
                            ],
                        },
                        schema={
                            "subject_ref": pl.String,
                            "lookup": pl.String,
                            "subject_id_sealed": pl.Binary,
                        },
                    )
                    self.con.register("hilt_identity", identity)
                    self.con.execute(
                        "INSERT INTO identity SELECT subject_ref, lookup, subject_id_sealed, ?, ?"
                        " FROM hilt_identity",
                        [seq, now],
                    )
                    cases = pl.DataFrame({"case_id": clean.case_ids, "subject_ref": subject_refs})
                    self.con.register("hilt_cases", cases)
                    self.con.execute(
                        "INSERT INTO cases SELECT case_id, subject_ref, ?, ?, NULL FROM hilt_cases",
                        [seq, now],
                    )
                    self.con.register("hilt_features", feats)
                    self.con.execute("INSERT INTO case_features SELECT * FROM hilt_features")
                    sealed = personal_data.seal_cases(
                        clean.personal, subject_refs, keys, seq, self.settings.personal_columns
                    )
                    personal = pl.DataFrame(
                        {
                            "case_id": clean.case_ids,
                            "subject_ref": subject_refs,
                            "sealed": pl.Series(sealed, dtype=pl.Binary),
                        }
                    )
                    self.con.register("hilt_personal", personal)
                    self.con.execute("INSERT INTO case_personal SELECT * FROM hilt_personal")
                    self.con.register("hilt_labels", labels)
                    self.con.execute(
                        "INSERT INTO seed_labels SELECT case_id, label, ? FROM hilt_labels", [seq]
                    )
                    digest = batch_digest.digest(
                        self.con, batch_digest.cases_sql(self.settings), seq
                    )
                    self._append_audit(
                        role,
                        "cases.ingest",
                        "batch",
                        f"cases:{now.strftime('%Y%m%dT%H%M%S%fZ')}",
                        {
                            "rows": batch.height,
                            "labelled": labels.height,
                            "new_subjects": len(fresh),
                            "digest": digest,
                            "digest_method": batch_digest.METHOD,
                            "columns": list(self.settings.columns),
                        },
                        now,
                        expect_seq=seq,
                    )
                finally:
                    for name in (
                        "hilt_batch",
                        "hilt_identity",
                        "hilt_cases",
                        "hilt_features",
                        "hilt_personal",
                        "hilt_labels",
                    ):
                        self.con.unregister(name)
        except BaseException:
            # The keys were committed first (a key never lags its data); without the data
            # they seal, they go again.
            if new_keys:
                self.keys.store.destroy(new_keys)
            raise
        return IngestResult(kind="cases", rows=batch.height, seq=seq, digest=digest)

    def add_predictions(self, model_version: str, frame: pl.DataFrame) -> IngestResult:
        """Add a batch of predictions, audited by one event carrying the batch's digest.

        The rows are inserted exactly as the frame that is digested holds them (ids given,
        not numbered by the database), so the digest is computed from that frame instead of
        being read back; verify recomputes it from the stored rows (``batch_digest``)."""
        role = self._role_for("add_predictions")
        if not model_version or not model_version.strip():
            raise InputError("model_version is required")
        _text_ok(model_version, "model_version", 128)
        clean = clean_predictions(frame, self.settings)
        now = self.clock()
        n = clean.height
        with self._transaction():
            self._refuse_if_halted("adding predictions")
            base_row = sql.one(self.con, "SELECT coalesce(max(prediction_id), 0) FROM predictions")
            base = int(base_row[0]) if base_row else 0
            # The batch as it will be stored: the columns of batch_digest.PREDICTIONS_SQL.
            rows = clean.select(
                pl.int_range(base + 1, base + n + 1, dtype=pl.Int64).alias("prediction_id"),
                pl.col("case_id"),
                pl.lit(model_version, dtype=pl.String).alias("model_version"),
                pl.col("score"),
                pl.col("label"),
                pl.col("explanation"),
            ).to_arrow()
            self.con.register("hilt_predictions", rows)
            try:
                unknown = sql.scalar(
                    self.con,
                    "SELECT count(*) FROM hilt_predictions p"
                    " WHERE NOT EXISTS (SELECT 1 FROM cases c WHERE c.case_id = p.case_id)",
                )
                if unknown:
                    first = sql.scalar(
                        self.con,
                        "SELECT list(prediction_id - ? ORDER BY prediction_id)[1:5]"
                        " FROM hilt_predictions p"
                        " WHERE NOT EXISTS (SELECT 1 FROM cases c WHERE c.case_id = p.case_id)",
                        [base],
                    )
                    raise NotFoundError(
                        f"predictions rejected, nothing was written:\n- {unknown} rows name "
                        f"unknown case ids (rows {', '.join(map(str, first or []))})"
                    )
                seq = self._next_seq()
                self.con.execute(
                    "INSERT INTO predictions SELECT prediction_id, case_id, model_version, score,"
                    " label, explanation, ?, ? FROM hilt_predictions",
                    [seq, now],
                )
                digest = batch_digest.table_digest(rows)
                self._append_audit(
                    role,
                    "predictions.ingest",
                    "model",
                    model_version,
                    {
                        "rows": n,
                        "digest": digest,
                        "digest_method": batch_digest.METHOD,
                        "first_prediction_id": base + 1,
                        "last_prediction_id": base + n,
                    },
                    now,
                    expect_seq=seq,
                )
            finally:
                self.con.unregister("hilt_predictions")
        return IngestResult(kind="predictions", rows=n, seq=seq, digest=digest)

    # ------------------------------------------------------------------ decisions
    def _check_decision_fields(self, request: DecisionRequest) -> None:
        """Validate what can be validated without reading the store."""
        review = self.settings.review
        classes = self.settings.target.classes
        _text_ok(request.comment, "comment", review.max_comment_length, multiline=True)
        _text_ok(request.request_id, "request_id", 128)
        action = request.action
        if action in ("override", "blind"):
            if request.final_label is None:
                raise InputError(f"{action} needs final_label (the class the reviewer chose)")
            if request.final_label not in classes:
                raise InputError(f"final_label must be one of the target classes {classes}")
        elif request.final_label is not None:
            raise InputError(f"{action} takes no final_label")
        if action == "override":
            if not request.reason_code:
                raise InputError("an override needs a reason_code")
            if request.reason_code not in review.reason_codes:
                raise InputError(
                    f"unknown reason_code; configured codes: {', '.join(review.reason_codes)}"
                )
            if review.comment_required and not (request.comment or "").strip():
                raise InputError("an override needs a comment (review.comment_required)")
        elif request.reason_code is not None:
            raise InputError(f"{action} takes no reason_code")
        if action == "undo" and not request.undo_of:
            raise InputError("undo needs undo_of (the decision_id it compensates)")
        if action != "undo" and request.undo_of is not None:
            raise InputError("only undo takes undo_of")

    def record_decision(self, request: DecisionRequest) -> Decision:
        role = self._role_for("record_decision")
        self._check_decision_fields(request)
        now = self.clock()
        me = self.actor.name
        with self._transaction():
            # Everything the checks need, in one round trip (a UNION of point queries is far
            # cheaper in DuckDB than the same lookups as scalar subqueries).
            rows = self.con.execute(
                "SELECT 'case', case_id, subject_ref, removed_seq::VARCHAR, NULL, NULL, NULL"
                " FROM cases WHERE case_id = $cid"
                " UNION ALL SELECT 'restricted', kind, NULL, NULL, NULL, NULL, NULL"
                " FROM restrictions WHERE lifted_seq IS NULL"
                " AND subject_ref = (SELECT subject_ref FROM cases WHERE case_id = $cid)"
                " UNION ALL SELECT 'prediction', prediction_id::VARCHAR, model_version, label,"
                " NULL, NULL, NULL FROM predictions WHERE case_id = $cid"
                " UNION ALL SELECT 'decision', decision_id, action, reviewer, seq::VARCHAR,"
                " undo_of, final_label FROM decisions WHERE case_id = $cid"
                " UNION ALL SELECT 'lease', reviewer, (expires_at > $now)::VARCHAR, NULL, NULL,"
                " NULL, NULL FROM leases WHERE case_id = $cid"
                " UNION ALL SELECT 'contest', max(seq)::VARCHAR, NULL, NULL, NULL, NULL, NULL"
                " FROM contests WHERE case_id = $cid"
                " UNION ALL SELECT 'request', decision_id, NULL, NULL, NULL, NULL, NULL"
                " FROM decisions WHERE request_id = $rid" + self._oversight_arms_sql(),
                {"rid": request.request_id, "cid": request.case_id, "now": now},
            ).fetchall()
            gold, manual, double = self._oversight_flags(rows, request.case_id)
            existing_id = next((r[1] for r in rows if r[0] == "request"), None)
            case_row = next((r for r in rows if r[0] == "case"), None)
            any_lease = any(r[0] == "lease" for r in rows)
            lease_holder = next((r[1] for r in rows if r[0] == "lease" and r[2] == "true"), None)
            contest_text = next((r[1] for r in rows if r[0] == "contest"), None)
            contest_seq = int(contest_text) if contest_text is not None else None
            preds = sorted(
                (
                    {"prediction_id": int(r[1]), "model_version": r[2], "label": r[3]}
                    for r in rows
                    if r[0] == "prediction"
                ),
                key=lambda p: -int(p["prediction_id"]),
            )
            history = sorted(
                (
                    review_queue.LoggedAction(
                        decision_id=r[1],
                        action=r[2],
                        reviewer=r[3],
                        seq=int(r[4]),
                        undo_of=r[5],
                        final_label=r[6],
                    )
                    for r in rows
                    if r[0] == "decision"
                ),
                key=lambda a: a.seq,
            )
            if existing_id is not None:
                existing = self._decisions_where("d.decision_id = ?", [existing_id])[0]
                if existing.case_id != request.case_id:
                    raise ConflictError("request_id was already used for another case")
                return existing
            if case_row is None:
                raise NotFoundError("decision on an unknown case id")
            subject_ref = str(case_row[2])
            if case_row[3] is not None:
                raise ConflictError(
                    "this case's data was erased or has passed its retention period; "
                    "it can no longer be reviewed"
                )
            if any(r[0] == "restricted" for r in rows):
                raise ConflictError(
                    "processing of this case is restricted at its subject's request "
                    "(GDPR Art. 18 / 21) until the restriction is lifted"
                )
            if lease_holder is not None and lease_holder != me:
                raise ConflictError("another reviewer holds this case's lease")
            pred: dict[str, Any] | None = preds[0] if preds else None
            if request.prediction_id is not None:
                matching = [p for p in preds if p["prediction_id"] == request.prediction_id]
                if not matching:
                    raise NotFoundError("prediction_id does not belong to this case")
                pred = matching[0]
            prediction_id = int(pred["prediction_id"]) if pred else None
            model_version = str(pred["model_version"]) if pred else None
            predicted = str(pred["label"]) if pred else None
            final: str | None = request.final_label
            if request.action == "undo":
                # On a gold case every reviewer decides alone: only their own history counts.
                self._check_undo(request, [a for a in history if a.reviewer == me or not gold])
            else:
                if gold:
                    state = review_queue.gold_state(history, me, bool(preds))
                else:
                    state = review_queue.case_state(
                        history, contest_seq, bool(preds), double=double, manual=manual
                    )
                if not state.pending:
                    raise ConflictError("this case has no review pending (already decided)")
                if state.excluded_reviewer == me:
                    why = (
                        "a contested case"
                        if state.contested
                        else "a double-review case"
                        if state.second_review
                        else "a case you flagged"
                    )
                    raise PermissionDeniedError(f"{why} must be decided by another reviewer")
            if request.action == "accept":
                if predicted is None:
                    raise InputError("accept needs a prediction; this case has none")
                final = predicted
            elif request.action == "override" and final == predicted:
                raise InputError("an override must choose a class other than the model's")
            explanation = self._explanation_context(request, prediction_id)
            decision_id = uuid.uuid4().hex
            seq = self._next_seq()
            # Free text may be about the subject: sealed with their key, in the row and in
            # the audit payload alike (shredded with the key).
            comment_sealed = (
                personal_data.seal_value(
                    self.keys.store.key(subject_ref),
                    request.comment,
                    personal_data.COMMENT_PURPOSE,
                    subject_ref,
                    seq,
                    decision_id,
                )
                if request.comment is not None
                else None
            )
            self._append_audit(
                role,
                "decision.record",
                "case",
                request.case_id,
                {
                    "decision_id": decision_id,
                    "request_id": request.request_id,
                    "action": request.action,
                    "prediction_id": prediction_id,
                    "model_version": model_version,
                    "predicted_label": predicted,
                    "final_label": final,
                    "reason_code": request.reason_code,
                    "comment_sealed": comment_sealed,
                    "time_on_item_ms": request.time_on_item_ms,
                    "model_shown": request.model_shown,
                    "undo_of": request.undo_of,
                    "explanation_sha256": request.explanation_sha256,
                    "explanation_context": explanation,
                },
                now,
                expect_seq=seq,
            )
            self.con.execute(
                "INSERT INTO decisions VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    decision_id,
                    request.request_id,
                    request.case_id,
                    prediction_id,
                    model_version,
                    me,
                    role,
                    request.action,
                    predicted,
                    final,
                    request.reason_code,
                    comment_sealed,
                    request.time_on_item_ms,
                    request.model_shown,
                    request.undo_of,
                    now,
                    seq,
                    request.explanation_sha256,
                ],
            )
            if request.action == "undo":
                # The case comes back to the reviewer who undid, so they can decide again.
                self._lease(request.case_id, now, seq)
            elif request.action != "blind" and any_lease:
                self.con.execute("DELETE FROM leases WHERE case_id = ?", [request.case_id])
        return Decision(
            decision_id=decision_id,
            request_id=request.request_id,
            case_id=request.case_id,
            prediction_id=prediction_id,
            model_version=model_version,
            reviewer=me,
            reviewer_role=role,
            action=request.action,
            predicted_label=predicted,
            final_label=final,
            reason_code=request.reason_code,
            comment=request.comment,
            comment_sealed=comment_sealed,
            time_on_item_ms=request.time_on_item_ms,
            model_shown=request.model_shown,
            undo_of=request.undo_of,
            created_at=_iso(now),
            seq=seq,
            explanation_sha256=request.explanation_sha256,
        )

    def _logged_actions(self, case_id: str) -> list[review_queue.LoggedAction]:
        rows = self.con.execute(
            "SELECT decision_id, action, reviewer, seq, undo_of, final_label FROM decisions"
            " WHERE case_id = ? ORDER BY seq",
            [case_id],
        ).fetchall()
        return [review_queue.LoggedAction(*r) for r in rows]

    def _check_undo(
        self, request: DecisionRequest, history: list[review_queue.LoggedAction]
    ) -> None:
        """Only your own latest, not yet undone decision on the case can be undone."""
        target = next((a for a in history if a.decision_id == request.undo_of), None)
        if target is None:
            raise NotFoundError("undo_of names no decision on this case")
        if target.reviewer != self.actor.name:
            raise PermissionDeniedError("only the reviewer who made a decision can undo it")
        if target.action == "undo":
            raise InputError("an undo cannot itself be undone; decide again instead")
        if history[-1].decision_id != target.decision_id:
            raise ConflictError("only the latest decision on a case can be undone")

    def _lease(self, case_id: str, now: datetime, seq: int) -> datetime:
        expires = now + timedelta(seconds=self.settings.review.lease_seconds)
        self.con.execute(
            "DELETE FROM leases WHERE case_id = ? OR reviewer = ?", [case_id, self.actor.name]
        )
        self.con.execute(
            "INSERT INTO leases VALUES (?, ?, ?, ?, ?)",
            [case_id, self.actor.name, now, expires, seq],
        )
        return expires

    def next_case(self, strategy: str | None = None) -> LeasedCase | None:
        """Lease the next case for this reviewer: their own live lease first, then the
        queue in order (contested first, second opinions next, then the strategy)."""
        role = self._role_for("next_case")
        chosen = strategy or self.settings.review.queue_strategy
        if chosen not in review_queue.STRATEGY_ORDER:
            raise InputError(
                f"unknown queue strategy; one of: {', '.join(review_queue.STRATEGY_ORDER)}"
            )
        me = self.actor.name
        now = self.clock()
        order = review_queue.STRATEGY_ORDER[chosen].replace(
            "$threshold", repr(float(self.settings.review.decision_threshold))
        )
        with self._transaction():
            own = sql.one(
                self.con,
                "SELECT l.case_id, l.expires_at FROM leases l"
                " WHERE l.reviewer = ? AND l.expires_at > ?",
                [me, now],
            )
            state = None
            gold = False
            held = waiting = -1
            if own is not None:
                case_id, expires = str(own[0]), own[1]
                history = self._logged_actions(case_id)
                state, gold = self._state_of(case_id, history)
                if not state.pending or state.excluded_reviewer == me:
                    state = None  # a stale lease (decided meanwhile): take a new case
            if state is None:
                context = sql.one(
                    self.con,
                    "SELECT "
                    + double_review.MANUAL_CUT_SQL
                    + ", EXISTS (SELECT 1 FROM gold_cases)",
                )
                assert context is not None
                # The queue is computed once for both the choice and the counts that the
                # panel's progress line shows (``LeasedCase.queue``).
                row = sql.one(
                    self.con,
                    "WITH j AS MATERIALIZED (SELECT q.*, l.case_id IS NOT NULL AS held,"
                    " coalesce(l.reviewer = $me, false) AS mine FROM ("
                    + self._queue_sql(int(context[0]))
                    + ") q LEFT JOIN leases l ON l.case_id = q.case_id AND l.expires_at > $now)"
                    " SELECT (SELECT q.case_id FROM j q WHERE NOT q.held"
                    " AND (q.excluded_reviewer IS NULL OR q.excluded_reviewer <> $me)"
                    " ORDER BY q.contested DESC, q.second_opinion DESC, q.second_review DESC,"
                    " (SELECT count(*) FROM decisions s WHERE s.case_id = q.case_id"
                    "  AND s.action = 'skip' AND s.reviewer = $me), " + order + " LIMIT 1),"
                    " (SELECT count(*) FILTER (WHERE NOT held) FROM j),"
                    " (SELECT count(*) FILTER (WHERE held) FROM j),"
                    " (SELECT count(*) FILTER (WHERE held AND mine) FROM j)",
                    {"now": now, "me": me},
                )
                if row is None or row[0] is None:
                    return None
                # A gold case, when one is due, takes the place of the queue's next case.
                gold_case = self._gold_instead(now) if context[1] else None
                case_id = gold_case or str(row[0])
                # After the lease: this reviewer's other leases are gone, and the chosen
                # queue case (a gold case is never in the queue) is held.
                taken = 0 if gold_case else 1
                held = int(row[2]) - int(row[3]) + taken
                waiting = int(row[1]) + int(row[3]) - taken
                history = self._logged_actions(case_id)
                state, gold = self._state_of(case_id, history)
                seq = self._append_audit(
                    role,
                    "case.leased",
                    "case",
                    case_id,
                    {"strategy": chosen, "lease_seconds": self.settings.review.lease_seconds},
                    now,
                )
                expires = self._lease(case_id, now, seq)
            blind = review_queue.blind_label(
                [a for a in history if a.reviewer == me] if gold else history, me
            )
            if held < 0:  # one's own lease again (a reload): the counts from scratch
                status = self.queue_status()
            else:
                status = QueueStatus(waiting=waiting, leased=held, **self._done_today(now))
        case = self.get_case(case_id)
        # Independent review: a reviewer sees their own decisions on the case only, and no
        # seed label, so that a second review is blind to the first and a gold case looks
        # like any other.
        case = case.model_copy(
            update={
                "seed_label": None,
                "decisions": [d for d in case.decisions if d.reviewer == me],
            }
        )
        return LeasedCase(
            case=case,
            lease_expires_at=_iso(expires),
            contested=state.contested,
            second_opinion=state.second_opinion,
            blind_label=blind,
            queue=status,
        )

    def queue_status(self) -> QueueStatus:
        self._role_for("queue_status")
        now = self.clock()
        row = sql.one(
            self.con,
            "SELECT count(*) FILTER (WHERE l.case_id IS NULL),"
            " count(*) FILTER (WHERE l.case_id IS NOT NULL) FROM ("
            + self._queue_sql()
            + ") q LEFT JOIN leases l ON l.case_id = q.case_id AND l.expires_at > ?",
            [now],
        )
        return QueueStatus(
            waiting=int(row[0]) if row else 0,
            leased=int(row[1]) if row else 0,
            **self._done_today(now),
        )

    def _done_today(self, now: datetime) -> dict[str, int]:
        """Final decisions (not undone) since midnight UTC: in all, and by this user."""
        day_start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        done = sql.one(
            self.con,
            "SELECT count(*), count(*) FILTER (WHERE reviewer = ?) FROM decisions"
            " WHERE action IN ('accept', 'override') AND created_at >= ?"
            " AND decision_id NOT IN (SELECT undo_of FROM decisions WHERE action = 'undo'"
            " AND undo_of IS NOT NULL)",
            [self.actor.name, day_start],
        )
        return {
            "done_today": int(done[0]) if done else 0,
            "done_today_by_me": int(done[1]) if done else 0,
        }

    def record_event(
        self, action: str, object_type: str, object_id: str, payload: dict[str, Any]
    ) -> int:
        """Append an event about a run or a model (``run.*``, ``model.*``) to the audit log;
        returns its seq. The payload is the caller's: ids, hashes, counts and metrics, never
        personal data."""
        role = self._role_for("record_event")
        if not EVENT_ACTION.match(action) or not action.startswith(EVENT_PREFIXES):
            raise InputError(
                f"event action must look like {' or '.join(p + 'name' for p in EVENT_PREFIXES)}"
            )
        for name, value in (("object_type", object_type), ("object_id", object_id)):
            if not value or len(value) > 128 or any(c in value for c in "\x00\n\r"):
                raise InputError(f"{name} must be 1 to 128 characters on one line")
        if not isinstance(payload, dict):
            raise InputError("payload must be a JSON object")
        try:
            size = len(canonical_json(payload).encode("utf-8"))
        except (TypeError, ValueError):
            raise InputError("payload must be JSON (no NaN or infinity)") from None
        if size > MAX_EVENT_PAYLOAD:
            raise InputError(f"payload is larger than {MAX_EVENT_PAYLOAD} bytes")
        now = self.clock()
        with self._transaction():
            return self._append_audit(role, action, object_type, object_id, payload, now)

    def contest(self, case_id: str) -> int:
        """Record that the case's subject asked for human review (GDPR Art. 22)."""
        role = self._role_for("contest")
        now = self.clock()
        with self._transaction():
            if sql.one(self.con, "SELECT 1 FROM cases WHERE case_id = ?", [case_id]) is None:
                raise NotFoundError("unknown case id")
            seq = self._append_audit(role, "case.contested", "case", case_id, {}, now)
            self.con.execute("INSERT INTO contests VALUES (?, ?, ?)", [case_id, now, seq])
        return seq

    def snapshot(self, as_of_seq: int | None = None) -> SnapshotRecord:
        """Export the training view as of an audit seq to Parquet, audited with its sha256."""
        role = self._role_for("snapshot")
        now = self.clock()
        training = self.settings.training
        with self._transaction():
            head_seq = self._current_head()[0]
            as_of = head_seq if as_of_seq is None else as_of_seq
            if as_of < 1 or as_of > head_seq:
                raise InputError(f"as_of_seq must be between 1 and the head seq {head_seq}")
            salt = str(sql.scalar(self.con, "SELECT value FROM meta WHERE key = 'holdout_salt'"))
            rel = self.con.sql(
                snapshot.snapshot_sql(self.settings),
                params={
                    "as_of": as_of,
                    "salt": salt,
                    "holdout_cut": int(training.holdout_fraction * snapshot.HASH_SPACE),
                },
            )
            frame = pl.from_arrow(rel.to_arrow_table())
            assert isinstance(frame, pl.DataFrame)
            wanted = snapshot.wanted_columns(self.settings)
            if any(n in self.settings.fields.personal for n in wanted):
                opened = self._open_personal(
                    frame.select(
                        "case_id",
                        "subject_ref",
                        pl.col("case_ingest_seq").alias("ingest_seq"),
                        "sealed",
                    )
                )
                personal = [n for n in wanted if n in self.settings.fields.personal]
                frame = frame.join(opened.select("case_id", *personal), on="case_id", how="left")
            frame = self._rectified(frame.drop(*snapshot.SEALED_COLUMNS), as_of)
            frame = frame.select(
                "case_id", *wanted, "bucket", "label", "label_source", "split", "label_seq"
            )
            frame, dropped = _cap_accepted(frame, training.max_accepted_share)
            frame = frame.drop("bucket").sort(["split", "case_id"])
            if frame.height == 0:
                raise InputError("no labelled cases as of that seq; nothing to snapshot")
            self.workspace.snapshots_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.workspace.snapshots_dir / f".snapshot-{uuid.uuid4().hex}.parquet"
            try:
                frame.write_parquet(tmp, compression="zstd", statistics=False)
                digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
                name = f"snapshot-{as_of:08d}-{digest[:12]}.parquet"
                path = self.workspace.snapshots_dir / name
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
            train = frame.filter(pl.col("split") == "train")
            sources = {
                src: int(train.filter(pl.col("label_source") == src).height)
                for src in ("original", "reviewer-accepted", "reviewer-corrected")
            }
            holdout_rows = frame.height - train.height
            seq = self._append_audit(
                role,
                "snapshot.created",
                "snapshot",
                name,
                {
                    "as_of_seq": as_of,
                    "sha256": digest,
                    "rows": frame.height,
                    "train_rows": train.height,
                    "holdout_rows": holdout_rows,
                    "label_sources": sources,
                    "accepted_dropped": dropped,
                },
                now,
            )
            existing = sql.scalar(self.con, "SELECT count(*) FROM snapshots WHERE name = ?", [name])
            if not existing:
                self.con.execute(
                    "INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
                    [name, as_of, digest, frame.height, now, seq],
                )
        return SnapshotRecord(
            name=name,
            path=str(path),
            sha256=digest,
            as_of_seq=as_of,
            seq=seq,
            rows=frame.height,
            train_rows=train.height,
            holdout_rows=holdout_rows,
            label_sources=sources,
            accepted_dropped=dropped,
        )

    def system_state(self) -> SystemState:
        self._role_for("system_state")
        row = sql.one(
            self.con, "SELECT halted, changed_by, reason, changed_at, seq FROM system_state"
        )
        assert row is not None
        return SystemState(
            halted=bool(row[0]),
            changed_by=row[1],
            reason=row[2],
            changed_at=_iso(row[3]) if row[3] is not None else None,
            seq=row[4],
        )

    def halt(self, reason: str) -> SystemState:
        """Stop scoring and retraining at once (a lead; EU AI Act Art. 14(4)(e))."""
        role = self._role_for("halt")
        if not reason.strip():
            raise InputError("a halt needs a reason")
        _text_ok(reason, "reason", self.settings.limits.max_text_length, multiline=True)
        now = self.clock()
        with self._transaction():
            if self.system_state().halted:
                raise ConflictError("the system is already halted")
            seq = self._append_audit(
                role,
                "system.halted",
                "system",
                "scoring-and-retraining",
                {"reason_sha256": hashlib.sha256(reason.encode()).hexdigest()},
                now,
            )
            self.con.execute(
                "UPDATE system_state SET halted = true, changed_by = ?, reason = ?,"
                " changed_at = ?, seq = ?",
                [self.actor.name, reason, now, seq],
            )
        return self.system_state()

    def resume(self) -> SystemState:
        """Resume after a halt: needs a second authorised person (not the one who halted)."""
        role = self._role_for("halt")
        now = self.clock()
        with self._transaction():
            state = self.system_state()
            if not state.halted:
                raise ConflictError("the system is not halted")
            if state.changed_by == self.actor.name:
                raise PermissionDeniedError(
                    "the person who halted the system cannot resume it; a second lead must"
                )
            seq = self._append_audit(
                role,
                "system.resumed",
                "system",
                "scoring-and-retraining",
                {"halted_at_seq": state.seq},
                now,
            )
            self.con.execute(
                "UPDATE system_state SET halted = false, changed_by = ?, reason = NULL,"
                " changed_at = ?, seq = ?",
                [self.actor.name, now, seq],
            )
        return self.system_state()

    def feature_profile(self) -> dict[str, FeatureRange]:
        """Per feature, the range (numeric) or levels (category) seen in labelled cases."""
        self._role_for("feature_profile")
        out: dict[str, FeatureRange] = {}
        labelled = (
            "(SELECT case_id FROM seed_labels UNION SELECT case_id FROM decisions"
            " WHERE action IN ('accept', 'override'))"
        )
        personal = [n for n in self.settings.fields.features if n in self.settings.fields.personal]
        opened: pl.DataFrame | None = None
        if personal:
            base = self._sealed_rows(f"c.case_id IN {labelled}", [])
            opened = self._open_personal(base)
        for name in self.settings.fields.features:
            col = self.settings.columns[name]
            q = quote(name)
            if opened is not None and name in personal:
                values = opened[name].drop_nulls()
                if col.type in ("int", "float"):
                    if values.len():
                        out[name] = FeatureRange(low=float(values.min()), high=float(values.max()))  # type: ignore[arg-type]
                else:
                    seen = sorted({str(v) for v in values.to_list()})
                    out[name] = FeatureRange(levels=seen)
                continue
            if col.type in ("int", "float"):
                row = sql.one(
                    self.con,
                    f"SELECT min({q}), max({q}) FROM case_features WHERE case_id IN {labelled}",
                )
                if row and row[0] is not None:
                    out[name] = FeatureRange(low=float(row[0]), high=float(row[1]))
            elif col.type in ("category", "bool", "string"):
                levels = self.con.execute(
                    f"SELECT DISTINCT {q}::VARCHAR FROM case_features WHERE case_id IN {labelled}"
                    f" AND {q} IS NOT NULL ORDER BY 1"
                ).fetchall()
                out[name] = FeatureRange(levels=[str(v[0]) for v in levels])
        return out

    # ------------------------------------------------------------------ personal data
    def _sealed_rows(self, where: str, params: list[Any]) -> pl.DataFrame:
        """(case_id, subject_ref, ingest_seq, sealed) of live cases matching ``where``."""
        rel = self.con.sql(
            "SELECT c.case_id, c.subject_ref, c.ingest_seq, p.sealed FROM cases c"
            " JOIN case_personal p USING (case_id) WHERE c.removed_seq IS NULL AND " + where,
            params=params,
        )
        frame = pl.from_arrow(rel.to_arrow_table())
        assert isinstance(frame, pl.DataFrame)
        return frame

    def _open_personal(self, sealed_rows: pl.DataFrame) -> pl.DataFrame:
        """case_id + the personal columns, opened with the subjects' keys."""
        keys = self.keys.store.get(sealed_rows["subject_ref"].unique().to_list())
        return personal_data.open_cases(sealed_rows, keys, self.settings)

    def _rectified(self, frame: pl.DataFrame, as_of_seq: int | None = None) -> pl.DataFrame:
        """``frame`` (case_id + configured columns) with each (case, column)'s latest
        rectification as of ``as_of_seq`` (default: all) applied."""
        columns = [c for c in frame.columns if c in self.settings.columns]
        if not columns or frame.height == 0:
            return frame
        rows = self.con.execute(
            "SELECT case_id, subject_ref, column_name, value_sealed, seq FROM rectifications"
            " WHERE seq <= ? AND column_name IN (SELECT unnest(?)) ORDER BY seq",
            [as_of_seq if as_of_seq is not None else 2**62, columns],
        ).fetchall()
        wanted = set(frame["case_id"].to_list()) if rows else set()
        rows = [r for r in rows if r[0] in wanted]
        if not rows:
            return frame
        keys = self.keys.store.get({str(r[1]) for r in rows})
        latest: dict[str, dict[str, Any]] = {}
        for case_id, ref, column, sealed, seq in rows:
            key = keys.get(ref)
            if key is None:
                continue
            value = personal_data.open_value(
                key, sealed, personal_data.RECTIFY_PURPOSE, ref, int(seq), f"{case_id}/{column}"
            )
            latest.setdefault(column, {})[case_id] = value
        for column, values in latest.items():
            dtype = personal_data.polars_type(self.settings.columns[column])
            update = pl.DataFrame(
                {
                    "case_id": list(values),
                    "__rectified": pl.Series(list(values.values()), dtype=dtype),
                    "__has": [True] * len(values),
                }
            )
            frame = (
                frame.join(update, on="case_id", how="left")
                .with_columns(
                    pl.when(pl.col("__has").fill_null(False))
                    .then(pl.col("__rectified"))
                    .otherwise(pl.col(column))
                    .alias(column)
                )
                .drop("__rectified", "__has")
            )
        return frame

    def case_frame(self, case_ids: list[str] | None = None) -> pl.DataFrame:
        """Live cases as one frame: case_id, every configured column (personal ones opened,
        rectifications applied), and the seed label."""
        self._role_for("case_frame")
        feats = "".join(f", f.{quote(n)}" for n in self.settings.feature_only_columns)
        cond = "true"
        params: list[Any] = []
        if case_ids is not None:
            cond = "c.case_id IN (SELECT unnest(?))"
            params = [case_ids]
        rel = self.con.sql(
            f"SELECT c.case_id{feats}, s.label AS seed_label FROM cases c"
            " JOIN case_features f USING (case_id) LEFT JOIN seed_labels s USING (case_id)"
            f" WHERE c.removed_seq IS NULL AND {cond} ORDER BY c.case_id",
            params=params,
        )
        frame = pl.from_arrow(rel.to_arrow_table())
        assert isinstance(frame, pl.DataFrame)
        if self.settings.personal_columns:
            opened = self._open_personal(self._sealed_rows(cond, params))
            frame = frame.join(opened, on="case_id", how="left")
        order = [
            "case_id",
            *self.settings.feature_only_columns,
            *self.settings.personal_columns,
            "seed_label",
        ]
        return self._rectified(frame).select(order)

    _DECISION_COLUMNS = (
        "d.decision_id, d.request_id, d.case_id, d.prediction_id, d.model_version, d.reviewer,"
        " d.reviewer_role, d.action, d.predicted_label, d.final_label, d.reason_code,"
        " d.comment_sealed, d.time_on_item_ms, d.model_shown, d.undo_of, d.created_at, d.seq,"
        " c.subject_ref, d.explanation_sha256"
    )

    def _decisions_where(
        self, where: str, params: list[Any], limit: int = 100_000
    ) -> list[Decision]:
        rows = self.con.execute(
            f"SELECT {self._DECISION_COLUMNS} FROM decisions d JOIN cases c USING (case_id)"
            f" WHERE {where} ORDER BY d.seq LIMIT {int(limit)}",
            params,
        ).fetchall()
        with_comment = {str(r[17]) for r in rows if r[11] is not None}
        keys = self.keys.store.get(with_comment) if with_comment else {}

        def comment(r: tuple[Any, ...]) -> str | None:
            key = keys.get(str(r[17]))
            if r[11] is None or key is None:
                return None
            text = personal_data.open_value(
                key, r[11], personal_data.COMMENT_PURPOSE, str(r[17]), int(r[16]), str(r[0])
            )
            return str(text)

        return [
            Decision(
                decision_id=r[0],
                request_id=r[1],
                case_id=r[2],
                prediction_id=r[3],
                model_version=r[4],
                reviewer=r[5],
                reviewer_role=r[6],
                action=r[7],
                predicted_label=r[8],
                final_label=r[9],
                reason_code=r[10],
                comment=comment(r),
                comment_sealed=r[11],
                time_on_item_ms=int(r[12]),
                model_shown=bool(r[13]),
                undo_of=r[14],
                created_at=_iso(r[15]),
                seq=int(r[16]),
                explanation_sha256=r[18],
            )
            for r in rows
        ]

    def decisions(
        self, after_seq: int = 0, limit: int = 1000, final_only: bool = False
    ) -> list[Decision]:
        """Reviewer decisions in audit order, for a production system to read.

        Every action by default (undo events included, so a consumer can apply them);
        ``final_only``: only accept / override / adjudicate decisions that have not been
        undone, on settled cases (not a gold case; a double-review case once two reviews
        agree or a lead adjudicated); apply them in seq order, the last one wins.
        """
        self._role_for("decisions")
        if limit < 1 or limit > 100_000:
            raise InputError("limit must be between 1 and 100000")
        where = "d.seq > ?"
        if final_only:
            where += (
                " AND d.action IN ('accept', 'override', 'adjudicate') AND d.decision_id NOT IN"
                " (SELECT undo_of FROM decisions WHERE action = 'undo' AND undo_of IS NOT NULL)"
            )
            # Gold cases are tests of reviewers, not cases to act on; a double-review case
            # is final once settled (two reviews that agree, or a lead's adjudication).
            where += " AND d.case_id NOT IN (SELECT case_id FROM gold_cases)"
            share = self.settings.oversight.double_review_share
            if share > 0:
                unsettled = double_review.unsettled_sql("decisions", "contests", share)
                where += f" AND d.case_id NOT IN ({unsettled})"
        return self._decisions_where(where, [after_seq], limit)

    def get_case(self, case_id: str) -> CaseRecord:
        self._role_for("get_case")
        row = sql.one(
            self.con,
            "SELECT case_id, subject_ref, ingest_seq, created_at, removed_seq FROM cases"
            " WHERE case_id = ?",
            [case_id],
        )
        if row is None:
            raise NotFoundError("unknown case id")
        feats = self._one_row_dict("case_features", case_id)
        readable = (
            list(self.settings.personal_columns)
            if any(r in PERSONAL_READERS for r in self.actor.roles)
            else list(self.settings.fields.display_personal)
        )
        personal: dict[str, Any] = {}
        if readable and row[4] is None:
            opened = self._open_personal(self._sealed_rows("c.case_id = ?", [case_id]))
            if opened.height:
                personal = {k: v for k, v in opened.row(0, named=True).items() if k in readable}
        if (feats or personal) and sql.scalar(
            self.con, "SELECT count(*) FROM rectifications WHERE case_id = ?", [case_id]
        ):
            current = self._rectified(pl.DataFrame([{"case_id": case_id, **feats, **personal}]))
            values = current.row(0, named=True)
            feats = {k: values[k] for k in feats}
            personal = {k: values[k] for k in personal}
        label = sql.one(self.con, "SELECT label FROM seed_labels WHERE case_id = ?", [case_id])
        preds = self.con.execute(
            f"SELECT {_PREDICTION_COLUMNS} FROM predictions WHERE case_id = ?"
            " ORDER BY prediction_id",
            [case_id],
        ).fetchall()
        return CaseRecord(
            case_id=row[0],
            subject_ref=row[1],
            ingest_seq=int(row[2]),
            created_at=_iso(row[3]),
            features=feats,
            personal=personal,
            seed_label=label[0] if label else None,
            data_removed=row[4] is not None,
            predictions=[_prediction(p) for p in preds],
            decisions=self._decisions_where("d.case_id = ?", [case_id]),
        )

    def _one_row_dict(self, table: str, case_id: str) -> dict[str, Any]:
        cur = self.con.execute(f"SELECT * FROM {table} WHERE case_id = ?", [case_id])
        names = [d[0] for d in cur.description or []]
        rows = cur.fetchall()
        if not rows:
            return {}
        row = rows[0]
        d = dict(zip(names, row, strict=True))
        d.pop("case_id", None)
        return d

    def counts(self) -> dict[str, int]:
        self._role_for("counts")
        out: dict[str, int] = {}
        for table in COUNTED_TABLES:
            row = sql.one(self.con, f"SELECT count(*) FROM {table}")
            out[table] = int(row[0]) if row else 0
        return out

    # ------------------------------------------------------------------ subject rights
    def subject_export(self, external_id: str) -> SubjectExport:
        """Everything held about one subject (GDPR Arts. 15, 20); the export is audited."""
        role = self._role_for("subject_rights")
        document = subject_rights.export(self, external_id)
        now = self.clock()
        with self._transaction():
            self._append_audit(
                role,
                "subject.exported",
                "subject",
                document.subject_ref,
                {"cases": [c.case_id for c in document.cases]},
                now,
            )
        return document

    def subject_rectify(
        self, external_id: str, column: str, value: str | None, case_id: str | None = None
    ) -> SubjectAction:
        """A superseding value for one column of the subject's cases (GDPR Art. 16)."""
        role = self._role_for("subject_rights")
        return subject_rights.rectify(self, external_id, column, value, role, case_id)

    def subject_restrict(self, external_id: str, kind: str, lift: bool = False) -> SubjectAction:
        """Restrict (Art. 18) or object to (Art. 21) processing, or lift it."""
        role = self._role_for("subject_rights")
        return subject_rights.restrict(self, external_id, kind, role, lift=lift)

    def subject_contest(self, external_id: str) -> SubjectAction:
        """The subject asks for human review of their latest decision (GDPR Art. 22)."""
        self._role_for("subject_rights")
        ref = subject_rights.find_subject(self, external_id)
        case_id = subject_rights.latest_decided_case(self, ref)
        seq = self.contest(case_id)
        return SubjectAction(action="case.contested", subject_ref=ref, seq=seq, cases=[case_id])

    def subject_erase(self, external_id: str) -> ErasureReport:
        """Erase the subject (GDPR Art. 17): data deleted, key destroyed, snapshots
        regenerated, a tombstone in the log."""
        role = self._role_for("subject_rights")
        return subject_rights.erase(self, external_id, role)

    def retention_apply(self) -> RetentionReport:
        """Remove what has passed its retention period (idempotent)."""
        role = self._role_for("retention")
        return retention.apply(self, role)

    # ------------------------------------------------------------------ audit
    def audit_head(self) -> AuditHead:
        self._role_for("get_case")
        seq, digest = self._current_head()
        return AuditHead(seq=seq, hash=digest)

    def audit_events(self, after_seq: int = 0, limit: int = 1000) -> list[AuditEvent]:
        self._role_for("audit_read")
        if limit < 1 or limit > 100_000:
            raise InputError("limit must be between 1 and 100000")
        rows = self.con.execute(
            "SELECT entry, prev_hash, hash FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
            [after_seq, limit],
        ).fetchall()
        out = []
        for entry, prev, h in rows:
            e = json.loads(entry)
            out.append(AuditEvent(**e, prev_hash=prev, hash=h))
        return out

    def verify(self, public_key: str | None = None) -> VerifyReport:
        """Check the chain, every signed checkpoint, and the records against their events."""
        self._role_for("audit_read")
        from hilt.pipelines.store.audit.verify import verify_store

        return verify_store(self.con, self.settings, self.workspace, public_key)

    def checkpoint(self) -> CheckpointRecord:
        """Sign the current head with the workspace's key, append it to the checkpoint file
        outside the database, then record the checkpoint in the log itself, so that a
        checkpoint file that later loses lines is caught by verify."""
        role = self._role_for("checkpoint")
        key = load_signing_key(self.workspace.signing_key_path)
        head = self.audit_head()
        if head.seq == 0:
            raise InputError("the audit log is empty; nothing to checkpoint")
        now = self.clock()
        cp = sign_checkpoint(key, head.seq, head.hash, _iso(now))
        pinned = self.settings.audit.public_key
        if pinned is not None and cp.public_key != pinned:
            raise StoreError(
                "the signing key does not match the public key pinned in hilt.toml; "
                "refusing to write a checkpoint that verify would reject"
            )
        # File first: a crash in between leaves a checkpoint without its event (harmless),
        # never an event without its checkpoint.
        append_checkpoint(self.workspace.checkpoints_path, cp)
        with self._transaction():
            self._append_audit(
                role,
                "audit.checkpoint",
                "audit_log",
                str(cp.seq),
                {"seq": cp.seq, "head_hash": cp.head_hash, "signature": cp.signature},
                now,
            )
        return CheckpointRecord(seq=cp.seq, head_hash=cp.head_hash, time=cp.time)

    # ------------------------------------------------------------------ explanations
    def _explanation_context(
        self, request: DecisionRequest, prediction_id: int | None
    ) -> dict[str, Any] | None:
        """The explanation context to record with a decision (checked and re-rendered from
        the stored prediction, see ``explanations``), or None when none was sent."""
        if request.explanation_sha256 is None and request.explanation_context is None:
            return None
        row = None
        if prediction_id is not None:
            row = sql.one(
                self.con,
                "SELECT score, label, explanation FROM predictions WHERE prediction_id = ?",
                [prediction_id],
            )
        stored = (float(row[0]), str(row[1]), str(row[2])) if row is not None else None
        return explanations.check_explanation(self.settings, request, stored)

    # ------------------------------------------------------------------ auditor reads
    def audit_search(self, query: AuditQuery) -> AuditPage:
        """Events matching ``query``, one page of them, with counts per action and per day
        over all that match. Read-only; filtered in the database, not by the caller."""
        self._role_for("audit_read")
        where, params = _audit_filter(query)
        filtered = (
            "SELECT seq, entry, prev_hash, hash,"
            " json_extract_string(entry, '$.action') AS action,"
            " json_extract_string(entry, '$.ts') AS ts"
            f" FROM audit_log WHERE {where}"
        )
        facets = self.con.execute(
            f"SELECT action, left(ts, 10) AS day, count(*) FROM ({filtered}) f GROUP BY ALL",
            params,
        ).fetchall()
        by_action: dict[str, int] = {}
        by_day: dict[str, int] = {}
        for action, day, n in facets:
            by_action[str(action)] = by_action.get(str(action), 0) + int(n)
            by_day[str(day)] = by_day.get(str(day), 0) + int(n)
        order = "DESC" if query.newest_first else "ASC"
        rows = self.con.execute(
            f"SELECT entry, prev_hash, hash FROM ({filtered}) f ORDER BY seq {order}"
            f" LIMIT {int(query.limit)} OFFSET {int(query.offset)}",
            params,
        ).fetchall()
        events = [AuditEvent(**json.loads(e), prev_hash=p, hash=h) for e, p, h in rows]
        return AuditPage(
            events=events,
            total=sum(by_action.values()),
            offset=query.offset,
            by_action=dict(sorted(by_action.items())),
            by_day=dict(sorted(by_day.items())),
        )

    def get_decision(self, decision_id: str) -> Decision:
        """One decision by its id (NotFoundError if there is none)."""
        self._role_for("decisions")
        found = self._decisions_where("d.decision_id = ?", [decision_id], limit=1)
        if not found:
            raise NotFoundError("unknown decision id")
        return found[0]

    def get_prediction(self, prediction_id: int) -> Prediction:
        """One stored prediction by its id: model version, score, label, contributions."""
        self._role_for("get_prediction")
        p = sql.one(
            self.con,
            f"SELECT {_PREDICTION_COLUMNS} FROM predictions WHERE prediction_id = ?",
            [prediction_id],
        )
        if p is None:
            raise NotFoundError("unknown prediction id")
        return _prediction(p)

    # ------------------------------------------------------------------ oversight
    def _refuse_if_halted(self, what: str) -> None:
        """SystemHalted while a lead's halt holds (call inside the writing transaction)."""
        state = self.system_state()
        if state.halted:
            raise SystemHalted(halted_message(state, what))

    def _queue_sql(self, manual_cut: int | None = None) -> str:
        """The queue's SQL for this store now: double review as configured; cases without a
        prediction only if they were in the store during a halt (``manual_cut``: read from
        system_state unless given)."""
        if manual_cut is None:
            manual_cut = int(sql.scalar(self.con, "SELECT " + double_review.MANUAL_CUT_SQL))
        share = self.settings.oversight.double_review_share
        return review_queue.queue_state_sql(share, manual_cut)

    def _oversight_arms_sql(self) -> str:
        """More arms of record_decision's one round trip: gold, manual review, and the salt
        (only when double review is on)."""
        salt = (
            " UNION ALL SELECT 'salt', value, NULL, NULL, NULL, NULL, NULL FROM meta"
            " WHERE key = 'holdout_salt'"
            if self.settings.oversight.double_review_share > 0
            else ""
        )
        return (
            " UNION ALL SELECT 'gold', model_version, NULL, NULL, NULL, NULL, NULL"
            " FROM gold_cases WHERE case_id = $cid"
            " UNION ALL SELECT 'manual', NULL, NULL, NULL, NULL, NULL, NULL FROM cases"
            " WHERE case_id = $cid AND ingest_seq < " + double_review.MANUAL_CUT_SQL + ""
            " AND NOT EXISTS (SELECT 1 FROM seed_labels WHERE case_id = $cid)" + salt
        )

    def _oversight_flags(
        self, rows: list[tuple[Any, ...]], case_id: str
    ) -> tuple[bool, bool, bool]:
        """(gold, manual, double) of a case, from the arms of ``_oversight_arms_sql``."""
        gold = any(r[0] == "gold" for r in rows)
        manual = any(r[0] == "manual" for r in rows)
        salt = next((str(r[1]) for r in rows if r[0] == "salt"), "")
        share = self.settings.oversight.double_review_share
        double = not gold and share > 0 and double_review.is_double(salt, case_id, share)
        return gold, manual, double

    def _state_of(
        self, case_id: str, history: list[review_queue.LoggedAction]
    ) -> tuple[review_queue.CaseState, bool]:
        """The case's queue state for this reviewer, and whether it is a gold case."""
        row = self.con.execute(
            "SELECT 'contest', max(seq)::VARCHAR, NULL, NULL, NULL, NULL, NULL FROM contests"
            " WHERE case_id = $cid"
            " UNION ALL SELECT 'prediction', NULL, NULL, NULL, NULL, NULL, NULL"
            " FROM (SELECT 1 FROM predictions WHERE case_id = $cid LIMIT 1)"
            + self._oversight_arms_sql(),
            {"cid": case_id},
        ).fetchall()
        gold, manual, double = self._oversight_flags(row, case_id)
        has_prediction = any(r[0] == "prediction" for r in row)
        if gold:
            return review_queue.gold_state(history, self.actor.name, has_prediction), True
        contest = next((r[1] for r in row if r[0] == "contest"), None)
        state = review_queue.case_state(
            history,
            int(contest) if contest is not None else None,
            has_prediction,
            double=double,
            manual=manual,
        )
        return state, False

    def _gold_instead(self, now: datetime) -> str | None:
        """A gold case for this reviewer when one is due (``oversight.gold_rate``) and one
        they have not yet decided, flagged or skipped is free; else None. (Call it only when
        the store has gold cases.)"""
        rate = self.settings.oversight.gold_rate
        if rate <= 0:
            return None
        me = self.actor.name
        row = sql.one(
            self.con,
            "SELECT (SELECT value FROM meta WHERE key = 'holdout_salt'),"
            " (SELECT count(*) FROM decisions WHERE reviewer = ?"
            "  AND action IN ('accept', 'override'))",
            [me],
        )
        if row is None:
            return None
        salt, ordinal = str(row[0]), int(row[1])
        if not double_review.gold_due(salt, me, ordinal, rate):
            return None
        found = sql.scalar(
            self.con,
            "SELECT g.case_id FROM gold_cases g"
            " WHERE EXISTS (SELECT 1 FROM predictions p WHERE p.case_id = g.case_id)"
            # Its known answer still there (not erased), its processing not restricted.
            " AND EXISTS (SELECT 1 FROM seed_labels s WHERE s.case_id = g.case_id)"
            " AND g.case_id IN " + double_review.LIVE_CASES_SQL + ""
            " AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.case_id = g.case_id"
            "  AND l.expires_at > ?)"
            " AND g.case_id NOT IN (SELECT d.case_id FROM decisions d WHERE d.reviewer = ?"
            "  AND d.action IN ('accept', 'override', 'flag', 'skip') AND d.decision_id NOT IN"
            "  (SELECT undo_of FROM decisions WHERE action = 'undo' AND undo_of IS NOT NULL))"
            " ORDER BY sha256(? || g.case_id) LIMIT 1",
            [now, me, f"{double_review.GOLD_PREFIX}{salt}:{me}:"],
        )
        return str(found) if found is not None else None

    def _holdout_sql(self, column: str) -> str:
        """A boolean SQL expression: the case is in the holdout (as ``snapshot`` decides it;
        named parameter $salt)."""
        cut = int(self.settings.training.holdout_fraction * snapshot.HASH_SPACE)
        return f"(('0x' || left(sha256($salt || {column}), 8))::BIGINT < {cut})"

    def gold_candidates(self, limit: int = 1000) -> list[str]:
        """Holdout cases that could become gold cases (a known answer, no prediction, no
        decision, not gold yet), in an order fixed by the secret salt."""
        self._role_for("gold")
        if limit < 1 or limit > 100_000:
            raise InputError("limit must be between 1 and 100000")
        salt = str(sql.scalar(self.con, "SELECT value FROM meta WHERE key = 'holdout_salt'"))
        rows = self.con.execute(
            "SELECT c.case_id FROM cases c JOIN seed_labels s USING (case_id)"
            f" WHERE {self._holdout_sql('c.case_id')}"
            " AND NOT EXISTS (SELECT 1 FROM predictions p WHERE p.case_id = c.case_id)"
            " AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.case_id = c.case_id)"
            " AND c.case_id NOT IN (SELECT case_id FROM gold_cases)"
            " AND c.case_id IN " + double_review.LIVE_CASES_SQL + ""
            " ORDER BY sha256('pick:' || $salt || c.case_id) LIMIT $limit",
            {"salt": salt, "limit": limit},
        ).fetchall()
        return [str(r[0]) for r in rows]

    def add_gold(self, model_version: str, frame: pl.DataFrame) -> GoldResult:
        """Make holdout cases gold cases, in one transaction: the model's predictions for
        them (an audited batch, as ``add_predictions``) and their known answers (the seed
        labels), audited as ``gold.added`` with the digest of the gold rows.

        Every case must be a holdout case (so a reviewer's decision on it never becomes a
        training label) without predictions or decisions, and not gold yet."""
        role = self._role_for("gold")
        clean = clean_predictions(frame, self.settings)
        ids = [str(c) for c in clean["case_id"].to_list()]
        if len(ids) > MAX_GOLD_BATCH:
            raise InputError(f"at most {MAX_GOLD_BATCH} gold cases at a time")
        repeated = sorted({c for c in ids if ids.count(c) > 1})
        if repeated:
            raise InputError(f"gold cases must be distinct; repeated: {', '.join(repeated[:5])}")
        now = self.clock()
        with self._transaction():
            salt = str(sql.scalar(self.con, "SELECT value FROM meta WHERE key = 'holdout_salt'"))
            rows = self.con.execute(
                "SELECT w.case_id, c.case_id IS NOT NULL, s.label,"
                f" {self._holdout_sql('w.case_id')},"
                " EXISTS (SELECT 1 FROM predictions p WHERE p.case_id = w.case_id),"
                " EXISTS (SELECT 1 FROM decisions d WHERE d.case_id = w.case_id),"
                " EXISTS (SELECT 1 FROM gold_cases g WHERE g.case_id = w.case_id),"
                " c.subject_ref IN (SELECT subject_ref FROM restrictions"
                "  WHERE lifted_seq IS NULL)"
                " FROM (SELECT unnest($ids) AS case_id) w"
                " LEFT JOIN cases c USING (case_id) LEFT JOIN seed_labels s USING (case_id)"
                " ORDER BY w.case_id",
                {"ids": ids, "salt": salt},
            ).fetchall()
            problems = [
                ("unknown case ids", [r[0] for r in rows if not r[1]]),
                (
                    "cases without a known answer (seed label)",
                    [r[0] for r in rows if r[1] and r[2] is None],
                ),
                (
                    "cases outside the holdout",
                    [r[0] for r in rows if r[2] is not None and not r[3]],
                ),
                ("cases that already have predictions", [r[0] for r in rows if r[4]]),
                ("cases that already have decisions", [r[0] for r in rows if r[5]]),
                ("cases that are gold already", [r[0] for r in rows if r[6]]),
                ("cases whose processing is restricted", [r[0] for r in rows if r[7]]),
            ]
            found = [f"- {len(bad)} {what} ({', '.join(bad[:5])})" for what, bad in problems if bad]
            if found:
                raise InputError("gold cases rejected, nothing was written:\n" + "\n".join(found))
            expected = {str(r[0]): str(r[2]) for r in rows}
            inner = StoreCore(
                self.con,
                self.settings,
                self.workspace,
                self.actor,
                self.clock,
                head=self.head,
                in_group=True,
                keys=self.keys,
            )
            try:
                batch = inner.add_predictions(model_version, frame)
            finally:
                self.wrote = self.wrote or inner.wrote
            wrong = sum(
                1
                for cid, label in zip(ids, clean["label"].to_list(), strict=True)
                if expected[cid] != str(label)
            )
            digest = gold_digest((cid, model_version) for cid in ids)
            seq = self._append_audit(
                role,
                "gold.added",
                "gold",
                model_version,
                {
                    "cases": len(ids),
                    "digest": digest,
                    "model_version": model_version,
                    "predictions_seq": batch.seq,
                    "model_wrong": wrong,
                },
                now,
            )
            self.con.execute(
                "INSERT INTO gold_cases SELECT case_id, $model, $me, $now, $seq"
                " FROM (SELECT unnest($ids) AS case_id)",
                {
                    "ids": ids,
                    "model": model_version,
                    "me": self.actor.name,
                    "now": now,
                    "seq": seq,
                },
            )
        return GoldResult(added=len(ids), model_version=model_version, seq=seq, model_wrong=wrong)

    def oversight_report(self) -> OversightReport:
        """Queue health, reviewer statistics, agreement, override reasons and alerts."""
        self._role_for("oversight_read")
        return oversight_stats.report(self.con, self.settings, self.clock())

    def conflicts(self) -> list[ConflictRecord]:
        """The adjudication queue: double-review cases whose two reviewers disagree."""
        self._role_for("oversight_read")
        return oversight_stats.conflicts(self.con, self.settings)

    def adjudicate(
        self,
        case_id: str,
        final_label: str,
        comment: str | None = None,
        request_id: str | None = None,
    ) -> Decision:
        """A lead settles a double-review conflict: the adjudication (action ``adjudicate``)
        is the case's final label. Not by one of the two reviewers in conflict."""
        role = self._role_for("adjudicate")
        if final_label not in self.settings.target.classes:
            raise InputError(
                f"final_label must be one of the target classes {self.settings.target.classes}"
            )
        _text_ok(comment, "comment", self.settings.review.max_comment_length, multiline=True)
        _text_ok(request_id, "request_id", 128)
        me = self.actor.name
        now = self.clock()
        with self._transaction():
            if request_id is not None:
                done = self._decisions_where("d.request_id = ?", [request_id])
                if done:
                    if done[0].case_id != case_id:
                        raise ConflictError("request_id was already used for another case")
                    return done[0]
            case_row = sql.one(
                self.con,
                "SELECT subject_ref, removed_seq, (SELECT count(*) FROM restrictions r"
                " WHERE r.subject_ref = cases.subject_ref AND r.lifted_seq IS NULL)"
                " FROM cases WHERE case_id = ?",
                [case_id],
            )
            if case_row is None:
                raise NotFoundError("adjudication of an unknown case id")
            subject_ref = str(case_row[0])
            if case_row[1] is not None or case_row[2]:
                raise ConflictError(
                    "this case's data was erased, has passed its retention period, or its "
                    "processing is restricted; it cannot be adjudicated"
                )
            open_ = [
                c
                for c in oversight_stats.conflicts(self.con, self.settings)
                if c.case_id == case_id
            ]
            if not open_:
                raise ConflictError("this case has no conflict to adjudicate")
            conflict = open_[0]
            if me in (conflict.first_reviewer, conflict.second_reviewer):
                raise PermissionDeniedError(
                    "a reviewer in the conflict cannot adjudicate it; another lead must"
                )
            pred = sql.one(
                self.con,
                "SELECT prediction_id, model_version, label FROM predictions WHERE case_id = ?"
                " ORDER BY prediction_id DESC LIMIT 1",
                [case_id],
            )
            prediction_id = int(pred[0]) if pred else None
            model_version = str(pred[1]) if pred else None
            predicted = str(pred[2]) if pred else None
            decision_id = uuid.uuid4().hex
            seq = self._next_seq()
            # As for every decision: free text sealed with the subject's key.
            comment_sealed = (
                personal_data.seal_value(
                    self.keys.store.key(subject_ref),
                    comment,
                    personal_data.COMMENT_PURPOSE,
                    subject_ref,
                    seq,
                    decision_id,
                )
                if comment is not None
                else None
            )
            self._append_audit(
                role,
                "decision.record",
                "case",
                case_id,
                {
                    "decision_id": decision_id,
                    "request_id": request_id,
                    "action": "adjudicate",
                    "prediction_id": prediction_id,
                    "model_version": model_version,
                    "predicted_label": predicted,
                    "final_label": final_label,
                    "reason_code": None,
                    "comment_sealed": comment_sealed,
                    "time_on_item_ms": 0,
                    "model_shown": True,
                    "undo_of": None,
                    "explanation_sha256": None,
                    "conflict": {
                        "first_reviewer": conflict.first_reviewer,
                        "first_label": conflict.first_label,
                        "second_reviewer": conflict.second_reviewer,
                        "second_label": conflict.second_label,
                    },
                },
                now,
                expect_seq=seq,
            )
            self.con.execute(
                "INSERT INTO decisions VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    decision_id,
                    request_id,
                    case_id,
                    prediction_id,
                    model_version,
                    me,
                    role,
                    "adjudicate",
                    predicted,
                    final_label,
                    None,
                    comment_sealed,
                    0,
                    True,
                    None,
                    now,
                    seq,
                    None,  # explanation_sha256: a lead settling a conflict is shown no model view
                ],
            )
            self.con.execute("DELETE FROM leases WHERE case_id = ?", [case_id])
        return self._decisions_where("d.decision_id = ?", [decision_id])[0]


def _audit_time(value: str, name: str) -> str:
    """An ISO-8601 time as the log writes it (UTC, microseconds, Z)."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(f"{name} must be an ISO-8601 time, e.g. 2025-01-31T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return utc_timestamp(moment)


def _audit_filter(query: AuditQuery) -> tuple[str, list[Any]]:
    """The WHERE clause (on audit_log) and its parameters for ``query``."""
    where: list[str] = ["true"]
    params: list[Any] = []
    if query.min_seq is not None:
        where.append("seq >= ?")
        params.append(query.min_seq)
    if query.max_seq is not None:
        where.append("seq <= ?")
        params.append(query.max_seq)
    if query.seqs is not None:
        where.append("seq IN (SELECT unnest(?::BIGINT[]))")
        params.append(list(query.seqs))
    if query.action:
        action = query.action.strip()
        if action.endswith("."):
            where.append("starts_with(json_extract_string(entry, '$.action'), ?)")
        else:
            where.append("json_extract_string(entry, '$.action') = ?")
        params.append(action)
    if query.actor:
        where.append("json_extract_string(entry, '$.actor') = ?")
        params.append(query.actor.strip())
    if query.object_id:
        where.append("json_extract_string(entry, '$.object_id') = ?")
        params.append(query.object_id.strip())
    if query.model_version:
        where.append(
            "(json_extract_string(entry, '$.object_id') = ?"
            " OR json_extract_string(entry, '$.payload.model_version') = ?)"
        )
        params += [query.model_version.strip()] * 2
    since = _audit_time(query.since, "since") if query.since else None
    until = _audit_time(query.until, "until") if query.until else None
    if since and until and since >= until:
        raise InputError("since must be earlier than until")
    if since:
        where.append("json_extract_string(entry, '$.ts') >= ?")
        params.append(since)
    if until:
        where.append("json_extract_string(entry, '$.ts') < ?")
        params.append(until)
    return " AND ".join(where), params


#: Largest gold set added in one call.
MAX_GOLD_BATCH = 5000
