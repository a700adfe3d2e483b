"""Encryption at rest: AES-256-GCM for sensitive columns and for stored files, with key rotation.

Keys come from ``ACCORD_ENCRYPTION_KEYS``: ``id:key,id:key,…``, each key 32 random bytes in
URL-safe base64 (``flask crypto new-key`` prints one). The first is the *current* key: everything
is encrypted with it. The others only decrypt what was written before they were replaced; after
``flask crypto rotate`` has re-encrypted everything with the current key (``flask crypto status``
tells), an old key can be dropped from the setting. Outside production, with the setting unset,
a fixed development key is used (``DEVELOPMENT_KEYRING``), so the demo and the tests need
nothing set; production refuses to start without the setting.

A value is sealed as ``0x01 | len(id) | id | nonce (12 bytes) | ciphertext | tag (16 bytes)``:
the key's id travels with the value, so a keyring with several keys knows which one opens it.
The nonce is random for every value (96 bits: with one key, billions of values before a
collision is a concern). The *associated data* names where the value belongs — ``table.column``
for a column, ``file:<storage key>`` for a file — so a ciphertext copied into another column or
under another file's name does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import LargeBinary
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from portal.config import ConfigError

VERSION = 1
NONCE_BYTES = 12
KEY_BYTES = 32
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
DEV_KEY_ID = "dev"
FILE_MAGIC = b"\x00ACCORD-AESGCM\x01"
"""The first bytes of an encrypted file: no PDF, JPEG or PNG begins with a NUL byte, so a file
stored before encryption was switched on is told apart and still read (and ``rotate`` encrypts it)."""


class DecryptionError(RuntimeError):
    """A value or file that no key of the keyring opens: a missing old key, or tampered bytes."""


@dataclass(frozen=True)
class Keyring:
    """The encryption keys by id; ``current`` encrypts, every key decrypts what it encrypted."""

    keys: Mapping[str, bytes]
    current: str
    _ciphers: Mapping[str, AESGCM] = field(init=False, repr=False, compare=False)
    """One cipher a key, made once: making one costs about what sealing a short value does."""

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ConfigError(f"the current encryption key {self.current!r} is not in the keyring")
        for key_id, key in self.keys.items():
            if not KEY_ID.fullmatch(key_id) or len(key) != KEY_BYTES:
                raise ConfigError(f"encryption key {key_id!r}: an id of letters and digits, and 32 bytes")
        object.__setattr__(self, "_ciphers", {key_id: AESGCM(key) for key_id, key in self.keys.items()})

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        key_id = self.current.encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.current].encrypt(nonce, plaintext, aad)
        return bytes((VERSION, len(key_id))) + key_id + nonce + sealed

    def open(self, blob: bytes, aad: bytes) -> bytes:
        key_id, nonce, sealed = _parts(blob)
        key = self.keys.get(key_id)
        if key is None:
            raise DecryptionError(f"the encryption key {key_id!r} is not configured (ACCORD_ENCRYPTION_KEYS)")
        try:
            return self._ciphers[key_id].decrypt(nonce, sealed, aad)
        except InvalidTag as exc:
            raise DecryptionError("a value does not decrypt: altered, or moved from elsewhere") from exc

    def key_id_of(self, blob: bytes) -> str:
        return _parts(blob)[0]

    # Files: the same seal behind a magic prefix.

    def seal_file(self, data: bytes, name: str) -> bytes:
        return FILE_MAGIC + self.seal(data, b"file:" + name.encode())

    def open_file(self, stored: bytes, name: str) -> bytes:
        if not stored.startswith(FILE_MAGIC):
            return stored  # written before encryption was switched on
        return self.open(stored[len(FILE_MAGIC) :], b"file:" + name.encode())

    def file_key_id(self, stored: bytes) -> str | None:
        """The id of the key a stored file is sealed with; None for a file stored in the clear."""
        return self.key_id_of(stored[len(FILE_MAGIC) :]) if stored.startswith(FILE_MAGIC) else None


def _parts(blob: bytes) -> tuple[str, bytes, bytes]:
    if len(blob) < 2 or blob[0] != VERSION:
        raise DecryptionError("not a value sealed by Accord")
    end = 2 + blob[1]
    if len(blob) < end + NONCE_BYTES + 16:
        raise DecryptionError("a sealed value cut short")
    return blob[2:end].decode("ascii", "replace"), blob[end : end + NONCE_BYTES], blob[end + NONCE_BYTES :]


def new_key_text(key_id: str) -> str:
    """A fresh ``id:key`` for ``ACCORD_ENCRYPTION_KEYS``."""
    if not KEY_ID.fullmatch(key_id):
        raise ValueError("a key id is 1-32 letters, digits, '-' or '_'")
    return f"{key_id}:{base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()}"


def parse_keys(text: str) -> Keyring:
    """``id:key,id:key`` (the first current) as a keyring; ConfigError naming what is wrong."""
    keys: dict[str, bytes] = {}
    order: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key_id, colon, encoded = item.partition(":")
        if not colon or not KEY_ID.fullmatch(key_id):
            raise ConfigError("ACCORD_ENCRYPTION_KEYS: each key is id:base64 (flask crypto new-key)")
        try:
            key = base64.b64decode(encoded.encode(), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError(f"ACCORD_ENCRYPTION_KEYS: key {key_id!r} is not base64") from exc
        if len(key) != KEY_BYTES:
            raise ConfigError(f"ACCORD_ENCRYPTION_KEYS: key {key_id!r} must be 32 bytes, not {len(key)}")
        if key_id in keys:
            raise ConfigError(f"ACCORD_ENCRYPTION_KEYS: key id {key_id!r} appears twice")
        keys[key_id] = key
        order.append(key_id)
    if not order:
        raise ConfigError("ACCORD_ENCRYPTION_KEYS names no key")
    return Keyring(keys, order[0])


def keyring_from_config(config: Mapping[str, Any]) -> Keyring:
    text = config.get("ENCRYPTION_KEYS")
    if text:
        return parse_keys(text)
    if config.get("ACCORD_ENV") == "production":
        raise ConfigError("ACCORD_ENCRYPTION_KEYS must be set in production (flask crypto new-key)")
    return DEVELOPMENT_KEYRING


DEVELOPMENT_KEYRING = Keyring(
    {
        DEV_KEY_ID: HKDF(
            algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=b"accord development field key"
        ).derive(b"Accord development and tests only: this key is public, never for real people")
    },
    DEV_KEY_ID,
)
"""Outside production with no keys set (the demo's invented borrowers, the tests): one fixed key,
the same in every process — the web app, the workers, the migrations, a test's second app —
and public, since it is written here. Production refuses to start without keys of its own."""


def development_keys_text() -> str:
    """``DEVELOPMENT_KEYRING`` as an ``ACCORD_ENCRYPTION_KEYS`` value (a test of production's
    settings reads the data the other tests wrote)."""
    key = base64.urlsafe_b64encode(DEVELOPMENT_KEYRING.keys[DEV_KEY_ID]).decode()
    return f"{DEV_KEY_ID}:{key}"


# The keyring the column types use. SQLAlchemy's types live outside any request, so the keyring is
# installed once per process by create_app (and by the migrations' environment).
_keyring: Keyring | None = None


def install(keyring: Keyring) -> None:
    global _keyring  # noqa: PLW0603 - one keyring per process, set when the app is made
    _keyring = keyring


def installed() -> bool:
    return _keyring is not None


def keyring() -> Keyring:
    if _keyring is None:
        raise RuntimeError("no encryption keyring installed: create the app (portal.create_app) first")
    return _keyring


# --- Column types ---------------------------------------------------------------------------------


class Encrypted(TypeDecorator[Any]):
    """A column stored as a sealed value (bytes) and read back as its Python value.

    Nothing can be compared or sorted in SQL but ``IS NULL``: each value has its own nonce, so the
    same date of birth is sealed differently every time. Code that must match such a value reads
    the candidates and compares in Python (``borrower_signin``)."""

    impl = LargeBinary
    cache_ok = True

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where
        self.aad = where.encode()

    def encode(self, value: Any) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> Any:
        raise NotImplementedError

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        return keyring().seal(self.encode(value), self.aad)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return self.decode(keyring().open(bytes(value), self.aad))


class EncryptedText(Encrypted):
    cache_ok = True

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise TypeError(f"{self.where} holds text, not {type(value).__name__}")
        return value.encode()

    def decode(self, data: bytes) -> str:
        return data.decode()


class EncryptedDate(Encrypted):
    cache_ok = True

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
            raise TypeError(f"{self.where} holds a date, not {type(value).__name__}")
        return value.isoformat().encode()

    def decode(self, data: bytes) -> dt.date:
        return dt.date.fromisoformat(data.decode())


class EncryptedInteger(Encrypted):
    cache_ok = True

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{self.where} holds an integer, not {type(value).__name__}")
        return str(value).encode()

    def decode(self, data: bytes) -> int:
        return int(data.decode())


def encrypted_columns(metadata: Any) -> Sequence[Any]:
    """Every column of ``metadata`` held encrypted, in a stable order."""
    return [
        column
        for table in metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, Encrypted)
    ]
