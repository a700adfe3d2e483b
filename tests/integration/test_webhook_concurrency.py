"""Stripe webhooks against real gunicorn workers on PostgreSQL: concurrent duplicates, interleaved
events, and a worker killed in the middle of an event. Each payment is posted exactly once.

PostgreSQL only: it is where concurrent transactions really run side by side (SQLite runs them
one at a time, see portal/db.py). The server gets a database of its own, migrated to head and
seeded with committed rows, dropped at the end; gunicorn runs 4 sync workers with the pause
point of tests/gunicorn_faults.py and is stopped by its PID."""

from __future__ import annotations

import concurrent.futures
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from alembic import command
from sqlalchemy import Engine, create_engine, func, make_url, select, text
from sqlalchemy.orm import Session, sessionmaker

from portal.db import make_engine
from portal.migrations import alembic_config
from portal.models import Account, AuditEvent, LedgerEntry, Payment, StripeEvent
from portal.services import ledger
from tests import factories
from tests.conftest import _prepare_postgres
from tests.gunicorn_faults import PAUSE_FILE
from tests.stripe_support import WEBHOOK_SECRET, event, free_port, signed
from tests.webhook_support import new_ids, new_payment, payment_intent

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 4
CLIENTS = 50


@dataclass
class Server:
    url: str
    database_url: str
    engine: Engine
    process: subprocess.Popen[bytes]
    pause_file: Path
    log: Path

    def workers(self) -> set[int]:
        done = subprocess.run(  # noqa: S603
            ["ps", "-o", "pid=", "--ppid", str(self.process.pid)],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        )
        return {int(pid) for pid in done.stdout.split()}

    def session(self) -> Session:
        return sessionmaker(bind=self.engine, expire_on_commit=False)()


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[Server]:
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip(
            "real concurrency needs PostgreSQL (set ACCORD_TEST_DATABASE_URL); SQLite serialises writers"
        )
    worker_id = os.environ.get("PYTEST_XDIST_WORKER", "")
    own = url.set(database=f"{url.database}_gunicorn{worker_id}").render_as_string(hide_password=False)
    _prepare_postgres(own)
    command.upgrade(alembic_config(own), "head")
    engine = make_engine(own)
    tmp = Path(tempfile.mkdtemp(prefix="accord-gunicorn-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCORD_")}
    env.update(
        {
            "ACCORD_ENV": "development",
            "ACCORD_SECRET_KEY": "gunicorn-webhook-test",
            "ACCORD_DATABASE_URL": own,
            "ACCORD_INSTANCE_PATH": str(tmp / "instance"),
            "ACCORD_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "ACCORD_RATELIMIT_STORAGE_URI": "memory://",
            PAUSE_FILE: str(tmp / "pause"),
        }
    )
    log = tmp / "gunicorn.log"
    gunicorn = Path(sys.executable).parent / "gunicorn"
    cmd = [
        str(gunicorn),
        "--workers", str(WORKERS),
        "--worker-class", "sync",
        "--bind", f"127.0.0.1:{port}",
        "--config", str(ROOT / "tests" / "gunicorn_faults.py"),
        "--graceful-timeout", "5",
        "--chdir", str(ROOT),
        "wsgi:app",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    srv = Server(f"http://127.0.0.1:{port}", own, engine, process, tmp / "pause", log)
    try:
        _wait_ready(srv)
        yield srv
    finally:
        process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        engine.dispose()
        admin = create_engine(make_url(own).set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(own).database}" WITH (FORCE)'))
        admin.dispose()


def _wait_ready(srv: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{srv.log.read_text(errors='replace')[-3000:]}")
        try:
            if (
                requests.get(f"{srv.url}/healthz", timeout=2).status_code == 200
                and len(srv.workers()) == WORKERS
            ):
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"gunicorn not ready in {timeout:.0f} s:\n{srv.log.read_text(errors='replace')[-3000:]}"
    )


def _seed(srv: Server, accounts: int, payments_each: int) -> list[tuple[int, str]]:
    """Committed accounts (each 2,000 fees, 5,000 interest, 100,000 principal) with payments of
    1,000 awaiting their PaymentIntent: [(payment id, PaymentIntent id)]."""
    made = []
    with srv.session() as session:
        for _ in range(accounts):
            account = factories.account(session, principal=100_000, interest=5_000, fees=2_000)
            for _ in range(payments_each):
                pi = new_ids()["pi"]
                made.append((new_payment(session, account, 1_000, pi_id=pi).id, pi))
    return made


def _post(srv: Server, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    resp = requests.post(f"{srv.url}/webhooks/stripe", data=body, headers=headers, timeout=60)
    outcome = (
        resp.json().get("outcome", "")
        if resp.headers.get("Content-Type", "").startswith("application/json")
        else ""
    )
    return resp.status_code, outcome


def _deliver_all(srv: Server, deliveries: list[tuple[bytes, dict[str, str]]]) -> Counter[tuple[int, str]]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        return Counter(pool.map(lambda d: _post(srv, *d), deliveries))


def _succeeded_event(session: Session, payment_id: int, pi: str) -> dict[str, Any]:
    payment = session.get(Payment, payment_id)
    assert payment is not None
    return event("payment_intent.succeeded", payment_intent(payment, pi, charge_id=f"ch_{pi[3:]}"))


def _postings(session: Session, pi: str) -> list[tuple[str, str, int]]:
    rows = session.execute(
        select(LedgerEntry.kind, LedgerEntry.component, LedgerEntry.amount).where(
            LedgerEntry.cause == f"payment:{pi}"
        )
    ).all()
    return sorted((k, c, int(a)) for k, c, a in rows)


def _audits(session: Session, payment_id: int) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                AuditEvent.action == "payment.succeeded", AuditEvent.object_id == str(payment_id)
            )
        )
        or 0
    )


