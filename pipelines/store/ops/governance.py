"""Whether the deployment may go (or stay) live: the go-live check (``hilt check go-live``).

Decided here, from what the store itself holds, at the store's clock: a champion a lead
approved (the model registry), the impact assessments recorded in hilt.toml's
``[governance]`` and still within their review period (GDPR Art. 35, EU AI Act Art. 27),
a signed checkpoint of the audit log that is recent and belongs to this log
(``audit/checkpoints.py``), a recent monitoring run (the newest ``monitoring.run`` event,
EU AI Act Art. 72) and no serious incident left open (``incident.opened`` with
``serious`` and no later ``incident.closed`` for the same incident, Art. 73). Clients only
print the answer. Read-only: it writes nothing.
"""

from __future__ import annotations

import calendar
import json
from datetime import date, datetime
from typing import TYPE_CHECKING

from hilt.pipelines.config import Governance
from hilt.pipelines.errors import ConfigError
from hilt.pipelines.store import sql
from hilt.pipelines.store.audit.chain import utc_timestamp
from hilt.pipelines.store.governance_records import GoLiveItem, GoLiveReport
from hilt.pipelines.store.ops.models import champion

if TYPE_CHECKING:
    from hilt.pipelines.store.unit import Unit

#: The audit actions the check reads (written by the monitoring and incident operations).
MONITORING_RUN = "monitoring.run"
INCIDENT_OPENED = "incident.opened"
INCIDENT_UPDATED = "incident.updated"
INCIDENT_CLOSED = "incident.closed"


def go_live_check(unit: Unit) -> GoLiveReport:
    """Every requirement of going live, each met or not, at the store's clock. Nothing is
    written; the deployment is ready when every item is met."""
    now = unit.clock()
    governance = unit.settings.governance
    items = [
        _champion(unit),
        _stated("intended-purpose", unit.settings.use_case.purpose, "[use_case] purpose"),
        _stated("risk-owner", governance.risk_owner, "[governance] risk_owner"),
        _assessment(governance, "dpia", "DPIA (GDPR Art. 35)", now.date()),
        _assessment(governance, "fria", "FRIA (EU AI Act Art. 27)", now.date()),
        _checkpoint(unit, now, governance.max_checkpoint_age_days),
        _monitoring(unit, now, governance.max_monitoring_age_days),
        _incidents(unit),
    ]
    return GoLiveReport(checked_at=utc_timestamp(now), items=items)


def _champion(unit: Unit) -> GoLiveItem:
    found = champion(unit)
    if found is None:
        return GoLiveItem(
            check="champion", ok=False, detail="no champion: no model approved by a lead"
        )
    return GoLiveItem(
        check="champion",
        ok=True,
        detail=f"{found.model} (sha256 {found.model_sha256[:12]}), approved by a lead",
    )


