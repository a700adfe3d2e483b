"""Relief offers: what a borrower in hardship may take at once, and how any offer is checked.

The system offers only what the policy pre-approves for the account's stage (`ReliefLimits`) and
what the borrower's budget can carry. Every offer is concrete — what is waived, the schedule, the
first due date, the expiry — and exact: its instalments add up to what it asks for, and

    total_repayable + total_waived == covered_total + interest_charged

where `covered` is the part of the balance the offer deals with (the arrears for an instalment
plan, the whole balance for a term extension or a settlement, nothing for a payment holiday on
its own) and `interest_charged` is interest the offer's own schedule adds.

An offer is named by its `key`, which spells out its terms ("fee_waiver+instalment_plan:6"), so a
key posted back by the browser is never trusted: the offer is regenerated from the key and the
account's current position, and a key the system would not offer now is refused. An agent's
counter-offer (`counter_offer`) is keyed by its `CounterTerms` ("counter:instalments:12+rate:900"),
from which the portal rebuilds it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import date, timedelta
from enum import StrEnum
from types import MappingProxyType

from workflows.errors import DomainError
from workflows.money import Component, allocate, check_currency, require_int
from workflows.policy import BASIS_POINTS, MAX_HOLIDAY_MONTHS, MAX_PLAN_MONTHS, Policy, ReliefLimits, Stage
from workflows.schedules import (
    MAX_RATE_BP,
    Schedule,
    accrued_interest,
    add_months,
    amortised,
    equal_instalments,
    from_amounts,
    level_payment,
)

MAX_OFFERS = 6
"""A phone screen compares a handful of options, not a catalogue."""

MAX_KEY_LENGTH = 200


class ReliefType(StrEnum):
    INSTALMENT_PLAN = "instalment_plan"
    TERM_EXTENSION = "term_extension"
    INTEREST_RELIEF = "interest_relief"
    FEE_WAIVER = "fee_waiver"
    PAYMENT_HOLIDAY = "payment_holiday"
    SETTLEMENT = "settlement"


class OfferOrigin(StrEnum):
    SYSTEM = "system"
    """Pre-approved within policy: the borrower may accept at once."""
    BORROWER = "borrower"
    """The borrower's own proposal, for review."""
    AGENT = "agent"
    """A counter-offer."""


class OfferScope(StrEnum):
    """What part of the debt the offer deals with."""

    ARREARS = "arrears"
    """The overdue amount; the contract's regular instalments carry on alongside."""
    BALANCE = "balance"
    """The whole balance; the offer replaces the contract's repayments."""
    DEFERRAL = "deferral"
    """Nothing is repaid: payments stop for a while (a payment holiday on its own)."""


class FeeTreatment(StrEnum):
    """What happens to the account's fees, for the portal to word."""

    NONE = "none"
    """The account has no fees."""
    UNCHANGED = "unchanged"
    """The offer does not deal with them."""
    REPAID = "repaid"
    """They are repaid within the plan."""
    WAIVED = "waived"
    """Those the offer deals with are waived in full."""
    PARTLY_WAIVED = "partly_waived"


class InterestTreatment(StrEnum):
    """What happens to interest, for the portal to word."""

    CONTRACTUAL = "contractual"
    """The contract keeps charging interest as before (an arrears plan)."""
    CHARGED = "charged"
    """The plan charges interest at `annual_rate_bp` throughout."""
    FROZEN = "frozen"
    """No interest while the offer runs."""
    FROZEN_THEN_CHARGED = "frozen_then_charged"
    """No interest for `interest_frozen_months`, then `annual_rate_bp`."""
    SETTLED = "settled"
    """Full and final: nothing more is charged once the settlement is paid."""


_PLANS = frozenset({ReliefType.INSTALMENT_PLAN, ReliefType.TERM_EXTENSION})


def _invalid_position(problem: str) -> DomainError:
    return DomainError("position_invalid", "The account position is invalid: {problem}", problem=problem)


@dataclass(frozen=True)
class AccountPosition:
    """Where one account stands today; amounts in minor units of its currency."""

    currency: str
    principal: int
    interest: int
    fees: int
    overdue_amount: int
    """The arrears: what is due and unpaid, part of the balance."""
    contractual_instalment: int
    """The regular monthly amount of the contract (0 for a card without one)."""
    annual_rate_bp: int
    stage: Stage
    dpd: int
    oldest_unpaid_due_on: date | None

    def __post_init__(self) -> None:
        check_currency(self.currency)
        for name in ("principal", "interest", "fees", "overdue_amount", "contractual_instalment", "dpd"):
            if require_int(getattr(self, name), name) < 0:
                raise _invalid_position(f"{name} cannot be negative.")
        if not 0 <= require_int(self.annual_rate_bp, "annual_rate_bp") <= MAX_RATE_BP:
            raise _invalid_position(f"annual_rate_bp must be from 0 to {MAX_RATE_BP}.")
        if self.overdue_amount > self.balance:
            raise _invalid_position("the overdue amount is more than the balance.")
        if not (isinstance(self.stage, str) and self.stage in frozenset(Stage)):
            raise _invalid_position(f"{str(self.stage)[:40]} is not a stage.")
        object.__setattr__(self, "stage", Stage(self.stage))

    @property
    def balances(self) -> Mapping[Component, int]:
        return MappingProxyType(
            {
                Component.PRINCIPAL: self.principal,
                Component.INTEREST: self.interest,
                Component.FEES: self.fees,
            }
        )

    @property
    def balance(self) -> int:
        """Everything owed: principal, interest and fees."""
        return self.principal + self.interest + self.fees


def _components(values: Mapping[Component, int]) -> Mapping[Component, int]:
    return MappingProxyType({component: values.get(component, 0) for component in Component})


