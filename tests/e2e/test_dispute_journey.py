"""A borrower disputes a debt on a 360 px phone, with a photo of a receipt: the dispute shows on
the account page, and from then on the contact rules refuse collection contact about that account
(a call, and the text message the daily run asked for). The contact preferences and the "stop
contacting me" pages pass the same checks. Every page passes axe-core and fits the phone."""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Callable

import pytest
from PIL import Image
from playwright.sync_api import FilePayload, Page, expect
from sqlalchemy import select

from portal.extensions import db
from portal.models import Account, CollectionAction, DebtDispute
from portal.services import collection_messages
from portal.services import contact as contact_service
from tests.e2e.conftest import BorrowerPool, DemoBorrower, LiveServer, NewContext, Outbox
from tests.e2e.test_borrower_journey import EN, enter_code, identify
from workflows.contact_policy import Channel, RefusalCode

pytestmark = pytest.mark.e2e

Check = Callable[[Page, str], None]


def _sign_in(page: Page, outbox: Outbox, borrower: DemoBorrower) -> None:
    before = outbox.last_id()
    identify(page, EN, borrower.reference, borrower.date_of_birth)
    enter_code(page, EN, outbox.signin_code(borrower.phone, after_id=before))
    expect(page).to_have_url(re.compile(r"/home$"))


def _receipt() -> FilePayload:
    """A photo of a bank receipt, as a phone's file picker hands it over."""
    buffer = io.BytesIO()
    Image.new("RGB", (320, 200), (245, 245, 235)).save(buffer, format="JPEG")
    return {"name": "bank-receipt.jpg", "mimeType": "image/jpeg", "buffer": buffer.getvalue()}


def test_a_borrower_disputes_a_debt_on_a_small_phone_and_contact_stops(
    new_context: NewContext,
    borrowers: BorrowerPool,
    outbox: Outbox,
    live_server: LiveServer,
    assert_accessible: Check,
) -> None:
    page = new_context(
        locale="en-US", accept_language="en", viewport={"width": 360, "height": 780}
    ).new_page()
    borrower = borrowers.take("en")
    account = borrower.accounts[0]
    _sign_in(page, outbox, borrower)

    card = page.locator("section.account-card").filter(
        has=page.get_by_role("heading", level=2, name=re.compile(re.escape(account.external_reference)))
    )
    card.get_by_role("link", name="Details and statement").click()
    expect(page).to_have_url(re.compile(rf"/accounts/{account.id}$"))
    page.get_by_role("link", name="Dispute this debt").click()
    expect(page).to_have_url(re.compile(rf"/accounts/{account.id}/dispute$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Dispute this debt")
    assert_accessible(page, "dispute-1-form")

    # Sent empty first: the reason and the description are asked for, and nothing is recorded.
    page.get_by_role("button", name="Send my dispute").click()
    expect(page.locator("#reason-error")).to_have_text("Choose why you dispute this debt.")
    expect(page.locator("#detail-error")).to_be_visible()
    assert_accessible(page, "dispute-2-refused")

    page.get_by_label("I have already paid it").check()
    page.get_by_label("Tell us what is wrong").fill(
        "I paid the overdue amount by bank transfer on 2 November."
    )
    page.get_by_label("Documents (optional)").set_input_files(_receipt())
    page.get_by_role("button", name="Send my dispute").click()

    expect(page).to_have_url(re.compile(rf"/accounts/{account.id}$"))
    expect(page.locator(".flash-success")).to_contain_text("Your dispute is recorded.")
    status = page.locator("section.dispute-status")
    expect(status).to_contain_text("Open: our team is looking into it")
    expect(status).to_contain_text("I have already paid it")
    expect(status.get_by_role("button", name="Withdraw my dispute")).to_be_visible()
    assert_accessible(page, "dispute-3-account")

    assert live_server.app is not None
    with live_server.app.app_context(), db.session_scope() as session:
        [dispute] = session.scalars(select(DebtDispute).where(DebtDispute.account_id == account.id)).all()
        assert (dispute.status, dispute.reason, len(dispute.evidence_keys)) == ("open", "already_paid", 1)
        row = session.get(Account, account.id)
        assert row is not None
        # Whatever the hour, the dispute is among the reasons (a refusal lists every rule broken).
        decision = contact_service.check(session, row, Channel.CALL, address=row.borrower.phone)
        assert not decision.allowed
        assert RefusalCode.DISPUTE_OPEN in decision.codes
        # A text message the daily run asked for is blocked, not sent.
        action = CollectionAction(
            account_id=row.id,
            run_date=dt.date.today(),
            rule_key="e2e:dispute:sms",
            kind="sms",
            channel="sms",
            template="overdue_sms",
            stage=row.stage,
        )
        session.add(action)
        session.commit()
        report = collection_messages.dispatch(session)
        session.refresh(action)
        assert (action.status, action.blocked_reason) == ("blocked", "dispute_open")
        assert all(m.recipient != row.borrower.phone for m in report.messages)


def test_contact_preferences_and_the_stop_page_on_a_small_phone(
    new_context: NewContext,
    borrowers: BorrowerPool,
    outbox: Outbox,
    assert_accessible: Check,
) -> None:
    page = new_context(
        locale="en-US", accept_language="en", viewport={"width": 360, "height": 780}
    ).new_page()
    _sign_in(page, outbox, borrowers.take("en"))
    page.get_by_role("link", name="Contact preferences").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Contact preferences")
    assert_accessible(page, "contact-1-preferences")

    page.get_by_label("Text messages").check()
    page.get_by_role("button", name="Save my preferences").click()
    expect(page.locator(".flash-success")).to_have_text("Your contact preferences are saved.")
    expect(page.get_by_label("Text messages")).to_be_checked()

    page.get_by_role("link", name="Ask us to stop contacting you").click()
    expect(page.get_by_text("The debt remains.")).to_be_visible()
    assert_accessible(page, "contact-2-stop")
    page.get_by_label("I understand, and I want you to stop contacting me").check()
    page.get_by_role("button", name="Stop contacting me").click()
    expect(page.locator(".flash-success")).to_contain_text("We will stop contacting you")
    expect(page.get_by_role("heading", level=2, name="You asked us to stop contacting you")).to_be_visible()
    assert_accessible(page, "contact-3-stopped")
