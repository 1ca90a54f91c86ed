"""The dashboards' colours, defined once.

Theme-aware where Jupyter's theme defines a colour (``var(--jp-…, fallback)``), fixed where
a colour carries a meaning (good, caution, bad): text always says the same in words, so
colour is never the only cue.

Not used by ``hilt.widgets.contracts.explanation``: the explanation fragment is hashed and
must re-render byte for byte for past decisions, so it keeps its own literal colours.
"""

from __future__ import annotations

#: Good: passed, running, saved.
GREEN = "#166534"
#: Caution: uncertain, waiting too long, needs attention.
AMBER = "#b45309"
#: Bad: failed, refused, halted, an alert.
RED = "#b91c1c"
#: Ordinary text.
TEXT = "var(--jp-ui-font-color1, #1f2937)"
#: Secondary text: notes, labels, "nothing here yet".
MUTED = "var(--jp-ui-font-color2, #6b7280)"
#: Thin rules between table rows and around tiles.
BORDER = "var(--jp-border-color2, #e5e7eb)"
#: The frame of a card that stands alone (the refusal screen).
FRAME = "var(--jp-border-color1, #d1d5db)"
#: The background of such a card.
BACKGROUND = "var(--jp-layout-color1, #ffffff)"
