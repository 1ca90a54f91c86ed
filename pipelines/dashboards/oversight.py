"""The oversight dashboard's backend on top of the store, and who the lead is.

``open_oversight_backend`` is what notebooks/oversight.ipynb calls: it works out who is
looking by the same chain as the review dashboard (``X-Forwarded-User`` passed by Voila,
``JUPYTERHUB_USER``, the workspace's local user; never typed), checks the lead role, and
returns a ``StoreOversightBackend`` for the widgets or a ``Refusal`` to show instead.

Start-up reads the store only (the oversight report: SQL over the store's own tables).
The challenger / champion comparison reads the store's model registry (the metrics the
store's gate was applied to, its checks, the author) and MLflow for the subgroup tables,
which costs seconds to import: it is loaded when the lead asks for it. Approve / Reject call
the very functions `hilt promote` and `hilt reject` call: the store decides (lead role, four
eyes: not the model's author, the challenger), then MLflow's aliases follow.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping

from hilt.pipelines.config import Settings
from hilt.pipelines.dashboards.access import DashboardBackend, DashboardDoor, open_dashboard
from hilt.pipelines.dashboards.review import review_config, review_item
from hilt.pipelines.store import Store
from hilt.pipelines.store.incidents import Incident
from hilt.pipelines.store.oversight_records import OversightReport
from hilt.pipelines.store.user_records import User
from hilt.pipelines.workspace import Workspace
from hilt.widgets.contracts.common import Refusal, ReviewConfig, Reviewer
from hilt.widgets.contracts.monitoring import MonitoringFinding, MonitoringSummary
from hilt.widgets.contracts.oversight import (
    UNAVAILABLE,
    AdjudicationReceipt,
    Agreement,
    BiasAlert,
    ConflictItem,
    GateCheckView,
    IncidentView,
    MetricRow,
    ModelComparison,
    ModelDecision,
    OversightBackend,
    OversightOverview,
    QueueHealth,
    ReasonCount,
    ReviewerStats,
    SubgroupRow,
    SystemStatus,
)

LEAD_ROLE = "lead"
#: Holdout metrics shown side by side (all within [0, 1]).
COMPARED_METRICS = ("auc", "accuracy", "precision", "recall", "f1", "brier")


def overview_of(report: OversightReport, settings: Settings) -> OversightOverview:
    """The store's report as the widgets take it (they draw its charts themselves)."""
    o = settings.oversight
    reviewers = tuple(
        ReviewerStats(
            reviewer=r.reviewer,
            decided=r.decided,
            decided_today=r.decided_today,
            accepted=r.accepted,
            overridden=r.overridden,
            accept_rate=r.accept_rate,
            override_rate=r.override_rate,
            median_time_s=r.median_time_ms / 1000 if r.median_time_ms is not None else None,
            gold_decided=r.gold_decided,
            gold_correct=r.gold_correct,
            gold_accuracy=r.gold_accuracy,
        )
        for r in report.reviewers
    )
    codes = settings.review.reason_codes
    reasons = tuple(
        ReasonCount(
            code=r.reason_code, label=codes.get(r.reason_code, r.reason_code), count=r.count
        )
        for r in report.reasons
    )
    q, a = report.queue, report.agreement
    return OversightOverview(
        queue=QueueHealth(
            waiting=q.waiting,
            leased=q.leased,
            done_today=q.done_today,
            done_total=q.done_total,
            oldest_waiting_minutes=q.oldest_waiting_minutes,
            awaiting_second_review=q.awaiting_second_review,
            adjudication_waiting=q.adjudication_waiting,
            manual_waiting=q.manual_waiting,
            gold_cases=q.gold_cases,
        ),
        reviewers=reviewers,
        agreement=Agreement(
            pairs=a.pairs,
            agreed=a.agreed,
            kappa=a.kappa,
            awaiting_second_review=a.awaiting_second_review,
            conflicts_open=a.conflicts_open,
            conflicts_resolved=a.conflicts_resolved,
        ),
        reasons=reasons,
        alerts=tuple(BiasAlert(x.reviewer, x.kind, x.message) for x in report.alerts),
        window_days=report.window_days,
        as_of=report.as_of,
        alert_accept_rate=o.alert_accept_rate,
        alert_median_seconds=o.alert_median_seconds,
    )


