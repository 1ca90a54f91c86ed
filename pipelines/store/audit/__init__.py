"""Records that prove themselves: the hash chain (``chain``), signed checkpoints kept outside
the database (``checkpoints``), the digests of ingested batches and gold sets
(``batch_digest``, ``gold_digest``), the tables hilt created (``schema_check``), records
against their events (``reconcile``), and ``verify``, which runs them all (on the store's
own file, or on a copy fetched from a service: ``remote_verify``)."""
