"""widgets.contracts."""
