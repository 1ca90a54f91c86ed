"""IntegrityPanel: is the audit log intact? The chain, the signed checkpoints, the records.

Shows the backend's ``IntegrityReport``: OK or the first break (seq, kind, detail), the
number of events, the head, the checkpoints and the public key they were checked against,
and how the check was made. "Verify again" repeats it; it reads, never writes.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from hilt.widgets.common.html_table import esc, facts, verdict
from hilt.widgets.common.status import StatusLine, describe_error
from hilt.widgets.contracts.audit import AuditBackend, IntegrityReport


class IntegrityPanel(widgets.VBox):
    """``run()`` verifies through the backend and shows the result."""

    def __init__(self, backend: AuditBackend, status: StatusLine, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-integrity")
        self.backend = backend
        self.status = status
        self.report: IntegrityReport | None = None
        self.result = widgets.HTML()
        self.verify_button = widgets.Button(
            description="Verify again", tooltip="Check the hash chain and the checkpoints again"
        )
        self.verify_button.on_click(lambda _b: self.run())
        self._compose()

    def run(self) -> None:
        try:
            self.report = self.backend.verify()
        except Exception as exc:
            self.report = None
            self.result.value = verdict(False, "The audit log could not be verified.")
            self.status.error(f"Verification failed: {describe_error(exc)}")
            self._compose()
            return
        self.status.info(f"Audit log verified: {self.report.summary}")
        self._compose()

    def _compose(self) -> None:
        report = self.report
        if report is not None:
            scope = (
                f"from the signed checkpoint at seq {report.from_checkpoint}"
                if report.from_checkpoint is not None
                else "the whole log"
            )
            pairs = [
                ("verified", scope),
                ("events", str(report.events)),
                ("head", f"seq {report.head_seq}, hash {report.head_hash}"),
                ("signed checkpoints", str(report.checkpoints)),
                ("public key", report.public_key or "none pinned"),
            ]
            method = "".join(f"<li>{esc(line)}</li>" for line in report.method)
            self.result.value = (
                verdict(report.ok, report.summary)
                + facts(pairs)
                + (f'<ul style="font-size:0.85em;margin:4px 0">{method}</ul>' if method else "")
            )
        elif not self.result.value:
            self.result.value = verdict(None, "Not verified yet.")
        self.children = (self.result, self.verify_button)
