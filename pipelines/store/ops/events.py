"""The audit log as an operation sees it: events a client may report, reading and searching
the log, signing a checkpoint, verifying everything.

The log itself (hash chain, checkpoints, digests, verification) is ``store.audit``; every
other event is written by the operation whose change it records, in that change's
transaction (``Unit.append_audit``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from hilt.pipelines.errors import (
    ConfigError,
    ConflictError,
    InputError,
    PermissionDeniedError,
    StoreError,
)
from hilt.pipelines.store.audit.chain import canonical_json, utc_timestamp
from hilt.pipelines.store.audit_records import (
    AuditEvent,
    AuditHead,
    AuditPage,
    AuditQuery,
    AuditStats,
    CheckpointRecord,
    VerifyReport,
)
from hilt.pipelines.store.requests import EVENT_ACTION
from hilt.pipelines.workspace import RUN_NOTEBOOK_NAME

if TYPE_CHECKING:
    from hilt.pipelines.store.unit import Unit

#: Actions a caller may append with ``record_event``: a run's progress (started, finished,
#: failed, refused), which only the run itself knows. Every action that carries authority
#: (model.*, system.*, subject.*, retention.*, user.*, config.*, decisions, batches) is
#: written by the store's own operation, in the transaction of its change, never reported.
EVENT_PREFIXES: tuple[str, ...] = ("run.",)
#: Largest canonical JSON of a recorded event's payload (bytes).
MAX_EVENT_PAYLOAD = 16_384


def record_event(
    unit: Unit, action: str, object_type: str, object_id: str, payload: dict[str, Any]
) -> int:
    """Append an event about a run (``run.*``: its progress) to the audit log, as the caller;
    returns its seq. The payload is the caller's: ids, hashes, counts and metrics, never
    personal data."""
    if not EVENT_ACTION.match(action):
        raise InputError(
            f"event action must look like {' or '.join(p + 'name' for p in EVENT_PREFIXES)}"
        )
    if not action.startswith(EVENT_PREFIXES):
        # An attempt to write an event that carries authority: refused, and the attempt
        # itself is recorded (the action named, nothing of the caller's payload).
        with unit.transaction():
            unit.append_audit(
                "audit.event_refused", "audit_log", action, {"action": action}, unit.clock()
            )
        raise PermissionDeniedError(
            f"{action} is written only by the store's own operation, in the transaction of "
            f"its change; a client reports only {', '.join(p + '*' for p in EVENT_PREFIXES)}"
        )
    for name, value in (("object_type", object_type), ("object_id", object_id)):
        if not value or len(value) > 128 or any(c in value for c in "\x00\n\r"):
            raise InputError(f"{name} must be 1 to 128 characters on one line")
    if not isinstance(payload, dict):
        raise InputError("payload must be a JSON object")
    notebook = payload.get("notebook")
    if notebook is not None and not RUN_NOTEBOOK_NAME.match(str(notebook)):
        raise InputError("payload.notebook must be the file name of a notebook in runs/")
    try:
        size = len(canonical_json(payload).encode("utf-8"))
    except (TypeError, ValueError):
        raise InputError("payload must be JSON (no NaN or infinity)") from None
    if size > MAX_EVENT_PAYLOAD:
        raise InputError(f"payload is larger than {MAX_EVENT_PAYLOAD} bytes")
    now = unit.clock()
    with unit.transaction():
        return unit.append_audit(action, object_type, object_id, payload, now)


def audit_head(unit: Unit) -> AuditHead:
    """The seq and hash of the log's last event."""
    seq, digest = unit.head_now()
    return AuditHead(seq=seq, hash=digest)


def audit_events(
    unit: Unit,
    after_seq: Annotated[int, Field(ge=0)] = 0,
    limit: Annotated[int, Field(ge=1, le=100_000)] = 1000,
) -> list[AuditEvent]:
    """Events after ``after_seq``, in order, at most ``limit``."""
    if limit < 1 or limit > 100_000:
        raise InputError("limit must be between 1 and 100000")
    rows = unit.con.execute(
        "SELECT entry, prev_hash, hash FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
        [after_seq, limit],
    ).fetchall()
    out = []
    for entry, prev, h in rows:
        e = json.loads(entry)
        out.append(AuditEvent(**e, prev_hash=prev, hash=h))
    return out


def audit_stats(unit: Unit) -> AuditStats:
    """How many events the log holds, from which seq and time to which, per action."""
    rows = unit.con.execute(
        "SELECT json_extract_string(entry, '$.action'), count(*), min(seq), max(seq),"
        " min(json_extract_string(entry, '$.ts')), max(json_extract_string(entry, '$.ts'))"
        " FROM audit_log GROUP BY ALL ORDER BY 1"
    ).fetchall()
    return AuditStats(
        events=sum(int(r[1]) for r in rows),
        first_seq=min((int(r[2]) for r in rows), default=None),
        head_seq=max((int(r[3]) for r in rows), default=0),
        first_at=min((str(r[4]) for r in rows), default=None),
        last_at=max((str(r[5]) for r in rows), default=None),
        by_action={str(r[0]): int(r[1]) for r in rows},
    )


