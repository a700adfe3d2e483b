"""Placing accounts from files (CSV in UTF-8, UTF-8 with a byte order mark and GB18030; XLSX) and
through the API's rows: a good file creates borrowers, accounts and their opening entries; the
same file again changes nothing; an updated balance posts exactly its adjustments and keeps what
Accord posted after the balance date; every bad file of the corpus (tests/data/placements) is
reported with its exact line, column and code, and nothing else is applied."""

from __future__ import annotations

import csv
import datetime as dt
import gc
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from flask import Flask, g
from psycopg.errors import LockNotAvailable
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, event, func, make_url, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.types import TypeDecorator

from portal.bulk import RELAXED_FACTOR, SWITCH_INTERVAL
from portal.models import (
    Account,
    AuditEvent,
    Borrower,
    Creditor,
    IntegrationEvent,
    LedgerEntry,
    PlacementImport,
)
from portal.services import audit, placements
from portal.services import ledger as ledger_service
from portal.services.audit import SYSTEM, Actor
from tests import factories
from tests.conftest import own_postgres_engine
from workflows.errors import DomainError
from workflows.ledger import EntryKind, Posting
from workflows.money import Component
from workflows.personal_data import REDACTED
from workflows.placements import BORROWER_FIELDS, COLUMNS

DATA = Path(__file__).resolve().parent.parent / "data" / "placements"
TODAY = dt.date(2026, 12, 1)
BALANCE_DATE = dt.date(2026, 11, 30)
GOOD_REFERENCES = {"LN-1001", "CC-1002", "CC-2001", "LN-3001", "LN-4001"}
PLACEMENT_ACTIONS = (
    "account.placed",
    "account.placement_updated",
    "borrower.placed",
    "borrower.placement_updated",
)


@pytest.fixture
def creditor(session: Session) -> Creditor:
    row = factories.creditor(session)
    session.commit()
    return row


def _import(
    session: Session,
    creditor: Creditor,
    path: Path,
    *,
    dry_run: bool = False,
    max_rows: int = 200_000,
    **callbacks: Any,
) -> PlacementImport:
    """``import_file`` as the command line calls it; ``callbacks``: ``progress``, ``counted``."""
    return placements.import_file(
        session,
        creditor_id=creditor.id,
        path=path,
        filename=path.name,
        source="cli",
        actor=SYSTEM,
        dry_run=dry_run,
        today=TODAY,
        max_rows=max_rows,
        **callbacks,
    )


