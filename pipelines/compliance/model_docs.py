"""Technical documentation of a model version: `hilt docs model VERSION`.

An Annex IV-style document and model card (EU AI Act Art. 11), written as Markdown and as one
offline HTML page (images embedded, nothing fetched) into ``<workspace>/docs/``, with its
figures next to them:

- ``model_records.gather``: the facts, read from the store's model registry, the version's
  MLflow run (and where MLflow's registry disagrees with the store's) and the audit log;
- ``model_card.build``: the text, as blocks, every number as recorded;
- ``document.to_markdown`` / ``to_html``: the two renderings of the same blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hilt.pipelines.compliance.document import to_html, to_markdown
from hilt.pipelines.compliance.model_card import build
from hilt.pipelines.compliance.model_records import gather, reader_store
from hilt.pipelines.errors import InputError
from hilt.pipelines.store import Store
from hilt.pipelines.workspace import Workspace

#: The workspace folder the documents are written to.
DOCS_DIR = "docs"


@dataclass(frozen=True)
class WrittenDocs:
    markdown: Path
    html: Path
    images: tuple[Path, ...]
    version: str
    #: Where MLflow's aliases and tags disagree with the store's registry (one line each).
    disagreements: tuple[str, ...] = ()


def write_model_docs(
    ws: Workspace, version: str, *, now: datetime | None = None, store: Store | None = None
) -> WrittenDocs:
    """Write docs/model-<version>.md, .html and the figures into the workspace."""
    from hilt.pipelines.loop.notebook_render import remote_resources

    ws.require()
    own = store is None
    reader = store or reader_store(ws)
    try:
        records = gather(ws, version, reader)
    finally:
        if own:
            reader.close()
    blocks = build(records, now or datetime.now(UTC))
    title = f"{records.registered} version {records.version}"
    markdown, page_html = to_markdown(blocks), to_html(blocks, title)
    if remote_resources(page_html):
        raise InputError("the HTML would load remote resources; nothing was written")
    out_dir = ws.root / DOCS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    images = []
    for blk in blocks:
        if blk.kind == "image":
            path = out_dir / blk.image
            path.write_bytes(blk.png)
            images.append(path)
    md = out_dir / f"model-{records.version}.md"
    page = out_dir / f"model-{records.version}.html"
    md.write_text(markdown, encoding="utf-8")
    page.write_text(page_html, encoding="utf-8")
    return WrittenDocs(
        markdown=md,
        html=page,
        images=tuple(images),
        version=records.version,
        disagreements=tuple(f.line() for f in records.mirror if not f.agrees),
    )
