"""From a signed agreement to a plan: instalments exactly as agreed, waivers as postings, names."""

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.errors import DomainError
from workflows.ledger import EntryKind, apply_postings
from workflows.money import Component
from workflows.plans import instalments, names_match, waiver_postings

START = date(2026, 12, 30)
amounts = st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=60)


@given(amounts)
def test_a_plan_holds_the_schedule_exactly(values: list[int]) -> None:
    schedule = [(n, START + timedelta(days=30 * n), amount) for n, amount in enumerate(values, start=1)]
    planned = instalments(schedule)
    assert [(i.number, i.due_on, i.amount) for i in planned] == schedule
    assert sum(i.amount for i in planned) == sum(values)


@pytest.mark.parametrize(
    ("schedule", "code"),
    [
        ([], "schedule_empty"),
        ([(2, START, 100)], "schedule_numbering"),
        ([(1, START, 0)], "schedule_amount"),
        ([(1, START, 100), (2, START, 100)], "schedule_dates"),
    ],
)
def test_a_broken_schedule_is_refused_not_mended(schedule: list, code: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(DomainError) as refused:
        instalments(schedule)
    assert refused.value.code == code


balances = st.fixed_dictionaries(dict.fromkeys(Component, st.integers(min_value=0, max_value=10**9)))


@given(balances, st.data())
def test_waivers_reduce_exactly_what_was_waived_and_never_below_zero(owed: dict, data: st.DataObject) -> None:  # type: ignore[type-arg]
    waived = {c: data.draw(st.integers(min_value=0, max_value=owed[c])) for c in Component}
    after = apply_postings(owed, EntryKind.WAIVER, waiver_postings(waived, owed))
    for component in Component:
        assert after[component] == owed[component] - waived[component] >= 0


def test_a_waiver_larger_than_what_is_owed_now_is_refused() -> None:
    with pytest.raises(DomainError) as refused:
        waiver_postings({Component.FEES: 5_001}, {Component.FEES: 5_000})
    assert refused.value.code == "waiver_exceeds_balance"


@pytest.mark.parametrize(
    ("typed", "held", "match"),
    [
        ("张伟", "张伟", True),
        (" 张 伟 ", "张伟", False),  # a space inside a Chinese name is a different string
        ("jeff klein", "Jeff Klein", True),
        ("ＪＥＦＦ  ＫＬＥＩＮ", "Jeff Klein", True),  # full-width and double spaces
        ("Jeff", "Jeff Klein", False),
        ("", "Jeff Klein", False),
        ("", "", False),
        ("Li·Zhuguan", "Li Zhuguan", True),
    ],
)
def test_the_typed_name_must_be_the_full_name_held(typed: str, held: str, match: bool) -> None:
    assert names_match(typed, held) is match


@given(st.text(alphabet=st.characters(categories=("Lu", "Ll", "Lo")), min_size=1, max_size=30))
def test_a_name_matches_itself_whatever_the_spaces_around_it(name: str) -> None:
    assert names_match(name, name)
    assert names_match(f"  {name}\t", name)
    assert not names_match(name + name[-1], name)
