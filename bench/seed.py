"""Seed a PostgreSQL database with N accounts for the benchmark, set-based and fast.

Every row is generated inside PostgreSQL by ``INSERT … SELECT … FROM generate_series`` (no
Python loop, no ORM), deterministically: the same N on the same day gives the same data. Each
account has its own borrower (with a date of birth, a phone, a language and a time zone), one of
five creditors, and about six ledger entries (a principal charge, three months of interest, for
half the accounts a payment on interest and principal, and the policy's late fee once an
overdue account is past its grace days). Days past due count from the oldest unpaid due date in
the borrower's own time zone; the lender's schedule gives the overdue amount (the instalments
missed since then, and the fee, within the balance), the next due date (1-30 days ahead) and the
next instalment. The cached balances are written from the same amounts, and the run fails unless
``portal.services.ledger.discrepancies`` (the check behind ``flask ledger verify``) and a
consistency check of those fields find nothing.

Ledger ids are interleaved across accounts (all first entries, then all second entries…), so
an account's entries sit in different heap pages, as they would after months of postings.

Run on its own: ``.venv/bin/python bench/seed.py --accounts 100000`` (``--reseed`` to rebuild).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import Connection, make_url  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
DEFAULT_DATABASE = "accord_bench"
CREDITORS = 5
BENCH_STAFF_EMAIL = "bench@bench.accord.example"
DATA_TABLES = ("ledger_entry", "account", "borrower", "creditor", "audit_event")
# The seeded borrowers' time zones (3/4 Chinese, 1/4 American): days past due and due dates
# count from "today" in each, as the borrower's dashboard does.
TIME_ZONES = {"today_cn": "Asia/Shanghai", "today_us": "America/New_York"}


def policy_params() -> dict[str, int]:
    """What the seed takes from the default policy: stage thresholds, late fee and its grace."""
    from workflows.policy import DEFAULT_POLICY as P

    assert P.early_from_dpd == 1, "the seed's stages assume arrears from the first day past due"
    return {
        "mid_from": P.mid_from_dpd,
        "late_from": P.late_from_dpd,
        "grace": P.late_fee_grace_days,
        "fee_cny": P.late_fee_amount["CNY"],
        "fee_usd": P.late_fee_amount["USD"],
    }


def todays(now: dt.datetime | None = None) -> dict[str, str]:
    """Today's date in each seeded time zone, as ISO strings (also the stamp's record)."""
    now = now or dt.datetime.now(dt.UTC)
    return {zone: now.astimezone(ZoneInfo(zone)).date().isoformat() for zone in TIME_ZONES.values()}


def database_url(server: str = DEFAULT_SERVER, database: str = DEFAULT_DATABASE) -> str:
    return f"{server.rstrip('/')}/{database}"


@dataclass
class SeedReport:
    accounts: int
    ledger_entries: int = 0
    reused: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return round(sum(self.seconds.values()), 2)


def _check_bench_database(url: str) -> str:
    name = make_url(url).database or ""
    host = make_url(url).host or ""
    # The seeder truncates tables: never let it near a database that is not a benchmark's.
    if "bench" not in name:
        raise SystemExit(f"refusing to seed {name!r}: the benchmark database's name must contain 'bench'")
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to seed a database on {host!r}: loopback only")
    return name


def _admin_engine(url: str):  # type: ignore[no-untyped-def]
    return create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")


def ensure_database(url: str, *, recreate: bool = False) -> bool:
    """Create the database if it is missing (drop it first if ``recreate``); True if created."""
    name = _check_bench_database(url)
    admin = _admin_engine(url)
    try:
        with admin.connect() as conn:
            exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if exists and recreate:
                conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            elif exists:
                return False
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            return True
    finally:
        admin.dispose()


def _fingerprint(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def migrations_fingerprint() -> str:
    """Changes whenever a migration changes, even one edited in place under the same revision."""
    files = [ROOT / "migrations" / "env.py", *sorted((ROOT / "migrations" / "versions").glob("*.py"))]
    return _fingerprint(*(f"{f.name}\n".encode() + f.read_bytes() for f in files))


def seed_fingerprint() -> str:
    statements = (PLAN_SQL, CREDITOR_SQL, BORROWER_SQL, ACCOUNT_SQL, LEDGER_SQL, CONSISTENCY_SQL)
    policy = json.dumps(policy_params(), sort_keys=True)
    return _fingerprint(*(sql.encode() for sql in statements), policy.encode())


# What the database holds is recorded as its comment (COMMENT ON DATABASE): no extra table.
def read_stamp(url: str) -> dict[str, object]:
    name = _check_bench_database(url)
    admin = _admin_engine(url)
    try:
        with admin.connect() as conn:
            raw = conn.scalar(
                text("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = :n"),
                {"n": name},
            )
    finally:
        admin.dispose()
    try:
        stamp = json.loads(raw or "{}")
    except ValueError:
        return {}
    return stamp if isinstance(stamp, dict) else {}


def write_stamp(url: str, stamp: dict[str, object]) -> None:
    name = _check_bench_database(url)
    literal = json.dumps(stamp, sort_keys=True).replace("'", "''")
    admin = _admin_engine(url)
    try:
        with admin.connect() as conn:
            conn.execute(text(f"COMMENT ON DATABASE \"{name}\" IS '{literal}'"))
    finally:
        admin.dispose()


def migrate(url: str) -> None:
    from alembic import command

    from portal.migrations import alembic_config

    command.upgrade(alembic_config(url), "head")


# A deterministic pseudo-random non-negative integer per (i, salt).
def _h(salt: int) -> str:
    return f"(hashint4(i * 16 + {salt})::bigint & 2147483647)"


PLAN_SQL = f"""
CREATE TEMPORARY TABLE bench_plan ON COMMIT DROP AS
WITH s AS (
  SELECT i, usd, today, card, principal, rate_bp, dpd, paid,
         (today - make_interval(months => 8 + ({_h(6)} % 41)::int))::date AS opened_on,
         {_h(7)} % 28 AS due_offset
  FROM (
    SELECT i, usd,
           -- "Today" is the borrower's own (Asia/Shanghai, America/New_York), as on the dashboard.
           CASE WHEN usd THEN CAST(:today_us AS date) ELSE CAST(:today_cn AS date) END AS today,
           {_h(1)} % 10 < 4 AS card,
           CASE WHEN {_h(1)} % 10 < 4 THEN 30000 + ({_h(2)} % 5970) * 1000
                ELSE 500000 + ({_h(2)} % 19500) * 1000 END AS principal,
           CASE WHEN {_h(1)} % 10 < 4 THEN (ARRAY[1490, 1825, 2400])[1 + {_h(3)} % 3]
                ELSE (ARRAY[690, 980, 1540])[1 + {_h(3)} % 3] END AS rate_bp,
           CASE WHEN {_h(4)} % 100 < 12 THEN 0 ELSE 1 + ({_h(5)} % 179)::int END AS dpd,
           i % 2 = 0 AS paid
    FROM (SELECT i, i % 4 = 0 AS usd FROM generate_series(1, :n) AS i) g
  ) r
), p AS (
  SELECT s.*,
         (principal * rate_bp + 60000) / 120000 AS interest,
         (principal / 1000) * 100 AS principal_paid,
         -- One late fee of the default policy's amount, once its grace days have passed.
         CASE WHEN dpd < :grace THEN 0 WHEN usd THEN :fee_usd ELSE :fee_cny END AS fee
  FROM s
), q AS (
  SELECT p.*,
         principal - CASE WHEN paid THEN principal_paid ELSE 0 END AS principal_balance,
         3 * interest - CASE WHEN paid THEN interest ELSE 0 END AS interest_balance,
         -- The monthly instalment: 1/24 of a loan, a card's minimum payment, plus the interest.
         CASE WHEN card THEN GREATEST(10000, principal / 20 / 100 * 100)
              ELSE principal / 24 / 100 * 100 END + interest AS instalment,
         (dpd + 29) / 30 AS missed
  FROM p
)
SELECT q.*,
       CASE WHEN dpd > 0 THEN today - dpd END AS oldest_unpaid_due_on,
       -- Every instalment due since the oldest unpaid one, and the fee, within the balance.
       CASE WHEN dpd > 0
            THEN LEAST(principal_balance + interest_balance + fee, missed * instalment + fee)
            ELSE 0 END AS overdue_amount,
       -- Due dates fall every 30 days from the oldest unpaid one: the next is 1-30 days ahead.
       CASE WHEN dpd > 0 THEN today - dpd + 30 * (dpd / 30 + 1)
            ELSE today + 1 + due_offset::int END AS next_due_on,
       instalment AS next_due_amount
