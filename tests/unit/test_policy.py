import ast
import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.access import Role
from workflows.affordability import COST_CATEGORIES
from workflows.errors import DomainError
from workflows.money import DEFAULT_WATERFALL, Component
from workflows.policy import (
    AUTHORITY_LADDER,
    DEFAULT_POLICY,
    AuthorityLimit,
    HardshipPolicy,
    PaymentsPolicy,
    Policy,
    PriorityWeights,
    ReferenceAmount,
    ReliefLimits,
    Stage,
)


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


# --- The hardship section ---------------------------------------------------------------------

_CURRENCIES = ["CNY", "USD", "EUR", "JPY", "KWD"]


@st.composite
def relief_limits(draw: st.DrawFn) -> ReliefLimits:
    term = draw(st.integers(min_value=0, max_value=120))
    currencies = draw(st.lists(st.sampled_from(_CURRENCIES), unique=True))
    money = st.integers(min_value=0, max_value=10**9)
    return ReliefLimits(
        max_waived_share_bp=draw(st.integers(min_value=0, max_value=10000)),
        max_waived_amount={c: draw(money) for c in currencies},
        max_term_months=term,
        min_instalment={c: draw(money) for c in currencies},
        max_holiday_months=draw(st.integers(min_value=0, max_value=min(3, term))),
        interest_freeze_max_months=draw(st.integers(min_value=0, max_value=120)),
        settlement_min_share_bp=draw(st.integers(min_value=0, max_value=10000)),
        allow_settlement=draw(st.booleans()),
    )


@st.composite
def authority_ladders(draw: st.DrawFn) -> dict[Role, AuthorityLimit]:
    """Valid authority tables: each rung of the ladder allows at least what the one below does."""
    currencies = draw(st.lists(st.sampled_from(_CURRENCIES), unique=True))
    share = st.integers(min_value=0, max_value=10000)
    agent = AuthorityLimit(
        max_waived_amount={c: draw(st.integers(min_value=0, max_value=10**8)) for c in currencies},
        max_waived_share_bp=draw(share),
        max_term_months=draw(st.integers(min_value=0, max_value=120)),
        max_settlement_discount_bp=draw(share),
    )
    more = st.integers(min_value=0, max_value=10**8)
    extra = draw(st.lists(st.sampled_from(_CURRENCIES), unique=True))
    supervisor = AuthorityLimit(
        max_waived_amount={c: agent.max_waived_amount.get(c, 0) + draw(more) for c in {*currencies, *extra}},
        max_waived_share_bp=draw(st.integers(min_value=agent.max_waived_share_bp, max_value=10000)),
        max_term_months=draw(st.integers(min_value=agent.max_term_months, max_value=120)),
        max_settlement_discount_bp=draw(
            st.integers(min_value=agent.max_settlement_discount_bp, max_value=10000)
        ),
    )
    ladder = {Role.AGENT: agent, Role.SUPERVISOR: supervisor}
    if draw(st.booleans()):
        del ladder[Role.AGENT]  # supervisors only
    if draw(st.booleans()):
        ladder[Role.ADMIN] = AuthorityLimit(max_waived_share_bp=draw(share))
    return ladder


@st.composite
def priority_weights(draw: st.DrawFn) -> PriorityWeights:
    """Valid weights: stage points never fall, bands rise, the same number in every currency."""
    points = st.integers(min_value=0, max_value=10_000)
    steps = draw(st.lists(st.integers(min_value=0, max_value=1500), min_size=6, max_size=6))
    stage_points = {stage: sum(steps[: index + 1]) for index, stage in enumerate(Stage)}
    size = draw(st.integers(min_value=1, max_value=9))
    thresholds = st.lists(
        st.integers(min_value=1, max_value=10**12), min_size=size, max_size=size, unique=True
    ).map(sorted)
    currencies = draw(st.lists(st.sampled_from(_CURRENCIES), unique=True))
    return PriorityWeights(
        stage_points=stage_points,
        points_per_day=draw(points),
        vulnerability_points=draw(points),
        balance_bands={c: draw(thresholds) for c in currencies},
        points_per_band=draw(points),
    )


