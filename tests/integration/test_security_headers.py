"""Every response carries the security headers: a crawl of every route in ``app.url_map``.

Each route is opened with each of its methods by an anonymous visitor, by the borrower who owns
the objects in its URL, by a staff user whose role may use it and, for the lenders' API, with a
bearer token. Pages render for real where the objects exist; refusals, redirects and error pages
must carry the same headers. Staff session limits are proven at the end.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from portal import crypto
from portal.integrations.storage import document_storage_from_config, storage_from_config
from portal.models import (
    Account,
    Borrower,
    CollectionAction,
    DayClose,
    DebtDispute,
    HomeVisit,
    LegalReferral,
    ReconciliationException,
    StaffUser,
    StripeImport,
)
from portal.models.integration import API_SCOPES, IntegrationEvent, WebhookDelivery, WebhookEndpoint
from portal.models.placements import PlacementImport
from portal.services import api_tokens, borrower_contact, finance_dashboard
from portal.services.audit import Actor
from tests import factories
from tests.conftest import sign_in
from tests.integration.test_routes import RULES, _borrower_world, _url
from workflows.access import Role, can

# Blueprints whose every response holds personal or financial data, or a sign-in step.
PRIVATE_BLUEPRINTS = ("borrower", "staff", "admin", "auth", "api", "dev")
# The pages that load Stripe.js, and so the only ones whose policy names Stripe's origin.
STRIPE_PAGES = {"borrower.payment_card"}
# Referrer policies that never send a path to another site and keep CSRF's same-origin check working.
REFERRER_POLICIES = {"strict-origin-when-cross-origin", "same-origin", "strict-origin"}
UNSAFE_SOURCES = {"'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*"}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# A year, subdomains included: what production answers on every route.
HSTS = "max-age=31536000; includeSubDomains"
MISSING_ID = 999_999  # for objects only a state-changing route names: its refusal is crawled too
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def _methods(rule: Rule) -> list[str]:
    """GET when the route answers it, and each state-changing method it takes."""
    methods = rule.methods or set()
    return (["GET"] if "GET" in methods else []) + sorted(methods & STATE_CHANGING)


def _policy(header: str) -> dict[str, list[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name.lower(): sources for name, *sources in directives}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def header_problems(
    endpoint: str, response: TestResponse, *, authenticated: bool, stripe_origin: str
) -> list[str]:
    """What is missing or too loose in one response's security headers."""
    headers, problems = response.headers, []
    blueprint = endpoint.partition(".")[0] if "." in endpoint else None
    raw_policy = headers.get("Content-Security-Policy")
    if raw_policy is None:
        problems.append("no Content-Security-Policy")
    else:
        policy = _policy(raw_policy)
        loose = sorted({source for sources in policy.values() for source in sources} & UNSAFE_SOURCES)
        if loose:
            problems.append(f"policy allows {loose}")
        allowed_scripts = {"'self'", "'none'"} | ({stripe_origin} if endpoint in STRIPE_PAGES else set())
        scripts = policy.get("script-src", policy.get("default-src", []))
        if not scripts or set(scripts) - allowed_scripts:
            problems.append(f"script-src {scripts}")
        if policy.get("object-src", policy.get("default-src")) != ["'none'"]:
            problems.append("plugins (object-src) not refused")
        if policy.get("frame-ancestors") != ["'none'"]:
            problems.append("framing (frame-ancestors) not refused")
        if endpoint in STRIPE_PAGES and response.status_code == 200 and stripe_origin not in scripts:
            problems.append("the card page cannot load Stripe.js")
    if headers.get("X-Content-Type-Options") != "nosniff":
        problems.append("no X-Content-Type-Options: nosniff")
    if headers.get("Referrer-Policy") not in REFERRER_POLICIES:
        problems.append(f"Referrer-Policy {headers.get('Referrer-Policy')!r}")
    if headers.get("X-Frame-Options") != "DENY":
        problems.append("no X-Frame-Options: DENY")
    if not headers.get("X-Request-Id"):
        problems.append("no X-Request-Id")
    cache = {part.strip().lower() for part in headers.get("Cache-Control", "").split(",")}
    if (
        (authenticated and endpoint != "static") or blueprint in PRIVATE_BLUEPRINTS
    ) and "no-store" not in cache:
        problems.append(f"Cache-Control {headers.get('Cache-Control')!r}, not no-store")
    return [f"{endpoint} {response.request.method} {response.status_code}: {p}" for p in problems]