FROM q
"""

CREDITOR_SQL = """
INSERT INTO creditor (id, code, name, created_at)
SELECT c, 'BENCH-' || c, '基准银行 Bench Bank ' || c, now() FROM generate_series(1, :c) AS c
"""

BORROWER_SQL = """
INSERT INTO borrower (id, kind, full_name, company_name, registration_number, date_of_birth,
                      national_id, phone, email, language, time_zone, address_line1, city,
                      postal_code, country, created_at)
SELECT i,
       CASE WHEN i % 25 = 0 THEN 'business' ELSE 'person' END,
       CASE WHEN en
            THEN (ARRAY['James','Mary','Robert','Linda','Michael','Susan','David','Karen'])[1 + i % 8]
                 || ' '
                 || (ARRAY['Smith','Johnson','Brown','Garcia','Miller','Davis','Wilson'])[1 + (i / 8) % 7]
            ELSE (ARRAY['王','李','张','刘','陈','杨','黄','赵','吴','周'])[1 + i % 10]
                 || (ARRAY['伟','芳','娜','敏','静','磊','强','洋','艳','军','杰','涛'])[1 + (i / 10) % 12]
       END,
       CASE WHEN i % 25 = 0
            THEN CASE WHEN en THEN 'Bench Trading Co. ' || i ELSE '基准贸易有限公司' || i END END,
       CASE WHEN i % 25 = 0 THEN '91310000' || lpad((i::bigint * 7919 % 10000000000)::text, 10, '0') END,
       born,
       CASE WHEN en THEN (100 + i % 800) || '-' || lpad((i % 100)::text, 2, '0') || '-'
                         || lpad((i % 10000)::text, 4, '0')
            ELSE (110000 + i % 549000) || to_char(born, 'YYYYMMDD') || lpad((i % 10000)::text, 4, '0') END,
       CASE WHEN en THEN '+1' || (2010000000 + i) ELSE '+86138' || lpad(i::text, 8, '0') END,
       'borrower' || i || '@example.com',
       CASE WHEN en THEN 'en' ELSE 'zh_Hans_CN' END,
       CASE WHEN en THEN 'America/New_York' ELSE 'Asia/Shanghai' END,
       CASE WHEN en THEN i || ' Bench Road' ELSE '基准路' || i || '号' END,
       CASE WHEN en THEN (ARRAY['Boston','Denver','Austin','Seattle'])[1 + i % 4]
            ELSE (ARRAY['上海','北京','广州','深圳','杭州','成都'])[1 + i % 6] END,
       lpad((i % 1000000)::text, 6, '0'),
       CASE WHEN en THEN 'US' ELSE 'CN' END,
       now()
