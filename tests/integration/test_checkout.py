"""Paying online against a real localstripe: the borrower chooses what to pay (amounts from the
server), the card is set up (here confirmed server-side, as Stripe.js would in the page), the
PaymentIntent is confirmed once, and the ledger, the receipt (page, PDF, message) and the card
and autopay consent come out right — and every tampered, foreign, closed or doubled request is
refused or absorbed with nothing created twice."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import stripe
from alembic import command
from flask import Flask
from flask.testing import FlaskClient
from pypdf import PdfReader
from sqlalchemy import func, make_url, select
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.integrations.stripe_gateway import client_from_config
from portal.migrations import alembic_config
from portal.models import (
    Account,
    AutopayMandate,
    Borrower,
    LedgerEntry,
    OutboundMessage,
    Payment,
    Plan,
    PlanInstalment,
    SavedCard,
    StripeCustomer,
)
from portal.services import checkout
from tests import factories, plan_support
from tests.conftest import _prepare_postgres, sign_in
from tests.stripe_support import LocalStripe, stripe_config
from workflows.errors import DomainError

VISA = "pm_card_visa"
THREE_D_SECURE = "4000002500003155"
DECLINED_AT_CHARGE = "4000000000000341"
PARALLEL = 10


@pytest.fixture
def stripe_client(app: Flask) -> stripe.StripeClient:
    return client_from_config(app.config)


def _debtor(session: Session, **fields: Any) -> Account:
    """An English-speaking borrower's mid-stage loan: 5,000 principal, 200 interest, 100 fees;
    1,500 overdue."""
    owner = factories.borrower(session, language="en", time_zone="Asia/Shanghai", **fields)
    account = factories.account(session, principal=500_000, interest=20_000, fees=10_000, owner=owner)
    account.overdue_amount, account.dpd, account.stage = 150_000, 40, "mid"
    account.oldest_unpaid_due_on = dt.date.today() - dt.timedelta(days=40)
    session.commit()
    return account


def _plan(session: Session, account: Account) -> Plan:
    """A signed plan in force on the account: three monthly instalments of 300, the first today."""
    today = dt.date.today()
    return plan_support.plan(session, [today + dt.timedelta(days=30 * n) for n in range(3)], account=account)


def _payments(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Payment)) or 0)


def _start(client: FlaskClient, account: Account, **form: str) -> int:
    response = client.post(f"/accounts/{account.id}/pay", data=form)
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    assert "/card" in response.headers["Location"]
    return int(response.headers["Location"].split("/")[-2])


def _card_secret(client: FlaskClient, payment_id: int) -> str:
    response = client.get(f"/payments/{payment_id}/card")
    assert response.status_code == 200, response.get_data(as_text=True)[:3000]
    page = response.get_data(as_text=True)
    return page.split('data-setup-secret="', 1)[1].split('"', 1)[0]


def _card_in_page(stripe_client: stripe.StripeClient, secret: str, card: str = VISA) -> str:
    """What confirmCardSetup does in the browser: the SetupIntent confirmed with a card."""
    setup_id = secret.split("_secret_", 1)[0]
    if not card.startswith("pm_"):
        card = stripe_client.v1.payment_methods.create(
            params={"type": "card", "card": {"number": card, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
        ).id
    intent = stripe_client.v1.setup_intents.confirm(setup_id, params={"payment_method": card})
    return str(intent.id)


def _confirm(client: FlaskClient, payment_id: int, **form: str) -> tuple[int, dict[str, Any]]:
    response = client.post(f"/payments/{payment_id}/confirm", data=form)
    return response.status_code, response.get_json()


def _ledger(session: Session, account: Account) -> dict[str, int]:
    rows = session.execute(
        select(LedgerEntry.component, func.sum(LedgerEntry.amount))
        .where(LedgerEntry.account_id == account.id, LedgerEntry.kind == "payment")
        .group_by(LedgerEntry.component)
    ).all()
    return {component: int(total) for component, total in rows}


def _intents_for(session: Session, stripe_client: stripe.StripeClient, payment_id: int) -> int:
    """The PaymentIntents made for the payment (ids restart in each rolled-back test: the Stripe
    customer, created once per borrower, tells this test's apart)."""
    payment = session.get(Payment, payment_id)
    assert payment is not None
    customer = session.get(StripeCustomer, payment.borrower_id)
    if customer is None:
        return 0
    listed = stripe_client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter()
    return sum(
        1
        for pi in listed
        if pi.customer == customer.customer_id
        and pi.metadata.to_dict().get("accord_payment") == str(payment_id)
    )


def test_paying_the_overdue_amount_posts_the_ledger_and_gives_a_receipt(
    client: FlaskClient, session: Session, stripe_client: stripe.StripeClient
) -> None:
    account = _debtor(session)
    sign_in(client, account.borrower)
    page = client.get(f"/accounts/{account.id}/pay").get_data(as_text=True)
    for text in ("The overdue amount", "CN¥1,500.00", "Your whole balance", "CN¥5,300.00", "Another amount"):
        assert text in page, text

    # A tampered amount beside a fixed option is ignored: the server's overdue amount is charged.
    payment_id = _start(client, account, choice="overdue", amount="1")
    payment = session.get(Payment, payment_id)
    assert payment is not None and (payment.amount, payment.status, payment.purpose) == (
        150_000,
        "created",
        "overdue",
    )
    assert payment.idempotency_key.startswith("pay:")

    setup_id = _card_in_page(stripe_client, _card_secret(client, payment_id))
    status, body = _confirm(client, payment_id, setup_intent_id=setup_id)
    assert status == 200, body
    assert body["status"] == "succeeded" and body["client_secret"] is None
    assert body["next"] == f"/payments/{payment_id}"

    session.expire_all()
    payment = session.get(Payment, payment_id)
    assert payment is not None and payment.status == "succeeded" and payment.payment_intent_id
    assert payment.receipt_number and payment.charge_id and payment.amount_received == 150_000
    # The waterfall: fees, then interest, then principal.
    assert _ledger(session, account) == {"fees": -10_000, "interest": -20_000, "principal": -120_000}
    refreshed = session.get(Account, account.id)
    assert refreshed is not None and refreshed.total_balance == 530_000 - 150_000

    receipt = client.get(f"/payments/{payment_id}").get_data(as_text=True)
    for text in ("Thank you: payment received", payment.receipt_number, "CN¥1,500.00", "CN¥1,200.00"):
        assert text in receipt, text
    pdf = client.get(f"/payments/{payment_id}/receipt.pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    assert pdf.headers["Content-Type"] == "application/pdf"

    notice = session.scalar(
        select(OutboundMessage).where(
            OutboundMessage.purpose == "payment_receipt",
            OutboundMessage.recipient == account.borrower.email,
        )
    )
    assert notice is not None and payment.receipt_number in (notice.subject or "")


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"choice": "everything"}, "Choose one of the listed options."),
        ({"choice": "instalment"}, "Choose one of the listed options."),  # no plan in force
        ({"choice": "amount", "amount": ""}, "Enter the amount you want to pay."),
        ({"choice": "amount", "amount": "0"}, "The amount must be more than zero."),
        ({"choice": "amount", "amount": "-50"}, "The amount cannot be negative."),
        ({"choice": "amount", "amount": "abc"}, "Enter an amount such as 1234.50."),
        ({"choice": "amount", "amount": "1.234"}, "The amount has too many decimal places."),
        ({"choice": "amount", "amount": "50"}, "The amount must be at least CN¥100.00."),
        ({"choice": "amount", "amount": "5300.01"}, "cannot be more than your whole balance, CN¥5,300.00."),
        ({"choice": "amount", "amount": "sNaN"}, "Enter an amount such as 1234.50."),
    ],
)
def test_a_tampered_or_impossible_amount_is_refused_and_nothing_is_created(
    client: FlaskClient, session: Session, form: dict[str, str], message: str
) -> None:
    account = _debtor(session)
    sign_in(client, account.borrower)
    before = _payments(session)
    response = client.post(f"/accounts/{account.id}/pay", data=form)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert _payments(session) == before


