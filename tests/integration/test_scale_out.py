"""Accord on two hosts, as the README's "Running in production" sets it up: two gunicorn
instances (separate processes and ports, each with an instance directory of its own) and a Huey
consumer beside each, on the production settings, sharing one PostgreSQL database (reached as
the application's role), one Redis (Huey's queue and the rate limits), one S3 bucket (moto's
server) and one Stripe (localstripe). The webhook storm, a borrower's visit, the rate limits and
the lenders' webhooks are each split between the two hosts, and nothing is lost or doubled.

PostgreSQL only (the hosts share a database server, and concurrent transactions run side by side
only there), with Redis at 127.0.0.1:6379 (``.ci/run`` starts one). The hosts get a database of
their own, dropped at the end, and a Redis database number of their own, emptied at the start
and the end (ACCORD_TEST_SCALEOUT_REDIS_URL moves it)."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import io
import os
import random
import re
import secrets
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
import requests
from alembic import command
from flask import Flask, request
from moto.server import ThreadedMotoServer
from PIL import Image
from sqlalchemy import Engine, create_engine, func, make_url, select, text
from sqlalchemy.orm import Session, sessionmaker

from portal import crypto
from portal.config import db_app_role
from portal.db import make_engine
from portal.migrations import alembic_config
from portal.models import (
    Account,
    AuditEvent,
    EvidenceFile,
    LedgerEntry,
    Payment,
    SigninAttempt,
    StripeEvent,
    WebhookAttempt,
    WebhookDelivery,
)
from portal.services import api_tokens, ledger
from portal.services import outgoing_webhooks as hooks
from portal.services.audit import SYSTEM
from portal.tasks import outgoing_webhooks_every_minute
from tests import factories
from tests.conftest import _prepare_postgres
from tests.scale_out_support import (
    Browser,
    Host,
    Inbox,
    Process,
    enqueue,
    environment,
    start_consumer,
    start_inbox,
    start_web,
    stop_all,
    wait_for,
    wait_ready,
    with_cookie,
)
from tests.stripe_support import LocalStripe, event, free_port, signed, stripe_config
from tests.webhook_support import new_ids, new_payment, payment_intent
from workflows.webhook_signature import verify

REDIS_URL = os.environ.get("ACCORD_TEST_SCALEOUT_REDIS_URL", "redis://127.0.0.1:6379/13")
BUCKET = "accord-scale-out"
REGION = "us-east-1"
API_LIMIT = 8  # requests per token per hour, counted across both hosts
SIGNIN_LIMIT = 5  # sign-in requests per client address per hour, counted across both hosts
DOB = "1985-03-15"
RECEIPT = re.compile(r"R\d{8}-\d{7}")


@dataclass
class Cluster:
    a: Host
    b: Host
    consumers: list[Process]
    engine: Engine
    inbox: Inbox
    s3: Any
    prefix: str
    encryption_keys: str
    workdir: Path

    @property
    def hosts(self) -> tuple[Host, Host]:
        return self.a, self.b

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session on the hosts' database as its owner, the hosts' encryption keys in force
        (rows written here are sealed, and read, as the hosts seal and read them)."""
        before = crypto.keyring() if crypto.installed() else None
        crypto.install(crypto.parse_keys(self.encryption_keys))
        try:
            with sessionmaker(bind=self.engine, expire_on_commit=False)() as session:
                yield session
        finally:
            if before is not None:
                crypto.install(before)

    def bucket(self) -> dict[str, bytes]:
        """The objects the hosts keep under their prefix, by name."""
        listing = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=self.prefix).get("Contents", [])
        return {o["Key"]: self.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listing}


def _redis_or_skip() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        client.close()
        pytest.skip(f"the two-host test needs Redis at {REDIS_URL} (.ci/run starts one)")
    return client


