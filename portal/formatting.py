"""Jinja filters: money, dates and masked personal data, formatted for the user's locale."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from flask import Flask
from flask_babel import format_currency, format_date, format_datetime, get_locale

from workflows import access
from workflows.money import minor_units


def money(amount: int, currency: str) -> str:
    """Minor units to a localised amount, exactly (a Decimal shift, never a float)."""
    return format_currency(Decimal(amount).scaleb(-minor_units(currency)), currency)


def html_lang() -> str:
    return "zh-Hans" if str(get_locale()).startswith("zh") else "en"


def init_app(app: Flask) -> None:
    app.jinja_env.filters.update(
        money=money,
        date=lambda d, fmt="medium": format_date(d, fmt) if d else "—",
        datetime=lambda d, fmt="medium": format_datetime(d, fmt) if d else "—",
        mask_phone=lambda v: access.mask_phone(v or ""),
        mask_email=lambda v: access.mask_email(v or ""),
        mask_national_id=lambda v: access.mask_national_id(v or ""),
        mask_date_of_birth=lambda v: access.mask_date_of_birth(v) if isinstance(v, dt.date) else "—",
    )
    app.jinja_env.globals.update(html_lang=html_lang, current_locale=lambda: str(get_locale()))
