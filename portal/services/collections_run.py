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

Each step commits with its name appended to ``collection_run.steps_done`` and one audit event
with its counts, so a run killed half-way resumes at the next step, and every step is also
idempotent for its date on its own (no second entry with the same cause, the actions' unique
key). Steps 1-3 run together (``TOGETHER``): one transaction, one UPDATE that writes each account
row once (days past due, stage, interest and fees balances) and posts the entries from the rows
it wrote — still recorded, counted and audited step by step; killed there, none of the three is
done. ``workflows.collections.reference_day`` is the same run in plain Python; the tests compare.

Speed (``bench/collections.py``, bench/README.md): ``dpd``, new on every overdue account every
day, is in no index (one index fewer to write per row, and a heap-only update possible where the
page has room: on PostgreSQL ``account`` is filled to half, migration e5f2a8b1c4d6, so every page
has room each day); the late fees and the actions find "dpd = d" through ``(stage,
oldest_unpaid_due_on)`` as "oldest unpaid due date = day - d", and the accrual's idempotency
check reads only the day's entries, through ``ledger_entry.effective_on``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from typing import cast as cast_type

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Integer,
    MetaData,
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
    text,
    union_all,
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
from workflows.collections import INTEREST_DIVISOR, LATE_FEE_PERIOD_DAYS, STAGE_NAMES, accrual_cause
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
        where.append(L.c.effective_on == day)  # the day's entries only (an index each way)
    return ~exists(select(1).select_from(L).where(*where))


@dataclass
class _Entries:
    """One kind of ledger entry to post, at most one per account, each moving that account's
    cached ``balance`` by exactly its amount: ``amount`` on every account where ``due`` holds.
    ``due_after``: ``due`` as it reads once the step's UPDATE has run (SQLite posts after it),
    when that UPDATE moves a column ``due`` reads (the stage)."""

    component: str
    kind: str
    memo: str
    balance: str
    amount: ColumnElement[int]
    cause: ColumnElement[str]
    due: list[ColumnElement[bool]]
    due_after: list[ColumnElement[bool]] | None = None


def _post(
    session: Session,
    kinds: list[_Entries],
    day: dt.date,
    actor: Actor,
    *,
    changed: ColumnElement[bool] | None = None,
    values: Mapping[str, Any] | None = None,
) -> tuple[int, list[tuple[int, int]]]:
    """Move the cached balances and post the entries that explain them, writing each account row
    once: ``values`` are further columns the same UPDATE sets, on the open accounts where
    ``changed`` holds as well as on those with an entry due. Returns the number of accounts
    ``changed`` held for (read in the same snapshot as the UPDATE) and, per kind, the entries
    posted and their total.

    PostgreSQL: ``WITH moved AS (UPDATE account … RETURNING id, amounts, causes) INSERT INTO
    <temporary table> SELECT * FROM moved``, then ``INSERT INTO ledger_entry SELECT … FROM <that
    table>``: each entry is the very amount its account's balance moved by, computed on the row
    the UPDATE wrote (a concurrent change to the account is waited for and read again), and
    nothing joins the entries back to the accounts. (The entries straight from the CTE, in one
    statement, interleave the ledger's writes with the account's: 57-70 s against 52-54 s for
    a million accounts.)
    SQLite: the UPDATE, then an INSERT … SELECT of each kind by the same conditions, in one
    transaction that holds the database's write lock from the UPDATE on."""
    assert len({k.balance for k in kinds}) == len(kinds), "one kind of entry per balance"
    single = len(kinds) == 1 and changed is None
    charged = [k.amount if single else case((and_(*k.due), k.amount), else_=0) for k in kinds]
    where = (
        kinds[0].due
        if single
        else [A.c.status == "open", or_(*(and_(*k.due) for k in kinds), *_present(changed))]
    )
    moves = {k.balance: A.c[k.balance] + amount for k, amount in zip(kinds, charged, strict=True)}
    values = {**(values or {}), **moves, "version": A.c.version + 1, "updated_at": _now()}
    columns = ["account_id", "component", "kind", "amount", "cause", "memo", "actor_type", "actor_id"]
    columns += ["effective_on", "posted_at"]

    def entries(k: _Entries, source: Any, account_id: Any, amount: Any, cause: Any) -> Any:
        return select(
            account_id,
            literal(k.component),
            literal(k.kind),
            amount,
            cause,
            literal(k.memo),
            literal(actor.type),
            literal(actor.id, Integer),
            literal(day),
            _now(),
        ).select_from(source)

    counted: Any = literal(0)
    if changed is not None:
        counted = select(func.count()).select_from(A).where(A.c.status == "open", changed).scalar_subquery()
    if _dialect(session) == "postgresql":
        returned = [A.c.id.label("account_id")]
        for n, (k, amount) in enumerate(zip(kinds, charged, strict=True)):
            returned += [amount.label(f"amount_{n}"), k.cause.label(f"cause_{n}")]
        moved = update(A).where(*where).values(values).returning(*returned).cte("moved")
        kept = _moved_table(session, len(kinds))
        into_kept = insert(kept).from_select([c.name for c in kept.c], select(moved)).cte("kept")
        counted_n = session.scalar(select(counted).add_cte(into_kept))
        rows = union_all(
            *(
                entries(k, kept, kept.c.account_id, kept.c[f"amount_{n}"], kept.c[f"cause_{n}"]).where(
                    kept.c[f"amount_{n}"] != 0
                )
                for n, k in enumerate(kinds)
            )
        )
        posted = insert(L).from_select(columns, rows).returning(L.c.kind, L.c.amount).cte("posted")
        sums = []
        for k in kinds:
            mine = posted.c.kind == k.kind
            sums += [func.count().filter(mine), func.coalesce(func.sum(posted.c.amount).filter(mine), 0)]
        row = session.execute(select(*sums).select_from(posted)).one()
        kept.drop(session.connection())  # at once: the step's transaction may be a savepoint
        return int(counted_n or 0), [(int(row[2 * n]), int(row[1 + 2 * n])) for n in range(len(kinds))]
    counted_n = session.scalar(select(counted)) or 0
    session.execute(update(A).where(*where).values(values))
    out = []
    for k in kinds:
        before = session.scalar(select(func.coalesce(func.max(L.c.id), 0))) or 0
        due = k.due_after if k.due_after is not None else k.due
        rows = entries(k, A, A.c.id, k.amount, k.cause).where(*due)
        inserted = session.execute(insert(L).from_select(columns, rows), **_ROWCOUNT).rowcount  # type: ignore[attr-defined]
        total = session.scalar(
            select(func.coalesce(func.sum(L.c.amount), 0)).where(
                L.c.id > before, L.c.effective_on == day, L.c.kind == k.kind
            )
        )
        out.append((int(inserted), int(total or 0)))
    return int(counted_n), out