class World:
    """The objects a route's URL names, each built the first time a URL needs it: what the
    borrower owns (test_routes' world), and the records staff and admin pages show."""

    def __init__(self, session: Session, app: Flask) -> None:
        self.session, self.app = session, app
        self._built: dict[str, Any] = {}

    def _once(self, name: str, build: Callable[[], Any]) -> Any:
        if name not in self._built:
            self._built[name] = build()
        return self._built[name]

    def _add(self, row: Any) -> int:
        self.session.add(row)
        self.session.commit()
        return int(row.id)

    @cached_property
    def owned(self) -> dict[str, Any]:
        return _borrower_world(self.session, self.app)

    @cached_property
    def owner(self) -> Borrower:
        return self.owned["_borrower"]

    @cached_property
    def account(self) -> Account:
        account = self.session.get(Account, self.owned["account_id"])
        assert account is not None
        return account

    def borrower_for(self, rule: Rule) -> Borrower:
        """The owner of the objects when the route names some or is a borrower's page; else any
        borrower (building what a borrower owns renders an agreement, which takes a while)."""
        if rule.arguments or rule.endpoint.startswith("borrower."):
            return self.owner
        return self._once("any_borrower", lambda: factories.account(self.session).borrower)

    def staff(self, role: Role) -> StaffUser:
        return self._once(f"staff:{role}", lambda: factories.staff(self.session, role=role))

    @property
    def bearer_token(self) -> str:
        return self._once("token", self._token)[1]

    def _token(self) -> tuple[int, str]:
        row, raw = api_tokens.create(
            self.session,
            Actor.staff(self.staff(Role.ADMIN)),
            creditor_id=self.account.creditor_id,
            name="crawl",
            scopes=API_SCOPES,
            expires_in_days=None,
        )
        self.session.commit()
        return row.id, raw

    def _builders(self) -> dict[str, Callable[[], Any]]:
        account, today = self.account, dt.date.today()
        documents = document_storage_from_config(self.app.config)

        def collector() -> int:
            return self.staff(Role.COLLECTOR).id

        return {
            "action_id": lambda: self._add(
                CollectionAction(
                    account_id=account.id,
                    run_date=today,
                    rule_key=f"mid:call_task:0:{today}",
                    kind="call_task",
                    channel="call",
                    stage="mid",
                )
            ),
            "visit_id": lambda: self._add(
                HomeVisit(
                    account_id=account.id,
                    planned_for=dt.datetime.now(dt.UTC) + dt.timedelta(days=3),
                    collector_ids=[collector(), factories.staff(self.session, role=Role.COLLECTOR).id],
                    created_by_id=collector(),
                )
            ),
            "referral_id": lambda: self._add(
                LegalReferral(
                    account_id=account.id, reason="No contact in 90 days.", requested_by_id=collector()
                )
            ),
            "dispute_id": lambda: self._add(
                DebtDispute(
                    account_id=account.id,
                    borrower_id=account.borrower_id,
                    reason="amount_wrong",
                    detail="The fees are wrong.",
                    evidence_keys=[storage_from_config(self.app.config).put(PNG, suffix=".png")],
                )
            ),
            "exception_id": lambda: self._add(
                ReconciliationException(
                    kind="missing_in_ledger",
                    day=today - dt.timedelta(days=1),
                    stripe_ref="txn_crawl",
                    amount=12_300,
                    currency="CNY",
                    difference=12_300,
                )
            ),
            "import_id": lambda: self._add(
                StripeImport(source="csv", filename="balance.csv", status="completed")
            ),
            "close_id": lambda: self._add(
                DayClose(
                    day=dt.date(2020, 1, 2),
                    currency="CNY",
                    figures={},
                    report_key=documents.put(b"%PDF-1.7\n%crawl\n", suffix=".pdf"),
                )
            ),
            "placement_import_id": lambda: self._add(
                PlacementImport(
                    creditor_id=account.creditor_id,
                    source="upload",
                    filename="placements.csv",
                    sha256="0" * 64,
                    status="applied",
                    actor_type="staff",
                    actor_id=self.staff(Role.ADMIN).id,
                )
            ),
            "token_id": lambda: self._once("token", self._token)[0],
            "endpoint_id": lambda: self._add(
                WebhookEndpoint(
                    creditor_id=account.creditor_id, url="https://lender.example/hooks", secret="whsec_crawl"
                )
            ),
            "delivery_id": lambda: self._add(
                WebhookDelivery(
                    endpoint_id=self.value("admin.webhook_endpoint", "endpoint_id"),
                    event_id=self._add(
                        IntegrationEvent(
                            creditor_id=account.creditor_id,
                            account_id=account.id,
                            type="payment.succeeded",
                            data={},
                        )
                    ),
                )
            ),
            "user_id": collector,
            "borrower_id": lambda: account.borrower_id,
            "account_reference": lambda: account.external_reference,
            "token": lambda: borrower_contact.opt_out_token(
                self.app.config["SECRET_KEY"], account.borrower_id, "sms"
            ),
            "dataset": lambda: next(iter(finance_dashboard.DATASETS)),
            "filename": lambda: "css/accord.css",
        }

    def value(self, endpoint: str, name: str) -> Any:
        """The value of URL argument ``name`` of ``endpoint``."""
        if endpoint == "staff.dispute_file" and name == "file_id":
            return 1  # a dispute's files are numbered from 1
        if endpoint.startswith("admin.placement") and name == "import_id":
            name = "placement_import_id"
        if name in self.owned:
            return self.owned[name]
        builders = self._builders()
        if name in builders:
            return self._once(name, builders[name])
        return MISSING_ID  # an object no builder knows (yet): the route's refusal is crawled

    def url(self, rule: Rule) -> str:
        path = re.sub(
            r"<(?:[^:>]+(?:\([^)]*\))?:)?([^>]+)>",
            lambda m: str(self.value(rule.endpoint, m.group(1))),
            rule.rule,
        )
        if rule.endpoint in ("staff.finance_export_postings", "staff.finance_export_journal"):
            last = dt.date.today() - dt.timedelta(days=1)
            path += f"?from={last.replace(day=1).isoformat()}&to={last.isoformat()}&currency=CNY"
        return path


