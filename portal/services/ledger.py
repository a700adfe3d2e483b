"""The one way a balance changes: ledger entries and the cached balance, in one transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from portal.models import Account, CreditEntry, LedgerEntry
from portal.services import audit
from portal.services.audit import Actor
from workflows.ledger import EntryKind, Posting, apply_postings
from workflows.money import Component


def lock_account(session: Session, account_id: int) -> Account:
    """Load an account for a balance change: row-locked on PostgreSQL, version-checked everywhere."""
    stmt = select(Account).where(Account.id == account_id).with_for_update()
    account = session.execute(stmt.execution_options(populate_existing=True)).scalar_one()
    return account


def post(
    session: Session,
    account: Account,
    kind: EntryKind,
    postings: Sequence[Posting],
    *,
    cause: str,
    actor: Actor,
    effective_on: dt.date,
    memo: str | None = None,
) -> list[LedgerEntry]:
    """Append ``postings`` to the ledger and move the cached balance with them; never commits.

    ``workflows.ledger`` refuses wrong signs, zero amounts and balances below zero, so a
    refused posting changes nothing. The account's version column makes a concurrent change
    to the same account fail rather than be lost.
    """
    before = account.balances()
    after = apply_postings(before, kind, postings)
    entries = [
        LedgerEntry(
            account_id=account.id,
            component=p.component.value,
            kind=kind.value,
            amount=p.amount,
            cause=cause,
            memo=memo,
            actor_type=actor.type,
            actor_id=actor.id,
            effective_on=effective_on,
        )
        for p in postings
    ]
    session.add_all(entries)
    account.set_balances(after)
    audit.record(
        session,
        actor,
        f"ledger.{kind.value}",
        "account",
        account.id,
        before={"balances": before},
        after={"balances": after, "cause": cause},
    )
    return entries


@dataclass(frozen=True)
class Discrepancy:
    account_id: int
    cached: dict[Component, int]
    ledger: dict[Component, int]


def _component_sum(component: Component):  # type: ignore[no-untyped-def]
    return func.coalesce(
        func.sum(case((LedgerEntry.component == component.value, LedgerEntry.amount), else_=0)), 0
    )


def discrepancies(session: Session) -> list[Discrepancy]:
    """Every account whose cached balance differs from the sum of its ledger (one query)."""
    sums = (
        select(
            LedgerEntry.account_id.label("account_id"),
            _component_sum(Component.PRINCIPAL).label("principal"),
            _component_sum(Component.INTEREST).label("interest"),
            _component_sum(Component.FEES).label("fees"),
        )
        .group_by(LedgerEntry.account_id)
        .subquery()
    )
    principal = func.coalesce(sums.c.principal, 0)
    interest = func.coalesce(sums.c.interest, 0)
    fees = func.coalesce(sums.c.fees, 0)
    stmt = (
        select(
            Account.id,
            Account.principal_balance,
            Account.interest_balance,
            Account.fees_balance,
            principal,
            interest,
            fees,
        )
        .outerjoin(sums, sums.c.account_id == Account.id)
        .where(
            or_(
                Account.principal_balance != principal,
                Account.interest_balance != interest,
                Account.fees_balance != fees,
            )
        )
        .order_by(Account.id)
    )
    comps = (Component.PRINCIPAL, Component.INTEREST, Component.FEES)
    return [
        Discrepancy(
            account_id=row[0],
            cached=dict(zip(comps, row[1:4], strict=True)),
            ledger=dict(zip(comps, row[4:7], strict=True)),
        )
        for row in session.execute(stmt)
    ]


@dataclass(frozen=True)
class CreditDiscrepancy:
    account_id: int
    cached: int
    entries: int


def credit_discrepancies(session: Session) -> list[CreditDiscrepancy]:
    """Every account whose credit balance differs from the sum of its credit entries."""
    sums = (
        select(CreditEntry.account_id.label("account_id"), func.sum(CreditEntry.amount).label("total"))
        .group_by(CreditEntry.account_id)
        .subquery()
    )
    total = func.coalesce(sums.c.total, 0)
    stmt = (
        select(Account.id, Account.credit_balance, total)
        .outerjoin(sums, sums.c.account_id == Account.id)
        .where(Account.credit_balance != total)
        .order_by(Account.id)
    )
    return [CreditDiscrepancy(row[0], row[1], row[2]) for row in session.execute(stmt)]
