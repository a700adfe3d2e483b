"""POST /webhooks/stripe through the test client: only signed, fresh events are read; each event
counts once; each payment, refund and dispute posts once, in whatever order Stripe delivers."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from typing import Any

import pytest
import stripe
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.models import Account, LedgerEntry, OutboundMessage, Payment, StripeEvent, SuspenseItem
from portal.services import ledger
from tests import factories
from tests.stripe_support import (
    WEBHOOK_SECRET,
    LocalStripe,
    charge_refunded,
    dispute,
    event,
    refund,
    signed,
)
from tests.webhook_support import (
    FinalState,
    active_plan,
    events_stored,
    final_state,
    last_entry_id,
    new_ids,
    new_payment,
    payment_intent,
    suspense_for,
)

URL = "/webhooks/stripe"


def deliver(
    client: FlaskClient, evt: dict[str, Any], *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> Any:
    body, headers = signed(evt, secret, timestamp)
    return client.post(URL, data=body, headers=headers)


def delivered(client: FlaskClient, evt: dict[str, Any]) -> str:
    """The outcome of a delivery that Stripe must not retry."""
    resp = deliver(client, evt)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return str(resp.get_json()["outcome"])


def entries_of(session: Session, account_id: int) -> int:
    return int(session.scalar(select(func.count()).where(LedgerEntry.account_id == account_id)) or 0)


@pytest.fixture
def account(session: Session) -> Account:
    # 2,000 fees, 5,000 interest, 100,000 principal: the default waterfall pays fees first.
    return factories.account(session, principal=100_000, interest=5_000, fees=2_000, currency="CNY")


@pytest.fixture
def ids() -> dict[str, str]:
    return new_ids()


def succeeded(payment: Payment, ids: dict[str, str], **kw: Any) -> dict[str, Any]:
    return event(
        "payment_intent.succeeded", payment_intent(payment, ids["pi"], charge_id=ids["charge"], **kw)
    )


# --- The signature, the clock, the payload ------------------------------------------------------


def test_a_delivery_without_a_signature_is_refused_and_changes_nothing(
    client: FlaskClient, session: Session, account: Account, ids: dict[str, str]
) -> None:
    payment = new_payment(session, account, 10_000, pi_id=ids["pi"])
    evt = succeeded(payment, ids)
    body = json.dumps(evt).encode()
    resp = client.post(URL, data=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "webhook_signature"
    empty_header = client.post(
        URL, data=body, headers={"Stripe-Signature": "", "Content-Type": "application/json"}
    )
    assert empty_header.status_code == 400
    assert events_stored(session, evt["id"]) == 0
    assert final_state(session, payment.id).payment_status == "submitting"


def test_a_signature_with_another_secret_is_refused(
    client: FlaskClient, session: Session, account: Account, ids: dict[str, str]
) -> None:
    payment = new_payment(session, account, 10_000, pi_id=ids["pi"])
    evt = succeeded(payment, ids)
    resp = deliver(client, evt, secret="whsec_not_ours")
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "webhook_signature"
    garbage = client.post(
        URL, data=json.dumps(evt), headers={"Stripe-Signature": f"t={int(time.time())},v1=deadbeef"}
    )
    assert garbage.status_code == 400
    assert events_stored(session, evt["id"]) == 0
    assert entries_of(session, account.id) == 3


def test_an_altered_body_no_longer_matches_its_signature(
    client: FlaskClient, session: Session, account: Account, ids: dict[str, str]
) -> None:
    payment = new_payment(session, account, 10_000, pi_id=ids["pi"])
    evt = succeeded(payment, ids)
    body, headers = signed(evt)
    tampered = body.replace(b'"amount": 10000', b'"amount": 99999')
    assert tampered != body
    resp = client.post(URL, data=tampered, headers=headers)
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "webhook_signature"
    # One byte of whitespace is an alteration too: the signature covers the raw body.
    assert client.post(URL, data=body + b" ", headers=headers).status_code == 400
    assert events_stored(session, evt["id"]) == 0
    assert final_state(session, payment.id).payment_status == "submitting"


@pytest.mark.parametrize(
    "offset", [-301, -3600, 301, 86_400], ids=["5m1s-old", "1h-old", "5m1s-ahead", "1d-ahead"]
)
def test_a_signature_outside_the_tolerance_is_refused_in_both_directions(
    client: FlaskClient, session: Session, account: Account, ids: dict[str, str], offset: int
) -> None:
    payment = new_payment(session, account, 10_000, pi_id=ids["pi"])
    evt = succeeded(payment, ids)
    resp = deliver(client, evt, timestamp=int(time.time()) + offset)
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "webhook_timestamp"
    assert events_stored(session, evt["id"]) == 0


def test_a_signature_just_inside_the_tolerance_is_accepted(
    client: FlaskClient, session: Session, account: Account, ids: dict[str, str]
) -> None:
    payment = new_payment(session, account, 10_000, pi_id=ids["pi"])
    resp = deliver(client, succeeded(payment, ids), timestamp=int(time.time()) - 290)
    assert resp.status_code == 200
    assert resp.get_json()["outcome"] == "applied"


def test_both_secrets_are_accepted_while_one_is_rotated(
    client: FlaskClient,
    session: Session,
    app: Flask,
    account: Account,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(app.config, "STRIPE_WEBHOOK_SECRET", f"{WEBHOOK_SECRET}, whsec_rotated_in")
    old, new = new_ids(), new_ids()
    first = new_payment(session, account, 1_000, pi_id=old["pi"])
    second = new_payment(session, account, 1_000, pi_id=new["pi"])
    assert deliver(client, succeeded(first, old), secret=WEBHOOK_SECRET).get_json()["outcome"] == "applied"
    assert (
        deliver(client, succeeded(second, new), secret="whsec_rotated_in").get_json()["outcome"] == "applied"
    )
    third = succeeded(second, new)
    assert deliver(client, third, secret="whsec_retired").status_code == 400
    assert events_stored(session, third["id"]) == 0


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'["a list"]', b'{"id": "evt_x"}', b"\xff\xfe not utf-8"],
    ids=["broken-json", "a-list", "not-an-event", "not-utf8"],
)
def test_a_signed_payload_that_is_not_an_event_is_refused(
    client: FlaskClient, session: Session, body: bytes
) -> None:
    from portal.integrations.stripe_gateway import sign_payload

    before = session.scalar(select(func.count()).select_from(StripeEvent))
    resp = client.post(
        URL,
        data=body,
        headers={"Stripe-Signature": sign_payload(body, WEBHOOK_SECRET), "Content-Type": "application/json"},
    )
    assert resp.status_code == 400
    assert session.scalar(select(func.count()).select_from(StripeEvent)) == before


@pytest.mark.parametrize(
    "data",
    [{}, {"object": None}, {"object": "pi_123"}, {"object": ["x"]}],
    ids=["no-object", "null-object", "string-object", "list-object"],
)
def test_a_signed_event_without_an_object_is_refused_not_a_server_error(
    client: FlaskClient, session: Session, data: dict[str, Any]
) -> None:
    evt = {"id": "evt_shapeless", "object": "event", "type": "payment_intent.succeeded", "data": data}
    resp = deliver(client, evt)
    assert resp.status_code == 400
    assert events_stored(session, "evt_shapeless") == 0


def test_an_unknown_event_type_is_acknowledged_stored_and_ignored(
    client: FlaskClient, session: Session, account: Account
) -> None:
    evt = event("customer.created", {"id": "cus_123", "object": "customer", "email": "a@example.com"})
    resp = deliver(client, evt)
    assert resp.status_code == 200
    assert resp.get_json() == {"received": True, "outcome": "ignored"}
    stored = session.get(StripeEvent, evt["id"])
    assert stored is not None
    assert (stored.type, stored.outcome, stored.object_id) == ("customer.created", "ignored", "cus_123")
    assert entries_of(session, account.id) == 3
    # Redelivered: a duplicate, still acknowledged.
    assert delivered(client, evt) == "duplicate"


# --- Payments -------------------------------------------------------------------------------------


def test_a_payment_posts_its_allocation_and_ledger_once_with_a_receipt_number(
    client: FlaskClient, session: Session, account: Account, ids: dict[str, str]
) -> None:
    payment = new_payment(session, account, 10_000, pi_id=ids["pi"])
    evt = succeeded(payment, ids)
    assert delivered(client, evt) == "applied"
    state = final_state(session, payment.id)
    # Fees → interest → principal: 2,000 + 5,000 + 3,000.
    assert state.balances == (97_000, 0, 0)
    assert state.payment_status == "succeeded"
    assert (
        state.receipt_number
        and state.receipt_number.startswith("R")
        and str(payment.id) in state.receipt_number
    )
    row = session.get(Payment, payment.id)
    assert row is not None
    assert row.allocation == {
        "components": {"fees": 2_000, "interest": 5_000, "principal": 3_000},
        "credit": 0,
        "instalments": {},
    }
    assert row.charge_id == ids["charge"]
    payments = session.execute(
        select(LedgerEntry.kind, LedgerEntry.component, LedgerEntry.amount, LedgerEntry.cause).where(
            LedgerEntry.account_id == account.id, LedgerEntry.kind == "payment"
        )
    ).all()
    assert sorted(payments) == sorted(
        [
            ("payment", "fees", -2_000, f"payment:{ids['pi']}"),
            ("payment", "interest", -5_000, f"payment:{ids['pi']}"),
            ("payment", "principal", -3_000, f"payment:{ids['pi']}"),
        ]
    )
    receipts = session.scalars(
        select(OutboundMessage).where(
            OutboundMessage.purpose == "payment_receipt", OutboundMessage.body.contains(state.receipt_number)
        )
    ).all()
    assert len(receipts) == 1
    assert ledger.discrepancies(session) == []

    # The same event again, and the same PaymentIntent in a different event: nothing more.
    assert delivered(client, evt) == "duplicate"
    assert delivered(client, succeeded(payment, ids)) == "ignored"
    assert final_state(session, payment.id) == state
    assert events_stored(session, evt["id"]) == 1


def test_a_real_localstripe_payment_intent_is_recorded_by_its_metadata(
    client: FlaskClient, session: Session, account: Account, localstripe: LocalStripe
) -> None:
    """The PaymentIntent as localstripe really returns it (charge expanded), found through the
    ``accord_payment`` metadata: the checkout crashed before it stored the PaymentIntent's id."""
    payment = new_payment(session, account, 8_800)
    stripe_client = stripe.StripeClient(
        "sk_test_x", base_addresses={"api": localstripe.api_base}, max_network_retries=0
    )
    pi = stripe_client.v1.payment_intents.create(
        params={
            "amount": 8_800,
            "currency": "cny",
            "payment_method": "pm_card_visa",
            "payment_method_types": ["card"],
            "confirm": True,
            "metadata": {"accord_payment": str(payment.id)},
        }
    )
    assert pi.status == "succeeded"
    assert delivered(client, event("payment_intent.succeeded", pi.to_dict())) == "applied"
    row = session.get(Payment, payment.id)
    session.refresh(row)  # type: ignore[arg-type]
    assert row is not None
    assert (row.status, row.payment_intent_id, row.amount_received) == ("succeeded", pi.id, 8_800)
    assert row.charge_id and row.charge_id.startswith("ch_")
    assert final_state(session, payment.id).balances == (98_200, 0, 0)


