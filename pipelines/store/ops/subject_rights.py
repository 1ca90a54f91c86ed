"""Data-subject rights on the store (GDPR Arts. 15-22), next to a log that proves itself.

Every operation finds the subject by their external id (through its HMAC; the id itself is
stored only sealed), acts in one transaction with its audit event, and names only the
pseudonymous ``subject_ref`` and case ids in the log, never personal data:

- ``export`` (Arts. 15, 20): everything held about the subject, as a ``SubjectExport``;
- ``rectify`` (Art. 16): a superseding, sealed value; later snapshots use it;
- ``restrict`` / ``object`` (Arts. 18, 21): out of training and of the review queue until
  lifted;
- ``contest`` (Art. 22): the subject's latest decided case goes back to the queue, first,
  for a reviewer other than the one who decided it;
- ``erase`` (Art. 17): case data deleted, identity removed, the subject's key destroyed
  (which shreds every sealed copy, in the audit log too), the snapshots that held their rows
  regenerated without them; a tombstone event without personal data restates the digests of
  the batches it touched, so ``hilt audit verify`` still passes.

What stays after an erasure, and why: the case ids (the controller's own identifiers, used
as the log's object ids), the predictions and the decisions about the cases (the automatic
log of a high-risk system, kept for at least six months, EU AI Act Arts. 12, 19, 26(6);
GDPR Art. 17(3)(b)), all of it pseudonymous and no longer linkable through hilt.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from hilt.pipelines.errors import ConflictError, InputError, NotFoundError
from hilt.pipelines.store import personal_data, sql
from hilt.pipelines.store.audit import batch_digest
from hilt.pipelines.store.audit.chain import utc_timestamp
from hilt.pipelines.store.records import (
    AuditEvent,
    ErasureReport,
    ExportedCase,
    ExportedDecision,
    ExportedRectification,
    ExportedRestriction,
    ExportedRun,
    ExportedSnapshot,
    SnapshotRewrite,
    SubjectAction,
    SubjectExport,
)
from hilt.pipelines.store.validation import parse_column

if TYPE_CHECKING:
    from hilt.pipelines.store.core import StoreCore

RESTRICTION_KINDS = ("restrict", "object")
_KIND_ACTION = {"restrict": "subject.restricted", "object": "subject.objected"}


def find_subject(core: StoreCore, external_id: str) -> str:
    """The subject_ref of an external subject id; the id is never echoed in errors."""
    if not external_id or len(external_id) > 128:
        raise InputError("a subject id is 1 to 128 characters")
    lookup = core.keys.master.lookup(external_id)
    ref = sql.scalar(core.con, "SELECT subject_ref FROM identity WHERE lookup = ?", [lookup])
    if ref is None:
        raise NotFoundError("no subject with that id (never ingested, or already erased)")
    return str(ref)


def _cases_of(core: StoreCore, subject_ref: str) -> list[tuple[str, int, int | None]]:
    rows = core.con.execute(
        "SELECT case_id, ingest_seq, removed_seq FROM cases WHERE subject_ref = ? ORDER BY case_id",
        [subject_ref],
    ).fetchall()
    return [(str(r[0]), int(r[1]), r[2]) for r in rows]


# ----------------------------------------------------------------------- removal
@dataclass
class Removal:
    """Rows removed in one transaction, and the files to delete once it commits."""

    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshots: list[SnapshotRewrite] = field(default_factory=list)
    new_files: list[Path] = field(default_factory=list)


def _register_ids(core: StoreCore, name: str, ids: list[str]) -> None:
    core.con.register(name, pl.DataFrame({"case_id": ids}, schema={"case_id": pl.String}))


def remove_case_data(core: StoreCore, case_ids: list[str], seq: int, removal: Removal) -> None:
    """Delete the data of these cases (features, personal data, seed label, rectifications,
    leases), keep their rows as tombstones (removed_seq), and restate the digests of the
    batches they came in."""
    if not case_ids:
        return
    _register_ids(core, "hilt_removed", case_ids)
    try:
        batches = [
            int(r[0])
            for r in core.con.execute(
                "SELECT DISTINCT ingest_seq FROM cases WHERE case_id IN"
                " (SELECT case_id FROM hilt_removed) ORDER BY 1"
            ).fetchall()
        ]
        for table in ("case_features", "case_personal", "seed_labels", "rectifications", "leases"):
            core.con.execute(
                f"DELETE FROM {table} WHERE case_id IN (SELECT case_id FROM hilt_removed)"
            )
        core.con.execute(
            "UPDATE cases SET removed_seq = ? WHERE case_id IN (SELECT case_id FROM hilt_removed)",
            [seq],
        )
    finally:
        core.con.unregister("hilt_removed")
    for batch in batches:
        rows = int(
            sql.scalar(
                core.con,
                "SELECT count(*) FROM cases WHERE ingest_seq = ? AND removed_seq IS NULL",
                [batch],
            )
        )
        removal.batches[str(batch)] = {
            "rows": rows,
            "digest": batch_digest.restated_digest(core.con, core.settings, batch),
        }


def remove_subjects(
    core: StoreCore, subject_refs: list[str], reason: str, seq: int, now: datetime
) -> None:
    """Forget who the subjects were: identity and restrictions go; a tombstone stays. Their
    keys are destroyed after the commit (``finish_removals``)."""
    for ref in subject_refs:
        core.con.execute("DELETE FROM identity WHERE subject_ref = ?", [ref])
        core.con.execute("DELETE FROM restrictions WHERE subject_ref = ?", [ref])
        core.con.execute(
            "INSERT INTO removed_subjects VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [ref, reason, seq, now],
        )


def _training_runs(core: StoreCore, sha256: str) -> list[str]:
    rows = core.con.execute(
        "SELECT DISTINCT json_extract_string(entry, '$.payload.run_id') FROM audit_log"
        """ WHERE entry LIKE '{"action":"model.trained",%'"""
        " AND json_extract_string(entry, '$.payload.snapshot_sha256') = ? ORDER BY 1",
        [sha256],
    ).fetchall()
    return [str(r[0]) for r in rows if r[0]]


def rewrite_snapshots(
    core: StoreCore, case_ids: list[str], seq: int, now: datetime, removal: Removal
) -> None:
    """Regenerate every live snapshot file that holds any of ``case_ids`` without them.

    The new file is written now; the old one is marked removed and deleted after the commit.
    """
    removed = set(case_ids)
    if not removed:
        return
    snapshots = core.con.execute(
        "SELECT name, as_of_seq, sha256 FROM snapshots WHERE removed_seq IS NULL ORDER BY name"
    ).fetchall()
    folder = core.workspace.snapshots_dir
    for name, as_of, sha in snapshots:
        path = folder / str(name)
        if not path.exists():
            continue
        ids = pl.read_parquet(path, columns=["case_id"])["case_id"]
        hit = int(ids.is_in(list(removed)).sum())
        if not hit:
            continue
        frame = pl.read_parquet(path).filter(~pl.col("case_id").is_in(list(removed)))
        new_name: str | None = None
        new_sha: str | None = None
        if frame.height:
            new_name, new_sha = write_snapshot_file(folder, frame, int(as_of))
            removal.new_files.append(folder / new_name)
            core.con.execute(
                "INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?, NULL) ON CONFLICT DO NOTHING",
                [new_name, int(as_of), new_sha, frame.height, now, seq, str(name)],
            )
        core.con.execute("UPDATE snapshots SET removed_seq = ? WHERE name = ?", [seq, str(name)])
        removal.snapshots.append(
            SnapshotRewrite(
                name=str(name),
                sha256=str(sha),
                rows_removed=hit,
                new_name=new_name,
                new_sha256=new_sha,
                training_runs=_training_runs(core, str(sha)),
            )
        )


def write_snapshot_file(folder: Path, frame: pl.DataFrame, as_of_seq: int) -> tuple[str, str]:
    """Write a snapshot as Parquet the one way snapshots are written; (name, sha256)."""
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".snapshot-{uuid.uuid4().hex}.parquet"
    try:
        frame.write_parquet(tmp, compression="zstd", statistics=False)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        name = f"snapshot-{as_of_seq:08d}-{digest[:12]}.parquet"
        tmp.replace(folder / name)
    finally:
        tmp.unlink(missing_ok=True)
    return name, digest


def shred_file(path: Path) -> None:
    """Overwrite a file with zeros, flush it, then delete it."""
    try:
        size = path.stat().st_size
        with path.open("r+b") as f:
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
        path.unlink()
    except FileNotFoundError:
        return


def discard_new_files(removal: Removal) -> None:
    for path in removal.new_files:
        path.unlink(missing_ok=True)


def finish_removals(core: StoreCore) -> bool:
    """After a removal committed (or crashed after committing): destroy the keys of removed
    subjects, delete the snapshot files that were replaced, and checkpoint DuckDB so that its
    WAL no longer holds the deleted rows. Idempotent. Returns whether a key was destroyed."""
    refs = [
        str(r[0]) for r in core.con.execute("SELECT subject_ref FROM removed_subjects").fetchall()
    ]
    destroyed = core.keys.store.destroy(refs) > 0 if refs else False
    stale = core.con.execute(
        "SELECT name FROM snapshots WHERE removed_seq IS NOT NULL ORDER BY name"
    ).fetchall()
    for (name,) in stale:
        shred_file(core.workspace.snapshots_dir / str(name))
    if not core.in_group:
        core.con.execute("CHECKPOINT")
    return destroyed


# ----------------------------------------------------------------------- operations
def erase(core: StoreCore, external_id: str, role: str) -> ErasureReport:
    now = core.clock()
    removal = Removal()
    try:
        with core._transaction():
            ref = find_subject(core, external_id)
            case_ids = [c for c, _, removed in _cases_of(core, ref) if removed is None]
            all_cases = [c for c, _, _ in _cases_of(core, ref)]
            seq = core._next_seq()
            remove_case_data(core, case_ids, seq, removal)
            rewrite_snapshots(core, all_cases, seq, now, removal)
            remove_subjects(core, [ref], "erasure", seq, now)
            core._append_audit(
                role,
                "subject.erased",
                "subject",
                ref,
                {
                    "cases": all_cases,
                    "batches": removal.batches,
                    "snapshots": [s.model_dump() for s in removal.snapshots],
                    "key": "destroyed",
                },
                now,
                expect_seq=seq,
            )
    except BaseException:
        discard_new_files(removal)
        raise
    destroyed = finish_removals(core)
    return ErasureReport(
        subject_ref=ref,
        seq=seq,
        cases=all_cases,
        key_destroyed=destroyed or not core.keys.store.has(ref),
        snapshots=removal.snapshots,
    )


def rectify(
    core: StoreCore,
    external_id: str,
    column: str,
    value: str | None,
    role: str,
    case_id: str | None = None,
) -> SubjectAction:
    settings = core.settings
    if column not in settings.columns:
        raise InputError(
            f"unknown column {column!r}; rectifiable columns: {', '.join(settings.columns)}"
        )
    col = settings.columns[column]
    problems: list[str] = []
    parsed = parse_column(pl.Series(column, [value], dtype=pl.String), column, col, problems)
    if problems:
        allowed: list[str] = [str(col.type)]
        if col.levels:
            allowed.append("one of: " + ", ".join(col.levels))
        if col.min is not None:
            allowed.append(f"at least {col.min:g}")
        if col.max is not None:
            allowed.append(f"at most {col.max:g}")
        if not col.nullable:
            allowed.append("not empty")
        raise InputError(
            f"rectification rejected, nothing was written: the value for {column!r} does not "
            f"fit the column ({'; '.join(allowed)})"
        )
    typed = parsed.to_list()[0]
    now = core.clock()
    with core._transaction():
        ref = find_subject(core, external_id)
        live = [c for c, _, removed in _cases_of(core, ref) if removed is None]
        if case_id is not None:
            if case_id not in live:
                raise NotFoundError("the subject has no live case with that case id")
            live = [case_id]
        if not live:
            raise InputError("the subject has no case data left to rectify")
        seq = core._next_seq()
        key = core.keys.store.key(ref)
        sealed = {
            c: personal_data.seal_value(
                key, typed, personal_data.RECTIFY_PURPOSE, ref, seq, f"{c}/{column}"
            )
            for c in live
        }
        core._append_audit(
            role,
            "subject.rectified",
            "subject",
            ref,
            {"column": column, "cases": live, "values_sealed": sealed},
            now,
            expect_seq=seq,
        )
        for c, v in sealed.items():
            core.con.execute(
                "INSERT INTO rectifications VALUES (?, ?, ?, ?, ?, ?)",
                [c, ref, column, v, seq, now],
            )
    return SubjectAction(action="subject.rectified", subject_ref=ref, seq=seq, cases=live)


def restrict(
    core: StoreCore, external_id: str, kind: str, role: str, *, lift: bool = False
) -> SubjectAction:
    if kind not in RESTRICTION_KINDS:
        raise InputError(f"kind must be one of {', '.join(RESTRICTION_KINDS)}")
    now = core.clock()
    with core._transaction():
        ref = find_subject(core, external_id)
        cases = [c for c, _, _ in _cases_of(core, ref)]
        live = sql.scalar(
            core.con,
            "SELECT seq FROM restrictions WHERE subject_ref = ? AND kind = ?"
            " AND lifted_seq IS NULL",
            [ref, kind],
        )
        if lift:
            if live is None:
                raise ConflictError(f"the subject has no {kind} in force to lift")
            action = "subject.restriction_lifted"
            seq = core._append_audit(
                role, action, "subject", ref, {"kind": kind, "since_seq": int(live)}, now
            )
            core.con.execute(
                "UPDATE restrictions SET lifted_seq = ? WHERE subject_ref = ? AND kind = ?"
                " AND lifted_seq IS NULL",
                [seq, ref, kind],
            )
        else:
            if live is not None:
                raise ConflictError(f"the subject's {kind} is already in force (since seq {live})")
            action = _KIND_ACTION[kind]
            seq = core._append_audit(role, action, "subject", ref, {"kind": kind}, now)
            core.con.execute(
                "INSERT INTO restrictions VALUES (?, ?, ?, ?, NULL)", [ref, kind, seq, now]
            )
            # Nobody keeps reviewing a case whose processing is now restricted.
            core.con.execute(
                "DELETE FROM leases WHERE case_id IN"
                " (SELECT case_id FROM cases WHERE subject_ref = ?)",
                [ref],
            )
    return SubjectAction(action=action, subject_ref=ref, seq=seq, cases=cases)


def latest_decided_case(core: StoreCore, subject_ref: str) -> str:
    row = sql.one(
        core.con,
        "SELECT d.case_id FROM decisions d JOIN cases c USING (case_id)"
        " WHERE c.subject_ref = ? AND c.removed_seq IS NULL"
        " AND d.action IN ('accept', 'override') AND d.decision_id NOT IN"
        " (SELECT undo_of FROM decisions WHERE action = 'undo' AND undo_of IS NOT NULL)"
        " ORDER BY d.seq DESC LIMIT 1",
        [subject_ref],
    )
    if row is None:
        raise InputError("the subject has no decided case to contest")
    return str(row[0])


# ----------------------------------------------------------------------- export
def export(core: StoreCore, external_id: str) -> SubjectExport:
    now = core.clock()
    ref = find_subject(core, external_id)
    key = core.keys.store.key(ref)
    external = sql.one(
        core.con, "SELECT subject_id_sealed, seq FROM identity WHERE subject_ref = ?", [ref]
    )
    assert external is not None
    external_id_opened = personal_data.open_value(
        key,
        bytes(external[0]).decode("ascii"),
        personal_data.SUBJECT_ID_PURPOSE,
        ref,
        int(external[1]),
        "",
    )
    cases = _cases_of(core, ref)
    case_ids = [c for c, _, _ in cases]
    received = _received_values(core, case_ids)
    current = core._rectified(received) if received.height else received
    by_case_received = {r["case_id"]: r for r in received.iter_rows(named=True)}
    by_case_current = {r["case_id"]: r for r in current.iter_rows(named=True)}
    exported: list[ExportedCase] = []
    for case_id, ingest_seq, removed in cases:
        record = core.get_case(case_id)
        preds = {p.prediction_id: p for p in record.predictions}
        got = dict(by_case_received.get(case_id, {}))
        now_values = dict(by_case_current.get(case_id, {}))
        for d in (got, now_values):
            d.pop("case_id", None)
        exported.append(
            ExportedCase(
                case_id=case_id,
                created_at=record.created_at,
                ingest_seq=ingest_seq,
                received=got,
                current=now_values,
                seed_label=record.seed_label,
                rectifications=_rectifications(core, case_id, ref, key),
                predictions=record.predictions,
                decisions=[
                    ExportedDecision(
                        decision=d,
                        prediction=preds.get(d.prediction_id)
                        if d.prediction_id is not None
                        else None,
                    )
                    for d in record.decisions
                ],
                contests=[
                    int(r[0])
                    for r in core.con.execute(
                        "SELECT seq FROM contests WHERE case_id = ? ORDER BY seq", [case_id]
                    ).fetchall()
                ],
                data_removed=removed is not None,
            )
        )
    snapshots = _snapshot_rows(core, case_ids)
    return SubjectExport(
        use_case=core.settings.use_case.name,
        exported_at=utc_timestamp(now),
        subject_ref=ref,
        external_subject_id=str(external_id_opened),
        restrictions=[
            ExportedRestriction(
                kind=str(r[0]), since_seq=int(r[1]), at=utc_timestamp(r[2]), lifted_seq=r[3]
            )
            for r in core.con.execute(
                "SELECT kind, seq, created_at, lifted_seq FROM restrictions"
                " WHERE subject_ref = ? ORDER BY seq",
                [ref],
            ).fetchall()
        ],
        cases=exported,
        snapshots=snapshots,
        training_runs=_runs_of(core, [s.sha256 for s in snapshots]),
        audit_events=_events_about(core, [ref, *case_ids]),
    )


def _received_values(core: StoreCore, case_ids: list[str]) -> pl.DataFrame:
    if not case_ids:
        return pl.DataFrame()
    settings = core.settings
    feats = ", ".join(f'f."{n}"' for n in settings.feature_only_columns)
    rel = core.con.sql(
        f"SELECT c.case_id{', ' + feats if feats else ''} FROM cases c"
        " JOIN case_features f USING (case_id) WHERE c.case_id IN (SELECT unnest(?))"
        " ORDER BY c.case_id",
        params=[case_ids],
    )
    frame = pl.from_arrow(rel.to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    if settings.personal_columns and frame.height:
        opened = core._open_personal(
            core._sealed_rows("c.case_id IN (SELECT unnest(?))", [case_ids])
        )
        frame = frame.join(opened, on="case_id", how="left")
    return frame


def _rectifications(
    core: StoreCore, case_id: str, ref: str, key: bytes
) -> list[ExportedRectification]:
    rows = core.con.execute(
        "SELECT r.column_name, r.value_sealed, r.seq, r.created_at,"
        " json_extract_string(a.entry, '$.actor') FROM rectifications r"
        " JOIN audit_log a ON a.seq = r.seq WHERE r.case_id = ? ORDER BY r.seq",
        [case_id],
    ).fetchall()
    return [
        ExportedRectification(
            column=str(column),
            value=personal_data.open_value(
                key, sealed, personal_data.RECTIFY_PURPOSE, ref, int(seq), f"{case_id}/{column}"
            ),
            seq=int(seq),
            at=utc_timestamp(at),
            by=str(actor),
        )
        for column, sealed, seq, at, actor in rows
    ]


def _snapshot_rows(core: StoreCore, case_ids: list[str]) -> list[ExportedSnapshot]:
    out: list[ExportedSnapshot] = []
    if not case_ids:
        return out
    for name, as_of, sha, created in core.con.execute(
        "SELECT name, as_of_seq, sha256, created_at FROM snapshots WHERE removed_seq IS NULL"
        " ORDER BY name"
    ).fetchall():
        path = core.workspace.snapshots_dir / str(name)
        if not path.exists():
            continue
        rows = pl.read_parquet(path).filter(pl.col("case_id").is_in(case_ids))
        if rows.height:
            out.append(
                ExportedSnapshot(
                    name=str(name),
                    sha256=str(sha),
                    as_of_seq=int(as_of),
                    created_at=utc_timestamp(created),
                    rows=json.loads(rows.write_json()),
                )
            )
    return out


def _runs_of(core: StoreCore, shas: list[str]) -> list[ExportedRun]:
    if not shas:
        return []
    rows = core.con.execute(
        "SELECT seq, entry FROM audit_log"
        """ WHERE entry LIKE '{"action":"model.trained",%'"""
        " AND json_extract_string(entry, '$.payload.snapshot_sha256') IN (SELECT unnest(?))"
        " ORDER BY seq",
        [shas],
    ).fetchall()
    out = []
    for seq, entry in rows:
        e = json.loads(entry)
        p = e["payload"]
        out.append(
            ExportedRun(
                run_id=str(p.get("run_id")),
                seq=int(seq),
                at=str(e["ts"]),
                snapshot=str(p.get("snapshot")),
                snapshot_sha256=str(p.get("snapshot_sha256")),
                model_sha256=p.get("model_sha256"),
            )
        )
    return out


def _events_about(core: StoreCore, object_ids: list[str]) -> list[AuditEvent]:
    rows = core.con.execute(
        "SELECT entry, prev_hash, hash FROM audit_log"
        " WHERE json_extract_string(entry, '$.object_id') IN (SELECT unnest(?)) ORDER BY seq",
        [object_ids],
    ).fetchall()
    return [AuditEvent(**json.loads(e), prev_hash=p, hash=h) for e, p, h in rows]
