"""Outgoing webhooks against a real HTTP server on 127.0.0.1: the body is the event as the API
shows it, signed so that ``workflows.webhook_signature.verify`` accepts it; a failure is tried
again after the backoff and given up after the last attempt; nothing is sent twice by one run or
by two side by side; and the admin pages that manage it all."""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, func, make_url, select
from sqlalchemy.orm import Session, sessionmaker

from portal.db import utcnow
from portal.models import (
    Account,
    AuditEvent,
    IntegrationEvent,
    StaffUser,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from portal.services import integration_events
from portal.services import outgoing_webhooks as hooks
from portal.services.audit import Actor
from tests import factories
from tests.conftest import own_postgres_engine
from tests.stripe_support import free_port
from workflows import webhook_delivery
from workflows.access import Role
from workflows.errors import DomainError
from workflows.webhook_signature import verify


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A lender's server: records every POST and answers from ``answers`` (then 200). An answer
    is a status code, ``"hang"`` (no answer until the test ends) or ``(302, location)``."""

    server: ThreadingHTTPServer
    requests: list[Received] = field(default_factory=list)
    answers: list[Any] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def next_answer(self, received: Received) -> Any:
        with self.lock:
            self.requests.append(received)
            return self.answers.pop(0) if self.answers else 200

    def event_ids(self) -> list[str]:
        return [r.headers["Accord-Event-Id"] for r in self.requests]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            answer = receiver.next_answer(Received(self.path, dict(self.headers.items()), body))
            if answer == "hang":
                receiver.release.wait(10)
                return
            location = None
            if isinstance(answer, tuple):
                answer, location = answer
            self.send_response(answer)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            return

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    found = Receiver(server)
    server.RequestHandlerClass = _handler(found)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def ctx(app: Flask) -> Iterator[None]:
    """The services called straight from a test run in an application context, as the job does
    (not in the page tests: the test client's requests would share this context's session)."""
    with app.app_context():
        yield


@pytest.fixture
def admin(session: Session) -> StaffUser:
    return factories.staff(session, role=Role.ADMIN)


def _emit(session: Session, account: Account, kind: str = "dispute.opened", **data: Any) -> IntegrationEvent:
    found = integration_events.emit(session, account, kind, data or {"dispute_id": 1, "reason": "other"})
    session.commit()
    return found


def _endpoint(
    session: Session, admin: StaffUser, account: Account, url: str, types: list[str] | None = None
) -> tuple[WebhookEndpoint, str]:
    return hooks.create_endpoint(
        session, Actor.staff(admin), creditor_id=account.creditor_id, url=url, event_types=types
    )


def _deliveries(session: Session, endpoint: WebhookEndpoint) -> list[WebhookDelivery]:
    session.expire_all()
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint.id)
            .order_by(WebhookDelivery.id)
        )
    )


def _attempts(session: Session, delivery: WebhookDelivery) -> list[WebhookAttempt]:
    return list(
        session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery.id)
            .order_by(WebhookAttempt.id)
        )
    )


# --- What is sent ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("ctx")
def test_an_event_is_posted_as_the_api_shows_it_and_signed_with_the_endpoint_secret(
    session: Session, admin: StaffUser, receiver: Receiver
) -> None:
    account = factories.account(session)
    endpoint, secret = _endpoint(session, admin, account, receiver.url)
    assert secret.startswith("whsec_") and endpoint.secret == secret
    found = _emit(
        session, account, "payment.reversed", payment_id=7, amount=500, reversed_amount=500, reason="refund"
    )

    report = hooks.run(session, utcnow())

    assert (report.sequenced, report.queued, report.delivered) == (1, 1, 1)
    [request] = receiver.requests
    assert request.path == "/hooks"
    session.refresh(found)
    assert json.loads(request.body) == integration_events.event_json(found)
    assert request.body == json.dumps(integration_events.event_json(found), separators=(",", ":")).encode()
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "Accord-Webhooks/1"
    assert request.headers["Accord-Event-Id"] == f"evt_{found.seq}"
    signature = request.headers["Accord-Signature"]
    assert verify(secret, signature, request.body, now=int(time.time()))
    assert not verify("whsec_another", signature, request.body, now=int(time.time()))
    assert not verify(secret, signature, request.body + b" ", now=int(time.time()))
    [delivery] = _deliveries(session, endpoint)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None
    [attempt] = _attempts(session, delivery)
    assert (attempt.status_code, attempt.error) == (200, None) and attempt.duration_ms >= 0


@pytest.mark.usefixtures("ctx")
def test_running_twice_delivers_once(session: Session, admin: StaffUser, receiver: Receiver) -> None:
    account = factories.account(session)
    endpoint, _secret = _endpoint(session, admin, account, receiver.url)
    _emit(session, account)
    now = utcnow()
    hooks.run(session, now)
    again = hooks.run(session, now + dt.timedelta(hours=1))
    assert (again.sequenced, again.queued, again.delivered) == (0, 0, 0)
    assert hooks.fan_out(session) == 0
    assert len(receiver.requests) == 1
    assert len(_deliveries(session, endpoint)) == 1


@pytest.mark.usefixtures("ctx")
def test_only_the_endpoints_lender_and_chosen_event_types_are_sent(
    session: Session, admin: StaffUser, receiver: Receiver
) -> None:
    account = factories.account(session)
    other_lender = factories.account(session)
    _endpoint(session, admin, account, receiver.url, ["payment.succeeded", "plan.broken"])
    _emit(session, account, "dispute.opened")
    paid = _emit(session, account, "payment.succeeded", payment_id=1, amount=100)
    _emit(session, other_lender, "payment.succeeded", payment_id=2, amount=200)
    broken = _emit(session, account, "plan.broken", plan_id=3, reason="consecutive_misses")

    hooks.run(session, utcnow())

    session.refresh(paid)
    session.refresh(broken)
    assert receiver.event_ids() == [f"evt_{paid.seq}", f"evt_{broken.seq}"]


@pytest.mark.usefixtures("ctx")
def test_an_endpoint_added_later_gets_only_what_happens_after(
    session: Session, admin: StaffUser, receiver: Receiver
) -> None:
    account = factories.account(session)
    _emit(session, account)
    hooks.run(session, utcnow())  # numbered before the endpoint exists
    _emit(session, account)  # committed, not yet numbered: it happens after
    endpoint, _secret = _endpoint(session, admin, account, receiver.url)
    later = _emit(session, account)
    hooks.run(session, utcnow())
    assert len(receiver.requests) == 2
    session.refresh(later)
    assert receiver.event_ids()[-1] == f"evt_{later.seq}"
    assert len(_deliveries(session, endpoint)) == 2


@pytest.mark.usefixtures("ctx")
def test_a_turned_off_endpoint_is_sent_nothing_and_catches_up_when_turned_on(
    session: Session, admin: StaffUser, receiver: Receiver
) -> None:
    account = factories.account(session)
    endpoint, _secret = _endpoint(session, admin, account, receiver.url)
    _emit(session, account)
    integration_events.sequence(session)
    assert hooks.fan_out(session) == 1  # queued before it was turned off
    hooks.set_active(session, Actor.staff(admin), endpoint.id, False)
    _emit(session, account)
    report = hooks.run(session, utcnow())
    assert (report.queued, report.delivered) == (0, 0)
    assert receiver.requests == []

    hooks.set_active(session, Actor.staff(admin), endpoint.id, True)
    assert hooks.run(session, utcnow()).delivered == 2
    assert len(receiver.requests) == 2
    actions = session.scalars(
        select(AuditEvent.action).where(AuditEvent.object_type == "webhook_endpoint").order_by(AuditEvent.id)
    ).all()
    assert list(actions) == [
        "webhook_endpoint.created",
        "webhook_endpoint.disabled",
        "webhook_endpoint.enabled",
    ]


# --- Failures, backoff, giving up ------------------------------------------------------------------


@pytest.mark.usefixtures("ctx")
def test_a_server_error_is_tried_again_after_the_backoff_then_delivered(
    session: Session, admin: StaffUser, receiver: Receiver
) -> None:
    account = factories.account(session)
    endpoint, secret = _endpoint(session, admin, account, receiver.url)
    _emit(session, account)
    receiver.answers = [500]
    now = utcnow()

    first = hooks.run(session, now)
    assert (first.delivered, first.retrying) == (0, 1)
    [delivery] = _deliveries(session, endpoint)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert delivery.next_attempt_at is not None
    wait = delivery.next_attempt_at - delivery.last_attempt_at  # type: ignore[operator]
    assert dt.timedelta(minutes=1) <= wait <= dt.timedelta(minutes=1, seconds=6)

    assert hooks.run(session, now + dt.timedelta(seconds=30)).delivered == 0  # not due yet
    assert len(receiver.requests) == 1
    assert hooks.run(session, now + dt.timedelta(minutes=2)).delivered == 1

    assert len(receiver.requests) == 2
    assert receiver.requests[0].body == receiver.requests[1].body
    assert all(
        verify(secret, r.headers["Accord-Signature"], r.body, now=int(time.time())) for r in receiver.requests
    )
    [delivery] = _deliveries(session, endpoint)
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert [a.status_code for a in _attempts(session, delivery)] == [500, 200]


@pytest.mark.usefixtures("ctx")
def test_eight_failures_give_up_with_the_backoff_between_and_a_retry_sends_it_again(
    session: Session, admin: StaffUser, receiver: Receiver
) -> None:
    account = factories.account(session)
    endpoint, _secret = _endpoint(session, admin, account, receiver.url)
    _emit(session, account)
    receiver.answers = [503] * webhook_delivery.MAX_ATTEMPTS
    at = utcnow()
    waits = []
    for attempt in range(1, webhook_delivery.MAX_ATTEMPTS + 1):
        report = hooks.run(session, at)
        [delivery] = _deliveries(session, endpoint)
        assert delivery.attempts == attempt
        if attempt < webhook_delivery.MAX_ATTEMPTS:
            assert (report.retrying, delivery.status) == (1, "pending")
            waits.append(delivery.next_attempt_at - delivery.last_attempt_at)  # type: ignore[operator]
            at = delivery.next_attempt_at  # type: ignore[assignment]
            assert hooks.run(session, at - dt.timedelta(seconds=1)).retrying == 0  # not a second early
    assert (report.failed, delivery.status, delivery.next_attempt_at) == (1, "failed", None)
    for wait, planned in zip(waits, webhook_delivery.BACKOFF, strict=True):
        assert planned <= wait <= planned + planned / 10 + dt.timedelta(seconds=1)
    assert len(receiver.requests) == webhook_delivery.MAX_ATTEMPTS
    assert hooks.run(session, at + dt.timedelta(days=7)).delivered == 0  # failed stays failed
    assert session.scalar(
        select(func.count()).where(
            AuditEvent.action == "webhook_delivery.failed", AuditEvent.object_id == str(delivery.id)
        )
    )

    hooks.retry(session, Actor.staff(admin), delivery.id)
    [delivery] = _deliveries(session, endpoint)
    assert (delivery.status, delivery.attempts) == ("pending", 0)
    assert hooks.run(session, utcnow()).delivered == 1
    assert len(_attempts(session, delivery)) == webhook_delivery.MAX_ATTEMPTS + 1
    with pytest.raises(DomainError) as refused:
        hooks.retry(session, Actor.staff(admin), delivery.id)
    assert refused.value.code == "webhook_delivery_not_failed"


@pytest.mark.usefixtures("ctx")
def test_a_timeout_a_refused_connection_and_a_redirect_are_failures(
    session: Session, admin: StaffUser, receiver: Receiver
) -> None:
    account = factories.account(session)
    hanging, _secret = _endpoint(session, admin, account, receiver.url)
    closed, _secret = _endpoint(session, admin, account, f"http://127.0.0.1:{free_port()}/hooks")
    moved, _secret = _endpoint(session, admin, account, receiver.url + "?moved")
    _emit(session, account)
    integration_events.sequence(session)
    hooks.fan_out(session)
    # Requests are sent oldest delivery first: the hanging endpoint's, then the redirected one's.
    receiver.answers = ["hang", (302, receiver.url + "/elsewhere")]

    report = hooks.deliver_due(session, now=utcnow(), send=functools.partial(hooks.post, timeout=0.5))

    assert (report.delivered, report.retrying) == (0, 3)
    [timed_out] = _deliveries(session, hanging)
    [refused] = _deliveries(session, closed)
    [redirected] = _deliveries(session, moved)
    assert (timed_out.last_status_code, timed_out.last_error) == (None, "timeout")
    assert refused.last_status_code is None and (refused.last_error or "").startswith("connection failed")
    assert (redirected.last_status_code, redirected.last_error) == (302, None)
    assert [r.path for r in receiver.requests] == ["/hooks", "/hooks?moved"]  # the redirect not followed
    assert {d.status for d in (timed_out, refused, redirected)} == {"pending"}


@pytest.mark.usefixtures("ctx")
@pytest.mark.parametrize("takeover_answer", [200, 500])
def test_a_run_whose_lease_ran_out_leaves_the_delivery_to_the_run_that_took_over(
    session: Session, admin: StaffUser, takeover_answer: int
) -> None:
    account = factories.account(session)
    endpoint, _secret = _endpoint(session, admin, account, "https://lender.example/hooks")
    _emit(session, account)
    integration_events.sequence(session)
    hooks.fan_out(session)
    now = utcnow()
    later = now + dt.timedelta(hours=1)  # past the first run's lease

    def slow_failure(*_args: Any) -> hooks.Answer:
        # While this server keeps the first run waiting, another run takes the delivery over.
        taken = hooks.deliver_due(session, now=later, send=lambda *_a: hooks.Answer(takeover_answer))
        assert taken.delivery_ids
        return hooks.Answer(None, "timeout")

    hooks.deliver_due(session, now=now, send=slow_failure)

    [delivery] = _deliveries(session, endpoint)
    assert [a.status_code for a in _attempts(session, delivery)] == [takeover_answer, None]
    if takeover_answer == 200:
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    else:
        # Both failures count; the next attempt is the one the run that took over set.
        assert (delivery.status, delivery.attempts) == ("pending", 2)
        assert delivery.next_attempt_at is not None and delivery.next_attempt_at > later


@pytest.mark.usefixtures("ctx")
def test_a_new_secret_signs_the_next_request(session: Session, admin: StaffUser, receiver: Receiver) -> None:
    account = factories.account(session)
    endpoint, old = _endpoint(session, admin, account, receiver.url)
    _endpoint_again, new = hooks.roll_secret(session, Actor.staff(admin), endpoint.id)
    assert new != old and new.startswith("whsec_")
    _emit(session, account)
    hooks.run(session, utcnow())
    [request] = receiver.requests
    assert verify(new, request.headers["Accord-Signature"], request.body, now=int(time.time()))
    assert not verify(old, request.headers["Accord-Signature"], request.body, now=int(time.time()))
    rolled = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "webhook_endpoint.secret_rolled")
    ).one()
    assert new not in json.dumps([rolled.before, rolled.after])


@pytest.mark.usefixtures("ctx")
@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://lender.example/hooks", "webhook_url_not_https"),
        ("ftp://lender.example/hooks", "webhook_url_invalid"),
        ("https://", "webhook_url_invalid"),
        ("https://user:pass@lender.example/hooks", "webhook_url_invalid"),
        ("https://lender.example:99999/hooks", "webhook_url_invalid"),
        ("https://lender.example/a b", "webhook_url_invalid"),
        ("https://lender.example/" + "x" * 500, "webhook_url_invalid"),
    ],
)
def test_a_bad_address_is_refused_and_nothing_is_created(
    session: Session, admin: StaffUser, url: str, code: str
) -> None:
    account = factories.account(session)
    with pytest.raises(DomainError) as refused:
        _endpoint(session, admin, account, url)
    assert refused.value.code == code
    assert session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0


def test_plain_http_to_this_machine_is_for_development_only(
    session: Session, admin: StaffUser, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = factories.account(session)
    with app.app_context():
        monkeypatch.setitem(app.config, "ACCORD_ENV", "production")
        with pytest.raises(DomainError) as refused:
            _endpoint(session, admin, account, "http://127.0.0.1:8000/hooks")
    assert refused.value.code == "webhook_url_not_https"
    with pytest.raises(DomainError):  # no app to ask: production's rule
        _endpoint(session, admin, account, "http://localhost:8000/hooks")


@pytest.mark.usefixtures("ctx")
def test_unknown_event_types_or_lender_are_refused(session: Session, admin: StaffUser) -> None:
    account = factories.account(session)
    with pytest.raises(DomainError) as bad_type:
        _endpoint(
            session, admin, account, "https://lender.example/hooks", ["payment.succeeded", "payment.made"]
        )
    assert bad_type.value.code == "webhook_event_types_invalid"
    with pytest.raises(DomainError) as bad_lender:
        hooks.create_endpoint(
            session, Actor.staff(admin), creditor_id=0, url="https://lender.example/hooks", event_types=None
        )
    assert bad_lender.value.code == "webhook_creditor_unknown"


# --- The job and the command -------------------------------------------------------------------------


def test_the_minute_job_and_the_command_deliver(
    app: Flask, session: Session, admin: StaffUser, receiver: Receiver
) -> None:
    from portal import tasks

    account = factories.account(session)
    with app.app_context():
        _endpoint(session, admin, account, receiver.url)
    _emit(session, account)
    assert tasks.outgoing_webhooks_every_minute.call_local() == 1
    _emit(session, account)
    result = app.test_cli_runner().invoke(args=["webhooks", "deliver"])
    assert result.exit_code == 0, result.output
    assert "1 event(s) numbered, 1 delivery(ies) queued; 1 delivered" in result.output
    assert len(receiver.requests) == 2


# --- Side by side, on PostgreSQL ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_engine(database_url: str) -> Iterator[Engine]:
    """A database of its own on PostgreSQL, where runs commit for real on their own connections."""
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("runs side by side need PostgreSQL; SQLite runs writers one at a time")
    with own_postgres_engine(database_url, "webhooks") as engine:
        yield engine


def _queued(factory: sessionmaker[Session], url: str, events: int) -> int:
    """An endpoint with ``events`` deliveries queued; returns the endpoint's id."""
    with factory() as setup:
        staff = factories.staff(setup, role=Role.ADMIN)
        account = factories.account(setup)
        endpoint, _secret = _endpoint(setup, staff, account, url)
        for n in range(events):
            integration_events.emit(setup, account, "dispute.opened", {"dispute_id": n, "reason": "other"})
        setup.commit()
        integration_events.sequence(setup)
        hooks.fan_out(setup)
        return endpoint.id


def test_two_runs_side_by_side_never_send_the_same_delivery_twice(
    own_engine: Engine, app: Flask, receiver: Receiver
) -> None:
    factory = sessionmaker(bind=own_engine, expire_on_commit=False)
    with app.app_context():
        endpoint_id = _queued(factory, receiver.url, 30)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    sent_by: list[Counter[int]] = [Counter(), Counter()]

    def work(n: int) -> None:
        try:
            with factory() as own:
                barrier.wait()
                while sent := hooks.deliver_due(own, now=utcnow(), limit=4).delivery_ids:
                    sent_by[n].update(sent)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(receiver.requests) == 30
    assert len(set(receiver.event_ids())) == 30
    both = sent_by[0] + sent_by[1]
    assert len(both) == 30 and set(both.values()) == {1}
    with factory() as check:
        statuses = check.scalars(
            select(WebhookDelivery.status).where(WebhookDelivery.endpoint_id == endpoint_id)
        ).all()
    assert statuses == ["delivered"] * 30


def test_no_lock_or_transaction_is_held_while_the_lenders_server_answers(
    own_engine: Engine, app: Flask, receiver: Receiver
) -> None:
    factory = sessionmaker(bind=own_engine, expire_on_commit=False)
    with app.app_context():
        endpoint_id = _queued(factory, receiver.url, 1)
    seen: list[tuple[str, dt.datetime | None]] = []

    def send(url: str, body: bytes, headers: Any) -> hooks.Answer:
        # Another connection may lock the row at once (NOWAIT: it would fail if it were held)
        # and already sees the lease: the claim was committed before this request.
        with factory() as other:
            delivery = other.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.endpoint_id == endpoint_id)
                .with_for_update(nowait=True)
            ).one()
            seen.append((delivery.status, delivery.next_attempt_at))
        return hooks.post(url, body, headers)

    with factory() as own:
        now = utcnow()
        report = hooks.deliver_due(own, now=now, send=send)
        assert own.in_transaction() is False
    assert report.delivered == 1
    [(status, leased_until)] = seen
    assert status == "pending" and leased_until is not None and leased_until > now


