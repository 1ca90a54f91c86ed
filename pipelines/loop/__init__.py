"""pipelines.loop."""
