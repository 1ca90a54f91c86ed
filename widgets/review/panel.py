"""review_panel: what the reviewer dashboard displays, in one call that never raises.

The dashboard hands over whatever ``open_review_backend`` returned: a ``ReviewBackend``
(the person may review) or a ``Refusal`` (they may not, or the queue is unavailable).
A refusal becomes a ``RefusalScreen``, with nothing on it that could write; a backend
becomes a ``ReviewSession``. Who may review is decided by the backend (and enforced again
by the store), not here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hilt.widgets.common.refusal import RefusalScreen, panel_for
from hilt.widgets.contracts.common import Refusal
from hilt.widgets.contracts.review import UNAVAILABLE, ReviewBackend
from hilt.widgets.review.session import ReviewSession


def review_panel(
    access: ReviewBackend | Refusal,
    clock: Callable[[], float] = time.monotonic,
    **kwargs: Any,
) -> ReviewSession | RefusalScreen:
    """The reviewer's panel for ``access``, or the refusal to show instead.

    ``kwargs`` go to ``ReviewSession`` (for example ``min_dwell_ms``).
    """
    return panel_for(
        access,
        UNAVAILABLE,
        lambda backend: backend.reviewer(),
        lambda backend, _reviewer: ReviewSession(backend, clock, **kwargs),
    )
