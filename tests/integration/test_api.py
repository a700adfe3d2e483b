"""The lenders' JSON API: tokens and scopes, strict input with clear JSON errors and nothing partly
applied, placements and recalls, account status, pages and event cursors, one creditor's data only,
rate limits, and an OpenAPI document that is valid and says what the API does."""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from portal.api import openapi
from portal.api.errors import ERRORS
from portal.extensions import db
from portal.models import Account, AuditEvent, Creditor, IntegrationEvent, Payment, PlacementImport
from portal.models.integration import API_SCOPES, EVENT_TYPES
from portal.services import api_accounts, api_tokens, integration_events
from portal.services.audit import SYSTEM
from portal.services.hardship import desk_today
from tests import factories, plan_support
from workflows.placements import JSON_FIELDS

TODAY = desk_today()
BALANCE_DATE = TODAY - dt.timedelta(days=1)
ERROR_KEYS = {"code", "message", "request_id", "details"}

Issue = Callable[..., str]


@pytest.fixture
def creditor(session: Session) -> Creditor:
    row = factories.creditor(session)
    session.commit()
    return row


@pytest.fixture
def issue(session: Session, creditor: Creditor) -> Issue:
    """``issue(scopes=…, days=…, creditor=…)`` → the text of a new token (every scope by default)."""

    def make(
        scopes: tuple[str, ...] = API_SCOPES, days: int | None = None, creditor: Creditor = creditor
    ) -> str:
        _, raw = api_tokens.create(
            session, SYSTEM, creditor_id=creditor.id, name="test", scopes=scopes, expires_in_days=days
        )
        return raw

    return make


@pytest.fixture
def token(issue: Issue) -> str:
    return issue()


