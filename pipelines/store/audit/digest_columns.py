"""The v2 batch digest's encoding of Arrow columns (``batch_digest``'s docstring says what
is hashed): numpy and pyarrow, imported only where a batch is actually digested, so that a
verify with no batch to recompute (from a checkpoint after which no batch was ingested, the
CLI's `--from latest`) starts without them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def kind_of(dtype: pa.DataType) -> str:
    if pa.types.is_dictionary(dtype):
        return kind_of(dtype.value_type)
    if pa.types.is_integer(dtype):
        return "int64"
    if pa.types.is_floating(dtype):
        return "float64"
    if pa.types.is_boolean(dtype):
        return "bool"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or _is_view(dtype, "string"):
        return "text"
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or _is_view(dtype, "binary"):
        return "bytes"
    if pa.types.is_null(dtype):
        return "null"
    raise TypeError(f"no batch digest encoding for the Arrow type {dtype}")


def _is_view(dtype: pa.DataType, what: str) -> bool:
    check = getattr(pa.types, f"is_{what}_view", None)
    return bool(check(dtype)) if check is not None else False


_ZERO: dict[str, tuple[pa.DataType, Any]] = {
    "int64": (pa.int64(), 0),
    "float64": (pa.float64(), 0.0),
    "bool": (pa.bool_(), False),
    "text": (pa.large_string(), ""),
    "bytes": (pa.large_binary(), b""),
}


def _plain(chunk: pa.Array, kind: str) -> pa.Array:
    """The chunk with its nulls replaced by zero values, in a layout whose buffers can be read
    directly: int64, float64, bool, or text / binary with 32- or 64-bit offsets."""
    if pa.types.is_dictionary(chunk.type):
        chunk = chunk.dictionary_decode()
    target, zero = _ZERO[kind]
    offsets_layout = kind in ("text", "bytes") and not (
        _is_view(chunk.type, "string") or _is_view(chunk.type, "binary")
    )
    if chunk.type != target and not offsets_layout:
        chunk = chunk.cast(target)
    if chunk.null_count:
        chunk = pc.fill_null(chunk, pa.scalar(zero, type=chunk.type))
    return chunk


def _bits(buf: pa.Buffer | None, offset: int, n: int) -> np.ndarray[Any, Any]:
    """An Arrow bitmap (LSB first) as one byte per bit, 1 or 0, from bit ``offset`` on.

    Read from the buffer itself: pyarrow's ``to_numpy`` imports pandas (a second of
    `hilt audit verify`'s start-up)."""
    if buf is None:
        return np.zeros(n, dtype=np.uint8)
    first, skip = divmod(offset, 8)
    raw = np.frombuffer(buf, dtype=np.uint8)[first : first + (skip + n + 7) // 8]
    return np.unpackbits(raw, bitorder="little")[skip : skip + n]


def _values(chunk: pa.Array, dtype: str) -> np.ndarray[Any, Any]:
    """The fixed-width values of a null-free int64 or float64 chunk, from its buffer."""
    return np.frombuffer(chunk.buffers()[1], dtype=dtype)[chunk.offset : chunk.offset + len(chunk)]


def _validity(chunk: pa.Array) -> bytes | np.ndarray[Any, Any]:
    if chunk.null_count == 0:
        return b"\x01" * len(chunk)
    if pa.types.is_null(chunk.type):
        return bytes(len(chunk))
    return _bits(chunk.buffers()[0], chunk.offset, len(chunk))


def update_column(h: Any, chunks: list[pa.Array], kind: str) -> None:
    for c in chunks:
        h.update(_validity(c))
    if kind == "null":
        return
    plain = [_plain(c, kind) for c in chunks]
    if kind in ("int64", "float64"):
        dtype = "<i8" if kind == "int64" else "<f8"
        for c in plain:
            h.update(_values(c, dtype))
        return
    if kind == "bool":
        for c in plain:
            h.update(_bits(c.buffers()[1], c.offset, len(c)))
        return
    spans = []
    for c in plain:
        _, offsets_buf, data_buf = c.buffers()
        wide = pa.types.is_large_string(c.type) or pa.types.is_large_binary(c.type)
        offsets = np.frombuffer(offsets_buf, dtype="<i8" if wide else "<i4")
        offsets = offsets[c.offset : c.offset + len(c) + 1]
        h.update(np.diff(offsets).astype("<i8"))
        spans.append((data_buf, int(offsets[0]), int(offsets[-1])))
    for data_buf, start, end in spans:
        if data_buf is not None and end > start:
            h.update(memoryview(data_buf)[start:end])
