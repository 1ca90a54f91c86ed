"""hilt.widgets: ipywidget components for reviewers, leads and auditors.

Widgets depend only on small protocols (``hilt.widgets.protocols``), never on duckdb, mlflow or
xgboost, so dashboards start fast and tests use fakes. The components arrive with the
reviewer-experience issue.
"""
