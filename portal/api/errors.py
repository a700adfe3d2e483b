"""Errors of the JSON API: one shape, a stable code per cause, and JSON for every response under
``/api/v1`` — an unknown path, a wrong method and an error of ours included.

The shape: ``{"error": {"code", "message", "request_id", "details": [...]}}``. ``ERRORS`` lists every
code with its HTTP status and what it means; the OpenAPI document and the docs page are built from it,
so what a lender reads is what the API answers.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from flask import Response, current_app, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from workflows.errors import DomainError

log = logging.getLogger("accord")

API_PREFIX = "/api/v1"
REALM = "Accord API"


@dataclass(frozen=True)
class ErrorCode:
    status: int
    description: str


ERRORS: Mapping[str, ErrorCode] = MappingProxyType(
    {
        "json_malformed": ErrorCode(
            400, "The body is not JSON (UTF-8, no duplicate keys, no NaN), or its top level is not an object."
        ),
        "parameter_unknown": ErrorCode(400, "A query parameter this operation does not take was given."),
        "limit_invalid": ErrorCode(400, "`limit` is not a whole number within the operation's range."),
        "cursor_invalid": ErrorCode(400, "The cursor was not one this API handed out."),
        "event_type_invalid": ErrorCode(400, "`type` names no event type."),
        "bad_request": ErrorCode(400, "The request could not be read."),
        "token_missing": ErrorCode(401, "No `Authorization: Bearer <token>` header."),
        "token_invalid": ErrorCode(401, "The token is malformed, unknown or wrong."),
        "token_expired": ErrorCode(401, "The token has passed its expiry date: ask for a new one."),
        "token_revoked": ErrorCode(401, "The token has been revoked: ask for a new one."),
        "scope_missing": ErrorCode(403, "The token lacks the scope this operation needs."),
        "not_found": ErrorCode(404, "No such endpoint."),
        "account_not_found": ErrorCode(404, "Your creditor has no account with this reference."),
        "method_not_allowed": ErrorCode(405, "The endpoint exists but not with this method (see `Allow`)."),
        "body_too_large": ErrorCode(413, "The body is larger than the API accepts."),
        "content_type": ErrorCode(415, "A body was sent whose `Content-Type` is not `application/json`."),
        "validation_failed": ErrorCode(
            422, "The JSON is well formed but values are refused; `details` lists every problem."
        ),
        "rate_limited": ErrorCode(429, "Too many requests for this token; wait `Retry-After` seconds."),
        "internal": ErrorCode(
            500, "An error of ours; nothing was applied. Quote the `request_id` to support if it persists."
        ),
    }
)

# The code for an HTTP error raised by Flask, Werkzeug or Flask-Limiter rather than by the API itself.
_BY_STATUS = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "content_type",
    429: "rate_limited",
}
INTERNAL_MESSAGE = (
    "Something went wrong on our side and nothing was applied. Quote the request id if it persists."
)


@dataclass(frozen=True)
class Detail:
    """One problem with one value: the index of the object in a list (None outside one), the field,
    a stable code and an English sentence."""

    index: int | None
    field: str | None
    code: str
    message: str
    account_reference: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "field": self.field,
            "code": self.code,
            "message": self.message,
            "account_reference": self.account_reference,
        }


class ApiError(HTTPException):
    """A refusal the API states itself: its code (one of ``ERRORS``) decides the status."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: Sequence[Detail] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(description=message)
        self.code = ERRORS[code].status
        self.error_code = code
        self.details = tuple(details)
        self.extra_headers = dict(headers or {})


def json_response(body: Mapping[str, Any], status: int = 200) -> Response:
    """A JSON response whose keys keep the order they were written in (Flask's ``jsonify`` sorts
    them): the documents and the account come out as the docs show them."""
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    # A lone surrogate (a client's "\ud800" echoed in an error) has no UTF-8 form; inside a JSON
    # string its backslash escape stands for the same character, so the body stays valid JSON.
    return current_app.response_class(
        text.encode("utf-8", "backslashreplace"), status=status, mimetype="application/json"
    )


def bearer_challenge(error: str | None = None, scope: str | None = None) -> dict[str, str]:
    """The ``WWW-Authenticate`` header of a refusal (RFC 6750)."""
    parts = [f'Bearer realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if scope:
        parts.append(f'scope="{scope}"')
    return {"WWW-Authenticate": ", ".join(parts)}


def is_api_request() -> bool:
    """Whether this request is the API's (its errors are JSON, never the HTML error page)."""
    return request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/")


def _request_id() -> str:
    # Every request gets its id when it starts; an error raised before that still needs one.
    if not g.get("request_id"):
        g.request_id = secrets.token_hex(8)
    return str(g.request_id)


def _http_message(code: str, exc: HTTPException) -> str:
    if code == "not_found":
        return f"There is no such endpoint. The endpoints are listed at {API_PREFIX}/docs."
    if code == "method_not_allowed":
        return "This endpoint does not take this method; the Allow header lists those it takes."
    if code == "body_too_large":
        return f"The body is larger than {current_app.config['API_MAX_BODY_BYTES']} bytes."
    if code == "content_type":
        return "Send the body as JSON with Content-Type: application/json."
    if code == "rate_limited":
        # Flask-Limiter describes the limit that was reached, e.g. "600 per 1 minute".
        return f"Too many requests: at most {exc.description}. Wait Retry-After seconds, then try again."
    return "The request could not be read."


def error_response(exc: BaseException) -> Response:
    """The JSON response for any error raised while serving an API request."""
    headers: dict[str, str] = {}
    details: tuple[Detail, ...] = ()
    if isinstance(exc, ApiError):
        status, code, message = ERRORS[exc.error_code].status, exc.error_code, str(exc.description)
        details, headers = exc.details, exc.extra_headers
    elif isinstance(exc, DomainError):
        # A rule refused the request in a way no operation states on its own: still the client's.
        status, code, message = 422, "validation_failed", "The request was refused; see details."
        details = (Detail(None, None, exc.code, str(exc)),)
    elif isinstance(exc, HTTPException) and exc.code is not None and exc.code < 500:
        # A client error the API documents under no status of its own reads as a plain 400.
        code = _BY_STATUS.get(exc.code, "bad_request")
        status = ERRORS[code].status
        message = _http_message(code, exc)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    else:
        log.exception("unhandled API error, request id %s", _request_id(), exc_info=exc)
        status, code, message = 500, "internal", INTERNAL_MESSAGE
    error = {"code": code, "message": message, "request_id": _request_id()}
    response = json_response(
        {"error": {**error, "details": [detail.to_json() for detail in details]}}, status
    )
    response.headers.update(headers)
    return response
