"""IntegrityPanel: is the audit log intact? The chain, the signed checkpoints, the records.

Shows the backend's ``IntegrityReport``: OK or the first break (seq, kind, detail), the
number of events, the head, the checkpoints and the public key they were checked against,
and how the check was made. "Verify again" repeats it; it reads, never writes.

Verifying a long log takes seconds, so ``start()`` runs it on a thread of its own and the
dashboard shows at once, saying "Verifying…" until the verdict arrives (``wait()`` blocks
until then). ``run()`` verifies on the caller's thread.
"""

from __future__ import annotations

import atexit
import threading
from typing import Any

import ipywidgets as widgets

from hilt.widgets.common.html_table import esc, facts, verdict
from hilt.widgets.common.status import StatusLine, describe_error
from hilt.widgets.contracts.audit import AuditBackend, IntegrityReport

VERIFYING = "Verifying the audit log…"
#: When a background verdict is sent again (see ``IntegrityPanel._resend_later``).
RESEND_AFTER_S = (1.0, 3.0, 10.0)
#: How long a kernel that exits waits for a verification still running (``_at_exit``).
EXIT_WAIT_S = 60.0


class IntegrityPanel(widgets.VBox):
    """``start()`` verifies through the backend in the background, ``run()`` in the
    foreground; either shows the result when it arrives."""

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
        self.verify_button.on_click(lambda _b: self.start())
        self._worker: threading.Thread | None = None
        self._exit_hooked = False
        self._compose()

    def verifying(self) -> bool:
        """Whether a verification ``start()`` began is still running."""
        return self._worker is not None and self._worker.is_alive()

    def start(self) -> None:
        """Verify on a thread of its own (one at a time); the verdict shows when it comes."""
        if self.verifying():
            return
        self._begin()
        self._worker = threading.Thread(target=self._verify, name="hilt-audit-verify", daemon=True)
        if not self._exit_hooked:
            atexit.register(self._at_exit)
            self._exit_hooked = True
        self._worker.start()

    def _at_exit(self) -> None:
        """A kernel that exits while the thread verifies waits for it (at most
        ``EXIT_WAIT_S``). Left running, the thread would be stopped inside the store's
        database library as the interpreter finalises, which aborts the process (seen in
        CI: "FATAL: exception not rethrown", exit -6)."""
        self.wait(EXIT_WAIT_S)

    def wait(self, timeout_s: float | None = None) -> None:
        """Until the verification ``start()`` began has shown its verdict."""
        if self._worker is not None:
            self._worker.join(timeout_s)

    def run(self) -> None:
        """Verify now, on this thread."""
        self._begin()
        self._verify()

    def _begin(self) -> None:
        self.verify_button.disabled = True
        self.result.value = verdict(None, VERIFYING)
        self.status.info(VERIFYING)

    def _verify(self) -> None:
        try:
            try:
                self.report = self.backend.verify()
            except Exception as exc:
                self.report = None
                self.result.value = verdict(False, "The audit log could not be verified.")
                self.status.error(f"Verification failed: {describe_error(exc)}")
                return
            self.status.info(f"Audit log verified: {self.report.summary}")
            self._compose()
        finally:
            self.verify_button.disabled = False
            if threading.current_thread() is self._worker:
                self._resend_later()

    def _resend_later(self) -> None:
        """Send the verdict's widgets again a little later. A verdict that lands while the
        page is loading the widgets' states from the kernel (Voila's ``request_states``) is
        sent as an update for models the page has not made yet, and the page drops it: it
        then showed "Verifying…" for good (seen under load in CI). Sending the same state
        again once the page has its models costs a few hundred bytes."""
        for delay_s in RESEND_AFTER_S:
            timer = threading.Timer(delay_s, self._resend)
            timer.daemon = True
            timer.start()

    def _resend(self) -> None:
        for widget in (self.result, self.verify_button, self.status, self):
            widget.send_state()

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
