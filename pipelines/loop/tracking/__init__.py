"""MLflow: the workspace's experiment, training runs, their artifacts and the model registry.

No hilt module outside this package imports mlflow (``import mlflow`` costs ~1-2 s), and
importing a module of this package changes nothing in the process (no environment variable,
no MLflow state): ``client.configure(ws)`` does, once, before MLflow is used. Import the
module of the concern you need:

- ``tags``: every MLflow tag, param and artifact name hilt uses, defined once (no mlflow);
- ``environment``: the tracking URI (``[tracking] uri``, then the environment, then the
  workspace's own file) and whether its server answers, experiment and registered-model
  names, and MLflow kept quiet (no telemetry, no progress bars, no run URLs printed), for
  this process and its kernels (no mlflow);
- ``client``: ``configure``, the configured client, ``TrackingError``;
- ``provenance``: author, git commit and package versions, the tags every run carries;
- ``runs``: create, start, finish or fail a run; tag it, log values; ``RunRecord``s;
- ``pyfunc``: the logged model (pyfunc, signature, requirements, synthetic input example)
  and loading a registered version;
- ``training_log``: what a training run logs, checked and prepared without mlflow (the
  synthetic input example, the dataset's schema and counts, the files);
- ``training``: what a training run logs (``log_training``: params, metrics, dataset, model),
  written to MLflow (``write_training_log``);
- ``relay``: the runner does a retraining kernel's MLflow work (the kernel never imports
  mlflow): a Unix socket with a key, JSON, a fixed table of operations (no mlflow);
- ``notebooks``: the executed notebook and its offline HTML, logged to a run;
- ``mirror``: what MLflow's registry should say given the store's, and where it does not
  (pure, no mlflow);
- ``registry``: a run's model version, the store's registry mirrored onto MLflow's aliases
  and version tags, and read back to compare;
- ``artifacts``: a run's artifacts read back (a file, a text, the subgroup table);
- ``erasure``: runs whose snapshot an erasure or retention regenerated, tagged.

"""

from __future__ import annotations
