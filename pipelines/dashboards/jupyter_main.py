"""Run a Jupyter server's own entry point (Voila for `hilt serve`, JupyterLab for `hilt
lab`) without building jsonschema's IRI grammar while it starts.

    python -m hilt.pipelines.dashboards.jupyter_main voila ARGS...

Every Jupyter server validates its events with jsonschema (jupyter-events), whose import
builds an RFC 3987 grammar that a server start never uses (``deferred_imports``: ~1.5 s of
CPU of the ~2.2 s Voila's imports take here). Nothing else changes: the server's own
``__main__`` runs with ``ARGS``.
"""

from __future__ import annotations

import runpy
import sys

from hilt.pipelines.deferred_imports import defer_iri_grammar

#: The servers this starts (their ``python -m`` module).
SERVERS = ("voila", "jupyterlab")


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in SERVERS:
        raise SystemExit(f"usage: jupyter_main {{{','.join(SERVERS)}}} ARGS...")
    defer_iri_grammar()
    sys.argv = [argv[0], *argv[1:]]
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
