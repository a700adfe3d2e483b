"""The borrower's consequences timeline: dated facts from policy and the account, nothing more."""

from dataclasses import replace
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.delinquency import (
    CONTACT_KINDS,
    AccountFacts,
    BreathingSpace,
    Consequence,
    ConsequenceKind,
    consequences,
)
from workflows.errors import DomainError
from workflows.policy import DEFAULT_POLICY, Policy

K = ConsequenceKind
OVERDUE_SINCE = date(2025, 1, 10)


def _on(dpd: int) -> date:
    return OVERDUE_SINCE + timedelta(days=dpd)


def _timeline(dpd: int, policy: Policy = DEFAULT_POLICY, **facts: object) -> list[Consequence]:
    account = AccountFacts(currency="CNY", oldest_unpaid_due_on=OVERDUE_SINCE, **facts)  # type: ignore[arg-type]
    return consequences(account, policy, _on(dpd))


Row = tuple[ConsequenceKind, int, bool]


def _summary(items: list[Consequence]) -> list[Row]:
    """Each item as (kind, its day past due, in effect)."""
    return [(item.kind, (item.on - OVERDUE_SINCE).days, item.in_effect) for item in items]


# Default policy: fee after 5 days' grace then every 30 days; calls and letters 31, bureau 90,
# visits 91, legal review 120, charge-off 180.
@pytest.mark.parametrize(
    ("dpd", "expected"),
    [
        (0, []),
        (
            3,
            [
                (K.LATE_FEE, 5, False),
                (K.CALLS, 31, False),
                (K.LETTERS, 31, False),
                (K.CREDIT_BUREAU, 90, False),
                (K.HOME_VISITS, 91, False),
                (K.LEGAL_REVIEW, 120, False),
                (K.CHARGE_OFF, 180, False),
            ],
        ),
        (
            10,
            [
                (K.CALLS, 31, False),
                (K.LETTERS, 31, False),
                (K.LATE_FEE, 35, False),
                (K.CREDIT_BUREAU, 90, False),
                (K.HOME_VISITS, 91, False),
                (K.LEGAL_REVIEW, 120, False),
                (K.CHARGE_OFF, 180, False),
            ],
        ),
        (
            40,
            [
                (K.CALLS, 31, True),
                (K.LETTERS, 31, True),
                (K.LATE_FEE, 65, False),
                (K.CREDIT_BUREAU, 90, False),
                (K.HOME_VISITS, 91, False),
                (K.LEGAL_REVIEW, 120, False),
                (K.CHARGE_OFF, 180, False),
            ],
        ),
        (
            95,
            [
                (K.CALLS, 31, True),
                (K.LETTERS, 31, True),
                (K.CREDIT_BUREAU, 90, True),
                (K.HOME_VISITS, 91, True),
                (K.LEGAL_REVIEW, 120, False),
                (K.LATE_FEE, 125, False),
                (K.CHARGE_OFF, 180, False),
            ],
        ),
        (
            125,
            [
                (K.CALLS, 31, True),
                (K.LETTERS, 31, True),
                (K.CREDIT_BUREAU, 90, True),
                (K.HOME_VISITS, 91, True),
                (K.LEGAL_REVIEW, 120, True),
                (K.LATE_FEE, 155, False),
                (K.CHARGE_OFF, 180, False),
            ],
        ),
        (
            179,
            [
                (K.CALLS, 31, True),
                (K.LETTERS, 31, True),
                (K.CREDIT_BUREAU, 90, True),
                (K.HOME_VISITS, 91, True),
                (K.LEGAL_REVIEW, 120, True),
                (K.CHARGE_OFF, 180, False),
            ],
        ),
        (
            200,
            [
                (K.CALLS, 31, True),
                (K.LETTERS, 31, True),
                (K.CREDIT_BUREAU, 90, True),
                (K.HOME_VISITS, 91, True),
                (K.LEGAL_REVIEW, 120, True),
                (K.CHARGE_OFF, 180, True),
            ],
        ),
    ],
)
def test_default_policy_timeline_at_each_stage(dpd: int, expected: list[Row]) -> None:
    items = _timeline(dpd)
    assert _summary(items) == expected
    for item in items:
        assert (item.stopped_by_payment, item.stopped_by_plan) == (not item.in_effect, not item.in_effect)


def test_next_late_fee_is_the_first_due_after_today() -> None:
    # Fees fall due on days 5, 35, 65, …; on a fee day itself the next one is 30 days on.
    assert [item.on for item in _timeline(5) if item.kind == K.LATE_FEE] == [_on(35)]
    assert [item.on for item in _timeline(4) if item.kind == K.LATE_FEE] == [_on(5)]
    assert [item.on for item in _timeline(34) if item.kind == K.LATE_FEE] == [_on(35)]
    assert [item.on for item in _timeline(35) if item.kind == K.LATE_FEE] == [_on(65)]


