"""Collections policy: stage thresholds, late fees, when each treatment begins, and the hardship
section — what may be offered without review at each stage, the reference spending an income and
expenditure statement is compared with, the time limits of a hardship case, what each staff role
may approve alone, and how the review queue is ordered; and the payments section — the waterfall,
the smallest payment, autopay retries, when a plan breaks, and which refunds need four eyes; and the
retention section — how long personal data is kept once the debt is finished (workflows/retention)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from functools import cached_property
from itertools import pairwise
from types import MappingProxyType

from workflows.access import Role
from workflows.affordability import COST_CATEGORIES, BudgetCategory
from workflows.collections import (
    StrategyStep,
    default_strategies,
    default_templates,
    strategy_problems,
    template_problems,
)
from workflows.contact_policy import PACKS as CONTACT_PACKS
from workflows.errors import DomainError
from workflows.money import CURRENCY_EXPONENTS, Component
from workflows.retention import RetentionPolicy


class Stage(StrEnum):
    CURRENT = "current"
    EARLY = "early"
    MID = "mid"
    LATE = "late"
    LEGAL = "legal"
    CHARGED_OFF = "charged_off"


_MONEY_FIELDS = ("late_fee_amount", "late_fee_cap_per_account")
_SECTIONS = ("hardship", "payments", "collections", "retention")


def _frozen(values: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(values))


def _hashable(value: object) -> object:
    # Mappings are hashed by their items (keys as text, so enum and plain-string keys agree).
    if isinstance(value, Mapping):
        return tuple(sorted(((str(key), _hashable(item)) for key, item in value.items()), key=lambda p: p[0]))
    return value


def _invalid(problems: str) -> DomainError:
    return DomainError("policy_invalid", "The policy is invalid: {problems}", problems=problems)


def _settings(
    data: object, path: str, known: Iterable[str], required: Iterable[str] = ()
) -> dict[str, object]:
    """Stored settings at `path` as a dict, refusing anything but named, known settings."""
    if not isinstance(data, Mapping):
        raise _invalid(f"{path} must be a set of named settings.")
    unknown = sorted(set(map(str, data)) - set(known))
    if unknown:
        raise _invalid(f"unknown settings {', '.join(f'{path}.{name}' for name in unknown)}.")
    missing = sorted(set(required) - set(data))
    if missing:
        raise _invalid(f"missing settings {', '.join(f'{path}.{name}' for name in missing)}.")
    return {str(key): value for key, value in data.items()}


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _amount_table_problems(path: str, amounts: object, *, positive: bool = False) -> list[str]:
    if not isinstance(amounts, Mapping):
        return [f"{path} must map currency codes to amounts."]
    problems: list[str] = []
    for currency, amount in amounts.items():
        if currency not in CURRENCY_EXPONENTS:
            problems.append(f"{path} has an unknown currency {currency!r}.")
        if not _is_whole(amount):
            problems.append(f"{path}[{currency!r}] must be whole minor units.")
        elif amount < (1 if positive else 0):
            problems.append(f"{path}[{currency!r}] must be {'positive' if positive else 'at least 0'}.")
    return problems


def _range_problem(path: str, value: object, low: int, high: int) -> list[str]:
    if not _is_whole(value):
        return [f"{path} must be a whole number."]
    assert isinstance(value, int)
    if not low <= value <= high:
        return [f"{path} must be from {low} to {high}."]
    return []


# --- Hardship: relief without review, reference spending, case time limits ----------------------

BASIS_POINTS = 10_000
"""A share of 100 %, in basis points."""

MAX_HOLIDAY_MONTHS = 3
MAX_PLAN_MONTHS = 120


@dataclass(frozen=True)
class ReliefLimits:
    """What a borrower may be offered at one stage without anyone reviewing it. The defaults offer
    nothing: a stage the admin has not configured sends every request to review.

    A waiver (fees, interest) is limited both as a share of the whole balance and as an amount; a
    settlement is limited by `settlement_min_share_bp` instead of the waived share (it is a waiver
    by nature) and still by the amount. Payment-holiday months count towards the term and, when
    interest is frozen through them, towards `interest_freeze_max_months`. Zero means "not
    without review".
    """

    max_waived_share_bp: int = 0
    """Fees and interest waived, at most this share of the balance (2000 = 20 %)."""
    max_waived_amount: Mapping[str, int] = field(default_factory=lambda: _frozen({}))
    """Per currency, minor units; a currency not listed may have nothing waived."""
    max_term_months: int = 0
    """The longest plan: payment-holiday months plus instalments."""
    min_instalment: Mapping[str, int] = field(default_factory=lambda: _frozen({}))
    """Per currency, the smallest regular instalment worth collecting; not listed means one minor unit."""
    max_holiday_months: int = 0
    """0 to 3."""
    interest_freeze_max_months: int = 0
    settlement_min_share_bp: int = BASIS_POINTS
    """A settlement asks for at least this share of the balance."""
    allow_settlement: bool = False

    def __post_init__(self) -> None:
        for name in ("max_waived_amount", "min_instalment"):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, _frozen(value))

    def __hash__(self) -> int:
        return hash(tuple(_hashable(getattr(self, f.name)) for f in fields(self)))

    def problems(self, path: str) -> list[str]:
        """What is wrong with these limits, each problem naming its setting under `path`."""
        problems: list[str] = []
        problems += _range_problem(f"{path}.max_waived_share_bp", self.max_waived_share_bp, 0, BASIS_POINTS)
        problems += _range_problem(
            f"{path}.settlement_min_share_bp", self.settlement_min_share_bp, 0, BASIS_POINTS
        )
        problems += _range_problem(f"{path}.max_term_months", self.max_term_months, 0, MAX_PLAN_MONTHS)
        problems += _range_problem(
            f"{path}.max_holiday_months", self.max_holiday_months, 0, MAX_HOLIDAY_MONTHS
        )
        problems += _range_problem(
            f"{path}.interest_freeze_max_months", self.interest_freeze_max_months, 0, MAX_PLAN_MONTHS
        )
        problems += _amount_table_problems(f"{path}.max_waived_amount", self.max_waived_amount)
        problems += _amount_table_problems(f"{path}.min_instalment", self.min_instalment)
        if not isinstance(self.allow_settlement, bool):
            problems.append(f"{path}.allow_settlement must be true or false.")
        if not problems and self.max_holiday_months > self.max_term_months:
            problems.append(f"{path}.max_holiday_months cannot be longer than max_term_months.")
        return problems

    def to_dict(self) -> dict[str, object]:
        return {
            f.name: dict(value) if isinstance(value := getattr(self, f.name), Mapping) else value
            for f in fields(self)
        }

    @classmethod
    def from_dict(cls, data: object, path: str) -> ReliefLimits:
        return cls(**_settings(data, path, (f.name for f in fields(cls))))  # type: ignore[arg-type]


@dataclass(frozen=True)
class ReferenceAmount:
    """Monthly reference spending on one category (like an SFS trigger figure), in minor units:
    for the first adult, each further adult or dependant, and each child."""

    first_adult: int
    each_other_adult: int
    each_child: int

    def problems(self, path: str) -> list[str]:
        problems: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if not _is_whole(value) or value < 0:
                problems.append(f"{path}.{f.name} must be whole minor units, at least 0.")
        return problems

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: object, path: str) -> ReferenceAmount:
        names = [f.name for f in fields(cls)]
        return cls(**_settings(data, path, names, required=names))  # type: ignore[arg-type]


def _money(cny: int, usd: int, eur: int) -> Mapping[str, int]:
    return _frozen({"CNY": cny, "USD": usd, "EUR": eur})


def _default_relief_limits() -> Mapping[Stage, ReliefLimits]:
    # Concessions grow with the stage: an early slip gets a short plan and little waived; a mid-stage
    # borrower up to two years, a fifth waived and three months' holiday; late stage a settlement
    # from 60 %; once referred to legal or charged off, only a settlement is pre-approved.
    return MappingProxyType(
        {
            Stage.CURRENT: ReliefLimits(),
            Stage.EARLY: ReliefLimits(
                max_waived_share_bp=500,
                max_waived_amount=_money(50000, 10000, 10000),
                max_term_months=6,
                min_instalment=_money(10000, 2500, 2500),
                max_holiday_months=1,
                interest_freeze_max_months=1,
            ),
            Stage.MID: ReliefLimits(
                max_waived_share_bp=2000,
                max_waived_amount=_money(500000, 100000, 100000),
                max_term_months=24,
                min_instalment=_money(10000, 2500, 2500),
                max_holiday_months=3,
                interest_freeze_max_months=6,
            ),
            Stage.LATE: ReliefLimits(
                max_waived_share_bp=3000,
                max_waived_amount=_money(1500000, 300000, 300000),
                max_term_months=36,
                min_instalment=_money(10000, 2500, 2500),
                max_holiday_months=3,
                interest_freeze_max_months=12,
                settlement_min_share_bp=6000,
                allow_settlement=True,
            ),
            Stage.LEGAL: ReliefLimits(
                max_waived_amount=_money(3000000, 500000, 500000),
                settlement_min_share_bp=6000,
                allow_settlement=True,
            ),
            Stage.CHARGED_OFF: ReliefLimits(
                max_waived_amount=_money(5000000, 800000, 800000),
                settlement_min_share_bp=5000,
                allow_settlement=True,
            ),
        }
    )


_REFERENCE_FIGURES: dict[str, dict[BudgetCategory, tuple[int, int, int]]] = {
    # Monthly, in minor units: first adult, each other adult or dependant, each child.
    "CNY": {
        BudgetCategory.HOUSING: (250000, 80000, 50000),
        BudgetCategory.UTILITIES: (30000, 10000, 8000),
        BudgetCategory.PROPERTY_TAX: (20000, 0, 0),
        BudgetCategory.INSURANCE: (30000, 20000, 10000),
        BudgetCategory.CARE_COSTS: (50000, 30000, 30000),
        BudgetCategory.OTHER_FIXED: (20000, 10000, 5000),
        BudgetCategory.FOOD_HOUSEKEEPING: (150000, 100000, 70000),
        BudgetCategory.TRANSPORT: (50000, 30000, 10000),
        BudgetCategory.COMMUNICATIONS: (20000, 10000, 5000),
        BudgetCategory.CHILDCARE: (0, 0, 150000),
        BudgetCategory.HEALTH: (20000, 15000, 10000),
        BudgetCategory.PERSONAL_CLOTHING: (30000, 20000, 15000),
        BudgetCategory.OTHER_FLEXIBLE: (20000, 10000, 10000),
    },
    "USD": {
        BudgetCategory.HOUSING: (150000, 30000, 25000),
        BudgetCategory.UTILITIES: (20000, 5000, 4000),
        BudgetCategory.PROPERTY_TAX: (15000, 0, 0),
        BudgetCategory.INSURANCE: (15000, 10000, 5000),
        BudgetCategory.CARE_COSTS: (20000, 15000, 15000),
        BudgetCategory.OTHER_FIXED: (10000, 5000, 2500),
        BudgetCategory.FOOD_HOUSEKEEPING: (50000, 35000, 25000),
        BudgetCategory.TRANSPORT: (35000, 20000, 5000),
        BudgetCategory.COMMUNICATIONS: (10000, 5000, 2500),
        BudgetCategory.CHILDCARE: (0, 0, 60000),
        BudgetCategory.HEALTH: (15000, 10000, 7500),
        BudgetCategory.PERSONAL_CLOTHING: (10000, 6000, 5000),
        BudgetCategory.OTHER_FLEXIBLE: (10000, 5000, 4000),
    },
    "EUR": {
        BudgetCategory.HOUSING: (100000, 25000, 20000),
        BudgetCategory.UTILITIES: (20000, 5000, 4000),
        BudgetCategory.PROPERTY_TAX: (8000, 0, 0),
        BudgetCategory.INSURANCE: (10000, 6000, 4000),
        BudgetCategory.CARE_COSTS: (15000, 10000, 10000),
        BudgetCategory.OTHER_FIXED: (8000, 4000, 2000),
        BudgetCategory.FOOD_HOUSEKEEPING: (40000, 28000, 20000),
        BudgetCategory.TRANSPORT: (25000, 15000, 4000),
        BudgetCategory.COMMUNICATIONS: (7000, 3500, 2000),
        BudgetCategory.CHILDCARE: (0, 0, 40000),
        BudgetCategory.HEALTH: (8000, 6000, 4000),
        BudgetCategory.PERSONAL_CLOTHING: (8000, 5000, 4000),
        BudgetCategory.OTHER_FLEXIBLE: (8000, 4000, 3000),
    },
}


def _default_reference_spending() -> Mapping[str, Mapping[BudgetCategory, ReferenceAmount]]:
    return MappingProxyType(
        {
            currency: MappingProxyType({c: ReferenceAmount(*figures) for c, figures in table.items()})
            for currency, table in _REFERENCE_FIGURES.items()
        }
    )


# --- Authority: the largest concession each staff role may approve alone -------------------------

AUTHORITY_LADDER: tuple[Role, ...] = (Role.AGENT, Role.SUPERVISOR)
"""Roles in rising order of authority: each must be allowed at least what the one below it is, so
an approval above one rung can always go to the next (four eyes)."""


@dataclass(frozen=True)
class AuthorityLimit:
    """The largest concession one staff role may approve without a second person. Zero (or a
    currency left out) means none: the defaults give no authority at all.

    A settlement is limited by `max_settlement_discount_bp` instead of the waived share (the
    discount is its waived share); the waived amount and the term limit every concession."""

    max_waived_amount: Mapping[str, int] = field(default_factory=lambda: _frozen({}))
    """Per currency, minor units; a role has no authority over accounts in a currency not listed."""
    max_waived_share_bp: int = 0
    """Fees, interest and principal waived, at most this share of the whole balance."""
    max_term_months: int = 0
    """The longest plan: payment-holiday months plus instalments."""
    max_settlement_discount_bp: int = 0
    """A settlement may waive at most this share of the whole balance."""

    def __post_init__(self) -> None:
        if isinstance(self.max_waived_amount, Mapping):
            object.__setattr__(self, "max_waived_amount", _frozen(self.max_waived_amount))

    def __hash__(self) -> int:
        return hash(tuple(_hashable(getattr(self, f.name)) for f in fields(self)))

    def covers(self, other: AuthorityLimit) -> bool:
        """Whether these limits allow at least everything `other` allows (assumes both are valid)."""
        return (
            all(
                currency in self.max_waived_amount and self.max_waived_amount[currency] >= amount
                for currency, amount in other.max_waived_amount.items()
            )
            and self.max_waived_share_bp >= other.max_waived_share_bp
            and self.max_term_months >= other.max_term_months
            and self.max_settlement_discount_bp >= other.max_settlement_discount_bp
        )

    def problems(self, path: str) -> list[str]:
        problems = _amount_table_problems(f"{path}.max_waived_amount", self.max_waived_amount)
        problems += _range_problem(f"{path}.max_waived_share_bp", self.max_waived_share_bp, 0, BASIS_POINTS)
        problems += _range_problem(f"{path}.max_term_months", self.max_term_months, 0, MAX_PLAN_MONTHS)
        problems += _range_problem(
            f"{path}.max_settlement_discount_bp", self.max_settlement_discount_bp, 0, BASIS_POINTS
        )
        return problems

    def to_dict(self) -> dict[str, object]:
        return {
            f.name: dict(value) if isinstance(value := getattr(self, f.name), Mapping) else value
            for f in fields(self)
        }

    @classmethod
    def from_dict(cls, data: object, path: str) -> AuthorityLimit:
        return cls(**_settings(data, path, (f.name for f in fields(cls))))  # type: ignore[arg-type]


def _default_authority() -> Mapping[Role, AuthorityLimit]:
    # An agent settles the everyday case; a supervisor the large or long one. Every other role
    # (collector, finance, admin) approves nothing.
    return MappingProxyType(
        {
            Role.AGENT: AuthorityLimit(
                max_waived_amount=_money(2_000_000, 300_000, 300_000),
                max_waived_share_bp=2500,
                max_term_months=36,
                max_settlement_discount_bp=3000,
            ),
            Role.SUPERVISOR: AuthorityLimit(
                max_waived_amount=_money(20_000_000, 3_000_000, 3_000_000),
                max_waived_share_bp=6000,
                max_term_months=84,
                max_settlement_discount_bp=6000,
            ),
        }
    )


# --- Priority: the order of the review queue ----------------------------------------------------

MAX_PRIORITY_POINTS = 10_000
"""No single weight may be more than this (a typo, not a policy)."""

MAX_BALANCE_BANDS = 10
"""At most this many amount bands, so at most one fewer thresholds per currency."""


def _default_stage_points() -> Mapping[Stage, int]:
    return MappingProxyType(
        {
            Stage.CURRENT: 0,
            Stage.EARLY: 10,
            Stage.MID: 20,
            Stage.LATE: 30,
            Stage.LEGAL: 40,
            Stage.CHARGED_OFF: 40,
        }
    )


def _default_balance_bands() -> Mapping[str, Sequence[int]]:
    # Under ¥10,000 / $1,500; up to ¥50,000 / $7,500; up to ¥200,000 / $30,000; above.
    return MappingProxyType(
        {
            "CNY": (1_000_000, 5_000_000, 20_000_000),
            "USD": (150_000, 750_000, 3_000_000),
            "EUR": (150_000, 750_000, 3_000_000),
        }
    )


def _bands(value: object) -> object:
    # Stored as a JSON list; kept as a tuple so the policy stays frozen. Anything else is left
    # as it is, for problems() to name.
    if isinstance(value, list | tuple):
        return tuple(value)
    return value


@dataclass(frozen=True)
class PriorityWeights:
    """How the review queue is ordered: a case's priority is the sum of points for its stage,
    for each whole day it has waited, for a vulnerable borrower, and for each balance band above
    the lowest. Every weight is at least zero and a later stage never earns fewer points, so
    waiting longer, being vulnerable, a later stage or a larger balance never lowers a priority."""

    stage_points: Mapping[Stage, int] = field(default_factory=_default_stage_points)
    """One per stage, never falling from one stage to the next."""
    points_per_day: int = 2
    """For each whole day the case has waited for a decision."""
    vulnerability_points: int = 30
    """For a borrower flagged as vulnerable."""
    balance_bands: Mapping[str, Sequence[int]] = field(default_factory=_default_balance_bands)
    """Per currency, rising thresholds in minor units (kept as a tuple): a balance at or above the
    n-th threshold is in band n (band 0 below the first). Every currency has the same number of
    thresholds, so a band means the same in each. A currency not listed is all band 0. The queue
    filters by band."""
    points_per_band: int = 5

    def __post_init__(self) -> None:
        if isinstance(self.stage_points, Mapping):
            object.__setattr__(
                self,
                "stage_points",
                MappingProxyType({_stage_key(k): v for k, v in self.stage_points.items()}),
            )
        if isinstance(self.balance_bands, Mapping):
            object.__setattr__(
                self,
                "balance_bands",
                MappingProxyType({k: _bands(v) for k, v in self.balance_bands.items()}),
            )

    def __hash__(self) -> int:
        return hash(tuple(_hashable(getattr(self, f.name)) for f in fields(self)))

    def problems(self, path: str) -> list[str]:
        problems = self._stage_problems(path) + self._band_problems(path)
        for name in ("points_per_day", "vulnerability_points", "points_per_band"):
            problems += _range_problem(f"{path}.{name}", getattr(self, name), 0, MAX_PRIORITY_POINTS)
        return problems

    def _stage_problems(self, path: str) -> list[str]:
        if not isinstance(self.stage_points, Mapping):
            return [f"{path}.stage_points must map stages to points."]
        problems: list[str] = []
        for key, value in self.stage_points.items():
            if not isinstance(key, Stage):
                problems.append(f"{path}.stage_points has an unknown stage {key!r}.")
            else:
                problems += _range_problem(f"{path}.stage_points.{key}", value, 0, MAX_PRIORITY_POINTS)
        for stage in Stage:
            if stage not in self.stage_points:
                problems.append(f"{path}.stage_points has no points for the {stage} stage.")
        if not problems:
            in_order = [self.stage_points[stage] for stage in Stage]
            if any(later < earlier for earlier, later in pairwise(in_order)):
                problems.append(f"{path}.stage_points must not fall from one stage to the next.")
        return problems

    def _band_problems(self, path: str) -> list[str]:
        if not isinstance(self.balance_bands, Mapping):
            return [f"{path}.balance_bands must map currency codes to thresholds."]
        problems: list[str] = []
        sizes: set[int] = set()
        for currency, thresholds in self.balance_bands.items():
            where = f"{path}.balance_bands.{currency}"
            if currency not in CURRENCY_EXPONENTS:
                problems.append(f"{path}.balance_bands has an unknown currency {currency!r}.")
            if not isinstance(thresholds, tuple) or not all(map(_is_whole, thresholds)):
                problems.append(f"{where} must be a list of whole minor units.")
                continue
            sizes.add(len(thresholds))
            if not 1 <= len(thresholds) < MAX_BALANCE_BANDS:
                problems.append(f"{where} must have from 1 to {MAX_BALANCE_BANDS - 1} thresholds.")
            if thresholds and thresholds[0] < 1:
                problems.append(f"{where} must start above 0.")
            if any(later <= earlier for earlier, later in pairwise(thresholds)):
                problems.append(f"{where} must rise from each threshold to the next.")
        if len(sizes) > 1:
            problems.append(f"{path}.balance_bands must have as many thresholds in every currency.")
        return problems

    def to_dict(self) -> dict[str, object]:
        return {
            "stage_points": {str(stage): points for stage, points in self.stage_points.items()},
            "points_per_day": self.points_per_day,
            "vulnerability_points": self.vulnerability_points,
            "balance_bands": {str(c): list(bands) for c, bands in self.balance_bands.items()},
            "points_per_band": self.points_per_band,
        }

    @classmethod
    def from_dict(cls, data: object, path: str) -> PriorityWeights:
        settings = _settings(data, path, (f.name for f in fields(cls)))
        if "stage_points" in settings:
            settings["stage_points"] = _settings(
                settings["stage_points"], f"{path}.stage_points", map(str, Stage)
            )
        return cls(**settings)  # type: ignore[arg-type]


def _role_key(key: object) -> object:
    return Role(key) if isinstance(key, str) and key in _ROLE_VALUES else key


_ROLE_VALUES = frozenset(Role)


def _stage_key(key: object) -> object:
    # An unknown key stays as it is, for validate() to name.
    return Stage(key) if isinstance(key, str) and key in _STAGE_VALUES else key


def _category_key(key: object) -> object:
    return BudgetCategory(key) if isinstance(key, str) and key in _CATEGORY_VALUES else key


_STAGE_VALUES = frozenset(Stage)
_CATEGORY_VALUES = frozenset(BudgetCategory)


@dataclass(frozen=True)
class HardshipPolicy:
    """The hardship section of the policy."""

    relief_limits: Mapping[Stage, ReliefLimits] = field(default_factory=_default_relief_limits)
    """One per stage."""
    reference_spending: Mapping[str, Mapping[BudgetCategory, ReferenceAmount]] = field(
        default_factory=_default_reference_spending
    )
    """Currency -> living-cost category -> reference; a category left out has no reference."""
    offer_valid_days: int = 14
    """An offer can be accepted for this many days. At most 28, so it expires before its first
    instalment falls due a month after it was made."""
    review_sla_days: int = 5
    """A case in review should be decided within this many days."""
    breathing_space_days: int = 30
    """Collections pause this long while a borrower gets debt advice."""
    breathing_space_stops_fees: bool = True
    breathing_space_pauses_contact: bool = True
    max_monthly_amount: Mapping[str, int] = field(
        default_factory=lambda: _money(1_000_000_000, 150_000_000, 150_000_000)
    )
    """Per currency: no single budget category can come to more than this a month (absurd input)."""
    authority: Mapping[Role, AuthorityLimit] = field(default_factory=_default_authority)
    """What each staff role may approve alone; a role left out may approve nothing."""
    priority: PriorityWeights = field(default_factory=PriorityWeights)
    """How the review queue is ordered and banded by balance."""
    counter_offer_valid_days: int = 14
    """An agent's counter-offer can be accepted for this many days (at most 28, like an offer)."""
    agreement_valid_days: int = 14
    """An agreement not signed within this many days of being ready expires, and its offer too."""
    plan_grace_days: int = 10
    """A plan instalment is missed this many days after its due date (then the plan is broken)."""

    def __post_init__(self) -> None:
        # Freeze every table, and read stored keys as the enums they name.
        if isinstance(self.authority, Mapping):
            object.__setattr__(
                self, "authority", MappingProxyType({_role_key(k): v for k, v in self.authority.items()})
            )
        if isinstance(self.relief_limits, Mapping):
            object.__setattr__(
                self,
                "relief_limits",
                MappingProxyType({_stage_key(k): v for k, v in self.relief_limits.items()}),
            )
        if isinstance(self.reference_spending, Mapping):
            object.__setattr__(
                self,
                "reference_spending",
                MappingProxyType(
                    {
                        currency: MappingProxyType({_category_key(k): v for k, v in table.items()})
                        if isinstance(table, Mapping)
                        else table
                        for currency, table in self.reference_spending.items()
                    }
                ),
            )
        if isinstance(self.max_monthly_amount, Mapping):
            object.__setattr__(self, "max_monthly_amount", _frozen(self.max_monthly_amount))

    def __hash__(self) -> int:
        return hash(tuple(_hashable(getattr(self, f.name)) for f in fields(self)))

    def validate(self) -> list[str]:
        """Every stage has sound limits, reference figures are known categories in known
        currencies, and the guard for absurd input covers every currency with reference figures."""
        problems = self._limit_problems() + self._reference_problems()
        problems += _amount_table_problems(
            "hardship.max_monthly_amount", self.max_monthly_amount, positive=True
        )
        problems += _range_problem("hardship.offer_valid_days", self.offer_valid_days, 1, 28)
        problems += _range_problem("hardship.counter_offer_valid_days", self.counter_offer_valid_days, 1, 28)
        problems += _range_problem("hardship.agreement_valid_days", self.agreement_valid_days, 1, 60)
        problems += _range_problem("hardship.plan_grace_days", self.plan_grace_days, 0, 30)
        problems += _range_problem("hardship.review_sla_days", self.review_sla_days, 1, 60)
        problems += _range_problem("hardship.breathing_space_days", self.breathing_space_days, 0, 90)
        for name in ("breathing_space_stops_fees", "breathing_space_pauses_contact"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"hardship.{name} must be true or false.")
        problems += self._authority_problems()
        if isinstance(self.priority, PriorityWeights):
            problems += self.priority.problems("hardship.priority")
        else:
            problems.append("hardship.priority must be priority weights.")
        return problems

    def _authority_problems(self) -> list[str]:
        if not isinstance(self.authority, Mapping):
            return ["hardship.authority must map staff roles to authority limits."]
        problems: list[str] = []
        for key, limit in self.authority.items():
            if not isinstance(key, Role):
                problems.append(f"hardship.authority has an unknown staff role {key!r}.")
            elif not isinstance(limit, AuthorityLimit):
                problems.append(f"hardship.authority.{key} must be authority limits.")
            else:
                problems += limit.problems(f"hardship.authority.{key}")
        if problems:
            return problems
        # Each rung of the ladder covers every rung below it; a role left out has no authority.
        nothing = AuthorityLimit()
        for lower_index, lower in enumerate(AUTHORITY_LADDER):
            for higher in AUTHORITY_LADDER[lower_index + 1 :]:
                if not self.authority.get(higher, nothing).covers(self.authority.get(lower, nothing)):
                    problems.append(
                        f"hardship.authority.{higher} must allow at least what hardship.authority.{lower}"
                        " allows."
                    )
        return problems

    def _limit_problems(self) -> list[str]:
        if not isinstance(self.relief_limits, Mapping):
            return ["hardship.relief_limits must map stages to limits."]
        problems: list[str] = []
        for stage in Stage:
            if stage not in self.relief_limits:
                problems.append(f"hardship.relief_limits has no limits for the {stage} stage.")
        for key, limits in self.relief_limits.items():
            path = f"hardship.relief_limits.{key}"
            if not isinstance(key, Stage):
                problems.append(f"hardship.relief_limits has an unknown stage {key!r}.")
            elif not isinstance(limits, ReliefLimits):
                problems.append(f"{path} must be relief limits.")
            else:
                problems += limits.problems(path)
        return problems

    def _reference_problems(self) -> list[str]:
        if not isinstance(self.reference_spending, Mapping):
            return ["hardship.reference_spending must map currencies to reference tables."]
        problems: list[str] = []
        for currency, table in self.reference_spending.items():
            path = f"hardship.reference_spending.{currency}"
            if currency not in CURRENCY_EXPONENTS:
                problems.append(f"hardship.reference_spending has an unknown currency {currency!r}.")
            if isinstance(self.max_monthly_amount, Mapping) and currency not in self.max_monthly_amount:
                problems.append(f"hardship.max_monthly_amount has no guard for {currency!r}.")
            if not isinstance(table, Mapping):
                problems.append(f"{path} must map categories to reference amounts.")
                continue
            for category, amount in table.items():
                if category not in COST_CATEGORIES:
                    problems.append(f"{path} has {category!r}, which is not a living-cost category.")
                elif not isinstance(amount, ReferenceAmount):
                    problems.append(f"{path}.{category} must be a reference amount.")
                else:
                    problems += amount.problems(f"{path}.{category}")
        return problems

    def to_dict(self) -> dict[str, object]:
        """Plain JSON values: stage, currency and category keys as strings."""
        data: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "relief_limits":
                data[f.name] = {str(stage): limits.to_dict() for stage, limits in value.items()}
            elif f.name == "authority":
                data[f.name] = {str(role): limit.to_dict() for role, limit in value.items()}
            elif f.name == "priority":
                data[f.name] = value.to_dict()
            elif f.name == "reference_spending":
                data[f.name] = {
                    str(currency): {str(c): amount.to_dict() for c, amount in table.items()}
                    for currency, table in value.items()
                }
            elif isinstance(value, Mapping):
                data[f.name] = dict(value)
            else:
                data[f.name] = value
        return data

    @classmethod
    def from_dict(cls, data: object) -> HardshipPolicy:
        """Build the section from stored values; a missing setting takes its default, an unknown
        one refuses the policy."""
        settings = _settings(data, "hardship", (f.name for f in fields(cls)))
        if "relief_limits" in settings:
            stages = _settings(settings["relief_limits"], "hardship.relief_limits", map(str, Stage))
            settings["relief_limits"] = {
                stage: ReliefLimits.from_dict(limits, f"hardship.relief_limits.{stage}")
                for stage, limits in stages.items()
            }
        if "reference_spending" in settings:
            tables = settings["reference_spending"]
            if not isinstance(tables, Mapping):
                raise _invalid("hardship.reference_spending must map currencies to reference tables.")
            spending: dict[str, dict[str, ReferenceAmount]] = {}
            for currency, table in tables.items():
                path = f"hardship.reference_spending.{currency}"
                categories = _settings(table, path, map(str, COST_CATEGORIES))
                spending[currency] = {
                    category: ReferenceAmount.from_dict(amount, f"{path}.{category}")
                    for category, amount in categories.items()
                }
            settings["reference_spending"] = spending
        if "authority" in settings:
            roles = _settings(settings["authority"], "hardship.authority", map(str, Role))
            settings["authority"] = {
                role: AuthorityLimit.from_dict(limit, f"hardship.authority.{role}")
                for role, limit in roles.items()
            }
        if "priority" in settings:
            settings["priority"] = PriorityWeights.from_dict(settings["priority"], "hardship.priority")
        return cls(**settings)  # type: ignore[arg-type]  # validate() checks every value


