"""Borrowers in a phone-sized Chromium, in English and in Chinese: identify with an account reference
and date of birth, sign in with the one-time code from the outbox, read what they owe and what
happens next, open an account and its printable statement, sign out. Every page on the way passes
axe-core and fits a 390 and a 360 px wide screen. A wrong code keeps the borrower on the code page;
details that match nobody lead to the very same page as real ones, and nothing is sent."""

from __future__ import annotations

import datetime as dt
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import pytest
from babel.numbers import format_currency
from playwright.sync_api import Locator, Page, ViewportSize, expect

from tests.e2e.conftest import (
    BorrowerAccount,
    BorrowerPool,
    DemoBorrower,
    NewContext,
    Outbox,
    screenshot_at,
)
from workflows.money import minor_units

pytestmark = pytest.mark.e2e

Check = Callable[[Page, str], None]
SMALL_PHONE: ViewportSize = {"width": 360, "height": 780}
YEAR = re.compile(r"\d{4}")  # every timeline item carries a full date, in either language


@dataclass(frozen=True)
class Words:
    """What the borrower reads, per language (the catalogue's translations, checked verbatim)."""

    locale: str  # Babel's, for formatting amounts as the pages do
    html_lang: str
    sign_in_title: str
    send_code: str
    code_title: str
    sign_in: str
    what_i_owe: str
    overdue_now: str
    total_balance: str
    components: tuple[str, str, str]  # principal, interest, fees
    days_late: Callable[[int], str]
    details: str
    printable: str
    statement: str
    statement_columns: tuple[str, str, str]
    back: str
    your_data: str
    download_data: str
    sign_out: str
    signed_out: str


EN = Words(
    locale="en",
    html_lang="en",
    sign_in_title="Sign in",
    send_code="Send me a code",
    code_title="Enter your code",
    sign_in="Sign in",
    what_i_owe="What I owe",
    overdue_now="Overdue now",
    total_balance="Total balance",
    components=("Principal", "Interest", "Fees"),
    days_late=lambda n: f"{n} day late" if n == 1 else f"{n} days late",
    details="Details and statement",
    printable="Printable statement",
    statement="Statement",
    statement_columns=("Entry", "Amount", "Balance"),
    back="Back",
    your_data="Your data",
    download_data="Download my data",
    sign_out="Sign out",
    signed_out="You are signed out.",
)
ZH = Words(
    locale="zh_Hans_CN",
    html_lang="zh-Hans",
    sign_in_title="登录",
    send_code="发送验证码",
    code_title="输入验证码",
    sign_in="登录",
    what_i_owe="我的欠款",
    overdue_now="当前逾期金额",
    total_balance="欠款总额",
    components=("本金", "利息", "费用"),
    days_late=lambda n: f"已逾期 {n} 天",
    details="详情和账单明细",
    printable="可打印的账单明细",
    statement="账单明细",
    statement_columns=("分录", "金额", "余额"),
    back="返回",
    your_data="我的数据",
    download_data="下载我的数据",
    sign_out="退出登录",
    signed_out="您已退出登录。",
)


def money(amount: int, currency: str, words: Words) -> str:
    return format_currency(Decimal(amount).scaleb(-minor_units(currency)), currency, locale=words.locale)


def fact(scope: Locator, term: str) -> Locator:
    """The value (dd) next to a term (dt) in a list of figures."""
    row = scope.locator("dl > div").filter(
        has=scope.page.locator("dt", has_text=re.compile(f"^{re.escape(term)}$"))
    )
    return row.locator("dd")


