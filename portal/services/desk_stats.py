"""The negotiation desk's figures for supervisors: how big and how old the queue is, which review
deadlines are missed, who decided what, how often staff approve, what approved cases concede, and
which cases wait for a second approval.

Every figure comes from a grouped query over hardship_case, audit_event and offer (no loop over
ORM objects); amounts stay integers in minor units, shares are basis points, averages are
banker's rounded. Days are counted on the desk's calendar (`hardship.DESK_TZ`). Read only: nothing
here commits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session, aliased

from portal.models import Account, AuditEvent, HardshipCase, Offer, StaffUser
from portal.services import hardship as hardship_service
from workflows import authority
from workflows.money import round_half_even
from workflows.negotiation import CaseState
from workflows.policy import BASIS_POINTS

DESK_TZ = hardship_service.DESK_TZ
DESK_STATES = (CaseState.IN_REVIEW, CaseState.CLAIMED, CaseState.AWAITING_SECOND_APPROVAL)
AGE_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0-2", 0, 2),
    ("3-7", 3, 7),
    ("8-14", 8, 14),
    ("15+", 15, None),
)
"""(label, fewest days, most days) of each age bucket; days waiting as `hardship.days_waiting` counts them."""
DECISION_ACTIONS = {
    "approved": "hardship_case.approve",
    "rejected": "hardship_case.reject",
    "countered": "hardship_case.counter",
    "info_requested": "hardship_case.request_info",
}
"""The audit actions that count as a staff member's decision on a case."""
DESK_OFFER_ORIGINS = ("borrower", "agent")
"""Concessions the desk granted: a borrower's proposal a person approved, or an agent's counter-offer."""
DEFAULT_DAYS = 30
AWAITING_LIMIT = 100
"""The most cases awaiting a second approval listed at once (oldest first)."""
_COMPONENTS = ("principal", "interest", "fees")


def _start_of(day: dt.date) -> dt.datetime:
    """The first instant of a day on the desk's calendar."""
    return dt.datetime.combine(day, dt.time.min, tzinfo=DESK_TZ)


def _share_bp(part: int, whole: int) -> int | None:
    return round_half_even(part * BASIS_POINTS, whole) if whole > 0 else None


def _covered_total() -> ColumnElement[int]:
    """What an offer deals with, from its terms: for the desk's offers (scope "balance") the whole
    balance when it was made, the base of its waived share."""
    principal, interest, fees = (
        func.coalesce(Offer.terms[("covered", name)].as_integer(), 0) for name in _COMPONENTS
    )
    return principal + interest + fees


# --- The queue ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueSize:
    """Open cases on the desk, per state."""

    in_review: int = 0
    claimed: int = 0
    awaiting_second_approval: int = 0

    @property
    def total(self) -> int:
        return self.in_review + self.claimed + self.awaiting_second_approval


@dataclass(frozen=True)
class AgeBucket:
    """How many open desk cases have waited `low` to `high` days (no upper end when `high` is None)."""

    label: str
    low: int
    high: int | None
    count: int


@dataclass(frozen=True)
class SlaSummary:
    """Open desk cases past their review deadline, and those due today."""

    breached: int = 0
    due_today: int = 0


@dataclass(frozen=True)
class QueueHealth:
    queue: QueueSize
    ages: list[AgeBucket]
    sla: SlaSummary
    oldest_days: int
    """Days the longest-waiting open case has waited (0 with an empty queue)."""


def _age_bucket_expr(today: dt.date) -> ColumnElement[str]:
    """The age bucket of a case from `queued_at`, as `hardship.days_waiting` counts days: a case
    queued on day D has waited (today - D) days; one never queued has waited none."""
    whens: list[tuple[ColumnElement[bool], str]] = [(HardshipCase.queued_at.is_(None), AGE_BUCKETS[0][0])]
    for label, _low, high in AGE_BUCKETS:
        if high is not None:
            whens.append((HardshipCase.queued_at >= _start_of(today - dt.timedelta(days=high)), label))
    return case(*whens, else_=AGE_BUCKETS[-1][0])


