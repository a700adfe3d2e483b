"""Recording what Stripe did: payments, refunds and disputes, once each, in any order.

Every path that learns about a PaymentIntent — the webhook, the borrower's result page asking
Stripe, the catch-up job, the autopay run — calls the same ``record_payment_intent``; every path
that learns about a refund or a dispute calls ``record_refund`` / ``record_dispute``. They work
from Stripe's objects as plain dicts and are idempotent and order-independent:

- a payment is recorded once (the payment row is locked, and its status checked, first);
- a late failure never undoes a success;
- the reversed part of a payment is a function of the *total* refunded and disputed
  (``workflows.payments.reversal_split``), so refunds and disputes seen in any order — even
  before the payment itself — end in the same ledger;
- a received amount or currency other than expected goes to suspense, never to the ledger.

Nothing here commits except ``handle_event`` and ``sync_payment``, which are whole use cases.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import stripe
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from portal.db import utcnow
from portal.integrations.notify import Message
from portal.models import (
    Account,
    CreditEntry,
    Dispute,
    Payment,
    Plan,
    PlanInstalment,
    Refund,
    StripeEvent,
    SuspenseItem,
)
from portal.services import audit, integration_events, ledger
from portal.services import policy as policy_service
from portal.services.audit import SYSTEM
from portal.services.hardship import desk_today
from workflows.delinquency import stage_for
from workflows.ledger import EntryKind, Posting
from workflows.money import Component, OpenInstalment, allocate_payment
from workflows.payments import InstalmentState, plan_completed, reversal_split
from workflows.policy import Policy, Stage

log = logging.getLogger(__name__)

HANDLED_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.processing",
        "payment_intent.requires_action",
        "payment_intent.canceled",
        "charge.refunded",
        "charge.refund.updated",
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.closed",
    }
)
# Refunds that have taken (or are taking) the money back; a failed or canceled one gives it back.
COUNTED_REFUNDS = frozenset({"pending", "succeeded", "requires_action"})
CREDIT = "credit"


@dataclass
class Outcome:
    """What one Stripe object did here: applied, ignored (nothing new), waiting (for the payment
    it belongs to) or suspense; plus messages to send once the transaction has committed."""

    outcome: str
    notices: list[Message] = field(default_factory=list)


def stripe_id(value: Any) -> str | None:
    """The id Stripe gave as a reference: a string, or an expanded object (a dict, or the SDK's
    StripeObject, which is not a Mapping) — localstripe always expands ``latest_charge``."""
    if value is None or isinstance(value, str):
        return value
    try:
        found = value["id"]
    except (KeyError, TypeError):
        return None
    return str(found) if found else None


def _lock_payment(session: Session, payment_id: int) -> Payment:
    found = _locked(session, Payment.id == payment_id)
    assert found is not None
    return found


def _locked(session: Session, *where: Any) -> Payment | None:
    """The payment matching ``where``, row-locked (and reloaded) in one query."""
    # The borrower comes along (the receipt is addressed to them); only the payment is locked.
    stmt = (
        select(Payment)
        .options(joinedload(Payment.borrower, innerjoin=True))
        .where(*where)
        .with_for_update(of=Payment)
    )
    return session.execute(stmt.execution_options(populate_existing=True)).scalar_one_or_none()


def find_payment(session: Session, payment_intent: Mapping[str, Any]) -> Payment | None:
    """The payment a PaymentIntent belongs to: by its id, or by the ``accord_payment`` metadata
    Accord puts on every PaymentIntent (for one created just before a crash)."""
    payment = _locked(session, Payment.payment_intent_id == str(payment_intent.get("id")))
    if payment is None:
        ours = (payment_intent.get("metadata") or {}).get("accord_payment")
        if ours and str(ours).isdigit():
            payment = _locked(session, Payment.id == int(ours), Payment.payment_intent_id.is_(None))
    return payment


# --- PaymentIntents --------------------------------------------------------------------------------


def record_payment_intent(session: Session, pi: Mapping[str, Any]) -> Outcome:
    """Bring a payment up to date with its PaymentIntent; never commits."""
    payment = find_payment(session, pi)
    if payment is None:
        return _unknown_payment(session, pi)
    if payment.payment_intent_id is None:
        payment.payment_intent_id = str(pi["id"])
    status = str(pi.get("status") or "")
    if payment.status in ("succeeded", "suspense"):
        return Outcome("ignored")  # final: a late failure or a repeat never undoes it
    if status == "succeeded":
        return _record_success(session, payment, pi)
    before = payment.status
    if status == "requires_payment_method" and pi.get("last_payment_error"):
        error = pi["last_payment_error"] or {}
        payment.status = "failed"
        payment.failure_code = str(error.get("decline_code") or error.get("code") or "card_declined")[:64]
        payment.failure_message = str(error.get("message") or "")[:300] or None
    elif status == "canceled":
        payment.status = "canceled"
    elif status in ("requires_action", "processing"):
        payment.status = status
    else:
        return Outcome("ignored")
    if payment.status == before:
        return Outcome("ignored")
    audit.record(
        session,
        SYSTEM,
        f"payment.{payment.status}",
        "payment",
        payment.id,
        before={"status": before},
        after={"status": payment.status, "failure_code": payment.failure_code},
    )
    notices = []
    if payment.status == "failed" and payment.origin == "autopay":
        from portal.services.autopay import declined_notice  # the autopay module builds on this one

        notice = declined_notice(session, payment)
        notices = [notice] if notice else []
    return Outcome("applied", notices)


def _unknown_payment(session: Session, pi: Mapping[str, Any]) -> Outcome:
    """Money Accord never asked for: held for finance, never guessed onto an account."""
    if pi.get("status") != "succeeded":
        return Outcome("ignored")
    received = int(pi.get("amount_received") or pi.get("amount") or 0)
    _suspense(
        session,
        "unknown_payment",
        object_id=str(pi["id"]),
        payment=None,
        amount=received,
        currency=str(pi.get("currency") or "").upper(),
        detail={"metadata": dict(pi.get("metadata") or {})},
    )
    return Outcome("suspense")


def _suspense(
    session: Session,
    kind: str,
    *,
    object_id: str,
    payment: Payment | None,
    amount: int,
    currency: str,
    detail: dict[str, Any] | None = None,
) -> None:
    exists = session.scalar(
        select(SuspenseItem.id).where(SuspenseItem.kind == kind, SuspenseItem.stripe_object_id == object_id)
    )
    if exists is not None:
        return
    item = SuspenseItem(
        kind=kind,
        stripe_object_id=object_id,
        payment_id=payment.id if payment else None,
        amount=amount,
        currency=currency[:3],
        expected_amount=payment.amount if payment else None,
        expected_currency=payment.currency if payment else None,
        detail=detail,
    )
    session.add(item)
    session.flush()
    audit.record(
        session, SYSTEM, "suspense.opened", "suspense_item", item.id, after={"kind": kind, "amount": amount}
    )
    log.warning("suspense %s for %s: %s %s", kind, object_id, amount, currency)


def _open_instalments(session: Session, account_id: int) -> tuple[Plan | None, list[PlanInstalment]]:
    plan = session.scalar(
        select(Plan).where(Plan.account_id == account_id, Plan.status == "active").with_for_update()
    )
    if plan is None:
        return None, []
    rows = session.scalars(
        select(PlanInstalment)
        .where(PlanInstalment.plan_id == plan.id, PlanInstalment.paid_amount < PlanInstalment.amount)
        .order_by(PlanInstalment.due_on, PlanInstalment.id)
        .with_for_update()
    )
    return plan, list(rows)


def _record_success(session: Session, payment: Payment, pi: Mapping[str, Any]) -> Outcome:
    received = int(pi.get("amount_received") or pi.get("amount") or 0)
    currency = str(pi.get("currency") or "").upper()
    payment.charge_id = stripe_id(pi.get("latest_charge")) or payment.charge_id
    payment.amount_received = received
    payment.received_currency = currency
    before = payment.status
    if currency != payment.currency or received != payment.amount:
        kind = "currency_mismatch" if currency != payment.currency else "amount_mismatch"
        _suspense(session, kind, object_id=str(pi["id"]), payment=payment, amount=received, currency=currency)
        payment.status = "suspense"
        audit.record(
            session,
            SYSTEM,
            "payment.suspense",
            "payment",
            payment.id,
            before={"status": before},
            after={"status": "suspense", "received": received, "currency": currency},
        )
        return Outcome("suspense")

    today = desk_today()
    account = ledger.lock_account(session, payment.account_id)
    policy = policy_service.current(session, today)
    plan, open_rows = _open_instalments(session, account.id)
    allocation = allocate_payment(
        received,
        account.balances(),
        [OpenInstalment(row.id, row.due_on, row.outstanding) for row in open_rows],
        policy.payments.waterfall_components,
    )
    cause = f"payment:{pi['id']}"
    postings = [Posting(c, -amount) for c, amount in allocation.components.items() if amount]
    if postings:
        ledger.post(
            session,
            account,
            EntryKind.PAYMENT,
            postings,
            cause=cause,
            actor=SYSTEM,
            effective_on=today,
            memo="Card payment" if payment.origin == "borrower" else "Automatic payment",
        )
    if allocation.credit:
        _post_credit(session, account, allocation.credit, cause, today)
    _reduce_overdue(session, account, allocation.applied, policy)
    by_id = {row.id: row for row in open_rows}
    for instalment_id, amount in allocation.instalments.items():
        row = by_id[instalment_id]
        row.paid_amount += amount
        if row.outstanding == 0:
            row.status, row.paid_on = "paid", today
    integration_events.emit(
        session,
        account,
        "payment.succeeded",
        {
            "payment_id": payment.id,
            "amount": received,
            "received_on": today.isoformat(),
            "allocation": {c.value: amount for c, amount in allocation.components.items()}
            | {CREDIT: allocation.credit},
            "plan_id": plan.id if plan is not None else None,
            "instalments": [{"id": i, "amount": amount} for i, amount in allocation.instalments.items()],
            "source": payment.origin,
        },
    )
    if plan is not None and plan_completed(
        [InstalmentState(i.number, i.due_on, i.outstanding) for i in plan.instalments]
    ):
        plan.status, plan.completed_on = "completed", today
        audit.record(
            session,
            SYSTEM,
            "plan.completed",
            "plan",
            plan.id,
            before={"status": "active"},
            after={"status": "completed"},
        )
        integration_events.emit(
            session, account, "plan.completed", {"plan_id": plan.id, "completed_on": today.isoformat()}
        )
    payment.allocation = {
        "components": {c.value: amount for c, amount in allocation.components.items()},
        CREDIT: allocation.credit,
        "instalments": {str(k): v for k, v in allocation.instalments.items()},
    }
    payment.status = "succeeded"
    payment.recorded_at = utcnow()
    payment.received_on = today
    payment.receipt_number = f"R{today:%Y%m%d}-{payment.id:07d}"
    audit.record(
        session,
        SYSTEM,
        "payment.succeeded",
        "payment",
        payment.id,
        before={"status": before},
        after={"status": "succeeded", "allocation": payment.allocation},
    )
    session.flush()
    # Refunds or disputes that arrived before the payment was recorded apply now.
    _sync_reversal(session, payment, cause=f"payment:{pi['id']}:waiting")
    notice = receipt_notice(payment)
    return Outcome("applied", [notice] if notice else [])


def _reduce_overdue(session: Session, account: Account, applied: int, policy: Policy) -> None:
    """What was paid comes off the overdue part first; once nothing is overdue the account is
    current again (the daily run recomputes both from the lender's schedule)."""
    before = {"overdue_amount": account.overdue_amount, "dpd": account.dpd, "stage": account.stage}
    account.overdue_amount = max(0, account.overdue_amount - applied)
    if account.overdue_amount == 0 and account.stage not in (Stage.LEGAL, Stage.CHARGED_OFF):
        account.oldest_unpaid_due_on = None
        account.dpd = 0
        account.stage = stage_for(0, policy).value
    after = {"overdue_amount": account.overdue_amount, "dpd": account.dpd, "stage": account.stage}
    if after != before:
        audit.record(
            session, SYSTEM, "account.overdue_paid", "account", account.id, before=before, after=after
        )


def _post_credit(session: Session, account: Account, amount: int, cause: str, today: dt.date) -> None:
    session.add(CreditEntry(account_id=account.id, amount=amount, cause=cause, effective_on=today))
    before = account.credit_balance
    account.credit_balance = before + amount
    audit.record(
        session,
        SYSTEM,
        "credit.posted",
        "account",
        account.id,
        before={"credit_balance": before},
        after={"credit_balance": account.credit_balance, "cause": cause},
    )


# --- Reversals: refunds and disputes -------------------------------------------------------------


def _reversal_target(payment: Payment) -> int:
    refunded = sum(r.amount for r in payment.refunds if r.status in COUNTED_REFUNDS)
    disputed = sum(d.amount for d in payment.disputes if d.status in ("open", "lost"))
    return min(refunded + disputed, payment.amount)


def _lines(payment: Payment) -> dict[str, int]:
    allocation = payment.allocation or {}
    lines = {c: int(v) for c, v in (allocation.get("components") or {}).items()}
    lines[CREDIT] = int(allocation.get(CREDIT) or 0)
    return lines


def _has_reversals(session: Session, payment_id: int) -> bool:
    refunds = select(Refund.id).where(Refund.payment_id == payment_id)
    disputes = select(Dispute.id).where(Dispute.payment_id == payment_id)
    return session.scalar(select(refunds.union_all(disputes).exists())) or False


def _sync_reversal(session: Session, payment: Payment, *, cause: str) -> None:
    """Move the ledger from the payment's current reversed amount to the one its refunds and
    disputes call for: reversal entries when more is reversed, restoring entries when less."""
    if payment.status != "succeeded":
        return  # waiting: applied once the payment is recorded
    session.flush()
    if payment.reversed_amount == 0 and not _has_reversals(session, payment.id):
        return  # the usual case, a payment nobody refunded or disputed: one query, not two
    session.refresh(payment, ["refunds", "disputes"])
    before, after = payment.reversed_amount, _reversal_target(payment)
    if before == after:
        return
    lines = _lines(payment)
    delta = {k: reversal_split(after, lines)[k] - reversal_split(before, lines)[k] for k in lines}
    today = desk_today()
    account = ledger.lock_account(session, payment.account_id)
    more = [Posting(Component(k), v) for k, v in delta.items() if k != CREDIT and v > 0]
    if more:
        ledger.post(
            session,
            account,
            EntryKind.REVERSAL,
            more,
            cause=cause,
            actor=SYSTEM,
            effective_on=today,
            memo="Payment reversed",
        )
    restore_credit = 0
    balances = account.balances()
    less = []
    for k, v in delta.items():
        if k != CREDIT and v < 0:
            # Restoring cannot take a balance below zero (the borrower may have paid it again
            # meanwhile): what does not fit is held as credit.
            fits = min(-v, balances[Component(k)])
            if fits:
                less.append(Posting(Component(k), -fits))
            restore_credit += -v - fits
    if less:
        ledger.post(
            session,
            account,
            EntryKind.PAYMENT,
            less,
            cause=cause,
            actor=SYSTEM,
            effective_on=today,
            memo="Payment restored",
        )
    credit_delta = -delta.get(CREDIT, 0) + restore_credit
    if credit_delta < 0 and account.credit_balance + credit_delta < 0:
        # The credit was already given back or used: the rest is owed again.
        owed = -(account.credit_balance + credit_delta)
        credit_delta += owed
        ledger.post(
            session,
            account,
            EntryKind.REVERSAL,
            [Posting(Component.PRINCIPAL, owed)],
            cause=cause,
            actor=SYSTEM,
            effective_on=today,
            memo="Payment reversed",
        )
    if credit_delta:
        _post_credit(session, account, credit_delta, cause, today)
    _sync_instalments(session, payment, before, after, today)
    payment.reversed_amount = after
    audit.record(
        session,
        SYSTEM,
        "payment.reversal",
        "payment",
        payment.id,
        before={"reversed_amount": before},
        after={"reversed_amount": after, "cause": cause},
    )
    integration_events.emit(
        session,
        account,
        "payment.reversed" if after > before else "payment.reinstated",
        {
            "payment_id": payment.id,
            "amount": abs(after - before),
            "reversed_amount": after,
            "reason": _reversal_reason(payment, cause),
        },
    )


def _reversal_reason(payment: Payment, cause: str) -> str:
    """What changed the reversed amount, for the lender: "refund" or "dispute" as the cause says;
    reversals that waited for the payment to be recorded count as a dispute if one is open or
    lost, else as refunds."""
    kind = cause.split(":", 1)[0]
    if kind in ("refund", "dispute"):
        return kind
    return "dispute" if any(d.status in ("open", "lost") for d in payment.disputes) else "refund"


def _sync_instalments(session: Session, payment: Payment, before: int, after: int, today: dt.date) -> None:
    instalments = {int(k): int(v) for k, v in ((payment.allocation or {}).get("instalments") or {}).items()}
    if not instalments:
        return
    # What paid no instalment (beyond the plan's open instalments: more principal, or a credit)
    # is a line too, so a reversal of the whole payment fits and each instalment loses its share.
    lines: dict[int | None, int] = {**instalments, None: payment.amount - sum(instalments.values())}
    old, new = reversal_split(before, lines), reversal_split(after, lines)
    rows = session.scalars(
        select(PlanInstalment).where(PlanInstalment.id.in_(instalments)).with_for_update()
    ).all()
    for row in rows:
        change = new[row.id] - old[row.id]
        row.paid_amount = max(0, min(row.amount, row.paid_amount - change))
        if row.outstanding > 0 and row.status == "paid":
            row.status, row.paid_on = "due", None
        elif row.outstanding == 0 and row.status != "paid":
            row.status, row.paid_on = "paid", today


def payment_for_charge(session: Session, charge_id: str | None, pi_id: str | None) -> Payment | None:
    found = _locked(session, Payment.payment_intent_id == pi_id) if pi_id else None
    if found is None and charge_id:
        found = _locked(session, Payment.charge_id == charge_id)
    return found


def record_refund(session: Session, refund: Mapping[str, Any], payment: Payment) -> Outcome:
    """A refund as Stripe reports it: stored once by its id (or matched to the one finance asked
    for by its metadata), then the payment's reversal brought up to date."""
    refund_id = str(refund["id"])
    row = session.scalar(select(Refund).where(Refund.stripe_refund_id == refund_id))
    if row is None:
        ours = (refund.get("metadata") or {}).get("accord_refund")
        if ours and str(ours).isdigit():
            row = session.scalar(
                select(Refund).where(
                    Refund.id == int(ours),
                    Refund.payment_id == payment.id,
                    Refund.stripe_refund_id.is_(None),
                )
            )
    status = str(refund.get("status") or "succeeded")
    if row is None:
        row = Refund(
            payment_id=payment.id,
            stripe_refund_id=refund_id,
            amount=int(refund["amount"]),
            currency=str(refund.get("currency") or payment.currency).upper(),
            reason=str(refund.get("reason") or "Refund made in Stripe")[:300],
            status=status,
        )
        session.add(row)
        session.flush()
        audit.record(
            session, SYSTEM, "refund.seen", "refund", row.id, after={"amount": row.amount, "status": status}
        )
    elif row.stripe_refund_id == refund_id and row.status == status:
        return Outcome("ignored" if payment.status == "succeeded" else "waiting")
    else:
        before = row.status
        row.stripe_refund_id, row.status = refund_id, status
        audit.record(
            session,
            SYSTEM,
            "refund.updated",
            "refund",
            row.id,
            before={"status": before},
            after={"status": status},
        )
    _sync_reversal(session, payment, cause=f"refund:{refund_id}")
    return Outcome("applied" if payment.status == "succeeded" else "waiting")


DISPUTE_STATUS = {"won": "won", "warning_closed": "won", "lost": "lost"}


def record_dispute(session: Session, dispute: Mapping[str, Any], payment: Payment) -> Outcome:
    """A chargeback: open or lost keeps the payment reversed by its amount; won restores it."""
    dispute_id = str(dispute["id"])
    status = DISPUTE_STATUS.get(str(dispute.get("status")), "open")
    row = session.scalar(select(Dispute).where(Dispute.stripe_dispute_id == dispute_id).with_for_update())
    if row is None:
        row = Dispute(
            payment_id=payment.id,
            stripe_dispute_id=dispute_id,
            amount=int(dispute["amount"]),
            currency=str(dispute.get("currency") or payment.currency).upper(),
            reason=str(dispute.get("reason") or "")[:64] or None,
            status=status,
            closed_at=utcnow() if status != "open" else None,
        )
        session.add(row)
        session.flush()
        audit.record(
            session, SYSTEM, "dispute.seen", "dispute", row.id, after={"status": status, "amount": row.amount}
        )
    elif row.status == status or row.status != "open":
        # Nothing new, or an "updated"/"created" arriving after the dispute was closed.
        return Outcome("ignored" if payment.status == "succeeded" else "waiting")
    else:
        row.status, row.closed_at = status, utcnow()
        audit.record(
            session,
            SYSTEM,
            "dispute.closed",
            "dispute",
            row.id,
            before={"status": "open"},
            after={"status": status},
        )
    _sync_reversal(session, payment, cause=f"dispute:{dispute_id}")
    return Outcome("applied" if payment.status == "succeeded" else "waiting")


# --- Events ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventResult:
    outcome: str  # applied | ignored | waiting | suspense | duplicate
    notices: tuple[Message, ...] = ()


def _apply_event(session: Session, event: Mapping[str, Any], client: stripe.StripeClient | None) -> Outcome:
    kind = str(event["type"])
    obj = event["data"]["object"]
    if kind not in HANDLED_EVENTS:
        log.info("stripe event %s (%s) acknowledged and ignored", event.get("id"), kind)
        return Outcome("ignored")
    if kind.startswith("payment_intent."):
        return record_payment_intent(session, obj)
    if kind in ("charge.refunded", "charge.refund.updated"):
        refunds = (
            [obj] if kind == "charge.refund.updated" else list((obj.get("refunds") or {}).get("data") or [])
        )
        charge_id = stripe_id(obj.get("charge")) if kind == "charge.refund.updated" else str(obj["id"])
        payment = payment_for_charge(session, charge_id, stripe_id(obj.get("payment_intent")))
        if payment is None:
            return _unknown_reversal(session, obj)
        outcomes = [record_refund(session, refund, payment).outcome for refund in refunds]
        return Outcome(_combined(outcomes))
    payment = payment_for_charge(session, stripe_id(obj.get("charge")), stripe_id(obj.get("payment_intent")))
    if payment is None and client is not None and obj.get("charge"):
        try:
            charge = client.v1.charges.retrieve(str(stripe_id(obj["charge"])))
        except stripe.InvalidRequestError:
            charge = None  # Stripe knows no such charge: not ours (other errors: 500, Stripe retries)
        if charge is not None:
            payment = payment_for_charge(session, None, stripe_id(charge.get("payment_intent")))
    if payment is None:
        return _unknown_reversal(session, obj)
    return record_dispute(session, obj, payment)


def _unknown_reversal(session: Session, obj: Mapping[str, Any]) -> Outcome:
    _suspense(
        session,
        "unknown_payment",
        object_id=str(obj["id"]),
        payment=None,
        amount=int(obj.get("amount") or 0),
        currency=str(obj.get("currency") or "").upper(),
        detail={"object": obj.get("object")},
    )
    return Outcome("suspense")


def _combined(outcomes: Iterable[str]) -> str:
    found = set(outcomes)
    for outcome in ("applied", "waiting", "suspense"):
        if outcome in found:
            return outcome
    return "ignored"


def handle_event(
    session: Session,
    event: Mapping[str, Any],
    *,
    source: str = "webhook",
    client: stripe.StripeClient | None = None,
) -> EventResult:
    """Process one verified Stripe event: its id is stored in the same transaction as its
    effects, so a redelivery — even a concurrent one — finds it and changes nothing."""
    event_id = str(event["id"])
    if session.get(StripeEvent, event_id) is not None:
        return EventResult("duplicate")
    obj = event["data"]["object"]
    row = StripeEvent(
        id=event_id,
        type=str(event["type"])[:64],
        object_id=stripe_id(obj)[:255] if isinstance(obj, Mapping) and obj.get("id") else None,
        stripe_created=dt.datetime.fromtimestamp(int(event.get("created") or 0), dt.UTC),
        source=source,
        outcome="ignored",
        payload=dict(event),
    )
    session.add(row)
    try:
        # The event row first: a concurrent delivery of the same event waits here on the
        # primary key and then fails, before it has touched anything else.
        session.flush()
        outcome = _apply_event(session, event, client)
        row.outcome = outcome.outcome
        session.commit()
    except IntegrityError:
        session.rollback()
        if session.get(StripeEvent, event_id) is not None:
            return EventResult("duplicate")
        raise
    return EventResult(outcome.outcome, tuple(outcome.notices))


def catch_up(session: Session, client: stripe.StripeClient, *, pages: int = 10) -> dict[str, int]:
    """Feed recent Stripe events that were never processed (a webhook outage) through the same
    handler; events already stored are skipped, so running it twice changes nothing."""
    counts: dict[str, int] = {}
    starting_after: str | None = None
    for _ in range(pages):
        params: dict[str, Any] = {"limit": 100}
        if starting_after:
            params["starting_after"] = starting_after
        page = client.v1.events.list(params=params)
        events = list(page.data)
        if not events:
            break
        ids = [e.id for e in events]
        known = set(session.scalars(select(StripeEvent.id).where(StripeEvent.id.in_(ids))))
        for event in events:
            if event.id in known:
                counts["known"] = counts.get("known", 0) + 1
                continue
            result = handle_event(session, event.to_dict(), source="catch_up", client=client)
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
            _send(result.notices)
        if not page.has_more:
            break
        starting_after = events[-1].id
    return counts


STUCK_AFTER = dt.timedelta(minutes=10)


def recover_stuck(
    session: Session, client: stripe.StripeClient, *, stale_after: dt.timedelta = STUCK_AFTER, pages: int = 10
) -> dict[str, int]:
    """Borrower payments left in ``submitting`` without a PaymentIntent id — Stripe unreachable,
    or a crash between its answer and storing it. The PaymentIntent Stripe has for one (found by
    its ``accord_payment`` metadata) is recorded; without one the payment failed and nothing was
    taken: no charge is made once the borrower has left. (A PaymentIntent found later still
    records it: ``failed`` is not final.) Autopay has its own recovery (portal.services.autopay)."""
    cutoff = utcnow() - stale_after
    stuck = session.scalars(
        select(Payment.id).where(
            Payment.origin == "borrower",
            Payment.status == "submitting",
            Payment.payment_intent_id.is_(None),
            Payment.updated_at <= cutoff,
        )
    ).all()
    session.rollback()
    counts: dict[str, int] = {}
    if not stuck:
        return counts
    wanted = {str(payment_id) for payment_id in stuck}
    found: dict[str, dict[str, Any]] = {}
    starting_after: str | None = None
    for _ in range(pages):
        params: dict[str, Any] = {"limit": 100}
        if starting_after:
            params["starting_after"] = starting_after
        page = client.v1.payment_intents.list(params=params)  # type: ignore[arg-type]
        for intent in page.data:
            data = intent.to_dict()
            ours = (data.get("metadata") or {}).get("accord_payment")
            if ours in wanted:
                found[str(ours)] = data
        if not page.data or not page.has_more or len(found) == len(wanted):
            break
        starting_after = page.data[-1].id
    for payment_id in stuck:
        payment = _lock_payment(session, payment_id)
        if payment.status != "submitting" or payment.payment_intent_id is not None:
            session.rollback()
            continue
        intent = found.get(str(payment_id))
        if (
            intent is not None
            and intent.get("amount") == payment.amount
            and str(intent.get("currency") or "").upper() == payment.currency
        ):
            outcome = record_payment_intent(session, intent)
            counts["adopted"] = counts.get("adopted", 0) + 1
        else:
            payment.status, payment.failure_code = "failed", "not_submitted"
            payment.failure_message = "Stripe was not reached; nothing was taken."
            audit.record(
                session,
                SYSTEM,
                "payment.failed",
                "payment",
                payment.id,
                before={"status": "submitting"},
                after={"status": "failed", "failure_code": "not_submitted"},
            )
            outcome = Outcome("applied")
            counts["failed"] = counts.get("failed", 0) + 1
        session.commit()
        _send(outcome.notices)
    return counts


def _send(notices: Iterable[Message]) -> None:
    from portal.tasks import send_message

    for notice in notices:
        send_message(notice.to_dict())


def sync_payment(session: Session, client: stripe.StripeClient, payment_id: int) -> Payment:
    """Ask Stripe about a payment still in flight and record what it says (the result page, the
    autopay run and the recovery job use this; the webhook may have done it already)."""
    payment = session.get(Payment, payment_id)
    if payment is None or payment.payment_intent_id is None or payment.status in ("succeeded", "suspense"):
        return payment  # type: ignore[return-value]
    pi = client.v1.payment_intents.retrieve(payment.payment_intent_id)
    outcome = record_payment_intent(session, pi.to_dict())
    session.commit()
    _send(outcome.notices)
    return payment


# --- Receipts --------------------------------------------------------------------------------------


def receipt_notice(payment: Payment) -> Message | None:
    """The receipt by e-mail (or a short text): it says a payment was received, with the
    receipt number; the full receipt (page and PDF) is behind sign-in."""
    from flask_babel import force_locale, gettext

    from portal.formatting import money

    borrower = payment.borrower
    channel, recipient = ("email", borrower.email) if borrower.email else ("sms", borrower.phone)
    if not recipient:
        return None
    with force_locale(borrower.language):
        amount = money(payment.amount, payment.currency)
        body = gettext(
            "We received your payment of %(amount)s. Receipt number %(number)s."
            " Sign in to Accord to see or download the receipt.",
            amount=amount,
            number=payment.receipt_number,
        )
        subject = gettext("Payment received: %(number)s", number=payment.receipt_number)
    return Message(channel, recipient, body, "payment_receipt", subject=subject)