ONE_PAYMENT = [("payment", "fees", -1_000)]  # 1,000 against 2,000 of fees: the waterfall's first line


def test_200_concurrent_deliveries_of_one_event_record_one_payment(server: Server) -> None:
    [(payment_id, pi)] = _seed(server, 1, 1)
    with server.session() as session:
        evt = _succeeded_event(session, payment_id, pi)
    body, headers = signed(evt)
    results = _deliver_all(server, [(body, headers)] * 200)
    assert results == {(200, "applied"): 1, (200, "duplicate"): 199}, results
    with server.session() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        assert (payment.status, payment.amount_received) == ("succeeded", 1_000)
        assert payment.receipt_number
        assert _postings(session, pi) == ONE_PAYMENT
        assert _audits(session, payment_id) == 1
        assert session.scalar(select(func.count()).where(StripeEvent.id == evt["id"])) == 1
        assert session.scalar(select(func.count()).where(StripeEvent.object_id == pi)) == 1
        account = session.get(Account, payment.account_id)
        assert account is not None
        assert account.balances() == {"principal": 100_000, "interest": 5_000, "fees": 1_000}
        assert ledger.discrepancies(session) == []


def test_50_events_delivered_4_times_each_interleaved_record_50_payments(server: Server) -> None:
    # 10 accounts with 5 payments each: payments on one account contend for its row.
    seeded = _seed(server, 10, 5)
    with server.session() as session:
        events = {payment_id: _succeeded_event(session, payment_id, pi) for payment_id, pi in seeded}
    deliveries = [signed(evt) for evt in events.values() for _ in range(4)]
    random.Random(7).shuffle(deliveries)  # noqa: S311  (an order, not a secret)
    results = _deliver_all(server, deliveries)
    assert results == {(200, "applied"): 50, (200, "duplicate"): 150}, results
    with server.session() as session:
        ids = [payment_id for payment_id, _ in seeded]
        statuses = Counter(session.scalars(select(Payment.status).where(Payment.id.in_(ids))))
        assert statuses == {"succeeded": 50}
        stored = session.scalar(
            select(func.count()).where(StripeEvent.id.in_([e["id"] for e in events.values()]))
        )
        assert stored == 50
        for payment_id, pi in seeded:
            [(kind, _component, amount)] = _postings(session, pi)
            assert (kind, amount) == ("payment", -1_000), pi
            assert _audits(session, payment_id) == 1
        account_ids = set(session.scalars(select(Payment.account_id).where(Payment.id.in_(ids))))
        fees = session.scalars(select(Account.fees_balance).where(Account.id.in_(account_ids))).all()
        # 5 payments of 1,000 against 2,000 fees and 5,000 interest: fees 0, interest 2,000.
        assert fees == [0] * 10
        assert set(session.scalars(select(Account.interest_balance).where(Account.id.in_(account_ids)))) == {
            2_000
        }
        assert ledger.discrepancies(session) == []