@dataclass(frozen=True)
class Offer:
    """Concrete terms a borrower can accept, compare and sign.

    `total_saved` is what the offer spares the borrower, honestly counted: the amounts waived,
    plus the interest the offer does not charge that the account's contractual rate would have
    charged on the same repayments — the same amount over the same months, holiday included,
    accrued monthly by the schedule rule (never below zero). Interest the contract keeps charging
    (an arrears plan) and interest a settled debt might have gathered in future are not counted.
    """

    key: str
    """The terms, canonically spelled; see `offer_from_key`."""
    origin: OfferOrigin
    currency: str
    scope: OfferScope
    reliefs: frozenset[ReliefType]
    covered: Mapping[Component, int]
    """The part of the balance the offer deals with, per component."""
    waived: Mapping[Component, int]
    """Per component; never more than `covered`."""
    schedule: Schedule
    """What the borrower pays under the offer; its `interest` is interest the offer charges."""
    holiday_months: int
    """Months with nothing to pay before the first instalment."""
    interest_frozen_months: int
    """Months, from today and holiday months first, in which no interest is charged."""
    annual_rate_bp: int
    """The rate the offer's schedule charges after any frozen months (0 when it charges none)."""
    settlement_amount: int | None
    """The lump sum that settles the debt in full and final; None for every other offer."""
    monthly_payment: int
    """What leaves the borrower's account each month while the plan runs: the regular instalment,
    plus the contract's own instalment for an arrears plan; the lump sum of a settlement; 0 for a
    payment holiday on its own."""
    fees_after: FeeTreatment
    interest_treatment: InterestTreatment
    total_saved: int
    issued_on: date
    expires_on: date
    """The last day the offer can be accepted: issued_on + the policy's offer_valid_days."""
    end_on: date
    """The last day the offer asks anything: the last due date, or the end of a payment holiday."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reliefs", frozenset(self.reliefs))
        object.__setattr__(self, "covered", _components(self.covered))
        object.__setattr__(self, "waived", _components(self.waived))

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    @property
    def instalment_amount(self) -> int:
        """The regular instalment (every one but the last, which carries any rounding)."""
        return self.schedule.regular_amount

    @property
    def instalment_count(self) -> int:
        return self.schedule.count

    @property
    def first_due_on(self) -> date | None:
        return self.schedule.first_due_on

    @property
    def total_repayable(self) -> int:
        """Everything the offer asks the borrower to pay (the sum of its schedule)."""
        return self.schedule.total

    @property
    def interest_charged(self) -> int:
        return self.schedule.interest

    @property
    def total_waived(self) -> int:
        return sum(self.waived.values())

    @property
    def covered_total(self) -> int:
        return sum(self.covered.values())

    @property
    def largest_monthly_payment(self) -> int:
        """The most that leaves the borrower's account in any one month under the offer."""
        if self.scope == OfferScope.ARREARS:
            return self.schedule.largest_amount + (self.monthly_payment - self.instalment_amount)
        return self.schedule.largest_amount

    @property
    def fingerprint(self) -> str:
        """A SHA-256 over every term and figure: the same key with a different fingerprint means
        the figures moved (a payment, a day's interest) since the borrower saw them."""
        values: list[object] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                value = sorted((str(k), v) for k, v in value.items())
            elif isinstance(value, frozenset):
                value = sorted(map(str, value))
            elif isinstance(value, Schedule):
                value = (value.interest, [(i.due_on.isoformat(), i.amount) for i in value.instalments])
            elif isinstance(value, date):
                value = value.isoformat()
            elif isinstance(value, StrEnum):
                value = str(value)
            values.append(value)
        return hashlib.sha256(repr(values).encode()).hexdigest()


def offer_to_dict(offer: Offer) -> dict[str, object]:
    """The offer as plain JSON values (dates as ISO text), to store with the case or audit."""
    return {
        "key": offer.key,
        "origin": str(offer.origin),
        "currency": offer.currency,
        "scope": str(offer.scope),
        "reliefs": sorted(map(str, offer.reliefs)),
        "covered": {str(c): amount for c, amount in offer.covered.items()},
        "waived": {str(c): amount for c, amount in offer.waived.items()},
        "schedule": [
            {"number": i.number, "due_on": i.due_on.isoformat(), "amount": i.amount}
            for i in offer.schedule.instalments
        ],
        "interest_charged": offer.interest_charged,
        "holiday_months": offer.holiday_months,
        "interest_frozen_months": offer.interest_frozen_months,
        "annual_rate_bp": offer.annual_rate_bp,
        "settlement_amount": offer.settlement_amount,
        "monthly_payment": offer.monthly_payment,
        "instalment_amount": offer.instalment_amount,
        "instalment_count": offer.instalment_count,
        "total_repayable": offer.total_repayable,
        "total_waived": offer.total_waived,
        "total_saved": offer.total_saved,
        "fees_after": str(offer.fees_after),
        "interest_treatment": str(offer.interest_treatment),
        "issued_on": offer.issued_on.isoformat(),
        "expires_on": offer.expires_on.isoformat(),
        "end_on": offer.end_on.isoformat(),
        "fingerprint": offer.fingerprint,
    }


