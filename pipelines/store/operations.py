"""Every operation of the store, in one table: its function, who may call it, its HTTP route.

``Store`` below is that table. Each row (an ``Operation``, ``operation_row.py``) names the
function in ``ops/`` that does the work (its first parameter is the ``Unit`` the façade gives
it; the rest are the operation's arguments), the ``Permission`` the store checks before it
runs (``permissions.py``: who may do what), and the ``Route`` the store service serves it on.
The three modes are derived from the table, not written out:

- ``EmbeddedStore`` (``modes/embedded.py``) runs the function on the workspace's file;
- ``StoreClient`` (``modes/client.py``) sends the same arguments to the route;
- the service (``modes/service_http.py``) turns each row into a FastAPI route that runs it.

So adding an operation is its function plus one row here. Request bodies are pydantic
models whose fields are named like the function's parameters (``rows`` carries the one
``DataFrame`` parameter); arguments that are not in the path or the body travel in the
query string. Responses are the function's return type (a ``DataFrame`` as
``{"columns", "rows"}``).
"""

from __future__ import annotations

import typing
from typing import Any, Self, TypeVar

from hilt.pipelines.config import ROLES
from hilt.pipelines.deferred_imports import deferred_functions
from hilt.pipelines.store.operation_row import GET, POST, Operation
from hilt.pipelines.store.permissions import (
    ANYONE,
    AUDIT_READ,
    AUDIT_READERS,
    BACKUP,
    CONFIG_DECISION,
    DATA_WRITERS,
    DECIDE_MODELS,
    EVERYONE,
    GATEWAY_ONLY,
    GOLD,
    HALT,
    INCIDENTS_READ,
    INCIDENTS_WRITE,
    MANAGE_USERS,
    MONITOR,
    MONITORING_READ,
    NOTICE,
    OVERSIGHT_READ,
    READ_CASES,
    READ_DECISIONS,
    RECIPIENT,
    REVIEWERS,
    SUBJECT_RIGHTS,
    Permission,
)
from hilt.pipelines.store.requests import (
    AckIn,
    AdjudicationIn,
    AuditQueryIn,
    BackupIn,
    CaseIdsIn,
    CaseIn,
    CasesIn,
    CloseIncidentIn,
    EventIn,
    HaltIn,
    ModelIn,
    MonitoringIn,
    NoticeFactsIn,
    NoticeIssuedIn,
    NotifyRecipientIn,
    OpenIncidentIn,
    PredictionsIn,
    RectifyIn,
    RegisterModelIn,
    RejectModelIn,
    RestrictIn,
    RowsIn,
    ShadowIn,
    SubjectIn,
    UpdateIncidentIn,
    UserIn,
)

if typing.TYPE_CHECKING:
    from hilt.pipelines.store.ops import (
        backup,
        cases,
        config,
        decide_next,
        events,
        governance,
        incidents,
        models,
        monitoring,
        outcomes,
        oversight,
        queue,
        recipients,
        retention,
        review,
        sign_in,
        snapshot,
        subject_export,
        subject_notice,
        subject_rights,
        system,
        users,
    )
else:
    # Each row's function is imported when the row is first used: a client of the
    # service (a dashboard's kernel) imports only the operations it calls, never DuckDB
    # or the bulk operations' libraries for the others.
    globals().update(
        (name, deferred_functions(f"hilt.pipelines.store.ops.{name}"))
        for name in (
            "backup",
            "cases",
            "config",
            "decide_next",
            "events",
            "governance",
            "incidents",
            "models",
            "monitoring",
            "outcomes",
            "oversight",
            "queue",
            "recipients",
            "retention",
            "review",
            "sign_in",
            "snapshot",
            "subject_export",
            "subject_notice",
            "subject_rights",
            "system",
            "users",
        )
    )


R = TypeVar("R")


