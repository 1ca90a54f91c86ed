"""widgets.audit."""
