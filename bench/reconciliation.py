"""Reconciliation at scale: 1,000,000 Stripe balance transactions matched against the ledger on
PostgreSQL, compared with a plain SQL join of the same tables in the same run.

    .venv/bin/python bench/reconciliation.py [--txns 1000000] [--days 30] [--rounds 1]

Creates the PostgreSQL database ``accord_bench_recon`` afresh (dropped first if it exists),
migrates it to head, and seeds with set-based SQL (generate_series) one account and ``--txns``
payments recorded as received over ``--days`` days, each with its Stripe charge (a balance
transaction with its PaymentIntent and charge ids, created at 03:00 UTC plus a few seconds on the
payment's day), then plants three differences: one charge 1.00 more in Stripe, one payment whose
charge Stripe does not have, one Stripe charge nobody recorded. VACUUM ANALYZE, then per round:

* ``reconcile``: ``portal.services.reconciliation.reconcile`` over the whole period, as the
  command line runs it: both sides read from PostgreSQL (in windows of a week, each with a day
  of slack on both sides), ``workflows.reconciliation.match`` in Python, the exceptions upserted;
* ``plain join``: one SQL statement joining the same two tables on the PaymentIntent (a full
  outer join over the same period, with the same one day of slack on both sides, so it reads the
  same rows), its rows fetched to Python — the least any matching must do: read both sides once;
* ``plain join (server only)``: the same join counted in PostgreSQL without fetching the rows —
  reported for reference.

Checks that the run found exactly the three planted differences, prints the figures and the
ratio reconcile / plain join (targets: reconcile <= 30 s, ratio <= 3), and writes them to
bench/results/<timestamp>-reconciliation.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import seed as bench_seed  # noqa: E402
from run import BenchError, cpu_busy, git_revision, machine, postgres_version  # noqa: E402

DATABASE = "accord_bench_recon"
TARGET_SECONDS = 30.0
TARGET_RATIO = 3.0
FIRST_DAY = dt.date(2026, 10, 1)
PLANTED = {
    ("amount_mismatch", "txn_b_777"),
    ("missing_in_stripe", ""),
    ("missing_in_ledger", "txn_b_stranger"),
}


def prepare_database(url: str, txns: int, days: int) -> dict[str, float]:
    from sqlalchemy import text

    from portal.db import make_engine
    from portal.models import Account, Borrower, Creditor
    from portal.services import ledger
    from portal.services.audit import SYSTEM
    from workflows.ledger import EntryKind, Posting
    from workflows.money import Component

    timings: dict[str, float] = {}
    t = time.perf_counter()
    bench_seed.ensure_database(url, recreate=True)
    bench_seed.migrate(url)
    timings["create_and_migrate"] = round(time.perf_counter() - t, 2)
    engine = make_engine(url)
    try:
        from sqlalchemy.orm import Session

        with Session(engine) as session:
            creditor = Creditor(code="BRC", name="Bench reconciliation creditor")
            session.add(creditor)
            session.flush()
            borrower = Borrower(full_name="Reconciliation bench", phone="+8613900000000", language="en")
            session.add(borrower)
            session.flush()
            account = Account(
                creditor_id=creditor.id,
                borrower_id=borrower.id,
                external_reference="RC-000001",
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
                [Posting(Component.PRINCIPAL, 10**15)],
                cause="bench:reconciliation",
                actor=SYSTEM,
                effective_on=dt.date(2025, 1, 15),
            )
            session.commit()
            account_id, borrower_id = account.id, borrower.id
        params = {"n": txns, "days": days, "first": FIRST_DAY, "account": account_id, "borrower": borrower_id}
        t = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(
                text(
                    """
                    INSERT INTO payment (account_id, borrower_id, purpose, origin, attempt, amount, currency,
                        language, idempotency_key, status, payment_intent_id, charge_id, amount_received,
                        received_currency, received_on, reversed_amount, created_at, updated_at, version)
                    SELECT :account, :borrower, 'amount', 'borrower', 1, 1000 + g % 50000, 'CNY', 'en',
                        'bench-' || g, 'succeeded', 'pi_b_' || g, 'ch_b_' || g, 1000 + g % 50000, 'CNY',
                        CAST(:first AS date) + (g % :days), 0, now(), now(), 1
                    FROM generate_series(1, :n) AS g
                    """
                ),
                params,
            )
        timings["seed_payments"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(
                text(
                    """
                    INSERT INTO stripe_balance_txn (id, type, reporting_category, source_id,
                        payment_intent_id, amount, fee, net, currency, created, imported_at)
                    SELECT 'txn_b_' || g, 'charge', 'charge', 'ch_b_' || g, 'pi_b_' || g,
                        1000 + g % 50000 + CASE WHEN g = 777 THEN 100 ELSE 0 END, 0,
                        1000 + g % 50000 + CASE WHEN g = 777 THEN 100 ELSE 0 END, 'CNY',
                        CAST(CAST(:first AS date) + (g % :days) AS timestamp) AT TIME ZONE 'UTC'
                            + interval '3 hours' + (g % 3600) * interval '1 second',
                        now()
                    FROM generate_series(1, :n) AS g
                    WHERE g <> 4242
                    """
                ),
                params,
            )
            conn.execute(
                text(
                    """
                    INSERT INTO stripe_balance_txn (id, type, reporting_category, source_id,
                        payment_intent_id, amount, fee, net, currency, created, imported_at)
                    VALUES ('txn_b_stranger', 'charge', 'charge', 'ch_b_stranger', 'pi_b_stranger',
                        4200, 0, 4200, 'CNY',
                        CAST(CAST(:first AS date) + 5 AS timestamp) AT TIME ZONE 'UTC' + interval '4 hours',
                        now())
                    """
                ),
                params,
            )
        timings["seed_txns"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE payment"))
            conn.execute(text("VACUUM ANALYZE stripe_balance_txn"))
        timings["vacuum_analyze"] = round(time.perf_counter() - t, 2)
    finally:
        engine.dispose()
    return timings


JOIN = """
    SELECT t.id, t.amount, t.currency, p.id, p.amount_received, p.received_currency
    FROM (SELECT id, amount, currency, payment_intent_id FROM stripe_balance_txn
          WHERE created >= :lo AND created < :hi) AS t
    FULL OUTER JOIN (SELECT id, amount_received, received_currency, payment_intent_id FROM payment
                     WHERE status = 'succeeded' AND received_on >= :lo_day AND received_on <= :hi_day) AS p
      ON p.payment_intent_id = t.payment_intent_id
