"""The finance dashboard's figures, each one grouped SQL query (no loop over ORM rows), amounts in
minor units per currency (amounts in two currencies are never added):

- collections per business day over the last 30 days, by channel (one-off or autopay);
- collections per stage over the same days: the stage the account was in on the day it paid
  (its latest `stage_history` row entered on or before that day; "unrecorded" when it has none);
- plans per status (active, completed, broken) and the instalments due in the period per status
  (paid, missed, or still due);
- waivers granted per day;
- reconciliation exceptions not yet resolved, by how many days old they are (from their day).

Every dataset also comes as rows for a CSV download (`dataset_rows`). Read only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from portal.models import (
    Account,
    LedgerEntry,
    Payment,
    Plan,
    PlanInstalment,
    ReconciliationException,
    StageHistory,
)
from portal.services.finance_close import OPEN_EXCEPTION_STATUSES
from portal.services.finance_exports import major
from workflows.policy import Stage

DAYS = 30
UNRECORDED = "unrecorded"
STAGES = (*(s.value for s in Stage), UNRECORDED)
PLAN_STATUSES = ("active", "completed", "broken")
INSTALMENT_STATUSES = ("paid", "missed", "due")
AGE_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0-1", 0, 1),
    ("2-7", 2, 7),
    ("8-30", 8, 30),
    ("31+", 31, None),
)
"""(label, fewest days, most days) old, counted from the exception's day to today."""


@dataclass(frozen=True)
class DayCollections:
    day: dt.date
    one_off: int = 0
    autopay: int = 0
    payments: int = 0

    @property
    def total(self) -> int:
        return self.one_off + self.autopay


@dataclass(frozen=True)
class StageCollections:
    stage: str
    one_off: int = 0
    autopay: int = 0
    payments: int = 0

    @property
    def total(self) -> int:
        return self.one_off + self.autopay


@dataclass(frozen=True)
class AgeBucket:
    label: str
    count: int = 0
    amount: int = 0


@dataclass(frozen=True)
class Dashboard:
    currency: str
    first: dt.date
    today: dt.date
    daily: list[DayCollections]
    by_stage: list[StageCollections]
    plans: dict[str, int]
    instalments: dict[str, int]
    waivers: list[tuple[dt.date, int]]
    exceptions: list[AgeBucket]
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def kept_rate_bp(self) -> int | None:
        """Instalments paid out of those paid or missed, in basis points."""
        settled = self.instalments["paid"] + self.instalments["missed"]
        return self.instalments["paid"] * 10_000 // settled if settled else None


def period(today: dt.date, days: int = DAYS) -> tuple[dt.date, dt.date]:
    return today - dt.timedelta(days=days - 1), today


def collections_daily(session: Session, currency: str, first: dt.date, last: dt.date) -> list[DayCollections]:
    """One row per day of the period (days with nothing included, as zeros)."""
    autopay = Payment.origin == "autopay"
    rows = session.execute(
        select(
            Payment.received_on,
            func.coalesce(func.sum(case((~autopay, Payment.amount), else_=0)), 0),
            func.coalesce(func.sum(case((autopay, Payment.amount), else_=0)), 0),
            func.count(Payment.id),
        )
        .where(
            Payment.status == "succeeded",
            Payment.currency == currency,
            Payment.received_on >= first,
            Payment.received_on <= last,
        )
        .group_by(Payment.received_on)
    ).all()
    found = {day: DayCollections(day, int(one), int(auto), int(n)) for day, one, auto, n in rows}
    days = (first + dt.timedelta(days=i) for i in range((last - first).days + 1))
    return [found.get(day, DayCollections(day)) for day in days]


def collections_by_stage(
    session: Session, currency: str, first: dt.date, last: dt.date
) -> list[StageCollections]:
    """Per stage the account was in when it paid, every stage listed (zeros included)."""
    stage_then = (
        select(StageHistory.stage)
        .where(StageHistory.account_id == Payment.account_id, StageHistory.entered_on <= Payment.received_on)
        .order_by(StageHistory.entered_on.desc(), StageHistory.id.desc())
        .limit(1)
        .correlate(Payment)
        .scalar_subquery()
    )
    paid = (
        select(
            func.coalesce(stage_then, UNRECORDED).label("stage"),
            Payment.origin.label("origin"),
            Payment.amount.label("amount"),
        )
        .where(
            Payment.status == "succeeded",
            Payment.currency == currency,
            Payment.received_on >= first,
            Payment.received_on <= last,
        )
        .subquery()
    )
    autopay = paid.c.origin == "autopay"
    rows = session.execute(
        select(
            paid.c.stage,
            func.coalesce(func.sum(case((~autopay, paid.c.amount), else_=0)), 0),
            func.coalesce(func.sum(case((autopay, paid.c.amount), else_=0)), 0),
            func.count(),
        ).group_by(paid.c.stage)
    ).all()
    found = {
        str(stage): StageCollections(str(stage), int(one), int(auto), int(n)) for stage, one, auto, n in rows
    }
    return [found.get(stage, StageCollections(stage)) for stage in STAGES]


def plan_counts(session: Session, currency: str) -> dict[str, int]:
    rows = session.execute(
        select(Plan.status, func.count(Plan.id)).where(Plan.currency == currency).group_by(Plan.status)
    ).all()
    found = {str(status): int(n) for status, n in rows}
    return {status: found.get(status, 0) for status in PLAN_STATUSES}


