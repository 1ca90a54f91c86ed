"""ReviewSession: one reviewer working through the queue; it only coordinates.

It wires a backend (``ReviewBackend``: leased cases in, decisions out) to the components:
header (reviewer and roles), progress, ``CaseCard``, ``BlindJudgement``, ``PredictionView``,
``DecisionBar``, a ``StatusLine`` and ``KeyboardShortcuts``. Every backend error ends up in
the status line as text; nothing is raised into the void of a Voila kernel.

Per case: ``next_item()`` leases it; the injected clock starts when the case is shown;
a decision becomes a ``DecisionInput`` with the item's prediction_id, ``model_shown`` as
it was on screen, the sha256 and context of the explanation on screen (none while the
model's output is hidden, and none for undo, which compensates rather than decides),
``time_on_item_ms`` since the case was shown, and a fresh uuid4
``request_id`` (re-used only when the very same decision is retried after an error, so a
retry whose first attempt did reach the store is recorded once). Then the next case: it
comes with the decision (``submit_and_next``, one round trip to the store, both or
neither), but after a blind judgement, which reveals the model's output instead.

Blind-first (``config.blind_first``): the prediction is absent from the tree while the
reviewer records their own judgement (action "blind", final_label = their class,
model_shown False); then it is revealed and Accept / Override confirm as usual
(model_shown True). A case that comes back with ``blind_label`` set starts revealed.

A case whose model output this panel has already shown is never asked for blind again
(after undoing its judgement or its final decision): a new judgement could not be blind.

Undo: compensates the last decision of this session (action "undo", undo_of = its
decision_id); the backend re-leases that case, and the session shows it again (the lease
that comes with the undo: one's own first). One level: an undo cannot itself be undone.

A double click on Accept (or Skip, or a doubled shortcut) would otherwise land on the
next case before the reviewer has seen it: such one-click decisions are refused for
``min_dwell_ms`` after a case appears.
"""

from __future__ import annotations

import html
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import ipywidgets as widgets
import traitlets

from hilt.widgets.common.callbacks import Listeners
from hilt.widgets.common.colours import AMBER, MUTED
from hilt.widgets.common.header import header_html
from hilt.widgets.common.status import StatusLine, describe_error
from hilt.widgets.contracts.common import ReviewConfig, Reviewer, ReviewItem
from hilt.widgets.contracts.review import DecisionInput, DecisionReceipt, QueueStatus, ReviewBackend
from hilt.widgets.review.blind_judgement import BlindJudgement
from hilt.widgets.review.case_card import CaseCard
from hilt.widgets.review.decision_bar import DecisionBar, DecisionIntent
from hilt.widgets.review.keyboard import MAX_CLASS_KEYS, KeyboardShortcuts, Shortcut
from hilt.widgets.review.prediction_view import PredictionView

T = TypeVar("T")

#: Default guard against double clicks landing on the next case (see module docstring).
DEFAULT_MIN_DWELL_MS = 300

#: Time on item is capped at a day: the store refuses longer values, and a case left
#: open overnight must still be decidable.
MAX_TIME_ON_ITEM_MS = 86_400_000

EMPTY_QUEUE_TEXT = "Queue is empty: there are no cases waiting for your review."

_PAST = {
    "accept": "Accepted",
    "override": "Overridden",
    "flag": "Flagged for a second opinion",
    "skip": "Skipped",
    "blind": "Judgement recorded",
}


@dataclass(frozen=True)
class _Decided:
    """The last decision of this session, kept so that Undo can compensate it."""

    receipt: DecisionReceipt
    prediction_id: int | None
    at: float