@pytest.mark.parametrize(
    ("amount", "currency", "kind"),
    [
        (9_999, None, "amount_mismatch"),
        (10_001, None, "amount_mismatch"),
        (10_000, "USD", "currency_mismatch"),
    ],
    ids=["less", "more", "currency"],
)
def test_money_other_than_expected_goes_to_suspense_and_nothing_is_paid(  # noqa: PLR0917  (pytest fixtures)
    client: FlaskClient,
    session: Session,
    account: Account,
    ids: dict[str, str],
    amount: int,
    currency: str | None,
    kind: str,
) -> None:
    payment = new_payment(session, account, 10_000, pi_id=ids["pi"])
    evt = succeeded(payment, ids, amount=amount, currency=currency)
    assert delivered(client, evt) == "suspense"
    state = final_state(session, payment.id)
    assert state.payment_status == "suspense"
    assert state.balances == (100_000, 5_000, 2_000)
    assert state.receipt_number is None
    assert entries_of(session, account.id) == 3
    [item] = suspense_for(session, ids["pi"])
    assert (item.kind, item.amount, item.expected_amount, item.payment_id) == (
        kind,
        amount,
        10_000,
        payment.id,
    )
    assert item.status == "open"
    # A redelivery, or the same PaymentIntent in another event, opens nothing more.
    assert delivered(client, evt) == "duplicate"
    assert delivered(client, succeeded(payment, ids, amount=amount, currency=currency)) == "ignored"
    assert len(suspense_for(session, ids["pi"])) == 1


