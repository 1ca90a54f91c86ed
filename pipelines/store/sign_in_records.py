"""What the demo's sign-in operations return (``ops/sign_in.py``; single-person mode)."""

from __future__ import annotations

from hilt.pipelines.store.record_base import Record


class SignInChoice(Record):
    """A user the sign-in page lists, with their dashboard roles."""

    name: str
    roles: list[str]


class DemoSession(Record):
    """A sign-in without a password: the session the dashboards act with, shown once; the
    store keeps only its sha256, in the audit event of the sign-in (``seq``)."""

    name: str
    roles: list[str]
    session: str
    expires_at: str
    seq: int
