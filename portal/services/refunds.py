"""Refunds by finance, and what finance reads: payments, their ledger effects, suspense items.

A refund is asked for with an amount and a reason. Above the policy's threshold it waits for a
second finance user (never the one who asked); otherwise — or once approved — the refund row and
its idempotency key ``refund:<id>`` are committed in ``submitting`` before Stripe is called, and
Stripe's answer is posted through ``payments.record_refund``, the one way a refund's effect
(reversal entries on the ledger, the instalments reopened) is posted. Every step is audited.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import stripe
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from portal.db import utcnow
from portal.models import LedgerEntry, Payment, Refund, StaffUser, SuspenseItem
from portal.models.payments import PAYMENT_STATUSES
from portal.services import audit
from portal.services import payments as payments_service
from portal.services import policy as policy_service
from portal.services.audit import Actor
from portal.services.hardship import desk_today
from workflows.access import Permission
from workflows.errors import DomainError
from workflows.money import parse_amount
from workflows.payments import check_refund, refund_needs_second_approval, refundable

log = logging.getLogger(__name__)

PAGE = 50
REASON_MAX = 300
# Refunds that hold part of the payment: asked for, on the way, or done.
HOLDING = ("awaiting_approval", "submitting", "pending", "succeeded", "requires_action")


# --- Reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentPage:
    payments: list[Payment]
    after: int | None
    """The cursor for the next (older) page: the last id shown."""


def parse_cursor(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() and len(raw) <= 18 else None


def list_payments(session: Session, status: str | None, after: int | None) -> PaymentPage:
    """Payments newest first, a page at a time (keyset on the id), optionally of one status."""
    stmt = select(Payment).options(selectinload(Payment.account)).order_by(Payment.id.desc()).limit(PAGE + 1)
    if status in PAYMENT_STATUSES:
        stmt = stmt.where(Payment.status == status)
    if after is not None:
        stmt = stmt.where(Payment.id < after)
    rows = list(session.scalars(stmt))
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return PaymentPage(rows, rows[-1].id if more and rows else None)


def awaiting_approval(session: Session) -> list[Refund]:
    return list(
        session.scalars(
            select(Refund)
            .options(selectinload(Refund.payment))
            .where(Refund.status == "awaiting_approval")
            .order_by(Refund.id)
        )
    )


@dataclass(frozen=True)
class PaymentDetail:
    payment: Payment
    entries: list[LedgerEntry]
    """Every ledger entry the payment, its refunds and its disputes caused."""
    refundable: int
    staff: dict[int, str]
    """Names of the staff who asked for or decided its refunds."""
    suspense: list[SuspenseItem]


def _holding(payment: Payment) -> tuple[int, int]:
    refunded = sum(r.amount for r in payment.refunds if r.status in HOLDING)
    disputed = sum(d.amount for d in payment.disputes if d.status in ("open", "lost"))
    return refunded, disputed


def payment_detail(session: Session, payment_id: int) -> PaymentDetail | None:
    payment = session.scalar(
        select(Payment)
        .options(selectinload(Payment.refunds), selectinload(Payment.disputes))
        .where(Payment.id == payment_id)
    )
    if payment is None:
        return None
    causes = []
    if payment.payment_intent_id:
        causes += [f"payment:{payment.payment_intent_id}", f"payment:{payment.payment_intent_id}:waiting"]
    causes += [f"refund:{r.stripe_refund_id}" for r in payment.refunds if r.stripe_refund_id]
    causes += [f"dispute:{d.stripe_dispute_id}" for d in payment.disputes]
    entries = (
        list(
            session.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.account_id == payment.account_id, LedgerEntry.cause.in_(causes))
                .order_by(LedgerEntry.id)
            )
        )
        if causes
        else []
    )
    ids = {r.requested_by_id for r in payment.refunds} | {r.approved_by_id for r in payment.refunds}
    ids.discard(None)
    staff = (
        {
            row.id: row.full_name
            for row in session.execute(select(StaffUser.id, StaffUser.full_name).where(StaffUser.id.in_(ids)))
        }
        if ids
        else {}
    )
    left = refundable(payment.amount, *_holding(payment)) if payment.status == "succeeded" else 0
    suspense = list(session.scalars(select(SuspenseItem).where(SuspenseItem.payment_id == payment.id)))
    return PaymentDetail(payment, entries, left, staff, suspense)


def open_suspense(session: Session, after: int | None = None) -> list[SuspenseItem]:
    stmt = select(SuspenseItem).where(SuspenseItem.status == "open").order_by(SuspenseItem.id).limit(PAGE)
    if after is not None:
        stmt = stmt.where(SuspenseItem.id > after)
    return list(session.scalars(stmt))


def status_counts(session: Session) -> dict[str, int]:
    return dict(session.execute(select(Payment.status, func.count()).group_by(Payment.status)).all())  # type: ignore[arg-type]


# --- Refunds -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundResult:
    refund_id: int
    status: str


def _require(user: StaffUser) -> None:
    if not user.can(Permission.MANAGE_PAYMENTS):
        raise DomainError("not_allowed", "Your role may not do this.")


def _lock_refund(session: Session, refund_id: int) -> Refund:
    refund = session.scalar(
        select(Refund)
        .where(Refund.id == refund_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if refund is None:
        raise DomainError("refund_unknown", "This refund was not found.")
    return refund


def _check_amount(payment: Payment, amount: int, *, leaving_out: int | None = None) -> None:
    session_refunds = [r for r in payment.refunds if r.id != leaving_out]
    refunded = sum(r.amount for r in session_refunds if r.status in HOLDING)
    disputed = sum(d.amount for d in payment.disputes if d.status in ("open", "lost"))
    try:
        check_refund(amount, payment.amount, refunded, disputed)
    except DomainError as exc:
        if exc.code == "refund_too_large":
            left = refundable(payment.amount, refunded, disputed)
            raise DomainError(
                "refund_too_large",
                "At most {refundable} of this payment can be refunded.",
                refundable=left,
                currency=payment.currency,
            ) from exc
        raise


def request_refund(
    session: Session,
    client: stripe.StripeClient,
    user: StaffUser,
    payment_id: int,
    *,
    amount_text: str,
    reason: str,
) -> RefundResult:
    """Ask for a refund of a recorded payment: sent to Stripe at once within the policy's
    threshold, else left for a second finance user's approval."""
    _require(user)
    if session.get(Payment, payment_id) is None:
        raise DomainError("payment_unknown", "This payment was not found.")
    payment = payments_service._lock_payment(session, payment_id)
    if payment.status != "succeeded" or not payment.payment_intent_id:
        raise DomainError("refund_payment_not_recorded", "Only a recorded payment can be refunded.")
    reason = " ".join((reason or "").split())
    if not reason or len(reason) > REASON_MAX:
        raise DomainError("refund_reason_required", "Write why.", maximum=REASON_MAX)
    amount = parse_amount(amount_text or "", payment.currency)
    session.refresh(payment, ["refunds", "disputes"])
    _check_amount(payment, amount)
    policy = policy_service.current(session, desk_today())
    second = refund_needs_second_approval(
        amount, payment.currency, policy.payments.refund_second_approval_above
    )
    refund = Refund(
        payment_id=payment.id,
        amount=amount,
        currency=payment.currency,
        reason=reason,
        status="awaiting_approval" if second else "submitting",
        requested_by_id=user.id,
    )
    session.add(refund)
    session.flush()
    refund.idempotency_key = f"refund:{refund.id}"
    audit.record(
        session,
        Actor.staff(user),
        "refund.requested",
        "refund",
        refund.id,
        after={"payment": payment.id, "amount": amount, "status": refund.status, "reason": reason},
    )
    session.commit()
    if second:
        return RefundResult(refund.id, refund.status)
    return submit(session, client, refund.id)


