"""The borrower paying online: what they may pay, the payment row, the card through Stripe, the
result, the receipt, saved cards and automatic payments (autopay) consent.

The amount and currency always come from the server (the account or the instalment); the page
only says which option it chose. The card is collected by Stripe.js: a SetupIntent confirmed in
the page, then ``confirm`` creates and confirms the PaymentIntent with the card it set up (or a
saved card), and records it through ``payments.record_payment_intent`` like every other path.

A payment row is moved from ``created`` to ``submitting`` under a row lock and committed before
Stripe is called, so a double click or a second tab finds it submitting and gets its current
state: one payment row, one PaymentIntent, whatever the browser does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import stripe
from flask import render_template
from flask_babel import gettext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.exc import StaleDataError

from portal.db import utcnow
from portal.formatting import date as format_date
from portal.formatting import money
from portal.integrations.pdf import render_pdf
from portal.models import (
    Account,
    AutopayMandate,
    Borrower,
    Payment,
    Plan,
    PlanInstalment,
    SavedCard,
    StripeCustomer,
)
from portal.services import audit
from portal.services import payments as payments_service
from portal.services import policy as policy_service
from portal.services.audit import Actor
from portal.services.borrower_portal import account_for, borrower_today
from workflows.errors import DomainError
from workflows.money import parse_amount
from workflows.payments import check_payment_amount

log = logging.getLogger(__name__)

CHOICES = ("instalment", "overdue", "balance", "amount")
IN_FLIGHT = frozenset({"submitting", "requires_action", "processing"})
CONSENT_VERSION = "autopay-1"
COMPONENT_ORDER = ("fees", "interest", "principal")


def _actor(borrower: Borrower) -> Actor:
    return Actor("borrower", borrower.id)


# --- What may be paid --------------------------------------------------------------------------


@dataclass(frozen=True)
class PayOption:
    choice: str  # instalment | overdue | balance | amount
    amount: int | None  # None for "another amount": the borrower types it
    instalment: PlanInstalment | None = None


@dataclass(frozen=True)
class PayOptions:
    account: Account
    options: tuple[PayOption, ...]
    minimum: int
    """The smallest "other amount": the policy's minimum, or the whole balance if that is less."""
    maximum: int
    """The whole balance."""
    plan: Plan | None

    def get(self, choice: str) -> PayOption | None:
        return next((o for o in self.options if o.choice == choice), None)


def _active_plan(session: Session, account_id: int) -> Plan | None:
    return session.scalar(select(Plan).where(Plan.account_id == account_id, Plan.status == "active"))


def _next_instalment(session: Session, plan: Plan) -> PlanInstalment | None:
    return session.scalar(
        select(PlanInstalment)
        .where(PlanInstalment.plan_id == plan.id, PlanInstalment.paid_amount < PlanInstalment.amount)
        .order_by(PlanInstalment.due_on, PlanInstalment.id)
        .limit(1)
    )


def options(session: Session, borrower: Borrower, account: Account) -> PayOptions:
    """What the borrower may pay on ``account``, every amount from the server."""
    if account.borrower_id != borrower.id:
        raise DomainError("account_unknown", "This account was not found.")
    if account.status != "open":
        raise DomainError("account_not_payable", "This account cannot be paid online.")
    whole = account.total_balance
    if whole <= 0:
        raise DomainError("nothing_owed", "Nothing is owed on this account.")
    policy = policy_service.current(session, borrower_today(borrower))
    minimum = min(max(int(policy.payments.minimum_payment.get(account.currency, 1)), 1), whole)
    plan = _active_plan(session, account.id)
    found: list[PayOption] = []
    if plan is not None:
        instalment = _next_instalment(session, plan)
        if instalment is not None:
            found.append(PayOption("instalment", min(instalment.outstanding, whole), instalment))
    elif 0 < account.overdue_amount < whole:
        found.append(PayOption("overdue", account.overdue_amount))
    if not found or found[0].amount != whole:
        found.append(PayOption("balance", whole))
    if minimum < whole:
        found.append(PayOption("amount", None))
    return PayOptions(account, tuple(found), minimum, whole, plan)


