"""Authority limits per staff role, and the review queue's priority, bands and SLA."""

from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.access import Role
from workflows.authority import (
    Concession,
    SlaStatus,
    amount_band,
    authority_problems,
    concession_of,
    lowest_authority,
    priority,
    sla_status,
    within_authority,
)
from workflows.errors import DomainError
from workflows.negotiation import ActorKind, CaseAction, CaseActor, CaseFacts, CaseState, transition
from workflows.offers import AccountPosition, CounterPlan, CounterTerms, counter_offer, proposal_offer
from workflows.policy import DEFAULT_POLICY, AuthorityLimit, HardshipPolicy, Policy, PriorityWeights, Stage

TODAY = date(2024, 3, 31)
AGENT, SUPERVISOR = Role.AGENT, Role.SUPERVISOR


def position(**changes: Any) -> AccountPosition:
    """A mid-stage loan: ¥30,000 principal, ¥1,500 interest, ¥200 fees (¥31,700 in all)."""
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


def concession(**changes: Any) -> Concession:
    values: dict[str, Any] = {
        "currency": "CNY",
        "waived_amount": 0,
        "waived_share_bp": 0,
        "term_months": 12,
        "settlement_discount_bp": 0,
    }
    values.update(changes)
    return Concession(**values)


def with_authority(authority: dict[Role, AuthorityLimit]) -> Policy:
    return replace(DEFAULT_POLICY, hardship=replace(DEFAULT_POLICY.hardship, authority=authority))


# --- Measuring a concession ----------------------------------------------------------------------


def test_a_counter_offer_concedes_what_it_waives_as_a_share_of_the_whole_balance_and_its_term() -> None:
    account = position()
    terms = CounterTerms(
        CounterPlan.INSTALMENTS, count=24, waive_fees=20_000, waive_interest=150_000, holiday_months=2
    )
    measured = concession_of(counter_offer(account, terms, TODAY, DEFAULT_POLICY), account)
    # ¥1,700 of ¥31,700 is 5.3628 %.
    assert measured == Concession("CNY", 170_000, 536, 26, 0)
    assert not measured.is_settlement


def test_a_settlements_discount_is_its_waived_share() -> None:
    account = position()
    offer = counter_offer(
        account, CounterTerms(CounterPlan.SETTLEMENT, settlement_amount=2_219_000), TODAY, DEFAULT_POLICY
    )
    assert concession_of(offer, account) == Concession("CNY", 951_000, 3000, 1, 3000)


def test_a_proposal_that_waives_principal_is_measured_as_a_settlement() -> None:
    account = position()
    measured = concession_of(proposal_offer(account, 100_000, 24, TODAY, DEFAULT_POLICY), account)
    assert measured.is_settlement and measured.settlement_discount_bp == measured.waived_share_bp
    assert measured.term_months == 24


@pytest.mark.parametrize(("waived", "share"), [(1, 0), (3, 2), (5, 2), (7, 4)])
def test_the_waived_share_is_rounded_half_to_even(waived: int, share: int) -> None:
    # Of ¥200.00, one fen is exactly half a basis point.
    account = position(principal=20_000, interest=0, fees=0, overdue_amount=0)
    terms = CounterTerms(CounterPlan.INSTALMENTS, count=1, waive_principal=waived)
    measured = concession_of(counter_offer(account, terms, TODAY, DEFAULT_POLICY), account)
    assert measured.waived_share_bp == share


def test_an_offer_for_another_account_is_not_measured() -> None:
    account = position()
    offer = counter_offer(account, CounterTerms(CounterPlan.INSTALMENTS, count=6), TODAY, DEFAULT_POLICY)
    with pytest.raises(DomainError) as raised:
        concession_of(offer, position(currency="USD"))
    assert raised.value.code == "currency_mismatch"
    waiving = counter_offer(
        account, CounterTerms(CounterPlan.INSTALMENTS, count=6, waive_principal=10_000), TODAY, DEFAULT_POLICY
    )
    with pytest.raises(DomainError) as raised:
        concession_of(waiving, position(principal=5_000, interest=0, fees=0, overdue_amount=0))
    assert raised.value.code == "offer_not_for_account"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"waived_amount": -1}, "concession_invalid"),
        ({"term_months": -1}, "concession_invalid"),
        ({"waived_share_bp": 10_001}, "concession_invalid"),
        ({"waived_share_bp": 2000, "settlement_discount_bp": 1000}, "concession_invalid"),
        ({"settlement_discount_bp": 10}, "concession_invalid"),
        ({"waived_amount": 1.5}, "amount_not_integer"),
        ({"currency": "XYZ"}, "unknown_currency"),
    ],
)
def test_an_impossible_concession_is_refused(changes: dict[str, Any], code: str) -> None:
    with pytest.raises(DomainError) as raised:
        concession(**changes)
    assert raised.value.code == code


