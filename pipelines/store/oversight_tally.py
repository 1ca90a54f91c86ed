"""The oversight report's decision figures, kept by the store service as decisions are made.

The report (``oversight_stats.report``) counts the live final decisions: per reviewer over
the window (decided, today, accepted, overridden, the median time on item, gold cases and
how many were right), the override reasons, the day's and all final decisions, the
adjudications. Counted by SQL that is a scan of every decision (1.1 s of the service on a
1,000,000-decision store, before the lead's page shows anything). The service keeps them
instead, per reviewer and UTC day (``Bucket``), in ``OversightTally``:

- built from the database (the same ``live`` definition as the report's SQL) the first
  time a report asks, and again whenever the database holds decisions the tally has not
  counted or has lost some (``fingerprint``: rows, newest seq, gold cases; checked after
  any operation that changes many cases, a group that rolled back or a restart);
- then kept by ``review.write_decision`` itself: each decision it writes is staged into
  the live queue (``LiveQueue.stage_written``) and counted once its operation committed,
  an undo taking its decision back out (read by id: undos are rare);
- read under the service's lock (``StoreService.kept_oversight``): the window's full days
  from the buckets, the day it starts in (part of a day) by SQL over that day alone.

The database stays the truth: ``test_live_queue`` compares the report from these figures
with the full SQL recount after every operation kind, restarts and midnights included.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from hilt.pipelines.store import sql
from hilt.pipelines.store.oversight_records import ReviewerStatsRecord

if TYPE_CHECKING:
    import duckdb

#: Decisions not undone (what every figure of the report counts).
LIVE_CTE = """
live AS (
    SELECT * FROM decisions
    WHERE decision_id NOT IN (
        SELECT undo_of FROM decisions WHERE action = 'undo' AND undo_of IS NOT NULL)
)"""
#: Final decisions: what the reviewers' figures count.
FINAL = ("accept", "override")
#: Times on item are binned by this many bits (1,024 ms) to find a median quickly.
_BIN_BITS = 10

_FACTS_SQL = (
    "WITH"
    + LIVE_CTE
    + """
SELECT f.reviewer, (f.created_at AT TIME ZONE 'UTC')::DATE, f.action,
       f.predicted_label IS NOT NULL, f.reason_code, s.label IS NOT NULL,
       coalesce(f.final_label = s.label, false), count(*)
FROM live f LEFT JOIN gold_cases g USING (case_id) LEFT JOIN seed_labels s ON s.case_id = g.case_id
WHERE f.action IN ('accept', 'override', 'adjudicate') AND {bounds}
GROUP BY ALL"""
)
_TIMES_SQL = (
    "WITH"
    + LIVE_CTE
    + """
SELECT reviewer, (created_at AT TIME ZONE 'UTC')::DATE, time_on_item_ms, count(*)
FROM live WHERE action IN ('accept', 'override') AND {bounds}
GROUP BY ALL"""
)
_UNDONE_SQL = (
    "SELECT d.reviewer, d.created_at, d.action, d.predicted_label IS NOT NULL, d.reason_code,"
    " s.label, d.final_label, d.time_on_item_ms,"
    " (SELECT min(seq) FROM decisions WHERE action = 'undo' AND undo_of = $id)"
    " FROM decisions d LEFT JOIN gold_cases g USING (case_id)"
    " LEFT JOIN seed_labels s ON s.case_id = g.case_id WHERE d.decision_id = $id"
)
_FINGERPRINT_SQL = (
    "SELECT count(*), coalesce(max(seq), 0), (SELECT count(*) FROM gold_cases) FROM decisions"
)


@dataclass
class Times:
    """Times on item (ms) with their counts, binned so that a median reads few values."""

    n: int = 0
    bins: Counter[int] = field(default_factory=Counter)
    fine: dict[int, Counter[int]] = field(default_factory=dict)

    def add(self, ms: int, k: int = 1) -> None:
        b = ms >> _BIN_BITS
        self.n += k
        self.bins[b] += k
        values = self.fine.setdefault(b, Counter())
        values[ms] += k
        if not values[ms]:
            del values[ms]
            if not values:
                del self.fine[b]
        if not self.bins[b]:
            del self.bins[b]


def median_ms(times: Iterable[Times]) -> float | None:
    """The median of all ``times`` together, as DuckDB's ``median`` (the mean of the two
    middle values of an even count); None when there are none."""
    parts = [t for t in times if t.n]
    n = sum(t.n for t in parts)
    if n == 0:
        return None
    bins: Counter[int] = Counter()
    for t in parts:
        bins.update(t.bins)
    order = sorted(bins)

    def kth(k: int) -> int:
        seen = 0
        for b in order:
            if seen + bins[b] > k:
                values: Counter[int] = Counter()
                for t in parts:
                    values.update(t.fine.get(b, {}))
                for v in sorted(values):
                    seen += values[v]
                    if seen > k:
                        return v
            seen += bins[b]
        raise AssertionError("the bins and their values disagree")

    low, high = kth((n - 1) // 2), kth(n // 2)
    return low + (high - low) * 0.5


@dataclass
class Bucket:
    """One reviewer's live final decisions of one UTC day."""

    decided: int = 0
    accepted: int = 0
    #: Overrides of a model prediction.
    overridden: int = 0
    gold_decided: int = 0
    gold_correct: int = 0
    times: Times = field(default_factory=Times)
    #: Reasons of the overrides of a model prediction.
    reasons: Counter[str | None] = field(default_factory=Counter)

    def count(
        self,
        action: str,
        predicted: bool,
        reason: str | None,
        gold: bool,
        right: bool,
        k: int,
    ) -> None:
        self.decided += k
        if action == "accept":
            self.accepted += k
        elif predicted:
            self.overridden += k
            self.reasons[reason] += k
            if not self.reasons[reason]:
                del self.reasons[reason]
        self.gold_decided += k if gold else 0
        self.gold_correct += k if right else 0


