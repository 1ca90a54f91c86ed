"""Transitional: ``Store`` is the operations table (``hilt.pipelines.store.operations``);
import it from ``hilt.pipelines.store``. Removed once every importer uses that."""

from hilt.pipelines.store.operations import Store

__all__ = ["Store"]
