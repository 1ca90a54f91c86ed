"""What MLflow's registry should say, given the store's, and where it says otherwise.

The store's model registry (``Store.models()``) decides which version is the challenger,
the champion, rejected, superseded or retired; MLflow only mirrors it, for people who look
at runs there: on the registered model ``hilt-<use_case>`` the alias ``champion`` points at
the store's champion and ``challenger`` at its challenger (each absent when the store has
none of that name), and every version the store registered carries its state as the tag
``hilt.gate`` (``GATE_TAG``), its model's sha256 as ``hilt.model_sha256`` and its run.

``facts`` states each fact as both registries do; those that do not agree are the
disagreements that ``hilt docs model``, the lineage's MLflow check and ``hilt audit verify``
print (the latter as DISAGREE lines). Pure: no mlflow import (``registry`` reads and
writes MLflow).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from hilt.pipelines.loop.tracking.tags import TAG_GATE, TAG_MODEL_SHA256
from hilt.pipelines.store.registry_records import ModelRecord

#: Registry aliases.
CHALLENGER: Final = "challenger"
CHAMPION: Final = "champion"
#: The store's states that an alias names.
ALIASED_STATES: Final = {CHAMPION: "champion", CHALLENGER: "challenger"}
#: The ``hilt.gate`` tag of a registered version, per state in the store's registry.
GATE_TAG: Final = {
    "challenger": "pending",
    "champion": "promoted",
    "rejected": "rejected",
    "superseded": "superseded",
    "retired": "retired",
}


def split_model(model: str) -> tuple[str, str]:
    """ "<registered name>/v<version>" → (registered name, version)."""
    name, _, version = model.rpartition("/v")
    return name, version


def version_of(model: str, registered: str) -> str | None:
    """The version number of ``model`` if it is a version of ``registered``, else None."""
    name, version = split_model(model)
    return version if name == registered and version.isdigit() else None


def short_name(model: str, registered: str) -> str:
    """``model`` as people read it here: "3" for a version of ``registered``, else whole."""
    return version_of(model, registered) or model


@dataclass(frozen=True)
class MlflowVersion:
    """One registered version as MLflow holds it."""

    version: str
    run_id: str | None
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MirrorFact:
    """One fact as the store's registry and as MLflow state it (None: not stated there)."""

    #: What it is about: "alias champion", "<model> hilt.gate", "<model> run", "<model>".
    item: str
    store: str | None
    mlflow: str | None
    #: The version of the registered model it is about (None: an alias).
    version: str | None = None

    @property
    def agrees(self) -> bool:
        return self.store == self.mlflow

    def line(self) -> str:
        """One line, as `hilt audit verify` and `hilt docs model` print a disagreement."""
        return (
            f"DISAGREE {self.item}: store registry {self.store or 'none'}; "
            f"MLflow {self.mlflow or 'none'}"
        )


def expected_aliases(registered: str, models: Sequence[ModelRecord]) -> dict[str, str]:
    """{alias: version} as MLflow should hold them for ``registered``."""
    out = {}
    for alias, state in ALIASED_STATES.items():
        for m in models:
            version = version_of(m.model, registered)
            if m.state == state and version is not None:
                out[alias] = version
    return out


def expected_tags(record: ModelRecord) -> dict[str, str]:
    """The version tags MLflow should carry for a version of the store's registry."""
    return {TAG_GATE: GATE_TAG[record.state], TAG_MODEL_SHA256: record.model_sha256}


def facts(
    registered: str,
    models: Sequence[ModelRecord],
    versions: Mapping[str, MlflowVersion],
    aliases: Mapping[str, str],
) -> list[MirrorFact]:
    """Every fact MLflow should mirror, as both state it: the aliases of ``registered``
    (the store's champion of another name means no champion alias), then per version the
    store registered, its run and tags (``expected_tags``), then the versions MLflow holds
    that the store's registry does not (the store: None)."""
    want = expected_aliases(registered, models)
    out = [
        MirrorFact(f"alias {alias}", want.get(alias), aliases.get(alias))
        for alias in ALIASED_STATES
    ]
    mine = {}
    for m in models:
        version = version_of(m.model, registered)
        if version is not None:
            mine[version] = m
    for version, m in sorted(mine.items(), key=lambda kv: int(kv[0])):
        found = versions.get(version)
        if found is None:
            out.append(MirrorFact(m.model, "registered", None, version))
            continue
        out.append(MirrorFact(f"{m.model} run", m.run_id, found.run_id, version))
        out += [
            MirrorFact(f"{m.model} {key}", value, found.tags.get(key), version)
            for key, value in expected_tags(m).items()
        ]
    for version in sorted(set(versions) - set(mine), key=int):
        out.append(MirrorFact(f"{registered}/v{version}", None, "registered", version))
    return out
