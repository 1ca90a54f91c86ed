"""Imported last by the fork server of tests/prewarmed.py, after everything it preloads:
the `hilt` command tree built once, what a store service builds at its start warmed once,
then ``gc.freeze()``. Nothing else imports this module.

- Typer builds the click command tree of ``hilt.pipelines.cli.app`` (51 commands, their
  parameters read from type hints) on every call of ``app()``: 0.19 s of CPU in each `hilt`
  child, a service's start included. Here it is built once, and ``typer.main.get_command``
  hands every child that same tree for that app (a fresh copy of it, since each child is a
  fork); the tree is what the child would have built, from the same app.
- A `hilt store serve` child built the store's deferred pydantic models (``defer_build``)
  and imported what FastAPI and uvicorn import only when an app is built or served
  (``pydantic.v1``, anyio's asyncio backend, uvicorn's event loop, HTTP and WebSocket
  protocols, uvloop, httptools, websockets: 84 modules) in every start. Here one app of
  the store's routes is built (``service_app_warmed``) and thrown away, and uvicorn's
  "auto" choices are imported, so every child inherits them; each child still builds its
  own app for its own service, as `hilt store serve` does.
- Every child shares the server's memory until it writes to it. The first full garbage
  collection in a child walked every object the server had imported, so it copied nearly
  all of that memory: 0.25-0.3 s of CPU in each child, even one that does nothing. Frozen,
  those objects are left out of the child's collections (they live as long as the process
  anyway).
"""

import gc
from typing import Any, cast

import typer._adapters  # (what a child's command line is parsed with)
import typer._click.decorators
import typer.main
from typer._click.core import Command
from uvicorn import config as uvicorn_config
from uvicorn.importer import import_from_string

from hilt.pipelines.cli import app
from hilt.pipelines.store.modes.service_http import create_app

_BUILT = typer.main.get_command(app)
_build = typer.main.get_command


def _prebuilt(typer_instance: typer.Typer) -> Command:
    return _BUILT if typer_instance is app else _build(typer_instance)


def service_app_warmed() -> None:
    """Build the store service's app once, without a service (building it reads none: its
    routes use the service only when they answer a request), and import what uvicorn loads
    for the "auto" settings `hilt store serve` uses."""
    create_app(cast(Any, None))
    for choice in (
        uvicorn_config.HTTP_PROTOCOLS["auto"],
        uvicorn_config.WS_PROTOCOLS["auto"],
        uvicorn_config.LIFESPAN["auto"],
    ):
        assert choice is not None
        import_from_string(choice)
    loop_factory = uvicorn_config.LOOP_FACTORIES["auto"]
    assert loop_factory is not None
    import_from_string(loop_factory)()  # imports uvloop; makes no loop
    import anyio._backends._asyncio  # noqa: F401  (Starlette's thread pool, at the first request)
    import fastapi.telemetry._runtime  # noqa: F401  (at the app's first request)


typer.main.get_command = _prebuilt
service_app_warmed()
gc.freeze()
