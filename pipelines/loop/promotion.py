"""Human approval of a challenger: the one function `hilt promote` and the oversight dashboard
call (EU AI Act Art. 14: a person who did not train the model decides).

``promote(ws, run_id, approver)`` moves the ``champion`` alias to the run's registered version
only if every condition holds; otherwise it raises ``PromotionRefused`` (an InputError: exit
2) and changes nothing. Refusals are not audited: nothing changed, and the person refused
may hold no role that may write to the audit log (a reviewer, say). A promotion is audited
as ``model.promoted`` by the approver, with the previous and the new version.

Conditions, checked in this order:
1. the approver is a store user with the lead role;
2. the run exists in the workspace's MLflow and is a retraining run that FINISHED;
3. the approver is not the run's author;
4. the run passed the gate (run tag ``hilt.gate`` = ``passed``);
5. the run's registered version is the current challenger.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import AuthenticationError, InputError
from hilt.pipelines.loop.tracking.tags import TAG_GATE, TAG_KIND
from hilt.pipelines.store import Store
from hilt.pipelines.workspace import Workspace

if TYPE_CHECKING:  # tracking's runs module imports mlflow: only where a promotion is decided
    from hilt.pipelines.loop.tracking.runs import RunRecord

APPROVER_ROLE = "lead"


class PromotionRefused(InputError):
    """A condition of promotion does not hold; nothing was changed."""

    kind = "promotion-refused"


@dataclass(frozen=True)
class Promotion:
    run_id: str
    registered_name: str
    version: str
    previous_version: str | None
    approver: str
    author: str
    model_sha256: str
    audit_seq: int


@dataclass(frozen=True)
class Rejection:
    run_id: str
    registered_name: str
    version: str
    approver: str
    author: str
    audit_seq: int


@dataclass(frozen=True)
class _Decision:
    """A lead (``approver``) about to decide on a retraining run: the settings, the store
    acting as the lead, the run and its author."""

    settings: Settings
    store: Store
    approver: str
    run: RunRecord
    author: str

    def record(self, action: str, name: str, version: str, **details: Any) -> int:
        """Audit the decision on ``version`` of the registered model ``name``: the run, the
        version, the model's sha256, author and approver, and ``details``."""
        return self.store.record_event(
            action,
            "model",
            f"{name}/v{version}",
            {
                "run_id": self.run.run_id,
                "version": version,
                "model_sha256": self.run.model_sha256,
                "author": self.author,
                "approver": self.approver,
                **details,
            },
        )


@contextmanager
def _lead_decides(
    ws: Workspace,
    run_id: str,
    approver: str,
    store: Store | None,
    *,
    may: str,
    must: str,
    finished: bool,
) -> Iterator[_Decision]:
    """Conditions 1 to 3 (with ``finished``, the run must have FINISHED), then the decision;
    ``store`` (None: opened for ``approver``, and closed afterwards) must act as the
    approver. ``may``: what the lead is about to do, ``must``: what a lead who did not train
    the run must do (for the refusals)."""
    ws.require()
    settings = ws.settings()
    own = store is None
    try:
        if store is None:
            try:
                store = _approver_store(ws, approver)
            except AuthenticationError:
                raise PromotionRefused(f"{approver!r} is not a user of this workspace") from None
        run = _lead_and_run(ws, settings, store, approver, run_id, may)
        if finished and run.status != "FINISHED":
            raise PromotionRefused(f"run {run_id} is {run.status}, not FINISHED")
        author = run.author or ""
        if author == approver:
            raise PromotionRefused(
                f"{approver!r} trained run {run_id}; a lead who did not train it must {must}"
            )
        yield _Decision(settings, store, approver, run, author)
    finally:
        if own and store is not None:
            store.close()


def _lead_and_run(
    ws: Workspace, settings: Settings, store: Store, approver: str, run_id: str, may: str
) -> RunRecord:
    """The retraining run ``run_id``, once ``store`` is seen to act as ``approver`` with the
    lead role (``may``: what they are about to do, for the refusal)."""
    from hilt.pipelines.loop.tracking.client import TrackingError, configure
    from hilt.pipelines.loop.tracking.runs import run_info

    me = store.whoami()
    if me.name != approver:
        raise PromotionRefused(f"the store acts as {me.name!r}, not as {approver!r}")
    if APPROVER_ROLE not in me.roles:
        raise PromotionRefused(
            f"{approver!r} (roles: {', '.join(me.roles) or 'none'}) may not {may}; "
            f"that needs the {APPROVER_ROLE} role"
        )
    configure(ws, settings=settings)
    try:
        run = run_info(run_id)
    except TrackingError:
        raise PromotionRefused(f"no MLflow run {run_id!r} in this workspace") from None
    if run.tags.get(TAG_KIND) != "retrain":
        raise PromotionRefused(f"run {run_id} is not a retraining run")
    return run


