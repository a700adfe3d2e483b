import operator
from fractions import Fraction
from itertools import pairwise

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from workflows.errors import DomainError
from workflows.money import (
    CURRENCY_EXPONENTS,
    DEFAULT_WATERFALL,
    Component,
    Money,
    allocate,
    check_currency,
    minor_units,
    parse_amount,
    round_half_even,
    split,
    split_weighted,
)

amounts = st.integers(min_value=-(10**15), max_value=10**15)
non_negative = st.integers(min_value=0, max_value=10**12)
currencies = st.sampled_from(sorted(CURRENCY_EXPONENTS))
balances = st.fixed_dictionaries(dict.fromkeys(Component, non_negative))
waterfalls = st.permutations(list(Component))


def test_domain_error_formats_its_message_and_keeps_code_and_params() -> None:
    error = DomainError(
        "currency_mismatch",
        "Cannot combine {left} with {right}.",
        left="CNY",
        right="USD",
    )
    assert error.code == "currency_mismatch"
    assert error.params == {"left": "CNY", "right": "USD"}
    assert str(error) == "Cannot combine CNY with USD."


def test_currency_exponents_follow_iso_4217() -> None:
    assert minor_units("CNY") == 2
    assert minor_units("JPY") == 0
    assert minor_units("KRW") == 0
    assert minor_units("KWD") == 3
    assert check_currency("EUR") == "EUR"
    with pytest.raises(DomainError) as raised:
        minor_units("XYZ")
    assert raised.value.code == "unknown_currency"


@given(amounts, amounts, currencies)
def test_money_adds_and_subtracts_within_a_currency(a: int, b: int, currency: str) -> None:
    assert Money(a, currency) + Money(b, currency) == Money(a + b, currency)
    assert Money(a, currency) - Money(b, currency) == Money(a - b, currency)
    assert -Money(a, currency) == Money(-a, currency)
    assert (Money(a, currency) < Money(b, currency)) == (a < b)
    assert (Money(a, currency) >= Money(b, currency)) == (a >= b)


@given(amounts, amounts, currencies, currencies)
def test_money_refuses_to_mix_currencies(a: int, b: int, left: str, right: str) -> None:
    assume(left != right)
    for combine in (operator.add, operator.sub, operator.lt, operator.ge):
        with pytest.raises(DomainError) as raised:
            combine(Money(a, left), Money(b, right))
        assert raised.value.code == "currency_mismatch"


@pytest.mark.parametrize("amount", [1.0, 0.5, True, "100"])
def test_money_refuses_anything_but_whole_minor_units(amount: object) -> None:
    with pytest.raises(DomainError) as raised:
        Money(amount, "CNY")  # type: ignore[arg-type]
    assert raised.value.code == "amount_not_integer"


def test_money_refuses_unknown_currency_and_knows_zero() -> None:
    with pytest.raises(DomainError):
        Money(100, "cny")
    assert Money.zero("USD").is_zero
    assert not Money(1, "USD").is_zero


@given(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=1, max_value=10**12),
)
def test_round_half_even_matches_exact_fraction_rounding(numerator: int, denominator: int) -> None:
    assert round_half_even(numerator, denominator) == round(Fraction(numerator, denominator))


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [(5, 2, 2), (7, 2, 4), (-5, 2, -2), (-7, 2, -4), (1, 3, 0), (2, 3, 1), (-2, 3, -1)],
)
def test_round_half_even_sends_exact_halves_to_the_even_neighbour(
    numerator: int, denominator: int, expected: int
) -> None:
    assert round_half_even(numerator, denominator) == expected


def test_round_half_even_refuses_a_non_positive_denominator() -> None:
    with pytest.raises(DomainError):
        round_half_even(1, 0)


@given(amounts, st.integers(min_value=1, max_value=500))
def test_split_is_exact_with_the_remainder_on_the_last_part(total: int, parts: int) -> None:
    result = split(total, parts)
    assert len(result) == parts
    assert sum(result) == total
    # Every part but the last is identical; the last carries the few units left over.
    assert len(set(result[:-1])) <= 1
    extra = result[-1] - result[0]
    assert 0 <= abs(extra) < parts
    assert all(part * total >= 0 for part in result)


def test_split_of_a_hundred_yuan_into_three_puts_the_extra_fen_last() -> None:
    assert split(10000, 3) == [3333, 3333, 3334]
    assert split(-10000, 3) == [-3333, -3333, -3334]


@pytest.mark.parametrize("parts", [0, -1])
def test_split_needs_at_least_one_part(parts: int) -> None:
    with pytest.raises(DomainError):
        split(100, parts)


@given(
    amounts,
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=30),
)
def test_split_weighted_is_exact_and_proportional(total: int, weights: list[int]) -> None:
    if sum(weights) == 0:
        with pytest.raises(DomainError):
            split_weighted(total, weights)
        return
    result = split_weighted(total, weights)
    assert sum(result) == total
    for part, weight in zip(result[:-1], weights[:-1], strict=True):
        # Within one minor unit of the exact share, never rounded away from zero.
        exact = Fraction(total * weight, sum(weights))
        assert abs(part) <= abs(exact) < abs(part) + 1


@given(amounts, st.integers(min_value=1, max_value=100))
def test_split_weighted_with_equal_weights_is_split(total: int, parts: int) -> None:
    assert split_weighted(total, [7] * parts) == split(total, parts)


@pytest.mark.parametrize("weights", [[], [0, 0], [1, -1]])
def test_split_weighted_refuses_meaningless_weights(weights: list[int]) -> None:
    with pytest.raises(DomainError):
        split_weighted(100, weights)