def _moved_table(session: Session, kinds: int) -> Table:
    """A temporary table (PostgreSQL: not WAL-logged, in this session's own buffers) for what
    the step's UPDATE returned, so that the INSERT of the entries reads it after the UPDATE
    instead of interleaved with it."""
    columns: list[Column[Any]] = [Column("account_id", BigInteger)]
    for n in range(kinds):
        columns += [Column(f"amount_{n}", BigInteger), Column(f"cause_{n}", String(120))]
    kept = Table(
        "collections_run_moved",
        MetaData(),
        *columns,
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DROP",
    )
    kept.create(session.connection())
    return kept


def _present(condition: ColumnElement[bool] | None) -> list[ColumnElement[bool]]:
    return [] if condition is None else [condition]


# --- Steps ----------------------------------------------------------------------------------------


def _dpd_and_stage(
    session: Session, day: dt.date, policy: Policy
) -> tuple[ColumnElement[int], ColumnElement[str]]:
    """Days past due and the stage for ``day``, as expressions over the account row."""
    oldest = A.c.oldest_unpaid_due_on
    new_dpd = case(
        (or_(oldest.is_(None), oldest >= day), 0),
        else_=days_since(session, oldest, day),
    )

    def past(days: int) -> ColumnElement[bool]:
        # dpd >= days  <=>  the oldest unpaid due date is at least that many days ago (days >= 1)
        return and_(oldest.is_not(None), oldest <= day - dt.timedelta(days=days))

    new_stage: ColumnElement[str] = case(
        (A.c.stage == "charged_off", "charged_off"),
        (past(policy.charge_off_dpd), "charged_off"),
        (A.c.stage == "legal", "legal"),
        (past(policy.late_from_dpd), "late"),
        (past(policy.mid_from_dpd), "mid"),
        (past(policy.early_from_dpd), "early"),
        else_="current",
    )
    return new_dpd, new_stage


def _stage_history(session: Session, day: dt.date) -> dict[str, int]:
    """The open stage-history row follows the account's stage: closed where they differ, and a
    new one opened for every account without one (the first run opens one for every account)."""
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
    return {"stages_left": left, "stages_entered": entered}


