"""Payments as the checkout service leaves them, Stripe objects about them, and the state a
payment's events leave behind — shared by the webhook tests and the webhook benchmark.

The checkout service creates the Payment row (its idempotency key first, then the
PaymentIntent, whose id it stores); here the rows are built directly."""

from __future__ import annotations

import datetime as dt
import secrets
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.models import (
    Account,
    CreditEntry,
    LedgerEntry,
    Payment,
    Plan,
    PlanInstalment,
    StripeEvent,
    SuspenseItem,
)
from tests import plan_support


def new_payment(
    session: Session,
    account: Account,
    amount: int,
    *,
    currency: str | None = None,
    pi_id: str | None = None,
    status: str = "submitting",
    plan: Plan | None = None,
) -> Payment:
    """A payment the checkout service has asked Stripe for (``pi_id`` stored, or not yet)."""
    payment = Payment(
        account_id=account.id,
        borrower_id=account.borrower_id,
        plan_id=plan.id if plan else None,
        purpose="amount",
        origin="borrower",
        amount=amount,
        currency=currency or account.currency,
        language="en",
        idempotency_key=f"test-{secrets.token_hex(12)}",
        status=status,
        payment_intent_id=pi_id,
    )
    session.add(payment)
    session.commit()
    return payment


def active_plan(session: Session, account: Account, amounts: list[int]) -> Plan:
    """A signed plan in force on ``account`` with instalments of ``amounts``, a month apart."""
    today = dt.date.today()
    due = [today + dt.timedelta(days=30 * n) for n in range(1, len(amounts) + 1)]
    return plan_support.plan(session, due, amounts=amounts, account=account)


# --- Stripe objects ---------------------------------------------------------------------------


def payment_intent(
    payment: Payment,
    pi_id: str,
    *,
    status: str = "succeeded",
    amount: int | None = None,
    currency: str | None = None,
    charge_id: str | None = None,
) -> dict[str, Any]:
    """A PaymentIntent as Stripe sends it in an event (``latest_charge`` expanded, as localstripe
    does; real Stripe sends the id — both are read)."""
    amount = payment.amount if amount is None else amount
    obj: dict[str, Any] = {
        "id": pi_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if status == "succeeded" else 0,
        "currency": (currency or payment.currency).lower(),
        "status": status,
        "metadata": {"accord_payment": str(payment.id)},
        "latest_charge": {"id": charge_id, "object": "charge"} if charge_id else None,
        "last_payment_error": None,
    }
    if status == "requires_payment_method":
        obj["last_payment_error"] = {
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
        }
    return obj


def new_ids() -> dict[str, str]:
    token = secrets.token_hex(8)
    return {"pi": f"pi_{token}", "charge": f"ch_{token}", "refund": f"re_{token}", "dispute": f"dp_{token}"}


# --- What the events left behind ------------------------------------------------------------


@dataclass(frozen=True)
class FinalState:
    balances: tuple[int, int, int]  # principal, interest, fees
    credit_balance: int
    entries: tuple[tuple[str, str, int], ...]  # (kind, component, amount) since the seed, sorted
    net_by_component: tuple[tuple[str, int], ...]
    credit_entries_total: int
    instalments_paid: tuple[int, ...]
    payment_status: str
    reversed_amount: int
    receipt_number: str | None

    @property
    def entry_multiset(self) -> Counter[tuple[str, str, int]]:
        return Counter(self.entries)


def final_state(session: Session, payment_id: int, *, after_entry_id: int = 0) -> FinalState:
    """Read fresh from the database (requests wrote it through their own sessions)."""
    session.expire_all()
    payment = session.get(Payment, payment_id)
    assert payment is not None
    account = session.get(Account, payment.account_id)
    assert account is not None
    entries = session.execute(
        select(LedgerEntry.kind, LedgerEntry.component, LedgerEntry.amount).where(
            LedgerEntry.account_id == account.id, LedgerEntry.id > after_entry_id
        )
    ).all()
    net: Counter[str] = Counter()
    for _kind, component, amount in entries:
        net[component] += amount
    credit = session.scalars(select(CreditEntry.amount).where(CreditEntry.account_id == account.id)).all()
    instalments: tuple[int, ...] = ()
    if payment.plan_id:
        instalments = tuple(
            session.scalars(
                select(PlanInstalment.paid_amount)
                .join(Plan, Plan.id == PlanInstalment.plan_id)
                .where(Plan.id == payment.plan_id)
                .order_by(PlanInstalment.number)
            )
        )
    return FinalState(
        balances=(account.principal_balance, account.interest_balance, account.fees_balance),
        credit_balance=account.credit_balance,
        entries=tuple(sorted((k, c, int(a)) for k, c, a in entries)),
        net_by_component=tuple(sorted(net.items())),
        credit_entries_total=sum(credit),
        instalments_paid=instalments,
        payment_status=payment.status,
        reversed_amount=payment.reversed_amount,
        receipt_number=payment.receipt_number,
    )


def last_entry_id(session: Session) -> int:
    return int(session.scalar(select(LedgerEntry.id).order_by(LedgerEntry.id.desc()).limit(1)) or 0)


def events_stored(session: Session, *ids: str) -> int:
    return len(session.scalars(select(StripeEvent.id).where(StripeEvent.id.in_(ids))).all())


def suspense_for(session: Session, object_id: str) -> list[SuspenseItem]:
    return list(session.scalars(select(SuspenseItem).where(SuspenseItem.stripe_object_id == object_id)))
