"""Autopay against a real localstripe: a due instalment is collected once, whatever runs twice or
crashes; a decline fails, tells the borrower and retries on the policy's days. The daily plan
check marks instalments missed after the grace days and breaks plans by policy."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import stripe
from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from portal.integrations.stripe_gateway import client_from_config
from portal.models import (
    Account,
    AuditEvent,
    AutopayMandate,
    LedgerEntry,
    OutboundMessage,
    Payment,
    Plan,
    PlanInstalment,
)
from portal.services import autopay, ledger
from portal.services.hardship import desk_today
from tests import plan_support
from tests.stripe_support import LocalStripe

TODAY = desk_today()
LONG_AGO = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def client(app: Flask, localstripe: LocalStripe) -> Iterator[stripe.StripeClient]:
    """A Stripe client on an empty localstripe (payment ids repeat between rolled-back tests),
    used inside an application context as the jobs and commands are."""
    localstripe.reset()
    with app.app_context():
        yield client_from_config(app.config)


@pytest.fixture(autouse=True)
def _app_context(app: Flask) -> Iterator[None]:
    with app.app_context():
        yield


def _intents_for(client: stripe.StripeClient, payment_id: int) -> list[stripe.PaymentIntent]:
    found = []
    starting_after = None
    while True:
        params: dict[str, object] = {"limit": 100}
        if starting_after:
            params["starting_after"] = starting_after
        page = client.v1.payment_intents.list(params=params)  # type: ignore[arg-type]
        found += [pi for pi in page.data if pi.to_dict()["metadata"].get("accord_payment") == str(payment_id)]
        if not page.has_more:
            return found
        starting_after = page.data[-1].id


def _payments(session: Session, plan: Plan) -> list[Payment]:
    session.expire_all()
    return list(session.scalars(select(Payment).where(Payment.plan_id == plan.id).order_by(Payment.id)))


def _messages(session: Session, purpose: str) -> list[OutboundMessage]:
    return list(session.scalars(select(OutboundMessage).where(OutboundMessage.purpose == purpose)))


def test_autopay_collects_a_due_instalment_into_the_ledger_with_a_receipt(
    session: Session, client: stripe.StripeClient
) -> None:
    plan = plan_support.plan(session, [TODAY, TODAY + dt.timedelta(days=30)])
    plan_support.autopay(session, client, plan)
    account = session.get(Account, plan.account_id)
    assert account is not None
    before = account.total_balance

    report = autopay.run(session, client, TODAY)

    assert (report.succeeded, report.failed) == (1, 0)
    [payment] = _payments(session, plan)
    assert payment.status == "succeeded" and payment.origin == "autopay" and payment.purpose == "autopay"
    assert payment.idempotency_key == f"autopay:{plan.instalments[0].id}:1"
    assert payment.amount == 30_000 and payment.receipt_number
    [intent] = _intents_for(client, payment.id)
    assert intent.id == payment.payment_intent_id and intent.status == "succeeded"
    assert intent.metadata["instalment"] == str(plan.instalments[0].id)
    first, second = session.scalars(
        select(PlanInstalment).where(PlanInstalment.plan_id == plan.id).order_by(PlanInstalment.number)
    )
    assert (first.status, first.paid_amount) == ("paid", 30_000)
    assert (second.status, second.paid_amount) == ("due", 0)
    account = session.get(Account, plan.account_id)
    assert account is not None and account.total_balance == before - 30_000
    paid = session.scalar(
        select(func.sum(LedgerEntry.amount)).where(
            LedgerEntry.cause == f"payment:{payment.payment_intent_id}"
        )
    )
    assert paid == -30_000
    assert not ledger.discrepancies(session)
    [receipt] = _messages(session, "payment_receipt")
    assert payment.receipt_number in receipt.body


def test_running_autopay_twice_the_same_day_charges_once(
    session: Session, client: stripe.StripeClient
) -> None:
    plan = plan_support.plan(session, [TODAY])
    plan_support.autopay(session, client, plan)
    autopay.run(session, client, TODAY)
    again = autopay.run(session, client, TODAY)
    assert (again.succeeded, again.failed, again.recovered, again.skipped) == (0, 0, 0, 0)
    [payment] = _payments(session, plan)
    assert len(_intents_for(client, payment.id)) == 1
    # A later day has nothing left to collect either.
    autopay.run(session, client, TODAY + dt.timedelta(days=3))
    assert len(_payments(session, plan)) == 1


def test_an_instalment_not_due_yet_or_without_consent_is_not_charged(
    session: Session, client: stripe.StripeClient
) -> None:
    later = plan_support.plan(session, [TODAY + dt.timedelta(days=1)])
    plan_support.autopay(session, client, later)
    revoked = plan_support.plan(session, [TODAY])
    mandate = plan_support.autopay(session, client, revoked)
    mandate.revoked_at = dt.datetime.now(dt.UTC)
    unconsented = plan_support.plan(session, [TODAY])
    session.commit()
    report = autopay.run(session, client, TODAY)
    assert report.succeeded == report.failed == 0
    assert not any(_payments(session, p) for p in (later, revoked, unconsented))


def test_a_declined_card_fails_tells_the_borrower_and_retries_on_the_policy_days(
    session: Session, client: stripe.StripeClient
) -> None:
    plan = plan_support.plan(session, [TODAY])
    plan_support.autopay(session, client, plan, plan_support.DECLINED_AT_CHARGE)
    account = session.get(Account, plan.account_id)
    assert account is not None
    before = account.total_balance

    report = autopay.run(session, client, TODAY)
    assert (report.succeeded, report.failed) == (0, 1)
    [payment] = _payments(session, plan)
    assert payment.status == "failed" and payment.failure_code == "card_declined"
    assert payment.payment_intent_id is not None  # recorded, so a late webhook finds it
    [notice] = _messages(session, "autopay_declined")
    assert f"/accounts/{account.id}" in notice.body
    assert "30" not in notice.body.replace(str(account.id), "")  # no amount on a lock screen
    assert account.creditor.name not in notice.body

    # The same day again: nothing new. The policy's retries (1, 3 and 7 days) are tested below.
    autopay.run(session, client, TODAY)
    assert len(_payments(session, plan)) == 1 and len(_messages(session, "autopay_declined")) == 1
    session.expire_all()
    account = session.get(Account, plan.account_id)
    assert account is not None and account.total_balance == before


def test_retries_fall_on_the_policy_days(session: Session, client: stripe.StripeClient) -> None:
    plan = plan_support.plan(session, [TODAY])
    plan_support.autopay(session, client, plan, plan_support.DECLINED_AT_CHARGE)
    made_on: dict[int, int] = {}
    for offset in range(0, 10):
        for _twice in range(2):
            autopay.run(session, client, TODAY + dt.timedelta(days=offset))
        for p in _payments(session, plan):
            made_on.setdefault(p.attempt, offset)
    assert made_on == {1: 0, 2: 1, 3: 3, 4: 7}
    payments = _payments(session, plan)
    assert all(p.status == "failed" for p in payments)
    assert len(_messages(session, "autopay_declined")) == 4


def test_a_missed_run_keeps_to_the_schedule_instead_of_catching_up_daily(
    session: Session, client: stripe.StripeClient
) -> None:
    plan = plan_support.plan(session, [TODAY])
    plan_support.autopay(session, client, plan, plan_support.DECLINED_AT_CHARGE)
    autopay.run(session, client, TODAY + dt.timedelta(days=4))  # first run since the due date
    autopay.run(session, client, TODAY + dt.timedelta(days=5))
    assert [p.attempt for p in _payments(session, plan)] == [3]


def _crashed_row(session: Session, plan: Plan) -> Payment:
    """What a run leaves when it dies after committing the row and before storing the
    PaymentIntent's id: a payment in submitting, last touched long ago."""
    instalment = plan.instalments[0]
    account = session.get(Account, plan.account_id)
    assert account is not None
    mandate = session.scalar(select(AutopayMandate).where(AutopayMandate.plan_id == plan.id))
    assert mandate is not None
    payment = Payment(
        account_id=account.id,
        borrower_id=account.borrower_id,
        plan_id=plan.id,
        instalment_id=instalment.id,
        purpose="autopay",
        origin="autopay",
        attempt=1,
        amount=instalment.amount,
        currency=plan.currency,
        idempotency_key=f"autopay:{instalment.id}:1",
        status="submitting",
        saved_card_id=mandate.saved_card_id,
    )
    session.add(payment)
    session.commit()
    session.execute(update(Payment).where(Payment.id == payment.id).values(updated_at=LONG_AGO))
    session.commit()
    return payment


