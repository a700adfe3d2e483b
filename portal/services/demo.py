"""Demo data for development: a creditor, ~300 borrowers with realistic accounts, one staff user per role.

Deterministic (seeded Faker) and idempotent: re-running adds only what is missing. Every
balance is built through the ledger service, so `flask ledger verify` holds on demo data too.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

import pyotp
from faker import Faker
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.models import Account, Borrower, CollectionAction, Creditor, HardshipCase, StaffUser
from portal.services import audit, borrower_portal, hardship, ledger
from portal.services import policy as policy_service
from portal.services.audit import SYSTEM
from portal.services.staff import hash_password
from workflows.access import Role
from workflows.affordability import BudgetCategory, Frequency
from workflows.delinquency import days_past_due, stage_for
from workflows.errors import DomainError
from workflows.ledger import EntryKind, Posting, postings_for_allocation
from workflows.money import Component, allocate, round_half_even
from workflows.policy import Policy, Stage

DEMO_CREDITOR = "DEMO"
DEMO_PASSWORD = "accord-demo-2026"  # noqa: S105 - demo only; refused in production  # nosec B105
DEMO_STAFF = [
    (Role.AGENT, "agent@demo.accord.example", "王协商 Wang Xieshang"),
    (Role.SUPERVISOR, "supervisor@demo.accord.example", "李主管 Li Zhuguan"),
    (Role.COLLECTOR, "collector@demo.accord.example", "赵催收 Zhao Cuishou"),
    (Role.FINANCE, "finance@demo.accord.example", "陈财务 Chen Caiwu"),
    (Role.ADMIN, "admin@demo.accord.example", "周管理 Zhou Guanli"),
]
# Share of accounts per stage, and the days-past-due range each stage draws from.
STAGE_MIX = [
    (Stage.CURRENT, 0.12, (0, 0)),
    (Stage.EARLY, 0.30, (1, 30)),
    (Stage.MID, 0.25, (31, 90)),
    (Stage.LATE, 0.23, (91, 179)),
    (Stage.LEGAL, 0.10, (120, 179)),
]


class DemoRefusedError(RuntimeError):
    pass


@dataclass(frozen=True)
class SeedResult:
    borrowers_created: int
    accounts_created: int
    staff_created: int


def seed(session: Session, *, env: str, today: dt.date, borrowers: int = 300) -> SeedResult:
    if env == "production":
        raise DemoRefusedError("Demo data is refused in production.")
    policy = policy_service.current(session, today)
    creditor = session.scalar(select(Creditor).where(Creditor.code == DEMO_CREDITOR))
    if creditor is None:
        creditor = Creditor(code=DEMO_CREDITOR, name="示范银行 Demo Bank")
        session.add(creditor)
        session.flush()
    existing = set(
        session.scalars(select(Account.external_reference).where(Account.creditor_id == creditor.id))
    )
    fakers = {"zh_Hans_CN": Faker("zh_CN"), "en": Faker("en_US")}
    for i, f in enumerate(fakers.values()):
        f.seed_instance(2026 + i)
    rng = random.Random(2026)  # noqa: S311 - reproducible demo data, not secrets  # nosec B311
    made_borrowers = made_accounts = 0
    for n in range(1, borrowers + 1):
        plan = _plan_borrower(rng, n, today)  # drawn even when skipped, so data stays the same
        language = "zh_Hans_CN" if n % 4 else "en"
        fake = fakers[language]
        profile = _profile(fake, rng, language, n)
        refs = [a["reference"] for a in plan]
        if all(ref in existing for ref in refs):
            continue
        borrower = Borrower(**profile)
        session.add(borrower)
        session.flush()
        audit.record(session, SYSTEM, "borrower.created", "borrower", borrower.id, after={"source": "demo"})
        made_borrowers += 1
        for spec in plan:
            if spec["reference"] in existing:
                continue
            _create_account(session, creditor, borrower, spec, policy=policy, today=today)
            made_accounts += 1
        session.commit()
    staff_created = _seed_staff(session)
    session.commit()
    _seed_hardship_cases(session, creditor)
    _seed_call_tasks(session, creditor, today)
    return SeedResult(made_borrowers, made_accounts, staff_created)


DEMO_CALL_TASKS = 6
"""Call tasks on mid- and late-stage accounts, so the collector's work list has work before the
first daily run (the run creates the real ones; these carry their own rule key)."""


def _seed_call_tasks(session: Session, creditor: Creditor, today: dt.date) -> None:
    accounts = session.scalars(
        select(Account)
        .where(
            Account.creditor_id == creditor.id,
            Account.status == "open",
            Account.stage.in_([Stage.MID.value, Stage.LATE.value]),
        )
        .order_by(Account.id)
        .limit(DEMO_CALL_TASKS)
    ).all()
    have = set(
        session.scalars(
            select(CollectionAction.account_id).where(
                CollectionAction.rule_key == "demo:call_task", CollectionAction.run_date == today
            )
        )
    )
    for account in accounts:
        if account.id in have:
            continue
        session.add(
            CollectionAction(
                account_id=account.id,
                run_date=today,
                rule_key="demo:call_task",
                kind="call_task",
                channel="call",
                stage=account.stage,
                priority=account.dpd,
            )
        )
    session.commit()


DEMO_CASES = 8
"""Requests for help waiting in the negotiation queue, so the desk has work on a fresh demo."""


def _seed_hardship_cases(session: Session, creditor: Creditor) -> None:
    """A few borrowers (from the end of the list: the sign-in examples stay untouched) who filled
    in the statement and sent their own proposal, through the same services as the portal."""
    if session.scalar(select(HardshipCase.id).limit(1)) is not None:
        return
    candidates = session.scalars(
        select(Account)
        .where(Account.creditor_id == creditor.id, Account.stage.in_([Stage.MID.value, Stage.LATE.value]))
        .order_by(Account.id.desc())
        .limit(DEMO_CASES)
    ).all()
    incomes = (620_000, 480_000, 910_000, 350_000, 1_250_000, 540_000, 700_000, 430_000)
    for n, account in enumerate(candidates):
        borrower = account.borrower
        case = hardship.start(session, borrower, account.id)
        hardship.save_reason(
            session,
            borrower,
            case.id,
            reason=("job_loss", "illness", "income_drop", "bereavement")[n % 4],
            description="Demo: my income fell this autumn and I cannot keep up the full payments.",
        )
        hardship.save_household(
            session,
            borrower,
            case.id,
            adults=1 + n % 2,
            children=n % 3,
            dependants=0,
            employment_status=("unemployed", "employed", "self_employed", "unable_to_work")[n % 4],
        )
        today = borrower_portal.borrower_today(borrower)
        scale = 1 if account.currency in ("CNY",) else 7  # USD/EUR incomes in smaller numbers
        lines = {
            "income": {BudgetCategory.EARNINGS: hardship.LineInput(incomes[n] // scale, Frequency.MONTHLY)},
            "spending": {
                BudgetCategory.HOUSING: hardship.LineInput(180_000 // scale, Frequency.MONTHLY),
                BudgetCategory.FOOD_HOUSEKEEPING: hardship.LineInput(25_000 // scale, Frequency.WEEKLY),
                BudgetCategory.UTILITIES: hardship.LineInput(30_000 // scale, Frequency.MONTHLY),
            },
            "debts": {},
        }
        for step, step_lines in lines.items():
            hardship.save_budget(session, borrower, case.id, step, step_lines, today=today)
        hardship.finish_evidence_step(session, borrower, case.id)
        try:
            hardship.submit(session, borrower, case.id, today=today)
            monthly = max(account.total_balance // 36, 1)
            hardship.propose(
                session, borrower, case.id, monthly_amount=monthly, count=24 + 6 * (n % 3), today=today
            )
        except DomainError:
            session.rollback()  # figures this borrower cannot send: the draft stays a draft


def _profile(fake: Faker, rng: random.Random, language: str, n: int) -> dict[str, object]:
    born = fake.date_of_birth(minimum_age=21, maximum_age=70)
    if language == "en":
        phone = f"+1{rng.randint(201, 989)}{rng.randint(2000000, 9999999)}"
        tz, country = "America/New_York", "US"
    else:
        phone = f"+86{rng.choice(['138', '139', '150', '186', '177'])}{rng.randint(10000000, 99999999)}"
        tz, country = "Asia/Shanghai", "CN"
    business = n % 25 == 0
    return {
        "kind": "business" if business else "person",
        "full_name": fake.name(),
        "company_name": fake.company() if business else None,
        "registration_number": f"91310000{rng.randint(10**9, 10**10 - 1)}" if business else None,
        "date_of_birth": born,
        "national_id": f"{rng.randint(110000, 659000)}{born:%Y%m%d}{rng.randint(1000, 9999)}"
        if language != "en"
        else f"{rng.randint(100, 899)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
        "phone": phone,
        "email": fake.email(),
        "language": language,
        "time_zone": tz,
        "address_line1": fake.street_address(),
        "city": fake.city(),
        "postal_code": fake.postcode(),
        "country": country,
    }


def _plan_borrower(rng: random.Random, n: int, today: dt.date) -> list[dict[str, object]]:
    count = 2 if rng.random() < 0.15 else 1
    specs = []
    for k in range(count):
        roll, acc = rng.random(), 0.0
        stage, low, high = STAGE_MIX[-1][0], *STAGE_MIX[-1][2]
        for candidate, share, (lo, hi) in STAGE_MIX:
            acc += share
            if roll < acc:
                stage, low, high = candidate, lo, hi
                break
        card = rng.random() < 0.4
        principal = (
            rng.randrange(300_00, 60_000_00, 100) if card else rng.randrange(5_000_00, 200_000_00, 100)
        )
        specs.append(
            {
                "reference": f"{'CC' if card else 'LN'}-{n:05d}-{k + 1}",
                "product_type": "credit_card" if card else "loan",
                "principal": principal,
                "rate_bp": rng.choice([1490, 1825, 2400]) if card else rng.choice([690, 980, 1540]),
                "dpd": rng.randint(low, high),
                "stage": stage,
                "age_months": rng.randint(8, 48),
                "payments": rng.randint(0, 4),
            }
        )
    return specs


def _months_back(day: dt.date, months: int) -> dt.date:
    month_index = day.year * 12 + day.month - 1 - months
    return dt.date(month_index // 12, month_index % 12 + 1, min(day.day, 28))


def _history(
    spec: dict[str, object],
    policy: Policy,
    *,
    opened: dt.date,
    oldest_unpaid: dt.date | None,
    today: dt.date,
) -> list[tuple[dt.date, EntryKind]]:
    """The account's life in date order: monthly interest, the part payments the borrower made
    before falling behind, and a late fee for each missed month past the grace days (capped)."""
    payments = int(spec["payments"])  # type: ignore[call-overload]
    dpd = int(spec["dpd"])  # type: ignore[call-overload]
    events: list[tuple[dt.date, EntryKind]] = []
    for months_ago in range(payments + dpd // 30 + 1):
        events.append((_months_back(today, months_ago), EntryKind.INTEREST))
    arrears_from = oldest_unpaid or today
    for p in range(payments):
        events.append((arrears_from - dt.timedelta(days=10 + 30 * p), EntryKind.PAYMENT))
    fee_days = [
        arrears_from + dt.timedelta(days=policy.late_fee_grace_days + 30 * m)
        for m in range(dpd // 30 + 1)
        if dpd > policy.late_fee_grace_days + 30 * m
    ]
    events.extend((day, EntryKind.FEE) for day in fee_days)
    order = {EntryKind.INTEREST: 0, EntryKind.FEE: 1, EntryKind.PAYMENT: 2}
    return sorted(
        ((day, kind) for day, kind in events if opened < day <= today),
        key=lambda event: (event[0], order[event[1]]),
    )


def _create_account(
    session: Session,
    creditor: Creditor,
    borrower: Borrower,
    spec: dict[str, object],
    *,
    policy: Policy,
    today: dt.date,
) -> Account:
    dpd = int(spec["dpd"])  # type: ignore[call-overload]
    principal = int(spec["principal"])  # type: ignore[call-overload]
    rate_bp = int(spec["rate_bp"])  # type: ignore[call-overload]
    opened = _months_back(today, int(spec["age_months"]))  # type: ignore[call-overload]
    oldest_unpaid = today - dt.timedelta(days=dpd) if dpd else None
    account = Account(
        creditor_id=creditor.id,
        borrower_id=borrower.id,
        external_reference=str(spec["reference"]),
        product_type=str(spec["product_type"]),
        currency="CNY" if borrower.language != "en" else "USD",
        annual_rate_bp=rate_bp,
        opened_on=opened,
        oldest_unpaid_due_on=oldest_unpaid,
    )
    session.add(account)
    session.flush()
    audit.record(
        session,
        SYSTEM,
        "account.created",
        "account",
        account.id,
        after={"external_reference": account.external_reference, "source": "demo"},
    )
    cause = f"demo:{account.external_reference}"
    ledger.post(
        session,
        account,
        EntryKind.CHARGE,
        [Posting(Component.PRINCIPAL, principal)],
        cause=cause,
        actor=SYSTEM,
        effective_on=opened,
    )
    fee = policy.late_fee_amount.get(account.currency, 0)
    fee_cap = policy.late_fee_cap_per_account.get(account.currency, 0)
    fees_charged = 0
    for day, kind in _history(spec, policy, opened=opened, oldest_unpaid=oldest_unpaid, today=today):
        if kind is EntryKind.INTEREST:
            amount = round_half_even(account.principal_balance * rate_bp, 12 * 10_000)
            postings = [Posting(Component.INTEREST, amount)] if amount else []
        elif kind is EntryKind.FEE:
            postings = [Posting(Component.FEES, fee)] if fee and fees_charged + fee <= fee_cap else []
            fees_charged += fee if postings else 0
        else:  # a part payment, allocated by the default waterfall as a real one would be
            allocation = allocate(round_half_even(account.total_balance, 12), account.balances())
            postings = postings_for_allocation(allocation)
        if postings:
            ledger.post(session, account, kind, postings, cause=cause, actor=SYSTEM, effective_on=day)
    # The lender's schedule: a monthly instalment; what fell due and was not paid is overdue.
    instalment = round_half_even(account.total_balance, 12)
    missed = dpd // 30 + 1 if dpd else 0
    account.overdue_amount = min(account.total_balance, instalment * missed + account.fees_balance)
    next_due = (oldest_unpaid or today) + dt.timedelta(days=30 * missed)
    account.next_due_on = next_due if next_due > today else today + dt.timedelta(days=30)
    account.next_due_amount = instalment
    with audit.change(session, SYSTEM, "account.stage_set", account, ["dpd", "stage"]):
        account.dpd = days_past_due(oldest_unpaid, today)
        referred = spec["stage"] == Stage.LEGAL
        account.stage = stage_for(account.dpd, policy, referred_to_legal=referred).value
    return account


def sign_in_examples(session: Session) -> list[tuple[str, str, dt.date]]:
    """A demo borrower in each language with something overdue: (language, reference, date of birth)."""
    examples = []
    for language in ("zh_Hans_CN", "en"):
        row = session.execute(
            select(Account.external_reference, Borrower.date_of_birth)
            .join(Borrower, Account.borrower_id == Borrower.id)
            .join(Creditor, Account.creditor_id == Creditor.id)
            .where(Creditor.code == DEMO_CREDITOR, Borrower.language == language, Account.dpd > 30)
            .order_by(Account.id)
            .limit(1)
        ).first()
        if row is not None and row[1] is not None:
            examples.append((language, row[0], row[1]))
    return examples


def _seed_staff(session: Session) -> int:
    created = 0
    password_hash = None
    for role, email, name in DEMO_STAFF:
        if session.scalar(select(StaffUser.id).where(StaffUser.email == email)) is not None:
            continue
        password_hash = password_hash or hash_password(DEMO_PASSWORD)
        # Enrolled already: `flask demo totp EMAIL` prints the code an authenticator would show.
        user = StaffUser(
            email=email,
            full_name=name,
            role=role.value,
            password_hash=password_hash,
            totp_secret=pyotp.random_base32(),
            totp_confirmed_at=dt.datetime.now(dt.UTC),
        )
        session.add(user)
        session.flush()
        audit.record(
            session,
            SYSTEM,
            "staff.created",
            "staff_user",
            user.id,
            after={"email": email, "role": role.value, "source": "demo"},
        )
        created += 1
    return created
