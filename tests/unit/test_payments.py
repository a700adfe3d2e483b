"""Payments: allocation to the balance and the plan, reversals, limits, autopay retries, broken plans."""

from datetime import date, timedelta
from fractions import Fraction
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.errors import DomainError
from workflows.money import DEFAULT_WATERFALL, Component, OpenInstalment, allocate_payment
from workflows.payments import (
    BreakReason,
    InstalmentState,
    autopay_attempt_on,
    check_payment_amount,
    check_refund,
    is_missed,
    plan_break_reason,
    plan_completed,
    refund_needs_second_approval,
    refundable,
    reversal_delta,
    reversal_split,
)

DUE = date(2026, 12, 30)
positive = st.integers(min_value=1, max_value=10**12)
balances = st.fixed_dictionaries(dict.fromkeys(Component, st.integers(min_value=0, max_value=10**9)))
waterfalls = st.permutations(list(Component))


@st.composite
def open_instalments(draw: st.DrawFn) -> list[OpenInstalment]:
    ids = draw(st.lists(st.integers(min_value=1, max_value=10**6), unique=True, max_size=12))
    return [
        OpenInstalment(
            id=i,
            due_on=DUE + timedelta(days=draw(st.integers(min_value=-400, max_value=400))),
            outstanding=draw(st.integers(min_value=1, max_value=10**8)),
        )
        for i in ids
    ]


# --- Allocating a payment -------------------------------------------------------------------


@given(positive, balances, open_instalments(), waterfalls)
def test_a_payment_is_allocated_whole_and_never_beyond_what_is_owed(
    amount: int,
    owed: dict[Component, int],
    instalments: list[OpenInstalment],
    waterfall: list[Component],
) -> None:
    allocation = allocate_payment(amount, owed, instalments, waterfall)
    assert allocation.total == amount
    assert set(allocation.components) == set(Component)
    assert all(0 <= allocation.components[c] <= owed[c] for c in Component)
    assert allocation.credit >= 0
    if allocation.credit:
        assert allocation.components == owed  # a credit only once the whole debt is paid
    outstanding = {i.id: i.outstanding for i in instalments}
    assert all(0 < paid <= outstanding[i] for i, paid in allocation.instalments.items())
    assert sum(allocation.instalments.values()) == min(allocation.applied, sum(outstanding.values()))


@given(positive, balances, open_instalments())
def test_a_payment_in_a_plan_pays_the_oldest_instalment_first(
    amount: int, owed: dict[Component, int], instalments: list[OpenInstalment]
) -> None:
    allocation = allocate_payment(amount, owed, instalments)
    oldest_first = sorted(instalments, key=lambda i: (i.due_on, i.id))
    paid = [allocation.instalments.get(i.id, 0) for i in oldest_first]
    # Paid in full up to some instalment, partly at most that one, nothing after it.
    for earlier, later in pairwise(oldest_first):
        if allocation.instalments.get(later.id, 0):
            assert allocation.instalments[earlier.id] == earlier.outstanding
    assert paid == sorted(paid, key=lambda p: p == 0)


@given(positive, balances, waterfalls)
def test_components_follow_the_waterfall(amount: int, owed: dict[Component, int], waterfall: list) -> None:  # type: ignore[type-arg]
    allocation = allocate_payment(amount, owed, waterfall=waterfall)
    left = amount
    for component in waterfall:
        assert allocation.components[component] == min(left, owed[component])
        left -= allocation.components[component]
    assert allocation.credit == left


def test_a_payment_beyond_the_debt_leaves_a_credit_and_pays_instalments_only_what_was_applied() -> None:
    owed = {Component.FEES: 500, Component.INTEREST: 1000, Component.PRINCIPAL: 8500}
    instalments = [
        OpenInstalment(7, DUE + timedelta(days=30), 5000),
        OpenInstalment(9, DUE, 5000),
        OpenInstalment(8, DUE, 5000),
    ]
    allocation = allocate_payment(12_000, owed, instalments)
    assert allocation.components == owed
    assert allocation.credit == 2000
    assert dict(allocation.instalments) == {8: 5000, 9: 5000}
    partial = allocate_payment(7000, owed, instalments)
    assert dict(partial.components) == {
        Component.FEES: 500,
        Component.INTEREST: 1000,
        Component.PRINCIPAL: 5500,
    }
    assert dict(partial.instalments) == {8: 5000, 9: 2000}
    assert partial.credit == 0
    assert DEFAULT_WATERFALL[0] == Component.FEES


