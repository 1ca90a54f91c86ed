"""A subject's export (GDPR Arts. 15, 20): everything held about them, audited.

Their cases as received and as rectified, decisions, restrictions, the snapshots that hold
their rows and the training runs that used them, the audit events about them, and the
recipients of their data with whether each was told of each change (Art. 19); opened
with their key, so an erased subject can no longer be exported.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import polars as pl

from hilt.pipelines.store import personal_data, sql
from hilt.pipelines.store.audit.chain import utc_timestamp
from hilt.pipelines.store.audit_records import AuditEvent
from hilt.pipelines.store.ops import personal_reads, recipients
from hilt.pipelines.store.ops.cases import get_case
from hilt.pipelines.store.ops.subject_rights import cases_of, find_subject
from hilt.pipelines.store.subject_records import (
    ExportedCase,
    ExportedDecision,
    ExportedOutcome,
    ExportedRectification,
    ExportedRestriction,
    ExportedRun,
    ExportedSnapshot,
    SubjectExport,
)

if TYPE_CHECKING:
    from hilt.pipelines.store.unit import Unit


def subject_export(unit: Unit, subject_id: str) -> SubjectExport:
    """Everything held about one subject (GDPR Arts. 15, 20); the export is audited."""
    document = _export(unit, subject_id)
    now = unit.clock()
    with unit.transaction():
        unit.append_audit(
            "subject.exported",
            "subject",
            document.subject_ref,
            {"cases": [c.case_id for c in document.cases]},
            now,
        )
    return document


def _export(unit: Unit, subject_id: str) -> SubjectExport:
    now = unit.clock()
    ref = find_subject(unit, subject_id)
    key = unit.keys.store.key(ref)
    external = sql.one(
        unit.con, "SELECT subject_id_sealed, seq FROM identity WHERE subject_ref = ?", [ref]
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
    cases = cases_of(unit, ref)
    case_ids = [c for c, _, _ in cases]
    received = received_values(unit, case_ids)
    current = personal_reads.rectified(unit, received) if received.height else received
    by_case_received = {r["case_id"]: r for r in received.iter_rows(named=True)}
    by_case_current = {r["case_id"]: r for r in current.iter_rows(named=True)}
    exported: list[ExportedCase] = []
    for case_id, ingest_seq, removed in cases:
        record = get_case(unit, case_id)
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
                rectifications=_rectifications(unit, case_id, ref, key),
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
                    for r in unit.con.execute(
                        "SELECT seq FROM contests WHERE case_id = ? ORDER BY seq", [case_id]
                    ).fetchall()
                ],
                data_removed=removed is not None,
                outcome=_outcome(unit, case_id),
            )
        )
    snapshots = _snapshot_rows(unit, case_ids)
    told_whom, told = recipients.recipients_of(unit, ref)
    return SubjectExport(
        use_case=unit.settings.use_case.name,
        exported_at=utc_timestamp(now),
        subject_ref=ref,
        external_subject_id=str(external_id_opened),
        restrictions=[
            ExportedRestriction(
                kind=str(r[0]), since_seq=int(r[1]), at=utc_timestamp(r[2]), lifted_seq=r[3]
            )
            for r in unit.con.execute(
                "SELECT kind, seq, created_at, lifted_seq FROM restrictions"
                " WHERE subject_ref = ? ORDER BY seq",
                [ref],
            ).fetchall()
        ],
        cases=exported,
        snapshots=snapshots,
        training_runs=_runs_of(unit, [s.sha256 for s in snapshots]),
        audit_events=_events_about(unit, [ref, *case_ids]),
        recipients=told_whom,
        recipient_notices=told,
    )


def received_values(unit: Unit, case_ids: list[str]) -> pl.DataFrame:
    """The cases' values as received (personal columns opened with their subjects' keys),
    one row per case, ordered by case id."""
    if not case_ids:
        return pl.DataFrame()
    settings = unit.settings
    feats = ", ".join(f'f."{n}"' for n in settings.feature_only_columns)
    rel = unit.con.sql(
        f"SELECT c.case_id{', ' + feats if feats else ''} FROM cases c"
        " JOIN case_features f USING (case_id) WHERE c.case_id IN (SELECT unnest(?))"
        " ORDER BY c.case_id",
        params=[case_ids],
    )
    frame = pl.from_arrow(rel.to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    if settings.personal_columns and frame.height:
        opened = personal_reads.open_personal(
            unit, personal_reads.sealed_rows(unit, "c.case_id IN (SELECT unnest(?))", [case_ids])
        )
        frame = frame.join(opened, on="case_id", how="left")
    return frame


def _rectifications(unit: Unit, case_id: str, ref: str, key: bytes) -> list[ExportedRectification]:
    rows = unit.con.execute(
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


def _snapshot_rows(unit: Unit, case_ids: list[str]) -> list[ExportedSnapshot]:
    out: list[ExportedSnapshot] = []
    if not case_ids:
        return out
    for name, as_of, sha, created in unit.con.execute(
        "SELECT name, as_of_seq, sha256, created_at FROM snapshots WHERE removed_seq IS NULL"
        " ORDER BY name"
    ).fetchall():
        path = unit.workspace.snapshots_dir / str(name)
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


def _runs_of(unit: Unit, shas: list[str]) -> list[ExportedRun]:
    if not shas:
        return []
    rows = unit.con.execute(
        "SELECT seq, entry FROM audit_log"
        """ WHERE entry LIKE '{"action":"run.trained",%'"""
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


def _events_about(unit: Unit, object_ids: list[str]) -> list[AuditEvent]:
    rows = unit.con.execute(
        "SELECT entry, prev_hash, hash FROM audit_log"
        " WHERE json_extract_string(entry, '$.object_id') IN (SELECT unnest(?)) ORDER BY seq",
        [object_ids],
    ).fetchall()
    return [AuditEvent(**json.loads(e), prev_hash=p, hash=h) for e, p, h in rows]


def _outcome(unit: Unit, case_id: str) -> ExportedOutcome | None:
    """The outcome recorded for the case (issue 14, post-market monitoring), if any."""
    row = sql.one(
        unit.con,
        "SELECT outcome, observed_at, batch_seq FROM outcomes WHERE case_id = ?",
        [case_id],
    )
    if row is None:
        return None
    return ExportedOutcome(
        outcome=str(row[0]), observed_at=utc_timestamp(row[1]), batch_seq=int(row[2])
    )
