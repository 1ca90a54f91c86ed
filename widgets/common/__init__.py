"""widgets.common."""
