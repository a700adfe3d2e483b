"""Placements: a lender's rows read from files and the API, and the ledger entries they make."""

from __future__ import annotations

import datetime as dt
import json
import sys
import unicodedata
from dataclasses import fields, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.errors import DomainError
from workflows.ledger import EntryKind, Posting, apply_postings
from workflows.money import CURRENCY_EXPONENTS, Component, parse_amount, parse_rate_bp, plain_amount
from workflows.placements import (
    COLUMNS,
    CONTROL_CHARACTERS,
    JSON_FIELDS,
    WHITE_SPACE,
    FieldError,
    PlacedState,
    PlacementRow,
    check_header,
    parse_json_row,
    parse_text_row,
    plan_change,
)

TODAY = dt.date(2026, 3, 2)
P, INT, F = Component.PRINCIPAL, Component.INTEREST, Component.FEES

# A valid row of a file: a person in China, 1234.50 yuan of principal, 300 of it overdue.
TEXT_ROW: dict[str, str] = {
    "account_reference": "LN-2024/0001",
    "borrower_reference": "C-88",
    "full_name": "王小明",
    "date_of_birth": "1985-06-01",
    "phone": "138 0013 8000",
    "product_type": "loan",
    "currency": "CNY",
    "annual_rate": "18.5",
    "opened_on": "2024-01-15",
    "balance_date": "2026-02-28",
    "principal": "1234.50",
    "interest": "100",
    "fees": "0.50",
    "total": "1335.00",
    "overdue_amount": "300",
    "oldest_unpaid_due_on": "2026-01-15",
}

# The same row as the API sends it.
JSON_ROW: dict[str, object] = {
    "account_reference": "LN-2024/0001",
    "borrower_reference": "C-88",
    "full_name": "王小明",
    "date_of_birth": "1985-06-01",
    "phone": "+8613800138000",
    "product_type": "loan",
    "currency": "CNY",
    "annual_rate_bp": 1850,
    "opened_on": "2024-01-15",
    "balance_date": "2026-02-28",
    "principal": 123450,
    "interest": 10000,
    "fees": 50,
    "overdue_amount": 30000,
    "oldest_unpaid_due_on": "2026-01-15",
}


def text_row(**changes: str | None) -> dict[str, str]:
    """The valid file row with some cells changed (None: the column is left out)."""
    row = dict(TEXT_ROW)
    for name, value in changes.items():
        if value is None:
            row.pop(name, None)
        else:
            row[name] = value
    return row


def json_row(**changes: object) -> dict[str, object]:
    return JSON_ROW | changes


def read(values: dict[str, str]) -> PlacementRow:
    result = parse_text_row(values, today=TODAY)
    assert isinstance(result, PlacementRow), [error.text() for error in result]
    return result


def read_json(values: dict[str, object]) -> PlacementRow:
    result = parse_json_row(values, today=TODAY)
    assert isinstance(result, PlacementRow), [error.text() for error in result]
    return result


def refusals(result: PlacementRow | list[FieldError]) -> list[tuple[str, str]]:
    """(column, code) of each error, in the order given."""
    assert isinstance(result, list), result
    assert result, "a refused row lists at least one error"
    return [(error.column, error.code) for error in result]


def placed(**changes: object) -> PlacementRow:
    row = read(TEXT_ROW)
    return replace(row, **changes)  # type: ignore[arg-type]


# --- Columns -------------------------------------------------------------------------------------


def test_columns_come_in_the_agreed_order() -> None:
    assert [column.name for column in COLUMNS] == [
        "account_reference",
        "borrower_reference",
        "borrower_kind",
        "full_name",
        "company_name",
        "registration_number",
        "date_of_birth",
        "national_id",
        "phone",
        "email",
        "language",
        "country",
        "time_zone",
        "address_line1",
        "address_line2",
        "city",
        "region",
        "postal_code",
        "product_type",
        "currency",
        "annual_rate",
        "opened_on",
        "balance_date",
        "principal",
        "interest",
        "fees",
        "total",
        "overdue_amount",
        "oldest_unpaid_due_on",
        "next_due_on",
        "next_due_amount",
    ]


def test_json_fields_are_the_columns_with_the_rate_in_basis_points_and_the_total_optional() -> None:
    file_names = [column.name for column in COLUMNS]
    json_names = [column.name for column in JSON_FIELDS]
    assert json_names == [name if name != "annual_rate" else "annual_rate_bp" for name in file_names]
    required = {column.name for column in COLUMNS if column.required}
    assert required == {
        "account_reference",
        "borrower_reference",
        "full_name",
        "product_type",
        "currency",
        "annual_rate",
        "opened_on",
        "balance_date",
        "principal",
        "interest",
        "fees",
        "total",
    }
    json_required = {column.name for column in JSON_FIELDS if column.required}
    assert json_required == (required - {"annual_rate", "total"}) | {"annual_rate_bp"}
    assert all(column.description for column in JSON_FIELDS)
    kinds = {column.name: column.kind for column in JSON_FIELDS}
    assert kinds["principal"] == "money"
    assert kinds["annual_rate_bp"] == "rate_bp"
    assert {c.name: c.choices for c in COLUMNS if c.kind == "choice"} == {
        "borrower_kind": ("person", "business"),
        "language": ("zh_Hans_CN", "en"),
        "product_type": ("loan", "credit_card"),
    }


