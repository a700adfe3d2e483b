"""Reconciliation: Stripe's balance transactions matched against what Accord recorded, payouts
checked against the transactions they paid out, the double-entry journal, and the hygiene rules
for amounts and columns read from Stripe's CSV reports.

Matching (`match`) pairs each Stripe balance transaction with at most one ledger item, in three
stages, each only among what the earlier stages left:

1. **Object id.** A payment is found by its charge id when the ledger knows it, otherwise by its
   PaymentIntent id; a refund by its refund id; a dispute withdrawal or reinstatement by its
   dispute id (and the sign of the amount). An item whose id Stripe does not have is
   `missing_in_stripe` — it never falls back to a weaker rule, since its id says it is not that
   other transaction; one whose id two transactions answer to (two charges on one
   PaymentIntent) is `missing_in_stripe` as `ambiguous`. Two ledger items claiming one Stripe
   transaction are both `duplicate` (with that transaction), and neither is matched.
2. **PaymentIntent.** A refund or dispute the ledger knows only by the PaymentIntent it belongs to
   is paired with the transaction of that kind, PaymentIntent, currency and gross amount.
3. **Amount, currency and day (fallback).** An item with no usable id but a booking day is paired
   with a transaction of the same kind, currency and gross amount created on that day (UTC).

Ambiguity rule (stages 2 and 3): only a key shared by exactly one item and one transaction pairs.
When two items or two transactions share a key, none of them is paired: they are reported as
missing with the reason `ambiguous`, for a person to resolve, never paired arbitrarily. Nor do
these weaker stages pair different amounts: only ids prove that two different amounts are one
payment, so without them both sides are reported missing (side by side under one PaymentIntent).

A pair is `matched`, or `amount_mismatch` (a different gross amount, or a different currency:
reason `currency_differs`), or `fee_mismatch` (same amount, and the ledger expected a fee that
differs from Stripe's). What is left over is `missing_in_ledger` or `missing_in_stripe`. A Stripe
transaction id listed twice, or a ledger record id listed twice, is read once and each extra copy
is reported as `duplicate` (when the copies differ, the canonical one — the first in sorted order
— is the one matched). The result depends only on the set of inputs, never on their order.

Payouts (`check_payouts`): a payout's balance transaction (type `payout`, a negative amount) must
equal minus the sum of the net amounts of the balance transactions paid out in it.

Journal (`journal_lines`), chart of accounts, all in one currency per line:

=================  =========  ==============================================================
account            type       holds
=================  =========  ==============================================================
cash               asset      money in the lender's bank account (payouts arrive here)
stripe_clearing    asset      the Stripe balance: collected, not yet paid out
receivable         asset      what borrowers owe: principal, interest and fees together
borrower_credit    liability  what borrowers paid beyond their whole debt, held for them
fee_income         income     late and other fees, recognised when charged
interest_income    income     interest, recognised when charged (accrued)
waiver_expense     expense    debt given up: waived fees, interest or principal
stripe_fees        expense    what Stripe kept: processing and dispute fees
=================  =========  ==============================================================

=======================  ===========================================  =======================
event                    debit                                        credit
=======================  ===========================================  =======================
payment_received         stripe_clearing                              receivable (+ borrower_credit)
dispute_reinstatement    stripe_clearing                              receivable (+ borrower_credit)
refund                   receivable (+ borrower_credit)               stripe_clearing
dispute_withdrawal       receivable (+ borrower_credit)               stripe_clearing
stripe_fee               stripe_fees                                  stripe_clearing
stripe_fee_returned      stripe_clearing                              stripe_fees
payout                   cash                                         stripe_clearing
waiver                   waiver_expense                               receivable
fee_charged              receivable                                   fee_income
interest_charged         receivable                                   interest_income
=======================  ===========================================  =======================

The principal itself (the loan) is on the core banking system's books; Accord journals only what
moves it here. A refund or a lost dispute puts the debt back (the payment's allocation is
reversed, see workflows.payments), so it debits the receivable.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import TypeVar

from workflows.errors import DomainError
from workflows.money import CURRENCY_EXPONENTS, MAX_AMOUNT_DIGITS, minor_units, require_int

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


# --- What Stripe moved, and what Accord recorded --------------------------------------------


class LedgerKind(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"
    DISPUTE_WITHDRAWAL = "dispute_withdrawal"
    DISPUTE_REINSTATEMENT = "dispute_reinstatement"


PAYMENT_TYPES = frozenset({"charge", "payment"})
REFUND_TYPES = frozenset({"refund", "payment_refund"})
DISPUTE_TYPES = frozenset({"adjustment", "dispute"})
DISPUTE_SOURCE_PREFIXES = ("dp_", "du_")
OUTSIDE_LEDGER_TYPES = frozenset(
    {"payout", "payout_cancel", "payout_failure", "stripe_fee", "stripe_fx_fee", "tax_fee"}
)
"""Stripe activity that is not a borrower's money: payouts (checked by `check_payouts`) and
Stripe's own account fees (journalled, never in a borrower's ledger)."""


@dataclass(frozen=True)
class StripeTxn:
    """One Stripe balance transaction. `amount` is gross and signed as Stripe signs it (a charge
    is positive, a refund or a dispute withdrawal negative), `fee` is what Stripe kept and `net`
    is amount less fee. `source_id` is the object behind it (ch_, re_, dp_, po_ …) and
    `payment_intent_id` the PaymentIntent it belongs to, when it has one."""

    id: str
    type: str
    source_id: str
    payment_intent_id: str | None
    amount: int
    fee: int
    net: int
    currency: str
    created: datetime
    payout_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("amount", "fee", "net"):
            require_int(getattr(self, name), name)
        if self.net != self.amount - self.fee:
            raise DomainError(
                "txn_net_invalid",
                "Balance transaction {id}: net {net} is not amount {amount} less fee {fee}.",
                id=self.id,
                net=self.net,
                amount=self.amount,
                fee=self.fee,
            )
        # Stripe writes currencies in lower case, Accord in upper case.
        object.__setattr__(self, "currency", self.currency.upper())

    @property
    def day(self) -> date:
        """The UTC day it was created (a naive datetime is taken as UTC)."""
        created = self.created if self.created.tzinfo else self.created.replace(tzinfo=UTC)
        return created.astimezone(UTC).date()

    @property
    def ledger_kind(self) -> LedgerKind | None:
        """What the ledger would call it, or None when no ledger item records such a thing."""
        if self.type in PAYMENT_TYPES:
            return LedgerKind.PAYMENT
        if self.type in REFUND_TYPES:
            return LedgerKind.REFUND
        if self.type in DISPUTE_TYPES and self.source_id.startswith(DISPUTE_SOURCE_PREFIXES):
            return LedgerKind.DISPUTE_WITHDRAWAL if self.amount < 0 else LedgerKind.DISPUTE_REINSTATEMENT
        return None

    def sort_key(self) -> tuple[str, str, str, str, int, int, int, str, datetime, str]:
        return (
            self.id,
            self.type,
            self.source_id,
            self.payment_intent_id or "",
            self.amount,
            self.fee,
            self.net,
            self.currency,
            self.created if self.created.tzinfo else self.created.replace(tzinfo=UTC),
            self.payout_id or "",
        )


@dataclass(frozen=True)
class LedgerItem:
    """Money Accord recorded, signed from the cash point of view (a payment or a dispute won back
    is positive, a refund or a dispute withdrawal negative), with the Stripe ids it knows.
    `record_id` names the record ("payment:12", "refund:3"); `booked_on` is the day it was
    received or paid back, used only by the fallback match."""

    kind: LedgerKind
    record_id: str
    amount: int
    currency: str
    payment_intent_id: str | None = None
    charge_id: str | None = None
    refund_id: str | None = None
    dispute_id: str | None = None
    expected_fee: int | None = None
    booked_on: date | None = None

    def __post_init__(self) -> None:
        require_int(self.amount)
        if self.expected_fee is not None:
            require_int(self.expected_fee, "expected_fee")
        object.__setattr__(self, "kind", LedgerKind(self.kind))
        object.__setattr__(self, "currency", self.currency.upper())

    @property
    def object_key(self) -> tuple[LedgerKind, str] | None:
        """The id of the one Stripe object this item claims, when it knows one."""
        if self.kind is LedgerKind.PAYMENT:
            object_id = self.charge_id or self.payment_intent_id
        elif self.kind is LedgerKind.REFUND:
            object_id = self.refund_id
        else:
            object_id = self.dispute_id
        return (self.kind, object_id) if object_id else None

    def sort_key(self) -> tuple[str, str, int, str, str, str, str, str, int, str]:
        return (
            self.record_id,
            self.kind,
            self.amount,
            self.currency,
            self.payment_intent_id or "",
            self.charge_id or "",
            self.refund_id or "",
            self.dispute_id or "",
            -(2**63) if self.expected_fee is None else self.expected_fee,
            self.booked_on.isoformat() if self.booked_on else "",
        )


# --- Results --------------------------------------------------------------------------------


class Outcome(StrEnum):
    MATCHED = "matched"
    AMOUNT_MISMATCH = "amount_mismatch"
    FEE_MISMATCH = "fee_mismatch"
    MISSING_IN_LEDGER = "missing_in_ledger"
    MISSING_IN_STRIPE = "missing_in_stripe"
    DUPLICATE = "duplicate"


class Method(StrEnum):
    """How a pair was found."""

    OBJECT_ID = "object_id"
    PAYMENT_INTENT = "payment_intent"
    AMOUNT_AND_DAY = "amount_and_day"


class Reason(StrEnum):
    """Why an item is not simply matched (stable codes the portal translates)."""

    AMOUNT_DIFFERS = "amount_differs"
    CURRENCY_DIFFERS = "currency_differs"
    FEE_DIFFERS = "fee_differs"
    NOT_IN_LEDGER = "not_in_ledger"
    """No ledger item claims this transaction."""
    NOT_IN_STRIPE = "not_in_stripe"
    """Stripe has no transaction with the id the ledger recorded (or, without ids, none at all)."""
    AMBIGUOUS = "ambiguous"
    """More than one candidate: left for a person rather than paired arbitrarily."""
    NO_IDENTIFIER = "no_identifier"
    """The ledger item has no Stripe id and no booking day: nothing to match it by."""
    UNEXPECTED_TYPE = "unexpected_type"
    """A kind of Stripe transaction the ledger never records (a manual adjustment, say)."""
    TXN_REPEATED = "txn_repeated"
    TXN_CONFLICTING_COPY = "txn_conflicting_copy"
    RECORD_REPEATED = "record_repeated"
    RECORD_CONFLICTING_COPY = "record_conflicting_copy"
    CLAIMED_TWICE = "claimed_twice"
    """Two ledger items claim the same Stripe transaction."""


@dataclass(frozen=True)
class MatchResult:
    """One line of the reconciliation: a pair, or one side alone, with why. `difference` is
    Stripe less ledger (amount, or fee for a fee mismatch) when both are in one currency."""

    outcome: Outcome
    txn: StripeTxn | None
    item: LedgerItem | None
    method: Method | None = None
    reason: Reason | None = None
    difference: int | None = None

    def sort_key(self) -> tuple[str, str, str, str]:
        return (
            self.item.record_id if self.item else "",
            self.txn.id if self.txn else "",
            self.outcome,
            self.reason or "",
        )


@dataclass(frozen=True)
class Reconciliation:
    """Every result, in canonical order, and the Stripe activity that is not borrower money."""

    results: tuple[MatchResult, ...]
    outside_ledger: tuple[StripeTxn, ...]

    def of(self, outcome: Outcome) -> tuple[MatchResult, ...]:
        return tuple(result for result in self.results if result.outcome is outcome)

    @property
    def exceptions(self) -> tuple[MatchResult, ...]:
        """Everything a person must resolve: all but the matched."""
        return tuple(result for result in self.results if result.outcome is not Outcome.MATCHED)

    def counts(self) -> dict[Outcome, int]:
        counted = Counter(result.outcome for result in self.results)
        return {outcome: counted[outcome] for outcome in Outcome}


# --- Matching -------------------------------------------------------------------------------


def _dedupe(
    values: Iterable[T],
    identity: Callable[[T], str],
    canonical: Callable[[T], tuple[object, ...]],
) -> tuple[list[T], list[tuple[T, bool]]]:
    """The values in canonical order with one per identity, and each extra copy (with whether it
    differs from the one kept)."""
    kept: dict[str, T] = {}
    extra: list[tuple[T, bool]] = []
    for value in sorted(values, key=canonical):
        key = identity(value)
        if key in kept:
            extra.append((value, value != kept[key]))
        else:
            kept[key] = value
    return list(kept.values()), extra


def _group(values: Iterable[T], key: Callable[[T], K]) -> dict[K, list[T]]:
    groups: dict[K, list[T]] = defaultdict(list)
    for value in values:
        groups[key(value)].append(value)
    return groups


def _compare(txn: StripeTxn, item: LedgerItem, method: Method) -> MatchResult:
    """A pair's outcome: the currency and gross amount first, then the fee the ledger expected."""
    if txn.currency != item.currency:
        return MatchResult(Outcome.AMOUNT_MISMATCH, txn, item, method, Reason.CURRENCY_DIFFERS)
    if txn.amount != item.amount:
        return MatchResult(
            Outcome.AMOUNT_MISMATCH, txn, item, method, Reason.AMOUNT_DIFFERS, txn.amount - item.amount
        )
    if item.expected_fee is not None and txn.fee != item.expected_fee:
        return MatchResult(
            Outcome.FEE_MISMATCH, txn, item, method, Reason.FEE_DIFFERS, txn.fee - item.expected_fee
        )
    return MatchResult(Outcome.MATCHED, txn, item, method)


