"""An admin places a lender's file in a desktop Chromium: from the nav to the upload form, a file
with one bad row uploaded, the report showing what was applied and the row that was not (its line,
column and reason), its CSV downloaded. Every page passes axe-core and fits a 360 px screen."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from portal.extensions import db
from portal.models import Account, Creditor
from portal.services.hardship import desk_today
from tests.e2e.conftest import LiveServer, NewContext
from tests.e2e.test_desk_journey import DESKTOP, _desk_user, staff_sign_in
from workflows.access import Role

pytestmark = pytest.mark.e2e

Check = Callable[[Page, str], None]
LENDER = ("E2E-PLACE", "Placement Journey Lender")


def _lender(server: LiveServer) -> int:
    """A lender of this journey's own, so its accounts touch no other journey's."""
    assert server.app is not None
    code, name = LENDER
    with server.app.app_context(), db.session_scope() as session:
        creditor = session.scalar(select(Creditor).where(Creditor.code == code))
        if creditor is None:
            creditor = Creditor(code=code, name=name)
            session.add(creditor)
            session.commit()
        return creditor.id


def _file() -> bytes:
    """Two accounts with nothing overdue (no collections work for other journeys), the second's
    phone number wrong."""
    balance_date = (desk_today() - dt.timedelta(days=1)).isoformat()
    header = [
        "account_reference",
        "borrower_reference",
        "full_name",
        "date_of_birth",
        "phone",
        "product_type",
        "currency",
        "annual_rate",
        "opened_on",
        "balance_date",
        "principal",
        "interest",
        "fees",
        "total",
    ]
    common = ["1980-02-29", "loan", "CNY", "12", "2024-03-01", balance_date, "8000.00", "0", "0", "8000.00"]
    rows = [
        ["E2E-PL-0001", "E2E-C-1", "李雷", common[0], "13700137000", *common[1:]],
        ["E2E-PL-0002", "E2E-C-2", "韩梅梅", common[0], "12345", *common[1:]],
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def test_an_admin_uploads_a_placement_file_and_reads_the_rows_not_applied(
    new_context: NewContext, live_server: LiveServer, assert_accessible: Check
) -> None:
    creditor_id = _lender(live_server)
    email, secret = _desk_user(live_server, Role.ADMIN, "placement-admin")
    page = new_context(viewport=DESKTOP).new_page()
    staff_sign_in(page, email, secret)

    page.get_by_role("link", name="Placements").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Placements")
    assert_accessible(page, "placements-1-upload")
    page.get_by_label("Lender").select_option(str(creditor_id))
    page.get_by_label("Placement file").set_input_files(
        {"name": "journey-lender.csv", "mimeType": "text/csv", "buffer": _file()}
    )
    page.get_by_role("button", name="Upload").click()

    expect(page).to_have_url(re.compile(r"/admin/placements/\d+$"))
    expect(page.get_by_role("status")).to_contain_text("The file was applied.")
    expect(page.get_by_text("1 account applied: 1 new, 0 updated, 0 unchanged.")).to_be_visible()
    expect(page.get_by_text("1 row was not applied, listed below.")).to_be_visible()
    refused = page.get_by_role("region", name="Rows not applied").get_by_role("row").nth(1)
    expect(refused.get_by_role("cell").nth(0)).to_have_text("3")
    expect(refused.get_by_role("cell").nth(1)).to_have_text("phone")
    expect(refused.get_by_role("cell").nth(2)).to_have_text("E2E-PL-0002")
    expect(refused.get_by_role("cell").nth(3)).to_contain_text("12345 is not a phone number")
    assert_accessible(page, "placements-2-report")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download all of them (CSV)").click()
    lines = list(csv.reader(io.StringIO(download.value.path().read_text(encoding="utf-8-sig"))))
    assert [line[:4] for line in lines[1:]] == [["3", "phone", "E2E-PL-0002", "phone_invalid"]]

    assert live_server.app is not None
    with live_server.app.app_context(), db.session_scope() as session:
        placed = session.scalars(select(Account.external_reference).where(Account.creditor_id == creditor_id))
        assert list(placed) == ["E2E-PL-0001"]
    page.close()  # nothing of this journey may still be talking to the server
