"""Logging: one line per record on standard error, JSON in production and text elsewhere
(``ACCORD_LOG_FORMAT``), every line tagged with its request's id and scrubbed of personal data.

The handler sits on the root logger, so every logger that propagates to it (Accord's, Flask's,
SQLAlchemy's, Huey's and gunicorn's when they use the root handlers) is covered. Gunicorn and the
Huey consumer also keep handlers of their own; those get the personal-data filter too when they
exist at set-up. Each request ends with one access line: method, path, status and duration.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from flask import Flask, Response, g, has_request_context, request, request_finished, request_started

HANDLER_NAME = "accord"
LOG_FORMATS = ("json", "text")
# The loggers of the servers Accord runs in, which write through handlers of their own.
SERVER_LOGGERS = ("gunicorn.error", "gunicorn.access", "huey")
ACCESS_FIELDS = ("method", "path", "status", "duration_ms")

access_log = logging.getLogger("accord.access")

# --- Personal data -----------------------------------------------------------------------------


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group())
    return "[redacted:card]" if 13 <= len(digits) <= 19 and _luhn_valid(digits) else match.group()


def _keep_key(kind: str) -> Callable[[re.Match[str]], str]:
    """Keep the key and what separates it from its value; redact the value."""
    return lambda match: f"{match.group('key')}{match.group('sep')}[redacted:{kind}]"


# A value after its key: "key=value", "key: value", "'key': 'value'", '"key": "value"' (the colon
# may be the full-width one a Chinese keyboard types).
_COLON = r"[:=\uff1a]"
_SEP = rf"(?P<sep>[\"']?\s*{_COLON}\s*[\"']?)"
# A number stands alone: not part of an identifier such as "txn_123…" nor the tail of a phone number
# in E.164 form (Chinese text around it is fine).
_ALONE, _END = r"(?<![0-9A-Za-z_+-])", r"(?![0-9A-Za-z_-])"
# In order: a long digit run is a national id before it could be read as a card or a phone number.
_PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # Chinese resident identity card number: 17 digits and a check character (a digit or X).
    (re.compile(rf"{_ALONE}\d{{17}}[\dXx]{_END}"), "[redacted:national-id]"),
    # A payment card number: 13 to 19 digits, maybe grouped by spaces or hyphens, Luhn-valid.
    (re.compile(rf"{_ALONE}\d(?:[ -]?\d){{12,18}}{_END}"), _card),
    # An IBAN: country, check digits, then up to 30 letters and digits, maybe in groups of four.
    (re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"), "[redacted:iban]"),
    # A bank account number after a key that says so.
    (
        re.compile(
            r"(?i)(?P<key>bank[_ ]?account(?:[_ ]?(?:number|no))?|account[_ ]?(?:number|no)|"
            r"acct[_ ]?(?:number|no)|银行账号|银行卡号|账号|卡号)"
            rf"(?P<sep>[\"']?\s*{_COLON}?\s*[\"']?)(?P<value>\d[\d -]{{4,32}}\d)"
        ),
        _keep_key("bank-account"),
    ),
    # A phone number in E.164 form, or a Chinese mobile number of 11 digits.
    (re.compile(rf"(?<![0-9A-Za-z_+])\+[1-9](?:[ -]?\d){{6,14}}{_END}"), "[redacted:phone]"),
    (re.compile(rf"{_ALONE}1[3-9]\d(?:[ -]?\d{{4}}){{2}}{_END}"), "[redacted:phone]"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), "[redacted:email]"),
    # A date of birth after a key that says so, as an ISO date or as Python writes a date.
    (
        re.compile(
            r"(?i)(?P<key>date[_ -]?of[_ -]?birth|birth[_ -]?date|birthday|\bdob\b|出生日期|生日)"
            r"(?P<sep>[\s\"':=\uff1a]{1,5})"
            r"(?P<value>\d{4}-\d{2}-\d{2}|datetime\.date\(\d{4}, ?\d{1,2}, ?\d{1,2}\))"
        ),
        _keep_key("date-of-birth"),
    ),
    # Income and expenditure figures after their key (as in a statement's fields).
    (
        re.compile(
            r"(?i)(?P<key>\b\w*(?:income|expenditure|expense|spending|salary|wage|收入|支出|工资)\w*)"
            + _SEP
            + r"(?P<value>-?\d+(?:[.,]\d+)*)"
        ),
        _keep_key("amount"),
    ),
)


def redact(text: str) -> str:
    """``text`` with every piece of personal data we can recognise replaced by a marker that
    says what was there: national ids, card numbers, IBANs and bank account numbers, phone
    numbers, e-mail addresses, dates of birth, and income and expenditure figures."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class PersonalDataFilter(logging.Filter):
    """Scrub a record before any handler writes it: its message with its arguments merged in,
    the exception's traceback and the stack. The record is changed in place, so a handler that
    runs after this one sees it scrubbed too."""

    _tracebacks = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the message: keep both
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._tracebacks.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        path = getattr(record, "path", None)
        if isinstance(path, str):
            record.path = redact(path)
        return True


