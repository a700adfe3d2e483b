"""From a signed agreement to a plan in force: the instalments exactly as agreed, the concessions as
ledger postings, and the rule for the signer's typed name."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from workflows.errors import DomainError
from workflows.ledger import Posting
from workflows.money import Component, require_int


@dataclass(frozen=True)
class PlannedInstalment:
    number: int
    due_on: date
    amount: int


def instalments(schedule: Sequence[tuple[int, date, int]]) -> list[PlannedInstalment]:
    """The plan's instalments are the agreed schedule, exactly: numbered from 1 without gaps,
    due on strictly later dates, each a positive amount. Anything else is refused, never mended."""
    if not schedule:
        raise DomainError("schedule_empty", "An agreement without a schedule cannot become a plan.")
    result: list[PlannedInstalment] = []
    for position, (number, due_on, amount) in enumerate(schedule, start=1):
        if number != position:
            raise DomainError("schedule_numbering", "Instalment {number} is out of order.", number=number)
        if require_int(amount) <= 0:
            raise DomainError(
                "schedule_amount", "Instalment {number} is not a positive amount.", number=number
            )
        if result and due_on <= result[-1].due_on:
            raise DomainError(
                "schedule_dates", "Instalment {number} is not due after the one before.", number=number
            )
        result.append(PlannedInstalment(number, due_on, amount))
    return result


def waiver_postings(waived: Mapping[Component, int], balances: Mapping[Component, int]) -> list[Posting]:
    """The concessions as waiver postings, one per component waived. A waiver larger than what
    is still owed of that component (after payments since the offer) is refused: the agreement
    must be prepared again rather than waive money nobody owes."""
    postings: list[Posting] = []
    for component in Component:
        amount = require_int(waived.get(component, 0), "waived")
        if amount < 0:
            raise DomainError("waiver_negative", "A waiver cannot be negative.")
        if amount > balances.get(component, 0):
            raise DomainError(
                "waiver_exceeds_balance",
                "The {component} to waive is more than is owed now.",
                component=component.value,
            )
        if amount:
            postings.append(Posting(component, -amount))
    return postings


def _normalised(name: str) -> str:
    # NFKC folds full-width letters and compatibility forms; case and spacing do not matter;
    # the middle dot some Chinese transliterations use is a space.
    text = unicodedata.normalize("NFKC", name).replace("·", " ").replace("•", " ")
    return " ".join(text.casefold().split())


def names_match(typed: str, full_name: str) -> bool:
    """The signer typed their full name as we hold it: the same letters, whatever the case,
    the spacing or full-width forms. Never a partial name."""
    return bool(_normalised(full_name)) and _normalised(typed) == _normalised(full_name)
