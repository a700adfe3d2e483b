"""The negotiation desk in a desktop Chromium, and the borrower's answer on a phone: an agent
claims a case from the queue and sends a counter-offer built in the editor, the borrower accepts
it at 390 px; an agent approves a proposal above their authority and a supervisor gives the
second approval. Every staff page on the way passes axe-core."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pyotp
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal.extensions import db
from portal.models import Account, Borrower, HardshipCase, Offer, StaffUser
from portal.services import negotiation_desk as desk
from portal.services.demo import DEMO_PASSWORD
from portal.services.staff import hash_password
from tests.e2e.conftest import LiveServer, NewContext, Outbox
from tests.e2e.test_borrower_journey import EN, enter_code, identify
from workflows.access import Role
from workflows.negotiation import CaseState

pytestmark = pytest.mark.e2e

Check = Callable[[Page, str], None]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def _desk_user(server: LiveServer, role: Role, name: str) -> tuple[str, str]:
    """A staff member of their own for this test (a TOTP code is accepted once per 30 s step,
    and the staff journeys sign the demo users in): (e-mail, TOTP secret)."""
    assert server.app is not None
    email = f"{name}@e2e.accord.example"
    secret = pyotp.random_base32()
    with server.app.app_context(), db.session_scope() as session:
        if session.scalar(select(StaffUser).where(StaffUser.email == email)) is None:
            session.add(
                StaffUser(
                    email=email,
                    full_name=name.title(),
                    role=role.value,
                    password_hash=hash_password(DEMO_PASSWORD),
                    totp_secret=secret,
                    totp_confirmed_at=dt.datetime.now(dt.UTC),
                )
            )
            session.commit()
    return email, secret


def staff_sign_in(page: Page, email: str, secret: str) -> None:
    page.goto("/staff/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("6-digit code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/staff/$"))


def _waiting_case(server: LiveServer, *, above_agent: bool) -> int:
    """A demo case waiting for review whose proposal is (or is not) above an agent's authority."""
    assert server.app is not None
    with server.app.app_context(), db.session_scope() as session:
        policy_problems: dict[int, list[str]] = {}
        for case in session.scalars(
            select(HardshipCase)
            .where(HardshipCase.state == CaseState.IN_REVIEW.value)
            .order_by(HardshipCase.id)
        ):
            proposal = next(o for o in reversed(case.offers) if o.origin == "borrower")
            agent = StaffUser(role=Role.AGENT.value)
            from portal.services import policy as policy_service

            policy = policy_service.current(session, desk.desk_today())
            policy_problems[case.id] = desk.authority_for(agent, proposal, case.account, policy)
            if bool(policy_problems[case.id]) == above_agent:
                return case.id
    pytest.fail(
        f"no demo case {'above' if above_agent else 'within'} an agent's authority: {policy_problems}"
    )


def test_an_agent_counters_and_the_borrower_accepts_on_a_phone(
    new_context: NewContext, live_server: LiveServer, outbox: Outbox, assert_accessible: Check
) -> None:
    email, secret = _desk_user(live_server, Role.AGENT, "counter-agent")
    case_id = _waiting_case(live_server, above_agent=False)
    page = new_context(viewport=DESKTOP).new_page()
    staff_sign_in(page, email, secret)

    page.get_by_role("link", name="Review queue").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Review queue")
    assert_accessible(page, "desk-1-queue")
    page.get_by_role("link", name=f"#{case_id}", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Case #{case_id}")
    page.get_by_role("button", name="Claim this case").click()
    expect(page.get_by_role("status")).to_contain_text("The case is yours.")
    assert_accessible(page, "desk-2-case-claimed")

    page.get_by_text("Make a counter-offer").click()
    page.fill("#c-count", "18")
    page.fill("#c-holiday", "1")
    # The preview follows the typing (no click): the schedule's length is the count typed.
    preview = page.locator("#counter-preview")
    expect(preview.locator("table.schedule tbody tr")).to_have_count(18)
    expect(preview.get_by_text("Within your authority.")).to_be_visible()
    assert_accessible(page, "desk-3-counter-preview")
    page.fill("#counter-note", "Eighteen months after a month's pause fits the statement.")
    page.get_by_role("button", name="Send this counter-offer").click()
    expect(page.get_by_role("status")).to_contain_text("The counter-offer was sent")

    assert live_server.app is not None
    with live_server.app.app_context(), db.session_scope() as session:
        case = session.get(HardshipCase, case_id)
        assert case is not None and case.state == CaseState.COUNTERED.value
        borrower = session.get(Borrower, case.borrower_id)
        account = session.get(Account, case.account_id)
        assert borrower is not None and account is not None
        reference, born, phone = account.external_reference, borrower.date_of_birth, borrower.phone
        counter_id = session.scalar(
            select(Offer.id).where(Offer.hardship_case_id == case_id, Offer.origin == "agent")
        )

    phone_page = new_context(viewport=PHONE, locale="en-US", accept_language="en").new_page()
    before = outbox.last_id() - 5  # the counter's notice is among the latest messages
    identify(phone_page, EN, reference, born)
    enter_code(phone_page, EN, outbox.signin_code(phone, after_id=before))
    phone_page.goto(f"/help/{case_id}")
    if phone_page.locator("html").get_attribute("lang") != "en":
        phone_page.get_by_role("button", name="English").click()  # a Chinese-speaking demo borrower
    expect(phone_page.get_by_role("heading", level=2, name="We have made you an offer")).to_be_visible()
    assert_accessible(phone_page, "desk-4-borrower-counter")
    phone_page.locator(f"form[action$='/offers/{counter_id}/accept'] button").click()
    # Accepted: the agreement is prepared (inline here) and waits for the borrower's signature.
    expect(phone_page.get_by_role("heading", level=2, name="Your agreement is ready to sign")).to_be_visible()


def test_an_approval_above_an_agents_authority_gets_a_supervisors_second_approval(
    new_context: NewContext, live_server: LiveServer, assert_accessible: Check
) -> None:
    agent_email, agent_secret = _desk_user(live_server, Role.AGENT, "first-agent")
    boss_email, boss_secret = _desk_user(live_server, Role.SUPERVISOR, "second-supervisor")
    case_id = _waiting_case(live_server, above_agent=True)

    page = new_context(viewport=DESKTOP).new_page()
    staff_sign_in(page, agent_email, agent_secret)
    page.goto(f"/staff/cases/{case_id}")
    page.get_by_role("button", name="Claim this case").click()
    expect(page.get_by_text("Above your authority").first).to_be_visible()
    page.fill("#approve-note", "Long-term illness; the proposal is what the statement allows.")
    page.get_by_role("button", name="Approve the proposal").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Awaiting second approval")

    boss = new_context(viewport=DESKTOP).new_page()
    staff_sign_in(boss, boss_email, boss_secret)
    boss.goto("/staff/cases?view=second_approval")
    boss.get_by_role("link", name=f"#{case_id}", exact=True).click()
    assert_accessible(boss, "desk-5-second-approval")
    boss.fill("#approve-note", "Agreed.")
    boss.get_by_role("button", name="Approve the proposal").click()
    expect(boss.get_by_role("heading", level=1)).to_contain_text("Agreement awaiting signature")