def _dpd_stage(session: Session, day: dt.date, policy: Policy, actor: Actor) -> dict[str, int]:
    new_dpd, new_stage = _dpd_and_stage(session, day, policy)
    updated = session.execute(
        update(A)
        .where(A.c.status == "open", or_(A.c.dpd != new_dpd, A.c.stage != new_stage))
        .values(dpd=new_dpd, stage=new_stage, version=A.c.version + 1, updated_at=_now())
    ).rowcount  # type: ignore[attr-defined]
    return {"accounts_updated": updated, **_stage_history(session, day)}


def _interest_entries(day: dt.date, stage: ColumnElement[str]) -> _Entries:
    """The day's interest (``stage``: the account's stage for the day): on open accounts not
    charged off, with principal and a rate whose day's interest rounds to at least one minor
    unit, no plan in force, no breathing space that stops fees, and none accrued yet."""
    product = A.c.principal_balance * A.c.annual_rate_bp
    cause = literal(accrual_cause(day), String)

    def due(stage: ColumnElement[str]) -> list[ColumnElement[bool]]:
        return [
            A.c.status == "open",
            stage != "charged_off",
            A.c.principal_balance > 0,
            A.c.annual_rate_bp > 0,
            product * 2 > INTEREST_DIVISOR,  # rounds to at least one minor unit
            ~_plan_active(),
            ~_pause(day, AccountPause.stops_fees),
            _cause_absent(cause, day),
        ]

    return _Entries(
        component="interest",
        kind="interest",
        memo="Daily interest",
        balance="interest_balance",
        amount=_round_half_even(product, INTEREST_DIVISOR),
        cause=cause,
        due=due(stage),
        due_after=due(A.c.stage),
    )


def _interest(session: Session, day: dt.date, policy: Policy, actor: Actor) -> dict[str, int]:
    _, [(entries, total)] = _post(session, [_interest_entries(day, A.c.stage)], day, actor)
    return {"entries": entries, "amount": total}


def _by_currency(table: Mapping[str, int], currencies: list[str]) -> ColumnElement[int]:
    return case(*((A.c.currency == c, table[c]) for c in currencies), else_=0)


def _late_fee_entries(
    day: dt.date, policy: Policy, dpd: ColumnElement[int], stage: ColumnElement[str]
) -> _Entries | None:
    """The policy's late fee (``dpd``, ``stage``: the account's for the day) on the day the grace
    days end and every 30 days after, within the cap per account, not while fees are frozen;
    None when the policy charges none."""
    currencies = sorted(
        c
        for c, amount in policy.late_fee_amount.items()
        if amount > 0 and c in policy.late_fee_cap_per_account
    )
    grace = policy.late_fee_grace_days
    fee_days = [d for d in range(grace, policy.charge_off_dpd, LATE_FEE_PERIOD_DAYS) if d >= max(grace, 1)]
    if not currencies or not fee_days:
        return None
    amount = _by_currency(policy.late_fee_amount, currencies)
    cap = _by_currency(policy.late_fee_cap_per_account, currencies)
    period = (dpd - grace) // LATE_FEE_PERIOD_DAYS + 1
    cause = (
        literal("late_fee:") + cast(A.c.oldest_unpaid_due_on, String) + literal(":") + cast(period, String)
    )
    charged = (
        select(func.coalesce(func.sum(L.c.amount), 0))
        .where(L.c.account_id == A.c.id, L.c.kind == "fee")
        .scalar_subquery()
    )
    posted_already = (
        select(func.count()).where(L.c.account_id == A.c.id, L.c.cause == cause).scalar_subquery()
    )
    # Days past due is the days since the oldest unpaid due date: the days a fee falls due
    # (grace, grace + 30, …) are those due dates, which the (stage, oldest_unpaid_due_on) index
    # finds stage by stage, without reading every overdue account.
    due_dates = [day - dt.timedelta(days=d) for d in fee_days]

    def due(dpd: ColumnElement[int], stage: ColumnElement[str]) -> list[ColumnElement[bool]]:
        return [
            A.c.status == "open",
            stage.in_([s for s in STAGE_NAMES if s != "charged_off"]),
            A.c.oldest_unpaid_due_on.in_(due_dates),
            dpd.in_(fee_days),
            A.c.currency.in_(currencies),
            ~_plan_active(),
            ~_pause(day, AccountPause.stops_fees),
            charged + amount <= cap,
            # Counted, not NOT EXISTS: inside the run's CASE expressions PostgreSQL would hash
            # every cause in the ledger for an EXISTS; a count is probed only for the accounts
            # that reach it (those with a fee due today).
            posted_already == 0,
        ]

    return _Entries(
        component="fees",
        kind="fee",
        memo="Late fee",
        balance="fees_balance",
        amount=amount,
        cause=cause,
        due=due(dpd, stage),
        due_after=due(A.c.dpd, A.c.stage),
    )


