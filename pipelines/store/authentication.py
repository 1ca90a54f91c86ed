"""How the store learns who acts, before there is an actor: a token's owner, a user looked
up by name, and what the dashboards' gateway may do for whom.

Used by the service's ``caller`` (every request) and the embedded door. Tokens are random
(``hilt_`` + 32 bytes); only their sha256 is stored, with when they expire. Every refusal
says what is wrong (unknown, revoked, expired, disabled, an unproven proxy) and never
carries the token.

The gateway (``hilt serve``'s dashboard kernels) acts on behalf of a person, and the store
decides whether it may:

- behind a sign-in proxy (hilt.toml ``[access] proxy_secret_sha256``): only with the
  proxy's secret (header ``X-Hilt-Proxy-Secret``, which Voila hands the kernel and the
  kernel forwards), for whoever the proxy named;
- without one (single-person mode): only as ``access.local_user``, and every event written
  so says that the identity was not proven (``User.unproven``);
- in single-person mode, also as a user picked on the demo's sign-in page, with the
  session the store issued for that choice (``ops/sign_in.py``; header ``X-Hilt-Session``),
  every event written so marked ``DEMO_SIGN_IN``; never behind a sign-in proxy;
- either way only for users holding reviewer, lead or auditor, and with those roles only
  (``DASHBOARD_ROLES``): a lead who is also an admin acts through a dashboard as a lead.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import TYPE_CHECKING

from hilt.pipelines.config import Access
from hilt.pipelines.errors import AuthenticationError, PermissionDeniedError, UnknownUserError
from hilt.pipelines.store import sql
from hilt.pipelines.store.user_records import User

if TYPE_CHECKING:
    import duckdb

TOKEN_PREFIX = "hilt_"
#: The roles the dashboards' gateway may act in (the dashboards' doors need no other).
DASHBOARD_ROLES = ("reviewer", "lead", "auditor")
#: ``User.unproven`` of the dashboards' single-person mode; the audit payload key below
#: carries it into every event written so.
SINGLE_PERSON = "single-person mode: no sign-in proxy, acting as access.local_user"
UNPROVEN_KEY = "identity_unproven"
#: ``User.unproven`` of a user picked on the demo's sign-in page (single-person mode).
DEMO_SIGN_IN = (
    "signed in without a password: demo mode (single-person mode, no sign-in proxy; "
    "the name was chosen on the sign-in page)"
)
#: The audit action of a sign-in without a password; its payload holds the session's sha256.
SIGNED_IN_UNPROVEN = "user.signed_in_unproven"
DEMO_SESSION_PREFIX = "hiltdemo_"
#: A demo session works this long after the sign-in.
DEMO_SESSION_HOURS = 12
#: The header in which the dashboards' gateway forwards a demo session.
SESSION_HEADER = "X-Hilt-Session"
#: The header in which a sign-in proxy proves itself (Voila: ``HTTP_X_HILT_PROXY_SECRET``).
PROXY_SECRET_HEADER = "X-Hilt-Proxy-Secret"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_id(hashed: str) -> str:
    """The short id of a token in the audit log and the service's log (never the token)."""
    return hashed[:16]


def _disabled(name: str, seq: int | None) -> AuthenticationError:
    where = f" (audit seq {seq})" if seq is not None else ""
    return AuthenticationError(
        f"user {name!r} is disabled{where}; an administrator can enable them again "
        f"(hilt users enable {name})"
    )


def lookup_user(con: duckdb.DuckDBPyConnection, name: str) -> User:
    """The user ``name`` (UnknownUserError if the store has none, AuthenticationError if
    they are disabled)."""
    row = sql.one(con, "SELECT roles, active, disabled_seq FROM users WHERE name = ?", [name])
    if row is None:
        raise UnknownUserError(f"unknown user {name!r}")
    if not row[1]:
        raise _disabled(name, row[2])
    return User(name=name, roles=list(row[0]))


def authenticate(
    con: duckdb.DuckDBPyConnection, token: str, now: datetime
) -> tuple[User, datetime]:
    """The owner of ``token`` and when the token expires; AuthenticationError, saying why,
    if the store never issued it, its owner is disabled, it was revoked, or it expired."""
    hashed = token_hash(token)
    row = sql.one(
        con,
        "SELECT u.name, u.roles, u.active, u.disabled_seq, t.revoked, t.revoked_seq, "
        "t.expires_at FROM api_tokens t JOIN users u ON u.name = t.user_name "
        "WHERE t.token_hash = ?",
        [hashed],
    )
    if row is None:
        raise AuthenticationError("invalid token: this store never issued it")
    name, roles, active, disabled_seq, revoked, revoked_seq, expires_at = row
    if not active:
        raise _disabled(str(name), disabled_seq)
    if revoked:
        where = f" (audit seq {revoked_seq})" if revoked_seq is not None else ""
        raise AuthenticationError(
            f"token {token_id(hashed)} was revoked{where}; ask an administrator for a new one"
        )
    if expires_at <= now:
        raise AuthenticationError(
            f"token {token_id(hashed)} expired at {expires_at.isoformat(timespec='seconds')} "
            "(tokens last [access] token_days); ask an administrator for a new one"
        )
    return User(name=str(name), roles=list(roles)), expires_at


