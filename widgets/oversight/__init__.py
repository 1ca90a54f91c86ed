"""The oversight lead's dashboard: ``OversightDashboard`` (``dashboard.oversight_panel`` for
the notebook) and its components: system control, monitor views, adjudication, model review."""
