import calendar
from datetime import date
from fractions import Fraction
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.errors import DomainError
from workflows.schedules import (
    MAX_INSTALMENTS,
    Instalment,
    Schedule,
    accrued_interest,
    add_months,
    amortised,
    equal_instalments,
    level_payment,
    monthly_dates,
    monthly_interest,
)

first_dues = st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31))
counts = st.integers(min_value=1, max_value=120)
principals = st.integers(min_value=0, max_value=10**12)
rates = st.integers(min_value=0, max_value=3600)


def _months_between(earlier: date, later: date) -> int:
    return (later.year - earlier.year) * 12 + later.month - earlier.month


def test_a_month_after_the_31st_is_the_last_day_of_a_shorter_month() -> None:
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2023, 1, 31), 1) == date(2023, 2, 28)
    assert add_months(date(2024, 12, 15), 1) == date(2025, 1, 15)
    assert add_months(date(2024, 3, 31), -1) == date(2024, 2, 29)


def test_monthly_dates_keep_to_the_first_day_of_month_and_never_drift() -> None:
    assert monthly_dates(date(2024, 1, 31), 4) == (
        date(2024, 1, 31),
        date(2024, 2, 29),
        date(2024, 3, 31),
        date(2024, 4, 30),
    )


@given(first_dues, counts)
def test_monthly_dates_are_one_calendar_month_apart_on_the_anchor_day(first_due: date, count: int) -> None:
    dates = monthly_dates(first_due, count)
    assert len(dates) == count
    assert dates[0] == first_due
    assert all(earlier < later for earlier, later in pairwise(dates))
    for months, due_on in enumerate(dates):
        assert _months_between(first_due, due_on) == months
        assert due_on.day == min(first_due.day, calendar.monthrange(due_on.year, due_on.month)[1])


@pytest.mark.parametrize("count", [0, -1, MAX_INSTALMENTS + 1])
def test_a_schedule_needs_a_sensible_number_of_instalments(count: int) -> None:
    with pytest.raises(DomainError) as raised:
        monthly_dates(date(2024, 1, 1), count)
    assert raised.value.code == "schedule_count_invalid"


def test_dates_past_the_calendar_are_refused_cleanly() -> None:
    with pytest.raises(DomainError) as raised:
        monthly_dates(date(9999, 6, 1), 12)
    assert raised.value.code == "schedule_date_out_of_range"


def test_equal_instalments_put_the_extra_fen_on_the_last() -> None:
    schedule = equal_instalments(10000, 3, date(2024, 1, 31), "CNY")
    assert schedule.amounts == (3333, 3333, 3334)
    assert schedule.total == 10000
    assert schedule.interest == 0
    assert schedule.first_due_on == date(2024, 1, 31)
    assert schedule.last_due_on == date(2024, 3, 31)
    assert schedule.regular_amount == 3333
    assert schedule.largest_amount == 3334


@given(principals, counts, first_dues)
def test_equal_instalments_add_up_exactly(total: int, count: int, first_due: date) -> None:
    schedule = equal_instalments(total, count, first_due, "CNY")
    assert schedule.count == count
    assert schedule.total == total
    assert [i.number for i in schedule.instalments] == list(range(1, count + 1))
    assert len(set(schedule.amounts[:-1])) <= 1
    assert 0 <= schedule.amounts[-1] - schedule.amounts[0] < count


def test_a_year_at_18_percent_matches_the_annuity_formula() -> None:
    schedule = amortised(1_000_000, 1800, 12, date(2024, 1, 31), "CNY")
    rate = Fraction(1800, 120000)
    exact = 1_000_000 * rate / (1 - (1 + rate) ** -12)
    assert schedule.regular_amount == int(exact)  # 9,167.99 yuan, rounded down
    assert schedule.amounts[:-1] == (91679,) * 11
    assert schedule.amounts[-1] == 91692
    assert schedule.total == 1_000_000 + schedule.interest == 1_100_161


@given(principals, rates, counts, first_dues)
def test_amortised_repays_principal_plus_interest_exactly(
    principal: int, rate: int, count: int, first_due: date
) -> None:
    schedule = amortised(principal, rate, count, first_due, "CNY")
    assert schedule.total == principal + schedule.interest
    assert schedule.count == count
    assert all(amount >= 0 for amount in schedule.amounts)
    assert schedule.interest >= 0
    assert all(type(amount) is int for amount in schedule.amounts)
    # Reproducible: the same inputs give the very same schedule.
    assert amortised(principal, rate, count, first_due, "CNY") == schedule


