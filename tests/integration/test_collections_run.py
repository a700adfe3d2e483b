"""The daily collections run against its slow Python reference (workflows.collections), on
randomised portfolios over consecutive days; reruns, crashes half-way, refused dates."""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from portal.models import (
    Account,
    AccountPause,
    AuditEvent,
    Borrower,
    CollectionAction,
    CollectionRun,
    ContactPreference,
    DebtDispute,
    LedgerEntry,
    Payment,
    Plan,
    PromiseToPay,
    StageHistory,
)
from portal.services import collections_run, ledger
from portal.services.audit import SYSTEM
from tests import factories, plan_support
from workflows.collections import RunFacts, promise_status, reference_day
from workflows.errors import DomainError
from workflows.policy import DEFAULT_POLICY

START = dt.date(2026, 6, 1)
TODAY = START + dt.timedelta(days=20)  # the desk's today, for the future-date check
POLICY = DEFAULT_POLICY
# Days on which something happens: strategy steps, the end of the fee grace, stage thresholds.
INTERESTING = (1, 3, 5, 7, 15, 21, 31, 35, 45, 60, 65, 75, 85, 91, 95, 100, 110, 120, 125, 179, 180)
UTC_NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)


def _portfolio(session: Session, rng: random.Random, n: int) -> list[int]:  # noqa: PLR0912
    """``n`` accounts with random balances, rates, due dates and stages, plus plans, breathing
    spaces, disputes, cease-contact requests and promises with payments."""
    creditor = factories.creditor(session)
    borrower_ids = session.scalars(
        insert(Borrower).returning(Borrower.id),
        [
            {
                "full_name": f"借款人{i}",
                "phone": f"+86139{rng.randrange(10**8):08d}",
                "language": "zh_Hans_CN",
            }
            for i in range(n)
        ],
    ).all()
    rows: list[dict[str, Any]] = []
    for i, borrower_id in enumerate(borrower_ids):
        if rng.random() < 0.2:
            oldest = None
        elif rng.random() < 0.6:
            oldest = START - dt.timedelta(days=rng.choice(INTERESTING) - rng.randrange(5))
        else:
            oldest = START - dt.timedelta(days=rng.randrange(-3, 250))
        stage = rng.choices(["current", "legal", "charged_off"], [90, 6, 4])[0]
        currency = rng.choice(["CNY", "CNY", "CNY", "USD"])
        principal = 0 if rng.random() < 0.05 else rng.randrange(1_000, 5_000_000)
        rows.append(
            {
                "creditor_id": creditor.id,
                "borrower_id": borrower_id,
                "external_reference": f"CR-{i:05d}-{rng.randrange(10**6)}",
                "product_type": rng.choice(["loan", "credit_card"]),
                "currency": currency,
                "annual_rate_bp": rng.choice([0, 1, 690, 1490, 1825, 2400, 3650]),
                "opened_on": dt.date(2025, 1, 1),
                "oldest_unpaid_due_on": oldest,
                "next_due_on": None
                if rng.random() < 0.1
                else START + dt.timedelta(days=rng.randrange(-2, 12)),
                "principal_balance": principal,
                "interest_balance": 0,
                "fees_balance": rng.choice([0, 0, 0, 5_000, 20_000, 45_000, 50_000]),
                "stage": stage,
                "status": "open" if rng.random() < 0.95 else "closed",
            }
        )
    ids = session.scalars(insert(Account).returning(Account.id), rows).all()
    entries = []
    for account_id, row in zip(ids, rows, strict=True):
        for component, kind, amount in (
            ("principal", "charge", row["principal_balance"]),
            ("fees", "fee", row["fees_balance"]),
        ):
            if amount:
                entries.append(
                    {
                        "account_id": account_id,
                        "component": component,
                        "kind": kind,
                        "amount": amount,
                        "cause": "test:placement",
                        "actor_type": "system",
                        "effective_on": dt.date(2025, 1, 1),
                    }
                )
    session.execute(insert(LedgerEntry), entries)
    session.commit()
    accounts = {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(ids)))}
    picks = rng.sample(ids, 60)
    # Plans in force: some will break on the first day (an instalment missed 40 days ago).
    for account_id in picks[:10]:
        due = START - dt.timedelta(days=rng.choice([40, 10, -5]))
        plan_support.plan(session, [due, due + dt.timedelta(days=30)], account=accounts[account_id])
    for account_id in picks[10:25]:
        starts = START + dt.timedelta(days=rng.randrange(-3, 3))
        session.add(
            AccountPause(
                account_id=account_id,
                starts_on=starts,
                ends_on=starts + dt.timedelta(days=rng.randrange(0, 4)),
                stops_fees=rng.random() < 0.6,
                pauses_contact=rng.random() < 0.6,
                lifted_at=UTC_NOW if rng.random() < 0.2 else None,
            )
        )
    for account_id in picks[25:33]:
        session.add(
            DebtDispute(
                account_id=account_id,
                borrower_id=accounts[account_id].borrower_id,
                reason="amount_wrong",
                detail="Not what I borrowed.",
                status=rng.choice(["open", "open", "rejected"]),
            )
        )
    for account_id in picks[33:39]:
        session.add(
            ContactPreference(
                borrower_id=accounts[account_id].borrower_id, opted_out_channels=[], cease_contact_at=UTC_NOW
            )
        )
    for k, account_id in enumerate(picks[39:60]):
        account = accounts[account_id]
        promised_on = START - dt.timedelta(days=rng.randrange(1, 10))
        due_on = START + dt.timedelta(days=rng.randrange(-2, 4))
        amount = rng.randrange(1_000, 100_000)
        session.add(
            PromiseToPay(
                account_id=account_id,
                amount=amount,
                currency=account.currency,
                promised_on=promised_on,
                due_on=due_on,
            )
        )
        for j in range(rng.randrange(0, 3)):
            session.add(
                Payment(
                    account_id=account_id,
                    borrower_id=account.borrower_id,
                    purpose="amount",
                    amount=rng.randrange(500, amount),
                    currency=account.currency,
                    idempotency_key=f"collections-test-{account_id}-{k}-{j}",
                    status=rng.choice(["succeeded", "succeeded", "failed"]),
                    received_on=promised_on + dt.timedelta(days=rng.randrange(-1, 8)),
                )
            )
    session.commit()
    return list(ids)


