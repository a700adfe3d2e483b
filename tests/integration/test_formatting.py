"""The cached formatters say exactly what Babel says, in both languages."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from babel.dates import format_date
from babel.numbers import format_currency
from flask import Flask
from flask_babel import force_locale, gettext
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import DictLoader

from portal import labels
from portal.formatting import date, money
from workflows.money import CURRENCY_EXPONENTS

LOCALES = {"en": "en", "zh-CN": "zh_Hans_CN"}


@pytest.mark.parametrize("header", LOCALES)
@settings(max_examples=60, deadline=None)
@given(
    amount=st.integers(min_value=-(10**12), max_value=10**12),
    currency=st.sampled_from(sorted(CURRENCY_EXPONENTS)),
    day=st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2100, 12, 31)),
)
def test_money_and_dates_match_babel(
    app: Flask, header: str, amount: int, currency: str, day: dt.date
) -> None:
    exponent = CURRENCY_EXPONENTS[currency]
    with app.test_request_context(headers={"Accept-Language": header}):
        locale = LOCALES[header]
        assert money(amount, currency) == format_currency(
            Decimal(amount).scaleb(-exponent), currency, locale=locale
        )
        for fmt in ("short", "medium", "long"):
            assert date(day, fmt) == format_date(day, fmt, locale=locale)


def test_forced_locale_is_followed_and_the_page_comes_back(app: Flask) -> None:
    """A message in the borrower's own language inside an English page (``force_locale``): the
    amounts, dates, the templates' strings and the labels' lazy strings follow the forced locale,
    and the page's return after it, although both are kept on the request."""
    render = app.jinja_env.from_string(
        "{{ _('Pay') }} {{ 123456|money('CNY') }} {{ day|date('long') }} {{ product_label('loan') }}"
    )
    day = dt.date(2026, 12, 1)
    with app.test_request_context(headers={"Accept-Language": "en"}):
        english = render.render(day=day)
        assert english == "Pay CN¥1,234.56 December 1, 2026 Loan"
        assert str(labels.PRODUCTS["loan"]) == gettext("Loan") == "Loan"
        with force_locale("zh_Hans_CN"):
            chinese = render.render(day=day)
            assert chinese == f"{gettext('Pay')} ¥1,234.56 2026年12月1日 {gettext('Loan')}"
            assert chinese != english
            assert str(labels.PRODUCTS["loan"]) == gettext("Loan") != "Loan"
        assert render.render(day=day) == english
        assert str(labels.PRODUCTS["loan"]) == "Loan"
        with force_locale("zh_Hans_CN"):
            assert render.render(day=day) == chinese


def test_a_sum_from_postgresql_is_formatted_too(app: Flask) -> None:
    """PostgreSQL's SUM of an integer column is a numeric (a Decimal in Python): still minor units,
    formatted as Babel formats them (the integer fast path is for ints only)."""
    with app.test_request_context(headers={"Accept-Language": "en"}):
        assert money(Decimal(-123456), "CNY") == money(-123456, "CNY") == "-CN¥1,234.56"


TEMPLATES = (
    "{{ _('Pay') }}",
    "{{ _('Your request for help: %(state)s', state=state) }}",
    "{{ ngettext('%(num)d day late', '%(num)d days late', n) }}",
    "{{ gettext('Since %(date)s', date=state) }}",
    "{{ pgettext('button', 'Pay') }} {{ npgettext('button', '%(num)d day', '%(num)d days', n) }}",
    "{% trans %}Pay{% endtrans %}",
    "{% trans count=n %}{{ count }} day{% pluralize %}{{ count }} days{% endtrans %}",
    "{% trans s=state %}Your request for help: {{ s }}{% endtrans %}",
    "{{ _('100%% of %(state)s', state=state) }}",
    "{{ _('Terms & <em>conditions</em>: %(state)s', state=state) }}",  # the text is safe, the value is not
)


@pytest.mark.parametrize("header", LOCALES)
@pytest.mark.parametrize("autoescape", [True, False])
@pytest.mark.parametrize("source", TEMPLATES)
def test_the_templates_gettext_says_what_jinjas_own_says(
    app: Flask, header: str, autoescape: bool, source: str
) -> None:
    """The templates' gettext callables (the catalogue found once per request, one context call a
    string) give what Jinja's "newstyle" callables give over the same catalogue: the text marked
    safe where the template escapes, the variables escaped, `num` and `context` set, `%%`."""
    from flask_babel import get_translations
    from jinja2 import Environment

    # both ways, as pages (escaped) and plain-text messages (not) are rendered
    jinja = Environment(extensions=["jinja2.ext.i18n"], autoescape=autoescape)  # noqa: S701  # nosec B701
    ours = app.jinja_env.overlay(autoescape=autoescape)
    values = {"state": "<b>approved</b> & co", "n": 3}
    with app.test_request_context(headers={"Accept-Language": header}):
        catalogue = get_translations()
        jinja.install_gettext_callables(  # type: ignore[attr-defined]
            catalogue.ugettext,
            catalogue.ungettext,
            pgettext=catalogue.upgettext,
            npgettext=catalogue.unpgettext,
            newstyle=True,
        )
        expected = jinja.from_string(source).render(values)
        assert ours.from_string(source).render(values) == expected
        if autoescape and "state" in source:
            assert "&lt;b&gt;" in expected


def test_templates_globals_are_the_apps_and_a_templates_own_stay_its_own(app: Flask) -> None:
    """The templates' globals are a copy of the app's (``portal.TemplateEnvironment``): what the
    app registers is seen by a page and by the macros it imports; globals given to one template
    overlay the app's for that template only, and never reach the app's or another template's."""
    env = app.jinja_env.overlay(
        loader=DictLoader({"m.html": "{% macro m() %}{{ consequence_text is defined }}{% endmacro %}"})
    )
    page = env.from_string(
        '{% from "m.html" import m %}{{ m() }}|{{ range is defined }}|{{ extra is defined }}'
    )
    assert page.render() == "True|True|False"
    own = env.from_string("{{ range }}|{{ extra }}", globals={"range": "own", "extra": 1})
    assert own.render() == "own|1"
    assert "extra" not in app.jinja_env.globals and app.jinja_env.globals["range"] is range
    assert page.render() == "True|True|False"