# --- Reading a valid row -------------------------------------------------------------------------


def test_a_file_row_is_read_with_its_defaults_and_amounts_in_minor_units() -> None:
    row = read(TEXT_ROW)
    assert row.account_reference == "LN-2024/0001"
    assert row.borrower_kind == "person"
    assert row.language == "zh_Hans_CN"
    assert row.country == "CN"
    assert row.time_zone == "Asia/Shanghai"
    assert row.phone == "+8613800138000"
    assert row.email is None
    assert row.company_name is None
    assert row.annual_rate_bp == 1850
    assert (row.principal, row.interest, row.fees) == (123450, 10000, 50)
    assert row.total == 133500
    assert row.balances() == {P: 123450, INT: 10000, F: 50}
    assert row.overdue_amount == 30000
    assert row.oldest_unpaid_due_on == dt.date(2026, 1, 15)
    assert (row.next_due_on, row.next_due_amount) == (None, 0)


def test_the_same_row_from_the_api_reads_the_same() -> None:
    assert read_json(JSON_ROW) == read(TEXT_ROW)


def test_cells_are_stripped_and_empty_cells_are_no_value() -> None:
    row = read(text_row(full_name="  王小明 \t", email="", city="   ", phone=" 13800138000 "))
    assert row.full_name == "王小明"
    assert row.email is None
    assert row.city is None
    assert row.phone == "+8613800138000"


def test_column_names_in_a_row_are_compared_stripped_and_in_lower_case() -> None:
    values = {f" {name.upper()} ": value for name, value in TEXT_ROW.items()}
    assert read(values) == read(TEXT_ROW)


def test_borrower_and_account_fields_name_the_model_columns() -> None:
    row = read(text_row(email="Wang@Example.COM", city="上海"))
    assert row.borrower_fields() == {
        "kind": "person",
        "full_name": "王小明",
        "company_name": None,
        "registration_number": None,
        "date_of_birth": dt.date(1985, 6, 1),
        "national_id": None,
        "phone": "+8613800138000",
        "email": "Wang@example.com",
        "language": "zh_Hans_CN",
        "country": "CN",
        "time_zone": "Asia/Shanghai",
        "address_line1": None,
        "address_line2": None,
        "city": "上海",
        "region": None,
        "postal_code": None,
    }
    assert row.account_fields() == {
        "product_type": "loan",
        "annual_rate_bp": 1850,
        "opened_on": dt.date(2024, 1, 15),
        "overdue_amount": 30000,
        "oldest_unpaid_due_on": dt.date(2026, 1, 15),
        "next_due_on": None,
        "next_due_amount": 0,
    }


def test_a_business_needs_its_company_name_and_may_go_without_a_date_of_birth() -> None:
    row = read(
        text_row(
            borrower_kind="Business",
            company_name="上海某某贸易有限公司",
            registration_number="91310000MA1FL0000X",
            date_of_birth="",
        )
    )
    assert row.borrower_kind == "business"
    assert row.company_name == "上海某某贸易有限公司"
    assert row.date_of_birth is None


def test_a_row_without_overdue_needs_no_oldest_unpaid_date_and_may_give_the_next_instalment() -> None:
    row = read(
        text_row(
            overdue_amount="",
            oldest_unpaid_due_on="",
            next_due_on="2026-03-15",
            next_due_amount="500",
            product_type="CREDIT_CARD",
        )
    )
    assert row.overdue_amount == 0
    assert row.oldest_unpaid_due_on is None
    assert (row.next_due_on, row.next_due_amount) == (dt.date(2026, 3, 15), 50000)
    assert row.product_type == "credit_card"


# --- Normalisation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "country", "stored"),
    [
        ("+86 138 0013 8000", "CN", "+8613800138000"),
        ("+86-138-0013-8000", "CN", "+8613800138000"),
        ("13800138000", "CN", "+8613800138000"),
        ("138.0013.8000", "CN", "+8613800138000"),
        ("0086 138 0013 8000", "CN", "+8613800138000"),
        ("+852 9123 4567", "HK", "+85291234567"),
        ("00852 9123 4567", "CN", "+85291234567"),
        ("+1 (212) 555-0123", "US", "+12125550123"),
        ("+44 20 7946 0958", "GB", "+442079460958"),
        ("+86 13800138000", "SG", "+8613800138000"),
    ],
)
def test_phones_are_stored_in_e164(typed: str, country: str, stored: str) -> None:
    time_zone = "" if country in {"CN", "HK", "US", "GB"} else "Asia/Singapore"
    assert read(text_row(phone=typed, country=country, time_zone=time_zone)).phone == stored


