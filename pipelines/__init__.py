"""hilt.pipelines: everything that is not UI (config, store, privacy, data, model, runs, CLI)."""