FROM (SELECT i, i % 4 = 0 AS en, DATE '1956-01-01' + (i * 37 % 16000) AS born
      FROM generate_series(1, :n) AS i) b
"""

ACCOUNT_SQL = """
INSERT INTO account (id, creditor_id, borrower_id, external_reference, product_type, currency,
                     annual_rate_bp, opened_on, oldest_unpaid_due_on, overdue_amount, next_due_on,
                     next_due_amount, principal_balance, interest_balance, fees_balance, dpd, stage,
                     status, version, created_at, updated_at)
SELECT i, 1 + i % :c, i,
       CASE WHEN card THEN 'CC-' ELSE 'LN-' END || lpad(i::text, 7, '0'),
       CASE WHEN card THEN 'credit_card' ELSE 'loan' END,
       CASE WHEN usd THEN 'USD' ELSE 'CNY' END,
       rate_bp, opened_on, oldest_unpaid_due_on, overdue_amount, next_due_on, next_due_amount,
       principal_balance, interest_balance, fee,
       dpd,
       CASE WHEN dpd = 0 THEN 'current' WHEN dpd < :mid_from THEN 'early' WHEN dpd < :late_from THEN 'mid'
            WHEN dpd >= 120 AND i % 3 = 0 THEN 'legal' ELSE 'late' END,
       'open', 1, now(), now()
FROM bench_plan
"""

# Entries in time order per account: slot 1 charge, 2-4 interest, 5-6 a payment, 7 a late fee.
LEDGER_SQL = """
INSERT INTO ledger_entry (id, account_id, component, kind, amount, cause, memo, actor_type,
                          actor_id, effective_on, posted_at)
SELECT (e.slot - 1)::bigint * :n + p.i, p.i, e.component, e.kind, e.amount,
       e.cause, e.memo, 'system', NULL, e.effective_on,
       e.effective_on + TIME '09:00' AT TIME ZONE 'UTC'