def test_another_amount_between_the_minimum_and_the_balance_is_accepted(
    client: FlaskClient, session: Session
) -> None:
    account = _debtor(session)
    sign_in(client, account.borrower)
    payment_id = _start(client, account, choice="amount", amount="1,234.50")
    payment = session.get(Payment, payment_id)
    assert payment is not None and (payment.amount, payment.purpose) == (123_450, "amount")


def test_someone_elses_account_or_payment_is_not_found(client: FlaskClient, session: Session) -> None:
    mine, theirs = _debtor(session), _debtor(session)
    sign_in(client, theirs.borrower)
    their_payment = _start(client, theirs, choice="balance")
    sign_in(client, mine.borrower)
    before = _payments(session)
    assert client.get(f"/accounts/{theirs.id}/pay").status_code == 404
    assert client.post(f"/accounts/{theirs.id}/pay", data={"choice": "balance"}).status_code == 404
    for url in ("card", "receipt.pdf", "status"):
        assert client.get(f"/payments/{their_payment}/{url}").status_code == 404
    assert client.get(f"/payments/{their_payment}").status_code == 404
    assert (
        client.post(f"/payments/{their_payment}/confirm", data={"setup_intent_id": "seti_x"}).status_code
        == 404
    )
    assert _payments(session) == before
    with pytest.raises(DomainError) as refused:
        checkout.start(session, mine.borrower, theirs.id, "balance", None, "en")
    assert refused.value.code == "account_unknown"