@pytest.mark.parametrize(
    ("typed", "country"),
    [
        ("12345", "CN"),
        ("23800138000", "CN"),  # 11 digits, but no Chinese mobile number starts with 2
        ("1380013800", "CN"),  # 10 digits
        ("13800138000", "HK"),  # a national number outside CN needs its country code
        ("+1234567", "CN"),  # 7 digits
        ("+1234567890123456", "CN"),  # 16 digits
        ("+0123456789", "CN"),  # no country code starts with 0
        ("+86 138 0013 800O", "CN"),
        ("tel:+8613800138000", "CN"),
        ("+86/13800138000", "CN"),
        ("１３８００１３８０００", "CN"),
        ("+", "CN"),
        ("+86 138 0013 8000 0000 0000 0000 00", "CN"),  # more than 32 characters
    ],
)
def test_what_is_not_a_phone_number_is_refused(typed: str, country: str) -> None:
    time_zone = "" if country in {"CN", "HK"} else "Asia/Singapore"
    result = parse_text_row(text_row(phone=typed, country=country, time_zone=time_zone), today=TODAY)
    assert refusals(result) == [("phone", "phone_invalid")]


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("wang@example.com", "wang@example.com"),
        ("Wang.Xiao+ming@Example.COM.cn", "Wang.Xiao+ming@example.com.cn"),
        (" a@b.co ", "a@b.co"),
    ],
)
def test_email_addresses_keep_their_local_part_and_get_a_lower_case_domain(typed: str, stored: str) -> None:
    assert read(text_row(email=typed)).email == stored


@pytest.mark.parametrize(
    "typed",
    [
        "wang",
        "wang@",
        "@example.com",
        "wang@example",
        "wang@@example.com",
        "a@b@example.com",
        "wang li@example.com",
        "wang@example..com",
        "wang@.example.com",
        "wang@example.com.",
    ],
)
def test_what_is_not_an_email_address_is_refused(typed: str) -> None:
    assert refusals(parse_text_row(text_row(email=typed), today=TODAY)) == [("email", "email_invalid")]


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("", "zh_Hans_CN"),
        ("zh_Hans_CN", "zh_Hans_CN"),
        ("zh", "zh_Hans_CN"),
        ("zh-CN", "zh_Hans_CN"),
        ("zh_CN", "zh_Hans_CN"),
        ("zh-Hans", "zh_Hans_CN"),
        ("en", "en"),
        ("EN", "en"),
        ("en-US", "en"),
        ("en_GB", "en"),
    ],
)
def test_language_aliases_are_read_as_the_two_languages_accord_speaks(typed: str, stored: str) -> None:
    assert read(text_row(language=typed)).language == stored


@pytest.mark.parametrize("typed", ["fr", "zh-TW", "zh_Hant", "english", "en-", "en_123"])
def test_a_language_accord_does_not_speak_is_refused(typed: str) -> None:
    assert refusals(parse_text_row(text_row(language=typed), today=TODAY)) == [("language", "choice_invalid")]


@pytest.mark.parametrize(
    ("country", "time_zone"),
    [
        ("", "Asia/Shanghai"),
        ("CN", "Asia/Shanghai"),
        ("cn", "Asia/Shanghai"),
        ("hk", "Asia/Hong_Kong"),
        ("US", "America/New_York"),
        ("Gb", "Europe/London"),
    ],
)
def test_the_country_is_upper_case_and_gives_the_default_time_zone(country: str, time_zone: str) -> None:
    row = read(text_row(country=country, phone="+8613800138000"))
    assert row.country == (country.upper() or "CN")
    assert row.time_zone == time_zone


def test_a_time_zone_given_wins_over_the_default_and_other_countries_need_one() -> None:
    row = read(text_row(country="CN", time_zone="Asia/Urumqi"))
    assert row.time_zone == "Asia/Urumqi"
    row = read(text_row(country="sg", time_zone="Asia/Singapore", phone="+65 6123 4567"))
    assert (row.country, row.time_zone, row.phone) == ("SG", "Asia/Singapore", "+6561234567")


@pytest.mark.parametrize(
    ("typed", "currency", "minor"),
    [
        ("1234.5", "CNY", 123450),
        ("1234.50", "CNY", 123450),
        ("1234", "CNY", 123400),
        (".5", "USD", 50),
        ("0", "CNY", 0),
        ("1234", "JPY", 1234),
        ("1.234", "KWD", 1234),
    ],
)
def test_file_amounts_are_read_in_major_units_into_minor_units(typed: str, currency: str, minor: int) -> None:
    row = read(
        text_row(
            currency=currency.lower(),
            principal=typed,
            interest="0",
            fees="0",
            total=typed,
            overdue_amount="0",
            oldest_unpaid_due_on="",
        )
    )
    assert (row.currency, row.principal, row.total) == (currency, minor, minor)


@given(st.from_regex(r"\d{0,20}(\.\d{0,4})?|[0-9.,٣²-]{1,8}", fullmatch=True).filter(str.strip))
def test_a_file_rate_reads_as_parse_rate_bp_reads_it(typed: str) -> None:
    """Plain rates are read by the row rules themselves: the same basis points, or the same refusal,
    as ``workflows.money.parse_rate_bp`` (then at most 100 %)."""
    result = parse_text_row(text_row(annual_rate=typed), today=TODAY)
    try:
        expected = parse_rate_bp(typed)
    except DomainError:
        expected = None
    if expected is None or expected > 10_000 or "," in typed:
        assert isinstance(result, list)
        assert [error.column for error in result][:1] == ["annual_rate"]
    else:
        assert isinstance(result, PlacementRow), [error.text() for error in result]
        assert result.annual_rate_bp == expected


@pytest.mark.parametrize(("typed", "bp"), [("18.5", 1850), ("0", 0), ("100", 10000), ("5.25", 525)])
def test_a_file_rate_in_percent_is_read_in_basis_points(typed: str, bp: int) -> None:
    assert read(text_row(annual_rate=typed)).annual_rate_bp == bp


