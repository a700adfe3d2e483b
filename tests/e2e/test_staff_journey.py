"""Staff in a phone-sized Chromium: sign in with password and authenticator code, find an account,
read it with personal data masked, and only the roles that talk to borrowers may reveal it.
Every page on the way passes axe-core and fits a 390 and a 360 px wide screen."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pyotp
import pytest
from babel.numbers import format_currency
from playwright.sync_api import Locator, Page, expect

from portal.config import ROOT
from portal.services.demo import DEMO_PASSWORD, DEMO_STAFF
from tests.e2e.conftest import LiveServer, NewContext
from workflows.access import Role, mask_phone
from workflows.money import minor_units

pytestmark = pytest.mark.e2e

Check = Callable[[Page, str], None]
EMAIL = {role: email for role, email, _name in DEMO_STAFF}
NAME = {role: name for role, _email, name in DEMO_STAFF}
MAY_REVEAL = {Role.AGENT, Role.SUPERVISOR, Role.COLLECTOR}
ZH_CATALOGUE = ROOT / "translations" / "zh_Hans_CN" / "LC_MESSAGES" / "messages.mo"
CJK = re.compile(r"[\u4e00-\u9fff]")


def fact(page: Page, term: str) -> Locator:
    """The value (dd) next to a term (dt) in the account page's lists of facts."""
    row = page.locator("dl > div").filter(has=page.locator("dt", has_text=re.compile(f"^{re.escape(term)}$")))
    return row.locator("dd")


def sign_in(page: Page, live_server: LiveServer, role: Role, check: Check) -> None:
    """Password, then the authenticator's current code, checking both pages on the way."""
    page.goto("/staff/login")
    expect(page.get_by_role("heading", level=1)).to_have_text("Staff sign-in")
    check(page, f"{role}-1-login")
    page.get_by_label("E-mail").fill(EMAIL[role])
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Continue").click()

    expect(page).to_have_url(re.compile(r"/staff/login/code$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign-in code")
    check(page, f"{role}-2-code")
    # Each user signs in once per run: a code is accepted only once per 30-second step.
    page.get_by_label("6-digit code").fill(pyotp.TOTP(live_server.totp_secrets[EMAIL[role]]).now())
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/staff/$"))


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_staff_member_signs_in_finds_an_account_and_sees_personal_data_masked(
    role: Role, new_context: NewContext, live_server: LiveServer, assert_accessible: Check
) -> None:
    page = new_context().new_page()
    sign_in(page, live_server, role, assert_accessible)

    # The workspace.
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Hello, {NAME[role]}")
    assert_accessible(page, f"{role}-3-workspace")
    staff_link = page.get_by_role("link", name="Staff", exact=True)
    if role is Role.ADMIN:
        expect(staff_link).to_be_visible()
    else:
        expect(staff_link).to_have_count(0)

    # Search by the start of a demo account's reference (e.g. "LN-00001" for LN-00001-1).
    account = live_server.account
    prefix = account.external_reference.rsplit("-", 1)[0]
    page.get_by_label("Find an account by reference, name or phone").fill(prefix)
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page).to_have_url(re.compile(r"/staff/accounts\?q="))
    expect(page.get_by_role("heading", level=2)).to_have_text(re.compile(r"^\d+ accounts? found$"))
    result = page.get_by_role("link").filter(has_text=account.external_reference)
    expect(result).to_have_count(1)
    assert_accessible(page, f"{role}-4-search")

    # The account: balances, the statement, personal data masked.
    result.click()
    expect(page).to_have_url(re.compile(rf"/staff/accounts/{account.id}$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(account.external_reference)
    total = format_currency(
        Decimal(account.total_balance).scaleb(-minor_units(account.currency)), account.currency, locale="en"
    )
    expect(page.get_by_role("heading", name="Balance", exact=True)).to_be_visible()
    expect(fact(page, "Total owed")).to_have_text(total)
    for component in ("Principal", "Interest", "Fees"):
        expect(fact(page, component)).to_have_text(re.compile(r"\d"))
    statement = page.get_by_role("table")
    expect(statement.get_by_role("columnheader")).to_have_text(["Entry", "Amount", "Balance"])
    assert statement.locator("tbody tr").count() >= 1
    masked = mask_phone(account.phone)
    assert "*" in masked
    expect(fact(page, "Phone")).to_have_text(masked)
    expect(fact(page, "ID number")).to_have_text(re.compile(r"\*{4,}"))
    assert account.phone not in page.content()
    assert account.national_id not in page.content()
    assert_accessible(page, f"{role}-5-account")

    reveal = page.get_by_role("button", name="Show personal data")
    if role not in MAY_REVEAL:
        expect(reveal).to_have_count(0)
    else:
        expect(reveal).to_be_visible()

    if role is Role.AGENT:
        reveal.click()
        expect(page).to_have_url(re.compile(rf"/staff/accounts/{account.id}$"))
        expect(page.get_by_role("status")).to_contain_text("Personal data is shown for")
        expect(fact(page, "Phone")).to_have_text(account.phone)
        expect(fact(page, "ID number")).to_have_text(account.national_id)
        expect(reveal).to_have_count(0)
        assert_accessible(page, f"{role}-6-account-revealed")

    if role is Role.ADMIN:
        page.get_by_role("link", name="Staff", exact=True).click()
        expect(page).to_have_url(re.compile(r"/admin/staff$"))
        expect(page.get_by_role("heading", level=1)).to_have_text("Staff")
        for email in EMAIL.values():
            expect(page.get_by_text(email, exact=False)).to_be_visible()
        assert_accessible(page, f"{role}-6-staff")


def test_wrong_password_shows_an_error_and_stays_on_the_sign_in_page(
    page: Page, assert_accessible: Check
) -> None:
    page.goto("/staff/login")
    page.get_by_label("E-mail").fill(EMAIL[Role.AGENT])
    page.get_by_label("Password").fill(DEMO_PASSWORD + "-wrong")
    page.get_by_role("button", name="Continue").click()

    expect(page.get_by_role("status")).to_have_text("E-mail or password is not right.")
    expect(page).to_have_url(re.compile(r"/staff/login$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Staff sign-in")
    expect(page.get_by_label("Password")).to_have_value("")
    assert_accessible(page, "login-wrong-password")


def test_sign_in_page_speaks_chinese_to_a_chinese_browser(
    new_context: NewContext, assert_accessible: Check
) -> None:
    page = new_context(locale="zh-CN", accept_language="zh-CN,zh;q=0.9").new_page()
    page.goto("/staff/login")

    expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
    # The switch offers English, labelled in English.
    expect(page.get_by_role("button", name="English")).to_have_attribute("lang", "en")
    if Path(ZH_CATALOGUE).exists():
        heading = page.get_by_role("heading", level=1)
        expect(heading).to_have_text(CJK)
        expect(heading).not_to_have_text("Staff sign-in")
    # Without a compiled catalogue (`pybabel compile`) the strings stay English; only the
    # language attribute is checked then.
    assert_accessible(page, "zh-login")
