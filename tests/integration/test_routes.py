"""Every route, found from ``app.url_map``: CSRF on state changes, sign-in and role on staff pages.

A new route is covered the day it is added; one that declares no permission fails here.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule

from portal import create_app
from portal.integrations.storage import storage_from_config
from portal.models import Plan, SavedCard
from portal.models.integration import API_SCOPES
from portal.services import agreements as agreements_service
from portal.services import checkout
from portal.services import hardship as hardship_service
from tests import factories
from tests.conftest import sign_in
from workflows.access import Permission, Role, can

PUBLIC_ENDPOINTS = {
    "static",
    "public.index",
    "public.language",
    "public.healthz",
    "public.readyz",
    "public.verify",
    "auth.staff_login",
    "auth.staff_totp",
    "auth.staff_enrol",
    "auth.staff_logout",
    "borrower.signin",
    "borrower.signin_code",
    "borrower.signin_resend",
    "borrower.signout",
    "borrower.signout_everywhere",
    "borrower.opt_out",  # the link in a message: the signed token says who, no sign-in
    "api.openapi",  # the API's description, for tools and people
    "api.docs",
}
# Authenticated by a signature on the body instead of a session: the only routes without CSRF.
SIGNED_ENDPOINTS = {"webhooks.stripe_event"}
# Authenticated by a lender's bearer token on each request, never a cookie: no CSRF either.
TOKEN_BLUEPRINTS = ("api.",)
STAFF_BLUEPRINTS = ("staff.", "admin.")
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# The routes are known before the database fixtures exist, so parametrisation lists them by name.
_APP = create_app(
    {"ACCORD_ENV": "test", "DATABASE_URL": "sqlite://", "SECRET_KEY": "x", "INSTANCE_PATH": "instance"}
)
RULES = sorted(_APP.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint))


def _url(rule: Rule) -> str:
    def value(name: str) -> str:
        return "1" if "id" in name else ("reason" if name == "step" else "x")

    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: value(m.group(1)), rule.rule)


def _method(rule: Rule) -> str:
    methods = (rule.methods or set()) & STATE_CHANGING
    return sorted(methods)[0] if methods else "GET"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.endpoint)
def test_every_route_is_public_by_intent_borrower_only_or_staff_with_a_permission(
    rule: Rule, app: Flask
) -> None:
    if rule.endpoint in PUBLIC_ENDPOINTS | SIGNED_ENDPOINTS:
        return
    view = app.view_functions[rule.endpoint]
    if rule.endpoint.startswith(TOKEN_BLUEPRINTS):
        assert getattr(view, "required_scope", None) in API_SCOPES, (
            f"{rule.endpoint} declares no @token_required(scope)"
        )
        return
    if rule.endpoint.startswith("borrower."):
        assert getattr(view, "borrower_only", False), (
            f"{rule.endpoint} is neither public nor @borrower_required"
        )
        return
    assert rule.endpoint.startswith(STAFF_BLUEPRINTS), f"{rule.endpoint} is in no known audience"
    assert isinstance(getattr(view, "required_permission", None), Permission), (
        f"{rule.endpoint} declares no @requires(permission)"
    )


STATE_RULES = [
    r
    for r in RULES
    if (r.methods or set()) & STATE_CHANGING
    and r.endpoint not in SIGNED_ENDPOINTS
    and not r.endpoint.startswith(TOKEN_BLUEPRINTS)
]
TOKEN_RULES = [
    r for r in RULES if r.endpoint.startswith(TOKEN_BLUEPRINTS) and r.endpoint not in PUBLIC_ENDPOINTS
]


@pytest.mark.parametrize("endpoint", sorted(SIGNED_ENDPOINTS))
def test_routes_without_csrf_refuse_a_request_without_a_valid_signature(
    endpoint: str, app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    rule = next(r for r in RULES if r.endpoint == endpoint)
    unsigned = client.open(_url(rule), method=_method(rule), data=b"{}", content_type="application/json")
    assert unsigned.status_code == 400
    forged = client.open(
        _url(rule),
        method=_method(rule),
        data=b"{}",
        content_type="application/json",
        headers={"Stripe-Signature": "t=1,v1=deadbeef"},
    )
    assert forged.status_code == 400


@pytest.mark.parametrize("rule", TOKEN_RULES, ids=lambda r: r.endpoint)
def test_every_api_route_refuses_a_request_without_a_valid_token_with_401_json(
    rule: Rule, app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    forged = f"acc_{'a' * 10}_{'b' * 43}"
    for headers in ({}, {"Authorization": f"Bearer {forged}"}):
        response = client.open(_url(rule), method=_method(rule), data={}, headers=headers)
        assert response.status_code == 401, f"{rule.endpoint} answered {response.status_code}"
        assert response.mimetype == "application/json"
        assert response.get_json()["error"]["code"] in {"token_missing", "token_invalid"}
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("rule", STATE_RULES, ids=lambda r: r.endpoint)
def test_every_state_changing_route_refuses_a_request_without_csrf_token(
    rule: Rule, app: Flask, client: FlaskClient, staff_of, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    sign_in(client, staff_of(Role.ADMIN))
    response = client.open(_url(rule), method=_method(rule), data={})
    assert response.status_code == 400, f"{rule.endpoint} accepted a request without a CSRF token"
    assert "This form has expired" in response.get_data(as_text=True)


STAFF_RULES = [r for r in RULES if r.endpoint.startswith(STAFF_BLUEPRINTS)]


@pytest.mark.parametrize("rule", STAFF_RULES, ids=lambda r: r.endpoint)
def test_every_staff_route_sends_anonymous_users_to_sign_in(rule: Rule, client: FlaskClient) -> None:
    response = client.open(_url(rule), method=_method(rule))
    assert response.status_code == 302
    assert "/staff/login" in response.location


@pytest.mark.parametrize("rule", STAFF_RULES, ids=lambda r: r.endpoint)
@pytest.mark.parametrize("role", list(Role), ids=str)
def test_every_staff_route_admits_exactly_the_roles_with_its_permission(
    rule: Rule, role: Role, app: Flask, client: FlaskClient, staff_of
) -> None:  # type: ignore[no-untyped-def]
    permission = app.view_functions[rule.endpoint].required_permission
    sign_in(client, staff_of(role))
    response = client.open(_url(rule), method=_method(rule))
    if can(role, permission):
        assert response.status_code != 403, f"{role} refused at {rule.endpoint}"
    else:
        assert response.status_code == 403, f"{role} admitted at {rule.endpoint}"


BORROWER_RULES = [
    r for r in RULES if r.endpoint.startswith("borrower.") and r.endpoint not in PUBLIC_ENDPOINTS
]


@pytest.mark.parametrize("rule", BORROWER_RULES, ids=lambda r: r.endpoint)
def test_every_borrower_page_sends_anonymous_users_and_staff_to_sign_in(
    rule: Rule, client: FlaskClient, staff_of
) -> None:  # type: ignore[no-untyped-def]
    response = client.open(_url(rule), method=_method(rule))
    assert response.status_code == 302
    assert response.location.endswith("/signin")
    sign_in(client, staff_of(Role.ADMIN))
    assert client.open(_url(rule), method=_method(rule)).status_code == 302


def _borrower_world(session, app: Flask):  # type: ignore[no-untyped-def]
    """A borrower with an account, a submitted request for help with offers and an evidence file:
    the ids every borrower route with an argument needs."""
    account = factories.account(session)
    account.oldest_unpaid_due_on = dt.date.today() - dt.timedelta(days=45)
    account.dpd, account.stage, account.overdue_amount, account.next_due_amount = 45, "mid", 90_000, 50_000
    case = factories.hardship_case(session, account)
    evidence = factories.evidence_file(session, case, storage_from_config(app.config))
    offer = factories.offer(session, case)
    # Accepting an offer prepares the agreement (rendered inline in tests), so it has an id too.
    hardship_service.accept(session, account.borrower, case.id, offer.id)
    agreement = agreements_service.latest_for_case(session, case.id)
    assert agreement is not None and agreement.status == "ready"
    # Paying online: a payment just started, a saved card, and a plan in force (for autopay).
    payment = checkout.start(session, account.borrower, account.id, "balance", None, "en")
    card = SavedCard(
        borrower_id=account.borrower_id,
        payment_method_id=f"pm_routes_{account.id}",
        brand="visa",
        last4="4242",
        exp_month=12,
        exp_year=2030,
    )
    plan = Plan(
        account_id=account.id,
        hardship_case_id=case.id,
        agreement_id=agreement.id,
        currency=account.currency,
        total=90_000,
        grace_days=5,
    )
    session.add_all([card, plan])
    session.commit()
    return {
        "payment_id": payment.id,
        "card_id": card.id,
        "plan_id": plan.id,
        "agreement_id": agreement.id,
        "account_id": account.id,
        "case_id": case.id,
        "file_id": evidence.id,
        "offer_id": offer.id,
        "step": "reason",
        "_reference": account.external_reference,
        "_borrower": account.borrower,
    }


def _fill(rule: Rule, ids: dict[str, object]) -> str:
    return re.sub(r"<(?:[^:>]+(?:\([^)]*\))?:)?([^>]+)>", lambda m: str(ids[m.group(1)]), rule.rule)


@pytest.mark.parametrize("rule", [r for r in BORROWER_RULES if r.arguments], ids=lambda r: r.endpoint)
def test_another_borrowers_ids_are_not_found(rule: Rule, client: FlaskClient, session, app: Flask) -> None:  # type: ignore[no-untyped-def]
    mine, theirs = _borrower_world(session, app), _borrower_world(session, app)
    sign_in(client, mine["_borrower"])
    method = _method(rule)
    own = client.open(_fill(rule, mine), method=method)
    assert own.status_code in {200, 302, 422}, own.status_code  # 422: an empty form, refused
    # Every id of the other borrower, alone and together, is as unknown as a wrong one.
    for name in rule.arguments - {"step"}:
        mixed = {**mine, name: theirs[name]}
        other = client.open(_fill(rule, mixed), method=method)
        assert other.status_code == 404, (name, other.status_code)
        assert str(theirs["_reference"]) not in other.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/", "/signin", "/staff/login", "/healthz"])
def test_pages_carry_a_strict_content_security_policy(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_signed_in_pages_are_not_cached(client: FlaskClient, session) -> None:  # type: ignore[no-untyped-def]
    account = factories.account(session)
    sign_in(client, account.borrower)
    assert client.get("/home").headers["Cache-Control"] == "no-store"