def _facts(session: Session, day: dt.date) -> list[RunFacts]:
    """Every account as the run will find it, in plain values (read the slow, obvious way)."""
    plans = set(session.scalars(select(Plan.account_id).where(Plan.status == "active")))
    fees_paused: set[int] = set()
    contact_paused: set[int] = set()
    for pause in session.scalars(select(AccountPause)):
        if pause.lifted_at is None and pause.starts_on <= day <= pause.ends_on:
            if pause.stops_fees:
                fees_paused.add(pause.account_id)
            if pause.pauses_contact:
                contact_paused.add(pause.account_id)
    disputed = set(session.scalars(select(DebtDispute.account_id).where(DebtDispute.status == "open")))
    ceased = set(
        session.scalars(
            select(ContactPreference.borrower_id).where(ContactPreference.cease_contact_at.is_not(None))
        )
    )
    fees: dict[int, int] = defaultdict(int)
    causes: dict[int, set[str]] = defaultdict(set)
    for entry in session.scalars(select(LedgerEntry)):
        causes[entry.account_id].add(entry.cause)
        if entry.kind == "fee":
            fees[entry.account_id] += entry.amount
    return [
        RunFacts(
            account_id=a.id,
            currency=a.currency,
            oldest_unpaid_due_on=a.oldest_unpaid_due_on,
            next_due_on=a.next_due_on,
            stage=a.stage,
            principal=a.principal_balance,
            rate_bp=a.annual_rate_bp,
            fees_charged=fees[a.id],
            status=a.status,
            plan_active=a.id in plans,
            fees_paused=a.id in fees_paused,
            contact_stopped=a.id in disputed or a.borrower_id in ceased or a.id in contact_paused,
            causes=frozenset(causes[a.id]),
        )
        for a in session.scalars(select(Account).order_by(Account.id))
    ]


def _expected_promises(session: Session, day: dt.date) -> dict[int, tuple[str, int]]:
    payments = defaultdict(list)
    for p in session.scalars(select(Payment).where(Payment.status == "succeeded")):
        if p.received_on is not None:
            payments[p.account_id].append((p.received_on, p.amount - p.reversed_amount))
    out = {}
    for promise in session.scalars(select(PromiseToPay).where(PromiseToPay.status == "open")):
        status, paid = promise_status(
            amount=promise.amount,
            promised_on=promise.promised_on,
            due_on=promise.due_on,
            payments=payments[promise.account_id],
            today=day,
        )
        if status != "open":
            out[promise.id] = (status, paid)
    return out