def test_a_late_failure_after_a_success_changes_nothing(
    client: FlaskClient, session: Session, account: Account, ids: dict[str, str]
) -> None:
    payment = new_payment(session, account, 10_000, pi_id=ids["pi"])
    assert delivered(client, succeeded(payment, ids)) == "applied"
    state = final_state(session, payment.id)
    failed = event(
        "payment_intent.payment_failed", payment_intent(payment, ids["pi"], status="requires_payment_method")
    )
    assert delivered(client, failed) == "ignored"
    canceled = event("payment_intent.canceled", payment_intent(payment, ids["pi"], status="canceled"))
    assert delivered(client, canceled) == "ignored"
    assert final_state(session, payment.id) == state
    assert session.get(StripeEvent, failed["id"]).outcome == "ignored"  # type: ignore[union-attr]


def test_a_failure_is_recorded_and_a_later_success_still_posts(
    client: FlaskClient, session: Session, account: Account, ids: dict[str, str]
) -> None:
    payment = new_payment(session, account, 10_000, pi_id=ids["pi"])
    failed = event(
        "payment_intent.payment_failed", payment_intent(payment, ids["pi"], status="requires_payment_method")
    )
    assert delivered(client, failed) == "applied"
    row = session.get(Payment, payment.id)
    session.refresh(row)  # type: ignore[arg-type]
    assert (row.status, row.failure_code) == ("failed", "insufficient_funds")  # type: ignore[union-attr]
    assert entries_of(session, account.id) == 3
    assert delivered(client, succeeded(payment, ids)) == "applied"
    assert final_state(session, payment.id).balances == (97_000, 0, 0)


