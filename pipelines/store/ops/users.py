"""Users and API tokens: who the store knows, and how a caller proves to be one of them.

Tokens are random (``hilt_`` + 32 bytes); only their sha256 is stored. ``authenticate`` and
``lookup_user`` run before there is an actor (the service's and the embedded mode's door).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

from hilt.pipelines.config import ROLES, USER_NAME
from hilt.pipelines.errors import AuthenticationError, InputError
from hilt.pipelines.store import sql
from hilt.pipelines.store.records import TokenGrant, User

if TYPE_CHECKING:
    import duckdb

    from hilt.pipelines.store.unit import Unit

TOKEN_PREFIX = "hilt_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def lookup_user(con: duckdb.DuckDBPyConnection, name: str) -> User:
    """The active user ``name`` (AuthenticationError if there is none)."""
    row = sql.one(con, "SELECT roles FROM users WHERE name = ? AND active", [name])
    if row is None:
        raise AuthenticationError(f"unknown user {name!r}")
    return User(name=name, roles=list(row[0]))


def authenticate(con: duckdb.DuckDBPyConnection, token: str) -> User:
    """The active owner of ``token`` (AuthenticationError if the token is unknown or
    revoked, or its owner inactive)."""
    row = sql.one(
        con,
        "SELECT u.name, u.roles FROM api_tokens t JOIN users u ON u.name = t.user_name "
        "WHERE t.token_hash = ? AND NOT t.revoked AND u.active",
        [token_hash(token)],
    )
    if row is None:
        raise AuthenticationError("invalid or revoked token")
    return User(name=str(row[0]), roles=list(row[1]))


def whoami(unit: Unit) -> User:
    """The acting user and their roles, as the store knows them."""
    return unit.actor


def add_user(unit: Unit, name: str, role: str) -> TokenGrant:
    """Grant ``name`` a role (creating the user if new) and issue a new token, shown once."""
    if not USER_NAME.match(name):
        raise InputError(f"user name must match {USER_NAME.pattern}")
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}; roles are: {', '.join(ROLES)}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    hashed = token_hash(token)
    now = unit.clock()
    with unit.transaction():
        row = sql.one(unit.con, "SELECT roles FROM users WHERE name = ?", [name])
        if row is None:
            roles = [role]
            unit.con.execute("INSERT INTO users VALUES (?, ?, true, ?)", [name, roles, now])
        else:
            roles = list(row[0])
            if role not in roles:
                roles.append(role)
                unit.con.execute(
                    "UPDATE users SET roles = ?, active = true WHERE name = ?", [roles, name]
                )
        unit.con.execute("INSERT INTO api_tokens VALUES (?, ?, ?, false)", [hashed, name, now])
        unit.append_audit(
            "user.token_issued",
            "user",
            name,
            {"roles": roles, "role_added": role, "token_id": hashed[:16]},
            now,
        )
    return TokenGrant(user=name, roles=roles, token=token)


def revoke_tokens(unit: Unit, name: str) -> int:
    """Revoke every active token of ``name``; returns how many were revoked."""
    now = unit.clock()
    with unit.transaction():
        n = int(
            sql.scalar(
                unit.con,
                "SELECT count(*) FROM api_tokens WHERE user_name = ? AND NOT revoked",
                [name],
            )
        )
        if n:
            unit.con.execute(
                "UPDATE api_tokens SET revoked = true WHERE user_name = ? AND NOT revoked",
                [name],
            )
            unit.append_audit("user.tokens_revoked", "user", name, {"revoked": n}, now)
    return n