def _drop_database(url: str) -> None:
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def cluster(
    database_url: str, localstripe: LocalStripe, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip(
            "two hosts share one PostgreSQL server (set ACCORD_TEST_DATABASE_URL); SQLite is on one machine"
        )
    queue = _redis_or_skip()
    workdir = tmp_path_factory.mktemp("scale-out")
    with ExitStack() as stack:
        stack.callback(queue.close)
        # The database: migrated by its owner, which grants the application's role (set by
        # tests/conftest.py) what it may do; the hosts connect as that role.
        own = url.set(database=f"{url.database}_scaleout").render_as_string(hide_password=False)
        _prepare_postgres(own)
        stack.callback(_drop_database, own)
        command.upgrade(alembic_config(own), "head")
        role = db_app_role()
        assert role, "tests/conftest.py sets ACCORD_DB_APP_ROLE for the migrations"
        as_app = make_url(own).set(username=role, password=None).render_as_string(hide_password=False)
        engine = make_engine(own)
        stack.callback(engine.dispose)

        queue.flushdb()
        stack.callback(queue.flushdb)

        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        stack.callback(moto.stop)
        endpoint = "http://{}:{}".format(*moto.get_host_and_port())
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # moto's dummy credentials
        )
        stack.callback(s3.close)
        s3.create_bucket(Bucket=BUCKET)

        inbox = start_inbox()
        stack.callback(inbox.close)

        prefix = f"scale-out-{uuid.uuid4().hex}"
        keys = f"k1:{base64.urlsafe_b64encode(os.urandom(32)).decode()}"
        shared = {
            "ACCORD_ENV": "production",
            "ACCORD_SECRET_KEY": secrets.token_urlsafe(48),
            "ACCORD_ENCRYPTION_KEYS": keys,
            "ACCORD_DATABASE_URL": as_app,
            "ACCORD_REDIS_URL": REDIS_URL,  # Huey's queue, and the rate limits
            "ACCORD_STORAGE_BACKEND": "s3",
            "ACCORD_S3_BUCKET": BUCKET,
            "ACCORD_S3_PREFIX": prefix,
            "ACCORD_S3_ENDPOINT_URL": endpoint,
            "ACCORD_S3_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            **{f"ACCORD_{name}": str(value) for name, value in stripe_config(localstripe).items()},
            "ACCORD_SMS_GATEWAY_URL": inbox.url("/sms"),
            "ACCORD_PUBLIC_URL": "https://accord.test",
            "ACCORD_PROXY_HOPS": "1",  # the load balancer
            "ACCORD_API_RATE_LIMIT": f"{API_LIMIT} per hour",
            "ACCORD_BORROWER_SIGNIN_RATE_LIMIT": f"{SIGNIN_LIMIT} per hour",
        }
        started: dict[str, Host] = {}
        consumers = []
        running: list[tuple[Process, int]] = []
        stack.callback(stop_all, running)
        for name in ("a", "b"):
            env = environment({**shared, "ACCORD_INSTANCE_PATH": str(workdir / f"host-{name}")})
            host = start_web(f"web-{name}", env, free_port(), workdir)
            running.append((host, signal.SIGINT))  # gunicorn's quick shutdown
            started[name] = host
            # Host A's consumer also runs the scheduler of periodic jobs; B's only works the queue.
            consumer = start_consumer(f"consumer-{name}", env, workdir, periodic=name == "a")
            running.append((consumer, signal.SIGTERM))  # Huey's immediate shutdown
            consumers.append(consumer)
        for host in started.values():
            wait_ready(host)
        yield Cluster(started["a"], started["b"], consumers, engine, inbox, s3, prefix, keys, workdir)


def _request_id() -> str:
    return f"lb-{secrets.token_hex(6)}"


def _client_ip() -> str:
    return f"203.0.113.{random.randint(1, 254)}"  # noqa: S311 - an address, not a secret


# --- The load balancer's headers ----------------------------------------------------------------


