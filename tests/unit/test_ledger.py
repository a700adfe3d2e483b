import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.errors import DomainError
from workflows.ledger import (
    EntryKind,
    Posting,
    apply_postings,
    balances_total,
    check_posting,
    postings_for_allocation,
)
from workflows.money import Component, allocate

P, INT, F = Component.PRINCIPAL, Component.INTEREST, Component.FEES
balances = st.fixed_dictionaries({c: st.integers(min_value=0, max_value=10**9) for c in Component})


@pytest.mark.parametrize(
    ("kind", "component", "amount", "code"),
    [
        (EntryKind.CHARGE, P, 100, None),
        (EntryKind.CHARGE, F, 100, None),
        (EntryKind.CHARGE, P, -100, "posting_sign"),
        (EntryKind.INTEREST, INT, 100, None),
        (EntryKind.INTEREST, INT, -100, "posting_sign"),
        (EntryKind.INTEREST, P, 100, "posting_component"),
        (EntryKind.FEE, F, 100, None),
        (EntryKind.FEE, F, -100, "posting_sign"),
        (EntryKind.FEE, INT, 100, "posting_component"),
        (EntryKind.PAYMENT, P, -100, None),
        (EntryKind.PAYMENT, F, -100, None),
        (EntryKind.PAYMENT, P, 100, "posting_sign"),
        (EntryKind.WAIVER, INT, -100, None),
        (EntryKind.WAIVER, INT, 100, "posting_sign"),
        (EntryKind.REVERSAL, P, 100, None),
        (EntryKind.REVERSAL, P, -100, None),
        (EntryKind.ADJUSTMENT, F, 100, None),
        (EntryKind.ADJUSTMENT, F, -100, None),
        *((kind, P if kind != EntryKind.FEE else F, 0, "posting_zero") for kind in EntryKind),
    ],
)
def test_posting_sign_rules(kind: EntryKind, component: Component, amount: int, code: str | None) -> None:
    posting = Posting(component, amount)
    if code is None:
        check_posting(kind, posting)
    else:
        with pytest.raises(DomainError) as raised:
            check_posting(kind, posting)
        assert raised.value.code == code


def test_posting_refuses_fractional_amounts() -> None:
    with pytest.raises(DomainError) as raised:
        Posting(P, 1.5)  # type: ignore[arg-type]
    assert raised.value.code == "amount_not_integer"


@given(
    balances,
    st.sampled_from(list(EntryKind)),
    st.lists(
        st.builds(Posting, st.sampled_from(list(Component)), st.integers(-(10**9), 10**9)),
        max_size=6,
    ),
)
def test_applying_postings_conserves_money(
    before: dict[Component, int], kind: EntryKind, postings: list[Posting]
) -> None:
    try:
        after = apply_postings(before, kind, postings)
    except DomainError as error:
        assert error.code in {
            "posting_zero",
            "posting_sign",
            "posting_component",
            "balance_negative",
        }
        return
    assert set(after) == set(Component)
    assert balances_total(after) == balances_total(before) + sum(p.amount for p in postings)
    assert all(balance >= 0 for balance in after.values())


@given(balances, st.integers(min_value=0, max_value=4 * 10**9))
def test_a_payment_posted_through_the_waterfall_clears_exactly_what_it_applied(
    before: dict[Component, int], amount: int
) -> None:
    allocation = allocate(amount, before)
    postings = postings_for_allocation(allocation)
    assert all(posting.amount < 0 for posting in postings)
    after = apply_postings(before, EntryKind.PAYMENT, postings)
    assert balances_total(before) - balances_total(after) == allocation.total_applied
    assert balances_total(after) == 0 or allocation.unapplied == 0


def test_missing_components_count_as_zero() -> None:
    after = apply_postings({}, EntryKind.FEE, [Posting(F, 5000)])
    assert after == {P: 0, INT: 0, F: 5000}


def test_no_component_may_go_below_zero() -> None:
    with pytest.raises(DomainError) as raised:
        apply_postings({P: 100}, EntryKind.PAYMENT, [Posting(P, -101)])
    assert raised.value.code == "balance_negative"


def test_an_adjustment_cannot_dip_below_zero_even_if_a_later_posting_repays_it() -> None:
    with pytest.raises(DomainError):
        apply_postings({P: 100}, EntryKind.ADJUSTMENT, [Posting(P, -200), Posting(P, 200)])


def test_a_payment_with_a_bad_posting_changes_nothing() -> None:
    before = {P: 1000, INT: 0, F: 0}
    with pytest.raises(DomainError):
        apply_postings(before, EntryKind.PAYMENT, [Posting(P, -100), Posting(P, 100)])
    assert before == {P: 1000, INT: 0, F: 0}
