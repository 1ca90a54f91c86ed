"""Cases and predictions: ingest a batch, read a case, the frame of cases, the feature profile.

Ingesting cases seals each subject's personal columns with a key of their own; a batch of
predictions is stored exactly as the frame that is digested. Both are audited by one event
carrying the batch's digest (``audit.batch_digest``), in the transaction of the insert.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hilt.pipelines.deferred_imports import deferred_module
from hilt.pipelines.errors import ConflictError, InputError, NotFoundError, StoreError
from hilt.pipelines.store import personal_data, review_queue, sql
from hilt.pipelines.store.audit.chain import utc_timestamp
from hilt.pipelines.store.case_records import CaseRecord, FeatureRange, IngestResult, Prediction
from hilt.pipelines.store.ops import models, personal_reads, queue, review, system
from hilt.pipelines.store.schema import COUNTED_TABLES, quote
from hilt.pipelines.store.validation import check_text
from hilt.pipelines.tables import rejects_csv

if TYPE_CHECKING:
    import duckdb
    import polars as pl

    from hilt.pipelines.store.live_queue import CaseRows
    from hilt.pipelines.store.unit import Unit
else:
    pl = deferred_module("polars")  # on first use: the store's clients never import it

#: Roles that see every personal-data column of a case; others see only display_personal.
PERSONAL_READERS = frozenset({"admin", "dpo", "data-scientist", "system"})
#: Roles that see a case whole: its seed label (a gold case's answer is one) and every
#: reviewer's decisions. A reviewer sees neither on a case still open to review.
CASE_OVERSEERS = frozenset({"lead", "auditor", "admin", "dpo", "data-scientist", "system"})

#: The predictions columns that ``prediction_from_row`` reads, in its order.
PREDICTION_COLUMNS = (
    "prediction_id, case_id, model_version, score, label, explanation, created_at, batch_seq"
)


def prediction_from_row(p: tuple[Any, ...]) -> Prediction:
    """A Prediction from a row of ``SELECT PREDICTION_COLUMNS FROM predictions``."""
    return Prediction(
        prediction_id=int(p[0]),
        case_id=p[1],
        model_version=p[2],
        score=float(p[3]),
        label=p[4],
        explanation=json.loads(p[5]),
        created_at=utc_timestamp(p[6]),
        batch_seq=int(p[7]),
    )


def _known(unit: Unit, ids: pl.Series) -> set[str]:
    """Which of ``ids`` are case ids the store holds already."""
    unit.con.register("hilt_ids", pl.DataFrame({"case_id": ids}))
    try:
        rows = unit.con.execute(
            "SELECT case_id FROM cases WHERE case_id IN (SELECT case_id FROM hilt_ids)"
        ).fetchall()
    finally:
        unit.con.unregister("hilt_ids")
    return {str(r[0]) for r in rows}


def ingest_cases(unit: Unit, frame: pl.DataFrame, partial: bool = False) -> IngestResult:
    """Add a batch of cases. A subject seen for the first time gets a random
    ``subject_ref`` and a key of their own; their external id and the personal columns
    are stored only sealed with that key (see ``subject_keys``).

    ``partial``: the rows that pass validation land and the others are returned as rejects
    (row numbers and reasons); their count and the sha256 of the rejects file are audited in
    the batch's event. Otherwise one invalid row rejects the batch. The store decides which
    rows are valid, never the caller."""
    from hilt.pipelines.store.audit import batch_digest
    from hilt.pipelines.store.validation import clean_cases, split_cases

    rejected: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if partial:
        valid, rejects = split_cases(frame, unit.settings, lambda ids: _known(unit, ids))
        extra["rejected"] = rejects.height
        if rejects.height:
            numbers, reasons = rejects["row"].to_list(), rejects["reason"].to_list()
            sha = hashlib.sha256(rejects_csv(frame, numbers, reasons)).hexdigest()
            rejected = {
                "rejected": rejects.height,
                "rejected_rows": numbers,
                "reasons": reasons,
                "rejects_sha256": sha,
            }
            extra["rejects_sha256"] = sha
        if valid.height == 0:
            clean_cases(frame, unit.settings)  # names every problem; nothing is written
            raise ConflictError(
                f"cases rejected, nothing was written: all {frame.height} rows have case ids "
                "the store already holds"
            )
        frame = valid
    clean = clean_cases(frame, unit.settings)
    now = unit.clock()
    master = unit.keys.master  # no master key: a clear error before anything is written
    subject_ids = clean.subject_ids.to_list()
    lookup_of = {sid: master.lookup(sid) for sid in dict.fromkeys(subject_ids)}
    lookups = [lookup_of[sid] for sid in subject_ids]
    batch = pl.DataFrame({"case_id": clean.case_ids, "lookup": lookups})
    feats, labels = clean.features, clean.labels
    new_keys: dict[str, bytes] = {}
    try:
        with unit.transaction():
            unit.con.register("hilt_batch", batch)
            try:
                clash = sql.one(
                    unit.con,
                    "SELECT count(*) FROM hilt_batch b JOIN cases c USING (case_id)",
                )
                if clash and clash[0]:
                    rows = sql.one(
                        unit.con,
                        "SELECT list(rn ORDER BY rn)[1:5] FROM (SELECT row_number() OVER ()"
                        " AS rn, case_id FROM hilt_batch) b"
                        " WHERE case_id IN (SELECT case_id FROM cases)",
                    )
                    raise ConflictError(
                        f"cases rejected, nothing was written:\n- {clash[0]} rows have case"
                        " ids that already exist (rows "
                        f"{', '.join(map(str, rows[0] if rows else []))})"
                    )
                seq = unit.next_seq()
                known: dict[str, str] = dict(
                    unit.con.execute(
                        "SELECT lookup, subject_ref FROM identity"
                        " WHERE lookup IN (SELECT DISTINCT lookup FROM hilt_batch)"
                    ).fetchall()
                )
                first_id = {lk: sid for sid, lk in lookup_of.items()}
                fresh = {lk: "subj_" + secrets.token_hex(16) for lk in first_id if lk not in known}
                new_keys = unit.keys.store.create(fresh.values())
                keys = {**unit.keys.store.get(known.values()), **new_keys}
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
                unit.con.register("hilt_identity", identity)
                unit.con.execute(
                    "INSERT INTO identity SELECT subject_ref, lookup, subject_id_sealed, ?, ?"
                    " FROM hilt_identity",
                    [seq, now],
                )
                cases = pl.DataFrame({"case_id": clean.case_ids, "subject_ref": subject_refs})
                unit.con.register("hilt_cases", cases)
                unit.con.execute(
                    "INSERT INTO cases SELECT case_id, subject_ref, ?, ?, NULL FROM hilt_cases",
                    [seq, now],
                )
                unit.con.register("hilt_features", feats)
                unit.con.execute("INSERT INTO case_features SELECT * FROM hilt_features")
                sealed = personal_data.seal_cases(
                    clean.personal, subject_refs, keys, seq, unit.settings.personal_columns
                )
                personal = pl.DataFrame(
                    {
                        "case_id": clean.case_ids,
                        "subject_ref": subject_refs,
                        "sealed": pl.Series(sealed, dtype=pl.Binary),
                    }
                )
                unit.con.register("hilt_personal", personal)
                unit.con.execute("INSERT INTO case_personal SELECT * FROM hilt_personal")
                unit.con.register("hilt_labels", labels)
                unit.con.execute(
                    "INSERT INTO seed_labels SELECT case_id, label, ? FROM hilt_labels", [seq]
                )
                digest = batch_digest.digest(unit.con, batch_digest.cases_sql(unit.settings), seq)
                unit.append_audit(
                    "cases.ingest",
                    "batch",
                    f"cases:{now.strftime('%Y%m%dT%H%M%S%fZ')}",
                    {
                        "rows": batch.height,
                        "labelled": labels.height,
                        "new_subjects": len(fresh),
                        "digest": digest,
                        "digest_method": batch_digest.METHOD,
                        "columns": list(unit.settings.columns),
                        **extra,
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
                    unit.con.unregister(name)
    except BaseException:
        # The keys were committed first (a key never lags its data); without the data
        # they seal, they go again.
        if new_keys:
            unit.keys.store.destroy(new_keys)
        raise
    return IngestResult(kind="cases", rows=batch.height, seq=seq, digest=digest, **rejected)


def add_predictions(
    unit: Unit, model_version: str, frame: pl.DataFrame, model_sha256: str
) -> IngestResult:
    """Add a batch of predictions of ``model_version``, whose scorer proves the model by its
    sha256. Only the champion's predictions join the review queue; those of a version a lead
    allowed for shadow scoring are kept apart (``shadow_predictions``, never queued); any
    other version, or a model whose sha256 is not the one registered, is refused and the
    refusal audited (``models.scoring_target``)."""
    if not model_version or not model_version.strip():
        raise InputError("model_version is required")
    check_text(model_version, "model_version", 128)
    from hilt.pipelines.store.validation import clean_predictions

    clean = clean_predictions(frame, unit.settings)
    now = unit.clock()
    shadow = models.scoring_target(unit, model_version, model_sha256, now, clean.height)
    return insert_predictions(unit, model_version, clean, now, shadow=shadow)


def insert_predictions(
    unit: Unit, model_version: str, clean: pl.DataFrame, now: datetime, *, shadow: bool
) -> IngestResult:
    """Insert validated predictions (``validation.clean_predictions``) as one batch, audited
    by one event carrying the batch's digest (``predictions.ingest``, or
    ``predictions.shadow`` into ``shadow_predictions``). Refused while a lead's halt holds.

    The rows are inserted exactly as the frame that is digested holds them (ids given,
    not numbered by the database), so the digest is computed from that frame instead of
    being read back; verify recomputes it from the stored rows (``batch_digest``)."""
    from hilt.pipelines.store.audit import batch_digest

    table = "shadow_predictions" if shadow else "predictions"
    n = clean.height
    with unit.transaction():
        system.refuse_if_halted(unit, "adding predictions")
        base_row = sql.one(unit.con, f"SELECT coalesce(max(prediction_id), 0) FROM {table}")
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
        unit.con.register("hilt_predictions", rows)
        try:
            # Every row names a case of the store whose data is still there: a case whose
            # data was removed (erased, or purged by retention) is processed no more, so a
            # scorer that kept its features is refused (GDPR Art. 17). One scan for both.
            found = sql.one(
                unit.con,
                "SELECT count(*) FILTER (WHERE c.case_id IS NULL),"
                " count(*) FILTER (WHERE c.removed_seq IS NOT NULL)"
                " FROM hilt_predictions p LEFT JOIN cases c USING (case_id)",
            )
            unknown, removed = found if found is not None else (0, 0)
            if unknown:
                first = sql.scalar(
                    unit.con,
                    "SELECT list(prediction_id - ? ORDER BY prediction_id)[1:5]"
                    " FROM hilt_predictions p"
                    " WHERE NOT EXISTS (SELECT 1 FROM cases c WHERE c.case_id = p.case_id)",
                    [base],
                )
                raise NotFoundError(
                    f"predictions rejected, nothing was written:\n- {unknown} rows name "
                    f"unknown case ids (rows {', '.join(map(str, first or []))})"
                )
            if removed:
                first = sql.scalar(
                    unit.con,
                    "SELECT list(prediction_id - ? ORDER BY prediction_id)[1:5]"
                    " FROM hilt_predictions WHERE case_id IN"
                    " (SELECT case_id FROM cases WHERE removed_seq IS NOT NULL)",
                    [base],
                )
                raise ConflictError(
                    f"predictions rejected, nothing was written:\n- {removed} rows name "
                    "cases whose data was removed: erased, or purged by retention (rows "
                    f"{', '.join(map(str, first or []))})"
                )
            seq = unit.next_seq()
            unit.con.execute(
                f"INSERT INTO {table} SELECT prediction_id, case_id, model_version, score,"
                " label, explanation, ?, ? FROM hilt_predictions",
                [seq, now],
            )
            digest = batch_digest.table_digest(rows)
            unit.append_audit(
                batch_digest.SHADOW_ACTION if shadow else batch_digest.PREDICTIONS_ACTION,
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
            unit.con.unregister("hilt_predictions")
    if shadow:
        return IngestResult(kind="shadow-predictions", rows=n, seq=seq, digest=digest)
    return IngestResult(kind="predictions", rows=n, seq=seq, digest=digest)


def case_frame(unit: Unit, case_ids: list[str] | None = None) -> pl.DataFrame:
    """Live cases as one frame: case_id, every configured column (personal ones opened,
    rectifications applied), and the seed label."""
    feats = "".join(f", f.{quote(n)}" for n in unit.settings.feature_only_columns)
    cond = "true"
    params: list[Any] = []
    if case_ids is not None:
        cond = "c.case_id IN (SELECT unnest(?))"
        params = [case_ids]
    rel = unit.con.sql(
        f"SELECT c.case_id{feats}, s.label AS seed_label FROM cases c"
        " JOIN case_features f USING (case_id) LEFT JOIN seed_labels s USING (case_id)"
        f" WHERE c.removed_seq IS NULL AND {cond} ORDER BY c.case_id",
        params=params,
    )
    frame = pl.from_arrow(rel.to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    if unit.settings.personal_columns:
        opened = personal_reads.open_personal(unit, personal_reads.sealed_rows(unit, cond, params))
        frame = frame.join(opened, on="case_id", how="left")
    order = [
        "case_id",
        *unit.settings.feature_only_columns,
        *unit.settings.personal_columns,
        "seed_label",
    ]
    return personal_reads.rectified(unit, frame).select(order)


def get_case(unit: Unit, case_id: str) -> CaseRecord:
    """One case as this user may see it: features, the personal columns their role may read
    (rectified), its seed label, predictions and decisions."""
    return case_and_history(unit, case_id)[0]


def case_and_history(
    unit: Unit, case_id: str
) -> tuple[CaseRecord, list[review_queue.LoggedAction]]:
    """``get_case``, and every decision on the case in audit order as the review rules read
    them (``queue.logged_actions``, from the same read: the lease shows both)."""
    row, held_feats, preds = case_rows(unit, case_id)
    if row is None:
        raise NotFoundError("unknown case id")
    feats = dict(held_feats)  # the live queue's own stays as read
    readable = (
        list(unit.settings.personal_columns)
        if any(r in PERSONAL_READERS for r in unit.actor.roles)
        else list(unit.settings.fields.display_personal)
    )
    personal: dict[str, Any] = {}
    if readable and row[4] is None:
        opened = personal_reads.open_personal(
            unit, personal_reads.sealed_rows(unit, "c.case_id = ?", [case_id])
        )
        if opened.height:
            personal = {k: v for k, v in opened.row(0, named=True).items() if k in readable}
    index = unit.queue_index  # the service's live queue knows the rectified cases
    if (feats or personal) and (
        case_id in index.rectified
        if index is not None
        else sql.scalar(
            unit.con, "SELECT count(*) FROM rectifications WHERE case_id = ?", [case_id]
        )
    ):
        current = personal_reads.rectified(
            unit, pl.DataFrame([{"case_id": case_id, **feats, **personal}])
        )
        values = current.row(0, named=True)
        feats = {k: values[k] for k in feats}
        personal = {k: values[k] for k in personal}
    overseer = bool(CASE_OVERSEERS & set(unit.actor.roles))
    seed_label = None
    if overseer:
        label = sql.one(unit.con, "SELECT label FROM seed_labels WHERE case_id = ?", [case_id])
        seed_label = label[0] if label else None
    decisions = review.decisions_of_case(unit, case_id, str(row[1]))
    history = [
        review_queue.LoggedAction(
            d.decision_id, d.action, d.reviewer, d.seq, d.undo_of, d.final_label
        )
        for d in decisions
    ]
    if not overseer:
        # A reviewer never sees a seed label (the gold cases' answers are seed labels), nor
        # another reviewer's decisions on a case still open to review (independent review).
        me = unit.actor.name
        if any(d.reviewer != me for d in decisions):
            state, gold = queue.state_of(unit, case_id, history)
            if gold or state.pending:
                decisions = [d for d in decisions if d.reviewer == me]
    record = CaseRecord(
        case_id=row[0],
        subject_ref=row[1],
        ingest_seq=int(row[2]),
        created_at=utc_timestamp(row[3]),
        features=feats,
        personal=personal,
        seed_label=seed_label,
        data_removed=row[4] is not None,
        predictions=[prediction_from_row(p) for p in preds],
        decisions=decisions,
    )
    return record, history


#: Cases a lease reads at once in the service (``case_rows``).
READ_AHEAD = 32


def case_rows(unit: Unit, case_id: str) -> CaseRows:
    """The case's rows as a lease shows them (``live_queue.CaseRows``). The service's live
    queue holds them for the waiting cases, read a batch at a time in the queue's order:
    three statements for the next ``READ_AHEAD`` leases instead of three for each."""
    index = unit.queue_index
    if index is None:
        return read_case_rows(unit.con, [case_id]).get(case_id, (None, {}, []))
    known = index.case_rows.get(case_id)
    if known is not None:
        return known
    found = read_case_rows(unit.con, index.read_ahead(case_id, READ_AHEAD))
    index.keep_case_rows(found)
    return found.get(case_id, (None, {}, []))


def read_case_rows(con: duckdb.DuckDBPyConnection, case_ids: list[str]) -> dict[str, CaseRows]:
    """The rows of ``case_ids`` (those that exist), one statement per table."""
    marks = ", ".join(["?"] * len(case_ids))
    out: dict[str, CaseRows] = {
        str(r[0]): (tuple(r), {}, [])
        for r in con.execute(
            "SELECT case_id, subject_ref, ingest_seq, created_at, removed_seq FROM cases"
            f" WHERE case_id IN ({marks})",
            case_ids,
        ).fetchall()
    }
    cur = con.execute(f"SELECT * FROM case_features WHERE case_id IN ({marks})", case_ids)
    names = [d[0] for d in cur.description or []]
    for r in cur.fetchall():
        feats = dict(zip(names, r, strict=True))
        found = out.get(str(feats.pop("case_id")))
        if found is not None:
            found[1].update(feats)
    # Sorted here: an ORDER BY costs DuckDB more than sorting the few rows of a case.
    for p in sorted(
        con.execute(
            f"SELECT {PREDICTION_COLUMNS} FROM predictions WHERE case_id IN ({marks})", case_ids
        ).fetchall(),
        key=lambda p: int(p[0]),
    ):
        found = out.get(str(p[1]))
        if found is not None:
            found[2].append(tuple(p))
    return out


def counts(unit: Unit) -> dict[str, int]:
    """Rows per table of the store."""
    out: dict[str, int] = {}
    for table in COUNTED_TABLES:
        row = sql.one(unit.con, f"SELECT count(*) FROM {table}")
        out[table] = int(row[0]) if row else 0
    return out


def feature_profile(unit: Unit) -> dict[str, FeatureRange]:
    """Per feature, the range (numeric) or levels (category) seen in labelled cases."""
    out: dict[str, FeatureRange] = {}
    labelled = (
        "(SELECT case_id FROM seed_labels UNION SELECT case_id FROM decisions"
        " WHERE action IN ('accept', 'override'))"
    )
    personal = [n for n in unit.settings.fields.features if n in unit.settings.fields.personal]
    opened: pl.DataFrame | None = None
    if personal:
        base = personal_reads.sealed_rows(unit, f"c.case_id IN {labelled}", [])
        opened = personal_reads.open_personal(unit, base)
    for name in unit.settings.fields.features:
        col = unit.settings.columns[name]
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
                unit.con,
                f"SELECT min({q}), max({q}) FROM case_features WHERE case_id IN {labelled}",
            )
            if row and row[0] is not None:
                out[name] = FeatureRange(low=float(row[0]), high=float(row[1]))
        elif col.type in ("category", "bool", "string"):
            levels = unit.con.execute(
                f"SELECT DISTINCT {q}::VARCHAR FROM case_features WHERE case_id IN {labelled}"
                f" AND {q} IS NOT NULL ORDER BY 1"
            ).fetchall()
            out[name] = FeatureRange(levels=[str(v[0]) for v in levels])
    return out


def get_prediction(unit: Unit, prediction_id: int) -> Prediction:
    """One stored prediction by its id: model version, score, label, contributions."""
    p = sql.one(
        unit.con,
        f"SELECT {PREDICTION_COLUMNS} FROM predictions WHERE prediction_id = ?",
        [prediction_id],
    )
    if p is None:
        raise NotFoundError("unknown prediction id")
    return prediction_from_row(p)
