"""Ledger postings: the sign rules for each entry kind and how postings move balances."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from workflows.errors import DomainError
from workflows.money import Allocation, Component, require_int


class EntryKind(StrEnum):
    CHARGE = "charge"
    INTEREST = "interest"
    FEE = "fee"
    PAYMENT = "payment"
    WAIVER = "waiver"
    REVERSAL = "reversal"
    ADJUSTMENT = "adjustment"


_INCREASES = frozenset({EntryKind.CHARGE, EntryKind.INTEREST, EntryKind.FEE})
_DECREASES = frozenset({EntryKind.PAYMENT, EntryKind.WAIVER})
_ONLY_COMPONENT = {
    EntryKind.INTEREST: Component.INTEREST,
    EntryKind.FEE: Component.FEES,
}


@dataclass(frozen=True)
class Posting:
    """A signed amount on one component of an account's balance: positive means more is owed."""

    component: Component
    amount: int

    def __post_init__(self) -> None:
        require_int(self.amount)


def check_posting(kind: EntryKind, posting: Posting) -> None:
    """Charges, interest and fees only add to the debt, payments and waivers only reduce it,
    interest and fees land on their own component, and an entry of zero is never written."""
    if posting.amount == 0:
        raise DomainError("posting_zero", "A {kind} entry cannot be zero.", kind=kind)
    only = _ONLY_COMPONENT.get(kind)
    if only is not None and posting.component != only:
        raise DomainError(
            "posting_component",
            "A {kind} entry can only be posted to {only}, not {component}.",
            kind=kind,
            only=only,
            component=posting.component,
        )
    if (kind in _INCREASES and posting.amount < 0) or (kind in _DECREASES and posting.amount > 0):
        raise DomainError(
            "posting_sign",
            "A {kind} entry cannot be {amount}.",
            kind=kind,
            amount=posting.amount,
        )


def apply_postings(
    balances: Mapping[Component, int], kind: EntryKind, postings: Sequence[Posting]
) -> dict[Component, int]:
    """Postings move the balance one component at a time, and no component may ever go below
    zero: money beyond what is owed is an overpayment, not a negative balance."""
    for posting in postings:
        check_posting(kind, posting)
    result = {component: balances.get(component, 0) for component in Component}
    for posting in postings:
        result[posting.component] += posting.amount
        # Checked after each posting, because each one becomes its own ledger entry and the
        # cached balance must be valid after every entry, not just at the end.
        if result[posting.component] < 0:
            raise DomainError(
                "balance_negative",
                "This would take the {component} balance below zero.",
                component=posting.component,
            )
    return result


def postings_for_allocation(allocation: Allocation) -> list[Posting]:
    """A payment or waiver reduces each component by exactly what the waterfall applied to it."""
    return [Posting(component, -amount) for component, amount in allocation.applied.items() if amount]


def balances_total(balances: Mapping[Component, int]) -> int:
    """What is owed in total is the sum of its components."""
    return sum(balances.values())
