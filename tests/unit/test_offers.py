from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workflows.errors import DomainError
from workflows.money import Component
from workflows.offers import (
    MAX_OFFERS,
    AccountPosition,
    CounterPlan,
    CounterTerms,
    FeeTreatment,
    InterestTreatment,
    Offer,
    OfferOrigin,
    OfferScope,
    ReliefType,
    check_within_limits,
    counter_offer,
    generate_offers,
    offer_from_key,
    offer_to_dict,
    proposal_offer,
    regenerate,
)
from workflows.policy import DEFAULT_POLICY, Policy, ReliefLimits, Stage
from workflows.schedules import accrued_interest, add_months, amortised

TODAY = date(2024, 3, 31)


def position(**changes: Any) -> AccountPosition:
    """A mid-stage loan: ¥30,000 principal, ¥1,500 interest, ¥200 fees, ¥4,000 overdue."""
    values: dict[str, Any] = {
        "currency": "CNY",
        "principal": 3_000_000,
        "interest": 150_000,
        "fees": 20_000,
        "overdue_amount": 400_000,
        "contractual_instalment": 150_000,
        "annual_rate_bp": 1800,
        "stage": Stage.MID,
        "dpd": 45,
        "oldest_unpaid_due_on": TODAY - timedelta(days=45),
    }
    values.update(changes)
    return AccountPosition(**values)


def policy_with(stage: Stage, limits: ReliefLimits) -> Policy:
    relief_limits = dict(DEFAULT_POLICY.hardship.relief_limits)
    relief_limits[stage] = limits
    return replace(DEFAULT_POLICY, hardship=replace(DEFAULT_POLICY.hardship, relief_limits=relief_limits))


def assert_within_limits(offer: Offer, account: AccountPosition, policy: Policy) -> None:
    """The policy's limits, checked independently of check_within_limits."""
    limits = policy.hardship.relief_limits[account.stage]
    balance = account.balance
    waived = sum(offer.waived.values())
    if ReliefType.SETTLEMENT in offer.reliefs:
        assert limits.allow_settlement
        assert offer.total_repayable * 10000 >= limits.settlement_min_share_bp * balance
    else:
        assert waived * 10000 <= limits.max_waived_share_bp * balance
    assert waived <= limits.max_waived_amount.get(account.currency, 0)
    assert offer.holiday_months <= limits.max_holiday_months
    assert offer.interest_frozen_months <= limits.interest_freeze_max_months
    if offer.reliefs & {ReliefType.INSTALMENT_PLAN, ReliefType.TERM_EXTENSION, ReliefType.PAYMENT_HOLIDAY}:
        assert offer.holiday_months + offer.instalment_count <= limits.max_term_months
    if offer.reliefs & {ReliefType.INSTALMENT_PLAN, ReliefType.TERM_EXTENSION}:
        assert offer.instalment_amount >= max(limits.min_instalment.get(account.currency, 1), 1)


def assert_money_adds_up(offer: Offer, account: AccountPosition) -> None:
    schedule = offer.schedule
    assert sum(schedule.amounts) == offer.total_repayable
    assert offer.total_repayable + offer.total_waived == offer.covered_total + offer.interest_charged
    for component in Component:
        assert 0 <= offer.waived[component] <= offer.covered[component] <= account.balances[component]
    expected_cover = {
        OfferScope.BALANCE: account.balance,
        OfferScope.ARREARS: account.overdue_amount,
        OfferScope.DEFERRAL: 0,
    }[offer.scope]
    assert offer.covered_total == expected_cover
    assert offer.total_saved >= offer.total_waived
    for value in offer_to_dict(offer).values():
        assert not isinstance(value, float)


# --- Examples ------------------------------------------------------------------------------------


def test_nothing_overdue_or_nothing_owed_gives_no_offers() -> None:
    assert generate_offers(position(overdue_amount=0), 500_000, DEFAULT_POLICY, TODAY) == []
    nothing = position(principal=0, interest=0, fees=0, overdue_amount=0)
    assert generate_offers(nothing, 500_000, DEFAULT_POLICY, TODAY) == []


