"""Placement import: 100,000 accounts of ~80,000 borrowers from a CSV file into an empty, migrated
database through ``portal.services.placements.import_file``, against a bare bulk load of the same
file in the same run.

    .venv/bin/python bench/placements.py [--accounts 100000] [--borrowers 80000] [--sqlite]

1. **The file.** Generated afresh in a temporary folder, deterministic (a seeded generator, no
   Faker): 3/4 of the borrowers Chinese-speaking in CN with CNY accounts, 1/4 English-speaking in
   the US with USD; every 25th a business (company name, registration number, the person who acts
   for it); each with a date of birth (a person), a phone, most with an e-mail address and an
   address; the first ``--borrowers`` accounts one per borrower, the rest a second account of a
   borrower drawn at random (its rows repeat the borrower's details exactly). Loans and cards,
   rates 4.35 %-24 %, principal 1,000.00-500,000.00, interest and fees on most, 70 % overdue
   (1-200 days, the overdue amount within the balance), the next instalment; balances as of
   yesterday (the desk's day, Asia/Shanghai).
2. **The database.** PostgreSQL ``accord_bench_placements`` (dropped and created by
   bench/seed.py's helpers, which refuse a name without "bench" or a server off loopback), or with
   ``--sqlite`` a file in the temporary folder; migrated to head, one creditor.
3. **First import** (timed): ``import_file`` as the command line runs it: both passes, every row
   checked by ``workflows.placements``, borrowers, accounts, opening ledger entries and audit
   events written set-based in one transaction. Then ``ledger.discrepancies`` must find nothing.
4. **Bare load** (timed, same run): PostgreSQL ``COPY … FROM STDIN (FORMAT csv, HEADER)`` of the
   same file into an UNLOGGED staging table with the file's columns (all text); SQLite: the file
   read by the csv module and inserted with one ``executemany`` into such a table. The ratio
   first import / bare load is the figure that travels between machines.
5. **Same file again** (timed), after ``ANALYZE`` of the tables the first import filled (what
   autovacuum does shortly after such a load): every row unchanged, no entry, no audit event but
   the import's.
6. **10 % changed** (timed): a copy of the file with the interest of every tenth account raised
   by 12.34: that many accounts updated with one adjustment entry each.

Also reported: the machine's speed at the start and at the end of the run (``cpu yardstick``: the
CPU seconds of 10,000,000 additions in a Python loop; it moves by a third or more on these virtual
machines when their host is busy, and every figure with it: compare it between runs), and the
time the row rules alone take (the file read with the csv module and every
row through ``parse_text_row``, no database), so the import's time can be told apart. Figures go
to bench/results/<timestamp>-placements.json, each step with the machine's load average (1 minute)
when it ended: other work on the machine moves these figures a lot. Target (issue 10): the first
import <= 20 s on PostgreSQL.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import seed as bench_seed  # noqa: E402
from run import BenchError, git_revision, machine, postgres_version  # noqa: E402

DATABASE = "accord_bench_placements"
TARGET_SECONDS = 20.0
CREDITOR_CODE = "BENCH-P"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = [
    "伟",
    "芳",
    "娜",
    "秀英",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
]
FIRST_NAMES = [
    "Mary",
    "James",
    "Linda",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Susan",
    "David",
]
LAST_NAMES = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Wilson",
    "Moore",
]
CITIES_CN = [
    ("上海", "上海", "200000"),
    ("北京", "北京", "100000"),
    ("广州", "广东", "510000"),
    ("成都", "四川", "610000"),
]
CITIES_US = [("New York", "NY", "10001"), ("Chicago", "IL", "60601"), ("Houston", "TX", "77001")]


def _money(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def _borrower(rng: random.Random, n: int, today: dt.date) -> dict[str, str]:
    english = n % 4 == 0
    business = n % 25 == 0
    if english:
        city, region, postal = rng.choice(CITIES_US)
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        values = {
            "full_name": name,
            "phone": f"+1 212 555 {rng.randrange(10_000):04d}",
            "email": f"{name.split(maxsplit=1)[0].lower()}.{n}@example.com",
            "language": "en",
            "country": "US",
            "address_line1": f"{1 + rng.randrange(999)} Main St, Apt {1 + rng.randrange(40)}",
            "city": city,
            "region": region,
            "postal_code": postal,
        }
    else:
        city, region, postal = rng.choice(CITIES_CN)
        values = {
            "full_name": rng.choice(SURNAMES) + rng.choice(GIVEN),
            "phone": f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}",
            "email": f"user{n}@example.cn" if rng.random() < 0.6 else "",
            "language": "zh_Hans_CN",
            "country": "CN",
            "address_line1": f"人民路 {1 + rng.randrange(500)} 号",
            "city": city,
            "region": region,
            "postal_code": postal,
        }
    born = today - dt.timedelta(days=365 * 22 + rng.randrange(365 * 40))
    values.update(
        borrower_reference=f"CUST-{n:07d}",
        borrower_kind="business" if business else "person",
        date_of_birth="" if business else born.isoformat(),
        national_id="" if business or english else f"{rng.randrange(10**17):017d}X",
        company_name=f"Bench Trading {n} Ltd" if business else "",
        registration_number=f"91310000{n:010d}" if business else "",
    )
    return values


def _account(rng: random.Random, n: int, borrower: dict[str, str], balance_date: dt.date) -> dict[str, str]:
    principal = 100_000 + rng.randrange(50_000_000)
    interest = rng.randrange(principal // 20) if rng.random() < 0.8 else 0
    fees = rng.choice((0, 0, 5_000, 10_000, 15_000))
    total = principal + interest + fees
    overdue = rng.random() < 0.7
    dpd = 1 + rng.randrange(200)
    overdue_amount = min(total, (principal // 24 + interest) * (dpd // 30 + 1) + fees) if overdue else 0
    card = n % 3 == 0
    opened = balance_date - dt.timedelta(days=200 + rng.randrange(1500))
    return {
        **borrower,
        "account_reference": f"{'CC' if card else 'LN'}-{n:08d}",
        "product_type": "credit_card" if card else "loan",
        "currency": "USD" if borrower["country"] == "US" else "CNY",
        "annual_rate": rng.choice(("4.35", "9.6", "12", "18.5", "21.99", "24")),
        "opened_on": opened.isoformat(),
        "balance_date": balance_date.isoformat(),
        "principal": _money(principal),
        "interest": _money(interest),
        "fees": _money(fees),
        "total": _money(total),
        "overdue_amount": _money(overdue_amount),
        "oldest_unpaid_due_on": (balance_date - dt.timedelta(days=dpd)).isoformat() if overdue else "",
        "next_due_on": (balance_date + dt.timedelta(days=1 + rng.randrange(30))).isoformat(),
        "next_due_amount": _money(principal // 24 + interest),
    }


def write_file(path: Path, accounts: int, borrowers: int, balance_date: dt.date) -> list[dict[str, str]]:
    from workflows.placements import COLUMNS

    rng = random.Random(2026)  # noqa: S311 - reproducible benchmark data
    people = [_borrower(rng, n, balance_date) for n in range(1, borrowers + 1)]
    rows = []
    for n in range(1, accounts + 1):
        owner = people[n - 1] if n <= borrowers else rng.choice(people)
        rows.append(_account(rng, n, owner, balance_date))
    _write_rows(path, rows, [column.name for column in COLUMNS])
    return rows


def _write_rows(path: Path, rows: list[dict[str, str]], columns: list[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="raise")
        writer.writeheader()
        writer.writerows(rows)


def changed_file(path: Path, rows: list[dict[str, str]]) -> int:
    """Every tenth account's interest raised by 12.34 (its total with it); how many changed."""
    from workflows.placements import COLUMNS

    changed = 0
    out = []
    for n, row in enumerate(rows):
        if n % 10:
            out.append(row)
            continue
        interest = int(row["interest"].replace(".", "")) + 1234
        total = int(row["total"].replace(".", "")) + 1234
        out.append({**row, "interest": _money(interest), "total": _money(total)})
        changed += 1
    _write_rows(path, out, [column.name for column in COLUMNS])
    return changed


