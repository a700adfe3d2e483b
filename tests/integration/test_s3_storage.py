"""Files in an S3 bucket behave as files on disk: the same tests run against the local directory
and against moto's S3 server (started once per test process), and an app whose files live in the
bucket keeps a borrower's evidence there and shows it to staff."""

from __future__ import annotations

import hashlib
import io
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from moto.server import ThreadedMotoServer
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import crypto
from portal.config import ConfigError, load_config
from portal.extensions import db
from portal.integrations import storage as storage_module
from portal.integrations.storage import (
    LocalStorage,
    S3Storage,
    Storage,
    StorageKeyError,
    document_storage_from_config,
    s3_client,
    storage_from_config,
)
from portal.models import EvidenceFile
from tests import factories
from tests.conftest import sign_in
from workflows.access import Role

BUCKET = "accord-test-files"
REGION = "us-east-1"
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
KEY = re.compile(r"[0-9a-f]{32}\.pdf")


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[str]:
    """moto's S3 server on a free local port, with one bucket; yields its endpoint URL. boto3
    finds the (dummy) credentials where it finds real ones: in the AWS_* environment variables."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3_client(endpoint, REGION).create_bucket(Bucket=BUCKET)
        yield endpoint
        server.stop()


def s3_config(endpoint: str, **more: object) -> dict[str, Any]:
    """Settings of an S3-backed store with a prefix of its own, so no two tests share objects."""
    return {
        "STORAGE_BACKEND": "s3",
        "S3_BUCKET": BUCKET,
        "S3_PREFIX": f"test-{uuid.uuid4().hex}",
        "S3_ENDPOINT_URL": endpoint,
        "S3_REGION": REGION,
        **more,
    }


def _objects(endpoint: str, prefix: str) -> dict[str, bytes]:
    """Every object in the bucket whose name starts with ``prefix``, opened: each is sealed
    (portal.crypto), under the development key, with its storage key bound in."""
    client = s3_client(endpoint, REGION)
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    opened = {}
    for item in listing:
        sealed = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        assert sealed.startswith(crypto.FILE_MAGIC), f"{item['Key']} is stored in the clear"
        opened[item["Key"]] = crypto.DEVELOPMENT_KEYRING.open_file(sealed, item["Key"].rsplit("/", 1)[-1])
    return opened


@dataclass
class Backend:
    """A store under test, a way to put bytes under a key behind its back, and the requests it
    sent to the object store (none, for the local directory)."""

    store: Storage
    plant: Callable[[str, bytes], None]
    requests: list[str] = field(default_factory=list)


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        local = storage_from_config({"INSTANCE_PATH": str(tmp_path)})
        assert isinstance(local, LocalStorage)

        def plant_file(key: str, data: bytes) -> None:
            (local.root / key[:2]).mkdir(parents=True, exist_ok=True)
            (local.root / key[:2] / key).write_bytes(data)

        yield Backend(local, plant_file)
        return
    store = storage_from_config(s3_config(request.getfixturevalue("moto_s3"), INSTANCE_PATH=str(tmp_path)))
    assert isinstance(store, S3Storage)
    sent: list[str] = []

    def record(request: Any, **_: object) -> None:
        sent.append(f"{request.method} {request.url}")

    def plant_object(key: str, data: bytes) -> None:
        store.client.put_object(Bucket=store.bucket, Key=f"{store.prefix}{key}", Body=data)

    store.client.meta.events.register("before-send.s3", record)
    try:
        yield Backend(store, plant_object, sent)
    finally:
        store.client.meta.events.unregister("before-send.s3", record)


# ---- the same behaviour on both backends -------------------------------------------------------


def test_a_stored_file_comes_back_under_a_random_key(backend: Backend) -> None:
    store = backend.store
    keys = [store.put(PDF, suffix=".pdf") for _ in range(5)]
    assert len(set(keys)) == 5
    assert all(KEY.fullmatch(key) for key in keys)
    assert all(store.exists(key) and store.open(key) == PDF for key in keys)
    assert re.fullmatch(r"[0-9a-f]{32}\.jpeg", store.put(b"\xff\xd8", suffix="jpeg"))


def test_the_same_bytes_stored_by_content_keep_one_address(backend: Backend) -> None:
    first = backend.store.put_content(PDF, suffix=".pdf")
    again = backend.store.put_content(PDF, suffix="pdf")
    assert first == again == f"{hashlib.sha256(PDF).hexdigest()}.pdf"
    assert backend.store.open(first) == PDF


def test_other_bytes_under_a_content_address_are_refused_and_left_alone(backend: Backend) -> None:
    address = f"{hashlib.sha256(PDF).hexdigest()}.pdf"
    backend.plant(address, b"forged")
    with pytest.raises(StorageKeyError, match="differ from their address"):
        backend.store.put_content(PDF, suffix=".pdf")
    assert backend.store.open(address) == b"forged"


def test_a_random_key_already_taken_is_drawn_again_never_overwritten(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken, fresh = "0" * 32 + ".pdf", "1" * 32 + ".pdf"
    backend.plant(taken, b"first")
    drawn = iter([taken, fresh])
    monkeypatch.setattr(storage_module, "new_key", lambda suffix: next(drawn))
    assert backend.store.put(b"second", suffix=".pdf") == fresh
    assert backend.store.open(taken) == b"first"
    assert backend.store.open(fresh) == b"second"


@pytest.mark.parametrize(
    "key",
    [
        "../../etc/passwd",
        "",
        "payslip.pdf",
        "0123456789abcdef0123456789abcdef/../x.pdf",
        "0123456789ABCDEF0123456789ABCDEF.pdf",
        "0123456789abcdef0123456789abcdef.pdf\n",
        "?list-type=2",
    ],
    ids=repr,
)
def test_keys_the_store_did_not_make_are_refused_before_any_request(backend: Backend, key: str) -> None:
    for operation in (backend.store.open, backend.store.exists, backend.store.delete):
        with pytest.raises(StorageKeyError):
            operation(key)
    for suffix in ("", "/../x", ".PDF", "pdf\n"):
        with pytest.raises(ValueError, match="suffix"):
            backend.store.put(PDF, suffix=suffix)
        with pytest.raises(ValueError, match="suffix"):
            backend.store.put_content(PDF, suffix=suffix)
    assert backend.requests == []


def test_deleting_twice_is_no_error_and_the_file_is_gone(backend: Backend) -> None:
    key = backend.store.put(PDF, suffix=".pdf")
    backend.store.delete(key)
    backend.store.delete(key)
    assert not backend.store.exists(key)
    with pytest.raises(FileNotFoundError):
        backend.store.open(key)


def test_a_key_never_stored_is_missing(backend: Backend) -> None:
    key = "ab" * 16 + ".pdf"
    assert not backend.store.exists(key)
    with pytest.raises(FileNotFoundError):
        backend.store.open(key)


# ---- what only the bucket has -------------------------------------------------------------------


def test_evidence_and_documents_are_kept_apart_under_the_prefix(moto_s3: str, tmp_path: Path) -> None:
    config = s3_config(moto_s3, INSTANCE_PATH=str(tmp_path))
    prefix = config["S3_PREFIX"]
    evidence = storage_from_config(config)
    documents = document_storage_from_config({**config, "S3_PREFIX": f"/{prefix}/"})  # slashes trimmed
    key = evidence.put(PDF, suffix=".pdf")
    address = documents.put_content(PDF, suffix=".pdf")
    assert _objects(moto_s3, prefix) == {
        f"{prefix}/evidence/{key}": PDF,
        f"{prefix}/documents/{address}": PDF,
    }
    assert not evidence.exists(address) and not documents.exists(key)
    assert list(tmp_path.iterdir()) == []  # nothing on the local disk


def test_server_side_encryption_is_asked_for_when_configured(moto_s3: str) -> None:
    encrypted = storage_from_config(s3_config(moto_s3, S3_SERVER_SIDE_ENCRYPTION="AES256"))
    plain = storage_from_config(s3_config(moto_s3))
    assert isinstance(encrypted, S3Storage) and isinstance(plain, S3Storage)
    for store, expected in ((encrypted, "AES256"), (plain, None)):
        for key in (store.put(PDF, suffix=".pdf"), store.put_content(PDF, suffix=".pdf")):
            head = store.client.head_object(Bucket=BUCKET, Key=f"{store.prefix}{key}")
            assert head.get("ServerSideEncryption") == expected


def test_the_settings_come_from_accord_environment_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in {
        "STORAGE_BACKEND": "s3",
        "S3_BUCKET": "accord-files",
        "S3_PREFIX": "production",
        "S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "S3_REGION": "cn-north-1",
        "S3_SERVER_SIDE_ENCRYPTION": "aws:kms",
    }.items():
        monkeypatch.setenv(f"ACCORD_{name}", value)
    config = load_config({"ACCORD_ENV": "test", "SECRET_KEY": "x", "INSTANCE_PATH": str(tmp_path)})
    store = storage_from_config(config)
    assert isinstance(store, S3Storage)
    assert (store.bucket, store.prefix, store.server_side_encryption) == (
        "accord-files",
        "production/evidence/",
        "aws:kms",
    )
    assert store.client.meta.endpoint_url == "http://127.0.0.1:9"
    assert store.client.meta.region_name == "cn-north-1"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"STORAGE_BACKEND": "s3"}, "ACCORD_STORAGE_BACKEND=s3 needs ACCORD_S3_BUCKET"),
        ({"STORAGE_BACKEND": "s3", "S3_BUCKET": ""}, "ACCORD_STORAGE_BACKEND=s3 needs ACCORD_S3_BUCKET"),
        ({"STORAGE_BACKEND": "gcs"}, "ACCORD_STORAGE_BACKEND must be local or s3"),
        (
            {"S3_SERVER_SIDE_ENCRYPTION": "aes256"},
            "ACCORD_S3_SERVER_SIDE_ENCRYPTION must be AES256 or aws:kms",
        ),
    ],
    ids=["no_bucket", "empty_bucket", "unknown_backend", "unknown_encryption"],
)
def test_an_app_is_not_made_with_storage_settings_it_cannot_use(
    make_app: Callable[..., Flask], settings: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_app(**settings)


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "teal").save(buffer, "PNG")
    return buffer.getvalue()


def test_an_app_on_s3_keeps_a_borrowers_evidence_in_the_bucket_and_shows_it_to_staff(
    make_app: Callable[..., Flask], app: Flask, database_url: str, session: Session, moto_s3: str
) -> None:
    config = s3_config(moto_s3)
    on_s3 = make_app(DATABASE_URL=database_url, WTF_CSRF_ENABLED=False, TESTING=True, **config)
    db.bound(on_s3).session_factory = db.bound(app).session_factory  # this test's transaction
    account = factories.account(session)
    case = factories.hardship_case(session, account, state="draft")

    borrower = sign_in(on_s3.test_client(), account.borrower)
    uploaded = borrower.post(
        f"/help/{case.id}/evidence",
        data={"action": "upload", "file": (io.BytesIO(_png()), "scan.png")},
        content_type="multipart/form-data",
    )

    assert uploaded.status_code == 302
    [evidence] = session.scalars(select(EvidenceFile).where(EvidenceFile.hardship_case_id == case.id))
    stored = _objects(moto_s3, config["S3_PREFIX"])
    assert list(stored) == [f"{config['S3_PREFIX']}/evidence/{evidence.storage_key}"]
    [data] = stored.values()
    assert data.startswith(b"\x89PNG") and hashlib.sha256(data).hexdigest() == evidence.sha256
    assert not (Path(on_s3.config["INSTANCE_PATH"]) / "evidence").exists()

    agent = sign_in(on_s3.test_client(), factories.staff(session, role=Role.AGENT))
    shown = agent.get(f"/staff/cases/{case.id}/evidence/{evidence.id}")
    assert shown.status_code == 200
    assert shown.data == data


def test_a_file_stored_in_the_clear_is_read_and_sealed_by_rewrite(backend: Backend) -> None:
    """Files stored before encryption was switched on still open; ``rewrite`` (``flask crypto
    rotate``) seals them — replacing the object only if it is still the one read — and leaves a
    file already sealed with the current key alone."""
    store = backend.store
    legacy = "ab" * 16 + ".pdf"
    backend.plant(legacy, PDF)
    sealed = store.put(PDF, suffix=".pdf")
    assert store.raw(legacy) == PDF and store.open(legacy) == PDF
    assert sorted(store.stored_keys()) == sorted([legacy, sealed])
    assert store.rewrite(legacy) is True
    assert store.raw(legacy).startswith(crypto.FILE_MAGIC) and PDF not in store.raw(legacy)
    assert store.open(legacy) == PDF
    assert store.rewrite(legacy) is False and store.rewrite(sealed) is False
