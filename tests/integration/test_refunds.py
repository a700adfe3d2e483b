"""Refunds by finance against a real localstripe: within the policy's threshold sent at once,
above it only after a second finance user approves (never the one who asked); the refund
reverses the payment's allocation with its own ledger entries; wrong requests change nothing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import stripe
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.integrations.stripe_gateway import client_from_config
from portal.models import Account, AuditEvent, LedgerEntry, Payment, PlanInstalment, Refund
from portal.services import autopay, ledger, refunds
from portal.services.hardship import desk_today
from tests import plan_support
from tests.conftest import sign_in
from tests.stripe_support import LocalStripe
from workflows.access import Role
from workflows.errors import DomainError

TODAY = desk_today()


@pytest.fixture
def stripe_client(app: Flask, localstripe: LocalStripe) -> stripe.StripeClient:
    localstripe.reset()
    return client_from_config(app.config)


@pytest.fixture
def app_context(app: Flask) -> Iterator[None]:
    """Services called straight from a test run in an application context, as jobs do (not in
    the tests that use the test client: its requests would share this context's session)."""
    with app.app_context():
        yield


def _paid(session: Session, client: stripe.StripeClient, amount: int = 30_000) -> Payment:
    """A payment recorded in full: an instalment collected by autopay."""
    plan = plan_support.plan(session, [TODAY, TODAY + dt.timedelta(days=30)], amount=amount)
    plan_support.autopay(session, client, plan)
    with current_app_or(session):
        report = autopay.run(session, client, TODAY)
    assert report.succeeded == 1
    payment = session.get(Payment, report.payment_ids[0])
    assert payment is not None and payment.status == "succeeded"
    return payment


def current_app_or(session: Session):  # type: ignore[no-untyped-def]
    """An application context for a job run from a test (the session's app)."""
    from portal import tasks

    assert tasks.INLINE_APP is not None
    return tasks.INLINE_APP.app_context()


def _refund_rows(session: Session, payment: Payment) -> list[Refund]:
    session.expire_all()
    return list(session.scalars(select(Refund).where(Refund.payment_id == payment.id).order_by(Refund.id)))


def _reversed(session: Session, refund: Refund) -> int:
    return int(
        session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                LedgerEntry.cause == f"refund:{refund.stripe_refund_id}", LedgerEntry.kind == "reversal"
            )
        )
        or 0
    )


def test_a_refund_within_the_threshold_is_sent_and_reversed_with_its_own_entries(
    app_context: None, session: Session, stripe_client: stripe.StripeClient, staff_of
) -> None:  # type: ignore[no-untyped-def]
    payment = _paid(session, stripe_client)
    finance = staff_of(Role.FINANCE)
    account = session.get(Account, payment.account_id)
    assert account is not None
    before = account.total_balance

    result = refunds.request_refund(
        session, stripe_client, finance, payment.id, amount_text="100.00", reason="Paid twice by mistake"
    )

    assert result.status == "succeeded"
    [refund] = _refund_rows(session, payment)
    assert (refund.amount, refund.status, refund.idempotency_key) == (
        10_000,
        "succeeded",
        f"refund:{refund.id}",
    )
    assert refund.requested_by_id == finance.id and refund.stripe_refund_id
    stripe_refund = stripe_client.v1.refunds.retrieve(refund.stripe_refund_id)
    assert stripe_refund.amount == 10_000 and stripe_refund.metadata["accord_refund"] == str(refund.id)
    assert _reversed(session, refund) == 10_000
    session.expire_all()
    account = session.get(Account, payment.account_id)
    paid = session.get(Payment, payment.id)
    assert account is not None and paid is not None
    assert account.total_balance == before + 10_000 and paid.reversed_amount == 10_000
    instalment = session.get(PlanInstalment, payment.instalment_id)
    assert instalment is not None and (instalment.paid_amount, instalment.status) == (20_000, "due")
    assert not ledger.discrepancies(session)
    assert session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == "refund.requested", AuditEvent.actor_id == finance.id)
    )


