"""The lenders' JSON API under /api/v1: placements, account status and events, by bearer token.

Every operation, parameter, field and error code is described in one OpenAPI 3.1 document
(``portal.api.openapi``), served at ``/api/v1/openapi.json`` and rendered for people at
``/api/v1/docs``. Requests carry no cookie session and no CSRF token: the token authenticates each
one. Every response is JSON, errors included (``portal.api.errors``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, render_template, request

from portal.api import openapi, parsing
from portal.api.auth import current_token, rate_limit, rate_limit_key, token_required
from portal.api.errors import ApiError, Detail, json_response
from portal.extensions import csrf, db, limiter
from portal.models.integration import EVENT_TYPES
from portal.services import api_accounts
from portal.services.hardship import desk_today
from portal.services.placements import PlacementRefused
from workflows.errors import DomainError

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)
limiter.limit(rate_limit, key_func=rate_limit_key)(bp)


@bp.before_request
def _limit_body() -> None:
    """A body larger than ``API_MAX_BODY_BYTES`` is refused before anything else, unread."""
    most = int(current_app.config["API_MAX_BODY_BYTES"])
    request.max_content_length = most
    if (request.content_length or 0) > most:
        raise ApiError("body_too_large", f"The body is larger than {most} bytes.")


@bp.get("/openapi.json", endpoint="openapi")
def openapi_document() -> Response:
    return json_response(openapi.document())


@bp.get("/docs")
def docs() -> Any:
    return render_template("api/docs.html", view=openapi.docs_view(openapi.document()))


def _placement_rows(body: dict[str, Any]) -> list[Any]:
    """The ``accounts`` of a placement request; the shape of the request itself checked here, each
    account by the placement rules."""
    problems = [
        Detail(None, key, "unknown_field", f"{key[:64]} is not a field of a placement request.")
        for key in body
        if key != "accounts"
    ]
    rows = body.get("accounts")
    if not isinstance(rows, list):
        problems.append(Detail(None, "accounts", "type_invalid", "accounts must be a list of accounts."))
    elif not 1 <= len(rows) <= parsing.MAX_PLACEMENTS:
        problems.append(
            Detail(
                None,
                "accounts",
                "count_invalid",
                f"Send 1 to {parsing.MAX_PLACEMENTS} accounts in one request.",
            )
        )
    if problems:
        raise ApiError("validation_failed", "The request was refused; nothing was placed.", details=problems)
    assert isinstance(rows, list)
    return rows


@bp.post("/placements")
@token_required("placements:write")
def placements() -> Response:
    parsing.only_parameters()
    rows = _placement_rows(parsing.json_object())
    try:
        record, outcomes = api_accounts.place(db.session, current_token(), rows, today=desk_today())
    except PlacementRefused as refused:
        details = [
            Detail(r.line, r.column or None, r.code, r.message, r.account_reference)
            for r in refused.rejections
        ]
        raise ApiError(
            "validation_failed",
            f"{len(refused.rejections)} problem(s) in the accounts sent; nothing was placed.",
            details=details,
        ) from None
    results = [
        {"account_reference": o.account_reference, "action": o.action, "account_id": o.account_id}
        for o in outcomes
    ]
    return json_response({"import_id": record.id, "results": results})


def _recall_reason(body: dict[str, Any]) -> str | None:
    """The optional ``reason`` of a recall request, the only field it takes."""
    problems = [
        Detail(None, key, "unknown_field", f"{key[:64]} is not a field of a recall request.")
        for key in body
        if key != "reason"
    ]
    reason = body.get("reason")
    if reason is not None and (
        not isinstance(reason, str)
        or len(reason) > parsing.MAX_RECALL_REASON
        or parsing.has_control_characters(reason)
    ):
        most = parsing.MAX_RECALL_REASON
        message = f"reason must be text of at most {most} characters, without control characters."
        problems.append(Detail(None, "reason", "reason_invalid", message))
    if problems:
        raise ApiError(
            "validation_failed", "The request was refused; nothing was recalled.", details=problems
        )
    return reason


@bp.post("/accounts/<path:account_reference>/recall")
@token_required("placements:write")
def recall(account_reference: str) -> Response:
    parsing.only_parameters()
    reference = parsing.account_reference(account_reference)
    reason = _recall_reason(parsing.json_object(optional=True))
    try:
        status = api_accounts.recall(db.session, current_token(), reference, reason)
    except DomainError as exc:
        if exc.code == "account_unknown":
            raise parsing.account_not_found(reference) from None
        raise
    return json_response(status)


@bp.get("/accounts/<path:account_reference>")
@token_required("accounts:read")
def account(account_reference: str) -> Response:
    parsing.only_parameters()
    reference = parsing.account_reference(account_reference)
    try:
        status = api_accounts.account_status(db.session, current_token().creditor_id, reference)
    except DomainError as exc:
        if exc.code == "account_unknown":
            raise parsing.account_not_found(reference) from None
        raise
    return json_response(status)


@bp.get("/accounts")
@token_required("accounts:read")
def accounts() -> Response:
    parsing.only_parameters("cursor", "limit")
    after_id, limit = parsing.account_cursor(), parsing.limit()
    page = api_accounts.account_page(db.session, current_token().creditor_id, after_id=after_id, limit=limit)
    cursor = parsing.encode_account_cursor(page.last) if page.has_more and page.last else None
    return json_response({"data": page.items, "next_cursor": cursor, "has_more": page.has_more})


@bp.get("/events")
@token_required("events:read")
def events() -> Response:
    parsing.only_parameters("after", "limit", "type")
    after, limit, types = parsing.event_cursor(), parsing.limit(), parsing.event_types(EVENT_TYPES)
    page = api_accounts.event_page(
        db.session, current_token().creditor_id, after=after, limit=limit, types=types
    )
    # The cursor to pass as ``after`` next time: where this page ended, or where it started if empty.
    cursor = page.last if page.last is not None else after
    return json_response(
        {"data": page.items, "next_cursor": str(cursor) if cursor else None, "has_more": page.has_more}
    )