def payable_account(session: Session, borrower: Borrower, account_id: int) -> Account:
    account = account_for(session, borrower, account_id)
    if account is None:
        raise DomainError("account_unknown", "This account was not found.")
    return account


def start(  # noqa: PLR0917  (the use case's inputs, in the order the form gives them)
    session: Session,
    borrower: Borrower,
    account_id: int,
    choice: str,
    typed_amount: str | None,
    language: str,
) -> Payment:
    """The payment row for the option chosen (status created, its idempotency key stored)."""
    account = payable_account(session, borrower, account_id)
    offered = options(session, borrower, account)
    option = offered.get(choice) if choice in CHOICES else None
    if option is None:
        raise DomainError("payment_choice_invalid", "Choose one of the listed options.")
    if option.amount is None:
        if not (typed_amount or "").strip():
            raise DomainError("amount_missing", "Enter the amount you want to pay.")
        amount = parse_amount(typed_amount or "", account.currency)
    else:
        amount = option.amount
    check_payment_amount(amount, offered.minimum, offered.maximum)
    instalment = option.instalment
    payment = Payment(
        account_id=account.id,
        borrower_id=borrower.id,
        plan_id=offered.plan.id if offered.plan is not None and instalment is not None else None,
        instalment_id=instalment.id if instalment is not None else None,
        purpose=choice,
        origin="borrower",
        amount=amount,
        currency=account.currency,
        language=(language or borrower.language)[:16],
        idempotency_key=f"pay:{secrets.token_urlsafe(16)}",
        status="created",
    )
    session.add(payment)
    session.flush()
    audit.record(
        session,
        _actor(borrower),
        "payment.created",
        "payment",
        payment.id,
        after={
            "account_id": account.id,
            "purpose": choice,
            "amount": amount,
            "currency": account.currency,
            "instalment_id": payment.instalment_id,
        },
    )
    session.commit()
    return payment


def payment_for(session: Session, borrower: Borrower, payment_id: int) -> Payment | None:
    """The borrower's own payment (online, by them), or None: another's id is as unknown as a wrong one."""
    return session.scalar(
        select(Payment)
        .options(joinedload(Payment.account).joinedload(Account.creditor))
        .where(Payment.id == payment_id, Payment.borrower_id == borrower.id)
    )


def _mine(session: Session, borrower: Borrower, payment_id: int) -> Payment:
    payment = payment_for(session, borrower, payment_id)
    if payment is None:
        raise DomainError("payment_unknown", "This payment was not found.")
    return payment


