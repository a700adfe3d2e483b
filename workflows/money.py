"""Money as integer minor units: currencies, exact rounding, splits, waterfalls, parsing."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from types import MappingProxyType

from workflows.errors import DomainError

CURRENCY_EXPONENTS: Mapping[str, int] = MappingProxyType(
    {
        "CNY": 2,
        "USD": 2,
        "EUR": 2,
        "GBP": 2,
        "HKD": 2,
        "SGD": 2,
        "JPY": 0,
        "KRW": 0,
        "AUD": 2,
        "CAD": 2,
        "CHF": 2,
        "TWD": 2,
        "MOP": 2,
        "KWD": 3,
        "BHD": 3,
    }
)

MAX_AMOUNT_DIGITS = 18


def check_currency(code: str) -> str:
    """Only currencies we know the minor unit of can be used."""
    if code not in CURRENCY_EXPONENTS:
        raise DomainError("unknown_currency", "Unknown currency {currency}.", currency=code)
    return code


def minor_units(currency: str) -> int:
    """How many decimal places the currency has (2 for yuan/fen, 0 for yen)."""
    return CURRENCY_EXPONENTS[check_currency(currency)]


def require_int(value: object, name: str = "amount") -> int:
    """Amounts are whole minor units: a float or a bool is a bug, not an amount."""
    # bool is a subclass of int, and True fen is never what anyone meant.
    if isinstance(value, bool) or not isinstance(value, int):
        raise DomainError(
            "amount_not_integer",
            "{name} must be a whole number of minor units, not {type}.",
            name=name,
            type=type(value).__name__,
        )
    return value


@dataclass(frozen=True)
class Money:
    """An amount in minor units of one currency."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        require_int(self.amount)
        check_currency(self.currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        """Nothing, in this currency."""
        return cls(0, currency)

    @property
    def is_zero(self) -> bool:
        """True when nothing is owed or paid."""
        return self.amount == 0

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise DomainError(
                "currency_mismatch",
                "Cannot combine {left} with {right}.",
                left=self.currency,
                right=other.currency,
            )

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount >= other.amount


class Component(StrEnum):
    PRINCIPAL = "principal"
    INTEREST = "interest"
    FEES = "fees"


DEFAULT_WATERFALL: tuple[Component, ...] = (
    Component.FEES,
    Component.INTEREST,
    Component.PRINCIPAL,
)


def round_half_even(numerator: int, denominator: int) -> int:
    """Divide and round to the nearest whole unit, exact halves to the even one (banker's rounding)."""
    if denominator <= 0:
        raise DomainError("denominator_invalid", "The denominator must be positive.")
    quotient, remainder = divmod(numerator, denominator)  # floor division, so 0 <= remainder
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        return quotient + 1
    return quotient


def split(total: int, parts: int) -> list[int]:
    """Split an amount into equal parts; the few units that do not divide go on the last part."""
    return split_weighted(total, [1] * parts)


def split_weighted(total: int, weights: Sequence[int]) -> list[int]:
    """Split an amount in proportion to the weights; what rounding leaves over goes on the last part."""
    if not weights:
        raise DomainError("split_invalid", "An amount must be split into at least one part.")
    if any(weight < 0 for weight in weights) or sum(weights) == 0:
        raise DomainError("split_invalid", "Split weights must be non-negative and not all zero.")
    weight_sum = sum(weights)
    sign = -1 if total < 0 else 1
    # Truncating toward zero keeps every part on the total's side of zero and leaves a
    # remainder of the same sign for the last part.
    parts = [sign * (abs(total) * weight // weight_sum) for weight in weights[:-1]]
    parts.append(total - sum(parts))
    return parts


@dataclass(frozen=True)
class Allocation:
    """Where a payment or waiver went: per component, plus any overpayment left unapplied."""

    applied: Mapping[Component, int]
    unapplied: int

    @property
    def total_applied(self) -> int:
        return sum(self.applied.values())


def allocate(
    amount: int,
    balances: Mapping[Component, int],
    order: Sequence[Component] = DEFAULT_WATERFALL,
) -> Allocation:
    """Money pays off each part of the debt in waterfall order (fees, then interest, then
    principal by default); anything beyond the debt is an overpayment, left unapplied."""
    if require_int(amount) < 0:
        raise DomainError("amount_negative", "The amount cannot be negative.")
    if len(set(order)) != len(order):
        raise DomainError("waterfall_invalid", "A waterfall lists each component once.")
    for component, balance in balances.items():
        if require_int(balance, "balance") < 0:
            raise DomainError(
                "balance_negative",
                "The {component} balance cannot be negative.",
                component=component,
            )
    applied: dict[Component, int] = {}
    left = amount
    for component in order:
        applied[component] = min(left, balances.get(component, 0))
        left -= applied[component]
    for component in Component:
        applied.setdefault(component, 0)
    return Allocation(applied=MappingProxyType(applied), unapplied=left)


@dataclass(frozen=True)
class OpenInstalment:
    """A plan instalment not yet fully paid."""

    id: int
    due_on: date
    outstanding: int
    """What is still unpaid of it, more than zero."""


@dataclass(frozen=True)
class PaymentAllocation:
    """Where one payment went: per component of the balance (every component listed), to which
    plan instalments (only those it paid something towards), and what is left beyond the whole
    debt, held as a credit for the borrower."""

    components: Mapping[Component, int]
    instalments: Mapping[int, int]
    credit: int

    @property
    def applied(self) -> int:
        """What reduced the debt."""
        return sum(self.components.values())

    @property
    def total(self) -> int:
        """The whole payment: what was applied plus the credit."""
        return self.applied + self.credit


def allocate_payment(
    amount: int,
    balances: Mapping[Component, int],
    instalments: Sequence[OpenInstalment] = (),
    waterfall: Sequence[Component] = DEFAULT_WATERFALL,
) -> PaymentAllocation:
    """A payment pays the balance by the waterfall, and what is beyond the whole debt becomes a
    credit. Inside a plan the applied part (never the credit) also pays the oldest open instalment
    first (by due date, then id), then the next, each at most what is outstanding on it."""
    if require_int(amount) <= 0:
        raise DomainError("amount_not_positive", "The amount must be more than zero.")
    if sorted(waterfall) != sorted(Component):
        raise DomainError("waterfall_invalid", "A waterfall lists each component once.")
    ids = [instalment.id for instalment in instalments]
    if len(set(ids)) != len(ids):
        raise DomainError("instalment_duplicate", "An instalment is listed more than once.")
    for instalment in instalments:
        if require_int(instalment.outstanding, "outstanding") <= 0:
            raise DomainError(
                "instalment_not_open",
                "Instalment {id} has nothing outstanding.",
                id=instalment.id,
            )
    allocation = allocate(amount, balances, waterfall)
    paid: dict[int, int] = {}
    left = allocation.total_applied
    for instalment in sorted(instalments, key=lambda i: (i.due_on, i.id)):
        if left == 0:
            break
        paid[instalment.id] = min(left, instalment.outstanding)
        left -= paid[instalment.id]
    return PaymentAllocation(
        components=allocation.applied,
        instalments=MappingProxyType(paid),
        credit=allocation.unapplied,
    )


_PLAIN = re.compile(r"(\d*)(?:\.(\d*))?", re.ASCII)
_GROUPED = re.compile(r"(\d{1,3}(?:,\d{3})+)(?:\.(\d*))?", re.ASCII)


def parse_amount(text: str, currency: str) -> int:
    """Read an amount as the borrower typed it ("1,234.50") into exact minor units."""
    exponent = minor_units(currency)
    cleaned = text.strip()
    negative = cleaned.startswith("-")
    if negative:
        cleaned = cleaned[1:].lstrip()
    # Cheap length guard first, so pasted megabytes never reach the regexes.
    match = None
    if len(cleaned) <= 2 * MAX_AMOUNT_DIGITS:
        match = _PLAIN.fullmatch(cleaned) or _GROUPED.fullmatch(cleaned)
    whole = match.group(1).replace(",", "") if match else ""
    fraction = (match.group(2) or "") if match else ""
    if not (whole or fraction) or len(whole) + len(fraction) > MAX_AMOUNT_DIGITS:
        raise DomainError("amount_invalid", "{text} is not an amount.", text=text[:40])
    if negative:
        raise DomainError("amount_negative", "The amount cannot be negative.")
    if len(fraction) > exponent:
        raise DomainError(
            "amount_too_precise",
            "{currency} amounts have at most {places} decimal places.",
            currency=currency,
            places=exponent,
        )
    scale: int = 10**exponent
    return int(whole or "0") * scale + int(fraction.ljust(exponent, "0") or "0")


def plain_amount(amount: int, currency: str) -> str:
    """An amount as a person would type it back into a form: no grouping, no symbol
    (the inverse of parse_amount: parse_amount(plain_amount(a, c), c) == a for a >= 0)."""
    places = minor_units(currency)
    if require_int(amount) < 0:
        raise DomainError("amount_negative", "The amount cannot be negative.")
    if places == 0:
        return str(amount)
    whole, fraction = divmod(amount, 10**places)
    return f"{whole}.{fraction:0{places}d}"


def parse_rate_bp(text: str) -> int:
    """A yearly rate typed as a percentage with at most two decimals ("6", "5.25") in exact
    basis points (600, 525); the same rules as an amount with two decimal places."""
    try:
        return parse_amount(text, "EUR")
    except DomainError as exc:
        raise DomainError("rate_invalid", "Enter a rate such as 5.25 (percent a year).") from exc
