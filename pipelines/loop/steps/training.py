"""Training, a step of notebooks/retrain.ipynb: the model fitted on a dataset's training
rows, locally or on a Dask cluster, and the table an executed notebook shows of it.

Training is deterministic (``model.fit``: same snapshot and parameters, same model bytes);
``label_noise`` flips a share of the training labels chosen by a seeded generator, so even a
robustness check reproduces byte for byte.

Importing this module does not import mlflow or xgboost; the steps that need them import
them when called.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from hilt.pipelines.errors import InputError
from hilt.pipelines.loop.model import TrainedModel, TrainParams, fit
from hilt.pipelines.loop.steps.engine import TrainingEngine
from hilt.pipelines.loop.steps.start import import_while_training
from hilt.pipelines.loop.steps.training_data import Dataset

#: The largest share of training labels ``train`` may flip (0.5 would be pure noise).
MAX_LABEL_NOISE = 0.5


def noisy_labels(y: pl.Series, share: float, seed: int) -> pl.Series:
    """``y`` with ``round(share * len(y))`` labels flipped (0 ↔ 1), the rows drawn without
    replacement by ``numpy.random.default_rng(seed)``: deterministic."""
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not math.isfinite(share):
        raise InputError("label_noise must be a number")
    if not 0.0 <= share <= MAX_LABEL_NOISE:
        raise InputError(f"label_noise must be between 0 and {MAX_LABEL_NOISE}")
    n_flip = round(share * y.len())
    if n_flip == 0:
        return y
    arr = y.cast(pl.Float64).to_numpy().copy()
    rows = np.random.default_rng(seed).choice(arr.size, size=n_flip, replace=False)
    arr[rows] = 1.0 - arr[rows]
    return pl.Series(y.name, arr, dtype=pl.Float64)


def train(
    dataset: Dataset,
    params: TrainParams,
    label_noise: float = 0.0,
    seed: int | None = None,
    engine: TrainingEngine | None = None,
) -> TrainedModel:
    """Fit the model on the training rows (deterministic: same snapshot and parameters, same
    model bytes), locally or on the ``engine``'s Dask cluster (``steps.engine``).

    ``label_noise`` is a robustness check only: that share of the training labels is flipped
    (rows drawn with ``seed``, default ``params.seed``) before fitting, to show that the gate
    rejects a model trained on corrupted labels. Keep it 0 for a model meant for promotion.
    A local check: refused on Dask.

    What the run imports after the training (its figures) is imported meanwhile
    (``start.import_while_training``).
    """
    import_while_training()
    if engine is not None and not engine.local:
        if label_noise:
            raise InputError("label_noise is a robustness check of local training only")
        if dataset.train_on_client:
            raise InputError(
                "a Dask training reads its rows on the workers: load the dataset "
                "with train_on_client=False"
            )
        return engine.fit(dataset.snapshot.path, dataset.X_train, dataset.y_train, params)
    if not dataset.train_on_client:
        raise InputError("the dataset's training rows were left for a cluster's workers")
    y = noisy_labels(dataset.y_train, label_noise, params.seed if seed is None else seed)
    return fit(dataset.X_train, y, params)


def model_table(model: TrainedModel) -> pl.DataFrame:
    """The trained model in one table: its sha256, rows and positives it was trained on."""
    facts = [
        ("model sha256", model.model_sha256()),
        ("training rows", str(model.train_rows)),
        ("positive training rows", str(model.train_positives)),
        ("features", ", ".join(model.features)),
    ]
    return pl.DataFrame(facts, schema=["item", "value"], orient="row")