# --- Refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "column", "code"),
    [
        ({"full_name": ""}, "full_name", "value_missing"),
        ({"account_reference": None}, "account_reference", "value_missing"),
        ({"total": "  "}, "total", "value_missing"),
        ({"full_name": "王" * 201}, "full_name", "too_long"),
        ({"postal_code": "1" * 21}, "postal_code", "too_long"),
        ({"account_reference": "A" * 65}, "account_reference", "too_long"),
        ({"email": "a" * 250 + "@b.cn"}, "email", "too_long"),
        ({"full_name": "王\x00小明"}, "full_name", "text_invalid"),
        ({"address_line1": "1 Road\nFlat 2"}, "address_line1", "text_invalid"),
        ({"account_reference": "LN 0001"}, "account_reference", "reference_invalid"),
        ({"borrower_reference": "客户1"}, "borrower_reference", "reference_invalid"),
        ({"account_reference": "LN#1"}, "account_reference", "reference_invalid"),
        ({"borrower_kind": "trust"}, "borrower_kind", "choice_invalid"),
        ({"product_type": "mortgage"}, "product_type", "choice_invalid"),
        ({"opened_on": "2024/01/15"}, "opened_on", "date_invalid"),
        ({"opened_on": "15-01-2024"}, "opened_on", "date_invalid"),
        ({"opened_on": "20240115"}, "opened_on", "date_invalid"),
        ({"opened_on": "2024-02-30"}, "opened_on", "date_invalid"),
        ({"opened_on": "2024-01-15T00:00"}, "opened_on", "date_invalid"),
        ({"date_of_birth": ""}, "date_of_birth", "date_of_birth_missing"),
        ({"date_of_birth": "2026-03-02"}, "date_of_birth", "date_of_birth_invalid"),
        ({"date_of_birth": "2030-01-01"}, "date_of_birth", "date_of_birth_invalid"),
        ({"date_of_birth": "1896-03-01"}, "date_of_birth", "date_of_birth_invalid"),
        ({"borrower_kind": "business"}, "company_name", "company_name_missing"),
        ({"phone": "", "email": ""}, "phone", "contact_missing"),
        ({"country": "XX"}, "country", "country_invalid"),
        ({"country": "CHN"}, "country", "country_invalid"),
        ({"country": "UK"}, "country", "country_invalid"),
        ({"country": "SG", "phone": "+6561234567"}, "time_zone", "time_zone_missing"),
        ({"time_zone": "Mars/Olympus"}, "time_zone", "time_zone_invalid"),
        ({"time_zone": "asia/shanghai"}, "time_zone", "time_zone_invalid"),
        ({"time_zone": "Asia"}, "time_zone", "time_zone_invalid"),
        ({"time_zone": "../../etc/passwd"}, "time_zone", "time_zone_invalid"),
        ({"time_zone": "/etc/localtime"}, "time_zone", "time_zone_invalid"),
        ({"time_zone": "zone.tab"}, "time_zone", "time_zone_invalid"),
        ({"currency": "RMB"}, "currency", "currency_invalid"),
        ({"annual_rate": "18.555"}, "annual_rate", "rate_invalid"),
        ({"annual_rate": "abc"}, "annual_rate", "rate_invalid"),
        ({"annual_rate": "18,5"}, "annual_rate", "rate_invalid"),
        ({"annual_rate": "-1"}, "annual_rate", "rate_invalid"),
        ({"annual_rate": "18.5%"}, "annual_rate", "rate_invalid"),
        ({"annual_rate": "100.01"}, "annual_rate", "rate_too_high"),
        ({"principal": "1,234.50"}, "principal", "amount_invalid"),
        ({"principal": "1234.50元"}, "principal", "amount_invalid"),
        ({"principal": "1e3"}, "principal", "amount_invalid"),
        ({"fees": "0.505"}, "fees", "amount_too_precise"),
        ({"interest": "-100"}, "interest", "amount_negative"),
        ({"total": "1335.01"}, "total", "total_mismatch"),
        ({"overdue_amount": "1335.01"}, "overdue_amount", "overdue_above_total"),
        ({"oldest_unpaid_due_on": ""}, "oldest_unpaid_due_on", "oldest_unpaid_missing"),
        ({"overdue_amount": "0"}, "oldest_unpaid_due_on", "oldest_unpaid_without_overdue"),
        ({"oldest_unpaid_due_on": "2026-03-01"}, "oldest_unpaid_due_on", "oldest_unpaid_after_balance_date"),
        ({"next_due_amount": "500"}, "next_due_on", "next_due_missing"),
        ({"opened_on": "2026-03-01"}, "opened_on", "opened_after_balance_date"),
        ({"balance_date": "2026-03-03"}, "balance_date", "balance_date_future"),
    ],
)
def test_each_broken_rule_is_reported_against_its_column(
    changes: dict[str, str | None], column: str, code: str
) -> None:
    result = parse_text_row(text_row(**changes), today=TODAY)
    assert refusals(result) == [(column, code)]
    (error,) = result
    assert isinstance(error, FieldError)
    assert "{" not in error.text(), error.text()
    json.dumps(error.params)  # params travel as JSON