@pytest.mark.parametrize("status", ["closed", "recalled"])
def test_a_closed_account_cannot_be_paid(client: FlaskClient, session: Session, status: str) -> None:
    account = _debtor(session)
    account.status = status
    session.commit()
    sign_in(client, account.borrower)
    page = client.get(f"/accounts/{account.id}/pay")
    assert page.status_code == 200
    assert "This account cannot be paid online." in page.get_data(as_text=True)
    assert 'name="choice"' not in page.get_data(as_text=True)
    before = _payments(session)
    assert client.post(f"/accounts/{account.id}/pay", data={"choice": "balance"}).status_code == 200
    assert _payments(session) == before
    with pytest.raises(DomainError) as refused:
        checkout.start(session, account.borrower, account.id, "balance", None, "en")
    assert refused.value.code == "account_not_payable"


def test_a_double_confirm_makes_one_payment_intent(
    client: FlaskClient, session: Session, stripe_client: stripe.StripeClient
) -> None:
    account = _debtor(session)
    sign_in(client, account.borrower)
    payment_id = _start(client, account, choice="balance")
    setup_id = _card_in_page(stripe_client, _card_secret(client, payment_id))
    first = _confirm(client, payment_id, setup_intent_id=setup_id)
    second = _confirm(client, payment_id, setup_intent_id=setup_id)
    assert first[0] == second[0] == 200
    assert first[1]["status"] == second[1]["status"] == "succeeded"
    assert _intents_for(session, stripe_client, payment_id) == 1
    assert _ledger(session, account) == {"fees": -10_000, "interest": -20_000, "principal": -500_000}
    receipts = session.scalar(
        select(func.count()).select_from(OutboundMessage).where(OutboundMessage.purpose == "payment_receipt")
    )
    assert receipts is not None and receipts >= 1


def test_a_confirm_while_another_is_submitting_gets_its_state_and_charges_nothing(
    session: Session, stripe_client: stripe.StripeClient, app: Flask
) -> None:
    """The second tab: the first request holds the row in `submitting` (it committed before
    calling Stripe); the second sees that and never creates a PaymentIntent."""
    account = _debtor(session)
    with app.test_request_context():
        payment = checkout.start(session, account.borrower, account.id, "overdue", None, "en")
        secret = checkout.setup_card(session, stripe_client, account.borrower, payment.id)
        setup_id = _card_in_page(stripe_client, secret)
        payment.status = "submitting"
        session.commit()
        result = checkout.confirm(
            session, stripe_client, account.borrower, payment.id, setup_intent_id=setup_id
        )
    assert result.status == "submitting" and result.client_secret is None
    assert _intents_for(session, stripe_client, payment.id) == 0
    assert _ledger(session, account) == {}


