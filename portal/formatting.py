"""Jinja filters: money, dates and masked personal data, formatted for the user's locale.

Pages print dozens of amounts and strings, so the locale's patterns and the request's
translations are looked up once and reused, not once per call.
"""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal
from typing import Any

from babel import Locale
from babel.dates import DateTimePattern, get_date_format
from babel.numbers import NumberPattern
from flask import Flask, g
from flask_babel import format_datetime, get_locale, get_translations

from workflows import access
from workflows.money import minor_units


@functools.lru_cache(maxsize=64)
def _currency_pattern(locale_name: str) -> tuple[Locale, NumberPattern]:
    locale = Locale.parse(locale_name)
    return locale, locale.currency_formats["standard"]


def _locale_name() -> str:
    # Kept per request, but checked against the locale in force: inside force_locale (a message
    # in the borrower's own language) the name must follow, and the page's return after it.
    locale = get_locale()
    cached = g.get("_accord_locale")
    if cached is None or cached[0] is not locale:
        cached = g._accord_locale = (locale, str(locale))
    return str(cached[1])


def money(amount: int, currency: str) -> str:
    """Minor units to a localised amount, exactly (a Decimal shift, never a float)."""
    locale, pattern = _currency_pattern(_locale_name())
    return pattern.apply(Decimal(amount).scaleb(-minor_units(currency)), locale, currency=currency)


@functools.lru_cache(maxsize=64)
def _date_pattern(locale_name: str, fmt: str) -> tuple[Locale, DateTimePattern]:
    locale = Locale.parse(locale_name)
    return locale, get_date_format(fmt, locale)


def date(value: dt.date | None, fmt: str = "medium") -> str:
    """A date in the user's locale: "short", "medium", "long" or "full"."""
    if value is None:
        return "—"
    locale, pattern = _date_pattern(_locale_name(), fmt)
    return pattern.apply(value, locale)


def _translations() -> Any:
    return get_translations()  # flask-babel keeps them per request and per force_locale


def utc_and_local(moment: dt.datetime | None, zone: Any) -> str:
    """A moment in UTC and in the given time zone: "2026-11-30 09:30:05 UTC (17:30:05 Asia/Shanghai)"."""
    if moment is None:
        return "—"
    utc = moment.astimezone(dt.UTC)
    local = moment.astimezone(zone)
    return f"{utc:%Y-%m-%d %H:%M:%S} UTC ({local:%Y-%m-%d %H:%M:%S} {zone})"


def html_lang() -> str:
    return "zh-Hans" if _locale_name().startswith("zh") else "en"


def init_app(app: Flask) -> None:
    app.jinja_env.filters.update(
        money=money,
        date=date,
        isodate=lambda text: date(dt.date.fromisoformat(text)) if text else "—",
        utc_and_local=utc_and_local,
        datetime=lambda d, fmt="medium": format_datetime(d, fmt) if d else "—",
        mask_phone=lambda v: access.mask_phone(v or ""),
        mask_email=lambda v: access.mask_email(v or ""),
        mask_national_id=lambda v: access.mask_national_id(v or ""),
        mask_date_of_birth=lambda v: access.mask_date_of_birth(v) if isinstance(v, dt.date) else "—",
    )
    app.jinja_env.globals.update(html_lang=html_lang, current_locale=_locale_name)
    # Flask-Babel's callables find the domain, the locale and the catalogue on every string.
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=lambda s: _translations().ugettext(s),
        ngettext=lambda s, p, n: _translations().ungettext(s, p, n),
        pgettext=lambda c, s: _translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: _translations().unpgettext(c, s, p, n),
        newstyle=True,
    )