# --- The admin pages ---------------------------------------------------------------------------------


def test_an_admin_adds_an_endpoint_and_sees_its_secret_once(signed_in: Any, session: Session) -> None:
    account = factories.account(session)
    admin_client = signed_in(Role.ADMIN)
    page = admin_client.get("/admin/webhooks")
    assert page.status_code == 200 and "Add an endpoint" in page.get_data(as_text=True)

    created = admin_client.post(
        "/admin/webhooks",
        data={
            "creditor_id": account.creditor_id,
            "url": " https://lender.example/accord-hooks ",
            "event_types": ["payment.succeeded", "plan.broken"],
        },
    )
    assert created.status_code == 200
    assert created.headers["Cache-Control"] == "no-store"
    shown = re.search(r"whsec_[A-Za-z0-9_-]+", created.get_data(as_text=True))
    assert shown is not None
    endpoint = session.scalars(select(WebhookEndpoint)).one()
    assert endpoint.secret == shown.group(0)
    assert (endpoint.url, endpoint.event_types) == (
        "https://lender.example/accord-hooks",
        ["payment.succeeded", "plan.broken"],
    )
    for later in (admin_client.get("/admin/webhooks"), admin_client.get(f"/admin/webhooks/{endpoint.id}")):
        assert later.status_code == 200
        assert "https://lender.example/accord-hooks" in later.get_data(as_text=True)
        assert endpoint.secret not in later.get_data(as_text=True)
    audited = session.scalars(select(AuditEvent).where(AuditEvent.action == "webhook_endpoint.created")).one()
    assert audited.actor_type == "staff" and endpoint.secret not in json.dumps(audited.after)


