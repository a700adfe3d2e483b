"""A collector's call in a desktop Chromium: sign in with TOTP, take the next call task from the
work list, read the counter (calls left today and this week, the next allowed time) before the
call, and log the call with a promise to pay. Every page on the way passes axe-core."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal.extensions import db
from portal.models import Account, CollectionAction, ContactAttempt, PromiseToPay
from tests import factories
from tests.e2e.conftest import LiveServer, NewContext
from tests.e2e.test_desk_journey import DESKTOP, _desk_user, staff_sign_in
from workflows.access import Role

pytestmark = pytest.mark.e2e

Check = Callable[[Page, str], None]
TOP_PRIORITY = 2_000_000_000  # above anything the demo's run gives a task


def _midday_zone() -> str:
    """A fixed-offset zone where it is about noon now, so the call is inside the allowed hours
    whenever the suite runs."""
    offset = (12 - dt.datetime.now(dt.UTC).hour) % 24
    if offset > 14:
        offset -= 24
    return f"Etc/GMT{-offset:+d}"


def _call_task(server: LiveServer, priority: int = TOP_PRIORITY) -> tuple[int, int, str]:
    """A borrower of this test's own, 45 days late, with a call task at the top of the list."""
    assert server.app is not None
    with server.app.app_context(), db.session_scope() as session:
        owner = factories.borrower(session, language="en", time_zone=_midday_zone())
        account = factories.account(session, principal=800_000, interest=30_000, fees=10_000, owner=owner)
        account.stage, account.dpd, account.overdue_amount = "mid", 45, 150_000
        account.oldest_unpaid_due_on = dt.date.today() - dt.timedelta(days=45)
        today = dt.datetime.now(ZoneInfo(owner.time_zone)).date()
        action = CollectionAction(
            account_id=account.id,
            run_date=today,
            rule_key="mid:call:e2e",
            kind="call_task",
            channel="call",
            stage="mid",
            priority=priority,
        )
        session.add(action)
        session.commit()
        return action.id, account.id, account.external_reference


def test_a_collector_sees_the_counter_and_logs_a_call_with_a_promise_to_pay(
    new_context: NewContext, live_server: LiveServer, assert_accessible: Check
) -> None:
    email, secret = _desk_user(live_server, Role.COLLECTOR, "call-collector")
    action_id, account_id, reference = _call_task(live_server)
    page = new_context(viewport=DESKTOP).new_page()
    staff_sign_in(page, email, secret)

    page.get_by_role("link", name="Collections").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Collections")
    expect(page.get_by_role("link", name=f"#{action_id}", exact=True)).to_be_visible()
    assert_accessible(page, "collector-1-work-list")

    page.get_by_role("button", name="Take the next call").click()
    expect(page).to_have_url(re.compile(rf"/staff/collections/actions/{action_id}$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(reference)

    # The counter, before the call: six calls a day to this number (the CN rules), no weekly cap,
    # and the call is allowed now; the next allowed time is shown in both clocks.
    counter = page.locator("#call-counter")
    expect(counter.get_by_text("Calls left today")).to_be_visible()
    expect(counter.locator("div", has_text="Calls left today").locator("dd")).to_have_text("6")
    expect(counter.locator("div", has_text="Calls left this week").locator("dd")).to_have_text(
        "No weekly limit"
    )
    expect(counter.get_by_text("Next call allowed (your time)")).to_be_visible()
    expect(page.locator("#call-allowed")).to_contain_text("The contact rules allow a call now.")
    expect(page.get_by_role("button", name="Log this call")).to_be_enabled()
    assert_accessible(page, "collector-2-call-screen")

    borrower_today = dt.datetime.now(ZoneInfo(_midday_zone())).date()
    due = borrower_today + dt.timedelta(days=10)
    page.get_by_label("Outcome").select_option("promise_to_pay")
    page.get_by_label("Amount (CNY)").fill("1500.00")
    page.get_by_label("Pay by").fill(due.isoformat())
    page.get_by_label("Notes").fill("Promised after salary on the 10th.")
    page.get_by_role("button", name="Log this call").click()
    expect(page.get_by_role("status")).to_contain_text("The promise to pay was recorded with the call.")
    expect(page.locator("#promises")).to_contain_text("1,500.00")
    expect(counter.locator("div", has_text="Calls left today").locator("dd")).to_have_text("5")
    expect(page.get_by_role("button", name="Take this task")).to_have_count(0)
    assert_accessible(page, "collector-3-promise-recorded")

    assert live_server.app is not None
    with live_server.app.app_context(), db.session_scope() as session:
        action = session.get(CollectionAction, action_id)
        assert action is not None and action.status == "done"
        attempt = session.scalars(select(ContactAttempt).where(ContactAttempt.account_id == account_id)).one()
        assert attempt.outcome == "promise_to_pay" and attempt.action_id == action_id
        promise = session.scalars(select(PromiseToPay).where(PromiseToPay.account_id == account_id)).one()
        assert (promise.amount, promise.due_on, promise.status) == (150_000, due, "open")
        assert promise.contact_attempt_id == attempt.id


def test_a_visit_is_planned_and_a_referral_approved_by_a_supervisor(
    new_context: NewContext, live_server: LiveServer, assert_accessible: Check
) -> None:
    email, secret = _desk_user(live_server, Role.COLLECTOR, "field-collector")
    boss_email, boss_secret = _desk_user(live_server, Role.SUPERVISOR, "legal-supervisor")
    _action_id, account_id, reference = _call_task(live_server, priority=0)
    page = new_context(viewport=DESKTOP).new_page()
    staff_sign_in(page, email, secret)

    page.goto(f"/staff/collections/accounts/{account_id}")
    page.get_by_label("Why a visit").fill("Unreachable by phone for three weeks.")
    page.get_by_role("button", name="Plan a home visit").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Visit #")
    page.get_by_role("button", name="The borrower was notified").click()
    page.get_by_role("button", name="Evaluated: the visit goes ahead").click()
    expect(page.get_by_role("heading", level=2, name="Dispatch")).to_be_visible()
    assert_accessible(page, "collector-4-visit-dispatch")

    page.goto(f"/staff/collections/accounts/{account_id}")
    page.get_by_label("Why refer this account").fill("No payment and no contact for 150 days.")
    page.get_by_role("button", name="Ask a supervisor to refer it").click()
    expect(page.get_by_role("status")).to_contain_text("The referral was sent to a supervisor.")

    boss = new_context(viewport=DESKTOP).new_page()
    staff_sign_in(boss, boss_email, boss_secret)
    boss.get_by_role("link", name="Legal referrals").click()
    card = boss.locator("section.card", has_text=reference)
    expect(card).to_contain_text("No payment and no contact for 150 days.")
    assert_accessible(boss, "collector-5-referral-queue")
    card.get_by_role("button", name="Approve: refer for legal action").click()
    expect(boss.get_by_role("status")).to_contain_text("the account is now in the legal stage")

    assert live_server.app is not None
    with live_server.app.app_context(), db.session_scope() as session:
        account = session.get(Account, account_id)
        assert account is not None and account.stage == "legal"
