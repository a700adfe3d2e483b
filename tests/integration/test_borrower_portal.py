"""What a signed-in borrower sees: balances, what is overdue, a dated timeline, the statement."""

from __future__ import annotations

import datetime as dt

from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from portal.services import borrower_portal, ledger
from portal.services.audit import SYSTEM
from tests import factories
from tests.conftest import sign_in
from workflows.delinquency import ConsequenceKind
from workflows.ledger import EntryKind, Posting
from workflows.money import Component


def _overdue_account(session: Session, days: int, **fields: object):  # type: ignore[no-untyped-def]
    owner = factories.borrower(session, language="en", time_zone="Asia/Shanghai")
    account = factories.account(session, principal=1_200_000, interest=30_000, fees=5_000, owner=owner)
    today = borrower_portal.borrower_today(owner)
    account.oldest_unpaid_due_on = today - dt.timedelta(days=days)
    account.dpd = days
    account.stage = "mid" if days > 30 else "early"
    account.overdue_amount = 215_000
    account.next_due_on = today + dt.timedelta(days=5)
    account.next_due_amount = 100_000
    for name, value in fields.items():
        setattr(account, name, value)
    session.commit()
    return account, today


def test_dashboard_shows_what_is_owed_and_overdue_in_the_borrowers_words(
    client: FlaskClient, session: Session
) -> None:
    account, _today = _overdue_account(session, 40)
    page = sign_in(client, account.borrower).get("/home").get_data(as_text=True)
    for text in (
        "CN¥2,150.00",
        "CN¥12,350.00",
        "CN¥12,000.00",
        "CN¥300.00",
        "CN¥50.00",
        "CN¥1,000.00",
        "40 days late",
        "Payments are more than a month late",
    ):
        assert text in page, text


def test_the_timeline_is_dated_from_policy_and_says_what_stops_it(
    client: FlaskClient, session: Session
) -> None:
    account, today = _overdue_account(session, 40)
    [summary] = borrower_portal.overview(session, account.borrower)
    kinds = {c.kind: c for c in summary.timeline}
    # Default policy: calls and letters from day 31 (in effect), bureau report at 90, visits at 91.
    assert kinds[ConsequenceKind.CALLS].in_effect
    bureau = kinds[ConsequenceKind.CREDIT_BUREAU]
    assert bureau.on == today + dt.timedelta(days=50)
    assert not bureau.in_effect and bureau.stopped_by_payment
    page = sign_in(client, account.borrower).get("/home").get_data(as_text=True)
    assert "The overdue amount will be reported to the credit bureau" in page
    assert "right to see and dispute" in page
    assert "A late fee of CN¥50.00 will be added" in page
    assert "Paying the overdue amount stops everything below that has not happened yet." in page


def test_an_account_with_nothing_overdue_has_a_calm_page(client: FlaskClient, session: Session) -> None:
    account, _ = _overdue_account(session, 0, oldest_unpaid_due_on=None, overdue_amount=0, stage="current")
    page = sign_in(client, account.borrower).get("/home").get_data(as_text=True)
    assert "Nothing is overdue" in page
    assert "credit bureau" not in page


def test_recent_payments_and_the_statement_in_plain_words(client: FlaskClient, session: Session) -> None:
    account, today = _overdue_account(session, 10)
    ledger.post(
        session,
        account,
        EntryKind.PAYMENT,
        [Posting(Component.FEES, -5_000), Posting(Component.INTEREST, -10_000)],
        cause="payment:pi_test",
        actor=SYSTEM,
        effective_on=today - dt.timedelta(days=3),
    )
    session.commit()
    client = sign_in(client, account.borrower)
    home = client.get("/home").get_data(as_text=True)
    assert "Recent payments" in home and "CN¥150.00" in home
    detail = client.get(f"/accounts/{account.id}").get_data(as_text=True)
    assert "Your payment (Fees)" in detail and "Amount owed taken over" in detail
    printable = client.get(f"/accounts/{account.id}/statement")
    assert printable.status_code == 200
    assert account.external_reference in printable.get_data(as_text=True)


def test_the_dashboard_speaks_chinese_to_a_chinese_borrower(client: FlaskClient, session: Session) -> None:
    account, _ = _overdue_account(session, 40)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "zh-CN"
    page = sign_in(client, account.borrower).get("/home").get_data(as_text=True)
    assert '<html lang="zh-Hans">' in page
    assert "我的欠款" in page and "逾期金额将报送征信" in page and "¥2,150.00" in page


def test_only_the_three_latest_payments_are_listed_newest_first(session: Session) -> None:
    account, today = _overdue_account(session, 10)
    for days_ago, amount in ((40, 1_000), (30, 2_000), (20, 3_000), (10, 4_000)):
        ledger.post(
            session,
            account,
            EntryKind.PAYMENT,
            [Posting(Component.PRINCIPAL, -amount)],
            cause=f"payment:{days_ago}",
            actor=SYSTEM,
            effective_on=today - dt.timedelta(days=days_ago),
        )
    session.commit()
    [summary] = borrower_portal.overview(session, account.borrower)
    assert [(p.on, p.amount) for p in summary.recent_payments] == [
        (today - dt.timedelta(days=10), 4_000),
        (today - dt.timedelta(days=20), 3_000),
        (today - dt.timedelta(days=30), 2_000),
    ]
