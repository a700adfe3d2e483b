"""Test data, built through the same services the application uses."""

from __future__ import annotations

import datetime as dt
import itertools

import pyotp
from sqlalchemy.orm import Session

from portal.models import Account, Borrower, Creditor, StaffUser
from portal.services import ledger
from portal.services.audit import SYSTEM
from portal.services.staff import hash_password
from workflows.access import Role
from workflows.ledger import EntryKind, Posting
from workflows.money import Component

PASSWORD = "correct horse battery staple"
_seq = itertools.count(1)
_password_hash: str | None = None


def _hash() -> str:
    global _password_hash  # noqa: PLW0603 - argon2 is slow on purpose; hash the test password once
    if _password_hash is None:
        _password_hash = hash_password(PASSWORD)
    return _password_hash


def staff(session: Session, *, role: Role = Role.AGENT, enrolled: bool = True, **fields: object) -> StaffUser:
    n = next(_seq)
    user = StaffUser(
        email=f"staff{n}@test.accord.example",
        full_name=f"Staff {n}",
        role=role.value,
        password_hash=_hash(),
        totp_secret=pyotp.random_base32() if enrolled else None,
        totp_confirmed_at=dt.datetime.now(dt.UTC) if enrolled else None,
        **fields,
    )
    session.add(user)
    session.commit()
    return user


def creditor(session: Session) -> Creditor:
    n = next(_seq)
    row = Creditor(code=f"CR{n}", name=f"Creditor {n}")
    session.add(row)
    session.flush()
    return row


def borrower(session: Session, **fields: object) -> Borrower:
    n = next(_seq)
    values: dict[str, object] = {
        "full_name": f"张伟{n}",
        "date_of_birth": dt.date(1985, 3, 15),
        "national_id": f"11010119850315{n:04d}",
        "phone": f"+861381234{n:04d}",
        "email": f"borrower{n}@example.com",
        "address_line1": "人民路 1 号",
        "city": "上海",
        "postal_code": "200000",
    }
    values.update(fields)
    row = Borrower(**values)
    session.add(row)
    session.flush()
    return row


def account(
    session: Session,
    *,
    principal: int = 1_000_000,
    interest: int = 0,
    fees: int = 0,
    reference: str | None = None,
    owner: Borrower | None = None,
    currency: str = "CNY",
) -> Account:
    """An account whose balances were posted through the ledger service."""
    n = next(_seq)
    row = Account(
        creditor_id=creditor(session).id,
        borrower_id=(owner or borrower(session)).id,
        external_reference=reference or f"LN-T{n:06d}",
        product_type="loan",
        currency=currency,
        annual_rate_bp=1800,
        opened_on=dt.date(2025, 1, 15),
    )
    session.add(row)
    session.flush()
    for kind, component, amount in (
        (EntryKind.CHARGE, Component.PRINCIPAL, principal),
        (EntryKind.INTEREST, Component.INTEREST, interest),
        (EntryKind.FEE, Component.FEES, fees),
    ):
        if amount:
            ledger.post(
                session,
                row,
                kind,
                [Posting(component, amount)],
                cause="test",
                actor=SYSTEM,
                effective_on=dt.date(2025, 1, 15),
            )
    session.commit()
    return row
