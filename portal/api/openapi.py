"""The OpenAPI 3.1 document of the lenders' API, and the docs page's view of it.

Built from the definitions the API itself runs on, so the description cannot drift from the
behaviour: the placement object from ``workflows.placements.JSON_FIELDS`` (the rules that validate
it), the error codes from ``portal.api.errors.ERRORS``, the scopes and event types from the models,
the limits from the configuration. ``docs_view`` flattens the same document for the HTML page.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from flask import current_app

from portal.api.errors import API_PREFIX, ERRORS
from portal.api.parsing import DEFAULT_LIMIT, MAX_LIMIT, MAX_PLACEMENTS, MAX_RECALL_REASON, REFERENCE
from portal.models.accounts import ACCOUNT_STATUSES
from portal.models.agreements import PLAN_STATUSES
from portal.models.integration import EVENT_TYPES
from portal.services.api_accounts import PAYMENT_STATES
from workflows.money import CURRENCY_EXPONENTS
from workflows.placements import JSON_FIELDS, MAX_JSON_AMOUNT, MAX_RATE_BP, Column
from workflows.policy import Stage

VERSION = "1.0.0"
REF = "#/components/schemas/"
REFERENCE_PATTERN = f"^{REFERENCE.pattern}$"
CURRENCIES = sorted(CURRENCY_EXPONENTS)

SCOPES = {
    "placements:write": "Place accounts (create and update them) and recall them.",
    "accounts:read": "Read the status of the creditor's accounts.",
    "events:read": "Read the creditor's events.",
}

EVENTS = {
    "payment.succeeded": "A payment was received and applied to the account. `data`: `payment_id`, "
    "`amount`, `received_on` (the business day, Asia/Shanghai), `allocation` (what went to `fees`, "
    "`interest`, `principal` and `credit`), `plan_id` (or null), `instalments` (the plan instalments it "
    "paid, each `id` and `amount`) and `source` (`borrower`, or `autopay` for a saved card Accord charged).",
    "payment.reversed": "Money of a payment was given back: a refund, or a chargeback the card holder "
    "opened. `data`: `payment_id`, `amount` (of this change), `reversed_amount` (all reversed so far) and "
    "`reason` (`refund` or `dispute`).",
    "payment.reinstated": "A chargeback was decided in Accord's favour: the money counts again. `data` as "
    "for payment.reversed.",
    "plan.signed": "The borrower signed a repayment plan, now in force. `data`: `plan_id`, `agreement_id`, "
    "`instalments` (how many), `total`, `first_due_on` and `first_amount`.",
    "plan.completed": "Every instalment of a plan is paid. `data`: `plan_id`, `completed_on`.",
    "plan.broken": "An instalment stayed unpaid past its grace days: the plan is no longer in force. "
    "`data`: `plan_id`, `reason`, `broken_on` and `outstanding` (what the plan still had to collect).",
    "concession.granted": "Accord waived part of the balance as a plan started. `data`: `plan_id`, "
    "`agreement_id`, `waived` (by component), `total` and `reliefs` (the kinds of relief).",
    "dispute.opened": "The borrower disputes the debt: collection contact stops until it is resolved. "
    "`data`: `dispute_id`, `reason`.",
    "dispute.closed": "A dispute of the debt ended. `data`: `dispute_id`, `reason` and `outcome` "
    "(`withdrawn`, `upheld` or `rejected`).",
    "account.recalled": "The account was recalled (through this API or by Accord on the lender's word). "
    "`data`: `reason`, or null.",
}

_KINDS: Mapping[str, dict[str, Any]] = {
    "reference": {"type": "string", "pattern": REFERENCE_PATTERN},
    "text": {"type": "string"},
    "choice": {"type": "string"},
    "date": {"type": "string", "format": "date"},
    "phone": {"type": "string"},
    "email": {"type": "string", "format": "email"},
    "country": {"type": "string", "pattern": "^[A-Za-z]{2}$"},
    "time_zone": {"type": "string"},
    "currency": {"type": "string", "enum": CURRENCIES},
    "rate_bp": {"type": "integer", "minimum": 0, "maximum": MAX_RATE_BP},
    "money": {"type": "integer", "minimum": 0, "maximum": MAX_JSON_AMOUNT},
}
"""The JSON Schema of each kind of placement field (a new kind missing here fails every document
built, and so the tests)."""


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    result = {**schema, "type": [schema["type"], "null"]}
    if "enum" in schema:
        result["enum"] = [*schema["enum"], None]
    return result


def _field_schema(column: Column) -> dict[str, Any]:
    schema = dict(_KINDS[column.kind])
    if column.choices:
        schema["enum"] = list(column.choices)
    if column.max_length is not None and schema["type"] == "string" and "pattern" not in schema:
        schema["maxLength"] = column.max_length
    schema["description"] = column.description
    return schema if column.required else _nullable(schema)


def placement_schema() -> dict[str, Any]:
    """One account to place, field by field as ``workflows.placements`` reads it."""
    return {
        "type": "object",
        "description": "One account with its borrower and its balances as of `balance_date`. Fields "
        "are read as the placement rules say: text is trimmed, an empty text is no value, choices and "
        "codes are read without regard to case. Optional fields may be absent or null.",
        "properties": {column.name: _field_schema(column) for column in JSON_FIELDS},
        "required": [column.name for column in JSON_FIELDS if column.required],
        "additionalProperties": False,
    }


def _object(properties: dict[str, Any], description: str, *, optional: Iterable[str] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": [name for name in properties if name not in set(optional)],
        "additionalProperties": False,
    }


def _money(description: str) -> dict[str, Any]:
    return {"type": "integer", "description": f"{description}, in minor units of the currency."}


def _page(item: str, description: str, cursor: str) -> dict[str, Any]:
    return _object(
        {
            "data": {"type": "array", "items": {"$ref": REF + item}},
            "next_cursor": {"type": ["string", "null"], "description": cursor},
            "has_more": {"type": "boolean", "description": "Whether more items follow now."},
        },
        description,
    )


def _schemas() -> dict[str, Any]:
    date = {"type": "string", "format": "date"}
    nullable_date = {"type": ["string", "null"], "format": "date"}
    return {
        "Placement": placement_schema(),
        "PlacementRequest": _object(
            {
                "accounts": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_PLACEMENTS,
                    "items": {"$ref": REF + "Placement"},
                    "description": f"The accounts to place: 1 to {MAX_PLACEMENTS}, all applied or none.",
                }
            },
            "Accounts to create or update, all or nothing.",
        ),
        "PlacementResult": _object(
            {
                "import_id": {"type": "integer", "description": "Accord's record of this placement."},
                "results": {
                    "type": "array",
                    "description": "One result per account sent, in the order sent.",
                    "items": _object(
                        {
                            "account_reference": {"type": "string"},
                            "action": {
                                "type": "string",
                                "enum": ["created", "updated", "unchanged"],
                                "description": "created: new to Accord; updated: its details or balances "
                                "changed (each balance change is an adjustment in Accord's ledger, never an "
                                "overwrite); unchanged: Accord already held exactly this.",
                            },
                            "account_id": {"type": "integer", "description": "Accord's id of the account."},
                        },
                        "What placing one account did.",
                    ),
                },
            },
            "Every account was placed.",
        ),
        "RecallRequest": _object(
            {
                "reason": {
                    "type": ["string", "null"],
                    "maxLength": MAX_RECALL_REASON,
                    "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
                    "description": f"Why the account is taken back: at most {MAX_RECALL_REASON} characters, "
                    "no control characters. It is passed on in the account.recalled event.",
                }
            },
            "Optional: the body may be empty.",
            optional=["reason"],
        ),
        "AccountStatus": _object(
            {
                "account_reference": {"type": "string", "description": "Your account number."},
                "borrower_reference": {
                    "type": ["string", "null"],
                    "description": "Your customer number (null for an account not placed by you).",
                },
                "status": {
                    "type": "string",
                    "enum": list(ACCOUNT_STATUSES),
                    "description": "open; closed; recalled (taken back by you: Accord no longer collects).",
                },
                "currency": {"type": "string", "enum": CURRENCIES},
                "balances": _object(
                    {
                        "principal": _money("Principal owed"),
                        "interest": _money("Interest owed"),
                        "fees": _money("Fees owed"),
                        "total": _money("principal + interest + fees"),
                        "credit": _money("Held for the borrower beyond the whole debt (an over-payment)"),
                    },
                    "What is owed now, by component: the sum of the account's ledger entries.",
                ),
                "overdue_amount": _money("The part of the balance past its due date"),
                "days_past_due": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Days since the oldest unpaid due date (0: nothing overdue).",
                },
                "stage": {
                    "type": "string",
                    "enum": [stage.value for stage in Stage],
                    "description": "The collection stage, from the days past due and Accord's policy.",
                },
                "next_due": {
                    "oneOf": [
                        _object(
                            {"on": date, "amount": _money("The instalment's amount")},
                            "The next instalment of your schedule.",
                        ),
                        {"type": "null"},
                    ],
                    "description": "Your schedule's next instalment, or null.",
                },
                "plan": {
                    "oneOf": [{"$ref": REF + "Plan"}, {"type": "null"}],
                    "description": "The newest repayment plan agreed in Accord, or null if none.",
                },
                "last_payment": {
                    "oneOf": [{"$ref": REF + "Payment"}, {"type": "null"}],
                    "description": "The last payment Accord received on the account, or null.",
                },
                "placed_as_of": {
                    **nullable_date,
                    "description": "The balance date of the last placement applied (null if never placed).",
                },
                "recalled_at": {
                    "type": ["string", "null"],
                    "format": "date-time",
                    "description": "When you recalled the account (UTC), or null.",
                },
            },
            "An account as Accord holds it now.",
        ),
        "Plan": _object(
            {
                "status": {
                    "type": "string",
                    "enum": list(PLAN_STATUSES),
                    "description": "active (in force); completed (all paid); broken (an instalment "
                    "stayed unpaid past its grace days).",
                },
                "instalments_total": {"type": "integer", "minimum": 0},
                "instalments_paid": {"type": "integer", "minimum": 0},
                "next_instalment": {
                    "oneOf": [
                        _object(
                            {"due_on": date, "amount": _money("What is still owed of it")},
                            "The oldest instalment not yet paid in full.",
                        ),
                        {"type": "null"},
                    ],
                    "description": "The oldest unpaid instalment of an active plan, or null.",
                },
            },
            "A repayment plan the borrower signed in Accord.",
        ),
        "Payment": _object(
            {
                "amount": _money("The amount received"),
                "currency": {"type": "string", "enum": CURRENCIES},
                "received_on": {**date, "description": "The business day (Asia/Shanghai) it was received."},
                "status": {
                    "type": "string",
                    "enum": list(PAYMENT_STATES),
                    "description": "succeeded (kept whole); partially_reversed or reversed (refunded or "
                    "charged back, in part or in whole).",
                },
                "reversed_amount": _money("How much of it was given back"),
            },
            "A payment received.",
        ),
        "AccountPage": _page(
            "AccountStatus",
            "A page of your accounts, in the order they were placed.",
            "Pass as `cursor` for the next page; null on the last page.",
        ),
        "Event": _object(
            {
                "id": {"type": "string", "pattern": "^evt_[0-9]+$", "description": "evt_<seq>."},
                "seq": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "Increasing in the order events became visible; never reused.",
                },
                "type": {"type": "string", "enum": list(EVENT_TYPES)},
                "occurred_at": {"type": "string", "format": "date-time", "description": "UTC."},
                "account_reference": {"type": ["string", "null"], "description": "Your account number."},
                "data": {
                    "type": "object",
                    "required": ["currency"],
                    "properties": {"currency": {"type": "string", "enum": CURRENCIES}},
                    "description": "The account's currency and what the event type carries; amounts "
                    "are integers in minor units.",
                },
            },
            "Something that happened to one of your accounts.",
        ),
        "EventPage": _page(
            "Event",
            "Your events after the cursor, oldest first.",
            "Pass as `after` next time: the position after the last event returned (on an empty page, "
            "the `after` sent; null only when you have no events yet).",
        ),
        "Error": _object(
            {
                "error": _object(
                    {
                        "code": {"type": "string", "description": "Stable: act on it."},
                        "message": {"type": "string", "description": "An English sentence for people."},
                        "request_id": {"type": "string", "description": "Also in the X-Request-Id header."},
                        "details": {
                            "type": "array",
                            "items": {"$ref": REF + "ErrorDetail"},
                            "description": "Every problem of a 422; empty otherwise.",
                        },
                    },
                    "What went wrong.",
                )
            },
            "Every error has this shape.",
        ),
        "ErrorDetail": _object(
            {
                "index": {
                    "type": ["integer", "null"],
                    "description": "The position in `accounts` (from 0) of the account concerned, or null.",
                },
                "field": {"type": ["string", "null"], "description": "The field concerned, or null."},
                "code": {
                    "type": "string",
                    "description": "Stable, e.g. value_missing, unknown_field, type_invalid, date_invalid, "
                    "phone_invalid, total_mismatch, reference_duplicated, currency_changed, "
                    "balance_date_stale.",
                },
                "message": {"type": "string", "description": "An English sentence naming the value."},
                "account_reference": {"type": ["string", "null"]},
            },
            "One problem with one value.",
        ),
    }


def _header(description: str, schema: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema}


HEADERS = {
    "X-Request-Id": _header("This request's id: quote it to support.", {"type": "string"}, required=True),
    "X-RateLimit-Limit": _header("Requests allowed in the window.", {"type": "integer"}),
    "X-RateLimit-Remaining": _header("Requests left in the window.", {"type": "integer"}),
    "X-RateLimit-Reset": _header("When the window resets (Unix time).", {"type": "integer"}),
}
_REQUIRED = {
    "Retry-After": _header("Seconds to wait before trying again.", {"type": "integer"}, required=True),
    "WWW-Authenticate": _header(
        '`Bearer realm="Accord API"`, with the error.', {"type": "string"}, required=True
    ),
}
_STATUS_TEXT = {
    400: "The request could not be read.",
    401: "No valid token.",
    403: "The token lacks the scope.",
    404: "Not found.",
    413: "The body is too large.",
    415: "The body is not JSON.",
    422: "Values were refused; nothing was applied.",
    429: "Too many requests.",
    500: "An error of ours; nothing was applied.",
}
_EXTRA_HEADERS = {401: ("WWW-Authenticate",), 403: ("WWW-Authenticate",), 429: ("Retry-After",)}

_ACCESS = ("token_missing", "token_invalid", "token_expired", "token_revoked", "scope_missing")
_ALWAYS = ("bad_request", "rate_limited", "internal")
_BODY = ("json_malformed", "content_type", "body_too_large", "validation_failed")
_PATH = ("not_found", "account_not_found")
_PAGE = ("parameter_unknown", "limit_invalid", "cursor_invalid")


def _headers(names: Iterable[str]) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def _responses(ok: dict[str, Any], codes: Iterable[str]) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {**ok, "headers": _headers(HEADERS)}}
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(ERRORS[code].status, []).append(code)
    for status in sorted(by_status):
        listed = by_status[status]
        responses[str(status)] = {
            "description": _STATUS_TEXT[status] + " Codes: " + ", ".join(listed) + ".",
            "headers": _headers([*HEADERS, *_EXTRA_HEADERS.get(status, ())]),
            "content": {
                "application/json": {
                    "schema": {
                        "allOf": [
                            {"$ref": REF + "Error"},
                            {"properties": {"error": {"properties": {"code": {"enum": listed}}}}},
                        ]
                    }
                }
            },
        }
    return responses


def _json(schema: str, description: str, example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": {"$ref": REF + schema}}
    if example is not None:
        media["example"] = example
    return {"description": description, "content": {"application/json": media}}


PLACEMENT_EXAMPLE = {
    "account_reference": "LN-2026-000123",
    "borrower_reference": "C-88231",
    "full_name": "王芳",
    "date_of_birth": "1988-04-02",
    "phone": "+8613800138000",
    "email": "wang.fang@example.com",
    "product_type": "loan",
    "currency": "CNY",
    "annual_rate_bp": 1850,
    "opened_on": "2024-03-15",
    "balance_date": "2026-11-30",
    "principal": 1200000,
    "interest": 35050,
    "fees": 20000,
    "overdue_amount": 150000,
    "oldest_unpaid_due_on": "2026-09-15",
    "next_due_on": "2026-12-15",
    "next_due_amount": 50000,
}
"""A placement as a lender sends it (tests place it through the API, so it stays valid)."""

STATUS_EXAMPLE = {
    "account_reference": "LN-2026-000123",
    "borrower_reference": "C-88231",
    "status": "open",
    "currency": "CNY",
    "balances": {"principal": 1200000, "interest": 35050, "fees": 20000, "total": 1255050, "credit": 0},
    "overdue_amount": 150000,
    "days_past_due": 76,
    "stage": "mid",
    "next_due": {"on": "2026-12-15", "amount": 50000},
    "plan": {
        "status": "active",
        "instalments_total": 6,
        "instalments_paid": 1,
        "next_instalment": {"due_on": "2027-01-15", "amount": 25000},
    },
    "last_payment": {
        "amount": 25000,
        "currency": "CNY",
        "received_on": "2026-12-14",
        "status": "succeeded",
        "reversed_amount": 0,
    },
    "placed_as_of": "2026-11-30",
    "recalled_at": None,
}

EVENT_PAGE_EXAMPLE = {
    "data": [
        {
            "id": "evt_1042",
            "seq": 1042,
            "type": "payment.succeeded",
            "occurred_at": "2026-12-14T02:31:07.118402Z",
            "account_reference": "LN-2026-000123",
            "data": {"currency": "CNY", "amount": 25000, "received_on": "2026-12-14"},
        }
    ],
    "next_cursor": "1042",
    "has_more": False,
}


SAMPLE_PLACE = (
    'curl -sS "$ACCORD_URL/api/v1/placements" \\\n'
    '  -H "Authorization: Bearer $ACCORD_TOKEN" \\\n'
    '  -H "Content-Type: application/json" \\\n'
    "  --data @portfolio.json"
)
SAMPLE_ACCOUNT = (
    'curl -sS "$ACCORD_URL/api/v1/accounts/LN-2026-000123" \\\n  -H "Authorization: Bearer $ACCORD_TOKEN"'
)
SAMPLE_PAYMENTS = (
    "# The first time: from your first event.\n"
    'curl -sS "$ACCORD_URL/api/v1/events?type=payment.succeeded&limit=200" \\\n'
    '  -H "Authorization: Bearer $ACCORD_TOKEN"\n'
    "# Every time after: from the next_cursor you stored.\n"
    'curl -sS "$ACCORD_URL/api/v1/events?type=payment.succeeded&limit=200&after=$CURSOR" \\\n'
    '  -H "Authorization: Bearer $ACCORD_TOKEN"'
)


def _parameter(
    name: str, where: str, schema: dict[str, Any], description: str, **extra: Any
) -> dict[str, Any]:
    return {"name": name, "in": where, "description": description, "schema": schema, **extra}


LIMIT = _parameter(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    f"How many items the page holds, 1 to {MAX_LIMIT} ({DEFAULT_LIMIT} when not given).",
)
REFERENCE = _parameter(
    "account_reference",
    "path",
    {"type": "string", "pattern": REFERENCE_PATTERN},
    "Your account number, percent-encoded in the path (a / is written %2F).",
    required=True,
)


def _operation(
    summary: str, description: str, tag: str, scope: str | None, responses: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "description": description,
        "tags": [tag],
        "security": [{"bearerAuth": [scope]}] if scope else [],
        "responses": responses,
        **extra,
    }
    if scope:
        operation["x-scope"] = scope
    return operation


def _samples(*sources: str) -> list[dict[str, str]]:
    return [{"lang": "Shell", "label": "curl", "source": source} for source in sources]


def _paths(max_body: int) -> dict[str, Any]:
    body_codes = (*_ACCESS, *_BODY, *_ALWAYS, "parameter_unknown")
    return {
        "/placements": {
            "post": _operation(
                "Place accounts",
                f"Create or update up to {MAX_PLACEMENTS} accounts with their borrowers and balances, "
                "all or nothing: if any account is refused, the answer is 422 listing every problem of "
                "every account and nothing is placed. An account you placed before is found by its "
                "`account_reference`; its balances as of `balance_date` replace what Accord's ledger said "
                "as of that date, by adjustment entries, so payments Accord took after it are kept. "
                "Placing the same account again with the same figures changes nothing (`unchanged`), so "
                "a request can safely be sent again after a timeout. An account's currency and borrower "
                "never change, and its balance date never goes back. The body may have at most "
                f"{_size(max_body)}.",
                "Placements",
                "placements:write",
                _responses(_json("PlacementResult", "Every account was placed."), body_codes),
                operationId="placeAccounts",
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": REF + "PlacementRequest"},
                            "example": {"accounts": [PLACEMENT_EXAMPLE]},
                        }
                    },
                },
                **{"x-codeSamples": _samples(SAMPLE_PLACE)},
            )
        },
        "/accounts/{account_reference}/recall": {
            "post": _operation(
                "Recall an account",
                "Take an account back: its status becomes `recalled`, Accord stops collecting on it, and "
                "an `account.recalled` event is written. Recalling a recalled account changes nothing. "
                "The body is optional. Answers the account's status.",
                "Placements",
                "placements:write",
                _responses(_json("AccountStatus", "The account, now recalled."), (*body_codes, *_PATH)),
                operationId="recallAccount",
                parameters=[REFERENCE],
                requestBody={
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": REF + "RecallRequest"},
                            "example": {"reason": "Sold to another agency"},
                        }
                    },
                },
            )
        },
        "/accounts/{account_reference}": {
            "get": _operation(
                "Read an account",
                "The account's balances, delinquency, plan and last payment now. An account of another "
                "lender answers 404 exactly like one that does not exist.",
                "Accounts",
                "accounts:read",
                _responses(
                    _json("AccountStatus", "The account.", STATUS_EXAMPLE),
                    (*_ACCESS, *_PATH, *_ALWAYS, "parameter_unknown"),
                ),
                operationId="getAccount",
                parameters=[REFERENCE],
                **{"x-codeSamples": _samples(SAMPLE_ACCOUNT)},
            )
        },
        "/accounts": {
            "get": _operation(
                "List accounts",
                "Your accounts with their status, a page at a time, in the order they were placed.",
                "Accounts",
                "accounts:read",
                _responses(_json("AccountPage", "A page of accounts."), (*_ACCESS, *_PAGE, *_ALWAYS)),
                operationId="listAccounts",
                parameters=[
                    _parameter(
                        "cursor",
                        "query",
                        {"type": "string"},
                        "The `next_cursor` of the previous page; leave it out for the first page.",
                    ),
                    LIMIT,
                ],
            )
        },
        "/events": {
            "get": _operation(
                "List events",
                "Your events after the cursor, oldest first. Store `next_cursor` once you have processed "
                "a page and pass it as `after` next time: you see every event once, in order, and only "
                "your own. While `has_more` is true, more events are ready: ask again at once.",
                "Events",
                "events:read",
                _responses(
                    _json("EventPage", "A page of events.", EVENT_PAGE_EXAMPLE),
                    (*_ACCESS, *_PAGE, "event_type_invalid", *_ALWAYS),
                ),
                operationId="listEvents",
                parameters=[
                    _parameter(
                        "after",
                        "query",
                        {"type": "string", "pattern": "^[0-9]{1,18}$"},
                        "The `next_cursor` you stored; leave it out to start from your first event.",
                    ),
                    LIMIT,
                    _parameter(
                        "type",
                        "query",
                        {"type": "array", "items": {"type": "string", "enum": list(EVENT_TYPES)}},
                        "Only events of these types (repeat the parameter for several); every type when "
                        "not given.",
                        style="form",
                        explode=True,
                    ),
                ],
                **{"x-codeSamples": _samples(SAMPLE_PAYMENTS)},
            )
        },
        "/openapi.json": {
            "get": _operation(
                "This document",
                "The OpenAPI 3.1 description of the API. No token needed.",
                "Documents",
                None,
                _responses(
                    {
                        "description": "The OpenAPI document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    ("rate_limited", "internal"),
                ),
                operationId="getOpenApiDocument",
            )
        },
        "/docs": {
            "get": _operation(
                "The documentation",
                "This document as a web page. No token needed.",
                "Documents",
                None,
                _responses(
                    {
                        "description": "The documentation page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    ("rate_limited", "internal"),
                ),
                operationId="getDocs",
            )
        },
    }


def _size(count: int) -> str:
    """A byte count as people read it: 1048576 is "1 MiB (1048576 bytes)"."""
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if count >= size and count % size == 0:
            return f"{count // size} {unit} ({count} bytes)"
    return f"{count} bytes"


def _guide(rate_limit: str, max_body: int) -> list[dict[str, Any]]:
    """The chapters a developer reads before the reference: each a title and paragraphs."""
    return [
        {
            "title": "Authentication",
            "paragraphs": [
                "Every operation but the two documents needs a token, sent as `Authorization: Bearer "
                "acc_…`. An Accord administrator issues tokens for one lender (creditor), with one or more "
                "scopes: "
                + "; ".join(f"`{scope}`: {text[0].lower() + text[1:-1]}" for scope, text in SCOPES.items())
                + ".",
                (
                    "A token sees only its own lender's accounts and events: another lender's account "
                    "reference answers 404 `account_not_found`, exactly like one that does not exist. A token"
                    " may expire and may be revoked at any time. Without a valid token the answer is 401 "
                    "(`token_missing`, `token_invalid`, `token_expired` or `token_revoked`), with a token "
                    "lacking the scope 403 `scope_missing`; both carry a `WWW-Authenticate: Bearer` header."
                ),
                (
                    "Accord keeps only a hash of a token and cannot show it again: store it as a secret. If "
                    "it leaks, ask for it to be revoked and for a new one."
                ),
            ],
        },
        {
            "title": "Requests and values",
            "paragraphs": [
                (
                    "A body is a JSON object in UTF-8 sent with `Content-Type: application/json`, of at "
                    f"most {_size(max_body)}. Unknown fields are refused, never ignored: a misspelt field is "
                    "a 422 with the code `unknown_field`, and an unknown query parameter a 400 "
                    "`parameter_unknown`."
                ),
                (
                    "Amounts are integers in minor units of the account's currency (fen, cents): 1234.50 CNY "
                    "is 123450. Rates are integers in basis points: 1850 is 18.50 % a year. Dates are "
                    "`YYYY-MM-DD`; times are ISO 8601 in UTC, ending in `Z`. Optional fields may be absent or"
                    " null."
                ),
            ],
        },
        {
            "title": "Errors",
            "paragraphs": [
                (
                    'Every error is JSON of one shape: `{"error": {"code": …, "message": …, "request_id": …, '
                    '"details": […]}}`. Act on `code` (stable, listed below); show `message` (English) to '
                    "people; quote `request_id` (also the `X-Request-Id` header of every response) when you "
                    "contact us. A 422 lists every problem in `details`: the position of the account in the "
                    "request (`index`, from 0), the `field`, a `code`, a `message` and the "
                    "`account_reference`."
                ),
                "A request answered with an error changed nothing: nothing is ever partly applied.",
            ],
        },
        {
            "title": "Retries",
            "paragraphs": [
                (
                    "Placing is idempotent: an account placed again with the same figures is `unchanged`, and"
                    " recalling a recalled account changes nothing. After a timeout, a 429 or a 5xx, send the"
                    " same request again."
                ),
            ],
        },
        {
            "title": "Pages and cursors",
            "paragraphs": [
                (
                    'A list answers one page: `{"data": […], "next_cursor": …, "has_more": …}`. '
                    f"`limit` sets its size, 1 to {MAX_LIMIT} ({DEFAULT_LIMIT} when not given). Cursors are "
                    "opaque: store and send them back as given; one this API did not hand out is refused "
                    "with 400 `cursor_invalid`."
                ),
                (
                    "Accounts: pass `next_cursor` as `cursor` for the next page; it is null on the last page."
                    " Accounts come in the order they were placed, so one placed while you page shows up on a"
                    " later page and none is skipped or repeated."
                ),
                (
                    "Events: pass `next_cursor` as `after`. It is where the page ended, even on the last page"
                    " (on an empty one, the `after` you sent), so keep the last one and poll with it: each "
                    "call returns only what happened since, and each event comes once, in order."
                ),
            ],
        },
        {
            "title": "Rate limits",
            "paragraphs": [
                (
                    f"Requests are counted per token, at most {rate_limit} (without a token, per address). "
                    "Responses carry `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` "
                    "(Unix time); past the limit the answer is 429 `rate_limited` with `Retry-After` in "
                    "seconds."
                ),
            ],
        },
        {
            "title": "Examples",
            "paragraphs": [
                "In these examples `ACCORD_URL` is the address of this Accord and `ACCORD_TOKEN` your token.",
                (
                    "Loading a portfolio: write the accounts to `portfolio.json` as in the example below "
                    '(`{"accounts": [...]}`, '
                    f"at most {MAX_PLACEMENTS} a request) and post it; send a larger portfolio in several "
                    "requests. Each request is all or nothing; fix what a 422 lists and send that "
                    "request again."
                ),
                (
                    "Pulling today's payments: ask for `payment.succeeded` events from the cursor you stored "
                    "yesterday, store each page's `next_cursor` once you have booked it, and ask again while "
                    "`has_more` is true. Each event's `data.received_on` is the business day the money came."
                ),
            ],
            "examples": [
                {
                    "title": "portfolio.json",
                    "source": json.dumps({"accounts": [PLACEMENT_EXAMPLE]}, ensure_ascii=False, indent=2),
                },
                {"title": "Loading a portfolio", "source": SAMPLE_PLACE},
                {"title": "Pulling today's payments", "source": SAMPLE_PAYMENTS},
                {"title": "Reading an account", "source": SAMPLE_ACCOUNT},
            ],
        },
    ]


@lru_cache(maxsize=8)
def _document(rate_limit: str, max_body: int) -> str:
    guide = _guide(rate_limit, max_body)
    intro = (
        "Accord's API for lenders: place accounts with their balances, recall them, read their status, "
        "and pull what happened to them (payments, reversals, plans signed and broken, concessions, "
        "disputes)."
    )
    # The intro is the first paragraph; the docs page shows the chapters from x-guide.
    markdown = "\n\n".join(
        [intro, *(f"## {chapter['title']}\n\n" + "\n\n".join(chapter["paragraphs"]) for chapter in guide)]
    )
    document = {
        "openapi": "3.1.0",
        "info": {"title": "Accord lender API", "version": VERSION, "description": markdown},
        "servers": [{"url": API_PREFIX}],
        "tags": [
            {"name": "Placements", "description": "Hand accounts to Accord, and take them back."},
            {"name": "Accounts", "description": "Where each account stands now."},
            {"name": "Events", "description": "What happened, in order, since you last asked."},
            {"name": "Documents", "description": "This description, for tools and for people."},
        ],
        "paths": _paths(max_body),
        "components": {
            "schemas": _schemas(),
            "headers": {**HEADERS, **_REQUIRED},
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A lender's API token: `Authorization: Bearer acc_…`. Its scopes: "
                    + "; ".join(f"{scope}: {text}" for scope, text in SCOPES.items()),
                }
            },
        },
        "x-guide": guide,
        "x-errors": [
            {"code": code, "status": error.status, "description": error.description}
            for code, error in ERRORS.items()
        ],
        "x-events": [{"type": name, "description": EVENTS[name]} for name in EVENT_TYPES],
    }
    return json.dumps(document, ensure_ascii=False)


def document() -> dict[str, Any]:
    """The OpenAPI document for this app's limits (a fresh copy: callers may not change the cache)."""
    config = current_app.config
    return json.loads(_document(str(config["API_RATE_LIMIT"]), int(config["API_MAX_BODY_BYTES"])))


