"""hilt.widgets.contracts: what the widgets and ``hilt.pipelines`` agree on, and nothing else.

Pure Python (no ipywidgets, anywidget or traitlets, nothing from ``hilt.pipelines``), so the
store service and the command line can import it without loading a UI:

- ``common``: who is looking, the refusal shown instead of a dashboard, a case and the
  review settings (used by more than one dashboard);
- ``review``, ``oversight``, ``audit``: each dashboard's backend protocol and the records
  that cross it;
- ``explanation``: the explanation fragment, a pure function of stored data (the store
  re-renders it to check what a reviewer saw).

The only part of ``hilt.widgets`` that ``hilt.pipelines`` may import. This file imports
none of its modules, so ``import hilt.widgets.contracts.explanation`` loads that one only.
"""