def test_a_crash_after_stripe_charged_adopts_the_charge_instead_of_charging_again(
    session: Session, client: stripe.StripeClient
) -> None:
    plan = plan_support.plan(session, [TODAY])
    mandate = plan_support.autopay(session, client, plan)
    payment = _crashed_row(session, plan)
    # The charge went through before the crash; localstripe would not dedupe a second create.
    for n in range(3):  # other PaymentIntents around it
        client.v1.payment_intents.create(params={"amount": 100 + n, "currency": "cny"})
    customer = session.scalar(select(plan_support.StripeCustomer.customer_id))
    charged = client.v1.payment_intents.create(
        params={
            "amount": payment.amount,
            "currency": "cny",
            "customer": customer,
            "payment_method": mandate.saved_card.payment_method_id,
            "payment_method_types": ["card"],
            "off_session": True,
            "confirm": True,
            "metadata": {
                "accord_payment": str(payment.id),
                "account": str(payment.account_id),
                "instalment": str(payment.instalment_id),
                "plan": str(plan.id),
                "attempt": "1",
            },
        }
    )

    report = autopay.run(session, client, TODAY)

    assert (report.recovered, report.adopted, report.succeeded) == (1, 1, 1)
    [row] = _payments(session, plan)
    assert row.id == payment.id and row.status == "succeeded" and row.payment_intent_id == charged.id
    assert [pi.id for pi in _intents_for(client, payment.id)] == [charged.id]
    assert session.scalar(
        select(func.count()).select_from(LedgerEntry).where(LedgerEntry.cause == f"payment:{charged.id}")
    )
    assert autopay.run(session, client, TODAY).recovered == 0
    assert len(_intents_for(client, payment.id)) == 1