def test_three_d_secure_asks_the_page_to_authenticate_then_the_result_page_records_it(
    client: FlaskClient, session: Session, stripe_client: stripe.StripeClient, localstripe: LocalStripe
) -> None:
    account = _debtor(session)
    sign_in(client, account.borrower)
    payment_id = _start(client, account, choice="overdue")
    setup_id = _card_in_page(stripe_client, _card_secret(client, payment_id), THREE_D_SECURE)
    # The 3-D Secure card asks for authentication when it is set up: what the page's modal does.
    _authenticate_setup(localstripe, setup_id)
    status, body = _confirm(client, payment_id, setup_intent_id=setup_id)
    assert status == 200, body
    assert body["status"] == "requires_action" and body["client_secret"].startswith("pi_")
    session.expire_all()
    assert session.get(Payment, payment_id).status == "requires_action"  # type: ignore[union-attr]
    assert _ledger(session, account) == {}
    page = client.get(f"/payments/{payment_id}").get_data(as_text=True)
    assert "Your bank asks you to confirm this payment" in page
    card_page = client.get(f"/payments/{payment_id}/card").get_data(as_text=True)
    assert body["client_secret"] in card_page  # for confirmCardPayment

    # What confirmCardPayment does in the browser when the borrower completes the check.
    pi_id = body["client_secret"].split("_secret_", 1)[0]
    _localstripe_post(
        localstripe, f"/v1/payment_intents/{pi_id}/_authenticate?success=true", body["client_secret"]
    )
    assert client.get(f"/payments/{payment_id}/status").get_json() == {"status": "succeeded", "done": True}
    assert _ledger(session, account) == {"fees": -10_000, "interest": -20_000, "principal": -120_000}


def test_a_declined_card_fails_the_payment_with_its_message_and_posts_nothing(
    client: FlaskClient, session: Session, stripe_client: stripe.StripeClient
) -> None:
    account = _debtor(session)
    sign_in(client, account.borrower)
    payment_id = _start(client, account, choice="overdue")
    setup_id = _card_in_page(stripe_client, _card_secret(client, payment_id), DECLINED_AT_CHARGE)
    status, body = _confirm(client, payment_id, setup_intent_id=setup_id, save_card="yes")
    assert status == 200 and body["status"] == "failed"
    session.expire_all()
    payment = session.get(Payment, payment_id)
    assert payment is not None and payment.status == "failed"
    assert payment.failure_code == "card_declined" and payment.failure_message == "Your card was declined."
    assert payment.payment_intent_id  # found through the declined charge
    assert _ledger(session, account) == {}
    assert session.scalar(select(SavedCard).where(SavedCard.borrower_id == account.borrower_id)) is None
    page = client.get(f"/payments/{payment_id}").get_data(as_text=True)
    assert "The payment did not go through" in page and "Your card was declined." in page
    assert f"/accounts/{account.id}/pay" in page  # try again


def test_a_setup_intent_that_is_not_the_borrowers_is_refused_and_the_payment_can_be_retried(
    client: FlaskClient, session: Session, stripe_client: stripe.StripeClient
) -> None:
    mine, theirs = _debtor(session), _debtor(session)
    sign_in(client, theirs.borrower)
    their_setup = _card_in_page(stripe_client, _card_secret(client, _start(client, theirs, choice="balance")))
    sign_in(client, mine.borrower)
    payment_id = _start(client, mine, choice="overdue")
    unconfirmed = _card_secret(client, payment_id).split("_secret_", 1)[0]
    for setup_id in (their_setup, unconfirmed, "seti_forged"):
        status, body = _confirm(client, payment_id, setup_intent_id=setup_id)
        assert status == 422 and body["error"] == "Your card could not be set up. Please enter it again."
    status, body = _confirm(client, payment_id)
    assert status == 422 and body["error"] == "Enter your card details or choose a saved card."
    session.expire_all()
    assert session.get(Payment, payment_id).status == "created"  # type: ignore[union-attr]
    assert _intents_for(session, stripe_client, payment_id) == 0


