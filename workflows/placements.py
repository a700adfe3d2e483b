"""Placements: a lender (creditor) hands Accord a borrower's account with its balances.

Rows come from a file (CSV or XLSX: every cell is text, `parse_text_row`) or from the JSON API
(typed values, `parse_json_row`). One set of rules validates both; the columns, in order, are
`COLUMNS` (files) and `JSON_FIELDS` (the API: `annual_rate_bp` instead of `annual_rate`, money in
integer minor units, `total` optional).

Reading a row:

- Every cell is stripped of surrounding white space; an empty cell (or, in JSON, an absent key or
  ``null``) is *no value*: a required column then fails with `value_missing`, an optional one
  takes its default. Control characters inside a value are refused (`text_invalid`): they are
  never meant and PostgreSQL cannot store a NUL.
- A refused row lists ALL its problems, at most one per column, in column order (unknown JSON keys
  last). A rule that needs other fields (the total, the overdue date, the time zone default …) is
  checked only when those fields were read, so one mistake is reported once, where it is.
- References are 1 to 64 ASCII letters, digits and ``- _ . / :``. Choices and codes are read
  without regard to case (``LOAN``, ``cny``, ``cn``) and stored in their one spelling.
- Phones are stored in E.164 (``+8613800138000``): spaces, hyphens, dots and parentheses are
  ignored; ``+`` or the international prefix ``00`` then 8 to 15 digits (the first not 0); or, for
  a borrower in CN, an 11-digit mobile number starting with 1. E-mail addresses keep their local
  part and get a lower-case domain.
- A person needs a date of birth (they sign in with it), in the past and at most 130 years ago; a
  business needs its company name (`full_name` is then the person who acts for it). Every borrower
  needs a phone or an e-mail address.
- The time zone defaults from the country (CN, HK, US, GB); elsewhere it must be given, and it must
  be a time zone the system knows (``Asia/Shanghai``).
- Money is never negative. In a file it is written in major units with a dot and no thousands
  separator (``1234.50``), at most the currency's decimals; in JSON it is an integer of minor
  units (a bool or a float is refused). ``total`` must equal principal + interest + fees, the
  overdue amount may not exceed it, and an overdue amount needs the date of the oldest unpaid
  instalment (which is then on or before the balance date) while no overdue amount forbids one.
- Dates are ISO ``YYYY-MM-DD`` only. The balances are stated as of ``balance_date``, which is not in
  the future; the account was opened on or before it.

Applying a row (`plan_change`): a new account gets one opening entry per non-zero component
(a charge of principal, interest, a fee). An account already placed keeps its currency and its
borrower, and never goes back to an older balance date; the lender's balance as of that date
replaces what Accord's ledger said as of the same date, by one adjustment per component that
differs, so that what Accord did after it (payments taken, interest accrued) is kept. Placing the
same row again changes nothing.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from workflows.errors import DomainError
from workflows.ledger import EntryKind, Posting, apply_postings, check_posting
from workflows.money import (
    CURRENCY_EXPONENTS,
    MAX_AMOUNT_DIGITS,
    Component,
    parse_amount,
    parse_rate_bp,
    plain_amount,
)
from workflows.personal_data import SENSITIVE_FIELDS

# --- Columns -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of a placement file (or field of a JSON row): its name, whether a row must have a
    value in it, what kind of value it holds, a sentence for the lender, and the longest value.
    `choices` lists the accepted values of a ``choice`` column (their stored spelling)."""

    name: str
    required: bool
    kind: str
    description: str
    max_length: int | None
    choices: tuple[str, ...] = ()


BORROWER_KINDS = ("person", "business")
LANGUAGES = ("zh_Hans_CN", "en")
PRODUCT_TYPES = ("loan", "credit_card")
MAX_RATE_BP = 10_000
"""100 % a year, in basis points: the highest rate a placement may carry."""
MAX_AGE_YEARS = 130
REFERENCE_LENGTH = 64
MAX_JSON_AMOUNT = 10**MAX_AMOUNT_DIGITS - 1
"""The largest amount in minor units: the same 18 digits a typed amount may have."""

_MONEY_FILE = "in major units with a dot and at most the currency's decimals, no thousands separator"
_MONEY_JSON = "an integer of minor units (fen, cents)"