def _intent_key(value: StripeTxn | LedgerItem) -> tuple[object, ...]:
    kind = value.ledger_kind if isinstance(value, StripeTxn) else value.kind
    return (kind, value.payment_intent_id, value.currency, value.amount)


def _day_key(value: StripeTxn | LedgerItem) -> tuple[object, ...]:
    if isinstance(value, StripeTxn):
        return (value.ledger_kind, value.currency, value.amount, value.day)
    return (value.kind, value.currency, value.amount, value.booked_on)


class _Matching:
    """The state of one `match`: the results so far and the Stripe transactions still open."""

    def __init__(self, txns: Sequence[StripeTxn]) -> None:
        self.results: list[MatchResult] = []
        self.open: dict[str, StripeTxn] = {}
        for txn in txns:
            if txn.type in OUTSIDE_LEDGER_TYPES:
                continue
            if txn.ledger_kind is None:
                self.missing_in_ledger(txn, Reason.UNEXPECTED_TYPE)
            else:
                self.open[txn.id] = txn

    def pair(self, txn: StripeTxn, item: LedgerItem, method: Method) -> None:
        del self.open[txn.id]
        self.results.append(_compare(txn, item, method))

    def missing_in_stripe(self, item: LedgerItem, reason: Reason) -> None:
        self.results.append(MatchResult(Outcome.MISSING_IN_STRIPE, None, item, reason=reason))

    def missing_in_ledger(self, txn: StripeTxn, reason: Reason) -> None:
        self.open.pop(txn.id, None)
        self.results.append(MatchResult(Outcome.MISSING_IN_LEDGER, txn, None, reason=reason))

    def by_object_id(self, items: Sequence[LedgerItem]) -> list[LedgerItem]:
        """Stage 1; returns the items without an object id, for the later stages."""
        index: dict[tuple[LedgerKind, str], list[StripeTxn]] = defaultdict(list)
        for txn in self.open.values():
            kind = txn.ledger_kind
            assert kind is not None
            index[(kind, txn.source_id)].append(txn)
            if kind is LedgerKind.PAYMENT and txn.payment_intent_id:
                # A payment answers to its charge and to its PaymentIntent.
                index[(kind, txn.payment_intent_id)].append(txn)
        claims: dict[str, list[LedgerItem]] = defaultdict(list)
        without: list[LedgerItem] = []
        for item in items:
            key = item.object_key
            if key is None:
                without.append(item)
                continue
            found = index.get(key, [])
            if len(found) == 1:
                claims[found[0].id].append(item)
            else:
                self.missing_in_stripe(item, Reason.AMBIGUOUS if found else Reason.NOT_IN_STRIPE)
        for txn_id, claimants in claims.items():
            if len(claimants) == 1:
                self.pair(self.open[txn_id], claimants[0], Method.OBJECT_ID)
                continue
            txn = self.open.pop(txn_id)
            self.results.extend(
                MatchResult(Outcome.DUPLICATE, txn, item, Method.OBJECT_ID, Reason.CLAIMED_TWICE)
                for item in claimants
            )
        return without

    def one_to_one(
        self, items: Sequence[LedgerItem], key: Callable[[StripeTxn | LedgerItem], K], method: Method
    ) -> None:
        """Pair where exactly one item and one open transaction share the key; where more share
        it, none of them pairs (both sides are reported as ambiguous)."""
        candidates = _group(self.open.values(), key)
        for shared, group in _group(items, key).items():
            txns = candidates.get(shared, [])
            if len(group) == 1 and len(txns) == 1:
                self.pair(txns[0], group[0], method)
                continue
            for item in group:
                self.missing_in_stripe(item, Reason.AMBIGUOUS if txns else Reason.NOT_IN_STRIPE)
            for txn in txns:
                self.missing_in_ledger(txn, Reason.AMBIGUOUS)

    def by_payment_intent(self, items: Sequence[LedgerItem]) -> None:
        """Stage 2, for refunds and disputes the ledger knows only by their PaymentIntent."""
        self.one_to_one(items, _intent_key, Method.PAYMENT_INTENT)

    def by_amount_and_day(self, items: Sequence[LedgerItem]) -> None:
        """Stage 3, the fallback, for items with no id at all."""
        for item in items:
            if item.booked_on is None:
                self.missing_in_stripe(item, Reason.NO_IDENTIFIER)
        dated = [item for item in items if item.booked_on]
        self.one_to_one(dated, _day_key, Method.AMOUNT_AND_DAY)