def test_paying_an_instalment_with_a_saved_card_and_autopay_stores_the_consent(
    client: FlaskClient, session: Session, stripe_client: stripe.StripeClient, app: Flask
) -> None:
    account = _debtor(session)
    plan = _plan(session, account)
    sign_in(client, account.borrower)
    page = client.get(f"/accounts/{account.id}/pay").get_data(as_text=True)
    assert "Next instalment (no. 1" in page and "CN¥300.00" in page
    assert "The overdue amount" not in page  # in a plan, the instalment is what is due
    payment_id = _start(client, account, choice="instalment")
    payment = session.get(Payment, payment_id)
    assert payment is not None and (payment.amount, payment.plan_id) == (30_000, plan.id)
    card_page = client.get(f"/payments/{payment_id}/card")
    html = card_page.get_data(as_text=True)
    secret = html.split('data-setup-secret="', 1)[1].split('"', 1)[0]
    consent_sha = html.split('data-consent-sha="', 1)[1].split('"', 1)[0]
    assert "may charge my saved card for each remaining instalment" in html
    setup_id = _card_in_page(stripe_client, secret)

    status, body = _confirm(
        client, payment_id, setup_intent_id=setup_id, save_card="yes", autopay="yes", consent_sha="0" * 32
    )
    assert status == 422 and "terms shown have changed" in body["error"]
    status, body = _confirm(
        client, payment_id, setup_intent_id=setup_id, save_card="yes", autopay="yes", consent_sha=consent_sha
    )
    assert status == 200 and body["status"] == "succeeded", body

    session.expire_all()
    card = session.scalar(select(SavedCard).where(SavedCard.borrower_id == account.borrower_id))
    assert card is not None and (card.brand, card.last4, card.exp_month, card.exp_year) == (
        "visa",
        "4242",
        12,
        2030,
    )
    mandate = session.scalar(select(AutopayMandate).where(AutopayMandate.plan_id == plan.id))
    assert mandate is not None and mandate.saved_card_id == card.id and mandate.revoked_at is None
    assert mandate.consent_version == checkout.CONSENT_VERSION and mandate.consent_ip == "127.0.0.1"
    assert checkout.consent_fingerprint(mandate.consent_text) == consent_sha
    first = session.scalar(
        select(PlanInstalment).where(PlanInstalment.plan_id == plan.id, PlanInstalment.number == 1)
    )
    assert first is not None and first.status == "paid"
    paid = session.get(Payment, payment_id)
    assert paid is not None and paid.saved_card_id == card.id

    # The next payment offers the saved card, and is made with it without typing anything.
    second = _start(client, account, choice="instalment")
    assert "Visa ending 4242" in client.get(f"/payments/{second}/card").get_data(as_text=True)
    status, body = _confirm(client, second, saved_card_id=str(card.id))
    assert status == 200 and body["status"] == "succeeded"

    # The cards page: autopay is on; removing the card turns it off.
    cards = client.get("/payments/cards").get_data(as_text=True)
    assert "On: each instalment is charged to your card ending 4242" in cards
    assert client.post(f"/payments/cards/{card.id}/remove").status_code == 302
    session.expire_all()
    assert session.get(AutopayMandate, mandate.id).revoked_at is not None  # type: ignore[union-attr]
    assert session.get(SavedCard, card.id).removed_at is not None  # type: ignore[union-attr]