@st.composite
def hardship_sections(draw: st.DrawFn) -> HardshipPolicy:
    currencies = draw(st.lists(st.sampled_from(_CURRENCIES), unique=True))
    figures = st.integers(min_value=0, max_value=10**7)
    references = st.builds(ReferenceAmount, figures, figures, figures)
    return HardshipPolicy(
        relief_limits={stage: draw(relief_limits()) for stage in Stage},
        reference_spending={
            c: draw(st.dictionaries(st.sampled_from(COST_CATEGORIES), references)) for c in currencies
        },
        offer_valid_days=draw(st.integers(min_value=1, max_value=28)),
        review_sla_days=draw(st.integers(min_value=1, max_value=60)),
        breathing_space_days=draw(st.integers(min_value=0, max_value=90)),
        breathing_space_stops_fees=draw(st.booleans()),
        breathing_space_pauses_contact=draw(st.booleans()),
        max_monthly_amount={c: draw(st.integers(min_value=1, max_value=10**12)) for c in currencies},
        authority=draw(authority_ladders()),
        priority=draw(priority_weights()),
        counter_offer_valid_days=draw(st.integers(min_value=1, max_value=28)),
    )


def test_default_hardship_limits_grow_with_the_stage() -> None:
    hardship = DEFAULT_POLICY.hardship
    assert hardship.validate() == []
    assert set(hardship.relief_limits) == set(Stage)
    current, early, mid, late = (hardship.relief_limits[s] for s in list(Stage)[:4])
    assert current.max_term_months == 0 and current.max_waived_share_bp == 0
    assert early.max_waived_share_bp < mid.max_waived_share_bp == 2000
    assert early.max_term_months < mid.max_term_months == 24
    assert mid.max_holiday_months == 3
    assert not mid.allow_settlement
    assert late.allow_settlement and late.settlement_min_share_bp == 6000
    for stage in (Stage.LEGAL, Stage.CHARGED_OFF):
        limits = hardship.relief_limits[stage]
        assert limits.allow_settlement
        assert limits.max_term_months == limits.max_waived_share_bp == limits.max_holiday_months == 0
    assert (hardship.offer_valid_days, hardship.review_sla_days, hardship.breathing_space_days) == (14, 5, 30)


def test_default_reference_spending_covers_every_living_cost_in_three_currencies() -> None:
    spending = DEFAULT_POLICY.hardship.reference_spending
    for currency in ("CNY", "USD", "EUR"):
        assert set(spending[currency]) == set(COST_CATEGORIES)
        assert currency in DEFAULT_POLICY.hardship.max_monthly_amount
    assert DEFAULT_POLICY.hardship.max_monthly_amount["CNY"] == 1_000_000_000


@given(hardship_sections())
def test_hardship_section_round_trips_through_json(hardship: HardshipPolicy) -> None:
    policy = Policy(hardship=hardship)
    assert policy.validate() == []
    data = json.loads(json.dumps(policy.to_dict()))
    assert data == policy.to_dict()
    restored = Policy.from_dict(data)
    assert restored == policy
    assert hash(restored) == hash(policy)
    assert all(isinstance(stage, Stage) for stage in restored.hardship.relief_limits)
    assert all(isinstance(role, Role) for role in restored.hardship.authority)
    assert all(isinstance(stage, Stage) for stage in restored.hardship.priority.stage_points)


def test_hardship_to_dict_uses_plain_string_keys() -> None:
    data = DEFAULT_POLICY.hardship.to_dict()
    limits = data["relief_limits"]
    spending = data["reference_spending"]
    assert isinstance(limits, dict) and isinstance(spending, dict)
    assert all(type(key) is str for key in limits)
    assert all(type(key) is str for table in spending.values() for key in table)
    assert limits["mid"]["max_waived_share_bp"] == 2000


