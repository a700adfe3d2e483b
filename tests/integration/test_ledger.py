from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from portal.models import Account, AuditEvent, CreditEntry, LedgerEntry
from portal.services import ledger
from portal.services.audit import SYSTEM
from tests import factories
from workflows.errors import DomainError
from workflows.ledger import EntryKind, Posting, postings_for_allocation
from workflows.money import Component, allocate

TODAY = dt.date(2026, 11, 25)


def _entries(session: Session, account: Account) -> list[LedgerEntry]:
    return list(session.scalars(select(LedgerEntry).where(LedgerEntry.account_id == account.id)))


def test_posting_moves_the_cached_balance_with_the_ledger_and_audits(session: Session) -> None:
    account = factories.account(session, principal=100_000, interest=5_000, fees=2_000)
    allocation = allocate(6_000, account.balances())
    ledger.post(
        session,
        account,
        EntryKind.PAYMENT,
        postings_for_allocation(allocation),
        cause="payment:pi_1",
        actor=SYSTEM,
        effective_on=TODAY,
    )
    session.commit()

    assert (account.fees_balance, account.interest_balance, account.principal_balance) == (0, 1_000, 100_000)
    assert sum(e.amount for e in _entries(session, account)) == account.total_balance
    assert ledger.discrepancies(session) == []
    event = session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "ledger.payment", AuditEvent.object_id == str(account.id)
        )
    ).one()
    assert event.before == {"balances": {"principal": 100_000, "interest": 5_000, "fees": 2_000}}
    assert event.after["balances"] == {"principal": 100_000, "interest": 1_000, "fees": 0}


def test_a_refused_posting_changes_nothing(session: Session) -> None:
    account = factories.account(session, principal=10_000)
    count = len(_entries(session, account))
    with pytest.raises(DomainError) as refused:
        ledger.post(
            session,
            account,
            EntryKind.PAYMENT,
            [Posting(Component.PRINCIPAL, -10_001)],
            cause="test",
            actor=SYSTEM,
            effective_on=TODAY,
        )
    assert refused.value.code == "balance_negative"
    session.commit()
    assert account.principal_balance == 10_000
    assert len(_entries(session, account)) == count


def test_verification_finds_a_cached_balance_that_differs_from_the_ledger(session: Session) -> None:
    healthy = factories.account(session, principal=50_000)
    broken = factories.account(session, principal=70_000, interest=300)
    # Tamper behind the service's back (and the version column's), as a bad script would.
    session.execute(update(Account).where(Account.id == broken.id).values(interest_balance=301))
    session.commit()

    found = ledger.discrepancies(session)
    assert [d.account_id for d in found] == [broken.id]
    assert found[0].cached[Component.INTEREST] == 301
    assert found[0].ledger[Component.INTEREST] == 300
    assert healthy.id not in {d.account_id for d in found}


def test_an_account_without_entries_must_have_zero_balances(session: Session) -> None:
    account = factories.account(session, principal=1)
    session.execute(update(Account).where(Account.id == account.id).values(fees_balance=5))
    session.commit()
    assert account.id in {d.account_id for d in ledger.discrepancies(session)}


def test_a_concurrent_change_to_the_same_account_is_refused_not_lost(session: Session) -> None:
    account = factories.account(session, principal=10_000)
    # Another request posts a fee and commits after we loaded the account (same row, newer version).
    session.execute(
        update(Account)
        .where(Account.id == account.id)
        .values(fees_balance=Account.fees_balance + 500, version=Account.version + 1)
        .execution_options(synchronize_session=False)
    )
    ledger.post(
        session,
        account,
        EntryKind.FEE,
        [Posting(Component.FEES, 700)],
        cause="test",
        actor=SYSTEM,
        effective_on=TODAY,
    )
    with pytest.raises(StaleDataError):
        session.commit()
    session.rollback()


def test_ledger_rows_refuse_a_zero_amount_at_the_database(session: Session) -> None:
    from sqlalchemy.exc import IntegrityError

    account = factories.account(session, principal=1_000)
    session.add(
        LedgerEntry(
            account_id=account.id,
            component="principal",
            kind="adjustment",
            amount=0,
            cause="test",
            actor_type="system",
            effective_on=TODAY,
        )
    )
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()


def test_ledger_verify_command_reports_mismatches_and_fails(app, session: Session) -> None:  # type: ignore[no-untyped-def]
    runner = app.test_cli_runner()
    ok = runner.invoke(args=["ledger", "verify"])
    assert ok.exit_code == 0, ok.output
    assert "verified" in ok.output

    account = factories.account(session, principal=1_000)
    session.execute(update(Account).where(Account.id == account.id).values(principal_balance=999))
    session.commit()
    bad = runner.invoke(args=["ledger", "verify"])
    assert bad.exit_code == 1
    assert f"account {account.id}" in bad.output
    assert session.scalar(select(func.count()).select_from(LedgerEntry)) > 0


def test_verification_finds_a_credit_balance_that_differs_from_its_entries(session: Session) -> None:
    account = factories.account(session, principal=1_000)
    session.add(
        CreditEntry(
            account_id=account.id, amount=250, cause="test:credit", effective_on=dt.date(2026, 11, 30)
        )
    )
    session.execute(update(Account).where(Account.id == account.id).values(credit_balance=250))
    session.commit()
    assert account.id not in {c.account_id for c in ledger.credit_discrepancies(session)}

    session.execute(update(Account).where(Account.id == account.id).values(credit_balance=300))
    session.commit()
    found = [c for c in ledger.credit_discrepancies(session) if c.account_id == account.id]
    assert found == [ledger.CreditDiscrepancy(account.id, 300, 250)]