def _columns(*, json: bool) -> tuple[Column, ...]:
    money = _MONEY_JSON if json else _MONEY_FILE
    rate = (
        Column(
            "annual_rate_bp",
            True,
            "rate_bp",
            "The yearly interest rate in basis points, an integer from 0 to 10000 (1850 is 18.5 %).",
            None,
        )
        if json
        else Column(
            "annual_rate",
            True,
            "rate",
            "The yearly interest rate in percent with at most two decimals, from 0 to 100 (18.5).",
            None,
        )
    )
    return (
        Column(
            "account_reference",
            True,
            "reference",
            "The lender's account number: letters, digits and - _ . / :",
            REFERENCE_LENGTH,
        ),
        Column(
            "borrower_reference",
            True,
            "reference",
            "The lender's customer number; one borrower may have several accounts.",
            REFERENCE_LENGTH,
        ),
        Column(
            "borrower_kind",
            False,
            "choice",
            "person (the default) or business.",
            None,
            BORROWER_KINDS,
        ),
        Column(
            "full_name",
            True,
            "text",
            "The borrower's name; for a business, the person who acts for it.",
            200,
        ),
        Column("company_name", False, "text", "The business's name; required for a business.", 200),
        Column("registration_number", False, "text", "The business's registration number.", 64),
        Column(
            "date_of_birth",
            False,
            "date",
            "YYYY-MM-DD; required for a person, who signs in with it.",
            None,
        ),
        Column("national_id", False, "text", "The identity card or passport number.", 64),
        Column(
            "phone",
            False,
            "phone",
            "A mobile number with its country code (+8613800138000); for CN an 11-digit mobile "
            "number is enough. A phone or an e-mail address is required.",
            None,
        ),
        Column("email", False, "email", "An e-mail address.", 254),
        Column(
            "language",
            False,
            "choice",
            "zh_Hans_CN (the default) or en: the language Accord writes to the borrower in.",
            None,
            LANGUAGES,
        ),
        Column(
            "country",
            False,
            "country",
            "Two letters of ISO 3166 (CN, the default; HK, SG, US …).",
            None,
        ),
        Column(
            "time_zone",
            False,
            "time_zone",
            "The borrower's time zone (Asia/Shanghai); from the country when it is CN, HK, US or GB.",
            64,
        ),
        Column("address_line1", False, "text", "Address, first line.", 200),
        Column("address_line2", False, "text", "Address, second line.", 200),
        Column("city", False, "text", "City.", 100),
        Column("region", False, "text", "Province, state or region.", 100),
        Column("postal_code", False, "text", "Postal code.", 20),
        Column("product_type", True, "choice", "loan or credit_card.", None, PRODUCT_TYPES),
        Column(
            "currency",
            True,
            "currency",
            "The account's currency, three letters of ISO 4217 (CNY).",
            None,
        ),
        rate,
        Column("opened_on", True, "date", "YYYY-MM-DD: when the account was opened.", None),
        Column(
            "balance_date",
            True,
            "date",
            "YYYY-MM-DD: the day the balances are stated as of; not in the future.",
            None,
        ),
        Column("principal", True, "money", f"Principal owed, {money}.", None),
        Column("interest", True, "money", f"Interest owed, {money}.", None),
        Column("fees", True, "money", f"Fees owed, {money}.", None),
        Column(
            "total",
            not json,
            "money",
            f"principal + interest + fees, {money}"
            + (" (optional: checked when given)." if json else " (a check on the figures)."),
            None,
        ),
        Column(
            "overdue_amount",
            False,
            "money",
            f"The part of the balance past its due date (0 by default), {money}.",
            None,
        ),
        Column(
            "oldest_unpaid_due_on",
            False,
            "date",
            "YYYY-MM-DD: the due date of the oldest unpaid instalment; required when an amount is overdue.",
            None,
        ),
        Column("next_due_on", False, "date", "YYYY-MM-DD: the next instalment's due date.", None),
        Column(
            "next_due_amount",
            False,
            "money",
            f"The next instalment's amount (0 by default), {money}; needs next_due_on.",
            None,
        ),
    )


COLUMNS: tuple[Column, ...] = _columns(json=False)
"""The columns of a placement file, in order."""

JSON_FIELDS: tuple[Column, ...] = _columns(json=True)
"""The fields of a JSON placement row, in the same order."""

_FILE_COLUMNS = MappingProxyType({column.name: column for column in COLUMNS})
_FILE_COLUMN_NAMES = frozenset(_FILE_COLUMNS)
_JSON_COLUMNS = MappingProxyType({column.name: column for column in JSON_FIELDS})

_ISO_3166_ALPHA_2 = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
    BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
    EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
    HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
    LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
    NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
    TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
