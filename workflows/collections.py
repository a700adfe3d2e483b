# ruff: noqa: RUF001  (the Chinese templates use full-width punctuation, as Chinese text does)
"""Collections strategies as data, and the rules of the daily run in plain Python.

A strategy says, per stage, which actions fall due on which day: a reminder three days before an
instalment is due, an SMS on the first day past due, a call task on day 31, a home-visit proposal
on day 100... Each `StrategyStep` is anchored either on a day past due (``dpd``: the step fires
on the day the account is exactly that many days past due) or on the next due date
(``before_due``: it fires that many days before it). The policy holds the strategies and the
message templates (`workflows.policy.CollectionsPolicy`).

The daily run itself (`portal.services.collections_run`) is set-based SQL. The functions here
state the same rules one account at a time — `daily_interest`, `late_fee_due`, `next_stage`,
`promise_status`, `actions_for` — and `reference_day` applies them to a whole portfolio: a slow,
obviously correct model that the tests compare the SQL with.

This module must not import `workflows.policy` at run time (the policy imports the strategy
types from here); it reads the policy's settings by name.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING

from workflows.errors import DomainError
from workflows.money import require_int, round_half_even

if TYPE_CHECKING:
    from workflows.policy import Policy

DAYS_IN_YEAR = 365
BASIS_POINTS = 10_000
INTEREST_DIVISOR = BASIS_POINTS * DAYS_IN_YEAR
"""Daily interest is principal x rate_bp / (10,000 x 365), banker's rounding."""

LATE_FEE_PERIOD_DAYS = 30
"""As `workflows.delinquency.LATE_FEE_PERIOD_DAYS`: a further fee every 30 days after the first."""

MAX_STEP_DAY = 720
MAX_PRIORITY = 100
LANGUAGES = ("en", "zh_Hans_CN")
"""Every template has a text in each of these languages."""


class ActionKind(StrEnum):
    REMINDER = "reminder"
    SMS = "sms"
    EMAIL = "email"
    LETTER = "letter"
    CALL_TASK = "call_task"
    HOME_VISIT_PROPOSAL = "home_visit_proposal"
    LEGAL_REVIEW = "legal_review"


class Anchor(StrEnum):
    DPD = "dpd"
    """On the day the account is exactly `day` days past due."""
    BEFORE_DUE = "before_due"
    """`day` days before the next due date (0: on it)."""


KIND_CHANNELS: Mapping[ActionKind, frozenset[str | None]] = {
    ActionKind.REMINDER: frozenset({"app", "sms", "email"}),
    ActionKind.SMS: frozenset({"sms"}),
    ActionKind.EMAIL: frozenset({"email"}),
    ActionKind.LETTER: frozenset({"letter"}),
    ActionKind.CALL_TASK: frozenset({"call"}),
    ActionKind.HOME_VISIT_PROPOSAL: frozenset({"home_visit"}),
    ActionKind.LEGAL_REVIEW: frozenset({None}),
}
"""The channels an action of each kind may use (a legal review contacts nobody)."""

LOCK_SCREEN_CHANNELS = frozenset({"sms", "app"})
"""Shown on a lock screen, where anyone may read them: never an amount, only "please sign in"."""

LOCK_SCREEN_PLACEHOLDERS = frozenset({"creditor"})
"""The only placeholder a lock-screen message may use."""