@pytest.mark.parametrize(
    ("amount", "instalments", "waterfall", "code"),
    [
        (0, [], DEFAULT_WATERFALL, "amount_not_positive"),
        (-5, [], DEFAULT_WATERFALL, "amount_not_positive"),
        (
            100,
            [OpenInstalment(1, DUE, 10), OpenInstalment(1, DUE, 20)],
            DEFAULT_WATERFALL,
            "instalment_duplicate",
        ),
        (100, [OpenInstalment(1, DUE, 0)], DEFAULT_WATERFALL, "instalment_not_open"),
        (100, [], (Component.FEES, Component.PRINCIPAL), "waterfall_invalid"),
        (100, [], (Component.FEES, Component.FEES, Component.PRINCIPAL), "waterfall_invalid"),
    ],
)
def test_a_payment_that_cannot_be_allocated_is_refused(
    amount: int, instalments: list[OpenInstalment], waterfall: tuple[Component, ...], code: str
) -> None:
    with pytest.raises(DomainError) as refused:
        allocate_payment(amount, dict.fromkeys(Component, 1000), instalments, waterfall)
    assert refused.value.code == code


# --- Reversals ------------------------------------------------------------------------------

lines = st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=8).map(
    lambda amounts: dict(enumerate(amounts))
)
small_lines = st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=6).map(
    lambda amounts: dict(enumerate(amounts))
)


@st.composite
def allocation_and_total(draw: st.DrawFn, source: st.SearchStrategy[dict[int, int]] = lines) -> tuple:  # type: ignore[type-arg]
    allocated = draw(source)
    return allocated, draw(st.integers(min_value=0, max_value=sum(allocated.values())))


@given(allocation_and_total())
def test_a_reversal_is_spread_over_the_lines_it_came_from_and_never_beyond_them(case: tuple) -> None:  # type: ignore[type-arg]
    allocated, total = case
    parts = reversal_split(total, allocated)
    whole = sum(allocated.values())
    assert list(parts) == list(allocated)
    assert sum(parts.values()) == total
    for key, amount in allocated.items():
        assert 0 <= parts[key] <= amount
        # At least the proportional share rounded down, and less than n units above it.
        share = Fraction(total * amount, whole) if whole else Fraction(0)
        assert int(share) <= parts[key] < share + len(allocated)


@given(lines)
def test_reversing_nothing_or_everything_is_exact(allocated: dict[int, int]) -> None:
    assert reversal_split(0, allocated) == dict.fromkeys(allocated, 0)
    assert reversal_split(sum(allocated.values()), allocated) == allocated


@given(lines, st.data())
def test_a_larger_reversal_never_reverses_less_on_any_line(
    allocated: dict[int, int], data: st.DataObject
) -> None:
    whole = sum(allocated.values())
    smaller = data.draw(st.integers(min_value=0, max_value=whole))
    larger = data.draw(st.integers(min_value=smaller, max_value=whole))
    before, after = reversal_split(smaller, allocated), reversal_split(larger, allocated)
    assert all(after[key] >= before[key] for key in allocated)
    delta = reversal_delta(smaller, larger, allocated)
    assert all(change >= 0 for change in delta.values())
    assert sum(delta.values()) == larger - smaller


@given(small_lines)
def test_each_unit_more_reversed_comes_off_exactly_one_line(allocated: dict[int, int]) -> None:
    # House monotone, checked at every step (the Alabama paradox would show as a line going down).
    previous = reversal_split(0, allocated)
    for total in range(1, sum(allocated.values()) + 1):
        current = reversal_split(total, allocated)
        changes = [current[key] - previous[key] for key in allocated]
        assert sorted(changes) == [0] * (len(changes) - 1) + [1]
        previous = current


@given(lines, st.data())
def test_reversals_in_any_order_end_in_the_same_state(allocated: dict[int, int], data: st.DataObject) -> None:
    whole = sum(allocated.values())
    # Refunds (+), disputes lost (+) and disputes won (-), the running total never outside the payment.
    steps = data.draw(st.lists(st.integers(min_value=-whole, max_value=whole), max_size=6))
    applied: dict[int, int] = {}
    for order in (steps, list(reversed(steps))):
        applied, running = dict.fromkeys(allocated, 0), 0
        for step in order:
            after = min(max(running + step, 0), whole)
            for key, change in reversal_delta(running, after, allocated).items():
                applied[key] += change
            running = after
        assert applied == reversal_split(running, allocated)
    assert all(0 <= applied[key] <= allocated[key] for key in allocated)


def test_a_reversal_splits_the_components_and_the_credit_by_name() -> None:
    allocated = {"fees": 500, "interest": 1500, "principal": 8000, "credit": 0}
    assert reversal_split(1000, allocated) == {"fees": 50, "interest": 150, "principal": 800, "credit": 0}
    # Three equal lines, one unit: the tie goes to the line listed first.
    assert reversal_split(1, {3: 10, 1: 10, 2: 10}) == {3: 1, 1: 0, 2: 0}
    assert reversal_delta(1000, 400, allocated) == {
        "fees": -30,
        "interest": -90,
        "principal": -480,
        "credit": 0,
    }


