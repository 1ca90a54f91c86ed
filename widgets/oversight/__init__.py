"""widgets.oversight."""
