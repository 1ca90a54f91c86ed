"""The review panel's backend on top of the store, and who the reviewer is.

``open_review_backend`` is what the reviewer dashboard calls: it works out who is looking
(never typed into the panel), checks that they may review, and returns a ``ReviewBackend``
for the widgets, or a ``Refusal`` to show instead.

Identity, in order: a trusted proxy header passed by Voila (``X-Forwarded-User`` →
``HTTP_X_FORWARDED_USER``), ``JUPYTERHUB_USER``, then the workspace's configured local user.
In a served dashboard (`hilt serve`) the kernel gets the store URL and a gateway token in
its environment and acts on behalf of that user; in JupyterLab without a service, the
workspace is opened in embedded mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from hilt.pipelines.config import Settings
from hilt.pipelines.dashboards.access import DashboardBackend, DashboardDoor, open_dashboard
from hilt.pipelines.store import DecisionRequest, Store
from hilt.pipelines.store.case_records import CaseRecord, Decision, LeasedCase
from hilt.pipelines.store.case_records import QueueStatus as StoreQueueStatus
from hilt.pipelines.store.user_records import User
from hilt.widgets.contracts.common import (
    FeatureRange,
    FieldSpec,
    Refusal,
    ReviewConfig,
    Reviewer,
    ReviewItem,
)
from hilt.widgets.contracts.review import (
    UNAVAILABLE,
    Advanced,
    DecisionInput,
    DecisionReceipt,
    QueueStatus,
    ReviewBackend,
)

REVIEW_ROLES = frozenset({"reviewer", "lead"})


def review_config(settings: Settings, profile: Mapping[str, FeatureRange]) -> ReviewConfig:
    columns = settings.columns
    return ReviewConfig(
        use_case=settings.use_case.name,
        classes=tuple(settings.target.classes),
        class_labels=dict(settings.target.labels),
        positive_class=settings.target.positive,
        decision_threshold=settings.review.decision_threshold,
        reason_codes=dict(settings.review.reason_codes),
        comment_required=settings.review.comment_required,
        max_comment_length=settings.review.max_comment_length,
        blind_first=settings.review.blind_first,
        display=tuple(
            FieldSpec(name=n, label=columns[n].description or n, format=columns[n].format)
            for n in settings.fields.display
        ),
        training_ranges=dict(profile),
    )


def review_item(case: CaseRecord, settings: Settings) -> ReviewItem:
    """A case as the panels show it: the display fields only, the latest prediction, the
    feature values for the out-of-distribution check; not leased."""
    visible = {**case.features, **case.personal}
    prediction = case.predictions[-1] if case.predictions else None
    return ReviewItem(
        case_id=case.case_id,
        values={f: visible.get(f) for f in settings.fields.display},
        features={k: v for k, v in visible.items() if k in settings.fields.features},
        prediction_id=prediction.prediction_id if prediction else None,
        model_version=prediction.model_version if prediction else None,
        score=prediction.score if prediction else None,
        predicted_label=prediction.label if prediction else None,
        contributions=dict(prediction.explanation) if prediction else {},
        lease_expires_at="",
    )


def leased_item(leased: LeasedCase, settings: Settings) -> ReviewItem:
    """A leased case as the review panel shows it: ``review_item`` with its lease."""
    return replace(
        review_item(leased.case, settings),
        lease_expires_at=leased.lease_expires_at,
        contested=leased.contested,
        second_opinion=leased.second_opinion,
        blind_label=leased.blind_label,
    )


def queue_status(q: StoreQueueStatus) -> QueueStatus:
    return QueueStatus(
        waiting=q.waiting,
        leased=q.leased,
        done_today=q.done_today,
        done_today_by_me=q.done_today_by_me,
    )


class StoreReviewBackend(DashboardBackend):
    """A ReviewBackend for one reviewer, on any Store (embedded or service client)."""

    def __init__(self, store: Store, settings: Settings, *, me: User | None = None) -> None:
        super().__init__(store, settings, me=me)
        self._config: ReviewConfig | None = None
        #: The queue counts that came with the last lease, for the one progress refresh
        #: that follows it (the panel asks right after showing the case); None once used
        #: or after a decision.
        self._counts: QueueStatus | None = None

    def reviewer(self) -> Reviewer:
        return self.person()

    def review_config(self) -> ReviewConfig:
        if self._config is None:
            profile = {
                name: FeatureRange(
                    low=r.low,
                    high=r.high,
                    levels=tuple(r.levels) if r.levels is not None else None,
                )
                for name, r in self.store.feature_profile().items()
            }
            self._config = review_config(self.settings, profile)
        return self._config

    def next_item(self) -> ReviewItem | None:
        return self._shown(self.store.next_case())

    def submit(self, decision: DecisionInput) -> DecisionReceipt:
        self._counts = None
        return _receipt(decision, self.store.record_decision(_request(decision)))

    def submit_and_next(self, decision: DecisionInput) -> Advanced:
        self._counts = None
        done = self.store.decide_and_next(_request(decision))
        return Advanced(_receipt(decision, done.decision), self._shown(done.leased))

    def _shown(self, leased: LeasedCase | None) -> ReviewItem | None:
        """The leased case as the panel shows it; its queue counts kept for the progress
        line's refresh that follows."""
        self._counts = None
        if leased is None:
            return None
        if leased.queue is not None:
            self._counts = queue_status(leased.queue)
        return leased_item(leased, self.settings)

    def queue_status(self) -> QueueStatus:
        counts, self._counts = self._counts, None
        if counts is not None:
            return counts
        return queue_status(self.store.queue_status())


def _request(decision: DecisionInput) -> DecisionRequest:
    return DecisionRequest(
        case_id=decision.case_id,
        action=decision.action,
        final_label=decision.final_label,
        reason_code=decision.reason_code,
        comment=decision.comment,
        time_on_item_ms=decision.time_on_item_ms,
        model_shown=decision.model_shown,
        prediction_id=decision.prediction_id,
        undo_of=decision.undo_of,
        request_id=decision.request_id,
        explanation_sha256=decision.explanation_sha256,
        explanation_context=decision.explanation_context,
    )


def _receipt(decision: DecisionInput, d: Decision) -> DecisionReceipt:
    return DecisionReceipt(
        decision_id=d.decision_id,
        case_id=d.case_id,
        action=decision.action,
        final_label=d.final_label,
        seq=d.seq,
    )


#: Who may open the review queue, and what the others are told.
REVIEW_DOOR = DashboardDoor(
    unavailable=UNAVAILABLE,
    not_allowed="Not a reviewer here",
    roles=REVIEW_ROLES,
    no_role="{name} does not have the reviewer role in this workspace.",
    ask="a lead",
)


def open_review_backend(
    workspace: str | None = None, env: Mapping[str, str] | None = None
) -> ReviewBackend | Refusal:
    """The reviewer's backend, or the refusal to show instead of a panel."""
    return open_dashboard(
        REVIEW_DOOR, workspace, env, lambda a: StoreReviewBackend(a.store, a.settings, me=a.me)
    )