def test_an_unknown_payment_intent_goes_to_suspense(
    client: FlaskClient, session: Session, account: Account
) -> None:
    pi = {
        "id": "pi_not_ours_1",
        "object": "payment_intent",
        "amount": 5_000,
        "amount_received": 5_000,
        "currency": "cny",
        "status": "succeeded",
        "metadata": {"accord_payment": "999999999"},
        "latest_charge": "ch_not_ours_1",
    }
    before = entries_of(session, account.id)
    evt = event("payment_intent.succeeded", pi)
    assert delivered(client, evt) == "suspense"
    [item] = suspense_for(session, "pi_not_ours_1")
    assert (item.kind, item.amount, item.currency, item.payment_id) == ("unknown_payment", 5_000, "CNY", None)
    assert item.detail == {"metadata": {"accord_payment": "999999999"}}
    assert session.get(StripeEvent, evt["id"]).outcome == "suspense"  # type: ignore[union-attr]
    assert entries_of(session, account.id) == before
    # A payment already recorded is not matched again through someone else's metadata.
    assert delivered(client, event("payment_intent.succeeded", {**pi, "id": "pi_not_ours_2"})) == "suspense"
    assert (
        session.scalar(
            select(func.count())
            .select_from(SuspenseItem)
            .where(SuspenseItem.stripe_object_id.like("pi_not_ours_%"))
        )
        == 2
    )


# --- Refunds and disputes -------------------------------------------------------------------------


def refunded(ids: dict[str, str], amount: int, payment_amount: int) -> dict[str, Any]:
    return event(
        "charge.refunded",
        charge_refunded(
            ids["charge"], ids["pi"], payment_amount, "CNY", [refund(ids["refund"], amount, "CNY")]
        ),
    )


def disputed(ids: dict[str, str], amount: int, status: str) -> dict[str, Any]:
    kind = (
        "charge.dispute.created"
        if status in ("needs_response", "warning_needs_response")
        else "charge.dispute.closed"
    )
    return event(
        kind,
        dispute(
            ids["dispute"],
            charge_id=ids["charge"],
            pi_id=ids["pi"],
            amount=amount,
            currency="CNY",
            status=status,
        ),
    )


