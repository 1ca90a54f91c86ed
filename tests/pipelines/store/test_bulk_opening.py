"""Opening personal data in bulk (what a 1M-row snapshot does): the subject keys read for
thousands of subjects at once, and many sealed documents opened and typed in one pass.
Real AES-GCM, a real SQLite key store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from hilt.pipelines.config import Settings, load_settings
from hilt.pipelines.errors import StoreError
from hilt.pipelines.store import personal_data
from hilt.pipelines.store.subject_keys import _BULK_READ, MasterKey, SubjectKeyStore
from tests.conftest import CONFIG

#: More subjects than an IN list of placeholders takes: the bulk read path.
SUBJECTS = _BULK_READ + 1_000


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(CONFIG)


@pytest.fixture
def key_store(tmp_path: Path) -> Iterator[SubjectKeyStore]:
    store = SubjectKeyStore(tmp_path / "keys.sqlite", MasterKey(os.urandom(32)))
    yield store
    store.close()


def test_bulk_key_read_returns_exactly_the_wanted_keys(key_store: SubjectKeyStore) -> None:
    refs = [f"subj-{i:05d}" for i in range(SUBJECTS)]
    created = key_store.create(refs)
    # Wanted: most subjects, in no particular order, with refs that have no key.
    wanted = [*refs[::-1][: _BULK_READ + 500], "subj-unknown-1", "subj-unknown-2"]
    got = key_store.get(wanted)
    assert len(wanted) > _BULK_READ
    assert set(got) == set(wanted) - {"subj-unknown-1", "subj-unknown-2"}
    assert all(got[ref] == created[ref] for ref in got)
    # A destroyed key is absent from a bulk read, and the small path agrees.
    gone = wanted[:7]
    assert key_store.destroy(gone) == 7
    after = key_store.get(wanted)
    assert set(after) == set(got) - set(gone)
    few = wanted[5:15]
    assert key_store.get(few) == {r: created[r] for r in few if r not in gone}


def _sealed_frame(
    settings: Settings, keys: dict[str, bytes], docs: list[dict[str, object]]
) -> pl.DataFrame:
    """(case_id, subject_ref, ingest_seq, sealed) for one document per subject."""
    refs = list(keys)
    personal = pl.DataFrame(
        {
            "case_id": [f"case-{i}" for i in range(len(docs))],
            **{c: [d.get(c) for d in docs] for c in settings.personal_columns},
        }
    )
    sealed = personal_data.seal_cases(personal, refs, keys, 42, settings.personal_columns)
    return pl.DataFrame(
        {
            "case_id": personal["case_id"],
            "subject_ref": refs,
            "ingest_seq": [42] * len(docs),
            "sealed": pl.Series(sealed, dtype=pl.Binary),
        }
    )


def test_bulk_opening_types_every_column_and_nulls_a_shredded_subject(
    settings: Settings,
) -> None:
    assert settings.personal_columns == ["sex", "age"]
    keys = {f"s{i}": os.urandom(32) for i in range(4)}
    docs: list[dict[str, object]] = [
        {"sex": "female", "age": 31},
        {"sex": "male", "age": None},
        {"sex": "fémale ✓", "age": 2**40},
        {"sex": "male", "age": 67},
    ]
    rows = _sealed_frame(settings, keys, docs)
    shredded = {k: v for k, v in keys.items() if k != "s3"}
    opened = personal_data.open_cases(rows, shredded, settings)
    assert opened.schema == pl.Schema({"case_id": pl.String, "sex": pl.String, "age": pl.Int64})
    assert opened.rows() == [
        ("case-0", "female", 31),
        ("case-1", "male", None),
        ("case-2", "fémale ✓", 2**40),
        ("case-3", None, None),  # the subject's key is gone: nothing opens
    ]
    assert personal_data.open_cases(rows.head(0), keys, settings).height == 0


def test_a_moved_or_changed_document_does_not_open(settings: Settings) -> None:
    keys = {f"s{i}": os.urandom(32) for i in range(3)}
    rows = _sealed_frame(settings, keys, [{"sex": "male", "age": 40 + i} for i in range(3)])
    # Bound to its case: the sealed documents of two cases swapped fail to open.
    swapped = rows.with_columns(pl.col("sealed").reverse())
    with pytest.raises(StoreError, match="does not open"):
        personal_data.open_cases(swapped, keys, settings)
    # Bound to its ingest seq.
    with pytest.raises(StoreError, match="does not open"):
        personal_data.open_cases(rows.with_columns(pl.lit(43).alias("ingest_seq")), keys, settings)
