"""The catch-up job: Stripe events Accord never received (a webhook outage) are fed through the
same handler; running it again changes nothing."""

from __future__ import annotations

import datetime as dt

import stripe
from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.integrations.stripe_gateway import client_from_config
from portal.models import LedgerEntry, Payment, StripeEvent, SuspenseItem
from portal.services import payments
from tests import factories
from tests.stripe_support import LocalStripe
from tests.webhook_support import new_payment


def _charge(client: stripe.StripeClient, payment: Payment) -> str:
    """A real PaymentIntent at localstripe for ``payment``; its webhook never reaches Accord."""
    pi = client.v1.payment_intents.create(
        params={
            "amount": payment.amount,
            "currency": payment.currency.lower(),
            "payment_method": "pm_card_visa",
            "payment_method_types": ["card"],
            "confirm": True,
            "metadata": {"accord_payment": str(payment.id)},
        }
    )
    assert pi.status == "succeeded"
    return str(pi.id)


def test_catch_up_records_payments_whose_webhooks_were_lost_and_a_second_run_changes_nothing(
    app: Flask, session: Session, localstripe: LocalStripe
) -> None:
    localstripe.reset()  # only this test's events (each test process has its own localstripe)
    client = client_from_config(app.config)
    account = factories.account(session, principal=500_000)
    known = new_payment(session, account, 20_000)
    known.payment_intent_id = _charge(client, known)
    # This one crashed before its PaymentIntent id was stored: the metadata finds it.
    crashed = new_payment(session, account, 30_000)
    crashed_pi = _charge(client, crashed)
    session.commit()

    with app.app_context():
        first = payments.catch_up(session, client)
    assert first["applied"] == 2
    assert known.status == crashed.status == "succeeded"
    assert crashed.payment_intent_id == crashed_pi
    stored = session.scalars(select(StripeEvent).where(StripeEvent.source == "catch_up")).all()
    assert {e.type for e in stored} >= {"payment_intent.succeeded"}
    entries = session.scalar(select(func.count()).where(LedgerEntry.account_id == account.id))

    with app.app_context():
        second = payments.catch_up(session, client)
    assert set(second) == {"known"}
    assert second["known"] == sum(first.values())
    assert session.scalar(select(func.count()).where(LedgerEntry.account_id == account.id)) == entries
    assert session.scalar(select(func.count()).select_from(SuspenseItem)) == 0


def test_a_borrower_payment_stuck_in_flight_is_recorded_if_stripe_has_it_and_failed_if_not(
    app: Flask, session: Session, localstripe: LocalStripe
) -> None:
    client = client_from_config(app.config)
    account = factories.account(session, principal=500_000)
    charged = new_payment(session, account, 12_000)
    pi = _charge(client, charged)  # Stripe charged it; the answer never reached the database
    never_sent = new_payment(session, account, 8_000)
    fresh = new_payment(session, account, 5_000)  # still being sent: left alone
    old = utcnow() - dt.timedelta(minutes=30)
    session.execute(update(Payment).where(Payment.id.in_([charged.id, never_sent.id])).values(updated_at=old))
    session.commit()

    with app.app_context():
        counts = payments.recover_stuck(session, client)
    assert counts == {"adopted": 1, "failed": 1}
    session.refresh(charged)
    session.refresh(never_sent)
    session.refresh(fresh)
    assert (charged.status, charged.payment_intent_id) == ("succeeded", pi)
    assert (never_sent.status, never_sent.failure_code) == ("failed", "not_submitted")
    assert fresh.status == "submitting"
    with app.app_context():
        assert payments.recover_stuck(session, client) == {}
