"""Exports for the core banking system, as CSV streamed row by row (a generator of text chunks),
so a year of postings never sits in memory: the database is read with `yield_per`.

Postings (`postings_csv`): one row per ledger entry of a kind the core banking system books —
payments, reversals, waivers, fees, interest, and adjustments (the corrections finance books) —
per account (its creditor and external reference) and component, with the amount both in minor
units and as a plain decimal in major units. Charges are not exported: the principal comes from
the core banking system in the first place.

Journal (`journal_csv`): the double-entry lines of `workflows.reconciliation.journal_lines`, one
event per

- payment, refund or dispute cause on a day (its balance entries and credit entries together: a
  payment credits the receivable and, for what was paid beyond the debt, the borrower's credit; a
  refund or a dispute withdrawal debits them back; a dispute won is money in again);
- waiver, fee and interest cause on a day (per currency: a day's interest accrual of every
  account is one event, `accrual:D`);
- imported Stripe balance transaction with a fee (Stripe's fees, or fees returned), Stripe's own
  account fees, and payouts.

Not journalled (they are in the postings): charges (the chart has no account for the principal,
which lives on the core banking books) and reconciliation corrections (`correction:N`, an
adjustment or a reversal whose other side is a judgement for a manual journal); nor payouts
Stripe returned (`payout_cancel`, `payout_failure`), for which the chart has no event. Days are business days
(Asia/Shanghai); a Stripe balance transaction counts on the day its `created` falls on there.
"""

from __future__ import annotations

import csv
import datetime as dt
import heapq
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    SQLColumnExpression,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from portal.models import Account, CreditEntry, Creditor, LedgerEntry, StripeBalanceTxn
from portal.services.finance_close import STRIPE_ACCOUNT_FEE_TYPES, business_day, stripe_window
from workflows.errors import DomainError
from workflows.money import check_currency, minor_units
from workflows.reconciliation import EventKind, JournalEvent, JournalLine, journal_lines

POSTED_KINDS = ("payment", "reversal", "waiver", "fee", "interest", "adjustment")
MAX_DAYS = 366
BATCH = 2000

POSTINGS_HEADER = (
    "creditor",
    "account_reference",
    "entry_id",
    "effective_on",
    "kind",
    "component",
    "amount_minor",
    "amount",
    "currency",
    "cause",
)
JOURNAL_HEADER = (
    "date",
    "event",
    "reference",
    "account",
    "debit_minor",
    "credit_minor",
    "debit",
    "credit",
    "currency",
)
_FORMULA_STARTS = ("=", "+", "@", "\t", "\r")


@dataclass(frozen=True)
class Range:
    first: dt.date
    last: dt.date
    currency: str | None = None

    @property
    def label(self) -> str:
        suffix = f"-{self.currency}" if self.currency else ""
        return f"{self.first.isoformat()}_{self.last.isoformat()}{suffix}"


def parse_range(
    first: str | dt.date | None, last: str | dt.date | None, currency: str | None = None
) -> Range:
    """A date range (both days included) of at most a year, and an optional currency; refused
    with a DomainError the user can read."""
    try:
        start = first if isinstance(first, dt.date) else dt.date.fromisoformat(str(first or "").strip())
        end = last if isinstance(last, dt.date) else dt.date.fromisoformat(str(last or "").strip())
    except ValueError as exc:
        raise DomainError("export_range_invalid", "Enter both days as YYYY-MM-DD.") from exc
    if end < start:
        raise DomainError("export_range_invalid", "Enter both days as YYYY-MM-DD.")
    if (end - start).days + 1 > MAX_DAYS:
        raise DomainError("export_range_too_long", "Export at most {maximum} days at once.", maximum=MAX_DAYS)
    code = (currency or "").strip().upper() or None
    if code is not None:
        check_currency(code)
    return Range(start, end, code)


def major(amount: int, currency: str) -> str:
    """Minor units as a plain signed decimal in major units ("-1234.50"), exact, no grouping."""
    places = minor_units(currency)
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**places)
    return f"{sign}{whole}.{fraction:0{places}d}" if places else f"{sign}{whole}"


def _text(value: str) -> str:
    """A text cell a spreadsheet will not run as a formula."""
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