def test_stored_policy_without_a_hardship_section_takes_the_defaults() -> None:
    data = DEFAULT_POLICY.to_dict()
    del data["hardship"]
    assert Policy.from_dict(data).hardship == DEFAULT_POLICY.hardship
    partial = Policy.from_dict({"hardship": {"offer_valid_days": 7}})
    assert partial.hardship.offer_valid_days == 7
    assert partial.hardship.relief_limits == DEFAULT_POLICY.hardship.relief_limits
    assert partial.hardship.authority == DEFAULT_POLICY.hardship.authority
    assert partial.hardship.priority == DEFAULT_POLICY.hardship.priority
    assert partial.hardship.counter_offer_valid_days == 14
    weights = Policy.from_dict({"hardship": {"priority": {"points_per_day": 9}}}).hardship.priority
    assert weights == replace(DEFAULT_POLICY.hardship.priority, points_per_day=9)


def test_hardship_section_cannot_be_changed_after_the_fact() -> None:
    limits = {stage: ReliefLimits() for stage in Stage}
    amounts = {"CNY": 100}
    limits[Stage.MID] = ReliefLimits(max_waived_amount=amounts)
    policy = Policy(hardship=HardshipPolicy(relief_limits=limits))
    limits[Stage.MID] = ReliefLimits(max_waived_share_bp=9000)
    amounts["CNY"] = 10**9
    assert policy.hardship.relief_limits[Stage.MID].max_waived_amount["CNY"] == 100
    with pytest.raises(TypeError):
        policy.hardship.relief_limits[Stage.MID] = ReliefLimits()  # type: ignore[index]
    with pytest.raises(TypeError):
        policy.hardship.reference_spending["CNY"][COST_CATEGORIES[0]] = ReferenceAmount(0, 0, 0)  # type: ignore[index]
    assert hash(policy) != hash(DEFAULT_POLICY)
    assert policy != DEFAULT_POLICY


def _with_limits(stage: Stage, **changes: object) -> dict[str, object]:
    data = DEFAULT_POLICY.to_dict()
    hardship = data["hardship"]
    assert isinstance(hardship, dict)
    hardship["relief_limits"][stage.value].update(changes)
    return data


@pytest.mark.parametrize(
    "data",
    [
        _with_limits(Stage.MID, max_waived_share_bp=10001),
        _with_limits(Stage.MID, max_waived_share_bp=-1),
        _with_limits(Stage.MID, max_holiday_months=4),
        _with_limits(Stage.EARLY, max_holiday_months=3, max_term_months=2),
        _with_limits(Stage.MID, max_term_months=1.5),
        _with_limits(Stage.MID, max_waived_amount={"XYZ": 100}),
        _with_limits(Stage.MID, min_instalment={"CNY": -1}),
        _with_limits(Stage.LATE, settlement_min_share_bp=12000),
        _with_limits(Stage.LATE, allow_settlement="yes"),
        {"hardship": {"offer_valid_days": 0}},
        {"hardship": {"offer_valid_days": 60}},
        {"hardship": {"review_sla_days": True}},
        {"hardship": {"breathing_space_stops_fees": 1}},
        {"hardship": {"max_monthly_amount": {"CNY": 0}}},
        {"hardship": {"max_monthly_amount": {"CNY": 1000}}},  # USD and EUR references lose their guard
        {"hardship": {"relief_limits": {"mid": {}}}},  # every other stage has no limits
        {"hardship": {"reference_spending": {"XYZ": {}}}},
        {
            "hardship": {
                "reference_spending": {
                    "CNY": {"housing": {"first_adult": -1, "each_other_adult": 0, "each_child": 0}}
                }
            }
        },
    ],
)
def test_validate_catches_bad_hardship_settings(data: dict[str, object]) -> None:
    with pytest.raises(DomainError) as raised:
        Policy.from_dict(data)
    assert raised.value.code == "policy_invalid"
    assert "hardship" in str(raised.value)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"hardship": {"offer_days": 7}}, "hardship.offer_days"),
        ({"hardship": {"relief_limits": {"overdue": {}}}}, "hardship.relief_limits.overdue"),
        (_with_limits(Stage.MID, max_waiver=5), "hardship.relief_limits.mid.max_waiver"),
        (
            {"hardship": {"reference_spending": {"CNY": {"earnings": {}}}}},
            "hardship.reference_spending.CNY.earnings",
        ),
        (
            {"hardship": {"reference_spending": {"CNY": {"housing": {"first_adult": 1}}}}},
            "hardship.reference_spending.CNY.housing.each_child",
        ),
        ({"hardship": {"relief_limits": []}}, "hardship.relief_limits"),
        ({"hardship": "generous"}, "hardship"),
    ],
)
def test_unknown_or_misshapen_hardship_settings_refuse_the_policy(
    data: dict[str, object], named: str
) -> None:
    with pytest.raises(DomainError) as raised:
        Policy.from_dict(data)
    assert raised.value.code == "policy_invalid"
    assert named in str(raised.value)


