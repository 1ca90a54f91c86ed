"""The MLflow model registry of the use case: one registered model ``hilt-<use_case>``
whose versions carry aliases only (``challenger``, ``champion``), never the deprecated
stages, and the gate's verdict as the version tag ``hilt.gate`` (``pending``, ``promoted``,
``rejected``).

This only moves aliases and tags: the gate and the human approval are the caller's
(``hilt.pipelines.loop.promotion``), and the store's audit log is the record.
"""

from __future__ import annotations

from typing import Any, Final

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from hilt.pipelines.config import Settings
from hilt.pipelines.loop.tracking.client import (
    TrackingError,
    configured,
    is_not_found,
    mlflow_errors,
)
from hilt.pipelines.loop.tracking.environment import registered_model_name
from hilt.pipelines.loop.tracking.pyfunc import MODEL_NAME
from hilt.pipelines.loop.tracking.tags import TAG_GATE, TAG_MODEL_SHA256

#: Registry aliases.
CHALLENGER: Final = "challenger"
CHAMPION: Final = "champion"


# ---------------------------------------------------------------------------- reading
def aliases(settings: Settings) -> dict[str, str]:
    """{alias: version} of the use case's registered model ({} before the first version)."""
    state = configured()
    name = registered_model_name(settings)
    try:
        rm = state.client.get_registered_model(name)
    except MlflowException as e:
        if is_not_found(e):
            return {}
        raise TrackingError(f"MLflow: cannot read {name!r}: {e.message}") from e
    return {str(k): str(v) for k, v in rm.aliases.items()}


def champion_version(settings: Settings) -> str | None:
    """The version the ``champion`` alias points to, or None."""
    return aliases(settings).get(CHAMPION)


def challenger_version(settings: Settings) -> str | None:
    """The version the ``challenger`` alias points to, or None."""
    return aliases(settings).get(CHALLENGER)


def version_run_id(settings: Settings, version: str | int) -> str | None:
    """The run a registered version was made from (None if the version names no run)."""
    state = configured()
    name = registered_model_name(settings)
    with mlflow_errors(f"cannot read version {version} of {name!r}"):
        mv = state.client.get_model_version(name, str(version))
    return str(mv.run_id) if mv.run_id else None


def version_gate(settings: Settings, version: str | int) -> str | None:
    """The ``hilt.gate`` tag of a registered version."""
    state = configured()
    name = registered_model_name(settings)
    with mlflow_errors(f"cannot read version {version} of {name!r}"):
        mv = state.client.get_model_version(name, str(version))
    tag = mv.tags.get(TAG_GATE)
    return str(tag) if tag is not None else None


def versions_and_aliases(
    client: MlflowClient, filter_string: str
) -> tuple[list[Any], dict[tuple[str, str], list[str]]]:
    """Model versions matching ``filter_string`` and {(name, version): aliases} of their
    registered models (search results do not carry aliases in every store)."""
    with mlflow_errors("cannot search model versions"):
        versions = list(client.search_model_versions(filter_string))
        alias_map: dict[tuple[str, str], list[str]] = {}
        for name in sorted({str(v.name) for v in versions}):
            for alias, version in client.get_registered_model(name).aliases.items():
                alias_map.setdefault((name, str(version)), []).append(str(alias))
    return versions, alias_map


# ---------------------------------------------------------------------------- changing
def _logged_model_id(client: MlflowClient, run_id: str) -> str:
    run = client.get_run(run_id)
    outputs = run.outputs.model_outputs if run.outputs is not None else []
    ids = [o.model_id for o in sorted(outputs, key=lambda o: o.step)]
    named = [i for i in ids if client.get_logged_model(i).name == MODEL_NAME]
    if not named:
        raise TrackingError(f"run {run_id} has no logged model {MODEL_NAME!r}")
    return str(named[-1])