def match(stripe_txns: Iterable[StripeTxn], ledger_items: Iterable[LedgerItem]) -> Reconciliation:
    """Match Stripe's balance transactions against the ledger (the rules are in the module
    docstring). The result does not depend on the order of either input."""
    txns, extra_txns = _dedupe(stripe_txns, lambda t: t.id, StripeTxn.sort_key)
    items, extra_items = _dedupe(ledger_items, lambda i: i.record_id, LedgerItem.sort_key)
    matching = _Matching(txns)
    for txn, differs in extra_txns:
        reason = Reason.TXN_CONFLICTING_COPY if differs else Reason.TXN_REPEATED
        matching.results.append(MatchResult(Outcome.DUPLICATE, txn, None, reason=reason))
    for item, differs in extra_items:
        reason = Reason.RECORD_CONFLICTING_COPY if differs else Reason.RECORD_REPEATED
        matching.results.append(MatchResult(Outcome.DUPLICATE, None, item, reason=reason))
    without_object = matching.by_object_id(items)
    matching.by_payment_intent([item for item in without_object if item.payment_intent_id])
    matching.by_amount_and_day([item for item in without_object if not item.payment_intent_id])
    for txn in list(matching.open.values()):
        matching.missing_in_ledger(txn, Reason.NOT_IN_LEDGER)
    results = sorted(matching.results, key=MatchResult.sort_key)
    outside = tuple(txn for txn in txns if txn.type in OUTSIDE_LEDGER_TYPES)
    return Reconciliation(results=tuple(results), outside_ledger=outside)