# --- Authority, queue priority and counter-offers --------------------------------------------


def test_default_authority_gives_an_agent_the_everyday_case_and_a_supervisor_the_large_one() -> None:
    authority = DEFAULT_POLICY.hardship.authority
    assert set(authority) == {Role.AGENT, Role.SUPERVISOR}
    agent, supervisor = authority[Role.AGENT], authority[Role.SUPERVISOR]
    assert agent.max_waived_amount == {"CNY": 2_000_000, "USD": 300_000, "EUR": 300_000}
    assert (agent.max_waived_share_bp, agent.max_term_months, agent.max_settlement_discount_bp) == (
        2500,
        36,
        3000,
    )
    assert supervisor.max_waived_amount == {"CNY": 20_000_000, "USD": 3_000_000, "EUR": 3_000_000}
    assert (
        supervisor.max_waived_share_bp,
        supervisor.max_term_months,
        supervisor.max_settlement_discount_bp,
    ) == (6000, 84, 6000)
    assert supervisor.covers(agent) and not agent.covers(supervisor)
    assert AUTHORITY_LADDER == (Role.AGENT, Role.SUPERVISOR)
    assert DEFAULT_POLICY.hardship.counter_offer_valid_days == 14


def test_default_priority_rises_with_the_stage_and_bands_the_balance_alike_in_each_currency() -> None:
    weights = DEFAULT_POLICY.hardship.priority
    assert [weights.stage_points[stage] for stage in Stage] == [0, 10, 20, 30, 40, 40]
    assert (weights.points_per_day, weights.vulnerability_points, weights.points_per_band) == (2, 30, 5)
    assert weights.balance_bands["CNY"] == (1_000_000, 5_000_000, 20_000_000)
    assert {len(bands) for bands in weights.balance_bands.values()} == {3}


def test_authority_and_priority_to_dict_use_plain_json_values() -> None:
    data = DEFAULT_POLICY.hardship.to_dict()
    authority, weights = data["authority"], data["priority"]
    assert isinstance(authority, dict) and isinstance(weights, dict)
    assert all(type(key) is str for key in authority)
    assert authority["agent"]["max_waived_amount"]["CNY"] == 2_000_000
    assert all(type(key) is str for key in weights["stage_points"])
    assert weights["balance_bands"]["USD"] == [150_000, 750_000, 3_000_000]
    assert json.loads(json.dumps(data)) == data


def test_authority_and_priority_cannot_be_changed_after_the_fact() -> None:
    amounts = {"CNY": 100}
    bands = {"CNY": [10, 20]}
    authority = {Role.SUPERVISOR: AuthorityLimit(max_waived_amount=amounts)}
    policy = Policy(
        hardship=HardshipPolicy(authority=authority, priority=PriorityWeights(balance_bands=bands))
    )
    amounts["CNY"] = 10**9
    bands["CNY"].append(30)
    authority[Role.AGENT] = AuthorityLimit(max_waived_share_bp=10000)
    assert policy.validate() == []
    assert set(policy.hardship.authority) == {Role.SUPERVISOR}
    assert policy.hardship.authority[Role.SUPERVISOR].max_waived_amount["CNY"] == 100
    assert policy.hardship.priority.balance_bands["CNY"] == (10, 20)
    with pytest.raises(TypeError):
        policy.hardship.authority[Role.AGENT] = AuthorityLimit()  # type: ignore[index]
    with pytest.raises(TypeError):
        policy.hardship.priority.stage_points[Stage.MID] = 0  # type: ignore[index]
    assert hash(policy) != hash(DEFAULT_POLICY)


