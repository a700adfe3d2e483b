"""Days past due and the collection stage they put an account in."""

from __future__ import annotations

from datetime import date

from workflows.errors import DomainError
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