def _stated(check: str, value: str, key: str) -> GoLiveItem:
    if not value.strip():
        return GoLiveItem(check=check, ok=False, detail=f"{key} is empty in hilt.toml")
    return GoLiveItem(check=check, ok=True, detail=f"{key} is stated")


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months (the last day of a shorter month)."""
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _assessment(governance: Governance, what: str, title: str, today: date) -> GoLiveItem:
    reference: str = getattr(governance, f"{what}_reference").strip()
    done: date | None = getattr(governance, f"{what}_date")
    key = f"[governance] {what}_reference"
    if not reference:
        return GoLiveItem(check=what, ok=False, detail=f"no {title}: {key} is empty")
    if done is None:
        return GoLiveItem(
            check=what, ok=False, detail=f"{title} {reference} has no date ({what}_date)"
        )
    if done > today:
        return GoLiveItem(
            check=what, ok=False, detail=f"{title} {reference} is dated in the future ({done})"
        )
    expires = add_months(done, governance.review_months)
    if expires <= today:
        return GoLiveItem(
            check=what,
            ok=False,
            detail=f"{title} {reference} of {done} expired on {expires} "
            f"(review_months = {governance.review_months}): review it and record the new date",
        )
    return GoLiveItem(
        check=what, ok=True, detail=f"{title} {reference} of {done}, valid until {expires}"
    )


def _age_days(now: datetime, ts: str) -> float:
    return (now - datetime.fromisoformat(ts)).total_seconds() / 86_400


def _checkpoint(unit: Unit, now: datetime, max_days: int) -> GoLiveItem:
    from hilt.pipelines.store.audit.checkpoints import (
        parse_public_key,
        read_checkpoints,
        signed_by,
    )

    pinned = unit.settings.audit.public_key
    if pinned is None:
        return GoLiveItem(
            check="checkpoint",
            ok=False,
            detail="no public key pinned in hilt.toml ([audit] public_key): no checkpoint "
            "can be trusted",
        )
    try:
        key = parse_public_key(pinned)
    except ConfigError as e:
        return GoLiveItem(check="checkpoint", ok=False, detail=f"[audit] public_key: {e}")
    checkpoints, _ = read_checkpoints(unit.workspace.checkpoints_path)
    # The newest that is signed by the pinned key and of this log (the hash at its seq is
    # the signed one); older ones are not looked at.
    newest = next(
        (
            c
            for c in sorted(checkpoints, key=lambda c: (c.time, c.seq), reverse=True)
            if signed_by(c, key)
            and sql.scalar(unit.con, "SELECT hash FROM audit_log WHERE seq = ?", [c.seq])
            == c.head_hash
        ),
        None,
    )
    if newest is None:
        return GoLiveItem(
            check="checkpoint",
            ok=False,
            detail="no checkpoint of this audit log signed by the pinned key "
            "(`hilt audit checkpoint`)",
        )
    age = _age_days(now, newest.time)
    if age > max_days:
        return GoLiveItem(
            check="checkpoint",
            ok=False,
            detail=f"the newest signed checkpoint (seq {newest.seq}, {newest.time}) is "
            f"{age:.1f} days old; at most {max_days} allowed (max_checkpoint_age_days)",
        )
    return GoLiveItem(
        check="checkpoint",
        ok=True,
        detail=f"signed checkpoint at seq {newest.seq}, {newest.time}",
    )


def _monitoring(unit: Unit, now: datetime, max_days: int) -> GoLiveItem:
    where, params = sql.of_actions(MONITORING_RUN)
    row = sql.one(
        unit.con,
        "SELECT seq, json_extract_string(entry, '$.ts'),"
        " json_extract_string(entry, '$.payload.worst')"
        f" FROM audit_log WHERE {where} ORDER BY seq DESC LIMIT 1",
        params,
    )
    if row is None:
        return GoLiveItem(
            check="monitoring", ok=False, detail="monitoring has never run (`hilt monitor`)"
        )
    seq, ts, worst = int(row[0]), str(row[1]), row[2]
    age = _age_days(now, ts)
    found = f"the last monitoring run (seq {seq}, {ts}, worst: {worst or 'none'})"
    if age > max_days:
        return GoLiveItem(
            check="monitoring",
            ok=False,
            detail=f"{found} is {age:.1f} days old; at most {max_days} allowed "
            "(max_monitoring_age_days)",
        )
    return GoLiveItem(check="monitoring", ok=True, detail=found)


def open_serious_incidents(unit: Unit) -> list[str]:
    """The ids of incidents that are serious (as last opened or updated) and not closed
    after they were last opened, in the order they were opened."""
    where, params = sql.of_actions(INCIDENT_OPENED, INCIDENT_UPDATED, INCIDENT_CLOSED)
    rows = unit.con.execute(
        "SELECT json_extract_string(entry, '$.action'), json_extract_string(entry,"
        " '$.object_id'), json_extract(entry, '$.payload.serious')"
        f" FROM audit_log WHERE {where} ORDER BY seq",
        params,
    ).fetchall()
    serious: dict[str, bool] = {}
    is_open: dict[str, bool] = {}
    for action, incident, flag in rows:
        if flag is not None:
            serious[incident] = json.loads(flag) is True
        if action == INCIDENT_OPENED:
            is_open[incident] = True
        elif action == INCIDENT_CLOSED:
            is_open[incident] = False
    return [i for i, still in is_open.items() if still and serious.get(i, False)]


def _incidents(unit: Unit) -> GoLiveItem:
    found = open_serious_incidents(unit)
    if found:
        return GoLiveItem(
            check="incidents",
            ok=False,
            detail=f"{len(found)} serious incident(s) open: {', '.join(found)}",
        )
    return GoLiveItem(check="incidents", ok=True, detail="no serious incident open")
