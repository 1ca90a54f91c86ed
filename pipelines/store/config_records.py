"""The versions of hilt.toml the store recorded (issue 12, config drift), as they cross
its boundary: a version, the config in force and the change waiting for a lead, the
text the dashboards' gateway reads, and what `config apply` did.

They are pydantic models so that the HTTP service and its client share one definition and
the OpenAPI document describes them.
"""

from __future__ import annotations

from typing import Any, Literal

from hilt.pipelines.store.record_base import Record

ConfigState = Literal["in-force", "superseded", "pending", "rejected", "withdrawn"]


class ConfigVersion(Record):
    """One version of hilt.toml as the store recorded it (never its text: key names, and
    values only where they carry no personal data)."""

    version: int
    sha256: str
    state: ConfigState
    #: The version in force when this one was applied (None: the first, at init).
    base_version: int | None
    #: Keys of the file that changed, were added, were removed (against the base).
    changed: list[str]
    added: list[str]
    removed: list[str]
    #: [old, new] in effect, for the keys whose values may be shown.
    values: dict[str, list[Any]]
    #: The keys whose change loosens a rule that protects people (a lead approves them),
    #: each described in one line.
    loosens: list[str]
    #: [access.users] differs from the base: `hilt users sync` applies it to the store.
    users_changed: bool
    applied_by: str
    applied_at: str
    applied_seq: int
    #: The lead who approved or rejected it, or the admin whose later change withdrew it.
    decided_by: str | None
    decided_at: str | None
    decided_seq: int | None


class ConfigStatus(Record):
    """The config in force, the change waiting for a lead, and the file on disk."""

    in_force: ConfigVersion
    pending: ConfigVersion | None
    #: sha256 of the workspace's hilt.toml (None: there is no such file).
    file_sha256: str | None
    #: The file differs from the config in force: everything but the config operations is
    #: refused until an admin applies it (or restores the file).
    drift: bool
    #: What is wrong, in one line (None: nothing).
    problem: str | None
    #: Keys of the file that differ from the config in force.
    file_keys: list[str]


class ConfigInForce(Record):
    """The config in force with its text: what the dashboards' gateway reads to run the
    dashboards on another host under the rules the store enforces (one truth, no copy)."""

    version: int
    sha256: str
    text: str


class ConfigApplied(Record):
    """What `config apply` did with the workspace's hilt.toml."""

    #: applied: in force at once; pending: a loosening waits for a lead; unchanged: the
    #: file is the config in force (nothing written).
    outcome: Literal["applied", "pending", "unchanged"]
    version: ConfigVersion
    #: A change that was pending and that this one withdrew.
    withdrawn: int | None