# --- The docs page's view of the document ------------------------------------------------------------


def _name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _limits(schema: Mapping[str, Any]) -> list[str]:
    """What a schema allows beyond its type, in words."""
    limits = []
    if "enum" in schema:
        limits.append("one of " + ", ".join(str(v) for v in schema["enum"] if v is not None))
    if "minimum" in schema and "maximum" in schema:
        limits.append(f"{schema['minimum']} to {schema['maximum']}")
    elif "minimum" in schema:
        limits.append(f"at least {schema['minimum']}")
    if "maxLength" in schema:
        limits.append(f"at most {schema['maxLength']} characters")
    if "minItems" in schema and "maxItems" in schema:
        limits.append(f"{schema['minItems']} to {schema['maxItems']} items")
    if "pattern" in schema:
        limits.append(f"matching {schema['pattern']}")
    if "default" in schema:
        limits.append(f"default {schema['default']}")
    return limits


def type_text(schema: Mapping[str, Any]) -> str:
    """A schema in a few words for people: ``integer, 0 to 10000``, ``string (date) or null``."""
    if "$ref" in schema:
        return _name(schema["$ref"])
    if "oneOf" in schema:
        return " or ".join(type_text(part) for part in schema["oneOf"])
    types = schema.get("type", "object")
    words = []
    for kind in types if isinstance(types, list) else [types]:
        if kind == "array":
            words.append(f"array of {type_text(schema.get('items', {}))}")
        elif kind == "string" and "format" in schema:
            words.append(f"string ({schema['format']})")
        else:
            words.append(kind)
    return ", ".join([" or ".join(words), *_limits(schema)])


