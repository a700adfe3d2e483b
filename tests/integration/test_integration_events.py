"""Lender events are written by the services in the same transaction as the change they describe:
once per change, never for a refused request, small and free of personal data. ``sequence``
numbers them in commit order, so a reader paging by ``seq`` never steps over one."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from flask import Flask
from sqlalchemy import Engine, make_url, select
from sqlalchemy.orm import Session, sessionmaker

from portal.integrations.seal import seal_key_from_config
from portal.integrations.storage import document_storage_from_config
from portal.integrations.stripe_gateway import client_from_config
from portal.models import Account, Borrower, EventSequence, IntegrationEvent, Plan
from portal.services import agreements, autopay, borrower_contact, integration_events, payments
from portal.services import hardship as hardship_service
from portal.services.hardship import desk_today
from tests import factories, plan_support
from tests.conftest import own_postgres_engine
from tests.stripe_support import LocalStripe, charge_refunded, dispute, event, refund
from tests.webhook_support import active_plan, new_ids, new_payment, payment_intent
from workflows.access import Role
from workflows.errors import DomainError

TODAY = desk_today()
KEY = b"integration-events-test-key-0123"


@pytest.fixture(autouse=True)
def _app_context(app: Flask) -> Iterator[None]:
    """The services run as jobs do, in an application context (messages are worded in one)."""
    with app.app_context():
        yield


def _events(session: Session, account: Account, kind: str | None = None) -> list[IntegrationEvent]:
    stmt = select(IntegrationEvent).where(IntegrationEvent.account_id == account.id)
    if kind:
        stmt = stmt.where(IntegrationEvent.type == kind)
    return list(session.scalars(stmt.order_by(IntegrationEvent.id)))


def _data(found: IntegrationEvent) -> dict[str, Any]:
    """The event's data without what ``emit`` adds to every event."""
    return {k: v for k, v in found.data.items() if k not in ("account_reference", "currency")}


def _assert_small_and_anonymous(found: IntegrationEvent, account: Account, borrower: Borrower) -> None:
    assert found.creditor_id == account.creditor_id
    assert found.data["account_reference"] == account.external_reference
    assert found.data["currency"] == account.currency
    dumped = json.dumps(found.data)  # JSON-safe as it is
    for personal in (borrower.full_name, borrower.phone, borrower.email, borrower.national_id):
        assert personal and personal not in dumped
    assert len(dumped) < 1_000


@pytest.fixture
def account(session: Session) -> Account:
    # 2,000 fees, 5,000 interest, 100,000 principal: the default waterfall pays fees first.
    return factories.account(session, principal=100_000, interest=5_000, fees=2_000, currency="CNY")


def _succeeded(payment: Any, ids: dict[str, str]) -> dict[str, Any]:
    return event("payment_intent.succeeded", payment_intent(payment, ids["pi"], charge_id=ids["charge"]))


# --- Payments --------------------------------------------------------------------------------------


def test_a_payment_is_announced_once_with_its_allocation_even_when_stripe_repeats_itself(
    session: Session, account: Account
) -> None:
    ids = new_ids()
    payment = new_payment(session, account, 10_000, pi_id=ids["pi"])
    evt = _succeeded(payment, ids)
    assert payments.handle_event(session, evt).outcome == "applied"
    assert payments.handle_event(session, evt).outcome == "duplicate"
    # The same PaymentIntent in another event (the catch-up job, the result page) is no news.
    assert payments.handle_event(session, _succeeded(payment, ids)).outcome == "ignored"

    [found] = _events(session, account)
    assert found.type == "payment.succeeded"
    assert _data(found) == {
        "payment_id": payment.id,
        "amount": 10_000,
        "received_on": TODAY.isoformat(),
        "allocation": {"fees": 2_000, "interest": 5_000, "principal": 3_000, "credit": 0},
        "plan_id": None,
        "instalments": [],
        "source": "borrower",
    }
    _assert_small_and_anonymous(found, account, account.borrower)