@given(st.integers(min_value=10**5, max_value=10**12), rates, counts)
def test_the_last_instalment_differs_from_the_rest_by_rounding_only(
    principal: int, rate: int, count: int
) -> None:
    schedule = amortised(principal, rate, count, date(2024, 1, 15), "CNY")
    regular = schedule.regular_amount
    assert all(amount == regular for amount in schedule.amounts[:-1])
    # Each month the payment rounded down and the interest rounded to the nearest unit move the
    # balance by under 1.5 units, and interest compounds that.
    bound = Fraction(3, 2) * count * (1 + Fraction(rate, 120000)) ** count
    assert abs(schedule.amounts[-1] - regular) <= bound
    if count > 1:
        assert level_payment(principal, rate, count) == regular


@given(principals, counts)
def test_without_interest_an_amortised_plan_is_an_equal_split(principal: int, count: int) -> None:
    assert amortised(principal, 0, count, date(2024, 1, 1), "CNY").amounts == (
        equal_instalments(principal, count, date(2024, 1, 1), "CNY").amounts
    )


@given(principals, st.integers(min_value=1, max_value=3600), counts)
def test_a_freeze_over_the_whole_plan_charges_no_interest(principal: int, rate: int, count: int) -> None:
    schedule = amortised(principal, rate, count, date(2024, 1, 1), "CNY", interest_free_months=count)
    assert schedule.interest == 0
    assert schedule.total == principal


@given(principals, st.integers(min_value=1, max_value=3600), counts, st.integers(min_value=1, max_value=6))
def test_a_freeze_never_costs_more_interest_beyond_rounding(
    principal: int, rate: int, count: int, frozen: int
) -> None:
    charged = amortised(principal, rate, count, date(2024, 1, 1), "CNY")
    frozen_plan = amortised(principal, rate, count, date(2024, 1, 1), "CNY", interest_free_months=frozen)
    # In a plan of a few fen a month the regular payment, rounded down, can leave noticeably more
    # owed for longer; from a yuan a month on that is worth less than a fen a month.
    if principal >= 100 * count:
        assert frozen_plan.interest <= charged.interest + count
    if principal >= 10_000 * count:
        assert frozen_plan.interest <= charged.interest


def test_deferred_months_add_their_interest_to_the_balance() -> None:
    deferred = amortised(1_000_000, 1200, 10, date(2024, 4, 1), "CNY", deferred_months=3)
    accrued = accrued_interest(1_000_000, 1200, 3)
    assert accrued == 10000 + 10100 + 10201  # 1 % a month, compounded
    later = amortised(1_000_000 + accrued, 1200, 10, date(2024, 4, 1), "CNY")
    assert deferred.amounts == later.amounts
    assert deferred.interest == later.interest + accrued


def test_deferred_months_inside_a_freeze_gather_no_interest() -> None:
    deferred = amortised(
        1_000_000, 1200, 10, date(2024, 4, 1), "CNY", deferred_months=3, interest_free_months=3
    )
    plain = amortised(1_000_000, 1200, 10, date(2024, 4, 1), "CNY")
    assert deferred.amounts == plain.amounts


def test_monthly_interest_is_banker_rounded() -> None:
    # 100 fen at 6 % a year is exactly half a fen a month: it rounds to the even 0.
    assert monthly_interest(100, 600) == 0
    assert monthly_interest(300, 600) == 2  # 1.5 -> 2


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"principal": -1}, "amount_negative"),
        ({"principal": 1.5}, "amount_not_integer"),
        ({"annual_rate_bp": -1}, "rate_invalid"),
        ({"annual_rate_bp": 100_001}, "rate_invalid"),
        ({"count": 0}, "schedule_count_invalid"),
        ({"deferred_months": -1}, "schedule_months_invalid"),
        ({"interest_free_months": -2}, "schedule_months_invalid"),
        ({"currency": "XYZ"}, "unknown_currency"),
    ],
)
def test_amortised_refuses_nonsense(kwargs: dict[str, object], code: str) -> None:
    arguments: dict[str, object] = {
        "principal": 100_000,
        "annual_rate_bp": 1200,
        "count": 12,
        "first_due": date(2024, 1, 1),
        "currency": "CNY",
        **kwargs,
    }
    with pytest.raises(DomainError) as raised:
        amortised(**arguments)  # type: ignore[arg-type]
    assert raised.value.code == code


def test_a_schedule_refuses_dates_out_of_order_and_interest_beyond_its_total() -> None:
    with pytest.raises(DomainError):
        Schedule("CNY", (Instalment(1, date(2024, 2, 1), 100), Instalment(2, date(2024, 2, 1), 100)))
    with pytest.raises(DomainError):
        Schedule("CNY", (Instalment(1, date(2024, 2, 1), 100),), interest=101)
    empty = Schedule("CNY", ())
    assert (empty.total, empty.count, empty.regular_amount, empty.first_due_on) == (0, 0, 0, None)