def _wait_for(condition: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _held_by(server: Server) -> int | None:
    try:
        pid = (server.pause_file.parent / f"{server.pause_file.name}.held").read_text().strip()
    except FileNotFoundError:
        return None
    return int(pid) if pid.isdigit() else None


def _waiting_on_a_lock(server: Server) -> int:
    with server.engine.connect() as conn:
        return int(
            conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            )
            or 0
        )


def test_deliveries_racing_an_uncommitted_first_one_all_end_as_duplicates(server: Server) -> None:
    """The unlucky interleaving on purpose: the first delivery is held inside its transaction
    while 40 more arrive; the other three workers each take one, insert the same event id and
    wait on the first's uncommitted row. Released, the first commits and every other delivery
    (the three that waited included) is a duplicate."""
    [(payment_id, pi)] = _seed(server, 1, 1)
    with server.session() as session:
        evt = _succeeded_event(session, payment_id, pi)
    body, headers = signed(evt)
    held = server.pause_file.parent / f"{server.pause_file.name}.held"
    server.pause_file.write_text("armed")
    with concurrent.futures.ThreadPoolExecutor(max_workers=41) as pool:
        first = pool.submit(_post, server, body, headers)
        _wait_for(lambda: _held_by(server), "a worker to pause inside the event")
        others = [pool.submit(_post, server, body, headers) for _ in range(40)]
        _wait_for(lambda: _waiting_on_a_lock(server) == WORKERS - 1, "three workers to wait on the event row")
        held.unlink()
        assert first.result(timeout=30) == (200, "applied")
        assert Counter(f.result(timeout=60) for f in others) == {(200, "duplicate"): 40}
    with server.session() as session:
        assert _postings(session, pi) == ONE_PAYMENT
        assert _audits(session, payment_id) == 1
        assert session.scalar(select(func.count()).where(StripeEvent.id == evt["id"])) == 1


def test_a_worker_killed_mid_event_loses_nothing_and_posts_once(server: Server) -> None:
    """The first delivery stops inside its transaction (event row, payment and account locked,
    nothing posted); Stripe, timing out, redelivers, and that delivery waits on the first's
    uncommitted event row; the first worker is killed with SIGKILL; the redelivery then
    records the payment, gunicorn replaces the worker, and a third delivery is a duplicate."""
    [(payment_id, pi)] = _seed(server, 1, 1)
    with server.session() as session:
        evt = _succeeded_event(session, payment_id, pi)
    body, headers = signed(evt)
    workers_before = server.workers()
    server.pause_file.write_text("armed")
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(_post, server, body, headers)
        victim = _wait_for(lambda: _held_by(server), "a worker to pause inside the event")
        assert victim in workers_before
        redelivery = pool.submit(_post, server, body, headers)
        _wait_for(lambda: _waiting_on_a_lock(server) >= 1, "the redelivery to wait on the first's lock")
        with server.session() as session:  # nothing of the first delivery is visible
            assert session.get(StripeEvent, evt["id"]) is None
            assert _postings(session, pi) == []
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(requests.ConnectionError):
            first.result(timeout=30)
        assert redelivery.result(timeout=30) == (200, "applied")
    (server.pause_file.parent / f"{server.pause_file.name}.held").unlink(missing_ok=True)

    replaced = _wait_for(
        lambda: (w := server.workers()) and len(w) == WORKERS and victim not in w and w,
        "gunicorn to replace the killed worker",
    )
    assert len(replaced - workers_before) == 1
    assert _post(server, body, headers) == (200, "duplicate")
    with server.session() as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        assert payment.status == "succeeded"
        assert _postings(session, pi) == ONE_PAYMENT
        assert _audits(session, payment_id) == 1
        stored = session.get(StripeEvent, evt["id"])
        assert stored is not None
        assert stored.outcome == "applied"
        assert ledger.discrepancies(session) == []