def test_a_refund_above_the_threshold_waits_for_a_second_finance_user(
    app_context: None, session: Session, stripe_client: stripe.StripeClient, staff_of
) -> None:  # type: ignore[no-untyped-def]
    payment = _paid(session, stripe_client, amount=150_000)
    asker, approver = staff_of(Role.FINANCE), staff_of(Role.FINANCE)

    result = refunds.request_refund(
        session, stripe_client, asker, payment.id, amount_text="1,500.00", reason="Goodwill"
    )
    assert result.status == "awaiting_approval"
    [refund] = _refund_rows(session, payment)
    assert refund.stripe_refund_id is None
    assert not stripe_client.v1.refunds.list(params={"payment_intent": payment.payment_intent_id}).data

    with pytest.raises(DomainError) as own:
        refunds.approve(session, stripe_client, asker, refund.id)
    assert own.value.code == "refund_own_request"
    session.rollback()
    assert _refund_rows(session, payment)[0].status == "awaiting_approval"

    assert refunds.approve(session, stripe_client, approver, refund.id).status == "succeeded"
    [refund] = _refund_rows(session, payment)
    assert refund.approved_by_id == approver.id and _reversed(session, refund) == 150_000
    assert session.get(Payment, payment.id).reversed_amount == 150_000  # type: ignore[union-attr]
    with pytest.raises(DomainError) as twice:
        refunds.approve(session, stripe_client, staff_of(Role.FINANCE), refund.id)
    assert twice.value.code == "refund_not_awaiting"
    session.rollback()
    assert len(stripe_client.v1.refunds.list(params={"payment_intent": payment.payment_intent_id}).data) == 1
    assert not ledger.discrepancies(session)


def test_a_rejected_refund_changes_nothing_and_cannot_be_decided_again(
    app_context: None, session: Session, stripe_client: stripe.StripeClient, staff_of
) -> None:  # type: ignore[no-untyped-def]
    payment = _paid(session, stripe_client, amount=150_000)
    asker, other = staff_of(Role.FINANCE), staff_of(Role.FINANCE)
    result = refunds.request_refund(session, stripe_client, asker, payment.id, amount_text="1500", reason="x")
    assert refunds.reject(session, other, result.refund_id, "Not agreed").status == "rejected"
    for decide in (
        lambda: refunds.approve(session, stripe_client, other, result.refund_id),
        lambda: refunds.reject(session, other, result.refund_id),
    ):
        with pytest.raises(DomainError) as refused:
            decide()
        assert refused.value.code == "refund_not_awaiting"
        session.rollback()
    assert session.get(Payment, payment.id).reversed_amount == 0  # type: ignore[union-attr]
    assert session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "refund.rejected")
    )


@pytest.mark.parametrize(
    ("first", "second", "code"),
    [
        (None, "300.01", "refund_too_large"),
        ("100", "200.01", "refund_too_large"),
        (None, "0", "refund_not_positive"),
        (None, "-5", "amount_negative"),
        (None, "abc", "amount_invalid"),
        (None, "1.001", "amount_too_precise"),
    ],
)
def test_a_refund_beyond_what_is_left_or_not_an_amount_is_refused_and_changes_nothing(
    *,
    app_context: None,
    session: Session,
    stripe_client: stripe.StripeClient,
    staff_of,
    first: str | None,
    second: str,
    code: str,
) -> None:  # type: ignore[no-untyped-def]
    payment = _paid(session, stripe_client)
    finance = staff_of(Role.FINANCE)
    if first:
        refunds.request_refund(session, stripe_client, finance, payment.id, amount_text=first, reason="r")
    rows = len(_refund_rows(session, payment))
    entries = session.scalar(select(func.count()).select_from(LedgerEntry))
    with pytest.raises(DomainError) as refused:
        refunds.request_refund(session, stripe_client, finance, payment.id, amount_text=second, reason="r")
    session.rollback()
    assert refused.value.code == code
    assert len(_refund_rows(session, payment)) == rows
    assert session.scalar(select(func.count()).select_from(LedgerEntry)) == entries


