from collections.abc import Mapping
from dataclasses import fields, is_dataclass, replace
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.affordability import (
    COST_CATEGORIES,
    PERIODS_PER_YEAR,
    SECTION_OF,
    Assessment,
    BudgetCategory,
    BudgetLine,
    BudgetSection,
    Frequency,
    Household,
    assess,
    check_line,
    reference_for,
)
from workflows.errors import DomainError
from workflows.policy import DEFAULT_POLICY, ReferenceAmount

HARDSHIP = DEFAULT_POLICY.hardship

amounts = st.integers(min_value=0, max_value=10**8)
lines = st.builds(
    BudgetLine, st.sampled_from(list(BudgetCategory)), amounts, st.sampled_from(list(Frequency))
)
# Up to 40 lines of one category, each small enough that even weekly they stay under the policy's
# monthly maximum together (40 * 5,000,000 * 52 / 12 < 1,000,000,000): a larger total is refused,
# which is tested on its own.
budgets = st.lists(
    st.builds(
        BudgetLine,
        st.sampled_from(list(BudgetCategory)),
        st.integers(min_value=0, max_value=5 * 10**6),
        st.sampled_from(list(Frequency)),
    ),
    max_size=40,
)
households = st.builds(
    Household,
    adults=st.integers(min_value=1, max_value=20),
    children=st.integers(min_value=0, max_value=20),
    dependants=st.integers(min_value=0, max_value=20),
)


def _assert_no_floats(value: object) -> None:
    assert not isinstance(value, float)
    if isinstance(value, Mapping):
        for key, item in value.items():
            _assert_no_floats(key)
            _assert_no_floats(item)
    elif isinstance(value, tuple):
        for item in value:
            _assert_no_floats(item)
    elif is_dataclass(value):
        for f in fields(value):
            _assert_no_floats(getattr(value, f.name))


def test_every_category_belongs_to_one_section_and_the_form_stays_short() -> None:
    assert set(SECTION_OF) == set(BudgetCategory)
    assert 18 <= len(BudgetCategory) <= 22
    assert set(COST_CATEGORIES) == {
        c for c, s in SECTION_OF.items() if s in (BudgetSection.FIXED_COSTS, BudgetSection.FLEXIBLE_COSTS)
    }
    assert next(iter(BudgetCategory)) == BudgetCategory.EARNINGS


@pytest.mark.parametrize(
    ("frequency", "amount", "monthly"),
    [
        (Frequency.WEEKLY, 10000, 43333),  # 100.00 a week is 433.33 a month
        (Frequency.FORTNIGHTLY, 10000, 21667),
        (Frequency.FOUR_WEEKLY, 10000, 10833),
        (Frequency.MONTHLY, 10000, 10000),
        (Frequency.WEEKLY, 3, 13),  # 156 / 12 = 13 exactly
        (Frequency.FOUR_WEEKLY, 6, 6),  # 78 / 12 = 6.5 -> the even 6
    ],
)
def test_a_line_becomes_monthly_by_way_of_its_exact_annual_figure(
    frequency: Frequency, amount: int, monthly: int
) -> None:
    result = assess([BudgetLine(BudgetCategory.EARNINGS, amount, frequency)], Household(), "CNY", HARDSHIP)
    assert result.monthly_by_category[BudgetCategory.EARNINGS] == monthly


@given(amounts, st.sampled_from(list(Frequency)))
def test_monthly_conversion_is_the_exact_annual_figure_rounded_once(
    amount: int, frequency: Frequency
) -> None:
    line = BudgetLine(BudgetCategory.EARNINGS, amount, frequency)
    assert line.annual == amount * PERIODS_PER_YEAR[frequency]
    result = assess([line], Household(), "CNY", HARDSHIP)
    # round() of a Fraction is exact, ties to even.
    assert result.monthly_by_category[BudgetCategory.EARNINGS] == round(Fraction(line.annual, 12))


