"""Imports that a process defers until they are used.

``defer_iri_grammar``: jsonschema's format checkers import ``rfc3987_syntax`` where it is
installed (jupyter-events asks for ``jsonschema[format-nongpl]``), and that module builds a
Lark Earley parser of RFC 3987 when it is imported: about 1.5 s of CPU on the 2-core machine,
in every process that imports jsonschema (every Jupyter server, nbformat's validation in a
papermill run), for the ``iri`` and ``iri-reference`` formats, which only a schema that
names them ever checks (python-jsonschema/jsonschema#1428). After ``defer_iri_grammar()``,
``rfc3987_syntax`` is a stand-in until something uses it: the first call or attribute asked
of it imports the real module, which then checks exactly as before.

``defer_httpx_cli``: ``import httpx`` imports its command-line client (``httpx._main``:
click, rich's console, progress, syntax and tables, pygments' lexers) wherever those are
installed (typer and IPython bring them): 0.05 s of CPU in every hilt process that talks
HTTP (each dashboard kernel, ``hilt`` command and store client), for a ``main`` that only
the ``httpx`` command calls. ``hilt.pipelines`` puts a stand-in for it in ``sys.modules``
before anything imports httpx; calling its ``main`` imports the real one.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

#: The module whose import builds the grammar.
IRI_SYNTAX = "rfc3987_syntax"


def defer_iri_grammar() -> bool:
    """Put a stand-in for ``rfc3987_syntax`` in ``sys.modules`` (True), unless it is not
    installed or already imported (False): its first use imports the real module."""
    if IRI_SYNTAX in sys.modules or importlib.util.find_spec(IRI_SYNTAX) is None:
        return False
    stand_in = types.ModuleType(IRI_SYNTAX, "stand-in: the real module on first use")

    def real() -> types.ModuleType:
        module = sys.modules.get(IRI_SYNTAX)
        if module is None or module is stand_in:
            sys.modules.pop(IRI_SYNTAX, None)
            module = importlib.import_module(IRI_SYNTAX)
        return module

    def is_valid_syntax(term: str, value: str) -> Any:
        return real().is_valid_syntax(term, value)

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            # The import system's own questions (``__path__``, ``__file__``, ...), asked by
            # every ``from rfc3987_syntax import ...``: not a use of the module.
            raise AttributeError(name)
        return getattr(real(), name)

    stand_in.is_valid_syntax = is_valid_syntax  # type: ignore[attr-defined]
    stand_in.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[IRI_SYNTAX] = stand_in
    return True


#: httpx's command-line client.
HTTPX_CLI = "httpx._main"


def defer_httpx_cli() -> bool:
    """Put a stand-in for ``httpx._main`` in ``sys.modules`` (True), unless httpx is not
    installed or already imported (False): calling its ``main`` imports the real one."""
    if "httpx" in sys.modules or HTTPX_CLI in sys.modules:
        return False
    if importlib.util.find_spec("httpx") is None:
        return False
    stand_in = types.ModuleType(HTTPX_CLI, "stand-in: the real module on first use")

    def main(*args: Any, **kwargs: Any) -> Any:
        if sys.modules.get(HTTPX_CLI) is stand_in:
            del sys.modules[HTTPX_CLI]
        return importlib.import_module(HTTPX_CLI).main(*args, **kwargs)

    stand_in.main = main  # type: ignore[attr-defined]
    sys.modules[HTTPX_CLI] = stand_in
    return True


class DeferredFunction:
    """A function of a module not imported yet: its name now, the function itself (the
    module imported) from ``resolved``."""

    def __init__(self, module: str, name: str) -> None:
        self.__module__ = module
        self.__name__ = name
        self.__qualname__ = name

    def resolve(self) -> Any:
        return getattr(importlib.import_module(self.__module__), self.__name__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<deferred {self.__module__}.{self.__name__}>"


class DeferredFunctions:
    """Stands for a module in a table of its functions (``store/operations.py``): each
    attribute is a ``DeferredFunction``; nothing is imported until one is resolved."""

    def __init__(self, module: str) -> None:
        self._module = module

    def __getattr__(self, name: str) -> DeferredFunction:
        if name.startswith("__"):
            raise AttributeError(name)
        return DeferredFunction(self._module, name)


def deferred_functions(module: str) -> DeferredFunctions:
    """The functions of ``module``, each imported when first resolved."""
    return DeferredFunctions(module)


def resolved(fn: Any) -> Any:
    """``fn`` itself, or the function a ``DeferredFunction`` stands for (imported now)."""
    return fn.resolve() if isinstance(fn, DeferredFunction) else fn


class DeferredModule(types.ModuleType):
    """Stands for a module in the globals of a module that uses it only inside functions
    (``pl = deferred_module("polars")``): the first attribute asked of it imports the real
    module, whose names it then carries itself (later lookups cost nothing more)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        module = importlib.import_module(self.__name__)
        self.__dict__.update((k, v) for k, v in vars(module).items() if not k.startswith("__"))
        return getattr(module, name)


def deferred_module(name: str) -> types.ModuleType:
    """``name`` itself if it is imported already, else a stand-in that imports it on first
    use (see ``DeferredModule``)."""
    return sys.modules.get(name) or DeferredModule(name, f"stand-in for {name}")