def test_a_crash_before_stripe_was_called_charges_once_with_the_same_key(
    session: Session, client: stripe.StripeClient
) -> None:
    plan = plan_support.plan(session, [TODAY])
    plan_support.autopay(session, client, plan)
    payment = _crashed_row(session, plan)
    report = autopay.run(session, client, TODAY)
    assert (report.recovered, report.adopted, report.succeeded) == (1, 0, 1)
    [row] = _payments(session, plan)
    assert row.id == payment.id and row.status == "succeeded"
    assert len(_intents_for(client, payment.id)) == 1
    autopay.run(session, client, TODAY)
    assert len(_intents_for(client, payment.id)) == 1


def test_a_charge_still_being_submitted_by_another_run_is_left_alone(
    session: Session, client: stripe.StripeClient
) -> None:
    plan = plan_support.plan(session, [TODAY])
    plan_support.autopay(session, client, plan)
    payment = _crashed_row(session, plan)
    session.execute(
        update(Payment).where(Payment.id == payment.id).values(updated_at=dt.datetime.now(dt.UTC))
    )
    session.commit()
    report = autopay.run(session, client, TODAY)
    assert (report.recovered, report.succeeded, report.skipped) == (0, 0, 0)
    [row] = _payments(session, plan)
    assert row.status == "submitting" and not _intents_for(client, payment.id)


# --- Missed instalments and broken plans ---------------------------------------------------------


def _instalments(session: Session, plan: Plan) -> list[PlanInstalment]:
    session.expire_all()
    return list(
        session.scalars(
            select(PlanInstalment).where(PlanInstalment.plan_id == plan.id).order_by(PlanInstalment.number)
        )
    )


def test_an_instalment_is_missed_only_after_the_grace_days_and_stays_owed(session: Session) -> None:
    plan = plan_support.plan(
        session, [TODAY - dt.timedelta(days=4), TODAY - dt.timedelta(days=3)], grace_days=3
    )
    report = autopay.check_plans(session, TODAY)
    assert report.missed == 1 and report.broken == 0
    first, second = _instalments(session, plan)
    assert (first.status, first.missed_on, first.outstanding) == ("missed", TODAY, 30_000)
    assert second.status == "due"
    assert session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == "instalment.missed", AuditEvent.object_id == str(first.id))
    )
    assert autopay.check_plans(session, TODAY).missed == 0


