"""A finance user's morning in a desktop Chromium: import the day's Stripe activity through the
API, reconcile it against the ledger, find the one charge nobody recorded (planted), resolve it
with a note, close the day and download the postings. Every page passes axe-core."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal.extensions import db
from portal.integrations.stripe_gateway import client_from_config
from portal.models import DayClose, ReconciliationException
from portal.services import payments
from portal.services.hardship import desk_today
from tests import factories
from tests.e2e.conftest import LiveServer, NewContext
from tests.e2e.test_desk_journey import DESKTOP, _desk_user, staff_sign_in
from tests.webhook_support import new_payment
from workflows.access import Role

pytestmark = pytest.mark.e2e

Check = Callable[[Page, str], None]


def _activity(server: LiveServer) -> tuple[str, str]:
    """A card payment recorded by Accord, and a charge Stripe made that Accord never asked for:
    (the recorded account's reference, the stray PaymentIntent's id)."""
    assert server.app is not None
    with server.app.app_context(), db.session_scope() as session:
        client = client_from_config(server.app.config)
        account = factories.account(session, principal=600_000)
        payment = new_payment(session, account, 25_000)
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
        payment.payment_intent_id = pi.id
        session.commit()
        assert payments.sync_payment(session, client, payment.id).status == "succeeded"
        stray = client.v1.payment_intents.create(
            params={
                "amount": 1_234,
                "currency": "cny",
                "payment_method": "pm_card_visa",
                "payment_method_types": ["card"],
                "confirm": True,
            }
        )
        return account.external_reference, str(stray.id)


def test_finance_imports_reconciles_resolves_the_planted_difference_and_closes_the_day(
    new_context: NewContext, live_server: LiveServer, assert_accessible: Check
) -> None:
    reference, stray = _activity(live_server)
    email, secret = _desk_user(live_server, Role.FINANCE, "morning-finance")
    page = new_context(viewport=DESKTOP).new_page()
    staff_sign_in(page, email, secret)

    page.get_by_role("link", name="Reconciliation").click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    assert_accessible(page, "finance-1-queue")
    page.get_by_role("button", name="Import through the Stripe API").click()
    expect(page.locator(".messages, [role=status], .flash").first).to_be_visible()

    today = dt.datetime.now(dt.UTC).date()
    page.get_by_label("First day").fill((today - dt.timedelta(days=1)).isoformat())
    page.get_by_label("Last day").fill(today.isoformat())
    page.get_by_role("button", name="Reconcile").click()
    page.wait_for_load_state()

    assert live_server.app is not None
    with live_server.app.app_context(), db.session_scope() as session:
        planted = session.scalars(
            select(ReconciliationException).where(ReconciliationException.detail.is_not(None))
        ).all()
        mine = [(e.id, e.kind) for e in planted if stray in str(e.detail) or e.stripe_ref.endswith(stray[3:])]
        ours = [e.id for e in planted if reference in str(e.detail)]
        seen = [(e.kind, e.stripe_ref, e.detail) for e in planted]
    assert len(mine) == 1, seen
    exception_id, kind = mine[0]
    assert kind == "missing_in_ledger"
    assert not ours, "the recorded payment must match"

    page.goto(f"/staff/finance/reconciliation/{exception_id}")
    assert_accessible(page, "finance-2-exception")
    page.get_by_label("Why nothing needs doing").fill("Test charge made in the Stripe dashboard; no debt.")
    page.locator("form", has=page.get_by_label("Why nothing needs doing")).get_by_role("button").click()
    page.wait_for_load_state()
    with live_server.app.app_context(), db.session_scope() as session:
        resolved = session.get(ReconciliationException, exception_id)
        assert resolved is not None and resolved.status == "resolved"

    day = desk_today() - dt.timedelta(days=1)
    page.goto(f"/staff/finance/close?day={day.isoformat()}&currency=CNY")
    assert_accessible(page, "finance-3-close")
    page.get_by_label(re.compile("Note|Why close")).fill("Morning close after reconciliation.")
    page.get_by_role("button", name="Close the day").click()
    page.wait_for_load_state()
    with live_server.app.app_context(), db.session_scope() as session:
        closed = session.scalars(
            select(DayClose).where(DayClose.day == day, DayClose.currency == "CNY")
        ).one()
        assert closed.report_sha256

    page.goto("/staff/finance/exports")
    assert_accessible(page, "finance-4-exports")
    postings = page.locator("form", has=page.get_by_role("button", name="Download the postings (CSV)"))
    postings.locator("input[name=to]").fill(desk_today().isoformat())
    with page.expect_download() as download:
        postings.get_by_role("button", name="Download the postings (CSV)").click()
    text = download.value.path().read_text(encoding="utf-8")
    assert reference in text
    page.close()  # nothing of this journey may still be talking to the server