def test_a_mid_stage_borrower_with_money_to_spare_gets_plans_cheapest_first() -> None:
    account = position()
    offers = generate_offers(account, 300_000, DEFAULT_POLICY, TODAY)
    assert [o.key for o in offers] == [
        "fee_waiver+instalment_plan:2+interest_relief:waive",
        "fee_waiver+interest_relief:freeze6+interest_relief:waive+term_extension:11",
        "fee_waiver+interest_relief:freeze6+interest_relief:waive+payment_holiday:3+term_extension:11",
        "fee_waiver+interest_relief:freeze6+interest_relief:waive+term_extension:24",
    ]
    plan = offers[0]
    # The arrears are fees, then interest, then principal; fees and interest are waived and the
    # ¥2,300 of principal is paid in two, beside the contract's own ¥1,500.
    assert plan.scope == OfferScope.ARREARS
    assert plan.waived == {Component.FEES: 20_000, Component.INTEREST: 150_000, Component.PRINCIPAL: 0}
    assert plan.schedule.amounts == (115_000, 115_000)
    assert plan.monthly_payment == 265_000
    assert plan.first_due_on == date(2024, 4, 30)
    assert plan.expires_on == date(2024, 4, 14)
    assert plan.fees_after == FeeTreatment.WAIVED
    assert plan.interest_treatment == InterestTreatment.CONTRACTUAL
    assert plan.total_saved == 170_000
    for offer in offers:
        assert offer.largest_monthly_payment <= 300_000
        assert offer.origin == OfferOrigin.SYSTEM
        assert check_within_limits(offer, account, DEFAULT_POLICY) == []


def test_a_term_extension_saves_waivers_plus_interest_the_contract_rate_would_charge() -> None:
    account = position()
    offer = next(
        o
        for o in generate_offers(account, 300_000, DEFAULT_POLICY, TODAY)
        if o.key.endswith("term_extension:11")
    )
    assert offer.scope == OfferScope.BALANCE
    assert offer.interest_frozen_months == 6
    assert offer.interest_treatment == InterestTreatment.FROZEN_THEN_CHARGED
    at_contract_rate = amortised(3_000_000, 1800, 11, date(2024, 4, 30), "CNY")
    assert offer.total_saved == 170_000 + at_contract_rate.interest - offer.interest_charged
    assert offer.total_repayable == 3_000_000 + offer.interest_charged


def test_with_nothing_to_spare_only_payment_holidays_are_offered_with_interest_frozen() -> None:
    account = position()
    for disposable in (0, -50_000):
        offers = generate_offers(account, disposable, DEFAULT_POLICY, TODAY)
        assert [o.key for o in offers] == [
            "interest_relief:freeze1+payment_holiday:1",
            "interest_relief:freeze2+payment_holiday:2",
            "interest_relief:freeze3+payment_holiday:3",
        ]
    holiday = offers[1]
    assert holiday.scope == OfferScope.DEFERRAL
    assert holiday.schedule.count == 0
    assert holiday.total_repayable == holiday.monthly_payment == 0
    assert holiday.interest_treatment == InterestTreatment.FROZEN
    assert holiday.end_on == date(2024, 5, 31)
    assert holiday.total_saved == accrued_interest(account.balance, 1800, 2)


def test_a_budget_too_small_for_any_plan_gets_a_holiday_instead() -> None:
    offers = generate_offers(position(), 100_000, DEFAULT_POLICY, TODAY)
    assert offers and all(o.scope == OfferScope.DEFERRAL for o in offers)


def test_legal_and_charged_off_debts_are_offered_a_settlement_only() -> None:
    for stage in (Stage.LEGAL, Stage.CHARGED_OFF):
        account = position(stage=stage)
        offers = generate_offers(account, 300_000, DEFAULT_POLICY, TODAY)
        assert [o.reliefs for o in offers] == [frozenset({ReliefType.SETTLEMENT})]
        assert generate_offers(account, 0, DEFAULT_POLICY, TODAY) == []


def test_a_settlement_is_the_smallest_sum_both_share_and_cap_allow() -> None:
    account = position(stage=Stage.LATE)
    limits = DEFAULT_POLICY.hardship.relief_limits[Stage.LATE]
    settlement = next(
        o for o in generate_offers(account, 300_000, DEFAULT_POLICY, TODAY) if o.settlement_amount
    )
    # 60 % of ¥31,700 would waive ¥12,680, within the ¥15,000 cap.
    assert settlement.settlement_amount == 1_902_000
    assert settlement.key == "settlement:1902000"
    assert settlement.schedule.amounts == (1_902_000,)
    assert settlement.waived == {
        Component.FEES: 20_000,
        Component.INTEREST: 150_000,
        Component.PRINCIPAL: 1_098_000,
    }
    assert settlement.interest_treatment == InterestTreatment.SETTLED
    big = position(stage=Stage.LATE, principal=30_000_000)
    capped = next(o for o in generate_offers(big, 300_000, DEFAULT_POLICY, TODAY) if o.settlement_amount)
    assert capped.total_waived == limits.max_waived_amount["CNY"]


def test_an_early_slip_gets_a_smaller_concession() -> None:
    offers = generate_offers(position(stage=Stage.EARLY, dpd=10), 300_000, DEFAULT_POLICY, TODAY)
    assert [o.key for o in offers] == ["fee_waiver+instalment_plan:3"]
    assert offers[0].total_waived == 20_000


