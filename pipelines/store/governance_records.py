"""What the store's go-live check returns (``go_live_check``, ``hilt check go-live``)."""

from __future__ import annotations

from hilt.pipelines.store.record_base import Record


class GoLiveItem(Record):
    """One requirement of going live (``hilt check go-live``) and whether it is met."""

    #: champion, intended-purpose, risk-owner, dpia, fria, checkpoint, monitoring, incidents
    check: str
    ok: bool
    #: What was found, or what is missing, in one line (ids, dates and counts only).
    detail: str


class GoLiveReport(Record):
    """Whether the deployment may go (or stay) live, decided by the store at ``checked_at``."""

    checked_at: str
    items: list[GoLiveItem]

    @property
    def ready(self) -> bool:
        return all(item.ok for item in self.items)

    @property
    def missing(self) -> list[GoLiveItem]:
        return [item for item in self.items if not item.ok]
