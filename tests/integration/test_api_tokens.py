"""Lenders' API tokens: issued for one creditor with scopes, shown once, stored only as a hash,
refused once revoked or expired; the admin page and the command line that manage them."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.models import ApiToken, AuditEvent, Creditor
from portal.services import api_tokens
from portal.services.audit import SYSTEM, Actor
from tests import factories
from tests.conftest import sign_in
from workflows.access import Role
from workflows.errors import DomainError

TOKEN_TEXT = re.compile(r"acc_[a-z0-9]{10}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def creditor(session: Session) -> Creditor:
    row = factories.creditor(session)
    session.commit()
    return row


def _issue(session: Session, creditor: Creditor, **overrides: object) -> tuple[ApiToken, str]:
    values: dict[str, object] = {
        "creditor_id": creditor.id,
        "name": "Core banking",
        "scopes": ["accounts:read"],
        "expires_in_days": None,
    }
    values.update(overrides)
    return api_tokens.create(session, SYSTEM, **values)  # type: ignore[arg-type]


def _audit(session: Session, action: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_a_token_is_stored_as_the_hash_of_its_text_and_its_secret_is_in_no_audit_event(
    session: Session, creditor: Creditor
) -> None:
    token, raw = _issue(session, creditor, scopes=["events:read", "accounts:read"], expires_in_days=30)
    assert TOKEN_TEXT.fullmatch(raw)
    assert raw.split("_")[1] == token.prefix
    assert token.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert token.scopes == ["accounts:read", "events:read"]  # in the API's order
    session.expire_all()
    stored = session.get(ApiToken, token.id)
    assert stored is not None
    secret = raw.split("_", 2)[2]
    assert all(secret not in str(value) for value in vars(stored).values())
    (created,) = _audit(session, "api_token.created")
    assert created.after is not None and created.after["prefix"] == token.prefix
    assert created.after["scopes"] == ["accounts:read", "events:read"]
    assert secret not in json.dumps(created.after) and token.token_hash not in json.dumps(created.after)


def test_authenticate_knows_the_token_and_refuses_a_wrong_secret_or_prefix_alike(
    session: Session, creditor: Creditor
) -> None:
    token, raw = _issue(session, creditor)
    assert api_tokens.authenticate(session, raw).id == token.id
    other, _ = _issue(session, creditor)
    prefix, secret = token.prefix, raw.split("_", 2)[2]
    wrong_secret = f"acc_{prefix}_{'A' * 43}"
    someone_elses_secret = f"acc_{other.prefix}_{secret}"
    unknown_prefix = f"acc_{'z' * 10}_{secret}"
    for attempt in (
        wrong_secret,
        someone_elses_secret,
        unknown_prefix,
        "acc_short",
        raw + "x",
        "",
        raw.upper(),
    ):
        with pytest.raises(DomainError) as refused:
            api_tokens.authenticate(session, attempt)
        assert refused.value.code == "token_invalid", attempt


def test_a_revoked_token_is_refused_and_revoking_again_changes_nothing(
    session: Session, creditor: Creditor
) -> None:
    token, raw = _issue(session, creditor)
    api_tokens.revoke(session, Actor.staff(factories.staff(session, role=Role.ADMIN)), token.id)
    api_tokens.revoke(session, SYSTEM, token.id)
    with pytest.raises(DomainError) as refused:
        api_tokens.authenticate(session, raw)
    assert refused.value.code == "token_revoked"
    (revoked,) = _audit(session, "api_token.revoked")
    assert revoked.actor_type == "staff"
    assert revoked.before is not None and revoked.before["revoked_at"] is None
    assert revoked.after is not None and revoked.after["revoked_at"] is not None
    with pytest.raises(DomainError) as unknown:
        api_tokens.revoke(session, SYSTEM, token.id + 1000)
    assert unknown.value.code == "api_token_unknown"


def test_a_token_expires_after_its_days(session: Session, creditor: Creditor) -> None:
    token, raw = _issue(session, creditor, expires_in_days=7)
    assert token.expires_at is not None
    assert api_tokens.authenticate(session, raw, now=token.expires_at - dt.timedelta(seconds=1))
    with pytest.raises(DomainError) as refused:
        api_tokens.authenticate(session, raw, now=token.expires_at)
    assert refused.value.code == "token_expired"


def test_last_used_is_written_at_most_once_a_minute(session: Session, creditor: Creditor) -> None:
    token, raw = _issue(session, creditor)
    start = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    api_tokens.authenticate(session, raw, now=start)
    api_tokens.authenticate(session, raw, now=start + dt.timedelta(seconds=59))
    session.refresh(token)
    assert token.last_used_at == start
    api_tokens.authenticate(session, raw, now=start + dt.timedelta(seconds=60))
    session.refresh(token)
    assert token.last_used_at == start + dt.timedelta(seconds=60)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"name": "  "}, "token_name_invalid"),
        ({"name": "x" * 101}, "token_name_invalid"),
        ({"scopes": []}, "scopes_missing"),
        ({"scopes": ["accounts:read", "admin"]}, "scope_unknown"),
        ({"expires_in_days": 0}, "token_expiry_invalid"),
        ({"expires_in_days": 3651}, "token_expiry_invalid"),
        ({"creditor_id": 10**9}, "token_creditor_unknown"),
    ],
)
def test_bad_token_requests_are_refused_and_issue_nothing(
    session: Session, creditor: Creditor, overrides: dict[str, object], code: str
) -> None:
    with pytest.raises(DomainError) as refused:
        _issue(session, creditor, **overrides)
    assert refused.value.code == code
    assert session.scalar(select(func.count()).select_from(ApiToken)) == 0
    assert not _audit(session, "api_token.created")


# --- The admin page ------------------------------------------------------------------------------


def _create_form(creditor: Creditor, **overrides: object) -> dict[str, object]:
    form: dict[str, object] = {
        "creditor_id": str(creditor.id),
        "name": "Collections feed",
        "scopes": ["accounts:read", "events:read"],
        "expires_in_days": "90",
    }
    form.update(overrides)
    return form


def test_an_admin_issues_a_token_that_is_shown_once_and_works(
    client: FlaskClient, session: Session, creditor: Creditor
) -> None:
    sign_in(client, factories.staff(session, role=Role.ADMIN))
    response = client.post("/admin/api-tokens", data=_create_form(creditor))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Copy it now" in page
    assert response.headers["Cache-Control"] == "no-store"
    (raw,) = TOKEN_TEXT.findall(page)
    token = api_tokens.authenticate(session, raw)
    assert (token.creditor_id, token.name, token.scopes) == (
        creditor.id,
        "Collections feed",
        ["accounts:read", "events:read"],
    )
    assert token.expires_at is not None
    (created,) = _audit(session, "api_token.created")
    assert created.actor_type == "staff"
    later = client.get("/admin/api-tokens").get_data(as_text=True)
    assert token.prefix in later
    assert raw not in later and not TOKEN_TEXT.search(later)


def test_an_admin_revokes_a_token_on_the_page(
    client: FlaskClient, session: Session, creditor: Creditor
) -> None:
    token, raw = _issue(session, creditor)
    sign_in(client, factories.staff(session, role=Role.ADMIN))
    response = client.post(f"/admin/api-tokens/{token.id}/revoke", follow_redirects=True)
    assert f"The token {token.prefix} is revoked" in response.get_data(as_text=True)
    with pytest.raises(DomainError):
        api_tokens.authenticate(session, raw)
    assert client.post("/admin/api-tokens/999999/revoke").status_code == 404


def test_bad_input_on_the_admin_page_gets_a_message_and_issues_nothing(
    client: FlaskClient, session: Session, creditor: Creditor
) -> None:
    sign_in(client, factories.staff(session, role=Role.ADMIN))
    cases = [
        (_create_form(creditor, scopes=[]), "Choose at least one thing the token may do."),
        (_create_form(creditor, expires_in_days="0"), "Number must be between 1 and 3650."),
        (_create_form(creditor, name=""), "This field is required."),
        (_create_form(creditor, scopes=["admin"]), "is not a valid choice"),
    ]
    for data, message in cases:
        response = client.post("/admin/api-tokens", data=data, follow_redirects=True)
        assert response.status_code == 200
        assert message in response.get_data(as_text=True), data
    assert session.scalar(select(func.count()).select_from(ApiToken)) == 0


@pytest.mark.parametrize("role", [role for role in Role if role is not Role.ADMIN], ids=str)
def test_only_admins_may_manage_tokens(
    client: FlaskClient, session: Session, creditor: Creditor, role: Role
) -> None:
    token, _ = _issue(session, creditor)
    sign_in(client, factories.staff(session, role=role))
    assert client.get("/admin/api-tokens").status_code == 403
    assert client.post("/admin/api-tokens", data=_create_form(creditor)).status_code == 403
    assert client.post(f"/admin/api-tokens/{token.id}/revoke").status_code == 403
    session.refresh(token)
    assert token.revoked_at is None
    assert session.scalar(select(func.count()).select_from(ApiToken)) == 1


# --- The command line ----------------------------------------------------------------------------


def test_the_command_line_issues_lists_and_revokes_tokens(
    app: Flask, session: Session, creditor: Creditor
) -> None:
    runner = app.test_cli_runner()
    created = runner.invoke(
        args=[
            "api",
            "token",
            "create",
            "--creditor",
            creditor.code,
            "--name",
            "Nightly batch",
            "--scope",
            "placements:write",
            "--scope",
            "events:read",
            "--days",
            "30",
        ]
    )
    assert created.exit_code == 0, created.output
    (raw,) = TOKEN_TEXT.findall(created.output)
    token = api_tokens.authenticate(session, raw)
    assert token.scopes == ["placements:write", "events:read"]
    listed = runner.invoke(args=["api", "token", "list"])
    assert token.prefix in listed.output and "Nightly batch" in listed.output
    assert raw not in listed.output
    revoked = runner.invoke(args=["api", "token", "revoke", token.prefix])
    assert revoked.exit_code == 0, revoked.output
    session.expire_all()  # the command revoked it in a session of its own
    with pytest.raises(DomainError):
        api_tokens.authenticate(session, raw)
    assert runner.invoke(args=["api", "token", "revoke", "nosuchtoken"]).exit_code != 0
    unknown = runner.invoke(
        args=["api", "token", "create", "--creditor", "NOPE", "--name", "x", "--scope", "events:read"]
    )
    assert unknown.exit_code != 0
    assert session.scalar(select(func.count()).select_from(ApiToken)) == 1
