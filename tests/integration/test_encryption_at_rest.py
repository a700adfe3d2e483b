"""Personal data sealed at rest: a dump of the database and the file store holds none of it in
plain text — placed through a file (COPY on PostgreSQL), entered by a borrower, or uploaded — while
the application reads it as before; keys rotate; the migration seals what was stored before.

These tests commit, so they work in a scratch database of their own (a file on SQLite, a database
``<test database>_sealed`` on PostgreSQL), migrated from nothing."""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import subprocess  # nosec B404 - pg_dump, with arguments of our own
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from flask import Flask
from sqlalchemy import LargeBinary, bindparam, create_engine, select, text, type_coerce
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from portal import create_app, crypto
from portal.extensions import db
from portal.integrations.storage import document_storage_from_config, storage_from_config
from portal.migrations import alembic_config
from portal.models import AuditEvent, Borrower, BudgetLine, HardshipCase
from portal.services import encryption, placements
from portal.services.audit import SYSTEM
from tests import factories
from workflows.personal_data import REDACTED

DATA = Path(__file__).resolve().parent.parent / "data" / "placements"
PLACED_ID, PLACED_BORN = "110101198503150011", "1985-03-15"  # in good.csv
TYPED_ID, TYPED_BORN = "A-ZX-4477-ID-9183", dt.date(1971, 8, 29)
DESCRIPTION = "My wife is in hospital with cancer, description-marker-7731"
EXPLANATION = "Chemotherapy travel, explanation-marker-5529"
AMOUNT = 987_654_321
EVIDENCE = b"%PDF-1.7 evidence-marker-3319 a hospital letter"
SECRETS = [
    PLACED_ID,
    PLACED_BORN,
    TYPED_ID,
    TYPED_BORN.isoformat(),
    "description-marker-7731",
    "explanation-marker-5529",
]


@pytest.fixture(scope="module")
def scratch(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sealed') / 'sealed.db'}"
        return
    name = f"{url.database}_sealed"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def sealed_app(scratch: str, tmp_path_factory: pytest.TempPathFactory, app: Flask) -> Iterator[Flask]:
    command.upgrade(alembic_config(scratch), "head")
    extra = create_app(
        {
            "ACCORD_ENV": "test",
            "DATABASE_URL": scratch,
            "SECRET_KEY": "sealed",
            "INSTANCE_PATH": str(tmp_path_factory.mktemp("sealed-instance")),
        }
    )
    yield extra
    db.bound(extra).dispose()
    crypto.install(crypto.DEVELOPMENT_KEYRING)


def _session(app: Flask) -> Session:
    return db.bound(app).session_factory()


def _fill(app: Flask) -> int:
    """Personal data in by every road: a placement file, the ORM, an uploaded file. The case id."""
    with app.app_context():
        session = _session(app)
        creditor = factories.creditor(session)
        session.commit()
        record = placements.import_file(
            session,
            creditor_id=creditor.id,
            path=DATA / "good.csv",
            filename="good.csv",
            source="cli",
            actor=SYSTEM,
            dry_run=False,
            today=dt.date(2026, 12, 1),
            max_rows=1000,
        )
        assert record.status == "applied", record.error_message
        borrower = factories.borrower(session, national_id=TYPED_ID, date_of_birth=TYPED_BORN)
        case = factories.hardship_case(session, factories.account(session, owner=borrower))
        case.description = DESCRIPTION
        case.budget_lines.append(
            BudgetLine(category="rent", amount=AMOUNT, frequency="monthly", explanation=EXPLANATION)
        )
        session.commit()
        storage_from_config(app.config).put(EVIDENCE, suffix=".pdf")
        case_id = case.id
        session.close()
        return case_id


def _dump(url: str) -> bytes:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(str(parsed.database))
        connection = sqlite3.connect(path)
        connection.execute("PRAGMA wal_checkpoint(FULL)")
        dumped = "\n".join(connection.iterdump()).encode()
        connection.close()
        return path.read_bytes() + dumped
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "pg_dump is needed for this test (Debian's postgresql-client)"
    return subprocess.run(  # noqa: S603  # nosec B603
        [
            pg_dump,
            "--no-owner",
            "-h",
            parsed.host or "127.0.0.1",
            "-p",
            str(parsed.port or 5432),
            "-U",
            parsed.username or "postgres",
            str(parsed.database),
        ],
        check=True,
        capture_output=True,
    ).stdout


def test_a_dump_of_the_database_and_the_store_holds_no_personal_data_in_plain_text(
    sealed_app: Flask, scratch: str
) -> None:
    case_id = _fill(sealed_app)
    dump = _dump(scratch)
    assert b"borrower" in dump and len(dump) > 10_000  # a dump of this database, not of nothing
    for secret in SECRETS:
        assert secret.encode() not in dump, f"{secret!r} is in the dump in plain text"
    assert str(AMOUNT).encode() not in dump
    for directory in (Path(sealed_app.config["EVIDENCE_DIR"]), Path(sealed_app.config["DOCUMENT_DIR"])):
        for path in directory.rglob("*.*"):
            stored = path.read_bytes()
            assert stored.startswith(crypto.FILE_MAGIC) and b"evidence-marker-3319" not in stored

    # … and the application reads it all as before.
    with sealed_app.app_context():
        session = _session(sealed_app)
        placed = session.scalars(select(Borrower).where(Borrower.external_reference == "C-001")).one()
        assert (placed.national_id, placed.date_of_birth) == (PLACED_ID, dt.date(1985, 3, 15))
        case = session.get(HardshipCase, case_id)
        assert case is not None and case.description == DESCRIPTION
        rent = next(line for line in case.budget_lines if line.category == "rent")
        assert (rent.amount, rent.explanation) == (AMOUNT, EXPLANATION)
        # The audit trail says these were set, never what they are.
        placed_event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "borrower.placed").order_by(AuditEvent.id)
        ).first()
        assert placed_event is not None and placed_event.after is not None
        assert placed_event.after["national_id"] == REDACTED
        assert placed_event.after["date_of_birth"] == REDACTED
        session.close()
    store = storage_from_config(sealed_app.config)
    assert [store.open(key) for key in store.stored_keys()] == [EVIDENCE]


