"""Read-only statistics for the oversight lead, computed from the store's own tables.

- queue health: waiting, leased, done, the oldest case waiting, second reviews, conflicts,
  manual review while halted;
- per reviewer over ``oversight.window_days``: throughput, accept and override rates (of
  decisions on a model prediction), median time on item, accuracy on gold cases;
- agreement on double review: Cohen's kappa between the first and the second review of
  each double-review case (two "raters": first and second position, as reviewers rotate);
- override reasons;
- automation-bias alerts (EU AI Act Art. 14(4)(b)): a high accept rate with a short median
  time on item, or a low accuracy on gold cases.

Only aggregates and reviewer names leave this module (case ids for the adjudication queue).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from hilt.pipelines.config import Oversight, Settings
from hilt.pipelines.store import double_review, review_queue, sql
from hilt.pipelines.store.audit.chain import utc_timestamp
from hilt.pipelines.store.oversight_records import (
    AgreementRecord,
    BiasAlertRecord,
    ConflictRecord,
    OversightReport,
    QueueHealthRecord,
    ReasonCountRecord,
    ReviewerStatsRecord,
)
from hilt.pipelines.store.oversight_tally import LIVE_CTE, KeptFigures

if TYPE_CHECKING:
    import duckdb


def cohens_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa of (first, second) labels; None when undefined (no pairs, or chance
    agreement is 1: both raters always used the same single class)."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(1 for a, b in pairs if a == b) / n
    first = Counter(a for a, _ in pairs)
    second = Counter(b for _, b in pairs)
    expected = sum(first[k] * second.get(k, 0) for k in first) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def alerts(reviewers: Sequence[ReviewerStatsRecord], o: Oversight) -> list[BiasAlertRecord]:
    """The automation-bias alerts of ``oversight`` for each reviewer's statistics."""
    out: list[BiasAlertRecord] = []
    limit_ms = o.alert_median_seconds * 1000
    for r in reviewers:
        judged = r.accepted + r.overridden
        if (
            judged >= o.alert_min_decisions
            and r.accept_rate is not None
            and r.accept_rate >= o.alert_accept_rate
            and r.median_time_ms is not None
            and r.median_time_ms <= limit_ms
        ):
            out.append(
                BiasAlertRecord(
                    reviewer=r.reviewer,
                    kind="rubber-stamping",
                    message=(
                        f"{r.reviewer} accepted {r.accept_rate:.0%} of {judged} model outputs "
                        f"with a median of {r.median_time_ms / 1000:.1f} s on each case "
                        f"(alert at ≥ {o.alert_accept_rate:.0%} and ≤ "
                        f"{o.alert_median_seconds:g} s): possible rubber-stamping"
                    ),
                )
            )
        if (
            r.gold_decided >= o.alert_min_gold
            and r.gold_accuracy is not None
            and r.gold_accuracy < o.alert_gold_accuracy
        ):
            out.append(
                BiasAlertRecord(
                    reviewer=r.reviewer,
                    kind="low-gold-accuracy",
                    message=(
                        f"{r.reviewer} decided {r.gold_correct} of {r.gold_decided} gold cases "
                        f"correctly ({r.gold_accuracy:.0%}; alert below "
                        f"{o.alert_gold_accuracy:.0%})"
                    ),
                )
            )
    return out


def _queue(
    con: duckdb.DuckDBPyConnection, settings: Settings, now: datetime
) -> tuple[int, int, datetime | None, int, int]:
    row = sql.one(
        con,
        "SELECT count(*) FILTER (WHERE l.case_id IS NULL),"
        " count(*) FILTER (WHERE l.case_id IS NOT NULL),"
        " min(q.created_at) FILTER (WHERE l.case_id IS NULL),"
        " count(*) FILTER (WHERE q.second_review), count(*) FILTER (WHERE q.manual) FROM ("
        + review_queue.queue_state_sql(
            settings.oversight.double_review_share,
            int(sql.scalar(con, "SELECT " + double_review.MANUAL_CUT_SQL)),
        )
        + ") q LEFT JOIN leases l ON l.case_id = q.case_id AND l.expires_at > ?",
        [now],
    )
    assert row is not None
    return int(row[0]), int(row[1]), row[2], int(row[3]), int(row[4])