@given(non_negative, balances, waterfalls)
def test_allocation_never_creates_or_loses_money(
    amount: int, owed: dict[Component, int], order: list[Component]
) -> None:
    allocation = allocate(amount, owed, order)
    assert allocation.total_applied + allocation.unapplied == amount
    assert allocation.unapplied >= 0
    for component in Component:
        assert 0 <= allocation.applied[component] <= owed[component]


@given(non_negative, balances, waterfalls)
def test_allocation_pays_a_later_component_only_once_earlier_ones_are_cleared(
    amount: int, owed: dict[Component, int], order: list[Component]
) -> None:
    allocation = allocate(amount, owed, order)
    for earlier, later in pairwise(order):
        if allocation.applied[later] > 0:
            assert allocation.applied[earlier] == owed[earlier]
    if allocation.unapplied > 0:
        assert all(allocation.applied[c] == owed[c] for c in Component)


def test_default_waterfall_pays_fees_then_interest_then_principal() -> None:
    assert DEFAULT_WATERFALL == (
        Component.FEES,
        Component.INTEREST,
        Component.PRINCIPAL,
    )
    owed = {Component.PRINCIPAL: 10000, Component.INTEREST: 500, Component.FEES: 300}
    allocation = allocate(1000, owed)
    assert dict(allocation.applied) == {
        Component.FEES: 300,
        Component.INTEREST: 500,
        Component.PRINCIPAL: 200,
    }
    assert allocation.unapplied == 0


def test_overpayment_is_left_unapplied() -> None:
    allocation = allocate(1500, {Component.PRINCIPAL: 1000})
    assert allocation.applied[Component.PRINCIPAL] == 1000
    assert allocation.applied[Component.FEES] == 0
    assert allocation.unapplied == 500


@pytest.mark.parametrize(
    ("amount", "owed", "code"),
    [
        (-1, {Component.PRINCIPAL: 100}, "amount_negative"),
        (100, {Component.PRINCIPAL: -1}, "balance_negative"),
    ],
)
def test_allocation_refuses_negative_amounts_and_balances(
    amount: int, owed: dict[Component, int], code: str
) -> None:
    with pytest.raises(DomainError) as raised:
        allocate(amount, owed)
    assert raised.value.code == code


@given(st.integers(min_value=0, max_value=10**15), currencies, st.booleans())
def test_parse_amount_reads_back_a_formatted_amount(minor: int, currency: str, grouped: bool) -> None:
    exponent = minor_units(currency)
    whole, fraction = divmod(minor, 10**exponent)
    text = f"{whole:,}" if grouped else str(whole)
    if exponent:
        text += "." + str(fraction).zfill(exponent)
    assert parse_amount(f" {text} ", currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "expected"),
    [
        ("1,234.50", "CNY", 123450),
        ("1234.5", "CNY", 123450),
        (" 12 ", "CNY", 1200),
        (".5", "USD", 50),
        ("0", "CNY", 0),
        ("1,000", "JPY", 1000),
        ("1.234", "KWD", 1234),
    ],
)
def test_parse_amount_reads_what_borrowers_type(text: str, currency: str, expected: int) -> None:
    assert parse_amount(text, currency) == expected


@pytest.mark.parametrize(
    ("text", "currency", "code"),
    [
        ("", "CNY", "amount_invalid"),
        ("   ", "CNY", "amount_invalid"),
        (".", "CNY", "amount_invalid"),
        ("NaN", "CNY", "amount_invalid"),
        ("Infinity", "CNY", "amount_invalid"),
        ("1e3", "CNY", "amount_invalid"),
        ("12,34", "CNY", "amount_invalid"),
        ("1.2.3", "CNY", "amount_invalid"),
        ("+5", "CNY", "amount_invalid"),
        ("１２", "CNY", "amount_invalid"),
        ("1" * 19, "CNY", "amount_invalid"),
        ("9" * 17 + ".99", "CNY", "amount_invalid"),
        ("1" * 1000, "CNY", "amount_invalid"),
        ("1.005", "CNY", "amount_too_precise"),
        ("1.5", "JPY", "amount_too_precise"),
        ("-12.50", "CNY", "amount_negative"),
    ],
)
def test_parse_amount_refuses_what_is_not_an_exact_amount(text: str, currency: str, code: str) -> None:
    with pytest.raises(DomainError) as raised:
        parse_amount(text, currency)
    assert raised.value.code == code


@given(st.text(max_size=50), currencies)
def test_parse_amount_either_parses_or_refuses_cleanly(text: str, currency: str) -> None:
    try:
        assert parse_amount(text, currency) >= 0
    except DomainError as error:
        assert error.code in {"amount_invalid", "amount_too_precise", "amount_negative"}


@given(non_negative, currencies)
def test_a_plain_amount_reads_back_as_the_same_amount(amount: int, currency: str) -> None:
    from workflows.money import plain_amount

    assert parse_amount(plain_amount(amount, currency), currency) == amount


@pytest.mark.parametrize(("typed", "bp"), [("6", 600), ("5.25", 525), ("0", 0), ("18.5", 1850)])
def test_a_rate_typed_in_percent_is_exact_basis_points(typed: str, bp: int) -> None:
    from workflows.money import parse_rate_bp

    assert parse_rate_bp(typed) == bp


@pytest.mark.parametrize("typed", ["5.255", "abc", "-1", "1e2"])
def test_a_rate_that_is_not_a_percentage_is_refused(typed: str) -> None:
    from workflows.money import parse_rate_bp

    with pytest.raises(DomainError) as refused:
        parse_rate_bp(typed)
    assert refused.value.code == "rate_invalid"