def _staff_role(app: Flask, rule: Rule) -> Role:
    """The first role allowed on a staff route; an admin elsewhere (public and borrower routes)."""
    permission = getattr(app.view_functions[rule.endpoint], "required_permission", None)
    if permission is None:
        return Role.ADMIN
    return next(role for role in Role if can(role, permission))


def _client(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def _crawl(app: Flask, rule: Rule, world: World) -> Iterator[tuple[str, TestResponse]]:
    """Every method of ``rule`` by every audience: (audience, response)."""
    for method in _methods(rule):
        url = world.url(rule)
        yield "anonymous", _client(app).open(url, method=method)
        yield "borrower", sign_in(_client(app), world.borrower_for(rule)).open(url, method=method)
        staff = world.staff(_staff_role(app, rule))
        yield "staff", sign_in(_client(app), staff).open(url, method=method)
        if rule.endpoint.startswith("api."):
            lender = _client(app)
            lender.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {world.bearer_token}"
            yield "lender", lender.open(url, method=method)


def _audience(app: Flask, rule: Rule) -> str:
    """Who a route is for: the audience whose GET must reach the page itself."""
    view = app.view_functions[rule.endpoint]
    if getattr(view, "required_scope", None):
        return "lender"
    if getattr(view, "required_permission", None):
        return "staff"
    return "borrower" if getattr(view, "borrower_only", False) else "anonymous"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.endpoint)
