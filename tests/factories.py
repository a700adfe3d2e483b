"""Test data, built through the same services the application uses."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools

import pyotp
from sqlalchemy.orm import Session

from portal.integrations.storage import Storage
from portal.models import (
    Account,
    Borrower,
    BudgetLine,
    Creditor,
    EvidenceFile,
    HardshipCase,
    Offer,
    StaffUser,
)
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


def hardship_case(session: Session, account: Account, *, state: str = "offered") -> HardshipCase:
    """A request for help on ``account`` whose every step is saved, in ``state``."""
    row = HardshipCase(
        borrower_id=account.borrower_id,
        account_id=account.id,
        state=state,
        reason="job_loss",
        description="Made redundant.",
        adults=1,
        children=0,
        dependants=0,
        employment_status="unemployed",
        steps_done=["reason", "household", "income", "spending", "debts", "evidence"],
    )
    session.add(row)
    session.flush()
    session.add(BudgetLine(hardship_case_id=row.id, category="earnings", amount=600_000, frequency="monthly"))
    session.commit()
    return row


def evidence_file(session: Session, case: HardshipCase, storage: Storage | None = None) -> EvidenceFile:
    """A small PNG on the case; stored in ``storage`` when given (so it can be downloaded)."""
    data = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    key = storage.put(data, suffix=".png") if storage else f"{next(_seq):032x}.png"
    row = EvidenceFile(
        hardship_case_id=case.id,
        storage_key=key,
        display_name="payslip.png",
        kind="png",
        content_type="image/png",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    session.add(row)
    session.commit()
    return row


def offer(session: Session, case: HardshipCase, *, expires_in_days: int = 14) -> Offer:
    """An open system offer on the case: the arrears in three instalments."""
    today = dt.date.today()
    due = [today + dt.timedelta(days=30 * n) for n in (1, 2, 3)]
    row = Offer(
        hardship_case_id=case.id,
        origin="system",
        key="instalment_plan:3",
        status="open",
        currency=case.account.currency,
        instalment_amount=30_000,
        instalment_count=3,
        total_repayable=90_000,
        waived_total=0,
        first_due_on=due[0],
        expires_on=today + dt.timedelta(days=expires_in_days),
        terms={
            "reliefs": ["instalment_plan"],
            "scope": "arrears",
            "monthly_payment": 80_000,
            "total_saved": 0,
            "end_on": due[-1].isoformat(),
            "annual_rate_bp": 0,
            "interest_treatment": "contractual",
            "interest_frozen_months": 0,
            "fees_after": "none",
            "holiday_months": 0,
            "schedule": [
                {"number": n + 1, "due_on": d.isoformat(), "amount": 30_000} for n, d in enumerate(due)
            ],
        },
    )
    session.add(row)
    session.commit()
    return row
