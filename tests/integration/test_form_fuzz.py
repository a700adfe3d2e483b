"""Every form, fuzzed: hypothesis posts valid-looking and hostile values to every route that takes a
POST, as the audience the route is for, and no response is a server error or leaks anything.

The fields of a route come from the forms the application renders (every GET page is opened once,
as its own audience, and its ``<form>`` elements parsed) and from what the view reads
(``request.form`` names and the Flask-WTF form classes it uses, for forms only some states show).
Each example posts in a savepoint of the test's transaction, rolled back after, so examples stay
independent. The lenders' API has its own fuzzing (test_api_schemathesis.py).

Every response: status below 500; no traceback, SQL, driver name, secret key, Stripe secret or
password hash in the body; the security headers of test_security_headers.py.
"""

from __future__ import annotations

import datetime as dt
import inspect
import re
import secrets
import types
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote_from_bytes, urlsplit

import pytest
from flask import Flask, Response
from flask.testing import FlaskClient
from flask_wtf import FlaskForm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.orm import Session
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Rule
from werkzeug.routing.converters import AnyConverter, IntegerConverter
from wtforms import FileField, RadioField, SelectField, SelectMultipleField
from wtforms.fields.core import UnboundField

from portal.models import Borrower, StaffUser
from tests.conftest import sign_in
from tests.integration.test_routes import RULES
from tests.integration.test_security_headers import (
    MISSING_ID,
    PNG,
    World,
    _audience,
    _client,
    _methods,
    _origin,
    _staff_role,
    header_problems,
)