def test_a_refund_seen_before_its_payment_waits_and_applies_when_the_payment_arrives(
    client: FlaskClient, session: Session, account: Account, ids: dict[str, str]
) -> None:
    payment = new_payment(session, account, 10_000, pi_id=ids["pi"])
    assert delivered(client, refunded(ids, 4_000, 10_000)) == "waiting"
    waiting = final_state(session, payment.id)
    assert waiting.balances == (100_000, 5_000, 2_000)
    assert waiting.reversed_amount == 0
    assert delivered(client, succeeded(payment, ids)) == "applied"
    state = final_state(session, payment.id)
    assert state.payment_status == "succeeded"
    assert state.reversed_amount == 4_000
    # 10,000 paid then 4,000 of it reversed in proportion: 6,000 stays paid.
    assert sum(state.balances) == 107_000 - 6_000
    assert ledger.discrepancies(session) == []
    # The same refund reported again posts nothing more.
    assert delivered(client, refunded(ids, 4_000, 10_000)) == "ignored"
    assert final_state(session, payment.id) == state


def test_a_dispute_reverses_the_payment_and_winning_it_restores_it(
    client: FlaskClient, session: Session, account: Account, ids: dict[str, str]
) -> None:
    payment = new_payment(session, account, 10_000, pi_id=ids["pi"])
    assert delivered(client, succeeded(payment, ids)) == "applied"
    paid = final_state(session, payment.id)
    assert delivered(client, disputed(ids, 10_000, "needs_response")) == "applied"
    reversed_ = final_state(session, payment.id)
    assert reversed_.balances == (100_000, 5_000, 2_000)
    assert reversed_.reversed_amount == 10_000
    assert delivered(client, disputed(ids, 10_000, "won")) == "applied"
    won = final_state(session, payment.id)
    assert won.balances == paid.balances
    assert won.reversed_amount == 0
    # A late "created" (or "lost") after the dispute was closed changes nothing.
    assert delivered(client, disputed(ids, 10_000, "needs_response")) == "ignored"
    assert delivered(client, disputed(ids, 10_000, "lost")) == "ignored"
    assert final_state(session, payment.id) == won
    assert ledger.discrepancies(session) == []


def test_a_lost_dispute_stays_reversed(
    client: FlaskClient, session: Session, account: Account, ids: dict[str, str]
) -> None:
    payment = new_payment(session, account, 10_000, pi_id=ids["pi"])
    assert delivered(client, succeeded(payment, ids)) == "applied"
    assert delivered(client, disputed(ids, 10_000, "needs_response")) == "applied"
    opened = final_state(session, payment.id)
    # Closing as lost moves no money: it was withdrawn when the dispute opened.
    assert delivered(client, disputed(ids, 10_000, "lost")) == "applied"
    lost = final_state(session, payment.id)
    assert lost.balances == (100_000, 5_000, 2_000)
    assert lost.reversed_amount == 10_000
    assert lost.entries == opened.entries
    assert ledger.discrepancies(session) == []


def test_a_refund_or_dispute_of_an_unknown_charge_goes_to_suspense(
    client: FlaskClient, session: Session
) -> None:
    ids = new_ids()
    assert delivered(client, refunded(ids, 1_000, 5_000)) == "suspense"
    [item] = suspense_for(session, ids["charge"])
    assert (item.kind, item.amount) == ("unknown_payment", 5_000)
    # A dispute's charge is looked up in Stripe (localstripe here), which does not know it.
    assert delivered(client, disputed(ids, 5_000, "needs_response")) == "suspense"
    [item] = suspense_for(session, ids["dispute"])
    assert (item.kind, item.amount) == ("unknown_payment", 5_000)


# --- Every order of a payment's five events ends in one state -------------------------------------

PAYMENT = 30_000
REFUND = 5_000
DISPUTE = PAYMENT - REFUND  # a chargeback of what was not refunded: together the whole payment


