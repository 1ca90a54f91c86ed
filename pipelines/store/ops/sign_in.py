"""The demo's sign-in page: in single-person mode (no sign-in proxy), whoever is at the
keyboard picks one of the workspace's users, and the dashboards act as that person,
marked unproven by the store.

Only the dashboards' gateway (role ``gateway``) may ask, and only while hilt.toml
configures no sign-in proxy and a local user (single-person mode); behind a proxy the
proxy says who is looking, and both operations are refused with nothing written.

``demo_sign_in`` issues a session: a random token, shown once, whose sha256 the store
writes into the audit event that records the sign-in (``user.signed_in_unproven``: who was
chosen, their dashboard roles, until when). The store service then accepts the gateway's
requests for that person only with that session (``X-Hilt-Session``), and every event
written so carries ``identity_unproven`` = ``DEMO_SIGN_IN``, set by the store from how it
authenticated the request (``authentication.demo_session_user``), never by a client.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from hilt.pipelines.store.audit.chain import utc_timestamp
from hilt.pipelines.store.authentication import (
    DASHBOARD_ROLES,
    DEMO_SESSION_HOURS,
    DEMO_SESSION_PREFIX,
    DEMO_SIGN_IN,
    SIGNED_IN_UNPROVEN,
    UNPROVEN_KEY,
    dashboard_actor,
    lookup_user,
    require_single_person,
    token_hash,
    token_id,
)
from hilt.pipelines.store.sign_in_records import DemoSession, SignInChoice

if TYPE_CHECKING:
    from hilt.pipelines.store.unit import Unit


def sign_in_choices(unit: Unit) -> list[SignInChoice]:
    """The users the sign-in page lists: active, with a dashboard role (reviewer, lead,
    auditor), each with those roles only (what the dashboards would let them do)."""
    require_single_person(unit.settings.access)
    rows = unit.con.execute("SELECT name, roles FROM users WHERE active ORDER BY name").fetchall()
    choices = []
    for name, roles in rows:
        shown = [r for r in roles if r in DASHBOARD_ROLES]
        if shown:
            choices.append(SignInChoice(name=str(name), roles=shown))
    return choices


def demo_sign_in(unit: Unit, name: str) -> DemoSession:
    """Sign in as ``name`` without a password (single-person mode only): a new session for
    the gateway to act as them, audited as ``user.signed_in_unproven``."""
    require_single_person(unit.settings.access)
    user = dashboard_actor(lookup_user(unit.con, name), DEMO_SIGN_IN)
    session = DEMO_SESSION_PREFIX + secrets.token_urlsafe(32)
    hashed = token_hash(session)
    now = unit.clock()
    expires = utc_timestamp(now + timedelta(hours=DEMO_SESSION_HOURS))
    with unit.transaction():
        seq = unit.append_audit(
            SIGNED_IN_UNPROVEN,
            "user",
            user.name,
            {
                "roles": user.roles,
                "session": hashed,
                "session_id": token_id(hashed),
                "expires_at": expires,
                UNPROVEN_KEY: DEMO_SIGN_IN,
            },
            now,
        )
    return DemoSession(
        name=user.name, roles=user.roles, session=session, expires_at=expires, seq=seq
    )
