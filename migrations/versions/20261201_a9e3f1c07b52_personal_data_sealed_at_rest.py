"""personal data sealed at rest: dates of birth, identity numbers, the hardship statement

Each sensitive column becomes bytes sealed with AES-256-GCM (portal/crypto.py): a new column is
added, every existing value is sealed into it with the current key of ACCORD_ENCRYPTION_KEYS (the
same keys the application will read with — outside production derived from the secret key), the
old column dropped and the new one renamed. Downgrade opens them again into plain columns.

budget_line.amount loses its database CHECK (amount >= 0): the database cannot read a sealed
value; workflows.affordability refuses a negative amount before it is stored.

Revision ID: a9e3f1c07b52
Revises: 7d41c2e9a5b3
Create Date: 2026-12-01 01:40:00
"""

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import sqlalchemy as sa
from alembic import op

from portal import crypto

revision: str = "a9e3f1c07b52"
down_revision: str | None = "7d41c2e9a5b3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _date_text(value: Any) -> bytes:
    # SQLite hands a DATE back as its text; PostgreSQL as a date.
    day = value if isinstance(value, date) else date.fromisoformat(str(value))
    return day.isoformat().encode()


# table, column, how a plain value becomes bytes, the plain type, nullable
COLUMNS: list[tuple[str, str, Callable[[Any], bytes], sa.types.TypeEngine[Any], bool]] = [
    ("borrower", "date_of_birth", _date_text, sa.Date(), True),
    ("borrower", "national_id", lambda v: str(v).encode(), sa.String(64), True),
    ("hardship_case", "description", lambda v: str(v).encode(), sa.Text(), True),
    ("budget_line", "amount", lambda v: str(int(v)).encode(), sa.BigInteger(), False),
    ("budget_line", "explanation", lambda v: str(v).encode(), sa.String(500), True),
]

FROM_BYTES: dict[str, Callable[[bytes], Any]] = {
    "date_of_birth": lambda b: date.fromisoformat(b.decode()),
    "amount": lambda b: int(b.decode()),
}


def _copy(
    table: str, column: str, new: str, convert: Callable[[Any], Any], value_type: sa.types.TypeEngine[Any]
) -> None:
    bind = op.get_bind()
    # Names from COLUMNS above, never from input.
    rows = bind.execute(sa.text(f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL")).all()  # noqa: S608
    if rows:
        bind.execute(
            sa.text(f"UPDATE {table} SET {new} = :value WHERE id = :id").bindparams(  # noqa: S608
                sa.bindparam("value", type_=value_type)
            ),
            [{"id": row_id, "value": convert(value)} for row_id, value in rows],
        )


def _replace(table: str, column: str, new_type: sa.types.TypeEngine[Any], nullable: bool) -> None:
    with op.batch_alter_table(table) as batch:
        batch.drop_column(column)
    with op.batch_alter_table(table) as batch:
        batch.alter_column(f"{column}_new", new_column_name=column, existing_type=new_type, nullable=nullable)


def upgrade() -> None:
    ring = crypto.keyring()
    with op.batch_alter_table("budget_line") as batch:
        batch.drop_constraint("amount_not_negative", type_="check")
    for table, column, to_bytes, _plain, nullable in COLUMNS:
        aad = f"{table}.{column}".encode()
        op.add_column(table, sa.Column(f"{column}_new", sa.LargeBinary(), nullable=True))
        seal = lambda value, f=to_bytes, a=aad: ring.seal(f(value), a)  # noqa: E731
        _copy(table, column, f"{column}_new", seal, sa.LargeBinary())
        _replace(table, column, sa.LargeBinary(), nullable)


def downgrade() -> None:
    ring = crypto.keyring()
    for table, column, _to_bytes, plain, nullable in reversed(COLUMNS):
        aad = f"{table}.{column}".encode()
        decode = FROM_BYTES.get(column, lambda b: b.decode())
        op.add_column(table, sa.Column(f"{column}_new", plain, nullable=True))
        unseal = lambda value, d=decode, a=aad: d(ring.open(bytes(value), a))  # noqa: E731
        _copy(table, column, f"{column}_new", unseal, plain)
        _replace(table, column, plain, nullable)
    with op.batch_alter_table("budget_line") as batch:
        batch.create_check_constraint("amount_not_negative", "amount >= 0")