def test_yen_amounts_with_decimals_are_refused() -> None:
    values = text_row(currency="JPY", principal="1234.5", interest="0", fees="0", total="1234.5")
    result = parse_text_row(values, today=TODAY)
    assert refusals(result) == [("principal", "amount_too_precise"), ("total", "amount_too_precise")]


def test_a_total_that_does_not_add_up_names_both_figures() -> None:
    result = parse_text_row(text_row(total="1300"), today=TODAY)
    assert isinstance(result, list)
    (error,) = result
    assert error.code == "total_mismatch"
    assert dict(error.params) == {"total": "1300.00", "expected": "1335.00", "currency": "CNY"}
    assert error.text() == "The total 1300.00 CNY is not principal + interest + fees: 1335.00 CNY."


def test_a_row_with_several_bad_cells_lists_them_all_in_column_order() -> None:
    values = text_row(
        total="9",
        account_reference="LN 1",
        email="nobody",
        currency="cny",
        opened_on="yesterday",
        borrower_kind="robot",
        full_name="",
        country="ZZ",
        balance_date="2027-01-01",
    )
    assert refusals(parse_text_row(values, today=TODAY)) == [
        ("account_reference", "reference_invalid"),
        ("borrower_kind", "choice_invalid"),
        ("full_name", "value_missing"),
        ("email", "email_invalid"),
        ("country", "country_invalid"),
        ("opened_on", "date_invalid"),
        ("balance_date", "balance_date_future"),
        ("total", "total_mismatch"),
    ]


def test_rules_across_fields_wait_for_the_fields_they_need() -> None:
    # An unknown currency: the amounts cannot be judged (beyond being no amount at all), so
    # neither can the total; an unknown country: a national phone number cannot be judged.
    values = text_row(currency="XXX", total="1", principal="0.555", fees="abc", country="ZZ")
    assert refusals(parse_text_row(values, today=TODAY)) == [
        ("country", "country_invalid"),
        ("currency", "currency_invalid"),
        ("fees", "amount_invalid"),
    ]
    # A refused e-mail address is not "no contact"; a refused balance date is not compared.
    values = text_row(phone="", email="nobody", balance_date="soon", opened_on="2026-03-01")
    assert refusals(parse_text_row(values, today=TODAY)) == [
        ("email", "email_invalid"),
        ("balance_date", "date_invalid"),
    ]


def test_an_international_phone_is_still_judged_when_the_country_is_refused() -> None:
    values = text_row(country="ZZ", phone="+12")
    assert refusals(parse_text_row(values, today=TODAY)) == [
        ("phone", "phone_invalid"),
        ("country", "country_invalid"),
    ]


def test_at_most_one_error_is_reported_per_column() -> None:
    # Overdue without a date is the first problem with oldest_unpaid_due_on; the date being
    # after the balance date would be a second one, and is not reported.
    values = text_row(overdue_amount="0", oldest_unpaid_due_on="2026-03-01")
    assert refusals(parse_text_row(values, today=TODAY)) == [
        ("oldest_unpaid_due_on", "oldest_unpaid_without_overdue")
    ]


def test_a_cell_that_is_not_text_is_refused_and_none_is_an_empty_cell() -> None:
    values: dict[str, object] = dict(text_row(fees="0"), interest=100, city=None)
    result = parse_text_row(values, today=TODAY)  # type: ignore[arg-type]
    assert refusals(result) == [("interest", "type_invalid")]


def test_columns_outside_the_placement_are_ignored_in_a_row() -> None:
    assert read(text_row(remarks="call after 6pm")) == read(TEXT_ROW)


# --- JSON rows -----------------------------------------------------------------------------------


def test_json_optional_fields_may_be_absent_or_null_and_the_total_is_checked_when_given() -> None:
    base = read_json(JSON_ROW)
    assert read_json(json_row(email=None, city=None, overdue_amount=30000)) == base
    assert read_json(json_row(total=133500)) == base
    result = parse_json_row(json_row(total=133501), today=TODAY)
    assert refusals(result) == [("total", "total_mismatch")]


@pytest.mark.parametrize(
    ("changes", "column", "code"),
    [
        ({"annual_rate": "18.5"}, "annual_rate", "unknown_field"),
        ({"nickname": "小明"}, "nickname", "unknown_field"),
        ({"full_name": 42}, "full_name", "type_invalid"),
        ({"principal": 1234.5}, "principal", "type_invalid"),
        ({"principal": 123450.0}, "principal", "type_invalid"),
        ({"principal": True}, "principal", "type_invalid"),
        ({"fees": False}, "fees", "type_invalid"),
        ({"interest": "10000"}, "interest", "type_invalid"),
        ({"annual_rate_bp": "1850"}, "annual_rate_bp", "type_invalid"),
        ({"annual_rate_bp": 18.5}, "annual_rate_bp", "type_invalid"),
        ({"opened_on": 20240115}, "opened_on", "type_invalid"),
        ({"phone": ["+8613800138000"]}, "phone", "type_invalid"),
        ({"annual_rate_bp": None}, "annual_rate_bp", "value_missing"),
        ({"annual_rate_bp": -1}, "annual_rate_bp", "rate_negative"),
        ({"annual_rate_bp": 10001}, "annual_rate_bp", "rate_too_high"),
        ({"principal": -1}, "principal", "amount_negative"),
        ({"principal": 10**18}, "principal", "amount_too_large"),
        ({"principal": None}, "principal", "value_missing"),
        ({"overdue_amount": 133501}, "overdue_amount", "overdue_above_total"),
        ({"currency": "jpy", "principal": 1}, "overdue_amount", "overdue_above_total"),
        ({"full_name": "  "}, "full_name", "value_missing"),
    ],
)
def test_json_rows_refuse_unknown_fields_and_wrong_types(
    changes: dict[str, object], column: str, code: str
) -> None:
    result = parse_json_row(json_row(**changes), today=TODAY)
    assert refusals(result) == [(column, code)]
    json.dumps([dict(error.params) for error in result])  # type: ignore[union-attr]


