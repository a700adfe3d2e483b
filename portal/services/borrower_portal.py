"""What a signed-in borrower sees: their accounts, what is overdue, what happens next."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import Boolean, Date, Integer, String, cast, func, literal, null, select, union_all
from sqlalchemy.orm import Session, joinedload

from portal.models import Account, AccountPause, Borrower, HardshipCase, LedgerEntry, Plan
from portal.services import accounts as account_service
from portal.services import policy as policy_service
from workflows.delinquency import AccountFacts, BreathingSpace, Consequence, consequences
from workflows.ledger import EntryKind
from workflows.negotiation import OPEN_STATES, CaseState
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
    breathing_space: BreathingSpace | None = None
    hardship_case: CaseRef | None = None
    """The borrower's request for help on this account that is still open or approved, if any."""


@dataclass(frozen=True)
class AccountView:
    summary: AccountSummary
    statement: account_service.Statement


def borrower_today(borrower: Borrower) -> dt.date:
    """Due dates and days past due count in the borrower's own time zone."""
    return dt.datetime.now(ZoneInfo(borrower.time_zone)).date()


def _fees_and_payments(
    session: Session, account_ids: list[int]
) -> tuple[dict[int, int], dict[int, list[Payment]]]:
    """Late fees charged so far and the latest payments, for all the accounts in one query."""
    fees: dict[int, int] = dict.fromkeys(account_ids, 0)
    payments: dict[int, list[Payment]] = {account_id: [] for account_id in account_ids}
    if not account_ids:
        return fees, payments
    charged = (
        select(
            LedgerEntry.account_id,
            cast(null(), Date).label("on"),
            func.sum(LedgerEntry.amount).label("total"),
            literal(0).label("n"),
        )
        .where(LedgerEntry.account_id.in_(account_ids), LedgerEntry.kind == EntryKind.FEE.value)
        .group_by(LedgerEntry.account_id)
    )
    # One payment posts one entry per component; the borrower paid their sum. The newest three
    # per account are picked in SQL, so a long payment history costs nothing here.
    paid = (
        select(
            LedgerEntry.account_id,
            LedgerEntry.effective_on,
            func.sum(LedgerEntry.amount).label("total"),
            func.row_number()
            .over(partition_by=LedgerEntry.account_id, order_by=LedgerEntry.effective_on.desc())
            .label("n"),
        )
        .where(LedgerEntry.account_id.in_(account_ids), LedgerEntry.kind == EntryKind.PAYMENT.value)
        .group_by(LedgerEntry.account_id, LedgerEntry.effective_on, LedgerEntry.cause)
        .subquery()
    )
    latest = select(paid.c.account_id, paid.c.effective_on, paid.c.total, paid.c.n).where(
        paid.c.n <= RECENT_PAYMENTS
    )
    rows = session.execute(union_all(charged, latest)).all()
    for account_id, on, total, n in sorted(rows, key=lambda row: (row[0], row[3])):
        if n == 0:
            fees[account_id] = int(total)
        else:
            payments[account_id].append(Payment(on, -int(total)))
    return fees, payments


@dataclass(frozen=True)
class CaseRef:
    """The borrower's current request for help on an account, as the dashboard names it."""

    id: int
    state: str