# --- Formats -----------------------------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    """Tag a record logged while serving a request with that request's id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") and has_request_context():
            record.request_id = g.get("request_id")
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request_id; an access line
    adds method, path, status and duration_ms; a record with an exception adds its traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for field in ACCESS_FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _text_formatter() -> logging.Formatter:
    return logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s", defaults={"request_id": "-"}
    )


def _formatter(log_format: str) -> logging.Formatter:
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    return JsonFormatter() if log_format == "json" else _text_formatter()


def make_handler(log_format: str, stream: IO[str] | None = None) -> logging.Handler:
    """The handler Accord logs through: ``log_format`` ("json" or "text") to ``stream``
    (standard error by default), tagging request ids and scrubbing personal data."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(_formatter(log_format))
    handler.addFilter(RequestIdFilter())
    handler.addFilter(PersonalDataFilter())
    return handler


def _scrub_server_handlers() -> None:
    for name in SERVER_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, PersonalDataFilter) for f in handler.filters):
                handler.addFilter(PersonalDataFilter())


def configure(log_format: str) -> logging.Handler:
    """Put Accord's handler on the root logger, or switch the one there to ``log_format``: an app
    made twice in one process (tests, the CLI) still writes each line once."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if h.get_name() == HANDLER_NAME), None)
    if handler is None:
        handler = make_handler(log_format)
        root.addHandler(handler)
    else:
        handler.setFormatter(_formatter(log_format))
    logging.getLogger("accord").setLevel(logging.INFO)
    _scrub_server_handlers()
    return handler


# --- Requests ----------------------------------------------------------------------------------

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _request_started(_sender: Flask, **_extra: Any) -> None:
    """Before any ``before_request`` hook (a refusal by the rate limiter or the CSRF check still
    gets an id): the caller's ``X-Request-Id`` when it is a plain token, else a new one."""
    offered = request.headers.get("X-Request-Id", "")
    g.request_id = offered if _REQUEST_ID.fullmatch(offered) else secrets.token_hex(8)
    g.request_started_at = time.perf_counter()


def _request_finished(_sender: Flask, response: Response, **_extra: Any) -> None:
    started = g.get("request_started_at")
    duration_ms = round((time.perf_counter() - started) * 1000, 1) if started is not None else None
    access_log.info(
        "%s %s %s %sms",
        request.method,
        request.path,
        response.status_code,
        duration_ms,
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": duration_ms,
        },
    )


def init_app(app: Flask) -> None:
    """Configure logging in the format ``app.config["LOG_FORMAT"]`` names, give each request an
    id and log an access line when it ends."""
    # Before app.logger is first used: with a handler on the root logger, Flask adds none of its own.
    configure(app.config["LOG_FORMAT"])
    request_started.connect(_request_started, app)
    request_finished.connect(_request_finished, app)