def reviewer_stats(
    con: duckdb.DuckDBPyConnection, since: datetime, day_start: datetime
) -> list[ReviewerStatsRecord]:
    """Per reviewer (every user with the reviewer role, and whoever decided in the window)."""
    rows = con.execute(
        "WITH"
        + LIVE_CTE
        + """, fin AS (
    SELECT f.*, s.label AS expected_label FROM live f
    LEFT JOIN gold_cases g USING (case_id)
    LEFT JOIN seed_labels s ON s.case_id = g.case_id
    WHERE f.action IN ('accept', 'override') AND f.created_at >= $since
), who AS (
    SELECT name AS reviewer FROM users WHERE active AND list_contains(roles, 'reviewer')
    UNION SELECT reviewer FROM fin
)
SELECT w.reviewer,
       count(f.decision_id),
       count(f.decision_id) FILTER (WHERE f.created_at >= $day),
       count(f.decision_id) FILTER (WHERE f.action = 'accept'),
       count(f.decision_id) FILTER (WHERE f.action = 'override' AND f.predicted_label IS NOT NULL),
       median(f.time_on_item_ms),
       count(f.expected_label),
       count(f.expected_label) FILTER (WHERE f.final_label = f.expected_label)
FROM who w LEFT JOIN fin f USING (reviewer)
GROUP BY w.reviewer ORDER BY w.reviewer
""",
        {"since": since, "day": day_start},
    ).fetchall()
    out = []
    for name, decided, today, accepted, overridden, median_ms, gold_n, gold_ok in rows:
        judged = int(accepted) + int(overridden)
        out.append(
            ReviewerStatsRecord(
                reviewer=str(name),
                decided=int(decided),
                decided_today=int(today),
                accepted=int(accepted),
                overridden=int(overridden),
                accept_rate=_rate(int(accepted), judged),
                override_rate=_rate(int(overridden), judged),
                median_time_ms=float(median_ms) if median_ms is not None else None,
                gold_decided=int(gold_n),
                gold_correct=int(gold_ok),
                gold_accuracy=_rate(int(gold_ok), int(gold_n)),
            )
        )
    return out


def review_pairs(
    con: duckdb.DuckDBPyConnection, settings: Settings, since: datetime
) -> list[tuple[str, str]]:
    """(first, second) final labels of each double-review case reviewed twice, the second
    review in the window."""
    share = settings.oversight.double_review_share
    if share <= 0:
        return []
    rows = con.execute(
        "WITH"
        + LIVE_CTE
        + f""", fin AS (
    SELECT case_id, reviewer, final_label, created_at,
           row_number() OVER (PARTITION BY case_id ORDER BY seq) AS rn
    FROM live
    WHERE action IN ('accept', 'override')
      AND case_id NOT IN (SELECT case_id FROM gold_cases)
      AND {double_review.double_sql("case_id", share)}
)
SELECT a.final_label, b.final_label FROM fin a JOIN fin b
    ON a.case_id = b.case_id AND a.rn = 1 AND b.rn = 2 AND a.reviewer <> b.reviewer
WHERE b.created_at >= ?
ORDER BY a.case_id
""",
        [since],
    ).fetchall()
    return [(str(a), str(b)) for a, b in rows]


def conflicts(con: duckdb.DuckDBPyConnection, settings: Settings) -> list[ConflictRecord]:
    """The adjudication queue: double-review cases whose two reviewers disagree."""
    rows = con.execute(
        double_review.conflicts_sql(settings.oversight.double_review_share)
    ).fetchall()
    return [
        ConflictRecord(
            case_id=str(r[0]),
            first_reviewer=str(r[1]),
            first_label=str(r[2]),
            second_reviewer=str(r[3]),
            second_label=str(r[4]),
            predicted_label=r[5],
            score=float(r[6]) if r[6] is not None else None,
            seq=int(r[7]),
        )
        for r in rows
    ]


