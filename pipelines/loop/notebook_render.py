"""Executed notebooks as self-contained HTML pages: nothing is fetched when one is opened.

Used by ``tracking.notebooks.log_notebook`` (the HTML logged with a run) and by the audit dashboard
(an auditor reads a run's notebook in place). Importing this module imports neither
nbconvert nor mlflow; ``notebook_html`` imports nbconvert when called.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any, Final

from hilt.pipelines.deferred_imports import defer_iri_grammar
from hilt.pipelines.errors import HiltError


class RemoteContentError(HiltError):
    """The rendered page would load something from another host."""

    status_code = 500
    kind = "remote-content"


_OFFLINE_TEMPLATE: Final = """{%- extends 'index.html.j2' -%}
{% block html_head_js %}{% endblock html_head_js %}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block html_head_js_mathjax %}{% endblock html_head_js_mathjax %}
{% block html_head_js_mermaidjs %}{% endblock html_head_js_mermaidjs %}
"""
_STYLE_BLOCK = re.compile(r"(<style[^>]*>)(.*?)(</style>)", re.DOTALL | re.IGNORECASE)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
#: Anything that makes a browser fetch from elsewhere when the page is opened.
_REMOTE = re.compile(
    r"<(?:script|link|img|iframe|source|video|audio|embed|object)\b[^>]*?"
    r"\b(?:src|href|data)\s*=\s*[\"']?\s*(?:https?:)?//"
    r"|@import\s+(?:url\()?\s*[\"']?\s*(?:https?:)?//"
    r"|url\(\s*[\"']?\s*(?:https?:)?//"
    r"|import\(\s*[\"']\s*(?:https?:)?//",
    re.IGNORECASE,
)


def remote_resources(html: str) -> list[str]:
    """Snippets of ``html`` that would load something from another host when opened
    (scripts, stylesheets, images, CSS url()/@import, dynamic imports). Plain links
    (``<a href>``) are not fetches and are not listed."""
    return [m.group(0) for m in _REMOTE.finditer(html)]


#: A small notebook with what a run's notebook holds (code, markdown, text, an HTML table,
#: a PNG), rendered by ``warm_up`` so that everything its rendering needs is loaded.
_PNG_1X1: Final = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5E"
    "rkJggg=="
)


def _sample() -> Any:
    import nbformat

    v4 = nbformat.v4
    code = v4.new_code_cell("x = 1\nprint(x)", execution_count=1)
    code.outputs = [
        v4.new_output("stream", name="stdout", text="1\n"),
        v4.new_output(
            "execute_result",
            data={"text/html": "<table><tr><td>1</td></tr></table>", "text/plain": "1"},
            execution_count=1,
        ),
        v4.new_output("display_data", data={"image/png": _PNG_1X1, "text/plain": "<Figure>"}),
    ]
    return v4.new_notebook(cells=[v4.new_markdown_cell("# Run\n\n*text*"), code])


def warm_up() -> None:
    """Import nbconvert, compile its templates and load what rendering a run's notebook
    needs (highlighting, markdown, HTML sanitising) by rendering a small one, so that the
    first ``notebook_html`` of this process costs only the rendering: the runner does this
    on a thread while a run's kernel works (its own process), ~1-3 s off every run."""
    defer_iri_grammar()
    _render(_sample())


#: The exporter, made (and its templates compiled) once per process; one rendering at a
#: time (an exporter keeps state while it renders).
_exporter: list[Any] = []
_exporter_lock = threading.Lock()


def _render(nb: Any) -> str:
    with _exporter_lock:
        if not _exporter:
            from jinja2 import DictLoader
            from nbconvert import HTMLExporter

            _exporter.append(
                HTMLExporter(
                    template_name="lab",
                    template_file="hilt_offline.html.j2",
                    extra_loaders=[DictLoader({"hilt_offline.html.j2": _OFFLINE_TEMPLATE})],
                    embed_images=True,
                    require_js_url="",
                    mathjax_url="",
                    mermaid_js_url="",
                    mermaid_layout_elk_js_url="",
                    jquery_url="",
                    jupyter_widgets_base_url="",
                    widget_renderer_url="",
                )
            )
        body, _ = _exporter[0].from_notebook_node(nb)
    return str(body)


def notebook_html(ipynb_path: str | Path) -> str:
    """The executed notebook as one self-contained HTML page: nbconvert's "lab" template with
    images embedded, and without require.js, MathJax, mermaid and the widget manager, which it
    would load from cdnjs / unpkg (math then shows as its TeX source). CSS comments, which
    carry the theme's credits as URLs, are dropped. RemoteContentError if anything remote is
    left."""
    defer_iri_grammar()
    import nbformat

    body = _render(nbformat.read(str(ipynb_path), as_version=4))
    html = _STYLE_BLOCK.sub(
        lambda m: m.group(1) + _CSS_COMMENT.sub("", m.group(2)) + m.group(3), body
    )
    remote = remote_resources(html)
    if remote:
        raise RemoteContentError(
            f"{Path(ipynb_path).name}: the rendered HTML would load {len(remote)} remote "
            f"resource(s), e.g. {remote[0][:80]!r}"
        )
    return html
