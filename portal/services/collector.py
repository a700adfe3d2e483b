"""The collector's workspace: the work lists of call tasks, the call screen's facts, calls and
promises to pay, home visits step by step, and the legal referral queue.

The daily run creates the actions (call tasks, visit proposals, legal reviews) and decides
whether promises were kept; this module is what people do with them. Every change is one
transaction with its audit events; a refusal (the contact rules, bad input, a step out of
order) raises a DomainError and writes nothing. Contact itself always goes through
``portal.services.contact``, the one gate.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.sql.elements import UnaryExpression

from portal.db import utcnow
from portal.models import (
    Account,
    CollectionAction,
    ContactAttempt,
    DebtDispute,
    HomeVisit,
    LegalReferral,
    PromiseToPay,
    StaffUser,
    StageHistory,
)
from portal.services import audit, borrower_portal, contact
from portal.services.audit import Actor
from workflows import contact_policy as rules
from workflows import visits
from workflows.access import Permission, Role, can
from workflows.contact_policy import Channel, Party
from workflows.errors import DomainError
from workflows.money import parse_amount
from workflows.policy import Stage

PAGE_SIZE = 25
HISTORY_ROWS = 20
COLLECTOR_TZ = ZoneInfo("Asia/Shanghai")
"""The collection department's own clock, for the collector's side of the counter."""
PROMISE_MAX_DAYS = 30
NOTE_MAX = 4000
WORK_KINDS = ("call_task", "home_visit_proposal", "legal_review")
VIEWS = ("waiting", "mine", "all")
CALL_OUTCOMES = (
    "reached",
    "promise_to_pay",
    "refused",
    "wrong_number",
    "no_answer",
    "third_party",
    "callback_requested",
    "dispute_raised",
    "hardship_referred",
)
CALL_PARTIES = (Party.BORROWER, Party.RELATED_THIRD_PARTY, Party.UNRELATED_THIRD_PARTY)
FIELD_ROLES = (Role.COLLECTOR.value, Role.SUPERVISOR.value)
"""Who goes on a home visit: collectors and their supervisors (not admins)."""
"""A visit's status is the step it waits for; doing that step moves it to the next (after the
agreement step it is closed)."""
VISIT_OUTCOMES = (
    "reached",
    "promise_to_pay",
    "refused",
    "no_answer",
    "third_party",
    "dispute_raised",
    "hardship_referred",
)
AGREEMENT_OUTCOMES = ("promise_to_pay", "plan_requested", "hardship_referred", "no_agreement")
OPEN_VISIT = ("notify", "evaluate", "dispatch", "meet", "agreement")


def collector_today() -> dt.date:
    return dt.datetime.now(COLLECTOR_TZ).date()


def _now(now: dt.datetime | None) -> dt.datetime:
    moment = now or utcnow()
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _note(text: str | None, *, required: bool = False) -> str | None:
    value = (text or "").strip()
    if required and not value:
        raise DomainError("note_required", "Write a short note on why you decide this.")
    if len(value) > NOTE_MAX:
        raise DomainError("note_too_long", "Keep the note under {maximum} characters.", maximum=NOTE_MAX)
    return value or None


def _account(session: Session, account_id: int, *, lock: bool = False) -> Account:
    stmt = select(Account).options(joinedload(Account.borrower)).where(Account.id == account_id)
    if lock:
        stmt = stmt.with_for_update(of=Account)
    found = session.scalar(stmt)
    if found is None:
        raise DomainError("account_unknown", "This account was not found.")
    return found


# --- The work lists ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkFilters:
    view: str = "waiting"  # waiting (nobody's) | mine | all
    kind: str = "call_task"
    stage: str | None = None

    def as_args(self) -> dict[str, str]:
        values = {"view": self.view, "kind": self.kind, "stage": self.stage}
        return {k: v for k, v in values.items() if v}


@dataclass(frozen=True)
class WorkRow:
    action: CollectionAction
    account: Account
    assignee: StaffUser | None


@dataclass(frozen=True)
class WorkPage:
    rows: list[WorkRow]
    next_cursor: str | None
    stage_counts: Counter[str] = field(default_factory=Counter)
    total: int = 0


def parse_cursor(text: str | None) -> tuple[int, dt.date, int] | None:
    """A work-list cursor is "priority.run_date.id" of the last row shown; else the top."""
    if not text or len(text) > 60:
        return None
    parts = text.split(".")
    if len(parts) != 3 or not parts[0].lstrip("-").isdigit() or not parts[2].isdigit():
        return None
    try:
        run_date = dt.date.fromisoformat(parts[1])
    except ValueError:
        return None
    return int(parts[0]), run_date, int(parts[2])


def _work(stmt, filters: WorkFilters, staff: StaffUser):  # type: ignore[no-untyped-def]
    stmt = stmt.where(
        CollectionAction.status == "pending",
        CollectionAction.kind == (filters.kind if filters.kind in WORK_KINDS else "call_task"),
    )
    if filters.view == "waiting":
        stmt = stmt.where(CollectionAction.assigned_to_id.is_(None))
    elif filters.view == "mine":
        stmt = stmt.where(CollectionAction.assigned_to_id == staff.id)
    return stmt


def _order() -> tuple[UnaryExpression[Any], ...]:
    return (CollectionAction.priority.desc(), CollectionAction.run_date, CollectionAction.id)


def work_list(
    session: Session,
    staff: StaffUser,
    filters: WorkFilters,
    *,
    cursor: tuple[int, dt.date, int] | None = None,
    limit: int = PAGE_SIZE,
) -> WorkPage:
    """One page of pending actions, highest priority first and, within it, the oldest first
    (keyset on priority, run date and id: no OFFSET however deep), with counts per stage."""
    stmt = _work(
        select(CollectionAction, Account, StaffUser)
        .join(Account, Account.id == CollectionAction.account_id)
        .outerjoin(StaffUser, StaffUser.id == CollectionAction.assigned_to_id),
        filters,
        staff,
    )
    if filters.stage:
        stmt = stmt.where(CollectionAction.stage == filters.stage)
    if cursor is not None:
        priority, run_date, action_id = cursor
        stmt = stmt.where(
            or_(
                CollectionAction.priority < priority,
                and_(CollectionAction.priority == priority, CollectionAction.run_date > run_date),
                and_(
                    CollectionAction.priority == priority,
                    CollectionAction.run_date == run_date,
                    CollectionAction.id > action_id,
                ),
            )
        )
    found = session.execute(stmt.order_by(*_order()).limit(limit + 1)).all()
    rows = [WorkRow(action, account, assignee) for action, account, assignee in found[:limit]]
    next_cursor = None
    if len(found) > limit:
        last = found[limit - 1][0]
        next_cursor = f"{last.priority}.{last.run_date.isoformat()}.{last.id}"
    counts = Counter(
        {
            stage: int(n)
            for stage, n in session.execute(
                _work(select(CollectionAction.stage, func.count()), filters, staff).group_by(
                    CollectionAction.stage
                )
            ).all()
        }
    )
    total = counts[filters.stage] if filters.stage else sum(counts.values())
    return WorkPage(rows, next_cursor, counts, total)


def view_counts(session: Session, staff: StaffUser, kind: str = "call_task") -> dict[str, int]:
    """How many pending actions of a kind wait for anyone, are the staff member's, and in all."""
    unassigned = case((CollectionAction.assigned_to_id.is_(None), 1), else_=0)
    mine = case((CollectionAction.assigned_to_id == staff.id, 1), else_=0)
    total, waiting, own = session.execute(
        select(func.count(), func.coalesce(func.sum(unassigned), 0), func.coalesce(func.sum(mine), 0)).where(
            CollectionAction.status == "pending", CollectionAction.kind == kind
        )
    ).one()
    return {"waiting": int(waiting), "mine": int(own), "all": int(total)}


