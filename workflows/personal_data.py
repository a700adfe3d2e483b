"""Which data about a person is sensitive, and how it is kept out of places that must not hold it.

Sensitive fields (identity numbers, dates of birth, a household's income and expenditure, the
borrower's own account of their situation) are encrypted at rest (``portal.crypto``). They must
not be copied in plain text anywhere else either — above all into the audit trail: audit events
are append-only and hash-chained, so nothing written there can later be anonymised. An audit
event therefore records *that* such a field was set or changed, never its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

REDACTED = "[redacted]"
"""What an audit event holds in place of a sensitive value that was set."""

SENSITIVE_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "borrower": frozenset({"date_of_birth", "national_id"}),
        "hardship_case": frozenset({"description"}),
        "budget_line": frozenset({"amount", "explanation"}),
    }
)
"""By table: the columns held encrypted, whose values never enter an audit event."""


def redact(table: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with each sensitive field of ``table`` that holds something replaced by
    ``REDACTED`` (``None`` stays ``None``: that a field is empty is not personal data)."""
    sensitive = SENSITIVE_FIELDS.get(table)
    if sensitive is None:  # nothing of this table is sensitive: a copy (a placement's 100,000 accounts)
        return dict(values)
    return {
        name: (REDACTED if name in sensitive and value is not None else value)
        for name, value in values.items()
    }
