"""pipelines.store.modes."""
