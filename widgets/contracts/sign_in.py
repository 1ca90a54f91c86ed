"""The demo's sign-in page (single-person mode): the users it lists, and what signing in
as one of them gives the page to show. Pure records and the backend's protocol."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SignInOption:
    """A user of the workspace the page lists, with the roles the dashboards know."""

    name: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class DashboardLink:
    """A dashboard the signed-in user may open: its title and its address (relative to the
    sign-in page, with the session in its query)."""

    title: str
    href: str


@dataclass(frozen=True)
class SignedIn:
    """Who the dashboards act as from now on (never proven: the store says why)."""

    name: str
    roles: tuple[str, ...]
    unproven: str
    links: tuple[DashboardLink, ...]


class SignInBackend(Protocol):
    def choices(self) -> Sequence[SignInOption]: ...

    def sign_in(self, name: str) -> SignedIn: ...
