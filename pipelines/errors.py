"""The project's own exceptions.

Driver errors (DuckDB, HTTP) are wrapped in these, so callers, the CLI and the HTTP service
can map them to clear messages, exit codes and status codes. Messages never carry personal
data: they name columns, rows, keys and ids, never the values found there.
"""

from __future__ import annotations


class HiltError(Exception):
    """Base of every error hilt raises on purpose."""

    #: HTTP status used by the store service for this kind of error.
    status_code = 500
    #: Short machine-readable kind, sent over HTTP so the client can re-raise the same class.
    kind = "error"


class ConfigError(HiltError):
    """hilt.toml is missing, unreadable or invalid; the message names the file and the key."""

    status_code = 500
    kind = "config"


class InputError(HiltError):
    """Bad input from a user or a client (columns, types, ids, sizes); nothing was written."""

    status_code = 422
    kind = "input"


class NotFoundError(InputError):
    """The request names something that does not exist (a case, a user)."""

    status_code = 404
    kind = "not-found"


class ConflictError(InputError):
    """The request would duplicate something that must be unique (a case id)."""

    status_code = 409
    kind = "conflict"


class AuthenticationError(HiltError):
    """No credential, or one that matches no active user."""

    status_code = 401
    kind = "unauthenticated"


class UnknownUserError(AuthenticationError):
    """The store has no user of that name (a dashboard tells them whom to ask)."""

    kind = "unknown-user"


class PermissionDeniedError(HiltError):
    """The caller is known but their roles do not allow the operation."""

    status_code = 403
    kind = "forbidden"


class StoreError(HiltError):
    """The store could not do its work (driver failure, corrupt file, lock not obtained)."""

    status_code = 500
    kind = "store"


class StoreBusyError(StoreError):
    """Another process holds the store (e.g. the store service); try again or use its URL."""

    status_code = 503
    kind = "busy"


class SystemHalted(ConflictError):
    """A lead halted scoring and retraining (EU AI Act Art. 14(4)(e)); refused until a second
    lead resumes. Commands exit with their own code for it (see the CLI)."""

    kind = "halted"


class ConfigDrift(HiltError):
    """The workspace's hilt.toml differs from the config in force (the one the store last
    recorded): refused until an admin records the change (`hilt config apply`)."""

    status_code = 409
    kind = "config-drift"


ERROR_KINDS: dict[str, type[HiltError]] = {
    cls.kind: cls
    for cls in (
        HiltError,
        ConfigError,
        InputError,
        NotFoundError,
        ConflictError,
        AuthenticationError,
        UnknownUserError,
        PermissionDeniedError,
        StoreError,
        StoreBusyError,
        SystemHalted,
        ConfigDrift,
    )
}