def _help_facts(
    session: Session, account_ids: list[int], today: dt.date
) -> tuple[dict[int, BreathingSpace], dict[int, CaseRef], set[int]]:
    """Per account, in one query: the breathing space in force, the current request for help,
    and whether a signed plan is in force."""
    if not account_ids:
        return {}, {}, set()
    no_date, no_flag, no_id, no_text = (
        cast(null(), Date),
        cast(null(), Boolean),
        cast(null(), Integer),
        cast(null(), String),
    )
    pauses_q = select(
        literal("pause").label("kind"),
        AccountPause.account_id,
        AccountPause.starts_on,
        AccountPause.ends_on,
        AccountPause.stops_fees,
        AccountPause.pauses_contact,
        no_id.label("case_id"),
        no_text.label("state"),
    ).where(
        AccountPause.account_id.in_(account_ids),
        AccountPause.lifted_at.is_(None),
        AccountPause.starts_on <= today,
        AccountPause.ends_on >= today,
    )
    current_states = [s.value for s in OPEN_STATES | {CaseState.ACTIVE}]
    cases_q = select(
        literal("case"),
        HardshipCase.account_id,
        no_date,
        no_date,
        no_flag,
        no_flag,
        HardshipCase.id,
        HardshipCase.state,
    ).where(HardshipCase.account_id.in_(account_ids), HardshipCase.state.in_(current_states))
    plans_q = select(
        literal("plan"), Plan.account_id, no_date, no_date, no_flag, no_flag, Plan.id, Plan.status
    ).where(Plan.account_id.in_(account_ids), Plan.status == "active")
    pauses: dict[int, BreathingSpace] = {}
    cases: dict[int, CaseRef] = {}
    planned: set[int] = set()
    for kind, account_id, starts_on, ends_on, stops_fees, pauses_contact, row_id, state in session.execute(
        union_all(pauses_q, cases_q, plans_q)
    ):
        if kind == "pause":
            space = BreathingSpace(starts_on, ends_on, bool(stops_fees), bool(pauses_contact))
            if account_id not in pauses or pauses[account_id].ends_on < ends_on:
                pauses[account_id] = space
        elif kind == "case":
            if account_id not in cases or cases[account_id].id < row_id:
                cases[account_id] = CaseRef(row_id, state)
        else:
            planned.add(account_id)
    return pauses, cases, planned


def _summaries(session: Session, accounts: list[Account], today: dt.date) -> list[AccountSummary]:
    policy = policy_service.current(session, today)
    account_ids = [a.id for a in accounts]
    fees, payments = _fees_and_payments(session, account_ids)
    pauses, cases, planned = _help_facts(session, account_ids, today)
    summaries = []
    for account in accounts:
        facts = AccountFacts(
            currency=account.currency,
            oldest_unpaid_due_on=account.oldest_unpaid_due_on,
            fees_charged=fees[account.id],
            referred_to_legal=account.stage == Stage.LEGAL.value,
            plan_active=account.id in planned,
            breathing_space=pauses.get(account.id),
        )
        summaries.append(
            AccountSummary(
                account,
                consequences(facts, policy, today),
                payments[account.id],
                pauses.get(account.id),
                cases.get(account.id),
            )
        )
    return summaries


def overview(session: Session, borrower: Borrower) -> list[AccountSummary]:
    accounts = session.scalars(
        select(Account)
        .options(joinedload(Account.creditor))
        .where(Account.borrower_id == borrower.id, Account.status == "open")
        .order_by(Account.dpd.desc(), Account.id)
    )
    return _summaries(session, list(accounts), borrower_today(borrower))


def account_for(session: Session, borrower: Borrower, account_id: int) -> Account | None:
    """The borrower's own account, or None: another borrower's id is as unknown as a wrong one."""
    return session.scalar(
        select(Account)
        .options(joinedload(Account.creditor))
        .where(Account.id == account_id, Account.borrower_id == borrower.id)
    )


def summary(session: Session, borrower: Borrower, account: Account) -> AccountSummary:
    """One of the borrower's accounts as the dashboard shows it (timeline included)."""
    [only] = _summaries(session, [account], borrower_today(borrower))
    return only


def account_view(
    session: Session, borrower: Borrower, account_id: int, *, whole_statement: bool = False
) -> AccountView | None:
    account = account_for(session, borrower, account_id)
    if account is None:
        return None
    statement = account_service.statement(
        session, account, page=None if whole_statement else account_service.STATEMENT_PAGE
    )
    [summary] = _summaries(session, [account], borrower_today(borrower))
    return AccountView(summary, statement)