def test_late_fee_carries_the_policy_amount_in_the_account_currency() -> None:
    (fee,) = [item for item in _timeline(40) if item.kind == K.LATE_FEE]
    assert (fee.amount, fee.currency) == (5000, "CNY")
    assert fee.stopped_by_payment and fee.stopped_by_plan and not fee.in_effect
    usd = AccountFacts(currency="USD", oldest_unpaid_due_on=OVERDUE_SINCE)
    (fee,) = [item for item in consequences(usd, DEFAULT_POLICY, _on(40)) if item.kind == K.LATE_FEE]
    assert (fee.amount, fee.currency) == (1500, "USD")


def test_only_the_late_fee_carries_an_amount() -> None:
    for item in _timeline(3):
        if item.kind != K.LATE_FEE:
            assert item.amount is None and item.currency is None


def test_no_late_fee_once_the_cap_per_account_would_be_exceeded() -> None:
    # Cap 500 yuan, fee 50 yuan: 450 already charged leaves room for exactly one more.
    assert K.LATE_FEE in {item.kind for item in _timeline(40, fees_charged=45000)}
    assert K.LATE_FEE not in {item.kind for item in _timeline(40, fees_charged=45001)}
    assert K.LATE_FEE not in {item.kind for item in _timeline(40, fees_charged=50000)}


def test_no_late_fee_in_a_currency_the_policy_charges_none_in() -> None:
    gbp = AccountFacts(currency="GBP", oldest_unpaid_due_on=OVERDUE_SINCE)
    kinds = [item.kind for item in consequences(gbp, DEFAULT_POLICY, _on(40))]
    assert K.LATE_FEE not in kinds
    assert K.CREDIT_BUREAU in kinds
    zero_fee = replace(DEFAULT_POLICY, late_fee_amount={"CNY": 0})
    assert K.LATE_FEE not in {item.kind for item in _timeline(40, zero_fee)}


def test_no_late_fee_on_or_after_the_charge_off_date() -> None:
    # Day 175 → the next fee would be day 185, after charge-off on day 180.
    assert [item.kind for item in _timeline(175) if not item.in_effect] == [K.CHARGE_OFF]
    # A fee falling on the charge-off day itself is not charged either.
    policy = replace(DEFAULT_POLICY, late_fee_grace_days=0, charge_off_dpd=150)
    assert K.LATE_FEE not in {item.kind for item in _timeline(125, policy)}
    assert [item.on for item in _timeline(119, policy) if item.kind == K.LATE_FEE] == [_on(120)]


def test_thresholds_come_from_the_policy() -> None:
    policy = replace(
        DEFAULT_POLICY,
        late_fee_grace_days=10,
        call_from_dpd=15,
        letter_from_dpd=20,
        credit_bureau_report_dpd=60,
        home_visit_from_dpd=75,
        legal_review_dpd=100,
        charge_off_dpd=150,
    )
    assert _summary(_timeline(16, policy)) == [
        (K.CALLS, 15, True),
        (K.LETTERS, 20, False),
        (K.LATE_FEE, 40, False),
        (K.CREDIT_BUREAU, 60, False),
        (K.HOME_VISITS, 75, False),
        (K.LEGAL_REVIEW, 100, False),
        (K.CHARGE_OFF, 150, False),
    ]


def test_nothing_the_policy_does_after_charge_off_is_listed() -> None:
    policy = replace(DEFAULT_POLICY, legal_review_dpd=200, home_visit_from_dpd=180)
    assert _summary(_timeline(100, policy)) == [
        (K.CALLS, 31, True),
        (K.LETTERS, 31, True),
        (K.CREDIT_BUREAU, 90, True),
        (K.LATE_FEE, 125, False),
        (K.HOME_VISITS, 180, False),
        (K.CHARGE_OFF, 180, False),
    ]


def test_same_day_items_follow_the_fixed_kind_order() -> None:
    policy = replace(
        DEFAULT_POLICY,
        late_fee_grace_days=50,
        call_from_dpd=50,
        letter_from_dpd=50,
        credit_bureau_report_dpd=50,
        home_visit_from_dpd=50,
        legal_review_dpd=50,
    )
    assert [item.kind for item in _timeline(10, policy)] == list(ConsequenceKind)