def audit_search(unit: Unit, query: AuditQuery) -> AuditPage:
    """Events matching ``query``, one page of them, with counts per action and per day
    over all that match. Read-only; filtered in the database, not by the caller."""
    where, params = audit_filter(query)
    filtered = (
        "SELECT seq, entry, prev_hash, hash,"
        " json_extract_string(entry, '$.action') AS action,"
        " json_extract_string(entry, '$.ts') AS ts"
        f" FROM audit_log WHERE {where}"
    )
    facets = unit.con.execute(
        f"SELECT action, left(ts, 10) AS day, count(*) FROM ({filtered}) f GROUP BY ALL",
        params,
    ).fetchall()
    by_action: dict[str, int] = {}
    by_day: dict[str, int] = {}
    for action, day, n in facets:
        by_action[str(action)] = by_action.get(str(action), 0) + int(n)
        by_day[str(day)] = by_day.get(str(day), 0) + int(n)
    order = "DESC" if query.newest_first else "ASC"
    rows = unit.con.execute(
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


#: An Ed25519 public key as ``audit.checkpoints.parse_public_key`` takes it (32 bytes).
PUBLIC_KEY = r"^ed25519:[A-Za-z0-9+/]{43}=$"


def verify(
    unit: Unit,
    public_key: Annotated[str | None, Field(pattern=PUBLIC_KEY)] = None,
    start_from: Annotated[str | None, Field(pattern=r"^(latest|[0-9]{1,18})$")] = None,
) -> VerifyReport:
    """Check the chain, every signed checkpoint, and the records against their events;
    ``start_from`` (``latest`` or a checkpoint's seq): only what came after that signed
    checkpoint (``audit.verify``)."""
    from hilt.pipelines.store.audit.checkpoints import parse_public_key
    from hilt.pipelines.store.audit.verify import verify_store

    if public_key is not None:
        try:  # the caller's key, not the config: a bad one is bad input (4xx)
            parse_public_key(public_key)
        except ConfigError as e:
            raise InputError(f"public_key: {e}") from None
    return verify_store(
        unit.con,
        unit.settings,
        unit.workspace,
        public_key,
        now=unit.clock(),
        parallel=not unit.beside_writer,
        start_from=start_from,
    )


def checkpoint(unit: Unit) -> CheckpointRecord:
    """Sign the current head with the workspace's key, append it to the checkpoint file
    outside the database, then record the checkpoint in the log itself, so that a
    checkpoint file that later loses lines is caught by verify. Only a log that verifies
    is signed (from the newest signed checkpoint: what came since): a checkpoint over an
    edited log would let every verify from it start after the edit."""
    from hilt.pipelines.store.audit.checkpoints import (
        append_checkpoint,
        load_signing_key,
        sign_checkpoint,
    )

    key = load_signing_key(unit.workspace.signing_key_path)
    head = audit_head(unit)
    if head.seq == 0:
        raise InputError("the audit log is empty; nothing to checkpoint")
    report = verify(unit, None, "latest")
    if report.first_break is not None:
        found = report.first_break
        raise ConflictError(
            "refusing to sign a checkpoint: the audit log does not verify (first break at "
            f"seq {found.seq}: {found.kind}); see `hilt audit verify`"
        )
    now = unit.clock()
    cp = sign_checkpoint(key, head.seq, head.hash, utc_timestamp(now))
    pinned = unit.settings.audit.public_key
    if pinned is not None and cp.public_key != pinned:
        raise StoreError(
            "the signing key does not match the public key pinned in hilt.toml; "
            "refusing to write a checkpoint that verify would reject"
        )
    # File first: a crash in between leaves a checkpoint without its event (harmless),
    # never an event without its checkpoint.
    append_checkpoint(unit.workspace.checkpoints_path, cp)
    with unit.transaction():
        unit.append_audit(
            "audit.checkpoint",
            "audit_log",
            str(cp.seq),
            {"seq": cp.seq, "head_hash": cp.head_hash, "signature": cp.signature},
            now,
        )
    return CheckpointRecord(seq=cp.seq, head_hash=cp.head_hash, time=cp.time)


def parse_time(value: str, name: str) -> datetime:
    """An ISO-8601 time a caller gave (UTC when it names no zone); InputError naming
    ``name`` otherwise."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(f"{name} must be an ISO-8601 time, e.g. 2025-01-31T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # before year 1 or after 9999 in UTC: the first or last moment
        edge = datetime.min if moment.year == 1 else datetime.max
        return edge.replace(tzinfo=UTC)


def audit_time(value: str, name: str) -> str:
    """An ISO-8601 time as the log writes it (UTC, microseconds, Z)."""
    return utc_timestamp(parse_time(value, name))


def audit_filter(query: AuditQuery) -> tuple[str, list[Any]]:
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
    since = audit_time(query.since, "since") if query.since else None
    until = audit_time(query.until, "until") if query.until else None
    if since and until and since >= until:
        raise InputError("since must be earlier than until")
    if since:
        where.append("json_extract_string(entry, '$.ts') >= ?")
        params.append(since)
    if until:
        where.append("json_extract_string(entry, '$.ts') < ?")
        params.append(until)
    return " AND ".join(where), params