# --- Who may approve it --------------------------------------------------------------------------


def test_an_agent_approves_an_everyday_concession_alone() -> None:
    everyday = concession(waived_amount=170_000, waived_share_bp=536, term_months=26)
    assert authority_problems(AGENT, everyday, DEFAULT_POLICY) == []
    assert within_authority(AGENT, everyday, DEFAULT_POLICY)
    assert lowest_authority(everyday, DEFAULT_POLICY) == AGENT


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"waived_amount": 2_000_001}, "waived_amount_above_authority"),
        ({"waived_share_bp": 2501}, "waived_share_above_authority"),
        ({"term_months": 37}, "term_above_authority"),
        ({"waived_share_bp": 3001, "settlement_discount_bp": 3001}, "settlement_discount_above_authority"),
    ],
)
def test_agent_cannot_approve_above_authority_but_a_supervisor_can(
    changes: dict[str, Any], problem: str
) -> None:
    above = concession(**changes)
    assert authority_problems(AGENT, above, DEFAULT_POLICY) == [problem]
    assert authority_problems(SUPERVISOR, above, DEFAULT_POLICY) == []
    assert lowest_authority(above, DEFAULT_POLICY) == SUPERVISOR


def test_a_settlement_is_held_to_the_settlement_discount_not_the_waived_share() -> None:
    settlement = concession(waived_share_bp=2800, settlement_discount_bp=2800, term_months=1)
    plan = concession(waived_share_bp=2800, term_months=1)
    assert within_authority(AGENT, settlement, DEFAULT_POLICY)
    assert authority_problems(AGENT, plan, DEFAULT_POLICY) == ["waived_share_above_authority"]


def test_above_a_supervisors_authority_nobody_approves_alone() -> None:
    huge = concession(
        waived_amount=30_000_000, waived_share_bp=7000, term_months=96, settlement_discount_bp=7000
    )
    assert authority_problems(SUPERVISOR, huge, DEFAULT_POLICY) == [
        "waived_amount_above_authority",
        "settlement_discount_above_authority",
        "term_above_authority",
    ]
    assert lowest_authority(huge, DEFAULT_POLICY) is None


@pytest.mark.parametrize("role", [Role.COLLECTOR, Role.FINANCE, Role.ADMIN, "clerk", ""])
def test_roles_without_authority_approve_nothing(role: Role | str) -> None:
    assert authority_problems(role, concession(term_months=1), DEFAULT_POLICY) == ["no_authority"]
    assert not within_authority(role, concession(term_months=1), DEFAULT_POLICY)


def test_a_role_named_by_its_stored_text_has_its_authority() -> None:
    assert within_authority("agent", concession(), DEFAULT_POLICY)


def test_no_authority_over_accounts_in_a_currency_the_policy_does_not_list() -> None:
    nothing_waived = concession(currency="JPY")
    assert authority_problems(AGENT, nothing_waived, DEFAULT_POLICY) == ["currency_not_in_authority"]
    assert authority_problems(SUPERVISOR, nothing_waived, DEFAULT_POLICY) == ["currency_not_in_authority"]


def test_an_agents_approval_above_authority_waits_for_a_supervisor() -> None:
    account = position()
    terms = CounterTerms(CounterPlan.INSTALMENTS, count=60, waive_fees=20_000)
    measured = concession_of(counter_offer(account, terms, TODAY, DEFAULT_POLICY), account)
    agent, supervisor = CaseActor(ActorKind.AGENT, 7), CaseActor(ActorKind.SUPERVISOR, 8)
    first = transition(
        CaseState.CLAIMED,
        CaseAction.APPROVE,
        agent,
        CaseFacts(claimed_by=7, within_authority=within_authority(AGENT, measured, DEFAULT_POLICY)),
    )
    assert first.after == CaseState.AWAITING_SECOND_APPROVAL
    second = transition(
        first.after,
        CaseAction.APPROVE,
        supervisor,
        CaseFacts(first_approver=7, within_authority=within_authority(SUPERVISOR, measured, DEFAULT_POLICY)),
    )
    assert second.after == CaseState.APPROVED


# --- Monotonicity --------------------------------------------------------------------------------

_CURRENCIES = ["CNY", "USD", "EUR", "JPY"]
_SHARES = st.integers(min_value=0, max_value=10_000)


