from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.delinquency import days_past_due, days_until_stage, stage_for
from workflows.errors import DomainError
from workflows.policy import DEFAULT_POLICY, Policy, Stage

STAGE_ORDER = list(Stage)
dpds = st.integers(min_value=0, max_value=2000)


@given(st.dates(), st.integers(min_value=-1000, max_value=1000))
def test_days_past_due_counts_days_since_the_oldest_unpaid_due_date(today: date, offset: int) -> None:
    try:
        due_on = today - timedelta(days=offset)
    except OverflowError:
        return
    assert days_past_due(due_on, today) == max(offset, 0)


def test_nothing_unpaid_or_due_today_is_not_past_due() -> None:
    today = date(2025, 3, 1)
    assert days_past_due(None, today) == 0
    assert days_past_due(today, today) == 0
    assert days_past_due(date(2025, 2, 28), today) == 1


@pytest.mark.parametrize(
    ("dpd", "stage"),
    [
        (0, Stage.CURRENT),
        (1, Stage.EARLY),
        (30, Stage.EARLY),
        (31, Stage.MID),
        (90, Stage.MID),
        (91, Stage.LATE),
        (179, Stage.LATE),
        (180, Stage.CHARGED_OFF),
    ],
)
def test_default_stages_follow_the_design(dpd: int, stage: Stage) -> None:
    assert stage_for(dpd, DEFAULT_POLICY) == stage


@given(dpds, dpds, st.booleans())
def test_stage_never_goes_back_as_days_past_due_grow(a: int, b: int, referred: bool) -> None:
    low, high = sorted((a, b))
    before = stage_for(low, DEFAULT_POLICY, referred_to_legal=referred)
    after = stage_for(high, DEFAULT_POLICY, referred_to_legal=referred)
    assert STAGE_ORDER.index(before) <= STAGE_ORDER.index(after)


@given(dpds)
def test_legal_referral_wins_unless_already_charged_off(dpd: int) -> None:
    stage = stage_for(dpd, DEFAULT_POLICY, referred_to_legal=True)
    if dpd >= DEFAULT_POLICY.charge_off_dpd:
        assert stage == Stage.CHARGED_OFF
    else:
        assert stage == Stage.LEGAL


def test_stage_thresholds_come_from_policy() -> None:
    policy = Policy(early_from_dpd=5, mid_from_dpd=10, late_from_dpd=20, charge_off_dpd=40)
    assert stage_for(4, policy) == Stage.CURRENT
    assert stage_for(5, policy) == Stage.EARLY
    assert stage_for(39, policy) == Stage.LATE
    assert stage_for(40, policy) == Stage.CHARGED_OFF


def test_negative_days_past_due_are_refused() -> None:
    with pytest.raises(DomainError):
        stage_for(-1, DEFAULT_POLICY)


@given(dpds, st.sampled_from([Stage.EARLY, Stage.MID, Stage.LATE, Stage.CHARGED_OFF]))
def test_days_until_stage_lands_exactly_on_the_stage(dpd: int, target: Stage) -> None:
    days = days_until_stage(dpd, target, DEFAULT_POLICY)
    if days is None:
        assert STAGE_ORDER.index(stage_for(dpd, DEFAULT_POLICY)) >= STAGE_ORDER.index(target)
    else:
        assert days > 0
        assert stage_for(dpd + days, DEFAULT_POLICY) == target
        assert stage_for(dpd + days - 1, DEFAULT_POLICY) != target


def test_days_until_stage_is_none_for_stages_not_reached_by_time() -> None:
    assert days_until_stage(0, Stage.CURRENT, DEFAULT_POLICY) is None
    assert days_until_stage(10, Stage.LEGAL, DEFAULT_POLICY) is None
    assert days_until_stage(60, Stage.LATE, DEFAULT_POLICY) == 31