"""


def plain_join(url: str, start: dt.date, end: dt.date, *, fetch: bool) -> tuple[float, int]:
    from sqlalchemy import text

    from portal.db import make_engine

    engine = make_engine(url)
    slack = dt.timedelta(days=1)
    params = {
        "lo": dt.datetime.combine(start - slack, dt.time(), dt.UTC),
        "hi": dt.datetime.combine(end + 2 * slack, dt.time(), dt.UTC),
        "lo_day": start - slack,
        "hi_day": end + slack,
    }
    try:
        with engine.connect() as conn:
            t = time.perf_counter()
            if fetch:
                rows = len(conn.execute(text(JOIN), params).fetchall())
            else:
                rows = int(conn.execute(text(f"SELECT count(*) FROM ({JOIN}) AS j"), params).scalar_one())
            return time.perf_counter() - t, rows
    finally:
        engine.dispose()


def run_reconcile(
    url: str, start: dt.date, end: dt.date
) -> tuple[float, dict[str, Any], float, set[tuple[str, str]]]:
    from sqlalchemy import delete, select
    from sqlalchemy.orm import Session

    from portal.db import make_engine
    from portal.models import ReconciliationException
    from portal.services import reconciliation

    engine = make_engine(url)
    try:
        with Session(engine) as session:
            session.execute(delete(ReconciliationException))
            session.commit()
            t = time.perf_counter()
            run = reconciliation.reconcile(session, start, end)
            seconds = time.perf_counter() - t
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            found = {
                (k, s)
                for k, s in session.execute(
                    select(ReconciliationException.kind, ReconciliationException.stripe_ref)
                )
            }
            return seconds, dict(run.counts), peak / 2**20, found
    finally:
        engine.dispose()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txns", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--server", default=bench_seed.DEFAULT_SERVER)
    parser.add_argument("--reuse", action="store_true", help="Do not recreate and seed the database.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    RESULTS.mkdir(parents=True, exist_ok=True)
    url = bench_seed.database_url(args.server, DATABASE)
    seeding: dict[str, float] = {}
    if not args.reuse:
        seeding = prepare_database(url, args.txns, args.days)
        print(f"database {DATABASE}: {args.txns:,} payments and balance transactions seeded: {seeding}")
    start, end = FIRST_DAY, FIRST_DAY + dt.timedelta(days=args.days - 1)
    busy = cpu_busy()
    rounds = []
    for n in range(args.rounds):
        join_fetch, join_rows = plain_join(url, start, end, fetch=True)
        join_server, _ = plain_join(url, start, end, fetch=False)
        seconds, counts, peak_mb, found = run_reconcile(url, start, end)
        if found != PLANTED:
            raise BenchError(
                f"expected exactly the planted differences {sorted(PLANTED)}, found {sorted(found)}"
            )
        rounds.append(
            {
                "reconcile_s": round(seconds, 2),
                "plain_join_fetched_s": round(join_fetch, 2),
                "plain_join_server_s": round(join_server, 2),
                "join_rows": join_rows,
                "ratio": round(seconds / join_fetch, 2),
                "ratio_to_server_join": round(seconds / join_server, 2),
                "peak_rss_mb": round(peak_mb, 1),
                "matched": counts.get("matched"),
                "stripe_txns": counts.get("stripe_txns"),
                "exceptions": counts.get("exceptions"),
            }
        )
        print(f"round {n + 1}: {rounds[-1]}")
    best = sorted(rounds, key=lambda r: r["reconcile_s"])[len(rounds) // 2]
    met = best["reconcile_s"] <= TARGET_SECONDS and best["ratio"] <= TARGET_RATIO
    print()
    print(
        f"Reconciliation of {args.txns:,} balance transactions over {args.days} days, PostgreSQL "
        f"({'CPUs %.0f%% busy before' % (busy * 100) if busy is not None else ''})"
    )
    print(f"| {'figure':<44} | {'value':>10} | target |")
    print(f"|{'-' * 46}|{'-' * 12}|--------|")
    print(
        f"| {'reconcile (read, match, upsert) s':<44} | {best['reconcile_s']:>10} | <= {TARGET_SECONDS:.0f} |"
    )
    print(f"| {'plain SQL join, rows fetched s':<44} | {best['plain_join_fetched_s']:>10} |        |")
    print(f"| {'plain SQL join, counted in PostgreSQL s':<44} | {best['plain_join_server_s']:>10} |        |")
    print(f"| {'ratio reconcile / fetched join':<44} | {best['ratio']:>10} | <= {TARGET_RATIO:.0f}  |")
    print(f"| {'ratio reconcile / server-only join':<44} | {best['ratio_to_server_join']:>10} |        |")
    print(f"| {'peak resident memory of the process MB':<44} | {best['peak_rss_mb']:>10} |        |")
    print(f"targets {'met' if met else 'NOT met'}; exactly the 3 planted differences found")
    out = RESULTS / f"{started:%Y%m%dT%H%M%SZ}-reconciliation.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "reconciliation",
                "started": started.isoformat(),
                "git": git_revision(),
                "machine": machine(),
                "postgres": postgres_version(url),
                "parameters": vars(args),
                "seeding_s": seeding,
                "rounds": rounds,
                "targets": {"seconds": TARGET_SECONDS, "ratio": TARGET_RATIO, "met": met},
            },
            indent=2,
            default=str,
        )
    )
    print(f"written to {out.relative_to(ROOT)}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
