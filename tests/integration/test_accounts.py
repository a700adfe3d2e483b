"""Staff find accounts and read them: balances, the ledger as a statement, masked personal data."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.models import AuditEvent
from portal.services import accounts as account_service
from portal.services import ledger
from portal.services.audit import SYSTEM
from tests import factories
from workflows.access import Role
from workflows.ledger import EntryKind, Posting
from workflows.money import Component


def test_search_finds_accounts_by_reference_name_and_phone(session: Session) -> None:
    owner = factories.borrower(session, full_name="Chen Jing", phone="+8613900001234")
    account = factories.account(session, reference="LN-SEARCH-1", owner=owner)
    factories.account(session, reference="CC-OTHER-1")
    for query in ("LN-SEARCH", "ln-search-1", "Chen", "13900001234", "+8613900001234", "1234"):
        assert [a.id for a in account_service.search(session, query)] == [account.id], query
    assert account_service.search(session, "   ") == []
    assert account_service.search(session, "%") == []  # a wildcard is a character, not "everything"


def test_account_page_shows_balances_and_masks_personal_data(signed_in, session: Session) -> None:  # type: ignore[no-untyped-def]
    account = factories.account(session, principal=1_234_500, interest=6_789, fees=5_000)
    client = signed_in(Role.AGENT)
    page = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    assert account.external_reference in page
    for figure in ("12,345.00", "67.89", "50.00", "12,462.89"):
        assert figure in page
    borrower = account.borrower
    assert borrower.phone not in page
    assert borrower.national_id not in page
    assert "1985-**-**" in page
    assert "+86138" in page  # the masked phone keeps its country code and first digits


def test_revealing_personal_data_is_shown_and_audited(signed_in, session: Session) -> None:  # type: ignore[no-untyped-def]
    account = factories.account(session)
    client = signed_in(Role.COLLECTOR)
    response = client.post(f"/staff/borrowers/{account.borrower_id}/reveal", data={"account_id": account.id})
    assert response.status_code == 302
    page = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    assert account.borrower.phone in page
    assert account.borrower.national_id in page
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "borrower.personal_data_revealed")
    ).one()
    assert event.object_id == str(account.borrower_id)
    assert event.actor_type == "staff"


def test_finance_cannot_reveal_personal_data(signed_in, session: Session) -> None:  # type: ignore[no-untyped-def]
    account = factories.account(session)
    client = signed_in(Role.FINANCE)
    page = client.get(f"/staff/accounts/{account.id}").get_data(as_text=True)
    assert "reveal" not in page
    assert client.post(f"/staff/borrowers/{account.borrower_id}/reveal").status_code == 403
    assert session.scalars(select(AuditEvent).where(AuditEvent.action.like("borrower.%"))).all() == []


def test_statement_lists_entries_newest_first_with_running_balance_and_pages(
    signed_in, session: Session
) -> None:  # type: ignore[no-untyped-def]
    account = factories.account(session, principal=100_000)
    for n in range(60):
        ledger.post(
            session,
            account,
            EntryKind.INTEREST,
            [Posting(Component.INTEREST, 100 + n)],
            cause="test",
            actor=SYSTEM,
            effective_on=dt.date(2026, 1, 1) + dt.timedelta(days=n),
        )
    session.commit()
    first = account_service.statement(session, account)
    assert len(first.lines) == account_service.STATEMENT_PAGE
    assert first.lines[0].balance_after == account.total_balance
    assert first.older_than is not None
    older = account_service.statement(session, account, account_service.parse_cursor(first.older_than))
    assert len(older.lines) == 11
    assert older.older_than is None
    everything = first.lines + older.lines
    for newer, earlier in itertools.pairwise(everything):
        assert earlier.balance_after == newer.balance_after - newer.entry.amount
    assert everything[-1].balance_after == 100_000  # the placement charge
    client = signed_in(Role.FINANCE)
    assert client.get(f"/staff/accounts/{account.id}?before={first.older_than}").status_code == 200


@pytest.mark.parametrize("path", ["/staff/accounts/999999", "/staff/accounts/abc", "/staff/accounts/-1"])
def test_unknown_or_malformed_account_ids_get_a_friendly_404(signed_in, path: str) -> None:  # type: ignore[no-untyped-def]
    response = signed_in(Role.AGENT).get(path)
    assert response.status_code == 404
    assert "Page not found" in response.get_data(as_text=True)


def test_an_oversized_search_gets_a_message_not_an_error(signed_in) -> None:  # type: ignore[no-untyped-def]
    response = signed_in(Role.AGENT).get("/staff/accounts", query_string={"q": "x" * 500})
    assert response.status_code == 200
    assert "at most 100 characters" in response.get_data(as_text=True)


def test_search_page_lists_matches_with_links(signed_in, session: Session) -> None:  # type: ignore[no-untyped-def]
    account = factories.account(session, reference="LN-PAGE-7")
    client: FlaskClient = signed_in(Role.SUPERVISOR)
    page = client.get("/staff/accounts", query_string={"q": "LN-PAGE"}).get_data(as_text=True)
    assert f'href="/staff/accounts/{account.id}"' in page
    assert "1 account found" in page


def test_statement_orders_by_effective_date_even_when_posted_late(session: Session) -> None:
    account = factories.account(session, principal=10_000)  # effective 2025-01-15
    for day, amount in ((dt.date(2025, 3, 1), 300), (dt.date(2025, 2, 1), 200)):
        ledger.post(
            session,
            account,
            EntryKind.INTEREST,
            [Posting(Component.INTEREST, amount)],
            cause="test",
            actor=SYSTEM,
            effective_on=day,
        )
    session.commit()
    lines = account_service.statement(session, account).lines
    assert [line.entry.effective_on for line in lines] == [
        dt.date(2025, 3, 1),
        dt.date(2025, 2, 1),
        dt.date(2025, 1, 15),
    ]
    assert [line.balance_after for line in lines] == [10_500, 10_200, 10_000]


@pytest.mark.parametrize("cursor", ["", "garbage", "2026-13-01.5", "2026-01-01.x", "2026-01-01"])
def test_a_malformed_statement_cursor_shows_the_first_page(signed_in, session: Session, cursor: str) -> None:  # type: ignore[no-untyped-def]
    assert account_service.parse_cursor(cursor) is None
    account = factories.account(session)
    response = signed_in(Role.AGENT).get(f"/staff/accounts/{account.id}", query_string={"before": cursor})
    assert response.status_code == 200
