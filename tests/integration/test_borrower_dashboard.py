"""The dashboard's accounts and their facts, read in one statement: the same figures, payments,
breathing space and request for help as the account page, however many accounts."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

from flask.testing import FlaskClient
from sqlalchemy import event
from sqlalchemy.orm import Session

from portal.models import Account, AccountPause
from portal.services import borrower_portal, ledger
from portal.services.audit import SYSTEM
from tests import factories
from tests.conftest import sign_in
from workflows.ledger import EntryKind, Posting
from workflows.money import Component


@contextmanager
def _statements(session: Session) -> Iterator[list[str]]:
    """The SQL statements run on ``session``'s connection while the block runs."""
    seen: list[str] = []
    connection = session.connection()

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)

    event.listen(connection, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(connection, "before_cursor_execute", count)


def _overdue(session: Session, owner, days: int, **fields: object) -> Account:  # type: ignore[no-untyped-def]
    account = factories.account(session, principal=1_000_000, interest=20_000, owner=owner)
    today = borrower_portal.borrower_today(owner)
    account.oldest_unpaid_due_on = today - dt.timedelta(days=days)
    account.dpd = days
    account.stage = "mid" if days > 30 else "early"
    account.overdue_amount = 150_000
    account.next_due_on = today + dt.timedelta(days=7)
    account.next_due_amount = 60_000
    for name, value in fields.items():
        setattr(account, name, value)
    session.commit()
    return account


def _post(
    session: Session, account: Account, kind: EntryKind, on: dt.date, cause: str, *postings: Posting
) -> None:
    ledger.post(session, account, kind, list(postings), cause=cause, actor=SYSTEM, effective_on=on)


def _busy_borrower(session: Session):  # type: ignore[no-untyped-def]
    """Three open accounts (one with fees, four payments, breathing spaces and requests for help),
    a closed one, and another borrower's account."""
    owner = factories.borrower(session, language="en", time_zone="Asia/Shanghai")
    today = borrower_portal.borrower_today(owner)
    busy = _overdue(session, owner, 50)
    quiet = _overdue(session, owner, 10)
    current = _overdue(session, owner, 0, oldest_unpaid_due_on=None, overdue_amount=0, stage="current")
    closed = _overdue(session, owner, 70, status="closed")
    _overdue(session, factories.borrower(session), 90)  # someone else's
    for days in (7, 37):
        _post(
            session,
            busy,
            EntryKind.FEE,
            today - dt.timedelta(days=days),
            f"fee:{days}",
            Posting(Component.FEES, 5_000),
        )
    # Four payments, each posted on two components; the one 3 days ago twice the same day.
    for days, cause in ((40, "payment:a"), (20, "payment:b"), (3, "payment:c"), (3, "payment:d")):
        on = today - dt.timedelta(days=days)
        _post(
            session,
            busy,
            EntryKind.PAYMENT,
            on,
            cause,
            Posting(Component.INTEREST, -100 * days),
            Posting(Component.PRINCIPAL, -1_000 - days),
        )

    def pause(
        account: Account, starts: int, ends: int, fees: bool, contact: bool, **more: object
    ) -> AccountPause:
        return AccountPause(
            account_id=account.id,
            starts_on=today + dt.timedelta(days=starts),
            ends_on=today + dt.timedelta(days=ends),
            stops_fees=fees,
            pauses_contact=contact,
            **more,
        )

    # In force; another in force that ends sooner; one lifted; one not begun.
    session.add_all(
        [
            pause(busy, -2, 20, True, False),
            pause(busy, -9, 5, False, True),
            pause(busy, -1, 60, True, True, lifted_at=dt.datetime.now(dt.UTC)),
            pause(quiet, 1, 30, True, True),
        ]
    )
    session.commit()
    draft = factories.hardship_case(session, busy, state="draft")
    factories.hardship_case(session, busy, state="rejected")  # newer, but not current
    factories.hardship_case(session, quiet, state="withdrawn")
    return owner, today, (busy, quiet, current, closed), draft


def test_every_open_account_and_its_facts_come_in_one_statement(session: Session) -> None:
    owner, today, (busy, quiet, current, _closed), draft = _busy_borrower(session)
    with _statements(session) as seen:
        summaries = borrower_portal.overview(session, owner)
    assert len([s for s in seen if "FROM account" in s]) == 1, seen

    # Most days past due first; closed accounts and other borrowers' accounts are not listed.
    assert [s.account.id for s in summaries] == [busy.id, quiet.id, current.id]
    for summary in summaries:
        card = summary.account
        orm = session.get(Account, card.id)
        for name in (f.name for f in dataclasses.fields(card) if f.name != "creditor"):
            assert getattr(card, name) == getattr(orm, name), name
        assert card.creditor.name == orm.creditor.name
        assert card.total_balance == orm.total_balance

    busy_summary, quiet_summary, current_summary = summaries
    # The three newest payments, newest first, each the sum of its entries.
    assert [(p.on, p.amount) for p in busy_summary.recent_payments] == [
        (today - dt.timedelta(days=3), 300 + 1_003),
        (today - dt.timedelta(days=3), 300 + 1_003),
        (today - dt.timedelta(days=20), 2_000 + 1_020),
    ]
    # The breathing space in force that ends last; none before it begins.
    assert busy_summary.breathing_space == borrower_portal.BreathingSpace(
        today - dt.timedelta(days=2), today + dt.timedelta(days=20), True, False
    )
    assert quiet_summary.breathing_space is None
    # The newest request for help that is still current; a rejected or withdrawn one is not.
    assert busy_summary.hardship_case == borrower_portal.CaseRef(draft.id, "draft")
    assert quiet_summary.hardship_case is None
    assert current_summary.timeline == [] and current_summary.recent_payments == []

    # The account page reads the same facts for one account through the same statement.
    for summary in summaries:
        one = borrower_portal.summary(session, owner, session.get(Account, summary.account.id))
        assert (one.timeline, one.recent_payments, one.breathing_space, one.hardship_case) == (
            summary.timeline,
            summary.recent_payments,
            summary.breathing_space,
            summary.hardship_case,
        )


def test_the_number_of_statements_does_not_grow_with_the_accounts(session: Session) -> None:
    single = factories.borrower(session)
    _overdue(session, single, 12)
    many, *_ = _busy_borrower(session)
    with _statements(session) as one:
        borrower_portal.overview(session, single)
    with _statements(session) as four:
        borrower_portal.overview(session, many)
    assert len(one) == len(four)


def test_the_fees_charged_so_far_decide_the_next_late_fee(session: Session) -> None:
    """The default policy caps late fees at CN¥500 an account: two of CN¥50 charged, the next is
    listed; ten charged, none is."""
    owner = factories.borrower(session, language="en")
    today = borrower_portal.borrower_today(owner)
    two, ten = _overdue(session, owner, 45), _overdue(session, owner, 44)
    for account, count in ((two, 2), (ten, 10)):
        for n in range(count):
            _post(
                session,
                account,
                EntryKind.FEE,
                today - dt.timedelta(days=n),
                f"fee:{n}",
                Posting(Component.FEES, 5_000),
            )
    session.commit()
    kinds = {
        s.account.id: {c.kind.value for c in s.timeline} for s in borrower_portal.overview(session, owner)
    }
    assert "late_fee" in kinds[two.id]
    assert "late_fee" not in kinds[ten.id]


def test_the_page_shows_each_accounts_facts(client: FlaskClient, session: Session) -> None:
    owner, _today, (busy, quiet, current, closed), draft = _busy_borrower(session)
    page = sign_in(client, owner).get("/home").get_data(as_text=True)
    assert (
        page.index(busy.external_reference)
        < page.index(quiet.external_reference)
        < page.index(current.external_reference)
    )
    assert closed.external_reference not in page
    assert "Breathing space until" in page and "no late fees are added." in page
    assert f'href="/help/{draft.id}"' in page and "Continue my request" in page
    assert page.count("Recent payments") == 1