# --- Terms and keys -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Terms:
    plan: ReliefType | None
    """INSTALMENT_PLAN, TERM_EXTENSION, SETTLEMENT, or None for a payment holiday on its own."""
    count: int = 0
    fee_waiver: bool = False
    interest_waiver: bool = False
    freeze_months: int = 0
    holiday_months: int = 0
    settlement_amount: int = 0

    @property
    def key(self) -> str:
        tokens: list[str] = []
        if self.fee_waiver:
            tokens.append(ReliefType.FEE_WAIVER)
        if self.plan in _PLANS:
            tokens.append(f"{self.plan}:{self.count}")
        if self.plan == ReliefType.SETTLEMENT:
            tokens.append(f"{ReliefType.SETTLEMENT}:{self.settlement_amount}")
        if self.interest_waiver:
            tokens.append(f"{ReliefType.INTEREST_RELIEF}:waive")
        if self.freeze_months:
            tokens.append(f"{ReliefType.INTEREST_RELIEF}:freeze{self.freeze_months}")
        if self.holiday_months:
            tokens.append(f"{ReliefType.PAYMENT_HOLIDAY}:{self.holiday_months}")
        return "+".join(sorted(tokens))

    def problem(self) -> str | None:
        """Why these terms make no offer on any account, or None."""
        waives = self.fee_waiver or self.interest_waiver
        if self.plan is None:
            checks = [
                (self.holiday_months == 0 or waives, "a payment holiday on its own waives nothing"),
                (
                    self.freeze_months not in (0, self.holiday_months),
                    "a payment holiday on its own freezes interest for exactly its months",
                ),
            ]
        elif self.plan == ReliefType.SETTLEMENT:
            checks = [
                (
                    waives or self.freeze_months > 0 or self.holiday_months > 0,
                    "a settlement is not combined with other relief",
                ),
                (self.settlement_amount < 1, "a settlement asks for something"),
            ]
        else:
            checks = [
                (
                    not 1 <= self.count <= MAX_PLAN_MONTHS,
                    f"a plan has from 1 to {MAX_PLAN_MONTHS} instalments",
                ),
                (
                    self.plan == ReliefType.INSTALMENT_PLAN
                    and (self.freeze_months > 0 or self.holiday_months > 0),
                    "an arrears plan leaves the contract's interest and instalments as they are",
                ),
                (
                    self.freeze_months > self.holiday_months + self.count,
                    "interest cannot be frozen for longer than the plan",
                ),
            ]
        checks.insert(
            0,
            (
                not 0 <= self.holiday_months <= MAX_HOLIDAY_MONTHS,
                f"a payment holiday is at most {MAX_HOLIDAY_MONTHS} months",
            ),
        )
        return next((reason for failed, reason in checks if failed), None)


_TOKEN = re.compile(
    r"(?P<name>fee_waiver|instalment_plan|term_extension|settlement|interest_relief|payment_holiday)"
    r"(?::(?P<value>waive|freeze[1-9][0-9]{0,2}|[1-9][0-9]{0,17}))?",
    re.ASCII,
)