def counted(
    con: duckdb.DuckDBPyConnection, settings: Settings, now: datetime
) -> tuple[KeptFigures, list[ReviewerStatsRecord]]:
    """The report's counts by SQL over the store's tables (what the service keeps instead)."""
    since = now - timedelta(days=settings.oversight.window_days)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    waiting, leased, oldest, second, manual = _queue(con, settings, now)
    done = sql.one(
        con,
        "WITH" + LIVE_CTE + " SELECT count(*) FILTER (WHERE created_at >= ?), count(*),"
        " (SELECT count(*) FROM live WHERE action = 'adjudicate'),"
        " (SELECT count(*) FROM gold_cases)"
        " FROM live WHERE action IN ('accept', 'override')",
        [day_start],
    )
    assert done is not None
    reasons = con.execute(
        "WITH" + LIVE_CTE + " SELECT reason_code, count(*) FROM live WHERE action = 'override'"
        " AND predicted_label IS NOT NULL AND created_at >= ? GROUP BY reason_code"
        " ORDER BY count(*) DESC, reason_code",
        [since],
    ).fetchall()
    counted = KeptFigures(
        waiting=waiting,
        leased=leased,
        oldest_waiting_at=oldest,
        awaiting_second_review=second,
        manual_waiting=manual,
        done_today=int(done[0]),
        done_total=int(done[1]),
        adjudicated=int(done[2]),
        gold_cases=int(done[3]),
        reviewers={},
        reasons=[(c, int(n)) for c, n in reasons],
    )
    return counted, reviewer_stats(con, since, day_start)


def with_reviewers(con: duckdb.DuckDBPyConnection, kept: KeptFigures) -> list[ReviewerStatsRecord]:
    """Every user with the reviewer role and whoever decided in the window (the kept
    figures), by name; zeros for those who did not."""
    names = {
        str(r[0])
        for r in con.execute(
            "SELECT name FROM users WHERE active AND list_contains(roles, 'reviewer')"
        ).fetchall()
    }
    out = []
    for name in sorted(names | set(kept.reviewers)):
        found = kept.reviewers.get(name)
        out.append(found if found is not None else idle_reviewer(name))
    return out


def idle_reviewer(name: str) -> ReviewerStatsRecord:
    """The statistics of a reviewer without final decisions in the window."""
    return ReviewerStatsRecord(
        reviewer=name,
        decided=0,
        decided_today=0,
        accepted=0,
        overridden=0,
        accept_rate=None,
        override_rate=None,
        median_time_ms=None,
        gold_decided=0,
        gold_correct=0,
        gold_accuracy=None,
    )


def report(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    now: datetime,
    kept: KeptFigures | None = None,
) -> OversightReport:
    """The report; its counts from ``kept`` (what the store service keeps in memory, taken
    at ``now``) or, without it, by SQL over the whole tables."""
    o = settings.oversight
    now = now.astimezone(UTC)
    since = now - timedelta(days=o.window_days)
    if kept is None:
        kept, reviewers = counted(con, settings, now)
    else:
        reviewers = with_reviewers(con, kept)
    open_conflicts = conflicts(con, settings)
    pairs = review_pairs(con, settings, since)
    oldest = kept.oldest_waiting_at
    oldest_at = oldest.astimezone(UTC) if oldest is not None else None
    return OversightReport(
        as_of=utc_timestamp(now),
        window_days=o.window_days,
        queue=QueueHealthRecord(
            waiting=kept.waiting,
            leased=kept.leased,
            done_today=kept.done_today,
            done_total=kept.done_total,
            oldest_waiting_at=utc_timestamp(oldest_at) if oldest_at else None,
            oldest_waiting_minutes=(
                max(0.0, (now - oldest_at).total_seconds() / 60) if oldest_at else None
            ),
            awaiting_second_review=kept.awaiting_second_review,
            adjudication_waiting=len(open_conflicts),
            manual_waiting=kept.manual_waiting,
            gold_cases=kept.gold_cases,
        ),
        reviewers=reviewers,
        agreement=AgreementRecord(
            pairs=len(pairs),
            agreed=sum(1 for a, b in pairs if a == b),
            kappa=cohens_kappa(pairs),
            awaiting_second_review=kept.awaiting_second_review,
            conflicts_open=len(open_conflicts),
            conflicts_resolved=kept.adjudicated,
        ),
        reasons=[ReasonCountRecord(reason_code=str(c), count=n) for c, n in kept.reasons],
        alerts=alerts(reviewers, o),
    )
