"""Where files live: the ``Storage`` interface, on a local directory or in an S3 bucket.

A file is stored under a random key (``<32 hex digits><suffix>``, e.g. ``3f9c…e1.pdf``) that owes
nothing to the name the borrower gave; the database keeps the key next to the display name. Keys of
any other shape are refused before they come near a path or a request, so no key can walk out of
the store.

``LocalStorage`` keeps files in a directory outside ``static/`` (by default ``instance/evidence``),
directories 0700 and files 0600, each written to a temporary file and renamed into place, so a
reader sees a whole file or none. Several web hosts share it only through a shared mount.

``S3Storage`` keeps the same keys as objects in an S3 bucket, or in any S3-compatible store at an
endpoint of its own, so any number of web hosts and workers share the files without a shared disk.
``ACCORD_STORAGE_BACKEND`` chooses between them (``storage_from_config``).

Both seal every file with AES-256-GCM under the keyring of ``portal.crypto`` before it leaves the
process (the storage key is the associated data, so sealed bytes moved under another key do not
open) and open it on reading; a file stored before encryption was switched on is still read, and
``rewrite`` seals it — or a file sealed with an old key — with the current key (``flask crypto
rotate``). A content address is the SHA-256 of the plain bytes, as before.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore.client import BaseClient
from botocore.config import Config as BotocoreConfig
from botocore.exceptions import ClientError

from portal import crypto
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

    def stored_keys(self) -> Iterator[str]:
        """Every key stored (for rotation and retention)."""
        ...

    def raw(self, key: str) -> bytes:
        """The bytes as stored (sealed), for ``flask crypto status`` and the tests."""
        ...

    def rewrite(self, key: str) -> bool:
        """Seal the file under ``key`` with the current encryption key if it is not already; True
        if it was rewritten."""
        ...

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


class _Sealing:
    """Sealing and opening of the stored bytes, shared by the stores (no keyring: stored as given)."""

    keyring: crypto.Keyring | None

    def _seal(self, key: str, data: bytes) -> bytes:
        return self.keyring.seal_file(data, key) if self.keyring is not None else data

    def _unseal(self, key: str, stored: bytes) -> bytes:
        return self.keyring.open_file(stored, key) if self.keyring is not None else stored

    def _stale(self, stored: bytes) -> bool:
        """Stored in the clear or under an old key: ``rewrite`` seals it again."""
        return self.keyring is not None and self.keyring.file_key_id(stored) != self.keyring.current


class LocalStorage(_Sealing):
    """Files in a local directory, fanned out by the first two hex digits of the key."""

    def __init__(self, root: Path | str, *, keyring: crypto.Keyring | None = None) -> None:
        self.root = Path(root)
        self.keyring = keyring

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
        self._write(path, self._seal(key, data))
        return key

    def put_content(self, data: bytes, *, suffix: str) -> str:
        new_key(suffix)  # the suffix rules
        key = f"{hashlib.sha256(data).hexdigest()}.{suffix.removeprefix('.')}"
        path = self._path(key)
        if path.is_file():
            if hashlib.sha256(self.open(key)).hexdigest() != key[:64]:
                raise StorageKeyError(f"stored bytes under {key} differ from their address")
            return key
        self._write(path, self._seal(key, data))
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
        return self._unseal(key, self._path(key).read_bytes())

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def stored_keys(self) -> Iterator[str]:
        if self.root.is_dir():
            for path in sorted(self.root.glob("??/*")):
                if KEY_PATTERN.match(path.name) and path.is_file():
                    yield path.name

    def raw(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def rewrite(self, key: str) -> bool:
        path = self._path(key)
        stored = path.read_bytes()
        if not self._stale(stored):
            return False
        self._write(path, self._seal(key, self._unseal(key, stored)))  # replaced whole, atomically
        return True


class S3Storage(_Sealing):
    """Files as objects in an S3 bucket (or an S3-compatible store), each named ``<prefix><key>``.

    Keys obey the same rules as on disk and are checked before any request is sent. Every write is
    one PUT of the whole body, so a reader sees a whole object or none, and is conditional
    (``If-None-Match: *``): an object is never replaced. A random key that is somehow taken is drawn
    again; a content address that is already there is read back and its bytes checked, not
    rewritten. Two writers of the same bytes at the same instant may see S3 refuse one of them
    (409, "try again"), which fails that write like any other error of the store.

    A missing object is ``FileNotFoundError`` only when the credentials may list the bucket
    (``s3:ListBucket``); without that S3 answers "access denied" for a missing key, and so does this.
    """

    def __init__(
        self,
        client: BaseClient,
        bucket: str,
        *,
        prefix: str = "",
        server_side_encryption: str | None = None,
        keyring: crypto.Keyring | None = None,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.server_side_encryption = server_side_encryption
        self.keyring = keyring

    def _name(self, key: str) -> str:
        return f"{self.prefix}{check_key(key)}"

    def put(self, data: bytes, *, suffix: str) -> str:
        key = new_key(suffix)
        while not self._create(key, data):  # 128 random bits: never, but a store must not overwrite
            key = new_key(suffix)
        return key

    def put_content(self, data: bytes, *, suffix: str) -> str:
        new_key(suffix)  # the suffix rules
        key = f"{hashlib.sha256(data).hexdigest()}.{suffix.removeprefix('.')}"
        if not self._create(key, data) and hashlib.sha256(self.open(key)).hexdigest() != key[:64]:
            raise StorageKeyError(f"stored bytes under {key} differ from their address")
        return key

    def _create(self, key: str, data: bytes) -> bool:
        """Write a new object under ``key``; False, writing nothing, if the key is taken."""
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._name(key),
                Body=self._seal(key, data),
                IfNoneMatch="*",
                **self._server_side(),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                return False
            raise
        return True

    def _server_side(self) -> dict[str, str]:
        return {"ServerSideEncryption": self.server_side_encryption} if self.server_side_encryption else {}

    def _get(self, key: str) -> tuple[bytes, str]:
        """The stored (sealed) bytes and their ETag."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchKey":
                raise FileNotFoundError(f"no stored file under {key}") from exc
            raise
        with contextlib.closing(response["Body"]) as body:
            data: bytes = body.read()
        return data, response["ETag"]

    def open(self, key: str) -> bytes:
        return self._unseal(key, self._get(key)[0])

    def raw(self, key: str) -> bytes:
        return self._get(key)[0]

    def stored_keys(self) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"][len(self.prefix) :]
                if KEY_PATTERN.match(name):
                    yield name

    def rewrite(self, key: str) -> bool:
        stored, etag = self._get(key)
        if not self._stale(stored):
            return False
        # Replaced only if it is still the object just read (If-Match): a file is never lost.
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._name(key),
            Body=self._seal(key, self._unseal(key, stored)),
            IfMatch=etag,
            **self._server_side(),
        )
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))  # a missing key is no error

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return False
            raise
        return True


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
    """Evidence files: under ``evidence/`` (after ``S3_PREFIX``) in the bucket when
    ``STORAGE_BACKEND`` is ``s3``, else in the evidence directory."""
    if config.get("STORAGE_BACKEND") == "s3":
        return s3_storage_from_config(config, "evidence")
    return LocalStorage(evidence_directory(config), keyring=_keyring(config))


