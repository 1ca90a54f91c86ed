"""pipelines.store.audit."""
