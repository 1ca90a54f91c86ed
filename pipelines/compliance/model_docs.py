"""Technical documentation of a model version: `hilt docs model VERSION`.

An Annex IV-style document and model card (EU AI Act Art. 11): intended purpose, the system
and its versions, data and its provenance, metrics and subgroup metrics, limitations,
human-oversight measures, change log. Written as Markdown and as one offline HTML page
(images embedded, nothing fetched) into ``<workspace>/docs/``.

Every number comes from a record and is printed as recorded: metrics and params from the
version's MLflow run (floats in their shortest exact form, so each equals the logged value),
the subgroup table as the run logged it (its CSV cells verbatim), counts, hashes and events
from the audit log. Where the two records should agree (model sha256, snapshot sha256) both
are compared and a disagreement is printed as one. No row of data and no case or subject id
enters the document; names of groups appear only in aggregate tables.
"""

from __future__ import annotations

import base64
import html
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import polars as pl

from hilt.pipelines.config import Settings
from hilt.pipelines.errors import InputError
from hilt.pipelines.store.protocol import Store
from hilt.pipelines.store.records import AuditEvent, AuditQuery
from hilt.pipelines.workspace import Workspace

SUBGROUP_ARTIFACT = "evaluation/subgroup_metrics.csv"
DOCS_DIR = "docs"

#: What each logged metric means (prefix → sentence).
METRIC_MEANING = {
    "holdout_n": "cases in the holdout",
    "holdout_positive_rate": "share of holdout cases predicted positive",
    "holdout_auc": "area under the ROC curve on the holdout",
    "holdout_accuracy": "share of holdout cases classified correctly at the threshold",
    "holdout_precision": "of the cases predicted positive, the share that are positive",
    "holdout_recall": "of the positive cases, the share predicted positive",
    "holdout_f1": "harmonic mean of precision and recall",
    "holdout_brier": "mean squared error of the score (lower is better)",
    "holdout_log_loss": "log loss of the score (lower is better)",
}


# ---------------------------------------------------------------------------- document
BlockKind = Literal["h1", "h2", "p", "list", "table", "image"]


@dataclass(frozen=True)
class Block:
    kind: BlockKind
    text: str = ""
    items: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    #: An image: its file name (next to the document) and PNG bytes.
    image: str = ""
    png: bytes = field(default=b"", repr=False)


def _md_cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.text}")
        elif b.kind == "h2":
            out.append(f"## {b.text}")
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "list":
            out.append("\n".join(f"- {item}" for item in b.items))
        elif b.kind == "table":
            lines = [
                "| " + " | ".join(_md_cell(h) for h in b.headers) + " |",
                "|" + "|".join(" --- " for _ in b.headers) + "|",
            ]
            lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in b.rows]
            out.append("\n".join(lines))
        elif b.kind == "image":
            out.append(f"![{b.text}]({b.image})")
    return "\n\n".join(out) + "\n"


_CSS = """
body { font-family: "DejaVu Sans", Arial, sans-serif; max-width: 60em; margin: 2em auto;
       padding: 0 1em; color: #1f2937; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em;
     border-bottom: 1px solid #e5e7eb; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #e5e7eb; padding: 3px 8px; text-align: left;
         vertical-align: top; word-break: break-all; }
th { background: #f3f4f6; }
img { max-width: 100%; }
"""


def to_html(blocks: Sequence[Block], title: str) -> str:
    """One self-contained page: inline CSS, images as data: URIs, no script, no link."""
    body: list[str] = []
    for b in blocks:
        if b.kind in ("h1", "h2"):
            body.append(f"<{b.kind}>{html.escape(b.text)}</{b.kind}>")
        elif b.kind == "p":
            body.append(f"<p>{html.escape(b.text)}</p>")
        elif b.kind == "list":
            body.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.headers)
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
                for row in b.rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif b.kind == "image":
            data = base64.b64encode(b.png).decode("ascii")
            body.append(f'<img alt="{html.escape(b.text)}" src="data:image/png;base64,{data}">')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


# ---------------------------------------------------------------------------- numbers
def number(value: float) -> str:
    """A logged float as printed here: its shortest exact form (``float(text) == value``;
    whole numbers without ".0"), "nan" where it is undefined."""
    if math.isnan(value):
        return "nan"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _when(ts: str) -> str:
    return ts[:19].replace("T", " ") + " UTC"