STAGE_NAMES = ("current", "early", "mid", "late", "legal", "charged_off")
"""The values of `workflows.policy.Stage`, in order."""


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class StrategyStep:
    """One action of a stage's strategy. Its rule key (``<stage>:<key>``) makes the action it
    creates unique per account and day."""

    key: str
    kind: str
    channel: str | None
    anchor: str
    day: int
    template: str | None
    priority: int = 0

    def rule_key(self, stage: str) -> str:
        return f"{stage}:{self.key}"

    def fires(self, dpd: int, next_due_on: date | None, today: date) -> bool:
        """Whether the step falls due today for an account this many days past due."""
        if self.anchor == Anchor.DPD:
            return dpd == self.day
        return next_due_on is not None and (next_due_on - today).days == self.day

    def problems(self, path: str) -> list[str]:
        problems: list[str] = []
        if not isinstance(self.key, str) or not self.key or len(self.key) > 40:
            problems.append(f"{path}.key must be a name of 1 to 40 characters.")
        elif not all(c.isalnum() or c in "_-" for c in self.key):
            problems.append(f"{path}.key may hold only letters, digits, '_' and '-'.")
        if self.kind not in set(ActionKind):
            problems.append(f"{path}.kind must be one of {', '.join(ActionKind)}.")
        elif self.channel not in KIND_CHANNELS[ActionKind(self.kind)]:
            allowed = sorted(str(c) for c in KIND_CHANNELS[ActionKind(self.kind)])
            problems.append(f"{path}.channel must be one of {', '.join(allowed)} for a {self.kind}.")
        if self.anchor not in set(Anchor):
            problems.append(f"{path}.anchor must be one of {', '.join(Anchor)}.")
        if not _is_whole(self.day) or not 0 <= self.day <= MAX_STEP_DAY:
            problems.append(f"{path}.day must be a whole number of days from 0 to {MAX_STEP_DAY}.")
        if self.template is not None and (not isinstance(self.template, str) or not self.template):
            problems.append(f"{path}.template must name a template.")
        if self.kind != ActionKind.LEGAL_REVIEW and self.template is None:
            problems.append(f"{path}.template is needed for a {self.kind}.")
        if not _is_whole(self.priority) or not 0 <= self.priority <= MAX_PRIORITY:
            problems.append(f"{path}.priority must be a whole number from 0 to {MAX_PRIORITY}.")
        return problems

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: object, path: str) -> StrategyStep:
        names = [f.name for f in fields(cls)]
        if not isinstance(data, Mapping):
            raise _invalid(f"{path} must be a set of named settings.")
        unknown = sorted(set(map(str, data)) - set(names))
        if unknown:
            raise _invalid(f"unknown settings {', '.join(f'{path}.{n}' for n in unknown)}.")
        missing = sorted(set(names) - {"priority"} - set(data))
        if missing:
            raise _invalid(f"missing settings {', '.join(f'{path}.{n}' for n in missing)}.")
        return cls(**{str(k): v for k, v in data.items()})


Strategy = Mapping[str, tuple[StrategyStep, ...]]
"""Stage (its value) -> the steps of that stage's strategy."""


def _invalid(problems: str) -> DomainError:
    return DomainError("policy_invalid", "The policy is invalid: {problems}", problems=problems)


