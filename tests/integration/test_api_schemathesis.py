"""Schemathesis against the API's own OpenAPI document, through the WSGI app: for every operation,
requests generated from the document (valid ones, and invalid ones) never get a 5xx, and every
response — its status, content type, headers and body — is one the document describes.

Authenticated with a token holding every scope, on seeded accounts and events, in the test's
transaction (rolled back after). Deterministic and bounded: a fixed number of examples each."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import create_app
from portal.api import openapi
from portal.models import Account
from portal.models.integration import API_SCOPES, EVENT_TYPES
from portal.services import api_tokens, integration_events
from portal.services.audit import SYSTEM
from portal.services.hardship import desk_today
from tests import factories

EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
REFERENCES = ("LN-ST-1", "LN-ST-2", "LN/ST:3")

# The operations are known before the database fixtures exist, so parametrisation lists them here.
_APP = create_app(
    {"ACCORD_ENV": "test", "DATABASE_URL": "sqlite://", "SECRET_KEY": "x", "INSTANCE_PATH": "instance"}
)
with _APP.app_context():
    CASES = [
        (method.upper(), path, mode)
        for path, item in openapi.document()["paths"].items()
        for method, operation in item.items()
        # Invalid requests need something to make invalid: a parameter or a body.
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if mode is GenerationMode.POSITIVE or "parameters" in operation or "requestBody" in operation
    ]


def _placement(reference: str) -> dict[str, Any]:
    yesterday = desk_today() - dt.timedelta(days=1)
    row = copy.deepcopy(openapi.PLACEMENT_EXAMPLE)
    row.update(
        account_reference=reference, borrower_reference=f"C-{reference}", balance_date=yesterday.isoformat()
    )
    return row


@pytest.fixture
def seeded(app: Flask, session: Session, monkeypatch: pytest.MonkeyPatch) -> str:
    """A creditor with placed accounts and events of every type; the text of a token with every scope."""
    monkeypatch.setitem(app.config, "API_RATE_LIMIT", "100000 per minute")
    creditor = factories.creditor(session)
    session.commit()
    _, raw = api_tokens.create(
        session, SYSTEM, creditor_id=creditor.id, name="schemathesis", scopes=API_SCOPES, expires_in_days=None
    )
    placed = app.test_client().post(
        "/api/v1/placements",
        json={"accounts": [_placement(reference) for reference in REFERENCES]},
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert placed.status_code == 200, placed.get_json()
    accounts = session.scalars(select(Account).where(Account.creditor_id == creditor.id)).all()
    for n, event_type in enumerate(EVENT_TYPES):
        integration_events.emit(session, accounts[n % len(accounts)], event_type, {"n": n})
    session.commit()
    return raw


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {mode}" for m, p, mode in CASES])
def test_generated_requests_get_no_5xx_and_documented_responses(
    app: Flask, seeded: str, method: str, path: str, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    schema.validate()
    operation = schema[path][method]
    headers = {"Authorization": f"Bearer {seeded}"}
    strategy = operation.as_strategy(generation_mode=mode, headers=headers)
    # Known accounts and a valid placement as well as generated ones, so success is checked too.
    if "{account_reference}" in path:
        strategy = st.one_of(
            strategy,
            *(
                operation.as_strategy(
                    generation_mode=mode, headers=headers, path_parameters={"account_reference": reference}
                )
                for reference in REFERENCES
            ),
        )
    if path == "/placements" and mode is GenerationMode.POSITIVE:
        valid = {"accounts": [_placement("LN-ST-4"), _placement(REFERENCES[0])]}
        strategy = st.one_of(strategy, operation.as_strategy(headers=headers, body=valid))

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        response = case.call()
        case.validate_response(response, checks=CHECKS)

    check()
