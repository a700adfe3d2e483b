"""Repayment schedules: monthly due dates, equal instalments and amortised (annuity) plans.

Every schedule is exact and reproducible: amounts are whole minor units that add up to what is
owed, the same inputs always give the same schedule, and due dates never drift from the day of
the month the schedule started on.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from itertools import pairwise

from workflows.errors import DomainError
from workflows.money import check_currency, require_int, round_half_even, split

MAX_INSTALMENTS = 600
"""Fifty years of monthly instalments: more is a mistake, not a plan."""

MAX_RATE_BP = 100_000
"""An annual rate above 1,000 % is refused as a data error."""

MAX_DEFERRED_MONTHS = 120

MONTHLY_RATE_DENOMINATOR = 12 * 10_000
"""Interest for one month is balance x annual rate in basis points / (12 x 10,000)."""


@dataclass(frozen=True)
class Instalment:
    """One payment of a schedule: its place (from 1), the day it falls due and the amount."""

    number: int
    due_on: date
    amount: int


@dataclass(frozen=True)
class Schedule:
    """The instalments of a plan in one currency, with the interest they include.

    `interest` is the part of the instalments that is interest charged by the plan itself, so
    ``total == principal + interest`` always holds. A schedule may be empty (a payment holiday
    that asks for nothing yet).
    """

    currency: str
    instalments: tuple[Instalment, ...]
    interest: int = 0

    def __post_init__(self) -> None:
        check_currency(self.currency)
        object.__setattr__(self, "instalments", tuple(self.instalments))
        require_int(self.interest, "interest")
        for position, instalment in enumerate(self.instalments, start=1):
            require_int(instalment.amount)
            if instalment.number != position:
                raise DomainError("schedule_invalid", "Instalments are numbered from 1 in order.")
            if instalment.amount < 0:
                raise DomainError("amount_negative", "The amount cannot be negative.")
        for earlier, later in pairwise(self.instalments):
            if later.due_on <= earlier.due_on:
                raise DomainError("schedule_invalid", "Due dates must follow each other.")
        if not 0 <= self.interest <= self.total:
            raise DomainError("schedule_invalid", "The interest must be part of the instalments.")

    @property
    def count(self) -> int:
        return len(self.instalments)

    @property
    def total(self) -> int:
        """Everything the schedule asks for."""
        return sum(instalment.amount for instalment in self.instalments)

    @property
    def principal(self) -> int:
        """What the schedule repays of the debt itself (the total less the plan's interest)."""
        return self.total - self.interest

    @property
    def amounts(self) -> tuple[int, ...]:
        return tuple(instalment.amount for instalment in self.instalments)

    @property
    def regular_amount(self) -> int:
        """The amount of the first instalment, which every instalment but the last repeats; 0 if empty."""
        return self.instalments[0].amount if self.instalments else 0

    @property
    def largest_amount(self) -> int:
        """The most any single instalment asks for (the last can be a little more than the rest)."""
        return max(self.amounts, default=0)

    @property
    def first_due_on(self) -> date | None:
        return self.instalments[0].due_on if self.instalments else None

    @property
    def last_due_on(self) -> date | None:
        return self.instalments[-1].due_on if self.instalments else None


def add_months(day: date, months: int) -> date:
    """The same day of the month, `months` later; a day the month lacks becomes its last day
    (31 January + 1 month = 28 or 29 February)."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    if not 1 <= year <= 9999:
        raise DomainError("schedule_date_out_of_range", "The due dates run past the calendar.")
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def _check_count(count: int) -> int:
    require_int(count, "count")
    if not 1 <= count <= MAX_INSTALMENTS:
        raise DomainError(
            "schedule_count_invalid",
            "A schedule has from 1 to {maximum} instalments.",
            maximum=MAX_INSTALMENTS,
        )
    return count


def monthly_dates(first_due: date, count: int) -> tuple[date, ...]:
    """`count` due dates a month apart, each counted from the first, never from the one before:
    31 January, 29 February, 31 March — a short month does not pull later dates back."""
    _check_count(count)
    return tuple(add_months(first_due, months) for months in range(count))


def from_amounts(currency: str, amounts: Sequence[int], first_due: date, interest: int = 0) -> Schedule:
    """A schedule of the given amounts, due monthly from `first_due`."""
    dates = monthly_dates(first_due, len(amounts))
    return Schedule(
        currency=currency,
        instalments=tuple(
            Instalment(number=number, due_on=due_on, amount=amount)
            for number, (due_on, amount) in enumerate(zip(dates, amounts, strict=True), start=1)
        ),
        interest=interest,
    )


def _check_amount(amount: int, name: str) -> int:
    if require_int(amount, name) < 0:
        raise DomainError("amount_negative", "The amount cannot be negative.")
    return amount


def equal_instalments(total: int, count: int, first_due: date, currency: str) -> Schedule:
    """`count` equal monthly instalments that add up to `total` exactly; the few minor units that
    do not divide evenly go on the last instalment."""
    check_currency(currency)
    _check_amount(total, "total")
    return from_amounts(currency, split(total, _check_count(count)), first_due)


def _check_rate_and_months(annual_rate_bp: int, interest_free_months: int, deferred_months: int) -> None:
    require_int(annual_rate_bp, "annual_rate_bp")
    if not 0 <= annual_rate_bp <= MAX_RATE_BP:
        raise DomainError(
            "rate_invalid",
            "The annual rate must be from 0 to {maximum} basis points.",
            maximum=MAX_RATE_BP,
        )
    for name, months, maximum in (
        ("interest_free_months", interest_free_months, MAX_DEFERRED_MONTHS + MAX_INSTALMENTS),
        ("deferred_months", deferred_months, MAX_DEFERRED_MONTHS),
    ):
        require_int(months, name)
        if not 0 <= months <= maximum:
            raise DomainError(
                "schedule_months_invalid",
                "{name} must be from 0 to {maximum} months.",
                name=name,
                maximum=maximum,
            )


def monthly_interest(balance: int, annual_rate_bp: int) -> int:
    """One month's interest on a balance: balance x rate / (12 x 10,000), banker's rounded."""
    return round_half_even(balance * annual_rate_bp, MONTHLY_RATE_DENOMINATOR)


def accrued_interest(principal: int, annual_rate_bp: int, months: int) -> int:
    """Interest a balance gathers over `months` months with nothing paid, each month's interest
    rounded and added to the balance (the same rule a schedule's deferred months follow)."""
    _check_amount(principal, "principal")
    _check_rate_and_months(annual_rate_bp, 0, months)
    balance = principal
    for _ in range(months):
        balance += monthly_interest(balance, annual_rate_bp)
    return balance - principal


def _level_payment_exact(balance: int, annual_rate_bp: int, count: int, free_payment_months: int) -> Fraction:
    # Free months come first; over the m months that bear interest the present value of one unit
    # a month is (1 - (1 + r)^-m) / r, and each free month is worth exactly one unit.
    charged = count - free_payment_months
    if annual_rate_bp == 0 or charged == 0:
        return Fraction(balance, count)
    rate = Fraction(annual_rate_bp, MONTHLY_RATE_DENOMINATOR)
    annuity = (1 - (1 + rate) ** -charged) / rate
    return balance / (free_payment_months + annuity)


def level_payment(
    principal: int,
    annual_rate_bp: int,
    count: int,
    *,
    interest_free_months: int = 0,
    deferred_months: int = 0,
) -> int:
    """The regular instalment `amortised` would ask for with the same arguments."""
    _check_amount(principal, "principal")
    _check_count(count)
    _check_rate_and_months(annual_rate_bp, interest_free_months, deferred_months)
    balance = _capitalise(principal, annual_rate_bp, interest_free_months, deferred_months)
    free = min(max(interest_free_months - deferred_months, 0), count)
    exact = _level_payment_exact(balance, annual_rate_bp, count, free)
    return exact.numerator // exact.denominator


def _capitalise(principal: int, annual_rate_bp: int, interest_free_months: int, deferred_months: int) -> int:
    balance = principal
    for month in range(1, deferred_months + 1):
        if month > interest_free_months:
            balance += monthly_interest(balance, annual_rate_bp)
    return balance


def amortised(
    principal: int,
    annual_rate_bp: int,
    count: int,
    first_due: date,
    currency: str,
    *,
    interest_free_months: int = 0,
    deferred_months: int = 0,
) -> Schedule:
    """A level-payment (annuity) plan: `count` monthly instalments that repay `principal` with
    interest on the balance still owed.

    Each month's interest is round_half_even(balance x annual_rate_bp, 12 x 10,000), charged on
    the balance before that month's payment. The regular payment is the exact annuity payment
    rounded down to a whole minor unit, and the last instalment clears whatever is left — like
    `split`, what rounding leaves over goes on the last instalment — so the instalments add up to
    principal + interest exactly and the last differs from the others by the rounding only.

    `deferred_months` come before the first instalment, with nothing to pay: their interest is
    added to the balance (a payment holiday). The first `interest_free_months` of the whole span,
    deferred months first, charge no interest (an interest freeze). With no interest to charge
    the plan is an equal split, the remainder on the last instalment.
    """
    check_currency(currency)
    _check_amount(principal, "principal")
    _check_count(count)
    _check_rate_and_months(annual_rate_bp, interest_free_months, deferred_months)
    balance = _capitalise(principal, annual_rate_bp, interest_free_months, deferred_months)
    free = min(max(interest_free_months - deferred_months, 0), count)
    if annual_rate_bp == 0 or free == count:
        return from_amounts(currency, split(balance, count), first_due, interest=balance - principal)
    exact = _level_payment_exact(balance, annual_rate_bp, count, free)
    payment = exact.numerator // exact.denominator
    amounts: list[int] = []
    for number in range(1, count + 1):
        owed = balance if number <= free else balance + monthly_interest(balance, annual_rate_bp)
        # A rounded-up payment must never take the balance below zero.
        paid = owed if number == count else min(payment, owed)
        amounts.append(paid)
        balance = owed - paid
    return from_amounts(currency, amounts, first_due, interest=sum(amounts) - principal)