class ReviewSession(widgets.VBox):
    """A reviewer's panel over a ``ReviewBackend``; display it, then click or type."""

    #: "loading", "blind" (awaiting the reviewer's judgement), "review", "empty", "error".
    phase = traitlets.Unicode("loading")

    def __init__(
        self,
        backend: ReviewBackend,
        clock: Callable[[], float] = time.monotonic,
        *,
        min_dwell_ms: int = DEFAULT_MIN_DWELL_MS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.add_class("hilt-review-session")
        self.backend = backend
        self.clock = clock
        self.min_dwell_ms = min_dwell_ms
        self.status = StatusLine()
        self.header = widgets.HTML()
        self.progress = widgets.HTML()
        self.case_badges = widgets.HTML()
        self.empty_message = widgets.HTML()
        self.reload_button = widgets.Button(
            description="Check for new cases", tooltip="Ask the queue for the next case"
        )
        self.reload_button.on_click(lambda _b: self.load_next())
        #: The receipt listeners, told once the panel shows what comes next.
        self._notify = Listeners[DecisionReceipt](self.status, "Saved, but a listener failed")
        self._item: ReviewItem | None = None
        self._shown_at = clock()
        self._last: _Decided | None = None
        self._blind_label: str | None = None
        self._failed = False
        #: Cases whose model output this panel has shown, with the blind judgement if any:
        #: once seen, a case is never "blind" again (a new judgement could not be blind).
        self._seen: dict[str, str | None] = {}
        #: (decision fingerprint, request_id) of a submission that failed, for its retry.
        self._pending: tuple[tuple[Any, ...], str] | None = None

        self.reviewer: Reviewer | None = self._call(backend.reviewer, "Could not identify you")
        self._render_header()
        config = self._call(backend.review_config, "Could not load the review configuration")
        self.config: ReviewConfig | None = config
        if config is None:
            self.phase = "error"
            self.children = (self.header, self.status)
            return

        self.case_card = CaseCard(config)
        self.prediction_view = PredictionView(config)
        self.blind_judgement = BlindJudgement(config, status=self.status)
        self.decision_bar = DecisionBar(config, status=self.status)
        self.keyboard = KeyboardShortcuts([config.class_label(c) for c in config.classes])
        self.decision_bar.on_decision(self._on_intent)
        self.blind_judgement.on_judgement(self._on_blind_judgement)
        self.keyboard.on_shortcut(self._on_shortcut)
        self.load_next()

    # ------------------------------------------------------------------ public API
    @property
    def item(self) -> ReviewItem | None:
        """The case on screen (leased to this reviewer), or None."""
        return self._item

    def on_receipt(self, fn: Callable[[DecisionReceipt], None]) -> None:
        """Register ``fn(receipt)``, called after each decision the backend recorded, once
        the panel shows what comes next (the next case, or the revealed prediction)."""
        self._notify.add(fn)

    def handle_key(self, key: str, in_text_field: bool = False) -> None:
        """A key press, exactly as the browser reports it (tests call this directly)."""
        if self.config is not None:
            self.keyboard.handle_key(key, in_text_field)

    def load_next(self) -> None:
        """Lease and show the next case (the backend hands back one's own lease first)."""
        if self.config is None:
            return
        try:
            item = self.backend.next_item()
        except Exception as exc:
            self._failed = True
            self._show(None)
            self.phase = "error"
            self.status.error(f"Could not load the next case: {describe_error(exc)}")
            self._compose()
            return
        self._failed = False
        self._show(item)

    # ------------------------------------------------------------------ showing a case
    def _show(self, item: ReviewItem | None) -> None:
        assert self.config is not None
        bar = self.decision_bar
        view = self.prediction_view
        self._item = item
        self._blind_label = item.blind_label if item is not None else None
        if item is not None and self._blind_label is None:
            self._blind_label = self._seen.get(item.case_id)
        bar.reset()
        if item is None:
            view.hide()
            view.show(None)
            self.case_card.show(None)
            self.blind_judgement.off()
            bar.set_model_label(None)
            self.phase = "empty"
        elif (
            self.config.blind_first and item.blind_label is None and item.case_id not in self._seen
        ):
            view.hide()  # before show(): the model's output never enters the tree
            view.show(item)
            self.case_card.show(item)
            self.blind_judgement.ask()
            bar.set_model_label(None)
            self.phase = "blind"
        else:
            view.show(item)
            view.reveal()
            self.case_card.show(item)
            self.blind_judgement.show_recorded(self._blind_label)
            bar.set_model_label(item.predicted_label)
            self.phase = "review"
            self._seen[item.case_id] = self._blind_label
        with bar.hold_trait_notifications():
            bar.has_case = item is not None
            bar.awaiting_judgement = self.phase == "blind"
            bar.can_accept = item is not None and item.predicted_label is not None
            bar.can_undo = self._last is not None
        self._render_badges()
        self._refresh_progress()
        self._shown_at = self.clock()
        self._compose()

    def _reveal(self) -> None:
        assert self._item is not None
        self.prediction_view.reveal()
        self.blind_judgement.show_recorded(self._blind_label)
        self.decision_bar.set_model_label(self._item.predicted_label)
        self.decision_bar.awaiting_judgement = False
        self.phase = "review"
        self._seen[self._item.case_id] = self._blind_label
        self._compose()

    # ------------------------------------------------------------------ decisions
    def _on_intent(self, intent: DecisionIntent) -> None:
        if intent.action == "undo":
            self._undo()
            return
        item = self._item
        if item is None or self.phase not in ("blind", "review"):
            self.status.error("No case is open: nothing to decide.")
            return
        if intent.action in ("accept", "override") and self.phase == "blind":
            self.status.error("Record your own judgement first; then the model's output is shown.")
            return
        if intent.action in ("accept", "skip") and self._too_soon():
            self.status.error(
                "Ignored: this case appeared a moment ago. Look at it first, then decide."
            )
            return
        shown = self.prediction_view.shown_explanation()
        decision = DecisionInput(
            case_id=item.case_id,
            action=intent.action,
            # The store takes the model's label for accept; only override names a class.
            final_label=intent.final_label if intent.action == "override" else None,
            reason_code=intent.reason_code if intent.action == "override" else None,
            comment=intent.comment if intent.action in ("override", "flag") else None,
            time_on_item_ms=self._elapsed_ms(self._shown_at),
            model_shown=self.prediction_view.model_visible,
            prediction_id=item.prediction_id,
            # What the reviewer saw, so an auditor can show it again byte for byte.
            explanation_sha256=shown.sha256 if shown else None,
            explanation_context=shown.context if shown else None,
        )
        advanced = self._submit(decision, self.backend.submit_and_next)
        if advanced is None:
            return
        receipt = advanced.receipt
        self._last = _Decided(receipt, item.prediction_id, self.clock())
        self.status.success(self._saved_text(receipt))
        self._show(advanced.item)
        self._notify(receipt)

    def _on_blind_judgement(self, cls: str) -> None:
        item = self._item
        if item is None or self.phase != "blind":
            return
        decision = DecisionInput(
            case_id=item.case_id,
            action="blind",
            final_label=cls,
            time_on_item_ms=self._elapsed_ms(self._shown_at),
            model_shown=False,
            prediction_id=item.prediction_id,
        )
        receipt = self._submit(decision, self.backend.submit)
        if receipt is None:
            return
        self._last = _Decided(receipt, item.prediction_id, self.clock())
        self._blind_label = cls
        self.decision_bar.can_undo = True
        self._reveal()
        self.status.success(
            "Your judgement is saved. The model's output is now shown: confirm with Accept "
            "or Override."
        )
        self._notify(receipt)

    def _undo(self) -> None:
        last = self._last
        if last is None:
            self.status.info("Nothing to undo.")
            return
        decision = DecisionInput(
            case_id=last.receipt.case_id,
            action="undo",
            undo_of=last.receipt.decision_id,
            time_on_item_ms=self._elapsed_ms(last.at),
            model_shown=self.prediction_view.model_visible,
            prediction_id=last.prediction_id,
        )
        advanced = self._submit(decision, self.backend.submit_and_next)
        if advanced is None:
            return
        self._last = None
        what = _PAST.get(last.receipt.action, last.receipt.action).lower()
        self.status.success(f"Undone ({what}); the case is shown again. Decide it anew.")
        self._show(advanced.item)
        self._notify(advanced.receipt)

    def _submit(self, decision: DecisionInput, send: Callable[[DecisionInput], T]) -> T | None:
        """Send one decision (``send``: the backend's ``submit``, or ``submit_and_next``
        where the next case follows); on failure say why in the status line and return
        None."""
        fingerprint = (
            decision.case_id,
            decision.action,
            decision.final_label,
            decision.reason_code,
            decision.comment,
            decision.undo_of,
        )
        if self._pending is not None and self._pending[0] == fingerprint:
            request_id = self._pending[1]
        else:
            request_id = str(uuid.uuid4())
        decision = replace(decision, request_id=request_id)
        try:
            sent = send(decision)
        except Exception as exc:
            self._pending = (fingerprint, request_id)
            self._failed = True
            self.status.error(
                f"Not saved: {describe_error(exc)}. The case is still open; try again, or reload."
            )
            self._compose()
            return None
        self._pending = None
        self._failed = False
        return sent

    # ------------------------------------------------------------------ keyboard
    def _on_shortcut(self, shortcut: Shortcut) -> None:
        assert self.config is not None
        if shortcut.action == "class":
            index = shortcut.class_index
            if index is None or not 0 <= index < len(self.config.classes):
                return
            cls = self.config.classes[index]
            if self.phase == "blind":
                self.blind_judgement.choose(cls)
            elif not self.decision_bar.select_target(cls):
                self.status.info("Digits choose a class in the override panel: press o first.")
            return
        if self.phase == "blind" and shortcut.action in ("accept", "override"):
            n = len(self.config.classes)
            self.status.info(
                f"Record your own judgement first (keys 1 to {min(n, MAX_CLASS_KEYS)})."
            )
            return
        self.decision_bar.press(shortcut.action)

    # ------------------------------------------------------------------ helpers
    def _call(self, fn: Callable[[], Any], what: str) -> Any:
        try:
            return fn()
        except Exception as exc:
            self.status.error(f"{what}: {describe_error(exc)}")
            return None

    def _elapsed_ms(self, since: float) -> int:
        return min(MAX_TIME_ON_ITEM_MS, max(0, round((self.clock() - since) * 1000)))

    def _too_soon(self) -> bool:
        return self._elapsed_ms(self._shown_at) < self.min_dwell_ms

    def _saved_text(self, receipt: DecisionReceipt) -> str:
        text = _PAST.get(receipt.action, receipt.action)
        if receipt.action in ("accept", "override") and receipt.final_label is not None:
            assert self.config is not None
            text += f": {self.config.class_label(receipt.final_label)}"
        return f"{text}. Saved."

    def _render_header(self) -> None:
        reviewer = self.reviewer
        if reviewer is None:
            self.header.value = "<b>Review queue</b>"
            return
        self.header.value = header_html(
            "Review queue", reviewer.name, reviewer.roles, unproven=reviewer.unproven
        )

    def _refresh_progress(self) -> None:
        try:
            status: QueueStatus = self.backend.queue_status()
        except Exception:
            self.progress.value = (
                f'<span style="color:{MUTED}">Progress is unavailable right now.</span>'
            )
            return
        self.progress.value = (
            f"Done today: <b>{status.done_today_by_me}</b> by you "
            f"({status.done_today} in all) · Left in queue: <b>{status.waiting}</b> waiting"
            f", {status.leased} being reviewed"
        )

    def _render_badges(self) -> None:
        item = self._item
        badges = []
        if item is not None and item.contested:
            badges.append(
                "Contested: the person concerned asked for a human review (GDPR Art. 22)."
            )
        if item is not None and item.second_opinion:
            badges.append("Second opinion: another reviewer flagged this case.")
        self.case_badges.value = "".join(
            f'<div style="color:{AMBER};font-weight:600">{html.escape(b)}</div>' for b in badges
        )

    def _compose(self) -> None:
        if self.config is None:
            self.children = (self.header, self.status)
            return
        top = [self.header, self.progress]
        if self.phase in ("empty", "error") or self._item is None:
            if self.phase == "empty":
                self.empty_message.value = (
                    f'<div style="font-size:1.2em;padding:1em 0">{html.escape(EMPTY_QUEUE_TEXT)}'
                    "</div>"
                )
                self.reload_button.description = "Check for new cases"
            else:
                self.empty_message.value = ""
                self.reload_button.description = "Try again"
            body = [w for w in (self.empty_message,) if w.value] + [
                self.reload_button,
                self.decision_bar,
            ]
        else:
            self.reload_button.description = "Load the next case"
            body = [
                w
                for w in (
                    self.case_badges,
                    self.case_card,
                    self.blind_judgement,
                    self.prediction_view,
                    self.decision_bar,
                )
                if not isinstance(w, widgets.HTML) or w.value
            ]
            if self._failed:
                body.append(self.reload_button)
        self.children = (*top, *body, self.status, self.keyboard)