def _current_challenger(settings: Settings, run_id: str, run: RunRecord) -> str:
    """The challenger version, which must be one of the run's; PromotionRefused otherwise."""
    from hilt.pipelines.loop.tracking.registry import challenger_version

    challenger = challenger_version(settings)
    if challenger is None or challenger not in run.versions:
        raise PromotionRefused(
            f"run {run_id} is not the current challenger "
            f"(the challenger is {'version ' + challenger if challenger else 'none'})"
        )
    return challenger


def _approver_store(ws: Workspace, approver: str) -> Store:
    """The store acting as ``approver``: through the service if one owns the workspace
    ($HILT_TOKEN must then be the approver's), else embedded as that user."""
    from hilt.pipelines.store import Identity, open_store_as

    return open_store_as(ws, Identity(name=approver))


def promote(ws: Workspace, run_id: str, approver: str, *, store: Store | None = None) -> Promotion:
    """Make the run's challenger version the champion, approved by ``approver``.

    ``store`` (optional): the store already opened as the approver (the oversight dashboard
    passes its own); by default it is opened for ``approver``.
    """
    from hilt.pipelines.loop.tracking import registry
    from hilt.pipelines.loop.tracking.environment import registered_model_name

    with _lead_decides(
        ws, run_id, approver, store, may="approve a promotion", must="approve", finished=True
    ) as d:
        run, settings = d.run, d.settings
        gate = run.tags.get(TAG_GATE)
        if gate != "passed":
            raise PromotionRefused(
                f"run {run_id} did not pass the gate ({gate or 'no gate result'})"
            )
        challenger = _current_challenger(settings, run_id, run)
        if not run.model_sha256:
            raise PromotionRefused(f"run {run_id} has no logged model")
        name = registered_model_name(settings)
        previous = registry.promote_to_champion(settings, challenger)
        try:
            seq = d.record("model.promoted", name, challenger, previous_version=previous)
        except BaseException:
            # The audit log is the record: without its event, undo the alias move.
            if previous is not None:
                registry.promote_to_champion(settings, previous)
            registry.set_challenger(settings, challenger)
            raise
        return Promotion(
            run_id=run_id,
            registered_name=name,
            version=challenger,
            previous_version=previous,
            approver=approver,
            author=d.author,
            model_sha256=run.model_sha256,
            audit_seq=seq,
        )


def reject(
    ws: Workspace, run_id: str, approver: str, reason: str, *, store: Store | None = None
) -> Rejection:
    """A lead who did not train the run rejects its challenger: the ``challenger`` alias is
    dropped, the version tagged rejected, and ``model.rejected`` audited (the reason only as
    its sha256). Conditions as for ``promote``, without the gate (a lead may reject what the
    gate passed), and a reason is required. Refused: ``PromotionRefused``, nothing changed."""
    import hashlib

    from hilt.pipelines.loop.tracking import registry
    from hilt.pipelines.loop.tracking.environment import registered_model_name

    if not reason.strip():
        raise PromotionRefused("a rejection needs a reason")
    with _lead_decides(
        ws, run_id, approver, store, may="reject a challenger", must="decide", finished=False
    ) as d:
        settings = d.settings
        challenger = _current_challenger(settings, run_id, d.run)
        name = registered_model_name(settings)
        tag_before = registry.version_gate(settings, challenger)
        reason_sha256 = hashlib.sha256(reason.encode("utf-8")).hexdigest()
        registry.reject_challenger(settings, challenger)
        try:
            seq = d.record("model.rejected", name, challenger, reason_sha256=reason_sha256)
        except BaseException:
            registry.set_version_gate(settings, challenger, tag_before or "pending")
            registry.set_challenger(settings, challenger)
            raise
        return Rejection(
            run_id=run_id,
            registered_name=name,
            version=challenger,
            approver=approver,
            author=d.author,
            audit_seq=seq,
        )