def _late_fees(session: Session, day: dt.date, policy: Policy, actor: Actor) -> dict[str, int]:
    fees = _late_fee_entries(day, policy, A.c.dpd, A.c.stage)
    if fees is None:
        return {"entries": 0, "amount": 0}
    _, [(entries, total)] = _post(session, [fees], day, actor)
    return {"entries": entries, "amount": total}


def _the_day_on_accounts(
    session: Session, day: dt.date, policy: Policy, actor: Actor
) -> dict[str, dict[str, int]]:
    """``dpd_stage``, ``interest`` and ``late_fees`` in one pass over the accounts: one UPDATE
    sets each account's days past due and stage and moves its interest and fees balances by the
    day's accrual and late fee (reckoned on the days past due and stage it moves to), and the
    entries are posted from the rows it wrote. Each account row is written once a day instead of
    up to three times; the counts are those the three steps report on their own."""
    new_dpd, new_stage = _dpd_and_stage(session, day, policy)
    kinds = [_interest_entries(day, new_stage)]
    fees = _late_fee_entries(day, policy, new_dpd, new_stage)
    if fees is not None:
        kinds.append(fees)
    updated, posted = _post(
        session,
        kinds,
        day,
        actor,
        changed=or_(A.c.dpd != new_dpd, A.c.stage != new_stage),
        values={"dpd": new_dpd, "stage": new_stage},
    )
    (interest, interest_total), (fee_entries, fee_total) = posted[0], (posted[1:] or [(0, 0)])[0]
    return {
        "dpd_stage": {"accounts_updated": updated, **_stage_history(session, day)},
        "interest": {"entries": interest, "amount": interest_total},
        "late_fees": {"entries": fee_entries, "amount": fee_total},
    }


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
            if step.anchor == "dpd" and step.day >= 1:
                # dpd = d (d >= 1) is an oldest unpaid due date d days ago: the index serves it.
                fires = and_(
                    A.c.dpd == step.day, A.c.oldest_unpaid_due_on == day - dt.timedelta(days=step.day)
                )
            elif step.anchor == "dpd":
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

Together = Callable[[Session, dt.date, Policy, Actor], dict[str, dict[str, int]]]

TOGETHER: dict[tuple[str, ...], Together] = {("dpd_stage", "interest", "late_fees"): _the_day_on_accounts}
"""Consecutive steps the run does in one transaction with one function when none is done yet
(each is still recorded, counted and audited as itself); a run resumed between them (begun by an
older version of the run) does the rest step by step."""


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


def _settings(session: Session) -> None:
    """For the step's transaction on PostgreSQL (SET LOCAL ends with it): no JIT compilation
    (it spends about 0.3 s compiling each of the run's statements, 1 s on the big UPDATE, and
    gains nothing on such simple expressions), and room for the hashes of the anti-joins and the
    rows the UPDATE hands to the INSERT (64 MB, this one connection) instead of temporary files.
    Nothing here touches durability: every step commits as any transaction does (WAL flushed)."""
    if _dialect(session) == "postgresql":
        session.execute(text("SET LOCAL jit = off"))
        session.execute(text("SET LOCAL work_mem = '64MB'"))


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
    names = list(STEPS)
    while names:
        # Locked for the step (PostgreSQL): a second runner of the same date waits, then skips.
        row = _lock(session, row.id)
        if names[0] in row.steps_done:
            report.steps_skipped.append(names.pop(0))
            session.rollback()
            continue
        together = next(
            (
                (group, work)
                for group, work in TOGETHER.items()
                if tuple(names[: len(group)]) == group and not set(group) & set(row.steps_done)
            ),
            None,
        )
        _settings(session)
        if together is not None:
            group, work = together
            done = work(session, run_date, policy, actor)
        else:
            group = (names[0],)
            done = {names[0]: STEPS[names[0]](session, run_date, policy, actor)}
        row = _lock(session, row.id)  # instalments commits inside autopay.check_plans
        for name in group:
            counts = done[name]
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
        for name in group:
            report.steps_run.append(name)
            report.counts[name] = done[name]
        del names[: len(group)]
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
