"""Imported last by the fork server of tests/prewarmed.py, after everything it preloads:
the `hilt` command tree built once, then ``gc.freeze()``. Nothing else imports this module.

- Typer builds the click command tree of ``hilt.pipelines.cli.app`` (51 commands, their
  parameters read from type hints) on every call of ``app()``: 0.19 s of CPU in each `hilt`
  child, a service's start included. Here it is built once, and ``typer.main.get_command``
  hands every child that same tree for that app (a fresh copy of it, since each child is a
  fork); the tree is what the child would have built, from the same app.
- Every child shares the server's memory until it writes to it. The first full garbage
  collection in a child walked every object the server had imported, so it copied nearly
  all of that memory: 0.25-0.3 s of CPU in each child, even one that does nothing. Frozen,
  those objects are left out of the child's collections (they live as long as the process
  anyway).
"""

import gc

import typer.main
from typer._click.core import Command

from hilt.pipelines.cli import app

_BUILT = typer.main.get_command(app)
_build = typer.main.get_command


def _prebuilt(typer_instance: typer.Typer) -> Command:
    return _BUILT if typer_instance is app else _build(typer_instance)


typer.main.get_command = _prebuilt
gc.freeze()
