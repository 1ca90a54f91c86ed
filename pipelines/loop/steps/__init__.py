"""pipelines.loop.steps."""