def test_a_waiver_the_limits_do_not_cover_is_left_out() -> None:
    stingy = policy_with(
        Stage.MID,
        replace(DEFAULT_POLICY.hardship.relief_limits[Stage.MID], max_waived_amount={"CNY": 20_000}),
    )
    offers = generate_offers(position(), 300_000, stingy, TODAY)
    assert all(o.total_waived <= 20_000 for o in offers)
    assert any(o.reliefs >= {ReliefType.FEE_WAIVER} for o in offers)


def test_generation_is_deterministic() -> None:
    account = position(stage=Stage.LATE)
    assert generate_offers(account, 250_000, DEFAULT_POLICY, TODAY) == generate_offers(
        account, 250_000, DEFAULT_POLICY, TODAY
    )


# --- Keys --------------------------------------------------------------------------------------


def test_a_posted_key_is_regenerated_not_trusted() -> None:
    account = position()
    offers = generate_offers(account, 300_000, DEFAULT_POLICY, TODAY)
    for offer in offers:
        again = regenerate(offer.key, account, 300_000, DEFAULT_POLICY, TODAY)
        assert again == offer
        assert again is not None and again.fingerprint == offer.fingerprint
    forged = [
        "instalment_plan:1",  # canonical, but not offered
        "fee_waiver+instalment_plan:2",  # a stingier version of an offer
        "instalment_plan:2+fee_waiver+interest_relief:waive",  # out of order
        "fee_waiver+fee_waiver+instalment_plan:2",
        "settlement:1",
        "term_extension:011",
        "FEE_WAIVER",
        "",
        "x" * 10_000,
        None,
    ]
    for key in forged:
        assert regenerate(key, account, 300_000, DEFAULT_POLICY, TODAY) is None


def test_a_stale_offer_shows_up_as_a_new_fingerprint_or_none() -> None:
    offer = generate_offers(position(), 300_000, DEFAULT_POLICY, TODAY)[0]
    moved = position(interest=150_100)
    again = regenerate(offer.key, moved, 300_000, DEFAULT_POLICY, TODAY)
    assert again is None or again.fingerprint != offer.fingerprint
    assert regenerate(offer.key, position(), 200_000, DEFAULT_POLICY, TODAY) is None


def test_an_agent_builds_any_terms_and_learns_what_needs_a_second_look() -> None:
    account = position()
    counter = offer_from_key(
        "fee_waiver+interest_relief:freeze12+term_extension:36",
        account,
        DEFAULT_POLICY,
        TODAY,
        origin=OfferOrigin.AGENT,
    )
    assert counter.origin == OfferOrigin.AGENT
    assert counter.instalment_count == 36
    assert check_within_limits(counter, account, DEFAULT_POLICY) == [
        "term_above_limit",
        "interest_freeze_above_limit",
    ]
    settle = offer_from_key("settlement:1000000", account, DEFAULT_POLICY, TODAY, origin=OfferOrigin.AGENT)
    assert check_within_limits(settle, account, DEFAULT_POLICY) == [
        "settlement_not_allowed",
        "settlement_below_minimum_share",
        "waived_amount_above_limit",
    ]


@pytest.mark.parametrize(
    ("key", "changes", "code"),
    [
        ("instalment_plan", {}, "offer_key_invalid"),
        ("payment_holiday:4", {}, "offer_key_invalid"),
        ("instalment_plan:121", {}, "offer_key_invalid"),
        ("instalment_plan:3+payment_holiday:1", {}, "offer_key_invalid"),
        ("fee_waiver+settlement:100", {}, "offer_key_invalid"),
        ("fee_waiver+instalment_plan:3", {"fees": 0}, "offer_terms_invalid"),
        ("interest_relief:freeze3+term_extension:12", {"annual_rate_bp": 0}, "offer_terms_invalid"),
        ("instalment_plan:3", {"overdue_amount": 0}, "offer_terms_invalid"),
        ("settlement:3170000", {}, "offer_terms_invalid"),
        ("payment_holiday:2", {}, "offer_terms_invalid"),
        ("instalment_plan:120", {"overdue_amount": 100}, "offer_terms_invalid"),
    ],
)
def test_keys_that_name_no_offer_are_refused(key: str, changes: dict[str, Any], code: str) -> None:
    with pytest.raises(DomainError) as raised:
        offer_from_key(key, position(**changes), DEFAULT_POLICY, TODAY, origin=OfferOrigin.AGENT)
    assert raised.value.code == code


