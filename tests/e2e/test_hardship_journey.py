"""A mid-stage borrower asks for help on a phone, in English and in Chinese: from the dashboard
through the statement (reason, household, income, costs, debts, a document, review) to the offers
side by side; one accepts an offer, the other sends their own proposal and sees when to expect an
answer. Every page passes axe-core and fits a 360 and a 390 px wide screen, and the comparison
shows exactly the offers the rules produce from what was typed, to the minor unit."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, ViewportSize, expect
from sqlalchemy import select

from portal.extensions import db
from portal.models import Account, Borrower, HardshipCase, Offer
from portal.services import borrower_portal
from portal.services import hardship as hardship_service
from portal.services import policy as policy_service
from tests.e2e.conftest import BorrowerPool, LiveServer, NewContext, Outbox
from tests.e2e.test_borrower_journey import EN, ZH, Words, enter_code, identify, money
from workflows import affordability, offers
from workflows.affordability import BudgetCategory, BudgetLine, Frequency, Household
from workflows.money import parse_amount

pytestmark = pytest.mark.e2e

Check = Callable[[Page, str], None]
SMALL_PHONE: ViewportSize = {"width": 360, "height": 780}


@dataclass(frozen=True)
class HelpWords:
    need_help: str
    save: str
    add_file: str
    file_added: str
    continue_: str
    send: str
    compare: str
    accept: str
    approved: str
    propose: str
    send_proposal: str
    in_review: str


HELP_EN = HelpWords(
    need_help="I need help paying",
    save="Save and continue",
    add_file="Add this file",
    file_added="The file was added.",
    continue_="Continue",
    send="Send my request",
    compare="Your options side by side",
    accept="Accept",
    approved="Your agreement is ready to sign",
    propose="None of these suits me: send my own proposal",
    send_proposal="Send my proposal",
    in_review="With our negotiation team",
)
HELP_ZH = HelpWords(
    need_help="我还款有困难，需要帮助",
    save="保存并继续",
    add_file="上传此文件",
    file_added="文件已添加。",
    continue_="继续",
    send="提交申请",
    compare="方案对比",
    accept="接受",
    approved="您的协议已可签署",
    propose="都不合适：提交我自己的还款提议",
    send_proposal="提交我的还款提议",
    in_review="协商部门处理中",
)
# What the borrower types: a household of two adults and a child, one income, ordinary costs.
INCOME = {BudgetCategory.EARNINGS: "9000", BudgetCategory.BENEFITS: "300"}
COSTS = {
    BudgetCategory.HOUSING: "1800",
    BudgetCategory.UTILITIES: "240",
    BudgetCategory.FOOD_HOUSEKEEPING: "180",  # a week
    BudgetCategory.TRANSPORT: "300",
}
WEEKLY = {BudgetCategory.FOOD_HOUSEKEEPING}


def _png(path: Path) -> Path:
    Image.new("RGB", (120, 80), "navy").save(path, "PNG")
    return path


def _save(page: Page, help_words: HelpWords) -> None:
    page.get_by_role("button", name=help_words.save).click()


def fill_statement(page: Page, help_words: HelpWords, check: Check, name: str, upload: Path) -> int:
    """From the dashboard to the review page; returns the case id."""
    page.get_by_role("button", name=help_words.need_help).first.click()
    expect(page).to_have_url(re.compile(r"/help/\d+/reason$"))
    case_id = int(re.search(r"/help/(\d+)/", page.url).group(1))  # type: ignore[union-attr]
    check(page, f"help-{name}-1-reason")
    page.locator("input[name=reason][value=income_drop]").check()
    page.fill("#description", "My hours were cut in half in September.")
    _save(page, help_words)

    expect(page).to_have_url(re.compile(r"/household$"))
    check(page, f"help-{name}-2-household")
    page.fill("#adults", "2")
    page.fill("#children", "1")
    page.fill("#dependants", "0")
    page.select_option("#employment_status", "employed")
    _save(page, help_words)

    expect(page).to_have_url(re.compile(r"/income$"))
    # A bad amount is refused at its field and nothing moves on.
    page.fill(f"#amount_{BudgetCategory.EARNINGS}", "1e5")
    _save(page, help_words)
    expect(page).to_have_url(re.compile(r"/income$"))
    expect(page.locator(f"#amount_{BudgetCategory.EARNINGS}")).to_have_attribute("aria-invalid", "true")
    check(page, f"help-{name}-3-income-error")
    for category, amount in INCOME.items():
        page.fill(f"#amount_{category}", amount)
    _save(page, help_words)

    expect(page).to_have_url(re.compile(r"/spending$"))
    for category, amount in COSTS.items():
        page.fill(f"#amount_{category}", amount)
        if category in WEEKLY:
            page.select_option(f"#frequency_{category}", Frequency.WEEKLY.value)
    check(page, f"help-{name}-4-spending")
    _save(page, help_words)

    expect(page).to_have_url(re.compile(r"/debts$"))
    _save(page, help_words)

    expect(page).to_have_url(re.compile(r"/evidence$"))
    page.set_input_files("#file", str(upload))
    page.get_by_role("button", name=help_words.add_file).click()
    expect(page.get_by_role("status")).to_contain_text(help_words.file_added)
    check(page, f"help-{name}-5-evidence")
    page.get_by_role("button", name=help_words.continue_, exact=True).click()

    expect(page).to_have_url(re.compile(r"/review$"))
    check(page, f"help-{name}-6-review")
    page.get_by_role("button", name=help_words.send).click()
    expect(page).to_have_url(re.compile(rf"/help/{case_id}$"))
    return case_id


def expected_offers(server: LiveServer, case_id: int) -> tuple[list[offers.Offer], list[Offer], Account]:
    """The offers the rules give for what was typed, computed here from scratch, and those stored."""
    assert server.app is not None
    with server.app.app_context(), db.session_scope() as session:
        case = session.get(HardshipCase, case_id)
        assert case is not None
        account, borrower = case.account, session.get(Borrower, case.borrower_id)
        today = borrower_portal.borrower_today(borrower)
        policy = policy_service.current(session, today)
        lines = [
            BudgetLine(
                category,
                parse_amount(amount, account.currency),
                Frequency.WEEKLY if category in WEEKLY else Frequency.MONTHLY,
            )
            for category, amount in {**INCOME, **COSTS}.items()
        ]
        result = affordability.assess(lines, Household(2, 1, 0), account.currency, policy.hardship)
        computed = offers.generate_offers(
            hardship_service.position(account), result.disposable_monthly, policy, today
        )
        stored = list(
            session.scalars(
                select(Offer)
                .where(Offer.hardship_case_id == case_id, Offer.origin == "system")
                .order_by(Offer.id)
            )
        )
        session.expunge_all()
        return computed, stored, account


def check_comparison(
    page: Page, server: LiveServer, case_id: int, words: Words, help_words: HelpWords
) -> list[Offer]:
    computed, stored, account = expected_offers(server, case_id)
    assert computed, "a mid-stage borrower with money left each month is offered something"
    assert [o.key for o in stored] == [o.key for o in computed]
    for mine, theirs in zip(stored, computed, strict=True):
        assert (mine.total_repayable, mine.instalment_count) == (
            theirs.total_repayable,
            theirs.instalment_count,
        )
        assert mine.terms["monthly_payment"] == theirs.monthly_payment
        assert mine.terms["total_saved"] == theirs.total_saved
    table = page.locator("table.compare")
    expect(table.locator("caption")).to_have_text(help_words.compare)
    expect(table.locator("thead th")).to_have_count(len(stored))
    rows = table.locator("tbody tr")
    for column, offer in enumerate(computed, start=2):
        cells = rows.locator(f"td:nth-child({column})")
        expect(cells.nth(1)).to_contain_text(money(offer.monthly_payment, account.currency, words))
        expect(cells.nth(2)).to_have_text(str(offer.instalment_count))
        expect(cells.nth(5)).to_contain_text(money(offer.total_repayable, account.currency, words))
        expect(cells.nth(6)).to_have_text(money(offer.total_saved, account.currency, words))
    return stored


def sign_in(page: Page, words: Words, borrower, outbox: Outbox) -> None:  # type: ignore[no-untyped-def]
    before = outbox.last_id()
    identify(page, words, borrower.reference, borrower.date_of_birth)
    enter_code(page, words, outbox.signin_code(borrower.phone, after_id=before))
    expect(page).to_have_url(re.compile(r"/home$"))


def test_a_mid_stage_borrower_accepts_an_offer_in_english(  # noqa: PLR0917  (pytest fixtures)
    new_context: NewContext,
    borrowers: BorrowerPool,
    outbox: Outbox,
    live_server: LiveServer,
    assert_accessible: Check,
    tmp_path: Path,
) -> None:
    page = new_context(locale="en-US", accept_language="en").new_page()
    borrower = borrowers.take("en", stage="mid")
    sign_in(page, EN, borrower, outbox)
    case_id = fill_statement(page, HELP_EN, assert_accessible, "en", _png(tmp_path / "payslip.png"))
    stored = check_comparison(page, live_server, case_id, EN, HELP_EN)
    assert_accessible(page, "help-en-7-offers")

    page.locator(f"form[action$='/offers/{stored[0].id}/accept'] button").click()
    expect(page).to_have_url(re.compile(rf"/help/{case_id}$"))
    expect(page.get_by_role("heading", level=2, name=HELP_EN.approved)).to_be_visible()
    assert_accessible(page, "help-en-8-approved")
    page.goto("/home")
    expect(page.get_by_text("Breathing space until")).to_be_visible()


def test_a_mid_stage_borrower_sends_a_proposal_in_chinese_on_a_small_phone(  # noqa: PLR0917
    new_context: NewContext,
    borrowers: BorrowerPool,
    outbox: Outbox,
    live_server: LiveServer,
    assert_accessible: Check,
    tmp_path: Path,
) -> None:
    page = new_context(locale="zh-CN", accept_language="zh-CN", viewport=SMALL_PHONE).new_page()
    borrower = borrowers.take("zh_Hans_CN", stage="mid")
    sign_in(page, ZH, borrower, outbox)
    case_id = fill_statement(page, HELP_ZH, assert_accessible, "zh", _png(tmp_path / "证明.png"))
    check_comparison(page, live_server, case_id, ZH, HELP_ZH)
    assert_accessible(page, "help-zh-7-offers")

    page.get_by_role("link", name=HELP_ZH.propose).click()
    expect(page).to_have_url(re.compile(rf"/help/{case_id}/propose$"))
    assert_accessible(page, "help-zh-8-propose")
    page.fill("#monthly_amount", "abc")
    page.get_by_role("button", name=HELP_ZH.send_proposal).click()
    expect(page.locator("#monthly_amount")).to_have_attribute("aria-invalid", "true")
    # Within what is owed: 24 payments of a thirtieth of the balance (the rest asked to be waived).
    account = next(a for a in borrower.accounts if a.stage == "mid")
    monthly = account.total_balance // 30
    page.fill("#monthly_amount", f"{monthly // 100}.{monthly % 100:02d}")
    page.fill("#count", "24")
    page.get_by_role("button", name=HELP_ZH.send_proposal).click()
    expect(page).to_have_url(re.compile(rf"/help/{case_id}$"))
    expect(page.get_by_role("heading", level=2, name=HELP_ZH.in_review)).to_be_visible()
    expect(page.get_by_text(re.compile(r"我们会在 .+ 前给您答复"))).to_be_visible()
    assert_accessible(page, "help-zh-9-in-review")