@pytest.mark.parametrize(("hops", "seen"), [(0, ("127.0.0.1", "http")), (1, ("203.0.113.9", "https"))])
def test_the_forwarded_address_and_scheme_are_believed_only_from_configured_proxies(
    make_app: Callable[..., Flask], hops: int, seen: tuple[str, str]
) -> None:
    made = make_app(PROXY_HOPS=hops)
    made.add_url_rule("/_seen", "seen", lambda: f"{request.remote_addr} {request.scheme}")
    answer = made.test_client().get(
        "/_seen",
        headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    assert tuple(answer.get_data(as_text=True).split()) == seen


# --- Health -----------------------------------------------------------------------------------------


def test_both_hosts_are_live_and_ready_and_log_json_lines_with_the_balancers_request_id(
    cluster: Cluster,
) -> None:
    browser = Browser(_client_ip())
    try:
        for host in cluster.hosts:
            live_id, ready_id = _request_id(), _request_id()
            live = browser.get(host, "/healthz", request_id=live_id)
            ready = browser.get(host, "/readyz", request_id=ready_id)
            assert (live.status_code, live.json()) == (200, {"status": "ok"})
            assert ready.status_code == 200
            assert ready.json() == {"status": "ok", "database": "ok", "migrations": "current"}
            assert ready.headers["X-Request-Id"] == ready_id
            assert ready.headers["Strict-Transport-Security"].startswith("max-age=")  # production
            lines = wait_for(
                lambda h=host, r=ready_id: [e for e in h.json_lines() if e.get("request_id") == r],
                f"{host.name}'s access line for {ready_id}",
            )
            assert [(e["logger"], e["path"], e["status"]) for e in lines] == [
                ("accord.access", "/readyz", 200)
            ]
    finally:
        browser.close()
    for consumer in cluster.consumers:
        assert consumer.process.poll() is None, consumer.output()


# --- The webhook storm --------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    payment_id: int
    pi: str
    account_id: int
    succeeded: dict[str, Any]
    processing: dict[str, Any]


def _seed_payments(
    cluster: Cluster, accounts: int, each: int, creditor_id: int | None = None
) -> list[Seeded]:
    """Committed accounts (fees 2,000, interest 5,000, principal 100,000) of borrowers with a
    mobile number only (receipts go by text, through the SMS gateway), each with ``each``
    payments of 1,000 awaiting their PaymentIntent; and the PaymentIntent's events about each."""
    made = []
    with cluster.session() as session:
        for _ in range(accounts):
            owner = factories.borrower(session, email=None, language="en")
            account = factories.account(session, principal=100_000, interest=5_000, fees=2_000, owner=owner)
            if creditor_id is not None:
                account.creditor_id = creditor_id
                session.commit()
            for _ in range(each):
                pi = new_ids()["pi"]
                payment = new_payment(session, account, 1_000, pi_id=pi)
                succeeded = event(
                    "payment_intent.succeeded", payment_intent(payment, pi, charge_id=f"ch_{pi[3:]}")
                )
                processing = event(
                    "payment_intent.processing", payment_intent(payment, pi, status="processing")
                )
                made.append(Seeded(payment.id, pi, account.id, succeeded, processing))
    return made


def _deliver(host: Host, evt: dict[str, Any], age: int = 0) -> tuple[str, str, int, str]:
    """One delivery of ``evt`` to ``host``, signed ``age`` seconds ago (Stripe signs every retry
    afresh): (event id, host, status, outcome)."""
    body, headers = signed(evt, timestamp=int(time.time()) - age)
    with requests.post(f"{host.url}/webhooks/stripe", data=body, headers=headers, timeout=60) as resp:
        outcome = resp.json().get("outcome", "") if resp.status_code == 200 else resp.text[:200]
        return evt["id"], host.name, resp.status_code, outcome


def _postings(session: Session, pi: str) -> list[tuple[str, int]]:
    rows = session.execute(
        select(LedgerEntry.kind, LedgerEntry.amount).where(LedgerEntry.cause == f"payment:{pi}")
    ).all()
    return sorted((kind, int(amount)) for kind, amount in rows)


def _receipts(cluster: Cluster) -> Counter[str]:
    return Counter(
        number for message in cluster.inbox.at("/sms") for number in RECEIPT.findall(message.json()["body"])
    )


def test_the_webhook_storm_split_between_both_hosts_posts_each_payment_once(cluster: Cluster) -> None:
    """40 payments on 10 accounts: each PaymentIntent's ``succeeded`` event delivered three
    times and its ``processing`` event twice, every delivery signed afresh (as Stripe's retries
    are), shuffled (so ``processing`` often comes after ``succeeded``), 32 at a time, every other
    one to the other host."""
    seeded = _seed_payments(cluster, 10, 4)
    deliveries = [(s.succeeded, copy) for s in seeded for copy in range(3)]
    deliveries += [(s.processing, copy) for s in seeded for copy in range(2)]
    random.Random(11).shuffle(deliveries)  # noqa: S311 - an order, not a secret
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        results = list(
            pool.map(
                lambda item: _deliver(cluster.hosts[item[0] % 2], item[1][0], age=40 * item[1][1]),
                enumerate(deliveries),
            )
        )

    assert {status for _, _, status, _ in results} == {200}, [r for r in results if r[2] != 200][:5]
    assert Counter(host for _, host, _, _ in results) == {"web-a": 100, "web-b": 100}
    outcomes: dict[str, list[str]] = {}
    for event_id, _host, _status, outcome in results:
        outcomes.setdefault(event_id, []).append(outcome)
    for s in seeded:
        assert sorted(outcomes[s.succeeded["id"]]) == ["applied", "duplicate", "duplicate"], s.pi
        # Before the success it moves the payment on; after it, it is too late to change anything.
        late = Counter(outcomes[s.processing["id"]])
        assert late in ({"applied": 1, "duplicate": 1}, {"ignored": 1, "duplicate": 1}), s.pi

    with cluster.session() as session:
        payment_ids = [s.payment_id for s in seeded]
        assert Counter(session.scalars(select(Payment.status).where(Payment.id.in_(payment_ids)))) == {
            "succeeded": 40
        }
        for s in seeded:
            assert _postings(session, s.pi) == [("payment", -1_000)], s.pi
            audits = select(func.count()).where(
                AuditEvent.action == "payment.succeeded", AuditEvent.object_id == str(s.payment_id)
            )
            assert session.scalar(audits) == 1, s.pi
        event_ids = [e["id"] for s in seeded for e in (s.succeeded, s.processing)]
        assert session.scalar(select(func.count()).where(StripeEvent.id.in_(event_ids))) == 80
        account_ids = {s.account_id for s in seeded}
        balances = session.execute(
            select(Account.principal_balance, Account.interest_balance, Account.fees_balance).where(
                Account.id.in_(account_ids)
            )
        ).all()
        # Four payments of 1,000 each: the 2,000 of fees first, then 2,000 of the interest.
        assert Counter(tuple(row) for row in balances) == {(100_000, 3_000, 0): 10}
        assert ledger.discrepancies(session) == []
        numbers = set(session.scalars(select(Payment.receipt_number).where(Payment.id.in_(payment_ids))))
    assert len(numbers) == 40

    # Each receipt goes out once, by whichever host's consumer took the job from the shared queue.
    wait_for(lambda: numbers <= set(_receipts(cluster)), "the 40 receipts at the SMS gateway")
    assert {n: c for n, c in _receipts(cluster).items() if n in numbers} == dict.fromkeys(numbers, 1)


# --- A borrower's visit, host to host ----------------------------------------------------------------


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "teal").save(buffer, "PNG")
    return buffer.getvalue()


