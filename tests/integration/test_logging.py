"""Logs: one JSON object per line in production, an access line per request with its request id,
and no personal data in any line — through the handlers the app really installs (``caplog`` would
not do: it reads records before a handler's filters run)."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal import crypto, logging_setup
from portal.config import ConfigError, load_config
from portal.logging_setup import JsonFormatter, PersonalDataFilter


@contextmanager
def json_lines() -> Iterator[Callable[[], list[dict[str, object]]]]:
    """Accord's handler, in JSON, on the root logger for the block: a function reading its lines."""
    stream = io.StringIO()
    handler = logging_setup.make_handler("json", stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)


@contextmanager
def root_handler_output() -> Iterator[io.StringIO]:
    """What the handler ``create_app`` put on the root logger writes, for the block."""
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == logging_setup.HANDLER_NAME)
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(previous)


@contextmanager
def own_root_handlers() -> Iterator[list[logging.Handler]]:
    """The root logger with no handlers for the block (an app made in it installs its own there),
    then as it was."""
    root = logging.getLogger()
    saved = root.handlers
    root.handlers = []
    try:
        yield root.handlers
    finally:
        root.handlers = saved


def _access_lines(lines: list[dict[str, object]]) -> list[dict[str, object]]:
    return [line for line in lines if line["logger"] == "accord.access"]


# --- The format ----------------------------------------------------------------------------------


def test_each_request_logs_one_json_access_line_carrying_its_request_id(client: FlaskClient) -> None:
    with json_lines() as read:
        client.get("/healthz", headers={"X-Request-Id": "probe-1"})
        client.get("/staff/login", headers={"X-Request-Id": "probe-2"})
        unnamed = client.get("/no-such-page")
        lines = read()
    for line in lines:
        assert {"time", "level", "logger", "message", "request_id"} <= line.keys()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(line["time"]))
    access = _access_lines(lines)
    assert [(a["method"], a["path"], a["status"], a["level"]) for a in access] == [
        ("GET", "/healthz", 200, "INFO"),
        ("GET", "/staff/login", 200, "INFO"),
        ("GET", "/no-such-page", 404, "INFO"),
    ]
    generated = unnamed.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{16}", generated)
    assert [a["request_id"] for a in access] == ["probe-1", "probe-2", generated]
    assert all(isinstance(a["duration_ms"], float) and a["duration_ms"] >= 0 for a in access)


@pytest.mark.parametrize("offered", ["x" * 65, "wang wei", "<script>", "borrower@example.com"])
def test_a_request_id_that_is_not_a_plain_token_is_replaced(client: FlaskClient, offered: str) -> None:
    with json_lines() as read:
        response = client.get("/healthz", headers={"X-Request-Id": offered})
        (access,) = _access_lines(read())
    assert re.fullmatch(r"[0-9a-f]{16}", response.headers["X-Request-Id"])
    assert access["request_id"] == response.headers["X-Request-Id"]