def queue_health(session: Session, today: dt.date | None = None) -> QueueHealth:
    """Queue size per desk state, age buckets and SLA, from one grouped query."""
    today = today or hardship_service.desk_today()
    bucket = _age_bucket_expr(today).label("bucket")
    sla = case(
        (HardshipCase.review_due_on < today, authority.SlaStatus.BREACHED.value),
        (HardshipCase.review_due_on == today, authority.SlaStatus.DUE_TODAY.value),
        else_=authority.SlaStatus.ON_TIME.value,
    ).label("sla")
    rows = session.execute(
        select(HardshipCase.state, bucket, sla, func.count(), func.min(HardshipCase.queued_at))
        .where(HardshipCase.state.in_([s.value for s in DESK_STATES]))
        .group_by(HardshipCase.state, bucket, sla)
    ).all()
    by_state: dict[str, int] = {}
    by_bucket: dict[str, int] = {}
    by_sla: dict[str, int] = {}
    oldest: dt.datetime | None = None
    for state, bucket_label, sla_value, count, first_queued in rows:
        by_state[state] = by_state.get(state, 0) + count
        by_bucket[bucket_label] = by_bucket.get(bucket_label, 0) + count
        by_sla[sla_value] = by_sla.get(sla_value, 0) + count
        if first_queued is not None and (oldest is None or first_queued < oldest):
            oldest = first_queued
    oldest_days = max(0, (today - oldest.astimezone(DESK_TZ).date()).days) if oldest else 0
    return QueueHealth(
        queue=QueueSize(
            in_review=by_state.get(CaseState.IN_REVIEW.value, 0),
            claimed=by_state.get(CaseState.CLAIMED.value, 0),
            awaiting_second_approval=by_state.get(CaseState.AWAITING_SECOND_APPROVAL.value, 0),
        ),
        ages=[AgeBucket(label, low, high, by_bucket.get(label, 0)) for label, low, high in AGE_BUCKETS],
        sla=SlaSummary(
            breached=by_sla.get(authority.SlaStatus.BREACHED.value, 0),
            due_today=by_sla.get(authority.SlaStatus.DUE_TODAY.value, 0),
        ),
        oldest_days=oldest_days,
    )


# --- Decisions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaffDecisions:
    """What one staff member decided on cases in the period (or everybody, for the totals): each
    approval counts, a first approval that waits for a second one included, and each rejection,
    a second approver's included."""

    staff_id: int | None
    name: str
    approved: int = 0
    rejected: int = 0
    countered: int = 0
    info_requested: int = 0

    @property
    def total(self) -> int:
        return self.approved + self.rejected + self.countered + self.info_requested

    @property
    def approval_rate_bp(self) -> int | None:
        """approved / (approved + rejected) in basis points; None before any such decision."""
        return _share_bp(self.approved, self.approved + self.rejected)


@dataclass(frozen=True)
class Decisions:
    days: int
    since: dt.date
    """The first day counted (the period ends today, on the desk's calendar)."""
    by_staff: list[StaffDecisions]
    totals: StaffDecisions


def decisions(session: Session, *, days: int = DEFAULT_DAYS, today: dt.date | None = None) -> Decisions:
    """Decisions per staff member over the last `days` days (today included), from the audit trail."""
    today = today or hardship_service.desk_today()
    since = today - dt.timedelta(days=max(1, days) - 1)
    counts = [
        func.sum(case((AuditEvent.action == action, 1), else_=0)).label(field)
        for field, action in DECISION_ACTIONS.items()
    ]
    rows = session.execute(
        select(StaffUser.id, StaffUser.full_name, *counts)
        .select_from(AuditEvent)
        .join(StaffUser, StaffUser.id == AuditEvent.actor_id)
        .where(
            AuditEvent.actor_type == "staff",
            AuditEvent.object_type == "hardship_case",
            AuditEvent.action.in_(list(DECISION_ACTIONS.values())),
            AuditEvent.occurred_at >= _start_of(since),
        )
        .group_by(StaffUser.id, StaffUser.full_name)
        .order_by(StaffUser.full_name, StaffUser.id)
    ).all()
    by_staff = [
        StaffDecisions(staff_id, name, *(int(n or 0) for n in figures)) for staff_id, name, *figures in rows
    ]
    totals = StaffDecisions(
        None,
        "",
        **{field: sum(getattr(s, field) for s in by_staff) for field in DECISION_ACTIONS},
    )
    return Decisions(days=max(1, days), since=since, by_staff=by_staff, totals=totals)


# --- Concessions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConcessionSummary:
    """What the desk's approved cases in one currency gave up in the period."""

    currency: str
    cases: int
    waived_total: int
    """Minor units waived, all cases together."""
    balance_total: int
    """The balances those offers dealt with, all cases together."""

    @property
    def average_waived(self) -> int:
        """Minor units waived per approved case, banker's rounded."""
        return round_half_even(self.waived_total, self.cases) if self.cases else 0

    @property
    def waived_share_bp(self) -> int | None:
        """The share of the balance waived, over all the cases (each weighted by its balance)."""
        return _share_bp(self.waived_total, self.balance_total)