def placeholders(text: str) -> set[str]:
    """The ``{name}`` placeholders of a template text (refuses a malformed one)."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def template_problems(templates: object, path: str) -> list[str]:
    """Every template has a text in each language, with well-formed placeholders."""
    if not isinstance(templates, Mapping):
        return [f"{path} must map template names to texts per language."]
    problems: list[str] = []
    for key, texts in templates.items():
        where = f"{path}.{key}"
        if not isinstance(texts, Mapping):
            problems.append(f"{where} must map languages to texts.")
            continue
        for language in LANGUAGES:
            if language not in texts:
                problems.append(f"{where} has no {language} text.")
        for language, text in texts.items():
            if language not in LANGUAGES:
                problems.append(f"{where} has an unknown language {language!r}.")
            elif not isinstance(text, str) or not text.strip():
                problems.append(f"{where}.{language} must be a text.")
            else:
                try:
                    names = placeholders(text)
                except ValueError:
                    problems.append(f"{where}.{language} has a malformed placeholder.")
                    continue
                if any(not name.isidentifier() for name in names):
                    problems.append(f"{where}.{language} has a placeholder that is not a plain name.")
    return problems


def strategy_problems(strategies: object, templates: object, path: str) -> list[str]:
    """Known stages, sound steps, unique keys per stage, every template named exists, and a
    message shown on a lock screen never carries an amount or any personal detail."""
    if not isinstance(strategies, Mapping):
        return [f"{path} must map stages to steps."]
    problems: list[str] = []
    known_templates = templates if isinstance(templates, Mapping) else {}
    for stage, steps in strategies.items():
        where = f"{path}.{stage}"
        if stage not in STAGE_NAMES:
            problems.append(f"{path} has an unknown stage {stage!r}.")
            continue
        if not isinstance(steps, tuple) or not all(isinstance(s, StrategyStep) for s in steps):
            problems.append(f"{where} must be a list of steps.")
            continue
        seen: set[str] = set()
        for step in steps:
            step_path = f"{where}.{step.key}"
            problems += step.problems(step_path)
            if step.key in seen:
                problems.append(f"{where} has the step {step.key!r} twice.")
            seen.add(step.key)
            if isinstance(step.template, str) and step.template:
                texts = known_templates.get(step.template)
                if texts is None:
                    problems.append(f"{step_path}.template names no template ({step.template!r}).")
                elif step.channel in LOCK_SCREEN_CHANNELS and isinstance(texts, Mapping):
                    for language, text in texts.items():
                        try:
                            extra = (
                                placeholders(text) - LOCK_SCREEN_PLACEHOLDERS
                                if isinstance(text, str)
                                else set()
                            )
                        except ValueError:
                            continue
                        if extra:
                            problems.append(
                                f"{step_path}: the {step.channel} template {step.template!r} ({language})"
                                f" may not show {', '.join(sorted(extra))} on a lock screen."
                            )
    return problems


# --- The default strategies and templates -------------------------------------------------------


def _step(*args: object) -> StrategyStep:
    return StrategyStep(*args)  # type: ignore[arg-type]


def default_strategies() -> Mapping[str, tuple[StrategyStep, ...]]:
    # Early (1-30): gentle reminders by SMS, e-mail and app, and one three days before an
    # instalment falls due. Mid (31-90): calls and letters that explain the consequences. Late
    # (91+): calls, a home-visit proposal and a legal review (on the policy's legal-review day).
    # A referred (legal) or charged-off debt is worked by people, not by the calendar.
    return MappingProxyType(
        {
            "current": (_step("due_soon", "reminder", "app", "before_due", 3, "due_soon", 10),),
            "early": (
                _step("due_soon", "reminder", "app", "before_due", 3, "due_soon", 10),
                _step("sms1", "sms", "sms", "dpd", 1, "overdue_sms", 20),
                _step("email3", "email", "email", "dpd", 3, "overdue_email", 20),
                _step("app7", "reminder", "app", "dpd", 7, "overdue_app", 20),
                _step("sms15", "sms", "sms", "dpd", 15, "overdue_sms", 25),
                _step("email21", "email", "email", "dpd", 21, "overdue_email", 25),
            ),
            "mid": (
                _step("call31", "call_task", "call", "dpd", 31, "call_script_mid", 40),
                _step("letter35", "letter", "letter", "dpd", 35, "consequences_letter", 40),
                _step("call45", "call_task", "call", "dpd", 45, "call_script_mid", 45),
                _step("call60", "call_task", "call", "dpd", 60, "call_script_mid", 50),
                _step("letter75", "letter", "letter", "dpd", 75, "consequences_letter", 50),
                _step("call85", "call_task", "call", "dpd", 85, "call_script_mid", 55),
            ),
            "late": (
                _step("call91", "call_task", "call", "dpd", 91, "call_script_late", 60),
                _step("visit100", "home_visit_proposal", "home_visit", "dpd", 100, "home_visit_notice", 70),
                _step("letter110", "letter", "letter", "dpd", 110, "final_notice_letter", 70),
                _step("legal120", "legal_review", None, "dpd", 120, None, 80),
            ),
            "legal": (),
            "charged_off": (),
        }
    )


_SIGN_IN_EN = "please sign in to Accord"
_SIGN_IN_ZH = "请登录 Accord 查看"

DEFAULT_TEMPLATES: dict[str, dict[str, str]] = {
    # SMS and app texts show on a lock screen: no amount, no detail, only "please sign in".
    "due_soon": {
        "en": f"{{creditor}}: a payment falls due soon - {_SIGN_IN_EN}.",
        "zh_Hans_CN": f"{{creditor}}：您有一笔款项即将到期，{_SIGN_IN_ZH}。",
    },
    "overdue_sms": {
        "en": f"{{creditor}}: there is news about your account - {_SIGN_IN_EN}.",
        "zh_Hans_CN": f"{{creditor}}：您的账户有新的消息，{_SIGN_IN_ZH}。",
    },
    "overdue_app": {
        "en": f"There is news about your account - {_SIGN_IN_EN}.",
        "zh_Hans_CN": f"您的账户有新的消息，{_SIGN_IN_ZH}。",
    },
    "overdue_email": {
        "en": (
            "Dear {name},\n\nA payment of {overdue_amount} on your account {reference} with {creditor} was"
            " due on {oldest_unpaid_due_on}. If you can pay now, sign in to Accord. If you cannot, tell us:"
            " a repayment plan or other help may be possible, and free debt advice is available.\n"
        ),
        "zh_Hans_CN": (
            "{name}，您好：\n\n您在{creditor}的账户 {reference} 有一笔 {overdue_amount} 的款项已于"
            " {oldest_unpaid_due_on} 到期。如能还款，请登录 Accord；如有困难，请告诉我们，"
            "我们可以商量还款计划或其他帮助，您也可以获得免费的债务咨询。\n"
        ),
    },
    "call_script_mid": {
        "en": (
            "Introduce yourself and {creditor}. Confirm you speak to {name}. The account {reference} is"
            " {dpd} days past due ({overdue_amount}). Explain the consequences timeline; offer a plan."
        ),
        "zh_Hans_CN": (
            "介绍您自己和{creditor}。确认对方是{name}本人。"
            "账户 {reference} 已逾期 {dpd} 天（{overdue_amount}）。"
            "说明后续后果时间表，并提供还款计划。"
        ),
    },
    "call_script_late": {
        "en": (
            "Introduce yourself and {creditor}. Confirm you speak to {name}. The account {reference} is"
            " {dpd} days past due. Explain credit-bureau reporting and legal review; offer a plan or a"
            " settlement."
        ),
        "zh_Hans_CN": (
            "介绍您自己和{creditor}。确认对方是{name}本人。账户 {reference} 已逾期 {dpd} 天。"
            "说明征信报送和法律审查，并提供还款计划或和解方案。"
        ),
    },
    "consequences_letter": {
        "en": (
            "Dear {name},\n\nYour account {reference} with {creditor} is {dpd} days past due;"
            " {overdue_amount} is overdue. What happens next, and when, is shown when you sign in to"
            " Accord. Please contact"
            " us: a repayment plan may be possible.\n"
        ),
        "zh_Hans_CN": (
            "{name}，您好：\n\n您在{creditor}的账户 {reference} 已逾期 {dpd} 天，逾期金额 {overdue_amount}。"
            "登录 Accord 可查看后续安排及时间。请与我们联系，我们可以商量还款计划。\n"
        ),
    },
    "home_visit_notice": {
        "en": (
            "Dear {name},\n\nAs we could not agree a way forward on your account {reference} with"
            " {creditor}, two of our colleagues propose to visit you. They will show their identification."
            " Please contact us to arrange a time, or sign in to Accord to make a plan.\n"
        ),
        "zh_Hans_CN": (
            "{name}，您好：\n\n由于您在{creditor}的账户 {reference} 尚未商定还款方案，"
            "我们拟安排两名同事上门拜访，"
            "他们会出示工作证件。请与我们联系约定时间，或登录 Accord 制定还款计划。\n"
        ),
    },
    "final_notice_letter": {
        "en": (
            "Dear {name},\n\nYour account {reference} with {creditor} is {dpd} days past due;"
            " {overdue_amount} is overdue. If we cannot agree a plan, the account may be reviewed for"
            " legal action. Sign in"
            " to Accord or contact us; free debt advice is available.\n"
        ),
        "zh_Hans_CN": (
            "{name}，您好：\n\n您在{creditor}的账户 {reference} 已逾期 {dpd} 天，逾期金额 {overdue_amount}。"
            "如无法商定还款计划，该账户可能进入法律审查。"
            "请登录 Accord 或与我们联系；您也可以获得免费的债务咨询。\n"
        ),
    },
}


def default_templates() -> Mapping[str, Mapping[str, str]]:
    return MappingProxyType({key: MappingProxyType(dict(texts)) for key, texts in DEFAULT_TEMPLATES.items()})


# --- The rules, one account at a time ---------------------------------------------------------


def daily_interest(principal: int, rate_bp: int) -> int:
    """One day's simple interest on the principal at an annual rate in basis points:
    principal x rate_bp / (10,000 x 365), banker's rounding."""
    require_int(principal, "principal")
    require_int(rate_bp, "rate_bp")
    if principal < 0 or rate_bp < 0:
        raise DomainError("interest_negative", "Principal and rate cannot be negative.")
    return round_half_even(principal * rate_bp, INTEREST_DIVISOR)