def require_single_person(access: Access) -> None:
    """PermissionDeniedError unless hilt.toml configures single-person mode (a local user,
    no sign-in proxy): the only mode in which anyone may pick who they are."""
    if access.proxy_secret_sha256 is not None:
        raise PermissionDeniedError(
            "no sign-in without a password here: hilt.toml configures a sign-in proxy "
            "([access] proxy_secret_sha256), and the proxy says who is looking"
        )
    if access.local_user is None:
        raise PermissionDeniedError(
            "no sign-in without a password here: hilt.toml configures no single-person "
            "mode (access.local_user)"
        )


def demo_session_user(con: duckdb.DuckDBPyConnection, session: str, now: datetime) -> str:
    """The user a demo session was issued for (``ops/sign_in.py``), from the audit event of
    the sign-in; AuthenticationError if the store never issued it or it expired."""
    hashed = token_hash(session)
    row = sql.one(
        con,
        "SELECT object_id, json_extract_string(payload, '$.expires_at') FROM audit_events "
        "WHERE action = ? AND json_extract_string(payload, '$.session') = ?",
        [SIGNED_IN_UNPROVEN, hashed],
    )
    if row is None:
        raise AuthenticationError(
            f"demo session {token_id(hashed)}: this store never issued it; sign in again"
        )
    if datetime.fromisoformat(str(row[1])) <= now:
        raise AuthenticationError(
            f"demo session {token_id(hashed)} expired at {row[1]}; sign in again"
        )
    return str(row[0])


def prove_gateway_request(
    access: Access, on_behalf_of: str, proxy_secret: str | None, session_user: str | None = None
) -> str | None:
    """Whether the gateway may act for ``on_behalf_of`` at all, from how the request came
    (see the module doc): None when a sign-in proxy proved itself, ``SINGLE_PERSON`` for
    the local user without a proxy, ``DEMO_SIGN_IN`` for the user a demo session
    (``session_user``, already checked by the caller) was issued for; AuthenticationError
    or PermissionDeniedError naming what is wrong otherwise. Checked before the user is even
    looked up."""
    expected = access.proxy_secret_sha256
    if expected is not None:
        if not proxy_secret:
            raise AuthenticationError(
                f"the sign-in proxy did not prove itself: no {PROXY_SECRET_HEADER} header; "
                "hilt.toml [access] proxy_secret_sha256 requires it with every dashboard request"
            )
        if not hmac.compare_digest(token_hash(proxy_secret), expected):
            raise AuthenticationError(
                f"the sign-in proxy did not prove itself: {PROXY_SECRET_HEADER} does not match "
                "hilt.toml [access] proxy_secret_sha256"
            )
        return None
    if proxy_secret:
        raise AuthenticationError(
            f"a {PROXY_SECRET_HEADER} header came, but hilt.toml configures no sign-in proxy "
            "([access] proxy_secret_sha256)"
        )
    if access.local_user is None:
        raise PermissionDeniedError(
            "the dashboards can act for nobody: hilt.toml configures neither a sign-in proxy "
            "([access] proxy_secret_sha256) nor a local user (access.local_user)"
        )
    if session_user is not None:
        if on_behalf_of != session_user:
            raise PermissionDeniedError(
                f"the demo session was issued for {session_user!r}, not {on_behalf_of!r}; "
                "sign in again on the sign-in page"
            )
        return DEMO_SIGN_IN
    if on_behalf_of != access.local_user:
        raise PermissionDeniedError(
            f"single-person mode (no sign-in proxy): the dashboards act only as "
            f"access.local_user {access.local_user!r}, not as {on_behalf_of!r}; more people "
            "need a sign-in proxy ([access] proxy_secret_sha256)"
        )
    return SINGLE_PERSON


def dashboard_actor(user: User, unproven: str | None) -> User:
    """``user`` as the gateway may act for them: their dashboard roles only, marked
    ``unproven`` (PermissionDeniedError if they hold none of those roles)."""
    roles = [r for r in user.roles if r in DASHBOARD_ROLES]
    if not roles:
        raise PermissionDeniedError(
            f"the dashboards act only for reviewers, leads and auditors; {user.name!r} "
            f"(roles: {', '.join(user.roles) or 'none'}) is none of them"
        )
    return User(name=user.name, roles=roles, unproven=unproven)