# --- Payments: waterfall, minimum payment, autopay retries, broken plans, refund approval -------

MAX_RETRY_DAYS = 60
MAX_AUTOPAY_RETRIES = 10


def _sequence(value: object) -> object:
    # Stored as a JSON list; kept as a tuple so the policy stays frozen (anything else is left
    # for problems() to name).
    if isinstance(value, list):
        return tuple(value)
    return value


@dataclass(frozen=True)
class PaymentsPolicy:
    """The payments section of the policy."""

    waterfall: tuple[str, ...] = ("fees", "interest", "principal")
    """The order a payment pays the components of the balance: each component once."""
    minimum_payment: Mapping[str, int] = field(default_factory=lambda: _money(10000, 2000, 2000))
    """Per currency, the smallest payment accepted, unless it pays off the whole balance; a currency
    not listed has no minimum."""
    autopay_retry_days: tuple[int, ...] = (1, 3, 7)
    """After a failed autopay on the due date, try again this many days after the due date
    (strictly increasing, 1 to 60; empty: no retries)."""
    plan_break_consecutive_misses: int = 2
    """A plan breaks when this many instalments in a row are missed."""
    plan_break_overdue_days: int = 30
    """A plan breaks when a missed instalment is unpaid this many days after its due date."""
    refund_second_approval_above: Mapping[str, int] = field(
        default_factory=lambda: _money(100000, 20000, 20000)
    )
    """Per currency, a refund above this needs a second approver; in a currency not listed, every
    refund does."""

    def __post_init__(self) -> None:
        for name in ("waterfall", "autopay_retry_days"):
            object.__setattr__(self, name, _sequence(getattr(self, name)))
        for name in ("minimum_payment", "refund_second_approval_above"):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, _frozen(value))

    def __hash__(self) -> int:
        return hash(tuple(_hashable(getattr(self, f.name)) for f in fields(self)))

    @property
    def waterfall_components(self) -> tuple[Component, ...]:
        """The waterfall as components (for a validated policy)."""
        return tuple(Component(name) for name in self.waterfall)

    def validate(self) -> list[str]:
        """The waterfall names each component once, retries fall on rising days, the break rules
        and the amount tables are sound."""
        problems = self._waterfall_problems() + self._retry_problems()
        problems += _amount_table_problems("payments.minimum_payment", self.minimum_payment)
        problems += _amount_table_problems(
            "payments.refund_second_approval_above", self.refund_second_approval_above
        )
        problems += _range_problem(
            "payments.plan_break_consecutive_misses", self.plan_break_consecutive_misses, 1, 12
        )
        problems += _range_problem("payments.plan_break_overdue_days", self.plan_break_overdue_days, 1, 365)
        return problems

    def _waterfall_problems(self) -> list[str]:
        names = [str(component) for component in Component]
        waterfall = self.waterfall
        if (
            not isinstance(waterfall, tuple)
            or not all(isinstance(name, str) for name in waterfall)
            or sorted(map(str, waterfall)) != sorted(names)
        ):
            return [f"payments.waterfall must list each of {', '.join(names)} exactly once."]
        return []

    def _retry_problems(self) -> list[str]:
        days = self.autopay_retry_days
        where = "payments.autopay_retry_days"
        if not isinstance(days, tuple) or not all(map(_is_whole, days)):
            return [f"{where} must be a list of whole days."]
        problems: list[str] = []
        if len(days) > MAX_AUTOPAY_RETRIES:
            problems.append(f"{where} can have at most {MAX_AUTOPAY_RETRIES} retries.")
        if any(not 1 <= day <= MAX_RETRY_DAYS for day in days):
            problems.append(f"{where} must each be from 1 to {MAX_RETRY_DAYS} days after the due date.")
        if any(later <= earlier for earlier, later in pairwise(days)):
            problems.append(f"{where} must rise from each retry to the next.")
        return problems

    def to_dict(self) -> dict[str, object]:
        """Plain JSON values: lists for the waterfall and retry days."""
        data: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                data[f.name] = dict(value)
            elif isinstance(value, tuple):
                data[f.name] = [str(item) if isinstance(item, str) else item for item in value]
            else:
                data[f.name] = value
        return data

    @classmethod
    def from_dict(cls, data: object) -> PaymentsPolicy:
        """Build the section from stored values; a missing setting takes its default, an unknown
        one refuses the policy."""
        return cls(**_settings(data, "payments", (f.name for f in fields(cls))))  # type: ignore[arg-type]