def _csv_lines(header: Sequence[str], rows: Iterable[Sequence[object]]) -> Iterator[str]:
    """CSV text, one chunk per batch of rows (UTF-8 with a byte order mark for spreadsheets)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow(header)
    for count, row in enumerate(rows, start=1):
        writer.writerow(row)
        if count % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _stream(session: Session, stmt: Select) -> Iterator:  # type: ignore[type-arg]
    return iter(session.execute(stmt.execution_options(yield_per=BATCH)))


# --- Postings ---------------------------------------------------------------------------------------


def postings_rows(session: Session, span: Range) -> Iterator[tuple[object, ...]]:
    stmt = (
        select(
            Creditor.code,
            Account.external_reference,
            LedgerEntry.id,
            LedgerEntry.effective_on,
            LedgerEntry.kind,
            LedgerEntry.component,
            LedgerEntry.amount,
            Account.currency,
            LedgerEntry.cause,
        )
        .join(Account, Account.id == LedgerEntry.account_id)
        .join(Creditor, Creditor.id == Account.creditor_id)
        .where(
            LedgerEntry.effective_on >= span.first,
            LedgerEntry.effective_on <= span.last,
            LedgerEntry.kind.in_(POSTED_KINDS),
        )
        .order_by(LedgerEntry.effective_on, LedgerEntry.id)
    )
    if span.currency:
        stmt = stmt.where(Account.currency == span.currency)
    for creditor, reference, entry_id, day, kind, component, amount, currency, cause in _stream(
        session, stmt
    ):
        yield (
            _text(creditor),
            _text(reference),
            entry_id,
            day.isoformat(),
            kind,
            component,
            amount,
            major(amount, currency),
            currency,
            _text(cause),
        )


def postings_csv(session: Session, span: Range) -> Iterator[str]:
    """The postings of the range as CSV text chunks."""
    return _csv_lines(POSTINGS_HEADER, postings_rows(session, span))


# --- Journal -----------------------------------------------------------------------------------------


def _money_cause(cause: SQLColumnExpression[str]) -> ColumnElement[bool]:
    return cause.like("payment:%") | cause.like("refund:%") | cause.like("dispute:%")


def money_events(session: Session, span: Range) -> Iterator[tuple[dt.date, JournalEvent]]:
    """Payments, refunds and disputes: per day, currency and cause, the change of the balance
    (L, positive: more owed) and of the credit held (C, positive: more held) become money in
    (what came off the debt and went to credit) and money out (what went back onto the debt and
    came off credit)."""
    on_balance = (
        select(
            LedgerEntry.effective_on.label("day"),
            Account.currency.label("currency"),
            LedgerEntry.cause.label("cause"),
            LedgerEntry.amount.label("balance"),
            literal(0, BigInteger).label("credit"),
        )
        .join(Account, Account.id == LedgerEntry.account_id)
        .where(
            LedgerEntry.effective_on >= span.first,
            LedgerEntry.effective_on <= span.last,
            LedgerEntry.kind.in_(("payment", "reversal")),
            _money_cause(LedgerEntry.cause),
        )
    )
    on_credit = (
        select(
            CreditEntry.effective_on.label("day"),
            Account.currency.label("currency"),
            CreditEntry.cause.label("cause"),
            literal(0, BigInteger).label("balance"),
            CreditEntry.amount.label("credit"),
        )
        .join(Account, Account.id == CreditEntry.account_id)
        .where(
            CreditEntry.effective_on >= span.first,
            CreditEntry.effective_on <= span.last,
            _money_cause(CreditEntry.cause),
        )
    )
    if span.currency:
        on_balance = on_balance.where(Account.currency == span.currency)
        on_credit = on_credit.where(Account.currency == span.currency)
    both = union_all(on_balance, on_credit).subquery()
    stmt = (
        select(
            both.c.day,
            both.c.currency,
            both.c.cause,
            func.sum(both.c.balance),
            func.sum(both.c.credit),
        )
        .group_by(both.c.day, both.c.currency, both.c.cause)
        .order_by(both.c.day, both.c.currency, both.c.cause)
    )
    for day, currency, cause, balance, credit in _stream(session, stmt):
        yield from ((day, event) for event in cash_events(currency, str(cause), int(balance), int(credit)))


def cash_events(currency: str, cause: str, balance: int, credit: int) -> list[JournalEvent]:
    """The journal events of one cause's net change to a balance and to the credit held."""
    dispute = cause.startswith("dispute:")
    events: list[JournalEvent] = []
    into_debt, into_credit = max(-balance, 0), max(credit, 0)
    if into_debt + into_credit:
        kind = EventKind.DISPUTE_REINSTATEMENT if dispute else EventKind.PAYMENT_RECEIVED
        events.append(JournalEvent(kind, into_debt + into_credit, currency, cause, to_credit=into_credit))
    back_on_debt, off_credit = max(balance, 0), max(-credit, 0)
    if back_on_debt + off_credit:
        # A refund, or a reversal applied when a payment was recorded after its refund.
        kind = EventKind.DISPUTE_WITHDRAWAL if dispute else EventKind.REFUND
        events.append(JournalEvent(kind, back_on_debt + off_credit, currency, cause, to_credit=off_credit))
    return events


_ENTRY_EVENTS = {
    "waiver": EventKind.WAIVER,
    "fee": EventKind.FEE_CHARGED,
    "interest": EventKind.INTEREST_CHARGED,
}