def _locked_action(session: Session, action_id: int) -> CollectionAction:
    found = session.scalar(
        select(CollectionAction)
        .where(CollectionAction.id == action_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if found is None:
        raise DomainError("action_unknown", "This task was not found.")
    return found


def _take(session: Session, staff: StaffUser, action: CollectionAction) -> None:
    if action.status != "pending":
        raise DomainError("action_closed", "This task is already done.")
    if action.assigned_to_id is not None and action.assigned_to_id != staff.id:
        raise DomainError("action_taken", "Another collector is working on this task.")
    if action.assigned_to_id == staff.id:
        return
    before = audit.snapshot(action, ("assigned_to_id",))
    action.assigned_to_id = staff.id
    audit.record(
        session,
        Actor.staff(staff),
        "collection_action.claim",
        "collection_action",
        action.id,
        before=before,
        after=audit.snapshot(action, ("assigned_to_id",)),
    )


def claim(session: Session, staff: StaffUser, action_id: int) -> CollectionAction:
    action = _locked_action(session, action_id)
    _take(session, staff, action)
    session.commit()
    return action


def claim_next(
    session: Session, staff: StaffUser, *, stage: str | None = None, now: dt.datetime | None = None
) -> CollectionAction | None:
    """The most urgent call task nobody holds whose time has come, claimed. Two collectors asking
    at once get different tasks (on PostgreSQL the rows another transaction holds are skipped)."""
    now = _now(now)
    stmt = select(CollectionAction.id).where(
        CollectionAction.status == "pending",
        CollectionAction.kind == "call_task",
        CollectionAction.assigned_to_id.is_(None),
        or_(CollectionAction.next_allowed_at.is_(None), CollectionAction.next_allowed_at <= now),
    )
    if stage:
        stmt = stmt.where(CollectionAction.stage == stage)
    action_id = session.scalar(stmt.order_by(*_order()).limit(1).with_for_update(skip_locked=True))
    if action_id is None:
        session.rollback()
        return None
    return claim(session, staff, action_id)


def release(session: Session, staff: StaffUser, action_id: int) -> None:
    """Back on the list for anyone (the holder, or a supervisor)."""
    action = _locked_action(session, action_id)
    if action.status != "pending":
        raise DomainError("action_closed", "This task is already done.")
    if action.assigned_to_id != staff.id and not can(staff.role, Permission.SUPERVISE_COLLECTIONS):
        raise DomainError("action_taken", "Another collector is working on this task.")
    with audit.change(session, Actor.staff(staff), "collection_action.release", action, ("assigned_to_id",)):
        action.assigned_to_id = None
    session.commit()


def _finish(session: Session, staff: StaffUser, action: CollectionAction, now: dt.datetime) -> None:
    with audit.change(
        session, Actor.staff(staff), "collection_action.done", action, ("status", "assigned_to_id", "done_at")
    ):
        action.status = "done"
        action.assigned_to_id = action.assigned_to_id or staff.id
        action.done_at = now


def complete(session: Session, staff: StaffUser, action_id: int, *, now: dt.datetime | None = None) -> None:
    action = _locked_action(session, action_id)
    _take(session, staff, action)
    _finish(session, staff, action, _now(now))
    session.commit()


def action_detail(session: Session, action_id: int) -> CollectionAction | None:
    return session.scalar(
        select(CollectionAction)
        .options(joinedload(CollectionAction.account).joinedload(Account.borrower))
        .where(CollectionAction.id == action_id)
    )


def collectors(session: Session) -> list[StaffUser]:
    """Active staff who may go on a visit."""
    return [
        s
        for s in session.scalars(
            select(StaffUser).where(StaffUser.is_active.is_(True)).order_by(StaffUser.full_name)
        )
        if s.role in FIELD_ROLES
    ]


# --- The call screen ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    attempt: ContactAttempt
    staff_name: str | None


@dataclass(frozen=True)
class CallScreen:
    account: Account
    summary: borrower_portal.AccountSummary
    number: str
    counter: rules.CallCounter
    decision: rules.Decision
    """May a call to the borrower's number be made now? Its reasons, translated, are shown."""
    restrictions: rules.Restrictions
    paused_until: dt.date | None
    disputes: list[DebtDispute]
    history: list[HistoryRow]
    promises: list[PromiseToPay]
    visits: list[HomeVisit]
    referrals: list[LegalReferral]
    now: dt.datetime
    borrower_zone: ZoneInfo


def call_screen(session: Session, account: Account, *, now: dt.datetime | None = None) -> CallScreen:
    """Everything the collector reads before and during a call, at ``now``."""
    now = _now(now)
    borrower = account.borrower
    number = borrower.phone or ""
    facts = contact.situation(session, account, now)
    history = session.execute(
        select(ContactAttempt, StaffUser.full_name)
        .outerjoin(StaffUser, StaffUser.id == ContactAttempt.staff_id)
        .where(ContactAttempt.borrower_id == borrower.id)
        .order_by(ContactAttempt.at.desc(), ContactAttempt.id.desc())
        .limit(HISTORY_ROWS)
    ).all()
    return CallScreen(
        account=account,
        summary=borrower_portal.summary(session, borrower, account),
        number=number,
        counter=contact.counter(session, account, number, now),
        decision=contact.check(session, account, Channel.CALL, when=now, address=number),
        restrictions=facts.restrictions,
        paused_until=facts.paused_until,
        disputes=list(
            session.scalars(
                select(DebtDispute).where(DebtDispute.account_id == account.id, DebtDispute.status == "open")
            )
        ),
        history=[HistoryRow(attempt, name) for attempt, name in history],
        promises=list(
            session.scalars(
                select(PromiseToPay)
                .where(PromiseToPay.account_id == account.id)
                .order_by(PromiseToPay.status != "open", PromiseToPay.due_on.desc(), PromiseToPay.id.desc())
                .limit(10)
            )
        ),
        visits=list(
            session.scalars(
                select(HomeVisit)
                .where(HomeVisit.account_id == account.id)
                .order_by(HomeVisit.id.desc())
                .limit(5)
            )
        ),
        referrals=list(
            session.scalars(
                select(LegalReferral)
                .where(LegalReferral.account_id == account.id)
                .order_by(LegalReferral.id.desc())
                .limit(5)
            )
        ),
        now=now,
        borrower_zone=ZoneInfo(borrower.time_zone),
    )


def get_account(session: Session, account_id: int) -> Account | None:
    return session.scalar(
        select(Account)
        .options(joinedload(Account.borrower), joinedload(Account.creditor))
        .where(Account.id == account_id)
    )


# --- Calls and promises to pay ---------------------------------------------------------------------


@dataclass(frozen=True)
class PromiseInput:
    amount: str
    due_on: str


def _promise_terms(account: Account, promise: PromiseInput, today: dt.date) -> tuple[int, dt.date]:
    """Amount and date of a promise, checked: more than zero and at most the balance; from
    today to 30 days ahead (the borrower's today)."""
    text = (promise.amount or "").strip()
    if not text:
        raise DomainError("promise_amount_missing", "Enter the amount the borrower promises to pay.")
    amount = parse_amount(text, account.currency)
    if amount <= 0:
        raise DomainError("promise_amount_zero", "The promised amount must be more than zero.")
    if amount > account.total_balance:
        raise DomainError(
            "promise_amount_above_balance", "The promised amount is more than the balance owed."
        )
    try:
        due_on = dt.date.fromisoformat((promise.due_on or "").strip())
    except ValueError:
        raise DomainError("promise_date_invalid", "Enter the date as YYYY-MM-DD.") from None
    if due_on < today:
        raise DomainError("promise_date_past", "The promised date is in the past.")
    if due_on > today + dt.timedelta(days=PROMISE_MAX_DAYS):
        raise DomainError(
            "promise_date_too_far",
            "A promise to pay may be at most {days} days ahead.",
            days=PROMISE_MAX_DAYS,
        )
    return amount, due_on


@dataclass(frozen=True)
class CallLogged:
    attempt: ContactAttempt
    promise: PromiseToPay | None
    completed: bool


def log_call(
    session: Session,
    staff: StaffUser,
    account_id: int,
    *,
    outcome: str,
    party: str = Party.BORROWER.value,
    notes: str | None = None,
    action_id: int | None = None,
    promise: PromiseInput | None = None,
    complete_action: bool = False,
    now: dt.datetime | None = None,
) -> CallLogged:
    """Record a call the collector made now. The contact rules decide first: a call they refuse
    (outside hours, over a cap, a cease request, a dispute…) raises ContactRefusedError and
    nothing is written. A promise to pay is checked before anything is recorded."""
    now = _now(now)
    if outcome not in CALL_OUTCOMES:
        raise DomainError("outcome_invalid", "Choose what happened on the call.")
    if party not in {p.value for p in CALL_PARTIES}:
        raise DomainError("party_invalid", "Choose who was called.")
    text = _note(notes)
    account = _account(session, account_id)
    action = None
    if action_id is not None:
        action = _locked_action(session, action_id)
        if action.account_id != account.id:
            raise DomainError("action_unknown", "This task was not found.")
        _take(session, staff, action)
    terms = None
    if outcome == "promise_to_pay":
        today = now.astimezone(ZoneInfo(account.borrower.time_zone)).date()
        terms = _promise_terms(account, promise or PromiseInput("", ""), today)
    attempt = contact.record_attempt(
        session,
        account,
        channel=Channel.CALL,
        outcome=outcome,
        actor=Actor.staff(staff),
        party=Party(party),
        address=account.borrower.phone,
        at=now,
        action_id=action.id if action else None,
        notes=text,
    )
    made = None
    if terms is not None:
        made = PromiseToPay(
            account_id=account.id,
            amount=terms[0],
            currency=account.currency,
            promised_on=now.astimezone(ZoneInfo(account.borrower.time_zone)).date(),
            due_on=terms[1],
            status="open",
            taken_by_id=staff.id,
            contact_attempt_id=attempt.id,
        )
        session.add(made)
        session.flush()
        audit.record(
            session,
            Actor.staff(staff),
            "promise_to_pay.created",
            "promise_to_pay",
            made.id,
            after={
                "account": account.id,
                "amount": made.amount,
                "currency": made.currency,
                "due_on": made.due_on,
                "attempt": attempt.id,
            },
        )
    if action is not None and complete_action:
        _finish(session, staff, action, now)
    session.commit()
    return CallLogged(attempt, made, bool(action is not None and complete_action))


# --- Home visits --------------------------------------------------------------------------------------


def _locked_visit(session: Session, visit_id: int, version: int | None) -> HomeVisit:
    found = session.scalar(
        select(HomeVisit)
        .where(HomeVisit.id == visit_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if found is None:
        raise DomainError("visit_unknown", "This home visit was not found.")
    if version is not None and found.version != version:
        raise DomainError("visit_changed", "This visit changed while you were looking at it. Reload it.")
    return found


def _standing_refusal(session: Session, account: Account, when: dt.datetime) -> None:
    """A visit cannot be planned while something other than the clock forbids contact (a
    cease-contact request, a dispute, an opt-out, a breathing space)."""
    decision = contact.check(session, account, Channel.HOME_VISIT, when=when, collectors=2, identified=True)
    lasting = [r for r in decision.reasons if r.code not in rules.TIME_BOUND]
    if lasting:
        raise contact.ContactRefusedError(
            rules.Decision(False, tuple(lasting), None, decision.may_disclose_debt)
        )


def propose_visit(
    session: Session,
    staff: StaffUser,
    account_id: int,
    *,
    action_id: int | None = None,
    notes: str | None = None,
    now: dt.datetime | None = None,
) -> HomeVisit:
    """Start a home visit (from a visit proposal, or from the account): it waits to be notified."""
    now = _now(now)
    text = _note(notes)
    account = _account(session, account_id, lock=True)
    if account.status != "open":
        raise DomainError("account_closed", "This account is closed.")
    open_visit = session.scalar(
        select(HomeVisit.id).where(HomeVisit.account_id == account.id, HomeVisit.status.in_(OPEN_VISIT))
    )
    if open_visit is not None:
        raise DomainError("visit_already_open", "This account already has a home visit under way.")
    _standing_refusal(session, account, now)
    action = None
    if action_id is not None:
        action = _locked_action(session, action_id)
        if action.account_id != account.id:
            raise DomainError("action_unknown", "This task was not found.")
        _take(session, staff, action)
    visit = HomeVisit(
        account_id=account.id,
        action_id=action.id if action else None,
        status="notify",
        notes=text,
        created_by_id=staff.id,
        collector_ids=[],
    )
    session.add(visit)
    session.flush()
    audit.record(
        session,
        Actor.staff(staff),
        "home_visit.proposed",
        "home_visit",
        visit.id,
        after={"account": account.id, "status": visit.status, "action": visit.action_id},
    )
    if action is not None:
        _finish(session, staff, action, now)
    session.commit()
    return visit


@dataclass(frozen=True)
class VisitStep:
    step: str
    collector_ids: list[int] = field(default_factory=list)
    planned_for: dt.datetime | None = None
    identified: bool = False
    outcome: str | None = None
    notes: str | None = None


def _named_collectors(session: Session, ids: list[int]) -> list[int]:
    distinct = sorted(set(ids))
    if len(distinct) < 2:  # the CN rule; the visit's own contact check repeats it
        raise DomainError(
            "visit_needs_two_collectors", "Name at least two different collectors for the visit."
        )
    found = session.scalars(select(StaffUser).where(StaffUser.id.in_(distinct))).all()
    if len(found) != len(distinct) or not all(s.is_active and s.role in FIELD_ROLES for s in found):
        raise DomainError("visit_collector_invalid", "Choose active collectors from the list.")
    return distinct


def advance_visit(
    session: Session,
    staff: StaffUser,
    visit_id: int,
    *,
    version: int | None,
    step: VisitStep,
    now: dt.datetime | None = None,
) -> HomeVisit:
    """Do the step the visit waits for, and only that one: notify → evaluate → dispatch (two
    distinct collectors named) → meet (collectors identified; the contact rules decide, and the
    visit enters the contact history) → agreement (then closed)."""
    now = _now(now)
    visit = _locked_visit(session, visit_id, version)
    following = visits.next_status(visit.status, step.step)
    text = _note(step.notes)
    fields = ("status", "collector_ids", "planned_for", "identified", "outcome", "notes")
    before = audit.snapshot(visit, fields)
    account = _account(session, visit.account_id)
    if visit.status == "dispatch":
        visit.collector_ids = _named_collectors(session, step.collector_ids)
        if step.planned_for is not None and step.planned_for < now - dt.timedelta(minutes=5):
            raise DomainError("visit_planned_in_past", "The visit cannot be planned in the past.")
        visit.planned_for = step.planned_for
        _standing_refusal(session, account, step.planned_for or now)
    elif visit.status == "meet":
        if not step.identified:
            raise DomainError(
                "visit_not_identified", "Confirm that every collector showed their identification."
            )
        if step.outcome not in VISIT_OUTCOMES:
            raise DomainError("outcome_invalid", "Choose what happened on the visit.")
        contact.record_attempt(
            session,
            account,
            channel=Channel.HOME_VISIT,
            outcome=step.outcome,
            actor=Actor.staff(staff),
            address=None,
            at=now,
            action_id=visit.action_id,
            notes=text,
            collectors=len(visit.collector_ids),
            identified=True,
        )
        visit.identified = True
        visit.outcome = step.outcome
    elif visit.status == "agreement":
        if step.outcome not in AGREEMENT_OUTCOMES:
            raise DomainError("outcome_invalid", "Choose what was agreed.")
        visit.outcome = step.outcome
    if text:
        visit.notes = f"{visit.notes}\n\n{text}" if visit.notes else text
    visit.status = following
    audit.record(
        session,
        Actor.staff(staff),
        f"home_visit.{step.step}",
        "home_visit",
        visit.id,
        before=before,
        after=audit.snapshot(visit, fields),
    )
    session.commit()
    return visit


def cancel_visit(
    session: Session, staff: StaffUser, visit_id: int, *, version: int | None, notes: str | None
) -> HomeVisit:
    visit = _locked_visit(session, visit_id, version)
    if visit.status not in OPEN_VISIT:
        raise DomainError("visit_closed", "This visit is already closed.")
    text = _note(notes, required=True)
    with audit.change(session, Actor.staff(staff), "home_visit.cancel", visit, ("status", "notes")):
        visit.status = "cancelled"
        visit.notes = f"{visit.notes}\n\n{text}" if visit.notes else text
    session.commit()
    return visit


def visit_detail(session: Session, visit_id: int) -> HomeVisit | None:
    return session.get(HomeVisit, visit_id)


def open_visits(session: Session, limit: int = 100) -> list[tuple[HomeVisit, Account]]:
    return [
        (visit, account)
        for visit, account in session.execute(
            select(HomeVisit, Account)
            .join(Account, Account.id == HomeVisit.account_id)
            .where(HomeVisit.status.in_(OPEN_VISIT))
            .order_by(HomeVisit.id)
            .limit(limit)
        ).all()
    ]


def staff_names(session: Session, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(select(StaffUser.id, StaffUser.full_name).where(StaffUser.id.in_(ids))).all())


# --- Legal referrals -------------------------------------------------------------------------------------


def request_referral(
    session: Session,
    staff: StaffUser,
    account_id: int,
    *,
    reason: str | None,
    action_id: int | None = None,
    now: dt.datetime | None = None,
) -> LegalReferral:
    """A collector asks for the account to be referred for legal action; a supervisor decides."""
    now = _now(now)
    text = _note(reason)
    if not text:
        raise DomainError("referral_reason_missing", "Say why the account should be referred.")
    account = _account(session, account_id, lock=True)
    if account.stage == Stage.LEGAL.value:
        raise DomainError("account_already_legal", "This account is already referred for legal action.")
    pending = session.scalar(
        select(LegalReferral.id).where(
            LegalReferral.account_id == account.id, LegalReferral.status == "pending"
        )
    )
    if pending is not None:
        raise DomainError("referral_pending", "A referral of this account is already waiting for a decision.")
    action = None
    if action_id is not None:
        action = _locked_action(session, action_id)
        if action.account_id != account.id:
            raise DomainError("action_unknown", "This task was not found.")
        _take(session, staff, action)
    referral = LegalReferral(account_id=account.id, status="pending", reason=text, requested_by_id=staff.id)
    session.add(referral)
    session.flush()
    audit.record(
        session,
        Actor.staff(staff),
        "legal_referral.requested",
        "legal_referral",
        referral.id,
        after={"account": account.id, "status": referral.status, "reason": text},
    )
    if action is not None:
        _finish(session, staff, action, now)
    session.commit()
    return referral


def referral_queue(session: Session, *, limit: int = 100) -> list[tuple[LegalReferral, Account]]:
    """Pending referrals first (oldest first), then the latest decided ones."""
    pending = session.execute(
        select(LegalReferral, Account)
        .join(Account, Account.id == LegalReferral.account_id)
        .where(LegalReferral.status == "pending")
        .order_by(LegalReferral.created_at, LegalReferral.id)
        .limit(limit)
    ).all()
    decided = session.execute(
        select(LegalReferral, Account)
        .join(Account, Account.id == LegalReferral.account_id)
        .where(LegalReferral.status != "pending")
        .order_by(LegalReferral.decided_at.desc(), LegalReferral.id.desc())
        .limit(20)
    ).all()
    return [(r, a) for r, a in pending] + [(r, a) for r, a in decided]


def decide_referral(
    session: Session,
    supervisor: StaffUser,
    referral_id: int,
    *,
    version: int | None,
    approve: bool,
    note: str | None,
    today: dt.date | None = None,
) -> LegalReferral:
    """Approve (the account moves to the legal stage, its stage history with it) or reject; by a
    supervisor who did not ask for it, once."""
    if not can(supervisor.role, Permission.SUPERVISE_COLLECTIONS):
        raise DomainError("not_allowed", "Your role may not do this.")
    referral = session.scalar(
        select(LegalReferral)
        .where(LegalReferral.id == referral_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if referral is None:
        raise DomainError("referral_unknown", "This referral was not found.")
    if referral.status != "pending":
        raise DomainError("referral_decided", "This referral has already been decided.")
    if version is not None and referral.version != version:
        raise DomainError(
            "referral_changed", "This referral changed while you were looking at it. Reload it."
        )
    if referral.requested_by_id == supervisor.id:
        raise DomainError(
            "referral_own_request", "Nobody may decide their own referral: another supervisor must."
        )
    text = _note(note, required=not approve)
    today = today or collector_today()
    fields = ("status", "decided_by_id", "decision_note", "decided_at")
    before = audit.snapshot(referral, fields)
    referral.status = "approved" if approve else "rejected"
    referral.decided_by_id = supervisor.id
    referral.decision_note = text
    referral.decided_at = utcnow()
    if approve:
        account = _account(session, referral.account_id, lock=True)
        _to_legal(session, supervisor, account, referral, today)
    audit.record(
        session,
        Actor.staff(supervisor),
        f"legal_referral.{referral.status}",
        "legal_referral",
        referral.id,
        before=before,
        after=audit.snapshot(referral, fields),
    )
    session.commit()
    return referral


def _to_legal(
    session: Session, supervisor: StaffUser, account: Account, referral: LegalReferral, today: dt.date
) -> None:
    """The one stage change outside the daily run: close the open stage history, open "legal"."""
    before = audit.snapshot(account, ("stage",))
    for row in session.scalars(
        select(StageHistory).where(StageHistory.account_id == account.id, StageHistory.left_on.is_(None))
    ):
        row.left_on = today
    session.add(StageHistory(account_id=account.id, stage=Stage.LEGAL.value, entered_on=today))
    account.stage = Stage.LEGAL.value
    audit.record(
        session,
        Actor.staff(supervisor),
        "account.stage",
        "account",
        account.id,
        before=before,
        after={"stage": account.stage, "referral": referral.id},
    )