def _auth(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def _error(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS
    assert body["error"]["code"] == code, body
    assert body["error"]["request_id"] == response.headers["X-Request-Id"]
    return body["error"]  # type: ignore[no-any-return]


def _account(reference: str, **changes: Any) -> dict[str, Any]:
    """The documented example placement, for another account (and borrower), as of yesterday."""
    row = copy.deepcopy(openapi.PLACEMENT_EXAMPLE)
    row.update(
        account_reference=reference,
        borrower_reference=f"C-{reference}",
        balance_date=BALANCE_DATE.isoformat(),
        next_due_on=(TODAY + dt.timedelta(days=14)).isoformat(),
    )
    row.update(changes)
    return row


def _place(client: FlaskClient, token: str, *rows: dict[str, Any]) -> TestResponse:
    return client.post("/api/v1/placements", json={"accounts": list(rows)}, headers=_auth(token))


def _accounts_of(session: Session, creditor: Creditor) -> int:
    return (
        session.scalar(select(func.count()).select_from(Account).where(Account.creditor_id == creditor.id))
        or 0
    )


# --- Who may call --------------------------------------------------------------------------------


def test_every_token_failure_is_a_401_with_its_code_and_a_bearer_challenge(
    client: FlaskClient, session: Session, issue: Issue
) -> None:
    good = issue()
    prefix, secret = good.split("_")[1], good.split("_", 2)[2]
    expired = issue(days=1)
    found = api_tokens.find(session, expired.split("_")[1])
    assert found is not None
    found.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    session.commit()
    revoked = issue()
    found = api_tokens.find(session, revoked.split("_")[1])
    assert found is not None
    api_tokens.revoke(session, SYSTEM, found.id)
    cases = [
        ({}, "token_missing"),
        ({"Authorization": f"Basic {good}"}, "token_missing"),
        ({"Authorization": "Bearer"}, "token_missing"),
        (_auth("not-a-token"), "token_invalid"),
        (_auth(f"acc_{prefix}_{'A' * 43}"), "token_invalid"),
        (_auth(f"acc_{'q' * 10}_{secret}"), "token_invalid"),
        (_auth(expired), "token_expired"),
        (_auth(revoked), "token_revoked"),
    ]
    for headers, code in cases:
        response = client.get("/api/v1/accounts", headers=headers)
        _error(response, 401, code)
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="Accord API"')
    assert client.get("/api/v1/accounts", headers=_auth(good)).status_code == 200


def test_a_token_without_the_scope_is_refused_with_403_and_changes_nothing(
    client: FlaskClient, session: Session, issue: Issue, creditor: Creditor
) -> None:
    reader = issue(scopes=("accounts:read",))
    response = _place(client, reader, _account("LN-SCOPE-1"))
    _error(response, 403, "scope_missing")
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert 'scope="placements:write"' in response.headers["WWW-Authenticate"]
    _error(client.get("/api/v1/events", headers=_auth(reader)), 403, "scope_missing")
    assert _accounts_of(session, creditor) == 0


def test_requests_are_rate_limited_per_token_with_retry_after(
    make_app: Callable[..., Flask], app: Flask, database_url: str, session: Session, issue: Issue
) -> None:
    limited = make_app(
        DATABASE_URL=database_url, API_RATE_LIMIT="2 per minute", RATELIMIT_STORAGE_URI="memory://"
    )
    # The extra app works in this test's transaction, like the main one.
    db.bound(limited).session_factory = db.bound(app).session_factory
    client = limited.test_client()
    first, second = issue(), issue()
    statuses = [client.get("/api/v1/accounts", headers=_auth(first)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    refused = client.get("/api/v1/accounts", headers=_auth(first))
    _error(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.headers["X-RateLimit-Limit"] == "2" and refused.headers["X-RateLimit-Remaining"] == "0"
    assert client.get("/api/v1/accounts", headers=_auth(second)).status_code == 200


# --- What the API refuses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b'{"accounts": []',
        b'{"accounts": [], "accounts": []}',
        b'{"a": NaN}',
        b"\xff\xfe{}",
        b"",
        b"1e999",
    ],
    ids=["truncated", "unclosed", "duplicate-key", "nan", "not-utf8", "empty", "infinite"],
)
def test_malformed_json_is_a_400(client: FlaskClient, token: str, body: bytes) -> None:
    response = client.post(
        "/api/v1/placements", data=body, content_type="application/json", headers=_auth(token)
    )
    _error(response, 400, "json_malformed")


@pytest.mark.parametrize("body", [b"[]", b'"accounts"', b"42", b"null"])
def test_a_body_that_is_not_an_object_is_a_400(client: FlaskClient, token: str, body: bytes) -> None:
    response = client.post(
        "/api/v1/placements", data=body, content_type="application/json", headers=_auth(token)
    )
    assert "JSON object" in _error(response, 400, "json_malformed")["message"]


def test_a_body_that_is_not_json_is_a_415(client: FlaskClient, token: str) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/json-seq"):
        response = client.post(
            "/api/v1/placements", data=b'{"accounts": []}', content_type=content_type, headers=_auth(token)
        )
        _error(response, 415, "content_type")


def test_an_oversized_body_is_a_413_and_is_not_read(
    client: FlaskClient, app: Flask, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.config, "API_MAX_BODY_BYTES", 2_000)
    body = {"accounts": [_account(f"LN-BIG-{n}") for n in range(10)]}
    error = _error(client.post("/api/v1/placements", json=body, headers=_auth(token)), 413, "body_too_large")
    assert "2000 bytes" in error["message"]
    # Before the token is even looked at: a stranger cannot make the API read a large body.
    _error(client.post("/api/v1/placements", json=body), 413, "body_too_large")


def test_unknown_fields_are_refused_at_the_top_and_in_an_account(
    client: FlaskClient, session: Session, creditor: Creditor, token: str
) -> None:
    top = client.post(
        "/api/v1/placements", json={"accounts": [_account("LN-U-1")], "dry_run": True}, headers=_auth(token)
    )
    details = _error(top, 422, "validation_failed")["details"]
    assert details == [
        {
            "index": None,
            "field": "dry_run",
            "code": "unknown_field",
            "message": "dry_run is not a field of a placement request.",
            "account_reference": None,
        }
    ]
    inner = _place(client, token, _account("LN-U-2"), _account("LN-U-3", colour="blue"))
    (detail,) = _error(inner, 422, "validation_failed")["details"]
    assert (detail["index"], detail["field"], detail["code"], detail["account_reference"]) == (
        1,
        "colour",
        "unknown_field",
        "LN-U-3",
    )
    assert _accounts_of(session, creditor) == 0


@pytest.mark.parametrize("amount", [b"1234.5", b"1234.0", b"1e3", b"123456789012345678901234567890.1"])
def test_an_amount_with_a_fraction_or_exponent_is_refused_by_its_type_and_nothing_is_placed(
    client: FlaskClient, session: Session, creditor: Creditor, token: str, amount: bytes
) -> None:
    account = (
        json.dumps(_account("LN-F-1", principal=1))
        .encode()
        .replace(b'"principal": 1', b'"principal": ' + amount)
    )
    body = b'{"accounts": [' + account + b"]}"
    response = client.post(
        "/api/v1/placements", data=body, content_type="application/json", headers=_auth(token)
    )
    (detail,) = _error(response, 422, "validation_failed")["details"]
    assert (detail["field"], detail["code"]) == ("principal", "type_invalid")
    assert _accounts_of(session, creditor) == 0


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({}, "accounts", "type_invalid"),
        ({"accounts": {"account_reference": "x"}}, "accounts", "type_invalid"),
        ({"accounts": []}, "accounts", "count_invalid"),
        ({"accounts": [{}] * 501}, "accounts", "count_invalid"),
    ],
)
def test_the_accounts_list_must_hold_1_to_500_accounts(
    client: FlaskClient, token: str, body: dict[str, Any], field: str, code: str
) -> None:
    (detail,) = _error(
        client.post("/api/v1/placements", json=body, headers=_auth(token)), 422, "validation_failed"
    )["details"]
    assert (detail["field"], detail["code"]) == (field, code)


def test_unknown_query_parameters_and_bad_pages_are_400s(client: FlaskClient, token: str) -> None:
    cases = [
        ("/api/v1/accounts?page=2", "parameter_unknown"),
        ("/api/v1/accounts?limit=0", "limit_invalid"),
        ("/api/v1/accounts?limit=201", "limit_invalid"),
        ("/api/v1/accounts?limit=ten", "limit_invalid"),
        ("/api/v1/accounts?limit=5&limit=6", "limit_invalid"),
        ("/api/v1/accounts?cursor=abc", "cursor_invalid"),
        ("/api/v1/accounts?cursor=YWNjb3VudDow", "cursor_invalid"),  # "account:0"
        ("/api/v1/events?after=-1", "cursor_invalid"),
        ("/api/v1/events?after=1.5", "cursor_invalid"),
        ("/api/v1/events?type=payment", "event_type_invalid"),
        ("/api/v1/events?type=payment.succeeded,plan.broken", "event_type_invalid"),
        ("/api/v1/accounts/LN-1?expand=plan", "parameter_unknown"),
    ]
    for url, code in cases:
        _error(client.get(url, headers=_auth(token)), 400, code)


def test_unknown_paths_and_methods_answer_json(client: FlaskClient, token: str) -> None:
    _error(client.get("/api/v1/loans", headers=_auth(token)), 404, "not_found")
    wrong_method = client.get("/api/v1/placements", headers=_auth(token))
    _error(wrong_method, 405, "method_not_allowed")
    assert "POST" in wrong_method.headers["Allow"]


def test_an_error_of_ours_is_a_500_with_the_request_id_and_no_traceback(
    client: FlaskClient, token: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the database said something private")

    monkeypatch.setattr(api_accounts, "account_page", broken)
    with caplog.at_level(logging.ERROR, logger="accord"):
        response = client.get("/api/v1/accounts", headers={**_auth(token), "X-Request-Id": "req-500-check"})
    error = _error(response, 500, "internal")
    assert error["request_id"] == "req-500-check"
    text = response.get_data(as_text=True)
    assert "private" not in text and "Traceback" not in text and "RuntimeError" not in text
    assert any(record.exc_info and "req-500-check" in record.getMessage() for record in caplog.records), (
        "the traceback is logged with the request id"
    )


# --- Placements and recalls ----------------------------------------------------------------------


def test_placing_creates_then_leaves_unchanged_then_updates_by_adjustment(
    client: FlaskClient, session: Session, creditor: Creditor, token: str
) -> None:
    created = _place(client, token, _account("LN-P-1"), _account("LN-P-2"))
    assert created.status_code == 200, created.get_json()
    body = created.get_json()
    assert [(r["account_reference"], r["action"]) for r in body["results"]] == [
        ("LN-P-1", "created"),
        ("LN-P-2", "created"),
    ]
    record = session.get(PlacementImport, body["import_id"])
    assert record is not None and (record.source, record.creditor_id) == ("api", creditor.id)
    again = _place(client, token, _account("LN-P-1"), _account("LN-P-2"))
    assert [r["action"] for r in again.get_json()["results"]] == ["unchanged", "unchanged"]
    assert [r["account_id"] for r in again.get_json()["results"]] == [
        r["account_id"] for r in body["results"]
    ]
    changed = _place(client, token, _account("LN-P-1", fees=25_000))
    assert changed.get_json()["results"][0]["action"] == "updated"
    status = client.get("/api/v1/accounts/LN-P-1", headers=_auth(token)).get_json()
    assert status["balances"] == {
        "principal": 1_200_000,
        "interest": 35_050,
        "fees": 25_000,
        "total": 1_260_050,
        "credit": 0,
    }
    assert status["placed_as_of"] == BALANCE_DATE.isoformat()
    attributed = session.scalars(select(AuditEvent).where(AuditEvent.action == "api.placements")).all()
    assert [event.after["api_token"] for event in attributed] == [token.split("_")[1]] * 3
    assert all(event.actor_type == "system" for event in attributed)


def test_a_placement_with_one_bad_account_places_none_and_lists_every_problem(
    client: FlaskClient, session: Session, creditor: Creditor, token: str
) -> None:
    response = _place(
        client,
        token,
        _account("LN-A-1"),
        _account("LN-A-2", currency="XXX", phone=None, email=None),
        _account("LN-A-1"),
    )
    details = _error(response, 422, "validation_failed")["details"]
    found = {(d["index"], d["field"], d["code"]) for d in details}
    assert {(1, "currency", "currency_invalid"), (1, "phone", "contact_missing")} <= found
    assert any(d["index"] == 2 and d["code"] == "reference_duplicated" for d in details)
    assert all(d["account_reference"] in {"LN-A-1", "LN-A-2"} for d in details)
    assert _accounts_of(session, creditor) == 0
    assert session.scalar(select(func.count()).select_from(PlacementImport)) == 0
    assert not session.scalars(select(AuditEvent).where(AuditEvent.action == "api.placements")).all()


def test_recalling_an_account_twice_recalls_it_once(
    client: FlaskClient, session: Session, creditor: Creditor, token: str
) -> None:
    assert _place(client, token, _account("LN-R-1")).status_code == 200
    first = client.post(
        "/api/v1/accounts/LN-R-1/recall", json={"reason": "Sold to another agency"}, headers=_auth(token)
    )
    assert first.status_code == 200, first.get_json()
    assert first.get_json()["status"] == "recalled" and first.get_json()["recalled_at"].endswith("Z")
    second = client.post("/api/v1/accounts/LN-R-1/recall", headers=_auth(token))
    assert second.get_json() == first.get_json()
    events = session.scalars(
        select(IntegrationEvent).where(IntegrationEvent.type == "account.recalled")
    ).all()
    assert [event.data["reason"] for event in events] == ["Sold to another agency"]
    (attributed,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "api.recall")).all()
    assert attributed.after == {"api_token": token.split("_")[1], "account_reference": "LN-R-1"}
    _error(client.post("/api/v1/accounts/LN-NONE/recall", headers=_auth(token)), 404, "account_not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [({"reason": "x" * 201}, "reason"), ({"reason": 7}, "reason"), ({"why": "sold"}, "why")],
)
def test_a_bad_recall_body_is_refused_and_recalls_nothing(
    client: FlaskClient, session: Session, token: str, body: dict[str, Any], field: str
) -> None:
    assert _place(client, token, _account("LN-RB-1")).status_code == 200
    response = client.post("/api/v1/accounts/LN-RB-1/recall", json=body, headers=_auth(token))
    (detail,) = _error(response, 422, "validation_failed")["details"]
    assert detail["field"] == field
    assert client.get("/api/v1/accounts/LN-RB-1", headers=_auth(token)).get_json()["status"] == "open"


def test_a_reference_with_a_slash_is_found_percent_encoded(client: FlaskClient, token: str) -> None:
    assert _place(client, token, _account("LN/2026:7")).status_code == 200
    response = client.get("/api/v1/accounts/LN%2F2026:7", headers=_auth(token))
    assert response.get_json()["account_reference"] == "LN/2026:7"
    assert client.post("/api/v1/accounts/LN%2F2026:7/recall", headers=_auth(token)).status_code == 200


# --- Account status ------------------------------------------------------------------------------


def test_the_status_shows_balances_the_plan_in_force_and_the_last_payment(
    client: FlaskClient, session: Session, creditor: Creditor, token: str
) -> None:
    account = factories.account(session, principal=900_000, interest=30_000, fees=10_000, reference="LN-S-1")
    account.creditor_id = creditor.id
    account.borrower.creditor_id, account.borrower.external_reference = creditor.id, "C-S-1"
    account.dpd, account.stage, account.overdue_amount = 45, "mid", 60_000
    account.next_due_on, account.next_due_amount = dt.date(2026, 12, 15), 30_000
    session.commit()
    plan = plan_support.plan(
        session, [dt.date(2026, 11, 15), dt.date(2026, 12, 15), dt.date(2027, 1, 15)], account=account
    )
    first, second = plan.instalments[0], plan.instalments[1]
    first.status, first.paid_amount = "paid", first.amount
    second.paid_amount = 10_000
    for number, (received_on, reversed_amount) in enumerate(
        [(dt.date(2026, 11, 14), 0), (dt.date(2026, 11, 20), 5_000)], start=1
    ):
        session.add(
            Payment(
                account_id=account.id,
                borrower_id=account.borrower_id,
                purpose="amount",
                amount=30_000,
                currency="CNY",
                idempotency_key=f"api-status-{account.id}-{number}",
                status="succeeded",
                received_on=received_on,
                recorded_at=dt.datetime.combine(received_on, dt.time(9), dt.UTC),
                reversed_amount=reversed_amount,
            )
        )
    session.add(
        Payment(
            account_id=account.id,
            borrower_id=account.borrower_id,
            purpose="amount",
            amount=99_000,
            currency="CNY",
            idempotency_key=f"api-status-{account.id}-failed",
            status="failed",
        )
    )
    session.commit()
    response = client.get("/api/v1/accounts/LN-S-1", headers=_auth(token))
    assert response.status_code == 200
    assert response.get_json() == {
        "account_reference": "LN-S-1",
        "borrower_reference": "C-S-1",
        "status": "open",
        "currency": "CNY",
        "balances": {"principal": 900_000, "interest": 30_000, "fees": 10_000, "total": 940_000, "credit": 0},
        "overdue_amount": 60_000,
        "days_past_due": 45,
        "stage": "mid",
        "next_due": {"on": "2026-12-15", "amount": 30_000},
        "plan": {
            "status": "active",
            "instalments_total": 3,
            "instalments_paid": 1,
            "next_instalment": {"due_on": "2026-12-15", "amount": 20_000},
        },
        "last_payment": {
            "amount": 30_000,
            "currency": "CNY",
            "received_on": "2026-11-20",
            "status": "partially_reversed",
            "reversed_amount": 5_000,
        },
        "placed_as_of": None,
        "recalled_at": None,
    }


def test_an_account_without_plan_or_payment_shows_nulls(client: FlaskClient, token: str) -> None:
    assert (
        _place(client, token, _account("LN-N-1", next_due_on=None, next_due_amount=None)).status_code == 200
    )
    status = client.get("/api/v1/accounts/LN-N-1", headers=_auth(token)).get_json()
    assert (status["plan"], status["last_payment"], status["next_due"]) == (None, None, None)
    assert status["days_past_due"] == (TODAY - dt.date(2026, 9, 15)).days


# --- Pages and cursors ---------------------------------------------------------------------------


def test_paging_accounts_neither_skips_nor_repeats_even_when_accounts_arrive_meanwhile(
    client: FlaskClient, token: str
) -> None:
    references = [f"LN-PG-{n}" for n in range(5)]
    assert _place(client, token, *(_account(r) for r in references)).status_code == 200
    seen: list[str] = []
    url = "/api/v1/accounts?limit=2"
    pages = 0
    while True:
        page = client.get(url, headers=_auth(token)).get_json()
        pages += 1
        seen += [account["account_reference"] for account in page["data"]]
        if pages == 2:  # a lender places another account while paging
            assert _place(client, token, _account("LN-PG-late")).status_code == 200
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        assert len(page["data"]) == 2
        url = f"/api/v1/accounts?limit=2&cursor={page['next_cursor']}"
    assert seen == [*references, "LN-PG-late"]
    assert pages == 3


def test_events_come_once_in_order_across_pages_and_after_new_events(
    client: FlaskClient, session: Session, creditor: Creditor, issue: Issue
) -> None:
    token = issue()
    assert _place(client, token, _account("LN-E-1"), _account("LN-E-2")).status_code == 200
    accounts = session.scalars(
        select(Account).where(Account.creditor_id == creditor.id).order_by(Account.external_reference)
    ).all()
    for n in range(5):
        integration_events.emit(
            session, accounts[n % 2], "payment.succeeded", {"payment_id": n, "amount": 100 + n}
        )
    session.commit()
    first = client.get("/api/v1/events?limit=2", headers=_auth(token)).get_json()
    assert [e["data"]["payment_id"] for e in first["data"]] == [0, 1] and first["has_more"]
    assert first["data"][0]["account_reference"] == "LN-E-1"
    assert first["data"][0]["id"] == f"evt_{first['data'][0]['seq']}"
    cursor, seen = first["next_cursor"], [e["seq"] for e in first["data"]]
    while True:
        page = client.get(f"/api/v1/events?limit=2&after={cursor}", headers=_auth(token)).get_json()
        seen += [e["seq"] for e in page["data"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert len(seen) == 5 and seen == sorted(set(seen))
    empty = client.get(f"/api/v1/events?after={cursor}", headers=_auth(token)).get_json()
    assert empty == {"data": [], "next_cursor": cursor, "has_more": False}
    # Later: a recall through the API and a payment; polling from the stored cursor sees just them.
    client.post("/api/v1/accounts/LN-E-2/recall", json={"reason": "settled elsewhere"}, headers=_auth(token))
    integration_events.emit(session, accounts[0], "payment.succeeded", {"payment_id": 9, "amount": 5})
    session.commit()
    later = client.get(f"/api/v1/events?after={cursor}", headers=_auth(token)).get_json()
    assert [(e["type"], e["account_reference"]) for e in later["data"]] == [
        ("account.recalled", "LN-E-2"),
        ("payment.succeeded", "LN-E-1"),
    ]
    assert later["data"][0]["data"] == {"currency": "CNY", "reason": "settled elsewhere"}
    only_recalls = client.get("/api/v1/events?type=account.recalled", headers=_auth(token)).get_json()
    assert [e["type"] for e in only_recalls["data"]] == ["account.recalled"]


# --- One creditor's data only --------------------------------------------------------------------


def test_another_creditors_account_is_as_unknown_as_one_that_does_not_exist(
    client: FlaskClient, session: Session, issue: Issue, token: str
) -> None:
    other_creditor = factories.creditor(session)
    session.commit()
    theirs = issue(creditor=other_creditor)
    assert _place(client, theirs, _account("LN-X-1")).status_code == 200
    account = session.scalar(select(Account).where(Account.external_reference == "LN-X-1"))
    assert account is not None
    integration_events.emit(session, account, "payment.succeeded", {"payment_id": 1, "amount": 1})
    session.commit()

    def without_ids(response: TestResponse) -> dict[str, Any]:
        error = dict(response.get_json()["error"])
        error.pop("request_id")
        error["message"] = error["message"].replace("LN-X-1", "?").replace("LN-NOPE", "?")
        return {"status": response.status_code, **error}

    for method, suffix in (("GET", ""), ("POST", "/recall")):
        other = client.open(f"/api/v1/accounts/LN-X-1{suffix}", method=method, headers=_auth(token))
        missing = client.open(f"/api/v1/accounts/LN-NOPE{suffix}", method=method, headers=_auth(token))
        _error(other, 404, "account_not_found")
        assert without_ids(other) == without_ids(missing)
    session.refresh(account)
    assert account.status == "open"
    assert client.get("/api/v1/accounts", headers=_auth(token)).get_json()["data"] == []
    assert client.get("/api/v1/events", headers=_auth(token)).get_json()["data"] == []
    # The same reference placed by this creditor is another account of its own.
    assert _place(client, token, _account("LN-X-1")).get_json()["results"][0]["action"] == "created"


# --- The documents -------------------------------------------------------------------------------


def test_the_openapi_document_is_valid_3_1_and_its_examples_match_their_schemas(client: FlaskClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(copy.deepcopy(document)).validate()
    components = document["components"]
    for schema in components["schemas"].values():
        jsonschema_rs.meta.validate(schema)  # each is a valid JSON Schema 2020-12

    def check(name: str, value: Any) -> None:
        validator = jsonschema_rs.Draft202012Validator(
            {"$ref": f"#/components/schemas/{name}", "components": components}
        )
        validator.validate(value)

    check("PlacementRequest", {"accounts": [openapi.PLACEMENT_EXAMPLE]})
    check("AccountStatus", openapi.STATUS_EXAMPLE)
    check("EventPage", openapi.EVENT_PAGE_EXAMPLE)
    with pytest.raises(jsonschema_rs.ValidationError):
        check("Placement", {**openapi.PLACEMENT_EXAMPLE, "colour": "blue"})
    with pytest.raises(jsonschema_rs.ValidationError):
        check("Placement", {**openapi.PLACEMENT_EXAMPLE, "principal": 12.5})


def test_the_placement_schema_is_the_placement_rules_fields(client: FlaskClient) -> None:
    schema = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]["Placement"]
    assert list(schema["properties"]) == [column.name for column in JSON_FIELDS]
    assert schema["required"] == [column.name for column in JSON_FIELDS if column.required]
    assert schema["additionalProperties"] is False
    for column in JSON_FIELDS:
        described = schema["properties"][column.name]
        assert described["description"] == column.description
        assert ("null" in described["type"]) is not column.required


def test_the_documented_example_placement_is_accepted(client: FlaskClient, token: str) -> None:
    response = _place(client, token, openapi.PLACEMENT_EXAMPLE)
    assert response.status_code == 200, response.get_json()


def test_the_docs_page_lists_every_operation_parameter_field_code_and_event_type(client: FlaskClient) -> None:
    response = client.get("/api/v1/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "<script" not in page
    document = client.get("/api/v1/openapi.json").get_json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert f"{method.upper()} /api/v1{path}" in page
            for parameter in operation.get("parameters", ()):
                assert f"<code>{parameter['name']}</code>" in page
    for name, schema in document["components"]["schemas"].items():
        assert f'id="schema-{name}"' in page
        for field in schema.get("properties", {}):
            assert f"<code>{field}</code>" in page or f"<code>{field}" in page, (name, field)
    for code in ERRORS:
        assert f"<code>{code}</code>" in page
    for event_type in EVENT_TYPES:
        assert f"<code>{event_type}</code>" in page
    assert "curl -sS" in page and "payment.succeeded" in page and "portfolio.json" in page


def test_control_characters_and_lone_surrogates_are_refused_in_valid_json(
    client: FlaskClient, token: str
) -> None:
    assert _place(client, token, _account("LN-C-1")).status_code == 200
    for reason in ("sold\u0000", "line\nbreak", "\ud800"):
        response = client.post(
            "/api/v1/accounts/LN-C-1/recall",
            data=json.dumps({"reason": reason}),
            content_type="application/json",
            headers=_auth(token),
        )
        assert _error(response, 422, "validation_failed")["details"][0]["field"] == "reason"
    echoed = client.post(
        "/api/v1/placements",
        data=b'{"accounts": [{"\\ud800": 1}], "\\udfff": 2}',
        content_type="application/json",
        headers=_auth(token),
    )
    details = _error(echoed, 422, "validation_failed")["details"]
    assert details[0]["field"] == "\udfff"
    assert client.get("/api/v1/accounts/LN-C-1", headers=_auth(token)).get_json()["status"] == "open"
