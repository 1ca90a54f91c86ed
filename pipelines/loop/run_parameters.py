"""A run's parameters: the papermill template of each run kind, the parameters its
parameters cell declares (names, and types as papermill infers them from
``name: type = value  # help``), the check and typing of what ``-p NAME VALUE`` gives
(``validate_parameters``: bad → InputError naming the parameter, nothing touched), and the
parameters as the audit log keeps them (an input file by name and sha256, not its path).

Importing this module does not import papermill (``notebook_parameters`` does, when called).
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

from hilt.pipelines.deferred_imports import defer_iri_grammar
from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.digests import file_sha256
from hilt.pipelines.loop.model import TrainParams
from hilt.pipelines.paths import NOTEBOOKS_DIR

Kind = Literal["retrain", "score", "monitor"]
KINDS: tuple[str, ...] = ("retrain", "score", "monitor")
#: Parameters the runner sets itself; ``-p`` may not set them.
RUNNER_PARAMETERS = frozenset({"workspace", "run_id", "author", "reproduces"})

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def template_path(kind: str) -> Path:
    if kind not in KINDS:
        raise InputError(f"unknown run kind {kind!r}; kinds are {', '.join(KINDS)}")
    path = NOTEBOOKS_DIR / f"{kind}.ipynb"
    if not path.is_file():
        raise InputError(f"{path}: the {kind} template is missing")
    return path


def notebook_parameters(kind: str) -> dict[str, dict[str, str]]:
    """name → {inferred_type_name, default, help} of the template's parameters cell."""
    defer_iri_grammar()
    import papermill

    specs: dict[str, dict[str, str]] = papermill.inspect_notebook(str(template_path(kind)))
    return specs


def _convert(name: str, type_name: str, value: Any) -> Any:
    """``value`` (text or typed) as the parameter's declared type; InputError otherwise."""
    if type_name == "str":
        if not isinstance(value, str):
            raise InputError(f"parameter {name} must be text")
        return value
    if type_name == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise InputError(f"parameter {name} must be true or false")
    if type_name == "int":
        if isinstance(value, bool):
            raise InputError(f"parameter {name} must be an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise InputError(f"parameter {name} must be an integer")
    if type_name == "float":
        if isinstance(value, bool):
            raise InputError(f"parameter {name} must be a number")
        number: float | None = None
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                number = None
        if number is None or not math.isfinite(number):
            raise InputError(f"parameter {name} must be a finite number")
        return number
    raise InputError(f"parameter {name} has no declared type in the template")


def validate_parameters(kind: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The given parameters, checked and typed (nothing is touched): unknown names, names the
    runner sets, values that do not fit the declared type, and (retrain) training parameters
    that ``TrainParams`` refuses are InputErrors naming the parameter."""
    specs = notebook_parameters(kind)
    reserved = sorted(set(given) & RUNNER_PARAMETERS)
    if reserved:
        raise InputError(f"parameters {reserved} are set by the runner, not with -p")
    unknown = sorted(set(given) - set(specs))
    if unknown:
        known = sorted(set(specs) - RUNNER_PARAMETERS)
        raise InputError(f"unknown parameters {unknown}; the {kind} template takes {known}")
    typed = {
        name: _convert(name, specs[name]["inferred_type_name"], value)
        for name, value in given.items()
    }
    merged: dict[str, Any] = {}
    for name, spec in specs.items():
        try:
            merged[name] = ast.literal_eval(spec["default"])
        except (ValueError, SyntaxError):
            merged[name] = None
    merged.update(typed)
    if kind == "retrain":
        train_names = {f.name for f in fields(TrainParams)}
        TrainParams.from_mapping({k: v for k, v in merged.items() if k in train_names})
        noise = merged.get("label_noise", 0.0)
        if not 0.0 <= float(noise) <= 0.5:
            raise InputError("parameter label_noise must be between 0 and 0.5")
        if int(merged.get("as_of_seq", 0)) < 0:
            raise InputError("parameter as_of_seq must be >= 0 (0: now)")
        sha = merged.get("snapshot_sha256", "")
        if sha and not _SHA256.match(str(sha)):
            raise InputError("parameter snapshot_sha256 must be 64 lowercase hex digits")
    elif kind == "monitor":
        if int(merged.get("window_days", 0)) < 0:
            raise InputError("parameter window_days must be >= 0 (0: the config's window)")
    else:
        path = str(merged.get("input_path") or "")
        if not path:
            raise InputError("a scoring run needs an input file (.csv or .parquet)")
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: no such file")
        if p.suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise InputError(f"{p}: expected a .csv or .parquet file")
        version = str(merged.get("model_version") or "")
        if version and not version.isdigit():
            raise InputError("parameter model_version must be a registered version number")
    return typed


def audit_parameters(kind: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as the audit log keeps them: an input file by name and sha256, not path."""
    out = dict(parameters)
    if kind == "score" and out.get("input_path"):
        p = Path(str(out.pop("input_path")))
        out["input_file"] = p.name
        out["input_sha256"] = file_sha256(p)
    return out