def _with_hardship(name: str, **changes: object) -> dict[str, object]:
    """The default policy as stored, with settings of one hardship table changed."""
    data = DEFAULT_POLICY.to_dict()
    hardship = data["hardship"]
    assert isinstance(hardship, dict)
    table = hardship
    for part in name.split("."):
        table = table[part]
    table.update(changes)
    return data


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (_with_hardship("authority.agent", max_waived_share_bp=10001), "authority.agent.max_waived_share_bp"),
        (_with_hardship("authority.agent", max_term_months=121), "authority.agent.max_term_months"),
        (_with_hardship("authority.agent", max_term_months=12.0), "authority.agent.max_term_months"),
        (
            _with_hardship("authority.supervisor", max_settlement_discount_bp=-1),
            "authority.supervisor.max_settlement_discount_bp",
        ),
        (
            _with_hardship("authority.agent", max_waived_amount={"XYZ": 1}),
            "authority.agent.max_waived_amount",
        ),
        (
            _with_hardship("authority.agent", max_waived_amount={"CNY": -1}),
            "authority.agent.max_waived_amount",
        ),
        # A supervisor allowed less than an agent in any figure, or in fewer currencies.
        (_with_hardship("authority.agent", max_term_months=90), "authority.supervisor must allow"),
        (_with_hardship("authority.agent", max_waived_share_bp=7000), "authority.supervisor must allow"),
        (
            _with_hardship("authority.agent", max_waived_amount={"JPY": 100}),
            "authority.supervisor must allow",
        ),
        # An agent with authority and no supervisor to go to above it.
        ({"hardship": {"authority": {"agent": {"max_term_months": 6}}}}, "authority.supervisor must allow"),
        ({"hardship": {"authority": {"clerk": {}}}}, "hardship.authority.clerk"),
        ({"hardship": {"authority": []}}, "hardship.authority"),
        (_with_hardship("authority.agent", max_waiver=1), "hardship.authority.agent.max_waiver"),
        (_with_hardship("priority", points_per_day=-1), "priority.points_per_day"),
        (_with_hardship("priority", vulnerability_points=True), "priority.vulnerability_points"),
        (_with_hardship("priority", points_per_band=10_001), "priority.points_per_band"),
        (_with_hardship("priority.stage_points", late=5), "stage_points must not fall"),
        (_with_hardship("priority.stage_points", mid=-1), "priority.stage_points.mid"),
        ({"hardship": {"priority": {"stage_points": {"mid": 5}}}}, "no points for the current stage"),
        ({"hardship": {"priority": {"stage_points": {"overdue": 5}}}}, "priority.stage_points.overdue"),
        (_with_hardship("priority.balance_bands", CNY=[100, 100, 300]), "balance_bands.CNY must rise"),
        (_with_hardship("priority.balance_bands", CNY=[0, 100, 300]), "balance_bands.CNY must start"),
        (_with_hardship("priority.balance_bands", CNY=[100, 200]), "as many thresholds in every currency"),
        (_with_hardship("priority.balance_bands", CNY=[]), "balance_bands.CNY must have from 1"),
        (_with_hardship("priority.balance_bands", CNY=[1.5, 2, 3]), "balance_bands.CNY must be a list"),
        (_with_hardship("priority.balance_bands", CNY="100"), "balance_bands.CNY must be a list"),
        (_with_hardship("priority.balance_bands", XYZ=[1, 2, 3]), "unknown currency 'XYZ'"),
        (
            {"hardship": {"priority": {"balance_bands": {"CNY": list(range(1, 11))}}}},
            "balance_bands.CNY must have from 1 to 9",
        ),
        ({"hardship": {"priority": {"weights": 1}}}, "hardship.priority.weights"),
        ({"hardship": {"priority": 5}}, "hardship.priority"),
        ({"hardship": {"counter_offer_valid_days": 0}}, "hardship.counter_offer_valid_days"),
        ({"hardship": {"counter_offer_valid_days": 29}}, "hardship.counter_offer_valid_days"),
    ],
)
def test_bad_authority_priority_or_counter_settings_refuse_the_policy(
    data: dict[str, object], named: str
) -> None:
    with pytest.raises(DomainError) as raised:
        Policy.from_dict(data)
    assert raised.value.code == "policy_invalid"
    assert named in str(raised.value)


