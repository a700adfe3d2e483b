"""Income and expenditure, in the shape of the UK Standard Financial Statement (SFS).

A borrower states what comes in and goes out, each line in the frequency they know it by
(weekly wages, monthly rent). The assessment turns that into monthly figures, works out what is
left each month, and compares each cost with the policy's reference spending for a household of
that size. A cost above the reference asks for a short explanation; it never rejects anything
by itself, because real households differ.

Conversions are exact: a line's annual figure is kept as a whole number (weekly x 52,
fortnightly x 26, four-weekly x 13, monthly x 12) and a monthly figure is rounded once from it,
banker's rounding, when it is shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING

from workflows.errors import DomainError
from workflows.money import check_currency, require_int, round_half_even

if TYPE_CHECKING:
    from workflows.policy import HardshipPolicy


class Frequency(StrEnum):
    """How often a line's amount comes in or goes out."""

    WEEKLY = "weekly"
    FORTNIGHTLY = "fortnightly"
    FOUR_WEEKLY = "four_weekly"
    MONTHLY = "monthly"


PERIODS_PER_YEAR: Mapping[Frequency, int] = MappingProxyType(
    {Frequency.WEEKLY: 52, Frequency.FORTNIGHTLY: 26, Frequency.FOUR_WEEKLY: 13, Frequency.MONTHLY: 12}
)


def to_monthly(annual: int) -> int:
    """The monthly figure shown for an exact annual one: annual / 12, banker's rounded once."""
    return round_half_even(annual, 12)


class BudgetSection(StrEnum):
    """The parts of the statement, in the order it is filled in."""

    INCOME = "income"
    FIXED_COSTS = "fixed_costs"
    FLEXIBLE_COSTS = "flexible_costs"
    PRIORITY_DEBTS = "priority_debts"
    NON_PRIORITY_DEBTS = "non_priority_debts"


class BudgetCategory(StrEnum):
    """One field of the statement; the order here is the order of the form and of every list."""

    # Income
    EARNINGS = "earnings"
    PARTNER_EARNINGS = "partner_earnings"
    BENEFITS = "benefits"
    PENSION = "pension"
    MAINTENANCE_RECEIVED = "maintenance_received"
    OTHER_INCOME = "other_income"
    # Fixed costs
    HOUSING = "housing"
    """Rent or mortgage, ground rent and service charges."""
    UTILITIES = "utilities"
    """Electricity, gas, other fuel, water."""
    PROPERTY_TAX = "property_tax"
    """Council or property tax and property-management fees (物业费)."""
    INSURANCE = "insurance"
    CARE_COSTS = "care_costs"
    """Care for an adult: carers, care home, support at home."""
    OTHER_FIXED = "other_fixed"
    # Flexible costs
    FOOD_HOUSEKEEPING = "food_housekeeping"
    TRANSPORT = "transport"
    COMMUNICATIONS = "communications"
    """Phone, internet, TV and leisure."""
    CHILDCARE = "childcare"
    HEALTH = "health"
    PERSONAL_CLOTHING = "personal_clothing"
    """Clothes, shoes, toiletries, haircuts."""
    OTHER_FLEXIBLE = "other_flexible"
    # Priority debts: arrears whose non-payment costs a home, heating or liberty.
    PRIORITY_DEBT_PAYMENTS = "priority_debt_payments"
    """Payments towards rent, mortgage, tax or utility arrears, fines, child maintenance owed."""
    # Non-priority debts
    OTHER_CREDIT_PAYMENTS = "other_credit_payments"
    """Payments to other lenders: loans, cards, buy-now-pay-later (not the account being helped)."""


_INCOME = (
    BudgetCategory.EARNINGS,
    BudgetCategory.PARTNER_EARNINGS,
    BudgetCategory.BENEFITS,
    BudgetCategory.PENSION,
    BudgetCategory.MAINTENANCE_RECEIVED,
    BudgetCategory.OTHER_INCOME,
)
_FIXED = (
    BudgetCategory.HOUSING,
    BudgetCategory.UTILITIES,
    BudgetCategory.PROPERTY_TAX,
    BudgetCategory.INSURANCE,
    BudgetCategory.CARE_COSTS,
    BudgetCategory.OTHER_FIXED,
)
_FLEXIBLE = (
    BudgetCategory.FOOD_HOUSEKEEPING,
    BudgetCategory.TRANSPORT,
    BudgetCategory.COMMUNICATIONS,
    BudgetCategory.CHILDCARE,
    BudgetCategory.HEALTH,
    BudgetCategory.PERSONAL_CLOTHING,
    BudgetCategory.OTHER_FLEXIBLE,
)