FROM bench_plan p
CROSS JOIN LATERAL (VALUES
  (1, 'principal', 'charge', p.principal, 'placement:bench-' || p.i, 'Balance at placement',
   p.opened_on),
  (2, 'interest', 'interest', p.interest, 'interest:bench-' || p.i || '-1', 'Monthly interest',
   (p.opened_on + INTERVAL '1 month')::date),
  (3, 'interest', 'interest', p.interest, 'interest:bench-' || p.i || '-2', 'Monthly interest',
   (p.opened_on + INTERVAL '2 months')::date),
  (4, 'interest', 'interest', p.interest, 'interest:bench-' || p.i || '-3', 'Monthly interest',
   (p.opened_on + INTERVAL '3 months')::date),
  (5, 'interest', 'payment', CASE WHEN p.paid THEN -p.interest END, 'payment:bench-' || p.i, NULL,
   (p.opened_on + INTERVAL '4 months')::date),
  (6, 'principal', 'payment', CASE WHEN p.paid THEN -p.principal_paid END, 'payment:bench-' || p.i,
   NULL, (p.opened_on + INTERVAL '4 months')::date),
  (7, 'fees', 'fee', NULLIF(p.fee, 0), 'late_fee:bench-' || p.i, 'Late fee',
   p.oldest_unpaid_due_on + :grace)
) AS e(slot, component, kind, amount, cause, memo, effective_on)
WHERE e.amount IS NOT NULL
ORDER BY 1
"""


def _existing_accounts(conn: Connection) -> tuple[int, int]:
    accounts = conn.scalar(text("SELECT count(*) FROM account")) or 0
    bench_creditors = conn.scalar(text("SELECT count(*) FROM creditor WHERE code LIKE 'BENCH-%'")) or 0
    return int(accounts), int(bench_creditors)


def _timed(report: SeedReport, phase: str, started: float) -> float:
    now = time.perf_counter()
    report.seconds[phase] = round(now - started, 2)
    return now


def seed(
    url: str,
    accounts: int,
    *,
    reseed: bool = False,
    now: dt.datetime | None = None,
    stamp: dict | None = None,
) -> SeedReport:
    """Make the database hold exactly ``accounts`` bench accounts (reusing them when it already does).

    The data are reused only on the day (in each borrower time zone) they were seeded for: days
    past due, due dates and the dashboard's timeline all count from today.
    """
    _check_bench_database(url)
    if accounts < 1:
        raise SystemExit("--accounts must be at least 1")
    days = todays(now)
    report = SeedReport(accounts=accounts)
    stamp = read_stamp(url) if stamp is None else stamp
    same_data = (
        stamp.get("seed") == seed_fingerprint()
        and stamp.get("accounts") == accounts
        and stamp.get("today") == days
    )
    engine = create_engine(url)
    try:
        t = time.perf_counter()
        with engine.begin() as conn:
            count, bench_creditors = _existing_accounts(conn)
            if not reseed and same_data and count == accounts and bench_creditors == CREDITORS:
                report.reused = True
                report.ledger_entries = int(conn.scalar(text("SELECT count(*) FROM ledger_entry")) or 0)
                return report
            conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
            params = {
                "n": accounts,
                "c": CREDITORS,
                **policy_params(),
                **{k: days[zone] for k, zone in TIME_ZONES.items()},
            }
            t = _timed(report, "truncate", t)
            conn.execute(text(PLAN_SQL), params)
            conn.execute(text(CREDITOR_SQL), params)
            conn.execute(text(BORROWER_SQL), params)
            t = _timed(report, "borrowers", t)
            conn.execute(text(ACCOUNT_SQL), params)
            t = _timed(report, "accounts", t)
            report.ledger_entries = conn.execute(text(LEDGER_SQL), params).rowcount
            t = _timed(report, "ledger", t)
            for table in ("creditor", "borrower", "account", "ledger_entry"):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
        t = _timed(report, "commit", t)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE) creditor, borrower, account, ledger_entry"))
        t = _timed(report, "vacuum_analyze", t)
        verify(url, days)
        _timed(report, "verify", t)
    finally:
        engine.dispose()
    write_stamp(url, {**stamp, "seed": seed_fingerprint(), "accounts": accounts, "today": days})
    return report


# Every seeded account must be what the borrower's dashboard expects: the overdue part of the
# balance, a future due date and amount, and days past due counted from the oldest unpaid due
# date in the borrower's time zone; every borrower a date of birth, a language and a time zone.
CONSISTENCY_SQL = """
SELECT count(*) FILTER (WHERE b.date_of_birth IS NULL OR b.language IS NULL OR b.time_zone IS NULL
                           OR b.phone IS NULL) AS borrower_fields,
       count(*) FILTER (WHERE a.dpd <> COALESCE(d.today - a.oldest_unpaid_due_on, 0)
                           OR a.oldest_unpaid_due_on >= d.today) AS dpd,
       count(*) FILTER (WHERE (a.dpd > 0) <> (a.overdue_amount > 0)
                           OR a.overdue_amount > a.principal_balance + a.interest_balance
                                                 + a.fees_balance) AS overdue,
       count(*) FILTER (WHERE a.next_due_on IS NULL OR a.next_due_on <= d.today
                           OR a.next_due_amount <= 0) AS next_due,
       count(*) FILTER (WHERE a.stage <> CASE WHEN a.dpd = 0 THEN 'current'
                                              WHEN a.dpd < :mid_from THEN 'early'
                                              WHEN a.dpd < :late_from THEN 'mid'
                                              WHEN a.stage = 'legal' THEN 'legal' ELSE 'late' END) AS stage