def _lock(session: Session, borrower: Borrower, payment_id: int) -> Payment:
    stmt = (
        select(Payment)
        .where(Payment.id == payment_id, Payment.borrower_id == borrower.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    payment = session.scalar(stmt)
    if payment is None:
        raise DomainError("payment_unknown", "This payment was not found.")
    return payment


# --- The card: a Stripe customer and a SetupIntent ---------------------------------------------


def _customer(session: Session, client: stripe.StripeClient, borrower: Borrower) -> str:
    """The borrower's Stripe customer id, created once (only an Accord reference is sent)."""
    row = session.get(StripeCustomer, borrower.id)
    if row is not None:
        return row.customer_id
    created = client.v1.customers.create(
        params={"metadata": {"accord_borrower": str(borrower.id)}},
        options={"idempotency_key": f"customer:{borrower.id}"},
    )
    session.add(StripeCustomer(borrower_id=borrower.id, customer_id=created.id))
    try:
        session.commit()
    except IntegrityError:
        # Another tab created it first (real Stripe answered both with one customer thanks to
        # the key; a server that ignores keys leaves an unused customer behind).
        session.rollback()
        row = session.get(StripeCustomer, borrower.id)
        if row is None:
            raise
        return row.customer_id
    audit.record(session, _actor(borrower), "stripe_customer.created", "borrower", borrower.id)
    session.commit()
    return str(created.id)


def setup_card(session: Session, client: stripe.StripeClient, borrower: Borrower, payment_id: int) -> str:
    """A SetupIntent for the card the borrower is about to type: its client secret, for the
    page's ``confirmCardSetup``."""
    payment = _mine(session, borrower, payment_id)
    if payment.status != "created":
        raise DomainError("payment_not_open", "This payment has already been sent.")
    customer = _customer(session, client, borrower)
    intent = client.v1.setup_intents.create(
        params={
            "customer": customer,
            "payment_method_types": ["card"],
            "usage": "off_session",
            "metadata": {"accord_payment": str(payment.id), "accord_borrower": str(borrower.id)},
        }
    )
    return str(intent.client_secret)


def authentication_secret(
    session: Session, client: stripe.StripeClient, borrower: Borrower, payment_id: int
) -> str | None:
    """The PaymentIntent's client secret while the bank asks the borrower to authenticate
    (3-D Secure), for the page's ``confirmCardPayment``; None otherwise."""
    payment = _mine(session, borrower, payment_id)
    if payment.status != "requires_action" or not payment.payment_intent_id:
        return None
    return str(client.v1.payment_intents.retrieve(payment.payment_intent_id).client_secret)


# --- Autopay consent ---------------------------------------------------------------------------


def consent_text(session: Session, plan: Plan) -> str:
    """The words the borrower agrees to, in the current language: shown on the page, and stored
    exactly with the mandate."""
    account = session.get(Account, plan.account_id)
    assert account is not None
    instalment = _next_instalment(session, plan)
    following = (
        gettext(
            "The next is %(amount)s on %(date)s.",
            amount=money(instalment.outstanding, plan.currency),
            date=format_date(instalment.due_on, "long"),
        )
        if instalment is not None
        else ""
    )
    text = gettext(
        "I agree that %(lender)s may charge my saved card for each remaining instalment of my"
        " repayment plan on account %(reference)s, on its due date and for the amount then due."
        " %(next)s I can turn automatic payments off at any time in Accord.",
        lender=account.creditor.name,
        reference=account.external_reference,
        next=following,
    )
    return " ".join(text.split())


def consent_fingerprint(text: str) -> str:
    """A short fingerprint of the consent text the page showed, sent back with the consent."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _checked_consent(session: Session, plan: Plan, fingerprint: str | None) -> str:
    text = consent_text(session, plan)
    if not fingerprint or not secrets.compare_digest(fingerprint, consent_fingerprint(text)):
        raise DomainError("consent_changed", "The terms shown changed. Reload the page and agree again.")
    return text


def _mandate(
    session: Session, borrower: Borrower, plan: Plan, *, card: SavedCard, text: str, ip: str | None
) -> AutopayMandate:
    """Consent recorded: any earlier mandate for the plan is revoked first (one in force)."""
    now = utcnow()
    for old in session.scalars(
        select(AutopayMandate).where(AutopayMandate.plan_id == plan.id, AutopayMandate.revoked_at.is_(None))
    ):
        old.revoked_at = now
        audit.record(session, _actor(borrower), "autopay.revoked", "autopay_mandate", old.id)
    mandate = AutopayMandate(
        plan_id=plan.id,
        saved_card_id=card.id,
        consent_version=CONSENT_VERSION,
        consent_text=text[:1000],
        consented_at=now,
        consent_ip=(ip or "")[:64] or None,
    )
    session.add(mandate)
    session.flush()
    audit.record(
        session,
        _actor(borrower),
        "autopay.enabled",
        "autopay_mandate",
        mandate.id,
        after={"plan_id": plan.id, "saved_card_id": card.id, "consent_version": CONSENT_VERSION},
    )
    return mandate


def _save_card(
    session: Session, client: stripe.StripeClient, borrower: Borrower, payment_method_id: str
) -> SavedCard:
    card = session.scalar(select(SavedCard).where(SavedCard.payment_method_id == payment_method_id))
    if card is not None:
        if card.borrower_id != borrower.id:
            raise DomainError("card_unknown", "This card was not found.")
        card.removed_at = None
        return card
    method = client.v1.payment_methods.retrieve(payment_method_id)
    details = method.to_dict().get("card") or {}
    card = SavedCard(
        borrower_id=borrower.id,
        payment_method_id=payment_method_id,
        brand=str(details.get("brand") or "card")[:32],
        last4=str(details.get("last4") or "")[:4],
        exp_month=int(details.get("exp_month") or 0),
        exp_year=int(details.get("exp_year") or 0),
    )
    session.add(card)
    session.flush()
    audit.record(
        session,
        _actor(borrower),
        "card.saved",
        "saved_card",
        card.id,
        after={"brand": card.brand, "last4": card.last4},
    )
    return card


def _own_card(session: Session, borrower: Borrower, card_id: int | None) -> SavedCard:
    card = session.get(SavedCard, card_id) if card_id else None
    if card is None or card.borrower_id != borrower.id or card.removed_at is not None:
        raise DomainError("card_unknown", "This card was not found.")
    return card


# --- Confirming: the PaymentIntent ------------------------------------------------------------


@dataclass(frozen=True)
class ConfirmResult:
    status: str
    client_secret: str | None = None
    """The PaymentIntent's client secret when the bank asks for 3-D Secure (requires_action)."""


def _current(client: stripe.StripeClient, payment: Payment) -> ConfirmResult:
    secret = None
    if payment.status == "requires_action" and payment.payment_intent_id:
        secret = str(client.v1.payment_intents.retrieve(payment.payment_intent_id).client_secret)
    return ConfirmResult(payment.status, secret)


def _back_to_created(session: Session, borrower: Borrower, payment_id: int) -> None:
    """Nothing was asked of Stripe: the payment can be tried again."""
    payment = _lock(session, borrower, payment_id)
    if payment.status == "submitting" and payment.payment_intent_id is None:
        payment.status = "created"
        audit.record(
            session,
            _actor(borrower),
            "payment.reopened",
            "payment",
            payment.id,
            before={"status": "submitting"},
            after={"status": "created"},
        )
    session.commit()


def _intent_after_card_error(client: stripe.StripeClient, error: stripe.CardError) -> dict[str, Any] | None:
    """The PaymentIntent a declined confirmation left behind: named by the error (Stripe), or
    found through its charge (localstripe)."""
    body = (error.json_body or {}).get("error") or {}
    pi = body.get("payment_intent")
    try:
        if isinstance(pi, Mapping) and pi.get("id"):
            return dict(pi)
        if body.get("charge"):
            charge = client.v1.charges.retrieve(str(body["charge"]))
            pi_id = payments_service.stripe_id(charge["payment_intent"])
            if pi_id:
                return client.v1.payment_intents.retrieve(pi_id).to_dict()
    except stripe.StripeError:
        log.warning("declined payment: its PaymentIntent could not be read", exc_info=True)
    return None


def _metadata(payment: Payment, plan: Plan | None) -> dict[str, str]:
    data = {
        "accord_payment": str(payment.id),
        "account": str(payment.account_id),
        "purpose": payment.purpose,
    }
    if payment.instalment_id:
        data["instalment"] = str(payment.instalment_id)
    if plan is not None:
        data["plan"] = str(plan.id)
        data["agreement"] = str(plan.agreement_id)
    return data


def _checked_request(
    session: Session,
    borrower: Borrower,
    payment: Payment,
    *,
    setup_intent_id: str | None,
    saved_card_id: int | None,
    autopay: bool,
    consent: str | None,
) -> tuple[Plan | None, SavedCard | None, str | None, str]:
    """What confirming needs, checked before anything changes: the plan, the saved card, the
    consent text and the Stripe customer."""
    if bool(setup_intent_id) == bool(saved_card_id):
        raise DomainError("card_missing", "Enter your card details or choose a saved card.")
    account = session.get(Account, payment.account_id)
    assert account is not None
    if account.status != "open" or payment.amount > account.total_balance:
        raise DomainError("payment_outdated", "The balance changed since this payment was started.")
    plan = _active_plan(session, account.id)
    consent_words = None
    if autopay:
        if plan is None:
            raise DomainError("autopay_no_plan", "Automatic payments are for an active repayment plan.")
        consent_words = _checked_consent(session, plan, consent)
    saved = _own_card(session, borrower, saved_card_id) if saved_card_id else None
    customer = session.get(StripeCustomer, borrower.id)
    if customer is None:
        raise DomainError("card_setup_invalid", "The card could not be set up. Please enter it again.")
    return plan, saved, consent_words, customer.customer_id


def confirm(  # noqa: PLR0912, PLR0915  (one use case: lock, card, charge, record)
    session: Session,
    client: stripe.StripeClient,
    borrower: Borrower,
    payment_id: int,
    *,
    setup_intent_id: str | None = None,
    saved_card_id: int | None = None,
    save_card: bool = False,
    autopay: bool = False,
    consent: str | None = None,
    ip: str | None = None,
) -> ConfirmResult:
    """Charge the card for the payment: once, whatever the browser repeats."""
    # 1. A short transaction: the row from created to submitting, or its current state.
    payment = _lock(session, borrower, payment_id)
    if payment.status != "created":
        session.commit()
        return _current(client, payment)
    try:
        plan, saved, consent_words, customer_id = _checked_request(
            session,
            borrower,
            payment,
            setup_intent_id=setup_intent_id,
            saved_card_id=saved_card_id,
            autopay=autopay,
            consent=consent,
        )
    except DomainError:
        session.rollback()
        raise
    payment.status = "submitting"
    audit.record(
        session,
        _actor(borrower),
        "payment.submitting",
        "payment",
        payment.id,
        before={"status": "created"},
        after={"status": "submitting", "saved_card": bool(saved)},
    )
    try:
        session.commit()
    except StaleDataError:
        # Another request moved it first (where the database has no row locks, the version does).
        session.rollback()
        return _current(client, _lock(session, borrower, payment_id))

    # 2. The card: the SetupIntent the page confirmed (this borrower's, succeeded), or a saved card.
    if saved is not None:
        method_id = saved.payment_method_id
    else:
        try:
            intent: dict[str, Any] = client.v1.setup_intents.retrieve(str(setup_intent_id)).to_dict()
        except stripe.StripeError:
            intent = {}
        if (
            intent.get("status") != "succeeded"
            or payments_service.stripe_id(intent.get("customer")) != customer_id
            or (intent.get("metadata") or {}).get("accord_payment") not in (None, str(payment.id))
            or not intent.get("payment_method")
        ):
            _back_to_created(session, borrower, payment.id)
            raise DomainError("card_setup_invalid", "The card could not be set up. Please enter it again.")
        method_id = str(payments_service.stripe_id(intent["payment_method"]))

    # 3. The PaymentIntent, confirmed at once; its key is the payment's, stored before this call.
    pi: dict[str, Any] | None
    declined: stripe.CardError | None = None
    try:
        created = client.v1.payment_intents.create(
            params={
                "amount": payment.amount,
                "currency": payment.currency.lower(),
                "customer": customer_id,
                "payment_method": method_id,
                "payment_method_types": ["card"],
                "confirm": True,
                "metadata": _metadata(payment, plan),
            },
            options={"idempotency_key": payment.idempotency_key},
        )
        pi = created.to_dict()
    except stripe.CardError as exc:
        declined = exc
        pi = _intent_after_card_error(client, exc)
    except stripe.InvalidRequestError as exc:
        # Refused before anything was charged (a detached card, a bad parameter).
        log.warning("payment %s refused by Stripe: %s", payment.id, exc)
        payment = _lock(session, borrower, payment.id)
        before = payment.status
        payment.status = "failed"
        payment.failure_code = str(exc.code or "invalid_request")[:64]
        payment.failure_message = str(exc.user_message or "")[:300] or None
        audit.record(
            session,
            _actor(borrower),
            "payment.failed",
            "payment",
            payment.id,
            before={"status": before},
            after={"status": "failed", "failure_code": payment.failure_code},
        )
        session.commit()
        return ConfirmResult("failed")
    except stripe.StripeError as exc:
        # The network or Stripe failed: the PaymentIntent may or may not exist. The row stays
        # submitting (never a second charge); Stripe's event or the recovery job settles it.
        log.error("payment %s: Stripe did not answer: %s", payment.id, exc)
        raise DomainError(
            "payment_unavailable", "The payment could not be completed just now. Please check later."
        ) from exc

    # 4. Record what Stripe did, in one transaction with the card and the consent.
    payment = _lock(session, borrower, payment.id)
    notices: list[Any] = []
    if pi is not None:
        if payment.payment_intent_id is None:
            payment.payment_intent_id = str(pi["id"])
        outcome = payments_service.record_payment_intent(session, pi)
        notices = list(outcome.notices)
    if declined is not None and payment.status not in ("failed", "succeeded", "suspense"):
        before = payment.status
        payment.status = "failed"
        payment.failure_code = str(declined.code or "card_declined")[:64]
        message = getattr(declined.error, "message", None) or declined.user_message or ""
        payment.failure_message = str(message)[:300] or None
        audit.record(
            session,
            _actor(borrower),
            "payment.failed",
            "payment",
            payment.id,
            before={"status": before},
            after={"status": "failed", "failure_code": payment.failure_code},
        )
    if payment.status != "failed":
        card = saved
        if card is None and (save_card or autopay):
            card = _save_card(session, client, borrower, method_id)
        if card is not None:
            payment.saved_card_id = card.id
        if autopay and plan is not None and card is not None and consent_words:
            _mandate(session, borrower, plan, card=card, text=consent_words, ip=ip)
    session.commit()
    _send(notices)
    secret = str(pi["client_secret"]) if pi and payment.status == "requires_action" else None
    return ConfirmResult(payment.status, secret)


def _send(notices: list[Any]) -> None:
    from portal.tasks import send_message

    for notice in notices:
        send_message(notice.to_dict())


def refresh(
    session: Session, client: stripe.StripeClient | None, borrower: Borrower, payment_id: int
) -> Payment:
    """The payment as it stands, asking Stripe first while it is still in flight (the result
    page polls this)."""
    payment = _mine(session, borrower, payment_id)
    if client is not None and payment.status in IN_FLIGHT and payment.payment_intent_id:
        try:
            payments_service.sync_payment(session, client, payment.id)
        except stripe.StripeError:
            log.warning("payment %s: Stripe could not be asked just now", payment.id, exc_info=True)
            session.rollback()
        payment = _mine(session, borrower, payment_id)
    return payment


# --- Receipts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceiptInstalment:
    number: int
    due_on: dt.date
    amount: int


@dataclass(frozen=True)
class Receipt:
    payment: Payment
    account: Account
    borrower: Borrower
    components: tuple[tuple[str, int], ...]  # (fees|interest|principal, amount), in waterfall order
    credit: int
    instalments: tuple[ReceiptInstalment, ...]
    card: SavedCard | None


def receipt(session: Session, borrower: Borrower, payment_id: int) -> Receipt:
    payment = _mine(session, borrower, payment_id)
    if payment.status != "succeeded" or not payment.receipt_number:
        raise DomainError("receipt_not_ready", "There is no receipt for this payment yet.")
    allocation = payment.allocation or {}
    parts = {str(k): int(v) for k, v in (allocation.get("components") or {}).items()}
    components = tuple((c, parts[c]) for c in COMPONENT_ORDER if parts.get(c))
    by_id = {int(k): int(v) for k, v in (allocation.get("instalments") or {}).items()}
    rows = (
        session.scalars(
            select(PlanInstalment).where(PlanInstalment.id.in_(by_id)).order_by(PlanInstalment.number)
        ).all()
        if by_id
        else []
    )
    return Receipt(
        payment=payment,
        account=payment.account,
        borrower=borrower,
        components=components,
        credit=int(allocation.get("credit") or 0),
        instalments=tuple(ReceiptInstalment(r.number, r.due_on, by_id[r.id]) for r in rows),
        card=payment.saved_card,
    )


def receipt_html(found: Receipt, *, for_pdf: bool) -> str:
    return render_template("receipt/receipt.html", receipt=found, for_pdf=for_pdf)


def receipt_pdf(session: Session, borrower: Borrower, payment_id: int) -> bytes:
    """The receipt as a PDF, in the reader's language (Chinese set in Noto Sans CJK)."""
    return render_pdf(receipt_html(receipt(session, borrower, payment_id), for_pdf=True))


# --- Saved cards and automatic payments --------------------------------------------------------


@dataclass(frozen=True)
class AutopayPlan:
    plan: Plan
    account: Account
    next_instalment: PlanInstalment | None
    mandate: AutopayMandate | None
    consent_text: str


@dataclass(frozen=True)
class CardSettings:
    cards: tuple[SavedCard, ...]
    plans: tuple[AutopayPlan, ...]
    autopay_cards: frozenset[int]
    """The ids of saved cards an autopay mandate in force uses."""


def saved_cards(session: Session, borrower: Borrower) -> list[SavedCard]:
    return list(
        session.scalars(
            select(SavedCard)
            .where(SavedCard.borrower_id == borrower.id, SavedCard.removed_at.is_(None))
            .order_by(SavedCard.id)
        )
    )


def _mandate_for(session: Session, plan_id: int) -> AutopayMandate | None:
    return session.scalar(
        select(AutopayMandate)
        .options(joinedload(AutopayMandate.saved_card))
        .where(AutopayMandate.plan_id == plan_id, AutopayMandate.revoked_at.is_(None))
        .order_by(AutopayMandate.id.desc())
        .limit(1)
    )


def settings(session: Session, borrower: Borrower) -> CardSettings:
    plans = session.scalars(
        select(Plan)
        .join(Account, Account.id == Plan.account_id)
        .where(Account.borrower_id == borrower.id, Account.status == "open", Plan.status == "active")
        .order_by(Plan.id)
    ).all()
    found = []
    for plan in plans:
        account = session.get(Account, plan.account_id)
        assert account is not None
        found.append(
            AutopayPlan(
                plan,
                account,
                _next_instalment(session, plan),
                _mandate_for(session, plan.id),
                consent_text(session, plan),
            )
        )
    return CardSettings(
        tuple(saved_cards(session, borrower)),
        tuple(found),
        frozenset(p.mandate.saved_card_id for p in found if p.mandate is not None),
    )


def remove_card(
    session: Session, client: stripe.StripeClient | None, borrower: Borrower, card_id: int
) -> SavedCard:
    """The card is no longer offered or charged: autopay using it is revoked with it."""
    card = _own_card(session, borrower, card_id)
    now = utcnow()
    card.removed_at = now
    revoked = []
    for mandate in session.scalars(
        select(AutopayMandate).where(
            AutopayMandate.saved_card_id == card.id, AutopayMandate.revoked_at.is_(None)
        )
    ):
        mandate.revoked_at = now
        revoked.append(mandate.id)
        audit.record(session, _actor(borrower), "autopay.revoked", "autopay_mandate", mandate.id)
    audit.record(
        session,
        _actor(borrower),
        "card.removed",
        "saved_card",
        card.id,
        after={"brand": card.brand, "last4": card.last4, "mandates_revoked": revoked},
    )
    session.commit()
    if client is not None:
        try:
            client.v1.payment_methods.detach(card.payment_method_id)
        except stripe.StripeError:
            log.warning("saved card %s: detaching it in Stripe failed", card.id, exc_info=True)
    return card


def _own_plan(session: Session, borrower: Borrower, plan_id: int) -> Plan:
    plan = session.scalar(
        select(Plan)
        .join(Account, Account.id == Plan.account_id)
        .where(Plan.id == plan_id, Account.borrower_id == borrower.id)
    )
    if plan is None or plan.status != "active":
        raise DomainError("autopay_plan_unknown", "This repayment plan is not in force.")
    return plan


def enable_autopay(
    session: Session,
    borrower: Borrower,
    plan_id: int,
    card_id: int | None,
    *,
    agreed: bool,
    consent: str | None,
    ip: str | None,
) -> AutopayMandate:
    """Autopay for an active plan with a card already saved, on the borrower's explicit consent."""
    plan = _own_plan(session, borrower, plan_id)
    card = _own_card(session, borrower, card_id)
    if not agreed:
        raise DomainError("autopay_consent_missing", "Tick the box to agree to automatic payments.")
    text = _checked_consent(session, plan, consent)
    mandate = _mandate(session, borrower, plan, card=card, text=text, ip=ip)
    session.commit()
    return mandate


def disable_autopay(session: Session, borrower: Borrower, plan_id: int) -> None:
    plan = _own_plan(session, borrower, plan_id)
    now = utcnow()
    for mandate in session.scalars(
        select(AutopayMandate).where(AutopayMandate.plan_id == plan.id, AutopayMandate.revoked_at.is_(None))
    ):
        mandate.revoked_at = now
        audit.record(session, _actor(borrower), "autopay.revoked", "autopay_mandate", mandate.id)
    session.commit()
