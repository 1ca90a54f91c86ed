"""The base of the records that cross the store's boundary (``*_records.py``): pydantic
models, so that the HTTP service and its client share one definition and the OpenAPI
document describes them; no field that is not declared; built when first used."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