FROM account a
JOIN borrower b ON b.id = a.borrower_id
JOIN (VALUES ('Asia/Shanghai', CAST(:today_cn AS date)), ('America/New_York', CAST(:today_us AS date)))
     AS d(time_zone, today) ON d.time_zone = b.time_zone
"""


def verify(url: str, days: dict[str, str]) -> None:
    """Fail unless every cached balance equals the sum of its ledger entries and every account
    and borrower is consistent (see CONSISTENCY_SQL)."""
    from portal.services.ledger import discrepancies

    engine = create_engine(url)
    try:
        with Session(engine) as session:
            found = discrepancies(session)
            params = {**policy_params(), **{k: days[zone] for k, zone in TIME_ZONES.items()}}
            counts = session.execute(text(CONSISTENCY_SQL), params).mappings().one()
            joined = session.scalar(
                text("SELECT count(*) FROM account a JOIN borrower b ON b.id = a.borrower_id")
            )
            total = session.scalar(text("SELECT count(*) FROM account"))
    finally:
        engine.dispose()
    if found:
        first = found[0]
        raise SystemExit(
            f"ledger verify failed: {len(found)} accounts differ from their ledger, "
            f"e.g. account {first.account_id}: cached {first.cached} ledger {first.ledger}"
        )
    bad = {name: n for name, n in counts.items() if n}
    if bad or joined != total:
        raise SystemExit(
            f"seed consistency check failed (accounts per check): {bad or {'time_zone': total - joined}}"
        )


def upsert_staff_user(url: str, password_hash: str, totp_secret: str) -> int:
    """The bench's staff agent, enrolled in TOTP, with no code used yet (so one sign-in works)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            return int(
                conn.scalar(
                    text(
                        """
                        INSERT INTO staff_user (email, full_name, role, password_hash, totp_secret,
                                                totp_confirmed_at, totp_last_step, is_active,
                                                session_version, created_at)
                        VALUES (:email, '基准测试 Bench Agent', 'agent', :hash, :secret, now(), NULL,
                                true, 1, now())
                        ON CONFLICT (email) DO UPDATE SET
                            role = 'agent', password_hash = EXCLUDED.password_hash,
                            totp_secret = EXCLUDED.totp_secret, totp_confirmed_at = now(),
                            totp_last_step = NULL, is_active = true
                        RETURNING id
                        """
                    ),
                    {"email": BENCH_STAFF_EMAIL, "hash": password_hash, "secret": totp_secret},
                )
            )
    finally:
        engine.dispose()


def prepare(url: str, accounts: int, *, reseed: bool = False) -> SeedReport:
    """Create, migrate and seed: everything the runner needs before it starts the server.

    A database built from other migrations (a different revision, or a migration edited in place)
    is dropped and created again: it is the benchmark's own, and its schema must be today's.
    """
    t = time.perf_counter()
    ensure_database(url)
    stamp = read_stamp(url)
    if stamp.get("migrations") != migrations_fingerprint():
        name = make_url(url).database
        print(f"database {name}: built from other migrations (or not stamped); creating it afresh")
        ensure_database(url, recreate=True)
        stamp = {}
    migrate(url)
    stamp = {**stamp, "migrations": migrations_fingerprint()}
    write_stamp(url, stamp)
    migrated = round(time.perf_counter() - t, 2)
    report = seed(url, accounts, reseed=reseed, stamp=stamp)
    report.seconds = {"create_and_migrate": migrated, **report.seconds}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL URL without the database")
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument("--reseed", action="store_true", help="rebuild even if N accounts exist")
    args = parser.parse_args(argv)
    report = prepare(database_url(args.server, args.database), args.accounts, reseed=args.reseed)
    state = "reused" if report.reused else "seeded"
    print(
        f"{state} {report.accounts:,} accounts, {report.ledger_entries:,} ledger entries "
        f"in {report.total_seconds} s {report.seconds}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