# ---------------------------------------------------------------------------- records
def parse_version(text: str, settings: Settings, registered: str) -> str:
    """ "3", "v3" or "<registered name>/v3" → "3"; InputError otherwise."""
    value = text.strip()
    if value.startswith(registered + "/"):
        value = value[len(registered) + 1 :]
    value = value.removeprefix("v")
    if not value.isdigit():
        raise InputError(
            f"a model version is a registered version number, e.g. 3 or v3 or {registered}/v3"
        )
    return str(int(value))


def reader_store(ws: Workspace) -> Store:
    """The store for reading: the service's (with $HILT_TOKEN) if one owns the workspace,
    else the file itself as the operating-system user (like the other `hilt` commands)."""
    from hilt.pipelines.store import Identity, Need, open_store_as

    return open_store_as(
        ws,
        Identity(operator=True),
        need=Need(
            frozenset({"auditor", "admin", "lead", "dpo", "data-scientist"}), "read the audit log"
        ),
    )


def _all(store: Store, **filters: Any) -> list[AuditEvent]:
    from hilt.pipelines.compliance.lineage import all_events

    return all_events(store, **filters)


@dataclass(frozen=True)
class ModelRecords:
    """Everything the document says, as read from MLflow and the audit log."""

    settings: Settings
    registered: str
    version: str
    label: str
    run: Any  # tracking.RunRecord
    aliases: dict[str, str]
    subgroups: pl.DataFrame | None
    head_seq: int
    model_events: list[AuditEvent]
    trained: AuditEvent | None
    run_events: list[AuditEvent]
    snapshot_event: AuditEvent | None
    ingests: list[AuditEvent]
    decisions_by_action: dict[str, int]
    history: list[tuple[str, dict[str, float]]]
    halts: int
    checkpoints: int


def gather(ws: Workspace, version_text: str, store: Store) -> ModelRecords:
    """Read the records of one registered version (imports mlflow)."""
    from hilt.pipelines.loop import tracking

    settings = ws.settings()
    tracking.configure(ws, settings=settings)
    registered = tracking.registered_model_name(settings)
    version = parse_version(version_text, settings, registered)
    try:
        run_id = tracking.version_run_id(settings, version)
    except tracking.TrackingError:
        raise InputError(f"{registered} has no registered version {version}") from None
    if run_id is None:
        raise InputError(f"version {version} of {registered} names no MLflow run")
    run = tracking.run_info(run_id)
    label = f"{registered}/v{version}"
    with tempfile.TemporaryDirectory(prefix="hilt-docs-") as tmp:
        csv = tracking.download_run_artifact(run_id, SUBGROUP_ARTIFACT, tmp)
        subgroups = pl.read_csv(csv, infer_schema=False) if csv is not None else None
    head = store.audit_head().seq
    all_model = [
        e
        for e in _all(store, action="model.", max_seq=head)
        if e.object_id.startswith(registered + "/v") or e.action == "model.trained"
    ]
    trained = next(
        (e for e in all_model if e.action == "model.trained" and e.object_id == run_id), None
    )
    snapshot_event = None
    ingests: list[AuditEvent] = []
    if trained is not None and trained.payload.get("snapshot"):
        created = [
            e
            for e in _all(
                store, action="snapshot.created", object_id=str(trained.payload["snapshot"])
            )
            if e.payload.get("sha256") == trained.payload.get("snapshot_sha256")
        ]
        snapshot_event = created[-1] if created else None
        as_of = int(trained.payload.get("snapshot_as_of_seq") or 0)
        ingests = _all(store, action="cases.ingest", max_seq=as_of)
    by_action: dict[str, int] = {}
    for e in _all(store, action="decision.record", model_version=label):
        a = str(e.payload.get("action"))
        by_action[a] = by_action.get(a, 0) + 1
    # Every registered version's run, for the change log's metric history.
    versions = sorted(
        {str(e.payload["version"]) for e in all_model if e.payload.get("version")}, key=int
    )
    history = []
    for v in versions:
        rid = next(
            (str(e.payload["run_id"]) for e in all_model if str(e.payload.get("version")) == v),
            None,
        )
        if rid:
            history.append((v, dict(tracking.run_info(rid).metrics)))
    return ModelRecords(
        settings=settings,
        registered=registered,
        version=version,
        label=label,
        run=run,
        aliases=tracking.aliases(settings),
        subgroups=subgroups,
        head_seq=head,
        model_events=all_model,
        trained=trained,
        run_events=_all(store, object_id=run_id, action="run."),
        snapshot_event=snapshot_event,
        ingests=ingests,
        decisions_by_action=by_action,
        history=history,
        halts=store.audit_search(AuditQuery(action="system.halted", limit=1)).total,
        checkpoints=store.audit_search(AuditQuery(action="audit.checkpoint", limit=1)).total,
    )


