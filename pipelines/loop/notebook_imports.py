"""The first import of nbformat (papermill, nbclient and nbconvert import it) without
compiling grammars it never uses.

nbformat imports jsonschema, whose format checker imports ``rfc3987_syntax`` when it is
installed (jupyter's ``jsonschema[format-nongpl]`` installs it) for its "iri" and
"iri-reference" formats; ``rfc3987_syntax`` compiles 38 Lark grammars at import: 1.2 s of
one core on the quiet 2-core machine, 2.6 s under load, in every process that runs or
renders a notebook, which is most of papermill's import. No notebook schema uses those
formats. ``load_nbformat`` imports nbformat with a stand-in for ``rfc3987_syntax`` whose
``is_valid_syntax`` imports the real module the first time a format check needs it, so
jsonschema still checks IRIs exactly as before (``test_notebook_imports.py``), and only a
process that checks one pays for the grammars.

Importing this module imports none of them.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Final

#: The module whose import compiles the grammars, and the one function jsonschema takes.
IRI_SYNTAX: Final = "rfc3987_syntax"


def is_valid_syntax(syntax: str, value: str) -> bool:
    """``rfc3987_syntax.is_valid_syntax``, imported on first use (the stand-in's function)."""
    return bool(importlib.import_module(IRI_SYNTAX).is_valid_syntax(syntax, value))


def load_nbformat() -> None:
    """Import ``nbformat`` (the first time) with jsonschema's IRI checks deferred; call before
    importing nbformat, papermill, nbclient or nbconvert.

    While jsonschema is first imported, ``sys.modules["rfc3987_syntax"]`` is a stand-in
    holding ``is_valid_syntax`` above; the entry is removed right after, so the next ``import
    rfc3987_syntax`` (the stand-in's first call) imports the real module. Nothing is done when
    jsonschema was imported already, or when rfc3987_syntax is not installed (jsonschema
    then has no IRI checks either way)."""
    if "jsonschema" in sys.modules or IRI_SYNTAX in sys.modules:
        return
    if importlib.util.find_spec(IRI_SYNTAX) is None:
        return
    stand_in = types.ModuleType(IRI_SYNTAX, "hilt: imports rfc3987_syntax on first use")
    stand_in.is_valid_syntax = is_valid_syntax  # type: ignore[attr-defined]
    sys.modules[IRI_SYNTAX] = stand_in
    try:
        import nbformat  # noqa: F401
    finally:
        if sys.modules.get(IRI_SYNTAX) is stand_in:
            del sys.modules[IRI_SYNTAX]
