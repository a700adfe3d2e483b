"""Outgoing webhooks: a lender's events pushed to the URL it gave, signed, retried with backoff,
every attempt kept in the delivery log.

The pipeline (``run``, every minute):

1. ``integration_events.sequence`` numbers the events committed since the last run;
2. ``fan_out`` creates a delivery per active endpoint for each of its lender's newly numbered
   events of the types it wants, and moves the endpoint's ``last_seq`` past them in the same
   transaction: run twice, it creates nothing twice (the unique (endpoint, event) says so too);
3. ``deliver_due`` claims the deliveries whose time has come, leases them (their next attempt is
   pushed past the time the batch can take) and commits *before* the first request goes out, so
   no transaction and no row lock is held while a lender's server takes its time, and a run
   beside it skips what this one claimed. Each answer is then recorded in a short transaction.

A request is signed as ``workflows.webhook_signature`` describes (the reference for the lender's
developers). Delivery is at least once: a run that dies between sending and recording leaves the
delivery to be sent again when its lease ends, and the lender recognises it by
``Accord-Event-Id``.

Every attempt is a ``WebhookAttempt`` row (the delivery log); the audit log holds what staff do
(endpoints added, turned off or on, secrets replaced, deliveries sent again) and each delivery
given up.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, has_app_context
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.models import (
    Creditor,
    EventSequence,
    IntegrationEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from portal.models.integration import EVENT_TYPES
from portal.services import audit, integration_events
from portal.services.audit import SYSTEM, Actor
from workflows import webhook_signature
from workflows.errors import DomainError
from workflows.webhook_delivery import Outcome, backoff, outcome

TIMEOUT_SECONDS = 10
LEASE_MARGIN = dt.timedelta(minutes=1)
USER_AGENT = "Accord-Webhooks/1"
SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix, not a secret  # nosec B105
MAX_URL = 500
MAX_ERROR = 500
LOCAL_HOSTS = ("localhost", "127.0.0.1")
"""Hosts plain http may reach outside production (a lender's developer testing locally)."""
FAN_OUT_BATCH = 1_000
LOG_LIMIT = 100

ENDPOINT_FIELDS = ("is_active", "disabled_at")
DELIVERY_FIELDS = ("status", "attempts", "next_attempt_at")


# --- Endpoints -------------------------------------------------------------------------------------


def new_secret() -> str:
    """A signing secret: ``whsec_`` and 32 random bytes, URL-safe."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _local_http_allowed() -> bool:
    """Plain http to this machine is for development and tests; production (or no app to ask)
    accepts https only."""
    return has_app_context() and current_app.config.get("ACCORD_ENV") != "production"


def checked_url(url: str, *, local_http: bool) -> str:
    """The endpoint URL, trimmed: https with a host name and no user name or password in it; plain
    http only to localhost or 127.0.0.1, and only when ``local_http``."""
    invalid = DomainError("webhook_url_invalid", "Enter the full address, such as https://example.com/hooks.")
    text = (url or "").strip()
    if not text or len(text) > MAX_URL or any(ch.isspace() for ch in text):
        raise invalid
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - reading it checks the port is a number in range
    except ValueError:
        raise invalid from None
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password:
        raise invalid
    if parts.scheme == "http" and not (local_http and parts.hostname in LOCAL_HOSTS):
        raise DomainError("webhook_url_not_https", "The address must start with https://.")
    return text


def checked_event_types(event_types: Iterable[str] | None) -> list[str] | None:
    """The event types chosen, in their usual order; None (every type) when none is chosen."""
    chosen = set(event_types or ())
    if chosen - set(EVENT_TYPES):
        raise DomainError("webhook_event_types_invalid", "Choose event types from the list.")
    return [t for t in EVENT_TYPES if t in chosen] or None


def _last_seq(session: Session) -> int:
    return int(session.scalar(select(EventSequence.last_seq).where(EventSequence.id == 1)) or 0)


def create_endpoint(
    session: Session, actor: Actor, *, creditor_id: int, url: str, event_types: Iterable[str] | None
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint for a lender and its secret (shown once; only the endpoint keeps it). It
    starts at the events numbered so far, so it receives what happens from now on, not the
    lender's whole history (the API serves that)."""
    cleaned = checked_url(url, local_http=_local_http_allowed())
    types = checked_event_types(event_types)
    if session.get(Creditor, creditor_id) is None:
        raise DomainError("webhook_creditor_unknown", "Choose a lender from the list.")
    secret = new_secret()
    endpoint = WebhookEndpoint(
        creditor_id=creditor_id,
        url=cleaned,
        secret=secret,
        event_types=types,
        is_active=True,
        last_seq=_last_seq(session),
        created_by_id=actor.id if actor.type == "staff" else None,
    )
    session.add(endpoint)
    session.flush()
    audit.record(
        session,
        actor,
        "webhook_endpoint.created",
        "webhook_endpoint",
        endpoint.id,
        after={
            "creditor_id": creditor_id,
            "url": cleaned,
            "event_types": types,
            "last_seq": endpoint.last_seq,
        },
    )
    session.commit()
    return endpoint, secret


def _locked_endpoint(session: Session, endpoint_id: int) -> WebhookEndpoint:
    endpoint = session.scalar(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if endpoint is None:
        raise DomainError("webhook_endpoint_unknown", "This webhook endpoint was not found.")
    return endpoint


def set_active(session: Session, actor: Actor, endpoint_id: int, active: bool) -> WebhookEndpoint:
    """Stop or resume an endpoint. Stopped, it is sent nothing; resumed, it receives what happened
    meanwhile (its ``last_seq`` stayed where it stopped), so no event is lost."""
    endpoint = _locked_endpoint(session, endpoint_id)
    if endpoint.is_active == active:
        session.rollback()
        return endpoint
    action = "webhook_endpoint.enabled" if active else "webhook_endpoint.disabled"
    with audit.change(session, actor, action, endpoint, ENDPOINT_FIELDS):
        endpoint.is_active = active
        endpoint.disabled_at = None if active else utcnow()
    session.commit()
    return endpoint


def roll_secret(session: Session, actor: Actor, endpoint_id: int) -> tuple[WebhookEndpoint, str]:
    """A new secret for the endpoint, in force at once (the next request is signed with it)."""
    endpoint = _locked_endpoint(session, endpoint_id)
    secret = new_secret()
    endpoint.secret = secret
    audit.record(session, actor, "webhook_endpoint.secret_rolled", "webhook_endpoint", endpoint.id)
    session.commit()
    return endpoint, secret


# --- Fan-out ---------------------------------------------------------------------------------------


def fan_out(session: Session) -> int:
    """Deliveries for every active endpoint's new events (numbered, its lender's, of its types),
    each endpoint in transactions of its own; returns how many were created."""
    endpoint_ids = session.scalars(
        select(WebhookEndpoint.id).where(WebhookEndpoint.is_active.is_(True)).order_by(WebhookEndpoint.id)
    ).all()
    session.rollback()
    return sum(_fan_out_endpoint(session, endpoint_id) for endpoint_id in endpoint_ids)


def _fan_out_endpoint(session: Session, endpoint_id: int) -> int:
    """One endpoint, locked (a fan-out beside this one waits, then finds nothing new)."""
    created = 0
    while True:
        endpoint = session.scalar(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.is_active.is_(True))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        # Every event numbered up to the counter is committed: sequence() commits both at once.
        upto = _last_seq(session)
        if endpoint is None or endpoint.last_seq >= upto:
            session.rollback()
            return created
        stmt = select(IntegrationEvent.id, IntegrationEvent.seq, IntegrationEvent.occurred_at).where(
            IntegrationEvent.creditor_id == endpoint.creditor_id,
            IntegrationEvent.seq > endpoint.last_seq,
            IntegrationEvent.seq <= upto,
        )
        if endpoint.event_types is not None:
            stmt = stmt.where(IntegrationEvent.type.in_(endpoint.event_types))
        rows = session.execute(stmt.order_by(IntegrationEvent.seq).limit(FAN_OUT_BATCH)).all()
        if rows:
            # Due from the moment the event happened: the oldest go first.
            session.execute(
                insert(WebhookDelivery),
                [
                    {"endpoint_id": endpoint.id, "event_id": event_id, "next_attempt_at": occurred_at}
                    for event_id, _seq, occurred_at in rows
                ],
            )
        full = len(rows) == FAN_OUT_BATCH
        endpoint.last_seq = rows[-1].seq if full else upto
        session.commit()
        created += len(rows)
        if not full:
            return created


# --- Delivery --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What one POST got: the HTTP status, or why there was none (a timeout, a refused connection)."""

    status_code: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


Sender = Callable[[str, bytes, Mapping[str, str]], Answer]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer like any other non-2xx: the request is not sent anywhere else."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def post(url: str, body: bytes, headers: Mapping[str, str], *, timeout: float = TIMEOUT_SECONDS) -> Answer:
    """POST ``body`` to ``url`` (http or https: checked when the endpoint was saved)."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310
    try:
        with _opener.open(request, timeout=timeout) as response:
            return Answer(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return Answer(exc.code)
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return Answer(None, "timeout")
        return Answer(None, f"connection failed: {reason}"[:MAX_ERROR])
    except TimeoutError:
        return Answer(None, "timeout")
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR])


def body_of(event: IntegrationEvent) -> bytes:
    """The request body: the event as the API shows it, compact JSON in UTF-8."""
    return json.dumps(
        integration_events.event_json(event), separators=(",", ":"), ensure_ascii=False
    ).encode()


@dataclass
class DeliveryReport:
    """What a run did."""

    sequenced: int = 0
    """Events numbered."""
    queued: int = 0
    """Deliveries created."""
    delivered: int = 0
    retrying: int = 0
    """Failed attempts that will be tried again."""
    failed: int = 0
    """Deliveries given up after their last attempt."""
    delivery_ids: list[int] = field(default_factory=list)
    """The deliveries sent, in order."""

    def summary(self) -> str:
        return (
            f"{self.sequenced} event(s) numbered, {self.queued} delivery(ies) queued; "
            f"{self.delivered} delivered, {self.retrying} to retry, {self.failed} failed"
        )


@dataclass(frozen=True)
class _Claimed:
    delivery_id: int
    lease_until: dt.datetime
    url: str
    secret: str
    event_id: str
    body: bytes


def _claim(session: Session, now: dt.datetime, limit: int, lease: dt.timedelta) -> list[_Claimed]:
    """The due deliveries of active endpoints, oldest first, leased until ``now + lease``;
    committed. On PostgreSQL rows another run has locked are skipped, not waited for."""
    rows = session.execute(
        select(WebhookDelivery, WebhookEndpoint, IntegrationEvent)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .join(IntegrationEvent, IntegrationEvent.id == WebhookDelivery.event_id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            WebhookEndpoint.is_active.is_(True),
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(of=WebhookDelivery, skip_locked=True)
        .execution_options(populate_existing=True)
    ).all()
    lease_until = now + lease
    claimed = []
    for delivery, endpoint, event in rows:
        delivery.next_attempt_at = lease_until
        claimed.append(
            _Claimed(
                delivery.id,
                lease_until,
                endpoint.url,
                endpoint.secret,
                integration_events.event_json(event)["id"],
                body_of(event),
            )
        )
    session.commit()
    return claimed


def deliver_due(
    session: Session, *, now: dt.datetime, limit: int = 100, send: Sender = post
) -> DeliveryReport:
    """Send the deliveries due at ``now`` (at most ``limit``), one after another; record each
    answer: 2xx delivered; anything else tried again after the backoff, and failed after
    ``MAX_ATTEMPTS``. The lease covers the batch sent one by one, each to its timeout."""
    report = DeliveryReport()
    started = time.monotonic()
    claimed = _claim(session, now, limit, dt.timedelta(seconds=TIMEOUT_SECONDS * limit) + LEASE_MARGIN)
    for item in claimed:
        at = now + dt.timedelta(seconds=time.monotonic() - started)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Accord-Event-Id": item.event_id,
            "Accord-Signature": webhook_signature.sign(item.secret, int(time.time()), item.body),
        }
        sent = time.monotonic()
        answer = send(item.url, item.body, headers)
        duration_ms = int((time.monotonic() - sent) * 1000)
        outcome = _record(session, item, answer, at, duration_ms)
        if outcome == "delivered":
            report.delivered += 1
        elif outcome == "failed":
            report.failed += 1
        else:
            report.retrying += 1
        report.delivery_ids.append(item.delivery_id)
    return report


def _record(session: Session, item: _Claimed, answer: Answer, at: dt.datetime, duration_ms: int) -> str:
    """Log the attempt and move the delivery on; returns delivered, retrying or failed. A
    delivery another run took over (its lease ran out) keeps the next attempt that run set."""
    delivery = session.execute(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == item.delivery_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            attempted_at=at,
            status_code=answer.status_code,
            error=answer.error,
            duration_ms=duration_ms,
        )
    )
    if delivery.status != "pending":  # finished meanwhile by a run that took over
        session.commit()
        return delivery.status
    delivery.attempts += 1
    delivery.last_attempt_at = at
    delivery.last_status_code = answer.status_code
    delivery.last_error = answer.error
    step = outcome(attempts=delivery.attempts, succeeded=answer.ok)
    if step is Outcome.DELIVERED:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", at, None
    elif step is Outcome.FAILED:
        delivery.status, delivery.next_attempt_at = "failed", None
        audit.record(
            session,
            SYSTEM,
            "webhook_delivery.failed",
            "webhook_delivery",
            delivery.id,
            after={"attempts": delivery.attempts, "status_code": answer.status_code, "error": answer.error},
        )
    elif delivery.next_attempt_at == item.lease_until:  # retrying, and the lease is still ours
        delivery.next_attempt_at = at + backoff(delivery.attempts)
    session.commit()
    return step.value


def run(session: Session, now: dt.datetime) -> DeliveryReport:
    """The minute's work: number new events, queue their deliveries, send what is due."""
    sequenced = integration_events.sequence(session)
    queued = fan_out(session)
    report = deliver_due(session, now=now)
    report.sequenced, report.queued = sequenced, queued
    return report


def retry(session: Session, actor: Actor, delivery_id: int) -> WebhookDelivery:
    """Send a failed delivery again: pending at once, with a fresh round of attempts (the log
    keeps the earlier ones)."""
    delivery = session.scalar(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if delivery is None:
        raise DomainError("webhook_delivery_unknown", "This delivery was not found.")
    if delivery.status != "failed":
        session.rollback()
        raise DomainError("webhook_delivery_not_failed", "Only a failed delivery can be sent again.")
    with audit.change(session, actor, "webhook_delivery.retried", delivery, DELIVERY_FIELDS):
        delivery.status, delivery.attempts, delivery.next_attempt_at = "pending", 0, utcnow()
    session.commit()
    return delivery


# --- What the admin pages show ---------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointRow:
    endpoint: WebhookEndpoint
    creditor: Creditor
    pending: int
    failed: int


@dataclass(frozen=True)
class Overview:
    creditors: list[Creditor]
    endpoints: list[EndpointRow]


def overview(session: Session) -> Overview:
    """Every lender (to add an endpoint for) and every endpoint, by lender, with its deliveries
    waiting and failed."""
    counts: dict[tuple[int, str], int] = {
        (endpoint_id, status): n
        for endpoint_id, status, n in session.execute(
            select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count())
            .where(WebhookDelivery.status.in_(("pending", "failed")))
            .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.status)
        )
    }
    rows = session.execute(
        select(WebhookEndpoint, Creditor)
        .join(Creditor, Creditor.id == WebhookEndpoint.creditor_id)
        .order_by(Creditor.name, WebhookEndpoint.id)
    ).all()
    return Overview(
        creditors=list(session.scalars(select(Creditor).order_by(Creditor.name))),
        endpoints=[
            EndpointRow(e, c, counts.get((e.id, "pending"), 0), counts.get((e.id, "failed"), 0))
            for e, c in rows
        ],
    )


@dataclass(frozen=True)
class LogRow:
    delivery: WebhookDelivery
    event: IntegrationEvent


@dataclass(frozen=True)
class EndpointLog:
    endpoint: WebhookEndpoint
    creditor: Creditor
    deliveries: list[LogRow]


def endpoint_log(
    session: Session, endpoint_id: int, *, status: str | None = None, limit: int = LOG_LIMIT
) -> EndpointLog | None:
    """An endpoint and its most recent deliveries (of one status, if given), newest first."""
    found = session.execute(
        select(WebhookEndpoint, Creditor)
        .join(Creditor, Creditor.id == WebhookEndpoint.creditor_id)
        .where(WebhookEndpoint.id == endpoint_id)
    ).first()
    if found is None:
        return None
    stmt = (
        select(WebhookDelivery, IntegrationEvent)
        .join(IntegrationEvent, IntegrationEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    if status:
        stmt = stmt.where(WebhookDelivery.status == status)
    return EndpointLog(found[0], found[1], [LogRow(d, e) for d, e in session.execute(stmt)])


@dataclass(frozen=True)
class DeliveryDetail:
    delivery: WebhookDelivery
    endpoint: WebhookEndpoint
    event: IntegrationEvent
    attempts: list[WebhookAttempt]


def delivery_detail(session: Session, delivery_id: int) -> DeliveryDetail | None:
    """One delivery, its endpoint and event, and every attempt, the latest first."""
    found = session.execute(
        select(WebhookDelivery, WebhookEndpoint, IntegrationEvent)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .join(IntegrationEvent, IntegrationEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.id == delivery_id)
    ).first()
    if found is None:
        return None
    attempts = session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == delivery_id)
        .order_by(WebhookAttempt.attempted_at.desc(), WebhookAttempt.id.desc())
    ).all()
    return DeliveryDetail(found[0], found[1], found[2], list(attempts))