Buckets = dict[tuple[str, date], Bucket]


def _midnight(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def read_buckets(
    con: duckdb.DuckDBPyConnection, since: datetime | None, before: datetime | None
) -> tuple[Buckets, int]:
    """The live final decisions made in [since, before) per reviewer and UTC day (None:
    unbounded), and the adjudications among them, by SQL."""
    bounds = ["TRUE"]
    params: dict[str, Any] = {}
    if since is not None:
        bounds.append("created_at >= $since")
        params["since"] = since
    if before is not None:
        bounds.append("created_at < $before")
        params["before"] = before
    where = " AND ".join(bounds)
    buckets: Buckets = {}
    adjudicated = 0
    facts = con.execute(
        _FACTS_SQL.format(bounds=where.replace("created_at", "f.created_at")), params
    )
    for reviewer, day, action, predicted, reason, gold, right, n in facts.fetchall():
        if action == "adjudicate":
            adjudicated += int(n)
            continue
        bucket = buckets.setdefault((str(reviewer), day), Bucket())
        bucket.count(str(action), bool(predicted), reason, bool(gold), bool(right), int(n))
    for reviewer, day, ms, n in con.execute(_TIMES_SQL.format(bounds=where), params).fetchall():
        buckets[(str(reviewer), day)].times.add(int(ms), int(n))
    return buckets, adjudicated


@dataclass(frozen=True)
class KeptFigures:
    """What the report takes from the service's memory instead of its SQL."""

    waiting: int
    leased: int
    oldest_waiting_at: datetime | None
    awaiting_second_review: int
    manual_waiting: int
    done_today: int
    done_total: int
    adjudicated: int
    gold_cases: int
    #: The reviewers with final decisions in the window, by name.
    reviewers: dict[str, ReviewerStatsRecord]
    #: Reasons of the window's overrides of a model prediction: (reason code, count).
    reasons: list[tuple[str | None, int]]


@dataclass(frozen=True)
class Written:
    """A decision ``review.write_decision`` wrote, as the tally counts it."""

    seq: int
    reviewer: str
    action: str
    predicted: bool
    reason_code: str | None
    case_id: str
    final_label: str | None
    time_on_item_ms: int
    undo_of: str | None
    at: datetime


class OversightTally:
    """The decision figures of the oversight report. Not thread-safe: the service's lock."""

    def __init__(self) -> None:
        self.built = False
        #: Whether the database may have changed behind the tally (compare ``fingerprint``).
        self.check = True
        self.buckets: Buckets = {}
        self.adjudicated = 0
        #: Gold case → its known answer.
        self.gold: dict[str, str | None] = {}
        #: Rows of the decisions table counted (every action) and the newest one's seq.
        self.rows = 0
        self.through_seq = 0

    def build(self, con: duckdb.DuckDBPyConnection) -> None:
        self.buckets, self.adjudicated = read_buckets(con, None, None)
        self.gold = {
            str(r[0]): None if r[1] is None else str(r[1])
            for r in con.execute(
                "SELECT g.case_id, s.label FROM gold_cases g"
                " LEFT JOIN seed_labels s USING (case_id)"
            ).fetchall()
        }
        row = sql.one(con, _FINGERPRINT_SQL)
        assert row is not None
        self.rows, self.through_seq = int(row[0]), int(row[1])
        self.built, self.check = True, False

    @property
    def due(self) -> bool:
        """Whether the next ``ready`` may read the decisions (build, or compare)."""
        return not self.built or self.check

    def ready(self, con: duckdb.DuckDBPyConnection) -> None:
        """Built, and equal to the database (built again if it is not)."""
        if self.built and self.check:
            row = sql.one(con, _FINGERPRINT_SQL)
            assert row is not None
            same = (int(row[0]), int(row[1]), int(row[2])) == (
                self.rows,
                self.through_seq,
                len(self.gold),
            )
            self.built, self.check = same, False
        if not self.built:
            self.build(con)

    def written(self, con: duckdb.DuckDBPyConnection, d: Written) -> None:
        """Count decision ``d`` (its operation committed, or its group holds it)."""
        if not self.built or d.seq <= self.through_seq:
            return  # built from a database that already holds it
        self.rows += 1
        self.through_seq = d.seq
        if d.action in FINAL:
            bucket = self.buckets.setdefault((d.reviewer, d.at.astimezone(UTC).date()), Bucket())
            expected = self.gold.get(d.case_id)
            gold = expected is not None
            right = gold and d.final_label == expected
            bucket.count(d.action, d.predicted, d.reason_code, gold, right, 1)
            bucket.times.add(d.time_on_item_ms)
        elif d.action == "adjudicate":
            self.adjudicated += 1
        elif d.action == "undo" and d.undo_of is not None:
            self._undo(con, d.undo_of, d.seq)

    def _undo(self, con: duckdb.DuckDBPyConnection, decision_id: str, seq: int) -> None:
        row = sql.one(con, _UNDONE_SQL, {"id": decision_id})
        if row is None or row[8] != seq:
            return  # not in the table (any more), or undone before: not live already
        reviewer, at, action, predicted, reason, expected, final, ms, _ = row
        if action == "adjudicate":
            self.adjudicated -= 1
        elif action in FINAL:
            bucket = self.buckets[(str(reviewer), at.astimezone(UTC).date())]
            gold = expected is not None
            bucket.count(str(action), bool(predicted), reason, gold, gold and final == expected, -1)
            bucket.times.add(int(ms), -1)

    def figures(
        self, con: duckdb.DuckDBPyConnection, now: datetime, window_days: int
    ) -> tuple[dict[str, ReviewerStatsRecord], list[tuple[str | None, int]], int, int]:
        """Per reviewer with final decisions in the window, the window's override reasons,
        the day's final decisions and all of them (as ``oversight_stats.report`` counts)."""
        self.ready(con)
        now = now.astimezone(UTC)
        since = now - timedelta(days=window_days)
        today = now.date()
        first_full = since.date() if since == _midnight(since) else since.date() + timedelta(1)
        edge: Buckets = {}
        if since != _midnight(since):
            edge, _ = read_buckets(con, since, _midnight(since) + timedelta(days=1))
        by_reviewer: dict[str, list[Bucket]] = {}
        done_today = done_total = 0
        for (reviewer, day), bucket in self.buckets.items():
            done_total += bucket.decided
            if day == today:
                done_today += bucket.decided
            if day >= first_full and bucket.decided:
                by_reviewer.setdefault(reviewer, []).append(bucket)
        for (reviewer, _day), bucket in edge.items():
            by_reviewer.setdefault(reviewer, []).append(bucket)
        reviewers: dict[str, ReviewerStatsRecord] = {}
        reasons: Counter[str | None] = Counter()
        for reviewer, buckets in by_reviewer.items():
            reviewers[reviewer] = stats_of(reviewer, buckets, self.buckets.get((reviewer, today)))
            for b in buckets:
                reasons.update(b.reasons)
        ordered = sorted(
            ((code, n) for code, n in reasons.items() if n),
            key=lambda r: (-r[1], r[0] is None, r[0] or ""),
        )
        return reviewers, ordered, done_today, done_total


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def stats_of(reviewer: str, buckets: list[Bucket], today: Bucket | None) -> ReviewerStatsRecord:
    decided = sum(b.decided for b in buckets)
    accepted = sum(b.accepted for b in buckets)
    overridden = sum(b.overridden for b in buckets)
    gold_n = sum(b.gold_decided for b in buckets)
    gold_ok = sum(b.gold_correct for b in buckets)
    judged = accepted + overridden
    return ReviewerStatsRecord(
        reviewer=reviewer,
        decided=decided,
        decided_today=today.decided if today is not None else 0,
        accepted=accepted,
        overridden=overridden,
        accept_rate=_rate(accepted, judged),
        override_rate=_rate(overridden, judged),
        median_time_ms=median_ms(b.times for b in buckets),
        gold_decided=gold_n,
        gold_correct=gold_ok,
        gold_accuracy=_rate(gold_ok, gold_n),
    )
