"""pipelines.store.ops."""