def test_a_holiday_on_an_interest_free_account_freezes_nothing() -> None:
    account = position(annual_rate_bp=0)
    offer = offer_from_key("payment_holiday:2", account, DEFAULT_POLICY, TODAY, origin=OfferOrigin.AGENT)
    assert offer.interest_frozen_months == 0 and offer.total_saved == 0


# --- The borrower's own proposal ---------------------------------------------------------------


def test_a_proposal_repays_the_whole_balance_interest_frozen_the_last_payment_the_rest() -> None:
    account = position()
    offer = proposal_offer(account, 300_000, 11, TODAY, DEFAULT_POLICY)
    assert offer.origin == OfferOrigin.BORROWER
    assert offer.key == "proposal:300000x11"
    assert offer.scope == OfferScope.BALANCE
    assert offer.schedule.amounts == (300_000,) * 10 + (170_000,)
    assert offer.total_waived == 0
    assert offer.interest_treatment == InterestTreatment.FROZEN
    assert offer.reliefs == {ReliefType.INSTALMENT_PLAN, ReliefType.INTEREST_RELIEF}
    assert_money_adds_up(offer, account)
    assert check_within_limits(offer, account, DEFAULT_POLICY) == ["interest_freeze_above_limit"]


def test_a_proposal_that_falls_short_asks_for_the_rest_to_be_waived() -> None:
    account = position()
    offer = proposal_offer(account, 100_000, 24, TODAY, DEFAULT_POLICY)
    assert offer.total_repayable == 2_400_000
    assert offer.waived == {Component.FEES: 20_000, Component.INTEREST: 150_000, Component.PRINCIPAL: 600_000}
    assert ReliefType.SETTLEMENT in offer.reliefs
    assert_money_adds_up(offer, account)
    assert "settlement_not_allowed" in check_within_limits(offer, account, DEFAULT_POLICY)


@pytest.mark.parametrize(
    ("amount", "count", "changes", "code"),
    [
        (0, 12, {}, "proposal_amount_invalid"),
        (1.5, 12, {}, "amount_not_integer"),
        (1000, 0, {}, "proposal_count_invalid"),
        (1000, 121, {}, "proposal_count_invalid"),
        (1000, True, {}, "amount_not_integer"),
        (3_170_000, 2, {}, "proposal_too_long"),
        (1000, 12, {"principal": 0, "interest": 0, "fees": 0, "overdue_amount": 0}, "nothing_owed"),
    ],
)
def test_a_proposal_must_make_sense(amount: Any, count: Any, changes: dict[str, Any], code: str) -> None:
    with pytest.raises(DomainError) as raised:
        proposal_offer(position(**changes), amount, count, TODAY, DEFAULT_POLICY)
    assert raised.value.code == code


# --- Inputs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"principal": -1}, "position_invalid"),
        ({"overdue_amount": 10**9}, "position_invalid"),
        ({"annual_rate_bp": -5}, "position_invalid"),
        ({"stage": "overdue"}, "position_invalid"),
        ({"fees": 1.0}, "amount_not_integer"),
        ({"currency": "XYZ"}, "unknown_currency"),
    ],
)
def test_an_impossible_position_is_refused(changes: dict[str, Any], code: str) -> None:
    with pytest.raises(DomainError) as raised:
        position(**changes)
    assert raised.value.code == code


def test_an_invalid_policy_or_budget_is_refused() -> None:
    broken = replace(DEFAULT_POLICY, hardship=replace(DEFAULT_POLICY.hardship, offer_valid_days=0))
    with pytest.raises(DomainError) as raised:
        generate_offers(position(), 300_000, broken, TODAY)
    assert raised.value.code == "policy_invalid"
    with pytest.raises(DomainError) as raised:
        generate_offers(position(), 3000.0, DEFAULT_POLICY, TODAY)  # type: ignore[arg-type]
    assert raised.value.code == "amount_not_integer"


# --- Properties ----------------------------------------------------------------------------------


@st.composite
def relief_limits(draw: st.DrawFn, currency: str) -> ReliefLimits:
    term = draw(st.integers(min_value=0, max_value=60))
    return ReliefLimits(
        max_waived_share_bp=draw(st.integers(min_value=0, max_value=10000)),
        max_waived_amount={currency: draw(st.integers(min_value=0, max_value=10**7))},
        max_term_months=term,
        min_instalment={currency: draw(st.integers(min_value=0, max_value=10**5))},
        max_holiday_months=draw(st.integers(min_value=0, max_value=min(3, term))),
        interest_freeze_max_months=draw(st.integers(min_value=0, max_value=60)),
        settlement_min_share_bp=draw(st.integers(min_value=0, max_value=10000)),
        allow_settlement=draw(st.booleans()),
    )


