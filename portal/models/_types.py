"""Column helpers shared by the models."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import BigInteger, CheckConstraint, Integer

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def one_of(column: str, values: Iterable[str], name: str) -> CheckConstraint:
    """A check constraint that ``column`` holds one of ``values`` (a known status, currency…)."""
    quoted = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({quoted})", name=name)