def test_reversals_over_many_instalments_of_large_amounts_are_quick_and_exact() -> None:
    allocated = {n: 10**11 + n * 7919 for n in range(1, 121)}
    whole = sum(allocated.values())
    for total in (1, 119, 10**9 + 3, whole // 3, whole - 1):
        parts = reversal_split(total, allocated)
        assert sum(parts.values()) == total


@pytest.mark.parametrize(
    ("total", "allocated", "code"),
    [
        (-1, {1: 10}, "reversal_out_of_range"),
        (11, {1: 10}, "reversal_out_of_range"),
        (1, {1: -1, 2: 5}, "allocation_negative"),
        (1.0, {1: 10}, "amount_not_integer"),
    ],
)
def test_an_impossible_reversal_is_refused(total: int, allocated: dict[int, int], code: str) -> None:
    with pytest.raises(DomainError) as refused:
        reversal_split(total, allocated)
    assert refused.value.code == code


# --- Refunds and payment amounts ------------------------------------------------------------


def test_what_is_left_to_refund_takes_off_refunds_and_disputes() -> None:
    assert refundable(10_000, 2_000, 3_000) == 5_000
    assert refundable(10_000, 10_000, 0) == 0
    assert refundable(10_000, 6_000, 6_000) == 0
    check_refund(5_000, 10_000, 2_000, 3_000)


@pytest.mark.parametrize(
    ("amount", "code", "params"),
    [
        (0, "refund_not_positive", {}),
        (-1, "refund_not_positive", {}),
        (5_001, "refund_too_large", {"refundable": 5_000}),
    ],
)
def test_a_refund_must_be_positive_and_fit_what_is_left(
    amount: int, code: str, params: dict[str, int]
) -> None:
    with pytest.raises(DomainError) as refused:
        check_refund(amount, 10_000, 2_000, 3_000)
    assert refused.value.code == code
    assert refused.value.params == params


@pytest.mark.parametrize(
    ("amount", "minimum", "maximum"),
    [(10_000, 10_000, 50_000), (50_000, 10_000, 50_000), (3_000, 10_000, 3_000), (1, 0, 1)],
)
def test_a_payment_within_the_limits_or_paying_off_a_small_balance_is_accepted(
    amount: int, minimum: int, maximum: int
) -> None:
    check_payment_amount(amount, minimum, maximum)


@pytest.mark.parametrize(
    ("amount", "minimum", "maximum", "code", "params"),
    [
        (0, 10_000, 50_000, "amount_not_positive", {}),
        (-100, 10_000, 50_000, "amount_not_positive", {}),
        (9_999, 10_000, 50_000, "amount_below_minimum", {"minimum": 10_000, "maximum": 50_000}),
        (2_999, 10_000, 3_000, "amount_below_minimum", {"minimum": 3_000, "maximum": 3_000}),
        (50_001, 10_000, 50_000, "amount_above_balance", {"maximum": 50_000}),
        (1, 0, 0, "amount_above_balance", {"maximum": 0}),
    ],
)
def test_a_payment_outside_the_limits_is_refused_with_the_limit(
    amount: int, minimum: int, maximum: int, code: str, params: dict[str, int]
) -> None:
    with pytest.raises(DomainError) as refused:
        check_payment_amount(amount, minimum, maximum)
    assert refused.value.code == code
    assert refused.value.params == params
    assert all(type(value) is int for value in refused.value.params.values())


def test_a_large_refund_or_one_in_an_unlisted_currency_needs_a_second_approver() -> None:
    thresholds = {"CNY": 100_000, "USD": 20_000}
    assert not refund_needs_second_approval(100_000, "CNY", thresholds)
    assert refund_needs_second_approval(100_001, "CNY", thresholds)
    assert not refund_needs_second_approval(1, "USD", thresholds)
    assert refund_needs_second_approval(1, "EUR", thresholds)


# --- Autopay --------------------------------------------------------------------------------


def test_autopay_tries_on_the_due_date_then_on_each_retry_day_then_stops() -> None:
    retry_days = (1, 3, 7)
    attempts = [autopay_attempt_on(DUE, attempt, retry_days) for attempt in range(1, 6)]
    assert attempts == [DUE, date(2026, 12, 31), date(2027, 1, 2), date(2027, 1, 6), None]
    assert autopay_attempt_on(DUE, 1, ()) == DUE
    assert autopay_attempt_on(DUE, 2, ()) is None


@given(st.lists(st.integers(min_value=1, max_value=60), unique=True, max_size=10).map(sorted), st.data())
def test_autopay_attempts_are_in_date_order(retry_days: list[int], data: st.DataObject) -> None:
    dates = [autopay_attempt_on(DUE, attempt, retry_days) for attempt in range(1, len(retry_days) + 2)]
    assert all(d is not None for d in dates)
    assert dates == sorted(dates)  # type: ignore[type-var]
    beyond = data.draw(st.integers(min_value=len(retry_days) + 2, max_value=100))
    assert autopay_attempt_on(DUE, beyond, retry_days) is None


@pytest.mark.parametrize("attempt", [0, -1])
def test_autopay_attempts_are_counted_from_one(attempt: int) -> None:
    with pytest.raises(DomainError) as refused:
        autopay_attempt_on(DUE, attempt, (1, 3))
    assert refused.value.code == "attempt_invalid"


# --- Missed instalments, broken and completed plans ----------------------------------------


def _plan(*outstanding: int, first: date = DUE) -> list[InstalmentState]:
    return [
        InstalmentState(number, first + timedelta(days=30 * (number - 1)), amount)
        for number, amount in enumerate(outstanding, start=1)
    ]


@pytest.mark.parametrize(
    ("days_after_due", "outstanding", "missed"),
    [(-1, 100, False), (0, 100, False), (10, 100, False), (11, 100, True), (11, 0, False), (400, 0, False)],
)
def test_an_instalment_is_missed_only_after_the_last_grace_day(
    days_after_due: int, outstanding: int, missed: bool
) -> None:
    instalment = InstalmentState(1, DUE, outstanding)
    assert is_missed(instalment, DUE + timedelta(days=days_after_due), grace_days=10) is missed


@pytest.mark.parametrize(
    ("outstanding", "days_after_first_due", "reason"),
    [
        # One missed instalment, not yet long overdue: the plan stands.
        ((100, 100, 100), 11, None),
        ((100, 100, 100), 30, None),
        # ... until it is unpaid more than 30 days after its due date.
        ((100, 100, 100), 31, BreakReason.LONG_OVERDUE),
        ((0, 100, 100), 31, None),
        # Two in a row missed: the second is missed on day 30 + 11.
        ((100, 100, 100), 40, BreakReason.LONG_OVERDUE),
        ((100, 100, 100), 41, BreakReason.CONSECUTIVE_MISSES),
        ((50, 0, 100), 71, BreakReason.LONG_OVERDUE),
        ((0, 100, 0, 100), 101, BreakReason.LONG_OVERDUE),
        ((0, 0, 0), 400, None),
        ((0, 100, 100), 71, BreakReason.CONSECUTIVE_MISSES),
    ],
)
def test_a_plan_breaks_on_consecutive_misses_or_a_long_overdue_instalment(
    outstanding: tuple[int, ...], days_after_first_due: int, reason: BreakReason | None
) -> None:
    today = DUE + timedelta(days=days_after_first_due)
    assert plan_break_reason(_plan(*outstanding), today, grace_days=10) == reason


def test_missed_instalments_are_consecutive_by_number_not_by_list_order() -> None:
    plan = _plan(100, 0, 100, 100)
    today = DUE + timedelta(days=101)  # the fourth is missed on day 90 + 11
    shuffled = [plan[3], plan[0], plan[2], plan[1]]
    assert plan_break_reason(shuffled, today, 10, consecutive_misses=2, overdue_days=365) == (
        BreakReason.CONSECUTIVE_MISSES
    )
    assert plan_break_reason(shuffled, today, 10, consecutive_misses=3, overdue_days=365) is None
    assert plan_break_reason(plan, today, 10, consecutive_misses=1, overdue_days=365) == (
        BreakReason.CONSECUTIVE_MISSES
    )
    # A gap in the numbering (instalment 2 not given) is not a run.
    gapped = [plan[0], plan[2]]
    assert plan_break_reason(gapped, today, 10, consecutive_misses=2, overdue_days=365) is None


@pytest.mark.parametrize("changes", [{"consecutive_misses": 0}, {"grace_days": -1}, {"overdue_days": -1}])
def test_plan_break_rules_must_make_sense(changes: dict[str, int]) -> None:
    arguments = {"grace_days": 10, "consecutive_misses": 2, "overdue_days": 30, **changes}
    with pytest.raises(DomainError) as refused:
        plan_break_reason(_plan(100), DUE, **arguments)
    assert refused.value.code == "plan_rule_invalid"


def test_a_plan_is_completed_when_nothing_is_outstanding() -> None:
    assert plan_completed(_plan(0, 0, 0))
    assert not plan_completed(_plan(0, 1, 0))