# --- Collections: stage strategies as data, message templates, the contact rule pack -----------


def _steps(value: object) -> object:
    # Stored as a JSON list; kept as a tuple so the policy stays frozen.
    if isinstance(value, list | tuple):
        return tuple(value)
    return value


@dataclass(frozen=True)
class CollectionsPolicy:
    """The collections section: per stage, which actions fall due on which days; the message
    templates per language; and which contact rule pack gates every message and call."""

    strategies: Mapping[str, tuple[StrategyStep, ...]] = field(default_factory=default_strategies)
    """Stage -> steps; a stage left out has no automatic actions."""
    templates: Mapping[str, Mapping[str, str]] = field(default_factory=default_templates)
    """Template name -> language -> text with ``{placeholders}``."""
    contact_rule_pack: str = "CN"
    """The code of the `workflows.contact_policy` rule pack that applies."""

    def __post_init__(self) -> None:
        if isinstance(self.strategies, Mapping):
            object.__setattr__(
                self,
                "strategies",
                MappingProxyType({str(stage): _steps(steps) for stage, steps in self.strategies.items()}),
            )
        if isinstance(self.templates, Mapping):
            object.__setattr__(
                self,
                "templates",
                MappingProxyType(
                    {
                        key: MappingProxyType(dict(texts)) if isinstance(texts, Mapping) else texts
                        for key, texts in self.templates.items()
                    }
                ),
            )

    def __hash__(self) -> int:
        return hash(tuple(_hashable(getattr(self, f.name)) for f in fields(self)))

    def validate(self) -> list[str]:
        problems = template_problems(self.templates, "collections.templates")
        problems += strategy_problems(self.strategies, self.templates, "collections.strategies")
        if self.contact_rule_pack not in CONTACT_PACKS:
            problems.append(
                f"collections.contact_rule_pack must be one of {', '.join(sorted(CONTACT_PACKS))}."
            )
        return problems

    def stage_range_problems(self, ranges: Mapping[str, tuple[int, int | None]]) -> list[str]:
        """A step anchored on a day past due must fall inside its stage's days, or it never fires."""
        problems: list[str] = []
        for stage, steps in self.strategies.items():
            low, high = ranges.get(stage, (0, None))
            for step in steps:
                if step.anchor != "dpd" or stage in ("legal", "charged_off"):
                    continue
                if step.day < low or (high is not None and step.day >= high):
                    span = f"{low} and {high - 1}" if high is not None else f"{low} or more"
                    problems.append(
                        f"collections.strategies.{stage}.{step.key}.day {step.day} is outside the {stage}"
                        f" stage (days past due {span}): it would never fire."
                    )
        return problems

    def to_dict(self) -> dict[str, object]:
        return {
            "strategies": {stage: [s.to_dict() for s in steps] for stage, steps in self.strategies.items()},
            "templates": {key: dict(texts) for key, texts in self.templates.items()},
            "contact_rule_pack": self.contact_rule_pack,
        }

    @classmethod
    def from_dict(cls, data: object) -> CollectionsPolicy:
        """Build the section from stored values; a missing setting takes its default, an unknown
        one refuses the policy."""
        settings = _settings(data, "collections", (f.name for f in fields(cls)))
        if "strategies" in settings:
            stages = _settings(settings["strategies"], "collections.strategies", map(str, Stage))
            strategies: dict[str, tuple[StrategyStep, ...]] = {}
            for stage, steps in stages.items():
                if not isinstance(steps, list | tuple):
                    raise _invalid(f"collections.strategies.{stage} must be a list of steps.")
                strategies[stage] = tuple(
                    StrategyStep.from_dict(step, f"collections.strategies.{stage}[{n}]")
                    for n, step in enumerate(steps)
                )
            settings["strategies"] = strategies
        return cls(**settings)  # type: ignore[arg-type]  # validate() checks every value