# ---------------------------------------------------------------------------- the text
def _agree(item: str, a: str | None, b: str | None) -> tuple[str, str, str, str]:
    verdict = "agree" if a == b and a is not None else "DISAGREE"
    return (item, a or "—", b or "—", verdict)


def build(records: ModelRecords, now: datetime) -> list[Block]:
    """The document as blocks (Markdown and HTML are made from the same blocks)."""
    from hilt.pipelines.loop import plots

    r = records
    s = r.settings
    run = r.run
    label = r.label
    mine = [e for e in r.model_events if e.object_id == label]
    promoted = next((e for e in reversed(mine) if e.action == "model.promoted"), None)
    gate_event = next(
        (e for e in reversed(mine) if e.action in ("model.challenger", "model.gate_failed")), None
    )
    aliases_here = sorted(a for a, v in r.aliases.items() if v == r.version)
    t = r.trained.payload if r.trained else {}
    b: list[Block] = [
        Block("h1", f"Technical documentation: {r.registered} version {r.version}"),
        Block(
            "p",
            f"Generated by hilt on {now.strftime('%Y-%m-%d %H:%M UTC')} from MLflow run "
            f"{run.run_id} and the audit log up to seq {r.head_seq}. Structured after EU AI "
            "Act Annex IV; a model card and part of the provider's technical documentation. "
            "Every number is printed as MLflow or the audit log recorded it.",
        ),
        Block(
            "table",
            headers=("item", "value"),
            rows=(
                ("use case", s.use_case.name),
                ("registered model", r.registered),
                ("version", r.version),
                ("aliases now", ", ".join(aliases_here) or "none"),
                ("model sha256", run.model_sha256 or "—"),
                ("training run (MLflow)", run.run_id),
                ("run status", run.status),
                ("trained by", run.author or "—"),
                (
                    "approved for use by",
                    f"{promoted.actor} (audit seq {promoted.seq}, {_when(promoted.ts)})"
                    if promoted
                    else "nobody (never promoted to champion)",
                ),
                ("gate", run.tags.get("hilt.gate", "—")),
                (
                    "git commit",
                    f"{run.git_commit or '—'} (dirty: {run.tags.get('hilt.git_dirty', '—')})",
                ),
            ),
        ),
    ]

    # 1. intended purpose
    labels = ", ".join(f"{c} = {s.target.label_of(c)}" for c in s.target.classes)
    b += [
        Block("h2", "1. Intended purpose"),
        Block("p", s.use_case.description or "(no description in hilt.toml)"),
        Block("p", s.use_case.purpose or "(no purpose stated in hilt.toml: use_case.purpose)"),
        Block(
            "list",
            items=(
                f"Output: a score, the probability of {s.target.label_of(s.target.positive)}; "
                f"classes {labels}; decision threshold {s.review.decision_threshold!r}.",
                "Every prediction is reviewed by a person in the review panel before it takes "
                "effect; the model recommends, a reviewer decides.",
                "Not intended for: decisions without that review, other populations or "
                "purposes than the one above, or data outside the ranges it was trained on.",
            ),
        ),
    ]

    # 2. the system
    versions = sorted(
        (k.removeprefix("hilt.version."), v)
        for k, v in run.tags.items()
        if k.startswith("hilt.version.")
    )
    b += [
        Block("h2", "2. The system and its versions"),
        Block(
            "p",
            "Gradient-boosted decision trees (XGBoost), trained deterministically by the "
            "retraining notebook (same parameters and snapshot, same model bytes); "
            "per-feature contributions explain each score to the reviewer.",
        ),
        Block("table", headers=("software", "version"), rows=tuple(versions)),
        Block(
            "table",
            headers=("training parameter (MLflow)", "value"),
            rows=tuple(sorted((k, str(v)) for k, v in run.params.items())),
        ),
    ]

    # 3. data
    features = s.fields.features
    protected_inputs = sorted(set(s.fields.protected) & set(features))
    sources = (
        (r.snapshot_event.payload.get("label_sources") if r.snapshot_event else None)
        or t.get("label_sources")
        or {}
    )
    snap = r.snapshot_event.payload if r.snapshot_event else {}
    b += [
        Block("h2", "3. Data and its provenance"),
        Block(
            "table",
            headers=("model input (feature)", "description"),
            rows=tuple((f, s.columns[f].description or "—") for f in features),
        ),
        Block(
            "list",
            items=(
                "Protected attributes (subgroup metrics and the gate only): "
                + (", ".join(s.fields.protected) or "none"),
                "Protected attributes used as model inputs: "
                + (", ".join(protected_inputs) or "none"),
                "Personal-data columns (stored apart, never in this document): "
                + (", ".join(s.fields.personal) or "none"),
                f"Holdout: {s.training.holdout_fraction!r} of the cases labelled at ingest, fixed "
                "at workspace creation; holdout labels never come from reviewers.",
                f"Cap on reviewer-accepted labels: at most {s.training.max_accepted_share!r} of "
                "the training rows (the model cannot simply confirm itself).",
            ),
        ),
        Block(
            "table",
            headers=("training snapshot", "value", "source"),
            rows=(
                ("file", str(t.get("snapshot", "—")), "audit log (model.trained)"),
                ("sha256 (audit log)", str(t.get("snapshot_sha256", "—")), "audit log"),
                ("sha256 (MLflow)", run.snapshot_sha256 or "—", "MLflow param"),
                ("as of audit seq", str(t.get("snapshot_as_of_seq", "—")), "audit log"),
                ("rows", str(snap.get("rows", "—")), "audit log (snapshot.created)"),
                ("training rows", str(t.get("train_rows", "—")), "audit log (model.trained)"),
                ("holdout rows", str(t.get("holdout_rows", "—")), "audit log (model.trained)"),
                (
                    "accepted labels left out by the cap",
                    str(snap.get("accepted_dropped", "—")),
                    "audit log (snapshot.created)",
                ),
            ),
        ),
        Block(
            "table",
            headers=("training labels by source", "rows"),
            rows=tuple((k, str(v)) for k, v in sources.items()),
        ),
        Block(
            "p",
            "The cases came into the store in these audited batches (as of the snapshot); each "
            "batch's digest is re-computed by `hilt audit verify`.",
        ),
        Block(
            "table",
            headers=("audit seq", "time", "by", "cases", "with outcome", "batch digest"),
            rows=tuple(
                (
                    str(e.seq),
                    _when(e.ts),
                    f"{e.actor} ({e.role})",
                    str(e.payload.get("rows", "—")),
                    str(e.payload.get("labelled", "—")),
                    str(e.payload.get("digest", "—")),
                )
                for e in r.ingests
            ),
        ),
    ]
    if sources:
        b.append(
            Block(
                "image",
                "Training rows by label source",
                image=f"model-{r.version}-labels.png",
                png=plots.png_bytes(plots.label_sources_figure(sources)),
            )
        )

    # 4. metrics
    metrics = dict(sorted(run.metrics.items()))
    b += [
        Block("h2", "4. Metrics"),
        Block(
            "p",
            "On the holdout, as logged to the MLflow run. gap_<attribute> is the largest "
            f"difference in {_gap_metric(s)} between groups of that protected attribute "
            "(nan: fewer than two groups large enough to compare).",
        ),
        Block(
            "table",
            headers=("metric", "value (as logged)", "meaning"),
            rows=tuple(
                (k, number(v), METRIC_MEANING.get(k, _meaning(k))) for k, v in metrics.items()
            ),
        ),
    ]
    if r.subgroups is not None:
        b += [
            Block(
                "p",
                "Subgroup metrics per protected attribute, as the run logged them "
                f"({SUBGROUP_ARTIFACT}). Groups too small to compare show their count only.",
            ),
            Block(
                "table",
                headers=tuple(r.subgroups.columns),
                rows=tuple(
                    tuple("" if v is None else str(v) for v in row) for row in r.subgroups.rows()
                ),
            ),
        ]
        typed = _typed_subgroups(r.subgroups)
        if typed is not None:
            b.append(
                Block(
                    "image",
                    "Positive rate per group",
                    image=f"model-{r.version}-subgroups.png",
                    png=plots.png_bytes(plots.subgroup_figure(typed, "positive_rate")),
                )
            )
    if gate_event is not None:
        b += [
            Block(
                "p",
                f"The promotion gate, as the audit log recorded it ({gate_event.action}, seq "
                f"{gate_event.seq}):",
            ),
            Block(
                "table",
                headers=("check", "passed", "value", "limit"),
                rows=tuple(
                    (
                        str(c.get("name")),
                        "yes" if c.get("passed") else "no",
                        str(c.get("value")),
                        str(c.get("limit")),
                    )
                    for c in gate_event.payload.get("checks", [])
                ),
            ),
        ]
    b += [
        Block("p", "The audit log and MLflow, where both record a fact:"),
        Block(
            "table",
            headers=("fact", "audit log", "MLflow", "verdict"),
            rows=(
                _agree("model sha256", _s(t.get("model_sha256")), run.model_sha256),
                _agree("snapshot sha256", _s(t.get("snapshot_sha256")), run.snapshot_sha256),
                _agree("snapshot as_of_seq", _s(t.get("snapshot_as_of_seq")), _s(run.snapshot_seq)),
                _agree("trained by", r.trained.actor if r.trained else None, run.author),
            ),
        ),
    ]

    # 5. limitations
    b += [Block("h2", "5. Limitations"), Block("list", items=tuple(_limitations(r, metrics)))]

    # 6. human oversight
    decided = sum(r.decisions_by_action.values())
    finals = r.decisions_by_action.get("accept", 0) + r.decisions_by_action.get("override", 0)
    overrides = r.decisions_by_action.get("override", 0)
    review = s.review
    b += [
        Block("h2", "6. Human-oversight measures"),
        Block(
            "list",
            items=(
                "A person reviews every prediction in the review panel and accepts or "
                "overrides it; an override needs one of the configured reason codes: "
                + ", ".join(review.reason_codes),
                "The panel shows the score with an uncertainty cue, the top reasons (signed "
                "contributions) and an out-of-distribution badge; the explanation the "
                "reviewer saw is recorded by its sha256 with the decision.",
                f"Blind-first review (own judgement before the model's output): "
                f"{'on' if review.blind_first else 'off'}.",
                "Flag for a second opinion, skip, and undo (a compensating event); contested "
                "cases (GDPR Art. 22) come first, to another reviewer.",
                "Four eyes on promotion: a lead who did not train the model approves it, and "
                "only if the gate passed"
                + (
                    f" (here: trained by {run.author}, approved by {promoted.actor})."
                    if promoted
                    else "."
                ),
                f"A lead can halt scoring and retraining at once; a second lead resumes "
                f"(halts recorded so far: {r.halts}).",
                f"Every step is an event of a hash-chained audit log with signed checkpoints "
                f"(checkpoints recorded so far: {r.checkpoints}); `hilt audit verify` checks it.",
            ),
        ),
        Block("p", f"Reviewers' decisions on predictions of version {r.version}:"),
        Block(
            "table",
            headers=("action", "decisions"),
            rows=(
                *((a, str(n)) for a, n in sorted(r.decisions_by_action.items())),
                ("all", str(decided)),
            ),
        ),
    ]
    if finals:
        b.append(
            Block(
                "p",
                f"Overridden: {overrides} of {finals} final decisions "
                f"(share {number(overrides / finals)}).",
            )
        )

    # 7. change log
    b += [
        Block("h2", "7. Change log"),
        Block(
            "p",
            f"Every model event of {r.registered} in the audit log (this version: {r.version}).",
        ),
        Block(
            "table",
            headers=("audit seq", "time", "event", "version", "by", "run", "detail"),
            rows=tuple(_change_row(e, r.model_events) for e in r.model_events),
        ),
    ]
    metric = f"holdout_{s.gate.metric}"
    series = {
        m: [h[1].get(m, math.nan) for h in r.history]
        for m in (metric, "holdout_accuracy")
        if any(m in h[1] for h in r.history)
    }
    if len(r.history) >= 1 and series:
        b.append(
            Block(
                "image",
                "Holdout metrics per version",
                image=f"model-{r.version}-history.png",
                png=plots.png_bytes(
                    plots.metric_history_figure(
                        [h[0] for h in r.history], series, highlight=r.version
                    )
                ),
            )
        )

    # 8. records
    finished = next((e for e in r.run_events if e.action == "run.finished"), None)
    b += [
        Block("h2", "8. Records"),
        Block(
            "list",
            items=(
                "The executed training notebook: "
                + (
                    f"{finished.payload.get('notebook')} (sha256 "
                    f"{finished.payload.get('notebook_sha256')}, audit seq {finished.seq})"
                    if finished
                    else "none recorded (trained outside `hilt retrain`)"
                ),
                f"Reproduce the model: `hilt retrain --reproduce {run.run_id}` (exit 0 only if "
                "the model's sha256 is the same).",
                "Verify the records: `hilt audit verify --public-key <your copy> --checkpoints "
                "<your copy>`.",
            ),
        ),
    ]
    return b