def test_json_type_errors_name_the_expected_type() -> None:
    result = parse_json_row(json_row(principal=True, full_name=7), today=TODAY)
    assert isinstance(result, list)
    assert [error.text() for error in result] == [
        "full_name must be a string.",
        "principal must be an integer.",
    ]


def test_unknown_json_fields_are_listed_after_the_known_ones() -> None:
    result = parse_json_row(json_row(zzz=1, principal=-5), today=TODAY)
    assert refusals(result) == [("principal", "amount_negative"), ("zzz", "unknown_field")]


def test_a_json_row_that_is_not_an_object_is_refused() -> None:
    result = parse_json_row(["not", "an", "object"], today=TODAY)  # type: ignore[arg-type]
    assert refusals(result) == [("", "type_invalid")]


def test_json_amounts_are_minor_units_whatever_the_currency() -> None:
    row = read_json(
        json_row(
            currency="jpy", principal=1234, interest=0, fees=0, overdue_amount=0, oldest_unpaid_due_on=None
        )
    )
    assert (row.currency, row.principal) == ("JPY", 1234)


# --- The header of a file ----------------------------------------------------------------------


def test_a_header_with_every_required_column_in_any_order_and_case_is_fine() -> None:
    required = [column.name for column in COLUMNS if column.required]
    assert check_header([f" {name.upper()} " for name in reversed(required)]) == []
    assert check_header([column.name for column in COLUMNS]) == []


def test_a_header_reports_unknown_duplicated_then_missing_columns() -> None:
    header = [column.name for column in COLUMNS if column.required and column.name != "fees"]
    header += ["Phone", "phone ", "remarks", "annual_rate_bp", ""]
    errors = check_header(header)
    assert [(error.column, error.code) for error in errors] == [
        ("phone", "column_duplicated"),
        ("remarks", "column_unknown"),
        ("annual_rate_bp", "column_unknown"),
        ("", "column_unknown"),
        ("fees", "column_missing"),
    ]
    assert errors[0].text() == "The column phone appears 2 times."
    assert errors[-1].text() == "The required column fees is missing."


def test_an_empty_header_misses_every_required_column() -> None:
    errors = check_header([])
    assert {error.code for error in errors} == {"column_missing"}
    assert [error.column for error in errors] == [column.name for column in COLUMNS if column.required]


def test_a_byte_order_mark_left_on_the_header_makes_the_first_column_unknown() -> None:
    header = ["\ufeffaccount_reference", *[c.name for c in COLUMNS if c.required][1:]]
    codes = [(error.column, error.code) for error in check_header(header)]
    assert codes == [("\ufeffaccount_reference", "column_unknown"), ("account_reference", "column_missing")]


# --- Errors as text ------------------------------------------------------------------------------


def test_field_error_text_fills_the_template_and_survives_a_bad_one() -> None:
    assert FieldError("total", "x", "{a} and {b}", {"a": 1, "b": "two"}).text() == "1 and two"
    assert FieldError("total", "x", "{missing}", {}).text() == "{missing}"
    assert FieldError("total", "x", "{0}", {}).text() == "{0}"
    assert FieldError("total", "x", "{a.b}", {"a": 1}).text() == "{a.b}"
    assert FieldError("total", "x", "{", {}).text() == "{"


# --- Applying a row: plan_change ------------------------------------------------------------------


def state(**changes: object) -> PlacedState:
    fields_: dict[str, object] = {
        "borrower_reference": "C-88",
        "currency": "CNY",
        "placed_as_of": dt.date(2026, 1, 31),
        "balances": {P: 100000, INT: 5000, F: 0},
        "ledger_as_of": {P: 100000, INT: 5000, F: 0},
    } | changes
    return PlacedState(**fields_)  # type: ignore[arg-type]


def test_a_new_account_opens_with_a_charge_interest_and_fee_entry() -> None:
    change = plan_change(placed(), None)
    assert change.postings == (
        (EntryKind.CHARGE, Posting(P, 123450)),
        (EntryKind.INTEREST, Posting(INT, 10000)),
        (EntryKind.FEE, Posting(F, 50)),
    )


def test_a_new_account_gets_no_entry_for_a_zero_component() -> None:
    change = plan_change(placed(interest=0, fees=0), None)
    assert change.postings == ((EntryKind.CHARGE, Posting(P, 123450)),)
    assert plan_change(placed(principal=0, interest=0, fees=0), None).postings == ()


