"""Plans in force and saved cards for the payment tests: a signed agreement's plan inserted as the
agreement service leaves it, and a card saved at localstripe the way the portal saves one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import stripe
from sqlalchemy.orm import Session

from portal.models import (
    Account,
    Agreement,
    AutopayMandate,
    Plan,
    PlanInstalment,
    SavedCard,
    StripeCustomer,
)
from tests import factories

VISA = "4242424242424242"
DECLINED_AT_CHARGE = "4000000000000341"


def plan(
    session: Session,
    due: Sequence[dt.date],
    *,
    amount: int = 30_000,
    amounts: Sequence[int] | None = None,
    grace_days: int = 5,
    account: Account | None = None,
    language: str = "en",
) -> Plan:
    """An active plan of ``len(due)`` instalments of ``amount`` (or of ``amounts``, one per due
    date) on a new account (or ``account``), as signing an agreement leaves it."""
    each = list(amounts) if amounts is not None else [amount] * len(due)
    assert len(each) == len(due), "one amount per due date"
    if account is None:
        owner = factories.borrower(session, language=language)
        account = factories.account(session, principal=900_000, interest=30_000, fees=10_000, owner=owner)
    case = factories.hardship_case(session, account, state="active")
    offer = factories.offer(session, case)
    agreement = Agreement(
        hardship_case_id=case.id,
        offer_id=offer.id,
        borrower_id=account.borrower_id,
        account_id=account.id,
        status="signed",
        language=language,
        template_version="test",
        facts={},
        expires_on=due[0],
    )
    session.add(agreement)
    session.flush()
    row = Plan(
        account_id=account.id,
        hardship_case_id=case.id,
        agreement_id=agreement.id,
        currency=account.currency,
        total=sum(each),
        grace_days=grace_days,
    )
    session.add(row)
    session.flush()
    for number, (due_on, value) in enumerate(zip(due, each, strict=True), start=1):
        session.add(PlanInstalment(plan_id=row.id, number=number, due_on=due_on, amount=value))
    session.commit()
    session.refresh(row)
    return row


def saved_card(
    session: Session, client: stripe.StripeClient, borrower_id: int, number: str = VISA
) -> SavedCard:
    """A card created and attached at Stripe for the borrower's Stripe customer (made if needed)."""
    customer = session.get(StripeCustomer, borrower_id)
    if customer is None:
        created = client.v1.customers.create(params={"metadata": {"accord_borrower": str(borrower_id)}})
        customer = StripeCustomer(borrower_id=borrower_id, customer_id=created.id)
        session.add(customer)
    method = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"},  # type: ignore[typeddict-item]
        }
    )
    client.v1.payment_methods.attach(method.id, params={"customer": customer.customer_id})
    card = SavedCard(
        borrower_id=borrower_id,
        payment_method_id=method.id,
        brand="visa",
        last4=number[-4:],
        exp_month=12,
        exp_year=2030,
    )
    session.add(card)
    session.commit()
    return card


def autopay(
    session: Session, client: stripe.StripeClient, plan_row: Plan, number: str = VISA
) -> AutopayMandate:
    """The borrower's consent to autopay the plan from a newly saved card."""
    account = session.get(Account, plan_row.account_id)
    assert account is not None
    card = saved_card(session, client, account.borrower_id, number)
    mandate = AutopayMandate(
        plan_id=plan_row.id,
        saved_card_id=card.id,
        consent_version="test",
        consent_text="I agree that Accord charges this card for each instalment when it is due.",
    )
    session.add(mandate)
    session.commit()
    return mandate
