"""Users and API tokens: who the store knows, their roles, their tokens.

Every change is audited (``user.*``) in its transaction and, through the service, takes
effect at once: the rows of these operations in the table are marked
``changes_identities``, so the service forgets every identity it cached. How a caller is
recognised (a token, a user looked up, the dashboards' gateway) is
``store/authentication.py``.

hilt.toml ``[access.users]`` becomes the users of the store only through ``users_sync``
(an explicit, audited operation; ``hilt users sync``), never by opening the store.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from hilt.pipelines.config import ROLES, USER_NAME
from hilt.pipelines.errors import InputError, NotFoundError
from hilt.pipelines.store import sql
from hilt.pipelines.store.audit.chain import utc_timestamp
from hilt.pipelines.store.authentication import TOKEN_PREFIX, token_hash, token_id
from hilt.pipelines.store.user_records import TokenGrant, User, UserInfo, UserSync

if TYPE_CHECKING:
    from hilt.pipelines.store.unit import Unit


def whoami(unit: Unit) -> User:
    """The acting user and their roles, as the store knows them (and, when nobody proved
    who they are, why not)."""
    return unit.actor


def add_user(unit: Unit, name: str, role: str) -> TokenGrant:
    """Grant ``name`` a role (creating the user if new) and issue a new token, shown once,
    that expires [access] token_days from now. A disabled user is enabled first, on its own
    (``enable_user``)."""
    if not USER_NAME.match(name):
        raise InputError(f"user name must match {USER_NAME.pattern}")
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}; roles are: {', '.join(ROLES)}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    hashed = token_hash(token)
    now = unit.clock()
    expires = now + timedelta(days=unit.settings.access.token_days)
    with unit.transaction():
        row = sql.one(unit.con, "SELECT roles, active FROM users WHERE name = ?", [name])
        if row is None:
            roles = [role]
            unit.con.execute(
                "INSERT INTO users (name, roles, active, created_at, in_config) "
                "VALUES (?, ?, true, ?, false)",
                [name, roles, now],
            )
        else:
            if not row[1]:
                raise InputError(
                    f"user {name!r} is disabled; enable them first (hilt users enable {name})"
                )
            roles = list(row[0])
            if role not in roles:
                roles.append(role)
                unit.con.execute("UPDATE users SET roles = ? WHERE name = ?", [roles, name])
        unit.con.execute(
            "INSERT INTO api_tokens (token_hash, user_name, created_at, revoked, expires_at) "
            "VALUES (?, ?, ?, false, ?)",
            [hashed, name, now, expires],
        )
        unit.append_audit(
            "user.token_issued",
            "user",
            name,
            {
                "roles": roles,
                "role_added": role,
                "token_id": token_id(hashed),
                "expires_at": utc_timestamp(expires),
            },
            now,
        )
    return TokenGrant(user=name, roles=roles, token=token, expires_at=utc_timestamp(expires))


def _user_row(unit: Unit, name: str) -> tuple[list[str], bool]:
    """(roles, active) of ``name`` (NotFoundError if the store has no such user)."""
    row = sql.one(unit.con, "SELECT roles, active FROM users WHERE name = ?", [name])
    if row is None:
        raise NotFoundError(f"unknown user {name!r}")
    return list(row[0]), bool(row[1])


def _revoke(unit: Unit, name: str, seq: int) -> int:
    """Revoke every token of ``name`` still in force, as of the event ``seq``; how many."""
    n = int(
        sql.scalar(
            unit.con,
            "SELECT count(*) FROM api_tokens WHERE user_name = ? AND NOT revoked",
            [name],
        )
    )
    if n:
        unit.con.execute(
            "UPDATE api_tokens SET revoked = true, revoked_seq = ? "
            "WHERE user_name = ? AND NOT revoked",
            [seq, name],
        )
    return n


def _disable(unit: Unit, name: str, seq: int) -> int:
    """Mark ``name`` disabled by the event ``seq`` and revoke their tokens; how many."""
    unit.con.execute(
        "UPDATE users SET active = false, disabled_seq = ? WHERE name = ?", [seq, name]
    )
    return _revoke(unit, name, seq)


def revoke_tokens(unit: Unit, name: str) -> int:
    """Revoke every token of ``name``; returns how many were revoked (none: nothing is
    written)."""
    now = unit.clock()
    with unit.transaction():
        _user_row(unit, name)
        seq = unit.next_seq()
        n = _revoke(unit, name, seq)
        if n:
            unit.append_audit("user.tokens_revoked", "user", name, {"revoked": n}, now, seq)
    return n


def disable_user(unit: Unit, name: str) -> UserInfo:
    """``name`` can no longer act, in any mode (their tokens are revoked too); a user who
    is already disabled is left as they are, and nothing is written."""
    if name == unit.actor.name:
        raise InputError("you may not disable yourself; another administrator can")
    now = unit.clock()
    with unit.transaction():
        roles, active = _user_row(unit, name)
        if active:
            seq = unit.next_seq()
            revoked = _disable(unit, name, seq)
            unit.append_audit(
                "user.disabled", "user", name, {"roles": roles, "tokens_revoked": revoked}, now, seq
            )
    return _info(unit, name)


def enable_user(unit: Unit, name: str) -> UserInfo:
    """Let a disabled user act again (with new tokens only: the old ones stay revoked)."""
    now = unit.clock()
    with unit.transaction():
        roles, active = _user_row(unit, name)
        if not active:
            unit.con.execute(
                "UPDATE users SET active = true, disabled_seq = NULL WHERE name = ?", [name]
            )
            unit.append_audit("user.enabled", "user", name, {"roles": roles}, now)
    return _info(unit, name)


def users_sync(unit: Unit) -> UserSync:
    """Make the store's users match ``[access.users]`` of the config in force (an edit of
    hilt.toml counts once an admin applied it: ``hilt config apply``), in one
    transaction with one ``user.synced`` event: users new to the file are created, users
    listed again are enabled, users no longer listed are disabled (their tokens revoked),
    and the roles of listed users become the file's. Users the file never listed (a
    production system, the dashboards' gateway) are left alone. Nothing to change: nothing
    is written. Callable inside another operation's transaction (``config apply`` may sync
    the users in the same transaction as it records the config)."""
    listed = unit.settings.access.users
    wanted: dict[str, list[str]] = {name: [str(r) for r in roles] for name, roles in listed.items()}
    now = unit.clock()
    with unit.transaction():
        known = {
            str(r[0]): (list(r[1]), bool(r[2]), bool(r[3]))
            for r in unit.con.execute("SELECT name, roles, active, in_config FROM users").fetchall()
        }
        seq = unit.next_seq()
        sync = UserSync()
        revoked = 0
        for name, roles in wanted.items():
            if name not in known:
                unit.con.execute(
                    "INSERT INTO users (name, roles, active, created_at, in_config) "
                    "VALUES (?, ?, true, ?, true)",
                    [name, roles, now],
                )
                sync.created[name] = roles
                continue
            old_roles, active, in_config = known[name]
            if old_roles != roles:
                unit.con.execute("UPDATE users SET roles = ? WHERE name = ?", [roles, name])
                sync.roles_changed[name] = [old_roles, roles]
            if not in_config:
                unit.con.execute(
                    "UPDATE users SET in_config = true, active = true, disabled_seq = NULL "
                    "WHERE name = ?",
                    [name],
                )
                sync.listed.append(name)
                if not active:
                    sync.enabled.append(name)
        for name, (_, active, in_config) in known.items():
            if in_config and name not in wanted:
                unit.con.execute("UPDATE users SET in_config = false WHERE name = ?", [name])
                if active:
                    revoked += _disable(unit, name, seq)
                sync.disabled.append(name)
        if sync.created or sync.listed or sync.disabled or sync.roles_changed:
            payload = sync.model_dump(exclude={"seq"})
            payload["tokens_revoked"] = revoked
            sync.seq = unit.append_audit("user.synced", "users", "access.users", payload, now, seq)
    return sync


def list_users(unit: Unit) -> list[UserInfo]:
    """Every user the store knows, with the number of their tokens still in force."""
    rows = unit.con.execute(_INFO + " GROUP BY ALL ORDER BY u.name", [unit.clock()]).fetchall()
    return [_user_info(tuple(r)) for r in rows]


_INFO = (
    "SELECT u.name, u.roles, u.active, u.in_config,"
    " count(t.token_hash) FILTER (WHERE NOT t.revoked AND t.expires_at > $1),"
    " max(t.expires_at) FILTER (WHERE NOT t.revoked AND t.expires_at > $1)"
    " FROM users u LEFT JOIN api_tokens t ON t.user_name = u.name"
)


def _user_info(row: tuple[object, ...]) -> UserInfo:
    name, roles, active, in_config, tokens, last = row
    return UserInfo(
        name=str(name),
        roles=list(roles),  # type: ignore[call-overload]
        active=bool(active),
        in_config=bool(in_config),
        tokens=int(tokens),  # type: ignore[call-overload]
        tokens_expire=utc_timestamp(last) if isinstance(last, datetime) else None,
    )


def _info(unit: Unit, name: str) -> UserInfo:
    row = sql.one(unit.con, _INFO + " WHERE u.name = $2 GROUP BY ALL", [unit.clock(), name])
    assert row is not None
    return _user_info(row)