def test_a_request_refused_before_its_view_still_logs_its_request_id(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CSRF check runs before the app's own hooks: the request id is set before both."""
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    with json_lines() as read:
        response = client.post("/language", data={"lang": "en"}, headers={"X-Request-Id": "refused-1"})
        (access,) = _access_lines(read())
    assert response.status_code == 400
    assert response.headers["X-Request-Id"] == access["request_id"] == "refused-1"


def test_the_log_format_is_json_in_production_and_text_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACCORD_LOG_FORMAT", raising=False)
    production = {
        "ACCORD_ENV": "production",
        "SECRET_KEY": "x",
        "NOTIFIER": "live",
        "ENCRYPTION_KEYS": crypto.development_keys_text(),
    }
    assert load_config(production)["LOG_FORMAT"] == "json"
    assert load_config({"ACCORD_ENV": "development", "SECRET_KEY": "x"})["LOG_FORMAT"] == "text"
    monkeypatch.setenv("ACCORD_LOG_FORMAT", "text")
    assert load_config(production)["LOG_FORMAT"] == "text"
    monkeypatch.setenv("ACCORD_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="ACCORD_LOG_FORMAT"):
        load_config(production)


def test_a_production_app_logs_json_through_one_root_handler(make_app: Callable[..., Flask]) -> None:
    with own_root_handlers() as handlers:
        keys = crypto.development_keys_text()
        make_app(ACCORD_ENV="production", NOTIFIER="live", ENCRYPTION_KEYS=keys)
        make_app(ACCORD_ENV="production", NOTIFIER="live", ENCRYPTION_KEYS=keys)  # no second handler
        assert len(handlers) == 1
        assert isinstance(handlers[0].formatter, JsonFormatter)
        assert any(isinstance(f, PersonalDataFilter) for f in handlers[0].filters)


# --- Personal data -------------------------------------------------------------------------------

# (what, the text logged, what must not be written, the marker written instead)
PERSONAL_DATA = [
    ("national id", "id 11010519491231002X", "11010519491231002X", "[redacted:national-id]"),
    ("date of birth", "date_of_birth=1985-03-15", "1985-03-15", "date_of_birth=[redacted:date-of-birth]"),
    ("e-mail", "mail wang.wei@example.com", "wang.wei@example.com", "[redacted:email]"),
    ("E.164 phone", "call +8613812345678", "13812345678", "[redacted:phone]"),
    ("mobile", "call 138 1234 5678", "1234 5678", "[redacted:phone]"),
    ("card", "card 4242 4242 4242 4242", "4242 4242", "[redacted:card]"),
    ("IBAN", "to GB82 WEST 1234 5698 7654 32", "WEST 1234", "[redacted:iban]"),
    (
        "bank account",
        "bank_account: 6222 0212 3456 7891",
        "3456 7891",
        "bank_account: [redacted:bank-account]",
    ),
    ("income", "{'monthly_income': 850000}", "850000", "'monthly_income': [redacted:amount]"),
    ("spending", 'spending_total: "3200.50"', "3200.50", 'spending_total: "[redacted:amount]"'),
    ("nothing personal", "payment 12 on account 345: 90000 CNY on 2026-01-02", None, None),  # kept as is
]


@pytest.mark.parametrize(
    ("kind", "text", "secret", "marker"), PERSONAL_DATA, ids=[k[0] for k in PERSONAL_DATA]
)
def test_personal_data_is_redacted_from_message_arguments_and_traceback(
    app: Flask, kind: str, text: str, secret: str | None, marker: str | None
) -> None:
    """Through the handler the app installed on the root logger, from a logger that is not
    Accord's: in the message, in its arguments and in an exception's text."""
    log = logging.getLogger("huey.consumer")
    with root_handler_output() as output:
        log.warning(f"in the message: {text}")
        log.warning("in an argument: %s", text)
        try:
            raise ValueError(f"in the exception: {text}")
        except ValueError:
            log.exception("a task failed")
    written = output.getvalue()
    assert "Traceback" in written and "in the exception:" in written
    if secret is None:
        assert written.count(text) == 3, kind
    else:
        assert secret not in written, kind
        assert written.count(marker) == 3, kind


def test_handlers_of_the_servers_loggers_get_the_filter_too(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gunicorn and the Huey consumer write through handlers of their own, set up before the app."""
    output = io.StringIO()
    gunicorn = logging.getLogger("gunicorn.error")
    monkeypatch.setattr(gunicorn, "handlers", [logging.StreamHandler(output)])
    monkeypatch.setattr(gunicorn, "propagate", False)
    make_app()
    gunicorn.error("worker failed for wang.wei@example.com")
    assert output.getvalue() == "worker failed for [redacted:email]\n"


def test_a_crash_in_a_view_is_logged_with_its_traceback_and_request_id_and_shows_neither_traceback_nor_detail(
    make_app: Callable[..., Flask],
) -> None:
    """The page says something went wrong and gives the request id as the reference to quote; the
    log has the traceback under the same id, scrubbed."""
    app = make_app()

    @app.get("/crash")
    def crash() -> str:
        raise RuntimeError("statement of 110105194912310021 does not add up")

    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    with json_lines() as read:
        response = client.get("/crash", headers={"X-Request-Id": "crash-1"})
        lines = read()
    (error,) = [line for line in lines if line["level"] == "ERROR"]
    assert error["request_id"] == "crash-1"
    assert "Traceback" in str(error["exception"]) and "RuntimeError" in str(error["exception"])
    assert "[redacted:national-id]" in str(error["exception"])
    assert "110105194912310021" not in json.dumps(lines)
    assert [line["status"] for line in _access_lines(lines)] == [500]

    page = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Something went wrong on our side" in page and "crash-1" in page
    for leak in ("Traceback", "RuntimeError", "110105194912310021", "does not add up"):
        assert leak not in page