def approve(session: Session, client: stripe.StripeClient, user: StaffUser, refund_id: int) -> RefundResult:
    """The second approval: by another finance user than the one who asked; then sent."""
    _require(user)
    refund = _lock_refund(session, refund_id)
    if refund.status != "awaiting_approval":
        raise DomainError("refund_not_awaiting", "This refund is not awaiting approval.")
    if refund.requested_by_id == user.id:
        raise DomainError("refund_own_request", "Nobody may approve their own refund.")
    payment = payments_service._lock_payment(session, refund.payment_id)
    session.refresh(payment, ["refunds", "disputes"])
    _check_amount(payment, refund.amount, leaving_out=refund.id)
    refund.status, refund.approved_by_id, refund.decided_at = "submitting", user.id, utcnow()
    audit.record(
        session,
        Actor.staff(user),
        "refund.approved",
        "refund",
        refund.id,
        before={"status": "awaiting_approval"},
        after={"status": "submitting", "amount": refund.amount},
    )
    session.commit()
    return submit(session, client, refund.id)


def reject(session: Session, user: StaffUser, refund_id: int, note: str = "") -> RefundResult:
    """Turn down a refund waiting for approval (the one who asked may withdraw it the same way)."""
    _require(user)
    refund = _lock_refund(session, refund_id)
    if refund.status != "awaiting_approval":
        raise DomainError("refund_not_awaiting", "This refund is not awaiting approval.")
    refund.status, refund.decided_at = "rejected", utcnow()
    audit.record(
        session,
        Actor.staff(user),
        "refund.rejected",
        "refund",
        refund.id,
        before={"status": "awaiting_approval"},
        after={"status": "rejected", "note": " ".join(note.split())[:REASON_MAX] or None},
    )
    session.commit()
    return RefundResult(refund.id, refund.status)