def test_a_placement_adjusts_the_ledger_as_of_its_balance_date_and_keeps_later_entries() -> None:
    # As of 28 February Accord's ledger said 1000.00 + 50.00; a payment of 200.00 on 1 March
    # took the principal to 800.00. The lender states 1234.50 + 100.00 + 0.50 as of 28 February.
    before = state(balances={P: 80000, INT: 5000, F: 0}, ledger_as_of={P: 100000, INT: 5000, F: 0})
    change = plan_change(placed(), before)
    assert change.postings == (
        (EntryKind.ADJUSTMENT, Posting(P, 23450)),
        (EntryKind.ADJUSTMENT, Posting(INT, 5000)),
        (EntryKind.ADJUSTMENT, Posting(F, 50)),
    )
    after = apply_postings(before.balances, EntryKind.ADJUSTMENT, [p for _, p in change.postings])
    assert after == {P: 103450, INT: 10000, F: 50}  # the 200.00 payment is kept


def test_placing_the_same_row_again_changes_nothing() -> None:
    row = placed()
    same = state(placed_as_of=row.balance_date, balances=row.balances(), ledger_as_of=row.balances())
    assert plan_change(row, same).postings == ()


@pytest.mark.parametrize(
    ("changes", "code", "params"),
    [
        ({"currency": "USD"}, "currency_changed", {"was": "USD", "now": "CNY"}),
        ({"borrower_reference": "C-99"}, "borrower_changed", {"was": "C-99", "now": "C-88"}),
        (
            {"placed_as_of": dt.date(2026, 3, 1)},
            "balance_date_stale",
            {"placed_as_of": "2026-03-01", "balance_date": "2026-02-28"},
        ),
        ({"balances": {P: 0, INT: 0, F: 0}}, "balance_negative", {"component": P}),
    ],
)
def test_a_placement_cannot_change_the_account_behind_accords_back(
    changes: dict[str, object], code: str, params: dict[str, object]
) -> None:
    # balance_negative: the lender says less principal than Accord has already been paid since.
    row = placed(principal=50000)
    with pytest.raises(DomainError) as refused:
        plan_change(row, state(**changes))
    assert refused.value.code == code
    assert refused.value.params == params


def test_a_placement_on_the_same_balance_date_as_the_last_is_applied() -> None:
    row = placed()
    change = plan_change(row, state(placed_as_of=row.balance_date))
    assert change.postings


def test_an_account_never_placed_before_takes_any_balance_date() -> None:
    assert plan_change(placed(), state(placed_as_of=None)).postings


# --- Properties ----------------------------------------------------------------------------------

amounts = st.integers(min_value=0, max_value=10**12)
component_amounts = st.fixed_dictionaries(dict.fromkeys(Component, amounts))
currencies = st.sampled_from(sorted(CURRENCY_EXPONENTS))


@given(component_amounts, st.one_of(st.none(), st.tuples(component_amounts, component_amounts)))
def test_a_placement_brings_the_ledger_to_the_lenders_balances_and_is_idempotent(
    wanted: dict[Component, int], held: tuple[dict[Component, int], dict[Component, int]] | None
) -> None:
    row = placed(principal=wanted[P], interest=wanted[INT], fees=wanted[F])
    if held is None:
        before = None
        ledger_as_of: dict[Component, int] = dict.fromkeys(Component, 0)
        balances_now: dict[Component, int] = dict.fromkeys(Component, 0)
    else:
        ledger_as_of, balances_now = held
        before = state(balances=balances_now, ledger_as_of=ledger_as_of, placed_as_of=None)
    try:
        change = plan_change(row, before)
    except DomainError as refused:
        # Only when what Accord did after the balance date leaves a component below zero.
        assert refused.code == "balance_negative"
        assert any(balances_now[c] + wanted[c] - ledger_as_of[c] < 0 for c in Component)
        return
    assert all(posting.amount != 0 for _, posting in change.postings)
    assert len({posting.component for _, posting in change.postings}) == len(change.postings)
    as_of = dict(ledger_as_of)
    now = dict(balances_now)
    for kind, posting in change.postings:
        as_of = apply_postings(as_of, kind, [posting])
        now = apply_postings(now, kind, [posting])
    assert as_of == row.balances()
    assert all(amount >= 0 for amount in now.values())
    # What Accord did after the balance date (now - as_of) is kept.
    assert {c: now[c] - as_of[c] for c in Component} == {
        c: balances_now[c] - ledger_as_of[c] for c in Component
    }
    again = state(placed_as_of=row.balance_date, balances=now, ledger_as_of=as_of)
    assert plan_change(row, again).postings == ()


@given(amounts, amounts, amounts, currencies)
def test_file_amounts_read_back_exactly(principal: int, interest: int, fees: int, currency: str) -> None:
    def typed(amount: int) -> str:
        return plain_amount(amount, currency)

    values = text_row(
        currency=currency,
        principal=typed(principal),
        interest=typed(interest),
        fees=typed(fees),
        total=typed(principal + interest + fees),
        overdue_amount="",
        oldest_unpaid_due_on="",
        next_due_on="2026-03-31",
        next_due_amount=typed(fees),
    )
    row = read(values)
    assert (row.principal, row.interest, row.fees, row.next_due_amount) == (principal, interest, fees, fees)
    assert row.total == principal + interest + fees
    assert typed(row.principal) == values["principal"]


