"""pipelines.dashboards."""
