"""Per-subject encryption keys, wrapped by a workspace master key (crypto-shredding).

Personal data about a subject (the personal columns of their cases, their external id, the
free text of decisions and rectifications about them, in the tables and in audit payloads)
is sealed with AES-256-GCM under a key of that subject's own. Destroying the key makes all
of it unreadable at once, wherever copies of the ciphertext remain (the audit log keeps
them: its hashes cover the ciphertext, so shredding never breaks ``hilt audit verify``).

Where the keys live, and why not in the DuckDB file:

- The **master key** (32 random bytes) is kept outside the database: ``keys/master.key``
  (mode 0600, made at ``hilt init``) or, for deployments, ``$HILT_MASTER_KEY`` (base64) /
  ``$HILT_MASTER_KEY_FILE``. Without it nothing personal can be read from the store.
- The **subject keys** are stored wrapped by the master key in a small SQLite file,
  ``keys/subject-keys.sqlite``, not in DuckDB: DuckDB leaves deleted rows' bytes in free
  blocks of its file (measured: a deleted BLOB survives DELETE, CHECKPOINT and VACUUM), so a
  "destroyed" key would still be on disk next to the master key. SQLite with
  ``secure_delete`` overwrites deleted content, and in WAL mode a checkpoint writes the
  zeroed pages back over the old ones, so a destroyed key is gone from both files.

Both files are opened under the store's cross-process lock, like the DuckDB file.

Associated data binds each ciphertext to its subject, its audit seq and its purpose, so a
ciphertext cannot be moved to another subject, row or field without failing to open.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import stat
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hilt.pipelines.errors import ConfigError, StoreError

KEY_BYTES = 32
NONCE_BYTES = 12
#: Prefix of a sealed value written as text (audit payloads are JSON).
TEXT_PREFIX = "enc:v1:"
MASTER_KEY_ENV = "HILT_MASTER_KEY"
MASTER_KEY_FILE_ENV = "HILT_MASTER_KEY_FILE"
_WRAP_DOMAIN = b"hilt/subject-key/v1|"
_LOOKUP_INFO = b"hilt/subject-lookup/v1"
#: Above this many refs, one JSON array parameter replaces the IN list of placeholders.
_BULK_READ = 2_000


class KeyUnavailableError(StoreError):
    """A subject's key is gone (the subject was erased, or their data passed retention)."""

    status_code = 410
    kind = "shredded"