# ----------------------------------------------------------------------- the table
class Store:
    """A feedback store opened on behalf of one user; every operation below checks its
    permission inside the store, in both modes. Open one with
    ``hilt.pipelines.store.open_store_as``."""

    # identity
    whoami = Operation(users.whoami, ANYONE, GET("/v1/me", endpoint="me"), despite_drift=True)
    add_user = Operation(
        users.add_user, MANAGE_USERS, POST("/v1/users", UserIn), changes_identities=True
    )
    revoke_tokens = Operation(
        users.revoke_tokens,
        MANAGE_USERS,
        POST("/v1/users/{name}/revoke-tokens"),
        changes_identities=True,
    )
    # identity, issue 12: disable / enable, sync from hilt.toml, the list
    disable_user = Operation(
        users.disable_user,
        Permission("disable users", frozenset({"admin"})),
        POST("/v1/users/{name}/disable"),
        changes_identities=True,
    )
    enable_user = Operation(
        users.enable_user,
        Permission("enable users", frozenset({"admin"})),
        POST("/v1/users/{name}/enable"),
        changes_identities=True,
    )
    users_sync = Operation(
        users.users_sync,
        Permission("sync users", frozenset({"admin"})),
        POST("/v1/users/sync"),
        changes_identities=True,
    )
    list_users = Operation(
        users.list_users,
        Permission("list users", frozenset({"admin", "auditor"})),
        GET("/v1/users"),
    )
    # issue 16, the demo's sign-in page (single-person mode only; ops/sign_in.py)
    sign_in_choices = Operation(sign_in.sign_in_choices, GATEWAY_ONLY, GET("/v1/sign-in"))
    demo_sign_in = Operation(sign_in.demo_sign_in, GATEWAY_ONLY, POST("/v1/sign-in/{name}"))
    # cases and predictions
    ingest_cases = Operation(
        cases.ingest_cases,
        Permission("ingest cases", DATA_WRITERS),
        POST("/v1/cases", CasesIn),
        bulk=True,
        changes_queue=True,
    )
    add_predictions = Operation(
        cases.add_predictions,
        Permission("add predictions", DATA_WRITERS),
        POST("/v1/predictions", PredictionsIn),
        bulk=True,
        changes_queue=True,
    )
    # review
    record_decision = Operation(
        review.record_decision,
        Permission("record decision", REVIEWERS),
        POST("/v1/decisions"),
        group_commit=True,
    )
    decisions = Operation(review.decisions, READ_DECISIONS, GET("/v1/decisions"), read_only=True)
    next_case = Operation(
        queue.next_case,
        Permission("next case", REVIEWERS),
        POST("/v1/queue/next"),
        group_commit=True,
    )
    lease_case = Operation(
        queue.lease_case,
        Permission("next case", REVIEWERS),
        POST("/v1/queue/lease", CaseIn),
        group_commit=True,
    )
    # The review click: the decision, then the next lease, in one transaction
    decide_and_next = Operation(
        decide_next.decide_and_next,
        Permission("record decision", REVIEWERS),
        POST("/v1/queue/decide-next"),
        group_commit=True,
    )
    queue_status = Operation(
        queue.queue_status, Permission("queue status", EVERYONE), GET("/v1/queue/status")
    )
    contest = Operation(
        review.contest,
        Permission("contest", frozenset({"dpo", "admin"})),
        POST("/v1/cases/{case_id:path}/contest"),
    )
    # the audit log (events a client may report; reading it)
    record_event = Operation(
        events.record_event,
        Permission("record event", frozenset({"data-scientist", "admin", "system", "lead"})),
        POST("/v1/events", EventIn),
    )
    # training
    snapshot = Operation(
        snapshot.snapshot,
        Permission("snapshot", DATA_WRITERS),
        POST("/v1/snapshots"),
        bulk=True,
    )
    # the halt
    system_state = Operation(
        system.system_state, Permission("system state", EVERYONE), GET("/v1/system")
    )
    halt = Operation(system.halt, HALT, POST("/v1/system/halt", HaltIn), changes_queue=True)
    resume = Operation(system.resume, HALT, POST("/v1/system/resume"), changes_queue=True)
    # cases, read
    feature_profile = Operation(
        cases.feature_profile,
        Permission("feature profile", EVERYONE),
        GET("/v1/feature-profile"),
        read_only=True,
    )
    case_frame = Operation(
        cases.case_frame,
        Permission("case frame", DATA_WRITERS),
        POST("/v1/case-frame", CaseIdsIn),
        bulk=True,
        read_only=True,
    )
    get_case = Operation(cases.get_case, READ_CASES, GET("/v1/cases/{case_id:path}"))
    counts = Operation(
        cases.counts, Permission("counts", EVERYONE), GET("/v1/counts"), read_only=True
    )
    audit_head = Operation(events.audit_head, READ_CASES, GET("/v1/audit/head"))
    audit_events = Operation(
        events.audit_events, AUDIT_READ, GET("/v1/audit/events"), read_only=True
    )
    audit_stats = Operation(events.audit_stats, AUDIT_READ, GET("/v1/audit/stats"), read_only=True)
    verify = Operation(events.verify, AUDIT_READ, GET("/v1/audit/verify"), read_only=True)
    checkpoint = Operation(
        events.checkpoint,
        Permission("checkpoint", frozenset({"admin", "system", "lead"})),
        POST("/v1/audit/checkpoint"),
    )
    # data-subject rights
    subject_export = Operation(
        subject_export.subject_export,
        SUBJECT_RIGHTS,
        POST("/v1/subjects/export", SubjectIn),
        bulk=True,
    )
    # the decision notice (EU AI Act Art. 86, GDPR Arts. 13-15, 22(3)): its facts, its issue
    subject_notice_facts = Operation(
        subject_notice.subject_notice_facts,
        NOTICE,
        POST("/v1/subjects/notice/facts", NoticeFactsIn),
    )
    subject_notice_issued = Operation(
        subject_notice.subject_notice_issued,
        NOTICE,
        POST("/v1/subjects/notice/issued", NoticeIssuedIn),
    )
    subject_rectify = Operation(
        subject_rights.subject_rectify,
        SUBJECT_RIGHTS,
        POST("/v1/subjects/rectify", RectifyIn),
        changes_queue=True,
    )
    subject_restrict = Operation(
        subject_rights.subject_restrict,
        SUBJECT_RIGHTS,
        POST("/v1/subjects/restrict", RestrictIn),
        changes_queue=True,
    )
    subject_contest = Operation(
        subject_rights.subject_contest,
        SUBJECT_RIGHTS,
        POST("/v1/subjects/contest", SubjectIn),
        changes_queue=True,
    )
    subject_erase = Operation(
        subject_rights.subject_erase,
        SUBJECT_RIGHTS,
        POST("/v1/subjects/erase", SubjectIn),
        bulk=True,
        changes_queue=True,
    )
    # telling recipients of rectification, erasure, restriction (GDPR Art. 19)
    subject_changes = Operation(
        recipients.subject_changes, RECIPIENT, GET("/v1/subject-changes"), read_only=True
    )
    subject_changes_ack = Operation(
        recipients.subject_changes_ack, RECIPIENT, POST("/v1/subject-changes/ack", AckIn)
    )
    subject_notify_recipient = Operation(
        recipients.subject_notify_recipient,
        SUBJECT_RIGHTS,
        POST("/v1/subjects/notify-recipient", NotifyRecipientIn),
    )
    retention_apply = Operation(
        retention.retention_apply,
        Permission("retention", frozenset({"admin", "system", "dpo"})),
        POST("/v1/retention/apply"),
        bulk=True,
        changes_queue=True,
    )
    # the auditor's reads
    audit_search = Operation(
        events.audit_search,
        AUDIT_READ,
        GET("/v1/audit/search", query=AuditQueryIn),
        read_only=True,
    )
    get_decision = Operation(
        review.get_decision, READ_DECISIONS, GET("/v1/decisions/{decision_id}"), read_only=True
    )
    get_prediction = Operation(
        cases.get_prediction,
        Permission("get prediction", AUDIT_READERS),
        GET("/v1/predictions/{prediction_id}"),
        read_only=True,
    )
    # oversight
    gold_candidates = Operation(
        oversight.gold_candidates, GOLD, GET("/v1/gold/candidates"), read_only=True
    )
    add_gold = Operation(
        oversight.add_gold, GOLD, POST("/v1/gold", PredictionsIn), bulk=True, changes_queue=True
    )
    oversight_report = Operation(
        oversight.oversight_report, OVERSIGHT_READ, GET("/v1/oversight/report"), read_only=True
    )
    conflicts = Operation(
        oversight.conflicts, OVERSIGHT_READ, GET("/v1/oversight/conflicts"), read_only=True
    )
    adjudicate = Operation(
        oversight.adjudicate,
        Permission("adjudicate", frozenset({"lead"})),
        POST("/v1/oversight/adjudications", AdjudicationIn),
    )
    # the model registry: what may score is decided here, not in MLflow
    register_model = Operation(
        models.register_model,
        Permission("register model", DATA_WRITERS),
        POST("/v1/models", RegisterModelIn),
    )
    promote_model = Operation(
        models.promote_model, DECIDE_MODELS, POST("/v1/models/promote", ModelIn)
    )
    reject_model = Operation(
        models.reject_model, DECIDE_MODELS, POST("/v1/models/reject", RejectModelIn)
    )
    allow_shadow = Operation(
        models.allow_shadow, DECIDE_MODELS, POST("/v1/models/shadow", ShadowIn)
    )
    # going live (EU AI Act Arts. 26, 27, 72, 73; GDPR Art. 35): decided here, printed by
    # `hilt check go-live`
    go_live_check = Operation(
        governance.go_live_check,
        Permission("check go-live", AUDIT_READERS),
        GET("/v1/governance/go-live"),
        read_only=True,
    )
    # (last: from here on the name ``models`` is this row, not the module)
    models = Operation(models.models, Permission("read models", EVERYONE), GET("/v1/models"))

    # ---- issue 12, config drift: the config in force, and changes to it (ops/config.py)
    config_status = Operation(
        config.config_status,
        Permission("see the config status", frozenset(ROLES)),
        GET("/v1/config"),
        despite_drift=True,
    )
    # The dashboards on another host (`hilt serve --store-url`) run under the config in
    # force, read with the gateway's own token: its text carries [access], so nobody else.
    config_in_force = Operation(
        config.config_in_force,
        Permission("read the config in force", frozenset({"gateway"})),
        GET("/v1/config/in-force"),
        read_only=True,
        despite_drift=True,
    )
    config_apply = Operation(
        config.config_apply,
        Permission("apply config changes", frozenset({"admin"})),
        POST("/v1/config/apply"),
        despite_drift=True,
        changes_config=True,
    )
    config_approve = Operation(
        config.config_approve,
        CONFIG_DECISION,
        POST("/v1/config/approve"),
        despite_drift=True,
        changes_config=True,
    )
    config_reject = Operation(
        config.config_reject, CONFIG_DECISION, POST("/v1/config/reject"), despite_drift=True
    )

    # ---- issue 14, post-market monitoring (ops/monitoring.py) and outcomes (ops/outcomes.py)
    record_outcomes = Operation(
        outcomes.record_outcomes,
        Permission("record outcomes", DATA_WRITERS),
        POST("/v1/outcomes", RowsIn),
        bulk=True,
    )
    monitoring_window = Operation(
        monitoring.monitoring_window,
        Permission("read the monitoring window", DATA_WRITERS),
        GET("/v1/monitoring/window"),
        bulk=True,
        read_only=True,
    )
    record_monitoring = Operation(
        monitoring.record_monitoring, MONITOR, POST("/v1/monitoring/runs", MonitoringIn)
    )
    monitoring_runs = Operation(
        monitoring.monitoring_runs, MONITORING_READ, GET("/v1/monitoring/runs"), read_only=True
    )
    # ---- issue 14, the incident register (ops/incidents.py)
    open_incident = Operation(
        incidents.open_incident, INCIDENTS_WRITE, POST("/v1/incidents", OpenIncidentIn)
    )
    update_incident = Operation(
        incidents.update_incident,
        INCIDENTS_WRITE,
        POST("/v1/incidents/{incident_id}/update", UpdateIncidentIn),
    )
    close_incident = Operation(
        incidents.close_incident,
        INCIDENTS_WRITE,
        POST("/v1/incidents/{incident_id}/close", CloseIncidentIn),
    )
    # (the name ``incidents`` is this row from here on, not the module)
    verify_and_record = Operation(
        incidents.verify_and_record,
        # Not the auditor's: the auditor writes nothing (their own verify reads, in any mode).
        Permission(
            "verify the audit log and record what it finds",
            frozenset({"admin", "lead", "dpo", "system"}),
        ),
        POST("/v1/audit/verify-and-record"),
        bulk=True,
    )
    incidents = Operation(incidents.incidents, INCIDENTS_READ, GET("/v1/incidents"), read_only=True)
    # ---- issue 15, backups (ops/backup.py): operations' work, not a subject-rights one
    store_backup = Operation(
        backup.store_backup, BACKUP, POST("/v1/store/backup", BackupIn), bulk=True
    )
    reapply_removals = Operation(
        backup.reapply_removals,
        Permission("re-apply removals on a restored store", frozenset({"admin"})),
        POST("/v1/store/reapply-removals"),
        bulk=True,
        changes_queue=True,
    )

    # ------------------------------------------------------------------ the mode's part
    def perform(self, operation: Operation[Any, R], arguments: dict[str, Any]) -> R:
        """Carry out ``operation`` with ``arguments`` (by name) in this mode."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the mode holds open."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def operations(cls) -> list[Operation[Any, Any]]:
        """The table's rows, in order."""
        return [v for v in vars(Store).values() if isinstance(v, Operation)]