def test_a_refund_needs_a_reason_and_a_recorded_payment(
    app_context: None, session: Session, stripe_client: stripe.StripeClient, staff_of
) -> None:  # type: ignore[no-untyped-def]
    finance = staff_of(Role.FINANCE)
    payment = _paid(session, stripe_client)
    with pytest.raises(DomainError) as no_reason:
        refunds.request_refund(session, stripe_client, finance, payment.id, amount_text="1", reason="  ")
    assert no_reason.value.code == "refund_reason_required"
    session.rollback()
    plan = plan_support.plan(session, [TODAY])
    plan_support.autopay(session, stripe_client, plan, plan_support.DECLINED_AT_CHARGE)
    failed = session.get(Payment, autopay.run(session, stripe_client, TODAY).payment_ids[0])
    assert failed is not None and failed.status == "failed"
    with pytest.raises(DomainError) as unrecorded:
        refunds.request_refund(session, stripe_client, finance, failed.id, amount_text="1", reason="r")
    assert unrecorded.value.code == "refund_payment_not_recorded"
    session.rollback()
    assert not _refund_rows(session, failed)
    agent = staff_of(Role.AGENT)
    with pytest.raises(DomainError) as not_allowed:
        refunds.request_refund(session, stripe_client, agent, payment.id, amount_text="1", reason="r")
    assert not_allowed.value.code == "not_allowed"


# --- The finance pages ---------------------------------------------------------------------------


def test_finance_sees_payments_and_refunds_from_the_payment_page(
    client: FlaskClient, session: Session, stripe_client: stripe.StripeClient, staff_of
) -> None:  # type: ignore[no-untyped-def]
    payment = _paid(session, stripe_client)
    sign_in(client, staff_of(Role.FINANCE))
    listing = client.get("/staff/finance/payments?status=succeeded")
    assert listing.status_code == 200 and f"#{payment.id}" in listing.get_data(as_text=True)
    assert f"#{payment.id}" not in client.get("/staff/finance/payments?status=failed").get_data(as_text=True)
    page = client.get(f"/staff/finance/payments/{payment.id}").get_data(as_text=True)
    assert payment.payment_intent_id in page and "Refund this payment" in page
    assert f"payment:{payment.payment_intent_id}" in page

    refused = client.post(
        f"/staff/finance/payments/{payment.id}/refunds",
        data={"amount": "999", "reason": "r"},
        follow_redirects=True,
    )
    assert "can be refunded" in refused.get_data(as_text=True)
    done = client.post(
        f"/staff/finance/payments/{payment.id}/refunds",
        data={"amount": "50", "reason": "Overpaid"},
        follow_redirects=True,
    )
    text = done.get_data(as_text=True)
    assert "posted to the ledger" in text and "Overpaid" in text
    [refund] = _refund_rows(session, payment)
    assert refund.status == "succeeded" and f"refund:{refund.stripe_refund_id}" in text
    assert client.get("/staff/finance/suspense").status_code == 200


def test_the_second_approver_approves_from_the_payment_page(
    client: FlaskClient, session: Session, stripe_client: stripe.StripeClient, staff_of
) -> None:  # type: ignore[no-untyped-def]
    payment = _paid(session, stripe_client, amount=150_000)
    asker = staff_of(Role.FINANCE)
    sign_in(client, asker)
    waiting = client.post(
        f"/staff/finance/payments/{payment.id}/refunds",
        data={"amount": "1200", "reason": "Goodwill"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "second finance approver" in waiting and "Another finance user must approve it." in waiting
    [refund] = _refund_rows(session, payment)
    own = client.post(f"/staff/finance/refunds/{refund.id}/approve", follow_redirects=True)
    assert "Nobody may approve their own refund" in own.get_data(as_text=True)
    assert _refund_rows(session, payment)[0].status == "awaiting_approval"
    sign_in(client, staff_of(Role.ADMIN))
    assert "Goodwill" in client.get("/staff/finance/payments").get_data(as_text=True)
    approved = client.post(f"/staff/finance/refunds/{refund.id}/approve", follow_redirects=True)
    assert "approved, sent to Stripe" in approved.get_data(as_text=True)
    assert _refund_rows(session, payment)[0].status == "succeeded"


def test_staff_without_the_payments_permission_cannot_open_finance(client: FlaskClient, staff_of) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, staff_of(Role.AGENT))
    assert client.get("/staff/finance/payments").status_code == 403
    assert "/staff/finance/payments" not in client.get("/staff/").get_data(as_text=True)
