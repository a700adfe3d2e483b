"""Days past due, the stage they put an account in, and the borrower's consequences timeline."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta
from enum import StrEnum

from workflows.errors import DomainError
from workflows.money import check_currency, require_int
from workflows.policy import Policy, Stage


def days_past_due(oldest_unpaid_due_on: date | None, today: date) -> int:
    """An account is as many days past due as days have passed since its oldest unpaid due date."""
    if oldest_unpaid_due_on is None or oldest_unpaid_due_on >= today:
        return 0
    return (today - oldest_unpaid_due_on).days


def _threshold(stage: Stage, policy: Policy) -> int | None:
    # LEGAL is reached by a referral decision, never by the calendar alone.
    return {
        Stage.CURRENT: 0,
        Stage.EARLY: policy.early_from_dpd,
        Stage.MID: policy.mid_from_dpd,
        Stage.LATE: policy.late_from_dpd,
        Stage.LEGAL: None,
        Stage.CHARGED_OFF: policy.charge_off_dpd,
    }[stage]


def stage_for(dpd: int, policy: Policy, *, referred_to_legal: bool = False) -> Stage:
    """The stage follows from days past due under the policy; a legal referral overrides it,
    except that a charged-off debt stays charged off."""
    if dpd < 0:
        raise DomainError("dpd_negative", "Days past due cannot be negative.")
    if dpd >= policy.charge_off_dpd:
        return Stage.CHARGED_OFF
    if referred_to_legal:
        return Stage.LEGAL
    if dpd >= policy.late_from_dpd:
        return Stage.LATE
    if dpd >= policy.mid_from_dpd:
        return Stage.MID
    if dpd >= policy.early_from_dpd:
        return Stage.EARLY
    return Stage.CURRENT


def days_until_stage(dpd: int, target: Stage, policy: Policy) -> int | None:
    """How many more days without payment until the account enters the target stage; None when
    it is already there or past it, or when the stage is not reached by time (legal)."""
    threshold = _threshold(target, policy)
    if threshold is None or dpd >= threshold:
        return None
    return threshold - dpd


# --- The borrower's consequences timeline -----------------------------------------------------


LATE_FEE_PERIOD_DAYS = 30
"""A further late fee falls due every this many days after the first (the policy sets the grace)."""


class ConsequenceKind(StrEnum):
    """What the policy does to an overdue account; the order here is the order of same-day items."""

    LATE_FEE = "late_fee"
    CALLS = "calls"
    LETTERS = "letters"
    CREDIT_BUREAU = "credit_bureau"
    HOME_VISITS = "home_visits"
    LEGAL_REVIEW = "legal_review"
    CHARGE_OFF = "charge_off"


_KIND_ORDER = {kind: position for position, kind in enumerate(ConsequenceKind)}


@dataclass(frozen=True)
class BreathingSpace:
    """A pause from a hardship request: from `starts_on` to `ends_on` (inclusive) late fees
    stop and/or collection contact pauses."""

    starts_on: date
    ends_on: date
    stops_fees: bool
    pauses_contact: bool

    def covers(self, day: date) -> bool:
        return self.starts_on <= day <= self.ends_on


CONTACT_KINDS = frozenset({ConsequenceKind.CALLS, ConsequenceKind.LETTERS, ConsequenceKind.HOME_VISITS})
"""The consequences that are contact by our team, which a breathing space pauses."""


@dataclass(frozen=True)
class AccountFacts:
    """What the timeline needs to know about one account; amounts in minor units of its currency."""

    currency: str
    oldest_unpaid_due_on: date | None
    """None when nothing is overdue."""
    fees_charged: int = 0
    """Late fees already charged on this account, for the policy's cap per account."""
    referred_to_legal: bool = False
    plan_active: bool = False
    """A signed repayment plan is in force."""
    breathing_space: BreathingSpace | None = None


@dataclass(frozen=True)
class Consequence:
    """One dated step of the timeline: what happens, when, and whether the borrower can still stop it."""

    kind: ConsequenceKind
    on: date
    """When it happens, or happened."""
    in_effect: bool
    """`on` is today or earlier: it is already happening (calls began on that date, for example)."""
    amount: int | None
    """The late fee in minor units; None for every other kind."""
    currency: str | None
    """The late fee's currency; None for every other kind."""
    stopped_by_payment: bool
    """Paying the overdue amount before `on` prevents it."""
    stopped_by_plan: bool
    """Agreeing a repayment plan before `on` prevents it."""
    paused_until: date | None = None
    """Already in effect but paused by a breathing space up to and including this day."""


def _milestones(policy: Policy) -> tuple[tuple[ConsequenceKind, int], ...]:
    return (
        (ConsequenceKind.CALLS, policy.call_from_dpd),
        (ConsequenceKind.LETTERS, policy.letter_from_dpd),
        (ConsequenceKind.CREDIT_BUREAU, policy.credit_bureau_report_dpd),
        (ConsequenceKind.HOME_VISITS, policy.home_visit_from_dpd),
        (ConsequenceKind.LEGAL_REVIEW, policy.legal_review_dpd),
        (ConsequenceKind.CHARGE_OFF, policy.charge_off_dpd),
    )