def prepare(url: str) -> int:
    """A fresh migrated database with the one creditor; its id."""
    from sqlalchemy import text

    from portal.db import make_engine

    if url.startswith("postgresql"):
        bench_seed.ensure_database(url, recreate=True)
    bench_seed.migrate(url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            return int(
                conn.execute(
                    text(
                        "INSERT INTO creditor (code, name, created_at) VALUES (:code, 'Bench placements', "
                        "CURRENT_TIMESTAMP) RETURNING id"
                    ),
                    {"code": CREDITOR_CODE},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def timed_import(app: Any, creditor_id: int, path: Path, today: dt.date) -> tuple[float, dict[str, Any]]:
    from portal.extensions import db
    from portal.services import placements
    from portal.services.audit import SYSTEM

    with app.app_context(), db.session_scope() as session:
        started = time.perf_counter()
        record = placements.import_file(
            session,
            creditor_id=creditor_id,
            path=path,
            filename=path.name,
            source="cli",
            actor=SYSTEM,
            dry_run=False,
            today=today,
            max_rows=app.config["PLACEMENT_MAX_ROWS"],
        )
        seconds = time.perf_counter() - started
        if record.status != "applied" or record.rows_rejected:
            raise BenchError(f"{path.name}: {placements.summary(record)}")
        counts = {
            name: getattr(record, name)
            for name in (
                "rows_total",
                "accounts_created",
                "accounts_updated",
                "accounts_unchanged",
                "borrowers_created",
                "borrowers_updated",
                "adjustment_entries",
            )
        }
    return seconds, counts


def verify(app: Any) -> None:
    from portal.extensions import db
    from portal.services import ledger

    with app.app_context(), db.session_scope() as session:
        problems = ledger.discrepancies(session)
    if problems:
        raise BenchError(f"{len(problems)} accounts' cached balances differ from their entries")


def analyze(url: str) -> None:
    """Statistics for the tables the first import filled, as autovacuum gathers them within a minute
    or so of a load this size: without them PostgreSQL guesses that the lender has a handful of
    borrowers and looks each chunk's references up by filtering all of them."""
    from sqlalchemy import text

    from portal.db import make_engine

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE borrower"))
            conn.execute(text("ANALYZE account"))
            conn.execute(text("ANALYZE ledger_entry"))
    finally:
        engine.dispose()


def _staging_columns() -> str:
    from workflows.placements import COLUMNS

    return ", ".join(f"{column.name} text" for column in COLUMNS)


def bare_load(url: str, path: Path) -> float:
    """The same file into an UNLOGGED staging table of text columns: COPY on PostgreSQL, one
    executemany on SQLite. Seconds, file read included."""
    from sqlalchemy import text

    from portal.db import make_engine

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            unlogged = "UNLOGGED " if url.startswith("postgresql") else ""
            conn.execute(text("DROP TABLE IF EXISTS placement_staging"))
            conn.execute(text(f"CREATE {unlogged}TABLE placement_staging ({_staging_columns()})"))
        raw = engine.raw_connection()
        try:
            started = time.perf_counter()
            cursor = raw.cursor()
            if url.startswith("postgresql"):
                with (
                    path.open("rb") as stream,
                    cursor.copy(  # type: ignore[attr-defined]
                        "COPY placement_staging FROM STDIN WITH (FORMAT csv, HEADER true)"
                    ) as copy,
                ):
                    while chunk := stream.read(1 << 20):
                        copy.write(chunk)
            else:
                cursor.execute("BEGIN")
                with path.open(encoding="utf-8", newline="") as stream:
                    reader = csv.reader(stream)
                    width = len(next(reader))
                    marks = ", ".join("?" * width)
                    cursor.executemany(f"INSERT INTO placement_staging VALUES ({marks})", reader)
            raw.commit()
            seconds = time.perf_counter() - started
            cursor.close()
        finally:
            raw.close()
        with engine.begin() as conn:
            loaded = conn.execute(text("SELECT count(*) FROM placement_staging")).scalar_one()
            conn.execute(text("DROP TABLE placement_staging"))
        return seconds if loaded else float("nan")
    finally:
        engine.dispose()


def rules_only(path: Path, today: dt.date) -> float:
    """The file read with the csv module and every row through parse_text_row: no database."""
    from workflows.placements import parse_text_row

    started = time.perf_counter()
    with path.open(encoding="utf-8", newline="") as stream:
        for row in csv.DictReader(stream):
            parsed = parse_text_row(row, today=today)
            if isinstance(parsed, list):
                raise BenchError(f"a generated row is refused: {[error.text() for error in parsed]}")
    return time.perf_counter() - started


def cpu_yardstick() -> float:
    """CPU seconds of a fixed pure-Python loop: how fast this machine runs Python right now."""
    started, total = time.process_time(), 0
    for number in range(10_000_000):
        total += number
    return round(time.process_time() - started, 3)


def run_engine(url: str, folder: Path, args: argparse.Namespace, today: dt.date) -> dict[str, Any]:
    from portal import create_app

    balance_date = today - dt.timedelta(days=1)
    first = folder / "placements.csv"
    print(f"  writing {args.accounts:,} rows", flush=True)
    rows = write_file(first, args.accounts, args.borrowers, balance_date)
    second = folder / "placements-10pct.csv"
    changed = changed_file(second, rows)
    creditor_id = prepare(url)
    app = create_app({"DATABASE_URL": url, "ACCORD_ENV": "development", "INSTANCE_PATH": str(folder)})
    figures: dict[str, Any] = {"file_mb": round(first.stat().st_size / 2**20, 1)}
    measure: list[tuple[str, Callable[[], tuple[float, dict[str, Any]]]]] = [
        ("first_import", lambda: timed_import(app, creditor_id, first, today)),
        ("bare_load", lambda: (bare_load(url, first), {})),
        ("same_file_again", lambda: timed_import(app, creditor_id, first, today)),
        ("ten_percent_changed", lambda: timed_import(app, creditor_id, second, today)),
    ]
    for name, step in measure:
        print(f"  {name} …", flush=True)
        seconds, counts = step()
        figures[name] = {"seconds": round(seconds, 2), **counts}
        figures[name]["load_average"] = round(os.getloadavg()[0], 1)
        print(f"    {seconds:.2f} s {counts} (load average {figures[name]['load_average']})", flush=True)
        if name == "first_import":
            verify(app)
            analyze(url)
    if figures["same_file_again"]["accounts_unchanged"] != args.accounts:
        raise BenchError("the same file again changed something")
    if figures["ten_percent_changed"]["adjustment_entries"] != changed:
        raise BenchError(f"expected {changed} adjustments, got {figures['ten_percent_changed']}")
    verify(app)
    figures["rules_only_s"] = round(rules_only(first, today), 2)
    figures["ratio"] = round(figures["first_import"]["seconds"] / figures["bare_load"]["seconds"], 1)
    figures["server"] = postgres_version(url) if url.startswith("postgresql") else "SQLite"
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--borrowers", type=int, default=80_000)
    parser.add_argument(
        "--sqlite", action="store_true", help="also run on SQLite (a file in a temporary folder)"
    )
    parser.add_argument("--server", default=bench_seed.DEFAULT_SERVER)
    args = parser.parse_args(argv)
    if not 0 < args.borrowers <= args.accounts:
        parser.error("--borrowers must be between 1 and --accounts")
    from portal.services.hardship import desk_today

    today = desk_today()
    results: dict[str, Any] = {
        "benchmark": "placements",
        "parameters": vars(args),
        "machine": machine(),
        "git": git_revision(),
        "cpu_yardstick_s": {"before": cpu_yardstick()},
        "engines": {},
    }
    with tempfile.TemporaryDirectory(prefix="accord-bench-placements-") as name:
        folder = Path(name)
        engines = {"postgresql": bench_seed.database_url(args.server, DATABASE)}
        if args.sqlite:
            engines["sqlite"] = f"sqlite:///{folder / 'accord-bench-placements.db'}"
        for engine, url in engines.items():
            print(f"{engine}:", flush=True)
            results["engines"][engine] = run_engine(url, folder, args, today)
    results["cpu_yardstick_s"]["after"] = cpu_yardstick()
    print()
    print(f"Placement import of {args.accounts:,} accounts ({args.borrowers:,} borrowers)")
    yardstick = results["cpu_yardstick_s"]
    print(
        f"cpu yardstick (10^7 additions in a Python loop, lower is faster): "
        f"{yardstick['before']} s before, {yardstick['after']} s after"
    )
    print(f"| {'engine':<10} | {'figure':<40} | {'seconds':>8} |")
    print(f"|{'-' * 12}|{'-' * 42}|{'-' * 10}|")
    met = True
    for engine, figures in results["engines"].items():
        rows = [
            ("first import (import_file)", figures["first_import"]["seconds"]),
            (
                "bare COPY" if engine == "postgresql" else "bare executemany INSERT",
                figures["bare_load"]["seconds"],
            ),
            ("ratio first import / bare load", figures["ratio"]),
            ("same file again (all unchanged)", figures["same_file_again"]["seconds"]),
            ("10 % of balances changed", figures["ten_percent_changed"]["seconds"]),
            ("row rules alone (parse_text_row)", figures["rules_only_s"]),
        ]
        for label, value in rows:
            print(f"| {engine:<10} | {label:<40} | {value:>8} |")
        if engine == "postgresql":
            met = figures["first_import"]["seconds"] <= TARGET_SECONDS
    print(f"target (first import <= {TARGET_SECONDS:.0f} s on PostgreSQL): {'met' if met else 'MISSED'}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-placements.json"
    out.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(f"figures written to {out.relative_to(ROOT)}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
