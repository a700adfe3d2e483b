"""The negotiation desk: the review queue, claiming, and the decisions staff make on a case.

Every decision is one transaction: the case row is locked, its version must be the one the staff
member looked at (else "this case changed, reload"), workflows/ decide what the rules allow
(state machine, authority), and the change, its audit event and the borrower's message are
written together.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, has_app_context
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import Select, case, func, select, tuple_
from sqlalchemy.orm import Session, joinedload, selectinload

from portal.db import utcnow
from portal.integrations.notify import Message
from portal.models import (
    Account,
    AccountPause,
    AuditEvent,
    CaseMessage,
    CaseNote,
    HardshipCase,
    Offer,
    StaffUser,
)
from portal.models.hardship import DECISION_REASONS
from portal.services import agreements, audit
from portal.services import hardship as hardship_service
from portal.services import policy as policy_service
from portal.services.audit import Actor
from workflows import authority, offers
from workflows.access import Role
from workflows.errors import DomainError
from workflows.money import round_half_even
from workflows.negotiation import ActorKind, CaseAction, CaseActor, CaseFacts, CaseState, transition
from workflows.policy import BASIS_POINTS, Policy

DESK_STATES = (CaseState.IN_REVIEW, CaseState.CLAIMED, CaseState.AWAITING_SECOND_APPROVAL)
PAGE_SIZE = 25
DESK_TZ = hardship_service.DESK_TZ
desk_today = hardship_service.desk_today
AGE_BUCKETS = {"0-2": (0, 2), "3-7": (3, 7), "8+": (8, None)}


# --- Who is acting ------------------------------------------------------------------------------


def _actor(staff: StaffUser) -> CaseActor:
    kind = ActorKind.SUPERVISOR if staff.role == Role.SUPERVISOR.value else ActorKind.AGENT
    return CaseActor(kind, staff.id)


def _locked(session: Session, case_id: int, version: int | None) -> HardshipCase:
    """The case, row-locked; refused when it changed since the staff member read it."""
    found = session.scalar(
        select(HardshipCase)
        .options(selectinload(HardshipCase.offers), joinedload(HardshipCase.account))
        .where(HardshipCase.id == case_id)
        .with_for_update(of=HardshipCase)
        .execution_options(populate_existing=True)
    )
    if found is None:
        raise DomainError("case_unknown", "This request was not found.")
    if version is not None and found.version != version:
        raise DomainError("case_changed", "This case changed while you were looking at it. Reload it.")
    return found


def _move(
    session: Session,
    case_row: HardshipCase,
    action: CaseAction,
    staff: StaffUser,
    *,
    facts: CaseFacts | None = None,
    note: str | None = None,
    extra: dict[str, object] | None = None,
) -> CaseState:
    """One transition and its audit event, with the staff member's note in it."""
    facts = facts or CaseFacts(
        claimed_by=case_row.claimed_by_id,
        first_approver=case_row.first_approved_by_id,
    )
    moved = transition(CaseState(case_row.state), action, _actor(staff), facts)
    before = audit.snapshot(case_row, ("state", "claimed_by_id"))
    case_row.state = moved.after.value
    after = {**audit.snapshot(case_row, ("state", "claimed_by_id")), **(extra or {})}
    if note:
        after["note"] = note
    audit.record(
        session,
        Actor.staff(staff),
        f"hardship_case.{action.value}",
        "hardship_case",
        case_row.id,
        before=before,
        after=after,
    )
    return moved.after


def _add_note(session: Session, case_row: HardshipCase, staff: StaffUser, body: str | None) -> None:
    text = (body or "").strip()
    if text:
        session.add(CaseNote(hardship_case_id=case_row.id, author_id=staff.id, body=text[:4000]))


def _require_note(note: str | None) -> str:
    text = (note or "").strip()
    if not text:
        raise DomainError("note_required", "Write a short note on why you decide this.")
    if len(text) > 4000:
        raise DomainError("note_too_long", "Keep the note under {maximum} characters.", maximum=4000)
    return text


# --- The queue ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """Where a decision left the case, and the messages it owes the borrower."""

    state: CaseState
    notices: list[Message] = field(default_factory=list)