class StoreOversightBackend(DashboardBackend):
    """An OversightBackend for one lead, on any Store (embedded or service client)."""

    def __init__(
        self, store: Store, settings: Settings, workspace: Workspace, *, me: User | None = None
    ) -> None:
        super().__init__(store, settings, me=me)
        self.workspace = workspace

    def lead(self) -> Reviewer:
        return self.person()

    def review_config(self) -> ReviewConfig:
        return review_config(self.settings, {})

    def overview(self) -> OversightOverview:
        return overview_of(self.store.oversight_report(), self.settings)

    def conflicts(self) -> tuple[ConflictItem, ...]:
        out = []
        for c in self.store.conflicts():
            out.append(
                ConflictItem(
                    item=review_item(self.store.get_case(c.case_id), self.settings),
                    first_reviewer=c.first_reviewer,
                    first_label=c.first_label,
                    second_reviewer=c.second_reviewer,
                    second_label=c.second_label,
                )
            )
        return tuple(out)

    def adjudicate(
        self, case_id: str, final_label: str, comment: str | None
    ) -> AdjudicationReceipt:
        d = self.store.adjudicate(case_id, final_label, comment, request_id=str(uuid.uuid4()))
        assert d.final_label is not None
        return AdjudicationReceipt(case_id=d.case_id, final_label=d.final_label, seq=d.seq)

    def system_status(self) -> SystemStatus:
        s = self.store.system_state()
        return SystemStatus(s.halted, s.changed_by, s.changed_at, s.reason)

    def halt(self, reason: str) -> SystemStatus:
        self.store.halt(reason)
        return self.system_status()

    def resume(self) -> SystemStatus:
        self.store.resume()
        return self.system_status()

    def latest_monitoring(self) -> MonitoringSummary | None:
        """The store's verdict on the latest monitoring run (issue 14), or None."""
        runs = self.store.monitoring_runs(1)
        if not runs:
            return None
        v = runs[0]
        findings = tuple(
            MonitoringFinding(b.check, b.feature, b.statistic, b.value, b.threshold, b.severity)
            for b in v.breaches
        )
        return MonitoringSummary(
            run_id=v.run_id,
            seq=v.seq,
            at=v.ts,
            model_version=v.model_version,
            window_days=v.window_days,
            cases=v.cases,
            worst=v.worst,
            findings=findings,
            notebook=v.notebook,
        )

    # ---- issue 14, the incident register (IncidentBackend)
    def open_incidents(self) -> tuple[IncidentView, ...]:
        """The open incidents, overdue first, then by deadline."""
        found = self.store.incidents(open_only=True)
        found.sort(key=lambda i: (not i.overdue, i.deadline or "~"))
        return tuple(self._incident_view(i) for i in found)

    def record_told(self, incident_id: str, recipient: str, told_at: str | None) -> IncidentView:
        return self._incident_view(
            self.store.update_incident(incident_id, told=recipient, told_at=told_at)
        )

    def close_incident(self, incident_id: str, reason: str) -> IncidentView:
        return self._incident_view(self.store.close_incident(incident_id, reason))

    def _incident_view(self, i: Incident) -> IncidentView:
        # The store decides; this only greys the button out for the person who opened a
        # serious incident (four eyes), as it will refuse them.
        mine = i.serious and i.opened_by == self.lead().name
        return IncidentView(
            incident_id=i.incident_id,
            kind=i.kind,
            provision=i.provision,
            serious=i.serious,
            source=i.source,
            status=i.status,
            summary=i.summary,
            known_at=i.known_at,
            deadline=i.deadline,
            seconds_left=i.seconds_left,
            overdue=i.overdue,
            report_to=i.report_to,
            opened_by=i.opened_by,
            told=tuple(f"{n.recipient} at {n.told_at}" for n in i.notifications),
            can_close=not mine,
            why_not=(
                f"You opened {i.incident_id}: a serious incident is closed by another lead "
                "(four eyes)."
                if mine
                else None
            ),
        )

    def comparison(self) -> ModelComparison | None:
        """The store's challenger against its champion: the metrics on the same holdout and
        the gate's checks as the store recorded them when it registered the challenger; the
        subgroup rates and the figure from the runs' MLflow artifacts."""
        from hilt.pipelines.loop.model_registry import champion as store_champion

        challenger = next((m for m in self.store.models() if m.state == "challenger"), None)
        if challenger is None:
            return None
        champion = store_champion(self.store)
        # MLflow's INFO lines (creating its tables) are not for the dashboard's kernel log.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        from hilt.pipelines.loop.plots import comparison_figure, png_bytes
        from hilt.pipelines.loop.tracking.client import configure
        from hilt.pipelines.loop.tracking.environment import registered_model_name
        from hilt.pipelines.loop.tracking.mirror import short_name
        from hilt.pipelines.store.gate import LOWER_IS_BETTER

        settings = self.settings
        configure(self.workspace, settings=settings)
        registered = registered_model_name(settings)
        evaluation = challenger.evaluation
        theirs = evaluation.champion_metrics or {}
        metrics = tuple(
            MetricRow(name, evaluation.metrics.get(name), theirs.get(name) if champion else None)
            for name in COMPARED_METRICS
            if name in evaluation.metrics
        )
        checks = tuple(GateCheckView(c.name, c.passed, c.explanation) for c in challenger.checks)
        subgroups = self._subgroups(challenger.run_id, champion.run_id if champion else None)
        version = short_name(challenger.model, registered)
        champion_version = short_name(champion.model, registered) if champion else None
        figure = png_bytes(
            comparison_figure(
                [
                    (
                        m.name + (" (lower is better)" * (m.name in LOWER_IS_BETTER)),
                        m.challenger,
                        m.champion,
                    )
                    for m in metrics
                ],
                [(f"{s.attribute}: {s.group}", s.challenger, s.champion) for s in subgroups],
                challenger_label=f"challenger v{version}",
                champion_label=f"champion v{champion_version}" if champion else "champion (none)",
            )
        )
        run_id = challenger.run_id
        mine = challenger.author == self.lead().name
        return ModelComparison(
            run_id=run_id,
            challenger_version=version,
            champion_version=champion_version,
            author=challenger.author,
            gate=challenger.gate,
            metrics=metrics,
            checks=checks,
            subgroups=subgroups,
            figure=figure,
            can_decide=not mine,
            why_not=(
                f"You trained run {run_id}: a lead who did not train it must decide (four eyes)."
                if mine
                else None
            ),
        )

    @staticmethod
    def _subgroups(run_id: str, champion_run_id: str | None) -> tuple[SubgroupRow, ...]:
        from hilt.pipelines.loop.tracking.artifacts import run_subgroups

        mine = run_subgroups(run_id)
        if mine is None:
            return ()
        theirs = run_subgroups(champion_run_id) if champion_run_id else None
        rate: dict[tuple[str, str], float | None] = {}
        if theirs is not None:
            for row in theirs.iter_rows(named=True):
                rate[(str(row["attribute"]), str(row["group"]))] = row.get("positive_rate")
        out = []
        for row in mine.iter_rows(named=True):
            key = (str(row["attribute"]), str(row["group"]))
            out.append(
                SubgroupRow(
                    attribute=key[0],
                    group=key[1],
                    n=int(row["n"]),
                    challenger=row.get("positive_rate"),
                    champion=rate.get(key),
                )
            )
        return tuple(out)

    def approve(self, run_id: str) -> ModelDecision:
        from hilt.pipelines.loop.promotion import promote

        p = promote(self.workspace, run_id, self.lead().name, store=self.store)
        return ModelDecision(
            run_id=run_id,
            version=p.version,
            action="approved",
            audit_seq=p.audit_seq,
            message=(
                f"Approved: version {p.version} is the champion now (trained by {p.author}, "
                f"approved by {p.approver}; audit seq {p.audit_seq})."
                + _mirror_note(p.mirror_problem)
            ),
        )

    def reject(self, run_id: str, reason: str) -> ModelDecision:
        from hilt.pipelines.loop.promotion import reject

        r = reject(self.workspace, run_id, self.lead().name, reason, store=self.store)
        return ModelDecision(
            run_id=run_id,
            version=r.version,
            action="rejected",
            audit_seq=r.audit_seq,
            message=(
                f"Rejected: version {r.version} is no longer the challenger (audit seq "
                f"{r.audit_seq})." + _mirror_note(r.mirror_problem)
            ),
        )


def _mirror_note(problem: str | None) -> str:
    return (
        f" MLflow's aliases were not updated ({problem}); the store's registry decided."
        if problem
        else ""
    )


#: Who may open the oversight dashboard, and what the others are told.
OVERSIGHT_DOOR = DashboardDoor(
    unavailable=UNAVAILABLE,
    not_allowed="Not an oversight lead here",
    roles=frozenset({LEAD_ROLE}),
    no_role=(
        "{name} does not have the lead role in this workspace. The oversight "
        "dashboard is for leads; reviewers work in the review queue."
    ),
)


def open_oversight_backend(
    workspace: str | None = None, env: Mapping[str, str] | None = None
) -> OversightBackend | Refusal:
    """The lead's backend, or the refusal to show instead of the dashboard."""
    return open_dashboard(
        OVERSIGHT_DOOR,
        workspace,
        env,
        lambda a: StoreOversightBackend(a.store, a.settings, a.workspace, me=a.me),
    )
