"""Signed checkpoints of the audit chain, kept outside the database.

A checkpoint is (seq, head hash, time) signed with an Ed25519 key. The key and the
checkpoint file live outside the DuckDB file, and the public key that verifies them is
pinned in the workspace's hilt.toml (or handed to ``hilt audit verify --public-key``).
So truncating the log, or rebuilding the whole chain, is detected: the rebuilt chain no
longer matches a signed checkpoint, and re-signing needs a key whose public half is not
the pinned one.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hilt.pipelines.errors import ConfigError, InputError, NotFoundError, StoreError
from hilt.pipelines.store.audit.chain import Break, canonical_json, kind_prefix, picks

if TYPE_CHECKING:
    import duckdb

KEY_PREFIX = "ed25519:"
#: ``hilt audit verify --from latest``: the newest checkpoint whose signature checks.
LATEST = "latest"
_DOMAIN = b"hilt-audit-checkpoint/v1\n"
#: The event that records a checkpoint in the log (``missing_from_file``).
RECORDED_KINDS = (kind_prefix("audit.checkpoint"),)


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    head_hash: str
    time: str
    public_key: str
    signature: str

    def signed_message(self) -> bytes:
        return _message(self.seq, self.head_hash, self.time)

    def to_line(self) -> str:
        return canonical_json(
            {
                "seq": self.seq,
                "head_hash": self.head_hash,
                "time": self.time,
                "public_key": self.public_key,
                "signature": self.signature,
            }
        )


def _message(seq: int, head_hash: str, time: str) -> bytes:
    return _DOMAIN + canonical_json({"seq": seq, "head_hash": head_hash, "time": time}).encode()


def public_key_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    if not text.startswith(KEY_PREFIX):
        raise ConfigError(f"public key must start with {KEY_PREFIX!r}")
    try:
        raw = base64.b64decode(text[len(KEY_PREFIX) :], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise ConfigError("public key is not a valid base64 Ed25519 key") from None


def create_signing_key(path: Path) -> Ed25519PrivateKey:
    """Create a new signing key file readable by its owner only (0600)."""
    if path.exists():
        raise StoreError(f"{path}: a signing key already exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise StoreError(f"{path}: no audit signing key (set HILT_AUDIT_SIGNING_KEY?)") from None
    except ValueError:
        raise StoreError(f"{path}: not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise StoreError(f"{path}: not an Ed25519 key")
    return key


def sign_checkpoint(key: Ed25519PrivateKey, seq: int, head_hash: str, time: str) -> Checkpoint:
    signature = key.sign(_message(seq, head_hash, time))
    return Checkpoint(
        seq=seq,
        head_hash=head_hash,
        time=time,
        public_key=public_key_text(key.public_key()),
        signature=base64.b64encode(signature).decode("ascii"),
    )


def append_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Append one line and fsync, so an acknowledged checkpoint survives a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (checkpoint.to_line() + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoints(path: Path) -> tuple[list[Checkpoint], Break | None]:
    """All checkpoints in the file, or the break that a malformed line is."""
    if not path.exists():
        return [], None
    out: list[Checkpoint] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            out.append(
                Checkpoint(
                    seq=int(d["seq"]),
                    head_hash=str(d["head_hash"]),
                    time=str(d["time"]),
                    public_key=str(d["public_key"]),
                    signature=str(d["signature"]),
                )
            )
        except (ValueError, KeyError, TypeError):
            return out, Break(0, "checkpoint-file", f"{path.name} line {number} is malformed")
    return out, None


def signed_by(checkpoint: Checkpoint, key: Ed25519PublicKey) -> bool:
    """Whether ``key`` made the checkpoint's signature."""
    try:
        key.verify(base64.b64decode(checkpoint.signature), checkpoint.signed_message())
    except (InvalidSignature, ValueError):
        return False
    return True