def entry_events(session: Session, span: Range) -> Iterator[tuple[dt.date, JournalEvent]]:
    """Waivers, fees and interest: per day, currency, kind and cause."""
    stmt = (
        select(
            LedgerEntry.effective_on,
            Account.currency,
            LedgerEntry.kind,
            LedgerEntry.cause,
            func.sum(LedgerEntry.amount),
        )
        .join(Account, Account.id == LedgerEntry.account_id)
        .where(
            LedgerEntry.effective_on >= span.first,
            LedgerEntry.effective_on <= span.last,
            LedgerEntry.kind.in_(tuple(_ENTRY_EVENTS)),
        )
        .group_by(LedgerEntry.effective_on, Account.currency, LedgerEntry.kind, LedgerEntry.cause)
        .order_by(LedgerEntry.effective_on, Account.currency, LedgerEntry.kind, LedgerEntry.cause)
    )
    if span.currency:
        stmt = stmt.where(Account.currency == span.currency)
    for day, currency, kind, cause, total in _stream(session, stmt):
        amount = -int(total) if kind == "waiver" else int(total)
        if amount > 0:  # the ledger's signs make this always so; a zero sum moves nothing
            yield day, JournalEvent(_ENTRY_EVENTS[kind], amount, currency, str(cause))


def stripe_events(session: Session, span: Range) -> Iterator[tuple[dt.date, JournalEvent]]:
    """Stripe's fees (on any balance transaction, and its own account fees) and payouts."""
    start, end = stripe_window(span.first, span.last)
    txn = StripeBalanceTxn
    stmt = (
        select(txn.id, txn.type, txn.amount, txn.fee, txn.currency, txn.created)
        .where(txn.created >= start, txn.created < end)
        .order_by(txn.created, txn.id)
    )
    if span.currency:
        stmt = stmt.where(func.upper(txn.currency) == span.currency)
    for txn_id, kind, amount, fee, currency, created in _stream(session, stmt):
        day, code = business_day(created), str(currency).upper()
        for event in balance_txn_events(str(txn_id), str(kind), int(amount), int(fee), code):
            yield day, event


def balance_txn_events(txn_id: str, kind: str, amount: int, fee: int, currency: str) -> list[JournalEvent]:
    events: list[JournalEvent] = []
    if fee > 0:
        events.append(JournalEvent(EventKind.STRIPE_FEE, fee, currency, txn_id))
    elif fee < 0:
        events.append(JournalEvent(EventKind.STRIPE_FEE_RETURNED, -fee, currency, txn_id))
    if kind in STRIPE_ACCOUNT_FEE_TYPES and amount:
        fee_kind = EventKind.STRIPE_FEE if amount < 0 else EventKind.STRIPE_FEE_RETURNED
        events.append(JournalEvent(fee_kind, abs(amount), currency, txn_id))
    if kind == "payout" and amount < 0:
        events.append(JournalEvent(EventKind.PAYOUT, -amount, currency, txn_id))
    return events


def journal_events(session: Session, span: Range) -> Iterator[tuple[dt.date, JournalEvent]]:
    """Every event of the range, by day (each source is read in day order and merged)."""
    return heapq.merge(
        money_events(session, span),
        entry_events(session, span),
        stripe_events(session, span),
        key=lambda pair: pair[0],
    )


def journal_line_rows(session: Session, span: Range) -> Iterator[tuple[dt.date, EventKind, JournalLine]]:
    for day, event in journal_events(session, span):
        for line in journal_lines([event]):
            yield day, EventKind(event.kind), line


def journal_rows(session: Session, span: Range) -> Iterator[tuple[object, ...]]:
    for day, kind, line in journal_line_rows(session, span):
        yield (
            day.isoformat(),
            kind.value,
            _text(line.reference),
            line.account.value,
            line.debit,
            line.credit,
            major(line.debit, line.currency),
            major(line.credit, line.currency),
            line.currency,
        )


def journal_csv(session: Session, span: Range) -> Iterator[str]:
    """The double-entry journal of the range as CSV text chunks."""
    return _csv_lines(JOURNAL_HEADER, journal_rows(session, span))


def journal_totals(session: Session, span: Range) -> dict[str, tuple[int, int]]:
    """Debits and credits per currency over the range (they are equal: each event balances)."""
    totals: dict[str, list[int]] = {}
    for _day, _kind, line in journal_line_rows(session, span):
        pair = totals.setdefault(line.currency, [0, 0])
        pair[0] += line.debit
        pair[1] += line.credit
    return {currency: (debit, credit) for currency, (debit, credit) in sorted(totals.items())}


def filename(kind: str, span: Range) -> str:
    return f"accord-{kind}-{span.label}.csv"