def test_autopay_is_turned_on_with_a_saved_card_and_consent_and_off_again(
    client: FlaskClient, session: Session, app: Flask
) -> None:
    account = _debtor(session)
    plan = _plan(session, account)
    card = SavedCard(
        borrower_id=account.borrower_id,
        payment_method_id=f"pm_saved_{account.id}",
        brand="visa",
        last4="4242",
        exp_month=12,
        exp_year=2030,
    )
    session.add(card)
    session.commit()
    sign_in(client, account.borrower)
    page = client.get("/payments/cards").get_data(as_text=True)
    consent_sha = page.split('name="consent_sha" value="', 1)[1].split('"', 1)[0]
    url = f"/payments/autopay/{plan.id}"
    refused = client.post(url, data={"action": "enable", "card_id": str(card.id), "consent_sha": consent_sha})
    assert refused.status_code == 422 and "Tick the box" in refused.get_data(as_text=True)
    assert session.scalar(select(AutopayMandate).where(AutopayMandate.plan_id == plan.id)) is None
    stranger = _debtor(session)
    other_card = SavedCard(
        borrower_id=stranger.borrower_id,
        payment_method_id="pm_other",
        brand="visa",
        last4="1111",
        exp_month=1,
        exp_year=2031,
    )
    session.add(other_card)
    session.commit()
    refused = client.post(
        url,
        data={"action": "enable", "card_id": str(other_card.id), "consent_sha": consent_sha, "agree": "yes"},
    )
    assert refused.status_code == 422 and "This card was not found" in refused.get_data(as_text=True)

    done = client.post(
        url, data={"action": "enable", "card_id": str(card.id), "consent_sha": consent_sha, "agree": "yes"}
    )
    assert done.status_code == 302
    mandate = session.scalar(select(AutopayMandate).where(AutopayMandate.plan_id == plan.id))
    assert (
        mandate is not None and mandate.revoked_at is None and "remaining instalment" in mandate.consent_text
    )
    assert client.post(url, data={"action": "disable"}).status_code == 302
    session.expire_all()
    assert session.get(AutopayMandate, mandate.id).revoked_at is not None  # type: ignore[union-attr]


def test_the_card_page_alone_may_load_stripe_js(
    client: FlaskClient, session: Session, localstripe: LocalStripe
) -> None:
    account = _debtor(session)
    sign_in(client, account.borrower)
    payment_id = _start(client, account, choice="overdue")
    card = client.get(f"/payments/{payment_id}/card")
    policy = card.headers["Content-Security-Policy"]
    assert f"script-src 'self' {localstripe.api_base}" in policy
    assert (
        f"connect-src 'self' {localstripe.api_base}" in policy
        and f"frame-src {localstripe.api_base}" in policy
    )
    assert "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy
    assert f'src="{localstripe.js_url}"' in card.get_data(as_text=True)
    for other in (f"/accounts/{account.id}/pay", "/home"):
        assert localstripe.api_base not in client.get(other).headers["Content-Security-Policy"]


def test_without_stripe_the_pay_page_says_how_else_to_pay(
    client: FlaskClient, session: Session, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "STRIPE_SECRET_KEY", "")
    account = _debtor(session)
    sign_in(client, account.borrower)
    page = client.get(f"/accounts/{account.id}/pay").get_data(as_text=True)
    assert "Online payment is not available just now" in page and account.external_reference in page
    before = _payments(session)
    client.post(f"/accounts/{account.id}/pay", data={"choice": "balance"})
    assert _payments(session) == before


def test_the_dashboard_and_the_account_page_link_to_paying(client: FlaskClient, session: Session) -> None:
    account = _debtor(session)
    sign_in(client, account.borrower)
    for url in ("/home", f"/accounts/{account.id}"):
        assert f'href="/accounts/{account.id}/pay"' in client.get(url).get_data(as_text=True), url