def test_a_sealed_value_copied_into_another_row_column_does_not_open(sealed_app: Flask) -> None:
    with sealed_app.app_context():
        session = _session(sealed_app)
        first, second = session.scalars(select(Borrower.id).order_by(Borrower.id).limit(2)).all()
        raw = type_coerce(Borrower.date_of_birth, LargeBinary)
        stolen = session.scalar(select(raw).where(Borrower.id == first))
        # Into the identity number of the same table: the associated data names the column.
        session.execute(
            text("UPDATE borrower SET national_id = :v WHERE id = :id").bindparams(
                bindparam("v", type_=LargeBinary)
            ),
            {"v": stolen, "id": second},
        )
        with pytest.raises(crypto.DecryptionError):
            session.scalar(select(Borrower.national_id).where(Borrower.id == second))
        session.rollback()
        session.close()


def test_keys_rotate_and_an_old_key_can_then_be_dropped(sealed_app: Flask) -> None:
    stores = {
        "evidence": storage_from_config(sealed_app.config),
        "documents": document_storage_from_config(sealed_app.config),
    }
    new = crypto.parse_keys(crypto.new_key_text("k2027")).keys["k2027"]
    both = crypto.Keyring({"k2027": new, crypto.DEV_KEY_ID: crypto.DEVELOPMENT_KEYRING.keys["dev"]}, "k2027")
    for store in stores.values():
        store.keyring = both  # type: ignore[attr-defined]
    with sealed_app.app_context():
        session = _session(sealed_app)
        before = {(b.id): (b.national_id, b.date_of_birth) for b in session.scalars(select(Borrower))}
        crypto.install(both)
        old = encryption.status(session, stores)
        assert (
            old.columns["borrower.national_id"]["dev"] >= 2
            and "k2027" not in old.columns["borrower.national_id"]
        )
        assert old.files["evidence"] == {"dev": 1}

        rotated = encryption.rotate(session, stores, actor=SYSTEM, batch=2)
        assert rotated.columns["borrower.national_id"] == old.columns["borrower.national_id"]["dev"]
        assert rotated.files["evidence"] == 1
        now = encryption.status(session, stores)
        assert all(set(counts) <= {"k2027"} for counts in now.columns.values())
        assert all(set(counts) <= {"k2027"} for counts in now.files.values())
        assert encryption.rotate(session, stores, actor=SYSTEM).columns["borrower.national_id"] == 0

        # The development key is no longer needed: everything opens with the new key alone.
        alone = crypto.Keyring({"k2027": new}, "k2027")
        crypto.install(alone)
        for store in stores.values():
            store.keyring = alone  # type: ignore[attr-defined]
        session.expire_all()
        assert {b.id: (b.national_id, b.date_of_birth) for b in session.scalars(select(Borrower))} == before
        assert [stores["evidence"].open(key) for key in stores["evidence"].stored_keys()] == [EVIDENCE]
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "encryption.rotated").order_by(AuditEvent.id)
        ).first()
        assert event is not None and event.object_id == "k2027"
        session.close()
    crypto.install(crypto.DEVELOPMENT_KEYRING)


def test_the_migration_seals_values_stored_before_it_and_the_downgrade_opens_them(
    tmp_path: Path, database_url: str
) -> None:
    if make_url(database_url).get_backend_name() != "sqlite":
        pytest.skip("the same migration code runs on PostgreSQL in test_migrations' round trip")
    url = f"sqlite:///{tmp_path / 'before.db'}"
    cfg = alembic_config(url)
    command.upgrade(cfg, "7d41c2e9a5b3")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO borrower (kind, full_name, date_of_birth, national_id, language, time_zone,"
                " country, session_version, created_at) VALUES ('person', 'Li Lei', '1969-02-03',"
                " 'OLD-ID-55821', 'zh_Hans_CN', 'Asia/Shanghai', 'CN', 1, '2026-01-01 00:00:00')"
            )
        )
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        born, national = conn.execute(text("SELECT date_of_birth, national_id FROM borrower")).one()
    assert isinstance(born, bytes) and b"1969" not in born and b"OLD-ID-55821" not in national
    ring = crypto.DEVELOPMENT_KEYRING
    assert ring.open(born, b"borrower.date_of_birth") == b"1969-02-03"
    assert ring.open(national, b"borrower.national_id") == b"OLD-ID-55821"
    command.downgrade(cfg, "7d41c2e9a5b3")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT date_of_birth, national_id FROM borrower")).one() == (
            "1969-02-03",
            "OLD-ID-55821",
        )
    engine.dispose()