def _parse(key: object) -> _Terms | None:
    """The terms a key spells, or None when it is not a canonical key."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        return None
    values: dict[str, object] = {}
    plan: ReliefType | None = None
    for token in key.split("+"):
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        name, value = match["name"], match["value"]
        if name == ReliefType.FEE_WAIVER and value is None:
            values["fee_waiver"] = True
        elif name == ReliefType.INTEREST_RELIEF and value == "waive":
            values["interest_waiver"] = True
        elif name == ReliefType.INTEREST_RELIEF and value is not None and value.startswith("freeze"):
            values["freeze_months"] = int(value.removeprefix("freeze"))
        elif name == ReliefType.PAYMENT_HOLIDAY and value is not None and value.isdigit():
            values["holiday_months"] = int(value)
        elif name in (*_PLANS, ReliefType.SETTLEMENT) and value is not None and value.isdigit():
            if plan is not None:
                return None
            plan = ReliefType(name)
            values["settlement_amount" if plan == ReliefType.SETTLEMENT else "count"] = int(value)
        else:
            return None
    terms = _Terms(plan=plan, **values)  # type: ignore[arg-type]
    # Repeated or reordered tokens spell the same terms differently: only one spelling is a key.
    if terms.key != key or terms.problem() is not None:
        return None
    return terms


# --- Building an offer --------------------------------------------------------------------------


def _terms_invalid(reason: str) -> DomainError:
    return DomainError(
        "offer_terms_invalid", "These terms cannot be offered on this account: {reason}.", reason=reason
    )


def _check_policy(policy: Policy) -> None:
    problems = policy.validate()
    if problems:
        raise DomainError("policy_invalid", "The policy is invalid: {problems}", problems=" ".join(problems))


def _fee_treatment(position: AccountPosition, covered: Mapping[Component, int], waived: int) -> FeeTreatment:
    if position.fees == 0:
        return FeeTreatment.NONE
    if covered.get(Component.FEES, 0) == 0:
        return FeeTreatment.UNCHANGED
    if waived == 0:
        return FeeTreatment.REPAID
    if waived == covered[Component.FEES]:
        return FeeTreatment.WAIVED
    return FeeTreatment.PARTLY_WAIVED


def _interest_treatment(rate_bp: int, frozen: int, span: int) -> InterestTreatment:
    if frozen == 0:
        return InterestTreatment.CHARGED
    if frozen >= span or rate_bp == 0:
        return InterestTreatment.FROZEN
    return InterestTreatment.FROZEN_THEN_CHARGED


def _cover(terms: _Terms, position: AccountPosition) -> tuple[OfferScope, Mapping[Component, int]]:
    if terms.plan == ReliefType.INSTALMENT_PLAN:
        if position.overdue_amount == 0:
            raise _terms_invalid("nothing is overdue")
        # The arrears are taken to be fees first, then interest, then principal: charges fall
        # due at once, the loan itself by instalments.
        return OfferScope.ARREARS, allocate(position.overdue_amount, position.balances).applied
    if terms.plan is None:
        return OfferScope.DEFERRAL, _components({})
    return OfferScope.BALANCE, position.balances


def _waive(terms: _Terms, covered: Mapping[Component, int]) -> dict[Component, int]:
    waived = dict.fromkeys(Component, 0)
    for wanted, component in (
        (terms.fee_waiver, Component.FEES),
        (terms.interest_waiver, Component.INTEREST),
    ):
        if wanted:
            if covered[component] == 0:
                raise _terms_invalid(f"there are no {component} to waive")
            waived[component] = covered[component]
    return waived


@dataclass(frozen=True)
class _Repayment:
    schedule: Schedule
    interest: InterestTreatment
    rate_bp: int = 0
    forgone_interest: int = 0
    settlement_amount: int | None = None


def _repayment(terms: _Terms, position: AccountPosition, to_repay: int, first_due: date) -> _Repayment:
    """The schedule the terms ask for, and what they do to interest."""
    currency, rate, holiday = position.currency, position.annual_rate_bp, terms.holiday_months
    if terms.plan == ReliefType.SETTLEMENT:
        if terms.settlement_amount >= position.balance:
            raise _terms_invalid("a settlement asks for less than the balance")
        return _Repayment(
            schedule=equal_instalments(terms.settlement_amount, 1, first_due, currency),
            interest=InterestTreatment.SETTLED,
            settlement_amount=terms.settlement_amount,
        )
    if terms.plan is None:
        if rate and not terms.freeze_months:
            raise _terms_invalid("a payment holiday on its own freezes interest for its months")
        return _Repayment(
            schedule=Schedule(currency, ()),
            interest=InterestTreatment.FROZEN if terms.freeze_months else InterestTreatment.CHARGED,
            forgone_interest=accrued_interest(position.balance, rate, holiday),
        )
    if to_repay < terms.count:
        raise _terms_invalid("there is too little left to repay in that many instalments")
    if terms.plan == ReliefType.INSTALMENT_PLAN:
        return _Repayment(
            schedule=equal_instalments(to_repay, terms.count, first_due, currency),
            interest=InterestTreatment.CONTRACTUAL,
        )
    schedule = amortised(
        to_repay,
        rate,
        terms.count,
        first_due,
        currency,
        interest_free_months=terms.freeze_months,
        deferred_months=holiday,
    )
    at_contract_rate = amortised(to_repay, rate, terms.count, first_due, currency, deferred_months=holiday)
    return _Repayment(
        schedule=schedule,
        interest=_interest_treatment(rate, terms.freeze_months, holiday + terms.count),
        rate_bp=rate,
        # Rounding in a plan of a few fen a month can tip the difference below zero; a freeze is
        # never reported as costing the borrower.
        forgone_interest=max(at_contract_rate.interest - schedule.interest, 0),
    )


def _build(
    terms: _Terms, position: AccountPosition, policy: Policy, today: date, origin: OfferOrigin
) -> Offer:
    problem = terms.problem()
    if problem is not None:
        raise _terms_invalid(problem)
    if terms.freeze_months and position.annual_rate_bp == 0:
        raise _terms_invalid("the account charges no interest to freeze")
    scope, covered = _cover(terms, position)
    waived = _waive(terms, covered)
    holiday = terms.holiday_months
    to_repay = sum(covered.values()) - sum(waived.values())
    repayment = _repayment(terms, position, to_repay, add_months(today, holiday + 1))
    reliefs = {terms.plan} if terms.plan else set()
    if repayment.settlement_amount is not None:
        # The waiver takes fees first, then interest, then principal: the cost of credit goes
        # before the credit itself.
        waived = dict(allocate(position.balance - repayment.settlement_amount, position.balances).applied)
    if terms.fee_waiver:
        reliefs.add(ReliefType.FEE_WAIVER)
    if terms.interest_waiver or terms.freeze_months:
        reliefs.add(ReliefType.INTEREST_RELIEF)
    if holiday:
        reliefs.add(ReliefType.PAYMENT_HOLIDAY)
    schedule = repayment.schedule
    contractual = position.contractual_instalment if scope == OfferScope.ARREARS else 0
    return Offer(
        key=terms.key,
        origin=origin,
        currency=position.currency,
        scope=scope,
        reliefs=frozenset(reliefs),
        covered=covered,
        waived=waived,
        schedule=schedule,
        holiday_months=holiday,
        interest_frozen_months=terms.freeze_months,
        annual_rate_bp=repayment.rate_bp,
        settlement_amount=repayment.settlement_amount,
        monthly_payment=schedule.regular_amount + contractual,
        fees_after=_fee_treatment(position, covered, waived[Component.FEES]),
        interest_treatment=repayment.interest,
        total_saved=sum(waived.values()) + repayment.forgone_interest,
        issued_on=today,
        expires_on=today + timedelta(days=policy.hardship.offer_valid_days),
        end_on=schedule.last_due_on or add_months(today, holiday),
    )


def offer_from_key(
    key: str, position: AccountPosition, policy: Policy, today: date, *, origin: OfferOrigin
) -> Offer:
    """The offer a key spells, on this account today — for an agent's counter-offer, or to show a
    borrower what terms they picked. Whether it is within the stage's limits is a separate
    question: see `check_within_limits`.

    Key grammar: tokens joined by "+" in sorted order, each once: `fee_waiver`,
    `instalment_plan:N` (the arrears in N equal instalments, on top of the contract's own),
    `term_extension:N` (the whole balance re-amortised over N months at the contract rate),
    `settlement:AMOUNT` (a lump sum in minor units, full and final), `interest_relief:waive`
    (accrued interest waived), `interest_relief:freezeM` (no interest for the first M months),
    `payment_holiday:H` (nothing to pay for H months first). A settlement stands alone; a payment
    holiday on its own freezes interest for its months (`interest_relief:freezeH`)."""
    _check_policy(policy)
    terms = _parse(key)
    if terms is None:
        raise DomainError("offer_key_invalid", "{key} does not name an offer.", key=str(key)[:MAX_KEY_LENGTH])
    return _build(terms, position, policy, today, origin)


# --- Limits -------------------------------------------------------------------------------------


def _within_share(waived: int, balance: int, share_bp: int) -> bool:
    return waived * BASIS_POINTS <= share_bp * balance


def check_within_limits(offer: Offer, position: AccountPosition, policy: Policy) -> list[str]:
    """What in an offer goes beyond what the account's stage allows without review, as problem
    codes (empty when none): a system offer, a borrower's proposal or an agent's counter-offer.

    Codes: `currency_mismatch`, `offer_inconsistent` (its figures do not add up), `no_limits`
    (the stage has none), `settlement_not_allowed`, `settlement_below_minimum_share`,
    `waived_share_above_limit`, `waived_amount_above_limit`, `term_above_limit`,
    `instalment_below_minimum`, `holiday_above_limit`, `interest_freeze_above_limit`."""
    if offer.currency != position.currency:
        return ["currency_mismatch"]
    problems: list[str] = []
    if (
        offer.total_repayable + offer.total_waived != offer.covered_total + offer.interest_charged
        or any(offer.waived[c] > offer.covered[c] or offer.waived[c] < 0 for c in Component)
        or offer.covered_total > position.balance
    ):
        problems.append("offer_inconsistent")
    limits: ReliefLimits | None = policy.hardship.relief_limits.get(position.stage)
    if limits is None:
        return [*problems, "no_limits"]
    if ReliefType.SETTLEMENT in offer.reliefs:
        if not limits.allow_settlement:
            problems.append("settlement_not_allowed")
        if not _within_share(
            position.balance - offer.total_repayable,
            position.balance,
            BASIS_POINTS - limits.settlement_min_share_bp,
        ):
            problems.append("settlement_below_minimum_share")
    elif not _within_share(offer.total_waived, position.balance, limits.max_waived_share_bp):
        problems.append("waived_share_above_limit")
    if offer.total_waived > limits.max_waived_amount.get(offer.currency, 0):
        problems.append("waived_amount_above_limit")
    in_plan = bool(offer.reliefs & _PLANS)
    if (
        in_plan or offer.holiday_months
    ) and offer.holiday_months + offer.instalment_count > limits.max_term_months:
        problems.append("term_above_limit")
    if in_plan and offer.instalment_amount < max(limits.min_instalment.get(offer.currency, 1), 1):
        problems.append("instalment_below_minimum")
    if offer.holiday_months > limits.max_holiday_months:
        problems.append("holiday_above_limit")
    if offer.interest_frozen_months > limits.interest_freeze_max_months:
        problems.append("interest_freeze_above_limit")
    return problems


# --- Generating the system's offers -------------------------------------------------------------


def _affordable(offer: Offer, disposable_monthly: int) -> bool:
    if offer.scope == OfferScope.DEFERRAL:
        return True
    if ReliefType.SETTLEMENT in offer.reliefs and not offer.reliefs & _PLANS:
        # A lump sum comes from savings or family, not from the monthly budget.
        return disposable_monthly > 0
    return offer.largest_monthly_payment <= disposable_monthly


def _most_generous_waivers(
    covered: Mapping[Component, int], position: AccountPosition, limits: ReliefLimits
) -> tuple[bool, bool]:
    """The largest pre-approved waiver of the covered fees and interest: both, else the larger
    alone, else the smaller, else none — each all or nothing."""
    fees, interest = covered[Component.FEES], covered[Component.INTEREST]
    choices = [(fee, owed) for fee in (True, False) for owed in (True, False)]
    choices = [(fee, owed) for fee, owed in choices if (fees or not fee) and (interest or not owed)]
    choices.sort(key=lambda choice: (-(fees * choice[0] + interest * choice[1]), not choice[0]))
    cap = limits.max_waived_amount.get(position.currency, 0)
    for fee, owed in choices:
        waived = fees * fee + interest * owed
        if waived <= cap and _within_share(waived, position.balance, limits.max_waived_share_bp):
            return fee, owed
    return False, False


_Fits = Callable[[_Terms], "Offer | None"]


def _arrears_plan(position: AccountPosition, limits: ReliefLimits, minimum: int, fits: _Fits) -> list[Offer]:
    """The arrears in the fewest equal instalments the budget carries beside the contract's own."""
    covered = allocate(position.overdue_amount, position.balances).applied
    fee, owed = _most_generous_waivers(covered, position, limits)
    total = sum(covered.values()) - covered[Component.FEES] * fee - covered[Component.INTEREST] * owed
    for count in range(2, limits.max_term_months + 1):
        if total // count < minimum:
            break
        offer = fits(_Terms(ReliefType.INSTALMENT_PLAN, count, fee_waiver=fee, interest_waiver=owed))
        if offer is not None:
            return [offer]
    return []


def _extensions(
    position: AccountPosition,
    disposable: int,
    limits: ReliefLimits,
    minimum: int,
    *,
    holiday: int,
    fits: _Fits,
) -> list[Offer]:
    """The whole balance re-amortised after `holiday` months: the shortest term the budget carries
    and, for breathing room, the longest the stage allows (the lowest instalment)."""
    fee, owed = _most_generous_waivers(position.balances, position, limits)
    principal = position.balance - position.fees * fee - position.interest * owed
    freeze = limits.interest_freeze_max_months if position.annual_rate_bp else 0

    def terms(count: int) -> _Terms:
        return _Terms(
            ReliefType.TERM_EXTENSION,
            count,
            fee_waiver=fee,
            interest_waiver=owed,
            freeze_months=min(freeze, holiday + count),
            holiday_months=holiday,
        )

    def payment(count: int) -> int:
        return level_payment(
            principal,
            position.annual_rate_bp,
            count,
            interest_free_months=min(freeze, holiday + count),
            deferred_months=holiday,
        )

    # The regular payment falls as the term grows; the last instalment may carry a little
    # rounding, so each candidate is built and checked in full.
    counts = [
        c for c in range(2, limits.max_term_months - holiday + 1) if minimum <= payment(c) <= disposable
    ]
    shortest = next(filter(None, map(fits, map(terms, counts))), None)
    longest = next(filter(None, map(fits, map(terms, reversed(counts)))), None)
    return [offer for offer in (shortest, longest) if offer is not None]


def _settlement(position: AccountPosition, limits: ReliefLimits, fits: _Fits) -> list[Offer]:
    """A lump sum at the smallest amount the stage pre-approves (both its share and its cap)."""
    if not limits.allow_settlement:
        return []
    balance = position.balance
    at_least_share = -(-balance * limits.settlement_min_share_bp // BASIS_POINTS)  # rounded up
    at_least_cap = balance - limits.max_waived_amount.get(position.currency, 0)
    amount = max(at_least_share, at_least_cap, 1)
    offer = fits(_Terms(ReliefType.SETTLEMENT, settlement_amount=amount)) if amount < balance else None
    return [] if offer is None else [offer]


def _holidays(position: AccountPosition, limits: ReliefLimits, fits: _Fits) -> list[Offer]:
    """A payment holiday of each length allowed, interest frozen throughout."""
    offers = []
    for months in range(1, limits.max_holiday_months + 1):
        offer = fits(
            _Terms(None, freeze_months=months if position.annual_rate_bp else 0, holiday_months=months)
        )
        if offer is not None:
            offers.append(offer)
    return offers


def _order(offer: Offer) -> tuple[int, int, int, str]:
    # Cheapest first: what the offer costs beyond what it covers (interest charged less amounts
    # waived), then the lower monthly payment, then the shorter plan, then the key.
    return (
        offer.interest_charged - offer.total_waived,
        offer.monthly_payment,
        offer.holiday_months + offer.instalment_count,
        offer.key,
    )


def generate_offers(
    position: AccountPosition, disposable_monthly: int, policy: Policy, today: date
) -> list[Offer]:
    """The options a borrower may take at once: within the stage's limits and within what their
    budget leaves each month, at most MAX_OFFERS, cheapest first (see `_order`).

    `disposable_monthly` is what the income and expenditure statement leaves before paying this
    account (the statement should not list this account's own repayment).

    Nothing overdue, or nothing owed, gives no offers: help for a borrower who is up to date is a
    conversation, not a pre-approved concession. With money to spare each month the candidates are:
    an instalment plan of the arrears (fewest instalments that fit, on top of the contract's own
    instalment); the whole balance re-amortised (shortest term that fits, and the longest the stage
    allows); the same after the longest payment holiday allowed; a settlement at the smallest sum
    the stage pre-approves. Each carries the largest waiver of fees and accrued interest and the
    longest interest freeze the stage pre-approves — the limits are what the lender gives without
    review. A lump-sum settlement is not measured against the monthly budget. When the budget
    leaves nothing, or no plan fits it, a payment holiday of each length allowed, interest frozen,
    is offered instead.
    """
    require_int(disposable_monthly, "disposable_monthly")
    _check_policy(policy)
    if position.balance == 0 or position.overdue_amount == 0:
        return []
    limits = policy.hardship.relief_limits[position.stage]
    minimum = max(limits.min_instalment.get(position.currency, 1), 1)

    def fits(terms: _Terms) -> Offer | None:
        try:
            offer = _build(terms, position, policy, today, OfferOrigin.SYSTEM)
        except DomainError:
            return None  # terms this account cannot take (too little left for the instalments)
        if _affordable(offer, disposable_monthly) and not check_within_limits(offer, position, policy):
            return offer
        return None

    offers: list[Offer] = []
    if disposable_monthly > 0:
        offers += _arrears_plan(position, limits, minimum, fits)
        offers += _extensions(position, disposable_monthly, limits, minimum, holiday=0, fits=fits)
        longest_holiday = min(limits.max_holiday_months, limits.max_term_months - 2)
        if longest_holiday > 0:
            offers += _extensions(
                position, disposable_monthly, limits, minimum, holiday=longest_holiday, fits=fits
            )[:1]
    if not offers:
        offers += _holidays(position, limits, fits)
    if disposable_monthly > 0:
        offers += _settlement(position, limits, fits)
    unique = {offer.key: offer for offer in offers}
    return sorted(unique.values(), key=_order)[:MAX_OFFERS]


def regenerate(
    key: object, position: AccountPosition, disposable_monthly: int, policy: Policy, today: date
) -> Offer | None:
    """The system offer with this key, generated afresh from the account as it stands; None when
    the key is not one the system offers on these facts (forged, or stale because the account or
    budget changed). Pass the day the offer was made as `today` to get the very same offer, then
    compare `fingerprint` with what was shown and `expires_on` with the day of acceptance."""
    if _parse(key) is None:
        return None
    return next(
        (o for o in generate_offers(position, disposable_monthly, policy, today) if o.key == key), None
    )


# --- The borrower's own proposal ----------------------------------------------------------------


def proposal_offer(
    position: AccountPosition, monthly_amount: int, count: int, today: date, policy: Policy
) -> Offer:
    """A borrower's own proposal — "I can pay this much a month for this many months" — as an
    offer for review: the whole balance, interest frozen, `count` monthly payments of
    `monthly_amount` from a month from today, the last only what is left. If the payments fall
    short of the balance, the shortfall is the waiver they ask for, taken from fees first, then
    interest, then principal (a principal shortfall makes it a settlement). `check_within_limits`
    tells the reviewer what goes beyond the stage's limits."""
    _check_policy(policy)
    require_int(monthly_amount, "monthly_amount")
    require_int(count, "count")
    if monthly_amount < 1:
        raise DomainError("proposal_amount_invalid", "The monthly amount must be more than zero.")
    if not 1 <= count <= MAX_PLAN_MONTHS:
        raise DomainError(
            "proposal_count_invalid",
            "The number of months must be from 1 to {maximum}.",
            maximum=MAX_PLAN_MONTHS,
        )
    balance = position.balance
    if balance == 0:
        raise DomainError("nothing_owed", "Nothing is owed on this account.")
    if monthly_amount * (count - 1) >= balance:
        raise DomainError(
            "proposal_too_long",
            "{count} payments of {amount} would repay more than the balance of {balance}.",
            count=count,
            amount=monthly_amount,
            balance=balance,
            currency=position.currency,
        )
    repaid = min(monthly_amount * count, balance)
    amounts = [monthly_amount] * (count - 1) + [repaid - monthly_amount * (count - 1)]
    waived = allocate(balance - repaid, position.balances).applied
    reliefs = {ReliefType.INSTALMENT_PLAN}
    rate = position.annual_rate_bp
    if rate or waived[Component.INTEREST]:
        reliefs.add(ReliefType.INTEREST_RELIEF)
    if waived[Component.FEES]:
        reliefs.add(ReliefType.FEE_WAIVER)
    if waived[Component.PRINCIPAL]:
        reliefs.add(ReliefType.SETTLEMENT)
    first_due = add_months(today, 1)
    schedule = from_amounts(position.currency, amounts, first_due)
    forgone = amortised(repaid, rate, count, first_due, position.currency).interest
    return Offer(
        key=f"proposal:{monthly_amount}x{count}",
        origin=OfferOrigin.BORROWER,
        currency=position.currency,
        scope=OfferScope.BALANCE,
        reliefs=frozenset(reliefs),
        covered=position.balances,
        waived=waived,
        schedule=schedule,
        holiday_months=0,
        interest_frozen_months=count if rate else 0,
        annual_rate_bp=0,
        settlement_amount=None,
        monthly_payment=schedule.regular_amount,
        fees_after=_fee_treatment(position, position.balances, waived[Component.FEES]),
        interest_treatment=InterestTreatment.FROZEN if rate else InterestTreatment.CHARGED,
        total_saved=sum(waived.values()) + forgone,
        issued_on=today,
        expires_on=today + timedelta(days=policy.hardship.offer_valid_days),
        end_on=schedule.last_due_on or first_due,
    )


# --- The agent's counter-offer ------------------------------------------------------------------


class CounterPlan(StrEnum):
    INSTALMENTS = "instalments"
    """The whole balance, less what is waived, over `count` monthly instalments."""
    SETTLEMENT = "settlement"
    """A lump sum, full and final."""


COUNTER_KEY_PREFIX = "counter:"

_COUNTER_KEY = re.compile(
    r"counter:(?:"
    r"settlement:(?P<settlement>[1-9][0-9]{0,17})"
    r"|instalments:(?P<count>[1-9][0-9]{0,2})"
    r"(?:\+waive_fees:(?P<fees>[1-9][0-9]{0,17}))?"
    r"(?:\+waive_interest:(?P<interest>[1-9][0-9]{0,17}))?"
    r"(?:\+waive_principal:(?P<principal>[1-9][0-9]{0,17}))?"
    r"(?:\+holiday:(?P<holiday>[1-9][0-9]{0,2}))?"
    r"(?:\+rate:(?P<rate>[1-9][0-9]{0,5}))?"
    r")",
    re.ASCII,
)


def _counter_invalid(problem: str, reason: str, **params: object) -> DomainError:
    return DomainError(
        "counter_terms_invalid",
        "This counter-offer cannot be made: {reason}.",
        reason=reason,
        problem=problem,
        **params,
    )


@dataclass(frozen=True)
class CounterTerms:
    """The terms an agent counters with. Amounts are minor units of the account's currency.

    An instalment plan repays the whole balance, less the amounts waived, in `count` monthly
    instalments after `holiday_months` with nothing to pay, at `annual_rate_bp` (0 freezes
    interest; never above the contract's rate) — interest through the holiday is added to what is
    repaid. A settlement asks for `settlement_amount` at once, full and final; it stands alone
    (one instalment, nothing else waived, no holiday, no rate). Terms that make no sense on any
    account are refused here; those that do not fit this account, by `counter_offer`."""

    plan: CounterPlan
    count: int = 1
    waive_fees: int = 0
    waive_interest: int = 0
    waive_principal: int = 0
    holiday_months: int = 0
    annual_rate_bp: int = 0
    settlement_amount: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.plan, str) and self.plan in frozenset(CounterPlan)):
            raise _counter_invalid("plan_unknown", "the plan is either instalments or a settlement")
        object.__setattr__(self, "plan", CounterPlan(self.plan))
        for f in fields(self):
            if f.name != "plan":
                require_int(getattr(self, f.name), f.name)
        if not 1 <= self.count <= MAX_PLAN_MONTHS:
            raise _counter_invalid(
                "count_out_of_range",
                "a plan has from 1 to {maximum} instalments",
                maximum=MAX_PLAN_MONTHS,
            )
        if not 0 <= self.holiday_months <= MAX_HOLIDAY_MONTHS:
            raise _counter_invalid(
                "holiday_out_of_range",
                "a payment holiday is at most {maximum} months",
                maximum=MAX_HOLIDAY_MONTHS,
            )
        if not 0 <= self.annual_rate_bp <= MAX_RATE_BP:
            raise _counter_invalid(
                "rate_out_of_range",
                "the rate is from 0 to {maximum} basis points",
                maximum=MAX_RATE_BP,
            )
        if min(self.waive_fees, self.waive_interest, self.waive_principal, self.settlement_amount) < 0:
            raise _counter_invalid("amount_negative", "no amount can be negative")
        if self.plan == CounterPlan.SETTLEMENT:
            if (self.count, self.holiday_months, self.annual_rate_bp, self.waived) != (1, 0, 0, 0):
                raise _counter_invalid(
                    "settlement_combined",
                    "a settlement is one lump sum and is not combined with other relief",
                )
            if self.settlement_amount < 1:
                raise _counter_invalid(
                    "settlement_amount_out_of_range",
                    "a settlement asks for more than nothing and less than the balance",
                )
        elif self.settlement_amount:
            raise _counter_invalid("settlement_amount_on_plan", "only a settlement has a settlement amount")

    @property
    def waived(self) -> int:
        """What an instalment plan waives (a settlement's waiver follows from its amount)."""
        return self.waive_fees + self.waive_interest + self.waive_principal

    @property
    def key(self) -> str:
        """The terms, canonically spelled: `counter:settlement:AMOUNT`, or
        `counter:instalments:N` followed, in this order and only when not zero, by
        `+waive_fees:A`, `+waive_interest:A`, `+waive_principal:A`, `+holiday:H`, `+rate:BP`."""
        if self.plan == CounterPlan.SETTLEMENT:
            return f"{COUNTER_KEY_PREFIX}settlement:{self.settlement_amount}"
        tokens = [f"instalments:{self.count}"]
        for name, value in (
            ("waive_fees", self.waive_fees),
            ("waive_interest", self.waive_interest),
            ("waive_principal", self.waive_principal),
            ("holiday", self.holiday_months),
            ("rate", self.annual_rate_bp),
        ):
            if value:
                tokens.append(f"{name}:{value}")
        return COUNTER_KEY_PREFIX + "+".join(tokens)

    @classmethod
    def from_key(cls, key: object) -> CounterTerms:
        """The terms a stored counter-offer key spells; only the canonical spelling is a key."""
        match = _COUNTER_KEY.fullmatch(key) if isinstance(key, str) and len(key) <= MAX_KEY_LENGTH else None
        terms: CounterTerms | None = None
        if match is not None:
            numbers = {name: int(value) for name, value in match.groupdict().items() if value is not None}
            try:
                if "settlement" in numbers:
                    terms = cls(CounterPlan.SETTLEMENT, settlement_amount=numbers["settlement"])
                else:
                    terms = cls(
                        CounterPlan.INSTALMENTS,
                        count=numbers["count"],
                        waive_fees=numbers.get("fees", 0),
                        waive_interest=numbers.get("interest", 0),
                        waive_principal=numbers.get("principal", 0),
                        holiday_months=numbers.get("holiday", 0),
                        annual_rate_bp=numbers.get("rate", 0),
                    )
            except DomainError:
                terms = None
        if terms is None or terms.key != key:
            raise DomainError(
                "counter_key_invalid",
                "{key} does not name a counter-offer.",
                key=str(key)[:MAX_KEY_LENGTH],
            )
        return terms


