"""A borrower signs their repayment agreement on a phone, in English at 390 px and in Chinese at
360 px: from the approved offer to the agreement (read as a page), consent, a fresh code from the
outbox, the typed name, one action to sign, and the signed copy to download — which is sealed,
carries the certificate page, and sets Chinese in Noto Sans CJK. Every page passes axe-core."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from pypdf import PdfReader
from sqlalchemy import select

from portal.extensions import db
from portal.integrations.seal import seal_key_from_config, verify_sealed
from portal.models import Account, Agreement, Borrower, Plan
from portal.services import agreements
from portal.services import hardship as hardship_service
from tests import factories
from tests.e2e.conftest import BorrowerPool, DemoBorrower, LiveServer, NewContext, Outbox
from tests.e2e.test_borrower_journey import EN, ZH, Words, enter_code, identify

pytestmark = pytest.mark.e2e

Check = Callable[[Page, str], None]
# The English wording; the Chinese is read from the catalogue (_translated).
WORDS = {
    "en": {
        "read": "Read and sign your agreement",
        "agree_records": "I agree to use electronic records",
        "continue": "Continue",
        "send": "Send me a code",
        "confirm": "Confirm the code",
        "name": "Type your full name",
        "tick": "I have read the agreement and I agree to sign it",
        "sign": "Sign the agreement",
        "download": "Download your signed copy (PDF)",
    },
}


def _accepted_offer(server: LiveServer, borrower_id: int) -> tuple[int, str]:
    """The borrower's most overdue account gets a request for help with a pre-approved offer that
    waives the fees, accepted — through the services, as the portal does; the agreement renders."""
    assert server.app is not None
    with server.app.app_context(), db.session_scope() as session:
        borrower = session.get(Borrower, borrower_id)
        assert borrower is not None
        account = session.scalars(
            select(Account)
            .where(Account.borrower_id == borrower_id, Account.status == "open")
            .order_by(Account.dpd.desc())
        ).first()
        assert account is not None
        case = factories.hardship_case(session, account)
        offer = factories.offer(session, case)
        hardship_service.accept(session, borrower, case.id, offer.id)
        agreement = agreements.latest_for_case(session, case.id)
        assert agreement is not None and agreement.status == "ready"
        return case.id, borrower.full_name


def _translated(text: str, language: str) -> str:
    if language == "en":
        return text
    from babel.support import Translations

    from portal.config import ROOT

    return Translations.load(str(ROOT / "translations"), [language]).gettext(text)


def sign_on_a_phone(  # noqa: PLR0917  (one journey, with its parts)
    page: Page,
    words: Words,
    language: str,
    server: LiveServer,
    outbox: Outbox,
    borrower: DemoBorrower,
    check: Check,
    name: str,
) -> None:
    t = {key: _translated(text, language) for key, text in WORDS["en"].items()}
    case_id, full_name = _accepted_offer(server, borrower.id)
    before = outbox.last_id()
    identify(page, words, borrower.reference, borrower.date_of_birth)
    enter_code(page, words, outbox.signin_code(borrower.phone, after_id=before))
    expect(page).to_have_url(re.compile(r"/home$"))

    page.goto(f"/help/{case_id}")
    page.get_by_role("link", name=t["read"]).click()
    expect(page).to_have_url(re.compile(r"/agreements/\d+$"))
    agreement_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator(".agreement-text table.schedule tbody tr").first).to_be_visible()
    check(page, f"agreement-{name}-1-read")

    page.get_by_label(t["agree_records"]).check()
    page.get_by_role("button", name=t["continue"], exact=True).click()
    before = outbox.last_id()
    page.get_by_role("button", name=t["send"], exact=True).click()
    code = outbox.signin_code(borrower.phone, after_id=before)
    page.get_by_label(_translated("6-digit code", language)).fill(code)
    page.get_by_role("button", name=t["confirm"]).click()
    check(page, f"agreement-{name}-2-ready-to-sign")

    if language == "en":
        # Draw a stroke on the signature pad (the vendored signature_pad, shown only with scripts).
        pad = page.locator("#signature-canvas")
        expect(pad).to_be_visible()
        box = pad.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + 20, box["y"] + 40)
        page.mouse.down()
        page.mouse.move(box["x"] + 120, box["y"] + 80, steps=8)
        page.mouse.move(box["x"] + 220, box["y"] + 30, steps=8)
        page.mouse.up()
    page.get_by_label(t["name"]).fill(full_name)
    page.get_by_label(t["tick"]).check()
    page.get_by_role("button", name=t["sign"]).click()
    download_link = page.get_by_role("link", name=t["download"])
    expect(download_link).to_be_visible()
    check(page, f"agreement-{name}-3-signed")

    with page.expect_download() as info:
        download_link.click()
    data = Path(info.value.path()).read_bytes()
    assert server.app is not None
    # pyHanko validates with asyncio.run(), which cannot run inside Playwright's event loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        check_result = pool.submit(verify_sealed, data, seal_key_from_config(server.app.config)).result()
    assert check_result.ok, check_result
    reader = PdfReader(io.BytesIO(data))
    fonts = {
        str(font.get_object()["/BaseFont"])
        for pg in reader.pages
        for font in (pg["/Resources"].get("/Font") or {}).values()
    }
    if language == "zh_Hans_CN":
        assert any("Noto-Sans-CJK-SC" in f for f in fonts), fonts
    assert full_name.replace(" ", "") in reader.pages[-1].extract_text().replace(
        " ", ""
    )  # the certificate page
    with server.app.app_context(), db.session_scope() as session:
        plan = session.scalar(select(Plan).where(Plan.agreement_id == agreement_id))
        assert plan is not None and plan.status == "active" and len(plan.instalments) == 3
        drawn = session.scalar(select(Agreement.signature_sha256).where(Agreement.id == agreement_id))
        assert (drawn is not None) == (language == "en")


def test_a_borrower_signs_in_english_on_a_phone(
    new_context: NewContext,
    borrowers: BorrowerPool,
    outbox: Outbox,
    live_server: LiveServer,
    assert_accessible: Check,
) -> None:
    page = new_context(locale="en-US", accept_language="en").new_page()
    sign_on_a_phone(page, EN, "en", live_server, outbox, borrowers.take("en"), assert_accessible, "en")


def test_a_borrower_signs_in_chinese_on_a_small_phone(
    new_context: NewContext,
    borrowers: BorrowerPool,
    outbox: Outbox,
    live_server: LiveServer,
    assert_accessible: Check,
) -> None:
    page = new_context(
        locale="zh-CN", accept_language="zh-CN", viewport={"width": 360, "height": 780}
    ).new_page()
    sign_on_a_phone(
        page, ZH, "zh_Hans_CN", live_server, outbox, borrowers.take("zh_Hans_CN"), assert_accessible, "zh"
    )