def test_nothing_overdue_has_no_consequences() -> None:
    today = date(2025, 6, 1)
    for due_on in (None, today, today + timedelta(days=7)):
        assert consequences(AccountFacts("CNY", due_on), DEFAULT_POLICY, today) == []


def test_a_plan_in_force_lists_nothing_still_to_come() -> None:
    assert _timeline(3, plan_active=True) == []
    assert _timeline(40, plan_active=True) == []


def test_a_plan_keeps_only_the_lasting_records_already_made() -> None:
    assert _summary(_timeline(95, plan_active=True)) == [(K.CREDIT_BUREAU, 90, True)]
    assert _summary(_timeline(200, plan_active=True, referred_to_legal=True)) == [
        (K.CREDIT_BUREAU, 90, True),
        (K.LEGAL_REVIEW, 120, True),
        (K.CHARGE_OFF, 180, True),
    ]
    for item in _timeline(200, plan_active=True):
        assert not item.stopped_by_payment and not item.stopped_by_plan


def test_legal_referral_puts_legal_review_in_effect() -> None:
    (early,) = [item for item in _timeline(40, referred_to_legal=True) if item.kind == K.LEGAL_REVIEW]
    assert (early.on, early.in_effect, early.stopped_by_payment) == (_on(40), True, False)
    (late,) = [item for item in _timeline(130, referred_to_legal=True) if item.kind == K.LEGAL_REVIEW]
    assert (late.on, late.in_effect) == (_on(120), True)


def test_unknown_currency_is_refused() -> None:
    with pytest.raises(DomainError) as refused:
        consequences(AccountFacts("XYZ", OVERDUE_SINCE), DEFAULT_POLICY, _on(10))
    assert refused.value.code == "unknown_currency"


def test_negative_fees_charged_are_refused() -> None:
    with pytest.raises(DomainError) as refused:
        _timeline(10, fees_charged=-1)
    assert refused.value.code == "fees_charged_negative"


def test_an_inconsistent_policy_is_refused() -> None:
    broken = replace(DEFAULT_POLICY, mid_from_dpd=200)
    with pytest.raises(DomainError) as refused:
        _timeline(10, broken)
    assert refused.value.code == "policy_invalid"


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    early = draw(st.integers(min_value=1, max_value=60))
    mid = draw(st.integers(min_value=early + 1, max_value=120))
    late = draw(st.integers(min_value=mid + 1, max_value=240))
    charge_off = draw(st.integers(min_value=late + 1, max_value=400))
    days = st.integers(min_value=1, max_value=400)
    fee = draw(st.integers(min_value=0, max_value=10**5))
    cap = fee + draw(st.integers(min_value=0, max_value=10**6))
    return Policy(
        early_from_dpd=early,
        mid_from_dpd=mid,
        late_from_dpd=late,
        charge_off_dpd=charge_off,
        late_fee_grace_days=draw(st.integers(min_value=0, max_value=60)),
        late_fee_amount={"CNY": fee, "USD": 1500},
        late_fee_cap_per_account={"CNY": cap, "USD": 15000},
        call_from_dpd=draw(days),
        letter_from_dpd=draw(days),
        credit_bureau_report_dpd=draw(days),
        home_visit_from_dpd=draw(days),
        legal_review_dpd=draw(days),
    )


accounts = st.builds(
    AccountFacts,
    currency=st.sampled_from(["CNY", "USD", "GBP", "JPY"]),
    oldest_unpaid_due_on=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)),
    fees_charged=st.integers(min_value=0, max_value=10**5),
    referred_to_legal=st.booleans(),
    plan_active=st.booleans(),
)


@given(accounts, policies(), st.integers(min_value=1, max_value=400))
def test_timeline_is_ordered_dated_and_honest_about_what_can_be_stopped(
    facts: AccountFacts, policy: Policy, dpd: int
) -> None:
    assert facts.oldest_unpaid_due_on is not None
    today = facts.oldest_unpaid_due_on + timedelta(days=dpd)
    charge_off_on = facts.oldest_unpaid_due_on + timedelta(days=policy.charge_off_dpd)
    items = consequences(facts, policy, today)

    assert items == consequences(facts, policy, today)
    order = list(ConsequenceKind)
    assert items == sorted(items, key=lambda item: (item.on, order.index(item.kind)))
    assert len({item.kind for item in items}) == len(items)
    for item in items:
        assert item.in_effect == (item.on <= today)
        if item.in_effect:
            assert not item.stopped_by_payment and not item.stopped_by_plan
        else:
            assert item.on > today
            assert item.stopped_by_payment and item.stopped_by_plan
            assert not facts.plan_active
        if item.kind != K.CHARGE_OFF:
            assert item.on <= charge_off_on
        if item.kind == K.LATE_FEE:
            first = facts.oldest_unpaid_due_on + timedelta(days=policy.late_fee_grace_days)
            assert item.on > today
            assert (item.on - today).days <= 30 or item.on == first
            assert item.on < charge_off_on
            assert item.amount == policy.late_fee_amount[facts.currency]
            assert facts.fees_charged + item.amount <= policy.late_fee_cap_per_account[facts.currency]
        else:
            assert item.amount is None and item.currency is None


