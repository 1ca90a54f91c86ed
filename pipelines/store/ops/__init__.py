"""The store's operations, one responsibility a module; each function takes the ``Unit``
the façade opened for it (``store.unit``) and is listed once in ``store.operations``.

- ``users``: who the store knows, tokens, authentication;
- ``cases``: ingest cases and predictions, read a case, the case frame, the feature profile;
- ``personal_reads``: personal columns opened with their subjects' keys, rectified;
- ``review``: decisions (record, read, contest);
- ``queue``: lease the next case, queue counts;
- ``decide_next``: a decision and the next lease in one transaction (the review click);
- ``system``: the halt;
- ``oversight``: gold cases, the oversight report, adjudication;
- ``snapshot``: the training view, exported to Parquet;
- ``events``: run and model events, reading and searching the log, checkpoints, verify;
- ``subject_rights`` and ``retention``: GDPR Arts. 15-22 and the retention periods.
"""
