"""Exports for the core banking system: the postings CSV row by row for a known dataset (minor and
major units, the creditor and account, formulas defused, charges left out), the journal's debits
equal to its credits per currency over random mixes of payments, over-payments, refunds, disputes
lost and won, waivers, fees, interest, Stripe fees and payouts — and tying out to the ledger, the
credit held and Stripe; both downloaded as attachments and written by the command."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.models import Account, CreditEntry, Creditor, LedgerEntry, StripeBalanceTxn
from portal.services import finance_exports, ledger
from portal.services.audit import SYSTEM
from portal.services.hardship import desk_today
from tests import factories
from tests.conftest import sign_in
from tests.integration.test_finance_close import Book, stripe_txn
from workflows.access import Role
from workflows.errors import DomainError
from workflows.ledger import EntryKind, Posting
from workflows.money import Component

TODAY = desk_today()
DAY = TODAY - dt.timedelta(days=10)


@pytest.fixture
def app_context(app: Flask) -> Iterator[None]:
    with app.app_context():
        yield


@pytest.fixture
def book(session: Session, monkeypatch: pytest.MonkeyPatch) -> Book:
    return Book(session, monkeypatch)


def read_csv(text: str) -> list[dict[str, str]]:
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))


def _post(
    session: Session,
    account: Account,
    kind: EntryKind,
    component: Component,
    amount: int,
    *,
    cause: str,
    day: dt.date,
) -> None:
    locked = ledger.lock_account(session, account.id)
    ledger.post(
        session, locked, kind, [Posting(component, amount)], cause=cause, actor=SYSTEM, effective_on=day
    )
    session.commit()


# --- Postings -------------------------------------------------------------------------------------------


def test_postings_list_each_entry_per_account_and_component_in_minor_and_major_units(
    app_context: None, session: Session, book: Book
) -> None:
    cny = factories.account(session, principal=100_000, interest=20_000, fees=5_000, reference="LN-EXP-1")
    jpy = factories.account(session, principal=90_000, currency="JPY", reference="=HYPERLINK(1)")
    _post(session, cny, EntryKind.FEE, Component.FEES, 2_500, cause=f"late_fee:{DAY}", day=DAY)
    _post(session, cny, EntryKind.INTEREST, Component.INTEREST, 1_234, cause=f"accrual:{DAY}", day=DAY)
    _post(
        session,
        cny,
        EntryKind.WAIVER,
        Component.INTEREST,
        -1_000,
        cause="agreement:7",
        day=DAY + dt.timedelta(days=1),
    )
    _post(session, jpy, EntryKind.FEE, Component.FEES, 500, cause=f"late_fee:{DAY}", day=DAY)
    _post(session, jpy, EntryKind.ADJUSTMENT, Component.PRINCIPAL, -300, cause="correction:1", day=DAY)
    _post(
        session, cny, EntryKind.CHARGE, Component.PRINCIPAL, 7_000, cause="placement:x", day=DAY
    )  # not exported
    _post(
        session,
        cny,
        EntryKind.FEE,
        Component.FEES,
        999,
        cause="late_fee:outside",
        day=DAY + dt.timedelta(days=2),
    )
    _payment, ids = book.on(DAY).pay(cny, 10_000)

    span = finance_exports.parse_range(DAY, DAY + dt.timedelta(days=1))
    rows = read_csv("".join(finance_exports.postings_csv(session, span)))

    assert list(rows[0]) == list(finance_exports.POSTINGS_HEADER)
    creditor = session.get(Creditor, cny.creditor_id)
    assert creditor is not None
    simple = [
        (
            r["account_reference"],
            r["effective_on"],
            r["kind"],
            r["component"],
            r["amount_minor"],
            r["amount"],
            r["currency"],
            r["cause"],
        )
        for r in rows
        if r["kind"] != "payment"
    ]
    assert simple == [
        ("LN-EXP-1", DAY.isoformat(), "fee", "fees", "2500", "25.00", "CNY", f"late_fee:{DAY}"),
        ("LN-EXP-1", DAY.isoformat(), "interest", "interest", "1234", "12.34", "CNY", f"accrual:{DAY}"),
        ("'=HYPERLINK(1)", DAY.isoformat(), "fee", "fees", "500", "500", "JPY", f"late_fee:{DAY}"),
        ("'=HYPERLINK(1)", DAY.isoformat(), "adjustment", "principal", "-300", "-300", "JPY", "correction:1"),
        (
            "LN-EXP-1",
            (DAY + dt.timedelta(days=1)).isoformat(),
            "waiver",
            "interest",
            "-1000",
            "-10.00",
            "CNY",
            "agreement:7",
        ),
    ]
    paid = [r for r in rows if r["kind"] == "payment"]
    assert {r["cause"] for r in paid} == {f"payment:{ids['pi']}"}
    assert sum(int(r["amount_minor"]) for r in paid) == -10_000
    assert all(r["account_reference"] == "LN-EXP-1" and r["creditor"] == creditor.code for r in paid)
    entry_ids = [int(r["entry_id"]) for r in rows]
    assert len(set(entry_ids)) == len(entry_ids)
    only_jpy = read_csv(
        "".join(finance_exports.postings_csv(session, finance_exports.parse_range(DAY, DAY, "jpy")))
    )
    assert [r["currency"] for r in only_jpy] == ["JPY", "JPY"]


def test_an_export_range_is_checked() -> None:
    for first, last, code in (
        ("2026-01-02", "2026-01-01", "export_range_invalid"),
        ("x", "2026-01-01", "export_range_invalid"),
        ("2025-01-01", "2026-01-02", "export_range_too_long"),
    ):
        with pytest.raises(DomainError) as refused:
            finance_exports.parse_range(first, last)
        assert refused.value.code == code
    with pytest.raises(DomainError):
        finance_exports.parse_range("2026-01-01", "2026-01-01", "XXX")
    assert finance_exports.major(-5, "CNY") == "-0.05" and finance_exports.major(123_456, "USD") == "1234.56"


# --- Journal --------------------------------------------------------------------------------------------


def _random_activity(session: Session, book: Book, rng: random.Random) -> None:
    """A realistic mix over five business days in CNY and USD."""
    days = sorted(DAY + dt.timedelta(days=rng.randrange(5)) for _ in range(14))
    accounts = [
        factories.account(
            session,
            principal=rng.choice((8_000, 200_000)),
            interest=rng.choice((0, 9_000)),
            fees=rng.choice((0, 3_000)),
            currency=currency,
        )
        for currency in ("CNY", "CNY", "CNY", "USD", "USD")
    ]
    paid: list[tuple[object, dict[str, str]]] = []
    for n, day in enumerate(days):
        book.on(day)
        account = rng.choice(accounts)
        action = rng.choice(("pay", "pay", "pay", "refund", "dispute", "win", "waive", "fee", "interest"))
        if action == "pay" or (not paid and action in ("refund", "dispute", "win")):
            amount = rng.choice((1_000, 5_000, 12_345, 15_000, 30_000))  # some beyond a small balance: credit
            payment, ids = book.pay(account, amount, autopay=rng.random() < 0.3)
            paid.append((payment, ids))
            stripe_txn(
                session,
                f"txn_{ids['charge']}",
                "charge",
                amount,
                fee=amount * 3 // 100,
                currency=payment.currency.lower(),
                day=day,
            )
        elif action == "refund":
            payment, ids = rng.choice(paid)
            ids = {**ids, "refund": f"re_{n}_{ids['refund']}"}
            book.refund(payment, ids, rng.randint(1, payment.amount))  # type: ignore[attr-defined]
        elif action == "dispute":
            payment, ids = rng.choice(paid)
            book.dispute(payment, ids, payment.amount)  # type: ignore[attr-defined]
            stripe_txn(
                session,
                f"txn_dp_{n}",
                "adjustment",
                -payment.amount,
                fee=1_500,
                currency=payment.currency.lower(),
                day=day,
            )  # type: ignore[attr-defined]
        elif action == "win":
            payment, ids = rng.choice(paid)
            book.dispute(payment, ids, payment.amount)  # type: ignore[attr-defined]
            book.dispute(payment, ids, payment.amount, status="won")  # type: ignore[attr-defined]
            stripe_txn(
                session,
                f"txn_dpw_{n}",
                "adjustment",
                payment.amount,
                fee=-1_500,
                currency=payment.currency.lower(),
                day=day,
            )  # type: ignore[attr-defined]
        else:
            session.refresh(account)
            if action == "waive" and account.interest_balance:
                _post(
                    session,
                    account,
                    EntryKind.WAIVER,
                    Component.INTEREST,
                    -rng.randint(1, account.interest_balance),
                    cause=f"agreement:{n}",
                    day=day,
                )
            elif action == "fee":
                _post(
                    session,
                    account,
                    EntryKind.FEE,
                    Component.FEES,
                    rng.randint(1, 5_000),
                    cause=f"late_fee:{day}",
                    day=day,
                )
            elif action == "interest":
                _post(
                    session,
                    account,
                    EntryKind.INTEREST,
                    Component.INTEREST,
                    rng.randint(1, 900),
                    cause=f"accrual:{day}",
                    day=day,
                )
    for currency in ("cny", "usd"):
        stripe_txn(
            session,
            f"txn_po_{currency}_{rng.random()}",
            "payout",
            -rng.randint(1, 20_000),
            currency=currency,
            day=DAY + dt.timedelta(days=4),
        )
        stripe_txn(
            session,
            f"txn_sf_{currency}_{rng.random()}",
            "stripe_fee",
            -rng.randint(1, 900),
            currency=currency,
            day=DAY + dt.timedelta(days=2),
        )


def _ledger_change(session: Session, currency: str, first: dt.date, last: dt.date) -> tuple[int, int]:
    """What the ledger says moved the receivable (journalled kinds) and the credit held."""
    balance = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0))
        .join(Account, Account.id == LedgerEntry.account_id)
        .where(
            Account.currency == currency,
            LedgerEntry.effective_on.between(first, last),
            LedgerEntry.kind.in_(("payment", "reversal", "waiver", "fee", "interest")),
        )
    )
    credit = session.scalar(
        select(func.coalesce(func.sum(CreditEntry.amount), 0))
        .join(Account, Account.id == CreditEntry.account_id)
        .where(Account.currency == currency, CreditEntry.effective_on.between(first, last))
    )
    return int(balance or 0), int(credit or 0)


@pytest.mark.parametrize("seed", range(4))
def test_the_journal_balances_per_currency_and_ties_out_to_the_ledger_and_stripe(
    app_context: None, session: Session, book: Book, seed: int
) -> None:
    rng = random.Random(seed)  # noqa: S311  (reproducible test data, not secrets)
    _random_activity(session, book, rng)
    first, last = DAY, DAY + dt.timedelta(days=4)
    span = finance_exports.parse_range(first, last)

    rows = read_csv("".join(finance_exports.journal_csv(session, span)))

    assert rows and list(rows[0]) == list(finance_exports.JOURNAL_HEADER)
    net: dict[tuple[str, str], int] = defaultdict(int)
    debits: dict[str, int] = defaultdict(int)
    credits: dict[str, int] = defaultdict(int)
    for r in rows:
        debit, credit = int(r["debit_minor"]), int(r["credit_minor"])
        assert (debit > 0) != (credit > 0)
        assert r["debit" if debit else "credit"] == finance_exports.major(debit or credit, r["currency"])
        debits[r["currency"]] += debit
        credits[r["currency"]] += credit
        net[r["currency"], r["account"]] += debit - credit
    assert set(debits) == {"CNY", "USD"}
    assert debits == credits
    assert finance_exports.journal_totals(session, span) == {c: (debits[c], credits[c]) for c in debits}
    assert [r["date"] for r in rows] == sorted(r["date"] for r in rows)
    for currency in ("CNY", "USD"):
        balance, credit = _ledger_change(session, currency, first, last)
        assert net[currency, "receivable"] == balance
        assert -net[currency, "borrower_credit"] == credit
        start, end = finance_exports.stripe_window(first, last)
        txn = StripeBalanceTxn
        fees, account_fees, payouts = session.execute(
            select(
                func.coalesce(func.sum(txn.fee), 0),
                func.coalesce(func.sum(-txn.amount).filter(txn.type == "stripe_fee"), 0),
                func.coalesce(func.sum(-txn.amount).filter(txn.type == "payout"), 0),
            ).where(txn.created >= start, txn.created < end, txn.currency == currency.lower())
        ).one()
        assert net[currency, "stripe_fees"] == fees + account_fees
        assert net[currency, "cash"] == payouts
        # What reached Stripe's balance for borrowers is what left the receivable and joined their credit.
        collected = -(balance - _fees_and_interest(net, currency)) + credit
        assert net[currency, "stripe_clearing"] == collected - fees - account_fees - payouts


def _fees_and_interest(net: dict[tuple[str, str], int], currency: str) -> int:
    """The receivable's increase from fees and interest, less waivers (not cash)."""
    return -net[currency, "fee_income"] - net[currency, "interest_income"] - net[currency, "waiver_expense"]


