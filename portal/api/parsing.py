"""Reading a request to the API strictly: a JSON object body, and query parameters the operation
takes. Anything else is refused with a code, never guessed at or silently dropped."""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from decimal import Decimal
from typing import Any

from flask import request

from portal.api.errors import ApiError
from workflows.placements import REFERENCE_LENGTH

JSON_MEDIA_TYPE = "application/json"
MAX_LIMIT = 200
DEFAULT_LIMIT = 50
MAX_PLACEMENTS = 500
"""Accounts in one placement request."""
MAX_RECALL_REASON = 200
_LIMIT = re.compile(r"[0-9]{1,4}", re.ASCII)
_SEQ = re.compile(r"[0-9]{1,18}", re.ASCII)
_ACCOUNT_CURSOR = re.compile(r"account:([1-9][0-9]{0,17})", re.ASCII)
REFERENCE = re.compile(rf"[A-Za-z0-9._/:-]{{1,{REFERENCE_LENGTH}}}", re.ASCII)
"""An account reference as placements accept it (workflows.placements)."""


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key!r} appears twice")
        result[key] = value
    return result


def _decimal(text: str) -> Decimal:
    """A JSON number with a fraction or an exponent, read exactly and never as a float: money
    fields take integers only and refuse it by its type, nothing rounds it on the way."""
    return Decimal(text)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def json_object(*, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object. ``optional``: an empty body reads as ``{}``.

    Refused: a body that is not ``application/json`` (415), larger than the API's limit (413, from
    ``request.max_content_length``), not UTF-8 JSON, with a key twice, NaN or Infinity, or whose top
    level is not an object (400 ``json_malformed``)."""
    if optional and not request.content_length and not request.headers.get("Transfer-Encoding"):
        return {}
    if request.mimetype != JSON_MEDIA_TYPE:
        raise ApiError("content_type", "Send the body as JSON with Content-Type: application/json.")
    data = request.get_data(cache=False)
    if not data:
        if optional:
            return {}
        raise ApiError("json_malformed", "The body is empty: send a JSON object.")
    try:
        value = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_object_without_duplicates,
            parse_float=_decimal,
            parse_constant=_no_constant,
        )
    except UnicodeDecodeError:
        raise ApiError("json_malformed", "The body is not UTF-8.") from None
    except (ValueError, RecursionError) as exc:
        raise ApiError("json_malformed", f"The body is not valid JSON: {exc}.") from None
    if not isinstance(value, dict):
        raise ApiError("json_malformed", "The body must be a JSON object, not a list or a single value.")
    return value


def has_control_characters(text: str) -> bool:
    """Whether text holds a control character or a lone surrogate: never meant, and not storable."""
    return any(unicodedata.category(char) in {"Cc", "Cs"} for char in text)


def account_not_found(reference: str) -> ApiError:
    """The one answer for an account the token's creditor does not have, whoever else may."""
    return ApiError("account_not_found", f"There is no account {reference[:64]!r} for your creditor.")


def account_reference(raw: str) -> str:
    """The account reference of the path; one no placement could have is simply not found."""
    if not REFERENCE.fullmatch(raw):
        raise account_not_found(raw)
    return raw


def only_parameters(*names: str) -> None:
    """Refuse a query parameter the operation does not take, and a single one given twice."""
    for name in request.args:
        if name not in names:
            raise ApiError("parameter_unknown", f"This operation takes no query parameter {name!r}.")


def _single(name: str, code: str) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        raise ApiError(code, f"Give {name} once.")
    return values[0] if values else None


def limit() -> int:
    """``limit``: how many items a page holds, 1 to 200, 50 when not given."""
    raw = _single("limit", "limit_invalid")
    if raw is None:
        return DEFAULT_LIMIT
    if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError("limit_invalid", f"limit must be a whole number from 1 to {MAX_LIMIT}.")
    return int(raw)


def encode_account_cursor(account_id: int) -> str:
    """The opaque cursor after an account: the next page starts after it."""
    return base64.urlsafe_b64encode(f"account:{account_id}".encode()).decode().rstrip("=")


def account_cursor() -> int:
    """``cursor``: the id of the last account of the previous page (0: the first page)."""
    raw = _single("cursor", "cursor_invalid")
    if raw is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        text = ""
    match = _ACCOUNT_CURSOR.fullmatch(text)
    if match is None or encode_account_cursor(int(match.group(1))) != raw:
        raise ApiError("cursor_invalid", "cursor must be a next_cursor this API returned.")
    return int(match.group(1))


def event_cursor() -> int:
    """``after``: the seq of the last event already seen (0: from the first event)."""
    raw = _single("after", "cursor_invalid")
    if raw is None:
        return 0
    if not _SEQ.fullmatch(raw):
        raise ApiError("cursor_invalid", "after must be a next_cursor this API returned.")
    return int(raw)


def event_types(known: tuple[str, ...]) -> tuple[str, ...] | None:
    """``type`` (repeatable): only events of these types; every type when not given."""
    wanted = request.args.getlist("type")
    for name in wanted:
        if name not in known:
            raise ApiError("event_type_invalid", f"{name[:60]!r} is not an event type.")
    return tuple(dict.fromkeys(wanted)) or None