def instalment_counts(session: Session, currency: str, first: dt.date, last: dt.date) -> dict[str, int]:
    """Instalments due in the period, by what became of them."""
    rows = session.execute(
        select(PlanInstalment.status, func.count(PlanInstalment.id))
        .join(Plan, Plan.id == PlanInstalment.plan_id)
        .where(Plan.currency == currency, PlanInstalment.due_on >= first, PlanInstalment.due_on <= last)
        .group_by(PlanInstalment.status)
    ).all()
    found = {str(status): int(n) for status, n in rows}
    return {status: found.get(status, 0) for status in INSTALMENT_STATUSES}


def waivers_daily(
    session: Session, currency: str, first: dt.date, last: dt.date
) -> list[tuple[dt.date, int]]:
    rows = session.execute(
        select(LedgerEntry.effective_on, -func.sum(LedgerEntry.amount))
        .join(Account, Account.id == LedgerEntry.account_id)
        .where(
            LedgerEntry.kind == "waiver",
            Account.currency == currency,
            LedgerEntry.effective_on >= first,
            LedgerEntry.effective_on <= last,
        )
        .group_by(LedgerEntry.effective_on)
    ).all()
    found = {day: int(total) for day, total in rows}
    days = (first + dt.timedelta(days=i) for i in range((last - first).days + 1))
    return [(day, found.get(day, 0)) for day in days]


def exception_ages(session: Session, currency: str, today: dt.date) -> list[AgeBucket]:
    """Exceptions not yet resolved (open or awaiting approval), by age in days."""
    exc = ReconciliationException
    whens = []
    for label, fewest, most in AGE_BUCKETS:
        newest = today - dt.timedelta(days=fewest)
        condition = exc.day <= newest
        if most is not None:
            condition = condition & (exc.day >= today - dt.timedelta(days=most))
        whens.append((condition, label))
    # Grouped in an outer query: PostgreSQL cannot tell that a CASE with bound dates in the
    # select list and the same CASE in GROUP BY are one expression.
    aged = (
        select(
            case(*whens, else_=AGE_BUCKETS[0][0]).label("bucket"),  # a future day counts as new
            func.abs(exc.amount).label("amount"),
        )
        .where(exc.currency == currency, exc.status.in_(OPEN_EXCEPTION_STATUSES))
        .subquery()
    )
    rows = session.execute(
        select(aged.c.bucket, func.count(), func.coalesce(func.sum(aged.c.amount), 0)).group_by(aged.c.bucket)
    ).all()
    found = {str(label): AgeBucket(str(label), int(n), int(amount)) for label, n, amount in rows}
    return [found.get(label, AgeBucket(label)) for label, _, _ in AGE_BUCKETS]


def dashboard(session: Session, currency: str, today: dt.date, days: int = DAYS) -> Dashboard:
    first, last = period(today, days)
    daily = collections_daily(session, currency, first, last)
    return Dashboard(
        currency=currency,
        first=first,
        today=today,
        daily=daily,
        by_stage=collections_by_stage(session, currency, first, last),
        plans=plan_counts(session, currency),
        instalments=instalment_counts(session, currency, first, last),
        waivers=waivers_daily(session, currency, first, last),
        exceptions=exception_ages(session, currency, today),
        totals={
            "one_off": sum(d.one_off for d in daily),
            "autopay": sum(d.autopay for d in daily),
            "payments": sum(d.payments for d in daily),
        },
    )


def _daily_rows(board: Dashboard) -> Iterator[Sequence[object]]:
    cur = board.currency
    yield ("day", "currency", "one_off_minor", "autopay_minor", "total_minor", "total", "payments")
    for d in board.daily:
        yield (d.day.isoformat(), cur, d.one_off, d.autopay, d.total, major(d.total, cur), d.payments)


def _stage_rows(board: Dashboard) -> Iterator[Sequence[object]]:
    cur = board.currency
    yield ("stage", "currency", "one_off_minor", "autopay_minor", "total_minor", "total", "payments")
    for s in board.by_stage:
        yield (s.stage, cur, s.one_off, s.autopay, s.total, major(s.total, cur), s.payments)


def _plan_rows(board: Dashboard) -> Iterator[Sequence[object]]:
    yield ("status", "currency", "plans")
    for status, n in board.plans.items():
        yield (status, board.currency, n)


def _instalment_rows(board: Dashboard) -> Iterator[Sequence[object]]:
    yield ("status", "currency", "due_from", "due_to", "instalments")
    for status, n in board.instalments.items():
        yield (status, board.currency, board.first.isoformat(), board.today.isoformat(), n)


def _waiver_rows(board: Dashboard) -> Iterator[Sequence[object]]:
    cur = board.currency
    yield ("day", "currency", "waived_minor", "waived")
    for day, amount in board.waivers:
        yield (day.isoformat(), cur, amount, major(amount, cur))


def _exception_rows(board: Dashboard) -> Iterator[Sequence[object]]:
    cur = board.currency
    yield ("age_days", "currency", "open_exceptions", "amount_minor", "amount")
    for b in board.exceptions:
        yield (b.label, cur, b.count, b.amount, major(b.amount, cur))


DATASETS: dict[str, Callable[[Dashboard], Iterator[Sequence[object]]]] = {
    "collections_daily": _daily_rows,
    "collections_stage": _stage_rows,
    "plans": _plan_rows,
    "instalments": _instalment_rows,
    "waivers": _waiver_rows,
    "exceptions": _exception_rows,
}
"""The numbers behind each chart, as CSV rows (header first), by the name in its download link."""


def dataset_rows(board: Dashboard, name: str) -> Iterator[Sequence[object]]:
    """The rows of one dataset; KeyError for an unknown name."""
    return DATASETS[name](board)
