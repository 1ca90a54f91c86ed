"""The model registry: which model versions exist, which passed the gate, which a lead
approved, and so which may score (EU AI Act Arts. 14, 15, 17).

The store is the authority, not MLflow: a run registers its model with the evaluation it
measured, and the store applies the gate itself (``store.gate``, with hilt.toml's
``[gate]``); a lead who did not train it promotes or rejects it here, in the transaction of
the audit row; predictions are accepted only from the champion, or from a version a lead
allowed for shadow scoring (kept apart, never queued), and only with the sha256 the version
was registered with. MLflow's aliases mirror this registry (the loop keeps them so).

States: ``challenger`` (passed the gate, awaiting a lead), ``champion`` (approved; scores),
``rejected`` (by the gate or by a lead), ``superseded`` (a newer challenger replaced it
before a lead decided), ``retired`` (a former champion).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hilt.pipelines.errors import ConflictError, InputError, NotFoundError, PermissionDeniedError
from hilt.pipelines.store import sql
from hilt.pipelines.store.audit.chain import canonical_json, utc_timestamp
from hilt.pipelines.store.gate import GateConfig, GateResult, gate
from hilt.pipelines.store.ops import system
from hilt.pipelines.store.registry_records import GateCheckRecord, ModelEvaluation, ModelRecord
from hilt.pipelines.store.requests import MODEL_NAME
from hilt.pipelines.store.validation import check_text

if TYPE_CHECKING:
    from hilt.pipelines.store.unit import Unit

SHA256 = re.compile(r"^[0-9a-f]{64}$")

_COLUMNS = (
    "model, model_sha256, run_id, author, gate, evaluation, state, shadow, registered_at,"
    " registered_seq, decided_by, decided_seq"
)


def _record(row: tuple[Any, ...]) -> ModelRecord:
    stored = json.loads(row[5])
    return ModelRecord(
        model=row[0],
        model_sha256=row[1],
        run_id=row[2],
        author=row[3],
        gate=row[4],
        checks=[GateCheckRecord(**c) for c in stored["checks"]],
        evaluation=ModelEvaluation(**stored["evaluation"]),
        state=row[6],
        shadow=bool(row[7]),
        registered_at=utc_timestamp(row[8]),
        registered_seq=int(row[9]),
        decided_by=row[10],
        decided_seq=int(row[11]) if row[11] is not None else None,
    )


def find(unit: Unit, model: str) -> ModelRecord | None:
    row = sql.one(unit.con, f"SELECT {_COLUMNS} FROM models WHERE model = ?", [model])
    return _record(row) if row is not None else None


def _require(unit: Unit, model: str) -> ModelRecord:
    found = find(unit, model)
    if found is None:
        raise NotFoundError(f"{model} is not a model registered in this store")
    return found


def champion(unit: Unit) -> ModelRecord | None:
    """The version that scores into the review queue, if a lead approved one."""
    row = sql.one(unit.con, f"SELECT {_COLUMNS} FROM models WHERE state = 'champion'")
    return _record(row) if row is not None else None


def models(unit: Unit) -> list[ModelRecord]:
    """Every registered version, in the order they were registered."""
    rows = unit.con.execute(f"SELECT {_COLUMNS} FROM models ORDER BY registered_seq").fetchall()
    return [_record(r) for r in rows]


def _floats(values: dict[str, float | None]) -> dict[str, float]:
    return {k: math.nan if v is None else float(v) for k, v in values.items()}


def _checks(result: GateResult) -> list[GateCheckRecord]:
    def clean(x: float | None) -> float | None:
        return None if x is None or math.isnan(x) else float(x)

    return [
        GateCheckRecord(
            name=c.name,
            passed=c.passed,
            value=clean(c.value),
            limit=clean(c.limit),
            explanation=c.explanation,
        )
        for c in result.checks
    ]


def register_model(
    unit: Unit, model: str, model_sha256: str, run_id: str, evaluation: ModelEvaluation
) -> ModelRecord:
    """Register a trained model with the evaluation its run measured. The store applies the
    gate to that evaluation itself: passed, the version becomes the challenger (a pending
    challenger is superseded); not passed, it is rejected at once and nothing else changes.
    The evaluation must be on a snapshot this store made, compared with the store's current
    champion (or with none when there is none). Refused while a lead's halt holds (it stops
    retraining: decided here, not by the run that asks)."""
    if not MODEL_NAME.match(model):
        raise InputError("model must be '<registered name>/v<version>', e.g. hilt-credit/v3")
    if not SHA256.match(model_sha256):
        raise InputError("model_sha256 must be 64 lowercase hex characters")
    check_text(run_id, "run_id", 128)
    if not run_id:
        raise InputError("run_id is required")
    now = unit.clock()
    with unit.transaction():
        system.refuse_if_halted(unit, "registering the model")
        if find(unit, model) is not None:
            raise ConflictError(f"{model} is registered already")
        known = sql.scalar(
            unit.con,
            "SELECT count(*) FROM snapshots WHERE sha256 = ?",
            [evaluation.snapshot_sha256],
        )
        if not known:
            raise InputError(
                "the evaluation names no snapshot of this store (snapshot_sha256): a model "
                "is registered from a run on a snapshot the store made"
            )
        current = champion(unit)
        compared = current.model if current else None
        if evaluation.champion != compared:
            raise ConflictError(
                f"the evaluation compared the model with {evaluation.champion or 'no champion'}"
                f", but the champion is {compared or 'none'}: evaluate against the champion"
            )
        if current is not None and evaluation.champion_metrics is None:
            raise InputError("the evaluation has no metrics of the champion it compared with")
        verdict = gate(
            _floats(evaluation.metrics),
            _floats(evaluation.gaps),
            _floats(evaluation.champion_metrics) if evaluation.champion_metrics else None,
            GateConfig.from_settings(unit.settings),
        )
        checks = _checks(verdict)
        state = "challenger" if verdict.passed else "rejected"
        previous = None
        if verdict.passed:
            previous = sql.scalar(unit.con, "SELECT model FROM models WHERE state = 'challenger'")
        seq = unit.append_audit(
            "model.registered",
            "model",
            model,
            {
                "model_sha256": model_sha256,
                "run_id": run_id,
                "author": unit.actor.name,
                "gate": "passed" if verdict.passed else "rejected",
                "checks": [c.model_dump() for c in checks],
                "snapshot_sha256": evaluation.snapshot_sha256,
                "champion": compared,
                "state": state,
                "superseded": previous,
            },
            now,
        )
        if previous is not None:
            unit.con.execute("UPDATE models SET state = 'superseded' WHERE model = ?", [previous])
        stored = canonical_json(
            {"evaluation": evaluation.model_dump(), "checks": [c.model_dump() for c in checks]}
        )
        unit.con.execute(
            f"INSERT INTO models ({_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, false, ?, ?, NULL, NULL)",
            [
                model,
                model_sha256,
                run_id,
                unit.actor.name,
                "passed" if verdict.passed else "rejected",
                stored,
                state,
                now,
                seq,
            ],
        )
    return _require(unit, model)


def _decided(unit: Unit, found: ModelRecord) -> dict[str, str]:
    """What a lead's decision on a model records of it (verify's four-eyes rule reads
    ``author`` and ``approver``)."""
    return {
        "model_sha256": found.model_sha256,
        "run_id": found.run_id,
        "author": found.author,
        "approver": unit.actor.name,
    }


def _lead_decides(unit: Unit, model: str, what: str) -> ModelRecord:
    """The challenger ``model``, once the acting lead is seen not to be its author."""
    found = _require(unit, model)
    if found.state != "challenger":
        raise ConflictError(f"{model} is not the challenger (it is {found.state})")
    if found.author == unit.actor.name:
        raise PermissionDeniedError(
            f"{unit.actor.name!r} trained {model}; a lead who did not train it must {what}"
        )
    return found


def promote_model(unit: Unit, model: str) -> ModelRecord:
    """A lead who did not train the challenger approves it: it becomes the champion, and the
    former champion is retired (EU AI Act Art. 14: a second person decides)."""
    now = unit.clock()
    with unit.transaction():
        found = _lead_decides(unit, model, "approve it")
        previous = champion(unit)
        seq = unit.append_audit(
            "model.promoted",
            "model",
            model,
            {
                **_decided(unit, found),
                "previous_champion": previous.model if previous else None,
            },
            now,
        )
        if previous is not None:
            unit.con.execute(
                "UPDATE models SET state = 'retired' WHERE model = ?", [previous.model]
            )
        unit.con.execute(
            "UPDATE models SET state = 'champion', decided_by = ?, decided_seq = ? WHERE model = ?",
            [unit.actor.name, seq, model],
        )
    return _require(unit, model)


def reject_model(unit: Unit, model: str, reason: str) -> ModelRecord:
    """A lead who did not train the challenger rejects it (the reason is audited as its
    sha256: free text may be about anything); the champion is unchanged."""
    if not reason.strip():
        raise InputError("a rejection needs a reason")
    check_text(reason, "reason", unit.settings.limits.max_text_length, multiline=True)
    now = unit.clock()
    with unit.transaction():
        found = _lead_decides(unit, model, "reject it")
        seq = unit.append_audit(
            "model.rejected",
            "model",
            model,
            {
                **_decided(unit, found),
                "reason_sha256": hashlib.sha256(reason.encode("utf-8")).hexdigest(),
            },
            now,
        )
        unit.con.execute(
            "UPDATE models SET state = 'rejected', decided_by = ?, decided_seq = ? WHERE model = ?",
            [unit.actor.name, seq, model],
        )
    return _require(unit, model)


def allow_shadow(unit: Unit, model: str, allowed: bool = True) -> ModelRecord:
    """A lead allows a version that is not the champion to score in the shadow (its
    predictions are kept apart and never queued for review), or ends it."""
    now = unit.clock()
    with unit.transaction():
        found = _require(unit, model)
        if found.state == "champion":
            raise ConflictError(f"{model} is the champion: it scores into the queue already")
        if found.shadow == allowed:
            raise ConflictError(
                f"{model} is {'already' if allowed else 'not'} allowed to score in the shadow"
            )
        unit.append_audit(
            "model.shadow_allowed" if allowed else "model.shadow_ended",
            "model",
            model,
            {"model_sha256": found.model_sha256, "state": found.state},
            now,
        )
        unit.con.execute("UPDATE models SET shadow = ? WHERE model = ?", [allowed, model])
    return _require(unit, model)


def scoring_target(unit: Unit, model: str, model_sha256: str, now: datetime, rows: int) -> bool:
    """Whether predictions of ``model`` go to the shadow (True) or the review queue (False).
    A version that may not score, or a sha256 other than the one registered, is refused:
    the refusal is audited (``model.use_refused``, EU AI Act Art. 12) and nothing else is
    written. Call before the writing transaction."""
    found = find(unit, model)
    current = champion(unit)
    reason = None
    if found is None:
        reason, why = "unregistered", f"{model} is not a model registered in this store"
    elif found.model_sha256 != model_sha256:
        reason, why = (
            "sha256-mismatch",
            f"the model presented as {model} is not the one registered (its sha256 differs):"
            " a tampered or another model",
        )
    elif found.state != "champion" and not found.shadow:
        reason, why = (
            f"state-{found.state}",
            f"{model} is {found.state}: only the champion "
            f"({current.model if current else 'none yet'}) scores into the review queue, or a"
            " version a lead allowed for shadow scoring",
        )
    if reason is None:
        assert found is not None
        return found.state != "champion"
    with unit.transaction():
        unit.append_audit(
            "model.use_refused",
            "model",
            model,
            {"reason": reason, "rows": rows, "model_sha256": model_sha256},
            now,
        )
    raise PermissionDeniedError(f"predictions refused, nothing was written: {why}")
