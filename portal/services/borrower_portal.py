"""What a signed-in borrower sees: their accounts, what is overdue, what happens next."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session, joinedload

from portal.models import Account, Borrower, LedgerEntry
from portal.services import accounts as account_service
from portal.services import policy as policy_service
from workflows.delinquency import AccountFacts, Consequence, consequences
from workflows.ledger import EntryKind
from workflows.policy import Stage

RECENT_PAYMENTS = 3


@dataclass(frozen=True)
class Payment:
    on: dt.date
    amount: int  # positive: what the borrower paid


@dataclass(frozen=True)
class AccountSummary:
    account: Account
    timeline: list[Consequence]
    recent_payments: list[Payment]


@dataclass(frozen=True)
class AccountView:
    summary: AccountSummary
    statement: account_service.Statement


def borrower_today(borrower: Borrower) -> dt.date:
    """Due dates and days past due count in the borrower's own time zone."""
    return dt.datetime.now(ZoneInfo(borrower.time_zone)).date()


def _recent_payments(session: Session, account_id: int) -> list[Payment]:
    rows: list[Row[tuple[dt.date, int]]] = list(
        session.execute(
            select(LedgerEntry.effective_on, func.sum(LedgerEntry.amount))
            .where(LedgerEntry.account_id == account_id, LedgerEntry.kind == EntryKind.PAYMENT.value)
            .group_by(LedgerEntry.effective_on, LedgerEntry.cause)
            .order_by(LedgerEntry.effective_on.desc())
            .limit(RECENT_PAYMENTS)
        )
    )
    return [Payment(on, -total) for on, total in rows]


def _fees_charged(session: Session, account_id: int) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.account_id == account_id, LedgerEntry.kind == EntryKind.FEE.value
        )
    )
    return int(total or 0)


def _summary(session: Session, account: Account, today: dt.date) -> AccountSummary:
    policy = policy_service.current(session, today)
    facts = AccountFacts(
        currency=account.currency,
        oldest_unpaid_due_on=account.oldest_unpaid_due_on,
        fees_charged=_fees_charged(session, account.id),
        referred_to_legal=account.stage == Stage.LEGAL.value,
    )
    return AccountSummary(account, consequences(facts, policy, today), _recent_payments(session, account.id))


def overview(session: Session, borrower: Borrower) -> list[AccountSummary]:
    today = borrower_today(borrower)
    accounts = session.scalars(
        select(Account)
        .options(joinedload(Account.creditor))
        .where(Account.borrower_id == borrower.id, Account.status == "open")
        .order_by(Account.dpd.desc(), Account.id)
    )
    return [_summary(session, account, today) for account in accounts]


def account_for(session: Session, borrower: Borrower, account_id: int) -> Account | None:
    """The borrower's own account, or None: another borrower's id is as unknown as a wrong one."""
    return session.scalar(
        select(Account)
        .options(joinedload(Account.creditor))
        .where(Account.id == account_id, Account.borrower_id == borrower.id)
    )


def account_view(
    session: Session, borrower: Borrower, account_id: int, *, whole_statement: bool = False
) -> AccountView | None:
    account = account_for(session, borrower, account_id)
    if account is None:
        return None
    statement = account_service.statement(
        session, account, page=None if whole_statement else account_service.STATEMENT_PAGE
    )
    return AccountView(_summary(session, account, borrower_today(borrower)), statement)