def _check_day(
    session: Session, day: dt.date, facts: list[RunFacts], promises: dict[int, tuple[str, int]]
) -> None:
    """The database after the run equals the reference, account by account."""
    session.expire_all()
    plans_after = set(session.scalars(select(Plan.account_id).where(Plan.status == "active")))
    facts = [replace(f, plan_active_for_actions=f.account_id in plans_after) for f in facts]
    expected = reference_day(facts, POLICY, day)
    status = dict(session.execute(select(Account.id, Account.status)).all())
    got = {
        row.id: (row.dpd, row.stage)
        for row in session.execute(select(Account.id, Account.dpd, Account.stage))
    }
    assert {i: (o.dpd, o.stage) for i, o in expected.items() if status[i] == "open"} == {
        i: v for i, v in got.items() if status[i] == "open"
    }
    # A closed account is left as it was.
    assert {f.account_id: f.stage for f in facts if f.status != "open"} == {
        i: stage for i, (_, stage) in got.items() if status[i] != "open"
    }
    interest = dict(
        session.execute(
            select(LedgerEntry.account_id, LedgerEntry.amount).where(
                LedgerEntry.cause == f"accrual:{day.isoformat()}"
            )
        ).all()
    )
    assert interest == {i: o.interest for i, o in expected.items() if o.interest}
    fees = {
        a: (cause, amount)
        for a, cause, amount in session.execute(
            select(LedgerEntry.account_id, LedgerEntry.cause, LedgerEntry.amount).where(
                LedgerEntry.kind == "fee", LedgerEntry.effective_on == day
            )
        )
    }
    assert fees == {i: (o.fee_cause, o.fee) for i, o in expected.items() if o.fee}
    actions = {
        (r.account_id, r.rule_key, r.kind, r.channel, r.template, r.stage, r.priority)
        for r in session.scalars(select(CollectionAction).where(CollectionAction.run_date == day))
    }
    assert actions == {
        (i, a.rule_key, a.kind, a.channel, a.template, a.stage, a.priority)
        for i, o in expected.items()
        for a in o.actions
    }
    decided = {
        p.id: (p.status, p.paid_amount)
        for p in session.scalars(select(PromiseToPay).where(PromiseToPay.decided_on == day))
    }
    assert decided == promises
    # One open stage-history row per account, in the account's stage.
    open_rows = session.execute(
        select(StageHistory.account_id, StageHistory.stage).where(StageHistory.left_on.is_(None))
    ).all()
    assert sorted(open_rows) == sorted(session.execute(select(Account.id, Account.stage)).all())
    assert ledger.discrepancies(session) == []


def _move_schedules(session: Session, rng: random.Random, ids: list[int], day: dt.date) -> None:
    """Between runs the lender's schedule feed changes a few accounts: paid up, newly overdue,
    a new due date; a supervisor refers one to legal."""
    for account_id in rng.sample(ids, 12):
        session.execute(
            update(Account)
            .where(Account.id == account_id)
            .values(
                oldest_unpaid_due_on=rng.choice([None, day - dt.timedelta(days=rng.randrange(0, 40))]),
                next_due_on=day + dt.timedelta(days=rng.randrange(0, 6)),
            )
        )
    session.execute(update(Account).where(Account.id == rng.choice(ids)).values(stage="legal"))
    session.commit()


def test_daily_runs_over_a_random_portfolio_match_the_reference(session: Session) -> None:
    rng = random.Random(8)  # noqa: S311 (a seeded, repeatable portfolio)
    ids = _portfolio(session, rng, 200)
    checked_actions = 0
    for offset in range(5):
        day = START + dt.timedelta(days=offset)
        facts = _facts(session, day)
        promises = _expected_promises(session, day)
        report = collections_run.run(session, day, actor=SYSTEM, today=TODAY)
        assert report.status == "completed" and report.steps_run == list(collections_run.STEPS)
        _check_day(session, day, facts, promises)
        checked_actions += report.counts["actions"]["created"]
        _move_schedules(session, rng, ids, day + dt.timedelta(days=1))
    # The portfolio exercised the rules: actions, interest and fees were all created.
    assert checked_actions > 20
    assert session.scalar(
        select(func.count()).where(LedgerEntry.kind == "fee", LedgerEntry.cause.like("late_fee:%"))
    )
    assert session.scalar(
        select(func.count()).select_from(StageHistory).where(StageHistory.left_on.is_not(None))
    )
    events = session.scalars(
        select(AuditEvent.action).where(AuditEvent.object_type == "collection_run")
    ).all()
    assert events.count("collections.interest") == 5 and events.count("collections.completed") == 5