def register_challenger(settings: Settings, run_id: str) -> str:
    """Register the run's model as a new version of ``hilt-<use_case>`` (creating the
    registered model if needed) and point the ``challenger`` alias at it. Registering the same
    run again reuses its version. A FAILED or KILLED run is refused. Returns the version."""
    client = configured().client
    name = registered_model_name(settings)
    with mlflow_errors(f"cannot register run {run_id} as {name!r}"):
        run = client.get_run(run_id)
        if run.info.status in ("FAILED", "KILLED"):
            raise TrackingError(f"run {run_id} is {run.info.status}; it cannot be a challenger")
        sha = run.data.tags.get(TAG_MODEL_SHA256)
        if not sha:
            raise TrackingError(f"run {run_id} has no logged model (no {TAG_MODEL_SHA256} tag)")
        try:
            client.create_registered_model(
                name, description=f"hilt model of the use case {settings.use_case.name!r}"
            )
        except MlflowException as e:
            if e.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        existing = [v for v in client.search_model_versions(f"run_id = '{run_id}'")]
        existing = [v for v in existing if v.name == name]
        if existing:
            version = str(max(int(v.version) for v in existing))
        else:
            model_id = _logged_model_id(client, run_id)
            mv = client.create_model_version(
                name,
                source=f"models:/{model_id}",
                run_id=run_id,
                tags={TAG_MODEL_SHA256: sha, TAG_GATE: "pending"},
                model_id=model_id,
            )
            version = str(mv.version)
        client.set_registered_model_alias(name, CHALLENGER, version)
    return version


def promote_to_champion(settings: Settings, version: str | int) -> str | None:
    """Point ``champion`` at ``version`` (tagged ``hilt.gate=promoted``); drop ``challenger``
    if it pointed there. Returns the previous champion version (None if there was none). The
    gate and the approval are the caller's: this only moves the aliases."""
    client = configured().client
    name = registered_model_name(settings)
    v = str(version)
    with mlflow_errors(f"cannot promote version {v} of {name!r}"):
        client.get_model_version(name, v)  # exists?
        before = aliases(settings)
        client.set_registered_model_alias(name, CHAMPION, v)
        client.set_model_version_tag(name, v, TAG_GATE, "promoted")
        if before.get(CHALLENGER) == v:
            client.delete_registered_model_alias(name, CHALLENGER)
    return before.get(CHAMPION)


def reject_challenger(settings: Settings, version: str | int) -> None:
    """Tag ``version`` ``hilt.gate=rejected`` and drop the ``challenger`` alias if it points
    there; the champion alias is not touched. Rejecting the champion is a TrackingError."""
    client = configured().client
    name = registered_model_name(settings)
    v = str(version)
    with mlflow_errors(f"cannot reject version {v} of {name!r}"):
        client.get_model_version(name, v)
        current = aliases(settings)
        if current.get(CHAMPION) == v:
            raise TrackingError(f"version {v} of {name!r} is the champion; it cannot be rejected")
        client.set_model_version_tag(name, v, TAG_GATE, "rejected")
        if current.get(CHALLENGER) == v:
            client.delete_registered_model_alias(name, CHALLENGER)


def set_challenger(settings: Settings, version: str | int) -> None:
    """Point ``challenger`` back at an existing ``version`` (e.g. the pending challenger that
    a later, rejected run displaced); the champion alias is not touched."""
    client = configured().client
    name = registered_model_name(settings)
    v = str(version)
    with mlflow_errors(f"cannot make version {v} of {name!r} the challenger"):
        client.get_model_version(name, v)
        if aliases(settings).get(CHAMPION) == v:
            raise TrackingError(f"version {v} of {name!r} is the champion")
        client.set_registered_model_alias(name, CHALLENGER, v)


def set_version_gate(settings: Settings, version: str | int, value: str) -> None:
    """Set the ``hilt.gate`` tag of a registered version (e.g. to undo a rejection whose
    audit event could not be written)."""
    client = configured().client
    name = registered_model_name(settings)
    with mlflow_errors(f"cannot tag version {version} of {name!r}"):
        client.set_model_version_tag(name, str(version), TAG_GATE, value)