"""
COUNTRIES = frozenset(_ISO_3166_ALPHA_2.split())
"""ISO 3166-1 alpha-2: every officially assigned country code."""

DEFAULT_TIME_ZONES: Mapping[str, str] = MappingProxyType(
    {
        "CN": "Asia/Shanghai",
        "HK": "Asia/Hong_Kong",
        "US": "America/New_York",
        "GB": "Europe/London",
    }
)
"""The time zone a borrower of these countries gets when the row names none."""

_LANGUAGE_ALIASES = MappingProxyType(
    {
        "zh_hans_cn": "zh_Hans_CN",
        "zh_hans": "zh_Hans_CN",
        "zh_cn": "zh_Hans_CN",
        "zh": "zh_Hans_CN",
        "en": "en",
    }
)


# --- Errors of a row -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldError:
    """One problem with one column of a row (or of a file's header): a stable `code`, an English
    `message` with ``{placeholders}`` and the `params` that fill them (str and int only, so an
    error travels as JSON)."""

    column: str
    code: str
    message: str
    params: Mapping[str, object] = field(default_factory=dict)

    def text(self) -> str:
        """The message with its placeholders filled in; the bare template if they do not fit."""
        try:
            return self.message.format(**self.params)
        except (KeyError, IndexError, ValueError, AttributeError, TypeError):
            # A bad template must never hide the error it describes behind a formatting one.
            return self.message

    @classmethod
    def from_error(cls, column: str, error: DomainError) -> FieldError:
        """A rule's refusal reported against a column (params made JSON-safe: str or int)."""
        params = {
            name: value if isinstance(value, int) and not isinstance(value, bool) else str(value)
            for name, value in error.params.items()
        }
        return cls(column, error.code, error.message, params)


def _error(column: str, code: str, message: str, /, **params: object) -> FieldError:
    return FieldError.from_error(column, DomainError(code, message, **params))


# --- The row -------------------------------------------------------------------------------------


BORROWER_FIELDS = (
    "kind",
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
)
"""The Borrower columns a placement sets (``kind`` is the row's ``borrower_kind``)."""
ACCOUNT_FIELDS = (
    "product_type",
    "annual_rate_bp",
    "opened_on",
    "overdue_amount",
    "oldest_unpaid_due_on",
    "next_due_on",
    "next_due_amount",
)
"""The Account columns a placement sets besides its currency and balances."""


@dataclass(frozen=True)
class PlacementRow:
    """One valid placement row: the borrower, the account, and its balances as of `balance_date`
    (amounts in minor units of `currency`, rate in basis points)."""

    account_reference: str
    borrower_reference: str
    borrower_kind: str
    full_name: str
    company_name: str | None
    registration_number: str | None
    date_of_birth: dt.date | None
    national_id: str | None
    phone: str | None
    email: str | None
    language: str
    country: str
    time_zone: str
    address_line1: str | None
    address_line2: str | None
    city: str | None
    region: str | None
    postal_code: str | None
    product_type: str
    currency: str
    annual_rate_bp: int
    opened_on: dt.date
    balance_date: dt.date
    principal: int
    interest: int
    fees: int
    overdue_amount: int
    oldest_unpaid_due_on: dt.date | None
    next_due_on: dt.date | None
    next_due_amount: int

    def balances(self) -> dict[Component, int]:
        """The balance per component, as the lender states it on `balance_date`."""
        return {
            Component.PRINCIPAL: self.principal,
            Component.INTEREST: self.interest,
            Component.FEES: self.fees,
        }

    @property
    def total(self) -> int:
        """The whole balance: principal + interest + fees."""
        return self.principal + self.interest + self.fees

    def borrower_fields(self) -> dict[str, object]:
        """The Borrower model's columns (`BORROWER_FIELDS`) and their values."""
        return {name: getattr(self, "borrower_kind" if name == "kind" else name) for name in BORROWER_FIELDS}

    def account_fields(self) -> dict[str, object]:
        """The Account model's columns a placement sets (`ACCOUNT_FIELDS`: not the currency, which
        never changes, nor the balances, which only ledger entries move)."""
        return {name: getattr(self, name) for name in ACCOUNT_FIELDS}


# --- Reading values ------------------------------------------------------------------------------

_REFERENCE = re.compile(r"[A-Za-z0-9._/:-]{1,64}", re.ASCII)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_PHONE_SEPARATORS = re.compile(r"[\s\-.()]")
_DIGITS = re.compile(r"\d+", re.ASCII)
_TIME_ZONE = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*", re.ASCII)
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
WHITE_SPACE = re.compile(r"\s")
"""Any character ``str.isspace`` calls white space (the same Unicode property; a unit test checks
every code point)."""
"""The characters a value may not hold: Unicode's control characters (category Cc) and surrogates
(Cs), which no text means and PostgreSQL cannot store (a NUL) or encode (a lone surrogate)."""
_MAX_PHONE_TEXT = 32
_CN_MOBILE_DIGITS = 11
_E164_DIGITS = (8, 15)

# The readers that depend on an argument (the day, the country, the currency, the column) are
# built once per argument (``lru_cache``), not once per row: a file has up to 100,000 rows.


class _UndecidedError(Exception):
    """A value that cannot be judged because a field it depends on was refused (that field's error
    says what is wrong)."""


def _shown(value: str) -> str:
    """A value as an error message quotes it: at most 40 characters."""
    return value[:40]


def normalise_phone(text: str, country: str) -> str:
    """A phone number in E.164 (``+8613800138000``). Spaces, hyphens, dots and parentheses are
    ignored; ``+`` or ``00`` then 8 to 15 digits (the first not 0) is international; an 11-digit
    number starting with 1 is a Chinese mobile when the borrower's country is CN."""
    if len(text) <= _MAX_PHONE_TEXT:
        cleaned = _PHONE_SEPARATORS.sub("", text)
        low, high = _E164_DIGITS
        digits = None
        if cleaned.startswith("+"):
            digits = cleaned[1:]
        elif cleaned.startswith("00"):
            digits = cleaned[2:]
        elif (
            country == "CN"
            and _DIGITS.fullmatch(cleaned)
            and len(cleaned) == _CN_MOBILE_DIGITS
            and cleaned.startswith("1")
        ):
            return "+86" + cleaned
        if (
            digits is not None
            and _DIGITS.fullmatch(digits)
            and low <= len(digits) <= high
            and not digits.startswith("0")
        ):
            return "+" + digits
    raise DomainError(
        "phone_invalid",
        "{value} is not a phone number: write it with its country code, such as +8613800138000.",
        value=_shown(text),
    )


@lru_cache(maxsize=64)
def _phone(country: str | None) -> Callable[[str], str]:
    """Without a known country (it was refused) only an international number can be judged."""

    def read(text: str) -> str:
        if country is not None:
            return normalise_phone(text, country)
        if not _PHONE_SEPARATORS.sub("", text).startswith(("+", "00")):
            raise _UndecidedError
        return normalise_phone(text, "")

    return read


def normalise_email(text: str) -> str:
    """An e-mail address: one ``@``, a local part, a domain of dot-separated labels (lower-cased),
    no white space."""
    local, at, domain = text.partition("@")
    labels = domain.split(".")
    if not at or not local or "@" in domain or len(labels) < 2 or not all(labels) or WHITE_SPACE.search(text):
        raise DomainError("email_invalid", "{value} is not an e-mail address.", value=_shown(text))
    return f"{local}@{domain.lower()}"


def check_time_zone(name: str) -> str:
    """A time zone the system knows, by its IANA name (``Asia/Shanghai``)."""
    if _TIME_ZONE.fullmatch(name):
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
        else:
            return name
    raise DomainError(
        "time_zone_invalid",
        "{value} is not a time zone such as Asia/Shanghai.",
        value=_shown(name),
    )


def _reference(text: str) -> str:
    if not _REFERENCE.fullmatch(text):
        raise DomainError(
            "reference_invalid",
            "{value} is not a reference: use letters, digits and - _ . / : only.",
            value=_shown(text),
        )
    return text


@lru_cache(maxsize=64)
def _choice(name: str, choices: Sequence[str]) -> Callable[[str], str]:
    def read(text: str) -> str:
        if text.lower() in choices:
            return text.lower()
        raise DomainError(
            "choice_invalid",
            "{value} is not a valid {column}: use one of {choices}.",
            value=_shown(text),
            column=name,
            choices=", ".join(choices),
        )

    return read


def _language(text: str) -> str:
    key = text.replace("-", "_").lower()
    if key in _LANGUAGE_ALIASES:
        return _LANGUAGE_ALIASES[key]
    if key.startswith("en_") and len(key) == 5 and key[3:].isalpha() and key.isascii():
        return "en"
    raise DomainError(
        "choice_invalid",
        "{value} is not a valid {column}: use one of {choices}.",
        value=_shown(text),
        column="language",
        choices=", ".join(LANGUAGES),
    )


def _country(text: str) -> str:
    code = text.upper()
    if code not in COUNTRIES:
        raise DomainError(
            "country_invalid",
            "{value} is not a country code such as CN or HK.",
            value=_shown(text),
        )
    return code


def _currency(text: str) -> str:
    code = text.upper()
    if code not in CURRENCY_EXPONENTS:
        raise DomainError(
            "currency_invalid",
            "{value} is not a currency Accord can hold.",
            value=_shown(text),
        )
    return code


@lru_cache(maxsize=64)
def _date(name: str) -> Callable[[str], dt.date]:
    # A refusal is stored in the import's report: a date of birth, even mistyped, is not repeated
    # there (workflows.personal_data); the line and the column find it in the lender's file.
    sensitive = name in SENSITIVE_FIELDS["borrower"]

    def read(text: str) -> dt.date:
        if _ISO_DATE.fullmatch(text):
            try:
                return dt.date.fromisoformat(text)
            except ValueError:
                pass
        if sensitive:
            raise DomainError(
                "date_invalid", "This is not a date for {column}: write it as YYYY-MM-DD.", column=name
            )
        raise DomainError(
            "date_invalid",
            "{value} is not a date for {column}: write it as YYYY-MM-DD.",
            value=_shown(text),
            column=name,
        )

    return read


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February, in a year that has none
        return day.replace(year=day.year - years, day=28)


@lru_cache(maxsize=64)
def _date_of_birth(today: dt.date) -> Callable[[str], dt.date]:
    read_date = _date("date_of_birth")

    def read(text: str) -> dt.date:
        born = read_date(text)
        if not _years_before(today, MAX_AGE_YEARS) <= born < today:
            raise DomainError(
                "date_of_birth_invalid",
                "The date of birth must be in the past and at most {years} years ago.",
                years=MAX_AGE_YEARS,
            )
        return born

    return read


@lru_cache(maxsize=64)
def _balance_date(today: dt.date) -> Callable[[str], dt.date]:
    read_date = _date("balance_date")

    def read(text: str) -> dt.date:
        day = read_date(text)
        if day > today:
            raise DomainError(
                "balance_date_future",
                "The balance date {balance_date} is in the future.",
                balance_date=day.isoformat(),
            )
        return day

    return read


_MOST_DECIMALS = max(CURRENCY_EXPONENTS, key=CURRENCY_EXPONENTS.__getitem__)
_RATE_DECIMALS = 2
"""A rate in percent has two decimals, as ``parse_rate_bp`` reads it (basis points)."""


def _plain_minor(text: str, exponent: int) -> int | None:
    """``text`` in minor units when it is plain — ASCII digits, then optionally a dot and at most
    ``exponent`` more, ``MAX_AMOUNT_DIGITS`` digits in all — as nearly every cell of a file is;
    None for anything else (``parse_amount`` then reads it, and says what is wrong). Partition
    and ``isdigit``, not a regular expression: read six times a row."""
    whole, dot, fraction = text.partition(".")
    if not (whole.isascii() and whole.isdigit()):
        return None
    if dot and not (fraction.isascii() and fraction.isdigit()):
        return None
    if len(fraction) > exponent or len(whole) + len(fraction) > MAX_AMOUNT_DIGITS:
        return None
    scale: int = 10**exponent
    return int(whole) * scale + (int(fraction) * 10 ** (exponent - len(fraction)) if fraction else 0)


@lru_cache(maxsize=64)
def _money_text(currency: str | None) -> Callable[[str], int]:
    """An amount in major units, as a file writes it. Without a known currency only what is no
    amount in any currency can be refused.

    Digits with at most the currency's decimals and at most ``MAX_AMOUNT_DIGITS`` digits in all
    (nearly every cell) are read here; anything else goes to ``parse_amount``, which reads these
    the same way and says what is wrong with the rest."""
    exponent = CURRENCY_EXPONENTS[currency] if currency is not None else 0

    def read(text: str) -> int:
        plain = _plain_minor(text, exponent) if currency is not None else None
        if plain is not None:
            return plain
        if "," in text:
            raise DomainError(
                "amount_invalid",
                "{text} is not an amount: write it without thousands separators, such as 1234.50.",
                text=_shown(text),
            )
        if currency is not None:
            return parse_amount(text, currency)
        try:
            parse_amount(text, _MOST_DECIMALS)
        except DomainError as error:
            if error.code != "amount_too_precise":
                raise
        raise _UndecidedError

    return read


def _money_json(amount: int) -> int:
    if amount < 0:
        raise DomainError("amount_negative", "The amount cannot be negative.")
    if amount > MAX_JSON_AMOUNT:
        raise DomainError("amount_too_large", "{amount} is too large to be an amount.", amount=amount)
    return amount


def _rate_bp(bp: int) -> int:
    if bp < 0:
        raise DomainError("rate_negative", "The yearly rate cannot be negative.")
    if bp > MAX_RATE_BP:
        raise DomainError("rate_too_high", "The yearly rate must be at most 100 %.")
    return bp


def _rate_text(text: str) -> int:
    if "," in text:
        raise DomainError("rate_invalid", "Enter a rate such as 5.25 (percent a year).")
    plain = _plain_minor(text, _RATE_DECIMALS)
    return _rate_bp(plain if plain is not None else parse_rate_bp(text))


# --- Reading a row -------------------------------------------------------------------------------


class _Row:
    """The cells of one row, what was read from them, and what was refused."""

    def __init__(self, columns: Mapping[str, Column], cells: Mapping[str, str | int]) -> None:
        self.columns = columns
        self.cells = cells
        self.errors: dict[str, FieldError] = {}
        self.got: dict[str, object] = {}

    def fail(self, column: str, error: DomainError) -> None:
        """Report a problem with a column; the first one reported for it is the one kept."""
        self.errors.setdefault(column, FieldError.from_error(column, error))

    def read(self, name: str, parse: Callable[[Any], object], default: object = None) -> None:
        """Read one cell: no value is `default` (or `value_missing` when the column is required),
        too long is `too_long`, and `parse` says the rest."""
        if name in self.errors:
            return
        value = self.cells.get(name)
        column = self.columns[name]
        if value is None:
            if column.required:
                self.fail(name, DomainError("value_missing", "{column} is required.", column=name))
            else:
                self.got[name] = default
            return
        maximum = column.max_length
        if maximum is not None and isinstance(value, str) and len(value) > maximum:
            self.fail(
                name,
                DomainError(
                    "too_long",
                    "{column} has more than {max_length} characters.",
                    column=name,
                    max_length=column.max_length,
                ),
            )
            return
        if parse is str:  # free text: nothing more to judge than the above
            self.got[name] = value
            return
        try:
            self.got[name] = parse(value)
        except DomainError as error:
            self.fail(name, error)
        except _UndecidedError:
            pass

    def read_texts(self, names: Sequence[str]) -> None:
        """``read(name, str)`` for each of ``names`` (free text), in one call."""
        cells, got, columns = self.cells, self.got, self.columns
        for name in names:
            value = cells.get(name)
            maximum = columns[name].max_length
            if value is None or name in self.errors or (maximum is not None and len(str(value)) > maximum):
                self.read(name, str)  # no value, or too long: the rules above say what to do
            else:
                got[name] = value

    def has(self, *names: str) -> bool:
        got = self.got
        for name in names:  # noqa: SIM110 - all(...) makes a generator a call, 13 calls a row
            if name not in got:
                return False
        return True

    def amount(self, name: str) -> int:
        value = self.got[name]
        assert isinstance(value, int)
        return value


def _text_cells(values: Mapping[str, str]) -> tuple[dict[str, str | int], list[FieldError]]:
    # Nearly every row of a file: all its keys are columns, all its values text. When no cell holds
    # a control character (one search over them all), each is only stripped.
    if (
        values.keys() <= _FILE_COLUMN_NAMES
        and set(map(type, values.values())) <= {str}
        and CONTROL_CHARACTERS.search("".join(values.values())) is None
    ):
        return {name: text for name, value in values.items() if (text := value.strip())}, []
    cells: dict[str, str | int] = {}
    errors: list[FieldError] = []
    for key, value in values.items():
        # A file's header is already in the columns' spelling; a caller's keys may need cleaning.
        name = key if key in _FILE_COLUMNS or not isinstance(key, str) else key.strip().lower()
        if name not in _FILE_COLUMNS or value is None:
            continue
        if not isinstance(value, str):
            errors.append(_type_invalid(name, "a string"))
            continue
        _clean_string(name, value, cells, errors)
    return cells, errors


def _json_cells(values: Mapping[str, object]) -> tuple[dict[str, str | int], list[FieldError]]:
    cells: dict[str, str | int] = {}
    errors: list[FieldError] = []
    for key, value in values.items():
        name = str(key)
        column = _JSON_COLUMNS.get(name)
        if column is None:
            errors.append(
                _error(name, "unknown_field", "{column} is not a field of a placement.", column=name)
            )
            continue
        if value is None:
            continue
        if column.kind in {"money", "rate_bp"}:
            if isinstance(value, bool) or not isinstance(value, int):
                errors.append(_type_invalid(name, "an integer"))
            else:
                cells[name] = value
        elif not isinstance(value, str):
            errors.append(_type_invalid(name, "a string"))
        else:
            _clean_string(name, value, cells, errors)
    return cells, errors


def _type_invalid(name: str, expected: str) -> FieldError:
    return _error(name, "type_invalid", "{column} must be {expected}.", column=name, expected=expected)


def _clean_string(name: str, value: str, cells: dict[str, str | int], errors: list[FieldError]) -> None:
    text = value.strip()
    if not text:
        return
    if CONTROL_CHARACTERS.search(text):
        errors.append(
            _error(
                name,
                "text_invalid",
                "{column} contains control characters, which cannot be stored.",
                column=name,
            )
        )
        return
    cells[name] = text


def _parse(
    columns: Mapping[str, Column],
    cells: Mapping[str, str | int],
    early: Sequence[FieldError],
    *,
    today: dt.date,
    from_json: bool,
) -> PlacementRow | list[FieldError]:
    row = _Row(columns, cells)
    unknown: list[FieldError] = []
    for error in early:
        if error.column in columns:
            row.errors.setdefault(error.column, error)
        else:
            unknown.append(error)
    _read_fields(row, today=today, from_json=from_json)
    _check_across(row)
    if row.errors or unknown:
        order = {name: index for index, name in enumerate(columns)}
        return sorted(row.errors.values(), key=lambda error: order[error.column]) + unknown
    got = row.got
    if "annual_rate" in got:
        got["annual_rate_bp"] = got.pop("annual_rate")
    got.pop("total", None)  # checked above; a row's total is always the sum of its components
    # Every field was read by the parser that gives its type.
    return PlacementRow(**cast(dict[str, Any], got))


_TEXT_FIELDS = (
    "full_name",
    "company_name",
    "registration_number",
    "national_id",
    "address_line1",
    "address_line2",
    "city",
    "region",
    "postal_code",
)
"""The columns of free text: a value is only checked for its length."""


def _read_fields(row: _Row, *, today: dt.date, from_json: bool) -> None:
    """Each cell on its own; what depends on another field is judged only when that field was read."""
    # Fields others depend on first: the country (phone, time zone) and the currency (money).
    row.read("country", _country, default="CN")
    row.read("currency", _currency)
    country = cast(str | None, row.got.get("country"))
    currency = cast(str | None, row.got.get("currency"))

    for name in ("account_reference", "borrower_reference"):
        row.read(name, _reference)
    row.read("borrower_kind", _choice("borrower_kind", BORROWER_KINDS), default="person")
    row.read_texts(_TEXT_FIELDS)
    row.read("date_of_birth", _date_of_birth(today))
    row.read("phone", _phone(country))
    row.read("email", normalise_email)
    row.read("language", _language, default="zh_Hans_CN")
    if "time_zone" in row.cells or "country" in row.got:
        row.read("time_zone", check_time_zone, default=DEFAULT_TIME_ZONES.get(country or ""))
    row.read("product_type", _choice("product_type", PRODUCT_TYPES))
    if from_json:
        row.read("annual_rate_bp", _rate_bp)
        money: Callable[[Any], int] = _money_json
    else:
        row.read("annual_rate", _rate_text)
        money = _money_text(currency)
    row.read("opened_on", _date("opened_on"))
    row.read("balance_date", _balance_date(today))
    for name in ("principal", "interest", "fees", "total"):
        row.read(name, money)
    for name in ("overdue_amount", "next_due_amount"):
        row.read(name, money, default=0)
    for name in ("oldest_unpaid_due_on", "next_due_on"):
        row.read(name, _date(name))


def _check_across(row: _Row) -> None:
    """The rules between fields, each only when the fields it needs were read."""
    got = row.got
    business = row.has("borrower_kind") and got["borrower_kind"] == "business"
    if business and row.has("company_name") and got["company_name"] is None:
        row.fail("company_name", DomainError("company_name_missing", "A business needs its company name."))
    person = row.has("borrower_kind") and got["borrower_kind"] == "person"
    if person and row.has("date_of_birth") and got["date_of_birth"] is None:
        row.fail(
            "date_of_birth",
            DomainError(
                "date_of_birth_missing",
                "A person's date of birth is required: they sign in with it.",
            ),
        )
    if row.has("phone", "email") and got["phone"] is None and got["email"] is None:
        row.fail(
            "phone",
            DomainError("contact_missing", "Give a phone number or an e-mail address (or both)."),
        )
    if row.has("time_zone", "country") and got["time_zone"] is None:
        row.fail(
            "time_zone",
            DomainError(
                "time_zone_missing",
                "Give the time zone: there is no default one for country {country}.",
                country=got["country"],
            ),
        )
    if row.has("opened_on", "balance_date"):
        opened_on, balance_date = cast(dt.date, got["opened_on"]), cast(dt.date, got["balance_date"])
        if opened_on > balance_date:
            row.fail(
                "opened_on",
                DomainError(
                    "opened_after_balance_date",
                    "The account was opened on {opened_on}, after the balance date {balance_date}.",
                    opened_on=opened_on.isoformat(),
                    balance_date=balance_date.isoformat(),
                ),
            )
    _check_amounts(row)
    _check_due_dates(row)


def _check_amounts(row: _Row) -> None:
    if not row.has("principal", "interest", "fees", "currency"):
        return
    currency = cast(str, row.got["currency"])
    balance = sum(row.amount(name) for name in ("principal", "interest", "fees"))
    if row.has("total") and row.got["total"] is not None and row.amount("total") != balance:
        row.fail(
            "total",
            DomainError(
                "total_mismatch",
                "The total {total} {currency} is not principal + interest + fees: {expected} {currency}.",
                total=plain_amount(row.amount("total"), currency),
                expected=plain_amount(balance, currency),
                currency=currency,
            ),
        )
    if row.has("overdue_amount") and row.amount("overdue_amount") > balance:
        row.fail(
            "overdue_amount",
            DomainError(
                "overdue_above_total",
                "The overdue amount {overdue_amount} {currency} is more than the whole balance "
                "{total} {currency}.",
                overdue_amount=plain_amount(row.amount("overdue_amount"), currency),
                total=plain_amount(balance, currency),
                currency=currency,
            ),
        )


def _check_due_dates(row: _Row) -> None:
    got = row.got
    if row.has("overdue_amount", "oldest_unpaid_due_on"):
        overdue, oldest = row.amount("overdue_amount"), got["oldest_unpaid_due_on"]
        if overdue > 0 and oldest is None:
            row.fail(
                "oldest_unpaid_due_on",
                DomainError(
                    "oldest_unpaid_missing",
                    "Give the due date of the oldest unpaid instalment: an amount is overdue.",
                ),
            )
        elif overdue == 0 and oldest is not None:
            row.fail(
                "oldest_unpaid_due_on",
                DomainError(
                    "oldest_unpaid_without_overdue",
                    "Leave the oldest unpaid due date empty: nothing is overdue.",
                ),
            )
    if row.has("oldest_unpaid_due_on", "balance_date") and got["oldest_unpaid_due_on"] is not None:
        oldest_day, balance_date = (
            cast(dt.date, got["oldest_unpaid_due_on"]),
            cast(dt.date, got["balance_date"]),
        )
        if oldest_day > balance_date:
            row.fail(
                "oldest_unpaid_due_on",
                DomainError(
                    "oldest_unpaid_after_balance_date",
                    "The oldest unpaid due date {oldest_unpaid_due_on} is after the balance date "
                    "{balance_date}.",
                    oldest_unpaid_due_on=oldest_day.isoformat(),
                    balance_date=balance_date.isoformat(),
                ),
            )
    due = row.has("next_due_amount") and row.amount("next_due_amount") > 0
    if due and row.has("next_due_on") and got["next_due_on"] is None:
        row.fail(
            "next_due_on",
            DomainError("next_due_missing", "Give the next due date: a next due amount is given."),
        )


def check_header(columns: Sequence[str]) -> list[FieldError]:
    """What is wrong with a file's header (empty when nothing): each name that is no placement
    column (`column_unknown`), each name given more than once (`column_duplicated`), then each
    required column missing (`column_missing`). Names are compared stripped and in lower case;
    optional columns may be left out. The caller has removed a byte order mark."""
    names = [name.strip().lower() for name in columns]
    counted = Counter(names)
    errors: list[FieldError] = []
    reported: set[str] = set()
    for name in names:
        if name in reported:
            continue
        reported.add(name)
        if name not in _FILE_COLUMNS:
            errors.append(
                _error(name, "column_unknown", "{column} is not a column of a placement file.", column=name)
            )
        if counted[name] > 1:
            errors.append(
                _error(
                    name,
                    "column_duplicated",
                    "The column {column} appears {count} times.",
                    column=name,
                    count=counted[name],
                )
            )
    errors.extend(
        _error(column.name, "column_missing", "The required column {column} is missing.", column=column.name)
        for column in COLUMNS
        if column.required and column.name not in counted
    )
    return errors


def parse_text_row(values: Mapping[str, str], *, today: dt.date) -> PlacementRow | list[FieldError]:
    """A row of a file (column → cell text; absent columns are simply missing) as a placement, or
    every problem with it. Never raises for any text."""
    cells, early = _text_cells(values)
    return _parse(_FILE_COLUMNS, cells, early, today=today, from_json=False)


def parse_json_row(values: Mapping[str, object], *, today: dt.date) -> PlacementRow | list[FieldError]:
    """A row of the JSON API (typed values: money and the rate in integers, dates as ISO strings;
    an optional field may be absent or null; no other keys) as a placement, or every problem with
    it."""
    if not isinstance(values, Mapping):
        return [_type_invalid("", "an object")]
    cells, early = _json_cells(values)
    return _parse(_JSON_COLUMNS, cells, early, today=today, from_json=True)


# --- Applying a row ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlacedState:
    """What Accord already holds for one (creditor, account_reference)."""

    borrower_reference: str
    currency: str
    placed_as_of: dt.date | None
    """The balance date of the last placement applied to the account (None: never recorded)."""
    balances: Mapping[Component, int]
    """The account's cached balances now."""
    ledger_as_of: Mapping[Component, int]
    """The sum of its ledger entries effective on or before the new row's balance date."""


@dataclass(frozen=True)
class PlacementChange:
    """The ledger entries a placement writes, in order: each its kind and its posting."""

    postings: tuple[tuple[EntryKind, Posting], ...]


_OPENING = (
    (Component.PRINCIPAL, EntryKind.CHARGE),
    (Component.INTEREST, EntryKind.INTEREST),
    (Component.FEES, EntryKind.FEE),
)


def plan_change(row: PlacementRow, state: PlacedState | None) -> PlacementChange:
    """The entries that bring an account to what the lender states.

    A new account (`state` None) opens with a charge of its principal, an interest entry and a fee
    entry, each only when not zero. An account already placed must keep its currency
    (`currency_changed`) and its borrower (`borrower_changed`), and its balance date never goes
    back (`balance_date_stale`). Its ledger as of the row's balance date is then adjusted to the
    row's balances, one `adjustment` per component that differs, which keeps what happened in
    Accord after that date; no component of the balance now may go below zero
    (`balance_negative`). The same row placed again gives no entries.
    """
    wanted = row.balances()
    if state is None:
        opening = tuple(
            (kind, Posting(component, wanted[component])) for component, kind in _OPENING if wanted[component]
        )
        for kind, posting in opening:
            check_posting(kind, posting)
        return PlacementChange(opening)
    if row.currency != state.currency:
        raise DomainError(
            "currency_changed",
            "This account is held in {was}; a placement cannot change it to {now}.",
            was=state.currency,
            now=row.currency,
        )
    if row.borrower_reference != state.borrower_reference:
        raise DomainError(
            "borrower_changed",
            "This account belongs to borrower {was}; a placement cannot move it to {now}.",
            was=state.borrower_reference,
            now=row.borrower_reference,
        )
    if state.placed_as_of is not None and row.balance_date < state.placed_as_of:
        raise DomainError(
            "balance_date_stale",
            "These balances are as of {balance_date}, before those already placed (as of {placed_as_of}).",
            balance_date=row.balance_date.isoformat(),
            placed_as_of=state.placed_as_of.isoformat(),
        )
    adjustments = [
        Posting(component, wanted[component] - state.ledger_as_of.get(component, 0))
        for component in Component
        if wanted[component] != state.ledger_as_of.get(component, 0)
    ]
    apply_postings(state.balances, EntryKind.ADJUSTMENT, adjustments)
    return PlacementChange(tuple((EntryKind.ADJUSTMENT, posting) for posting in adjustments))