def days_past_due(oldest_unpaid_due_on: date | None, today: date) -> int:
    if oldest_unpaid_due_on is None or oldest_unpaid_due_on >= today:
        return 0
    return (today - oldest_unpaid_due_on).days


def next_stage(previous: str, dpd: int, policy: Policy) -> str:
    """The stage by days past due under the policy. Legal is reached only by a referral and kept
    unless the debt is charged off; a charged-off debt stays charged off (charge-off is an
    accounting event a later payment does not undo)."""
    if previous == "charged_off" or dpd >= policy.charge_off_dpd:
        return "charged_off"
    if previous == "legal":
        return "legal"
    if dpd >= policy.late_from_dpd:
        return "late"
    if dpd >= policy.mid_from_dpd:
        return "mid"
    if dpd >= policy.early_from_dpd:
        return "early"
    return "current"


@dataclass(frozen=True)
class LateFee:
    amount: int
    period: int
    """1 for the first fee after the grace days, 2 for the one 30 days later, ..."""


def late_fee_due(
    *,
    dpd: int,
    grace_days: int,
    charge_off_dpd: int,
    amount: int,
    cap: int | None,
    fees_charged: int,
    frozen: bool,
) -> LateFee | None:
    """The late fee that falls due today, if any: on the day the grace days end and every 30
    days after (as the borrower's consequences timeline shows), while the debt is not charged
    off, fees are not frozen (a plan in force, a breathing space), and the whole fee still fits
    under the cap per account. Nothing is charged for a day the run did not cover."""
    if frozen or dpd < 1 or dpd < grace_days or dpd >= charge_off_dpd or amount <= 0 or cap is None:
        return None
    since = dpd - grace_days
    if since % LATE_FEE_PERIOD_DAYS != 0:
        return None
    if fees_charged + amount > cap:
        return None
    return LateFee(amount=amount, period=since // LATE_FEE_PERIOD_DAYS + 1)


def late_fee_cause(oldest_unpaid_due_on: date, period: int) -> str:
    return f"late_fee:{oldest_unpaid_due_on.isoformat()}:{period}"


def accrual_cause(day: date) -> str:
    return f"accrual:{day.isoformat()}"


def promise_status(
    *,
    amount: int,
    promised_on: date,
    due_on: date,
    payments: Iterable[tuple[date, int]],
    today: date,
) -> tuple[str, int]:
    """An open promise is decided once its due date has passed: kept when the payments received
    from the day it was made up to its due date (inclusive) cover it, else broken. Returns the
    status ("open", "kept", "broken") and the amount paid towards it."""
    paid = sum(value for received_on, value in payments if promised_on <= received_on <= due_on)
    if due_on >= today:
        return "open", paid
    return ("kept" if paid >= amount else "broken"), paid


@dataclass(frozen=True)
class ActionFacts:
    """What the strategy needs to know about an account on the day."""

    dpd: int
    stage: str
    next_due_on: date | None
    contact_stopped: bool = False
    """An open dispute, a cease-contact request, or a breathing space that pauses contact."""
    plan_active: bool = False
    """A plan in force replaces the stage's treatment while it is kept."""


@dataclass(frozen=True)
class ActionDue:
    rule_key: str
    kind: str
    channel: str | None
    template: str | None
    stage: str
    priority: int


def actions_for(facts: ActionFacts, strategy: Strategy, today: date) -> list[ActionDue]:
    """The actions the account's stage strategy asks for today (none while contact is stopped or
    a plan is in force), in the strategy's order."""
    if facts.contact_stopped or facts.plan_active:
        return []
    return [
        ActionDue(
            rule_key=step.rule_key(facts.stage),
            kind=step.kind,
            channel=step.channel,
            template=step.template,
            stage=facts.stage,
            priority=step.priority,
        )
        for step in strategy.get(facts.stage, ())
        if step.fires(facts.dpd, facts.next_due_on, today)
    ]


# --- The reference: one whole day's run, one account at a time --------------------------------


@dataclass(frozen=True)
class RunFacts:
    """One account as the run finds it in the morning, in plain values."""

    account_id: int
    currency: str
    oldest_unpaid_due_on: date | None
    next_due_on: date | None
    stage: str
    principal: int
    rate_bp: int
    fees_charged: int = 0
    """Late fees (and other fees) charged so far, for the cap per account."""
    status: str = "open"
    plan_active: bool = False
    """A plan in force when interest and fees are charged."""
    plan_active_for_actions: bool | None = None
    """A plan still in force when the actions are created (after the instalments step may have
    broken it); None: as `plan_active`."""
    fees_paused: bool = False
    """A breathing space that stops fees covers the day."""
    contact_stopped: bool = False
    causes: frozenset[str] = field(default_factory=frozenset)
    """Ledger causes already on the account (a rerun charges nothing twice)."""


@dataclass(frozen=True)
class RunOutcome:
    account_id: int
    dpd: int
    stage: str
    interest: int
    """Interest entry posted today (0: none)."""
    fee: int
    fee_cause: str | None
    actions: tuple[ActionDue, ...]


def reference_account(facts: RunFacts, policy: Policy, today: date) -> RunOutcome:
    """What the day's run does to one open account."""
    if facts.status != "open":
        return RunOutcome(facts.account_id, -1, facts.stage, 0, 0, None, ())
    dpd = days_past_due(facts.oldest_unpaid_due_on, today)
    stage = next_stage(facts.stage, dpd, policy)
    frozen = facts.plan_active or facts.fees_paused
    interest = 0
    accrues = stage != "charged_off" and not frozen and facts.principal > 0 and facts.rate_bp > 0
    if accrues and accrual_cause(today) not in facts.causes:
        interest = daily_interest(facts.principal, facts.rate_bp)
    fee, fee_cause = 0, None
    due = None
    if facts.oldest_unpaid_due_on is not None and stage != "charged_off":
        due = late_fee_due(
            dpd=dpd,
            grace_days=policy.late_fee_grace_days,
            charge_off_dpd=policy.charge_off_dpd,
            amount=policy.late_fee_amount.get(facts.currency, 0),
            cap=policy.late_fee_cap_per_account.get(facts.currency),
            fees_charged=facts.fees_charged,
            frozen=frozen,
        )
    if due is not None and facts.oldest_unpaid_due_on is not None:
        cause = late_fee_cause(facts.oldest_unpaid_due_on, due.period)
        if cause not in facts.causes:
            fee, fee_cause = due.amount, cause
    plan_for_actions = (
        facts.plan_active if facts.plan_active_for_actions is None else facts.plan_active_for_actions
    )
    actions = actions_for(
        ActionFacts(
            dpd=dpd,
            stage=stage,
            next_due_on=facts.next_due_on,
            contact_stopped=facts.contact_stopped,
            plan_active=plan_for_actions,
        ),
        policy.collections.strategies,
        today,
    )
    return RunOutcome(facts.account_id, dpd, stage, interest, fee, fee_cause, tuple(actions))


def reference_day(accounts: Sequence[RunFacts], policy: Policy, today: date) -> dict[int, RunOutcome]:
    """The whole day's run over a portfolio, account by account: the model the SQL must match."""
    return {facts.account_id: reference_account(facts, policy, today) for facts in accounts}


def day_range(until: date, days: int) -> list[date]:
    """The `days` days ending with `until`, oldest first."""
    return [until - timedelta(days=n) for n in range(days - 1, -1, -1)]


# --- Simulation: a strategy applied to a day's counts ---------------------------------------------


def count_actions(
    by_dpd: Mapping[tuple[str, int], int],
    by_days_to_due: Mapping[tuple[str, int], int],
    strategy: Strategy,
) -> dict[tuple[str, str], int]:
    """How many actions of each kind a strategy creates on one day, per stage, from how many
    accounts are in each (stage, days past due) and each (stage, days until the next due date)."""
    counts: dict[tuple[str, str], int] = {}
    for stage, steps in strategy.items():
        for step in steps:
            histogram = by_dpd if step.anchor == Anchor.DPD else by_days_to_due
            n = histogram.get((stage, step.day), 0)
            if n:
                counts[(stage, step.kind)] = counts.get((stage, step.kind), 0) + n
    return counts