@st.composite
def concessions(draw: st.DrawFn) -> Concession:
    share = draw(_SHARES)
    return Concession(
        currency=draw(st.sampled_from(_CURRENCIES)),
        waived_amount=draw(st.integers(min_value=0, max_value=10**9)),
        waived_share_bp=share,
        term_months=draw(st.integers(min_value=0, max_value=150)),
        settlement_discount_bp=share if draw(st.booleans()) else 0,
    )


@st.composite
def authority_limits(draw: st.DrawFn) -> AuthorityLimit:
    currencies = draw(st.lists(st.sampled_from(_CURRENCIES), unique=True))
    return AuthorityLimit(
        max_waived_amount={c: draw(st.integers(min_value=0, max_value=10**9)) for c in currencies},
        max_waived_share_bp=draw(_SHARES),
        max_term_months=draw(st.integers(min_value=0, max_value=120)),
        max_settlement_discount_bp=draw(_SHARES),
    )


@st.composite
def larger_limits(draw: st.DrawFn, smaller: AuthorityLimit) -> AuthorityLimit:
    """Limits at least as large as `smaller` in every figure, in at least the same currencies."""
    extra = draw(st.lists(st.sampled_from(_CURRENCIES), unique=True))
    more = st.integers(min_value=0, max_value=10**9)
    return AuthorityLimit(
        max_waived_amount={
            c: smaller.max_waived_amount.get(c, 0) + draw(more) for c in {*smaller.max_waived_amount, *extra}
        },
        max_waived_share_bp=draw(st.integers(min_value=smaller.max_waived_share_bp, max_value=10_000)),
        max_term_months=draw(st.integers(min_value=smaller.max_term_months, max_value=120)),
        max_settlement_discount_bp=draw(
            st.integers(min_value=smaller.max_settlement_discount_bp, max_value=10_000)
        ),
    )


@st.composite
def ladders(draw: st.DrawFn) -> Policy:
    """Any policy whose authority table validates, with or without an agent."""
    agent = draw(authority_limits())
    authority = {AGENT: agent, SUPERVISOR: draw(larger_limits(agent))}
    if draw(st.booleans()):
        del authority[AGENT]
    return with_authority(authority)


def edges_of(limit: AuthorityLimit) -> list[Concession]:
    """The largest plan and the largest settlement the limit allows, in each of its currencies."""
    return [
        Concession(currency, amount, share, limit.max_term_months, discount)
        for currency, amount in limit.max_waived_amount.items()
        for share, discount in (
            (limit.max_waived_share_bp, 0),
            (limit.max_settlement_discount_bp, limit.max_settlement_discount_bp),
        )
    ]


@given(ladders(), concessions())
def test_whatever_an_agent_may_approve_a_supervisor_may_too(policy: Policy, wanted: Concession) -> None:
    assert policy.validate() == []
    agent = policy.hardship.authority.get(AGENT)
    for candidate in [wanted, *(edges_of(agent) if agent else [])]:
        if within_authority(AGENT, candidate, policy):
            assert within_authority(SUPERVISOR, candidate, policy)
            assert lowest_authority(candidate, policy) == AGENT


@given(
    authority_limits().flatmap(lambda small: st.tuples(st.just(small), larger_limits(small))), concessions()
)
def test_a_larger_limit_is_never_more_restrictive(
    limits: tuple[AuthorityLimit, AuthorityLimit], wanted: Concession
) -> None:
    smaller, larger = limits
    assert larger.covers(smaller)
    small_policy = with_authority({Role.ADMIN: smaller})
    large_policy = with_authority({Role.ADMIN: larger})
    for edge in edges_of(smaller):
        assert within_authority(Role.ADMIN, edge, small_policy)
        assert within_authority(Role.ADMIN, edge, large_policy)
    if within_authority(Role.ADMIN, wanted, small_policy):
        assert within_authority(Role.ADMIN, wanted, large_policy)


@st.composite
def smaller_of_the_same_kind(draw: st.DrawFn, larger: Concession) -> Concession:
    share = draw(st.integers(min_value=0, max_value=larger.waived_share_bp))
    return replace(
        larger,
        waived_amount=draw(st.integers(min_value=0, max_value=larger.waived_amount)),
        waived_share_bp=share,
        term_months=draw(st.integers(min_value=0, max_value=larger.term_months)),
        settlement_discount_bp=share if larger.is_settlement else 0,
    )


