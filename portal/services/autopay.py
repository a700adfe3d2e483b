"""Autopay and the plan's daily check: charging due instalments off-session, marking instalments
missed after the grace days, and breaking plans by policy.

Autopay never charges twice, whatever crashes where:

1. the payment row, with its deterministic idempotency key ``autopay:<instalment>:<attempt>``
   (unique), is inserted and committed *before* Stripe is called, so two runs cannot both
   create it and a crash leaves the row behind in ``submitting``;
2. a row found in ``submitting`` without its PaymentIntent id (a crash after step 1) is claimed
   with a version check, then Stripe's recent PaymentIntents are searched for the one carrying
   its ``accord_payment`` metadata: found, it is adopted; not found, it is created with the same
   idempotency key (which Stripe honours; localstripe ignores keys, hence the search);
3. the result is recorded through ``payments.record_payment_intent`` — the one way a
   PaymentIntent's result is posted.

Each step is its own transaction; messages are sent after the commit that decided them.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import stripe
from flask import current_app, has_app_context, has_request_context, request, url_for
from flask_babel import force_locale, gettext
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.integrations.notify import Message
from portal.models import (
    Account,
    AuditEvent,
    AutopayMandate,
    Borrower,
    Payment,
    Plan,
    PlanInstalment,
    SavedCard,
    StripeCustomer,
)
from portal.services import audit, integration_events
from portal.services import payments as payments_service
from portal.services import policy as policy_service
from portal.services.audit import SYSTEM
from workflows.payments import InstalmentState, autopay_attempt_on, plan_break_reason

log = logging.getLogger(__name__)

IN_FLIGHT = ("created", "submitting", "requires_action", "processing")
"""An autopay payment in one of these is not finished: no other charge for its plan starts."""
DONE = ("succeeded", "suspense")
"""An instalment with a payment in one of these is not charged again by autopay."""
STALE_AFTER = dt.timedelta(minutes=10)
"""A row left in ``submitting`` this long is taken for a crash (a live run takes seconds)."""
SEARCH_PAGES = 10
"""How many pages of 100 recent PaymentIntents are searched for one created before a crash."""


@dataclass
class AutopayReport:
    """What one run did: charges made (by their outcome), recoveries, and what it left."""

    succeeded: int = 0
    failed: int = 0
    pending: int = 0
    """Charges Stripe has not finished (processing): recorded when it tells us."""
    recovered: int = 0
    """Rows left in ``submitting`` by a crash, brought to an end (adopted or created)."""
    adopted: int = 0
    """Of those, how many had a PaymentIntent at Stripe already (nothing charged again)."""
    skipped: int = 0
    """Charges another run created first (the idempotency key was taken)."""
    errors: int = 0
    """Charges left in ``submitting`` (Stripe unreachable): the next run finishes them."""
    payment_ids: list[int] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.succeeded} collected, {self.failed} declined, {self.pending} pending, "
            f"{self.recovered} recovered ({self.adopted} found at Stripe), {self.skipped} skipped, "
            f"{self.errors} left for the next run"
        )


@dataclass
class PlanCheckReport:
    missed: int = 0
    """Instalments marked missed today."""
    broken: int = 0
    """Plans broken today."""
    broken_plan_ids: list[int] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.missed} instalment(s) marked missed, {self.broken} plan(s) broken"


# --- Messages ------------------------------------------------------------------------------------


def _contact(borrower: Borrower) -> tuple[str, str] | None:
    channel, recipient = ("sms", borrower.phone) if borrower.phone else ("email", borrower.email)
    return (channel, recipient) if recipient else None


def _pay_link(account_id: int) -> str:
    """Where the borrower pays by hand: the account page (behind sign-in)."""
    base = str(current_app.config.get("PUBLIC_URL") or "").rstrip("/") if has_app_context() else ""
    if has_request_context():
        path = url_for("borrower.account", account_id=account_id)
        return (base or request.host_url.rstrip("/")) + path
    return f"{base}/accounts/{account_id}"


def declined_notice(session: Session, payment: Payment) -> Message | None:
    """A discreet message that an automatic payment did not go through, with a link to pay by
    hand: it names neither the debt, the amount nor the lender (a lock screen shows it)."""
    borrower = session.get(Borrower, payment.borrower_id)
    if borrower is None:
        return None
    contact = _contact(borrower)
    if contact is None:
        return None
    with force_locale(borrower.language):
        body = gettext(
            "An automatic payment in Accord did not go through. You can pay by hand here: %(link)s",
            link=_pay_link(payment.account_id),
        )
        subject = gettext("An automatic payment did not go through")
    return Message(contact[0], contact[1], body, "autopay_declined", subject=subject)


def plan_broken_notice(borrower: Borrower) -> Message | None:
    """A discreet message that the payment plan has ended; the details are behind sign-in."""
    contact = _contact(borrower)
    if contact is None:
        return None
    with force_locale(borrower.language):
        body = gettext("There is important news about your payment plan in Accord. Please sign in to see it.")
        subject = gettext("News about your payment plan")
    return Message(contact[0], contact[1], body, "plan_broken", subject=subject)


def _send(notices: Iterable[Message | None]) -> None:
    from portal.tasks import send_message

    for notice in notices:
        if notice is not None:
            send_message(notice.to_dict())


# --- The daily autopay run -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Due:
    instalment_id: int
    plan_id: int
    account_id: int
    borrower_id: int
    currency: str
    outstanding: int
    attempt: int
    saved_card_id: int
    payment_method_id: str


def next_attempt(
    due_on: dt.date, last_attempt: int, today: dt.date, retry_days: tuple[int, ...]
) -> int | None:
    """The attempt to make today: the latest scheduled attempt after the last one made whose day
    has come (days missed by the job are not made up one a day: the schedule is kept); None when
    no attempt is due today."""
    found = None
    attempt = last_attempt + 1
    while (on := autopay_attempt_on(due_on, attempt, retry_days)) is not None and on <= today:
        found, attempt = attempt, attempt + 1
    return found


def _due_charges(session: Session, today: dt.date, retry_days: tuple[int, ...]) -> dict[int, list[_Due]]:
    """Per plan, the instalments to charge today, oldest first: a payment is allocated to the
    oldest open instalment, so a later one is charged only after every older one is collected
    (or has had all its attempts); the charges are made in this order, stopping at the first
    that is not collected."""
    mandate = (
        select(AutopayMandate.plan_id, AutopayMandate.saved_card_id, SavedCard.payment_method_id)
        .join(SavedCard, SavedCard.id == AutopayMandate.saved_card_id)
        .where(AutopayMandate.revoked_at.is_(None), SavedCard.removed_at.is_(None))
        .order_by(AutopayMandate.id.desc())
    )
    cards: dict[int, tuple[int, str]] = {}
    for plan_id, card_id, method in session.execute(mandate):
        cards.setdefault(plan_id, (card_id, method))
    if not cards:
        return {}
    rows = session.execute(
        select(
            PlanInstalment.id,
            PlanInstalment.due_on,
            PlanInstalment.amount,
            PlanInstalment.paid_amount,
            Plan.id.label("plan_id"),
            Plan.currency,
            Account.id.label("account_id"),
            Account.borrower_id,
        )
        .join(Plan, Plan.id == PlanInstalment.plan_id)
        .join(Account, Account.id == Plan.account_id)
        .where(
            Plan.status == "active",
            Plan.id.in_(list(cards)),
            PlanInstalment.status != "paid",
            PlanInstalment.paid_amount < PlanInstalment.amount,
            PlanInstalment.due_on <= today,
        )
        .order_by(Plan.id, PlanInstalment.due_on, PlanInstalment.number)
    ).all()
    if not rows:
        return {}
    history: dict[int, list[tuple[str, int, str]]] = {}
    for instalment_id, status, attempt, origin in session.execute(
        select(Payment.instalment_id, Payment.status, Payment.attempt, Payment.origin).where(
            Payment.instalment_id.in_([r.id for r in rows])
        )
    ):
        history.setdefault(instalment_id, []).append((status, attempt, origin))
    due: dict[int, list[_Due]] = {}
    blocked: set[int] = set()
    for row in rows:
        if row.plan_id in blocked:
            continue
        past = history.get(row.id, [])
        if any(status in IN_FLIGHT for status, _, _ in past):
            blocked.add(row.plan_id)  # one charge at a time per plan
            continue
        if any(status in DONE for status, _, origin in past if origin == "autopay"):
            continue  # collected (and since reversed in part, perhaps): paid by hand from now on
        last = max((attempt for _, attempt, origin in past if origin == "autopay"), default=0)
        if autopay_attempt_on(row.due_on, last + 1, retry_days) is None:
            continue  # every attempt was made: the borrower pays this one by hand
        attempt = next_attempt(row.due_on, last, today, retry_days)
        if attempt is None:
            blocked.add(row.plan_id)  # its next attempt is on a later day; later ones wait
            continue
        card_id, method = cards[row.plan_id]
        due.setdefault(row.plan_id, []).append(
            _Due(
                row.id,
                row.plan_id,
                row.account_id,
                row.borrower_id,
                row.currency,
                row.amount - row.paid_amount,
                attempt,
                card_id,
                method,
            )
        )
    return due


def run(
    session: Session,
    client: stripe.StripeClient,
    today: dt.date,
    *,
    stale_after: dt.timedelta = STALE_AFTER,
) -> AutopayReport:
    """The daily autopay job: finish what a crash left, then charge the instalments due today.
    Running it again the same day changes nothing."""
    report = AutopayReport()
    recover(session, client, report, stale_after=stale_after)
    policy = policy_service.current(session, today)
    for items in _due_charges(session, today, tuple(policy.payments.autopay_retry_days)).values():
        for item in items:
            payment = _create_row(session, item)
            if payment is None:
                report.skipped += 1
                break
            report.payment_ids.append(payment.id)
            _charge(session, client, payment, report)
            if session.scalar(select(Payment.status).where(Payment.id == payment.id)) != "succeeded":
                break  # a later instalment waits until this one is collected
    session.rollback()  # nothing is left open
    return report


def _create_row(session: Session, item: _Due) -> Payment | None:
    """The payment row and its idempotency key, committed before Stripe hears of it; None when
    another run created it first."""
    borrower = session.get(Borrower, item.borrower_id)
    payment = Payment(
        account_id=item.account_id,
        borrower_id=item.borrower_id,
        plan_id=item.plan_id,
        instalment_id=item.instalment_id,
        purpose="autopay",
        origin="autopay",
        attempt=item.attempt,
        amount=item.outstanding,
        currency=item.currency,
        language=borrower.language if borrower else "zh_Hans_CN",
        idempotency_key=f"autopay:{item.instalment_id}:{item.attempt}",
        status="submitting",
        saved_card_id=item.saved_card_id,
    )
    session.add(payment)
    try:
        session.flush()
        audit.record(
            session,
            SYSTEM,
            "payment.autopay_started",
            "payment",
            payment.id,
            after={
                "instalment": item.instalment_id,
                "attempt": item.attempt,
                "amount": item.outstanding,
                "key": payment.idempotency_key,
            },
        )
        session.commit()
    except IntegrityError:
        session.rollback()
        log.info("autopay %s:%s already started by another run", item.instalment_id, item.attempt)
        return None
    return payment


def _intent_params(session: Session, payment: Payment) -> dict[str, Any]:
    customer = session.scalar(
        select(StripeCustomer.customer_id).where(StripeCustomer.borrower_id == payment.borrower_id)
    )
    card = session.get(SavedCard, payment.saved_card_id) if payment.saved_card_id else None
    params: dict[str, Any] = {
        "amount": payment.amount,
        "currency": payment.currency.lower(),
        "payment_method_types": ["card"],
        "off_session": True,
        "confirm": True,
        "metadata": {
            "accord_payment": str(payment.id),
            "account": str(payment.account_id),
            "instalment": str(payment.instalment_id),
            "plan": str(payment.plan_id),
            "attempt": str(payment.attempt),
        },
    }
    if customer:
        params["customer"] = customer
    if card is not None:
        params["payment_method"] = card.payment_method_id
    return params


def _charge(session: Session, client: stripe.StripeClient, payment: Payment, report: AutopayReport) -> None:
    """Ask Stripe for the PaymentIntent (the row is committed in ``submitting``) and record it."""
    payment_id, key = payment.id, payment.idempotency_key
    params = _intent_params(session, payment)
    session.rollback()  # no transaction is held open while Stripe is called
    try:
        intent = client.v1.payment_intents.create(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": key},
        )
    except stripe.CardError as exc:
        _declined(session, client, payment_id, exc, report)
        return
    except stripe.InvalidRequestError as exc:
        # Nothing was charged: the card is gone or refused before charging.
        log.warning("autopay payment %s refused by Stripe: %s", payment_id, exc)
        _mark_failed(session, payment_id, exc.code or "invalid_request", str(exc.user_message or ""), report)
        return
    except stripe.StripeError as exc:
        # Unreachable, rate-limited or a server error: Stripe may or may not have created it.
        # The row stays in submitting; the next run looks for it before trying again.
        log.warning("autopay payment %s left for the next run: %s", payment_id, exc)
        report.errors += 1
        return
    _record(session, payment_id, intent.to_dict(), report)


def _record(
    session: Session,
    payment_id: int,
    intent: Mapping[str, Any],
    report: AutopayReport,
    *,
    unfinished: tuple[str, str | None] = ("authentication_required", None),
) -> None:
    """Record the PaymentIntent; one left unfinished fails with ``unfinished`` (code, message):
    off-session there is nobody to authenticate, so the borrower pays by hand instead."""
    outcome = payments_service.record_payment_intent(session, intent)
    payment = session.get(Payment, payment_id)
    assert payment is not None
    notices: list[Message | None] = list(outcome.notices)
    if payment.status in ("requires_action", "submitting", "created"):
        notices += _fail(session, payment, *unfinished)
    session.commit()
    _count(payment.status, report)
    _send(notices)


def _count(status: str, report: AutopayReport) -> None:
    if status == "succeeded":
        report.succeeded += 1
    elif status in ("failed", "canceled"):
        report.failed += 1
    else:
        report.pending += 1


def _fail(session: Session, payment: Payment, code: str, message: str | None) -> list[Message | None]:
    before = payment.status
    payment.status = "failed"
    payment.failure_code = code[:64]
    payment.failure_message = (message or "")[:300] or None
    audit.record(
        session,
        SYSTEM,
        "payment.failed",
        "payment",
        payment.id,
        before={"status": before},
        after={"status": "failed", "failure_code": payment.failure_code},
    )
    return [declined_notice(session, payment)]


def _mark_failed(session: Session, payment_id: int, code: str, message: str, report: AutopayReport) -> None:
    payment = payments_service._lock_payment(session, payment_id)
    notices = _fail(session, payment, code, message) if payment.status in ("submitting", "created") else []
    session.commit()
    _count(payment.status, report)
    _send(notices)


def _declined(
    session: Session,
    client: stripe.StripeClient,
    payment_id: int,
    exc: stripe.CardError,
    report: AutopayReport,
) -> None:
    """A decline: the PaymentIntent Stripe made is recorded (failed), so a late webhook about it
    finds its payment; the borrower is told how to pay by hand."""
    error = exc.error
    intent: Mapping[str, Any] | None = None
    try:
        found = getattr(error, "payment_intent", None) if error is not None else None
        if found:
            intent = found.to_dict() if hasattr(found, "to_dict") else dict(found)
        elif error is not None and getattr(error, "charge", None):
            # localstripe names only the charge; the charge names its PaymentIntent.
            charge = client.v1.charges.retrieve(str(error.charge))
            pi_id = payments_service.stripe_id(charge.to_dict().get("payment_intent"))
            if pi_id:
                intent = client.v1.payment_intents.retrieve(pi_id).to_dict()
    except stripe.StripeError as lookup_error:
        log.warning("declined autopay payment %s: PaymentIntent not found: %s", payment_id, lookup_error)
    if intent is not None and (intent.get("metadata") or {}).get("accord_payment") == str(payment_id):
        _record(
            session, payment_id, intent, report, unfinished=(exc.code or "card_declined", exc.user_message)
        )
        return
    _mark_failed(session, payment_id, exc.code or "card_declined", str(exc.user_message or ""), report)


# --- Crash recovery ------------------------------------------------------------------------------


def find_intent(
    client: stripe.StripeClient, payment: Payment, pages: int = SEARCH_PAGES
) -> dict[str, Any] | None:
    """The PaymentIntent created for ``payment`` (by its ``accord_payment`` metadata) among the
    ``pages`` times 100 most recent, or None."""
    starting_after: str | None = None
    wanted = str(payment.id)
    for _ in range(pages):
        params: dict[str, Any] = {"limit": 100}
        if starting_after:
            params["starting_after"] = starting_after
        page = client.v1.payment_intents.list(params=params)  # type: ignore[arg-type]
        intents = list(page.data)
        for intent in intents:
            found = intent.to_dict()
            if _is_ours(found, wanted, payment):
                return found
        if not intents or not page.has_more:
            return None
        starting_after = intents[-1].id
    return None


def _is_ours(intent: Mapping[str, Any], wanted: str, payment: Payment) -> bool:
    """Its metadata names this payment, and it asks for this payment's amount and currency."""
    metadata = intent.get("metadata") or {}
    return bool(
        metadata.get("accord_payment") == wanted
        and metadata.get("instalment") == str(payment.instalment_id)
        and metadata.get("attempt") == str(payment.attempt)
        and intent.get("amount") == payment.amount
        and str(intent.get("currency") or "").upper() == payment.currency
    )