def test_a_payment_that_pays_the_plan_off_announces_the_payment_then_the_plan(
    session: Session, account: Account
) -> None:
    plan = active_plan(session, account, [4_000, 6_000])
    ids = new_ids()
    payment = new_payment(session, account, 10_000, pi_id=ids["pi"], plan=plan)
    payments.handle_event(session, _succeeded(payment, ids))

    paid, completed = _events(session, account)
    assert (paid.type, completed.type) == ("payment.succeeded", "plan.completed")
    first, second = plan.instalments
    assert paid.data["plan_id"] == plan.id
    assert paid.data["instalments"] == [{"id": first.id, "amount": 4_000}, {"id": second.id, "amount": 6_000}]
    assert _data(completed) == {"plan_id": plan.id, "completed_on": TODAY.isoformat()}


def test_an_autopay_collection_is_announced_as_autopay(
    session: Session, app: Flask, localstripe: LocalStripe
) -> None:
    localstripe.reset()
    client: stripe.StripeClient = client_from_config(app.config)
    plan = plan_support.plan(session, [TODAY, TODAY + dt.timedelta(days=30)])
    plan_support.autopay(session, client, plan)
    assert autopay.run(session, client, TODAY).succeeded == 1
    again = autopay.run(session, client, TODAY)
    assert again.succeeded == 0
    account = session.get(Account, plan.account_id)
    assert account is not None
    [found] = _events(session, account)
    assert found.type == "payment.succeeded"
    assert (found.data["source"], found.data["amount"]) == ("autopay", 30_000)
    assert found.data["instalments"] == [{"id": plan.instalments[0].id, "amount": 30_000}]


def test_refunds_and_disputes_reverse_and_a_won_dispute_reinstates(
    session: Session, account: Account
) -> None:
    ids = new_ids()
    payment = new_payment(session, account, 10_000, pi_id=ids["pi"])
    payments.handle_event(session, _succeeded(payment, ids))
    refunded = charge_refunded(ids["charge"], ids["pi"], 10_000, "CNY", [refund(ids["refund"], 4_000, "CNY")])
    payments.handle_event(session, event("charge.refunded", refunded))
    disputed = {"charge_id": ids["charge"], "pi_id": ids["pi"], "amount": 6_000, "currency": "CNY"}
    payments.handle_event(
        session, event("charge.dispute.created", dispute(ids["dispute"], status="needs_response", **disputed))
    )
    # Stripe sends the refund again: nothing new, nothing announced.
    payments.handle_event(session, event("charge.refunded", refunded))
    payments.handle_event(
        session, event("charge.dispute.closed", dispute(ids["dispute"], status="won", **disputed))
    )

    changes = [(e.type, _data(e)) for e in _events(session, account)[1:]]
    base = {"payment_id": payment.id}
    assert changes == [
        ("payment.reversed", {**base, "amount": 4_000, "reversed_amount": 4_000, "reason": "refund"}),
        ("payment.reversed", {**base, "amount": 6_000, "reversed_amount": 10_000, "reason": "dispute"}),
        ("payment.reinstated", {**base, "amount": 6_000, "reversed_amount": 4_000, "reason": "dispute"}),
    ]


def test_a_refund_seen_before_its_payment_is_announced_after_the_payment(
    session: Session, account: Account
) -> None:
    ids = new_ids()
    payment = new_payment(session, account, 10_000, pi_id=ids["pi"])
    refunded = charge_refunded(ids["charge"], ids["pi"], 10_000, "CNY", [refund(ids["refund"], 2_500, "CNY")])
    assert payments.handle_event(session, event("charge.refunded", refunded)).outcome == "waiting"
    assert _events(session, account) == []
    payments.handle_event(session, _succeeded(payment, ids))
    paid, reversed_ = _events(session, account)
    assert paid.type == "payment.succeeded"
    assert (reversed_.type, reversed_.data["amount"], reversed_.data["reason"]) == (
        "payment.reversed",
        2_500,
        "refund",
    )


# --- Plans -----------------------------------------------------------------------------------------