def concessions(
    session: Session, *, days: int = DEFAULT_DAYS, today: dt.date | None = None
) -> list[ConcessionSummary]:
    """Accepted desk offers (a proposal approved, a counter-offer accepted) decided in the last
    `days` days, per currency."""
    today = today or hardship_service.desk_today()
    since = today - dt.timedelta(days=max(1, days) - 1)
    rows = session.execute(
        select(Offer.currency, func.count(), func.sum(Offer.waived_total), func.sum(_covered_total()))
        .where(
            Offer.status == "accepted",
            Offer.origin.in_(DESK_OFFER_ORIGINS),
            Offer.decided_at >= _start_of(since),
        )
        .group_by(Offer.currency)
        .order_by(Offer.currency)
    ).all()
    return [
        ConcessionSummary(currency, int(count), int(waived or 0), int(balance or 0))
        for currency, count, waived, balance in rows
    ]


# --- Second approvals ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AwaitingCase:
    """A case waiting for a second approval, as the supervisor's list shows it."""

    case_id: int
    version: int
    account_reference: str
    currency: str
    first_approver_id: int | None
    first_approver_name: str | None
    first_approved_at: dt.datetime | None
    waiting_days: int
    """Days since the first approval, on the desk's calendar."""
    waived: int | None
    """Minor units the proposal waives; None when the case has no open proposal."""
    waived_share_bp: int | None
    review_due_on: dt.date | None
    sla: authority.SlaStatus | None


def awaiting_second_approval(
    session: Session, *, today: dt.date | None = None, limit: int = AWAITING_LIMIT
) -> list[AwaitingCase]:
    """The cases awaiting a second approval, longest waiting first, with the open proposal each is
    about (the latest, as the approval takes it)."""
    today = today or hardship_service.desk_today()
    awaiting = HardshipCase.state == CaseState.AWAITING_SECOND_APPROVAL.value
    latest = (
        select(Offer.hardship_case_id, func.max(Offer.id).label("offer_id"))
        .join(HardshipCase, HardshipCase.id == Offer.hardship_case_id)
        .where(awaiting, Offer.origin == "borrower", Offer.status == "open")
        .group_by(Offer.hardship_case_id)
        .subquery()
    )
    first = aliased(StaffUser)
    rows = session.execute(
        select(
            HardshipCase.id,
            HardshipCase.version,
            Account.external_reference.label("reference"),
            Account.currency,
            HardshipCase.first_approved_by_id,
            first.full_name.label("approver_name"),
            HardshipCase.first_approved_at,
            Offer.waived_total,
            _covered_total().label("covered"),
            HardshipCase.review_due_on,
        )
        .join(Account, Account.id == HardshipCase.account_id)
        .outerjoin(first, first.id == HardshipCase.first_approved_by_id)
        .outerjoin(latest, latest.c.hardship_case_id == HardshipCase.id)
        .outerjoin(Offer, Offer.id == latest.c.offer_id)
        .where(awaiting)
        .order_by(HardshipCase.first_approved_at, HardshipCase.id)
        .limit(limit)
    ).all()
    listed = []
    for row in rows:
        approved_at, due_on = row.first_approved_at, row.review_due_on
        waived = None if row.waived_total is None else int(row.waived_total)
        listed.append(
            AwaitingCase(
                case_id=row.id,
                version=row.version,
                account_reference=row.reference,
                currency=row.currency,
                first_approver_id=row.first_approved_by_id,
                first_approver_name=row.approver_name,
                first_approved_at=approved_at,
                waiting_days=max(0, (today - approved_at.astimezone(DESK_TZ).date()).days)
                if approved_at
                else 0,
                waived=waived,
                waived_share_bp=None if waived is None else _share_bp(waived, int(row.covered or 0)),
                review_due_on=due_on,
                sla=authority.sla_status(due_on, today) if due_on else None,
            )
        )
    return listed


def case_versions(session: Session, case_ids: Iterable[int]) -> dict[int, tuple[str, int]]:
    """(state, version) of each of these cases that exists, in one query: what a bulk decision
    checks its ids against before it decides each case in its own transaction."""
    ids = sorted(set(case_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(HardshipCase.id, HardshipCase.state, HardshipCase.version).where(HardshipCase.id.in_(ids))
    ).all()
    return {case_id: (state, version) for case_id, state, version in rows}


# --- Everything on the dashboard ----------------------------------------------------------------


@dataclass(frozen=True)
class DeskStats:
    today: dt.date
    health: QueueHealth
    decisions: Decisions
    concessions: list[ConcessionSummary]
    awaiting: list[AwaitingCase]
    """At most `AWAITING_LIMIT` of them; `health.queue.awaiting_second_approval` counts them all."""


def dashboard(session: Session, *, days: int = DEFAULT_DAYS, today: dt.date | None = None) -> DeskStats:
    today = today or hardship_service.desk_today()
    return DeskStats(
        today=today,
        health=queue_health(session, today),
        decisions=decisions(session, days=days, today=today),
        concessions=concessions(session, days=days, today=today),
        awaiting=awaiting_second_approval(session, today=today),
    )