def identify(page: Page, words: Words, identifier: str, born: dt.date) -> None:
    """Step 1: the sign-in form, filled and sent; the browser lands on the code page."""
    page.goto("/signin")
    expect(page.get_by_role("heading", level=1)).to_have_text(words.sign_in_title)
    page.fill("#identifier", identifier)
    page.fill("#date_of_birth", born.isoformat())  # an <input type="date"> takes ISO dates
    page.get_by_role("button", name=words.send_code).click()
    expect(page).to_have_url(re.compile(r"/signin/code$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(words.code_title)


def enter_code(page: Page, words: Words, code: str) -> None:
    page.fill("#code", code)
    page.get_by_role("button", name=words.sign_in, exact=True).click()


def check_account_card(page: Page, account: BorrowerAccount, words: Words) -> None:
    """One card of the dashboard: overdue amount and days late, balances, the dated timeline."""
    card = page.locator("section.account-card").filter(
        has=page.get_by_role("heading", level=2, name=re.compile(re.escape(account.external_reference)))
    )
    expect(card).to_have_count(1)
    if account.overdue_amount:
        expect(card.locator(".overdue-line")).to_have_text(
            f"{words.overdue_now} {money(account.overdue_amount, account.currency, words)}"
        )
        expect(card.get_by_text(words.days_late(account.dpd))).to_be_visible()
    amounts = (account.principal_balance, account.interest_balance, account.fees_balance)
    terms = (words.total_balance, *words.components)
    for term, amount in zip(terms, (account.total_balance, *amounts), strict=True):
        expect(fact(card, term)).to_have_text(money(amount, account.currency, words))
    dates = card.locator("ol.timeline > li .timeline-date")
    if account.overdue_amount:
        expect(dates.first).to_be_visible()
    for date in dates.all():
        expect(date).to_have_text(YEAR)
    expect(card.get_by_role("link", name=words.details)).to_have_attribute("href", f"/accounts/{account.id}")


def check_statement(page: Page, words: Words) -> None:
    statement = page.locator("table.statement")
    expect(statement.get_by_role("columnheader")).to_have_text(list(words.statement_columns))
    expect(statement.locator("tbody tr").first).to_be_visible()


def journey(
    page: Page,
    words: Words,
    borrower: DemoBorrower,
    outbox: Outbox,
    check: Check,
    *,
    name: str,
    other_width: int,
) -> None:
    """Sign in, read the dashboard, open the first account and its printable statement, go back
    to the dashboard and sign out; each page checked and saved as ``borrower-<name>-N-…``."""
    # 1. Who are you?
    page.goto("/signin")
    expect(page.locator("html")).to_have_attribute("lang", words.html_lang)
    check(page, f"borrower-{name}-1-signin")
    before = outbox.last_id()
    identify(page, words, borrower.reference, borrower.date_of_birth)

    # 2. The code, as the borrower's phone would get it.
    expect(page.locator("html")).to_have_attribute("lang", words.html_lang)
    check(page, f"borrower-{name}-2-code")
    enter_code(page, words, outbox.signin_code(borrower.phone, after_id=before))

    # 3. What I owe: one card per open account, most days late first.
    expect(page).to_have_url(re.compile(r"/home$"))
    expect(page.locator("html")).to_have_attribute("lang", words.html_lang)
    expect(page.get_by_role("heading", level=1)).to_have_text(words.what_i_owe)
    expect(page.locator("section.account-card h2")).to_have_text(
        [re.compile(re.escape(a.external_reference) + "$") for a in borrower.accounts]
    )
    for account in borrower.accounts:
        check_account_card(page, account, words)
    check(page, f"borrower-{name}-3-home")
    screenshot_at(page, f"borrower-{name}-3-home-{other_width}px-wide", other_width)

    # 4. One account: the figures and the statement.
    account = borrower.accounts[0]
    page.get_by_role("link", name=words.details).first.click()
    expect(page).to_have_url(re.compile(rf"/accounts/{account.id}$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(account.external_reference)
    expect(fact(page.locator("main"), words.total_balance)).to_have_text(
        money(account.total_balance, account.currency, words)
    )
    check_statement(page, words)
    check(page, f"borrower-{name}-4-account")

    # 5. The printable statement, and back.
    page.get_by_role("link", name=words.printable).click()
    expect(page).to_have_url(re.compile(rf"/accounts/{account.id}/statement$"))
    expect(page.locator("html")).to_have_attribute("lang", words.html_lang)
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"{words.statement} · {account.external_reference}"
    )
    check_statement(page, words)
    check(page, f"borrower-{name}-5-statement")
    page.go_back()
    expect(page).to_have_url(re.compile(rf"/accounts/{account.id}$"))
    page.go_back()
    expect(page).to_have_url(re.compile(r"/home$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(words.what_i_owe)

    # 6. Your data: what Accord holds, downloaded as a ZIP that holds this borrower's accounts.
    page.get_by_role("link", name=words.your_data).click()
    expect(page).to_have_url(re.compile(r"/my-data$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(words.your_data)
    check(page, f"borrower-{name}-6-my-data")
    with page.expect_download() as download_info:
        page.get_by_role("button", name=words.download_data).click()
    with zipfile.ZipFile(download_info.value.path()) as archive:
        data = json.loads(archive.read("data.json"))
    assert {a["external_reference"] for a in data["accounts"]} >= {
        a.external_reference for a in borrower.accounts
    }
    page.goto("/home")

    # 7. Sign out: back to the start, and the dashboard is closed.
    page.get_by_role("button", name=words.sign_out, exact=True).click()
    expect(page).to_have_url(re.compile(r"^[^?#]+://[^/]+/$"))
    expect(page.get_by_role("status")).to_have_text(words.signed_out)
    page.goto("/home")
    expect(page).to_have_url(re.compile(r"/signin$"))


def test_a_borrower_signs_in_in_english_reads_what_they_owe_and_signs_out(
    new_context: NewContext, borrowers: BorrowerPool, outbox: Outbox, assert_accessible: Check
) -> None:
    page = new_context(locale="en-US", accept_language="en").new_page()
    journey(page, EN, borrowers.take("en"), outbox, assert_accessible, name="en", other_width=360)


def test_a_borrower_signs_in_in_chinese_on_a_small_phone(
    new_context: NewContext, borrowers: BorrowerPool, outbox: Outbox, assert_accessible: Check
) -> None:
    page = new_context(locale="zh-CN", accept_language="zh-CN", viewport=SMALL_PHONE).new_page()
    journey(page, ZH, borrowers.take("zh_Hans_CN"), outbox, assert_accessible, name="zh", other_width=390)


def test_a_wrong_code_is_refused_and_the_borrower_stays_on_the_code_page(
    new_context: NewContext, borrowers: BorrowerPool, outbox: Outbox, assert_accessible: Check
) -> None:
    borrower = borrowers.take("en")
    page = new_context(locale="en-US", accept_language="en").new_page()
    before = outbox.last_id()
    identify(page, EN, borrower.reference, borrower.date_of_birth)
    code = outbox.signin_code(borrower.phone, after_id=before)

    enter_code(page, EN, f"{(int(code) + 1) % 1_000_000:06d}")
    expect(page).to_have_url(re.compile(r"/signin/code$"))
    # The message sits at the field and is tied to it, so a screen reader reads it with the input.
    expect(page.locator("#code-error")).to_contain_text("That code is not right")
    expect(page.locator("#code")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#code")).to_have_attribute("aria-describedby", "code-error")
    expect(page.get_by_role("heading", level=1)).to_have_text(EN.code_title)
    assert_accessible(page, "borrower-wrong-code")

    # One wrong try does not spend the attempt: the right code still signs in.
    enter_code(page, EN, code)
    expect(page).to_have_url(re.compile(r"/home$"))


def test_details_that_match_nobody_lead_to_the_same_code_page_and_nothing_is_sent(
    new_context: NewContext, borrowers: BorrowerPool, outbox: Outbox
) -> None:
    """Seen from the browser, step 1 tells nobody whether the details belong to a borrower."""
    borrower = borrowers.take("en")

    def code_page(identifier: str, born: dt.date) -> tuple[str, str, list[str]]:
        page = new_context(locale="en-US", accept_language="en").new_page()
        before = outbox.last_id()
        identify(page, EN, identifier, born)
        sent = [m.recipient for m in outbox.messages_after(before)]
        # innerText follows the layout: read before the stylesheets have arrived, the label and
        # its input share a line ("6-digit code "), so the page is compared once it has loaded.
        page.wait_for_load_state("load")
        return page.title(), page.locator("main").inner_text(), sent

    title, text, sent = code_page(borrower.reference, borrower.date_of_birth)
    assert sent == [borrower.phone]  # the real borrower's code went out, so the check below means something
    for identifier, born in (
        ("LN-99999-9", borrower.date_of_birth),  # no such account
        (borrower.reference, borrower.date_of_birth - dt.timedelta(days=1)),  # not this borrower's birthday
    ):
        assert code_page(identifier, born) == (title, text, []), f"{identifier} born {born}"