@given(st.from_regex(r"\d{0,20}(\.\d{0,4})?|[0-9.,٣²-]{1,8}", fullmatch=True).filter(str.strip), currencies)
def test_a_file_amount_reads_as_parse_amount_reads_it(typed: str, currency: str) -> None:
    """The row rules read plain amounts themselves (the common case, quickly): the same value, or
    the same refusal, as ``workflows.money.parse_amount`` (thousands separators aside: refused)."""
    result = parse_text_row(
        text_row(
            currency=currency,
            principal=typed,
            interest="0",
            fees="0",
            total=typed,
            overdue_amount="",
            oldest_unpaid_due_on="",
        ),
        today=TODAY,
    )
    try:
        expected = parse_amount(typed, currency)
    except DomainError as refusal:
        assert isinstance(result, list)
        assert [(error.column, error.code) for error in result][:1] == [("principal", refusal.code)]
        return
    if "," in typed:
        assert isinstance(result, list)
        assert [(error.column, error.code) for error in result][:1] == [("principal", "amount_invalid")]
    else:
        assert isinstance(result, PlacementRow), [error.text() for error in result]
        assert result.principal == expected


def test_control_characters_are_exactly_unicodes_control_and_surrogate_categories() -> None:
    """The refused characters of a cell are those of categories Cc and Cs, every code point."""
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        refused = unicodedata.category(char) in {"Cc", "Cs"}
        assert (CONTROL_CHARACTERS.search(char) is not None) == refused, hex(code)


def test_white_space_in_an_email_address_is_what_str_isspace_says_every_code_point() -> None:
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        assert (WHITE_SPACE.search(char) is not None) == char.isspace(), hex(code)


@given(amounts, amounts, amounts, currencies, st.integers(0, 10_000))
def test_a_file_row_and_its_json_twin_read_the_same(
    principal: int, interest: int, fees: int, currency: str, rate_bp: int
) -> None:
    text = text_row(
        currency=currency,
        annual_rate=plain_amount(rate_bp, "CNY"),
        principal=plain_amount(principal, currency),
        interest=plain_amount(interest, currency),
        fees=plain_amount(fees, currency),
        total=plain_amount(principal + interest + fees, currency),
        overdue_amount="",
        oldest_unpaid_due_on="",
    )
    twin = json_row(
        currency=currency,
        annual_rate_bp=rate_bp,
        principal=principal,
        interest=interest,
        fees=fees,
        overdue_amount=None,
        oldest_unpaid_due_on=None,
    )
    assert read(text) == read_json(twin)


_CELLS = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "", " ", "0", "-0", "1", "1.5", "0.001", "1,000", "1e3", "NaN", "９", "+", "00",
            "2026-02-29", "2024-02-29", "0000-01-01", "9999-12-31", "2026-03-02", "1896-03-02",
            "CN", "cn", "SG", "ZZ", "JPY", "KWD", "usd", "person", "business", "loan", "en-US",
            "Asia", "Asia/Shanghai", "../etc", "/etc/localtime", "a\x00b", "\ud800", "x" * 300,
            "+8613800138000", "13800138000", "a@b.c", "@", "10000", "100.01",
        ]
    ),
)  # fmt: skip


@given(st.dictionaries(st.sampled_from([c.name for c in COLUMNS]), _CELLS, max_size=40))
def test_a_file_row_never_raises_whatever_its_cells(changes: dict[str, str]) -> None:
    result = parse_text_row(text_row(**changes), today=TODAY)
    if isinstance(result, list):
        columns = [error.column for error in result]
        assert result and len(set(columns)) == len(columns)
        order = [c.name for c in COLUMNS]
        assert columns == sorted(columns, key=order.index)
        for error in result:
            assert error.text()
            json.dumps(dict(error.params))


_JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    _CELLS,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@given(
    st.dictionaries(
        st.one_of(st.sampled_from([c.name for c in JSON_FIELDS]), st.text(max_size=10)),
        _JSON_VALUES,
        max_size=40,
    )
)
def test_a_json_row_never_raises_whatever_its_values(changes: dict[str, object]) -> None:
    result = parse_json_row(json_row(**changes), today=TODAY)
    if isinstance(result, list):
        assert result
        for error in result:
            assert error.text()
            json.dumps(dict(error.params))


def test_a_placement_row_has_the_agreed_fields() -> None:
    assert [f.name for f in fields(PlacementRow)] == [
        "account_reference", "borrower_reference", "borrower_kind", "full_name", "company_name",
        "registration_number", "date_of_birth", "national_id", "phone", "email", "language", "country",
        "time_zone", "address_line1", "address_line2", "city", "region", "postal_code", "product_type",
        "currency", "annual_rate_bp", "opened_on", "balance_date", "principal", "interest", "fees",
        "overdue_amount", "oldest_unpaid_due_on", "next_due_on", "next_due_amount",
    ]  # fmt: skip


@pytest.mark.parametrize("born", ["15/03/1985", "1985-03-32", "2030-01-01"])
def test_a_refused_date_of_birth_is_not_repeated_in_the_report(born: str) -> None:
    """The reasons are stored in the import's report; a date of birth is personal data, so the
    reason names the column, never the value (the line finds it in the lender's file)."""
    result = parse_text_row(text_row(date_of_birth=born), today=TODAY)
    assert not isinstance(result, PlacementRow)
    [error] = [e for e in result if e.column == "date_of_birth"]
    assert born not in error.text() and born.replace("-", "") not in error.text()
    assert "date of birth" in error.text() or "date_of_birth" in error.text()
