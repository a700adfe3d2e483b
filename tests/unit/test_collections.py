"""Collections rules in plain Python: daily interest, late fees, stages, promises, strategies."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.collections import (
    INTEREST_DIVISOR,
    ActionFacts,
    StrategyStep,
    actions_for,
    count_actions,
    daily_interest,
    late_fee_due,
    next_stage,
    promise_status,
)
from workflows.errors import DomainError
from workflows.policy import DEFAULT_POLICY, CollectionsPolicy, Policy

TODAY = dt.date(2026, 6, 10)
STRATEGIES = DEFAULT_POLICY.collections.strategies


def _exact_half_even(numerator: int, denominator: int) -> int:
    exact = Fraction(numerator, denominator)
    return round(exact)  # Fraction.__round__ rounds halves to even


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=100_000))
def test_daily_interest_is_the_exact_day_rate_rounded_half_to_even(principal: int, rate_bp: int) -> None:
    amount = daily_interest(principal, rate_bp)
    assert amount == _exact_half_even(principal * rate_bp, INTEREST_DIVISOR)
    assert abs(Fraction(principal * rate_bp, INTEREST_DIVISOR) - amount) <= Fraction(1, 2)


def test_daily_interest_halves_go_to_the_even_unit() -> None:
    # 1,825,000 x 1 / 3,650,000 = 0.5 -> 0; 5,475,000 x 1 / 3,650,000 = 1.5 -> 2
    assert daily_interest(1_825_000, 1) == 0
    assert daily_interest(5_475_000, 1) == 2
    assert daily_interest(1_000_000, 1825) == 500


def test_daily_interest_refuses_negative_and_fractional_inputs() -> None:
    with pytest.raises(DomainError):
        daily_interest(-1, 100)
    with pytest.raises(DomainError):
        daily_interest(1.5, 100)  # type: ignore[arg-type]


def _fee(dpd: int, **kw: object) -> object:
    args: dict[str, object] = {
        "dpd": dpd,
        "grace_days": 5,
        "charge_off_dpd": 180,
        "amount": 5000,
        "cap": 50000,
        "fees_charged": 0,
        "frozen": False,
    }
    args.update(kw)
    return late_fee_due(**args)  # type: ignore[arg-type]


def test_a_late_fee_falls_due_when_the_grace_ends_and_every_30_days_after() -> None:
    due = [dpd for dpd in range(0, 200) if _fee(dpd) is not None]
    assert due == [5, 35, 65, 95, 125, 155]
    assert [_fee(d).period for d in due] == [1, 2, 3, 4, 5, 6]  # type: ignore[attr-defined]


def test_no_late_fee_when_frozen_over_the_cap_or_charged_off() -> None:
    assert _fee(5, frozen=True) is None
    assert _fee(5, fees_charged=45_001) is None
    assert _fee(5, fees_charged=45_000) is not None  # exactly up to the cap
    assert _fee(5, cap=None) is None
    assert _fee(185, charge_off_dpd=185) is None
    # A grace of 0: the first fee 30 days after the due date (day 0 is not yet past due).
    assert _fee(30, grace_days=0) is not None and _fee(0, grace_days=0) is None


@given(st.integers(min_value=0, max_value=400), st.sampled_from(["current", "early", "mid", "late", "legal"]))
def test_stage_follows_dpd_legal_is_kept_and_charge_off_is_final(dpd: int, previous: str) -> None:
    stage = next_stage(previous, dpd, DEFAULT_POLICY)
    if dpd >= 180:
        assert stage == "charged_off"
    elif previous == "legal":
        assert stage == "legal"
    else:
        assert stage == ("current" if dpd == 0 else "early" if dpd <= 30 else "mid" if dpd <= 90 else "late")
    assert next_stage("charged_off", dpd, DEFAULT_POLICY) == "charged_off"


def test_a_promise_is_decided_after_its_due_date_by_the_payments_in_its_window() -> None:
    promised, due = dt.date(2026, 6, 1), dt.date(2026, 6, 5)
    payments = [(dt.date(2026, 5, 31), 9_000), (dt.date(2026, 6, 2), 6_000), (dt.date(2026, 6, 5), 4_000)]
    kwargs = {"amount": 10_000, "promised_on": promised, "due_on": due, "payments": payments}
    assert promise_status(**kwargs, today=due) == ("open", 10_000)  # type: ignore[arg-type]
    assert promise_status(**kwargs, today=due + dt.timedelta(days=1)) == ("kept", 10_000)  # type: ignore[arg-type]
    short = {**kwargs, "payments": payments[:2]}
    assert promise_status(**short, today=dt.date(2026, 6, 6)) == ("broken", 6_000)  # type: ignore[arg-type]


def test_the_strategy_creates_the_days_actions_and_nothing_while_contact_is_stopped() -> None:
    early_day_1 = ActionFacts(dpd=1, stage="early", next_due_on=None)
    assert [a.rule_key for a in actions_for(early_day_1, STRATEGIES, TODAY)] == ["early:sms1"]
    due_in_3 = ActionFacts(dpd=0, stage="current", next_due_on=TODAY + dt.timedelta(days=3))
    (reminder,) = actions_for(due_in_3, STRATEGIES, TODAY)
    assert (reminder.kind, reminder.channel, reminder.template) == ("reminder", "app", "due_soon")
    assert actions_for(replace(early_day_1, contact_stopped=True), STRATEGIES, TODAY) == []
    assert actions_for(replace(early_day_1, plan_active=True), STRATEGIES, TODAY) == []
    late_120 = ActionFacts(dpd=120, stage="late", next_due_on=None)
    assert [(a.kind, a.channel) for a in actions_for(late_120, STRATEGIES, TODAY)] == [("legal_review", None)]
    assert actions_for(ActionFacts(dpd=120, stage="legal", next_due_on=None), STRATEGIES, TODAY) == []


@given(
    st.integers(min_value=0, max_value=200),
    st.sampled_from(["current", "early", "mid", "late", "legal", "charged_off"]),
    st.integers(min_value=-5, max_value=10),
)
def test_every_action_comes_from_a_step_of_the_accounts_stage_that_fires_today(
    dpd: int, stage: str, due_in: int
) -> None:
    facts = ActionFacts(dpd=dpd, stage=stage, next_due_on=TODAY + dt.timedelta(days=due_in))
    actions = actions_for(facts, STRATEGIES, TODAY)
    steps = {s.rule_key(stage): s for s in STRATEGIES.get(stage, ())}
    assert len({a.rule_key for a in actions}) == len(actions)
    for action in actions:
        step = steps[action.rule_key]
        assert action.stage == stage and action.kind == step.kind
        assert (step.anchor == "dpd" and step.day == dpd) or (
            step.anchor == "before_due" and step.day == due_in
        )


def test_the_default_strategies_follow_the_issue() -> None:
    kinds = {stage: {s.kind for s in steps} for stage, steps in STRATEGIES.items()}
    assert kinds["early"] == {"reminder", "sms", "email"}
    assert kinds["mid"] == {"call_task", "letter"}
    assert kinds["late"] >= {"home_visit_proposal", "legal_review"}
    assert any(s.anchor == "before_due" and s.day == 3 for s in STRATEGIES["early"])
    assert DEFAULT_POLICY.collections.contact_rule_pack == "CN"
    for texts in DEFAULT_POLICY.collections.templates.values():
        assert set(texts) == {"en", "zh_Hans_CN"}


def test_lock_screen_messages_never_show_an_amount() -> None:
    for steps in STRATEGIES.values():
        for step in steps:
            if step.channel in ("sms", "app"):
                for text in DEFAULT_POLICY.collections.templates[step.template or ""].values():
                    assert "{" not in text.replace("{creditor}", "")
                    assert "Accord" in text
    templates = dict(DEFAULT_POLICY.collections.templates)
    templates["overdue_sms"] = {"en": "You owe {overdue_amount}.", "zh_Hans_CN": "您欠款 {overdue_amount}。"}
    problems = replace(DEFAULT_POLICY.collections, templates=templates).validate()
    assert any("overdue_amount on a lock screen" in p for p in problems)


def test_the_collections_section_round_trips_through_json() -> None:
    data = json.loads(json.dumps(DEFAULT_POLICY.to_dict()))
    assert Policy.from_dict(data) == DEFAULT_POLICY
    changed = replace(
        DEFAULT_POLICY,
        collections=CollectionsPolicy(
            strategies={"early": (StrategyStep("sms2", "sms", "sms", "dpd", 2, "overdue_sms", 5),)},
            contact_rule_pack="US_REG_F",
        ),
    )
    again = Policy.from_dict(json.loads(json.dumps(changed.to_dict())))
    assert again == changed and hash(again) == hash(changed)
    assert again.collections.strategies["early"][0].day == 2


def test_a_stored_policy_without_the_section_loads_with_the_default_strategies() -> None:
    data = DEFAULT_POLICY.to_dict()
    del data["collections"]
    assert Policy.from_dict(data).collections == CollectionsPolicy()


def _with_step(step: StrategyStep, stage: str = "early") -> Policy:
    return replace(DEFAULT_POLICY, collections=CollectionsPolicy(strategies={stage: (step,)}))


@pytest.mark.parametrize(
    ("step", "stage", "problem"),
    [
        (StrategyStep("x", "fax", "fax", "dpd", 2, "overdue_sms"), "early", "kind must be one of"),
        (StrategyStep("x", "sms", "sms", "dpd", -1, "overdue_sms"), "early", "day must be a whole number"),
        (StrategyStep("x", "sms", "call", "dpd", 2, "overdue_sms"), "early", "channel must be one of sms"),
        (StrategyStep("x", "sms", "sms", "weekly", 2, "overdue_sms"), "early", "anchor must be one of"),
        (StrategyStep("x", "sms", "sms", "dpd", 2, "nope"), "early", "names no template"),
        (StrategyStep("x", "letter", "letter", "dpd", 40, None), "mid", "template is needed"),
        (StrategyStep("x y", "sms", "sms", "dpd", 2, "overdue_sms"), "early", "key may hold only"),
        (StrategyStep("x", "sms", "sms", "dpd", 2, "overdue_sms", 101), "early", "priority must be"),
    ],
)
def test_a_nonsense_strategy_is_refused(step: StrategyStep, stage: str, problem: str) -> None:
    problems = _with_step(step, stage).validate()
    assert any(problem in p for p in problems), problems


def test_a_step_outside_its_stage_is_a_warning_not_a_refusal() -> None:
    policy = _with_step(StrategyStep("x", "email", "email", "dpd", 45, "overdue_email"))
    assert policy.validate() == []
    (warning,) = policy.collections_warnings()
    assert "outside the early stage" in warning and "never fire" in warning
    assert DEFAULT_POLICY.collections_warnings() == []


def test_unknown_stages_settings_and_rule_packs_are_refused() -> None:
    data = DEFAULT_POLICY.to_dict()
    data["collections"] = {"strategies": {"sometime": []}}
    with pytest.raises(DomainError):
        Policy.from_dict(data)
    data["collections"] = {"colour": "red"}
    with pytest.raises(DomainError):
        Policy.from_dict(data)
    data["collections"] = {"contact_rule_pack": "XX"}
    with pytest.raises(DomainError, match="contact_rule_pack"):
        Policy.from_dict(data)
    twice = (StrategyStep("a", "sms", "sms", "dpd", 2, "overdue_sms"),) * 2
    problems = replace(DEFAULT_POLICY, collections=CollectionsPolicy(strategies={"early": twice})).validate()
    assert any("twice" in p for p in problems)


def test_counting_actions_from_a_days_histogram_applies_each_step_to_its_anchor() -> None:
    by_dpd = {("early", 1): 7, ("early", 2): 100, ("mid", 31): 3}
    by_due = {("current", 3): 40, ("early", 3): 2}
    counts = count_actions(by_dpd, by_due, STRATEGIES)
    assert counts == {
        ("current", "reminder"): 40,
        ("early", "reminder"): 2,
        ("early", "sms"): 7,
        ("mid", "call_task"): 3,
    }