@given(budgets, households)
def test_section_totals_are_the_sum_of_their_lines(budget: list[BudgetLine], household: Household) -> None:
    result = assess(budget, household, "CNY", HARDSHIP)
    for section in BudgetSection:
        annual = sum(line.annual for line in budget if SECTION_OF[line.category] == section)
        assert result.annual_by_section[section] == annual
        assert result.monthly_by_section[section] == round(Fraction(annual, 12))
    costs = sum(v for s, v in result.monthly_by_section.items() if s != BudgetSection.INCOME)
    assert result.disposable_monthly == result.income_monthly - costs
    assert result.outgoings_monthly == costs
    _assert_no_floats(result)


@given(budgets)
def test_monthly_lines_add_up_to_the_penny(budget: list[BudgetLine]) -> None:
    monthly = [replace(line, frequency=Frequency.MONTHLY) for line in budget]
    result = assess(monthly, Household(), "CNY", HARDSHIP)
    for section in BudgetSection:
        assert result.monthly_by_section[section] == sum(
            line.amount for line in monthly if SECTION_OF[line.category] == section
        )


def test_lines_in_the_same_category_add_up() -> None:
    result = assess(
        [
            BudgetLine(BudgetCategory.EARNINGS, 300000),
            BudgetLine(BudgetCategory.EARNINGS, 50000),
            BudgetLine(BudgetCategory.HOUSING, 120000),
        ],
        Household(),
        "CNY",
        HARDSHIP,
    )
    assert result.monthly_by_category[BudgetCategory.EARNINGS] == 350000
    assert result.disposable_monthly == 230000


def test_a_shortfall_gives_a_negative_disposable_income() -> None:
    result = assess(
        [BudgetLine(BudgetCategory.BENEFITS, 100000), BudgetLine(BudgetCategory.HOUSING, 150000)],
        Household(),
        "CNY",
        HARDSHIP,
    )
    assert result.disposable_monthly == -50000


def test_reference_counts_each_adult_dependant_and_child() -> None:
    food = HARDSHIP.reference_spending["CNY"][BudgetCategory.FOOD_HOUSEKEEPING]
    household = Household(adults=2, children=2, dependants=1)
    expected = food.first_adult + 2 * food.each_other_adult + 2 * food.each_child
    assert reference_for(BudgetCategory.FOOD_HOUSEKEEPING, household, "CNY", HARDSHIP) == expected


def test_a_cost_above_reference_asks_for_an_explanation_and_never_rejects() -> None:
    reference = reference_for(BudgetCategory.TRANSPORT, Household(), "CNY", HARDSHIP)
    assert reference is not None
    budget = [
        BudgetLine(BudgetCategory.EARNINGS, 1_000_000),
        BudgetLine(BudgetCategory.TRANSPORT, reference + 1),
    ]
    result = assess(budget, Household(), "CNY", HARDSHIP)
    check = next(c for c in result.checks if c.category == BudgetCategory.TRANSPORT)
    assert check.above_reference and not check.explained
    assert result.needs_explanation == (BudgetCategory.TRANSPORT,)
    assert not result.complete
    blank = assess(budget, Household(), "CNY", HARDSHIP, {BudgetCategory.TRANSPORT: "   "})
    assert blank.needs_explanation == (BudgetCategory.TRANSPORT,)
    explained = assess(
        budget, Household(), "CNY", HARDSHIP, {BudgetCategory.TRANSPORT: "I drive to dialysis"}
    )
    assert explained.needs_explanation == ()
    assert explained.complete


def test_a_cost_at_its_reference_needs_no_explanation() -> None:
    reference = reference_for(BudgetCategory.TRANSPORT, Household(), "CNY", HARDSHIP)
    assert reference is not None
    result = assess([BudgetLine(BudgetCategory.TRANSPORT, reference)], Household(), "CNY", HARDSHIP)
    assert result.needs_explanation == ()


def test_the_reference_is_compared_exactly_not_after_rounding() -> None:
    policy = replace(
        HARDSHIP, reference_spending={"CNY": {BudgetCategory.TRANSPORT: ReferenceAmount(433, 0, 0)}}
    )
    # 100 a week is 433.33 a month: it shows as 433 but is above a reference of 433.
    result = assess([BudgetLine(BudgetCategory.TRANSPORT, 100, Frequency.WEEKLY)], Household(), "CNY", policy)
    assert result.monthly_by_category[BudgetCategory.TRANSPORT] == 433
    assert result.needs_explanation == (BudgetCategory.TRANSPORT,)


