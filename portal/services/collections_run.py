"""The daily collections run: set-based SQL over every account, one transaction per step.

    run(session, run_date, actor=SYSTEM) -> RunReport

Steps, in order (``portal.models.collections.RUN_STEPS``):

1. ``dpd_stage``   days past due from ``oldest_unpaid_due_on``; the stage by the policy's
                   thresholds (legal kept unless charged off, charged off kept); stage history:
                   the open row closed and a new one opened where the stage changed (the first
                   run opens one for every account).
2. ``interest``    one interest entry per open account with principal and a rate, not charged
                   off, without a plan in force or a breathing space that stops fees; cause
                   ``accrual:<date>``; the cached interest balance moves by exactly those entries.
3. ``late_fees``   the policy's late fee on the day the grace days end and every 30 days after,
                   within the cap per account, not while fees are frozen; cause
                   ``late_fee:<oldest unpaid due date>:<period>``.
4. ``instalments`` ``autopay.check_plans``: instalments missed, plans broken.
5. ``promises``    open promises due before the run date: kept or broken by the payments received.
6. ``actions``     the stage strategies' actions that fall due today, unique per (account, rule,
                   day); none where a dispute, a cease-contact request or a breathing space stops
                   contact, or a plan is in force.

Each step commits on its own with its name appended to ``collection_run.steps_done`` and one
audit event with its counts, so a run killed half-way resumes at the next step, and every step
is also idempotent for its date on its own (NOT EXISTS on ledger causes, the actions' unique
key). ``workflows.collections.reference_day`` is the same run in plain Python; the tests compare.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from typing import cast as cast_type

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.db import UTCDateTime, utcnow
from portal.models import (
    Account,
    AccountPause,
    CollectionAction,
    CollectionRun,
    ContactPreference,
    DebtDispute,
    LedgerEntry,
    Payment,
    Plan,
    PolicyVersion,
    PromiseToPay,
    StageHistory,
)
from portal.models.collections import RUN_STEPS
from portal.services import audit, autopay
from portal.services import policy as policy_service
from portal.services.audit import SYSTEM, Actor
from portal.services.hardship import desk_today
from workflows.collections import INTEREST_DIVISOR, LATE_FEE_PERIOD_DAYS, accrual_cause
from workflows.errors import DomainError
from workflows.policy import DEFAULT_POLICY, Policy

A = cast_type(Table, Account.__table__)
L = cast_type(Table, LedgerEntry.__table__)
_ROWCOUNT: dict[str, Any] = {"execution_options": {"preserve_rowcount": True}}
"""INSERT … SELECT reports how many rows it inserted only when asked to (SQLAlchemy 2)."""


@dataclass
class RunReport:
    run_date: dt.date
    status: str
    policy_version: int | None
    steps_run: list[str] = field(default_factory=list)
    steps_skipped: list[str] = field(default_factory=list)
    """Done by an earlier attempt (a resumed or repeated run)."""
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def summary(self) -> str:
        done = ", ".join(f"{step} {self.counts.get(step, {})}" for step in self.steps_run) or "nothing to do"
        return f"collections run {self.run_date.isoformat()} ({self.status}): {done}"


# --- Portable SQL helpers -----------------------------------------------------------------------


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def days_since(session: Session, column: Any, day: dt.date) -> ColumnElement[int]:
    """Whole days from ``column`` (a date) to ``day``."""
    if _dialect(session) == "sqlite":
        return cast(func.julianday(literal(day.isoformat())) - func.julianday(column), Integer)
    return cast(literal(day) - column, Integer)  # PostgreSQL: date - date is an integer


def _round_half_even(numerator: Any, denominator: int) -> ColumnElement[int]:
    """numerator / denominator to the nearest integer, halves to even, in integer arithmetic
    (numerator >= 0): q = n div d, r = n mod d; q + 1 when 2r > d, or 2r = d and q is odd."""
    q = numerator // denominator
    r = numerator % denominator
    rounded: ColumnElement[int] = q + case(
        (or_(r * 2 > denominator, and_(r * 2 == denominator, q % 2 == 1)), 1), else_=0
    )
    return rounded


def _now() -> Any:
    return bindparam("now", utcnow(), type_=UTCDateTime())


def _plan_active() -> ColumnElement[bool]:
    return exists(select(1).where(Plan.account_id == A.c.id, Plan.status == "active"))


def _pause(day: dt.date, flag: Any) -> ColumnElement[bool]:
    return exists(
        select(1).where(
            AccountPause.account_id == A.c.id,
            flag.is_(True),
            AccountPause.starts_on <= day,
            AccountPause.ends_on >= day,
            AccountPause.lifted_at.is_(None),
        )
    )


def _contact_stopped(day: dt.date) -> ColumnElement[bool]:
    return or_(
        exists(select(1).where(DebtDispute.account_id == A.c.id, DebtDispute.status == "open")),
        exists(
            select(1).where(
                ContactPreference.borrower_id == A.c.borrower_id,
                ContactPreference.cease_contact_at.is_not(None),
            )
        ),
        _pause(day, AccountPause.pauses_contact),
    )


def _cause_absent(cause: Any, day: dt.date | None = None) -> ColumnElement[bool]:
    where = [L.c.account_id == A.c.id, L.c.cause == cause]
    if day is not None:
        where.append(L.c.effective_on == day)  # narrows to the (account_id, effective_on) index
    return ~exists(select(1).select_from(L).where(*where))


def _post_entries(
    session: Session,
    *,
    component: str,
    kind: str,
    amount: Any,
    cause: Any,
    memo: str,
    where: list[Any],
    balance: str,
    day: dt.date,
    actor: Actor,
) -> tuple[int, int]:
    """INSERT … SELECT one entry per account matching ``where``, then move the cached balance
    by exactly the entries just inserted (ids above the highest before), same transaction.
    (One statement — the UPDATE reading the INSERT's RETURNING in a CTE — was tried on
    PostgreSQL: 53 to 55 s against 39 to 43 s for a million accounts; the planner cannot estimate a
    CTE's rows and joins them row by row.)"""
    before = session.scalar(select(func.coalesce(func.max(L.c.id), 0))) or 0
    rows = select(
        A.c.id,
        literal(component),
        literal(kind),
        amount,
        cause,
        literal(memo),
        literal(actor.type),
        literal(actor.id, Integer),
        literal(day),
        _now(),
    ).where(*where)
    columns = ["account_id", "component", "kind", "amount", "cause", "memo", "actor_type", "actor_id"]
    inserted = insert(L).from_select([*columns, "effective_on", "posted_at"], rows)
    session.execute(inserted, **_ROWCOUNT)
    new = (
        select(L.c.account_id, L.c.amount)
        .where(L.c.id > before, L.c.effective_on == day, L.c.kind == kind, L.c.component == component)
        .subquery()
    )
    moved = session.execute(
        update(A)
        .where(A.c.id == new.c.account_id)
        .values({balance: A.c[balance] + new.c.amount, "version": A.c.version + 1, "updated_at": _now()})
    )
    total = session.scalar(
        select(func.coalesce(func.sum(L.c.amount), 0)).where(
            L.c.id > before, L.c.effective_on == day, L.c.kind == kind
        )
    )
    return moved.rowcount, int(total or 0)  # type: ignore[attr-defined]


# --- Steps ----------------------------------------------------------------------------------------


def _dpd_stage(session: Session, day: dt.date, policy: Policy, actor: Actor) -> dict[str, int]:
    oldest = A.c.oldest_unpaid_due_on
    new_dpd = case(
        (or_(oldest.is_(None), oldest >= day), 0),
        else_=days_since(session, oldest, day),
    )

    def past(days: int) -> ColumnElement[bool]:
        # dpd >= days  <=>  the oldest unpaid due date is at least that many days ago (days >= 1)
        return and_(oldest.is_not(None), oldest <= day - dt.timedelta(days=days))

    new_stage = case(
        (A.c.stage == "charged_off", "charged_off"),
        (past(policy.charge_off_dpd), "charged_off"),
        (A.c.stage == "legal", "legal"),
        (past(policy.late_from_dpd), "late"),
        (past(policy.mid_from_dpd), "mid"),
        (past(policy.early_from_dpd), "early"),
        else_="current",
    )
    updated = session.execute(
        update(A)
        .where(A.c.status == "open", or_(A.c.dpd != new_dpd, A.c.stage != new_stage))
        .values(dpd=new_dpd, stage=new_stage, version=A.c.version + 1, updated_at=_now())
    ).rowcount  # type: ignore[attr-defined]
    h = cast_type(Table, StageHistory.__table__)
    left = session.execute(
        update(h)
        .where(
            h.c.left_on.is_(None),
            exists(select(1).where(A.c.id == h.c.account_id, A.c.stage != h.c.stage)),
        )
        .values(left_on=day)
    ).rowcount  # type: ignore[attr-defined]
    entered = session.execute(
        insert(h).from_select(
            ["account_id", "stage", "entered_on"],
            select(A.c.id, A.c.stage, literal(day)).where(
                ~exists(select(1).where(h.c.account_id == A.c.id, h.c.left_on.is_(None)))
            ),
        ),
        **_ROWCOUNT,
    ).rowcount  # type: ignore[attr-defined]
    return {"accounts_updated": updated, "stages_left": left, "stages_entered": entered}


def _interest(session: Session, day: dt.date, policy: Policy, actor: Actor) -> dict[str, int]:
    product = A.c.principal_balance * A.c.annual_rate_bp
    cause = accrual_cause(day)
    accounts, total = _post_entries(
        session,
        component="interest",
        kind="interest",
        amount=_round_half_even(product, INTEREST_DIVISOR),
        cause=literal(cause),
        memo="Daily interest",
        where=[
            A.c.status == "open",
            A.c.stage != "charged_off",
            A.c.principal_balance > 0,
            A.c.annual_rate_bp > 0,
            product * 2 > INTEREST_DIVISOR,  # rounds to at least one minor unit
            ~_plan_active(),
            ~_pause(day, AccountPause.stops_fees),
            _cause_absent(literal(cause), day),
        ],
        balance="interest_balance",
        day=day,
        actor=actor,
    )
    return {"entries": accounts, "amount": total}


def _by_currency(table: Mapping[str, int], currencies: list[str]) -> ColumnElement[int]:
    return case(*((A.c.currency == c, table[c]) for c in currencies), else_=0)


def _late_fees(session: Session, day: dt.date, policy: Policy, actor: Actor) -> dict[str, int]:
    currencies = sorted(
        c
        for c, amount in policy.late_fee_amount.items()
        if amount > 0 and c in policy.late_fee_cap_per_account
    )
    if not currencies:
        return {"entries": 0, "amount": 0}
    grace = policy.late_fee_grace_days
    fee_days = [d for d in range(grace, policy.charge_off_dpd, LATE_FEE_PERIOD_DAYS) if d >= max(grace, 1)]
    if not fee_days:
        return {"entries": 0, "amount": 0}
    amount = _by_currency(policy.late_fee_amount, currencies)
    cap = _by_currency(policy.late_fee_cap_per_account, currencies)
    since = A.c.dpd - grace
    period = since // LATE_FEE_PERIOD_DAYS + 1
    cause = (
        literal("late_fee:") + cast(A.c.oldest_unpaid_due_on, String) + literal(":") + cast(period, String)
    )
    charged = (
        select(func.coalesce(func.sum(L.c.amount), 0))
        .where(L.c.account_id == A.c.id, L.c.kind == "fee")
        .scalar_subquery()
    )
    accounts, total = _post_entries(
        session,
        component="fees",
        kind="fee",
        amount=amount,
        cause=cause,
        memo="Late fee",
        where=[
            A.c.status == "open",
            A.c.stage != "charged_off",
            A.c.oldest_unpaid_due_on.is_not(None),
            A.c.currency.in_(currencies),
            # The days a fee falls due (grace, grace + 30, …): an IN list the (stage, dpd) index
            # serves, instead of a remainder that makes the database read every overdue account.
            A.c.dpd.in_(fee_days),
            ~_plan_active(),
            ~_pause(day, AccountPause.stops_fees),
            charged + amount <= cap,
            _cause_absent(cause),
        ],
        balance="fees_balance",
        day=day,
        actor=actor,
    )
    return {"entries": accounts, "amount": total}


def _instalments(session: Session, day: dt.date, policy: Policy, actor: Actor) -> dict[str, int]:
    report = autopay.check_plans(session, day)
    return {"missed": report.missed, "broken": report.broken}


def _promises(session: Session, day: dt.date, policy: Policy, actor: Actor) -> dict[str, int]:
    p = cast_type(Table, PromiseToPay.__table__)
    paid = (
        select(func.coalesce(func.sum(Payment.amount - Payment.reversed_amount), 0))
        .where(
            Payment.account_id == p.c.account_id,
            Payment.status == "succeeded",
            Payment.received_on >= p.c.promised_on,
            Payment.received_on <= p.c.due_on,
        )
        .scalar_subquery()
    )
    due = (p.c.status == "open", p.c.due_on < day)
    kept = session.execute(
        update(p).where(*due, paid >= p.c.amount).values(status="kept", paid_amount=paid, decided_on=day)
    ).rowcount  # type: ignore[attr-defined]
    broken = session.execute(
        update(p).where(*due).values(status="broken", paid_amount=paid, decided_on=day)
    ).rowcount  # type: ignore[attr-defined]
    return {"kept": kept, "broken": broken}


def _actions(session: Session, day: dt.date, policy: Policy, actor: Actor) -> dict[str, int]:
    t = cast_type(Table, CollectionAction.__table__)
    created = 0
    stopped = _contact_stopped(day)
    for stage, steps in policy.collections.strategies.items():
        for step in steps:
            rule_key = step.rule_key(stage)
            if step.anchor == "dpd":
                fires = A.c.dpd == step.day
            else:
                fires = A.c.next_due_on == day + dt.timedelta(days=step.day)
            rows = select(
                A.c.id,
                literal(day),
                literal(rule_key),
                literal(step.kind),
                literal(step.channel, String),
                literal(step.template, String),
                literal(stage),
                literal(step.priority),
                literal("pending"),
                _now(),
            ).where(
                A.c.status == "open",
                A.c.stage == stage,
                fires,
                ~_plan_active(),
                ~stopped,
                ~exists(
                    select(1).where(t.c.account_id == A.c.id, t.c.rule_key == rule_key, t.c.run_date == day)
                ),
            )
            columns = ["account_id", "run_date", "rule_key", "kind", "channel", "template", "stage"]
            created += session.execute(
                insert(t).from_select([*columns, "priority", "status", "created_at"], rows), **_ROWCOUNT
            ).rowcount  # type: ignore[attr-defined]
    return {"created": created}


Step = Callable[[Session, dt.date, Policy, Actor], dict[str, int]]

STEPS: dict[str, Step] = {
    "dpd_stage": _dpd_stage,
    "interest": _interest,
    "late_fees": _late_fees,
    "instalments": _instalments,
    "promises": _promises,
    "actions": _actions,
}
assert tuple(STEPS) == RUN_STEPS


# --- The run --------------------------------------------------------------------------------------


def _check_date(session: Session, run_date: dt.date, today: dt.date) -> None:
    if run_date > today:
        raise DomainError(
            "collections_run_future",
            "The run for {run_date} cannot be made before that day (today is {today}).",
            run_date=run_date.isoformat(),
            today=today.isoformat(),
        )
    last = session.scalar(select(func.max(CollectionRun.run_date)).where(CollectionRun.status == "completed"))
    if last is not None and run_date < last:
        raise DomainError(
            "collections_run_closed",
            "{run_date} is closed: the run for {last} has already been completed.",
            run_date=run_date.isoformat(),
            last=last.isoformat(),
        )


def _run_row(session: Session, run_date: dt.date) -> CollectionRun:
    """The run's row, made (and committed) on the first attempt; found again on a later one."""
    row = session.scalar(select(CollectionRun).where(CollectionRun.run_date == run_date))
    if row is not None:
        return row
    version, _ = policy_service.current_version(session, run_date)
    row = CollectionRun(run_date=run_date, status="running", steps_done=[], counts={}, policy_version=version)
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # another runner made it first
        session.rollback()
        row = session.scalars(select(CollectionRun).where(CollectionRun.run_date == run_date)).one()
    return row


def _policy(session: Session, row: CollectionRun) -> Policy:
    """The policy the run started with, so a resumed run finishes under the same rules."""
    if row.policy_version is None:
        return DEFAULT_POLICY
    data = session.scalar(select(PolicyVersion.data).where(PolicyVersion.version == row.policy_version))
    return Policy.from_dict(data) if data is not None else DEFAULT_POLICY


def _lock(session: Session, run_id: int) -> CollectionRun:
    return session.scalars(
        select(CollectionRun)
        .where(CollectionRun.id == run_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def run(
    session: Session, run_date: dt.date, *, actor: Actor = SYSTEM, today: dt.date | None = None
) -> RunReport:
    """Run (or resume, or repeat harmlessly) the day's collections for ``run_date``.

    Refused: a date after the desk's today (Asia/Shanghai), or before the last completed run."""
    today = today or desk_today()
    _check_date(session, run_date, today)
    row = _run_row(session, run_date)
    policy = _policy(session, row)
    report = RunReport(run_date=run_date, status=row.status, policy_version=row.policy_version)
    for name, step in STEPS.items():
        # Locked for the step (PostgreSQL): a second runner of the same date waits, then skips.
        row = _lock(session, row.id)
        if name in row.steps_done:
            report.steps_skipped.append(name)
            session.rollback()
            continue
        counts = step(session, run_date, policy, actor)
        row = _lock(session, row.id)  # instalments commits inside autopay.check_plans
        row.steps_done = [*row.steps_done, name]
        row.counts = {**row.counts, name: counts}
        audit.record(
            session,
            actor,
            f"collections.{name}",
            "collection_run",
            row.id,
            after={"run_date": run_date, "step": name, "counts": counts},
        )
        session.commit()
        report.steps_run.append(name)
        report.counts[name] = counts
    row = _lock(session, row.id)
    if row.status != "completed":
        row.status = "completed"
        row.finished_at = utcnow()
        audit.record(
            session,
            actor,
            "collections.completed",
            "collection_run",
            row.id,
            before={"status": "running"},
            after={"status": "completed", "run_date": run_date, "counts": row.counts},
        )
    session.commit()
    report.status = row.status
    return report