def _code_for(cluster: Cluster, phone: str) -> str:
    def sent() -> list[str]:
        bodies = [m.json()["body"] for m in cluster.inbox.at("/sms") if m.json()["to"] == phone]
        return [code for body in bodies for code in re.findall(r"\b(\d{6})\b", body)]

    [code] = wait_for(sent, f"the sign-in code to {phone}")
    return code


def test_a_borrower_signs_in_on_one_host_and_carries_on_on_the_other(cluster: Cluster) -> None:
    """Step 1 of sign-in on A, the code (sent by a consumer through the SMS gateway) typed on B;
    the dashboard on B; a hardship evidence file added on A and downloaded from B (the bucket,
    not a disk, holds it); signed out on B, and the cookie kept from before is refused on A."""
    a, b = cluster.hosts
    reference = f"LN-SCALE-{secrets.token_hex(3).upper()}"
    with cluster.session() as session:
        owner = factories.borrower(session, email=None, language="en")
        phone = str(owner.phone)
        account = factories.account(session, principal=250_000, reference=reference, owner=owner)
        case_id = factories.hardship_case(session, account, state="draft").id
    browser = Browser(_client_ip())
    try:
        token = browser.form(a, "/signin")
        step_one = browser.post(
            a, "/signin", {"csrf_token": token, "identifier": reference, "date_of_birth": DOB}
        )
        assert (step_one.status_code, step_one.headers["Location"]) == (302, "/signin/code")
        assert "; Secure;" in step_one.headers["Set-Cookie"]  # production: https only, past the balancer
        code = _code_for(cluster, phone)

        token = browser.form(b, "/signin/code")
        step_two = browser.post(b, "/signin/code", {"csrf_token": token, "code": code})
        assert (step_two.status_code, step_two.headers["Location"]) == (302, "/home")
        home = browser.get(b, "/home")
        assert home.status_code == 200 and reference in home.text

        token = browser.form(a, f"/help/{case_id}/evidence")
        uploaded = browser.post(
            a,
            f"/help/{case_id}/evidence",
            {"csrf_token": token, "action": "upload"},
            files={"file": ("scan.png", _png(), "image/png")},
        )
        assert uploaded.status_code == 302, uploaded.text[:500]
        with cluster.session() as session:
            [evidence] = session.scalars(select(EvidenceFile).where(EvidenceFile.hardship_case_id == case_id))
            [attempt] = session.scalars(select(SigninAttempt).where(SigninAttempt.borrower_id == owner.id))
        assert attempt.ip == browser.client_ip  # the client's address, as the load balancer passed it on
        listed = browser.get(b, f"/help/{case_id}/evidence")
        assert listed.status_code == 200 and "scan.png" in listed.text
        downloaded = browser.get(b, f"/help/{case_id}/evidence/{evidence.id}")
        assert downloaded.status_code == 200
        assert Image.open(io.BytesIO(downloaded.content)).size == (40, 30)
        assert hashlib.sha256(downloaded.content).hexdigest() == evidence.sha256
        assert f"{cluster.prefix}/evidence/{evidence.storage_key}" in cluster.bucket()
        for host in ("host-a", "host-b"):
            assert not (cluster.workdir / host / "evidence").exists()

        kept = browser.cookie()
        assert with_cookie(a, "/home", kept, browser.client_ip).status_code == 200
        token = browser.form(b, "/home")
        assert browser.post(b, "/signout", {"csrf_token": token}).status_code == 302
        refused = with_cookie(a, "/home", kept, browser.client_ip)
        assert (refused.status_code, refused.headers["Location"]) == (302, "/signin")
    finally:
        browser.close()


