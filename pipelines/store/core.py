"""The store's operations on one open DuckDB connection, on behalf of one user.

Both modes run exactly this code: the embedded mode opens a short-lived connection under a
cross-process lock for each call; the service keeps one connection and one StoreCore per
request. Roles are enforced here, so they hold in both modes.

Every state change writes its audit row in the same transaction as the change (DuckDB has
no triggers, so the store does it itself).
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
)
from hilt.pipelines.store import reconcile, sql
from hilt.pipelines.store.audit_chain import (
    GENESIS_HASH,
    AuditEntry,
    chain_hash,
    hash_at,
    utc_timestamp,
    verify_chain_rows,
)
from hilt.pipelines.store.checkpoints import (
    append_checkpoint,
    check_checkpoints,
    load_signing_key,
    parse_public_key,
    read_checkpoints,
    sign_checkpoint,
)
from hilt.pipelines.store.records import (
    AuditEvent,
    AuditHead,
    BreakRecord,
    CaseRecord,
    CheckpointRecord,
    Decision,
    DecisionRequest,
    IngestResult,
    Prediction,
    TokenGrant,
    User,
    VerifyReport,
)
from hilt.pipelines.store.schema import COUNTED_TABLES, SCHEMA_VERSION, create_statements, quote
from hilt.pipelines.store.validation import clean_cases, clean_predictions
from hilt.pipelines.workspace import Workspace

Clock = Callable[[], datetime]

ALL_ROLES = frozenset(ROLES)
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
}
#: Roles that see every personal-data column of a case; others see only display_personal.
PERSONAL_READERS = frozenset({"admin", "dpo", "data-scientist", "system"})

DIGEST_METHOD = "sha256 of the batch as CSV (polars write_csv, header, store column order)"
TOKEN_PREFIX = "hilt_"


def system_clock() -> datetime:
    return datetime.now(UTC)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def batch_digest(frame: pl.DataFrame) -> str:
    buf = io.BytesIO()
    frame.write_csv(buf)
    return hashlib.sha256(buf.getvalue()).hexdigest()


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


class StoreCore:
    """Store operations on ``con`` for ``actor``. Not thread-safe; one per connection."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        settings: Settings,
        workspace: Workspace,
        actor: User,
        clock: Clock = system_clock,
    ) -> None:
        self.con = con
        self.settings = settings
        self.workspace = workspace
        self.actor = actor
        self.clock = clock

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
        try:
            self.con.execute("BEGIN TRANSACTION")
        except duckdb.Error as e:
            raise StoreError(f"cannot start a transaction: {type(e).__name__}") from e
        try:
            yield
            self.con.execute("COMMIT")
        except HiltError:
            self.con.execute("ROLLBACK")
            raise
        except duckdb.Error as e:
            self.con.execute("ROLLBACK")
            raise StoreError(f"the store rejected the write ({type(e).__name__}): {e}") from e
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def _append_audit(
        self,
        role: str,
        action: str,
        object_type: str,
        object_id: str,
        payload: dict[str, Any],
        now: datetime,
    ) -> int:
        """Chain one event onto the log. Call inside the change's transaction."""
        head = sql.one(self.con, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        seq = int(head[0]) + 1 if head else 1
        prev = str(head[1]) if head else GENESIS_HASH
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
        self.con.execute(
            "INSERT INTO audit_log VALUES (?, ?, ?, ?)", [seq, entry, prev, chain_hash(prev, entry)]
        )
        return seq

    # ------------------------------------------------------------------ set-up
    def create_schema(self, config_sha256: str, public_key: str) -> None:
        """Create the tables and seed the users of the config (once, at init)."""
        now = self.clock()
        with self._transaction():
            for statement in create_statements(self.settings):
                self.con.execute(statement)
            self.con.execute(
                "INSERT INTO meta VALUES ('schema_version', ?), ('config_sha256', ?), "
                "('use_case', ?)",
                [SCHEMA_VERSION, config_sha256, self.settings.use_case.name],
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

    # ------------------------------------------------------------------ cases
    def ingest_cases(self, frame: pl.DataFrame) -> IngestResult:
        role = self._role_for("ingest_cases")
        clean = clean_cases(frame, self.settings)
        now = self.clock()
        batch = pl.DataFrame([clean.case_ids, clean.subject_ids])
        feats, pers, labels = clean.features, clean.personal, clean.labels
        digest = batch_digest(
            pl.concat([batch, feats.drop("case_id"), pers.drop("case_id")], how="horizontal").join(
                labels, on="case_id", how="left"
            )
        )
        with self._transaction():
            self.con.register("hilt_batch", batch)
            try:
                clash = sql.one(
                    self.con, "SELECT count(*) FROM hilt_batch b JOIN cases c USING (case_id)"
                )
                if clash and clash[0]:
                    rows = sql.one(
                        self.con,
                        "SELECT list(rn ORDER BY rn)[1:5] FROM (SELECT row_number() OVER () AS rn,"
                        " case_id FROM hilt_batch) b WHERE case_id IN (SELECT case_id FROM cases)",
                    )
                    raise ConflictError(
                        f"cases rejected, nothing was written:\n- {clash[0]} rows have case ids "
                        f"that already exist (rows {', '.join(map(str, rows[0] if rows else []))})"
                    )
                seq = self._append_audit(
                    role,
                    "cases.ingest",
                    "batch",
                    f"cases:{now.strftime('%Y%m%dT%H%M%S%fZ')}",
                    {
                        "rows": batch.height,
                        "labelled": labels.height,
                        "digest": digest,
                        "digest_method": DIGEST_METHOD,
                        "columns": list(self.settings.columns),
                    },
                    now,
                )
                self.con.execute(
                    "INSERT INTO identity SELECT 'subj_' || replace(uuid()::VARCHAR, '-', ''),"
                    " subject_id, ? FROM (SELECT DISTINCT subject_id FROM hilt_batch) b"
                    " WHERE subject_id NOT IN (SELECT external_subject_id FROM identity)",
                    [now],
                )
                self.con.execute(
                    "INSERT INTO cases SELECT b.case_id, i.subject_ref, ?, ? FROM hilt_batch b"
                    " JOIN identity i ON i.external_subject_id = b.subject_id",
                    [seq, now],
                )
                self.con.register("hilt_features", feats)
                self.con.execute("INSERT INTO case_features SELECT * FROM hilt_features")
                self.con.register("hilt_personal", pers)
                cols = "".join(f", p.{quote(c)}" for c in self.settings.personal_columns)
                self.con.execute(
                    f"INSERT INTO case_personal SELECT p.case_id, c.subject_ref{cols}"
                    " FROM hilt_personal p JOIN cases c USING (case_id)"
                )
                self.con.register("hilt_labels", labels)
                self.con.execute(
                    "INSERT INTO seed_labels SELECT case_id, label, ? FROM hilt_labels", [seq]
                )
            finally:
                for name in ("hilt_batch", "hilt_features", "hilt_personal", "hilt_labels"):
                    self.con.unregister(name)
        return IngestResult(kind="cases", rows=batch.height, seq=seq, digest=digest)

    def add_predictions(self, model_version: str, frame: pl.DataFrame) -> IngestResult:
        role = self._role_for("add_predictions")
        if not model_version or not model_version.strip():
            raise InputError("model_version is required")
        _text_ok(model_version, "model_version", 128)
        clean = clean_predictions(frame, self.settings)
        digest = batch_digest(clean)
        now = self.clock()
        with self._transaction():
            self.con.register("hilt_predictions", clean)
            try:
                unknown = sql.one(
                    self.con,
                    "SELECT count(*), list(rn ORDER BY rn)[1:5] FROM (SELECT row_number() OVER ()"
                    " AS rn, case_id FROM hilt_predictions) p"
                    " WHERE NOT EXISTS (SELECT 1 FROM cases c WHERE c.case_id = p.case_id)",
                )
                if unknown and unknown[0]:
                    raise NotFoundError(
                        f"predictions rejected, nothing was written:\n- {unknown[0]} rows name "
                        f"unknown case ids (rows {', '.join(map(str, unknown[1]))})"
                    )
                base_row = sql.one(
                    self.con, "SELECT coalesce(max(prediction_id), 0) FROM predictions"
                )
                base = int(base_row[0]) if base_row else 0
                seq = self._append_audit(
                    role,
                    "predictions.ingest",
                    "model",
                    model_version,
                    {
                        "rows": clean.height,
                        "digest": digest,
                        "digest_method": DIGEST_METHOD,
                        "first_prediction_id": base + 1,
                        "last_prediction_id": base + clean.height,
                    },
                    now,
                )
                self.con.execute(
                    "INSERT INTO predictions SELECT ? + row_number() OVER (), case_id, ?, score,"
                    " label, explanation, ?, ? FROM hilt_predictions",
                    [base, model_version, seq, now],
                )
            finally:
                self.con.unregister("hilt_predictions")
        return IngestResult(kind="predictions", rows=clean.height, seq=seq, digest=digest)

    # ------------------------------------------------------------------ decisions
    def record_decision(self, request: DecisionRequest) -> Decision:
        role = self._role_for("record_decision")
        review = self.settings.review
        target = self.settings.target
        _text_ok(request.comment, "comment", review.max_comment_length, multiline=True)
        _text_ok(request.request_id, "request_id", 128)
        if request.action == "override":
            if request.final_label is None:
                raise InputError("an override needs final_label (the class the reviewer chose)")
            if request.final_label not in target.classes:
                raise InputError(f"final_label must be one of the target classes {target.classes}")
            if not request.reason_code:
                raise InputError("an override needs a reason_code")
            if request.reason_code not in review.reason_codes:
                raise InputError(
                    f"unknown reason_code; configured codes: {', '.join(review.reason_codes)}"
                )
            if review.comment_required and not (request.comment or "").strip():
                raise InputError("an override needs a comment (review.comment_required)")
        elif request.final_label is not None or request.reason_code is not None:
            raise InputError("accept takes no final_label or reason_code")
        now = self.clock()
        with self._transaction():
            if request.request_id is not None:
                existing = self._decisions_where("d.request_id = ?", [request.request_id])
                if existing:
                    if existing[0].case_id != request.case_id:
                        raise ConflictError("request_id was already used for another case")
                    return existing[0]
            case = sql.one(self.con, "SELECT 1 FROM cases WHERE case_id = ?", [request.case_id])
            if case is None:
                raise NotFoundError("decision on an unknown case id")
            if request.prediction_id is not None:
                pred = sql.one(
                    self.con,
                    "SELECT prediction_id, model_version, label FROM predictions"
                    " WHERE prediction_id = ? AND case_id = ?",
                    [request.prediction_id, request.case_id],
                )
                if pred is None:
                    raise NotFoundError("prediction_id does not belong to this case")
            else:
                pred = sql.one(
                    self.con,
                    "SELECT prediction_id, model_version, label FROM predictions"
                    " WHERE case_id = ? ORDER BY prediction_id DESC LIMIT 1",
                    [request.case_id],
                )
            prediction_id = int(pred[0]) if pred else None
            model_version = str(pred[1]) if pred else None
            predicted = str(pred[2]) if pred else None
            if request.action == "accept":
                if predicted is None:
                    raise InputError("accept needs a prediction; this case has none")
                final = predicted
            else:
                assert request.final_label is not None
                final = request.final_label
                if final == predicted:
                    raise InputError("an override must choose a class other than the model's")
            decision_id = uuid.uuid4().hex
            comment_sha = (
                hashlib.sha256(request.comment.encode("utf-8")).hexdigest()
                if request.comment is not None
                else None
            )
            seq = self._append_audit(
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
                    "comment_sha256": comment_sha,
                    "time_on_item_ms": request.time_on_item_ms,
                    "model_shown": request.model_shown,
                },
                now,
            )
            self.con.execute(
                "INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    decision_id,
                    request.request_id,
                    request.case_id,
                    prediction_id,
                    model_version,
                    self.actor.name,
                    role,
                    request.action,
                    predicted,
                    final,
                    request.reason_code,
                    request.comment,
                    request.time_on_item_ms,
                    request.model_shown,
                    now,
                    seq,
                ],
            )
        return Decision(
            decision_id=decision_id,
            request_id=request.request_id,
            case_id=request.case_id,
            prediction_id=prediction_id,
            model_version=model_version,
            reviewer=self.actor.name,
            reviewer_role=role,
            action=request.action,
            predicted_label=predicted,
            final_label=final,
            reason_code=request.reason_code,
            comment=request.comment,
            time_on_item_ms=request.time_on_item_ms,
            model_shown=request.model_shown,
            created_at=_iso(now),
            seq=seq,
        )

    _DECISION_COLUMNS = (
        "d.decision_id, d.request_id, d.case_id, d.prediction_id, d.model_version, d.reviewer,"
        " d.reviewer_role, d.action, d.predicted_label, d.final_label, d.reason_code, d.comment,"
        " d.time_on_item_ms, d.model_shown, d.created_at, d.seq"
    )

    def _decisions_where(
        self, where: str, params: list[Any], limit: int = 100_000
    ) -> list[Decision]:
        rows = self.con.execute(
            f"SELECT {self._DECISION_COLUMNS} FROM decisions d WHERE {where}"
            f" ORDER BY d.seq LIMIT {int(limit)}",
            params,
        ).fetchall()
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
                comment=r[11],
                time_on_item_ms=int(r[12]),
                model_shown=bool(r[13]),
                created_at=_iso(r[14]),
                seq=int(r[15]),
            )
            for r in rows
        ]

    def decisions(self, after_seq: int = 0, limit: int = 1000) -> list[Decision]:
        """Final decisions in audit order, for a production system to read."""
        self._role_for("decisions")
        if limit < 1 or limit > 100_000:
            raise InputError("limit must be between 1 and 100000")
        return self._decisions_where("d.seq > ?", [after_seq], limit)

    def get_case(self, case_id: str) -> CaseRecord:
        self._role_for("get_case")
        row = sql.one(
            self.con,
            "SELECT case_id, subject_ref, ingest_seq, created_at FROM cases WHERE case_id = ?",
            [case_id],
        )
        if row is None:
            raise NotFoundError("unknown case id")
        feats = self._one_row_dict("case_features", case_id)
        personal = self._one_row_dict("case_personal", case_id)
        personal.pop("subject_ref", None)
        if not any(r in PERSONAL_READERS for r in self.actor.roles):
            allowed = set(self.settings.fields.display_personal)
            personal = {k: v for k, v in personal.items() if k in allowed}
        label = sql.one(self.con, "SELECT label FROM seed_labels WHERE case_id = ?", [case_id])
        preds = self.con.execute(
            "SELECT prediction_id, case_id, model_version, score, label, explanation, created_at,"
            " batch_seq FROM predictions WHERE case_id = ? ORDER BY prediction_id",
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
            predictions=[
                Prediction(
                    prediction_id=int(p[0]),
                    case_id=p[1],
                    model_version=p[2],
                    score=float(p[3]),
                    label=p[4],
                    explanation=json.loads(p[5]),
                    created_at=_iso(p[6]),
                    batch_seq=int(p[7]),
                )
                for p in preds
            ],
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

    # ------------------------------------------------------------------ audit
    def audit_head(self) -> AuditHead:
        self._role_for("get_case")
        head = sql.one(self.con, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        return (
            AuditHead(seq=int(head[0]), hash=str(head[1]))
            if head
            else AuditHead(seq=0, hash=GENESIS_HASH)
        )

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
        return verify_store(self.con, self.settings, self.workspace, public_key)

    def checkpoint(self) -> CheckpointRecord:
        """Sign the current head with the workspace's key and append it outside the database."""
        self._role_for("checkpoint")
        key = load_signing_key(self.workspace.signing_key_path)
        head = self.audit_head()
        if head.seq == 0:
            raise InputError("the audit log is empty; nothing to checkpoint")
        cp = sign_checkpoint(key, head.seq, head.hash, _iso(self.clock()))
        pinned = self.settings.audit.public_key
        if pinned is not None and cp.public_key != pinned:
            raise StoreError(
                "the signing key does not match the public key pinned in hilt.toml; "
                "refusing to write a checkpoint that verify would reject"
            )
        append_checkpoint(self.workspace.checkpoints_path, cp)
        return CheckpointRecord(seq=cp.seq, head_hash=cp.head_hash, time=cp.time)


def verify_store(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    workspace: Workspace,
    public_key: str | None = None,
) -> VerifyReport:
    """Verify the store's own file without an actor (what `hilt audit verify` runs)."""
    return verify_records(
        con, public_key or settings.audit.public_key, workspace.checkpoints_path, batches=True
    )


def verify_records(
    con: duckdb.DuckDBPyConnection,
    public_key: str | None,
    checkpoints_path: Path,
    *,
    batches: bool,
) -> VerifyReport:
    """Check the chain in ``con``'s audit_log, the signed checkpoints, and the records.

    ``con`` holds an ``audit_log`` and a ``decisions`` table: the store's own file, or an
    in-memory copy fetched from the service (then ``batches=False``: case and prediction
    rows are not fetched, so their batch counts are not reconciled).
    """
    events, head_hash, first = verify_chain_rows(con)
    checkpoints, cp_break = read_checkpoints(checkpoints_path)
    breaks = [b for b in (first, cp_break) if b is not None]
    pinned = parse_public_key(public_key) if public_key else None
    head_seq = int(sql.scalar(con, "SELECT coalesce(max(seq), 0) FROM audit_log"))
    cp = check_checkpoints(
        checkpoints, pinned, head_seq, hash_at(con, [c.seq for c in checkpoints])
    )
    if cp is not None:
        breaks.append(cp)
    rec = reconcile.first_mismatch(con, batches=batches)
    if rec is not None:
        breaks.append(rec)
    worst = min(breaks, key=lambda b: b.seq) if breaks else None
    return VerifyReport(
        ok=worst is None,
        events=events,
        head_hash=head_hash,
        checkpoints=len(checkpoints),
        first_break=BreakRecord(seq=worst.seq, kind=worst.kind, detail=worst.detail)
        if worst
        else None,
    )