def test_every_living_cost_is_checked_in_order_and_debts_are_not() -> None:
    result = assess([], Household(), "USD", HARDSHIP)
    assert tuple(c.category for c in result.checks) == COST_CATEGORIES
    assert all(c.reference is not None and c.monthly == 0 for c in result.checks)
    assert BudgetCategory.OTHER_CREDIT_PAYMENTS not in {c.category for c in result.checks}


def test_the_form_can_post_plain_strings() -> None:
    line = BudgetLine("earnings", 100, "weekly")  # type: ignore[arg-type]
    assert line.category is BudgetCategory.EARNINGS
    assert line.frequency is Frequency.WEEKLY


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda: BudgetLine(BudgetCategory.EARNINGS, -1), "amount_negative"),
        (lambda: BudgetLine(BudgetCategory.EARNINGS, 10.5), "amount_not_integer"),
        (lambda: BudgetLine(BudgetCategory.EARNINGS, True), "amount_not_integer"),
        (lambda: BudgetLine("lottery", 100), "budget_category_unknown"),
        (lambda: BudgetLine(BudgetCategory.EARNINGS, 100, "daily"), "frequency_unknown"),
        (lambda: Household(adults=0), "household_invalid"),
        (lambda: Household(children=21), "household_invalid"),
        (lambda: Household(dependants=-1), "household_invalid"),
        (lambda: Household(adults=1.0), "household_invalid"),
        (lambda: Household(children=True), "household_invalid"),
    ],
)
def test_nonsense_lines_and_households_are_refused(make: object, code: str) -> None:
    with pytest.raises(DomainError) as raised:
        make()  # type: ignore[operator]
    assert raised.value.code == code


def test_an_absurd_amount_is_refused_naming_its_category() -> None:
    limit = HARDSHIP.max_monthly_amount["CNY"]
    assess([BudgetLine(BudgetCategory.HOUSING, limit)], Household(), "CNY", HARDSHIP)
    weekly = limit * 12 // 52 + 1  # just over the limit once made monthly
    for budget in (
        [BudgetLine(BudgetCategory.HOUSING, limit + 1)],
        [BudgetLine(BudgetCategory.HOUSING, weekly, Frequency.WEEKLY)],
        [BudgetLine(BudgetCategory.HOUSING, limit), BudgetLine(BudgetCategory.HOUSING, 1)],
    ):
        with pytest.raises(DomainError) as raised:
            assess(budget, Household(), "CNY", HARDSHIP)
        assert raised.value.code == "amount_too_large"
        assert raised.value.params["category"] == BudgetCategory.HOUSING
    with pytest.raises(DomainError) as raised:
        check_line(BudgetLine(BudgetCategory.HOUSING, limit + 1), "CNY", HARDSHIP)
    assert raised.value.code == "amount_too_large"


@pytest.mark.parametrize(
    ("currency", "code"), [("XYZ", "unknown_currency"), ("JPY", "currency_not_supported")]
)
def test_a_currency_without_figures_cannot_be_assessed(currency: str, code: str) -> None:
    with pytest.raises(DomainError) as raised:
        assess([], Household(), currency, HARDSHIP)
    assert raised.value.code == code


def test_an_overlong_explanation_is_refused() -> None:
    with pytest.raises(DomainError) as raised:
        assess([], Household(), "CNY", HARDSHIP, {BudgetCategory.HEALTH: "x" * 1001})
    assert raised.value.code == "explanation_too_long"


def test_an_assessment_is_immutable() -> None:
    result: Assessment = assess([BudgetLine(BudgetCategory.EARNINGS, 100)], Household(), "CNY", HARDSHIP)
    with pytest.raises(TypeError):
        result.monthly_by_section[BudgetSection.INCOME] = 5  # type: ignore[index]
