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

Each account also has 10 hardship cases (1,000,000 for 100,000 accounts): 85 % closed, 15 % on
the negotiation desk (in review, claimed by bench agents, awaiting a second approval) with the
band, priority, review date and relief the portal's rules give, and the borrower's proposal as
an offer built like ``offers.proposal_offer``'s; a sample is checked against those functions.

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
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, select, text  # noqa: E402
from sqlalchemy.engine import Connection, make_url  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
DEFAULT_DATABASE = "accord_bench"
CREDITORS = 5
BENCH_STAFF_EMAIL = "bench@bench.accord.example"
DATA_TABLES = ("offer", "hardship_case", "ledger_entry", "account", "borrower", "creditor", "audit_event")
# The seeded borrowers' time zones (3/4 Chinese, 1/4 American): days past due and due dates
# count from "today" in each, as the borrower's dashboard does.
TIME_ZONES = {"today_cn": "Asia/Shanghai", "today_us": "America/New_York"}
CASES_PER_ACCOUNT = 10  # hardship cases: 1,000,000 over 100,000 accounts
DESK_STATES = ("in_review", "claimed", "awaiting_second_approval")
# The negotiation desk's staff: the runner's own agent (given a password and TOTP secret each run
# by upsert_staff_user) and a few more who claim and decide cases; none of them but the runner's
# can sign in (their password hash is not a hash).
BENCH_STAFF = (
    (BENCH_STAFF_EMAIL, "基准测试 Bench Agent", "agent"),
    *((f"agent{n}@bench.accord.example", f"{name} Bench Agent {n}", "agent")
      for n, name in enumerate(("张伟", "李娜", "王芳", "Mary Smith", "James Brown", "刘洋"), start=1)),
    *((f"supervisor{n}@bench.accord.example", f"{name} Bench Supervisor {n}", "supervisor")
      for n, name in enumerate(("陈静", "Linda Garcia"), start=1)),
)  # fmt: skip


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


