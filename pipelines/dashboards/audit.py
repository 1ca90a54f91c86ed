"""The audit dashboard's backend on the store, and who the auditor is.

``open_audit_backend`` is what notebooks/audit.ipynb calls: it works out who is looking by
the same chain as the review dashboard (the ``X-Forwarded-User`` header passed by Voila,
``JUPYTERHUB_USER``, then the workspace's local user; never typed in), checks that they
hold the auditor role, and returns a ``StoreAuditBackend`` for the widgets or a ``Refusal``.

Read-only by construction: every method reads through the store's read operations
(``whoami``, ``audit_events``, ``decisions``, ``verify``, ``audit_search``, ``audit_head``,
``get_decision``, ``get_prediction``) or reads files of the workspace whose sha256 the log
recorded. None leases, decides, checkpoints or records an event, and the store refuses all
of those to the auditor role anyway.

Start-up stays light: neither mlflow nor xgboost is imported (the lineage comes from the
audit log); MLflow is asked only when the auditor presses "Cross-check with MLflow", and
nbconvert only when a notebook is opened.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from hilt.pipelines.compliance import lineage as lin
from hilt.pipelines.compliance.explanation_replay import replay_explanation
from hilt.pipelines.config import Settings
from hilt.pipelines.dashboards.access import DashboardBackend, DashboardDoor, open_dashboard
from hilt.pipelines.errors import InputError, NotFoundError
from hilt.pipelines.store import Store
from hilt.pipelines.store.audit_records import AuditQuery
from hilt.pipelines.store.user_records import User
from hilt.pipelines.workspace import Workspace
from hilt.widgets.contracts.audit import (
    UNAVAILABLE,
    AuditBackend,
    Auditor,
    DecisionChoice,
    EventFilter,
    EventPage,
    EventRow,
    ExplanationReplay,
    IntegrityReport,
    LineageStep,
    LineageView,
    RunNotebook,
    TrainingPage,
    TrainingRow,
)
from hilt.widgets.contracts.common import Refusal

AUDIT_ROLES = frozenset({"auditor"})
#: Actions the store writes (the explorer offers them, and the families run. / model.).
KNOWN_ACTIONS = (
    "workspace.init",
    "user.token_issued",
    "user.tokens_revoked",
    "user.disabled",
    "user.enabled",
    "user.synced",
    "user.signed_in_unproven",
    "cases.ingest",
    "predictions.ingest",
    "case.leased",
    "case.contested",
    "decision.record",
    "snapshot.created",
    "run.",
    "model.",
    "system.halted",
    "system.resumed",
    "audit.checkpoint",
)


def _short(sha: str | None) -> str:
    return sha if sha else "—"


def key_fingerprint(public_key: str | None) -> str:
    if not public_key:
        return "none"
    return hashlib.sha256(public_key.encode()).hexdigest()[:16]


class StoreAuditBackend(DashboardBackend):
    """An ``AuditBackend`` for one auditor, on any Store (embedded or service client)."""

    def __init__(
        self,
        store: Store,
        ws: Workspace,
        settings: Settings,
        public_key: str | None = None,
        checkpoints: Path | None = None,
        *,
        me: User | None = None,
    ) -> None:
        super().__init__(store, settings, me=me)
        self.ws = ws
        #: The auditor's own copies, if given; else the workspace's (said so on screen).
        self.public_key = public_key or settings.audit.public_key
        self.key_source = "given to this dashboard" if public_key else "pinned in hilt.toml"
        self.checkpoints = checkpoints or ws.checkpoints_path
        self._head = store.audit_head().seq
        self._lineages: dict[str, lin.Lineage] = {}

    # ------------------------------------------------------------------ identity
    def auditor(self) -> Auditor:
        me = self.person()
        return Auditor(name=me.name, roles=me.roles, unproven=me.unproven)

    # ------------------------------------------------------------------ integrity
    def verify(self) -> IntegrityReport:
        """From the newest checkpoint signed by the auditor's key (``hilt audit verify
        --from latest``; the full walk is the CLI's default and the scheduled job's): the
        chain after it re-checked here from the events fetched through the store API (not
        the service's verdict), and the store's own verification from its newest
        checkpoint (which also recomputes the digests of the batches since)."""
        from hilt.pipelines.store.audit.checkpoints import LATEST
        from hilt.pipelines.store.audit.remote_verify import verify_remote

        local = verify_remote(self.store, self.public_key, self.checkpoints, LATEST)
        own = self.store.verify(self.public_key, LATEST)
        ok = local.ok and own.ok
        summary = local.summary() if not local.ok else own.summary()
        since = local.from_checkpoint
        scope = (
            f"Verified from the signed checkpoint at seq {since} (the newest whose signature "
            f"checks): the {local.events} events after it were fetched through the store's API "
            "and their hash chain and decision records re-computed in this dashboard; the log "
            "up to the checkpoint is trusted to its signature (`hilt audit verify` walks it all)."
            if since is not None
            else f"No checkpoint signed by this key: all {local.events} events were fetched "
            "through the store's API and their hash chain and decision records re-computed in "
            "this dashboard."
        )
        method = (
            scope,
            f"Signed checkpoints ({self.checkpoints.name}) checked against the public key "
            f"{self.key_source} (fingerprint {key_fingerprint(self.public_key)}); bring your "
            "own copies of the key and the checkpoint file to trust no operator.",
            f"The store's own verification, batch digests included: {own.summary()}.",
        )
        head_seq = since + local.events if since is not None else local.events
        return IntegrityReport(
            ok=ok,
            summary=summary,
            events=local.events,
            head_seq=head_seq,
            head_hash=local.head_hash,
            checkpoints=local.checkpoints,
            public_key=self.public_key,
            method=method,
            from_checkpoint=since,
        )

    # ------------------------------------------------------------------ events
    def refresh(self) -> int:
        self._head = self.store.audit_head().seq
        return self._head

    def action_names(self) -> tuple[str, ...]:
        present = self.store.audit_search(AuditQuery(limit=1, max_seq=self._head)).by_action
        return tuple(sorted(set(KNOWN_ACTIONS) | set(present)))

    def events(self, query: EventFilter, offset: int, limit: int) -> EventPage:
        page = self.store.audit_search(
            AuditQuery(
                actor=query.actor or None,
                action=query.action or None,
                object_id=query.object_id or None,
                model_version=query.model_version or None,
                since=query.since or None,
                until=query.until or None,
                max_seq=self._head,
                offset=offset,
                limit=limit,
                newest_first=True,
            )
        )
        rows = tuple(
            EventRow(
                seq=e.seq,
                ts=e.ts,
                actor=e.actor,
                role=e.role,
                action=e.action,
                object_type=e.object_type,
                object_id=e.object_id,
                payload=lin.payload_text(e.payload),
                hash=e.hash,
            )
            for e in page.events
        )
        return EventPage(
            rows=rows,
            total=page.total,
            offset=page.offset,
            limit=limit,
            head_seq=self._head,
            by_action=dict(page.by_action),
            by_day=dict(page.by_day),
            chart_png=self._activity_png(page.by_day, page.by_action),
        )

    @staticmethod
    def _activity_png(by_day: Mapping[str, int], by_action: Mapping[str, int]) -> bytes:
        from hilt.pipelines.loop.plots import audit_activity_figure, png_bytes

        return png_bytes(audit_activity_figure(by_day, by_action))

    # ------------------------------------------------------------------ lineage
    def recent_decisions(self, limit: int) -> tuple[DecisionChoice, ...]:
        page = self.store.audit_search(
            AuditQuery(action="decision.record", limit=limit, newest_first=True)
        )
        out = []
        for e in page.events:
            p = e.payload
            label = (
                f"seq {e.seq} · {e.ts[:19].replace('T', ' ')} · {e.actor} · {p.get('action')}"
                f" · case {e.object_id}"
            )
            out.append(DecisionChoice(decision_id=str(p.get("decision_id")), label=label))
        return tuple(out)

    def _lineage(self, decision_id: str) -> lin.Lineage:
        found = self._lineages.get(decision_id)
        if found is None:
            found = lin.decision_lineage(self.store, self.ws, decision_id)
            self._lineages[decision_id] = found
        return found

    def lineage(self, decision_id: str) -> LineageView:
        lineage = self._lineage(decision_id.strip())
        chart = b""
        if lineage.snapshot is not None and lineage.snapshot.label_sources:
            from hilt.pipelines.loop.plots import label_sources_figure, png_bytes

            chart = png_bytes(
                label_sources_figure(
                    lineage.snapshot.label_sources,
                    title=f"The training data of {lineage.model.model_version}"
                    if lineage.model
                    else "The training data",
                )
            )
        return LineageView(
            decision_id=lineage.decision.decision_id,
            steps=tuple(steps(lineage)),
            problems=lineage.problems,
            training=_training_page(lineage.training) if lineage.training else None,
            chart_png=chart,
        )

    def training_page(self, decision_id: str, offset: int, limit: int) -> TrainingPage:
        lineage = self._lineage(decision_id)
        if lineage.snapshot is None:
            raise NotFoundError("this lineage reaches no snapshot")
        return _training_page(
            lin.training_data(self.store, self.ws, lineage.snapshot, offset, limit)
        )

    def explanation(self, decision_id: str) -> ExplanationReplay:
        return replay_explanation(self.store, self.settings, decision_id.strip())

    def crosscheck(self, decision_id: str) -> LineageStep:
        checks = lin.crosscheck_mlflow(self.ws, self._lineage(decision_id))
        return LineageStep(
            title="MLflow's record of the training run",
            facts=tuple(
                (
                    c.item,
                    f"{'agrees' if c.agrees else 'DIFFERS'}: log {c.audit_log or '—'}, "
                    f"MLflow {c.mlflow or '—'}",
                )
                for c in checks
            ),
            status="ok" if all(c.agrees for c in checks) else "warning",
        )

    # ------------------------------------------------------------------ notebooks
    def notebooks(self) -> tuple[RunNotebook, ...]:
        events = lin.all_events(self.store, action="run.")
        runs: dict[str, dict[str, object]] = {}
        for e in events:
            r = runs.setdefault(e.object_id, {"run_id": e.object_id, "status": "started"})
            if e.action == "run.started":
                r.update(
                    kind=str(e.payload.get("kind", "")),
                    started=e.ts[:19].replace("T", " "),
                    author=e.actor,
                    notebook=str(e.payload.get("notebook", "")),
                )
            elif e.action in ("run.finished", "run.failed"):
                r["status"] = "finished" if e.action == "run.finished" else "failed"
                r["sha256"] = e.payload.get("notebook_sha256")
                r.setdefault("notebook", str(e.payload.get("notebook", "")))
        out = []
        for r in sorted(runs.values(), key=lambda x: str(x.get("started", "")), reverse=True):
            name = str(r.get("notebook") or "")
            sha = r.get("sha256")
            out.append(
                RunNotebook(
                    run_id=str(r["run_id"]),
                    kind=str(r.get("kind", "")),
                    status=str(r["status"]),
                    started=str(r.get("started", "")),
                    author=str(r.get("author", "")),
                    notebook=name,
                    sha256=str(sha) if sha else None,
                    file_status=lin.notebook_status(self.ws, name, str(sha) if sha else None)
                    if name
                    else "not recorded",
                )
            )
        return tuple(out)

    def notebook_html(self, run_id: str) -> str:
        found = next((r for r in self.notebooks() if r.run_id == run_id), None)
        if found is None or not found.notebook:
            raise NotFoundError(f"the audit log records no notebook of run {run_id}")
        if found.file_status != "matches":
            raise InputError(
                f"{found.notebook} {lin.status_words(found.file_status)}: not shown as the "
                "run's record"
            )
        from hilt.pipelines.loop.notebook_render import notebook_html

        return notebook_html(self.ws.run_notebook(found.notebook))


def _training_page(data: lin.TrainingData) -> TrainingPage:
    return TrainingPage(
        rows=tuple(
            TrainingRow(
                seq=d.seq,
                decision_id=d.decision_id or "—",
                case_id=d.case_id,
                action=d.action or "—",
                reviewer=d.reviewer or "—",
                final_label=d.final_label or "—",
                label_source=d.label_source,
                problem=d.problem,
            )
            for d in data.decisions
        ),
        total=data.total,
        offset=data.offset,
        by_source=dict(data.by_source),
    )


def steps(lineage: lin.Lineage) -> list[LineageStep]:
    """The lineage as the dashboard shows it: one step per link, in order."""
    d = lineage.decision
    out = [
        LineageStep(
            "Decision",
            (
                ("decision id", d.decision_id),
                ("case", d.case_id),
                ("action", d.action),
                ("final label", d.final_label or "—"),
                ("reviewer", f"{d.reviewer} ({d.reviewer_role})"),
                ("time", d.created_at),
                ("model output shown", "yes" if d.model_shown else "no"),
                ("audit seq", str(d.seq)),
                (
                    "event hash",
                    lineage.decision_event.hash if lineage.decision_event else "no event",
                ),
            ),
            "ok" if lineage.decision_event else "warning",
        )
    ]
    p = lineage.prediction
    if p is not None:
        pred = p.prediction
        batch = p.batch_event
        out.append(
            LineageStep(
                "Prediction",
                (
                    ("prediction id", str(pred.prediction_id)),
                    ("model version", pred.model_version),
                    ("score", f"{pred.score:.6f}"),
                    ("predicted label", pred.label),
                    ("added", pred.created_at),
                    (
                        "batch",
                        f"audit seq {pred.batch_seq}, digest {batch.payload.get('digest')}"
                        if batch
                        else f"audit seq {pred.batch_seq}: no event",
                    ),
                    (
                        "scoring run",
                        f"{p.scoring_run_id} ({p.scoring_notebook})"
                        if p.scoring_run_id
                        else "none recorded (added outside `hilt score`)",
                    ),
                ),
                "ok" if batch else "warning",
            )
        )
    m = lineage.model
    if m is not None:
        facts = [("model version", m.model_version)]
        facts += [(e.action, f"seq {e.seq} by {e.actor} at {e.ts}") for e in m.events]
        facts.append(("model sha256", _short(m.model_sha256)))
        facts.append(("champion when decided", m.champion_at_decision or "none"))
        reg = m.registry
        facts.append(
            (
                "in the store's model registry now",
                f"{reg.state}, trained by {reg.author}"
                + (f", decided by {reg.decided_by}" if reg.decided_by else "")
                if reg is not None
                else "not registered",
            )
        )
        known = bool(m.events) and reg is not None
        out.append(LineageStep("Model version", tuple(facts), "ok" if known else "warning"))
    r = lineage.training_run
    if r is not None:
        params = ", ".join(f"{k}={v}" for k, v in sorted(r.parameters.items())) or "defaults"
        out.append(
            LineageStep(
                "Training run",
                (
                    ("run id", r.run_id),
                    ("kind", r.kind or "—"),
                    ("author", r.author or "—"),
                    ("status", r.status),
                    ("parameters", params),
                    ("template sha256", _short(r.template_sha256)),
                    ("executed notebook", r.notebook or "—"),
                    ("notebook sha256", _short(r.notebook_sha256)),
                    ("notebook file", lin.status_words(r.notebook_status)),
                ),
                "ok" if r.notebook_status == "matches" else "warning",
            )
        )
    s = lineage.snapshot
    if s is not None:
        sources = ", ".join(f"{k} {v}" for k, v in s.label_sources.items()) or "—"
        out.append(
            LineageStep(
                "Snapshot",
                (
                    ("file", s.name),
                    ("sha256", s.sha256),
                    ("as of audit seq", str(s.as_of_seq)),
                    ("rows", f"{s.rows} ({s.train_rows} training, {s.holdout_rows} holdout)"),
                    ("training labels", sources),
                    ("recorded", f"audit seq {s.event.seq}" if s.event else "no event"),
                    ("file on disk", lin.status_words(s.file_status)),
                ),
                "ok" if s.event and s.file_status == "matches" else "warning",
            )
        )
    return out


#: Who may open the audit dashboard, and what the others are told.
AUDIT_DOOR = DashboardDoor(
    unavailable=UNAVAILABLE,
    not_allowed="Not an auditor here",
    roles=AUDIT_ROLES,
    no_role="{name} does not have the auditor role in this workspace.",
)


def open_audit_backend(
    workspace: str | None = None,
    env: Mapping[str, str] | None = None,
    public_key: str | None = None,
    checkpoints: str | None = None,
) -> AuditBackend | Refusal:
    """The auditor's backend, or the refusal to show instead of a dashboard.

    ``public_key`` and ``checkpoints``: the auditor's own copies of the public key and the
    checkpoint file (default: the workspace's, which the dashboard then says)."""
    return open_dashboard(
        AUDIT_DOOR,
        workspace,
        env,
        lambda a: StoreAuditBackend(
            a.store,
            a.workspace,
            a.settings,
            public_key or None,
            Path(checkpoints) if checkpoints else None,
            me=a.me,
        ),
    )
