# ruff: noqa: E501  (one seed statement a line reads better than wrapped SQL)
"""The daily collections run over N accounts, on PostgreSQL and on SQLite.

    .venv/bin/python bench/collections.py --accounts 1000000 [--engine postgresql|sqlite|both] [--days 2]

For each engine: a fresh database (PostgreSQL ``accord_bench_collections``, created and dropped
by bench/seed.py's helpers, which refuse a name without "bench" or a server off loopback; SQLite
a file in a temporary folder), migrated to head and seeded set-based (PostgreSQL
``generate_series``, SQLite a recursive CTE; no Python loop): per account a borrower, a principal
charge in the ledger, for an overdue account past its grace the policy's late fee, cached balances
equal to those entries, days past due and stage as of the day before the first run, an open
stage-history row; 88 % of the accounts overdue 1-199 days, 3/4 in CNY and 1/4 in USD, next due
dates 1-30 days ahead; plus 1 % of accounts in a breathing space, 0.5 % with an open dispute and
1 % with a promise to pay due. Then it measures, in the same process and database:

1. a single raw ``UPDATE account SET updated_at = …`` of every row (the yardstick);
2. ``portal.services.collections_run.run`` for ``--days`` consecutive days, each step timed;

(``--vacuum``: PostgreSQL VACUUM ANALYZE before each day, timed apart, as autovacuum would
between two daily runs; ``--database``: another database name with "bench" in it), prints the
figures and checks ``ledger.discrepancies`` finds nothing (the cached balances equal
the entries). Targets (issue 8): a day's run <= 30 s on PostgreSQL, and <= 3x the raw UPDATE.
Figures go to bench/results/<timestamp>-collections.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import seed as bench_seed  # noqa: E402
from run import git_revision, machine, postgres_version  # noqa: E402

DATABASE = "accord_bench_collections"
TARGET_SECONDS = 30.0
TARGET_RATIO = 3.0


def _series(dialect: str) -> str:
    """A table ``g(i)`` of 1..:n."""
    if dialect == "postgresql":
        return "(SELECT generate_series(CAST(1 AS bigint), :n) AS i) g"
    return "(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) SELECT i FROM s) g"


def _minus_days(dialect: str, day: str, days: str) -> str:
    if dialect == "postgresql":
        return f"(CAST({day} AS date) - CAST({days} AS integer))"
    return f"date({day}, '-' || ({days}) || ' days')"


def _plus_days(dialect: str, day: str, days: str) -> str:
    if dialect == "postgresql":
        return f"(CAST({day} AS date) + CAST({days} AS integer))"
    return f"date({day}, '+' || ({days}) || ' days')"


def seed_sql(dialect: str) -> list[tuple[str, str]]:
    """(label, statement) in order; every value derived from i by integer hashing."""
    g = _series(dialect)
    now = "CURRENT_TIMESTAMP"
    # dpd as of :day (the day before the first run): 12 % current, else 1..199.
    dpd = "(CASE WHEN (i * 7) % 100 < 12 THEN 0 ELSE 1 + (i * 7919) % 199 END)"
    stage = (
        f"CASE WHEN {dpd} = 0 THEN 'current' WHEN {dpd} < :mid THEN 'early' WHEN {dpd} < :late THEN 'mid'"
        f" WHEN {dpd} < :co THEN 'late' ELSE 'charged_off' END"
    )
    fee = (
        f"(CASE WHEN {dpd} >= :grace AND {dpd} < :co"
        " THEN CASE WHEN i % 4 = 0 THEN :fee_usd ELSE :fee_cny END ELSE 0 END)"
    )
    principal = "(100000 + (i * 104729) % 5000000)"
    return [
        ("creditor", "INSERT INTO creditor (id, code, name, created_at) VALUES (1, 'BENCH-C', 'Bench Bank', CURRENT_TIMESTAMP)"),
        (
            "borrowers",
            (f"INSERT INTO borrower (id, kind, full_name, phone, language, time_zone, country, session_version, created_at)"
            f" SELECT i, 'person', 'Bench ' || i, '+86138' || i, 'zh_Hans_CN', 'Asia/Shanghai', 'CN', 1, {now} FROM {g}"),
        ),
        (
            "accounts",
            ("INSERT INTO account (id, creditor_id, borrower_id, external_reference, product_type, currency,"
            " annual_rate_bp, opened_on, oldest_unpaid_due_on, overdue_amount, next_due_on, next_due_amount,"
            " principal_balance, interest_balance, fees_balance, credit_balance, dpd, stage, status, version,"
            " created_at, updated_at)"
            f" SELECT i, 1, i, 'LN-' || i, 'loan', CASE WHEN i % 4 = 0 THEN 'USD' ELSE 'CNY' END,"
            f" CASE i % 3 WHEN 0 THEN 690 WHEN 1 THEN 1490 ELSE 2400 END, '2025-01-01',"
            f" CASE WHEN {dpd} = 0 THEN NULL ELSE {_minus_days(dialect, ':day', dpd)} END, 0,"
            f" {_plus_days(dialect, ':day', '1 + i % 30')}, 10000, {principal}, 0, {fee}, 0, {dpd}, {stage},"
            f" 'open', 1, {now}, {now} FROM {g}"),
        ),
        (
            "ledger",
            ("INSERT INTO ledger_entry (account_id, component, kind, amount, cause, actor_type, effective_on, posted_at)"
            f" SELECT i, 'principal', 'charge', {principal}, 'bench:placement', 'system', '2025-01-01', {now} FROM {g}"),
        ),
        (
            "ledger fees",
            ("INSERT INTO ledger_entry (account_id, component, kind, amount, cause, actor_type, effective_on, posted_at)"
            f" SELECT i, 'fees', 'fee', {fee}, 'bench:fee', 'system', '2025-01-01', {now} FROM {g} WHERE {fee} > 0"),
        ),
        (
            "stage history",
            "INSERT INTO stage_history (account_id, stage, entered_on) SELECT id, stage, '2025-01-01' FROM account",
        ),
        (
            "pauses",
            ("INSERT INTO account_pause (account_id, starts_on, ends_on, stops_fees, pauses_contact, created_at)"
            f" SELECT i, {_minus_days(dialect, ':day', '5')}, {_plus_days(dialect, ':day', '20')},"
            f" i % 2 = 0, TRUE, {now} FROM {g} WHERE i % 100 = 17"),
        ),
        (
            "disputes",
            ("INSERT INTO debt_dispute (account_id, borrower_id, reason, detail, evidence_keys, status, created_at, version)"
            f" SELECT i, i, 'other', 'bench', '[]', 'open', {now}, 1 FROM {g} WHERE i % 200 = 3"),
        ),
        (
            "promises",
            ("INSERT INTO promise_to_pay (account_id, amount, currency, promised_on, due_on, status, paid_amount, created_at)"
            f" SELECT i, 50000, CASE WHEN i % 4 = 0 THEN 'USD' ELSE 'CNY' END, {_minus_days(dialect, ':day', '7')},"
            f" :day, 'open', 0, {now} FROM {g} WHERE i % 100 = 41"),
        ),
    ]  # fmt: skip


def _params(n: int, day: dt.date) -> dict[str, Any]:
    from workflows.policy import DEFAULT_POLICY as P

    return {
        "n": n,
        "day": day.isoformat(),
        "mid": P.mid_from_dpd,
        "late": P.late_from_dpd,
        "co": P.charge_off_dpd,
        "grace": P.late_fee_grace_days,
        "fee_cny": P.late_fee_amount["CNY"],
        "fee_usd": P.late_fee_amount["USD"],
    }


def prepare(url: str, n: int, day: dt.date) -> dict[str, float]:
    from sqlalchemy import text

    from portal.db import make_engine

    if url.startswith("postgresql"):
        bench_seed.ensure_database(url, recreate=True)
    bench_seed.migrate(url)
    engine = make_engine(url)
    dialect = engine.dialect.name
    seconds: dict[str, float] = {}
    try:
        with engine.begin() as conn:
            if dialect == "sqlite":
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            params = _params(n, day)
            for label, sql in seed_sql(dialect):
                t = time.perf_counter()
                used = {k: v for k, v in params.items() if f":{k}" in sql}
                conn.execute(text(sql), used)
                seconds[label] = round(time.perf_counter() - t, 2)
                print(f"  seeded {label} in {seconds[label]} s", flush=True)
        if dialect == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql(
                    "SELECT setval('ledger_entry_id_seq', (SELECT max(id) FROM ledger_entry))"
                )
                t = time.perf_counter()
                conn.exec_driver_sql("VACUUM ANALYZE")
                seconds["vacuum analyze"] = round(time.perf_counter() - t, 2)
        else:
            with engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()
    return seconds


def measure(
    url: str, n: int, first_day: dt.date, days: int, verify: bool, *, vacuum: bool = False
) -> dict[str, Any]:
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    from portal.db import make_engine, utcnow
    from portal.services import collections_run, ledger

    engine = make_engine(url)
    out: dict[str, Any] = {"days": []}
    try:
        with Session(engine) as session:
            t = time.perf_counter()
            rows = session.execute(text("UPDATE account SET updated_at = :now"), {"now": utcnow()}).rowcount
            session.commit()
            out["raw_update_s"] = round(time.perf_counter() - t, 2)
            print(f"  raw UPDATE of {rows:,} accounts: {out['raw_update_s']} s", flush=True)
            timings: dict[str, float] = {}
            real = dict(collections_run.STEPS)
            real_together = dict(getattr(collections_run, "TOGETHER", {}))  # older runs: none

            def timed(name: str):  # type: ignore[no-untyped-def]
                def step(*args: Any) -> dict[str, int]:
                    started = time.perf_counter()
                    try:
                        return real[name](*args)
                    finally:
                        timings[name] = round(time.perf_counter() - started, 2)

                return step

            def timed_together(group: tuple[str, ...]):  # type: ignore[no-untyped-def]
                def steps(*args: Any) -> dict[str, dict[str, int]]:
                    started = time.perf_counter()
                    try:
                        return real_together[group](*args)
                    finally:
                        timings["+".join(group)] = round(time.perf_counter() - started, 2)

                return steps

            for name in real:
                collections_run.STEPS[name] = timed(name)
            for group in real_together:
                collections_run.TOGETHER[group] = timed_together(group)
            try:
                for k in range(days):
                    day = first_day + dt.timedelta(days=k)
                    timings.clear()
                    if vacuum and engine.dialect.name == "postgresql":
                        session.close()
                        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                            started = time.perf_counter()
                            conn.exec_driver_sql("VACUUM ANALYZE account, ledger_entry, stage_history")
                            out.setdefault("vacuum_s", []).append(round(time.perf_counter() - started, 2))
                        print(f"  VACUUM ANALYZE before the run (not timed with it): {out['vacuum_s'][-1]} s")
                    t = time.perf_counter()
                    report = collections_run.run(session, day, today=first_day + dt.timedelta(days=days))
                    total = round(time.perf_counter() - t, 2)
                    ratio = round(total / out["raw_update_s"], 2) if out["raw_update_s"] else None
                    out["days"].append(
                        {"day": day.isoformat(), "seconds": total, "ratio": ratio, "steps": dict(timings),
                         "counts": report.counts}
                    )  # fmt: skip
                    print(f"  run {day}: {total} s ({ratio}x the raw UPDATE)", flush=True)
                    for name, seconds in timings.items():
                        counts = {part: report.counts.get(part) for part in name.split("+")}
                        print(f"    {name:<18} {seconds:>7} s  {counts}", flush=True)
            finally:
                collections_run.STEPS.update(real)
                if real_together:
                    collections_run.TOGETHER.update(real_together)
            if verify:
                t = time.perf_counter()
                problems = ledger.discrepancies(session)
                out["discrepancies"] = len(problems)
                print(
                    f"  ledger.discrepancies: {len(problems)} ({time.perf_counter() - t:.1f} s)", flush=True
                )
                if problems:
                    raise SystemExit("the cached balances differ from the ledger after the run")
    finally:
        engine.dispose()
    return out


def _sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--engine", choices=("postgresql", "sqlite", "both"), default="both")
    parser.add_argument(
        "--days", type=int, default=2, help="consecutive days to run (the first opens nothing new)"
    )
    parser.add_argument("--server", default=bench_seed.DEFAULT_SERVER)
    parser.add_argument(
        "--database",
        default=DATABASE,
        help="the PostgreSQL database (recreated; its name must contain 'bench')",
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the ledger check afterwards")
    parser.add_argument(
        "--vacuum",
        action="store_true",
        help="PostgreSQL: VACUUM ANALYZE before each day's run (as autovacuum would between two"
        " daily runs; this server runs with autovacuum off), timed apart from the run",
    )
    args = parser.parse_args(argv)
    from portal.services.hardship import desk_today

    first_day = desk_today() - dt.timedelta(days=args.days)
    seed_day = first_day - dt.timedelta(days=1)
    engines = ("postgresql", "sqlite") if args.engine == "both" else (args.engine,)
    results: dict[str, Any] = {
        "accounts": args.accounts, "machine": machine(), "revision": git_revision(), "engines": {},
        "vacuum_between_days": args.vacuum,
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="accord-bench-collections-") as folder:
        for name in engines:
            if name == "postgresql":
                url = bench_seed.database_url(args.server, args.database)
            else:
                url = f"sqlite:///{Path(folder) / 'accord-bench-collections.db'}"
            print(f"{name}: seeding {args.accounts:,} accounts", flush=True)
            t = time.perf_counter()
            seeded = prepare(url, args.accounts, seed_day)
            print(f"  seeded in {time.perf_counter() - t:.1f} s", flush=True)
            figures = measure(
                url, args.accounts, first_day, args.days, not args.no_verify, vacuum=args.vacuum
            )
            figures["seed_s"] = seeded
            figures["server"] = (
                postgres_version(url) if name == "postgresql" else f"SQLite {_sqlite_version()}"
            )
            results["engines"][name] = figures
    print()
    print(f"Daily collections run, {args.accounts:,} accounts")
    print(f"| {'engine':<10} | {'day':<10} | {'run s':>7} | {'raw UPDATE s':>12} | {'ratio':>6} | targets |")
    print(f"|{'-' * 12}|{'-' * 12}|{'-' * 9}|{'-' * 14}|{'-' * 8}|{'-' * 9}|")
    for name, figures in results["engines"].items():
        for day in figures["days"]:
            met = day["ratio"] is not None and day["ratio"] <= TARGET_RATIO
            if name == "postgresql":
                met = met and day["seconds"] <= TARGET_SECONDS
            print(
                f"| {name:<10} | {day['day']:<10} | {day['seconds']:>7} | {figures['raw_update_s']:>12} |"
                f" {day['ratio']:>6} | {'met' if met else 'MISSED':<7} |"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}-collections.json"
    path.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(f"figures written to {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