def _check_inputs(facts: AccountFacts, policy: Policy) -> None:
    check_currency(facts.currency)
    require_int(facts.fees_charged, "fees_charged")
    if facts.fees_charged < 0:
        raise DomainError("fees_charged_negative", "Late fees already charged cannot be negative.")
    problems = policy.validate()
    if problems:
        raise DomainError("policy_invalid", "The policy is invalid: {problems}", problems=" ".join(problems))


def _next_late_fee(facts: AccountFacts, policy: Policy, today: date) -> Consequence | None:
    """The next late fee falls due on the first date after today that is the grace days, plus a whole
    number of 30-day periods, past the oldest unpaid due date — unless the currency has no fee, the
    fee would take the account over its cap, or the debt is charged off by then."""
    overdue_since = facts.oldest_unpaid_due_on
    if overdue_since is None or days_past_due(overdue_since, today) == 0:
        return None
    amount = policy.late_fee_amount.get(facts.currency, 0)
    cap = policy.late_fee_cap_per_account.get(facts.currency)
    if amount <= 0 or cap is None or facts.fees_charged + amount > cap:
        return None
    first = overdue_since + timedelta(days=policy.late_fee_grace_days)
    periods = 0 if first > today else (today - first).days // LATE_FEE_PERIOD_DAYS + 1
    on = first + timedelta(days=LATE_FEE_PERIOD_DAYS * periods)
    pause = facts.breathing_space
    while pause is not None and pause.stops_fees and pause.covers(on):
        on += timedelta(days=LATE_FEE_PERIOD_DAYS)  # no fee falls due in the pause; the next one after it
    # No fee is charged on or after charge-off: the debt leaves collections treatment that day.
    if on >= overdue_since + timedelta(days=policy.charge_off_dpd):
        return None
    return Consequence(
        kind=ConsequenceKind.LATE_FEE,
        on=on,
        in_effect=False,
        amount=amount,
        currency=facts.currency,
        stopped_by_payment=True,
        stopped_by_plan=True,
    )


def _outlives_plan(item: Consequence, facts: AccountFacts) -> bool:
    # A plan in force replaces calls, letters, visits and a calendar-driven legal review while it
    # is kept, but it does not undo what has already been recorded: the credit-bureau report, a
    # legal referral, a charge-off.
    if item.kind == ConsequenceKind.LEGAL_REVIEW:
        return facts.referred_to_legal
    return item.kind in (ConsequenceKind.CREDIT_BUREAU, ConsequenceKind.CHARGE_OFF)


def _paused(item: Consequence, pause: BreathingSpace | None, today: date) -> Consequence:
    """Contact that would begin during a breathing space begins the day after it; contact that
    has already begun is paused until its end."""
    if pause is None or not pause.pauses_contact or item.kind not in CONTACT_KINDS or not pause.covers(today):
        return item
    if item.in_effect:
        return replace(item, paused_until=pause.ends_on)
    if pause.covers(item.on):
        return replace(item, on=pause.ends_on + timedelta(days=1))
    return item


def consequences(facts: AccountFacts, policy: Policy, today: date) -> list[Consequence]:
    """What happens if the borrower does not pay, each on the day the policy does it (days past due
    counted from the oldest unpaid due date), with what paying or agreeing a plan would still stop.

    Only what the policy itself carries out is listed, nothing after charge-off but the charge-off,
    and only the next late fee. Nothing overdue gives an empty timeline. A legal referral puts legal
    review in effect (from its calendar date if that has passed, else from today). With a plan in
    force nothing future is listed, because the plan replaces collections treatment while it is
    kept; only the lasting records already made stay: the credit-bureau report, a legal referral,
    a charge-off. Items are sorted by date, then by the order of ConsequenceKind.

    Something in effect cannot be stopped by paying any more (the portal explains that, for
    example, a credit-bureau record is then updated as paid): its stopped_by_* flags are False.
    """
    _check_inputs(facts, policy)
    overdue_since = facts.oldest_unpaid_due_on
    if overdue_since is None or days_past_due(overdue_since, today) == 0:
        return []
    charge_off_on = overdue_since + timedelta(days=policy.charge_off_dpd)
    items: list[Consequence] = []
    for kind, threshold in _milestones(policy):
        on = overdue_since + timedelta(days=threshold)
        if kind == ConsequenceKind.LEGAL_REVIEW and facts.referred_to_legal:
            on = min(on, today)
        if kind != ConsequenceKind.CHARGE_OFF and on > charge_off_on:
            continue
        in_effect = on <= today
        items.append(
            Consequence(
                kind=kind,
                on=on,
                in_effect=in_effect,
                amount=None,
                currency=None,
                stopped_by_payment=not in_effect,
                stopped_by_plan=not in_effect,
            )
        )
    items = [_paused(item, facts.breathing_space, today) for item in items]
    fee = _next_late_fee(facts, policy, today)
    if fee is not None:
        items.append(fee)
    if facts.plan_active:
        items = [item for item in items if item.in_effect and _outlives_plan(item, facts)]
    items.sort(key=lambda item: (item.on, _KIND_ORDER[item.kind]))
    return items
