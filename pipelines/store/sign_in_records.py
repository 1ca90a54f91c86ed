"""What the demo's sign-in operations return (``ops/sign_in.py``; single-person mode)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class SignInChoice(_Record):
    """A user the sign-in page lists, with their dashboard roles."""

    name: str
    roles: list[str]


class DemoSession(_Record):
    """A sign-in without a password: the session the dashboards act with, shown once; the
    store keeps only its sha256, in the audit event of the sign-in (``seq``)."""

    name: str
    roles: list[str]
    session: str
    expires_at: str
    seq: int