@st.composite
def situations(draw: st.DrawFn) -> tuple[AccountPosition, int, Policy, date]:
    currency = draw(st.sampled_from(["CNY", "USD", "EUR", "JPY"]))
    principal = draw(st.integers(min_value=0, max_value=10**8))
    interest = draw(st.integers(min_value=0, max_value=10**6))
    fees = draw(st.integers(min_value=0, max_value=10**5))
    stage = draw(st.sampled_from(list(Stage)))
    account = AccountPosition(
        currency=currency,
        principal=principal,
        interest=interest,
        fees=fees,
        overdue_amount=draw(st.integers(min_value=0, max_value=principal + interest + fees)),
        contractual_instalment=draw(st.integers(min_value=0, max_value=10**6)),
        annual_rate_bp=draw(st.integers(min_value=0, max_value=3600)),
        stage=stage,
        dpd=draw(st.integers(min_value=0, max_value=400)),
        oldest_unpaid_due_on=None,
    )
    policy = DEFAULT_POLICY
    if draw(st.booleans()):
        policy = policy_with(stage, draw(relief_limits(currency)))
    disposable = draw(st.integers(min_value=-(10**6), max_value=10**7))
    today = draw(st.dates(min_value=date(2020, 1, 1), max_value=date(2040, 12, 31)))
    return account, disposable, policy, today


@settings(max_examples=150, deadline=None)
@given(situations())
def test_no_generated_offer_ever_exceeds_a_policy_limit_or_the_budget(
    situation: tuple[AccountPosition, int, Policy, date],
) -> None:
    account, disposable, policy, today = situation
    offers = generate_offers(account, disposable, policy, today)
    assert len(offers) <= MAX_OFFERS
    assert len({o.key for o in offers}) == len(offers)
    for offer in offers:
        assert_within_limits(offer, account, policy)
        if disposable <= 0:
            assert offer.scope == OfferScope.DEFERRAL
            assert ReliefType.PAYMENT_HOLIDAY in offer.reliefs
        elif offer.scope != OfferScope.DEFERRAL and offer.settlement_amount is None:
            assert offer.largest_monthly_payment <= disposable
        assert offer.expires_on == today + timedelta(days=policy.hardship.offer_valid_days)
        assert offer.first_due_on in (None, add_months(today, offer.holiday_months + 1))


@settings(max_examples=150, deadline=None)
@given(situations())
def test_every_offer_adds_up_to_the_fen(situation: tuple[AccountPosition, int, Policy, date]) -> None:
    account, disposable, policy, today = situation
    for offer in generate_offers(account, disposable, policy, today):
        assert_money_adds_up(offer, account)
        assert all(amount > 0 for amount in offer.schedule.amounts)
        if offer.scope == OfferScope.BALANCE:
            assert offer.total_repayable + offer.total_waived == account.balance + offer.interest_charged


@settings(max_examples=60, deadline=None)
@given(situations())
def test_generation_is_reproducible_and_every_key_regenerates(
    situation: tuple[AccountPosition, int, Policy, date],
) -> None:
    account, disposable, policy, today = situation
    offers = generate_offers(account, disposable, policy, today)
    assert generate_offers(account, disposable, policy, today) == offers
    for offer in offers[:2]:
        assert regenerate(offer.key, account, disposable, policy, today) == offer
        rebuilt = offer_from_key(offer.key, account, policy, today, origin=OfferOrigin.SYSTEM)
        assert rebuilt == offer


@settings(max_examples=100, deadline=None)
@given(situations(), st.integers(min_value=1, max_value=10**7), st.integers(min_value=1, max_value=120))
def test_every_proposal_adds_up_or_is_refused_cleanly(
    situation: tuple[AccountPosition, int, Policy, date], amount: int, count: int
) -> None:
    account, _, policy, today = situation
    try:
        offer = proposal_offer(account, amount, count, today, policy)
    except DomainError as error:
        assert error.code in {"proposal_too_long", "nothing_owed"}
        return
    assert_money_adds_up(offer, account)
    assert offer.instalment_count == count
    assert all(0 < a <= amount for a in offer.schedule.amounts)
    assert isinstance(check_within_limits(offer, account, policy), list)


# --- The agent's counter-offer -------------------------------------------------------------------