@dataclass(frozen=True)
class Policy:
    """The thresholds and amounts an admin sets; all day counts are days past due."""

    early_from_dpd: int = 1
    mid_from_dpd: int = 31
    late_from_dpd: int = 91
    charge_off_dpd: int = 180
    late_fee_grace_days: int = 5
    late_fee_amount: Mapping[str, int] = field(
        default_factory=lambda: _frozen({"CNY": 5000, "USD": 1500, "EUR": 1500})
    )
    late_fee_cap_per_account: Mapping[str, int] = field(
        default_factory=lambda: _frozen({"CNY": 50000, "USD": 15000, "EUR": 15000})
    )
    call_from_dpd: int = 31
    letter_from_dpd: int = 31
    credit_bureau_report_dpd: int = 90
    home_visit_from_dpd: int = 91
    legal_review_dpd: int = 120
    hardship: HardshipPolicy = field(default_factory=HardshipPolicy)
    payments: PaymentsPolicy = field(default_factory=PaymentsPolicy)
    collections: CollectionsPolicy = field(default_factory=CollectionsPolicy)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)

    def __post_init__(self) -> None:
        # Copy the caller's dicts so later edits to them cannot change a policy in force.
        for name in _MONEY_FIELDS:
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, _frozen(value))

    def __hash__(self) -> int:
        # MappingProxyType is unhashable, so the fee tables are hashed by their items; this
        # keeps a policy usable as a cache key.
        return hash(
            tuple(
                tuple(sorted(value.items())) if isinstance(value, Mapping) else value
                for value in (getattr(self, f.name) for f in fields(self))
            )
        )

    def validate(self) -> list[str]:
        """A policy is usable only if the stages follow each other and every fee is known and capped."""
        return list(self._problems)

    @cached_property
    def _problems(self) -> tuple[str, ...]:
        """``validate``'s answer, worked out once: a policy is frozen, and the borrower's dashboard
        asks for every account's timeline on every request."""
        # Each check assumes the ones before it passed, so stop at the first that finds problems.
        for check in (
            self._day_problems,
            self._amount_problems,
            self._cap_problems,
            self._hardship_problems,
            self._payments_problems,
            self._collections_problems,
            self._retention_problems,
        ):
            problems = check()
            if problems:
                return tuple(problems)
        return ()

    def _day_problems(self) -> list[str]:
        problems: list[str] = []
        for name in (f.name for f in fields(self) if f.name not in (*_MONEY_FIELDS, *_SECTIONS)):
            value = getattr(self, name)
            # A grace of zero days is a legitimate (strict) choice; a threshold of zero is not,
            # because day zero is the due date itself.
            minimum = 0 if name == "late_fee_grace_days" else 1
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{name} must be a whole number of days.")
            elif value < minimum:
                problems.append(f"{name} must be at least {minimum}.")
        if not problems and not (
            self.early_from_dpd < self.mid_from_dpd < self.late_from_dpd < self.charge_off_dpd
        ):
            problems.append(
                "Stage thresholds must increase: early_from_dpd < mid_from_dpd"
                " < late_from_dpd < charge_off_dpd."
            )
        return problems

    def _amount_problems(self) -> list[str]:
        problems: list[str] = []
        for name in _MONEY_FIELDS:
            amounts = getattr(self, name)
            if not isinstance(amounts, Mapping):
                problems.append(f"{name} must map currency codes to amounts.")
                continue
            for currency, amount in amounts.items():
                if currency not in CURRENCY_EXPONENTS:
                    problems.append(f"{name} has an unknown currency {currency!r}.")
                if isinstance(amount, bool) or not isinstance(amount, int):
                    problems.append(f"{name}[{currency!r}] must be whole minor units.")
                elif amount < 0:
                    problems.append(f"{name}[{currency!r}] cannot be negative.")
        return problems

    def _cap_problems(self) -> list[str]:
        problems: list[str] = []
        for currency, fee in self.late_fee_amount.items():
            cap = self.late_fee_cap_per_account.get(currency)
            if cap is None:
                problems.append(f"The late fee in {currency} has no cap per account.")
            elif fee > cap:
                problems.append(f"The late fee in {currency} is larger than its cap per account.")
        return problems

    def _hardship_problems(self) -> list[str]:
        if not isinstance(self.hardship, HardshipPolicy):
            return ["hardship must be a hardship section."]
        return self.hardship.validate()

    def _payments_problems(self) -> list[str]:
        if not isinstance(self.payments, PaymentsPolicy):
            return ["payments must be a payments section."]
        return self.payments.validate()

    def _collections_problems(self) -> list[str]:
        if not isinstance(self.collections, CollectionsPolicy):
            return ["collections must be a collections section."]
        return self.collections.validate()

    def _retention_problems(self) -> list[str]:
        if not isinstance(self.retention, RetentionPolicy):
            return ["retention must be a retention section."]
        return self.retention.validate()

    def collections_warnings(self) -> list[str]:
        """Strategy steps that can never fire under these thresholds (a day past due outside its
        stage): shown to the admin, not refused, so thresholds can move before the strategies."""
        return self.collections.stage_range_problems(
            {
                "current": (0, self.early_from_dpd),
                "early": (self.early_from_dpd, self.mid_from_dpd),
                "mid": (self.mid_from_dpd, self.late_from_dpd),
                "late": (self.late_from_dpd, self.charge_off_dpd),
            }
        )

    def to_dict(self) -> dict[str, object]:
        """The policy as plain JSON-ready values."""
        data: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, HardshipPolicy | PaymentsPolicy | CollectionsPolicy | RetentionPolicy):
                data[f.name] = value.to_dict()
            else:
                data[f.name] = dict(value) if isinstance(value, Mapping) else value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Policy:
        """Build a policy from stored values; missing settings take their defaults, and an
        unknown or inconsistent setting refuses the whole policy."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DomainError(
                "policy_invalid",
                "The policy is invalid: {problems}",
                problems=f"unknown settings {', '.join(map(str, unknown))}.",
            )
        settings = dict(data)
        if "hardship" in settings:
            settings["hardship"] = HardshipPolicy.from_dict(settings["hardship"])
        if "payments" in settings:
            settings["payments"] = PaymentsPolicy.from_dict(settings["payments"])
        if "collections" in settings:
            settings["collections"] = CollectionsPolicy.from_dict(settings["collections"])
        if "retention" in settings:
            settings["retention"] = RetentionPolicy.from_dict(settings["retention"])
        policy = cls(**settings)  # type: ignore[arg-type]  # validate() checks every value's type
        problems = policy.validate()
        if problems:
            raise DomainError(
                "policy_invalid",
                "The policy is invalid: {problems}",
                problems=" ".join(problems),
            )
        return policy


DEFAULT_POLICY = Policy()