SECTION_OF: Mapping[BudgetCategory, BudgetSection] = MappingProxyType(
    {
        **dict.fromkeys(_INCOME, BudgetSection.INCOME),
        **dict.fromkeys(_FIXED, BudgetSection.FIXED_COSTS),
        **dict.fromkeys(_FLEXIBLE, BudgetSection.FLEXIBLE_COSTS),
        BudgetCategory.PRIORITY_DEBT_PAYMENTS: BudgetSection.PRIORITY_DEBTS,
        BudgetCategory.OTHER_CREDIT_PAYMENTS: BudgetSection.NON_PRIORITY_DEBTS,
    }
)
"""The section each category belongs to."""

COST_CATEGORIES: tuple[BudgetCategory, ...] = _FIXED + _FLEXIBLE
"""The living costs that are compared with reference spending. Debt repayments are not: they are
what the creditors agreed, not a choice of lifestyle."""

_CATEGORY_VALUES = frozenset(BudgetCategory)

MAX_HOUSEHOLD_MEMBERS = 20
MAX_EXPLANATION_LENGTH = 1000


def _category(value: object) -> BudgetCategory:
    if isinstance(value, str) and value in _CATEGORY_VALUES:
        return BudgetCategory(value)
    raise DomainError(
        "budget_category_unknown", "{category} is not a budget category.", category=str(value)[:40]
    )


@dataclass(frozen=True)
class BudgetLine:
    """One amount the borrower entered: a category, whole minor units, and how often."""

    category: BudgetCategory
    amount: int
    frequency: Frequency = Frequency.MONTHLY

    def __post_init__(self) -> None:
        # The form posts strings; an unknown one is the borrower's mistake, told as such.
        object.__setattr__(self, "category", _category(self.category))
        if not (isinstance(self.frequency, str) and self.frequency in PERIODS_PER_YEAR):
            raise DomainError(
                "frequency_unknown", "{frequency} is not a frequency.", frequency=str(self.frequency)[:40]
            )
        object.__setattr__(self, "frequency", Frequency(self.frequency))
        if require_int(self.amount) < 0:
            raise DomainError("amount_negative", "The amount cannot be negative.")

    @property
    def annual(self) -> int:
        """The exact yearly amount: the amount times the periods in a year (52 weeks)."""
        return self.amount * PERIODS_PER_YEAR[self.frequency]


@dataclass(frozen=True)
class Household:
    """Who the budget keeps: `adults` (the borrower and any other adult living with them), children
    under 18, and `dependants` — anyone else the household supports who is neither, such as a
    parent cared for or an adult child in education. Reference spending counts a dependant like an
    additional adult."""

    adults: int = 1
    children: int = 0
    dependants: int = 0

    def __post_init__(self) -> None:
        for name, minimum in (("adults", 1), ("children", 0), ("dependants", 0)):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not (minimum <= value <= MAX_HOUSEHOLD_MEMBERS)
            ):
                raise DomainError(
                    "household_invalid",
                    "{field} must be a whole number from {minimum} to {maximum}.",
                    field=name,
                    minimum=minimum,
                    maximum=MAX_HOUSEHOLD_MEMBERS,
                )


@dataclass(frozen=True)
class CategoryCheck:
    """One living cost against its reference for this household."""

    category: BudgetCategory
    monthly: int
    reference: int | None
    """The policy's monthly reference for this household; None when the policy has none."""
    above_reference: bool
    """The exact cost is more than the reference (annual > 12 x reference)."""
    explained: bool
    """The borrower wrote a non-blank explanation for this category."""


@dataclass(frozen=True)
class Assessment:
    """The statement worked out: monthly totals, what is left, and which costs need a word of
    explanation. Exact annual figures are kept alongside the rounded monthly ones."""

    currency: str
    household: Household
    annual_by_category: Mapping[BudgetCategory, int]
    """Every category, in BudgetCategory order; 0 when nothing was entered."""
    annual_by_section: Mapping[BudgetSection, int]
    monthly_by_category: Mapping[BudgetCategory, int]
    monthly_by_section: Mapping[BudgetSection, int]
    """Each rounded once from the section's exact annual total."""
    disposable_monthly: int
    """Income less fixed costs, flexible costs, priority and non-priority debt payments, from the
    monthly section totals shown (so the summary adds up); negative when the budget falls short."""
    checks: tuple[CategoryCheck, ...]
    """One per living cost (COST_CATEGORIES), in that order."""
    needs_explanation: tuple[BudgetCategory, ...]
    """Costs above their reference that have no explanation yet, in category order."""

    @property
    def income_monthly(self) -> int:
        return self.monthly_by_section[BudgetSection.INCOME]

    @property
    def outgoings_monthly(self) -> int:
        """Everything but income: living costs and debt payments."""
        return self.income_monthly - self.disposable_monthly

    @property
    def complete(self) -> bool:
        """Every cost above its reference is explained."""
        return not self.needs_explanation


