"""What a lender reads and does through the API, for its own creditor only: the status of its
accounts, the events since a cursor, placing accounts and recalling one.

An account's status is one JSON shape (``status_json``): balances by component, delinquency, the
lender's next due instalment, the newest repayment plan and the last payment received; amounts are
integers in minor units of the account's currency. Pages are read set-based: one query per kind of
row for the whole page, never one per account.

Placing and recalling run as the system (``Actor("system")``); which token asked is recorded in an
audit event (``after`` carries ``{"api_token": prefix}``) written in the same transaction as the
change, so a refused or failed request leaves neither.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload, selectinload

from portal.models import Account, ApiToken, Payment, Plan
from portal.models.placements import PlacementImport
from portal.services import audit, integration_events, placements
from portal.services.audit import SYSTEM
from portal.services.placements import RowOutcome
from workflows.errors import DomainError

PAYMENT_STATES = ("succeeded", "partially_reversed", "reversed")
"""A received payment as the lender sees it: kept whole, partly or wholly given back (refunds and
chargebacks less chargebacks won)."""


@dataclass(frozen=True)
class Page:
    """One page of a list: its items, the cursor value of its last item, and whether more follow."""

    items: list[dict[str, Any]]
    last: int | None
    has_more: bool


def _utc(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _day(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _plan_json(plan: Plan | None) -> dict[str, Any] | None:
    if plan is None:
        return None
    unpaid = [row for row in plan.instalments if row.status != "paid"]
    following = unpaid[0] if unpaid and plan.status == "active" else None
    return {
        "status": plan.status,
        "instalments_total": len(plan.instalments),
        "instalments_paid": sum(1 for row in plan.instalments if row.status == "paid"),
        "next_instalment": (
            {"due_on": following.due_on.isoformat(), "amount": following.outstanding}
            if following is not None
            else None
        ),
    }


def _payment_json(payment: Payment | None) -> dict[str, Any] | None:
    if payment is None:
        return None
    if payment.reversed_amount == 0:
        state = "succeeded"
    elif payment.reversed_amount < payment.amount:
        state = "partially_reversed"
    else:
        state = "reversed"
    return {
        "amount": payment.amount,
        "currency": payment.currency,
        "received_on": _day(payment.received_on),
        "status": state,
        "reversed_amount": payment.reversed_amount,
    }


def status_json(account: Account, plan: Plan | None, payment: Payment | None) -> dict[str, Any]:
    """The public shape of an account's status."""
    return {
        "account_reference": account.external_reference,
        "borrower_reference": account.borrower.external_reference,
        "status": account.status,
        "currency": account.currency,
        "balances": {
            "principal": account.principal_balance,
            "interest": account.interest_balance,
            "fees": account.fees_balance,
            "total": account.total_balance,
            "credit": account.credit_balance,
        },
        "overdue_amount": account.overdue_amount,
        "days_past_due": account.dpd,
        "stage": account.stage,
        "next_due": (
            {"on": account.next_due_on.isoformat(), "amount": account.next_due_amount}
            if account.next_due_on is not None
            else None
        ),
        "plan": _plan_json(plan),
        "last_payment": _payment_json(payment),
        "placed_as_of": _day(account.placed_as_of),
        "recalled_at": _utc(account.recalled_at),
    }


def _statuses(session: Session, accounts: Sequence[Account]) -> list[dict[str, Any]]:
    """The statuses of ``accounts``: the newest plan and the last payment received of each, in two
    queries for them all."""
    ids = [account.id for account in accounts]
    if not ids:
        return []
    newest = select(func.max(Plan.id)).where(Plan.account_id.in_(ids)).group_by(Plan.account_id)
    plans = {
        plan.account_id: plan
        for plan in session.scalars(
            select(Plan).where(Plan.id.in_(newest)).options(selectinload(Plan.instalments))
        )
    }
    ranked = (
        select(
            Payment.id,
            func.row_number()
            .over(
                partition_by=Payment.account_id,
                order_by=(Payment.recorded_at.desc(), Payment.id.desc()),
            )
            .label("rank"),
        )
        .where(Payment.account_id.in_(ids), Payment.status == "succeeded")
        .subquery()
    )
    payments = {
        payment.account_id: payment
        for payment in session.scalars(
            select(Payment).join(ranked, ranked.c.id == Payment.id).where(ranked.c.rank == 1)
        )
    }
    return [status_json(a, plans.get(a.id), payments.get(a.id)) for a in accounts]


def account_status(session: Session, creditor_id: int, account_reference: str) -> dict[str, Any]:
    """The status of the creditor's account with this reference; ``account_unknown`` when the
    creditor has none (another creditor's account with the same reference is just as unknown)."""
    account = session.scalar(
        select(Account)
        .options(joinedload(Account.borrower))
        .where(Account.creditor_id == creditor_id, Account.external_reference == account_reference)
    )
    if account is None:
        raise DomainError(
            "account_unknown",
            "This lender has no account {reference}.",
            reference=account_reference[:64],
        )
    return _statuses(session, [account])[0]


def account_page(session: Session, creditor_id: int, *, after_id: int, limit: int) -> Page:
    """The creditor's accounts after id ``after_id``, in id order, at most ``limit``: accounts
    placed while a lender pages come at the end, so paging neither skips nor repeats one."""
    accounts = list(
        session.scalars(
            select(Account)
            .options(joinedload(Account.borrower))
            .where(Account.creditor_id == creditor_id, Account.id > after_id)
            .order_by(Account.id)
            .limit(limit + 1)
        )
    )
    shown = accounts[:limit]
    return Page(_statuses(session, shown), shown[-1].id if shown else None, len(accounts) > limit)


def event_page(
    session: Session, creditor_id: int, *, after: int, limit: int, types: tuple[str, ...] | None
) -> Page:
    """The creditor's events after ``seq`` ``after``, oldest first, at most ``limit``.

    Events committed since the last read are numbered first (``integration_events.sequence``, which
    commits), so a reader sees each event once, in commit order, whatever it pages with."""
    integration_events.sequence(session)
    events = integration_events.since(session, creditor_id, after, limit + 1, types)
    shown = events[:limit]
    return Page(
        [integration_events.event_json(event) for event in shown],
        shown[-1].seq if shown else None,
        len(events) > limit,
    )


def place(
    session: Session, token: ApiToken, accounts: Sequence[Mapping[str, object]], *, today: dt.date
) -> tuple[PlacementImport, list[RowOutcome]]:
    """Place the token's creditor's accounts, all or nothing (``placements.apply_rows``; raises
    ``PlacementRefused`` listing every problem). Commits."""
    audit.record(
        session,
        SYSTEM,
        "api.placements",
        "api_token",
        token.id,
        after={"api_token": token.prefix, "accounts": len(accounts)},
    )
    return placements.apply_rows(
        session, creditor_id=token.creditor_id, rows=accounts, actor=SYSTEM, today=today
    )


def recall(session: Session, token: ApiToken, account_reference: str, reason: str | None) -> dict[str, Any]:
    """Recall the token's creditor's account (``placements.recall``: idempotent; ``account_unknown``)
    and return its status. Commits."""
    audit.record(
        session,
        SYSTEM,
        "api.recall",
        "api_token",
        token.id,
        after={"api_token": token.prefix, "account_reference": account_reference[:64]},
    )
    creditor_id = token.creditor_id
    placements.recall(
        session, creditor_id=creditor_id, account_reference=account_reference, actor=SYSTEM, reason=reason
    )
    return account_status(session, creditor_id, account_reference)