# --- Payouts --------------------------------------------------------------------------------


class PayoutProblem(StrEnum):
    AMOUNT_DIFFERS = "amount_differs"
    CURRENCY_DIFFERS = "currency_differs"
    """A transaction in the payout is in another currency (left out of the sum)."""
    PAYOUT_REPEATED = "payout_repeated"
    PAYOUT_UNKNOWN = "payout_unknown"
    """Transactions name a payout that is not in the list."""


@dataclass(frozen=True)
class PayoutResult:
    """One payout: its own amount (negative, as its balance transaction has it, None when the
    payout is unknown), what its transactions add up to (`expected`, minus their net) and what
    is wrong."""

    payout_id: str
    currency: str
    amount: int | None
    expected: int
    transaction_count: int
    problems: tuple[PayoutProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def difference(self) -> int | None:
        return None if self.amount is None else self.amount - self.expected


def check_payouts(payouts: Iterable[StripeTxn], txns: Iterable[StripeTxn]) -> list[PayoutResult]:
    """Each payout's amount must be minus the sum of the net of the balance transactions paid
    out in it (the payout's own transaction left out). Results are sorted by payout id."""
    kept, extra = _dedupe(payouts, lambda p: p.source_id, StripeTxn.sort_key)
    for payout in kept:
        if payout.type != "payout":
            raise DomainError("payout_invalid", "Balance transaction {id} is not a payout.", id=payout.id)
    repeated = {payout.source_id for payout, _ in extra}
    unique_txns, _ = _dedupe(txns, lambda t: t.id, StripeTxn.sort_key)
    contents = _group(
        (t for t in unique_txns if t.payout_id and t.source_id != t.payout_id), lambda t: t.payout_id or ""
    )
    results: list[PayoutResult] = []
    for payout in kept:
        inside = contents.pop(payout.source_id, [])
        same = [t for t in inside if t.currency == payout.currency]
        expected = -sum(t.net for t in same)
        problems: list[PayoutProblem] = []
        if payout.amount != expected:
            problems.append(PayoutProblem.AMOUNT_DIFFERS)
        if len(same) != len(inside):
            problems.append(PayoutProblem.CURRENCY_DIFFERS)
        if payout.source_id in repeated:
            problems.append(PayoutProblem.PAYOUT_REPEATED)
        results.append(
            PayoutResult(
                payout.source_id, payout.currency, payout.amount, expected, len(inside), tuple(problems)
            )
        )
    for payout_id, inside in contents.items():
        currencies = sorted({t.currency for t in inside})
        problems = [PayoutProblem.PAYOUT_UNKNOWN]
        if len(currencies) > 1:
            problems.append(PayoutProblem.CURRENCY_DIFFERS)
        same = [t for t in inside if t.currency == currencies[0]]
        results.append(
            PayoutResult(
                payout_id, currencies[0], None, -sum(t.net for t in same), len(inside), tuple(problems)
            )
        )
    results.sort(key=lambda r: r.payout_id)
    return results


# --- Journal --------------------------------------------------------------------------------


class Account(StrEnum):
    CASH = "cash"
    STRIPE_CLEARING = "stripe_clearing"
    RECEIVABLE = "receivable"
    BORROWER_CREDIT = "borrower_credit"
    FEE_INCOME = "fee_income"
    INTEREST_INCOME = "interest_income"
    WAIVER_EXPENSE = "waiver_expense"
    STRIPE_FEES = "stripe_fees"


class EventKind(StrEnum):
    PAYMENT_RECEIVED = "payment_received"
    DISPUTE_REINSTATEMENT = "dispute_reinstatement"
    REFUND = "refund"
    DISPUTE_WITHDRAWAL = "dispute_withdrawal"
    STRIPE_FEE = "stripe_fee"
    STRIPE_FEE_RETURNED = "stripe_fee_returned"
    PAYOUT = "payout"
    WAIVER = "waiver"
    FEE_CHARGED = "fee_charged"
    INTEREST_CHARGED = "interest_charged"


_MONEY_IN = frozenset({EventKind.PAYMENT_RECEIVED, EventKind.DISPUTE_REINSTATEMENT})
_MONEY_OUT = frozenset({EventKind.REFUND, EventKind.DISPUTE_WITHDRAWAL})
_SIMPLE: Mapping[EventKind, tuple[Account, Account]] = {
    EventKind.STRIPE_FEE: (Account.STRIPE_FEES, Account.STRIPE_CLEARING),
    EventKind.STRIPE_FEE_RETURNED: (Account.STRIPE_CLEARING, Account.STRIPE_FEES),
    EventKind.PAYOUT: (Account.CASH, Account.STRIPE_CLEARING),
    EventKind.WAIVER: (Account.WAIVER_EXPENSE, Account.RECEIVABLE),
    EventKind.FEE_CHARGED: (Account.RECEIVABLE, Account.FEE_INCOME),
    EventKind.INTEREST_CHARGED: (Account.RECEIVABLE, Account.INTEREST_INCOME),
}


@dataclass(frozen=True)
class JournalEvent:
    """Something that moves money between accounts. `amount` is positive; `to_credit` is the part
    of a payment (or of its reversal) that is the borrower's credit rather than their debt."""

    kind: EventKind
    amount: int
    currency: str
    reference: str
    to_credit: int = 0


@dataclass(frozen=True)
class JournalLine:
    """One side of a posting: exactly one of debit and credit is more than zero."""

    account: Account
    debit: int
    credit: int
    currency: str
    reference: str


def _event_lines(event: JournalEvent) -> list[tuple[Account, int, int]]:
    kind = EventKind(event.kind)
    if require_int(event.amount) <= 0:
        raise DomainError("journal_amount_not_positive", "A journal event must be more than zero.")
    to_credit = require_int(event.to_credit, "to_credit")
    if kind not in _MONEY_IN | _MONEY_OUT and to_credit:
        raise DomainError("journal_credit_invalid", "Only money in or out can touch the borrower's credit.")
    if not 0 <= to_credit <= event.amount:
        raise DomainError("journal_credit_invalid", "The credit part must be between zero and the amount.")
    to_debt = event.amount - to_credit
    if kind in _MONEY_IN:
        return [
            (Account.STRIPE_CLEARING, event.amount, 0),
            (Account.RECEIVABLE, 0, to_debt),
            (Account.BORROWER_CREDIT, 0, to_credit),
        ]
    if kind in _MONEY_OUT:
        return [
            (Account.RECEIVABLE, to_debt, 0),
            (Account.BORROWER_CREDIT, to_credit, 0),
            (Account.STRIPE_CLEARING, 0, event.amount),
        ]
    debit, credit = _SIMPLE[kind]
    return [(debit, event.amount, 0), (credit, 0, event.amount)]


def journal_lines(events: Iterable[JournalEvent]) -> list[JournalLine]:
    """The double-entry lines of the events, in event order, debits before credits; a side of
    zero (no credit part, say) is left out."""
    lines: list[JournalLine] = []
    for event in events:
        currency = event.currency.upper()
        minor_units(currency)  # a known currency, or DomainError
        lines.extend(
            JournalLine(account, debit, credit, currency, event.reference)
            for account, debit, credit in _event_lines(event)
            if debit or credit
        )
    return lines


def imbalances(lines: Iterable[JournalLine]) -> dict[str, int]:
    """Debits less credits per currency, only where they differ."""
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        totals[line.currency] += line.debit - line.credit
    return {currency: total for currency, total in sorted(totals.items()) if total}


def balanced(lines: Iterable[JournalLine]) -> bool:
    """Debits equal credits in every currency."""
    return not imbalances(lines)


# --- CSV hygiene ----------------------------------------------------------------------------

CURRENCY_SYMBOLS: Mapping[str, frozenset[str]] = {
    "$": frozenset({"USD", "HKD", "SGD", "AUD", "CAD", "TWD"}),
    "US$": frozenset({"USD"}),
    "HK$": frozenset({"HKD"}),
    "S$": frozenset({"SGD"}),
    "A$": frozenset({"AUD"}),
    "C$": frozenset({"CAD"}),
    "NT$": frozenset({"TWD"}),
    "¥": frozenset({"CNY", "JPY"}),
    "￥": frozenset({"CNY", "JPY"}),
    "CN¥": frozenset({"CNY"}),
    "JP¥": frozenset({"JPY"}),
    "€": frozenset({"EUR"}),
    "£": frozenset({"GBP"}),
    "₩": frozenset({"KRW"}),
}
_SYMBOL = re.compile(r"(?:[A-Za-z]{1,3})?[$¥￥€£₩]|[A-Za-z]{3}")
_MINUS = "-\u2212"  # ASCII hyphen-minus and the Unicode minus sign
_SPACES = " \u00a0\u202f\u2009"
_GROUPED = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d*)?", re.ASCII)
_PLAIN = re.compile(r"\d+(?:\.\d*)?|\.\d+", re.ASCII)
_COMMA_DECIMAL = re.compile(r"\d{1,3}(?:[ .\u00a0\u202f\u2009']\d{3})*,\d+|\d+,\d+", re.ASCII)
_FOREIGN_GROUPS = re.compile(
    r"\d{1,3}(?:[ \u00a0\u202f\u2009']\d{3})+(?:\.\d*)?|\d{1,3}(?:\.\d{3}){2,}", re.ASCII
)