@dataclass(frozen=True)
class QueueFilters:
    view: str = "waiting"  # waiting | mine | second_approval | all
    stage: str | None = None
    band: int | None = None
    relief: str | None = None
    age: str | None = None
    sla: str | None = None
    assignee: int | None = None
    vulnerable: bool | None = None

    def as_args(self) -> dict[str, str]:
        values = {
            "view": self.view,
            "stage": self.stage,
            "band": self.band,
            "relief": self.relief,
            "age": self.age,
            "sla": self.sla,
            "assignee": self.assignee,
            "vulnerable": {True: "1", False: "0"}.get(self.vulnerable)
            if self.vulnerable is not None
            else None,
        }
        return {k: str(v) for k, v in values.items() if v is not None and v != ""}


@dataclass(frozen=True)
class QueueRow:
    case: HardshipCase
    account: Account
    days_waiting: int
    sla: authority.SlaStatus | None


@dataclass(frozen=True)
class QueuePage:
    rows: list[QueueRow]
    next_cursor: str | None
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    total: int = 0


def _view_states(view: str) -> list[str]:
    return {
        "waiting": [CaseState.IN_REVIEW.value],
        "mine": [CaseState.CLAIMED.value],
        "second_approval": [CaseState.AWAITING_SECOND_APPROVAL.value],
    }.get(view, [s.value for s in DESK_STATES])


def _sla_expr(today: dt.date):  # type: ignore[no-untyped-def]
    return case(
        (HardshipCase.review_due_on < today, authority.SlaStatus.BREACHED.value),
        (HardshipCase.review_due_on == today, authority.SlaStatus.DUE_TODAY.value),
        else_=authority.SlaStatus.ON_TIME.value,
    )


def _filtered(stmt: Select, filters: QueueFilters, staff: StaffUser, today: dt.date) -> Select:  # type: ignore[type-arg]
    stmt = stmt.where(HardshipCase.state.in_(_view_states(filters.view)))
    if filters.view == "mine":
        stmt = stmt.where(HardshipCase.claimed_by_id == staff.id)
    if filters.stage:
        stmt = stmt.where(Account.stage == filters.stage)
    if filters.band is not None:
        stmt = stmt.where(HardshipCase.amount_band == filters.band)
    if filters.relief:
        stmt = stmt.where(HardshipCase.relief_asked == filters.relief)
    if filters.sla:
        stmt = stmt.where(_sla_expr(today) == filters.sla)
    if filters.assignee is not None:
        stmt = stmt.where(HardshipCase.claimed_by_id == filters.assignee)
    if filters.vulnerable is not None:
        stmt = stmt.where(HardshipCase.vulnerable.is_(filters.vulnerable))
    if filters.age in AGE_BUCKETS:
        low, high = AGE_BUCKETS[filters.age]
        now = dt.datetime.combine(today, dt.time.max, tzinfo=DESK_TZ)
        stmt = stmt.where(HardshipCase.queued_at <= now - dt.timedelta(days=low))
        if high is not None:
            stmt = stmt.where(HardshipCase.queued_at > now - dt.timedelta(days=high + 1))
    return stmt


def parse_cursor(text: str | None) -> tuple[int, int] | None:
    """A queue cursor is "priority.id" of the last row shown; anything else starts at the top."""
    if not text or len(text) > 40:
        return None
    priority, _sep, case_id = text.partition(".")
    if not (priority.lstrip("-").isdigit() and case_id.isdigit()):
        return None
    return int(priority), int(case_id)


def queue(
    session: Session,
    staff: StaffUser,
    filters: QueueFilters,
    *,
    cursor: tuple[int, int] | None = None,
    limit: int = PAGE_SIZE,
    today: dt.date | None = None,
    with_counts: bool = True,
) -> QueuePage:
    """One page of the queue, highest priority first (keyset: no OFFSET however deep), and the
    number of cases per filter value within the rest of the filters."""
    today = today or desk_today()
    stmt = _filtered(
        select(HardshipCase, Account).join(Account, Account.id == HardshipCase.account_id),
        filters,
        staff,
        today,
    )
    if cursor is not None:
        stmt = stmt.where(tuple_(HardshipCase.priority, HardshipCase.id) < tuple_(*cursor))
    stmt = stmt.order_by(HardshipCase.priority.desc(), HardshipCase.id.desc()).limit(limit + 1)
    found = session.execute(stmt.options(joinedload(HardshipCase.claimed_by))).all()
    rows = [
        QueueRow(
            case_row,
            account,
            hardship_service.days_waiting(case_row, today),
            authority.sla_status(case_row.review_due_on, today) if case_row.review_due_on else None,
        )
        for case_row, account in found[:limit]
    ]
    last = found[limit - 1][0] if len(found) > limit else None
    next_cursor = f"{last.priority}.{last.id}" if last is not None else None
    counts: dict[str, Counter[str]] = {}
    total = 0
    if with_counts:
        counts, total = _counts(session, staff, filters, today)
    return QueuePage(rows, next_cursor, counts, total)