def test_a_counter_offer_spreads_the_balance_interest_free_after_waiving_fees_and_interest() -> None:
    account = position()
    terms = CounterTerms(CounterPlan.INSTALMENTS, count=12, waive_fees=20_000, waive_interest=150_000)
    offer = counter_offer(account, terms, TODAY, DEFAULT_POLICY)
    assert offer.origin == OfferOrigin.AGENT
    assert offer.key == "counter:instalments:12+waive_fees:20000+waive_interest:150000"
    assert offer.scope == OfferScope.BALANCE
    assert offer.reliefs == {ReliefType.TERM_EXTENSION, ReliefType.FEE_WAIVER, ReliefType.INTEREST_RELIEF}
    assert offer.waived == {Component.FEES: 20_000, Component.INTEREST: 150_000, Component.PRINCIPAL: 0}
    assert offer.schedule.amounts == (250_000,) * 12
    assert offer.first_due_on == date(2024, 4, 30)
    assert offer.end_on == date(2025, 3, 30)  # counted from the first due date, the 30th
    assert offer.expires_on == date(2024, 4, 14)
    assert offer.interest_treatment == InterestTreatment.FROZEN
    assert offer.interest_frozen_months == 12 and offer.annual_rate_bp == 0
    assert offer.fees_after == FeeTreatment.WAIVED
    assert offer.monthly_payment == 250_000
    at_contract_rate = amortised(3_000_000, 1800, 12, date(2024, 4, 30), "CNY")
    assert offer.total_saved == 170_000 + at_contract_rate.interest
    assert_money_adds_up(offer, account)


def test_a_counter_offer_puts_the_remainder_on_the_last_instalment() -> None:
    offer = counter_offer(position(), CounterTerms(CounterPlan.INSTALMENTS, count=7), TODAY, DEFAULT_POLICY)
    assert offer.schedule.amounts == (452_857,) * 6 + (452_858,)
    assert offer.total_repayable == 3_170_000
    assert offer.total_waived == 0 and offer.fees_after == FeeTreatment.REPAID


def test_a_counter_offer_at_a_lower_rate_after_a_holiday_charges_that_rate_from_the_start() -> None:
    account = position()
    terms = CounterTerms(CounterPlan.INSTALMENTS, count=24, holiday_months=2, annual_rate_bp=900)
    offer = counter_offer(account, terms, TODAY, DEFAULT_POLICY)
    assert offer.key == "counter:instalments:24+holiday:2+rate:900"
    assert offer.reliefs == {
        ReliefType.TERM_EXTENSION,
        ReliefType.INTEREST_RELIEF,
        ReliefType.PAYMENT_HOLIDAY,
    }
    first_due = date(2024, 6, 30)
    assert offer.first_due_on == first_due
    expected = amortised(3_170_000, 900, 24, first_due, "CNY", deferred_months=2)
    assert offer.schedule == expected
    assert offer.interest_treatment == InterestTreatment.CHARGED
    assert offer.annual_rate_bp == 900 and offer.interest_frozen_months == 0
    at_contract_rate = amortised(3_170_000, 1800, 24, first_due, "CNY", deferred_months=2)
    assert offer.total_saved == at_contract_rate.interest - expected.interest
    assert_money_adds_up(offer, account)


def test_a_counter_offer_at_the_contract_rate_concedes_only_time() -> None:
    terms = CounterTerms(CounterPlan.INSTALMENTS, count=36, annual_rate_bp=1800)
    offer = counter_offer(position(), terms, TODAY, DEFAULT_POLICY)
    assert offer.reliefs == {ReliefType.TERM_EXTENSION}
    assert offer.total_saved == 0


def test_waiving_principal_in_a_counter_offer_makes_it_a_settlement_in_part() -> None:
    account = position()
    terms = CounterTerms(
        CounterPlan.INSTALMENTS, count=10, waive_fees=20_000, waive_interest=150_000, waive_principal=500_000
    )
    offer = counter_offer(account, terms, TODAY, DEFAULT_POLICY)
    assert ReliefType.SETTLEMENT in offer.reliefs
    assert offer.schedule.amounts == (250_000,) * 10
    assert offer.settlement_amount is None
    assert_money_adds_up(offer, account)


def test_a_counter_settlement_is_one_lump_sum_waiving_fees_then_interest_then_principal() -> None:
    account = position()
    offer = counter_offer(
        account, CounterTerms(CounterPlan.SETTLEMENT, settlement_amount=2_000_000), TODAY, DEFAULT_POLICY
    )
    assert offer.key == "counter:settlement:2000000"
    assert offer.reliefs == {ReliefType.SETTLEMENT}
    assert offer.schedule.amounts == (2_000_000,)
    assert offer.first_due_on == date(2024, 4, 30)
    assert offer.settlement_amount == offer.monthly_payment == 2_000_000
    assert offer.waived == {
        Component.FEES: 20_000,
        Component.INTEREST: 150_000,
        Component.PRINCIPAL: 1_000_000,
    }
    assert offer.interest_treatment == InterestTreatment.SETTLED
    assert offer.total_saved == 1_170_000
    assert_money_adds_up(offer, account)


