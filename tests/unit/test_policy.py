from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.errors import DomainError
from workflows.policy import DEFAULT_POLICY, Policy


@st.composite
def valid_policies(draw: st.DrawFn) -> Policy:
    early = draw(st.integers(min_value=1, max_value=60))
    mid = draw(st.integers(min_value=early + 1, max_value=120))
    late = draw(st.integers(min_value=mid + 1, max_value=240))
    charge_off = draw(st.integers(min_value=late + 1, max_value=720))
    currencies = draw(st.lists(st.sampled_from(["CNY", "USD", "EUR", "JPY", "KWD"]), unique=True))
    fees = {c: draw(st.integers(min_value=0, max_value=10**6)) for c in currencies}
    caps = {c: fee + draw(st.integers(min_value=0, max_value=10**7)) for c, fee in fees.items()}
    days = st.integers(min_value=1, max_value=720)
    return Policy(
        early_from_dpd=early,
        mid_from_dpd=mid,
        late_from_dpd=late,
        charge_off_dpd=charge_off,
        late_fee_grace_days=draw(st.integers(min_value=0, max_value=30)),
        late_fee_amount=fees,
        late_fee_cap_per_account=caps,
        call_from_dpd=draw(days),
        letter_from_dpd=draw(days),
        credit_bureau_report_dpd=draw(days),
        home_visit_from_dpd=draw(days),
        legal_review_dpd=draw(days),
    )


def test_default_policy_follows_the_design() -> None:
    policy = DEFAULT_POLICY
    assert policy.validate() == []
    assert (policy.early_from_dpd, policy.mid_from_dpd, policy.late_from_dpd) == (
        1,
        31,
        91,
    )
    assert policy.charge_off_dpd == 180
    assert policy.late_fee_amount["CNY"] == 5000
    assert policy.late_fee_cap_per_account["CNY"] == 50000
    assert policy.credit_bureau_report_dpd == 90


@given(valid_policies())
def test_policy_round_trips_through_a_plain_dict(policy: Policy) -> None:
    assert policy.validate() == []
    assert Policy.from_dict(policy.to_dict()) == policy
    assert hash(Policy.from_dict(policy.to_dict())) == hash(policy)


def test_policy_cannot_be_changed_through_the_dict_it_was_built_from() -> None:
    fees = {"CNY": 1000}
    policy = Policy(late_fee_amount=fees)
    fees["CNY"] = 10**9
    assert policy.late_fee_amount["CNY"] == 1000
    with pytest.raises(TypeError):
        policy.late_fee_amount["CNY"] = 5  # type: ignore[index]


def test_policy_from_dict_fills_missing_settings_with_defaults() -> None:
    assert Policy.from_dict({}) == DEFAULT_POLICY
    assert Policy.from_dict({"charge_off_dpd": 365}).charge_off_dpd == 365


@given(
    st.lists(st.integers(min_value=-5, max_value=400), min_size=4, max_size=4).filter(
        lambda days: not (1 <= days[0] < days[1] < days[2] < days[3])
    )
)
def test_validate_catches_stage_thresholds_out_of_order(days: list[int]) -> None:
    early, mid, late, charge_off = days
    policy = Policy(
        early_from_dpd=early,
        mid_from_dpd=mid,
        late_from_dpd=late,
        charge_off_dpd=charge_off,
    )
    assert policy.validate() != []
    with pytest.raises(DomainError) as raised:
        Policy.from_dict(policy.to_dict())
    assert raised.value.code == "policy_invalid"


@pytest.mark.parametrize(
    "changes",
    [
        {"late_fee_amount": {"CNY": -1}},
        {"late_fee_amount": {"XYZ": 100}, "late_fee_cap_per_account": {"XYZ": 1000}},
        {"late_fee_amount": {"CNY": 60000}},
        {"late_fee_amount": {"GBP": 1000}},
        {"late_fee_amount": {"CNY": 1.5}},
        {"late_fee_grace_days": -1},
        {"call_from_dpd": 0},
        {"legal_review_dpd": "120"},
        {"charge_off_dpd": True},
    ],
)
def test_validate_catches_bad_fees_and_days(changes: dict[str, object]) -> None:
    policy = replace(DEFAULT_POLICY, **changes)  # type: ignore[arg-type]
    assert policy.validate() != []
    with pytest.raises(DomainError) as raised:
        Policy.from_dict({**DEFAULT_POLICY.to_dict(), **changes})
    assert raised.value.code == "policy_invalid"


def test_policy_from_dict_refuses_unknown_settings() -> None:
    with pytest.raises(DomainError) as raised:
        Policy.from_dict({"charge_of_dpd": 365})
    assert raised.value.code == "policy_invalid"
    assert "charge_of_dpd" in str(raised.value)
