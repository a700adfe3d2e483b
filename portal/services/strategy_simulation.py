"""What a changed collections strategy would have produced on the last N days, before it goes live.

    simulate(session, strategy_or_policy, days=30, until=None) -> SimulationReport

Read-only. For each past day it counts, in two grouped queries, how many accounts were in each
(stage, days past due) and each (stage, days until the next due date), then applies both the
current strategy and the proposed one to those counts (``workflows.collections.count_actions``):
per day and stage, the number of actions by kind under each.

What the past looked like is reconstructed, not replayed: the stage on a day is the one the
stage history records for it (the policy's thresholds where the history does not reach back
that far); days past due on a day count from today's oldest unpaid due date, and the next due
date is today's. Accounts whose contact is stopped today (an open dispute, a cease-contact
request) or with a plan in force today are left out, as the run would leave them out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from portal.models import Account, ContactPreference, DebtDispute, Plan, StageHistory
from portal.services import policy as policy_service
from portal.services.collections_run import days_since
from portal.services.hardship import desk_today
from workflows.collections import Strategy, count_actions, day_range
from workflows.errors import DomainError
from workflows.policy import Policy

MAX_DAYS = 90


@dataclass(frozen=True)
class SimulationRow:
    day: dt.date
    stage: str
    kind: str
    current: int
    proposed: int

    @property
    def change(self) -> int:
        return self.proposed - self.current


@dataclass
class SimulationReport:
    since: dt.date
    until: dt.date
    rows: list[SimulationRow] = field(default_factory=list)

    def totals(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Per (stage, kind) over the whole period: (current, proposed)."""
        out: dict[tuple[str, str], tuple[int, int]] = {}
        for row in self.rows:
            current, proposed = out.get((row.stage, row.kind), (0, 0))
            out[(row.stage, row.kind)] = (current + row.current, proposed + row.proposed)
        return dict(sorted(out.items()))

    def table(self) -> str:
        lines = [f"Simulation {self.since.isoformat()} .. {self.until.isoformat()}"]
        lines.append(f"{'stage':<12} {'kind':<20} {'current':>9} {'proposed':>9} {'change':>8}")
        for (stage, kind), (current, proposed) in self.totals().items():
            lines.append(f"{stage:<12} {kind:<20} {current:>9} {proposed:>9} {proposed - current:>+8}")
        if len(lines) == 2:
            lines.append("(no actions under either strategy)")
        return "\n".join(lines)


def _histograms(
    session: Session, day: dt.date, policy: Policy, max_before_due: int
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    a = Account.__table__
    h = StageHistory.__table__
    oldest = a.c.oldest_unpaid_due_on
    dpd = case((or_(oldest.is_(None), oldest >= day), 0), else_=days_since(session, oldest, day))

    def past(days: int):  # type: ignore[no-untyped-def]
        return and_(oldest.is_not(None), oldest <= day - dt.timedelta(days=days))

    computed = case(
        (a.c.stage.in_(("legal", "charged_off")), a.c.stage),
        (past(policy.charge_off_dpd), "charged_off"),
        (past(policy.late_from_dpd), "late"),
        (past(policy.mid_from_dpd), "mid"),
        (past(policy.early_from_dpd), "early"),
        else_="current",
    )
    recorded = (
        select(h.c.stage)
        .where(h.c.account_id == a.c.id, h.c.entered_on <= day, or_(h.c.left_on.is_(None), h.c.left_on > day))
        .order_by(h.c.entered_on.desc())
        .limit(1)
        .scalar_subquery()
    )
    stage = func.coalesce(recorded, computed).label("stage")
    eligible = (
        a.c.status == "open",
        ~select(1).where(Plan.account_id == a.c.id, Plan.status == "active").exists(),
        ~select(1).where(DebtDispute.account_id == a.c.id, DebtDispute.status == "open").exists(),
        ~select(1)
        .where(
            ContactPreference.borrower_id == a.c.borrower_id, ContactPreference.cease_contact_at.is_not(None)
        )
        .exists(),
    )
    inner = select(stage, dpd.label("dpd"), a.c.next_due_on.label("next_due_on")).where(*eligible).subquery()
    by_dpd = {
        (s, int(d)): n
        for s, d, n in session.execute(
            select(inner.c.stage, inner.c.dpd, func.count()).group_by(inner.c.stage, inner.c.dpd)
        )
    }
    by_due: dict[tuple[str, int], int] = {}
    rows = session.execute(
        select(inner.c.stage, inner.c.next_due_on, func.count())
        .where(inner.c.next_due_on >= day, inner.c.next_due_on <= day + dt.timedelta(days=max_before_due))
        .group_by(inner.c.stage, inner.c.next_due_on)
    )
    for s, due_on, n in rows:
        key = (s, (due_on - day).days)
        by_due[key] = by_due.get(key, 0) + n
    return by_dpd, by_due


def simulate(
    session: Session,
    strategy_or_policy: Policy | Strategy,
    *,
    days: int = 30,
    until: dt.date | None = None,
) -> SimulationReport:
    """Actions per day, stage and kind over the ``days`` days up to ``until`` (default: yesterday
    in the desk's time zone) under the current strategy and the proposed one. Writes nothing."""
    if not 1 <= days <= MAX_DAYS:
        raise DomainError("simulation_days_invalid", "Simulate from 1 to {maximum} days.", maximum=MAX_DAYS)
    until = until or desk_today() - dt.timedelta(days=1)
    current = policy_service.current(session, until)
    if isinstance(strategy_or_policy, Policy):
        problems = strategy_or_policy.validate()
        if problems:
            raise DomainError(
                "policy_invalid", "The policy is invalid: {problems}", problems=" ".join(problems)
            )
        proposed = strategy_or_policy.collections.strategies
    else:
        proposed = strategy_or_policy
    strategies = (current.collections.strategies, proposed)
    max_before_due = max(
        (
            s.day
            for strategy in strategies
            for steps in strategy.values()
            for s in steps
            if s.anchor == "before_due"
        ),
        default=0,
    )
    report = SimulationReport(since=until - dt.timedelta(days=days - 1), until=until)
    for day in day_range(until, days):
        by_dpd, by_due = _histograms(session, day, current, max_before_due)
        before = count_actions(by_dpd, by_due, strategies[0])
        after = count_actions(by_dpd, by_due, strategies[1])
        for stage, kind in sorted(set(before) | set(after)):
            report.rows.append(
                SimulationRow(day, stage, kind, before.get((stage, kind), 0), after.get((stage, kind), 0))
            )
    return report