def test_stage_limits_do_not_bind_a_counter_offer_but_still_report_what_goes_beyond_them() -> None:
    account = position(stage=Stage.EARLY, dpd=10)
    terms = CounterTerms(CounterPlan.INSTALMENTS, count=60, waive_interest=150_000, holiday_months=3)
    offer = counter_offer(account, terms, TODAY, DEFAULT_POLICY)
    assert offer.instalment_count == 60
    assert check_within_limits(offer, account, DEFAULT_POLICY) == [
        "waived_amount_above_limit",
        "term_above_limit",
        "holiday_above_limit",
        "interest_freeze_above_limit",
    ]


def test_a_counter_offer_stays_open_for_the_policys_counter_offer_days() -> None:
    policy = replace(DEFAULT_POLICY, hardship=replace(DEFAULT_POLICY.hardship, counter_offer_valid_days=3))
    offer = counter_offer(position(), CounterTerms(CounterPlan.INSTALMENTS, count=6), TODAY, policy)
    assert offer.expires_on == date(2024, 4, 3)


def test_a_stored_counter_offer_key_rebuilds_the_very_same_offer() -> None:
    account = position()
    terms = CounterTerms(
        CounterPlan.INSTALMENTS,
        count=18,
        waive_fees=1,
        waive_interest=2,
        waive_principal=3,
        holiday_months=1,
        annual_rate_bp=600,
    )
    offer = counter_offer(account, terms, TODAY, DEFAULT_POLICY)
    stored = offer_to_dict(offer)
    assert (
        stored["key"]
        == "counter:instalments:18+waive_fees:1+waive_interest:2+waive_principal:3+holiday:1+rate:600"
    )
    assert CounterTerms.from_key(stored["key"]) == terms
    rebuilt = counter_offer(account, CounterTerms.from_key(stored["key"]), TODAY, DEFAULT_POLICY)
    assert rebuilt == offer and rebuilt.fingerprint == stored["fingerprint"]
    assert CounterTerms("settlement", settlement_amount=5).plan is CounterPlan.SETTLEMENT  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "key",
    [
        "counter:instalments:12+waive_fees:0",  # zero is left out
        "counter:instalments:012",
        "counter:instalments:12+rate:900+holiday:1",  # out of order
        "counter:instalments:12+holiday:1+holiday:1",
        "counter:instalments:121",
        "counter:instalments:12+holiday:4",
        "counter:instalments:12+rate:100001",
        "counter:settlement:0",
        "counter:settlement:100+holiday:1",
        "counter:instalments",
        "instalments:12",
        "fee_waiver+instalment_plan:2",
        "COUNTER:settlement:100",
        "counter:settlement:" + "9" * 300,
        "",
        None,
        12,
    ],
)
def test_a_counter_offer_key_is_only_ever_the_canonical_spelling_of_sound_terms(key: object) -> None:
    with pytest.raises(DomainError) as raised:
        CounterTerms.from_key(key)
    assert raised.value.code == "counter_key_invalid"


@pytest.mark.parametrize(
    ("terms", "changes", "problem"),
    [
        ({"plan": "loan"}, {}, "plan_unknown"),
        ({"count": 0}, {}, "count_out_of_range"),
        ({"count": 121}, {}, "count_out_of_range"),
        ({"holiday_months": 4}, {}, "holiday_out_of_range"),
        ({"annual_rate_bp": -1}, {}, "rate_out_of_range"),
        ({"annual_rate_bp": 100_001}, {}, "rate_out_of_range"),
        ({"waive_fees": -1}, {}, "amount_negative"),
        ({"plan": CounterPlan.SETTLEMENT, "settlement_amount": 100, "count": 2}, {}, "settlement_combined"),
        (
            {"plan": CounterPlan.SETTLEMENT, "settlement_amount": 100, "waive_fees": 1},
            {},
            "settlement_combined",
        ),
        (
            {"plan": CounterPlan.SETTLEMENT, "settlement_amount": 100, "holiday_months": 1},
            {},
            "settlement_combined",
        ),
        ({"plan": CounterPlan.SETTLEMENT}, {}, "settlement_amount_out_of_range"),
        ({"settlement_amount": 100}, {}, "settlement_amount_on_plan"),
        # These fit some accounts, but not this one.
        ({"waive_fees": 20_001}, {}, "waiver_above_balance"),
        ({"waive_interest": 150_001}, {}, "waiver_above_balance"),
        ({"waive_principal": 3_000_001}, {}, "waiver_above_balance"),
        ({"annual_rate_bp": 1801}, {}, "rate_above_contract"),
        ({"annual_rate_bp": 1}, {"annual_rate_bp": 0}, "rate_above_contract"),
        (
            {"count": 1, "waive_fees": 20_000, "waive_interest": 150_000, "waive_principal": 3_000_000},
            {},
            "too_little_to_repay",
        ),
        (
            {"count": 12},
            {"principal": 5, "interest": 0, "fees": 0, "overdue_amount": 5},
            "too_little_to_repay",
        ),
        (
            {"plan": CounterPlan.SETTLEMENT, "settlement_amount": 3_170_000},
            {},
            "settlement_amount_out_of_range",
        ),
    ],
)
def test_counter_terms_that_do_not_fit_the_account_are_refused_with_a_reason(
    terms: dict[str, Any], changes: dict[str, Any], problem: str
) -> None:
    values: dict[str, Any] = {"plan": CounterPlan.INSTALMENTS, **terms}
    if values["plan"] == CounterPlan.INSTALMENTS:
        values.setdefault("count", 6)
    with pytest.raises(DomainError) as raised:
        counter_offer(position(**changes), CounterTerms(**values), TODAY, DEFAULT_POLICY)
    assert raised.value.code == "counter_terms_invalid"
    assert raised.value.params["problem"] == problem
    assert "cannot be made" in str(raised.value)


