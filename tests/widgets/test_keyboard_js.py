"""The keyboard widget's browser module, run in Node with a stand-in document and model.

No browser needed: Node provides EventTarget and Event, which is all the module uses of
the DOM. The Node is the one Playwright for Python ships (its driver runs on it), so the
test runs wherever the test dependencies are installed and never skips.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import playwright

from hilt.widgets.review.keyboard import _ESM, KeyboardShortcuts

#: The Node that Playwright for Python ships with its driver.
NODE = Path(playwright.__file__).resolve().parent / "driver" / "node"

HARNESS = r"""
const { default: widget } = await import(process.argv[2]);
const doc = new EventTarget();
globalThis.document = doc;

const state = JSON.parse(process.argv[3]);
const sent = [];
const model = {
  get: (k) => state[k],
  on: () => {},
  off: () => {},
  send: (msg) => sent.push(msg),
};
const el = () => ({ classList: { add: () => {} }, textContent: "", style: {} });

function press(key, opts = {}) {
  const ev = new Event("keydown");
  for (const [k, v] of Object.entries({ key, repeat: false, ctrlKey: false, altKey: false,
                                        metaKey: false, ...opts })) {
    if (k !== "target") Object.defineProperty(ev, k, { value: v });
  }
  if (opts.target) ev.composedPath = () => [opts.target];
  doc.dispatchEvent(ev);
}

const results = {};
const view1 = el();
const cleanup1 = await widget.render({ model, el: view1 });
results.legend = view1.textContent;
press("a");
press("A");
press("a", { target: { nodeType: 1, tagName: "TEXTAREA" } });
press("1", { target: { nodeType: 1, tagName: "INPUT" } });
press("s", { target: { nodeType: 1, tagName: "SELECT" } });
press("u", { target: { nodeType: 1, tagName: "DIV", isContentEditable: true } });
press("o", { target: { nodeType: 1, tagName: "BUTTON", isContentEditable: false } });
press("a", { repeat: true });
press("a", { ctrlKey: true });
press("a", { metaKey: true });
press("x");
press("9");
results.single = sent.splice(0);

const cleanup2 = await widget.render({ model, el: el() });
press("s");
results.twice = sent.splice(0);

cleanup1();
press("f");
results.after_one_cleanup = sent.splice(0);

cleanup2();
press("f");
results.after_all_cleanups = sent.splice(0);

const cleanup3 = await widget.render({ model, el: el() });
state.enabled = false;
press("a");
results.disabled = sent.splice(0);
cleanup3();

console.log(JSON.stringify(results));
"""


def test_browser_module_listens_once_reports_text_fields_and_cleans_up(tmp_path: Path) -> None:
    kb = KeyboardShortcuts(["good risk", "bad risk"])
    module = tmp_path / "keyboard.mjs"
    module.write_text(_ESM, encoding="utf-8")
    harness = tmp_path / "harness.mjs"
    harness.write_text(HARNESS, encoding="utf-8")
    state = {
        "enabled": True,
        "shortcut_keys": kb.shortcut_keys,
        "legend": kb.legend,
        "listener_id": kb.listener_id,
    }
    assert NODE.is_file(), f"Playwright for Python ships no node at {NODE}"
    done = subprocess.run(
        [str(NODE), str(harness), module.as_uri(), json.dumps(state)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)

    assert results["legend"] == kb.legend
    assert results["single"] == [
        {"key": "a", "in_text_field": False},
        {"key": "a", "in_text_field": False},
        {"key": "a", "in_text_field": True},
        {"key": "1", "in_text_field": True},
        {"key": "s", "in_text_field": True},
        {"key": "u", "in_text_field": True},
        {"key": "o", "in_text_field": False},
    ]
    assert results["twice"] == [{"key": "s", "in_text_field": False}]  # shown twice, sent once
    assert results["after_one_cleanup"] == [{"key": "f", "in_text_field": False}]
    assert results["after_all_cleanups"] == []
    assert results["disabled"] == []
