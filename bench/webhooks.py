"""Stripe webhook ingestion: signed events per second, a quarter of them duplicates, on gunicorn.

    .venv/bin/python bench/webhooks.py [--events 3000] [--clients 16] [--workers 2] [--rounds 1]

Creates the PostgreSQL database ``accord_bench_webhooks`` afresh (dropped first if it exists),
migrates it to head and seeds ``--accounts`` accounts through the ledger service and one Payment
row per event (1,000 fen each, status ``submitting``, its PaymentIntent id stored), as the
checkout service leaves them. Starts ``gunicorn -w 2`` (sync workers; bench/run.py's
``start_gunicorn``) with a webhook secret, and builds one ``payment_intent.succeeded`` event per
payment, each signed as Stripe signs it (``t=…,v1=…``, signed just before its round). The
deliveries are every event once plus a third as many again drawn from the same events, so 25 %
of the deliveries are duplicates, shuffled together: a duplicate may arrive before, during or
after its original. ``--clients`` threads post them (stdlib http.client, a connection per
request: gunicorn's sync workers close each one) as fast as the server answers.

Prints deliveries/s and distinct events/s, p50/p90/p99 latency and what the server answered
(applied / duplicate / anything else), then checks in the database that every event was stored
once, every payment recorded once (one set of ledger entries, one audit event, a receipt
number), nothing else was posted and the cached balances equal the ledger. Writes the figures to
bench/results/<timestamp>-webhooks.json. Targets (issue 7): >= 300 deliveries/s and p99
<= 200 ms. The client runs on the same two cores as gunicorn and PostgreSQL.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import http.client
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import seed as bench_seed  # noqa: E402
from run import (  # noqa: E402  (the page benchmark's helpers; bench/ is on sys.path)
    HOST,
    BenchError,
    cpu_busy,
    cpu_share,
    cpu_times,
    free_port,
    git_revision,
    machine,
    postgres_version,
    server_config,
    server_env,
    start_gunicorn,
    stop,
    wait_healthy,
)

DATABASE = "accord_bench_webhooks"
PATH = "/webhooks/stripe"
AMOUNT = 1_000  # fen per payment
PRINCIPAL = 1_000_000_000  # per account: never paid off, whatever the run
DUPLICATE_SHARE = 0.25
TARGET_RATE = 300.0
TARGET_P99_MS = 200.0
WARMUP_EVENTS = 100


# --------------------------------------------------------------------------- data


def prepare_database(url: str, accounts: int, payments: int) -> list[tuple[int, str]]:
    """A fresh database with ``accounts`` accounts and ``payments`` payments spread over them:
    [(payment id, PaymentIntent id)]."""
    from sqlalchemy import insert, select
    from sqlalchemy.orm import Session

    from portal.db import make_engine
    from portal.models import Account, Borrower, Creditor, Payment
    from portal.services import ledger
    from portal.services.audit import SYSTEM
    from workflows.ledger import EntryKind, Posting
    from workflows.money import Component

    bench_seed.ensure_database(url, recreate=True)
    bench_seed.migrate(url)
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            creditor = Creditor(code="BWH", name="Bench webhooks creditor")
            session.add(creditor)
            session.flush()
            rows = []
            for n in range(accounts):
                borrower = Borrower(full_name=f"Webhook bench {n}", phone=f"+86139{n:08d}", language="en")
                session.add(borrower)
                session.flush()
                account = Account(
                    creditor_id=creditor.id,
                    borrower_id=borrower.id,
                    external_reference=f"WH-{n:06d}",
                    product_type="loan",
                    currency="CNY",
                    annual_rate_bp=1800,
                    opened_on=dt.date(2025, 1, 15),
                )
                session.add(account)
                session.flush()
                ledger.post(
                    session,
                    account,
                    EntryKind.CHARGE,
                    [Posting(Component.PRINCIPAL, PRINCIPAL)],
                    cause="bench:webhooks",
                    actor=SYSTEM,
                    effective_on=dt.date(2025, 1, 15),
                )
                rows.append((account.id, borrower.id))
            pis = [f"pi_bench_{secrets.token_hex(10)}" for _ in range(payments)]
            session.execute(
                insert(Payment),
                [
                    {
                        "account_id": rows[i % accounts][0],
                        "borrower_id": rows[i % accounts][1],
                        "purpose": "amount",
                        "origin": "borrower",
                        "amount": AMOUNT,
                        "currency": "CNY",
                        "language": "en",
                        "idempotency_key": f"bench-{pi}",
                        "status": "submitting",
                        "payment_intent_id": pi,
                    }
                    for i, pi in enumerate(pis)
                ],
            )
            session.commit()
            ids = dict(session.execute(select(Payment.payment_intent_id, Payment.id)).all())
        return [(ids[pi], pi) for pi in pis]
    finally:
        engine.dispose()


def succeeded_event(payment_id: int, pi: str) -> dict[str, Any]:
    return {
        "id": f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "livemode": False,
        "data": {
            "object": {
                "id": pi,
                "object": "payment_intent",
                "amount": AMOUNT,
                "amount_received": AMOUNT,
                "currency": "cny",
                "status": "succeeded",
                "metadata": {"accord_payment": str(payment_id)},
                "latest_charge": f"ch_{pi[3:]}",
            }
        },
    }


def deliveries(events: list[dict[str, Any]], share: float, rng: random.Random) -> list[dict[str, Any]]:
    """Every event once, plus duplicates drawn from them so they are ``share`` of the whole."""
    extra = round(len(events) * share / (1 - share))
    out = [*events, *(rng.choice(events) for _ in range(extra))]
    rng.shuffle(out)
    return out


# --------------------------------------------------------------------------- the client


def post(port: int, body: bytes, signature: str) -> tuple[int, str, float]:
    t = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        conn.request(
            "POST",
            PATH,
            body=body,
            headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    elapsed = time.perf_counter() - t
    try:
        outcome = str(json.loads(data).get("outcome") or json.loads(data).get("error") or "")
    except ValueError:
        outcome = "not-json"
    return resp.status, outcome, elapsed


def drive(port: int, batch: list[dict[str, Any]], secret: str, clients: int) -> dict[str, Any]:
    """Post ``batch`` with ``clients`` threads as fast as the server answers."""
    from portal.integrations.stripe_gateway import sign_payload

    bodies = {}
    for evt in batch:  # signed now: well inside the server's 300 s tolerance
        if evt["id"] not in bodies:
            body = json.dumps(evt).encode()
            bodies[evt["id"]] = (body, sign_payload(body, secret))
    work = iter([bodies[evt["id"]] for evt in batch])
    lock = threading.Lock()
    results: list[tuple[int, str, float]] = []

    def client() -> None:
        while True:
            with lock:
                item = next(work, None)
            if item is None:
                return
            result = post(port, *item)
            with lock:
                results.append(result)

    cpu_before = cpu_times()
    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    seconds = time.perf_counter() - t
    latencies = sorted(r[2] * 1000 for r in results)
    answers = Counter(f"{status} {outcome}" for status, outcome, _ in results)
    return {
        "deliveries": len(results),
        "distinct_events": len(bodies),
        "seconds": round(seconds, 3),
        "deliveries_per_s": round(len(results) / seconds, 1),
        "events_per_s": round(len(bodies) / seconds, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p90_ms": round(_quantile(latencies, 0.90), 1),
        "p99_ms": round(_quantile(latencies, 0.99), 1),
        "max_ms": round(latencies[-1], 1),
        "answers": dict(answers),
        "cpu": cpu_share(cpu_before, cpu_times()),
    }


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


# --------------------------------------------------------------------------- checks


def verify(url: str, measured: list[tuple[int, str]], events: list[dict[str, Any]]) -> dict[str, int]:
    """Every event stored once, every payment recorded once, nothing else posted."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from portal.db import make_engine
    from portal.models import AuditEvent, LedgerEntry, Payment, StripeEvent
    from portal.services import ledger

    engine = make_engine(url)
    try:
        with Session(engine) as session:
            event_ids = [e["id"] for e in events]
            stored = session.scalar(select(func.count()).where(StripeEvent.id.in_(event_ids)))
            applied = session.scalar(
                select(func.count()).where(StripeEvent.id.in_(event_ids), StripeEvent.outcome == "applied")
            )
            payment_ids = [p for p, _ in measured]
            statuses = Counter(session.scalars(select(Payment.status).where(Payment.id.in_(payment_ids))))
            receipts = session.scalar(
                select(func.count(func.distinct(Payment.receipt_number))).where(Payment.id.in_(payment_ids))
            )
            per_cause = Counter(
                dict(
                    session.execute(
                        select(LedgerEntry.cause, func.count())
                        .where(LedgerEntry.kind == "payment")
                        .group_by(LedgerEntry.cause)
                    ).all()
                )
            )
            posted = sum(
                session.scalars(select(LedgerEntry.amount).where(LedgerEntry.kind == "payment")).all()
            )
            audits = Counter(
                session.scalars(select(AuditEvent.object_id).where(AuditEvent.action == "payment.succeeded"))
            )
            problems = ledger.discrepancies(session)
            everything = session.scalar(select(func.count()).select_from(StripeEvent))
            recorded = statuses.get("succeeded", 0)
    finally:
        engine.dispose()
    expected = len(measured)
    checks = {
        "events stored once": stored == len(events) == applied,
        "payments recorded": recorded == expected,
        "one receipt number each": receipts == expected,
        "one ledger entry per payment (1,000 fen, one component)": (
            all(per_cause[f"payment:{pi}"] == 1 for _, pi in measured)
        ),
        "nothing else posted": posted == -AMOUNT * (expected + WARMUP_EVENTS) == -AMOUNT * everything,
        "one audit event per payment": all(audits[str(p)] == 1 for p in payment_ids),
        "cached balances equal the ledger": not problems,
    }
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise BenchError(
            f"verification failed: {', '.join(failed)} (stored {stored}/{len(events)}, "
            f"recorded {recorded}/{expected}, statuses {dict(statuses)})"
        )
    return {"events_stored": int(stored or 0), "payments_recorded": recorded, "ledger_payment_total": posted}


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000, help="distinct events per round")
    parser.add_argument("--accounts", type=int, default=100, help="the payments are spread over these")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, each with its own events")
    parser.add_argument("--seed", type=int, default=2026, help="random seed of the delivery order")
    parser.add_argument("--server", default=bench_seed.DEFAULT_SERVER, help="PostgreSQL URL, no database")
    parser.add_argument(
        "--redis-url", default="", help="run Huey on Redis (receipts queue there), not SQLite"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if not 100 <= args.events <= 100_000 or not 1 <= args.rounds <= 10 or not 1 <= args.clients <= 256:
        parser.error("--events 100..100000, --rounds 1..10, --clients 1..256")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    url = bench_seed.database_url(args.server, DATABASE)
    rng = random.Random(args.seed)  # noqa: S311  (an order, not a secret)

    t = time.perf_counter()
    seeded = prepare_database(url, args.accounts, WARMUP_EVENTS + args.events * args.rounds)
    print(
        f"database {DATABASE}: created, migrated, {len(seeded):,} payments seeded "
        f"in {time.perf_counter() - t:.1f} s"
    )
    warm, measured = seeded[:WARMUP_EVENTS], seeded[WARMUP_EVENTS:]
    warm_events = [succeeded_event(p, pi) for p, pi in warm]
    events = [succeeded_event(p, pi) for p, pi in measured]

    secret = f"whsec_bench_{secrets.token_hex(16)}"
    busy_before = cpu_busy()
    if busy_before is not None and busy_before > 0.25:
        print(f"warning: the CPUs were {busy_before:.0%} busy just before the run: figures will be noisy")
    port = free_port()
    log = RESULTS / f"{stamp}-webhooks-gunicorn.log"
    rounds = []
    with tempfile.TemporaryDirectory(prefix="accord-bench-webhooks-") as instance:
        env = server_env(server_config(url, instance, secrets.token_urlsafe(48)))
        env["ACCORD_STRIPE_WEBHOOK_SECRET"] = secret
        if args.redis_url:
            env["ACCORD_REDIS_URL"] = args.redis_url
        proc = start_gunicorn(port, args.workers, env, log)
        print(
            f"gunicorn -w {args.workers} (sync) pid {proc.pid} on http://{HOST}:{port} "
            f"(log {log.relative_to(ROOT)})"
        )
        try:
            wait_healthy(proc, port, log)
            warm_up = drive(port, deliveries(warm_events, DUPLICATE_SHARE, rng), secret, args.clients)
            if set(warm_up["answers"]) - {"200 applied", "200 duplicate"}:
                raise BenchError(f"the warm-up got unexpected answers: {warm_up['answers']}")
            for n in range(args.rounds):
                batch = events[n * args.events : (n + 1) * args.events]
                result = drive(port, deliveries(batch, DUPLICATE_SHARE, rng), secret, args.clients)
                rounds.append(result)
                print(
                    f"round {n + 1}: {result['deliveries']:,} deliveries "
                    f"({result['distinct_events']:,} events) in {result['seconds']} s: "
                    f"{result['deliveries_per_s']} deliveries/s, "
                    f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms; {result['answers']}"
                )
        finally:
            stop(proc)
    checks = verify(url, measured, events)
    answers: Counter[str] = Counter()
    for r in rounds:
        answers.update(r["answers"])
    unexpected = {k: v for k, v in answers.items() if k not in ("200 applied", "200 duplicate")}
    if unexpected:
        raise BenchError(f"answers other than 200 applied/duplicate: {unexpected}")
    ordered = sorted(rounds, key=lambda r: r["deliveries_per_s"])
    best = ordered[len(ordered) // 2]
    met = best["deliveries_per_s"] >= TARGET_RATE and best["p99_ms"] <= TARGET_P99_MS
    cpu = best["cpu"] or {}
    print()
    print(
        f"Stripe webhook ingestion: gunicorn -w {args.workers} (sync), PostgreSQL, {args.clients} clients, "
        f"{DUPLICATE_SHARE:.0%} duplicates" + (f", median of {args.rounds} rounds" if args.rounds > 1 else "")
    )
    print(
        f"{os.cpu_count()} CPUs: {busy_before:.0%} busy in the second before the run; during it "
        f"{cpu.get('busy', 0):.0%} busy, {cpu.get('steal', 0):.1%} stolen by the VM host"
        if busy_before is not None
        else ""
    )
    print(f"| {'figure':<36} | {'value':>12} | target |")
    print(f"|{'-' * 38}|{'-' * 14}|--------|")
    rows = [
        ("deliveries/s (with duplicates)", f"{best['deliveries_per_s']:.1f}", f">= {TARGET_RATE:.0f}"),
        ("distinct events/s", f"{best['events_per_s']:.1f}", ""),
        ("latency p50", f"{best['p50_ms']:.1f} ms", ""),
        ("latency p90", f"{best['p90_ms']:.1f} ms", ""),
        ("latency p99", f"{best['p99_ms']:.1f} ms", f"<= {TARGET_P99_MS:.0f} ms"),
        ("latency max", f"{best['max_ms']:.1f} ms", ""),
        ("answered applied / duplicate", f"{answers['200 applied']} / {answers['200 duplicate']}", ""),
    ]
    for label, value, target in rows:
        print(f"| {label:<36} | {value:>12} | {target} |")
    print(
        f"verified: {checks['events_stored']:,} events stored once, {checks['payments_recorded']:,} payments "
        "recorded once each (one ledger entry, one audit event, one receipt number), nothing else posted, "
        "cached balances equal the ledger"
    )
    print(f"targets (>= {TARGET_RATE:.0f}/s, p99 <= {TARGET_P99_MS:.0f} ms): {'met' if met else 'NOT met'}")
    doc = {
        "started": started.isoformat(),
        "parameters": {k: v for k, v in vars(args).items() if k != "server"},
        "machine": machine(),
        "postgres": postgres_version(url),
        "git": git_revision(),
        "cpu_busy_before": busy_before,
        "warm_up": warm_up,
        "rounds": rounds,
        "verified": checks,
        "targets_met": met,
    }
    out = RESULTS / f"{stamp}-webhooks.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
