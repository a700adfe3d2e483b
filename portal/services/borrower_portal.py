"""What a signed-in borrower sees: their accounts, what is overdue, what happens next."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Date, Select, and_, bindparam, func, literal, select
from sqlalchemy.orm import Session, aliased, joinedload

from portal.models import Account, AccountPause, Borrower, Creditor, HardshipCase, LedgerEntry, Plan
from portal.services import accounts as account_service
from portal.services import policy as policy_service
from workflows.delinquency import AccountFacts, BreathingSpace, Consequence, consequences
from workflows.ledger import EntryKind
from workflows.negotiation import OPEN_STATES, CaseState
from workflows.policy import Policy, Stage

RECENT_PAYMENTS = 3


@dataclass(frozen=True)
class Payment:
    on: dt.date
    amount: int  # positive: what the borrower paid


@dataclass(frozen=True)
class AccountSummary:
    account: Account | AccountCard
    """The ORM account where a page has it already; the dashboard's own ``AccountCard`` in ``overview``."""
    timeline: list[Consequence]
    recent_payments: list[Payment]
    breathing_space: BreathingSpace | None = None
    hardship_case: CaseRef | None = None
    """The borrower's request for help on this account that is still open or approved, if any."""

    @property
    def payment_stops_something(self) -> bool:
        """Whether paying the overdue amount would stop a step of the timeline."""
        return any(c.stopped_by_payment for c in self.timeline)


@dataclass(frozen=True)
class AccountView:
    summary: AccountSummary
    statement: account_service.Statement


def borrower_today(borrower: Borrower) -> dt.date:
    """Due dates and days past due count in the borrower's own time zone."""
    return dt.datetime.now(ZoneInfo(borrower.time_zone)).date()


@dataclass(frozen=True)
class CaseRef:
    """The borrower's current request for help on an account, as the dashboard names it."""

    id: int
    state: str


@dataclass(frozen=True)
class CreditorName:
    name: str


@dataclass(frozen=True)
class AccountCard:
    """The columns of an account the dashboard shows (``account.creditor.name`` included), read as
    plain values: the page changes nothing, so it needs no ORM object to track."""

    id: int
    creditor: CreditorName
    external_reference: str
    product_type: str
    currency: str
    oldest_unpaid_due_on: dt.date | None
    overdue_amount: int
    next_due_on: dt.date | None
    next_due_amount: int
    principal_balance: int
    interest_balance: int
    fees_balance: int
    dpd: int
    stage: str

    @property
    def total_balance(self) -> int:
        return self.principal_balance + self.interest_balance + self.fees_balance


@dataclass
class _Facts:
    """What the timeline and the card need besides the account's own columns."""

    fees_charged: int = 0
    plan_active: bool = False
    hardship_case: CaseRef | None = None
    breathing_space: BreathingSpace | None = None
    recent_payments: list[Payment] = field(default_factory=list)


_CARD_COLUMNS = (  # in AccountCard's order
    Account.id,
    Creditor.name,
    Account.external_reference,
    Account.product_type,
    Account.currency,
    Account.oldest_unpaid_due_on,
    Account.overdue_amount,
    Account.next_due_on,
    Account.next_due_amount,
    Account.principal_balance,
    Account.interest_balance,
    Account.fees_balance,
    Account.dpd,
    Account.stage,
)
_CURRENT_CASE_STATES = sorted(s.value for s in OPEN_STATES | {CaseState.ACTIVE})