EXAMPLES = 12
# Text that only an error report would put in a page (the fuzz never posts it).
LEAK_MARKERS = (
    "Traceback",
    "SELECT ",
    "INSERT INTO",
    "UPDATE ",
    "psycopg",
    "sqlite3.",
    "sqlalchemy",
    "[SQL:",
)
LEAK_CONFIG_KEYS = ("SECRET_KEY", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET")
HASH_MARKER = "$argon2"
# The lenders' API is fuzzed against its OpenAPI document elsewhere.
FUZZED = [r for r in RULES if "POST" in (r.methods or set()) and not r.endpoint.startswith("api.")]
# Pages not worth opening to find forms: files, PDFs, exports and the API.
NOT_CRAWLED = re.compile(r"(^static$|^api\.|export|download|pdf|print|file|receipt|statement|report|letter)")

HOSTILE = [
    "",
    " ",
    "x" * 10_000,
    "9" * 10_000,
    "\x00",
    "a\x00b",
    "\x01\x02\x07\x08\x0b\x0c\x1b\x7f",
    "\r\n\t",
    "\ud800",
    "a\udfffb",
    "\u202e\u200f123\u202c",
    "\ufeff",
    "１２３４",
    "١٢٣",
    "' OR '1'='1",
    "1; DROP TABLE borrowers; --",
    "1' union select null, null --",
    '"><script>alert(1)</script>',
    "<img src=x onerror=alert(1)>",
    "{{ 7 * 7 }}",
    "%s%s%n",
    "../../etc/passwd",
    "0",
    "-1",
    "-0",
    "-99999999999999999999",
    "99999999999999999999999999999999",
    str(2**63),
    str(-(2**63) - 1),
    "1e308",
    "1e-308",
    "NaN",
    "inf",
    "-inf",
    "0x10",
    "1,000.50",
    "12.345",
    "1 000",
    "0000-00-00",
    "0001-01-01",
    "9999-12-31",
    "10000-01-01",
    "2024-02-30",
    "1969-12-31",
    "2038-01-19T03:14:08",
    "true",
    "null",
    "[]",
    "{}",
]
# Past the 32-bit ``integer`` and the 64-bit ``bigint`` ids, and not ids at all.
WRONG_IDS = ["0", "-1", str(MISSING_ID), str(2**31), str(2**63), "abc", ""]
EXTRA_NAMES = [
    "id",
    "account_id",
    "borrower_id",
    "status",
    "amount",
    "role",
    "is_admin",
    "next",
    "csrf_token",
]


@dataclass
class Field:
    """A form control: its kind and the values the page offers (options, or a preset value)."""

    kind: str
    options: list[str] = field(default_factory=list)


@dataclass
class Form:
    """What a route takes: its fields by name, and whether it is posted as multipart (files)."""

    fields: dict[str, Field] = field(default_factory=dict)
    multipart: bool = False


class _FormParser(HTMLParser):
    """The forms of a page that post: their action, encoding and controls."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.page = page
        self.forms: list[tuple[str, Form]] = []  # (action, form)
        self._form: Form | None = None  # the form being read
        self._select: str | None = None  # the select whose options are being read

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            if a.get("method", "get").lower() == "post":
                self._form = Form(multipart="multipart" in a.get("enctype", ""))
                self.forms.append((a.get("action") or self.page, self._form))
            return
        if self._form is None or not a.get("name"):
            if tag == "option" and self._form is not None and self._select:
                self._form.fields[self._select].options.append(a.get("value", ""))
            return
        name = a["name"]
        if name == "csrf_token":  # refused without it when CSRF is on (test_routes); off here
            return
        if tag == "input":
            kind = a.get("type", "text").lower()
            if kind == "submit" and not a.get("value"):
                return
            control = self._form.fields.setdefault(name, Field(kind))
            if "value" in a:
                control.options.append(a["value"])
        elif tag == "textarea":
            self._form.fields.setdefault(name, Field("textarea"))
        elif tag == "select":
            self._form.fields.setdefault(name, Field("select"))
            self._select = name
        elif tag == "option" and self._select:
            self._form.fields[self._select].options.append(a.get("value", ""))
        elif tag == "button" and a.get("value"):
            self._form.fields.setdefault(name, Field("submit")).options.append(a["value"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None


def _variants(rule: Rule) -> list[dict[str, str]]:
    """One set of fixed URL values per choice of the rule's ``any(…)`` arguments (the statement's steps)."""
    variants: list[dict[str, str]] = [{}]
    for name, converter in rule._converters.items():
        if isinstance(converter, AnyConverter):
            variants = [{**v, name: item} for v in variants for item in sorted(converter.items)]
    return variants


def _key(endpoint: str, fixed: dict[str, Any]) -> str:
    return endpoint + "".join(f"/{fixed[name]}" for name in sorted(fixed))


def _url(world: World, rule: Rule, values: dict[str, str]) -> str:
    return re.sub(
        r"<(?:[^:>]+(?:\([^)]*\))?:)?([^>]+)>",
        lambda m: str(values.get(m.group(1), world.value(rule.endpoint, m.group(1)))),
        rule.rule,
    )


# --- What a route's form holds: the rendered forms, and what the view reads ------------------------

_RENDERED: dict[str, Form] = {}  # filled by the first test of a process: field names do not depend on ids


def _crawl_forms(app: Flask, world: World) -> dict[str, Form]:
    """Open every page as its own audience and collect its forms, by the route they post to."""
    if _RENDERED:
        return _RENDERED
    adapter = app.url_map.bind("localhost")
    for rule in RULES:
        if (
            "GET" not in _methods(rule)
            or NOT_CRAWLED.search(rule.endpoint)
            or _audience(app, rule) == "lender"
        ):
            continue
        for fixed in _variants(rule):
            page = _url(world, rule, fixed)
            response = _browser(app, _user(app, world, rule)).get(page)
            if response.status_code == 200 and response.mimetype == "text/html":
                parser = _FormParser(page)
                parser.feed(response.get_data(as_text=True))
                for action, form in parser.forms:
                    try:
                        endpoint, args = adapter.match(urlsplit(action).path, method="POST")
                    except (NotFound, MethodNotAllowed):
                        continue
                    target = app.url_map._rules_by_endpoint[endpoint][0]
                    fixed_args = {n: args[n] for n in _variants(target)[0]}
                    found = _RENDERED.setdefault(_key(endpoint, fixed_args), Form())
                    found.multipart |= form.multipart
                    for name, control in form.fields.items():
                        merged = found.fields.setdefault(name, Field(control.kind))
                        merged.options += [o for o in control.options if o not in merged.options]
            response.close()
    return _RENDERED


_FORM_READ = re.compile(r"""request\.form\.get(?:list)?\(\s*["']([\w-]+)["']""")
_CALLED = re.compile(r"\b([A-Za-z_]\w*)\(")
_CONSTANT = re.compile(r"\b([A-Z][A-Z0-9_]+)\b")


def _read_by_view(app: Flask, endpoint: str) -> Form:
    """The fields a view reads itself or through its module's helpers, and its form classes' fields."""
    view = inspect.unwrap(app.view_functions[endpoint])
    module = inspect.getmodule(view)
    sources = [inspect.getsource(view)]
    for name in set(_CALLED.findall(sources[0])):
        helper = getattr(module, name, None)
        if isinstance(helper, types.FunctionType) and helper.__module__ == view.__module__:
            sources.append(inspect.getsource(helper))
    form = Form()
    for source in sources:
        for name in _FORM_READ.findall(source):
            form.fields.setdefault(name, Field("text"))
        for name in set(_CONSTANT.findall(source)):
            # A module constant listing the field names a view reads in a loop (COUNTER_FIELDS).
            names = getattr(module, name, None)
            if isinstance(names, tuple | list) and names and all(isinstance(n, str) for n in names):
                for field_name in names:
                    form.fields.setdefault(field_name, Field("text"))
        for name in set(_CALLED.findall(source)):
            form_class = getattr(module, name, None)
            if isinstance(form_class, type) and issubclass(form_class, FlaskForm):
                for attribute in dir(form_class):
                    unbound = getattr(form_class, attribute)
                    if isinstance(unbound, UnboundField):
                        form.fields.setdefault(attribute, _field_of(unbound))
                        form.multipart |= issubclass(unbound.field_class, FileField)
    return form


def _field_of(unbound: UnboundField) -> Field:
    if issubclass(unbound.field_class, FileField):
        return Field("file")
    if issubclass(unbound.field_class, (SelectField, RadioField, SelectMultipleField)):
        choices = unbound.kwargs.get("choices") or []
        values = [str(c[0] if isinstance(c, tuple) else getattr(c, "value", c)) for c in choices]
        return Field("select", values)
    kind = unbound.field_class.__name__.removesuffix("Field").lower()
    return Field("number" if kind in {"integer", "decimal", "float"} else kind)


def _form_for(app: Flask, world: World, rule: Rule, fixed: dict[str, str]) -> Form:
    rendered = _crawl_forms(app, world).get(_key(rule.endpoint, fixed), Form())
    read = _read_by_view(app, rule.endpoint)
    fields = {**read.fields, **rendered.fields}
    return Form(fields, rendered.multipart or read.multipart)


# --- Values ---------------------------------------------------------------------------------------

_PLAIN_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=30).filter(
    lambda s: not any(marker in s for marker in (*LEAK_MARKERS, HASH_MARKER))
)


def _valid(control: Field) -> st.SearchStrategy[str]:
    """A value the page could have sent."""
    if control.options:
        return st.sampled_from(control.options)
    if control.kind == "number":
        return st.integers(0, 10**7).map(str)
    if control.kind == "date":
        return st.dates(dt.date(2020, 1, 1), dt.date(2030, 12, 31)).map(dt.date.isoformat)
    if control.kind == "email":
        return st.sampled_from(["agent@example.com", "a.b+c@bank.example.cn"])
    return st.one_of(
        st.sampled_from(["Lost my job in March.", "1234.50", "LN-00012-1", "13800138000", "1985-03-15", "3"]),
        st.text(st.characters(codec="utf-8", categories=["L", "N", "Zs", "P"]), max_size=40),
    )


def _value(control: Field, name: str) -> st.SearchStrategy[str]:
    hostile = [st.sampled_from(HOSTILE), _PLAIN_TEXT]
    if name.endswith("id") or name.startswith("version"):
        hostile.append(st.sampled_from(WRONG_IDS))
    if control.options:
        hostile.append(st.sampled_from(["unknown-choice", "__proto__", "ALL"]))
    return st.one_of(_valid(control), *hostile)


@st.composite
def _upload(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(
        st.sampled_from(["scan.png", "statement.pdf", "rows.csv", "../../x.png", "", "a\x00.png", "表.png"])
    )
    body = draw(
        st.sampled_from(
            [
                PNG,
                b"",
                b"%PDF-1.4\n/JavaScript (x)\n%%EOF",
                b"account_reference,balance\nLN-1,-5\n",
                b"\xff\xfe\x00\x00garbage",
                b"x" * 70_000,
            ]
        )
    )
    return name, body


@st.composite
def _submission(draw: st.DrawFn, form: Form) -> list[tuple[str, str | tuple[str, bytes]]]:
    """Each field missing, sent once or sent twice; then a few fields nobody asked for."""
    pairs: list[tuple[str, str | tuple[str, bytes]]] = []
    for name, control in form.fields.items():
        times = draw(st.sampled_from([1, 1, 1, 0, 2]))
        for _ in range(times):
            if control.kind == "file":
                pairs.append((name, draw(_upload())))
            else:
                pairs.append((name, draw(_value(control, name))))
    for name in draw(st.lists(st.sampled_from(EXTRA_NAMES), max_size=2)):
        pairs.append((name, draw(st.one_of(st.sampled_from(HOSTILE), st.sampled_from(WRONG_IDS)))))
    return pairs


def _raw(text: str) -> bytes:
    """What a browser (or an attacker) may send: lone surrogates become invalid UTF-8 bytes."""
    return text.encode("utf-8", "surrogatepass")


def _encode(pairs: list[tuple[str, str | tuple[str, bytes]]], multipart: bool) -> tuple[bytes, str]:
    if not multipart:
        body = "&".join(
            f"{quote_from_bytes(_raw(k))}={quote_from_bytes(_raw(v))}" for k, v in pairs if isinstance(v, str)
        )
        return body.encode(), "application/x-www-form-urlencoded"
    boundary = secrets.token_hex(16)
    parts = []
    for name, value in pairs:
        if isinstance(value, str):
            head, content = f'Content-Disposition: form-data; name="{name}"', _raw(value)
        else:
            filename, content = value
            head = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"'
        parts.append(b"--" + boundary.encode() + b"\r\n" + _raw(head) + b"\r\n\r\n" + content + b"\r\n")
    body = b"".join(parts) + b"--" + boundary.encode() + b"--\r\n"
    return body, f"multipart/form-data; boundary={boundary}"


# --- The check ------------------------------------------------------------------------------------


def _user(app: Flask, world: World, rule: Rule) -> StaffUser | Borrower | None:
    """Who the route is for: staff of a role allowed on it, the borrower owning its objects, or nobody."""
    audience = _audience(app, rule)
    if audience == "staff":
        return world.staff(_staff_role(app, rule))
    return world.borrower_for(rule) if audience == "borrower" else None


def _browser(app: Flask, user: StaffUser | Borrower | None) -> FlaskClient:
    """A fresh browser, signed in as ``user`` if there is one."""
    return _client(app) if user is None else sign_in(_client(app), user)


def leaks(app: Flask, response: Response) -> list[str]:
    """What a response body gives away: error reports, SQL, secrets."""
    body = response.get_data().decode("utf-8", "replace")  # a download (the borrower's ZIP) is bytes
    secrets_ = [str(app.config[k]) for k in LEAK_CONFIG_KEYS if app.config.get(k)]
    found = [marker for marker in (*LEAK_MARKERS, HASH_MARKER) if marker in body]
    return found + [f"config secret {s[:4]}…" for s in secrets_ if s in body]


def _cases() -> list[Any]:
    return [
        pytest.param(rule, fixed, id=_key(rule.endpoint, fixed))
        for rule in FUZZED
        for fixed in _variants(rule)
    ]


@pytest.mark.parametrize(("rule", "fixed"), _cases())
def test_no_posted_value_causes_a_server_error_or_a_leak(
    rule: Rule, fixed: dict[str, str], app: Flask, session: Session
) -> None:
    world = World(session, app)
    form = _form_for(app, world, rule, fixed)
    own = {name: str(world.value(rule.endpoint, name)) for name in rule.arguments - fixed.keys()}
    stripe_origin = _origin(app.config["STRIPE_JS_URL"])
    ids = {
        name: st.one_of(st.just(value), st.sampled_from([str(MISSING_ID), "0", str(2**31), str(2**63)]))
        for name, value in own.items()
        if isinstance(rule._converters[name], IntegerConverter)
    }
    user = _user(app, world, rule)  # built before the examples: each rolls back what it adds
    session.commit()

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(pairs=_submission(form), url_ids=st.fixed_dictionaries(ids))
    def post(pairs: list[tuple[str, str | tuple[str, bytes]]], url_ids: dict[str, str]) -> None:
        body, content_type = _encode(pairs, form.multipart)
        # A savepoint of its own (the requests' sessions nest theirs inside it), rolled back after.
        session.execute(text("SAVEPOINT fuzz_example"))
        try:
            response = _browser(app, user).post(
                _url(world, rule, {**own, **fixed, **url_ids}), data=body, content_type=content_type
            )
            assert response.status_code < 500, response.status_code
            assert not leaks(app, response)
            problems = header_problems(
                rule.endpoint, response, authenticated=user is not None, stripe_origin=stripe_origin
            )
            assert not problems, problems
            response.close()
        finally:
            session.execute(text("ROLLBACK TO SAVEPOINT fuzz_example"))
            session.execute(text("RELEASE SAVEPOINT fuzz_example"))
            session.expire_all()

    post()


def test_the_form_parser_finds_every_control_and_its_choices() -> None:
    parser = _FormParser("/page")
    parser.feed(
        '<form method="get" action="/search"><input name="q"></form>'
        '<form method="post" enctype="multipart/form-data"><input type="hidden" name="version" value="3">'
        '<select name="role"><option value="agent">A</option><option value="admin">B</option></select>'
        '<textarea name="note"></textarea><input type="file" name="file"><input type="submit" value="">'
        '<button name="action" value="disable">Off</button></form>'
    )
    [(action, form)] = parser.forms
    assert action == "/page" and form.multipart
    assert {name: (c.kind, c.options) for name, c in form.fields.items()} == {
        "version": ("hidden", ["3"]),
        "role": ("select", ["agent", "admin"]),
        "note": ("textarea", []),
        "file": ("file", []),
        "action": ("submit", ["disable"]),
    }


def test_a_leak_in_a_body_is_seen(app: Flask) -> None:
    response = Response(f"<p>(sqlite3.IntegrityError) [SQL: INSERT INTO x] {app.config['SECRET_KEY']}</p>")
    assert leaks(app, response) == ["INSERT INTO", "sqlite3.", "[SQL:", "config secret test…"]


# What the fuzz found, kept as plain examples: each was a 500 before its fix.
FOUND = [
    # An id in the URL beyond 64 bits: OverflowError in the SQLite driver; beyond 32 bits: "integer
    # out of range" on PostgreSQL (portal/__init__.py).
    ("borrower.dispute", {"account_id": str(2**63)}, [("reason", "not_mine")], 404),
    ("staff.case_claim", {"case_id": str(2**31)}, [("version", "1")], 404),
    ("staff.collection_action_claim", {"action_id": str(2**63)}, [], 404),
    # A form id beyond 64 bits, or of 10,000 digits (portal/staff/desk.py, borrower/hardship.py, payments.py).
    ("staff.case_reassign", {}, [("to", str(2**63)), ("version", "1")], 302),
    ("borrower.hardship_begin", {}, [("account_id", str(2**63))], 400),
    ("borrower.payment_autopay", {}, [("card_id", "9" * 10_000), ("agree", "yes")], 422),
    ("borrower.payment_autopay", {}, [("card_id", str(2**63)), ("agree", "yes")], 422),
    # A payment id past 32 bits (portal/staff/reconciliation.py), case ids too (supervisor.py).
    ("staff.finance_reconciliation_link", {}, [("payment_id", str(2**40)), ("version", "1")], 302),
    ("staff.second_approvals", {}, [("case_id", str(2**40)), ("action", "approve")], 302),
    # A NUL character in a note: PostgreSQL cannot store it in text (portal/__init__.py).
    ("staff.agreement_void", {}, [("version", "2"), ("reason", "void\x00ed")], 400),
    ("staff.collection_visit_cancel", {}, [("version", "1"), ("notes", "\x00")], 400),
]


@pytest.mark.parametrize("found", FOUND, ids=[f[0] for f in FOUND])
def test_inputs_the_fuzz_found_are_refused_as_bad_input(
    found: tuple[str, dict[str, str], list[tuple[str, str | tuple[str, bytes]]], int],
    app: Flask,
    session: Session,
) -> None:
    endpoint, url_values, pairs, status = found
    rule = app.url_map._rules_by_endpoint[endpoint][0]
    world = World(session, app)
    body, content_type = _encode(pairs, multipart=False)
    response = _browser(app, _user(app, world, rule)).post(
        _url(world, rule, url_values), data=body, content_type=content_type
    )
    assert response.status_code == status
    assert not leaks(app, response)