def starting_point(
    checkpoints: list[Checkpoint], pinned_key: Ed25519PublicKey | None, which: str
) -> Checkpoint | Break | None:
    """The checkpoint a verify from a checkpoint starts at (``hilt audit verify --from``).

    ``which``: ``latest``, the newest checkpoint in the file whose signature checks with
    the pinned key (None if there is none: the whole log is walked then); or the seq of a
    checkpoint in the file, which must check: a named checkpoint whose signature fails is
    a ``checkpoint-signature`` break, never replaced by an older one. A seq that is no
    checkpoint of the file is an InputError; checkpoints without a pinned key, the
    ``no-pinned-key`` break.
    """
    if which != LATEST and not which.isdigit():
        raise InputError(f"--from takes {LATEST!r} or the seq of a checkpoint, not {which!r}")
    named = [c for c in checkpoints if which == LATEST or c.seq == int(which)]
    if not named and which != LATEST:
        raise NotFoundError(f"the checkpoint file has no checkpoint of seq {int(which)}")
    if pinned_key is None:
        if not checkpoints:
            return None
        return Break(0, "no-pinned-key", "checkpoints exist but no public key is pinned")
    if which == LATEST:
        # Newest first, so that only the newest signature is checked where it holds (a log
        # checkpointed daily for years holds thousands).
        newest_first = sorted(checkpoints, key=lambda c: c.seq, reverse=True)
        return next((c for c in newest_first if signed_by(c, pinned_key)), None)
    for cp in reversed(named):
        if signed_by(cp, pinned_key):
            return cp
    return Break(
        int(which),
        "checkpoint-signature",
        f"the checkpoint at seq {int(which)} is not signed by the pinned key: refusing to "
        "verify from it (checkpoints were re-signed or forged)",
    )


def check_checkpoints(
    checkpoints: list[Checkpoint],
    pinned_key: Ed25519PublicKey | None,
    head_seq: int,
    hashes: dict[int, str],
    purged_through: int = 0,
) -> Break | None:
    """Check each checkpoint's signature against the pinned key and against the chain.

    ``hashes`` maps each checkpoint's seq to the chain's hash at that seq (if present).
    Checkpoints of seqs that retention has purged (below ``purged_through``) can only have
    their signatures checked; the chain proves itself from the purge anchor on.
    """
    if checkpoints and pinned_key is None:
        return Break(0, "no-pinned-key", "checkpoints exist but no public key is pinned")
    last_good = 0
    for cp in sorted(checkpoints, key=lambda c: c.seq):
        assert pinned_key is not None
        if not signed_by(cp, pinned_key):
            return Break(
                cp.seq,
                "checkpoint-signature",
                f"the checkpoint at seq {cp.seq} is not signed by the pinned key "
                "(checkpoints were re-signed or forged; the log up to it cannot be trusted)",
            )
        if cp.seq < purged_through:
            continue
        if cp.seq > head_seq:
            return Break(
                head_seq + 1,
                "truncated",
                f"a signed checkpoint covers seq {cp.seq} but the log ends at seq {head_seq}",
            )
        if hashes.get(cp.seq) != cp.head_hash:
            return Break(
                cp.seq,
                "checkpoint-mismatch",
                f"the chain's hash at seq {cp.seq} differs from the signed checkpoint: the log "
                f"was rewritten after seq {last_good} (the last checkpoint that matches)",
            )
        last_good = cp.seq
    return None


def missing_from_file(
    con: duckdb.DuckDBPyConnection,
    checkpoints: list[Checkpoint],
    since: int = 0,
    events: str = "audit_log",
) -> Break | None:
    """Every checkpoint the log records (after ``since``) must still be in the file.
    ``events``: ``after_checkpoint.kind_source(con, since)`` when the caller read it."""
    in_file = {(c.seq, c.signature) for c in checkpoints}
    recorded = con.execute(
        "SELECT seq, try_cast(json_extract(entry, '$.payload.seq') AS BIGINT),"
        f" json_extract_string(entry, '$.payload.signature') FROM {events}"
        f" WHERE seq > ? AND {picks(RECORDED_KINDS)} ORDER BY seq",
        [since],
    ).fetchall()
    for seq, covered, signature in recorded:
        if (covered, signature) not in in_file:
            return Break(
                int(seq),
                "checkpoint-missing",
                f"the log records a checkpoint of seq {covered} that the checkpoint file lacks "
                "(the file was replaced or truncated)",
            )
    return None
