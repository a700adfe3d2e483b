"""What an audit event may hold of a person: a sensitive field as set or empty, never its value."""

from __future__ import annotations

import datetime as dt

from workflows.personal_data import REDACTED, SENSITIVE_FIELDS, redact


def test_a_sensitive_field_that_holds_something_is_redacted_and_an_empty_one_stays_empty() -> None:
    values = {"full_name": "张伟", "date_of_birth": dt.date(1985, 3, 15), "national_id": None}

    assert redact("borrower", values) == {"full_name": "张伟", "date_of_birth": REDACTED, "national_id": None}
    assert values["date_of_birth"] == dt.date(1985, 3, 15)  # the caller's values are left alone


def test_every_table_with_sensitive_fields_has_them_redacted() -> None:
    for table, fields in SENSITIVE_FIELDS.items():
        assert redact(table, dict.fromkeys(fields, "x")) == dict.fromkeys(fields, REDACTED)


def test_a_table_with_nothing_sensitive_gets_a_copy_of_its_values() -> None:
    values = {"external_reference": "LN-1001", "principal_balance": 1_000_000, "date_of_birth": "set"}

    copied = redact("account", values)

    assert copied == values and copied is not values