def _five_events(payment: Payment, ids: dict[str, str], outcome: str) -> dict[str, dict[str, Any]]:
    return {
        "succeeded": succeeded(payment, ids),
        "failed": event(
            "payment_intent.payment_failed",
            payment_intent(payment, ids["pi"], status="requires_payment_method"),
        ),
        "refunded": refunded(ids, REFUND, PAYMENT),
        "dispute.created": disputed(ids, DISPUTE, "needs_response"),
        "dispute.closed": disputed(ids, DISPUTE, outcome),
    }


@pytest.mark.parametrize("outcome", ["won", "lost"])
def test_all_120_orders_of_a_payments_five_events_end_in_the_same_state(
    client: FlaskClient, session: Session, outcome: str
) -> None:
    """One payment in a plan, on an account it over-pays (so a credit balance is involved too):
    30,000 against 25,000 owed (2,000 fees, 3,000 interest, 20,000 principal) whose plan has two
    instalments of 12,000 and 13,000. A partial refund of 5,000, and a dispute of the other
    25,000 that is won (the payment ends 5,000 reversed) or lost (the whole payment reversed).

    Every order is delivered inside a SAVEPOINT that is rolled back after, so all 120 start
    from the same rows. Balances, the credit balance, the instalments' paid amounts, the
    payment's reversed amount and the net of the ledger per component must be the same in
    all; the ledger's entries themselves are not (see the assertion at the end)."""
    account = factories.account(session, principal=20_000, interest=3_000, fees=2_000)
    plan = active_plan(session, account, [12_000, 13_000])
    ids = new_ids()
    payment = new_payment(session, account, PAYMENT, pi_id=ids["pi"], plan=plan)
    seeded = last_entry_id(session)
    names = ("succeeded", "failed", "refunded", "dispute.created", "dispute.closed")

    states = {}
    for order in itertools.permutations(names):
        nested = session.begin_nested()
        session.connection()  # the SAVEPOINT is issued lazily: before the requests, not after
        events = _five_events(payment, ids, outcome)  # fresh event ids: nothing is a duplicate
        outcomes = [delivered(client, events[name]) for name in order]
        assert "duplicate" not in outcomes
        states[order] = final_state(session, payment.id, after_entry_id=seeded)
        assert ledger.discrepancies(session) == [], order
        assert ledger.credit_discrepancies(session) == [], order
        nested.rollback()
    assert len(states) == 120

    reference = states[names]
    expected_reversed = REFUND if outcome == "won" else PAYMENT
    assert reference.payment_status == "succeeded"
    assert reference.reversed_amount == expected_reversed
    if outcome == "lost":
        # All of it reversed: the debt is back where it was, the credit gone, no instalment paid.
        assert reference.balances == (20_000, 3_000, 2_000)
        assert (reference.credit_balance, reference.instalments_paid) == (0, (0, 0))
    else:
        # 25,000 of 30,000 stays paid: the debt paid off but for its share of the refund.
        assert 0 < sum(reference.balances) < 25_000
        assert reference.instalments_paid[0] > 0
    for order, state in states.items():
        assert state.balances == reference.balances, order
        assert state.credit_balance == reference.credit_balance == state.credit_entries_total, order
        assert state.net_by_component == reference.net_by_component, order
        assert state.instalments_paid == reference.instalments_paid, order
        assert (state.payment_status, state.reversed_amount) == ("succeeded", expected_reversed), order

    # The entries themselves depend on the order, so their multiset is not compared: a reversal
    # seen after the payment is its own entry (one per refund or dispute) while those seen
    # before are netted into one when the payment arrives, and a dispute won after it opened
    # leaves a reversal and a restoring payment entry. What the design promises is the
    # balances and the net of the entries per component (compared above); while the reversed
    # amount only grows (a lost dispute), the totals per kind and component agree too.
    if outcome == "lost":
        totals = {_totals_by_kind(state) for state in states.values()}
        assert totals == {_totals_by_kind(reference)}


def _totals_by_kind(state: FinalState) -> tuple[tuple[tuple[str, str], int], ...]:
    totals: Counter[tuple[str, str]] = Counter()
    for kind, component, amount in state.entries:
        totals[kind, component] += amount
    return tuple(sorted(totals.items()))