@given(accounts, policies(), st.integers(min_value=1, max_value=400))
def test_milestones_land_on_their_policy_day_past_due(facts: AccountFacts, policy: Policy, dpd: int) -> None:
    assert facts.oldest_unpaid_due_on is not None
    overdue_since = facts.oldest_unpaid_due_on
    today = overdue_since + timedelta(days=dpd)
    thresholds = {
        K.CALLS: policy.call_from_dpd,
        K.LETTERS: policy.letter_from_dpd,
        K.CREDIT_BUREAU: policy.credit_bureau_report_dpd,
        K.HOME_VISITS: policy.home_visit_from_dpd,
        K.LEGAL_REVIEW: policy.legal_review_dpd,
        K.CHARGE_OFF: policy.charge_off_dpd,
    }
    listed = {item.kind: item for item in consequences(facts, policy, today)}
    for kind, threshold in thresholds.items():
        on = overdue_since + timedelta(days=threshold)
        if kind == K.LEGAL_REVIEW and facts.referred_to_legal:
            on = min(on, today)
        expected = kind == K.CHARGE_OFF or on <= overdue_since + timedelta(days=policy.charge_off_dpd)
        if facts.plan_active:
            lasting = kind in (K.CREDIT_BUREAU, K.CHARGE_OFF) or (
                kind == K.LEGAL_REVIEW and facts.referred_to_legal
            )
            expected = expected and lasting and on <= today
        assert (kind in listed) == expected
        if expected:
            assert listed[kind].on == on


# --- Breathing space ------------------------------------------------------------------------------


def _space(start_dpd: int, days: int, *, fees: bool = True, contact: bool = True) -> BreathingSpace:
    return BreathingSpace(_on(start_dpd), _on(start_dpd + days - 1), stops_fees=fees, pauses_contact=contact)


def test_breathing_space_moves_contact_that_would_begin_in_it_to_the_day_after() -> None:
    # Day 20: calls and letters would begin on day 31; a 30-day pause from day 20 ends on day 49.
    items = {item.kind: item for item in _timeline(20, breathing_space=_space(20, 30))}
    assert items[K.CALLS].on == _on(50)
    assert items[K.LETTERS].on == _on(50)
    # Reporting and legal review are not contact: a pause does not move them.
    assert items[K.CREDIT_BUREAU].on == _on(90)


def test_breathing_space_pauses_contact_already_begun() -> None:
    items = {item.kind: item for item in _timeline(40, breathing_space=_space(40, 30))}
    assert items[K.CALLS].in_effect
    assert items[K.CALLS].paused_until == _on(69)
    assert items[K.CREDIT_BUREAU].paused_until is None


def test_breathing_space_that_stops_fees_moves_the_next_fee_past_it() -> None:
    # Fees fall due on days 5, 35, 65…; a pause over days 30-59 skips the fee of day 35.
    [fee] = [i for i in _timeline(30, breathing_space=_space(30, 30)) if i.kind == K.LATE_FEE]
    assert fee.on == _on(65)
    [unpaused] = [i for i in _timeline(30) if i.kind == K.LATE_FEE]
    assert unpaused.on == _on(35)


def test_breathing_space_that_only_pauses_contact_leaves_fees() -> None:
    [fee] = [i for i in _timeline(30, breathing_space=_space(30, 30, fees=False)) if i.kind == K.LATE_FEE]
    assert fee.on == _on(35)


def test_a_breathing_space_that_has_ended_changes_nothing() -> None:
    ended = _space(0, 10)
    assert _timeline(40, breathing_space=ended) == _timeline(40)


@given(st.integers(min_value=1, max_value=170), st.integers(min_value=1, max_value=60))
def test_nothing_paused_happens_inside_the_breathing_space(dpd: int, days: int) -> None:
    space = _space(dpd, days)
    for item in _timeline(dpd, breathing_space=space):
        if item.kind in CONTACT_KINDS and not item.in_effect:
            assert not space.covers(item.on)
        if item.kind == K.LATE_FEE:
            assert not space.covers(item.on)
