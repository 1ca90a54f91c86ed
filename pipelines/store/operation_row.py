"""One row of the operations table (``operations.py``): an operation, its route, its flags.

An ``Operation`` holds the function in ``ops/`` that does the work (imported on first use),
the ``Permission`` the store checks before it runs, the ``Route`` the store service serves it
on, and what the modes must know about it (bulk, read-only, group commit, what it changes).
On a ``Store`` it is a method with the function's parameters, without the unit.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, overload

from pydantic import BaseModel

from hilt.pipelines.deferred_imports import resolved
from hilt.pipelines.store.permissions import Permission

if typing.TYPE_CHECKING:
    from hilt.pipelines.store.operations import Store
    from hilt.pipelines.store.unit import Unit

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Route:
    """Where the store service serves an operation."""

    method: Literal["GET", "POST"]
    #: Path parameters are the function's parameters of the same name (``{x}`` or
    #: ``{x:path}``).
    path: str
    #: The request body: a model whose fields are the function's parameters of the same
    #: names (``rows``: its DataFrame), or a model that is itself one parameter's type.
    body: type[BaseModel] | None = None
    #: The endpoint's name in the OpenAPI document, where it is not the operation's.
    endpoint: str | None = None
    #: The query's model as the service takes it, where it is stricter than the
    #: operation's own (``requests.AuditQueryIn``: times as RFC 3339 date-times).
    query: type[BaseModel] | None = None

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(m.group(1) for m in re.finditer(r"\{(\w+)(?::path)?\}", self.path))


def GET(path: str, *, endpoint: str | None = None, query: type[BaseModel] | None = None) -> Route:
    return Route("GET", path, endpoint=endpoint, query=query)


def POST(path: str, body: type[BaseModel] | None = None) -> Route:
    return Route("POST", path, body=body)


class Operation(Generic[P, R]):
    """One row of the table. On a ``Store`` instance it is a method with the function's
    parameters (without the unit) and return type."""

    def __init__(
        self,
        fn: Callable[Concatenate[Unit, P], R],
        permission: Permission,
        route: Route,
        *,
        bulk: bool = False,
        read_only: bool = False,
        group_commit: bool = False,
        changes_identities: bool = False,
        despite_drift: bool = False,
        changes_config: bool = False,
        changes_queue: bool = False,
    ) -> None:
        #: The function, or (at run time) its stand-in until the row is first used.
        self._fn = fn
        self.name = fn.__name__
        self.permission = permission
        self.route = route
        #: Scans whole tables: the service gives DuckDB every core for it.
        self.bulk = bulk
        #: Only reads: the service runs it on a read connection of its own, never making
        #: the writers wait (verify, reports, searches).
        self.read_only = read_only
        #: The review path (leases, decisions): the service lets many requests share one
        #: transaction, each acknowledged after its COMMIT.
        self.group_commit = group_commit
        #: Users or tokens change: the service forgets the identities it cached.
        self.changes_identities = changes_identities
        #: Runs while hilt.toml differs from the config in force (everything else is
        #: refused then): the config operations, and asking who one is.
        self.despite_drift = despite_drift
        #: The config in force may change: the modes read it again afterwards.
        self.changes_config = changes_config
        #: May change many cases' place in the review queue (or its rules): the service
        #: builds its live queue again afterwards (``live_queue.py``). The review path's
        #: operations update it case by case themselves. Every operation that writes the
        #: ``cases``, ``case_features`` or ``predictions`` tables must say so, or the queue's
        #: order and arms go stale until the next rebuild. (The rows of those tables read
        #: ahead for leases are dropped after any write off the review path, marked or not.)
        self.changes_queue = changes_queue or changes_config

    @property
    def fn(self) -> Callable[Concatenate[Unit, P], R]:
        """The function that does the work (its module imported on first use)."""
        fn: Callable[Concatenate[Unit, P], R] = resolved(self._fn)
        self._fn = fn
        return fn

    def __set_name__(self, owner: type[Any], name: str) -> None:
        if name != self.name:
            raise TypeError(f"operation {name} must be the function of the same name")

    @overload
    def __get__(self, store: None, owner: type[Any]) -> Operation[P, R]: ...

    @overload
    def __get__(self, store: Store, owner: type[Any]) -> Callable[P, R]: ...

    def __get__(self, store: Store | None, owner: type[Any]) -> Operation[P, R] | Callable[P, R]:
        if store is None:
            return self

        def perform(*args: P.args, **kwargs: P.kwargs) -> R:
            return store.perform(self, self.arguments(*args, **kwargs))

        perform.__name__ = self.name
        return perform

    @cached_property
    def signature(self) -> inspect.Signature:
        """The operation's parameters (the function's, without the unit)."""
        sig = inspect.signature(self.fn)
        return sig.replace(parameters=list(sig.parameters.values())[1:])

    @cached_property
    def hints(self) -> dict[str, Any]:
        """The parameters' and the result's types, resolved."""
        return typing.get_type_hints(self.fn, localns={"Unit": object}, include_extras=True)

    def arguments(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The call's arguments by name, defaults filled in (TypeError as for a call)."""
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def run(self, unit: Unit, arguments: dict[str, Any]) -> R:
        function: Callable[..., R] = self.fn
        return function(unit, **arguments)
