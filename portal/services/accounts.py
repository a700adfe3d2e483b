"""What staff look up: accounts by reference, name or phone; an account's statement."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, func, or_, select, tuple_
from sqlalchemy.orm import Session, joinedload

from portal.models import Account, Borrower, LedgerEntry
from portal.services import audit
from portal.services.audit import Actor
from workflows.access import Permission, can
from workflows.errors import DomainError

SEARCH_LIMIT = 50
STATEMENT_PAGE = 50
MAX_QUERY = 100


def search(session: Session, query: str) -> list[Account]:
    """Accounts whose reference, borrower name or phone starts with ``query`` (at most 50)."""
    query = query.strip()
    if not query:
        return []
    if len(query) > MAX_QUERY:
        raise DomainError("query_too_long", "Search for at most {max} characters.", max=MAX_QUERY)
    pattern = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    conditions = [
        Account.external_reference.ilike(pattern, escape="\\"),
        Borrower.full_name.ilike(pattern, escape="\\"),
        Borrower.company_name.ilike(pattern, escape="\\"),
    ]
    digits = re.sub(r"[\s\-()]", "", query)
    if re.fullmatch(r"\+?\d{4,20}", digits):
        # Phones are stored in E.164; accept them typed with or without the country code.
        conditions.append(Borrower.phone.like(f"%{digits.lstrip('+')}"))
    stmt = (
        select(Account)
        .join(Account.borrower)
        .options(joinedload(Account.borrower))
        .where(or_(*conditions))
        .order_by(Account.external_reference)
        .limit(SEARCH_LIMIT)
    )
    return list(session.scalars(stmt))


def get_account(session: Session, account_id: int) -> Account | None:
    stmt = (
        select(Account)
        .options(joinedload(Account.borrower), joinedload(Account.creditor))
        .where(Account.id == account_id)
    )
    return session.scalar(stmt)


@dataclass(frozen=True)
class StatementLine:
    entry: Row[Any]  # id, effective_on, kind, component, amount, memo of a ledger entry
    balance_after: int  # the account's total balance right after this entry


@dataclass(frozen=True)
class Statement:
    lines: list[StatementLine]
    older_than: str | None  # the cursor for the next (older) page, if any


def parse_cursor(raw: str | None) -> tuple[dt.date, int] | None:
    """A statement cursor, "2026-01-31.1234" (effective date, entry id); anything else is no cursor."""
    date_part, _, id_part = (raw or "").partition(".")
    try:
        return dt.date.fromisoformat(date_part), int(id_part)
    except ValueError:
        return None


def statement(
    session: Session,
    account: Account,
    before: tuple[dt.date, int] | None = None,
    *,
    page: int | None = STATEMENT_PAGE,
) -> Statement:
    """The ledger newest first by effective date, with the running total balance, a page at a time
    (``page=None``: all of it, for a printed statement)."""
    order_key = tuple_(LedgerEntry.effective_on, LedgerEntry.id)
    # Plain rows, not ORM objects: a statement is read-only and this is the busiest staff page.
    stmt = select(
        LedgerEntry.id,
        LedgerEntry.effective_on,
        LedgerEntry.kind,
        LedgerEntry.component,
        LedgerEntry.amount,
        LedgerEntry.memo,
    ).where(LedgerEntry.account_id == account.id)
    newer = 0
    if before is not None:
        stmt = stmt.where(order_key < before)
        newer = (
            session.scalar(
                select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                    LedgerEntry.account_id == account.id, order_key >= before
                )
            )
            or 0
        )
    stmt = stmt.order_by(LedgerEntry.effective_on.desc(), LedgerEntry.id.desc())
    if page is not None:
        stmt = stmt.limit(page + 1)
    entries = list(session.execute(stmt))
    has_more = page is not None and len(entries) > page
    entries = entries[:page]
    balance = account.total_balance - newer
    lines = []
    for entry in entries:
        lines.append(StatementLine(entry, balance))
        balance -= entry.amount
    cursor = f"{entries[-1].effective_on.isoformat()}.{entries[-1].id}" if has_more else None
    return Statement(lines, cursor)


def reveal_personal_data(session: Session, actor: Actor, role: str, borrower_id: int) -> Borrower:
    """Show a borrower's unmasked personal data to a role allowed to see it, and audit it."""
    if not can(role, Permission.REVEAL_PERSONAL_DATA):
        raise DomainError("not_allowed", "Your role may not do this.")
    borrower = session.get(Borrower, borrower_id)
    if borrower is None:
        raise DomainError("borrower_not_found", "No such borrower.")
    audit.record(
        session,
        actor,
        "borrower.personal_data_revealed",
        "borrower",
        borrower.id,
        after={"fields": ["date_of_birth", "phone", "email", "national_id", "address"]},
    )
    session.commit()
    return borrower