# --- Rate limits, counted across the hosts -------------------------------------------------------


def test_an_api_tokens_rate_limit_counts_its_requests_on_both_hosts(cluster: Cluster) -> None:
    with cluster.session() as session:
        creditor = factories.creditor(session)
        session.commit()
        tokens = [
            api_tokens.create(
                session,
                SYSTEM,
                creditor_id=creditor.id,
                name=name,
                scopes=["accounts:read"],
                expires_in_days=1,
            )[1]
            for name in ("busy", "quiet")
        ]
    busy, quiet = tokens

    def call(host: Host, token: str) -> int:
        headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": _client_ip()}
        with requests.get(f"{host.url}/api/v1/accounts", headers=headers, timeout=30) as answer:
            return answer.status_code

    # Half on each host: every one admitted; the limit is reached together, so both refuse the next.
    assert [call(cluster.hosts[n % 2], busy) for n in range(API_LIMIT)] == [200] * API_LIMIT
    assert [call(host, busy) for host in cluster.hosts] == [429, 429]
    assert [call(host, quiet) for host in cluster.hosts] == [200, 200]  # counted per token


def test_the_sign_in_limit_counts_one_clients_requests_on_both_hosts(cluster: Cluster) -> None:
    """Per client address (X-Forwarded-For, as the load balancer sets it): one client reaching
    the limit on the two hosts together is refused on both; another client is not."""
    busy, other = Browser("198.51.100.7"), Browser("198.51.100.8")
    try:

        def identify(browser: Browser, host: Host, identifier: str) -> int:
            # Step 1 starts a new session, so each attempt reads the form (a GET is not counted).
            token = browser.form(host, "/signin")
            data = {"csrf_token": token, "identifier": identifier, "date_of_birth": DOB}
            return browser.post(host, "/signin", data).status_code

        answers = [identify(busy, cluster.hosts[n % 2], f"NOBODY-{n}") for n in range(SIGNIN_LIMIT)]
        assert answers == [302] * SIGNIN_LIMIT
        assert [identify(busy, host, "NOBODY-X") for host in cluster.hosts] == [429, 429]
        assert identify(other, cluster.b, "NOBODY-Y") == 302
    finally:
        busy.close()
        other.close()