def reference_for(
    category: BudgetCategory, household: Household, currency: str, hardship_policy: HardshipPolicy
) -> int | None:
    """The monthly reference spending for a household: the first adult's figure, plus the figure
    for each other adult and each dependant, plus the figure for each child. None when the policy
    has no reference for the category in that currency."""
    amount = hardship_policy.reference_spending.get(currency, {}).get(category)
    if amount is None:
        return None
    others = household.adults - 1 + household.dependants
    return amount.first_adult + amount.each_other_adult * others + amount.each_child * household.children


def _explained(text: object, category: BudgetCategory) -> bool:
    if not isinstance(text, str):
        return False
    if len(text) > MAX_EXPLANATION_LENGTH:
        raise DomainError(
            "explanation_too_long",
            "The explanation for {category} is longer than {maximum} characters.",
            category=category,
            maximum=MAX_EXPLANATION_LENGTH,
        )
    return bool(text.strip())


def _monthly_guard(currency: str, hardship_policy: HardshipPolicy) -> int:
    check_currency(currency)
    maximum = hardship_policy.max_monthly_amount.get(currency)
    if maximum is None:
        raise DomainError(
            "currency_not_supported",
            "Income and expenditure in {currency} cannot be assessed: the policy has no figures for it.",
            currency=currency,
        )
    return maximum


def _check_annual(category: BudgetCategory, annual: int, currency: str, maximum: int) -> None:
    if annual > 12 * maximum:
        raise DomainError(
            "amount_too_large",
            "{category} comes to more than {maximum} a month.",
            category=category,
            maximum=maximum,
            currency=currency,
        )


def check_line(line: BudgetLine, currency: str, hardship_policy: HardshipPolicy) -> None:
    """Refuse a single line the assessment would refuse: an unknown or unsupported currency, or an
    amount that comes to more than the policy's `max_monthly_amount` a month."""
    _check_annual(line.category, line.annual, currency, _monthly_guard(currency, hardship_policy))


def assess(
    lines: Iterable[BudgetLine],
    household: Household,
    currency: str,
    hardship_policy: HardshipPolicy,
    explanations: Mapping[BudgetCategory, str] | None = None,
) -> Assessment:
    """Work out a statement: lines in one category add up, each category's exact annual figure
    is checked against the policy's guard for absurd input, section totals and what is left each
    month are computed, and each living cost is compared with its reference.

    Refused: an unknown currency, a currency the hardship policy has no figures for, and a
    category that comes to more than the policy's `max_monthly_amount` a month."""
    maximum = _monthly_guard(currency, hardship_policy)
    annual = dict.fromkeys(BudgetCategory, 0)
    for line in lines:
        if not isinstance(line, BudgetLine):
            raise DomainError("budget_line_invalid", "Each line needs a category, an amount and a frequency.")
        annual[line.category] += line.annual
    for category, amount in annual.items():
        _check_annual(category, amount, currency, maximum)
    by_section = dict.fromkeys(BudgetSection, 0)
    for category, amount in annual.items():
        by_section[SECTION_OF[category]] += amount
    monthly_by_section = {section: to_monthly(amount) for section, amount in by_section.items()}
    disposable = monthly_by_section[BudgetSection.INCOME] - sum(
        amount for section, amount in monthly_by_section.items() if section != BudgetSection.INCOME
    )
    given = explanations or {}
    explained = {
        _category(category): _explained(text, _category(category)) for category, text in given.items()
    }
    checks = []
    for category in COST_CATEGORIES:
        reference = reference_for(category, household, currency, hardship_policy)
        checks.append(
            CategoryCheck(
                category=category,
                monthly=to_monthly(annual[category]),
                reference=reference,
                above_reference=reference is not None and annual[category] > 12 * reference,
                explained=explained.get(category, False),
            )
        )
    return Assessment(
        currency=currency,
        household=household,
        annual_by_category=MappingProxyType(annual),
        annual_by_section=MappingProxyType(by_section),
        monthly_by_category=MappingProxyType({c: to_monthly(a) for c, a in annual.items()}),
        monthly_by_section=MappingProxyType(monthly_by_section),
        disposable_monthly=disposable,
        checks=tuple(checks),
        needs_explanation=tuple(c.category for c in checks if c.above_reference and not c.explained),
    )