def _counts(
    session: Session, staff: StaffUser, filters: QueueFilters, today: dt.date
) -> tuple[dict[str, Counter[str]], int]:
    """Counts per value of each filter, each within the other filters (one grouped query)."""
    sla = _sla_expr(today).label("sla")
    stmt = _filtered(
        select(
            HardshipCase.state,
            Account.stage,
            HardshipCase.amount_band,
            HardshipCase.relief_asked,
            sla,
            HardshipCase.vulnerable,
            func.count().label("n"),
        ).join(Account, Account.id == HardshipCase.account_id),
        QueueFilters(view=filters.view, assignee=filters.assignee, age=filters.age),
        staff,
        today,
    ).group_by(
        HardshipCase.state,
        Account.stage,
        HardshipCase.amount_band,
        HardshipCase.relief_asked,
        sla,
        HardshipCase.vulnerable,
    )
    key = (
        "groups",
        filters.view,
        filters.assignee,
        filters.age,
        staff.id if filters.view == "mine" else None,
        today,
    )
    groups = _cached(session, key, lambda: [tuple(row) for row in session.execute(stmt).all()])
    counts: dict[str, Counter[str]] = {
        name: Counter() for name in ("stage", "band", "relief", "sla", "vulnerable")
    }
    chosen = {
        "stage": filters.stage,
        "band": None if filters.band is None else str(filters.band),
        "relief": filters.relief,
        "sla": filters.sla,
        "vulnerable": None if filters.vulnerable is None else ("1" if filters.vulnerable else "0"),
    }
    total = 0
    for _state, stage, band, relief, sla_value, vulnerable, n in groups:
        values = {
            "stage": stage,
            "band": str(band),
            "relief": relief or "",
            "sla": sla_value,
            "vulnerable": "1" if vulnerable else "0",
        }
        matches = {name: chosen[name] is None or chosen[name] == values[name] for name in values}
        if all(matches.values()):
            total += n
        for name, value in values.items():
            if all(ok for other, ok in matches.items() if other != name):
                counts[name][value] += n
    return counts, total


def view_counts(session: Session, staff: StaffUser) -> dict[str, int]:
    """How many cases each tab holds: waiting, second approval and all (shared, cached briefly),
    and the staff member's own claimed cases (counted live: it is small and must be exact)."""
    totals = _cached(
        session,
        ("states",),
        lambda: dict(
            session.execute(
                select(HardshipCase.state, func.count())
                .where(HardshipCase.state.in_([s.value for s in DESK_STATES]))
                .group_by(HardshipCase.state)
            ).all()
        ),
    )
    mine = session.scalar(
        select(func.count())
        .select_from(HardshipCase)
        .where(HardshipCase.state == CaseState.CLAIMED.value, HardshipCase.claimed_by_id == staff.id)
    )
    return {
        "waiting": int(totals.get(CaseState.IN_REVIEW.value, 0)),
        "mine": int(mine or 0),
        "second_approval": int(totals.get(CaseState.AWAITING_SECOND_APPROVAL.value, 0)),
        "all": int(sum(totals.values())),
    }


_COUNTS: dict[tuple[object, ...], tuple[float, Any]] = {}
_COUNTS_LOCK = threading.Lock()


def _cached(session: Session, key: tuple[object, ...], compute: Callable[[], Any]) -> Any:
    """Queue counts scan every case on the desk, so each worker keeps them for
    DESK_COUNTS_SECONDS (the page says how fresh they are); 0 computes them every time."""
    ttl = float(current_app.config.get("DESK_COUNTS_SECONDS", 0)) if has_app_context() else 0.0
    if ttl <= 0:
        return compute()
    full_key = (str(session.get_bind().url), *key)
    now = time.monotonic()
    with _COUNTS_LOCK:
        hit = _COUNTS.get(full_key)
        if hit is not None and hit[0] > now:
            return hit[1]
    value = compute()
    with _COUNTS_LOCK:
        if len(_COUNTS) > 1000:
            _COUNTS.clear()
        _COUNTS[full_key] = (now + ttl, value)
    return value