# --- Lenders' webhooks, sent by the consumers ------------------------------------------------------


def test_lender_events_made_on_both_hosts_reach_the_lender_once_through_the_consumers(
    cluster: Cluster, app: Flask
) -> None:
    """Six payments recorded, three on each host, make six events for one lender; the delivery
    job is put on the shared queue four times at once (two hosts' schedulers, twice); the
    consumers send each event once, signed with the endpoint's secret."""
    with cluster.session() as session:
        creditor = factories.creditor(session)
        session.commit()
        path = f"/hooks/{creditor.code}"
        # Plain http to 127.0.0.1 is accepted outside production only: saved with the suite's app.
        with app.app_context():
            endpoint, secret = hooks.create_endpoint(
                session, SYSTEM, creditor_id=creditor.id, url=cluster.inbox.url(path), event_types=None
            )
    seeded = _seed_payments(cluster, 3, 2, creditor_id=creditor.id)
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        first = list(pool.map(lambda n: _deliver(cluster.hosts[n % 2], seeded[n].succeeded), range(6)))
        again = list(pool.map(lambda n: _deliver(cluster.hosts[1 - n % 2], seeded[n].succeeded), range(6)))
    assert Counter((host, outcome) for _, host, _, outcome in first) == {
        ("web-a", "applied"): 3,
        ("web-b", "applied"): 3,
    }
    assert {outcome for *_, outcome in again} == {"duplicate"}

    for _ in range(4):
        enqueue(REDIS_URL, outgoing_webhooks_every_minute)

    def delivered() -> bool:
        with cluster.session() as session:
            statuses = session.scalars(
                select(WebhookDelivery.status).where(WebhookDelivery.endpoint_id == endpoint.id)
            ).all()
        return len(statuses) == 6 and set(statuses) == {"delivered"}

    wait_for(delivered, "the six deliveries")
    received = cluster.inbox.at(path)
    assert len(received) == 6
    assert Counter(r.headers["Accord-Event-Id"] for r in received).most_common(1)[0][1] == 1
    for sent in received:
        assert verify(secret, sent.headers["Accord-Signature"], sent.body, now=int(time.time()))
    payloads = [sent.json() for sent in received]
    assert {p["type"] for p in payloads} == {"payment.succeeded"}
    assert sorted(p["data"]["payment_id"] for p in payloads) == sorted(s.payment_id for s in seeded)
    with cluster.session() as session:
        attempts = session.scalar(
            select(func.count())
            .select_from(WebhookAttempt)
            .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
            .where(WebhookDelivery.endpoint_id == endpoint.id)
        )
        assert attempts == 6
