"""Retention: how long personal data is kept once the debt it served is finished, and what is due.

Two things fall due, each after the policy's period (``RetentionPolicy.years``) with nothing
happening in the meantime:

- a **closed hardship case** loses what the borrower told us about their situation: the evidence
  files, the income and expenditure statement (budget lines, household, the description) and the
  free text of its messages and notes. Its state, reason, offers and decision stay: they explain
  the account's ledger.
- a **borrower** is anonymised once every account of theirs is finished (closed, recalled by the
  lender, or paid off with nothing held for them) and has been quiet for the whole period, with no
  dispute open, no money in flight, no plan in force and no hardship case open: name, identity,
  contact details and address go, every case of theirs is cleared, their stored documents
  (signed agreements, dispute files) are deleted.

Three operational records fall due by age alone, once older than the period: a **day's letters**
(one PDF holding every borrower's letter and postal address; the contact history keeps what was
sent to whom), an import's **refused rows** (their messages quote the refused cells, a phone or an
e-mail among them; the import's counts stay), and the **payloads of Stripe events**, cut down to
what identifies the money (``minimal_stripe_payload``): Stripe's copy of a payment names the card
holder, an e-mail, a card's last digits; the payment, the ledger and the balance transactions keep
what finance reconciles.

The ledger, payments, refunds and the audit trail are never touched: they are financial records
(the audit trail is append-only), and they hold ids, not personal data.

Everything here is pure: the portal gathers the facts (``AccountFacts``, ``CaseFacts``), these
functions decide. A thing is due when the day it went quiet is on or before ``cutoff(today)``, so
the portal can select candidates with the same cutoff in SQL and get exactly the same answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import date
from enum import StrEnum

from workflows.errors import DomainError
from workflows.negotiation import OPEN_STATES, CaseState

MIN_YEARS = 1
MAX_YEARS = 30
FINISHED_STATUSES = frozenset({"closed", "recalled"})
"""Account statuses that end the debt's collection here (the lender closed or took it back)."""
ANONYMISED_NAME = "[anonymised]"
"""What an anonymised borrower's name becomes (the column must hold something)."""
REMOVED_TEXT = "[removed]"
"""What the free text of a cleared message, note or dispute becomes (the column must hold something)."""


class Reason(StrEnum):
    """Why something is, or is not yet, due."""

    DUE = "due"
    ALREADY_DONE = "already_done"
    NO_ACCOUNTS = "no_accounts"
    ACCOUNT_OPEN = "account_open"
    DISPUTE_OPEN = "dispute_open"
    MONEY_UNSETTLED = "money_unsettled"
    PLAN_ACTIVE = "plan_active"
    CASE_OPEN = "case_open"
    WITHIN_PERIOD = "within_period"