def associated_data(purpose: str, subject_ref: str, seq: int, object_id: str = "") -> bytes:
    """What a ciphertext is bound to: its purpose, subject, audit seq and object."""
    return f"hilt/v1|{purpose}|{subject_ref}|{seq}|{object_id}".encode()


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """nonce ‖ AES-256-GCM(key, plaintext, aad)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError):
        raise StoreError(
            "a sealed value does not open with its subject's key (wrong key, or the value "
            "was moved or changed)"
        ) from None


def seal_text(key: bytes, text: str, aad: bytes) -> str:
    """A sealed string as text, for JSON payloads: ``enc:v1:<base64>``."""
    return TEXT_PREFIX + base64.b64encode(seal(key, text.encode("utf-8"), aad)).decode("ascii")


def unseal_text(key: bytes, value: str, aad: bytes) -> str:
    if not value.startswith(TEXT_PREFIX):
        raise StoreError("not a sealed value")
    try:
        raw = base64.b64decode(value[len(TEXT_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise StoreError("a sealed value is not valid base64") from None
    return unseal(key, raw, aad).decode("utf-8")


# ----------------------------------------------------------------------- master key
def _decode_master(text: str, where: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}: the master key is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise ConfigError(f"{where}: the master key must be {KEY_BYTES} bytes")
    return raw


def create_master_key(path: Path) -> None:
    """Write a new master key readable by its owner only (0600); never overwrite one."""
    if path.exists():
        raise StoreError(f"{path}: a master key already exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii") + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class MasterKey:
    """The workspace master key: wraps subject keys and keys the subject-id lookup."""

    def __init__(self, raw: bytes) -> None:
        if len(raw) != KEY_BYTES:
            raise ConfigError(f"the master key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(raw)
        self._lookup_key = HKDF(
            algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=_LOOKUP_INFO
        ).derive(raw)

    @classmethod
    def load(cls, path: Path) -> MasterKey:
        """From ``$HILT_MASTER_KEY`` (base64) if set, else from the key file at ``path``."""
        env = os.environ.get(MASTER_KEY_ENV)
        if env:
            return cls(_decode_master(env, f"${MASTER_KEY_ENV}"))
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            raise ConfigError(
                f"{path}: no master key; personal data cannot be read or written without it "
                f"(set ${MASTER_KEY_ENV} or ${MASTER_KEY_FILE_ENV})"
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read the master key ({type(e).__name__})") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"{path}: the master key file is readable by others; chmod 600 it")
        return cls(_decode_master(text, str(path)))

    def wrap(self, subject_ref: str, key: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, key, _WRAP_DOMAIN + subject_ref.encode())

    def unwrap(self, subject_ref: str, wrapped: bytes) -> bytes:
        try:
            return self._aead.decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _WRAP_DOMAIN + subject_ref.encode()
            )
        except (InvalidTag, ValueError):
            raise StoreError(
                "a subject key does not unwrap with this master key (wrong master key?)"
            ) from None

    def lookup(self, external_id: str) -> str:
        """HMAC-SHA256 of an external subject id: finds a subject without storing the id."""
        return hmac.new(self._lookup_key, external_id.encode("utf-8"), hashlib.sha256).hexdigest()


# ----------------------------------------------------------------------- key store
def _read_keys(
    db: sqlite3.Connection, master: MasterKey, subject_refs: Iterable[str]
) -> dict[str, bytes]:
    """The unwrapped keys of those of ``subject_refs`` that have one, read on ``db``."""
    wanted = set(subject_refs)
    if not wanted:
        return {}
    try:
        if len(wanted) > _BULK_READ:
            # One JSON array parameter, sorted: SQLite then walks its key index in order
            # (1M keys, 200,000 wanted: a third of reading the whole table; unsorted, the
            # same lookup took 5x longer than the whole table).
            rows = db.execute(
                "SELECT subject_ref, wrapped FROM subject_keys"
                " WHERE subject_ref IN (SELECT value FROM json_each(?))",
                [json.dumps(sorted(wanted))],
            ).fetchall()
        else:
            marks = ",".join("?" * len(wanted))
            rows = db.execute(
                f"SELECT subject_ref, wrapped FROM subject_keys WHERE subject_ref IN ({marks})",
                list(wanted),
            ).fetchall()
    except sqlite3.Error as e:
        raise StoreError(f"cannot read subject keys: {e}") from e
    unwrap = master.unwrap
    return {ref: unwrap(ref, w) for ref, w in rows}


class SubjectKeyStore:
    """Wrapped subject keys in ``keys/subject-keys.sqlite`` (secure_delete, WAL)."""

    def __init__(self, path: Path, master: MasterKey) -> None:
        self.path = path
        self.master = master
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists()
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            if fresh:
                os.chmod(path, 0o600)
            self._db.execute("PRAGMA secure_delete = ON")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS subject_keys ("
                " subject_ref TEXT PRIMARY KEY, wrapped BLOB NOT NULL) WITHOUT ROWID"
            )
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the subject key store {path}: {e}") from e

    def create(self, subject_refs: Iterable[str]) -> dict[str, bytes]:
        """New random keys for new subjects, stored (committed) before the data they seal."""
        keys = {ref: secrets.token_bytes(KEY_BYTES) for ref in subject_refs}
        if not keys:
            return {}
        rows = [(ref, self.master.wrap(ref, key)) for ref, key in keys.items()]
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO subject_keys VALUES (?, ?)", rows)
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback()
            raise StoreError(f"cannot store new subject keys: {e}") from e
        return keys

    def get(self, subject_refs: Iterable[str]) -> dict[str, bytes]:
        """The keys of those subjects that still have one (erased subjects are absent)."""
        return _read_keys(self._db, self.master, subject_refs)

    def get_on_own_connection(self, subject_refs: Iterable[str]) -> dict[str, bytes]:
        """``get`` on a connection of its own, closed after: for a forked worker process,
        which must not use a connection its parent opened."""
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the subject key store {self.path}: {e}") from e
        try:
            return _read_keys(db, self.master, subject_refs)
        finally:
            db.close()

    def key(self, subject_ref: str) -> bytes:
        found = self.get([subject_ref]).get(subject_ref)
        if found is None:
            raise KeyUnavailableError("the subject's key was destroyed; their data is shredded")
        return found

    def has(self, subject_ref: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM subject_keys WHERE subject_ref = ?", [subject_ref]
        ).fetchall()
        return bool(row)

    def destroy(self, subject_refs: Iterable[str]) -> int:
        """Delete keys for good: overwritten in the file, and the WAL checkpointed back over
        the old pages and truncated. Returns how many keys existed."""
        refs = sorted(set(subject_refs))
        if not refs:
            return 0
        try:
            self._db.execute("BEGIN IMMEDIATE")
            n = 0
            for ref in refs:
                n += self._db.execute(
                    "DELETE FROM subject_keys WHERE subject_ref = ?", [ref]
                ).rowcount
            self._db.execute("COMMIT")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:
            self._rollback()
            raise StoreError(f"cannot destroy subject keys: {e}") from e
        return n

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM subject_keys").fetchall()[0][0])

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        self._db.close()


class KeyRing:
    """A workspace's master key and subject key store, opened on first use.

    Operations that never touch personal data (verify, the audit log, counts) never open
    it, so an auditor can verify a store without the master key.
    """

    def __init__(self, master_key_path: Path, key_store_path: Path) -> None:
        self.master_key_path = master_key_path
        self.key_store_path = key_store_path
        self._master: MasterKey | None = None
        self._store: SubjectKeyStore | None = None

    @property
    def master(self) -> MasterKey:
        if self._master is None:
            self._master = MasterKey.load(self.master_key_path)
        return self._master

    @property
    def store(self) -> SubjectKeyStore:
        if self._store is None:
            self._store = SubjectKeyStore(self.key_store_path, self.master)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