def _existing(client: stripe.StripeClient, pi_id: str, refund_id: int) -> dict[str, Any] | None:
    """The refund Stripe already made for this row (a retry after a crash), by its metadata."""
    page = client.v1.refunds.list(params={"payment_intent": pi_id, "limit": 100})
    for found in page.data:
        data = found.to_dict()
        if (data.get("metadata") or {}).get("accord_refund") == str(refund_id):
            return data
    return None


def submit(session: Session, client: stripe.StripeClient, refund_id: int) -> RefundResult:
    """Send a refund in ``submitting`` to Stripe (or find the one a crash left there) and post
    its effect. A refusal by Stripe fails the refund; an outage leaves it to be sent again."""
    refund = session.get(Refund, refund_id)
    if refund is None or refund.status != "submitting":
        raise DomainError("refund_not_awaiting", "This refund is not awaiting approval.")
    payment = session.get(Payment, refund.payment_id)
    assert payment is not None
    assert payment.payment_intent_id
    pi_id, amount, key = payment.payment_intent_id, refund.amount, refund.idempotency_key
    session.rollback()  # no transaction is held open while Stripe is called
    try:
        data = (
            _existing(client, pi_id, refund_id)
            or client.v1.refunds.create(
                params={
                    "payment_intent": pi_id,
                    "amount": amount,
                    "metadata": {"accord_refund": str(refund_id)},
                },
                options={"idempotency_key": key or f"refund:{refund_id}"},
            ).to_dict()
        )
    except stripe.InvalidRequestError as exc:
        locked = _lock_refund(session, refund_id)
        if locked.status == "submitting":
            locked.status = "failed"
            audit.record(
                session,
                audit.SYSTEM,
                "refund.failed",
                "refund",
                refund_id,
                before={"status": "submitting"},
                after={"status": "failed", "error": str(exc.user_message or exc)[:300]},
            )
            session.commit()
        raise DomainError("refund_refused", "Stripe refused this refund.") from exc
    except stripe.StripeError as exc:
        log.warning("refund %s left in submitting: %s", refund_id, exc)
        raise DomainError("refund_not_sent", "Stripe could not be reached.") from exc
    locked_payment = payments_service._lock_payment(session, payment.id)
    payments_service.record_refund(session, data, locked_payment)
    session.commit()
    refund = session.get(Refund, refund_id)
    assert refund is not None
    return RefundResult(refund_id, refund.status)


def stuck_refunds(session: Session, older_than: dt.timedelta = dt.timedelta(minutes=10)) -> list[int]:
    """Refunds left in ``submitting`` (Stripe unreachable, or a crash): ``submit`` finishes each."""
    cutoff = utcnow() - older_than
    return list(
        session.scalars(
            select(Refund.id).where(
                Refund.status == "submitting",
                Refund.stripe_refund_id.is_(None),
                or_(Refund.decided_at.is_(None), Refund.decided_at <= cutoff),
                Refund.created_at <= cutoff,
            )
        )
    )