def _counter_settlement(position: AccountPosition, terms: CounterTerms, first_due: date) -> _Repayment:
    if terms.settlement_amount >= position.balance:
        raise _counter_invalid(
            "settlement_amount_out_of_range",
            "a settlement asks for more than nothing and less than the balance",
        )
    return _Repayment(
        schedule=equal_instalments(terms.settlement_amount, 1, first_due, position.currency),
        interest=InterestTreatment.SETTLED,
        settlement_amount=terms.settlement_amount,
    )


def _counter_instalments(
    position: AccountPosition, terms: CounterTerms, first_due: date, to_repay: int
) -> _Repayment:
    contract_rate, rate = position.annual_rate_bp, terms.annual_rate_bp
    if rate > contract_rate:
        raise _counter_invalid(
            "rate_above_contract",
            "the plan cannot charge more than the contract's rate of {contract_rate} basis points",
            contract_rate=contract_rate,
        )
    if to_repay < terms.count:
        raise _counter_invalid(
            "too_little_to_repay", "there is too little left to repay in that many instalments"
        )
    schedule = amortised(
        to_repay, rate, terms.count, first_due, position.currency, deferred_months=terms.holiday_months
    )
    at_contract_rate = amortised(
        to_repay,
        contract_rate,
        terms.count,
        first_due,
        position.currency,
        deferred_months=terms.holiday_months,
    )
    frozen = rate == 0 and contract_rate > 0
    return _Repayment(
        schedule=schedule,
        interest=InterestTreatment.FROZEN if frozen else InterestTreatment.CHARGED,
        rate_bp=rate,
        # A lower rate saves the difference; rounding in a plan of a few fen a month is never
        # reported as costing the borrower.
        forgone_interest=max(at_contract_rate.interest - schedule.interest, 0),
    )


