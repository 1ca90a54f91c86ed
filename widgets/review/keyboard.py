"""KeyboardShortcuts: a / o / f / s / u and digits, ignored while the reviewer types.

Why anywidget: the front end must listen to ``keydown`` on the whole document, which no
stock ipywidget does. ipyevents could, but it is not a dependency here, and anything
loaded from a CDN is ruled out (dashboards run offline and must not leak page views).
anywidget ships its front end with the Python package (JupyterLab and Voila load it from
the local labextension), and this widget's ES module and CSS are inline strings below,
so nothing is fetched from the network.

The browser sends ``{key, in_text_field}``; ``in_text_field`` is true when the event comes
from an input, textarea, select or contenteditable element. The Python side ignores those
events (a comment containing the letter "a" must never accept a case), maps the letters to
actions and digits 1..n to classes, and hands a ``Shortcut`` to its ``on_shortcut``
callbacks. What a digit means (blind judgement or override target) is the coordinator's
business. ``handle_key`` is a plain method so tests drive it without a browser.

The listener is added when the widget is rendered and removed when its view goes away;
a widget shown twice on one page listens once (no double decisions). Key repeats and
keys pressed with Ctrl, Alt or Meta are ignored in the browser.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anywidget
import traitlets

from hilt.widgets.common.callbacks import Listeners
from hilt.widgets.common.colours import MUTED

ShortcutAction = Literal["accept", "override", "flag", "skip", "undo", "class"]

#: Letter → decision-bar action.
ACTION_KEYS: dict[str, ShortcutAction] = {
    "a": "accept",
    "o": "override",
    "f": "flag",
    "s": "skip",
    "u": "undo",
}
#: Digits address at most nine classes.
MAX_CLASS_KEYS = 9


@dataclass(frozen=True)
class Shortcut:
    """What a key asks for: an action, or ("class", index into the config's classes)."""

    action: ShortcutAction
    class_index: int | None = None


_ESM = r"""
const REGISTRY_KEY = "__hiltKeyboardListeners";

function registry() {
  if (!globalThis[REGISTRY_KEY]) globalThis[REGISTRY_KEY] = new Map();
  return globalThis[REGISTRY_KEY];
}

function inTextField(target) {
  if (!target || target.nodeType !== 1) return false;
  const tag = (target.tagName || "").toLowerCase();
  if (tag === "input" || tag === "textarea" || tag === "select") return true;
  if (target.isContentEditable) return true;
  const editable = "[contenteditable]:not([contenteditable='false'])";
  return Boolean(target.closest && target.closest(editable));
}

function renderLegend(model, el) {
  el.textContent = model.get("legend");
  el.style.display = model.get("legend") ? "" : "none";
}

export default {
  render({ model, el }) {
    el.classList.add("hilt-keyboard");
    renderLegend(model, el);
    const onLegend = () => renderLegend(model, el);
    model.on("change:legend", onLegend);

    const id = model.get("listener_id");
    const listeners = registry();
    let entry = listeners.get(id);
    if (!entry) {
      const onKeyDown = (event) => {
        if (!model.get("enabled")) return;
        if (event.repeat || event.ctrlKey || event.altKey || event.metaKey) return;
        const key = typeof event.key === "string" ? event.key.toLowerCase() : "";
        if (!model.get("shortcut_keys").includes(key)) return;
        const path = typeof event.composedPath === "function" ? event.composedPath() : [];
        const target = path.length > 0 ? path[0] : event.target;
        model.send({ key: key, in_text_field: inTextField(target) });
      };
      entry = { count: 0, onKeyDown: onKeyDown };
      listeners.set(id, entry);
      document.addEventListener("keydown", onKeyDown);
    }
    entry.count += 1;

    return () => {
      model.off("change:legend", onLegend);
      entry.count -= 1;
      if (entry.count <= 0) {
        document.removeEventListener("keydown", entry.onKeyDown);
        listeners.delete(id);
      }
    };
  },
};
"""

_CSS = f"""
.hilt-keyboard {{
  font-size: 0.8em;
  color: {MUTED};
  padding: 2px 0;
}}
"""


class KeyboardShortcuts(anywidget.AnyWidget):
    """Document-wide shortcuts; register a handler with ``on_shortcut(fn)``."""

    _esm = _ESM
    _css = _CSS

    #: Listen at all (the browser checks it before sending).
    enabled = traitlets.Bool(True).tag(sync=True)
    #: The keys the browser forwards; everything else never leaves the page.
    shortcut_keys = traitlets.List(traitlets.Unicode()).tag(sync=True)
    #: A one-line reminder of the shortcuts, shown where the widget is displayed.
    legend = traitlets.Unicode("").tag(sync=True)
    #: Identifies this widget's document listener (one per widget, however often shown).
    listener_id = traitlets.Unicode("").tag(sync=True)

    def __init__(self, class_labels: Sequence[str] = (), **kwargs: Any) -> None:
        """``class_labels``: the classes' names for people, in the order digits address."""
        super().__init__(**kwargs)
        self._dispatch = Listeners[Shortcut]()
        self.n_classes = min(len(class_labels), MAX_CLASS_KEYS)
        digits = [str(i + 1) for i in range(self.n_classes)]
        self.shortcut_keys = [*ACTION_KEYS, *digits]
        self.listener_id = uuid.uuid4().hex
        legend = "Shortcuts: a Accept · o Override · f Flag · s Skip · u Undo"
        if digits:
            pairs = zip(digits, class_labels, strict=False)
            classes = ", ".join(f"{d} {label}" for d, label in pairs)
            legend += f" · digits choose a class ({classes})"
        self.legend = legend
        self.on_msg(self._on_frontend_message)

    def on_shortcut(self, fn: Callable[[Shortcut], None]) -> None:
        self._dispatch.add(fn)

    def handle_key(self, key: str, in_text_field: bool) -> Shortcut | None:
        """Map one key press to a Shortcut and dispatch it; None when ignored."""
        if in_text_field or not self.enabled:
            return None
        shortcut = self.shortcut_for(key)
        if shortcut is not None:
            self._dispatch(shortcut)
        return shortcut

    def shortcut_for(self, key: str) -> Shortcut | None:
        k = key.strip().lower()
        if k in ACTION_KEYS:
            return Shortcut(ACTION_KEYS[k])
        if len(k) == 1 and k.isdigit() and 1 <= int(k) <= self.n_classes:
            return Shortcut("class", int(k) - 1)
        return None

    def _on_frontend_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        key = content.get("key")
        in_text_field = content.get("in_text_field")
        if not isinstance(key, str) or not isinstance(in_text_field, bool):
            return
        self.handle_key(key, in_text_field)
