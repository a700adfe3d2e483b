"""Accounts (one debt each) and the append-only ledger that alone changes their balances."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Index, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.db import Base, utcnow
from portal.models._types import BigId, one_of
from workflows.ledger import EntryKind
from workflows.money import CURRENCY_EXPONENTS, Component
from workflows.policy import Stage

if TYPE_CHECKING:
    from portal.models.parties import Borrower, Creditor

PRODUCT_TYPES = ("loan", "credit_card")
ACCOUNT_STATUSES = ("open", "closed", "recalled")
ACTOR_TYPES = ("staff", "borrower", "system")


class Account(Base):
    __tablename__ = "account"
    __table_args__ = (
        UniqueConstraint("creditor_id", "external_reference"),
        one_of("product_type", PRODUCT_TYPES, "product_type"),
        one_of("status", ACCOUNT_STATUSES, "status"),
        one_of("stage", [s.value for s in Stage], "stage"),
        one_of("currency", sorted(CURRENCY_EXPONENTS), "currency"),
        CheckConstraint("principal_balance >= 0", name="principal_not_negative"),
        CheckConstraint("interest_balance >= 0", name="interest_not_negative"),
        CheckConstraint("fees_balance >= 0", name="fees_not_negative"),
        CheckConstraint("credit_balance >= 0", name="credit_not_negative"),
        CheckConstraint("dpd >= 0", name="dpd_not_negative"),
        CheckConstraint("overdue_amount >= 0", name="overdue_not_negative"),
        CheckConstraint("next_due_amount >= 0", name="next_due_not_negative"),
        CheckConstraint("annual_rate_bp >= 0", name="rate_not_negative"),
        Index("ix_account_stage_oldest_unpaid", "stage", "oldest_unpaid_due_on"),
        # Pages filled to half: the daily run's UPDATE of every row stays heap-only (migration e5f2a8b1c4d6).
        {"postgresql_with": {"fillfactor": 50}},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    creditor_id: Mapped[int] = mapped_column(ForeignKey("creditor.id"))
    borrower_id: Mapped[int] = mapped_column(ForeignKey("borrower.id"), index=True)
    external_reference: Mapped[str] = mapped_column(String(64), index=True)
    product_type: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    # Basis points: 1850 is 18.50 % a year. An integer, like every amount.
    annual_rate_bp: Mapped[int]
    opened_on: Mapped[dt.date] = mapped_column(Date)
    oldest_unpaid_due_on: Mapped[dt.date | None] = mapped_column(Date)
    # From the lender's schedule: the part of the balance past its due date, and the next
    # instalment. They classify the balance; only ledger entries change it.
    overdue_amount: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    next_due_on: Mapped[dt.date | None] = mapped_column(Date)
    next_due_amount: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Cached sums of the ledger, per component; `flask ledger verify` proves them.
    principal_balance: Mapped[int] = mapped_column(BigInteger, default=0)
    interest_balance: Mapped[int] = mapped_column(BigInteger, default=0)
    fees_balance: Mapped[int] = mapped_column(BigInteger, default=0)
    # Held for the borrower beyond the whole debt (an over-payment); the sum of its credit entries.
    credit_balance: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The balance date of the last placement applied (a file stating an older one is refused).
    placed_as_of: Mapped[dt.date | None] = mapped_column(Date)
    recalled_at: Mapped[dt.datetime | None]
    dpd: Mapped[int] = mapped_column(default=0)
    stage: Mapped[str] = mapped_column(String(16), default=Stage.CURRENT.value)
    status: Mapped[str] = mapped_column(String(16), default="open")
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __mapper_args__ = {"version_id_col": version}

    creditor: Mapped[Creditor] = relationship()
    borrower: Mapped[Borrower] = relationship(back_populates="accounts")

    def balances(self) -> dict[Component, int]:
        return {
            Component.PRINCIPAL: self.principal_balance,
            Component.INTEREST: self.interest_balance,
            Component.FEES: self.fees_balance,
        }

    def set_balances(self, balances: dict[Component, int]) -> None:
        self.principal_balance = balances[Component.PRINCIPAL]
        self.interest_balance = balances[Component.INTEREST]
        self.fees_balance = balances[Component.FEES]

    @property
    def total_balance(self) -> int:
        return self.principal_balance + self.interest_balance + self.fees_balance


# Borrowers sign in with an account reference typed in any case (services/borrower_signin.py).
Index("ix_account_reference_upper", func.upper(Account.external_reference))


class LedgerEntry(Base):
    """One signed amount on one component. Rows are inserted, never updated or deleted."""

    __tablename__ = "ledger_entry"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        one_of("component", [c.value for c in Component], "component"),
        one_of("kind", [k.value for k in EntryKind], "kind"),
        one_of("actor_type", ACTOR_TYPES, "actor_type"),
        Index("ix_ledger_entry_statement", "account_id", "effective_on", "id"),
        Index("ix_ledger_entry_effective_on", "effective_on"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    component: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    # What caused it, as "<type>:<id>" (e.g. "placement:LN-1", "payment:pi_…", "demo:seed").
    cause: Mapped[str] = mapped_column(String(120))
    memo: Mapped[str | None] = mapped_column(String(200))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None]
    effective_on: Mapped[dt.date] = mapped_column(Date)
    posted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    account: Mapped[Account] = relationship()
