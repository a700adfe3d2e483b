"""Authority and the review queue: whether a staff role may approve a concession alone, how urgent
a hardship case in review is, and whether its decision is overdue.

A concession is measured in four figures — the amount waived, the waived share of the whole
balance, the term, and for a settlement its discount — and each is compared with the role's
`AuthorityLimit` from policy. Above the limit an approval waits for a second person of higher
authority (`negotiation.CaseFacts.within_authority=False`).

Monotonicity, the rule that keeps four eyes workable:

- A larger limit is never more restrictive. Each check is "figure <= limit", so limits that are at
  least as large in every figure (and list at least the same currencies: `AuthorityLimit.covers`)
  approve everything the smaller ones approve. The policy refuses a ladder in which a supervisor
  is allowed less than an agent (`policy.AUTHORITY_LADDER`), so whatever an agent may approve, a
  supervisor may too.
- A smaller concession is never refused where a larger one was approved: lowering any figure of a
  concession of the same kind (a settlement stays a settlement, a plan a plan) cannot add a
  problem. A settlement and a plan are different kinds: a settlement's waiver is measured by the
  settlement discount limit, a plan's by the waived-share limit (as the stage limits measure a
  settlement by its minimum share instead of the waived share).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from workflows.access import Role
from workflows.errors import DomainError
from workflows.money import check_currency, require_int, round_half_even
from workflows.offers import AccountPosition, Offer, ReliefType
from workflows.policy import AUTHORITY_LADDER, BASIS_POINTS, AuthorityLimit, Policy, Stage

_ROLES = frozenset(Role)


def _concession_invalid(problem: str) -> DomainError:
    return DomainError("concession_invalid", "The concession is invalid: {problem}", problem=problem)


@dataclass(frozen=True)
class Concession:
    """What an offer concedes, in the figures authority is measured by."""

    currency: str
    waived_amount: int
    """Minor units waived: fees, interest and principal."""
    waived_share_bp: int
    """The waived amount as a share of the account's whole balance, banker's rounded to a basis point."""
    term_months: int
    """Instalments plus payment-holiday months."""
    settlement_discount_bp: int
    """For a settlement, its waived share; 0 for anything else."""

    def __post_init__(self) -> None:
        check_currency(self.currency)
        for name in ("waived_amount", "waived_share_bp", "term_months", "settlement_discount_bp"):
            if require_int(getattr(self, name), name) < 0:
                raise _concession_invalid(f"{name} cannot be negative.")
        if self.waived_share_bp > BASIS_POINTS:
            raise _concession_invalid("the waived share cannot be more than the whole balance.")
        if self.settlement_discount_bp not in (0, self.waived_share_bp):
            raise _concession_invalid("a settlement's discount is its waived share.")

    @property
    def is_settlement(self) -> bool:
        return self.settlement_discount_bp > 0


def concession_of(offer: Offer, position: AccountPosition) -> Concession:
    """The concession an offer makes on this account. An offer that waives principal in part is a
    settlement (it carries `ReliefType.SETTLEMENT`), as `offers.check_within_limits` counts it."""
    if offer.currency != position.currency:
        raise DomainError(
            "currency_mismatch",
            "The offer is in {offer_currency} but the account is in {account_currency}.",
            offer_currency=offer.currency,
            account_currency=position.currency,
        )
    balance = position.balance
    if offer.total_waived > balance:
        raise DomainError(
            "offer_not_for_account",
            "The offer waives {waived}, more than the balance of {balance}.",
            waived=offer.total_waived,
            balance=balance,
            currency=position.currency,
        )
    share = round_half_even(offer.total_waived * BASIS_POINTS, balance) if balance else 0
    return Concession(
        currency=offer.currency,
        waived_amount=offer.total_waived,
        waived_share_bp=share,
        term_months=offer.instalment_count + offer.holiday_months,
        settlement_discount_bp=share if ReliefType.SETTLEMENT in offer.reliefs else 0,
    )


def authority_problems(role: Role | str, concession: Concession, policy: Policy) -> list[str]:
    """What in a concession is above what `role` may approve alone, as problem codes (empty when
    none), in this order:

    `no_authority` (the policy gives the role none; alone), `currency_not_in_authority` (the role
    has no authority over accounts in this currency, whatever the amount) or
    `waived_amount_above_authority`, `settlement_discount_above_authority` for a settlement or
    `waived_share_above_authority` for anything else, `term_above_authority`."""
    limit: AuthorityLimit | None = None
    if role in _ROLES:
        limit = policy.hardship.authority.get(Role(role))
    if limit is None:
        return ["no_authority"]
    problems: list[str] = []
    allowed = limit.max_waived_amount.get(concession.currency)
    if allowed is None:
        problems.append("currency_not_in_authority")
    elif concession.waived_amount > allowed:
        problems.append("waived_amount_above_authority")
    if concession.is_settlement:
        if concession.settlement_discount_bp > limit.max_settlement_discount_bp:
            problems.append("settlement_discount_above_authority")
    elif concession.waived_share_bp > limit.max_waived_share_bp:
        problems.append("waived_share_above_authority")
    if concession.term_months > limit.max_term_months:
        problems.append("term_above_authority")
    return problems


def within_authority(role: Role | str, concession: Concession, policy: Policy) -> bool:
    """Whether `role` may approve the concession alone (for `negotiation.CaseFacts`)."""
    return not authority_problems(role, concession, policy)


def lowest_authority(concession: Concession, policy: Policy) -> Role | None:
    """The first role up `policy.AUTHORITY_LADDER` that may approve the concession alone; None
    when nobody may (above a supervisor's authority)."""
    return next((role for role in AUTHORITY_LADDER if within_authority(role, concession, policy)), None)


# --- The review queue ---------------------------------------------------------------------------


def amount_band(balance: int, currency: str, policy: Policy) -> int:
    """The balance band, from 0: how many of the currency's thresholds the balance reaches. A
    currency the policy has no bands for is all band 0."""
    require_int(balance, "balance")
    thresholds = policy.hardship.priority.balance_bands.get(currency, ())
    return bisect_right(thresholds, balance)


def priority(
    balance: int, currency: str, stage: Stage, days_waiting: int, *, vulnerable: bool, policy: Policy
) -> int:
    """How urgent a case in review is, higher first: points for the stage, for each whole day
    waited, for a vulnerable borrower and for each balance band (`PriorityWeights`). Never
    negative; waiting longer, vulnerability, a later stage or a larger band never lower it."""
    if require_int(days_waiting, "days_waiting") < 0:
        raise DomainError("days_waiting_invalid", "Days waiting cannot be negative.")
    weights = policy.hardship.priority
    return (
        weights.stage_points[Stage(stage)]
        + weights.points_per_day * days_waiting
        + (weights.vulnerability_points if vulnerable else 0)
        + weights.points_per_band * amount_band(balance, currency, policy)
    )


class SlaStatus(StrEnum):
    ON_TIME = "on_time"
    DUE_TODAY = "due_today"
    BREACHED = "breached"


def sla_status(review_due_on: date, today: date) -> SlaStatus:
    """Whether a case's decision is on time: due after today, due today, or overdue."""
    if today < review_due_on:
        return SlaStatus.ON_TIME
    if today == review_due_on:
        return SlaStatus.DUE_TODAY
    return SlaStatus.BREACHED
