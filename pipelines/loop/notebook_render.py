"""Executed notebooks as self-contained HTML pages: nothing is fetched when one is opened.

Used by ``tracking.notebooks.log_notebook`` (the HTML logged with a run) and by the audit dashboard
(an auditor reads a run's notebook in place). Importing this module imports neither
nbconvert nor mlflow; ``notebook_html`` imports nbconvert when called.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

from hilt.pipelines.errors import HiltError
from hilt.pipelines.loop.notebook_imports import load_nbformat


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


def warm_up() -> None:
    """Import nbconvert and load its templates (render an empty notebook), so that the
    first ``notebook_html`` of this process costs only the rendering: the runner does this
    on a thread while a run's kernel works (its own process), ~1-3 s off every run."""
    load_nbformat()
    import nbformat

    _render(nbformat.v4.new_notebook())


def _render(nb: Any) -> str:
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
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
    body, _ = exporter.from_notebook_node(nb)
    return str(body)


def notebook_html(ipynb_path: str | Path) -> str:
    """The executed notebook as one self-contained HTML page: nbconvert's "lab" template with
    images embedded, and without require.js, MathJax, mermaid and the widget manager, which it
    would load from cdnjs / unpkg (math then shows as its TeX source). CSS comments, which
    carry the theme's credits as URLs, are dropped. RemoteContentError if anything remote is
    left."""
    load_nbformat()
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
