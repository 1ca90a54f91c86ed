"""The MLflow model registry of the use case, a mirror of the store's: one registered model
``hilt-<use_case>`` whose versions carry aliases only (``challenger``, ``champion``), never
the deprecated stages.

The store decides (``Store.register_model``, ``promote_model``, ``reject_model``); this
module gives a run's model its MLflow version number (``register_version``, no alias), then,
once the store decided, makes MLflow say what the store's registry says (``mirror``: the
aliases and the version tags of ``mirror.expected_aliases`` / ``expected_tags``), and reads
MLflow back to compare it with the store (``mlflow_registry``, ``registry_disagreements``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
from hilt.pipelines.loop.tracking.mirror import (
    ALIASED_STATES,
    MirrorFact,
    MlflowVersion,
    expected_aliases,
    expected_tags,
    facts,
    version_of,
)
from hilt.pipelines.loop.tracking.pyfunc import MODEL_NAME
from hilt.pipelines.loop.tracking.tags import TAG_MODEL_SHA256
from hilt.pipelines.store.registry_records import ModelRecord


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


def version_run_id(settings: Settings, version: str | int) -> str | None:
    """The run a registered version was made from (None if the version names no run)."""
    state = configured()
    name = registered_model_name(settings)
    with mlflow_errors(f"cannot read version {version} of {name!r}"):
        mv = state.client.get_model_version(name, str(version))
    return str(mv.run_id) if mv.run_id else None


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


def mlflow_registry(settings: Settings) -> tuple[dict[str, MlflowVersion], dict[str, str]]:
    """Every version of the use case's registered model (run, tags) and its aliases."""
    client = configured().client
    name = registered_model_name(settings)
    versions, alias_map = versions_and_aliases(client, f"name = '{name}'")
    found = {
        str(v.version): MlflowVersion(
            str(v.version), str(v.run_id) if v.run_id else None, dict(v.tags or {})
        )
        for v in versions
        if v.name == name
    }
    held = {alias: v for (n, v), names in alias_map.items() if n == name for alias in names}
    return found, held


def registry_facts(settings: Settings, models: Sequence[ModelRecord]) -> list[MirrorFact]:
    """Every fact MLflow mirrors of the store's ``models``, as both state it
    (``mirror.facts``)."""
    versions, held = mlflow_registry(settings)
    return facts(registered_model_name(settings), models, versions, held)


def registry_disagreements(settings: Settings, models: Sequence[ModelRecord]) -> list[MirrorFact]:
    """Where MLflow's registry disagrees with the store's ``models``."""
    return [f for f in registry_facts(settings, models) if not f.agrees]


# ---------------------------------------------------------------------------- changing
def _logged_model_id(client: MlflowClient, run_id: str) -> str:
    run = client.get_run(run_id)
    outputs = run.outputs.model_outputs if run.outputs is not None else []
    ids = [o.model_id for o in sorted(outputs, key=lambda o: o.step)]
    named = [i for i in ids if client.get_logged_model(i).name == MODEL_NAME]
    if not named:
        raise TrackingError(f"run {run_id} has no logged model {MODEL_NAME!r}")
    return str(named[-1])


def register_version(settings: Settings, run_id: str) -> str:
    """Give the run's model a version of ``hilt-<use_case>`` (creating the registered model
    if needed), tagged with the model's sha256 and no alias: the store's registry decides
    what it becomes (``mirror`` then says so). Registering the same run again reuses its
    version. A FAILED or KILLED run is refused. Returns the version."""
    client = configured().client
    name = registered_model_name(settings)
    with mlflow_errors(f"cannot register run {run_id} as {name!r}"):
        run = client.get_run(run_id)
        if run.info.status in ("FAILED", "KILLED"):
            raise TrackingError(f"run {run_id} is {run.info.status}; its model is not registered")
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
            return str(max(int(v.version) for v in existing))
        model_id = _logged_model_id(client, run_id)
        mv = client.create_model_version(
            name,
            source=f"models:/{model_id}",
            run_id=run_id,
            tags={TAG_MODEL_SHA256: sha},
            model_id=model_id,
        )
    return str(mv.version)


def delete_version(settings: Settings, version: str | int) -> None:
    """Remove a version the store refused to register (so MLflow holds no version the
    store's registry does not)."""
    client = configured().client
    name = registered_model_name(settings)
    with mlflow_errors(f"cannot delete version {version} of {name!r}"):
        client.delete_model_version(name, str(version))


def mirror(settings: Settings, models: Sequence[ModelRecord]) -> None:
    """Make MLflow's aliases and version tags of ``hilt-<use_case>`` say what the store's
    registry ``models`` says (``Store.models()``, read after the store decided). Idempotent;
    a version the store holds but MLflow does not is left to ``registry_disagreements``."""
    client = configured().client
    name = registered_model_name(settings)
    want = expected_aliases(name, models)
    with mlflow_errors(f"cannot mirror the store's registry onto {name!r}"):
        versions, held = mlflow_registry(settings)
        for m in models:
            version = version_of(m.model, name)
            if version is None or version not in versions:
                continue
            for key, value in expected_tags(m).items():
                if versions[version].tags.get(key) != value:
                    client.set_model_version_tag(name, version, key, value)
        for alias in ALIASED_STATES:
            if alias in want and want[alias] in versions and held.get(alias) != want[alias]:
                client.set_registered_model_alias(name, alias, want[alias])
            elif alias not in want and alias in held:
                client.delete_registered_model_alias(name, alias)
