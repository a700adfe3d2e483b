"""Retention rules: what falls due after the policy's period, and what holds it back."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.errors import DomainError
from workflows.negotiation import CLOSED_STATES, OPEN_STATES, CaseState
from workflows.policy import DEFAULT_POLICY, Policy
from workflows.retention import (
    STRIPE_EVENT_KEYS,
    STRIPE_OBJECT_KEYS,
    AccountFacts,
    CaseFacts,
    Reason,
    RetentionPolicy,
    account_reason,
    add_years,
    borrower_reason,
    case_reason,
    cutoff,
    minimal_stripe_payload,
)

POLICY = RetentionPolicy(years=6)
TODAY = date(2040, 6, 1)
LONG_AGO = date(2030, 1, 1)
FINISHED = AccountFacts(status="closed", balance=0, credit=0, ended_on=LONG_AGO, last_activity_on=LONG_AGO)

days = st.dates(min_value=date(2000, 1, 1), max_value=date(2060, 12, 31))
statuses = st.sampled_from(["open", "closed", "recalled"])
accounts = st.builds(
    AccountFacts,
    status=statuses,
    balance=st.integers(min_value=0, max_value=10**9),
    credit=st.integers(min_value=0, max_value=10**6),
    ended_on=st.none() | days,
    last_activity_on=st.none() | days,
    dispute_open=st.booleans(),
    money_unsettled=st.booleans(),
    plan_active=st.booleans(),
    case_open=st.booleans(),
)


def test_a_closed_account_quiet_for_the_period_lets_its_borrower_be_anonymised() -> None:
    assert borrower_reason([FINISHED], anonymised=False, today=TODAY, policy=POLICY) is Reason.DUE


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": "open", "balance": 100}, Reason.ACCOUNT_OPEN),
        ({"status": "open", "credit": 100}, Reason.ACCOUNT_OPEN),
        ({"dispute_open": True}, Reason.DISPUTE_OPEN),
        ({"money_unsettled": True}, Reason.MONEY_UNSETTLED),
        ({"plan_active": True}, Reason.PLAN_ACTIVE),
        ({"case_open": True}, Reason.CASE_OPEN),
        ({"last_activity_on": date(2036, 1, 1)}, Reason.WITHIN_PERIOD),
        ({"ended_on": date(2039, 12, 31)}, Reason.WITHIN_PERIOD),
        ({"ended_on": None, "last_activity_on": None}, Reason.WITHIN_PERIOD),
    ],
)
def test_one_account_that_is_not_finished_and_quiet_holds_the_borrower_back(
    change: dict[str, object], reason: Reason
) -> None:
    held = replace(FINISHED, **change)  # type: ignore[arg-type]
    assert borrower_reason([FINISHED, held], anonymised=False, today=TODAY, policy=POLICY) is reason


def test_a_paid_off_open_account_counts_as_finished() -> None:
    paid = replace(FINISHED, status="open")
    assert account_reason(paid, today=TODAY, policy=POLICY) is Reason.DUE


def test_a_borrower_is_anonymised_once_and_never_without_accounts() -> None:
    assert borrower_reason([FINISHED], anonymised=True, today=TODAY, policy=POLICY) is Reason.ALREADY_DONE
    assert borrower_reason([], anonymised=False, today=TODAY, policy=POLICY) is Reason.NO_ACCOUNTS


@given(st.lists(accounts, min_size=1, max_size=5), days, st.integers(min_value=1, max_value=30))
def test_a_borrower_is_due_exactly_when_every_account_is_finished_unblocked_and_quiet_past_the_cutoff(
    facts: list[AccountFacts], today: date, years: int
) -> None:
    policy = RetentionPolicy(years=years)
    due = borrower_reason(facts, anonymised=False, today=today, policy=policy) is Reason.DUE
    expected = all(
        a.finished
        and not (a.dispute_open or a.money_unsettled or a.plan_active or a.case_open)
        and a.quiet_since is not None
        and a.quiet_since <= cutoff(today, policy)
        for a in facts
    )
    assert due == expected


@given(st.lists(accounts, min_size=1, max_size=5), days, days, st.integers(min_value=1, max_value=30))
def test_once_due_a_borrower_stays_due_on_every_later_day(
    facts: list[AccountFacts], first: date, second: date, years: int
) -> None:
    earlier, later = sorted((first, second))
    policy = RetentionPolicy(years=years)
    if borrower_reason(facts, anonymised=False, today=earlier, policy=policy) is Reason.DUE:
        assert borrower_reason(facts, anonymised=False, today=later, policy=policy) is Reason.DUE


@given(days, st.integers(min_value=1, max_value=30))
def test_nothing_that_went_quiet_after_the_cutoff_is_due(today: date, years: int) -> None:
    policy = RetentionPolicy(years=years)
    last = cutoff(today, policy)
    assert (
        account_reason(replace(FINISHED, ended_on=last, last_activity_on=last), today=today, policy=policy)
        is Reason.DUE
    )
    later = last + timedelta(days=1)
    assert account_reason(
        replace(FINISHED, ended_on=later, last_activity_on=None), today=today, policy=policy
    ) is (Reason.WITHIN_PERIOD)


@given(days, st.integers(min_value=-40, max_value=40))
def test_adding_years_keeps_the_day_except_29_february(day: date, years: int) -> None:
    moved = add_years(day, years)
    assert moved.year == day.year + years and moved.month == day.month
    assert moved.day == day.day or (day.month, day.day, moved.day) == (2, 29, 28)


@pytest.mark.parametrize("state", sorted(OPEN_STATES))
def test_an_open_case_is_never_cleared(state: CaseState) -> None:
    case = CaseFacts(state=state.value, closed_on=LONG_AGO, last_activity_on=LONG_AGO)
    assert case_reason(case, today=TODAY, policy=POLICY) is Reason.CASE_OPEN


@pytest.mark.parametrize("state", sorted(CLOSED_STATES - {CaseState.ACTIVE}))
def test_a_closed_case_quiet_for_the_period_is_cleared(state: CaseState) -> None:
    case = CaseFacts(state=state.value, closed_on=LONG_AGO, last_activity_on=LONG_AGO)
    assert case_reason(case, today=TODAY, policy=POLICY) is Reason.DUE
    assert case_reason(replace(case, last_activity_on=date(2039, 1, 1)), today=TODAY, policy=POLICY) is (
        Reason.WITHIN_PERIOD
    )
    assert case_reason(replace(case, dispute_open=True), today=TODAY, policy=POLICY) is Reason.DISPUTE_OPEN
    assert case_reason(replace(case, cleared=True), today=TODAY, policy=POLICY) is Reason.ALREADY_DONE


@pytest.mark.parametrize(
    ("plan", "reason"),
    [
        (None, Reason.PLAN_ACTIVE),
        ("active", Reason.PLAN_ACTIVE),
        ("completed", Reason.DUE),
        ("broken", Reason.DUE),
    ],
)
def test_a_signed_case_waits_for_its_plan_to_end(plan: str | None, reason: Reason) -> None:
    case = CaseFacts(state="active", closed_on=LONG_AGO, last_activity_on=LONG_AGO, plan_status=plan)
    assert case_reason(case, today=TODAY, policy=POLICY) is reason


def test_a_stored_policy_without_a_retention_section_still_loads_with_the_default() -> None:
    data = DEFAULT_POLICY.to_dict()
    assert data["retention"] == {"years": 6}
    del data["retention"]
    assert Policy.from_dict(data).retention == RetentionPolicy()


def test_the_retention_section_round_trips_and_refuses_bad_values() -> None:
    policy = replace(DEFAULT_POLICY, retention=RetentionPolicy(years=10))
    assert Policy.from_dict(policy.to_dict()) == policy
    for bad in ({"years": 0}, {"years": 31}, {"years": "6"}, {"years": True}, {"months": 6}, []):
        data = {**DEFAULT_POLICY.to_dict(), "retention": bad}
        with pytest.raises(DomainError) as raised:
            Policy.from_dict(data)
        assert raised.value.code == "policy_invalid"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_KEY = st.sampled_from(
    sorted(STRIPE_EVENT_KEYS | STRIPE_OBJECT_KEYS | {"data", "receipt_email", "billing_details"})
)


@given(
    top=st.dictionaries(_KEY, _JSON, max_size=6),
    obj=st.dictionaries(_KEY | st.text(max_size=8), _JSON, max_size=8),
    metadata=st.dictionaries(st.text(max_size=8), _JSON, max_size=4) | _JSON,
)
def test_a_minimised_stripe_payload_keeps_only_what_identifies_the_money(
    top: dict, obj: dict, metadata: object
) -> None:  # type: ignore[type-arg]
    payload = {**top, "data": {"object": {**obj, "metadata": metadata}}}
    small = minimal_stripe_payload(payload)
    assert minimal_stripe_payload(small) == small  # a second pass changes nothing
    assert set(small) <= STRIPE_EVENT_KEYS | {"data"}
    kept = small["data"]["object"]  # type: ignore[index]
    assert set(kept) <= STRIPE_OBJECT_KEYS
    for key in STRIPE_OBJECT_KEYS - {"metadata"}:
        if key in obj:
            assert kept[key] == obj[key]
    if isinstance(metadata, dict):
        assert kept["metadata"] == {k: v for k, v in metadata.items() if isinstance(v, str)}
    else:
        assert "metadata" not in kept


def test_a_payload_without_an_object_keeps_its_envelope_only() -> None:
    assert minimal_stripe_payload({"id": "evt_1", "type": "x", "receipt_email": "a@b.c"}) == {
        "id": "evt_1",
        "type": "x",
    }
    assert minimal_stripe_payload({"id": "evt_1", "data": "odd"}) == {"id": "evt_1"}