def _sign(session: Session, app: Flask, *, waive_fees: int) -> Plan:
    """A borrower accepts a pre-approved offer (waiving ``waive_fees``) and signs the agreement."""
    owner = factories.borrower(session, language="en", time_zone="Asia/Shanghai", full_name="Jeff Klein")
    account = factories.account(session, principal=900_000, interest=30_000, fees=10_000, owner=owner)
    account.stage, account.dpd, account.overdue_amount = "mid", 45, 90_000
    session.commit()
    case = factories.hardship_case(session, account)
    offer = factories.offer(session, case)
    if waive_fees:
        offer.terms = {**offer.terms, "waived": {"fees": waive_fees, "interest": 0, "principal": 0}}
        offer.waived_total = waive_fees
        session.commit()
    hardship_service.accept(session, owner, case.id, offer.id)
    agreement = agreements.latest_for_case(session, case.id)
    assert agreement is not None and agreement.status == "ready"
    agreements.consent(session, owner, agreement.id)
    token, message = agreements.send_code(session, owner, agreement.id, key=KEY)
    code = re.search(r"\b(\d{6})\b", message.body)
    assert code is not None
    agreements.verify_code(session, owner, agreement.id, token=token, typed=code.group(1), key=KEY)
    signed = agreements.sign(
        session,
        owner,
        agreement.id,
        typed_name="Jeff Klein",
        agreed=True,
        ip="127.0.0.1",
        user_agent="pytest",
        storage=document_storage_from_config(app.config),
        seal_key=seal_key_from_config(app.config),
    )
    return signed.plan


def test_signing_announces_the_plan_and_the_waiver(session: Session, app: Flask) -> None:
    plan = _sign(session, app, waive_fees=10_000)
    account = session.get(Account, plan.account_id)
    assert account is not None
    signed, conceded = _events(session, account)
    first = plan.instalments[0]
    assert (signed.type, _data(signed)) == (
        "plan.signed",
        {
            "plan_id": plan.id,
            "agreement_id": plan.agreement_id,
            "instalments": 3,
            "total": 90_000,
            "first_due_on": first.due_on.isoformat(),
            "first_amount": 30_000,
        },
    )
    assert (conceded.type, _data(conceded)) == (
        "concession.granted",
        {
            "plan_id": plan.id,
            "agreement_id": plan.agreement_id,
            "waived": {"fees": 10_000},
            "total": 10_000,
            "reliefs": ["instalment_plan"],
        },
    )
    for found in (signed, conceded):
        _assert_small_and_anonymous(found, account, account.borrower)


def test_a_plan_without_a_waiver_announces_no_concession(session: Session, app: Flask) -> None:
    plan = _sign(session, app, waive_fees=0)
    account = session.get(Account, plan.account_id)
    assert account is not None
    assert [e.type for e in _events(session, account)] == ["plan.signed"]


def test_a_broken_plan_is_announced_once_with_its_reason(session: Session) -> None:
    plan = plan_support.plan(
        session,
        [TODAY - dt.timedelta(days=20), TODAY - dt.timedelta(days=10), TODAY + dt.timedelta(days=10)],
        grace_days=5,
    )
    assert autopay.check_plans(session, TODAY).broken == 1
    assert autopay.check_plans(session, TODAY + dt.timedelta(days=1)).broken == 0
    account = session.get(Account, plan.account_id)
    assert account is not None
    [found] = _events(session, account)
    assert (found.type, _data(found)) == (
        "plan.broken",
        {
            "plan_id": plan.id,
            "reason": "consecutive_misses",
            "broken_on": TODAY.isoformat(),
            "outstanding": 90_000,
        },
    )


# --- Disputes of the debt --------------------------------------------------------------------------


def test_a_dispute_opened_and_withdrawn_is_announced_and_a_refused_one_is_not(
    session: Session, account: Account
) -> None:
    borrower = account.borrower
    opened = borrower_contact.open_dispute(
        session, borrower, account.id, reason="amount_wrong", detail="The fee is wrong."
    )
    with pytest.raises(DomainError) as refused:
        borrower_contact.open_dispute(session, borrower, account.id, reason="not_mine", detail="Again.")
    assert refused.value.code == "dispute_already_open"
    borrower_contact.withdraw_dispute(session, borrower, account.id)

    found = _events(session, account)
    assert [(e.type, _data(e)) for e in found] == [
        ("dispute.opened", {"dispute_id": opened.id, "reason": "amount_wrong"}),
        ("dispute.closed", {"dispute_id": opened.id, "reason": "amount_wrong", "outcome": "withdrawn"}),
    ]
    for each in found:
        _assert_small_and_anonymous(each, account, borrower)