def _snapshot(session: Session) -> tuple[Any, ...]:
    session.expire_all()
    return (
        session.execute(
            select(LedgerEntry.id, LedgerEntry.account_id, LedgerEntry.cause, LedgerEntry.amount).order_by(
                LedgerEntry.id
            )
        ).all(),
        session.execute(
            select(
                CollectionAction.account_id, CollectionAction.rule_key, CollectionAction.run_date
            ).order_by(CollectionAction.id)
        ).all(),
        session.execute(
            select(
                Account.id, Account.dpd, Account.stage, Account.interest_balance, Account.fees_balance
            ).order_by(Account.id)
        ).all(),
        session.execute(select(StageHistory.account_id, StageHistory.stage, StageHistory.left_on)).all(),
        session.execute(select(PromiseToPay.id, PromiseToPay.status)).all(),
    )


def test_running_a_day_twice_changes_nothing(session: Session) -> None:
    rng = random.Random(11)  # noqa: S311 (a seeded, repeatable portfolio)
    _portfolio(session, rng, 120)
    collections_run.run(session, START, today=TODAY)
    before = _snapshot(session)
    again = collections_run.run(session, START, today=TODAY)
    assert again.steps_run == [] and again.steps_skipped == list(collections_run.STEPS)
    assert _snapshot(session) == before
    assert ledger.discrepancies(session) == []
    # Every step is idempotent on its own too (NOT EXISTS on causes, the actions' unique key):
    # called again straight after itself it finds nothing to do. (Called now, the interest step
    # would charge the accounts whose plan the instalments step broke after it ran this morning.)
    for name, step in collections_run.STEPS.items():
        step(session, START, POLICY, SYSTEM)
        session.commit()
        if name != "instalments":
            counts = step(session, START, POLICY, SYSTEM)
            session.commit()
            assert not any(counts.values()), (name, counts)
    assert ledger.discrepancies(session) == []


@pytest.mark.parametrize(
    "crash_in", ["dpd_stage, interest and late_fees", "interest step by step", "actions"]
)
def test_a_run_killed_half_way_resumes_and_ends_as_an_uninterrupted_run(
    session: Session, monkeypatch: pytest.MonkeyPatch, crash_in: str
) -> None:
    """dpd_stage, interest and late_fees run together (one transaction): killed there, none is
    done. "step by step": a run begun by an older version, which did dpd_stage on its own and
    died in interest, is resumed with interest and late_fees each on its own."""
    rng = random.Random(5)  # noqa: S311 (a seeded, repeatable portfolio)
    _portfolio(session, rng, 150)
    facts = _facts(session, START)
    promises = _expected_promises(session, START)
    table: dict[Any, Any] = collections_run.STEPS
    key: Any = crash_in
    together = ("dpd_stage", "interest", "late_fees")
    assert together in collections_run.TOGETHER
    if crash_in == "dpd_stage, interest and late_fees":
        table, key = collections_run.TOGETHER, together
    elif crash_in == "interest step by step":
        key = "interest"
        monkeypatch.delitem(collections_run.TOGETHER, together)
    real = table[key]

    def crash(*args: Any) -> Any:
        real(*args)  # the step's work is done, then the process dies before it commits
        raise RuntimeError("killed")

    monkeypatch.setitem(table, key, crash)
    with pytest.raises(RuntimeError):
        collections_run.run(session, START, today=TODAY)
    session.rollback()
    row = session.scalars(select(CollectionRun).where(CollectionRun.run_date == START)).one()
    steps = list(collections_run.STEPS)
    first = key[0] if isinstance(key, tuple) else key
    assert row.status == "running" and row.steps_done == steps[: steps.index(first)]
    monkeypatch.undo()  # the run as it ships resumes it
    report = collections_run.run(session, START, today=TODAY)
    assert report.steps_skipped == steps[: steps.index(first)]
    assert report.steps_run == steps[steps.index(first) :]
    assert report.status == "completed"
    _check_day(session, START, facts, promises)
    events = session.scalars(
        select(AuditEvent.action).where(AuditEvent.object_type == "collection_run")
    ).all()
    assert sorted(events) == sorted([*(f"collections.{s}" for s in steps), "collections.completed"])


