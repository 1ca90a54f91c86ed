"""A lead's decision on a challenger: the one pair of functions `hilt promote` / `hilt reject`
and the oversight dashboard call (EU AI Act Art. 14: a person who did not train the model
decides).

The store decides (``Store.promote_model`` / ``reject_model``): the lead role, four eyes
(not the model's author), that the version is the challenger, all checked in the store's
transaction with its audit row (``model.promoted`` / ``model.rejected``, written by the
store). Here the run is mapped to the version its run registered in the store, the store is
asked, and MLflow's aliases and tags are brought in line with its registry afterwards (a
mirror; if MLflow cannot be updated the decision stands and ``mirror_problem`` says why).

A refusal is ``PromotionRefused`` (an InputError: exit 2) with the store's reason, and
nothing is changed: not the store, not MLflow. Refusals of the store's rules are not audited
(nothing changed, and the person refused may hold no role that may write to the audit log).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from hilt.pipelines.errors import (
    AuthenticationError,
    HiltError,
    InputError,
    PermissionDeniedError,
)
from hilt.pipelines.store import Store
from hilt.pipelines.store.registry_records import ModelRecord
from hilt.pipelines.workspace import Workspace


class PromotionRefused(InputError):
    """The store refused the decision (or it was asked of the wrong person); nothing was
    changed."""

    kind = "promotion-refused"


@dataclass(frozen=True)
class Promotion:
    run_id: str
    registered_name: str
    version: str
    #: The champion it replaced (its version, or the whole name if of another model).
    previous_version: str | None
    approver: str
    author: str
    model_sha256: str
    #: The store's ``model.promoted`` event.
    audit_seq: int
    #: Why MLflow's aliases could not follow the store's registry (None: they did).
    mirror_problem: str | None = None


@dataclass(frozen=True)
class Rejection:
    run_id: str
    registered_name: str
    version: str
    approver: str
    author: str
    #: The store's ``model.rejected`` event.
    audit_seq: int
    mirror_problem: str | None = None


@dataclass(frozen=True)
class _Decided:
    """The store's record after a lead's decision, the champion before it, and the mirror."""

    record: ModelRecord
    previous: ModelRecord | None
    registered_name: str
    version: str
    mirror_problem: str | None


@contextmanager
def _store_as(ws: Workspace, approver: str, store: Store | None) -> Iterator[Store]:
    """``store`` (checked to act as ``approver``), or the store opened for ``approver``
    (through the service if one owns the workspace, $HILT_TOKEN being theirs) and closed
    afterwards."""
    from hilt.pipelines.store import Identity, open_store_as

    own = store is None
    if store is None:
        try:
            store = open_store_as(ws, Identity(name=approver))
        except AuthenticationError:
            raise PromotionRefused(f"{approver!r} is not a user of this workspace") from None
    try:
        me = store.whoami()
        if me.name != approver:
            raise PromotionRefused(f"the store acts as {me.name!r}, not as {approver!r}")
        yield store
    finally:
        if own:
            store.close()


def _decide(
    ws: Workspace,
    run_id: str,
    approver: str,
    store: Store | None,
    decide: Callable[[Store, str], ModelRecord],
) -> _Decided:
    """Find the version ``run_id`` registered in the store, let ``decide`` ask the store to
    decide on it as ``approver``, then mirror the store's registry onto MLflow."""
    from hilt.pipelines.loop.model_registry import champion, mirror_to_mlflow, model_of_run
    from hilt.pipelines.loop.tracking.client import configure
    from hilt.pipelines.loop.tracking.environment import (
        registered_model_name,
        require_reachable,
        tracking_choice,
    )
    from hilt.pipelines.loop.tracking.mirror import split_model

    ws.require()
    settings = ws.settings()
    # MLflow's server must answer before the store decides, or its registry would lag.
    require_reachable(tracking_choice(ws, settings=settings))
    with _store_as(ws, approver, store) as s:
        try:
            model = model_of_run(s, run_id).model
            previous = champion(s)
            record = decide(s, model)
        except (PermissionDeniedError, InputError) as e:
            raise PromotionRefused(f"run {run_id}: {e}") from None
        try:
            configure(ws, settings=settings)
        except HiltError as e:  # the store's decision stands; the mirror says why it lags
            problem: str | None = str(e)
        else:
            problem = mirror_to_mlflow(s, settings)
    name, version = split_model(record.model)
    if name != registered_model_name(settings):
        name, version = record.model, record.model
    return _Decided(record, previous, name, version, problem)


def promote(ws: Workspace, run_id: str, approver: str, *, store: Store | None = None) -> Promotion:
    """A lead approves the challenger that run ``run_id`` registered: the store makes it the
    champion (retiring the former one), then MLflow's ``champion`` alias follows.

    ``store`` (optional): the store already opened as the approver (the oversight dashboard
    passes its own); by default it is opened for ``approver``.
    """
    from hilt.pipelines.loop.tracking.environment import registered_model_name
    from hilt.pipelines.loop.tracking.mirror import short_name

    d = _decide(ws, run_id, approver, store, lambda s, model: s.promote_model(model))
    previous = d.previous
    registered = registered_model_name(ws.settings())
    assert d.record.decided_seq is not None
    return Promotion(
        run_id=run_id,
        registered_name=d.registered_name,
        version=d.version,
        previous_version=short_name(previous.model, registered) if previous else None,
        approver=approver,
        author=d.record.author,
        model_sha256=d.record.model_sha256,
        audit_seq=d.record.decided_seq,
        mirror_problem=d.mirror_problem,
    )


def reject(
    ws: Workspace, run_id: str, approver: str, reason: str, *, store: Store | None = None
) -> Rejection:
    """A lead who did not train it rejects the challenger that run ``run_id`` registered:
    the store marks it rejected (the reason audited as its sha256 only), the champion is
    unchanged, and MLflow's ``challenger`` alias is dropped. A reason is required."""
    if not reason.strip():
        raise PromotionRefused("a rejection needs a reason")
    d = _decide(ws, run_id, approver, store, lambda s, model: s.reject_model(model, reason))
    assert d.record.decided_seq is not None
    return Rejection(
        run_id=run_id,
        registered_name=d.registered_name,
        version=d.version,
        approver=approver,
        author=d.record.author,
        audit_seq=d.record.decided_seq,
        mirror_problem=d.mirror_problem,
    )