def _report_error(code: str, message: str, text: str, **params: object) -> DomainError:
    return DomainError(code, message, text=text[:40], **params)


def _strip_symbol(body: str, currency: str, text: str) -> str:
    """Remove one currency symbol or ISO code (before or after the number), when it fits the
    currency; a symbol of another currency is refused, anything else is left for the parser."""
    found = _SYMBOL.match(body)
    if found is None:
        found = _SYMBOL.search(body)
        if found is None or found.end() != len(body):
            return body
    symbol = found.group(0).upper()
    if symbol not in CURRENCY_SYMBOLS and symbol not in CURRENCY_EXPONENTS:
        return body
    if symbol != currency and currency not in CURRENCY_SYMBOLS.get(symbol, frozenset()):
        raise _report_error(
            "report_symbol_mismatch", "{text} is not written in {currency}.", text, currency=currency
        )
    return (body[: found.start()] + body[found.end() :]).strip(_SPACES)


def _sign(body: str, negative: bool, invalid: DomainError) -> tuple[str, bool]:
    """Take off one minus sign or one pair of accounting parentheses, if there is one."""
    if body.startswith("(") and body.endswith(")"):
        sign_found, body = True, body[1:-1].strip(_SPACES)
    elif body[:1] and body[0] in _MINUS:
        sign_found, body = True, body[1:].strip(_SPACES)
    else:
        return body, negative
    if negative:
        raise invalid  # two signs
    return body, sign_found


