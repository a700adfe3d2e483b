"""Payment rules: how much a borrower may pay or be refunded, how a reversal unwinds a payment's
allocation, when autopay tries again, and when a plan is missed, broken or completed."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import TypeVar

from workflows.errors import DomainError
from workflows.money import require_int

K = TypeVar("K", bound=Hashable)


# --- Reversals: refunds and disputes unwind the payment's allocation ------------------------


def reversal_split(total_reversed: int, allocated: Mapping[K, int]) -> dict[K, int]:
    """The part of each allocation line reversed once `total_reversed` of the payment has been
    reversed in all (refunds and disputes lost, less disputes won).

    It depends only on that total, so reversals arriving in any order end in the same state.
    The payment's units are ranked once, by D'Hondt quotients (line amount / k for its k-th unit,
    larger first, a tie to the line listed first), and a total of t reverses the first t units:
    the parts sum to t, no line loses more than it received, each line loses at least its
    proportional share rounded down, and a larger total never reverses less on any line."""
    amounts = {key: require_int(amount, "allocated") for key, amount in allocated.items()}
    if any(amount < 0 for amount in amounts.values()):
        raise DomainError("allocation_negative", "An allocation line cannot be negative.")
    whole = sum(amounts.values())
    if not 0 <= require_int(total_reversed, "reversed") <= whole:
        raise DomainError(
            "reversal_out_of_range",
            "A reversal of {amount} does not fit a payment of {paid}.",
            amount=total_reversed,
            paid=whole,
        )
    if total_reversed in (0, whole):
        return {key: amount if total_reversed else 0 for key, amount in amounts.items()}
    lines = [(key, amount) for key, amount in amounts.items() if amount > 0]
    threshold = _last_quotient(total_reversed, whole, [amount for _, amount in lines])
    parts = dict.fromkeys(amounts, 0)
    left = total_reversed
    ties: list[K] = []
    for key, amount in lines:
        # Units of this line ranked above the threshold: a / k > q, i.e. k < a / q.
        share = Fraction(amount) / threshold
        parts[key] = -(-share.numerator // share.denominator) - 1
        left -= parts[key]
        if share.denominator == 1:
            ties.append(key)  # its unit number `share` sits exactly on the threshold
    for key in ties[:left]:
        parts[key] += 1
    return parts


def _last_quotient(total: int, whole: int, amounts: Sequence[int]) -> Fraction:
    """The quotient of the `total`-th ranked unit. It lies between whole / (total + lines) and
    whole / total (and is at least 1), so only a few units of each line can hold it."""
    lines = len(amounts)
    candidates: set[Fraction] = set()
    for amount in amounts:
        first = -(-amount * total // whole)  # a / k <= whole / total
        last = min(amount, amount * (total + lines) // whole)  # a / k >= whole / (total + lines)
        candidates.update(Fraction(amount, k) for k in range(max(first, 1), last + 1))
    ranked = sorted(candidates)

    def at_least(quotient: Fraction) -> int:
        # How many units rank at or above `quotient` (never more than a line has: quotient >= 1).
        return sum(min(amount, int(amount / quotient)) for amount in amounts)

    # The largest candidate with at least `total` units at or above it.
    low, high = 0, len(ranked)
    while high - low > 1:
        middle = (low + high) // 2
        if at_least(ranked[middle]) >= total:
            low = middle
        else:
            high = middle
    return ranked[low]


def reversal_delta(before_total: int, after_total: int, allocated: Mapping[K, int]) -> dict[K, int]:
    """What one more reversal (or a dispute won back) changes on each line: positive is reversed
    now, negative is restored."""
    before = reversal_split(before_total, allocated)
    after = reversal_split(after_total, allocated)
    return {key: after[key] - before[key] for key in allocated}


# --- Amounts: payments and refunds ----------------------------------------------------------


def refundable(paid: int, refunded: int, disputed: int) -> int:
    """What can still be refunded of a payment: what was paid, less what was refunded already and
    what is disputed (the card network takes that back itself)."""
    for name, value in (("paid", paid), ("refunded", refunded), ("disputed", disputed)):
        if require_int(value, name) < 0:
            raise DomainError("amount_negative", "The amount cannot be negative.")
    return max(0, paid - refunded - disputed)


def check_refund(amount: int, paid: int, refunded: int, disputed: int) -> None:
    """A refund is more than zero and at most what is still refundable."""
    if require_int(amount) <= 0:
        raise DomainError("refund_not_positive", "A refund must be more than zero.")
    left = refundable(paid, refunded, disputed)
    if amount > left:
        raise DomainError(
            "refund_too_large",
            "At most {refundable} of this payment can be refunded.",
            refundable=left,
        )


def check_payment_amount(amount: int, minimum: int, maximum: int) -> None:
    """A payment is more than zero, at least the minimum and at most the balance (`maximum`).
    Paying off the whole balance is always allowed, even when it is less than the minimum."""
    if require_int(amount) <= 0:
        raise DomainError("amount_not_positive", "The amount must be more than zero.")
    if amount > require_int(maximum, "maximum"):
        raise DomainError(
            "amount_above_balance", "The amount cannot be more than {maximum}.", maximum=maximum
        )
    lowest = min(require_int(minimum, "minimum"), maximum)
    if amount < lowest:
        raise DomainError(
            "amount_below_minimum",
            "The amount must be at least {minimum}.",
            minimum=lowest,
            maximum=maximum,
        )


def refund_needs_second_approval(amount: int, currency: str, thresholds: Mapping[str, int]) -> bool:
    """A refund above the currency's threshold needs a second approver; so does any refund in a
    currency without a threshold."""
    threshold = thresholds.get(currency)
    return threshold is None or require_int(amount) > threshold


# --- Autopay --------------------------------------------------------------------------------


def autopay_attempt_on(due_on: date, attempt: int, retry_days: Sequence[int]) -> date | None:
    """Autopay first tries on the due date; attempt k + 1 comes retry_days[k - 1] days after the
    due date. Beyond the last retry there is no attempt (None)."""
    if require_int(attempt, "attempt") < 1:
        raise DomainError("attempt_invalid", "Autopay attempts are counted from 1.")
    if attempt == 1:
        return due_on
    if attempt - 1 > len(retry_days):
        return None
    return due_on + timedelta(days=retry_days[attempt - 2])


# --- Plans: missed instalments, broken and completed plans ----------------------------------


@dataclass(frozen=True)
class InstalmentState:
    number: int
    due_on: date
    outstanding: int


class BreakReason(StrEnum):
    CONSECUTIVE_MISSES = "consecutive_misses"
    LONG_OVERDUE = "long_overdue"


def is_missed(instalment: InstalmentState, today: date, grace_days: int) -> bool:
    """An instalment is missed once the grace days after its due date have passed with something
    still outstanding (on the last day of grace it is not missed yet)."""
    return instalment.outstanding > 0 and today > instalment.due_on + timedelta(days=grace_days)


def plan_break_reason(
    instalments: Sequence[InstalmentState],
    today: date,
    grace_days: int,
    consecutive_misses: int = 2,
    overdue_days: int = 30,
) -> BreakReason | None:
    """A plan is broken when `consecutive_misses` instalments in a row (by number) are missed, or
    when one missed instalment is still unpaid more than `overdue_days` days after its due date.
    When both hold, the consecutive misses are the reason given."""
    if require_int(consecutive_misses, "consecutive_misses") < 1:
        raise DomainError("plan_rule_invalid", "A plan breaks after at least one missed instalment.")
    if require_int(grace_days, "grace_days") < 0 or require_int(overdue_days, "overdue_days") < 0:
        raise DomainError("plan_rule_invalid", "Grace and overdue days cannot be negative.")
    ordered = sorted(instalments, key=lambda i: i.number)
    run = 0
    previous: int | None = None
    long_overdue = False
    for instalment in ordered:
        if is_missed(instalment, today, grace_days):
            run = run + 1 if previous is not None and instalment.number == previous + 1 else 1
            previous = instalment.number
            if run >= consecutive_misses:
                return BreakReason.CONSECUTIVE_MISSES
            if (today - instalment.due_on).days > overdue_days:
                long_overdue = True
        else:
            run, previous = 0, None
    return BreakReason.LONG_OVERDUE if long_overdue else None


def plan_completed(instalments: Sequence[InstalmentState]) -> bool:
    """A plan is completed when nothing is outstanding on any of its instalments."""
    return all(instalment.outstanding == 0 for instalment in instalments)
