"""Where uploaded files live: the ``Storage`` interface and its local-directory implementation.

A file is stored under a random key (``<32 hex digits><suffix>``, e.g. ``3f9c…e1.pdf``) that owes
nothing to the name the borrower gave; the database keeps the key next to the display name. Keys of
any other shape are refused before they come near a path, so no key can walk out of the store.

``LocalStorage`` keeps files in a directory outside ``static/`` (by default ``instance/evidence``),
directories 0700 and files 0600, each written to a temporary file and renamed into place, so a
reader sees a whole file or none. Several web hosts share it only through a shared mount; another
implementation (an object store) can take its place behind the same interface.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from portal.config import ROOT, ConfigError

KEY_PATTERN = re.compile(r"\A(?:[0-9a-f]{32}|[0-9a-f]{64})\.[a-z0-9]{1,8}\Z")
"""A random key (32 hex digits) or a content address (the SHA-256 of the bytes, 64 hex digits)."""
SUFFIX_PATTERN = re.compile(r"\A\.?[a-z0-9]{1,8}\Z")
STATIC_DIR = ROOT / "static"


class StorageKeyError(ValueError):
    """A key that this store could not have made: refused before it is turned into a path."""


class Storage(Protocol):
    def put(self, data: bytes, *, suffix: str) -> str:
        """Store ``data`` under a new random key ending in ``suffix`` (".pdf" or "pdf"); return the key."""
        ...

    def open(self, key: str) -> bytes:
        """The bytes stored under ``key``; FileNotFoundError if there are none."""
        ...

    def delete(self, key: str) -> None:
        """Forget ``key``; nothing happens if it is already gone."""
        ...

    def exists(self, key: str) -> bool: ...

    def put_content(self, data: bytes, *, suffix: str) -> str:
        """Store ``data`` under its own SHA-256 (a content address); storing the same bytes again
        changes nothing, and a file is never overwritten with other bytes."""
        ...


def new_key(suffix: str) -> str:
    if not SUFFIX_PATTERN.match(suffix):
        raise ValueError(f"a storage suffix is 1-8 lower-case letters or digits, not {suffix!r}")
    return f"{secrets.token_hex(16)}.{suffix.removeprefix('.')}"


def check_key(key: str) -> str:
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise StorageKeyError(f"not a storage key: {key!r}")
    return key


class LocalStorage:
    """Files in a local directory, fanned out by the first two hex digits of the key."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        check_key(key)
        return self.root / key[:2] / key

    def _directory(self, path: Path) -> None:
        for directory in (self.root, path):
            if not directory.is_dir():
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                directory.chmod(0o700)

    def put(self, data: bytes, *, suffix: str) -> str:
        key = new_key(suffix)
        path = self._path(key)
        while path.exists():  # 128 random bits: never, but a store must not overwrite
            key = new_key(suffix)
            path = self._path(key)
        self._write(path, data)
        return key

    def put_content(self, data: bytes, *, suffix: str) -> str:
        new_key(suffix)  # the suffix rules
        key = f"{hashlib.sha256(data).hexdigest()}.{suffix.removeprefix('.')}"
        path = self._path(key)
        if path.is_file():
            if hashlib.sha256(path.read_bytes()).hexdigest() != key[:64]:
                raise StorageKeyError(f"stored bytes under {key} differ from their address")
            return key
        self._write(path, data)
        return key

    def _write(self, path: Path, data: bytes) -> None:
        self._directory(path.parent)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-", suffix=".part")  # 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        _fsync_directory(path.parent)

    def open(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (where the platform allows opening a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def evidence_directory(config: Mapping[str, Any]) -> Path:
    """``EVIDENCE_DIR`` from the app config, else ``<INSTANCE_PATH>/evidence``; never under static/."""
    directory = Path(config.get("EVIDENCE_DIR") or Path(config["INSTANCE_PATH"]) / "evidence").resolve()
    if directory.is_relative_to(STATIC_DIR.resolve()):
        raise ConfigError(f"the evidence directory must not be served as static files: {directory}")
    return directory


def storage_from_config(config: Mapping[str, Any]) -> Storage:
    return LocalStorage(evidence_directory(config))


def document_storage_from_config(config: Mapping[str, Any]) -> Storage:
    """Agreements (as generated and as signed): ``DOCUMENT_DIR``, else ``<INSTANCE_PATH>/documents``."""
    directory = Path(config.get("DOCUMENT_DIR") or Path(config["INSTANCE_PATH"]) / "documents").resolve()
    if directory.is_relative_to(STATIC_DIR.resolve()):
        raise ConfigError(f"the document directory must not be served as static files: {directory}")
    return LocalStorage(directory)
