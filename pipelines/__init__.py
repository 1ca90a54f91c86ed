"""hilt.pipelines: everything that is not UI (config, store, privacy, data, model, runs, CLI)."""

from hilt.pipelines.deferred_imports import defer_httpx_cli

defer_httpx_cli()  # httpx's command-line client is imported only if its main is called
