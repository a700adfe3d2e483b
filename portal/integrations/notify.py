"""Sending messages to borrowers: the ``Notifier`` interface and its transports.

- ``outbox`` (development and the offline demo): messages are kept in the ``outbound_message``
  table and shown at ``/dev/outbox``; nothing leaves the machine.
- ``live``: e-mail over SMTP, text messages through an HTTP SMS gateway.

Every message is recorded in ``outbound_message`` (contact history); a message marked
``secret`` (a sign-in code) is recorded without its body by the live transports.
"""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.request
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from typing import Any, Protocol

from sqlalchemy.orm import Session

from portal.models import OutboundMessage

log = logging.getLogger("accord.notify")
REDACTED = "[not kept: contains a sign-in code]"


@dataclass(frozen=True)
class Message:
    channel: str  # "sms" or "email"
    recipient: str
    body: str
    purpose: str
    subject: str | None = None
    secret: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Notifier(Protocol):
    def send(self, session: Session, message: Message) -> None: ...


class SmsGateway(Protocol):
    def send_sms(self, to: str, body: str) -> str: ...


def _record(session: Session, message: Message, transport: str, *, keep_body: bool) -> None:
    session.add(
        OutboundMessage(
            channel=message.channel,
            recipient=message.recipient,
            subject=message.subject,
            body=message.body if keep_body or not message.secret else REDACTED,
            purpose=message.purpose,
            transport=transport,
        )
    )
    session.commit()


class OutboxNotifier:
    """Keeps every message, whole, in the outbox table instead of sending it."""

    def send(self, session: Session, message: Message) -> None:
        _record(session, message, "outbox", keep_body=True)
        log.info("kept a %s message for %s in the outbox", message.channel, message.recipient)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float = 10.0


class HttpSmsGateway:
    """A JSON-over-HTTPS SMS gateway: POST {"to", "body"} with a bearer token, answered {"id"}."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.url, self.token, self.timeout = url, token, timeout

    def send_sms(self, to: str, body: str) -> str:
        request = urllib.request.Request(  # noqa: S310 - the URL is operator configuration
            self.url,
            data=json.dumps({"to": to, "body": body}).encode(),
            headers={"Content-Type": "application/json"}
            | ({"Authorization": f"Bearer {self.token}"} if self.token else {}),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - as above  # nosec B310
            return str(json.loads(response.read() or b"{}").get("id", ""))


class LiveNotifier:
    """E-mail through SMTP, text messages through the SMS gateway."""

    def __init__(self, smtp: SmtpSettings | None, sms: SmsGateway | None) -> None:
        self.smtp, self.sms = smtp, sms

    def send(self, session: Session, message: Message) -> None:
        if message.channel == "email":
            self._send_email(message)
        elif message.channel == "sms":
            if self.sms is None:
                raise RuntimeError("no SMS gateway is configured (ACCORD_SMS_GATEWAY_URL)")
            self.sms.send_sms(message.recipient, message.body)
        else:
            raise ValueError(f"unknown channel {message.channel!r}")
        _record(session, message, "smtp" if message.channel == "email" else "sms_gateway", keep_body=False)

    def _send_email(self, message: Message) -> None:
        if self.smtp is None:
            raise RuntimeError("no SMTP server is configured (ACCORD_SMTP_HOST)")
        email = EmailMessage()
        email["From"] = self.smtp.sender
        email["To"] = message.recipient
        email["Subject"] = message.subject or ""
        email.set_content(message.body)
        with smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=self.smtp.timeout) as client:
            if self.smtp.starttls:
                client.starttls()
            if self.smtp.username:
                client.login(self.smtp.username, self.smtp.password or "")
            client.send_message(email)


def notifier_from_config(config: dict[str, Any]) -> Notifier:
    if config["NOTIFIER"] == "outbox":
        return OutboxNotifier()
    smtp = (
        SmtpSettings(
            host=config["SMTP_HOST"],
            port=config["SMTP_PORT"],
            sender=config["SMTP_FROM"],
            starttls=config["SMTP_STARTTLS"],
            username=config["SMTP_USERNAME"],
            password=config["SMTP_PASSWORD"],
        )
        if config["SMTP_HOST"]
        else None
    )
    sms = (
        HttpSmsGateway(config["SMS_GATEWAY_URL"], config["SMS_GATEWAY_TOKEN"])
        if config["SMS_GATEWAY_URL"]
        else None
    )
    return LiveNotifier(smtp, sms)
