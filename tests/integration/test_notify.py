"""Messages reach real peers: an SMTP server (aiosmtpd) and an HTTP SMS gateway, both local."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message as MessageHandler
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.integrations.notify import (
    REDACTED,
    HttpSmsGateway,
    LiveNotifier,
    Message,
    OutboxNotifier,
    SmtpSettings,
    notifier_from_config,
)
from portal.models import OutboundMessage


class _Inbox(MessageHandler):
    def __init__(self) -> None:
        super().__init__()
        self.received: list = []  # type: ignore[type-arg]

    def handle_message(self, message) -> None:  # type: ignore[no-untyped-def]
        self.received.append(message)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Controller, _Inbox]]:
    inbox = _Inbox()
    with socket.socket() as probe:  # aiosmtpd needs a real port number, not 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


class _Gateway(BaseHTTPRequestHandler):
    received: list[dict[str, object]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"auth": self.headers.get("Authorization"), **json.loads(body)})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"id": "sms-1"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sms_gateway() -> Iterator[str]:
    _Gateway.received = []
    server = HTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/send"
    finally:
        server.shutdown()
        server.server_close()


CODE = Message(
    "email", "borrower@example.com", "Your code is 123456.", "signin_code", subject="Code", secret=True
)


def test_email_goes_through_smtp_and_history_keeps_no_code(session: Session, smtp_server) -> None:  # type: ignore[no-untyped-def]
    controller, inbox = smtp_server
    notifier = LiveNotifier(
        SmtpSettings(controller.hostname, controller.port, "Accord <no-reply@test>"), None
    )
    notifier.send(session, CODE)
    [received] = inbox.received
    assert received["To"] == "borrower@example.com"
    assert received["Subject"] == "Code"
    assert "123456" in received.get_payload()
    record = session.scalars(select(OutboundMessage)).one()
    assert record.transport == "smtp"
    assert record.body == REDACTED


def test_text_messages_go_through_the_sms_gateway(session: Session, sms_gateway: str) -> None:
    notifier = LiveNotifier(None, HttpSmsGateway(sms_gateway, token="secret-token"))
    notifier.send(
        session, Message("sms", "+8613800001111", "Your code is 654321.", "signin_code", secret=True)
    )
    assert _Gateway.received == [
        {"auth": "Bearer secret-token", "to": "+8613800001111", "body": "Your code is 654321."}
    ]
    assert session.scalars(select(OutboundMessage.transport)).one() == "sms_gateway"


def test_the_outbox_keeps_whole_messages_for_the_offline_demo(session: Session) -> None:
    OutboxNotifier().send(session, CODE)
    assert session.scalars(select(OutboundMessage.body)).one() == "Your code is 123456."


def test_a_missing_transport_fails_loudly_and_records_nothing(session: Session) -> None:
    with pytest.raises(RuntimeError, match="SMTP"):
        LiveNotifier(None, None).send(session, CODE)
    assert session.scalars(select(OutboundMessage)).all() == []


def test_configuration_chooses_the_transports() -> None:
    base = {
        "SMTP_PORT": 25,
        "SMTP_FROM": "x@test",
        "SMTP_STARTTLS": False,
        "SMTP_USERNAME": None,
        "SMTP_PASSWORD": None,
        "SMS_GATEWAY_TOKEN": None,
    }
    assert isinstance(
        notifier_from_config({**base, "NOTIFIER": "outbox", "SMTP_HOST": None, "SMS_GATEWAY_URL": None}),
        OutboxNotifier,
    )
    live = notifier_from_config(
        {**base, "NOTIFIER": "live", "SMTP_HOST": "127.0.0.1", "SMS_GATEWAY_URL": "http://127.0.0.1:9/send"}
    )
    assert isinstance(live, LiveNotifier)
    assert live.smtp is not None and live.sms is not None