def test_every_response_of_every_route_carries_the_security_headers(
    rule: Rule, app: Flask, session: Session
) -> None:
    world = World(session, app)
    stripe_origin = _origin(app.config["STRIPE_JS_URL"])
    problems = []
    for audience, response in _crawl(app, rule, world):
        problems += header_problems(
            rule.endpoint, response, authenticated=audience != "anonymous", stripe_origin=stripe_origin
        )
        if (
            response.request.method == "GET"
            and audience == _audience(app, rule)
            and response.status_code >= 400
        ):
            problems.append(f"{rule.endpoint}: the crawl did not reach the page ({response.status_code})")
        response.close()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("environment", "hsts"), [("production", True), ("development", False)])
def test_https_is_enforced_by_hsts_in_production_only(
    environment: str, hsts: bool, make_app: Callable[..., Flask], database_url: str
) -> None:
    """Every route of an app configured for ``environment``, opened anonymously (forms refused by
    their CSRF check): the same headers, with HSTS exactly in production."""
    app = make_app(
        ACCORD_ENV=environment,
        DATABASE_URL=database_url,
        NOTIFIER="live",
        LOG_FORMAT="text",  # the process's log handler stays as the other tests have it
        RATELIMIT_STORAGE_URI="memory://",
        ENCRYPTION_KEYS=crypto.development_keys_text(),
    )
    stripe_origin = _origin(app.config["STRIPE_JS_URL"])
    problems = []
    for rule in app.url_map.iter_rules():
        for method in _methods(rule):
            response = _client(app).open(_url(rule), method=method)
            problems += header_problems(
                rule.endpoint, response, authenticated=False, stripe_origin=stripe_origin
            )
            sts = response.headers.get("Strict-Transport-Security")
            if sts != (HSTS if hsts else None):
                problems.append(f"{rule.endpoint} {method}: Strict-Transport-Security {sts!r}")
            response.close()
    assert not problems, "\n".join(problems)


def test_static_files_stay_cacheable_for_a_signed_in_borrower(client: FlaskClient, session: Session) -> None:
    """They hold no personal data, and phones on slow networks should not fetch them on every page."""
    sign_in(client, factories.account(session).borrower)
    response = client.get("/static/css/accord.css")
    assert response.status_code == 200
    assert "no-store" not in response.headers.get("Cache-Control", "")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    response.close()
    assert client.get("/home").headers["Cache-Control"] == "no-store"


# --- Staff sessions: 30 minutes idle, 12 hours in all (disabling a user: tests/integration/test_admin.py)


def _staff_home_after(client: FlaskClient, *, idle: dt.timedelta, since_sign_in: dt.timedelta) -> int:
    """Open the staff home page as if the session had been idle and open that long: 200 while it
    lasts; once it has ended, the sign-in page, and the session stays ended."""
    with client.session_transaction() as sess:
        sess["seen_at"] -= int(idle.total_seconds())
        sess["auth_at"] -= int(since_sign_in.total_seconds())
    response = client.get("/staff/")
    if response.status_code == 302:
        assert response.location == "/staff/login"
        assert client.get("/staff/").location == "/staff/login?next=/staff/"  # signed out, not just told
    return response.status_code


@pytest.mark.parametrize(
    ("idle_minutes", "status"), [(29, 200), (31, 302)], ids=["29 minutes: open", "31 minutes: ended"]
)
def test_a_staff_session_ends_after_30_idle_minutes(signed_in, idle_minutes: int, status: int) -> None:  # type: ignore[no-untyped-def]
    idle = dt.timedelta(minutes=idle_minutes)
    assert _staff_home_after(signed_in(Role.AGENT), idle=idle, since_sign_in=idle) == status


@pytest.mark.parametrize(
    ("hours_signed_in", "status"), [(11.9, 200), (12.1, 302)], ids=["11.9 hours: open", "12.1 hours: ended"]
)
def test_a_staff_session_ends_12_hours_after_sign_in_however_busy(
    signed_in, hours_signed_in: float, status: int
) -> None:  # type: ignore[no-untyped-def]
    since = dt.timedelta(hours=hours_signed_in)
    assert (
        _staff_home_after(signed_in(Role.AGENT), idle=dt.timedelta(minutes=1), since_sign_in=since) == status
    )
