"""The store's two modes, both derived from the operations table (``store.operations``):
``embedded`` (short-lived connections under a cross-process lock, ``locking``) and the
``service`` (one process owns the file and serves every operation over HTTP), with its
``client``; ``wire`` says how arguments and results cross HTTP."""
