"""The store's users as they cross its boundary: who acts (``User``), a new token, the
users as the store knows them, and what a sync with hilt.toml [access.users] changed.

They are pydantic models so that the HTTP service and its client share one definition and
the OpenAPI document describes them.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from hilt.pipelines.store.record_base import Record


class User(Record):
    name: str
    roles: list[str]
    #: None when the store knows who this is (their own token, a sign-in proxy that proved
    #: itself, the workspace's files); otherwise why not (``SINGLE_PERSON``). Every audit
    #: event written as this user carries it (``Unit.append_audit``). Left out of the
    #: record as sent when None, so a proven user reads as before.
    unproven: str | None = None

    @model_serializer(mode="wrap")
    def _without_proof_when_proven(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and data.get("unproven") is None:
            data.pop("unproven", None)
        return data


class TokenGrant(Record):
    """A new API token; it is shown once and only its hash is stored."""

    user: str
    roles: list[str]
    token: str
    #: When the store starts refusing it ([access] token_days after it was issued).
    expires_at: str


class UserInfo(Record):
    """A user as the store knows them (``hilt users list``); never a token."""

    name: str
    roles: list[str]
    active: bool
    #: Listed in hilt.toml [access.users] as of the last ``users sync`` (or init).
    in_config: bool
    #: Tokens that still work (neither revoked nor expired), and when the last one expires.
    tokens: int
    tokens_expire: str | None = None


class UserSync(Record):
    """What ``users sync`` changed to make the users match hilt.toml [access.users]."""

    #: New users, with their roles.
    created: dict[str, list[str]] = Field(default_factory=dict)
    #: Users the store knew that hilt.toml lists from now on (``hilt users add`` made them,
    #: or the file listed them before) ...
    listed: list[str] = Field(default_factory=list)
    #: ... of whom these were disabled, and may act again.
    enabled: list[str] = Field(default_factory=list)
    #: No longer listed in hilt.toml: disabled, their tokens revoked.
    disabled: list[str] = Field(default_factory=list)
    #: name → [roles before, roles after]
    roles_changed: dict[str, list[list[str]]] = Field(default_factory=dict)
    #: The audit event that records the sync (None: nothing to change, nothing written).
    seq: int | None = None

    @property
    def changed(self) -> bool:
        return self.seq is not None