def _s(value: Any) -> str | None:
    return None if value is None else str(value)


def _gap_metric(settings: Settings) -> str:
    from hilt.pipelines.loop.evaluate import GateConfig

    return GateConfig.from_settings(settings).gap_metric


def _meaning(name: str) -> str:
    if name.startswith("gap_"):
        return f"largest difference between groups of {name.removeprefix('gap_')}"
    return "as logged by the run"


def _typed_subgroups(table: pl.DataFrame) -> pl.DataFrame | None:
    from hilt.pipelines.loop.evaluate import SUBGROUP_SCHEMA

    try:
        return table.with_columns(
            pl.col(c).cast(t) if c != "included" else pl.col(c).str.to_lowercase() == "true"
            for c, t in SUBGROUP_SCHEMA.items()
            if c in table.columns
        )
    except pl.exceptions.PolarsError:
        return None


def _limitations(r: ModelRecords, metrics: dict[str, float]) -> list[str]:
    s = r.settings
    out = []
    n = metrics.get("holdout_n")
    if n is not None and not math.isnan(n):
        out.append(
            f"The metrics are estimates on {number(n)} holdout cases; small differences "
            "between versions may be noise."
        )
    if r.subgroups is not None and "included" in r.subgroups.columns:
        small = [
            f"{row['attribute']} {row['group']} (n={row['n']})"
            for row in r.subgroups.iter_rows(named=True)
            if str(row["included"]).lower() != "true"
        ]
        if small:
            out.append(
                "Groups too small to compare, whose metrics are not reported: " + "; ".join(small)
            )
    gap_limit = s.gate.max_subgroup_gap
    for k, v in metrics.items():
        if k.startswith("gap_") and not math.isnan(v):
            out.append(
                f"{k.removeprefix('gap_')}: the largest difference between its groups is "
                f"{number(v)} (the gate allows {gap_limit!r})."
            )
        elif k.startswith("gap_"):
            out.append(f"{k.removeprefix('gap_')}: no two groups large enough to compare.")
    out += [
        "Trained on past decisions: the labels reflect how cases were decided then, "
        "including any bias in those decisions; reviewer labels enter training only up to "
        "the cap.",
        "Values outside the ranges seen in training are flagged to reviewers as out of "
        "distribution; the model's behaviour there is not measured.",
        "The explanation is a set of per-feature contributions to this model's score, not a "
        "causal account.",
    ]
    return out


def _change_row(e: AuditEvent, events: list[AuditEvent]) -> tuple[str, ...]:
    p = e.payload
    version = str(p.get("version", ""))
    if e.action == "model.trained":
        match = next(
            (
                x
                for x in events
                if x.payload.get("run_id") == e.object_id and x.payload.get("version")
            ),
            None,
        )
        version = str(match.payload["version"]) if match else "—"
    detail = {
        "model.trained": f"gate {p.get('gate')}, snapshot {p.get('snapshot_sha256', '')}",
        "model.challenger": "passed the gate; awaiting a lead's approval",
        "model.gate_failed": "rejected by the gate; champion unchanged",
        "model.promoted": f"champion (previous: {p.get('previous_version') or 'none'}), "
        f"approved by {p.get('approver')}",
    }.get(e.action, "")
    run = str(p.get("run_id") or (e.object_id if e.action == "model.trained" else "—"))
    return (str(e.seq), _when(e.ts), e.action, version or "—", e.actor, run, detail)


# ---------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class WrittenDocs:
    markdown: Path
    html: Path
    images: tuple[Path, ...]
    version: str


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
    return WrittenDocs(markdown=md, html=page, images=tuple(images), version=records.version)
