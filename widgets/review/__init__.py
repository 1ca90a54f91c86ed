"""widgets.review."""
