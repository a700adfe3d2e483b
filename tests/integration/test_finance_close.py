"""Closing a finance day: the figures of a seeded day exact (one-off and autopay payments, a
refund, disputes withdrawn and won back, a waiver, Stripe fees and a payout), a close refused for
a day not yet ended, twice, or with open exceptions and no note; allowed with a note (stored and
audited); the report PDF rendered and stored; a closed day refuses corrections, which go to the
next open day. Payments, refunds and disputes go through the same recording service the webhooks
use, on a chosen business day."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.integrations.storage import document_storage_from_config
from portal.models import (
    Account,
    AuditEvent,
    DayClose,
    Payment,
    ReconciliationException,
    StripeBalanceTxn,
)
from portal.services import finance_close, ledger
from portal.services import payments as payments_service
from portal.services.audit import SYSTEM
from portal.services.finance_close import DayFigures
from portal.services.hardship import DESK_TZ, desk_today
from tests import factories
from tests.conftest import sign_in
from tests.webhook_support import new_ids, new_payment, payment_intent
from workflows.access import Role
from workflows.errors import DomainError
from workflows.ledger import EntryKind, Posting
from workflows.money import Component

TODAY = desk_today()
DAY = TODAY - dt.timedelta(days=3)


@pytest.fixture
def app_context(app: Flask) -> Iterator[None]:
    with app.app_context():
        yield


# --- Recording money on a chosen business day ---------------------------------------------------------


@dataclass
class Book:
    """Records payments, refunds and disputes through portal.services.payments, as if on `day`."""

    session: Session
    monkeypatch: pytest.MonkeyPatch

    def on(self, day: dt.date) -> Book:
        self.monkeypatch.setattr(payments_service, "desk_today", lambda: day)
        return self

    def pay(
        self, account: Account, amount: int, *, autopay: bool = False, ids: dict[str, str] | None = None
    ) -> tuple[Payment, dict[str, str]]:
        ids = ids or new_ids()
        payment = new_payment(self.session, account, amount, pi_id=ids["pi"])
        if autopay:
            payment.origin, payment.purpose = "autopay", "autopay"
        pi = payment_intent(payment, ids["pi"], charge_id=ids["charge"])
        assert payments_service.record_payment_intent(self.session, pi).outcome == "applied"
        self.session.commit()
        return payment, ids

    def refund(self, payment: Payment, ids: dict[str, str], amount: int) -> None:
        refund = {"id": ids["refund"], "amount": amount, "currency": payment.currency.lower()}
        payments_service.record_refund(self.session, {**refund, "status": "succeeded"}, payment)
        self.session.commit()

    def dispute(
        self, payment: Payment, ids: dict[str, str], amount: int, status: str = "needs_response"
    ) -> None:
        dispute = {
            "id": ids["dispute"],
            "amount": amount,
            "currency": payment.currency.lower(),
            "status": status,
        }
        payments_service.record_dispute(self.session, dispute, payment)
        self.session.commit()


@pytest.fixture
def book(session: Session, monkeypatch: pytest.MonkeyPatch) -> Book:
    return Book(session, monkeypatch)


def stripe_txn(
    session: Session,
    txn_id: str,
    kind: str,
    amount: int,
    *,
    fee: int = 0,
    currency: str = "cny",
    day: dt.date = DAY,
    hour: int = 10,
    source_id: str | None = None,
    payment_intent_id: str | None = None,
) -> StripeBalanceTxn:
    """A balance transaction as imported, created at `hour` on `day` in Shanghai."""
    row = StripeBalanceTxn(
        id=txn_id,
        type=kind,
        source_id=source_id or txn_id,
        payment_intent_id=payment_intent_id,
        amount=amount,
        fee=fee,
        net=amount - fee,
        currency=currency,
        created=dt.datetime.combine(day, dt.time(hour), tzinfo=DESK_TZ).astimezone(dt.UTC),
    )
    session.add(row)
    session.commit()
    return row


def exception(session: Session, day: dt.date = DAY, currency: str = "CNY", status: str = "open") -> Any:
    n = session.scalar(
        select(ReconciliationException.id).order_by(ReconciliationException.id.desc()).limit(1)
    )
    row = ReconciliationException(
        kind="missing_in_ledger",
        day=day,
        stripe_ref=f"txn_test_{(n or 0) + 1}_{day.isoformat()}",
        amount=12_345,
        currency=currency,
        status=status,
    )
    session.add(row)
    session.commit()
    return row


@dataclass
class SeededDay:
    one_off: list[Payment]
    autopay: Payment
    accounts: list[Account]


def seed_day(session: Session, book: Book, day: dt.date = DAY) -> SeededDay:
    """On `day` in CNY: one-off payments of 500.00, 200.00 and 400.00 and an autopay of 300.00;
    50.00 of the 200.00 refunded; the 400.00 disputed in full; a dispute won back (150.00) on a
    payment of the day before; 70.00 of interest waived; Stripe fees 15.00 + 9.00 + 2.00 + an
    account fee of 3.00; a payout of 1,000.00. Also a USD payment of 99.00 the same day."""
    accounts = [
        factories.account(session, principal=1_000_000, interest=30_000, fees=10_000) for _ in range(6)
    ]
    earlier, earlier_ids = book.on(day - dt.timedelta(days=1)).pay(accounts[5], 15_000)
    book.dispute(earlier, earlier_ids, 15_000)  # withdrawn the day before
    book.on(day)
    first, first_ids = book.pay(accounts[0], 50_000)
    autopay, autopay_ids = book.pay(accounts[1], 30_000, autopay=True)
    refunded, refunded_ids = book.pay(accounts[2], 20_000)
    disputed, disputed_ids = book.pay(accounts[3], 40_000)
    book.refund(refunded, refunded_ids, 5_000)
    book.dispute(disputed, disputed_ids, 40_000)
    book.dispute(earlier, earlier_ids, 15_000, status="won")  # reinstated on the day
    account = ledger.lock_account(session, accounts[4].id)
    ledger.post(
        session,
        account,
        EntryKind.WAIVER,
        [Posting(Component.INTEREST, -7_000)],
        cause="agreement:test",
        actor=SYSTEM,
        effective_on=day,
    )
    session.commit()
    usd = factories.account(session, currency="USD")
    book.pay(usd, 9_900)
    stripe_txn(session, f"txn_{first_ids['charge']}", "charge", 50_000, fee=1_500, day=day)
    stripe_txn(session, f"txn_{autopay_ids['charge']}", "charge", 30_000, fee=900, day=day)
    stripe_txn(session, f"txn_{refunded_ids['charge']}", "charge", 20_000, fee=200, day=day, hour=0)
    stripe_txn(session, f"txn_{refunded_ids['refund']}", "refund", -5_000, day=day, hour=23)
    stripe_txn(session, f"txn_fee_{day}", "stripe_fee", -300, day=day)
    stripe_txn(session, f"txn_po_{day}", "payout", -100_000, day=day)
    # The next business day (in Shanghai) and another currency count elsewhere.
    stripe_txn(session, f"txn_next_{day}", "charge", 10_000, fee=777, day=day + dt.timedelta(days=1), hour=0)
    stripe_txn(session, f"txn_usd_{day}", "charge", 9_900, fee=555, currency="usd", day=day)
    return SeededDay([first, refunded, disputed], autopay, accounts)


EXPECTED = DayFigures(
    day=DAY,
    currency="CNY",
    gross=140_000,
    one_off=110_000,
    one_off_count=3,
    autopay=30_000,
    autopay_count=1,
    refunds=5_000,
    disputes_withdrawn=40_000,
    disputes_reinstated=15_000,
    other_reversals=0,
    waivers=7_000,
    waiver_entries=1,
    stripe_imported=True,
    stripe_fees=2_900,
    payouts=100_000,
    payout_count=1,
)


# --- Figures --------------------------------------------------------------------------------------------


def test_the_figures_of_a_day_are_exact_per_currency(app_context: None, session: Session, book: Book) -> None:
    seed_day(session, book)

    figures = finance_close.day_figures(session, DAY, "CNY")

    assert figures == EXPECTED
    assert figures.net == 140_000 - 2_900 - 5_000 - 40_000 + 15_000
    usd = finance_close.day_figures(session, DAY, "usd")
    assert (usd.gross, usd.one_off_count, usd.stripe_fees, usd.refunds) == (9_900, 1, 555, 0)
    before = finance_close.day_figures(session, DAY - dt.timedelta(days=1), "CNY")
    assert (before.gross, before.disputes_withdrawn, before.stripe_imported) == (15_000, 15_000, False)


def test_fees_and_net_are_unknown_until_stripe_is_imported(
    app_context: None, session: Session, book: Book
) -> None:
    book.on(DAY).pay(factories.account(session), 12_300)

    figures = finance_close.day_figures(session, DAY, "CNY")

    assert figures.gross == 12_300 and not figures.stripe_imported
    assert figures.stripe_fees is None and figures.payouts is None and figures.net is None


def test_a_refund_seen_before_its_payment_counts_as_another_reversal(
    app_context: None, session: Session, book: Book
) -> None:
    account = factories.account(session)
    ids = new_ids()
    payment = new_payment(session, account, 10_000, pi_id=ids["pi"])
    book.on(DAY)
    book.refund(payment, ids, 4_000)  # waits for the payment
    pi = payment_intent(payment, ids["pi"], charge_id=ids["charge"])
    payments_service.record_payment_intent(session, pi)
    session.commit()

    figures = finance_close.day_figures(session, DAY, "CNY")

    assert (figures.gross, figures.refunds, figures.other_reversals) == (10_000, 0, 4_000)


# --- Closing --------------------------------------------------------------------------------------------


def test_a_day_not_yet_ended_cannot_be_closed(app_context: None, session: Session, staff_of) -> None:  # type: ignore[no-untyped-def]
    finance = staff_of(Role.FINANCE)
    for day, code in ((TODAY + dt.timedelta(days=1), "day_close_future"), (TODAY, "day_close_not_ended")):
        with pytest.raises(DomainError) as refused:
            finance_close.close_day(session, day, "CNY", finance)
        assert refused.value.code == code
    assert session.scalar(select(DayClose.id)) is None


def test_a_day_is_closed_once_with_its_figures_report_and_audit(
    app: Flask, app_context: None, session: Session, book: Book, staff_of
) -> None:  # type: ignore[no-untyped-def]
    seed_day(session, book)
    finance = staff_of(Role.FINANCE)

    row = finance_close.close_day(session, DAY, "CNY", finance)

    assert (row.day, row.currency, row.open_exceptions, row.note, row.closed_by_id) == (
        DAY,
        "CNY",
        0,
        None,
        finance.id,
    )
    assert finance_close.frozen_figures(row) == EXPECTED
    data = document_storage_from_config(app.config).open(row.report_key or "")
    assert data.startswith(b"%PDF") and hashlib.sha256(data).hexdigest() == row.report_sha256
    assert row.report_key == f"{row.report_sha256}.pdf"
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "day.closed"))
    assert event is not None and event.actor_id == finance.id and event.object_id == str(row.id)
    assert event.after is not None and event.after["gross"] == 140_000 and event.after["open_exceptions"] == 0

    with pytest.raises(DomainError) as again:
        finance_close.close_day(session, DAY, "CNY", finance, "once more")
    assert again.value.code == "day_already_closed"
    # Another currency of the same day is its own close.
    assert finance_close.close_day(session, DAY, "USD", finance).currency == "USD"


def test_open_exceptions_block_the_close_unless_a_note_says_why(
    app_context: None, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    finance = staff_of(Role.FINANCE)
    exception(session)
    exception(session, status="awaiting_approval")
    exception(session, status="resolved")
    exception(session, currency="USD")
    exception(session, day=DAY - dt.timedelta(days=1))

    for note in (None, "", "   "):
        with pytest.raises(DomainError) as refused:
            finance_close.close_day(session, DAY, "CNY", finance, note)
        assert refused.value.code == "day_close_note_required" and refused.value.params["count"] == 2
    assert session.scalar(select(DayClose.id)) is None

    row = finance_close.close_day(session, DAY, "CNY", finance, "  Stripe support is looking at both.  ")

    assert (row.open_exceptions, row.note) == (2, "Stripe support is looking at both.")
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "day.closed"))
    assert event is not None and event.after is not None
    assert (event.after["note"], event.after["open_exceptions"]) == ("Stripe support is looking at both.", 2)


def test_a_note_too_long_is_refused(app_context: None, session: Session, staff_of) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DomainError) as refused:
        finance_close.close_day(session, DAY, "CNY", staff_of(Role.FINANCE), "x" * 2001)
    assert refused.value.code == "day_close_note_too_long"


def test_a_closed_day_takes_no_correction_which_posts_to_the_next_open_day(
    app_context: None, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    finance = staff_of(Role.FINANCE)
    first, second = DAY - dt.timedelta(days=1), DAY
    finance_close.ensure_open(session, first, "CNY")  # open: nothing raised
    finance_close.close_day(session, first, "CNY", finance)
    finance_close.close_day(session, second, "CNY", finance)

    with pytest.raises(DomainError) as refused:
        finance_close.ensure_open(session, first, "CNY")

    assert refused.value.code == "day_closed"
    assert refused.value.params["next_open"] == (DAY + dt.timedelta(days=1)).isoformat()
    assert finance_close.next_open_day(session, "CNY", first) == DAY + dt.timedelta(days=1)
    assert finance_close.next_open_day(session, "CNY", DAY + dt.timedelta(days=1)) == DAY + dt.timedelta(
        days=1
    )
    assert finance_close.next_open_day(session, "USD", first) == first
    finance_close.ensure_open(session, first, "USD")


def test_the_closed_figures_stay_as_they_were(
    app_context: None, session: Session, book: Book, staff_of
) -> None:  # type: ignore[no-untyped-def]
    seed_day(session, book)
    row = finance_close.close_day(session, DAY, "CNY", staff_of(Role.FINANCE))
    stripe_txn(session, "txn_late_import", "charge", 1_000, fee=100)  # imported after the close

    assert finance_close.frozen_figures(row) == EXPECTED
    assert finance_close.close_view(session, DAY, "CNY").figures == EXPECTED


# --- Pages ----------------------------------------------------------------------------------------------


def test_finance_sees_a_day_closes_it_with_a_note_and_downloads_the_report(
    client: FlaskClient, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    finance = staff_of(Role.FINANCE)
    sign_in(client, finance)
    exception(session)

    page = client.get(f"/staff/finance/close?day={DAY.isoformat()}&currency=CNY")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Gross collected" in html and "txn_test_" in html and "Close the day" in html

    refused = client.post("/staff/finance/close", data={"day": DAY.isoformat(), "currency": "CNY"})
    assert refused.status_code == 302
    assert "write why the day is closed anyway" in client.get(refused.location).get_data(as_text=True)
    assert session.scalar(select(DayClose.id)) is None

    done = client.post(
        "/staff/finance/close",
        data={"day": DAY.isoformat(), "currency": "CNY", "note": "Known Stripe delay."},
    )
    after = client.get(done.location).get_data(as_text=True)
    assert "The day is closed" in after and "Known Stripe delay." in after
    row = session.scalar(select(DayClose))
    assert row is not None and row.closed_by_id == finance.id

    pdf = client.get(f"/staff/finance/close/{row.id}/report.pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    assert pdf.headers["Content-Disposition"].startswith("attachment")
    assert hashlib.sha256(pdf.data).hexdigest() == row.report_sha256


def test_today_offers_no_close_button(client: FlaskClient, staff_of) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, staff_of(Role.FINANCE))
    html = client.get(f"/staff/finance/close?day={TODAY.isoformat()}&currency=CNY").get_data(as_text=True)
    assert "Close the day" not in html and "Only a day that has ended can be closed." in html