# --- Downloads ------------------------------------------------------------------------------------------


def test_finance_downloads_both_exports_as_csv_attachments(
    client: FlaskClient, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    account = factories.account(session, fees=5_000, reference="LN-DL-1")
    _post(session, account, EntryKind.FEE, Component.FEES, 2_500, cause=f"late_fee:{DAY}", day=DAY)
    sign_in(client, staff_of(Role.FINANCE))
    assert "Download the postings" in client.get("/staff/finance/exports").get_data(as_text=True)

    for kind in ("postings", "journal"):
        response = client.get(f"/staff/finance/exports/{kind}.csv?from={DAY}&to={DAY}&currency=CNY")
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert (
            response.headers["Content-Disposition"]
            == f'attachment; filename="accord-{kind}-{DAY}_{DAY}-CNY.csv"'
        )
        rows = read_csv(response.get_data(as_text=True))
        assert rows, kind
    postings = read_csv(
        client.get(f"/staff/finance/exports/postings.csv?from={DAY}&to={DAY}").get_data(as_text=True)
    )
    assert [(r["account_reference"], r["amount_minor"]) for r in postings] == [("LN-DL-1", "2500")]

    refused = client.get("/staff/finance/exports/journal.csv?from=2026-02-01&to=2026-01-01")
    assert refused.status_code == 302
    assert "the first on or before the last" in client.get(refused.location).get_data(as_text=True)


def test_the_command_writes_the_journal_and_reports_it_balanced(
    app: Flask, session: Session, tmp_path: Path
) -> None:
    account = factories.account(session, interest=5_000)
    _post(session, account, EntryKind.WAIVER, Component.INTEREST, -1_500, cause="agreement:cli", day=DAY)
    target = tmp_path / "journal.csv"

    result = app.test_cli_runner().invoke(
        args=[
            "finance",
            "export",
            "journal",
            "--from",
            DAY.isoformat(),
            "--to",
            DAY.isoformat(),
            "-o",
            str(target),
        ]
    )

    assert result.exit_code == 0, result.output
    assert "CNY: debits 1500, credits 1500 (minor units): balanced" in result.output
    rows = read_csv(target.read_text(encoding="utf-8"))
    assert [(r["event"], r["account"], r["debit_minor"], r["credit_minor"]) for r in rows] == [
        ("waiver", "waiver_expense", "1500", "0"),
        ("waiver", "receivable", "0", "1500"),
    ]
    bad = app.test_cli_runner().invoke(
        args=["finance", "export", "postings", "--from", "2026-02-01", "--to", "2026-01-01"]
    )
    assert bad.exit_code != 0