def _claim(session: Session, payment_id: int, version: int) -> bool:
    """Take a crashed row for this run (a version check: two recoveries never both call Stripe)."""
    claimed = session.execute(
        update(Payment)
        .where(
            Payment.id == payment_id,
            Payment.version == version,
            Payment.status.in_(("created", "submitting")),
            Payment.payment_intent_id.is_(None),
        )
        .values(version=version + 1, updated_at=utcnow(), status="submitting")
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(claimed.rowcount)  # type: ignore[attr-defined]


def recover(
    session: Session,
    client: stripe.StripeClient,
    report: AutopayReport | None = None,
    *,
    stale_after: dt.timedelta = STALE_AFTER,
) -> AutopayReport:
    """Finish autopay charges a crash left in ``submitting``: adopt the PaymentIntent Stripe
    already has for one, or create it with the same idempotency key."""
    report = report or AutopayReport()
    cutoff = utcnow() - stale_after
    stuck = session.execute(
        select(Payment.id, Payment.version).where(
            Payment.origin == "autopay",
            Payment.status.in_(("created", "submitting")),
            Payment.payment_intent_id.is_(None),
            Payment.updated_at <= cutoff,
        )
    ).all()
    session.rollback()
    for payment_id, version in stuck:
        if not _claim(session, payment_id, version):
            continue
        payment = session.execute(
            select(Payment).where(Payment.id == payment_id).execution_options(populate_existing=True)
        ).scalar_one()
        report.recovered += 1
        report.payment_ids.append(payment_id)
        try:
            intent = find_intent(client, payment)
        except stripe.StripeError as exc:
            log.warning("autopay payment %s: could not search Stripe: %s", payment_id, exc)
            report.errors += 1
            continue
        if intent is not None:
            report.adopted += 1
            audit.record(
                session,
                SYSTEM,
                "payment.autopay_adopted",
                "payment",
                payment_id,
                after={"payment_intent": intent.get("id")},
            )
            _record(session, payment_id, intent, report)
        else:
            _charge(session, client, payment, report)
    return report


# --- Missed instalments and broken plans ---------------------------------------------------------


def check_plans(session: Session, today: dt.date) -> PlanCheckReport:
    """Mark instalments missed once their grace days are over (they stay owed), then break the
    plans the policy says are broken and tell each borrower. Idempotent."""
    report = PlanCheckReport()
    report.missed = _mark_missed(session, today)
    session.commit()
    policy = policy_service.current(session, today).payments
    candidates = session.scalars(
        select(Plan.id)
        .where(
            Plan.status == "active",
            Plan.id.in_(
                select(PlanInstalment.plan_id).where(
                    PlanInstalment.status == "missed", PlanInstalment.paid_amount < PlanInstalment.amount
                )
            ),
        )
        .order_by(Plan.id)
    ).all()
    for plan_id in candidates:
        broken, notice = _break_if_due(
            session, plan_id, today, policy.plan_break_consecutive_misses, policy.plan_break_overdue_days
        )
        if broken:
            report.broken += 1
            report.broken_plan_ids.append(plan_id)
            _send([notice])
    return report


def _mark_missed(session: Session, today: dt.date) -> int:
    """One UPDATE per distinct grace period (portable date arithmetic: due_on < today - grace),
    with an audit event per instalment."""
    marked = 0
    graces = session.scalars(select(Plan.grace_days).where(Plan.status == "active").distinct()).all()
    for grace in graces:
        last_due = today - dt.timedelta(days=grace)
        where = (
            PlanInstalment.status == "due",
            PlanInstalment.paid_amount < PlanInstalment.amount,
            PlanInstalment.due_on < last_due,
            PlanInstalment.plan_id.in_(
                select(Plan.id).where(Plan.status == "active", Plan.grace_days == grace)
            ),
        )
        found = session.execute(select(PlanInstalment.id, PlanInstalment.plan_id).where(*where)).all()
        if not found:
            continue
        session.execute(
            update(PlanInstalment)
            .where(*where)
            .values(status="missed", missed_on=today)
            .execution_options(synchronize_session=False)
        )
        session.execute(
            insert(AuditEvent),
            [
                {
                    "actor_type": SYSTEM.type,
                    "actor_id": None,
                    "action": "instalment.missed",
                    "object_type": "plan_instalment",
                    "object_id": str(instalment_id),
                    "before": {"status": "due"},
                    "after": {"status": "missed", "missed_on": today.isoformat(), "plan": plan_id},
                }
                for instalment_id, plan_id in found
            ],
        )
        marked += len(found)
    return marked


def _break_if_due(
    session: Session, plan_id: int, today: dt.date, consecutive: int, overdue_days: int
) -> tuple[bool, Message | None]:
    """Break one plan if the policy says so (locked, checked again), with the borrower's notice."""
    plan = session.scalar(
        select(Plan).where(Plan.id == plan_id).with_for_update().execution_options(populate_existing=True)
    )
    if plan is None or plan.status != "active":
        session.rollback()
        return False, None
    states = [
        InstalmentState(i.number, i.due_on, i.outstanding)
        for i in session.scalars(select(PlanInstalment).where(PlanInstalment.plan_id == plan.id))
    ]
    reason = plan_break_reason(states, today, plan.grace_days, consecutive, overdue_days)
    if reason is None:
        session.rollback()
        return False, None
    plan.status, plan.broken_on, plan.break_reason = "broken", today, reason.value
    audit.record(
        session,
        SYSTEM,
        "plan.broken",
        "plan",
        plan.id,
        before={"status": "active"},
        after={"status": "broken", "broken_on": today, "reason": reason.value},
    )
    account = session.get(Account, plan.account_id)
    assert account is not None  # a plan's account always exists
    integration_events.emit(
        session,
        account,
        "plan.broken",
        {
            "plan_id": plan.id,
            "reason": reason.value,
            "broken_on": today.isoformat(),
            "outstanding": sum(state.outstanding for state in states),
        },
    )
    borrower = session.get(Borrower, account.borrower_id) if account else None
    notice = plan_broken_notice(borrower) if borrower else None
    session.commit()
    return True, notice
