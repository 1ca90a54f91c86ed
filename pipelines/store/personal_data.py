"""Sealing and opening the personal data of cases, in bulk.

A case's personal columns (``fields.personal`` of hilt.toml) are stored as one canonical JSON
object sealed with the subject's key, bound to the subject, the ingest seq and the case id
(see ``subject_keys``). Rectified values and decision comments are sealed the same way,
bound to the seq of the event that records them. The store seals on the way in and opens on
the way out, for the roles that may read personal data; everything else (the audit chain,
batch digests, ``hilt audit verify``) works on the ciphertext and needs no key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hilt.pipelines.config import Column, Settings
from hilt.pipelines.deferred_imports import deferred_module
from hilt.pipelines.store import forked
from hilt.pipelines.store.audit.chain import canonical_json
from hilt.pipelines.store.subject_keys import (
    associated_data,
    seal,
    seal_text,
    unseal,
    unseal_text,
)

if TYPE_CHECKING:
    import polars as pl

    from hilt.pipelines.store.subject_keys import SubjectKeyStore
else:
    pl = deferred_module("polars")  # on first use: the store's clients never import it

CASE_PURPOSE = "case"
SUBJECT_ID_PURPOSE = "subject-id"
COMMENT_PURPOSE = "comment"
RECTIFY_PURPOSE = "rectify"


def polars_type(col: Column) -> pl.DataType:
    types: dict[str, pl.DataType] = {
        "int": pl.Int64(),
        "float": pl.Float64(),
        "category": pl.String(),
        "bool": pl.Boolean(),
        "string": pl.String(),
    }
    return types[col.type]


def seal_cases(
    personal: pl.DataFrame,
    subject_refs: Sequence[str],
    keys: Mapping[str, bytes],
    seq: int,
    columns: Sequence[str],
) -> list[bytes]:
    """One sealed JSON object per row of ``personal`` (case_id + the personal columns)."""
    case_ids = personal["case_id"].to_list()
    values = [personal[c].to_list() for c in columns]
    out: list[bytes] = []
    for i, (case_id, ref) in enumerate(zip(case_ids, subject_refs, strict=True)):
        doc = canonical_json({c: values[j][i] for j, c in enumerate(columns)})
        aad = associated_data(CASE_PURPOSE, ref, seq, case_id)
        out.append(seal(keys[ref], doc.encode("utf-8"), aad))
    return out


#: Rows from which ``open_cases_with`` opens part of the documents in a forked worker
#: process while this one opens the rest: AES-GCM in the cryptography library holds
#: the GIL, so threads would not share it between cores. Below it the fork costs more than
#: it saves.
PARALLEL_MIN_ROWS = 20_000
#: The least time the worker is given beyond ten times this process's own part.
WORKER_TIMEOUT_MIN_S = 10.0

_Sealing = tuple[list[str], list[str], list[int], list[bytes]]


def open_cases(rows: pl.DataFrame, keys: Mapping[str, bytes], settings: Settings) -> pl.DataFrame:
    """Personal columns, typed, for rows of (case_id, subject_ref, ingest_seq, sealed).

    A row whose subject has no key left (shredded) gets nulls; the store removes such rows'
    data anyway, so this happens only for ciphertext that outlived its key.

    In bulk: each row's document is unsealed in one tight loop (the one step that needs a
    key per row), then every document is parsed at once by polars into the typed columns.
    """
    return _typed(rows, unseal_documents(_sealing(rows), keys), settings)


def open_cases_with(
    rows: pl.DataFrame, key_store: SubjectKeyStore, settings: Settings
) -> pl.DataFrame:
    """``open_cases`` with the subjects' keys read from ``key_store``.

    From ``PARALLEL_MIN_ROWS`` rows, on a machine with another core, the rows after the
    first 45 % are opened in a forked worker process (its keys read on its own connection)
    while this process opens the first: the same result, in about half the time. Should the
    worker fail other than by a document that does not open, this process opens the
    worker's part itself.
    """
    if rows.height < PARALLEL_MIN_ROWS or not forked.can_fork():
        keys = key_store.get(rows["subject_ref"].unique().to_list())
        return open_cases(rows, keys, settings)
    sealing = _sealing(rows)
    # This process also reads the worker's result and parses every document after: it
    # takes the smaller part (measured on 200,000 documents: 45 % evens the two out).
    split = rows.height * 45 // 100
    first = _part(sealing, 0, split)
    second = _part(sealing, split, rows.height)

    def open_second() -> list[str | None]:
        return unseal_documents(second, key_store.get_on_own_connection(set(second[1])))

    worker = forked.ForkedCall(open_second)
    started = time.monotonic()
    try:
        documents = unseal_documents(first, key_store.get(set(first[1])))
    except BaseException:
        worker.cancel()
        raise
    # The worker's part is about as large as this process's: ten times as long means stuck.
    timeout = WORKER_TIMEOUT_MIN_S + 10 * (time.monotonic() - started)
    try:
        documents.extend(worker.result(timeout))
    except forked.ForkFailed:
        documents.extend(unseal_documents(second, key_store.get(set(second[1]))))
    return _typed(rows, documents, settings)


def _sealing(rows: pl.DataFrame) -> _Sealing:
    return (
        rows["case_id"].to_list(),
        rows["subject_ref"].to_list(),
        rows["ingest_seq"].to_list(),
        rows["sealed"].to_list(),
    )


def _part(sealing: _Sealing, start: int, stop: int) -> _Sealing:
    case_ids, refs, seqs, sealed = sealing
    return case_ids[start:stop], refs[start:stop], seqs[start:stop], sealed[start:stop]


def unseal_documents(sealing: _Sealing, keys: Mapping[str, bytes]) -> list[str | None]:
    """Each row's document as JSON text (None where the subject's key is gone)."""
    documents: list[str | None] = []
    append = documents.append
    for case_id, ref, seq, sealed in zip(*sealing, strict=True):
        key = keys.get(ref)
        if key is None:
            append(None)
            continue
        aad = associated_data(CASE_PURPOSE, ref, int(seq), case_id)
        append(unseal(key, sealed, aad).decode("utf-8"))
    return documents


def _typed(rows: pl.DataFrame, documents: list[str | None], settings: Settings) -> pl.DataFrame:
    """case_id and the personal columns parsed from ``documents`` (one per row of ``rows``)."""
    columns = settings.personal_columns
    if not columns:
        return rows.select("case_id")
    dtype = pl.Struct({c: polars_type(settings.columns[c]) for c in columns})
    opened = pl.Series("doc", documents, dtype=pl.String).str.json_decode(dtype)
    return pl.DataFrame([rows["case_id"], opened]).unnest("doc")


def seal_value(key: bytes, value: Any, purpose: str, subject_ref: str, seq: int, obj: str) -> str:
    """A JSON value sealed as text (``enc:v1:…``), for a table and an audit payload alike."""
    return seal_text(key, canonical_json(value), associated_data(purpose, subject_ref, seq, obj))


def open_value(key: bytes, sealed: str, purpose: str, subject_ref: str, seq: int, obj: str) -> Any:
    return json.loads(unseal_text(key, sealed, associated_data(purpose, subject_ref, seq, obj)))