def test_a_bad_address_gets_a_message_on_the_page_and_creates_nothing(
    signed_in: Any, session: Session
) -> None:
    account = factories.account(session)
    admin_client = signed_in(Role.ADMIN)
    for url, message in (
        ("http://lender.example/hooks", "must start with https://"),
        ("", "This field is required"),
    ):
        response = admin_client.post("/admin/webhooks", data={"creditor_id": account.creditor_id, "url": url})
        assert response.status_code == 200
        assert message in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0


@pytest.mark.parametrize("role", [Role.AGENT, Role.FINANCE, Role.SUPERVISOR, Role.COLLECTOR])
def test_only_admins_may_manage_webhooks(signed_in: Any, session: Session, role: Role) -> None:
    account = factories.account(session)
    other = signed_in(role)
    assert other.get("/admin/webhooks").status_code == 403
    refused = other.post(
        "/admin/webhooks", data={"creditor_id": account.creditor_id, "url": "https://lender.example/hooks"}
    )
    assert refused.status_code == 403
    assert session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0
    assert "/admin/webhooks" not in other.get("/staff/").get_data(as_text=True)


def test_an_admin_turns_an_endpoint_off_rolls_its_secret_and_resends_a_failed_delivery(
    signed_in: Any, session: Session, admin: StaffUser
) -> None:
    account = factories.account(session)
    endpoint, old_secret = _endpoint(session, admin, account, "https://lender.example/hooks")
    _emit(session, account, "plan.broken", plan_id=4, reason="consecutive_misses")
    integration_events.sequence(session)
    hooks.fan_out(session)
    at = utcnow()
    for _attempt in range(webhook_delivery.MAX_ATTEMPTS):
        hooks.deliver_due(
            session, now=at, send=lambda *_args: hooks.Answer(None, "connection failed: refused")
        )
        at += dt.timedelta(days=2)
    [delivery] = _deliveries(session, endpoint)
    assert delivery.status == "failed"

    admin_client = signed_in(Role.ADMIN)
    assert "/admin/webhooks" in admin_client.get("/staff/").get_data(as_text=True)
    log = admin_client.get(f"/admin/webhooks/{endpoint.id}?status=failed").get_data(as_text=True)
    assert "plan.broken" in log and "Failed" in log and "connection failed: refused" in log
    detail = admin_client.get(f"/admin/webhooks/deliveries/{delivery.id}").get_data(as_text=True)
    assert (
        detail.count("connection failed: refused") == webhook_delivery.MAX_ATTEMPTS
        and "Send it again" in detail
    )

    assert admin_client.post(f"/admin/webhooks/deliveries/{delivery.id}/retry").status_code == 302
    [delivery] = _deliveries(session, endpoint)
    assert (delivery.status, delivery.attempts) == ("pending", 0)
    again = admin_client.post(f"/admin/webhooks/deliveries/{delivery.id}/retry", follow_redirects=True)
    assert "Only a failed delivery can be sent again." in again.get_data(as_text=True)
    retried = session.scalars(select(AuditEvent).where(AuditEvent.action == "webhook_delivery.retried")).one()
    assert retried.before["status"] == "failed" and retried.after["status"] == "pending"

    assert admin_client.post(f"/admin/webhooks/{endpoint.id}/disable").status_code == 302
    session.refresh(endpoint)
    assert not endpoint.is_active and endpoint.disabled_at is not None
    assert admin_client.post(f"/admin/webhooks/{endpoint.id}/enable").status_code == 302
    session.refresh(endpoint)
    assert endpoint.is_active and endpoint.disabled_at is None

    rolled = admin_client.post(f"/admin/webhooks/{endpoint.id}/roll-secret")
    assert rolled.status_code == 200 and rolled.headers["Cache-Control"] == "no-store"
    session.refresh(endpoint)
    assert endpoint.secret != old_secret and endpoint.secret in rolled.get_data(as_text=True)

    assert admin_client.get("/admin/webhooks/999999").status_code == 404
    assert admin_client.get("/admin/webhooks/deliveries/999999").status_code == 404
    assert admin_client.post("/admin/webhooks/999999/disable").status_code == 404