def test_two_consecutive_misses_break_the_plan_and_the_borrower_is_told(session: Session) -> None:
    plan = plan_support.plan(
        session,
        [TODAY - dt.timedelta(days=20), TODAY - dt.timedelta(days=10), TODAY + dt.timedelta(days=10)],
        grace_days=5,
    )
    report = autopay.check_plans(session, TODAY)
    assert (report.missed, report.broken, report.broken_plan_ids) == (2, 1, [plan.id])
    session.expire_all()
    broken = session.get(Plan, plan.id)
    assert broken is not None
    assert (broken.status, broken.broken_on, broken.break_reason) == ("broken", TODAY, "consecutive_misses")
    assert session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == "plan.broken", AuditEvent.object_id == str(plan.id))
    )
    [notice] = _messages(session, "plan_broken")
    assert "plan" in notice.body and "30" not in notice.body
    again = autopay.check_plans(session, TODAY + dt.timedelta(days=1))
    assert again.broken == 0 and len(_messages(session, "plan_broken")) == 1


def test_one_instalment_missed_more_than_thirty_days_breaks_the_plan(session: Session) -> None:
    plan = plan_support.plan(
        session, [TODAY - dt.timedelta(days=31), TODAY + dt.timedelta(days=1)], grace_days=5
    )
    one_day_less = autopay.check_plans(session, TODAY - dt.timedelta(days=1))
    assert one_day_less.missed == 1 and one_day_less.broken == 0
    report = autopay.check_plans(session, TODAY)
    assert report.broken == 1
    session.expire_all()
    broken = session.get(Plan, plan.id)
    assert broken is not None and broken.break_reason == "long_overdue"


def test_a_missed_instalment_paid_late_does_not_break_the_plan(session: Session) -> None:
    plan = plan_support.plan(
        session, [TODAY - dt.timedelta(days=20), TODAY - dt.timedelta(days=10)], grace_days=5
    )
    first = plan.instalments[0]
    first.paid_amount, first.status = first.amount, "paid"
    session.commit()
    report = autopay.check_plans(session, TODAY)
    assert (report.missed, report.broken) == (1, 0)
    assert session.get(Plan, plan.id).status == "active"  # type: ignore[union-attr]


def test_a_broken_plan_is_not_charged_by_autopay(session: Session, client: stripe.StripeClient) -> None:
    plan = plan_support.plan(
        session, [TODAY - dt.timedelta(days=20), TODAY - dt.timedelta(days=10)], grace_days=5
    )
    plan_support.autopay(session, client, plan)
    autopay.check_plans(session, TODAY)
    report = autopay.run(session, client, TODAY)
    assert report.succeeded == 0 and not _payments(session, plan)


def test_the_commands_run_autopay_and_the_plan_check_for_a_given_day(
    app: Flask, session: Session, client: stripe.StripeClient
) -> None:
    plan = plan_support.plan(session, [TODAY - dt.timedelta(days=10), TODAY], grace_days=3)
    plan_support.autopay(session, client, plan)
    runner = app.test_cli_runner()
    checked = runner.invoke(args=["payments", "check-plans", "--date", TODAY.isoformat()])
    assert checked.exit_code == 0, checked.output
    assert "1 instalment(s) marked missed, 0 plan(s) broken" in checked.output
    charged = runner.invoke(args=["payments", "autopay", "--date", TODAY.isoformat()])
    assert charged.exit_code == 0, charged.output
    assert "2 collected" in charged.output
    # Oldest first: the missed one on its last retry (day 7), then the one due today.
    payments = _payments(session, plan)
    assert [(p.instalment_id, p.attempt) for p in payments] == [
        (i.id, n) for i, n in zip(plan.instalments, (4, 1), strict=True)
    ]
    assert "0 collected" in runner.invoke(args=["payments", "autopay", "--date", TODAY.isoformat()]).output
    assert len(_payments(session, plan)) == 2


def test_a_later_instalment_waits_while_an_older_one_is_declined(
    session: Session, client: stripe.StripeClient
) -> None:
    plan = plan_support.plan(session, [TODAY - dt.timedelta(days=1), TODAY])
    plan_support.autopay(session, client, plan, plan_support.DECLINED_AT_CHARGE)
    autopay.run(session, client, TODAY)
    autopay.run(session, client, TODAY)
    assert [(p.instalment_id, p.attempt) for p in _payments(session, plan)] == [(plan.instalments[0].id, 2)]