def refresh_queue_priorities(session: Session, today: dt.date | None = None) -> int:
    """The daily refresh: days waiting grow, so priorities do. Returns how many changed."""
    today = today or desk_today()
    policy = policy_service.current(session, today)
    changed = 0
    for case_row in session.scalars(
        select(HardshipCase)
        .options(joinedload(HardshipCase.account))
        .where(HardshipCase.state.in_([s.value for s in DESK_STATES]))
        .execution_options(yield_per=1000)
    ):
        before = case_row.priority
        hardship_service.refresh_priority(case_row, case_row.account, policy, today)
        changed += case_row.priority != before
    session.commit()
    return changed


# --- Claiming -------------------------------------------------------------------------------------


def claim(session: Session, staff: StaffUser, case_id: int, *, version: int | None) -> HardshipCase:
    case_row = _locked(session, case_id, version)
    _move(session, case_row, CaseAction.CLAIM, staff)
    case_row.claimed_by_id, case_row.claimed_at = staff.id, utcnow()
    session.commit()
    return case_row


def claim_next(session: Session, staff: StaffUser) -> HardshipCase | None:
    """The highest-priority waiting case, claimed; two agents asking at once get different cases
    (on PostgreSQL the rows another transaction holds are skipped)."""
    stmt = (
        select(HardshipCase.id)
        .where(HardshipCase.state == CaseState.IN_REVIEW.value)
        .order_by(HardshipCase.priority.desc(), HardshipCase.id.desc())
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    case_id = session.scalar(stmt)
    if case_id is None:
        session.rollback()
        return None
    return claim(session, staff, case_id, version=None)


def release(session: Session, staff: StaffUser, case_id: int, *, version: int | None) -> None:
    case_row = _locked(session, case_id, version)
    _move(session, case_row, CaseAction.RELEASE, staff)
    case_row.claimed_by_id, case_row.claimed_at = None, None
    session.commit()


def reassign(
    session: Session, supervisor: StaffUser, case_id: int, *, version: int | None, to_staff_id: int
) -> None:
    """A supervisor hands a claimed (or waiting) case to another agent."""
    if supervisor.role != Role.SUPERVISOR.value:
        raise DomainError("not_allowed", "Your role may not do this.")
    case_row = _locked(session, case_id, version)
    target = session.get(StaffUser, to_staff_id)
    if target is None or not target.is_active or target.role not in (Role.AGENT.value, Role.SUPERVISOR.value):
        raise DomainError("assignee_invalid", "Choose an active agent or supervisor.")
    if case_row.state not in (CaseState.IN_REVIEW.value, CaseState.CLAIMED.value):
        raise DomainError("transition_not_allowed", "This cannot be done at this stage of the case.")
    before = audit.snapshot(case_row, ("state", "claimed_by_id"))
    case_row.state = CaseState.CLAIMED.value
    case_row.claimed_by_id, case_row.claimed_at = target.id, utcnow()
    audit.record(
        session,
        Actor.staff(supervisor),
        "hardship_case.reassign",
        "hardship_case",
        case_row.id,
        before=before,
        after=audit.snapshot(case_row, ("state", "claimed_by_id")),
    )
    session.commit()


# --- Authority ------------------------------------------------------------------------------------


def concession(offer_row: Offer, account: Account) -> authority.Concession:
    """What an offer gives up, measured against the account's balance now."""
    terms = offer_row.terms
    waived = sum(int(v) for v in (terms.get("waived") or {}).values())
    balance = account.total_balance
    share = round_half_even(waived * BASIS_POINTS, balance) if balance else 0
    is_settlement = "settlement" in (terms.get("reliefs") or [])
    return authority.Concession(
        currency=offer_row.currency,
        waived_amount=waived,
        waived_share_bp=share,
        term_months=int(terms.get("instalment_count") or offer_row.instalment_count)
        + int(terms.get("holiday_months") or 0),
        settlement_discount_bp=share if is_settlement else 0,
    )


def authority_for(staff: StaffUser, offer_row: Offer, account: Account, policy: Policy) -> list[str]:
    return authority.authority_problems(Role(staff.role), concession(offer_row, account), policy)


def _pending_offer(case_row: HardshipCase) -> Offer:
    """The terms a decision is about: the borrower's latest proposal."""
    offer_row = next(
        (o for o in reversed(case_row.offers) if o.origin == "borrower" and o.status == "open"), None
    )
    if offer_row is None:
        raise DomainError("proposal_missing", "This case has no open proposal to approve.")
    return offer_row


# --- Decisions ------------------------------------------------------------------------------------


def _only_from(case_row: HardshipCase, state: CaseState | None) -> None:
    if state is not None and case_row.state != state.value:
        raise DomainError("transition_not_allowed", "This cannot be done at this stage of the case.")


def approve(
    session: Session,
    staff: StaffUser,
    case_id: int,
    *,
    version: int | None,
    note: str | None,
    only_from: CaseState | None = None,
) -> Outcome:
    """Approve the borrower's proposal: final within the approver's authority, otherwise it waits
    for a supervisor; a second approval must come from someone else with the authority.
    `only_from` refuses the decision unless the case is in that state (bulk second approvals)."""
    text = _require_note(note)
    case_row = _locked(session, case_id, version)
    _only_from(case_row, only_from)
    today = desk_today()
    policy = policy_service.current(session, today)
    offer_row = _pending_offer(case_row)
    problems = authority_for(staff, offer_row, case_row.account, policy)
    facts = CaseFacts(
        claimed_by=case_row.claimed_by_id,
        first_approver=case_row.first_approved_by_id,
        within_authority=not problems,
    )
    after = _move(
        session,
        case_row,
        CaseAction.APPROVE,
        staff,
        facts=facts,
        note=text,
        extra={"offer_id": offer_row.id, "authority_problems": problems},
    )
    _add_note(session, case_row, staff, text)
    now = utcnow()
    notices: list[Message] = []
    if after == CaseState.AWAITING_SECOND_APPROVAL:
        case_row.first_approved_by_id, case_row.first_approved_at = staff.id, now
    else:
        offer_row.status, offer_row.decided_at = "accepted", now
        case_row.decided_by_id, case_row.decided_at = staff.id, now
        notices = _message(session, case_row, staff, "approved", _approved_text(case_row))
        agreement = agreements.prepare(session, case_row, offer_row)
    session.commit()
    if after == CaseState.APPROVED:
        agreements.enqueue_render(agreement.id)
    return Outcome(after, notices)


def counter(
    session: Session,
    staff: StaffUser,
    case_id: int,
    *,
    version: int | None,
    terms: offers.CounterTerms,
    note: str | None,
    message: str | None = None,
) -> Outcome:
    """Send the borrower a counter-offer built in the editor; it must add up and be within the
    sender's authority (a larger concession is for a supervisor to counter)."""
    text = _require_note(note)
    case_row = _locked(session, case_id, version)
    today = desk_today()
    policy = policy_service.current(session, today)
    built = offers.counter_offer(hardship_service.position(case_row.account), terms, today, policy)
    row = hardship_service.offer_row(case_row, built, "agent")
    row.created_by_id = staff.id
    problems = authority_for(staff, row, case_row.account, policy)
    if problems:
        raise DomainError("above_authority", "This concession is above your authority.")
    _move(session, case_row, CaseAction.COUNTER, staff, note=text, extra={"offer": built.key})
    for other in case_row.offers:
        if other.status == "open":
            other.status, other.decided_at = "superseded", utcnow()
    session.add(row)
    _add_note(session, case_row, staff, text)
    notices = _message(
        session, case_row, staff, "counter", (message or "").strip() or _counter_text(case_row)
    )
    session.commit()
    return Outcome(CaseState.COUNTERED, notices)


def request_info(
    session: Session, staff: StaffUser, case_id: int, *, version: int | None, question: str, note: str | None
) -> Outcome:
    body = (question or "").strip()
    if not body:
        raise DomainError("message_required", "Write what you need from the borrower.")
    case_row = _locked(session, case_id, version)
    _move(session, case_row, CaseAction.REQUEST_INFO, staff, note=(note or "").strip() or None)
    _add_note(session, case_row, staff, note)
    notices = _message(session, case_row, staff, "request_info", body[:4000])
    session.commit()
    return Outcome(CaseState.AWAITING_BORROWER, notices)


def reject(
    session: Session,
    staff: StaffUser,
    case_id: int,
    *,
    version: int | None,
    reason: str,
    message: str,
    note: str | None,
    only_from: CaseState | None = None,
) -> Outcome:
    if reason not in DECISION_REASONS:
        raise DomainError("reason_invalid", "Choose a reason.")
    body = (message or "").strip()
    if not body:
        raise DomainError("message_required", "Write what you need from the borrower.")
    text = _require_note(note)
    case_row = _locked(session, case_id, version)
    _only_from(case_row, only_from)
    _move(session, case_row, CaseAction.REJECT, staff, note=text, extra={"reason": reason})
    now = utcnow()
    case_row.decided_by_id, case_row.decided_at, case_row.decision_reason = staff.id, now, reason
    case_row.closed_at = now
    for offer_row in case_row.offers:
        if offer_row.status == "open":
            offer_row.status, offer_row.decided_at = "declined", now
    hardship_service.lift_breathing_space(session, case_row, Actor.staff(staff))
    _add_note(session, case_row, staff, text)
    notices = _message(session, case_row, staff, "rejected", body[:4000])
    session.commit()
    return Outcome(CaseState.REJECTED, notices)


def add_note(session: Session, staff: StaffUser, case_id: int, body: str) -> None:
    text = (body or "").strip()
    if not text:
        raise DomainError("note_required", "Write a short note on why you decide this.")
    case_row = _locked(session, case_id, None)
    session.add(CaseNote(hardship_case_id=case_row.id, author_id=staff.id, body=text[:4000]))
    audit.record(
        session,
        Actor.staff(staff),
        "case_note.added",
        "hardship_case",
        case_row.id,
        after={"note": text[:4000]},
    )
    session.commit()


def set_vulnerable(
    session: Session, staff: StaffUser, case_id: int, *, version: int | None, flag: bool
) -> None:
    case_row = _locked(session, case_id, version)
    with audit.change(
        session, Actor.staff(staff), "hardship_case.vulnerability", case_row, ("vulnerable", "priority")
    ):
        case_row.vulnerable = flag
        policy = policy_service.current(session, desk_today())
        hardship_service.refresh_priority(case_row, case_row.account, policy, desk_today())
    session.commit()


# --- Messages to the borrower ----------------------------------------------------------------------


def _approved_text(case_row: HardshipCase) -> str:
    with force_locale(case_row.borrower.language):
        return _("Your proposal was approved. We are preparing your agreement.")


def _counter_text(case_row: HardshipCase) -> str:
    with force_locale(case_row.borrower.language):
        return _("We have made you an offer. Please look at it and answer before it expires.")


def _message(
    session: Session, case_row: HardshipCase, staff: StaffUser, kind: str, body: str
) -> list[Message]:
    """Record what the borrower is told on the case; returns the discreet notice to send them
    once the decision is committed (the caller enqueues it)."""
    session.add(
        CaseMessage(
            hardship_case_id=case_row.id, direction="to_borrower", kind=kind, body=body, staff_id=staff.id
        )
    )
    notice = hardship_service.case_update_notice(case_row.borrower)
    return [notice] if notice is not None else []


# --- Reading a case ------------------------------------------------------------------------------


def history(session: Session, case_row: HardshipCase) -> list[AuditEvent]:
    """Everything that happened to the case, oldest first: each transition, note and change."""
    return list(
        session.scalars(
            select(AuditEvent)
            .where(AuditEvent.object_type == "hardship_case", AuditEvent.object_id == str(case_row.id))
            .order_by(AuditEvent.id)
        )
    )


def case_detail(session: Session, case_id: int) -> HardshipCase | None:
    return session.scalar(
        select(HardshipCase)
        .options(
            joinedload(HardshipCase.account).joinedload(Account.borrower),
            selectinload(HardshipCase.budget_lines),
            selectinload(HardshipCase.evidence_files),
            selectinload(HardshipCase.offers),
            selectinload(HardshipCase.notes),
            selectinload(HardshipCase.messages),
        )
        .where(HardshipCase.id == case_id)
    )


def previous_cases(session: Session, case_row: HardshipCase) -> list[HardshipCase]:
    return list(
        session.scalars(
            select(HardshipCase)
            .where(HardshipCase.borrower_id == case_row.borrower_id, HardshipCase.id != case_row.id)
            .order_by(HardshipCase.id.desc())
        )
    )


def active_pause(session: Session, case_row: HardshipCase) -> AccountPause | None:
    return hardship_service.active_pause(session, case_row.account_id, desk_today())


def desk_staff(session: Session) -> list[StaffUser]:
    return list(
        session.scalars(
            select(StaffUser)
            .where(
                StaffUser.is_active.is_(True), StaffUser.role.in_([Role.AGENT.value, Role.SUPERVISOR.value])
            )
            .order_by(StaffUser.full_name)
        )
    )


def open_desk_case_ids(session: Session) -> list[int]:
    return list(
        session.scalars(select(HardshipCase.id).where(HardshipCase.state.in_([s.value for s in DESK_STATES])))
    )
