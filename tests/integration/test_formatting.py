"""The cached formatters say exactly what Babel says, in both languages."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from babel.dates import format_date
from babel.numbers import format_currency
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.formatting import date, money

LOCALES = {"en": "en", "zh-CN": "zh_Hans_CN"}


@pytest.mark.parametrize("header", LOCALES)
@settings(max_examples=60, deadline=None)
@given(
    amount=st.integers(min_value=-(10**12), max_value=10**12),
    currency=st.sampled_from(["CNY", "USD", "JPY", "KWD"]),
    day=st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2100, 12, 31)),
)
def test_money_and_dates_match_babel(
    app: Flask, header: str, amount: int, currency: str, day: dt.date
) -> None:
    exponent = {"JPY": 0, "KWD": 3}.get(currency, 2)
    with app.test_request_context(headers={"Accept-Language": header}):
        locale = LOCALES[header]
        assert money(amount, currency) == format_currency(
            Decimal(amount).scaleb(-exponent), currency, locale=locale
        )
        for fmt in ("short", "medium", "long"):
            assert date(day, fmt) == format_date(day, fmt, locale=locale)
