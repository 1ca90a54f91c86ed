"""pipelines.compliance."""