def test_a_dispute_decided_by_staff_is_announced_with_its_outcome_not_the_note(
    session: Session, account: Account
) -> None:
    supervisor = factories.staff(session, role=Role.SUPERVISOR)
    opened = borrower_contact.open_dispute(
        session, account.borrower, account.id, reason="already_paid", detail="I paid it in March."
    )
    borrower_contact.resolve_dispute(
        session, supervisor, opened.id, outcome="rejected", note="Payment of March was for another loan."
    )
    closed = _events(session, account, "dispute.closed")
    assert [_data(e) for e in closed] == [
        {"dispute_id": opened.id, "reason": "already_paid", "outcome": "rejected"}
    ]
    assert "March" not in json.dumps(closed[0].data)


# --- Numbering in commit order ---------------------------------------------------------------------


def test_a_reader_paging_by_seq_gets_every_event_once_in_order(session: Session, account: Account) -> None:
    emitted: list[int] = []
    read: list[int] = []
    cursor = 0
    for round_size in (3, 0, 1, 5, 2):
        for n in range(round_size):
            found = integration_events.emit(session, account, "dispute.opened", {"n": n})
            session.flush()
            emitted.append(found.id)
        session.commit()
        integration_events.sequence(session)
        while page := integration_events.since(session, account.creditor_id, cursor, 2):
            read += [e.id for e in page]
            cursor = page[-1].seq or 0
    assert read == emitted
    seqs = [e.seq for e in _events(session, account)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert integration_events.sequence(session) == 0


@pytest.fixture(scope="module")
def own_engine(database_url: str) -> Iterator[Engine]:
    """A database of its own on PostgreSQL, where transactions commit for real on their own
    connections (the test transaction is one connection)."""
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("transactions committing side by side need PostgreSQL; SQLite runs writers one at a time")
    with own_postgres_engine(database_url, "events") as engine:
        yield engine


def test_an_event_committed_late_is_numbered_after_those_already_read(own_engine: Engine) -> None:
    factory = sessionmaker(bind=own_engine, expire_on_commit=False)
    with factory() as setup, factory() as early, factory() as late, factory() as reader:
        account = factories.account(setup)
        # The lower id commits last.
        slow = integration_events.emit(early, early.get(Account, account.id), "dispute.opened", {"n": 1})  # type: ignore[arg-type]
        early.flush()
        quick = integration_events.emit(late, late.get(Account, account.id), "dispute.opened", {"n": 2})  # type: ignore[arg-type]
        late.flush()
        assert slow.id < quick.id
        late.commit()
        integration_events.sequence(reader)
        first = integration_events.since(reader, account.creditor_id, 0, 100)
        assert [e.id for e in first] == [quick.id]
        cursor = first[-1].seq or 0
        reader.rollback()

        early.commit()
        integration_events.sequence(reader)
        second = integration_events.since(reader, account.creditor_id, cursor, 100)
        assert [e.id for e in second] == [slow.id]
        assert (second[0].seq or 0) > cursor


def test_sequencers_running_side_by_side_hand_out_each_number_once(own_engine: Engine) -> None:
    factory = sessionmaker(bind=own_engine, expire_on_commit=False)
    with factory() as setup:
        account = factories.account(setup)
        account_id, creditor_id = account.id, account.creditor_id
        integration_events.sequence(setup)  # what an earlier test left unnumbered
        before = int(setup.scalar(select(EventSequence.last_seq)) or 0)
    workers, each = 4, 25
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with factory() as own:
                mine = own.get(Account, account_id)
                assert mine is not None
                barrier.wait()
                for n in range(each):
                    integration_events.emit(own, mine, "dispute.opened", {"n": n})
                    own.commit()
                    integration_events.sequence(own)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    with factory() as check:
        integration_events.sequence(check)
        seqs = sorted(
            check.scalars(
                select(IntegrationEvent.seq).where(IntegrationEvent.creditor_id == creditor_id)
            ).all()
        )
    assert seqs == list(range(before + 1, before + workers * each + 1))