def test_roles_off_the_ladder_may_be_given_authority_and_roles_left_out_have_none() -> None:
    data = _with_hardship("authority", admin={"max_waived_share_bp": 100})
    policy = Policy.from_dict(data)
    assert policy.hardship.authority[Role.ADMIN] == AuthorityLimit(max_waived_share_bp=100)
    nobody = Policy.from_dict({"hardship": {"authority": {}}})
    assert nobody.hardship.authority == {}


def test_access_does_not_import_the_policy_so_the_policy_may_import_roles() -> None:
    source = Path(__file__).resolve().parents[2] / "workflows" / "access.py"
    imported = {
        node.module
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module
    } | {
        alias.name
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not {name for name in imported if name.startswith("workflows")}


# --- The payments section ---------------------------------------------------------------------


@st.composite
def payments_sections(draw: st.DrawFn) -> PaymentsPolicy:
    currencies = draw(st.lists(st.sampled_from(_CURRENCIES), unique=True))
    money = st.integers(min_value=0, max_value=10**9)
    retry_days = st.lists(st.integers(min_value=1, max_value=60), unique=True, max_size=10).map(sorted)
    return PaymentsPolicy(
        waterfall=tuple(draw(st.permutations([str(c) for c in Component]))),
        minimum_payment={c: draw(money) for c in currencies},
        autopay_retry_days=tuple(draw(retry_days)),
        plan_break_consecutive_misses=draw(st.integers(min_value=1, max_value=12)),
        plan_break_overdue_days=draw(st.integers(min_value=1, max_value=365)),
        refund_second_approval_above={c: draw(money) for c in currencies},
    )


def test_default_payments_follow_the_design() -> None:
    payments = DEFAULT_POLICY.payments
    assert payments.validate() == []
    assert payments.waterfall_components == DEFAULT_WATERFALL
    assert payments.minimum_payment == {"CNY": 10000, "USD": 2000, "EUR": 2000}
    assert payments.autopay_retry_days == (1, 3, 7)
    assert (payments.plan_break_consecutive_misses, payments.plan_break_overdue_days) == (2, 30)
    assert payments.refund_second_approval_above == {"CNY": 100000, "USD": 20000, "EUR": 20000}


@given(payments_sections())
def test_payments_section_round_trips_through_json(payments: PaymentsPolicy) -> None:
    policy = Policy(payments=payments)
    assert policy.validate() == []
    data = json.loads(json.dumps(policy.to_dict()))
    assert data == policy.to_dict()
    restored = Policy.from_dict(data)
    assert restored == policy
    assert hash(restored) == hash(policy)
    assert isinstance(restored.payments.waterfall, tuple)
    assert isinstance(restored.payments.autopay_retry_days, tuple)
    assert [str(c) for c in restored.payments.waterfall_components] == list(payments.waterfall)


def test_payments_to_dict_uses_plain_json_values() -> None:
    data = DEFAULT_POLICY.payments.to_dict()
    assert data["waterfall"] == ["fees", "interest", "principal"]
    assert all(type(name) is str for name in data["waterfall"])  # type: ignore[attr-defined]
    assert data["autopay_retry_days"] == [1, 3, 7]
    assert data["minimum_payment"] == {"CNY": 10000, "USD": 2000, "EUR": 2000}
    components = PaymentsPolicy(waterfall=(Component.PRINCIPAL, Component.INTEREST, Component.FEES))  # type: ignore[arg-type]
    assert components.to_dict()["waterfall"] == ["principal", "interest", "fees"]


def test_stored_policy_without_a_payments_section_takes_the_defaults() -> None:
    data = DEFAULT_POLICY.to_dict()
    del data["payments"]
    assert Policy.from_dict(data) == DEFAULT_POLICY
    partial = Policy.from_dict({"payments": {"autopay_retry_days": [2, 5]}})
    assert partial.payments == PaymentsPolicy(autopay_retry_days=(2, 5))
    assert partial.payments.waterfall_components == DEFAULT_WATERFALL


def test_payments_section_cannot_be_changed_after_the_fact() -> None:
    minimum = {"CNY": 100}
    policy = Policy(payments=PaymentsPolicy(minimum_payment=minimum))
    minimum["CNY"] = 10**9
    assert policy.payments.minimum_payment["CNY"] == 100
    with pytest.raises(TypeError):
        policy.payments.refund_second_approval_above["CNY"] = 0  # type: ignore[index]
    assert hash(policy) != hash(DEFAULT_POLICY)
    assert policy != DEFAULT_POLICY


@pytest.mark.parametrize(
    ("payments", "named"),
    [
        ({"waterfall": ["fees", "interest"]}, "payments.waterfall must list each of"),
        ({"waterfall": ["fees", "fees", "principal"]}, "payments.waterfall must list each of"),
        ({"waterfall": ["fees", "interest", "principal", "costs"]}, "payments.waterfall must list each of"),
        ({"waterfall": "fees,interest,principal"}, "payments.waterfall must list each of"),
        ({"waterfall": [1, 2, 3]}, "payments.waterfall must list each of"),
        ({"autopay_retry_days": [3, 1]}, "payments.autopay_retry_days must rise"),
        ({"autopay_retry_days": [1, 1]}, "payments.autopay_retry_days must rise"),
        ({"autopay_retry_days": [0, 3]}, "payments.autopay_retry_days must each be from 1 to 60"),
        ({"autopay_retry_days": [1, 61]}, "payments.autopay_retry_days must each be from 1 to 60"),
        ({"autopay_retry_days": [1.5]}, "payments.autopay_retry_days must be a list of whole days"),
        ({"autopay_retry_days": 3}, "payments.autopay_retry_days must be a list of whole days"),
        ({"autopay_retry_days": list(range(1, 12))}, "at most 10 retries"),
        ({"plan_break_consecutive_misses": 0}, "payments.plan_break_consecutive_misses"),
        ({"plan_break_consecutive_misses": 13}, "payments.plan_break_consecutive_misses"),
        ({"plan_break_overdue_days": 0}, "payments.plan_break_overdue_days"),
        ({"plan_break_overdue_days": 366}, "payments.plan_break_overdue_days"),
        ({"minimum_payment": {"XYZ": 100}}, "payments.minimum_payment"),
        ({"minimum_payment": {"CNY": -1}}, "payments.minimum_payment"),
        ({"refund_second_approval_above": {"CNY": 1.5}}, "payments.refund_second_approval_above"),
        ({"dispute_fee": {"CNY": 1500}}, "payments.dispute_fee"),
    ],
)
def test_bad_payments_settings_refuse_the_policy_with_a_clear_problem(
    payments: dict[str, object], named: str
) -> None:
    with pytest.raises(DomainError) as raised:
        Policy.from_dict({"payments": payments})
    assert raised.value.code == "policy_invalid"
    assert named in str(raised.value)


def test_a_payments_section_of_the_wrong_shape_refuses_the_policy() -> None:
    with pytest.raises(DomainError) as raised:
        Policy.from_dict({"payments": ["fees"]})
    assert "payments must be a set of named settings" in str(raised.value)
    assert Policy(payments="none").validate() == ["payments must be a payments section."]  # type: ignore[arg-type]


def test_validation_is_worked_out_once_per_policy_and_answers_a_list_of_its_own() -> None:
    broken = replace(DEFAULT_POLICY, mid_from_dpd=DEFAULT_POLICY.late_from_dpd)
    first = broken.validate()
    assert first and broken.validate() == first
    first.clear()  # the caller's list: the policy's answer does not change with it
    assert broken.validate() != []
    assert replace(broken, mid_from_dpd=DEFAULT_POLICY.mid_from_dpd).validate() == []
    assert broken == replace(DEFAULT_POLICY, mid_from_dpd=DEFAULT_POLICY.late_from_dpd)  # eq ignores it