def _inline_object(schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The object a property holds inline (directly or as the non-null choice of a oneOf)."""
    if "properties" in schema:
        return schema
    for part in schema.get("oneOf", ()):
        if "properties" in part:
            return part
    return None


def fields(schema: Mapping[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """The properties of an object schema as table rows, inline objects flattened (``balances.total``)."""
    rows = []
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        rows.append(
            {
                "name": prefix + name,
                "type": type_text(prop),
                "required": name in required,
                "description": prop.get("description", ""),
            }
        )
        inner = _inline_object(prop)
        if inner is not None:
            rows.extend(fields(inner, prefix=f"{prefix}{name}."))
    return rows


def _schema_of(content: Mapping[str, Any]) -> tuple[str | None, Any]:
    media = next(iter(content.values()))
    ref = media["schema"].get("$ref")
    example = media.get("example")
    shown = json.dumps(example, ensure_ascii=False, indent=2) if example is not None else None
    return (_name(ref) if ref else None), shown


def docs_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The document arranged for the docs page: the guide, each operation with its parameters, body,
    responses and error codes, each schema's fields, the error codes and the event types."""
    errors = {row["code"]: row["description"] for row in doc["x-errors"]}
    operations = []
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            body = None
            if "requestBody" in operation:
                schema_name, example = _schema_of(operation["requestBody"]["content"])
                body = {
                    "schema": schema_name,
                    "required": operation["requestBody"]["required"],
                    "example": example,
                }
            responses = []
            for status, response in operation["responses"].items():
                schema_name, example = _schema_of(response["content"])
                listed = []
                if status != "200":
                    error_schema = response["content"]["application/json"]["schema"]["allOf"][1]
                    listed = error_schema["properties"]["error"]["properties"]["code"]["enum"]
                responses.append(
                    {
                        "status": status,
                        "description": response["description"].split(" Codes: ")[0],
                        "schema": schema_name if status == "200" else "Error",
                        "codes": [(code, errors[code]) for code in listed],
                        "headers": list(response.get("headers", {})),
                        "example": example,
                    }
                )
            operations.append(
                {
                    "id": operation["operationId"],
                    "method": method.upper(),
                    "path": doc["servers"][0]["url"] + path,
                    "summary": operation["summary"],
                    "description": operation["description"],
                    "scope": operation.get("x-scope"),
                    "parameters": [
                        {
                            "name": p["name"],
                            "in": p["in"],
                            "required": p.get("required", False),
                            "type": type_text(p["schema"]),
                            "description": p["description"],
                        }
                        for p in operation.get("parameters", ())
                    ],
                    "body": body,
                    "responses": responses,
                    "samples": [sample["source"] for sample in operation.get("x-codeSamples", ())],
                }
            )
    components = doc["components"]
    return {
        "title": doc["info"]["title"],
        "version": doc["info"]["version"],
        "intro": doc["info"]["description"].split("\n\n")[0],
        "guide": doc["x-guide"],
        "operations": operations,
        "schemas": [
            {"name": name, "description": schema.get("description", ""), "fields": fields(schema)}
            for name, schema in components["schemas"].items()
        ],
        "headers": [
            {"name": name, "description": header["description"], "type": type_text(header["schema"])}
            for name, header in components["headers"].items()
        ],
        "errors": doc["x-errors"],
        "events": doc["x-events"],
        "scopes": SCOPES,
    }