def parse_report_amount(text: str, currency: str) -> int:
    """An amount from a Stripe report (or a spreadsheet re-saved from one) in exact minor units.

    Accepted: "1234.56", "1,234.56", "-1,234.56", "(1,234.56)" (accounting negative), a symbol or
    ISO code that fits the currency ("$1,234.56", "¥1,234", "USD 12.00", "12.00 usd"), the sign
    before or after the symbol, and zeros beyond the currency's decimals ("1000.00" yen). The dot
    is the only decimal mark and the comma the only grouping: that is how Stripe writes reports.
    Refused, each with its own code:

    - ``report_amount_foreign_format``: a decimal comma or another grouping ("1 234,56",
      "1.234,56", "12,34", "1 234.56", "1.234.567") — the file went through another locale;
    - ``report_amount_ambiguous``: readable two ways — "1,234" in a currency with three decimals,
      "1.234" in one with fewer (1.234 or 1234?);
    - ``report_amount_too_precise``: more (non-zero) decimals than the currency has;
    - ``report_symbol_mismatch``: a symbol or code of another currency ("$" on a CNY amount);
    - ``report_amount_invalid``: anything else (empty, letters, two signs, bad groups).
    """
    exponent = minor_units(currency)
    invalid = _report_error("report_amount_invalid", "{text} is not an amount.", text)
    body = text.strip(_SPACES + "\t")
    if not body or len(body) > 3 * MAX_AMOUNT_DIGITS:
        raise invalid
    body, negative = _sign(body, False, invalid)
    body = _strip_symbol(body, currency, text)
    body, negative = _sign(body, negative, invalid)
    ambiguous = _report_error(
        "report_amount_ambiguous",
        "{text} could be read two ways in {currency}: is that mark a decimal point or a thousands separator?",
        text,
        currency=currency,
    )
    if _GROUPED.fullmatch(body):
        if exponent == 3 and "." not in body and body.count(",") == 1:
            raise ambiguous
        body = body.replace(",", "")
    elif _PLAIN.fullmatch(body):
        fraction = body.partition(".")[2]
        if len(fraction) == 3 and exponent < 3:
            raise ambiguous
    elif _COMMA_DECIMAL.fullmatch(body) or _FOREIGN_GROUPS.fullmatch(body):
        raise _report_error(
            "report_amount_foreign_format",
            "{text} uses another locale's number format: amounts must use a dot for decimals.",
            text,
        )
    else:
        raise invalid
    whole, _, fraction = body.partition(".")
    if len(whole) + len(fraction) > MAX_AMOUNT_DIGITS or not (whole or fraction):
        raise invalid
    if len(fraction.rstrip("0")) > exponent:
        raise _report_error(
            "report_amount_too_precise",
            "{currency} amounts have at most {places} decimal places.",
            text,
            currency=currency,
            places=exponent,
        )
    scale: int = 10**exponent
    value = int(whole or "0") * scale + int(fraction[:exponent].ljust(exponent, "0") or "0")
    return -value if negative else value


def normalise_column(name: str) -> str:
    """A column name as it is compared: no byte order mark, no surrounding space, lower case."""
    return name.lstrip("\ufeff").strip().casefold()


def check_columns(header: Sequence[str], required: Iterable[str]) -> list[str]:
    """What is wrong with a CSV header for reading the required columns (empty when nothing):
    a required column missing, a column named twice, signs of a wrong encoding. Names are
    compared with `normalise_column`; extra columns are fine."""
    problems: list[str] = []
    if any("\ufffd" in name or "ï»¿" in name for name in header):
        problems.append("the header has garbled characters: the file is not UTF-8")
    names = [normalise_column(name) for name in header]
    counted = Counter(names)
    problems.extend(f"column {name!r} appears {count} times" for name, count in counted.items() if count > 1)
    if "" in counted:
        problems.append("a column has no name")
    wanted = list(dict.fromkeys(normalise_column(name) for name in required))
    problems.extend(f"column {name!r} is missing" for name in wanted if name not in counted)
    return problems