def _count(session: Session, model: Any, *where: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _accounts(session: Session, creditor: Creditor) -> dict[str, Account]:
    rows = session.scalars(
        select(Account).where(Account.creditor_id == creditor.id).execution_options(populate_existing=True)
    )
    return {account.external_reference: account for account in rows}


def _reported(session: Session, record: PlacementImport) -> list[tuple[int, str, str]]:
    return [(r.line, r.column, r.code) for r in placements.rejections(session, record.id, limit=1000)]


def _state(session: Session, creditor: Creditor) -> dict[str, object]:
    """Everything a placement could change, to compare before and after."""
    accounts = _accounts(session, creditor)
    return {
        "accounts": {
            ref: (a.version, a.balances(), a.placed_as_of, a.status, a.dpd, a.stage)
            for ref, a in accounts.items()
        },
        "borrowers": _count(session, Borrower, Borrower.creditor_id == creditor.id),
        "entries": _count(session, LedgerEntry),
        "events": _count(session, AuditEvent, AuditEvent.action.in_(PLACEMENT_ACTIONS)),
    }


# --- A good file ----------------------------------------------------------------------------------


def test_a_good_file_creates_borrowers_accounts_and_their_opening_entries(
    session: Session, creditor: Creditor
) -> None:
    record = _import(session, creditor, DATA / "good.csv")

    assert record.status == "applied", record.error_message
    assert (record.rows_total, record.rows_accepted, record.rows_rejected) == (5, 5, 0)
    assert (record.accounts_created, record.accounts_updated, record.accounts_unchanged) == (5, 0, 0)
    assert (record.borrowers_created, record.borrowers_updated, record.adjustment_entries) == (4, 0, 0)
    assert record.encoding == "utf-8"
    accounts = _accounts(session, creditor)
    assert set(accounts) == GOOD_REFERENCES
    loan = accounts["LN-1001"]
    assert loan.balances() == {
        Component.PRINCIPAL: 1_000_000,
        Component.INTEREST: 25_050,
        Component.FEES: 5_000,
    }
    assert (loan.annual_rate_bp, loan.overdue_amount, loan.next_due_amount) == (1850, 120_000, 90_000)
    assert (loan.placed_as_of, loan.oldest_unpaid_due_on, loan.status) == (
        BALANCE_DATE,
        dt.date(2026, 10, 15),
        "open",
    )
    assert (loan.dpd, loan.stage) == (47, "mid")  # 2026-10-15 to 2026-12-01, by the default policy
    assert (accounts["CC-2001"].currency, accounts["CC-2001"].stage) == ("USD", "charged_off")  # 183 days
    assert (accounts["LN-4001"].dpd, accounts["LN-4001"].stage) == (0, "current")
    assert accounts["LN-3001"].product_type == "loan" and accounts["LN-3001"].currency == "CNY"
    zhang = loan.borrower
    assert accounts["CC-1002"].borrower_id == zhang.id
    assert (zhang.creditor_id, zhang.external_reference, zhang.phone, zhang.email) == (
        creditor.id,
        "C-001",
        "+8613800138000",
        "Zhang.Wei@example.com",
    )
    business = accounts["LN-3001"].borrower
    assert (business.kind, business.company_name, business.full_name) == (
        "business",
        "上海明远贸易有限公司",
        "李娜",
    )
    assert accounts["CC-2001"].borrower.address_line1 == "1 Main St, Apt 2"  # a quoted comma

    entries = session.scalars(
        select(LedgerEntry).where(LedgerEntry.account_id == loan.id).order_by(LedgerEntry.id)
    )
    assert [(e.kind, e.component, e.amount, e.effective_on, e.cause, e.memo) for e in entries] == [
        (
            "charge",
            "principal",
            1_000_000,
            BALANCE_DATE,
            f"placement:{record.id}",
            "Placement good.csv, line 2",
        ),
        (
            "interest",
            "interest",
            25_050,
            BALANCE_DATE,
            f"placement:{record.id}",
            "Placement good.csv, line 2",
        ),
        ("fee", "fees", 5_000, BALANCE_DATE, f"placement:{record.id}", "Placement good.csv, line 2"),
    ]
    assert (
        _count(session, LedgerEntry, LedgerEntry.account_id == accounts["LN-4001"].id) == 1
    )  # principal only
    assert ledger_service.discrepancies(session) == []
    placed = session.scalars(select(AuditEvent).where(AuditEvent.action == "account.placed")).all()
    assert {event.object_id for event in placed} == {str(a.id) for a in accounts.values()}
    audited = next(event for event in placed if event.object_id == str(loan.id))
    assert audited.after is not None and audited.after["principal_balance"] == 1_000_000
    assert audited.after["placement_import"] == record.id
    assert _count(session, AuditEvent, AuditEvent.action == "borrower.placed") == 4
    assert _count(session, AuditEvent, AuditEvent.action == "placement_import.applied") == 1


def test_the_import_tells_its_progress_in_rows(session: Session, creditor: Creditor) -> None:
    totals: list[int] = []
    judged: list[int] = []

    _import(
        session, creditor, DATA / "bad_cells.csv", max_rows=10, progress=judged.append, counted=totals.append
    )

    assert totals == [5] and sum(judged) == 5


def test_the_import_runs_as_a_bulk_job(session: Session, creditor: Creditor) -> None:
    """portal.bulk: the collector's passes rarer (its full walks over the many rows alive at once
    cost 3.6 s of 26 s at 100,000 rows), the switch interval short (rows are judged in a second
    thread), both put back after."""
    normal = (gc.get_threshold(), sys.getswitchinterval())
    during: list[tuple[tuple[int, int, int], float]] = []

    _import(
        session,
        creditor,
        DATA / "good.csv",
        progress=lambda _rows: during.append((gc.get_threshold(), sys.getswitchinterval())),
    )

    threshold, interval = normal
    inside = ((threshold[0] * RELAXED_FACTOR, *threshold[1:]), min(interval, SWITCH_INTERVAL))
    assert during and set(during) == {inside}
    assert (gc.get_threshold(), sys.getswitchinterval()) == normal


def test_rows_judged_in_the_judging_thread_and_rows_refused_by_the_database_are_reported_together(
    session: Session, creditor: Creditor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several chunks: a row refused by its own rules (judging thread) and one refused against
    what is placed (writing thread) each in a different chunk, all in line order; every other
    row applied."""
    monkeypatch.setattr(placements, "CHUNK_ROWS", 2)
    _import(session, creditor, DATA / "good.csv")
    with (DATA / "good.csv").open(encoding="utf-8", newline="") as good:
        rows = list(csv.DictReader(good))
    rows[0] = {**rows[0], "currency": "USD"}  # LN-1001 is placed in CNY: currency_changed
    rows[3] = {**rows[3], "principal": "ten"}  # its own rules: amount_invalid
    changed = tmp_path / "changed.csv"
    with changed.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    record = _import(session, creditor, changed)

    assert (record.rows_total, record.rows_rejected, record.accounts_unchanged) == (5, 2, 3)
    assert [(line, code) for line, _column, code in _reported(session, record)] == [
        (2, "currency_changed"),
        (5, "amount_invalid"),
    ]


def test_the_judging_thread_is_let_work_while_a_statement_runs_and_not_after(session: Session) -> None:
    waiting, seen = threading.Event(), []
    connection = session.connection()

    def running(*_: object) -> None:  # heard after the hook under test: registered after it
        seen.append(waiting.is_set())

    with placements._signalling_statements(connection, waiting):
        event.listen(connection, "before_cursor_execute", running)
        try:
            connection.execute(text("SELECT 1"))
        finally:
            event.remove(connection, "before_cursor_execute", running)
        after_the_statement = waiting.is_set()
    waiting.set()
    connection.execute(text("SELECT 1"))

    assert seen == [True] and after_the_statement is False
    assert waiting.is_set()  # the hooks are gone after the block


def test_an_error_while_writing_stops_the_judging_thread_and_fails_the_import(
    session: Session, creditor: Creditor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(placements, "CHUNK_ROWS", 1)

    def broken(self: Any, plan: Any, import_id: int) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(placements._Placer, "write", broken)
    before = threading.active_count()

    record = _import(session, creditor, DATA / "good.csv")

    assert (record.status, record.error_code) == ("failed", "import_failed")
    assert "disk full" in (record.error_message or "")
    assert threading.active_count() == before
    assert _count(session, Account, Account.creditor_id == creditor.id) == 0


def test_an_error_while_judging_is_raised_in_the_writing_thread_and_fails_the_import(
    session: Session, creditor: Creditor, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(values: Any, *, today: dt.date) -> Any:
        raise RuntimeError("a bug in a rule")

    monkeypatch.setattr(placements, "parse_text_row", broken)
    before = threading.active_count()

    record = _import(session, creditor, DATA / "good.csv")

    assert (record.status, record.error_code) == ("failed", "import_failed")
    assert "a bug in a rule" in (record.error_message or "")
    assert threading.active_count() == before


def test_only_the_lookups_are_planned_afresh_the_writes_keep_their_prepared_plans(
    session: Session, creditor: Creditor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: the lookups by a chunk's references are planned with their values (a generic
    plan reads every account of the lender), but the rows written after them are checked by the
    foreign keys' prepared statements, which planned afresh for every row doubled the server's
    work. The setting is back to what it was once the lookups are done."""
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("plan_cache_mode is PostgreSQL's")
    server_default = session.scalar(text("SELECT current_setting('plan_cache_mode')"))
    modes: dict[str, set[str]] = {"lookups": set(), "writes": set()}

    def mode() -> str:
        return str(session.connection().scalar(text("SELECT current_setting('plan_cache_mode')")))

    lookup, insert_rows = placements._Placer._existing_accounts, placements._insert_rows

    def looking_up(self: Any, references: Any) -> Any:
        modes["lookups"].add(mode())
        return lookup(self, references)

    def writing(session_: Session, table: Table, rows: Any, **options: Any) -> Any:
        modes["writes"].add(mode())
        return insert_rows(session_, table, rows, **options)

    monkeypatch.setattr(placements._Placer, "_existing_accounts", looking_up)
    monkeypatch.setattr(placements, "_insert_rows", writing)

    assert _import(session, creditor, DATA / "good.csv").status == "applied"
    assert modes == {"lookups": {"force_custom_plan"}, "writes": {server_default}}


@pytest.fixture(scope="module")
def own_engine(database_url: str) -> Iterator[Engine]:
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("row locks are PostgreSQL's: SQLite runs writers one at a time")
    with own_postgres_engine(database_url, "placements") as engine:
        yield engine


@pytest.mark.parametrize("lock", [True, False], ids=["import", "dry run"])
def test_the_rows_an_import_finds_are_locked_until_it_ends_and_only_those(
    app: Flask, own_engine: Engine, lock: bool
) -> None:
    """PostgreSQL: another transaction cannot lock (NOWAIT) an account or a borrower the import has
    looked up until the import ends; the borrower of an account found is not locked by that
    lookup; a dry run locks nothing."""
    with app.app_context(), Session(own_engine, expire_on_commit=False) as setup:
        creditor = factories.creditor(setup)
        setup.commit()
        assert _import(setup, creditor, DATA / "good.csv").status == "applied"
        loan = _accounts(setup, creditor)["LN-1001"]

    def free(table: str, row_id: int) -> bool:
        with own_engine.connect() as other:
            try:
                other.execute(
                    text(f"SELECT id FROM {table} WHERE id = :id FOR UPDATE NOWAIT"), {"id": row_id}
                )
            except OperationalError as error:
                assert isinstance(error.orig, LockNotAvailable)
                return False
            finally:
                other.rollback()
            return True

    with app.app_context(), Session(own_engine) as importing:
        placer = placements._Placer(
            importing, creditor_id=creditor.id, actor=SYSTEM, today=TODAY, memo=str, lock=lock
        )

        found = placer._existing_accounts(["LN-1001", "LN-9999"])

        assert set(found) == {"LN-1001"}
        assert (found["LN-1001"]["id"], found["LN-1001"]["borrower_reference"]) == (loan.id, "C-001")
        assert (free("account", loan.id), free("borrower", loan.borrower_id)) == (not lock, True)

        borrowers = placer._existing_borrowers(["C-001", "C-999"])

        assert set(borrowers) == {"C-001"} and borrowers["C-001"]["id"] == loan.borrower_id
        assert free("borrower", loan.borrower_id) is not lock
        importing.rollback()
    assert free("account", loan.id) and free("borrower", loan.borrower_id)


def test_an_account_changed_by_the_placement_cannot_be_overwritten_by_a_stale_copy(
    session: Session, creditor: Creditor
) -> None:
    _import(session, creditor, DATA / "good.csv")
    stale = _accounts(session, creditor)["LN-1001"]  # loaded before the update below

    _import(session, creditor, DATA / "updated.csv")
    stale.next_due_amount = 1

    with pytest.raises(StaleDataError):
        session.flush()
    session.rollback()


def test_the_same_file_placed_twice_changes_nothing_the_second_time(
    session: Session, creditor: Creditor
) -> None:
    _import(session, creditor, DATA / "good.csv")
    before = _state(session, creditor)

    again = _import(session, creditor, DATA / "good.csv")

    assert again.status == "applied"
    assert (again.accounts_created, again.accounts_updated, again.accounts_unchanged) == (0, 0, 5)
    assert (again.borrowers_created, again.borrowers_updated, again.adjustment_entries) == (0, 0, 0)
    assert _state(session, creditor) == before
    assert _count(session, LedgerEntry, LedgerEntry.cause == f"placement:{again.id}") == 0


@pytest.mark.parametrize("name", ["good_bom.csv", "good_gb18030.csv"])
def test_gb18030_and_utf8_with_a_byte_order_mark_read_the_same(
    session: Session, creditor: Creditor, name: str
) -> None:
    _import(session, creditor, DATA / "good.csv")
    before = _state(session, creditor)

    record = _import(session, creditor, DATA / name)

    assert record.status == "applied"
    assert record.encoding == {"good_bom.csv": "utf-8-sig", "good_gb18030.csv": "gb18030"}[name]
    assert record.accounts_unchanged == 5 and record.borrowers_updated == 0
    assert _state(session, creditor) == before


def _xlsx_from_csv(source: Path, target: Path) -> Path:
    """The CSV's rows in a workbook as a spreadsheet holds them: dates as date cells, the rate as a
    number, money as text (a blank line left as an empty row)."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    kinds = {column.name: column.kind for column in COLUMNS}
    with source.open(encoding="utf-8", newline="") as stream:
        reader = csv.reader(stream)
        header = next(reader)
        sheet.append(header)
        for cells in reader:
            values: list[object] = []
            if not cells:
                sheet.append([])  # an empty row, skipped like a blank line
                continue
            for name, cell in zip(header, cells, strict=True):
                if kinds[name] == "date" and "-" in cell:
                    values.append(dt.date.fromisoformat(cell))
                elif kinds[name] == "rate":
                    values.append(float(cell))
                else:
                    values.append(cell or None)
            sheet.append(values)
    workbook.save(target)
    return target


def test_an_xlsx_workbook_reads_the_same_as_the_csv(
    session: Session, creditor: Creditor, tmp_path: Path
) -> None:
    _import(session, creditor, DATA / "good.csv")
    before = _state(session, creditor)

    record = _import(session, creditor, _xlsx_from_csv(DATA / "good.csv", tmp_path / "good.xlsx"))

    assert record.status == "applied", record.error_message
    assert (record.rows_total, record.accounts_unchanged, record.encoding) == (5, 5, None)
    assert _state(session, creditor) == before


def test_an_xlsx_workbook_places_accounts(session: Session, creditor: Creditor, tmp_path: Path) -> None:
    record = _import(session, creditor, _xlsx_from_csv(DATA / "bad_cells.csv", tmp_path / "bad.xlsx"))

    assert record.status == "applied"
    assert set(_accounts(session, creditor)) == {"LN-4001"}
    assert [line for line, _column, _code in _reported(session, record)] == [2, 3, 4, 5]


# --- Updates --------------------------------------------------------------------------------------


def test_an_updated_balance_posts_exactly_its_adjustments_and_keeps_a_later_payment(
    session: Session, creditor: Creditor
) -> None:
    _import(session, creditor, DATA / "good.csv")
    loan = _accounts(session, creditor)["LN-1001"]
    # Accord took a payment the day after the lender's balance date.
    ledger_service.post(
        session,
        ledger_service.lock_account(session, loan.id),
        EntryKind.PAYMENT,
        [Posting(Component.PRINCIPAL, -100_000)],
        cause="payment:test",
        actor=SYSTEM,
        effective_on=TODAY,
    )
    session.commit()
    version = loan.version

    record = _import(session, creditor, DATA / "updated.csv")

    assert record.status == "applied"
    assert (record.accounts_updated, record.accounts_unchanged, record.adjustment_entries) == (2, 3, 3)
    accounts = _accounts(session, creditor)
    adjustments = session.scalars(
        select(LedgerEntry).where(LedgerEntry.cause == f"placement:{record.id}").order_by(LedgerEntry.id)
    )
    assert [(e.account_id, e.kind, e.component, e.amount, e.effective_on) for e in adjustments] == [
        (loan.id, "adjustment", "principal", -50_000, BALANCE_DATE),
        (loan.id, "adjustment", "interest", 5_000, BALANCE_DATE),
        (accounts["CC-2001"].id, "adjustment", "fees", -3_500, BALANCE_DATE),
    ]
    # The lender's 9,500.00 as of the balance date, less Accord's payment of 1,000.00 after it.
    assert accounts["LN-1001"].balances() == {
        Component.PRINCIPAL: 850_000,
        Component.INTEREST: 30_050,
        Component.FEES: 5_000,
    }
    assert accounts["LN-1001"].version == version + 1
    assert ledger_service.discrepancies(session) == []
    updated = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "account.placement_updated")
    ).all()
    assert {event.object_id for event in updated} == {str(loan.id), str(accounts["CC-2001"].id)}
    audited = next(event for event in updated if event.object_id == str(loan.id))
    assert audited.before == {"principal_balance": 900_000, "interest_balance": 25_050}
    assert audited.after == {
        "principal_balance": 850_000,
        "interest_balance": 30_050,
        "placement_import": record.id,
    }

    assert _import(session, creditor, DATA / "good.csv").adjustment_entries == 3  # back to the first figures
    assert _accounts(session, creditor)["LN-1001"].principal_balance == 900_000  # the payment still counts


def test_a_changed_borrower_is_updated_and_audited_once(
    session: Session, creditor: Creditor, tmp_path: Path
) -> None:
    _import(session, creditor, DATA / "good.csv")
    text = (DATA / "good.csv").read_text(encoding="utf-8").replace("Zhang.Wei@Example.COM", "zw@example.org")
    changed = tmp_path / "changed.csv"
    changed.write_text(text, encoding="utf-8")

    record = _import(session, creditor, changed)

    assert (record.borrowers_updated, record.accounts_unchanged) == (1, 5)
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "borrower.placement_updated")
    ).all()
    assert len(events) == 1
    assert events[0].before == {"email": "Zhang.Wei@example.com"}
    assert events[0].after == {"email": "zw@example.org", "placement_import": record.id}
    assert _accounts(session, creditor)["LN-1001"].borrower.email == "zw@example.org"


# --- Bad files: the whole file refused ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code", "reported"),
    [
        ("unterminated_quote.csv", "csv_malformed", [(3, "", "csv_malformed")]),
        ("semicolons.csv", "delimiter_wrong", [(1, "", "delimiter_wrong")]),
        ("empty.csv", "file_empty", []),
        ("header_only.csv", "no_rows", []),
        ("unknown_column.csv", "header_invalid", [(1, "nickname", "column_unknown")]),
        ("missing_column.csv", "header_invalid", [(1, "currency", "column_missing")]),
        ("not_text.csv", "encoding_unknown", []),
    ],
)
def test_a_broken_file_is_refused_whole_with_its_reason(
    session: Session, creditor: Creditor, name: str, code: str, reported: list[tuple[int, str, str]]
) -> None:
    record = _import(session, creditor, DATA / name)

    assert (record.status, record.error_code) == ("refused", code)
    assert record.error_message
    assert _reported(session, record) == reported
    assert _accounts(session, creditor) == {}
    assert _count(session, Borrower, Borrower.creditor_id == creditor.id) == 0
    assert _count(session, AuditEvent, AuditEvent.action == "placement_import.refused") == 1


def test_a_semicolon_file_names_the_delimiter_found(session: Session, creditor: Creditor) -> None:
    record = _import(session, creditor, DATA / "semicolons.csv")

    assert "semicolon" in (record.error_message or "")


def test_a_file_of_more_rows_than_allowed_is_refused_before_anything_is_applied(
    session: Session, creditor: Creditor, tmp_path: Path
) -> None:
    good = (DATA / "good.csv").read_text(encoding="utf-8").splitlines()
    big = tmp_path / "million.csv"
    with big.open("w", encoding="utf-8") as out:
        out.write(good[0] + "\n" + good[1] + "\n")
        out.write("x\n" * 1_000_000)

    record = _import(session, creditor, big, max_rows=1_000_000)

    assert (record.status, record.error_code) == ("refused", "too_many_rows")
    assert "1000000" in (record.error_message or "")
    assert _accounts(session, creditor) == {}


def test_a_binary_file_is_refused(session: Session, creditor: Creditor, tmp_path: Path) -> None:
    picture = tmp_path / "scan.csv"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    workbook = tmp_path / "old.xls"
    workbook.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64)
    broken_zip = tmp_path / "broken.xlsx"
    broken_zip.write_bytes(b"PK\x03\x04" + b"\x00" * 64)

    assert _import(session, creditor, picture).error_code == "format_unsupported"
    assert _import(session, creditor, workbook).error_code == "format_unsupported"
    assert _import(session, creditor, broken_zip).error_code == "xlsx_unreadable"


# --- Bad rows: rejected, the rest applied ---------------------------------------------------------


def test_bad_cells_are_rejected_with_line_column_and_code_and_the_other_rows_applied(
    session: Session, creditor: Creditor
) -> None:
    record = _import(session, creditor, DATA / "bad_cells.csv")

    assert record.status == "applied"
    assert (record.rows_total, record.rows_accepted, record.rows_rejected) == (5, 1, 4)
    assert _reported(session, record) == [
        (2, "phone", "phone_invalid"),
        (3, "email", "email_invalid"),
        (4, "opened_on", "date_invalid"),
        (5, "principal", "amount_invalid"),
    ]
    rejection = placements.rejections(session, record.id)[0]
    assert rejection.account_reference == "LN-1001" and "12345" in rejection.message
    assert set(_accounts(session, creditor)) == {"LN-4001"}


def test_a_row_with_another_number_of_fields_is_rejected(session: Session, creditor: Creditor) -> None:
    record = _import(session, creditor, DATA / "field_count.csv")

    assert _reported(session, record) == [(3, "", "field_count")]
    assert set(_accounts(session, creditor)) == {"LN-1001", "LN-4001"}


def test_a_repeated_reference_and_a_borrower_with_other_details_are_rejected(
    session: Session, creditor: Creditor
) -> None:
    record = _import(session, creditor, DATA / "duplicates.csv")

    assert _reported(session, record) == [
        (4, "account_reference", "reference_duplicated"),
        (5, "borrower_reference", "borrower_conflict"),
    ]
    messages = [r.message for r in placements.rejections(session, record.id)]
    assert "line 2" in messages[0] and "line 2" in messages[1] and "phone" in messages[1]
    accounts = _accounts(session, creditor)
    assert set(accounts) == {"LN-1001", "CC-1002", "LN-4001"}
    assert accounts["LN-1001"].principal_balance == 1_000_000  # the first line's, not the repeat's


def test_a_row_changing_the_currency_of_an_account_is_rejected(session: Session, creditor: Creditor) -> None:
    _import(session, creditor, DATA / "good.csv")
    before = _state(session, creditor)["accounts"]

    record = _import(session, creditor, DATA / "currency_change.csv")

    assert _reported(session, record) == [(2, "currency", "currency_changed")]
    accounts = _accounts(session, creditor)
    assert accounts["LN-1001"].currency == "CNY"
    assert "LN-5001" in accounts and record.accounts_created == 1
    assert {ref: v for ref, v in _state(session, creditor)["accounts"].items() if ref != "LN-5001"} == before


def test_balances_older_than_those_placed_are_rejected(session: Session, creditor: Creditor) -> None:
    _import(session, creditor, DATA / "good.csv")
    before = _state(session, creditor)

    record = _import(session, creditor, DATA / "stale.csv")

    assert _reported(session, record) == [(2, "balance_date", "balance_date_stale")]
    assert _state(session, creditor) == before


def test_a_balance_the_ledger_cannot_reach_is_rejected(
    session: Session, creditor: Creditor, tmp_path: Path
) -> None:
    _import(session, creditor, DATA / "good.csv")
    loan = _accounts(session, creditor)["LN-4001"]
    ledger_service.post(
        session,
        ledger_service.lock_account(session, loan.id),
        EntryKind.PAYMENT,
        [Posting(Component.PRINCIPAL, -400_000)],
        cause="payment:test",
        actor=SYSTEM,
        effective_on=TODAY,
    )
    session.commit()
    lines = (DATA / "good.csv").read_text(encoding="utf-8").splitlines()
    lower = tmp_path / "lower.csv"
    # The lender says 500.00 as of the balance date; with Accord's later payment of 4,000.00 the
    # principal would go below zero.
    lower.write_text(
        lines[0] + "\n" + lines[-1].replace(",5000,0,0,5000", ",500,0,0,500") + "\n", encoding="utf-8"
    )

    record = _import(session, creditor, lower)

    assert _reported(session, record) == [(2, "principal", "balance_negative")]
    assert _accounts(session, creditor)["LN-4001"].principal_balance == 100_000


# --- Dry runs, failures, the API -------------------------------------------------------------------


def test_a_dry_run_reports_what_the_import_would_do_and_writes_no_account(
    session: Session, creditor: Creditor
) -> None:
    dry = _import(session, creditor, DATA / "bad_cells.csv", dry_run=True)

    assert (dry.status, dry.dry_run) == ("validated", True)
    assert (dry.rows_accepted, dry.rows_rejected, dry.accounts_created, dry.borrowers_created) == (1, 4, 1, 1)
    assert len(_reported(session, dry)) == 4
    assert _accounts(session, creditor) == {}
    assert _count(session, Borrower, Borrower.creditor_id == creditor.id) == 0
    assert _count(session, LedgerEntry, LedgerEntry.cause == f"placement:{dry.id}") == 0

    _import(session, creditor, DATA / "good.csv")
    checked = _import(session, creditor, DATA / "currency_change.csv", dry_run=True)
    assert _reported(session, checked) == [(2, "currency", "currency_changed")]  # judged against the database
    assert "LN-5001" not in _accounts(session, creditor)


def test_an_error_of_ours_rolls_everything_back_and_records_the_import_as_failed(
    session: Session, creditor: Creditor, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: object, *args: object) -> None:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(placements._Placer, "_insert_accounts", broken)

    record = _import(session, creditor, DATA / "good.csv")

    assert (record.status, record.error_code) == ("failed", "import_failed")
    assert "the disk is full" in (record.error_message or "")
    assert _count(session, Borrower, Borrower.creditor_id == creditor.id) == 0  # inserted, then rolled back
    assert _accounts(session, creditor) == {}


def _json_row(reference: str, borrower: str = "API-1", **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "account_reference": reference,
        "borrower_reference": borrower,
        "full_name": "赵敏",
        "date_of_birth": "1990-05-20",
        "phone": "+8613600136000",
        "product_type": "loan",
        "currency": "CNY",
        "annual_rate_bp": 1500,
        "opened_on": "2025-05-01",
        "balance_date": "2026-11-30",
        "principal": 200_000,
        "interest": 1_000,
        "fees": 0,
    }
    row.update(changes)
    return row


def test_the_api_rows_are_placed_all_or_nothing(session: Session, creditor: Creditor) -> None:
    imports = _count(session, PlacementImport)
    rows = [_json_row("API-L1"), _json_row("API-L2", principal=-5), _json_row("API-L1")]

    with pytest.raises(placements.PlacementRefused) as refused:
        placements.apply_rows(session, creditor_id=creditor.id, rows=rows, actor=SYSTEM, today=TODAY)

    assert refused.value.code == "placement_refused"
    assert [(r.line, r.column, r.code) for r in refused.value.rejections] == [
        (1, "principal", "amount_negative"),
        (2, "account_reference", "reference_duplicated"),
    ]
    assert _count(session, PlacementImport) == imports
    assert _accounts(session, creditor) == {}
    with pytest.raises(DomainError) as empty:
        placements.apply_rows(session, creditor_id=creditor.id, rows=[], actor=SYSTEM, today=TODAY)
    assert empty.value.code == "no_rows"

    record, outcomes = placements.apply_rows(
        session, creditor_id=creditor.id, rows=[rows[0], _json_row("API-L2")], actor=SYSTEM, today=TODAY
    )
    accounts = _accounts(session, creditor)
    assert (record.source, record.status, record.accounts_created, record.borrowers_created) == (
        "api",
        "applied",
        2,
        1,
    )
    assert outcomes == [
        placements.RowOutcome(0, "API-L1", "created", accounts["API-L1"].id),
        placements.RowOutcome(1, "API-L2", "created", accounts["API-L2"].id),
    ]
    again, outcomes = placements.apply_rows(
        session,
        creditor_id=creditor.id,
        rows=[_json_row("API-L1"), _json_row("API-L2", interest=2_000)],
        actor=SYSTEM,
        today=TODAY,
    )
    assert [outcome.action for outcome in outcomes] == ["unchanged", "updated"]
    assert again.adjustment_entries == 1
    with pytest.raises(placements.PlacementRefused) as moved:
        placements.apply_rows(
            session,
            creditor_id=creditor.id,
            rows=[_json_row("API-L3"), _json_row("API-L1", currency="USD")],
            actor=SYSTEM,
            today=TODAY,
        )
    assert [(r.line, r.code) for r in moved.value.rejections] == [(1, "currency_changed")]
    assert "API-L3" not in _accounts(session, creditor)
    assert ledger_service.discrepancies(session) == []


# --- Recall ---------------------------------------------------------------------------------------


def test_a_recalled_account_is_audited_and_announced_once_and_reopened_when_placed_again(
    session: Session, creditor: Creditor
) -> None:
    _import(session, creditor, DATA / "good.csv")
    staff = factories.staff(session)

    account = placements.recall(
        session,
        creditor_id=creditor.id,
        account_reference="LN-1001",
        actor=Actor.staff(staff),
        reason="Sold to another agency",
    )

    assert account.status == "recalled" and account.recalled_at is not None
    events = session.scalars(select(IntegrationEvent).where(IntegrationEvent.account_id == account.id)).all()
    assert [(e.type, e.data["reason"], e.data["account_reference"]) for e in events] == [
        ("account.recalled", "Sold to another agency", "LN-1001")
    ]
    audited = session.scalars(select(AuditEvent).where(AuditEvent.action == "account.recalled")).all()
    assert [(e.actor_id, e.before["status"], e.after["status"]) for e in audited] == [
        (staff.id, "open", "recalled")
    ]  # type: ignore[index]

    placements.recall(
        session, creditor_id=creditor.id, account_reference="LN-1001", actor=SYSTEM, reason="again"
    )
    assert _count(session, IntegrationEvent, IntegrationEvent.account_id == account.id) == 1
    assert _count(session, AuditEvent, AuditEvent.action == "account.recalled") == 1
    with pytest.raises(DomainError) as unknown:
        placements.recall(
            session, creditor_id=creditor.id, account_reference="NOPE", actor=SYSTEM, reason=None
        )
    assert unknown.value.code == "account_unknown"

    record = _import(session, creditor, DATA / "good.csv")
    reopened = _accounts(session, creditor)["LN-1001"]
    assert (record.accounts_updated, reopened.status, reopened.recalled_at) == (1, "open", None)
    event = session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "account.placement_updated", AuditEvent.object_id == str(reopened.id)
        )
    ).one()
    assert event.before is not None and event.before["status"] == "recalled"
    assert event.after is not None and event.after["status"] == "open"


# --- The command line -----------------------------------------------------------------------------


def test_the_command_line_imports_reports_rejections_and_fails_on_a_refused_file(
    app: Flask, session: Session, creditor: Creditor, tmp_path: Path
) -> None:
    runner = app.test_cli_runner()
    report = tmp_path / "rejected.csv"

    dry = runner.invoke(
        args=["accounts", "import", str(DATA / "good.csv"), "--creditor", creditor.code, "--dry-run"]
    )
    assert dry.exit_code == 0, dry.output
    assert "5 created" in dry.output and "dry run" in dry.output
    assert _accounts(session, creditor) == {}

    result = runner.invoke(
        args=[
            "accounts",
            "import",
            str(DATA / "bad_cells.csv"),
            "--creditor",
            creditor.code,
            "--report",
            str(report),
        ]
    )
    assert result.exit_code == 0, result.output
    assert "1 created" in result.output and "4 rejected" in result.output
    assert "line 2, phone: phone_invalid" in result.output
    with report.open(encoding="utf-8-sig", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [(row["line"], row["column"], row["code"]) for row in rows] == [
        ("2", "phone", "phone_invalid"),
        ("3", "email", "email_invalid"),
        ("4", "opened_on", "date_invalid"),
        ("5", "principal", "amount_invalid"),
    ]

    refused = runner.invoke(
        args=["accounts", "import", str(DATA / "semicolons.csv"), "--creditor", creditor.code]
    )
    assert refused.exit_code != 0
    assert "delimiter_wrong" in refused.output and "nothing was applied" in refused.output
    unknown = runner.invoke(args=["accounts", "import", str(DATA / "good.csv"), "--creditor", "NO-SUCH"])
    assert unknown.exit_code != 0 and "There is no creditor NO-SUCH" in unknown.output

    recalled = runner.invoke(
        args=["accounts", "recall", "LN-4001", "--creditor", creditor.code, "--reason", "repaid"]
    )
    assert recalled.exit_code == 0, recalled.output
    assert "LN-4001: recalled" in recalled.output
    assert _accounts(session, creditor)["LN-4001"].status == "recalled"
    missing = runner.invoke(args=["accounts", "recall", "LN-9999", "--creditor", creditor.code])
    assert missing.exit_code != 0 and "no account LN-9999" in missing.output


def test_placements_made_in_a_request_audit_its_request_id_and_address(
    app: Flask, session: Session, creditor: Creditor
) -> None:
    """Every audit event a placement writes in bulk names the request and the address it came
    from, as ``audit.record`` does for one event."""
    rows = [_json_row("API-R1"), _json_row("API-R2")]
    with app.test_request_context(environ_base={"REMOTE_ADDR": "203.0.113.7"}):
        g.request_id = "req-placement-1"
        placements.apply_rows(session, creditor_id=creditor.id, rows=rows, actor=SYSTEM, today=TODAY)
        g.request_id = "req-placement-2"
        placements.apply_rows(
            session,
            creditor_id=creditor.id,
            rows=[_json_row("API-R1", interest=2_000)],
            actor=SYSTEM,
            today=TODAY,
        )

    events = session.scalars(
        select(AuditEvent).where(AuditEvent.action.in_(PLACEMENT_ACTIONS)).order_by(AuditEvent.id)
    ).all()
    assert [(event.action, event.request_id, event.ip) for event in events] == [
        ("borrower.placed", "req-placement-1", "203.0.113.7"),
        ("account.placed", "req-placement-1", "203.0.113.7"),
        ("account.placed", "req-placement-1", "203.0.113.7"),
        ("account.placement_updated", "req-placement-2", "203.0.113.7"),
    ]


# --- Writing in bulk: chunks in flight, personal data, column types -------------------------------


def test_a_file_placed_in_chunks_of_one_row_is_placed_as_in_one_chunk(
    session: Session, creditor: Creditor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL each chunk is still being sent while the next is read: a borrower created by
    one chunk is the same borrower for the next, and everything is in before the import ends."""
    monkeypatch.setattr(placements, "CHUNK_ROWS", 1)

    record = _import(session, creditor, DATA / "good.csv")

    assert record.status == "applied", record.error_message
    assert (record.accounts_created, record.borrowers_created, record.rows_rejected) == (5, 4, 0)
    accounts = _accounts(session, creditor)
    assert accounts["CC-1002"].borrower_id == accounts["LN-1001"].borrower_id
    assert _count(session, Borrower, Borrower.creditor_id == creditor.id) == 4
    assert _count(session, LedgerEntry, LedgerEntry.cause == f"placement:{record.id}") == 11
    assert _count(session, AuditEvent, AuditEvent.action.in_(PLACEMENT_ACTIONS)) == 9
    assert ledger_service.discrepancies(session) == []


def test_an_error_after_chunks_were_sent_rolls_all_of_them_back(
    session: Session, creditor: Creditor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(placements, "CHUNK_ROWS", 2)
    write = placements._Placer.write
    calls: list[int] = []

    def fails_third(self: Any, plan: Any, import_id: int) -> None:
        calls.append(import_id)
        if len(calls) == 3:
            raise RuntimeError("the disk is full")
        write(self, plan, import_id)

    monkeypatch.setattr(placements._Placer, "write", fails_third)

    record = _import(session, creditor, DATA / "good.csv")

    assert len(calls) == 3
    assert (record.status, record.error_code) == ("failed", "import_failed")
    assert _count(session, Borrower, Borrower.creditor_id == creditor.id) == 0
    assert _accounts(session, creditor) == {}
    assert _count(session, LedgerEntry) == 0
    assert _count(session, AuditEvent, AuditEvent.action.in_(PLACEMENT_ACTIONS)) == 0


def test_personal_data_placed_in_bulk_reads_back_as_placed(session: Session, creditor: Creditor) -> None:
    """Bulk writes (COPY on PostgreSQL) go through each column's type as the ORM's do: a sealed
    column read back through the model gives the value placed."""
    _import(session, creditor, DATA / "good.csv")

    zhang = _accounts(session, creditor)["LN-1001"].borrower
    assert (zhang.date_of_birth, zhang.national_id) == (dt.date(1985, 3, 15), "110101198503150011")
    business = _accounts(session, creditor)["LN-3001"].borrower
    assert (business.date_of_birth, business.national_id) == (None, None)


class _Tagged(TypeDecorator[str]):
    """A column type that stores a value other than the one given (as a sealing type does)."""

    impl = String(64)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else f"stored:{value}"

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else value.removeprefix("stored:")


def test_rows_inserted_in_bulk_go_through_their_columns_type_decorators(session: Session) -> None:
    probe = Table(
        "placement_probe",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("code", _Tagged()),
        prefixes=["TEMPORARY"],
    )
    probe.create(session.connection())

    ids = placements._insert_rows(session, probe, [{"code": "a"}, {"code": None}, {"code": "c"}], ids=True)

    assert len(ids) == 3
    stored = session.execute(text("SELECT code FROM placement_probe ORDER BY id")).scalars().all()
    assert stored == ["stored:a", None, "stored:c"]
    assert session.execute(select(probe.c.code).order_by(probe.c.id)).scalars().all() == ["a", None, "c"]
    session.rollback()


def _event_columns(event: AuditEvent) -> dict[str, object]:
    return {
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "before": event.before,
        "after": event.after,
        "request_id": event.request_id,
        "ip": event.ip,
    }


def test_borrower_events_hold_no_sensitive_value_and_are_what_audit_record_writes(
    session: Session, creditor: Creditor, tmp_path: Path
) -> None:
    record = _import(session, creditor, DATA / "good.csv")
    accounts = _accounts(session, creditor)
    zhang, mary = accounts["LN-1001"].borrower, accounts["CC-2001"].borrower
    placed = {
        event.object_id: event
        for event in session.scalars(select(AuditEvent).where(AuditEvent.action == "borrower.placed"))
    }

    event = placed[str(zhang.id)]
    assert event.after is not None
    assert (event.after["date_of_birth"], event.after["national_id"]) == (REDACTED, REDACTED)
    assert "1985-03-15" not in str(event.after) and "110101198503150011" not in str(event.after)
    other = placed[str(mary.id)].after
    assert other is not None and (other["date_of_birth"], other["national_id"]) == (REDACTED, None)
    # The same event as audit.record writes it, from the borrower's values as placed.
    fields = ["external_reference", *BORROWER_FIELDS]
    expected = audit.record(
        session,
        SYSTEM,
        "borrower.placed",
        "borrower",
        zhang.id,
        after={**audit.snapshot(zhang, fields), "placement_import": record.id},
    )
    session.flush()
    session.expire_all()
    assert _event_columns(event) == _event_columns(expected)
    assert list(event.after) == list(expected.after or {})  # the keys in the same order
    session.rollback()

    text_ = (
        (DATA / "good.csv").read_text(encoding="utf-8").replace("110101198503150011", "110101198503150029")
    )
    changed = tmp_path / "changed.csv"
    changed.write_text(text_, encoding="utf-8")
    again = _import(session, creditor, changed)

    updated = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "borrower.placement_updated")
    ).one()
    assert (updated.before, updated.after) == (
        {"national_id": REDACTED},
        {"national_id": REDACTED, "placement_import": again.id},
    )
