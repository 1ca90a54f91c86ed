"""What every dashboard shares: the status line, the refusal screen (and ``panel_for``),
the header, tables and notes, figures, number formats, callbacks, class buttons, and the
colours (defined once, in ``colours``)."""