def document_storage_from_config(config: Mapping[str, Any]) -> Storage:
    """Agreements (as generated and as signed) and other documents Accord makes: under
    ``documents/`` (after ``S3_PREFIX``) in the bucket when ``STORAGE_BACKEND`` is ``s3``, else
    ``DOCUMENT_DIR``, by default ``<INSTANCE_PATH>/documents``."""
    if config.get("STORAGE_BACKEND") == "s3":
        return s3_storage_from_config(config, "documents")
    directory = Path(config.get("DOCUMENT_DIR") or Path(config["INSTANCE_PATH"]) / "documents").resolve()
    if directory.is_relative_to(STATIC_DIR.resolve()):
        raise ConfigError(f"the document directory must not be served as static files: {directory}")
    return LocalStorage(directory, keyring=_keyring(config))


def s3_storage_from_config(config: Mapping[str, Any], area: str) -> S3Storage:
    """The objects of one ``area`` ("evidence", "documents") in ``S3_BUCKET``, named
    ``<S3_PREFIX>/<area>/<key>`` (``load_config`` has made sure the bucket is named)."""
    prefix = (config.get("S3_PREFIX") or "").strip("/")
    return S3Storage(
        s3_client(config.get("S3_ENDPOINT_URL"), config.get("S3_REGION")),
        config["S3_BUCKET"],
        prefix=f"{prefix}/{area}/" if prefix else f"{area}/",
        server_side_encryption=config.get("S3_SERVER_SIDE_ENCRYPTION"),
        keyring=_keyring(config),
    )


def _keyring(config: Mapping[str, Any]) -> crypto.Keyring:
    return _cached_keyring(config.get("ENCRYPTION_KEYS"), config.get("ACCORD_ENV"))


@functools.lru_cache(maxsize=8)
def _cached_keyring(keys: str | None, env: str | None) -> crypto.Keyring:
    return crypto.keyring_from_config({"ENCRYPTION_KEYS": keys, "ACCORD_ENV": env})


@functools.cache
def s3_client(endpoint_url: str | None, region: str | None) -> BaseClient:
    """One S3 client per endpoint and region for the whole process: clients are thread-safe and
    costly to make (each is made from a session of its own, since boto3's default session is not
    thread-safe). Credentials come from boto3's own chain (``AWS_ACCESS_KEY_ID`` and
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, an instance or task role), never from Accord's
    settings. A request waits at most 5 s to connect and 30 s for an answer, and is retried."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        config=BotocoreConfig(
            connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 3}
        ),
    )