@dataclass(frozen=True)
class RetentionPolicy:
    """The retention section of the policy."""

    years: int = 6
    """How many whole years after an account ends or a hardship case closes, with nothing
    happening since, the personal data that served it is kept (from 1 to 30)."""

    def validate(self) -> list[str]:
        if isinstance(self.years, bool) or not isinstance(self.years, int):
            return ["retention.years must be a whole number."]
        if not MIN_YEARS <= self.years <= MAX_YEARS:
            return [f"retention.years must be from {MIN_YEARS} to {MAX_YEARS}."]
        return []

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: object) -> RetentionPolicy:
        """Build the section from stored values; a missing setting takes its default, an unknown
        one refuses the policy."""
        if not isinstance(data, Mapping):
            raise _invalid("retention must be a set of named settings.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(map(str, data)) - known)
        if unknown:
            raise _invalid(f"unknown settings {', '.join(f'retention.{name}' for name in unknown)}.")
        return cls(**{str(key): value for key, value in data.items()})


def _invalid(problems: str) -> DomainError:
    return DomainError("policy_invalid", "The policy is invalid: {problems}", problems=problems)


def add_years(day: date, years: int) -> date:
    """``day`` moved by whole ``years`` (29 February becomes 28 February in a common year)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def cutoff(today: date, policy: RetentionPolicy) -> date:
    """The last day something may have gone quiet on and be due ``today``."""
    return add_years(today, -policy.years)


STRIPE_EVENT_KEYS = frozenset({"id", "object", "type", "created", "livemode", "api_version"})
"""What a minimised Stripe event keeps at its top level."""
STRIPE_OBJECT_KEYS = frozenset(
    {
        "id",
        "object",
        "created",
        "amount",
        "amount_received",
        "amount_refunded",
        "amount_capturable",
        "currency",
        "status",
        "payment_intent",
        "charge",
        "balance_transaction",
        "metadata",
        "reason",
        "refunded",
        "captured",
        "paid",
    }
)
"""What a minimised event keeps of its object: ids, amounts, currency, status and Accord's own
metadata (ids of ours); not the card holder's name, e-mail, address, phone or card details."""


def minimal_stripe_payload(payload: Mapping[str, object]) -> dict[str, object]:
    """A Stripe event without the personal data Stripe sent with it: the top-level keys of
    ``STRIPE_EVENT_KEYS`` and, of ``data.object``, the keys of ``STRIPE_OBJECT_KEYS`` (metadata
    only with text values). Minimising a minimised payload changes nothing."""
    kept: dict[str, object] = {k: v for k, v in payload.items() if k in STRIPE_EVENT_KEYS}
    data = payload.get("data")
    if isinstance(data, Mapping):
        obj = data.get("object")
        if isinstance(obj, Mapping):
            small = {k: v for k, v in obj.items() if k in STRIPE_OBJECT_KEYS}
            metadata = small.get("metadata")
            if isinstance(metadata, Mapping):
                small["metadata"] = {str(k): v for k, v in metadata.items() if isinstance(v, str)}
            elif "metadata" in small:
                del small["metadata"]
            kept["data"] = {"object": small}
    return kept


def _latest(days: Iterable[date | None]) -> date | None:
    known = [day for day in days if day is not None]
    return max(known) if known else None


@dataclass(frozen=True)
class AccountFacts:
    """What retention needs to know about one account."""

    status: str
    """open, closed or recalled (``portal.models.accounts.ACCOUNT_STATUSES``)."""
    balance: int
    """The whole debt owed now (principal, interest and fees), in minor units."""
    credit: int
    """Money held for the borrower beyond the debt, in minor units."""
    ended_on: date | None
    """The day it was recalled or closed, or its balance last moved (the ledger's last entry)."""
    last_activity_on: date | None
    """The last day anything happened on it: a payment, a contact, a case, a dispute."""
    dispute_open: bool = False
    """A debt dispute or a card chargeback is open."""
    money_unsettled: bool = False
    """A payment is still in flight, a refund is not final, or a suspense item is open."""
    plan_active: bool = False
    case_open: bool = False
    """A hardship case on it is in an open state."""

    @property
    def finished(self) -> bool:
        """Closed, recalled, or paid off with nothing held for the borrower."""
        return self.status in FINISHED_STATUSES or (self.balance == 0 and self.credit == 0)

    @property
    def quiet_since(self) -> date | None:
        return _latest((self.ended_on, self.last_activity_on))


def account_reason(account: AccountFacts, *, today: date, policy: RetentionPolicy) -> Reason:
    """Whether this account lets its borrower be anonymised (``Reason.DUE``), and if not, why."""
    blocking = (
        (account.dispute_open, Reason.DISPUTE_OPEN),
        (account.money_unsettled, Reason.MONEY_UNSETTLED),
        (account.plan_active, Reason.PLAN_ACTIVE),
        (account.case_open, Reason.CASE_OPEN),
        (not account.finished, Reason.ACCOUNT_OPEN),
    )
    first = next((reason for holds, reason in blocking if holds), None)
    if first is not None:
        return first
    quiet = account.quiet_since
    if quiet is None or quiet > cutoff(today, policy):
        return Reason.WITHIN_PERIOD
    return Reason.DUE


def borrower_reason(
    accounts: Iterable[AccountFacts], *, anonymised: bool, today: date, policy: RetentionPolicy
) -> Reason:
    """Whether a borrower is due to be anonymised: once, with at least one account, every account
    finished and quiet for the whole period. The first account that holds them back says why."""
    if anonymised:
        return Reason.ALREADY_DONE
    reasons = [account_reason(account, today=today, policy=policy) for account in accounts]
    if not reasons:
        return Reason.NO_ACCOUNTS
    return next((reason for reason in reasons if reason is not Reason.DUE), Reason.DUE)


@dataclass(frozen=True)
class CaseFacts:
    """What retention needs to know about one hardship case."""

    state: str
    closed_on: date | None
    """The day it reached its final state."""
    last_activity_on: date | None
    """The last message, note, upload or decision on it, or the day its plan ended."""
    plan_status: str | None = None
    """The status of the plan its signed agreement put in force (active, completed, broken)."""
    dispute_open: bool = False
    """A debt dispute is open on its account (the evidence may be needed)."""
    cleared: bool = False
    """Its personal data was already removed."""


def case_reason(case: CaseFacts, *, today: date, policy: RetentionPolicy) -> Reason:
    """Whether a hardship case's evidence and statement are due to be removed, and if not, why."""
    if case.cleared:
        return Reason.ALREADY_DONE
    if CaseState(case.state) in OPEN_STATES:
        return Reason.CASE_OPEN
    if case.state == CaseState.ACTIVE and case.plan_status in (None, "active"):
        return Reason.PLAN_ACTIVE  # signed: the plan it made is in force (or not known to be over)
    if case.dispute_open:
        return Reason.DISPUTE_OPEN
    quiet = _latest((case.closed_on, case.last_activity_on))
    if quiet is None or quiet > cutoff(today, policy):
        return Reason.WITHIN_PERIOD
    return Reason.DUE