def counter_offer(position: AccountPosition, terms: CounterTerms, today: date, policy: Policy) -> Offer:
    """An agent's counter-offer on this account, made today: it covers the whole balance, and
    can be accepted for the policy's `counter_offer_valid_days`.

    The stage's relief limits do not apply (an agent's authority does: see
    `workflows.authority`), but the terms must fit the account: nothing waived beyond what is
    owed of that component, something left to repay in every instalment, no rate above the
    contract's, a settlement for less than the balance. Waived principal makes an instalment
    plan a settlement in part (`ReliefType.SETTLEMENT`), as it does a borrower's proposal. The
    offer's `key` is `terms.key`: store it, and `CounterTerms.from_key` with the day the offer
    was made rebuilds the very same offer (compare `fingerprint`)."""
    _check_policy(policy)
    balance = position.balance
    if balance == 0:
        raise DomainError("nothing_owed", "Nothing is owed on this account.")
    first_due = add_months(today, terms.holiday_months + 1)
    reliefs: set[ReliefType] = set()
    if terms.plan == CounterPlan.SETTLEMENT:
        repayment = _counter_settlement(position, terms, first_due)
        waived = allocate(balance - terms.settlement_amount, position.balances).applied
        reliefs.add(ReliefType.SETTLEMENT)
    else:
        waived = _components(
            {
                Component.FEES: terms.waive_fees,
                Component.INTEREST: terms.waive_interest,
                Component.PRINCIPAL: terms.waive_principal,
            }
        )
        for component in Component:
            if waived[component] > position.balances[component]:
                raise _counter_invalid(
                    "waiver_above_balance",
                    "{waived} of {component} would be waived, but only {owed} is owed",
                    component=str(component),
                    waived=waived[component],
                    owed=position.balances[component],
                    currency=position.currency,
                )
        repayment = _counter_instalments(position, terms, first_due, balance - terms.waived)
        reliefs.add(ReliefType.TERM_EXTENSION)
        if terms.waive_fees:
            reliefs.add(ReliefType.FEE_WAIVER)
        if terms.waive_interest or terms.annual_rate_bp < position.annual_rate_bp:
            reliefs.add(ReliefType.INTEREST_RELIEF)
        if terms.holiday_months:
            reliefs.add(ReliefType.PAYMENT_HOLIDAY)
        if terms.waive_principal:
            reliefs.add(ReliefType.SETTLEMENT)
    schedule = repayment.schedule
    frozen = repayment.interest == InterestTreatment.FROZEN
    return Offer(
        key=terms.key,
        origin=OfferOrigin.AGENT,
        currency=position.currency,
        scope=OfferScope.BALANCE,
        reliefs=frozenset(reliefs),
        covered=position.balances,
        waived=waived,
        schedule=schedule,
        holiday_months=terms.holiday_months,
        interest_frozen_months=terms.holiday_months + terms.count if frozen else 0,
        annual_rate_bp=repayment.rate_bp,
        settlement_amount=repayment.settlement_amount,
        monthly_payment=schedule.regular_amount,
        fees_after=_fee_treatment(position, position.balances, waived[Component.FEES]),
        interest_treatment=repayment.interest,
        total_saved=sum(waived.values()) + repayment.forgone_interest,
        issued_on=today,
        expires_on=today + timedelta(days=policy.hardship.counter_offer_valid_days),
        end_on=schedule.last_due_on or first_due,
    )