def _localstripe_post(server: LocalStripe, path: str, client_secret: str) -> dict[str, Any]:
    body = json.dumps({"key": "pk_test_accord", "client_secret": client_secret}).encode()
    request = urllib.request.Request(f"{server.api_base}{path}", data=body, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (our own loopback server)
        return dict(json.loads(response.read()))


def _authenticate_setup(server: LocalStripe, setup_id: str) -> None:
    """The 3-D Secure check of a SetupIntent, completed (the modal's "Complete authentication")."""
    client = stripe.StripeClient(
        "sk_test_accord", base_addresses={"api": server.api_base}, max_network_retries=0
    )
    intent = client.v1.setup_intents.retrieve(setup_id)
    if intent.status == "requires_action":
        _localstripe_post(server, f"/v1/setup_intents/{setup_id}/confirm", str(intent.client_secret))


@pytest.fixture
def race_app(database_url: str, make_app, tmp_path: Path, localstripe: LocalStripe) -> Flask:  # type: ignore[no-untyped-def]
    """An app on a database of its own, so requests run real transactions side by side."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        own = url.set(database=f"{url.database}_pay_race").render_as_string(hide_password=False)
        _prepare_postgres(own)
    else:
        own = f"sqlite:///{tmp_path / 'pay-race.db'}"
    command.upgrade(alembic_config(own), "head")
    return make_app(DATABASE_URL=own, WTF_CSRF_ENABLED=False, TESTING=True, **stripe_config(localstripe))  # type: ignore[no-any-return]


def test_ten_simultaneous_confirms_of_one_payment_charge_once(race_app: Flask) -> None:
    stripe_client = client_from_config(race_app.config)
    with race_app.test_request_context(), db.session_scope() as session:
        account = _debtor(session)
        borrower = account.borrower
        payment = checkout.start(session, borrower, account.id, "overdue", None, "en")
        setup_id = _card_in_page(
            stripe_client, checkout.setup_card(session, stripe_client, borrower, payment.id)
        )
        payment_id, borrower_id, account_id = payment.id, borrower.id, account.id
    clients = []
    for _ in range(PARALLEL):
        client = race_app.test_client()
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
        with race_app.app_context(), db.session_scope() as session:
            sign_in(client, session.get(Borrower, borrower_id))  # type: ignore[arg-type]
        clients.append(client)
    start = threading.Barrier(PARALLEL)
    answers: list[tuple[int, str]] = []

    def confirm(client: FlaskClient) -> None:
        start.wait()
        status, body = _confirm(client, payment_id, setup_intent_id=setup_id)
        answers.append((status, body.get("status", "")))

    threads = [threading.Thread(target=confirm, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(answers) == PARALLEL and all(status == 200 for status, _ in answers), answers
    with race_app.app_context(), db.session_scope() as session:
        assert _intents_for(session, stripe_client, payment_id) == 1
        assert session.get(Payment, payment_id).status == "succeeded"  # type: ignore[union-attr]
        account = session.get(Account, account_id)
        assert account is not None
        assert _ledger(session, account) == {"fees": -10_000, "interest": -20_000, "principal": -120_000}


def test_a_chinese_receipt_pdf_is_set_in_noto_sans_cjk(
    client: FlaskClient, session: Session, stripe_client: stripe.StripeClient
) -> None:
    account = _debtor(session)
    account.borrower.language = "zh_Hans_CN"
    session.commit()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "zh-CN"
    sign_in(client, account.borrower)
    payment_id = _start(client, account, choice="overdue")
    setup_id = _card_in_page(stripe_client, _card_secret(client, payment_id))
    assert _confirm(client, payment_id, setup_intent_id=setup_id)[1]["status"] == "succeeded"
    assert client.get(f"/payments/{payment_id}").status_code == 200
    pdf = client.get(f"/payments/{payment_id}/receipt.pdf")
    assert pdf.status_code == 200
    reader = PdfReader(io.BytesIO(pdf.data))
    fonts = {
        str(font.get_object()["/BaseFont"])
        for page in reader.pages
        for font in (page["/Resources"].get("/Font") or {}).values()
    }
    assert any("Noto-Sans-CJK-SC" in name for name in fonts), fonts
    assert account.borrower.full_name in reader.pages[0].extract_text().replace(" ", "")