@given(
    authority_limits(),
    concessions().flatmap(lambda big: st.tuples(st.just(big), smaller_of_the_same_kind(big))),
)
def test_shrinking_a_concession_never_turns_an_approval_into_a_refusal(
    limit: AuthorityLimit, pair: tuple[Concession, Concession]
) -> None:
    larger, smaller = pair
    policy = with_authority({AGENT: limit, SUPERVISOR: limit})
    assert set(authority_problems(AGENT, smaller, policy)) <= set(authority_problems(AGENT, larger, policy))


# --- The review queue ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("balance", "band"),
    [(0, 0), (999_999, 0), (1_000_000, 1), (4_999_999, 1), (5_000_000, 2), (20_000_000, 3), (10**15, 3)],
)
def test_a_balance_falls_in_the_band_of_the_highest_threshold_it_reaches(balance: int, band: int) -> None:
    assert amount_band(balance, "CNY", DEFAULT_POLICY) == band


def test_a_currency_without_bands_is_all_in_the_lowest_band() -> None:
    assert amount_band(10**12, "JPY", DEFAULT_POLICY) == 0


def test_priority_adds_points_for_stage_days_vulnerability_and_band() -> None:
    # Late stage 30, 4 days x 2, vulnerable 30, band 2 x 5.
    assert priority(6_000_000, "CNY", Stage.LATE, 4, vulnerable=True, policy=DEFAULT_POLICY) == 78
    assert priority(0, "CNY", Stage.CURRENT, 0, vulnerable=False, policy=DEFAULT_POLICY) == 0


def test_priority_refuses_negative_days_waiting() -> None:
    with pytest.raises(DomainError) as raised:
        priority(0, "CNY", Stage.MID, -1, vulnerable=False, policy=DEFAULT_POLICY)
    assert raised.value.code == "days_waiting_invalid"


@st.composite
def weighted_policies(draw: st.DrawFn) -> Policy:
    steps = draw(st.lists(st.integers(min_value=0, max_value=1000), min_size=6, max_size=6))
    size = draw(st.integers(min_value=1, max_value=9))
    bands = st.lists(st.integers(min_value=1, max_value=10**10), min_size=size, max_size=size, unique=True)
    points = st.integers(min_value=0, max_value=10_000)
    weights = PriorityWeights(
        stage_points={stage: sum(steps[: i + 1]) for i, stage in enumerate(Stage)},
        points_per_day=draw(points),
        vulnerability_points=draw(points),
        balance_bands={
            c: sorted(draw(bands)) for c in draw(st.lists(st.sampled_from(_CURRENCIES), unique=True))
        },
        points_per_band=draw(points),
    )
    policy = Policy(hardship=HardshipPolicy(priority=weights))
    assert policy.validate() == []
    return policy


@st.composite
def cases(draw: st.DrawFn) -> tuple[int, str, Stage, int, bool]:
    return (
        draw(st.integers(min_value=-(10**6), max_value=10**11)),
        draw(st.sampled_from(_CURRENCIES)),
        draw(st.sampled_from(list(Stage))),
        draw(st.integers(min_value=0, max_value=3650)),
        draw(st.booleans()),
    )


@given(weighted_policies(), cases(), cases())
def test_more_days_vulnerability_a_later_stage_or_a_larger_balance_never_lower_priority(
    policy: Policy, case: tuple[int, str, Stage, int, bool], other: tuple[int, str, Stage, int, bool]
) -> None:
    balance, currency, stage, days, vulnerable = case
    stages = list(Stage)
    # The more urgent of the two in every respect, in the same currency.
    more = (
        max(balance, other[0]),
        currency,
        max(stage, other[2], key=stages.index),
        max(days, other[3]),
        vulnerable or other[4],
    )
    base = priority(balance, currency, stage, days, vulnerable=vulnerable, policy=policy)
    assert base >= 0
    assert priority(*more[:4], vulnerable=more[4], policy=policy) >= base
    band = amount_band(balance, currency, policy)
    assert 0 <= band <= len(policy.hardship.priority.balance_bands.get(currency, ()))
    assert amount_band(more[0], currency, policy) >= band


@pytest.mark.parametrize(
    ("today", "status"),
    [
        (date(2024, 4, 4), SlaStatus.ON_TIME),
        (date(2024, 4, 5), SlaStatus.DUE_TODAY),
        (date(2024, 4, 6), SlaStatus.BREACHED),
    ],
)
def test_a_case_is_on_time_until_its_review_due_date_and_breached_after_it(
    today: date, status: SlaStatus
) -> None:
    assert sla_status(date(2024, 4, 5), today) == status