def test_counter_terms_must_be_whole_numbers_and_the_account_must_owe_something() -> None:
    for bad in ({"count": 1.5}, {"count": True}, {"waive_fees": 10.0}):
        with pytest.raises(DomainError) as raised:
            CounterTerms(CounterPlan.INSTALMENTS, **bad)
        assert raised.value.code == "amount_not_integer"
    nothing = position(principal=0, interest=0, fees=0, overdue_amount=0)
    with pytest.raises(DomainError) as raised:
        counter_offer(nothing, CounterTerms(CounterPlan.INSTALMENTS), TODAY, DEFAULT_POLICY)
    assert raised.value.code == "nothing_owed"
    broken = replace(DEFAULT_POLICY, hardship=replace(DEFAULT_POLICY.hardship, counter_offer_valid_days=0))
    with pytest.raises(DomainError) as raised:
        counter_offer(position(), CounterTerms(CounterPlan.INSTALMENTS), TODAY, broken)
    assert raised.value.code == "policy_invalid"


@st.composite
def counter_situations(draw: st.DrawFn) -> tuple[AccountPosition, CounterTerms, date]:
    account, _, _, today = draw(situations())
    if draw(st.booleans()):
        terms = CounterTerms(
            CounterPlan.SETTLEMENT,
            settlement_amount=draw(st.integers(min_value=1, max_value=max(account.balance + 1, 1))),
        )
    else:
        terms = CounterTerms(
            CounterPlan.INSTALMENTS,
            count=draw(st.integers(min_value=1, max_value=120)),
            waive_fees=draw(st.integers(min_value=0, max_value=account.fees)),
            waive_interest=draw(st.integers(min_value=0, max_value=account.interest)),
            waive_principal=draw(st.integers(min_value=0, max_value=account.principal)),
            holiday_months=draw(st.integers(min_value=0, max_value=3)),
            annual_rate_bp=draw(st.integers(min_value=0, max_value=account.annual_rate_bp)),
        )
    return account, terms, today


@settings(max_examples=150, deadline=None)
@given(counter_situations())
def test_every_counter_offer_adds_up_to_the_fen_and_rebuilds_from_its_key(
    situation: tuple[AccountPosition, CounterTerms, date],
) -> None:
    account, terms, today = situation
    try:
        offer = counter_offer(account, terms, today, DEFAULT_POLICY)
    except DomainError as error:
        assert error.code in {"counter_terms_invalid", "nothing_owed"}
        assert error.params.get("problem") in {None, "too_little_to_repay", "settlement_amount_out_of_range"}
        return
    assert_money_adds_up(offer, account)
    assert offer.origin == OfferOrigin.AGENT and offer.scope == OfferScope.BALANCE
    assert offer.total_repayable + offer.total_waived == account.balance + offer.interest_charged
    assert all(amount > 0 for amount in offer.schedule.amounts)
    assert offer.first_due_on == add_months(today, terms.holiday_months + 1)
    assert offer.expires_on == today + timedelta(days=DEFAULT_POLICY.hardship.counter_offer_valid_days)
    assert offer.instalment_count == terms.count
    if terms.plan == CounterPlan.INSTALMENTS and terms.annual_rate_bp == 0:
        *regular, last = offer.schedule.amounts
        assert set(regular) <= {offer.instalment_amount}
        assert 0 <= last - offer.instalment_amount < terms.count
    assert CounterTerms.from_key(offer.key) == terms
    assert counter_offer(account, CounterTerms.from_key(offer.key), today, DEFAULT_POLICY) == offer