def desk_params() -> dict[str, object]:
    """What the hardship cases take from the default policy and the desk: the queue's priority
    weights and balance bands, the review deadline and an offer's validity, the desk's time zone."""
    from portal.services.hardship import DESK_TZ
    from workflows.policy import DEFAULT_POLICY as P

    rules = P.hardship
    weights = rules.priority
    assert set(weights.balance_bands) >= {"CNY", "USD"}, "the seeded currencies need balance bands"
    return {
        "desk_tz": DESK_TZ.key,
        "sla_days": rules.review_sla_days,
        "offer_days": rules.offer_valid_days,
        "stage_points": json.dumps({str(k): v for k, v in weights.stage_points.items()}, sort_keys=True),
        "per_day": weights.points_per_day,
        "vulnerable_points": weights.vulnerability_points,
        "per_band": weights.points_per_band,
        "bands_cny": list(weights.balance_bands["CNY"]),
        "bands_usd": list(weights.balance_bands["USD"]),
        "per_account": CASES_PER_ACCOUNT,
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
    cases: int = 0
    offers: int = 0
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
    statements = (
        PLAN_SQL, CREDITOR_SQL, BORROWER_SQL, ACCOUNT_SQL, LEDGER_SQL, CONSISTENCY_SQL,
        STAFF_SQL, CASE_PLAN_SQL, CASE_SQL, OFFER_SQL, CASE_CONSISTENCY_SQL,
    )  # fmt: skip
    policy = json.dumps({**policy_params(), **desk_params()}, sort_keys=True)
    staff = json.dumps(BENCH_STAFF)
    return _fingerprint(*(sql.encode() for sql in statements), policy.encode(), staff.encode())


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
       convert_to(to_char(born, 'YYYY-MM-DD'), 'UTF8'),
       convert_to(CASE WHEN en THEN (100 + i % 800) || '-' || lpad((i % 100)::text, 2, '0') || '-'
                                    || lpad((i % 10000)::text, 4, '0')
                       ELSE (110000 + i % 549000) || to_char(born, 'YYYYMMDD')
                            || lpad((i % 10000)::text, 4, '0')
                  END, 'UTF8'),
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


# --------------------------------------------------------------------------- hardship cases


def _hc(salt: int) -> str:
    """A deterministic pseudo-random non-negative integer per (case seq s, salt)."""
    return f"(hashint8(s * 32 + {salt}) & 2147483647)"


STAFF_SQL = """
INSERT INTO staff_user (email, full_name, role, password_hash, totp_secret, totp_confirmed_at,
                        totp_last_step, is_active, session_version, created_at)
SELECT email, full_name, role, '!', NULL, NULL, NULL, true, 1, now()
FROM jsonb_to_recordset(CAST(:staff AS jsonb)) AS x(email text, full_name text, role text)
ON CONFLICT (email) DO UPDATE SET role = EXCLUDED.role, full_name = EXCLUDED.full_name,
                                  is_active = true
"""

# One row per case: everything the case row and its proposal need. Case s (its id) belongs to
# account 1 + (s - 1) % n, so each account has 10 and they sit in different heap pages. Ids
# follow creation time, as a sequence gives them: the last fifth of the ids (200,000 cases) were
# created in the last 30 days, the others over the 700 days before. Three in four of the recent
# ones are on the desk (in review 40 %, claimed 25 %, awaiting a second approval 10 %: 8 %, 5 %
# and 2 % of all cases); every other case is closed, approved, rejected, withdrawn or expired
# 35 : 20 : 15 : 15. Closed cases that reached the desk (a proposal reviewed) have its fields,
# the others ended before it (an offer accepted or left to expire, a request withdrawn). Times
# count back from midnight of the desk's today, so the same day gives the same data; the
# borrower took up to 30 % of the case's age (at most 2 days) to submit, and proposed up to
# a day later, which is when the case was queued.
CASE_PLAN_SQL = f"""
CREATE TEMPORARY TABLE bench_case ON COMMIT DROP AS
WITH staff AS (
  SELECT array_agg(id ORDER BY email) FILTER (WHERE role = 'agent') AS agents,
         array_agg(id ORDER BY email) FILTER (WHERE role = 'supervisor') AS supervisors
  FROM staff_user WHERE email LIKE '%@bench.accord.example'
), acct AS MATERIALIZED (
  SELECT a.id AS account_id, a.borrower_id, a.currency, a.stage, a.annual_rate_bp AS rate,
         a.principal_balance AS principal, a.interest_balance AS interest, a.fees_balance AS fees,
         a.principal_balance + a.interest_balance + a.fees_balance AS balance,
         -- authority.amount_band: how many of the currency's thresholds the balance reaches
         (SELECT count(*) FROM unnest(CASE a.currency WHEN 'USD' THEN CAST(:bands_usd AS bigint[])
                                                      WHEN 'CNY' THEN CAST(:bands_cny AS bigint[]) END) AS t
          WHERE t <= a.principal_balance + a.interest_balance + a.fees_balance)::int AS band,
         CAST(CAST(:stage_points AS jsonb) ->> a.stage AS int) AS stage_points
  FROM account a
), h AS (
  SELECT s, a.*, total, total / 5 AS recent, {_hc(1)} % 1000 AS u,
         {_hc(2)} % 85 AS v, {_hc(3)} AS h3, {_hc(5)} % 100 AS h5, {_hc(8)} % 5 AS h8, {_hc(9)} % 100 AS kind,
         {_hc(10)} % 101 AS share, {_hc(11)} % 1000 AS h11, {_hc(12)} % 1000 AS h12, {_hc(13)} AS h13,
         {_hc(14)} AS h14, {_hc(15)} AS h15, {_hc(16)} % 5 = 0 AS by_supervisor, {_hc(18)} AS h18
  FROM (SELECT CAST(:n AS bigint) * :per_account AS total) AS k
  CROSS JOIN generate_series(1, total) AS s
  JOIN acct AS a ON a.account_id = 1 + (s - 1) % :n
), d AS (
  SELECT h.*, state IN ('in_review', 'claimed', 'awaiting_second_approval') AS is_open,
         state IN ('in_review', 'claimed', 'awaiting_second_approval', 'rejected')
           OR (state = 'approved' AND u % 10 < 6) OR (state = 'withdrawn' AND u % 10 < 5)
           OR (state = 'expired' AND u % 10 < 3) AS desk
  FROM (SELECT h.*,
               CASE WHEN s > total - recent AND u < 400 THEN 'in_review'
                    WHEN s > total - recent AND u < 650 THEN 'claimed'
                    WHEN s > total - recent AND u < 750 THEN 'awaiting_second_approval'
                    WHEN v < 35 THEN 'approved' WHEN v < 55 THEN 'rejected' WHEN v < 70 THEN 'withdrawn'
                    ELSE 'expired' END AS state,
               -- seconds from creation to the desk's midnight
               CASE WHEN s > total - recent THEN ((total - s) * 2592000 + h3 % 2592000) / recent
                    ELSE 2592000 + ((total - recent - s) * 60480000 + h3 % 60480000) / (total - recent)
               END AS age
        FROM h) AS h
), f AS MATERIALIZED (  -- computed once: the planner would repeat what is inlined at every use
  SELECT d.*, age - LEAST(age * h11 / 3333, 172800)
                  - CASE WHEN desk THEN LEAST(age * h12 / 3333, 86400) ELSE 0 END AS rem
  FROM d
), e AS (
  SELECT f.*, anchor - age * one_second AS created_at,
         anchor - (age - LEAST(age * h11 / 3333, 172800)) * one_second AS submitted_at,
         anchor - rem * one_second AS t0,  -- queued, for a case that reached the desk
         anchor - (rem - h13 % GREATEST(1, LEAST(rem, 20 * 86400))) * one_second AS decided,
         anchor - (rem - (h14 % GREATEST(1, rem)) / 2) * one_second AS claimed,
         anchor - (rem - (h14 % GREATEST(1, rem)) / 2 - (h18 % GREATEST(1, rem)) / 2) * one_second
           AS first_approved,
         (ARRAY[3, 6, 12, 18, 24])[1 + h8] AS months,
         staff.agents[1 + h15 % cardinality(staff.agents)] AS agent,
         staff.supervisors[1 + h15 % cardinality(staff.supervisors)] AS supervisor,
         h5 < 5 AND desk AS vulnerable
  FROM f
  CROSS JOIN staff
  CROSS JOIN (SELECT CAST(:desk_today AS date)::timestamp AT TIME ZONE :desk_tz AS anchor,
                     INTERVAL '1 second' AS one_second) AS k
), p AS (
  -- Proposals: 55 % repay the balance, 30 % ask to waive fees and part of the interest,
  -- 15 % offer 70-95 % of the balance (a settlement); over 3 to 24 months.
  SELECT e.*,
         CASE WHEN desk THEN (t0 AT TIME ZONE :desk_tz)::date END AS queued_day,
         CASE WHEN NOT is_open THEN (decided AT TIME ZONE :desk_tz)::date END AS decided_day,
         (CASE WHEN kind < 55 THEN balance
               WHEN kind < 85 THEN balance - fees - interest * share / 100
               ELSE balance * (70 + share % 26) / 100 END + months - 1) / months AS monthly
  FROM e
)
SELECT s::int AS id, p.*,
       LEAST(monthly * months, balance) AS repaid,
       LEAST(balance - LEAST(monthly * months, balance), fees) AS fees_w,
       LEAST(GREATEST(balance - LEAST(monthly * months, balance) - fees, 0), interest) AS interest_w,
       GREATEST(balance - LEAST(monthly * months, balance) - fees - interest, 0) AS principal_w,
       CASE WHEN desk THEN GREATEST(0, COALESCE(decided_day, CAST(:desk_today AS date)) - queued_day) END
         AS days_waited
FROM p
"""

CASE_SQL = f"""
INSERT INTO hardship_case (id, borrower_id, account_id, state, reason, description, adults, children,
                           dependants, employment_status, steps_done, submitted_at, review_due_on,
                           closed_at, policy_version, vulnerable, priority, amount_band, relief_asked,
                           queued_at, claimed_by_id, claimed_at, first_approved_by_id, first_approved_at,
                           decided_by_id, decided_at, decision_reason, version, created_at, updated_at)
SELECT id, borrower_id, account_id, state,
       (ARRAY['illness', 'job_loss', 'income_drop', 'disaster', 'bereavement', 'other'])[1 + {_hc(6)} % 6],
       convert_to(CASE WHEN currency = 'USD'
            THEN (ARRAY['I lost my job in the spring and my savings are gone.',
                        'A long illness cut my hours; I can pay a little each month.',
                        'My income dropped when my business lost its main customer.'])[1 + {_hc(7)} % 3]
            ELSE (ARRAY['今年春天失业了。积蓄已经用完。', '生病后工作时间减少。每月只能还一部分。',
                        '生意失去了主要客户。收入大幅下降。'])[1 + {_hc(7)} % 3] END, 'UTF8'),
       1 + {_hc(7)} % 3, {_hc(6)} % 4, {_hc(7)} % 3,
       (ARRAY['employed', 'self_employed', 'unemployed', 'retired', 'student', 'unable_to_work', 'carer',
              'other'])[1 + {_hc(17)} % 8],
       CAST('["reason", "household", "income", "spending", "debts", "evidence"]' AS json),
       submitted_at,
       CASE WHEN desk THEN queued_day + :sla_days END,
       CASE WHEN state IN ('rejected', 'withdrawn', 'expired') THEN decided END,
       NULL,
       vulnerable,
       -- authority.priority: stage, whole days waited (until today, or until the decision), care, band
       CASE WHEN desk THEN stage_points + :per_day * days_waited
                           + CASE WHEN vulnerable THEN :vulnerable_points ELSE 0 END + :per_band * band
            ELSE 0 END,
       CASE WHEN desk THEN band ELSE 0 END,
       -- services.hardship.enqueue: a settlement, else the first of the proposal's sorted reliefs
       CASE WHEN NOT desk THEN NULL WHEN principal_w > 0 THEN 'settlement' WHEN fees_w > 0 THEN 'fee_waiver'
            ELSE 'instalment_plan' END,
       CASE WHEN desk THEN t0 END,
       CASE WHEN state IN ('claimed', 'awaiting_second_approval')
              OR (desk AND state IN ('approved', 'rejected', 'expired')) THEN agent END,
       CASE WHEN state IN ('claimed', 'awaiting_second_approval') THEN claimed
            WHEN desk AND state IN ('approved', 'rejected', 'expired') THEN t0 + (decided - t0) / 2 END,
       CASE WHEN state = 'awaiting_second_approval' THEN agent END,
       CASE WHEN state = 'awaiting_second_approval' THEN first_approved END,
       CASE WHEN desk AND state IN ('approved', 'rejected')
            THEN CASE WHEN by_supervisor THEN supervisor ELSE agent END END,
       CASE WHEN desk AND state IN ('approved', 'rejected') THEN decided END,
       CASE WHEN state = 'rejected'
            THEN (ARRAY['not_affordable', 'insufficient_information', 'proposal_too_low', 'not_eligible',
                        'fraud_suspected', 'other'])[1 + {_hc(19)} % 6] END,
       CASE state WHEN 'in_review' THEN 4 WHEN 'claimed' THEN 5 WHEN 'awaiting_second_approval' THEN 6
                  ELSE 6 END,
       created_at,
       CASE state WHEN 'in_review' THEN t0 WHEN 'claimed' THEN claimed
                  WHEN 'awaiting_second_approval' THEN first_approved ELSE decided END
FROM bench_case
ORDER BY id
"""

# The borrower's proposal of each case on the desk, as services.hardship.propose stores it
# (offers.proposal_offer, offer_to_dict): the whole balance, interest frozen, `months` payments of
# `monthly` from a month after the day it was made (in the borrower's time zone), the last what
# is left; a shortfall is waived fees first, then interest, then principal. total_saved adds the
# interest the contract's rate would have charged on the same payments (schedules.amortised,
# computed here month by month with exact integers and banker's rounding). Only the offer's
# "fingerprint" (a SHA-256 of Python reprs, which nothing reads back) is left out.
OFFER_SQL = """
INSERT INTO offer (id, hardship_case_id, origin, key, status, currency, instalment_amount,
                   instalment_count, total_repayable, waived_total, first_due_on, expires_on, terms,
                   created_by_id, created_at, decided_at)
WITH RECURSIVE o AS (
  SELECT row_number() OVER (ORDER BY c.id)::int AS offer_id, c.id AS case_id, c.currency, c.rate,
         c.months, c.monthly, c.repaid, c.principal, c.interest, c.fees, c.fees_w, c.interest_w,
         c.principal_w, c.t0, (c.t0 AT TIME ZONE b.time_zone)::date AS issued_on
  FROM bench_case c JOIN borrower b ON b.id = c.borrower_id
  WHERE c.is_open
), pw(rate, n, p) AS (  -- (12 x 10,000 + rate)^n, exactly
  SELECT rate, 0, CAST(1 AS numeric) FROM (SELECT DISTINCT rate FROM o UNION SELECT 0) AS x
  UNION ALL
  SELECT rate, n + 1, p * (120000 + rate) FROM pw WHERE n < 24
), pay AS (  -- schedules._level_payment_exact, rounded down
  SELECT o.offer_id, o.months, o.rate, o.repaid,
         CASE WHEN o.rate = 0 THEN 0
              ELSE div(o.repaid * o.rate * p.p, 120000 * (p.p - q.p))::bigint END AS payment
  FROM o JOIN pw p ON p.rate = o.rate AND p.n = o.months JOIN pw q ON q.rate = 0 AND q.n = o.months
), am(offer_id, m, n, rate, payment, balance, charged) AS (
  SELECT offer_id, 0, months, rate, payment, repaid, CAST(0 AS bigint) FROM pay
  UNION ALL
  SELECT offer_id, m + 1, n, rate, payment,
         CASE WHEN m + 1 = n THEN 0 ELSE balance + mi - LEAST(payment, balance + mi) END,
         charged + mi
  FROM am CROSS JOIN LATERAL (
    -- schedules.monthly_interest: balance x rate / 120,000, exact halves to the even unit
    SELECT balance * rate / 120000
           + CASE WHEN 2 * (balance * rate % 120000) > 120000
                    OR (2 * (balance * rate % 120000) = 120000 AND balance * rate / 120000 % 2 = 1)
                  THEN 1 ELSE 0 END AS mi
  ) AS x
  WHERE m < n
), f AS (
  SELECT o.*, am.charged AS forgone, o.repaid - o.monthly * (o.months - 1) AS last_amount,
         o.fees_w + o.interest_w + o.principal_w AS waived,
         (o.issued_on + INTERVAL '1 month')::date AS first_due,
         ((o.issued_on + INTERVAL '1 month')::date + make_interval(months => o.months - 1))::date AS end_on
  FROM o JOIN am ON am.offer_id = o.offer_id AND am.m = am.n
)
SELECT offer_id, case_id, 'borrower', 'proposal:' || monthly || 'x' || months, 'open', currency, monthly,
       months, repaid, waived, first_due, issued_on + :offer_days,
       json_build_object(
         'key', 'proposal:' || monthly || 'x' || months,
         'origin', 'borrower',
         'currency', currency,
         'scope', 'balance',
         'reliefs', to_json(array_remove(ARRAY[
             CASE WHEN fees_w > 0 THEN 'fee_waiver' END,
             'instalment_plan',
             CASE WHEN rate > 0 OR interest_w > 0 THEN 'interest_relief' END,
             CASE WHEN principal_w > 0 THEN 'settlement' END], NULL)),
         'covered', json_build_object('principal', principal, 'interest', interest, 'fees', fees),
         'waived', json_build_object('principal', principal_w, 'interest', interest_w, 'fees', fees_w),
         'schedule', (SELECT json_agg(json_build_object(
                                'number', k,
                                'due_on', (first_due + make_interval(months => k - 1))::date,
                                'amount', CASE WHEN k = months THEN last_amount ELSE monthly END) ORDER BY k)
                      FROM generate_series(1, months) AS k),
         'interest_charged', 0,
         'holiday_months', 0,
         'interest_frozen_months', CASE WHEN rate > 0 THEN months ELSE 0 END,
         'annual_rate_bp', 0,
         'settlement_amount', NULL,
         'monthly_payment', monthly,
         'instalment_amount', monthly,
         'instalment_count', months,
         'total_repayable', repaid,
         'total_waived', waived,
         'total_saved', waived + forgone,
         'fees_after', CASE WHEN fees = 0 THEN 'none' WHEN fees_w = 0 THEN 'repaid'
                            WHEN fees_w = fees THEN 'waived' ELSE 'partly_waived' END,
         'interest_treatment', CASE WHEN rate > 0 THEN 'frozen' ELSE 'charged' END,
         'issued_on', issued_on,  -- JSON writes dates as ISO 8601, whatever the DateStyle
         'expires_on', issued_on + :offer_days,
         'end_on', end_on),
       NULL, t0, NULL
FROM f
ORDER BY offer_id
"""

# Every case on the desk has exactly one open borrower proposal; every case's fields fit its state.
CASE_CONSISTENCY_SQL = """
SELECT count(*) FILTER (WHERE c.state IN ('in_review', 'claimed', 'awaiting_second_approval')
                          AND COALESCE(o.proposals, 0) <> 1) AS proposal,
       count(*) FILTER (WHERE c.state IN ('in_review', 'claimed', 'awaiting_second_approval')
                          AND (c.queued_at IS NULL OR c.review_due_on IS NULL OR c.relief_asked IS NULL
                               OR c.queued_at > now())) AS queue_fields,
       count(*) FILTER (WHERE (c.state IN ('claimed', 'awaiting_second_approval') AND c.claimed_by_id IS NULL)
                           OR (c.state = 'in_review' AND c.claimed_by_id IS NOT NULL)) AS claims,
       count(*) FILTER (WHERE (c.state = 'awaiting_second_approval') <> (c.first_approved_by_id IS NOT NULL))
         AS second_approval,
       count(*) FILTER (WHERE (c.state = 'rejected') <> (c.decision_reason IS NOT NULL)) AS decision_reason,
       count(*) FILTER (WHERE (c.state IN ('rejected', 'withdrawn', 'expired')) <> (c.closed_at IS NOT NULL))
         AS closed_at,
       count(*) FILTER (WHERE c.borrower_id <> a.borrower_id) AS borrower,
       count(*) FILTER (WHERE o.others > 0) AS other_offers
FROM hardship_case c
JOIN account a ON a.id = c.account_id
LEFT JOIN (SELECT hardship_case_id,
                  count(*) FILTER (WHERE origin = 'borrower' AND status = 'open') AS proposals,
                  count(*) FILTER (WHERE NOT (origin = 'borrower' AND status = 'open')) AS others
           FROM offer GROUP BY hardship_case_id) o ON o.hardship_case_id = c.id
"""


def seal_in_place(conn: Connection, table: str, columns: tuple[str, ...], batch: int = 100_000) -> None:
    """Seal the personal data the SQL above wrote in plain bytes (``convert_to(…, 'UTF8')``) as
    the application keeps it (``portal.crypto``: AES-256-GCM, the column bound in), with the keys
    the benchmarked server will read with: PostgreSQL cannot seal with AES-GCM itself. The sealed
    values go back by COPY into a temporary table and one UPDATE … FROM per batch."""
    from portal import crypto
    from portal.config import load_config

    ring = crypto.keyring_from_config(load_config())
    aads = [f"{table}.{column}".encode() for column in columns]
    conn.execute(
        text(
            f"CREATE TEMP TABLE sealed_{table} (id bigint PRIMARY KEY, "
            + ", ".join(f"{column} bytea" for column in columns)
            + ") ON COMMIT DROP"
        )
    )
    driver = conn.connection.driver_connection
    assert driver is not None
    last = 0
    while True:
        rows = conn.execute(
            text(f"SELECT id, {', '.join(columns)} FROM {table} WHERE id > :last ORDER BY id LIMIT :n"),
            {"last": last, "n": batch},
        ).all()
        if not rows:
            break
        last = rows[-1][0]
        names = ", ".join(columns)
        with driver.cursor() as cursor, cursor.copy(f"COPY sealed_{table} (id, {names}) FROM STDIN") as copy:
            for row_id, *values in rows:
                copy.write_row(
                    [row_id]
                    + [
                        None if v is None else ring.seal(bytes(v), aad)
                        for v, aad in zip(values, aads, strict=True)
                    ]
                )
        sets = ", ".join(f"{column} = s.{column}" for column in columns)
        conn.execute(text(f"UPDATE {table} t SET {sets} FROM sealed_{table} s WHERE t.id = s.id"))
        conn.execute(text(f"TRUNCATE sealed_{table}"))


def _bulk_insert(conn: Connection, table: str, sql: str, params: dict[str, object]) -> int:
    """Run an INSERT of many rows into an empty table with its foreign keys and secondary indexes
    set aside, then put them back from their own definitions (the indexes built, the keys
    validated, each in one pass): three times faster than checking and indexing row by row, and
    the same schema afterwards, in the same transaction."""
    table_oid = {"t": table}
    keys = conn.execute(
        text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = CAST(:t AS regclass) AND contype = 'f' ORDER BY conname"
        ),
        table_oid,
    ).all()
    indexes = conn.execute(
        text(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = CAST(:t AS regclass) "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) "
            "ORDER BY c.relname"
        ),
        table_oid,
    ).all()
    for name, _definition in keys:
        conn.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
    for name, _definition in indexes:
        conn.execute(text(f'DROP INDEX "{name}"'))
    rows = conn.execute(text(sql), params).rowcount
    for _name, definition in indexes:
        conn.execute(text(definition))
    for name, definition in keys:
        conn.execute(text(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'))
    return int(rows)


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
                report.cases = int(conn.scalar(text("SELECT count(*) FROM hardship_case")) or 0)
                report.offers = int(conn.scalar(text("SELECT count(*) FROM offer")) or 0)
                return report
            # 1,000,000 cases: plans without JIT (which takes seconds to compile them), sorts in memory.
            conn.execute(text("SET LOCAL jit = off"))
            conn.execute(text("SET LOCAL work_mem = '256MB'"))
            # History is append-only (triggers refuse TRUNCATE to everyone); the seeder, a superuser
            # on a benchmark's own database, switches triggers off for the truncate alone.
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE"))
            conn.execute(text("SET LOCAL session_replication_role = origin"))
            params = {
                "n": accounts,
                "c": CREDITORS,
                **policy_params(),
                **{k: days[zone] for k, zone in TIME_ZONES.items()},
                **desk_params(),
                "desk_today": days[str(desk_params()["desk_tz"])],
                "staff": json.dumps(
                    [dict(zip(("email", "full_name", "role"), s, strict=True)) for s in BENCH_STAFF]
                ),
            }
            t = _timed(report, "truncate", t)
            conn.execute(text(PLAN_SQL), params)
            conn.execute(text(CREDITOR_SQL), params)
            conn.execute(text(BORROWER_SQL), params)
            seal_in_place(conn, "borrower", ("date_of_birth", "national_id"))
            t = _timed(report, "borrowers", t)
            conn.execute(text(ACCOUNT_SQL), params)
            t = _timed(report, "accounts", t)
            report.ledger_entries = conn.execute(text(LEDGER_SQL), params).rowcount
            t = _timed(report, "ledger", t)
            conn.execute(text(STAFF_SQL), params)
            conn.execute(text(CASE_PLAN_SQL), params)
            t = _timed(report, "case_plan", t)
            report.cases = _bulk_insert(conn, "hardship_case", CASE_SQL, params)
            seal_in_place(conn, "hardship_case", ("description",))
            t = _timed(report, "cases", t)
            report.offers = _bulk_insert(conn, "offer", OFFER_SQL, params)
            t = _timed(report, "offers", t)
            for table in ("creditor", "borrower", "account", "ledger_entry", "hardship_case", "offer"):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
        t = _timed(report, "commit", t)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            tables = "creditor, borrower, account, ledger_entry, staff_user, hardship_case, offer"
            conn.execute(text(f"VACUUM (ANALYZE) {tables}"))
        t = _timed(report, "vacuum_analyze", t)
        verify(url, days)
        t = _timed(report, "verify", t)
        verify_cases(url, days)
        _timed(report, "verify_cases", t)
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


CASE_SAMPLE = 300  # cases on the desk checked one by one against the Python rules
CLOSED_SAMPLE = 100  # closed cases that went through the desk, likewise


def verify_cases(url: str, days: dict[str, str]) -> None:
    """Fail unless the cases fit their states (CASE_CONSISTENCY_SQL) and a sample of them has the
    band, priority, review date and relief the portal's own functions give
    (services.hardship.refresh_priority and enqueue), and, on the desk, the proposal
    offers.proposal_offer builds from the same monthly amount, count and day."""
    from sqlalchemy.orm import joinedload, selectinload

    from portal.models import HardshipCase

    desk = desk_params()
    tz = ZoneInfo(str(desk["desk_tz"]))
    desk_today = dt.date.fromisoformat(days[tz.key])
    problems: list[str] = []
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            counts = session.execute(text(CASE_CONSISTENCY_SQL)).mappings().one()
            problems += [f"{n} cases fail the {name} check" for name, n in counts.items() if n]
            ids = list(
                session.scalars(
                    text(
                        "(SELECT id FROM hardship_case WHERE state = ANY(:desk) "
                        " ORDER BY hashint4(id) LIMIT :k) "
                        "UNION ALL (SELECT id FROM hardship_case WHERE state <> ALL(:desk) "
                        " AND queued_at IS NOT NULL ORDER BY hashint4(id) LIMIT :closed)"
                    ),
                    {"desk": list(DESK_STATES), "k": CASE_SAMPLE, "closed": CLOSED_SAMPLE},
                )
            )
            cases = session.scalars(
                select(HardshipCase)
                .options(joinedload(HardshipCase.account), selectinload(HardshipCase.offers))
                .where(HardshipCase.id.in_(ids))
                .order_by(HardshipCase.id)
            ).all()
            for case in cases:
                problems += _case_problems(case, desk_today, tz, int(desk["sla_days"]))
            session.rollback()  # refresh_priority changed the sampled rows in memory only
    finally:
        engine.dispose()
    if len(cases) != len(ids) or not ids:
        problems.append(f"sampled {len(ids)} cases, loaded {len(cases)}")
    if problems:
        raise SystemExit(f"hardship case check failed: {'; '.join(problems[:5])} ({len(problems)} problems)")


def _case_problems(case: Any, desk_today: dt.date, tz: ZoneInfo, sla_days: int) -> list[str]:
    from portal.services import hardship as hardship_service
    from workflows import offers
    from workflows.policy import DEFAULT_POLICY

    found: list[str] = []
    stored = (case.amount_band, case.priority)
    on_desk = case.state in DESK_STATES
    # The day the priority was last refreshed: today on the desk, the decision's day once closed.
    day = (
        desk_today
        if on_desk
        else (case.closed_at or case.decided_at or case.updated_at).astimezone(tz).date()
    )
    hardship_service.refresh_priority(case, case.account, DEFAULT_POLICY, day)
    if (case.amount_band, case.priority) != stored:
        computed = (case.amount_band, case.priority)
        found.append(f"case {case.id}: band, priority {stored} but the policy gives {computed}")
    if case.review_due_on != case.queued_at.astimezone(tz).date() + dt.timedelta(days=sla_days):
        found.append(f"case {case.id}: review_due_on {case.review_due_on} is not queued day + {sla_days}")
    if not on_desk:
        return found
    proposal = next((o for o in case.offers if o.origin == "borrower" and o.status == "open"), None)
    if proposal is None:
        return [*found, f"case {case.id}: no open proposal"]
    reliefs = proposal.terms.get("reliefs") or []
    relief = "settlement" if "settlement" in reliefs else (reliefs[0] if reliefs else None)
    if case.relief_asked != relief:
        found.append(f"case {case.id}: relief_asked {case.relief_asked!r}, the proposal's is {relief!r}")
    monthly, _x, count = proposal.key.removeprefix("proposal:").partition("x")
    issued_on = dt.date.fromisoformat(proposal.terms["issued_on"])
    built = offers.proposal_offer(
        hardship_service.position(case.account), int(monthly), int(count), issued_on, DEFAULT_POLICY
    )
    expected = offers.offer_to_dict(built)
    expected.pop("fingerprint")
    if proposal.terms != expected:
        keys = sorted(k for k in expected.keys() | proposal.terms.keys()
                      if expected.get(k) != proposal.terms.get(k))  # fmt: skip
        found.append(f"case {case.id}: proposal terms differ from offers.proposal_offer in {keys}")
    row = hardship_service.offer_row(case, built, "borrower")
    columns = ("key", "currency", "instalment_amount", "instalment_count", "total_repayable", "waived_total",
               "first_due_on", "expires_on")  # fmt: skip
    if any(getattr(row, c) != getattr(proposal, c) for c in columns):
        found.append(f"case {case.id}: proposal columns differ from services.hardship.offer_row")
    return found


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
        f"{state} {report.accounts:,} accounts, {report.ledger_entries:,} ledger entries, "
        f"{report.cases:,} hardship cases, {report.offers:,} offers "
        f"in {report.total_seconds} s {report.seconds}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