def test_a_future_date_and_a_closed_date_are_refused_with_nothing_changed(session: Session) -> None:
    _portfolio(session, random.Random(3), 80)  # noqa: S311 (a seeded, repeatable portfolio)
    with pytest.raises(DomainError) as future:
        collections_run.run(session, TODAY + dt.timedelta(days=1), today=TODAY)
    assert future.value.code == "collections_run_future"
    assert "cannot be made before that day" in str(future.value)
    collections_run.run(session, START + dt.timedelta(days=1), today=TODAY)
    before = _snapshot(session)
    with pytest.raises(DomainError) as closed:
        collections_run.run(session, START, today=TODAY)
    assert closed.value.code == "collections_run_closed"
    assert (
        str(closed.value)
        == f"{START.isoformat()} is closed: the run for 2026-06-02 has already been completed."
    )
    assert _snapshot(session) == before
    assert session.scalar(select(func.count()).select_from(CollectionRun)) == 1


def test_a_simulation_compares_a_changed_strategy_with_the_current_one_and_writes_nothing(
    session: Session,
) -> None:
    from portal.services import strategy_simulation
    from workflows.collections import StrategyStep
    from workflows.policy import CollectionsPolicy

    _portfolio(session, random.Random(21), 150)  # noqa: S311 (a seeded, repeatable portfolio)
    for offset in range(3):
        collections_run.run(session, START + dt.timedelta(days=offset), today=TODAY)
    before = _snapshot(session)
    last = START + dt.timedelta(days=2)
    same = strategy_simulation.simulate(session, POLICY, days=3, until=last)
    assert same.rows and all(row.current == row.proposed for row in same.rows)
    # Under the current strategy the simulation finds the actions the runs created (on these
    # days nothing moved the schedules; accounts with a plan or stopped contact are left out).
    created = session.scalar(select(func.count()).select_from(CollectionAction))
    assert sum(row.current for row in same.rows) >= created
    early = (
        *POLICY.collections.strategies["early"],
        StrategyStep("daily", "sms", "sms", "dpd", 2, "overdue_sms"),
    )
    proposed = replace(
        POLICY,
        collections=CollectionsPolicy(strategies={**POLICY.collections.strategies, "early": early}),
    )
    changed = strategy_simulation.simulate(session, proposed, days=3, until=last)
    totals = changed.totals()
    assert totals[("early", "sms")][1] > totals[("early", "sms")][0]
    assert all(c == p for (stage, kind), (c, p) in totals.items() if (stage, kind) != ("early", "sms"))
    assert "early" in changed.table() and "proposed" in changed.table()
    assert _snapshot(session) == before
    with pytest.raises(DomainError):
        strategy_simulation.simulate(session, POLICY, days=0, until=last)


def test_the_run_command_runs_a_day_and_a_second_time_changes_nothing(session: Session, app) -> None:  # type: ignore[no-untyped-def]
    from portal.services.hardship import desk_today

    account = factories.account(session, principal=200_000)
    account.oldest_unpaid_due_on = desk_today() - dt.timedelta(days=12)
    account.overdue_amount = 50_000
    session.commit()
    runner = app.test_cli_runner()
    day = (desk_today() - dt.timedelta(days=1)).isoformat()
    first = runner.invoke(args=["collections", "run", "--date", day])
    assert first.exit_code == 0, first.output
    entries = session.scalar(select(func.count()).where(LedgerEntry.account_id == account.id))
    session.refresh(account)
    assert (account.dpd, account.stage) == (11, "early")
    again = runner.invoke(args=["collections", "run", "--date", day])
    assert again.exit_code == 0, again.output
    assert session.scalar(select(func.count()).where(LedgerEntry.account_id == account.id)) == entries
    future = runner.invoke(
        args=["collections", "run", "--date", (desk_today() + dt.timedelta(days=2)).isoformat()]
    )
    assert future.exit_code != 0