@functools.cache
def _cards_statement(by_borrower: bool) -> Select[Any]:
    """The statement behind ``_cards_and_facts``, built once per process (building it costs more
    than running it): ``by_borrower``, the open accounts of ``:borrower_id``; otherwise the accounts
    ``:account_ids``. ``:today`` is the borrower's day."""

    def which(account: Any) -> ColumnElement[bool]:
        if by_borrower:
            return and_(account.borrower_id == bindparam("borrower_id"), account.status == "open")
        return account.id.in_(bindparam("account_ids", expanding=True))

    today = bindparam("today", type_=Date)
    pause = aliased(AccountPause)
    case_ = aliased(HardshipCase)
    fees = (
        select(func.coalesce(func.sum(LedgerEntry.amount), 0))
        .where(LedgerEntry.account_id == Account.id, LedgerEntry.kind == EntryKind.FEE.value)
        .scalar_subquery()
    )
    plan_active = select(Plan.id).where(Plan.account_id == Account.id, Plan.status == "active").exists()
    current_case = (
        select(func.max(HardshipCase.id))
        # One bound value per state rather than an "expanding" list, which SQLAlchemy rewrites
        # into the cached SQL on every execution.
        .where(
            HardshipCase.account_id == Account.id, HardshipCase.state.in_(map(literal, _CURRENT_CASE_STATES))
        )
        .scalar_subquery()
    )
    pause_in_force = (
        select(AccountPause.id)
        .where(
            AccountPause.account_id == Account.id,
            AccountPause.lifted_at.is_(None),
            AccountPause.starts_on <= today,
            AccountPause.ends_on >= today,
        )
        .order_by(AccountPause.ends_on.desc(), AccountPause.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    # The payments of the listed accounts only (the same condition, on its own copy of the
    # table), numbered newest first per account, so a long history costs nothing here.
    listed = aliased(Account)
    paid = (
        select(
            LedgerEntry.account_id,
            LedgerEntry.effective_on,
            func.sum(LedgerEntry.amount).label("total"),
            func.row_number()
            .over(
                partition_by=LedgerEntry.account_id,
                order_by=(LedgerEntry.effective_on.desc(), func.max(LedgerEntry.id).desc()),
            )
            .label("n"),
        )
        .where(
            LedgerEntry.account_id.in_(select(listed.id).where(which(listed))),
            LedgerEntry.kind == EntryKind.PAYMENT.value,
        )
        .group_by(LedgerEntry.account_id, LedgerEntry.effective_on, LedgerEntry.cause)
        .subquery()
    )
    return (
        select(
            *_CARD_COLUMNS,
            fees.label("fees_charged"),
            plan_active.label("plan_active"),
            case_.id,
            case_.state,
            pause.starts_on,
            pause.ends_on,
            pause.stops_fees,
            pause.pauses_contact,
            paid.c.effective_on,
            paid.c.total,
        )
        .join(Creditor, Creditor.id == Account.creditor_id)
        .outerjoin(case_, case_.id == current_case)
        .outerjoin(pause, pause.id == pause_in_force)
        .outerjoin(paid, and_(paid.c.account_id == Account.id, paid.c.n <= RECENT_PAYMENTS))
        .where(which(Account))
        .order_by(Account.dpd.desc(), Account.id, paid.c.n)
    )


def _cards_and_facts(
    session: Session, today: dt.date, *, borrower_id: int | None = None, account_ids: list[int] | None = None
) -> list[tuple[AccountCard, _Facts]]:
    """The open accounts of ``borrower_id``, or the accounts ``account_ids``, each with its
    timeline's facts, in **one** statement (one round trip, whatever the number of accounts):

    - the late fees charged so far (the sum of the account's fee entries);
    - whether a signed plan is in force;
    - the current request for help (the newest case that is open, approved or active);
    - the breathing space in force today (if several, the one that ends last);
    - the latest payments, newest first: one payment posts one entry per component, so entries
      are summed per payment (day and cause); these come as up to three rows per account.

    By days past due (most first), then account id, as the dashboard lists them."""
    if borrower_id is not None:
        statement, params = _cards_statement(True), {"borrower_id": borrower_id, "today": today}
    else:
        statement, params = _cards_statement(False), {"account_ids": account_ids or [], "today": today}
    # Plain columns, no ORM entities: run on the session's connection, which skips the ORM's
    # result layer (about a fifth of the dashboard's query time); flushed first as the session
    # itself would, so a caller's pending changes are seen.
    session.flush()
    found: dict[int, tuple[AccountCard, _Facts]] = {}
    for row in session.connection().execute(statement, params):
        (*columns, fees_charged, planned, case_id, state, starts_on, ends_on, stops, pauses, on, total) = row
        entry = found.get(row[0])
        if entry is None:
            account_id, creditor, *rest = columns
            facts = _Facts(int(fees_charged), bool(planned))
            if case_id is not None:
                facts.hardship_case = CaseRef(case_id, state)
            if starts_on is not None:
                facts.breathing_space = BreathingSpace(starts_on, ends_on, bool(stops), bool(pauses))
            entry = found[account_id] = (AccountCard(account_id, CreditorName(creditor), *rest), facts)
        if on is not None:
            entry[1].recent_payments.append(Payment(on, -int(total)))
    return list(found.values())


def _summary(account: Account | AccountCard, facts: _Facts, policy: Policy, today: dt.date) -> AccountSummary:
    timeline_facts = AccountFacts(
        currency=account.currency,
        oldest_unpaid_due_on=account.oldest_unpaid_due_on,
        fees_charged=facts.fees_charged,
        referred_to_legal=account.stage == Stage.LEGAL.value,
        plan_active=facts.plan_active,
        breathing_space=facts.breathing_space,
    )
    return AccountSummary(
        account,
        consequences(timeline_facts, policy, today),
        facts.recent_payments,
        facts.breathing_space,
        facts.hardship_case,
    )


def _summaries(session: Session, accounts: list[Account], today: dt.date) -> list[AccountSummary]:
    if not accounts:
        return []
    policy = policy_service.current(session, today)
    ids = [a.id for a in accounts]
    facts = {card.id: found for card, found in _cards_and_facts(session, today, account_ids=ids)}
    return [_summary(account, facts[account.id], policy, today) for account in accounts]


def overview(session: Session, borrower: Borrower) -> list[AccountSummary]:
    """The borrower's open accounts as the dashboard shows them, most days past due first; each
    summary's ``account`` is an ``AccountCard`` (plain values, not an ORM object)."""
    today = borrower_today(borrower)
    rows = _cards_and_facts(session, today, borrower_id=borrower.id)
    if not rows:
        return []
    policy = policy_service.current(session, today)
    return [_summary(card, facts, policy, today) for card, facts in rows]


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
