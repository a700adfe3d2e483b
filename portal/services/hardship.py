"""Hardship cases from the borrower's side: the statement step by step, evidence, submission,
the offers the policy allows at once, accepting one or sending a proposal, withdrawing.

Every function is one transaction: it loads the case (the borrower's own, locked), asks
workflows/ what the rules allow, persists, writes the audit events and commits. A refusal
raises DomainError before anything is written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from flask_babel import force_locale, gettext
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from portal.db import utcnow
from portal.integrations.images import prepare_evidence
from portal.integrations.notify import Message
from portal.integrations.storage import Storage
from portal.models import (
    Account,
    AccountPause,
    Borrower,
    BudgetLine,
    CaseMessage,
    EvidenceFile,
    HardshipCase,
    Offer,
)
from portal.services import agreements, audit
from portal.services import policy as policy_service
from portal.services.audit import Actor
from portal.services.borrower_portal import borrower_today
from workflows import affordability, authority, offers, personal_data
from workflows.affordability import BudgetCategory, BudgetSection, Frequency, Household
from workflows.errors import DomainError
from workflows.negotiation import (
    CLOSED_STATES,
    OPEN_STATES,
    ActorKind,
    CaseAction,
    CaseActor,
    CaseFacts,
    CaseState,
    transition,
)
from workflows.policy import Policy, Stage

DESK_TZ = ZoneInfo("Asia/Shanghai")
"""The negotiation department's own calendar, for review deadlines and days waiting."""


def desk_today() -> dt.date:
    return dt.datetime.now(DESK_TZ).date()


STEPS = ("reason", "household", "income", "spending", "debts", "evidence", "review")
"""The form's pages in order. Every step but the last must be saved before the case is submitted."""

REQUIRED_STEPS = STEPS[:-1]

STEP_SECTIONS: Mapping[str, tuple[BudgetSection, ...]] = {
    "income": (BudgetSection.INCOME,),
    "spending": (BudgetSection.FIXED_COSTS, BudgetSection.FLEXIBLE_COSTS),
    "debts": (BudgetSection.PRIORITY_DEBTS, BudgetSection.NON_PRIORITY_DEBTS),
}

CASE_FIELDS = ("state", "reason", "description", "adults", "children", "dependants", "employment_status")


@dataclass(frozen=True)
class LineInput:
    amount: int
    frequency: Frequency


def _borrower_actor(borrower: Borrower) -> Actor:
    return Actor("borrower", borrower.id)


def _case_actor(borrower: Borrower) -> CaseActor:
    return CaseActor(ActorKind.BORROWER, borrower.id)


# --- Finding and starting cases ---------------------------------------------------------------


def case_for(
    session: Session, borrower: Borrower, case_id: int, *, lock: bool = False
) -> HardshipCase | None:
    """The borrower's own case, or None: another borrower's id is as unknown as a wrong one."""
    stmt = (
        select(HardshipCase)
        .options(selectinload(HardshipCase.budget_lines), selectinload(HardshipCase.evidence_files))
        .where(HardshipCase.id == case_id, HardshipCase.borrower_id == borrower.id)
    )
    if lock:
        stmt = stmt.with_for_update(of=HardshipCase).execution_options(populate_existing=True)
    return session.scalar(stmt)


def open_case_for_account(session: Session, account_id: int) -> HardshipCase | None:
    return session.scalar(
        select(HardshipCase).where(
            HardshipCase.account_id == account_id,
            HardshipCase.state.in_([s.value for s in OPEN_STATES | {CaseState.APPROVED}]),
        )
    )


def cases_of(session: Session, borrower: Borrower) -> list[HardshipCase]:
    return list(
        session.scalars(
            select(HardshipCase)
            .where(HardshipCase.borrower_id == borrower.id)
            .order_by(HardshipCase.created_at.desc(), HardshipCase.id.desc())
        )
    )


def start(session: Session, borrower: Borrower, account_id: int) -> HardshipCase:
    """The draft for this account: the one already open (nothing is started twice), or a new one."""
    account = session.scalar(
        select(Account)
        .where(Account.id == account_id, Account.borrower_id == borrower.id, Account.status == "open")
        .with_for_update()
    )
    if account is None:
        raise DomainError("account_unknown", "This account is not one of yours.")
    existing = open_case_for_account(session, account.id)
    if existing is not None:
        session.rollback()
        return existing
    case = HardshipCase(
        borrower_id=borrower.id, account_id=account.id, state=CaseState.DRAFT.value, steps_done=[]
    )
    session.add(case)
    session.flush()
    audit.record(
        session,
        _borrower_actor(borrower),
        "hardship_case.started",
        "hardship_case",
        case.id,
        after=audit.snapshot(case, ("state", "account_id")),
    )
    session.commit()
    return case


# --- The statement, step by step --------------------------------------------------------------


def _editable(
    session: Session, borrower: Borrower, case_id: int, *, also: tuple[CaseState, ...] = ()
) -> HardshipCase:
    case = case_for(session, borrower, case_id, lock=True)
    if case is None:
        raise DomainError("case_unknown", "This case is not one of yours.")
    if case.state not in {CaseState.DRAFT.value, *(s.value for s in also)}:
        raise DomainError("case_not_editable", "This case has been sent and can no longer be changed.")
    return case


def _mark_done(case: HardshipCase, step: str) -> None:
    if step not in case.steps_done:
        # A new list, so SQLAlchemy sees the JSON column change.
        case.steps_done = [s for s in STEPS if s in {*case.steps_done, step}]


def next_step(case: HardshipCase) -> str:
    """The first step not saved yet; the review once all are."""
    return next((s for s in REQUIRED_STEPS if s not in case.steps_done), "review")


def reachable(case: HardshipCase, step: str) -> bool:
    """A step can be opened once every step before it is saved: nobody skips to the end."""
    return all(s in case.steps_done for s in STEPS[: STEPS.index(step)])


def save_reason(session: Session, borrower: Borrower, case_id: int, *, reason: str, description: str) -> None:
    case = _editable(session, borrower, case_id)
    with audit.change(session, _borrower_actor(borrower), "hardship_case.reason_saved", case, CASE_FIELDS):
        case.reason = reason
        case.description = description.strip()
        _mark_done(case, "reason")
    session.commit()


def save_household(
    session: Session,
    borrower: Borrower,
    case_id: int,
    *,
    adults: int,
    children: int,
    dependants: int,
    employment_status: str,
) -> None:
    Household(adults=adults, children=children, dependants=dependants)  # validates the numbers
    case = _editable(session, borrower, case_id)
    with audit.change(session, _borrower_actor(borrower), "hardship_case.household_saved", case, CASE_FIELDS):
        case.adults, case.children, case.dependants = adults, children, dependants
        case.employment_status = employment_status
        _mark_done(case, "household")
    session.commit()


def _lines_snapshot(case: HardshipCase, categories: set[str]) -> dict[str, dict[str, object]]:
    """The lines of ``categories`` for an audit event: which were given, how often — not the amounts
    or the explanations, which are personal data (``workflows.personal_data``)."""
    return {
        line.category: personal_data.redact(
            "budget_line",
            {"amount": line.amount, "frequency": line.frequency, "explanation": line.explanation},
        )
        for line in case.budget_lines
        if line.category in categories
    }


def save_budget(
    session: Session,
    borrower: Borrower,
    case_id: int,
    step: str,
    lines: Mapping[BudgetCategory, LineInput],
    *,
    today: dt.date,
) -> None:
    """Replace the lines of one step's sections; a blank line is no line. Amounts are checked
    against the policy's absurd-amount guard before anything is written."""
    sections = STEP_SECTIONS[step]
    categories = {c for c in BudgetCategory if affordability.SECTION_OF[c] in sections}
    if set(lines) - categories:
        raise DomainError("category_unknown", "This step has no such line.")
    case = _editable(session, borrower, case_id)
    policy = policy_service.current(session, today)
    currency = case.account.currency
    for category, line in lines.items():
        affordability.check_line(
            affordability.BudgetLine(category, line.amount, line.frequency), currency, policy.hardship
        )
    names = {c.value for c in categories}
    before = _lines_snapshot(case, names)
    by_category = {line.category: line for line in case.budget_lines}
    for category in categories:
        given = lines.get(category)
        existing = by_category.get(category.value)
        if given is None or given.amount == 0:
            if existing is not None:
                case.budget_lines.remove(existing)
        elif existing is None:
            case.budget_lines.append(
                BudgetLine(category=category.value, amount=given.amount, frequency=given.frequency.value)
            )
        elif (existing.amount, existing.frequency) != (given.amount, given.frequency.value):
            existing.amount, existing.frequency = given.amount, given.frequency.value
    _mark_done(case, step)
    session.flush()
    audit.record(
        session,
        _borrower_actor(borrower),
        f"hardship_case.{step}_saved",
        "hardship_case",
        case.id,
        before=before,
        after=_lines_snapshot(case, names),
    )
    session.commit()


def save_explanations(
    session: Session, borrower: Borrower, case_id: int, explanations: Mapping[BudgetCategory, str]
) -> None:
    case = _editable(session, borrower, case_id)
    by_category = {line.category: line for line in case.budget_lines}
    if any(c.value not in by_category for c in explanations):
        raise DomainError("category_unknown", "This step has no such line.")

    def snapshot() -> dict[str, object]:
        return {
            c.value: personal_data.redact("budget_line", {"explanation": by_category[c.value].explanation})[
                "explanation"
            ]
            for c in explanations
        }

    before = snapshot()
    for category, text in explanations.items():
        by_category[category.value].explanation = text.strip()[:500] or None
    audit.record(
        session,
        _borrower_actor(borrower),
        "hardship_case.explanations_saved",
        "hardship_case",
        case.id,
        before=before,
        after=snapshot(),
    )
    session.commit()


def finish_evidence_step(session: Session, borrower: Borrower, case_id: int) -> None:
    """Evidence is optional: moving on from its page saves the step."""
    case = _editable(session, borrower, case_id)
    if "evidence" not in case.steps_done:
        with audit.change(
            session, _borrower_actor(borrower), "hardship_case.evidence_done", case, ("steps_done",)
        ):
            _mark_done(case, "evidence")
    session.commit()


# --- Evidence -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


def add_evidence(
    session: Session, borrower: Borrower, case_id: int, *, filename: str, data: bytes, storage: Storage
) -> EvidenceFile:
    """Check the file by its bytes, re-encode images without metadata, store it under a random
    key and record it. A refused file leaves nothing behind."""
    case = _editable(session, borrower, case_id)
    return _commit_with_files(
        session,
        storage,
        lambda keep: _store_evidence(
            session, borrower, case, Upload(filename, data), storage=storage, keep=keep
        ),
    )


def _commit_with_files(session: Session, storage: Storage | None, work) -> Any:  # type: ignore[no-untyped-def]
    """Run ``work`` (which stores files and records them) and commit; if anything fails, the
    transaction is rolled back and the files it stored are deleted again."""
    stored: list[str] = []
    try:
        result = work(stored.append)
        session.commit()
    except BaseException:
        session.rollback()
        for key in stored:
            if storage is not None:
                storage.delete(key)
        raise
    return result


def _store_evidence(  # type: ignore[no-untyped-def]
    session: Session, borrower: Borrower, case: HardshipCase, upload: Upload, *, storage: Storage, keep
) -> EvidenceFile:
    current = sum(1 for f in case.evidence_files if f.removed_at is None)
    prepared = prepare_evidence(upload.filename, upload.data, current)
    key = storage.put(prepared.data, suffix=prepared.kind.extension)
    keep(key)
    evidence = EvidenceFile(
        hardship_case_id=case.id,
        storage_key=key,
        display_name=prepared.display_name,
        kind=prepared.kind.value,
        content_type=prepared.content_type,
        size=prepared.size,
        sha256=prepared.sha256,
    )
    session.add(evidence)
    session.flush()
    audit.record(
        session,
        _borrower_actor(borrower),
        "evidence_file.uploaded",
        "evidence_file",
        evidence.id,
        after=audit.snapshot(evidence, ("hardship_case_id", "display_name", "kind", "size", "sha256")),
    )
    return evidence


def evidence_for(session: Session, borrower: Borrower, case_id: int, file_id: int) -> EvidenceFile | None:
    return session.scalar(
        select(EvidenceFile)
        .join(HardshipCase)
        .where(
            EvidenceFile.id == file_id,
            EvidenceFile.hardship_case_id == case_id,
            EvidenceFile.removed_at.is_(None),
            HardshipCase.borrower_id == borrower.id,
        )
    )


def remove_evidence(session: Session, borrower: Borrower, case_id: int, file_id: int) -> None:
    """Take a file off a draft. The record stays (removed) for the audit trail; the bytes are
    kept until retention deletes them, so nothing the borrower once sent silently disappears."""
    case = _editable(session, borrower, case_id)
    evidence = next((f for f in case.evidence_files if f.id == file_id and f.removed_at is None), None)
    if evidence is None:
        raise DomainError("evidence_unknown", "This file is not on your case.")
    with audit.change(session, _borrower_actor(borrower), "evidence_file.removed", evidence, ("removed_at",)):
        evidence.removed_at = utcnow()
    session.commit()


# --- Assessment and offers ----------------------------------------------------------------------


def _household(case: HardshipCase) -> Household:
    return Household(adults=case.adults or 1, children=case.children or 0, dependants=case.dependants or 0)


def _budget_lines(case: HardshipCase) -> list[affordability.BudgetLine]:
    return [
        affordability.BudgetLine(BudgetCategory(line.category), line.amount, Frequency(line.frequency))
        for line in case.budget_lines
    ]


def assessment(case: HardshipCase, policy: Policy) -> affordability.Assessment:
    explanations = {
        BudgetCategory(line.category): line.explanation for line in case.budget_lines if line.explanation
    }
    return affordability.assess(
        _budget_lines(case), _household(case), case.account.currency, policy.hardship, explanations
    )


def position(account: Account) -> offers.AccountPosition:
    return offers.AccountPosition(
        currency=account.currency,
        principal=account.principal_balance,
        interest=account.interest_balance,
        fees=account.fees_balance,
        overdue_amount=account.overdue_amount,
        contractual_instalment=account.next_due_amount,
        annual_rate_bp=account.annual_rate_bp,
        stage=Stage(account.stage),
        dpd=account.dpd,
        oldest_unpaid_due_on=account.oldest_unpaid_due_on,
    )


def offer_row(case: HardshipCase, offer: offers.Offer, origin: str) -> Offer:
    return Offer(
        hardship_case_id=case.id,
        origin=origin,
        key=offer.key,
        status="open",
        currency=offer.schedule.currency,
        instalment_amount=offer.instalment_amount,
        instalment_count=offer.instalment_count,
        total_repayable=offer.total_repayable,
        waived_total=sum(offer.waived.values()),
        first_due_on=offer.schedule.instalments[0].due_on if offer.schedule.instalments else None,
        expires_on=offer.expires_on,
        terms=offers.offer_to_dict(offer),
    )


def _move(
    session: Session,
    case: HardshipCase,
    action: CaseAction,
    actor: CaseActor,
    who: Actor,
    *,
    facts: CaseFacts | None = None,
) -> None:
    """One transition of the state machine, one audit event."""
    moved = transition(CaseState(case.state), action, actor, facts)
    before = audit.snapshot(case, ("state",))
    case.state = moved.after.value
    if moved.after in CLOSED_STATES and moved.after != CaseState.APPROVED:
        case.closed_at = utcnow()
    audit.record(
        session,
        who,
        f"hardship_case.{action.value}",
        "hardship_case",
        case.id,
        before=before,
        after=audit.snapshot(case, ("state",)),
    )


def submit(
    session: Session, borrower: Borrower, case_id: int, *, today: dt.date | None = None
) -> HardshipCase:
    """Send the statement: every step saved, every figure above the reference explained. The
    account gets its breathing space, and the case the offers the policy allows at once."""
    case = case_for(session, borrower, case_id, lock=True)
    if case is None:
        raise DomainError("case_unknown", "This case is not one of yours.")
    today = today or borrower_today(borrower)
    version, policy = policy_service.current_version(session, today)
    # The state machine refuses a second submission before the steps are even looked at.
    transition(CaseState(case.state), CaseAction.SUBMIT, _case_actor(borrower))
    missing = [s for s in REQUIRED_STEPS if s not in case.steps_done]
    if missing:
        raise DomainError("steps_missing", "Please complete this step first: {step}.", step=missing[0])
    result = assessment(case, policy)
    if result.needs_explanation:
        raise DomainError("explanation_missing", "Please explain the figures marked above the usual amount.")
    who = _borrower_actor(borrower)
    _move(session, case, CaseAction.SUBMIT, _case_actor(borrower), who)
    case.submitted_at = utcnow()
    case.policy_version = version
    _start_breathing_space(session, case, policy, today, who)
    generated = offers.generate_offers(position(case.account), result.disposable_monthly, policy, today)
    for offer in generated:
        session.add(offer_row(case, offer, "system"))
    _move(session, case, CaseAction.EVALUATE, CaseActor(ActorKind.SYSTEM), audit.SYSTEM)
    session.commit()
    return case


def _start_breathing_space(
    session: Session, case: HardshipCase, policy: Policy, today: dt.date, who: Actor
) -> None:
    rules = policy.hardship
    if rules.breathing_space_days <= 0 or not (
        rules.breathing_space_stops_fees or rules.breathing_space_pauses_contact
    ):
        return
    pause = AccountPause(
        account_id=case.account_id,
        hardship_case_id=case.id,
        starts_on=today,
        ends_on=today + dt.timedelta(days=rules.breathing_space_days - 1),
        stops_fees=rules.breathing_space_stops_fees,
        pauses_contact=rules.breathing_space_pauses_contact,
    )
    session.add(pause)
    session.flush()
    audit.record(
        session,
        who,
        "account_pause.started",
        "account_pause",
        pause.id,
        after=audit.snapshot(
            pause, ("account_id", "hardship_case_id", "starts_on", "ends_on", "stops_fees", "pauses_contact")
        ),
    )


def lift_breathing_space(session: Session, case: HardshipCase, who: Actor) -> None:
    for pause in session.scalars(
        select(AccountPause).where(AccountPause.hardship_case_id == case.id, AccountPause.lifted_at.is_(None))
    ):
        with audit.change(session, who, "account_pause.lifted", pause, ("lifted_at",)):
            pause.lifted_at = utcnow()


def active_pause(session: Session, account_id: int, today: dt.date) -> AccountPause | None:
    """The breathing space in force on the account today, if any (what every later job reads)."""
    return session.scalar(
        select(AccountPause)
        .where(
            AccountPause.account_id == account_id,
            AccountPause.lifted_at.is_(None),
            AccountPause.starts_on <= today,
            AccountPause.ends_on >= today,
        )
        .order_by(AccountPause.ends_on.desc())
        .limit(1)
    )


def open_offers(case: HardshipCase) -> list[Offer]:
    return [o for o in case.offers if o.status == "open" and o.origin in ("system", "agent")]


def offer_deadline(case: HardshipCase) -> dt.date | None:
    """The last day the borrower can answer: the latest expiry of the open offers made to them."""
    return max((o.expires_on for o in open_offers(case)), default=None)


def accept(
    session: Session, borrower: Borrower, case_id: int, offer_id: int, *, today: dt.date | None = None
) -> Offer:
    """Accept one of the case's open offers: the case is approved and the other offers lapse."""
    case = case_for(session, borrower, case_id, lock=True)
    if case is None:
        raise DomainError("case_unknown", "This case is not one of yours.")
    offer = next((o for o in case.offers if o.id == offer_id and o.origin in ("system", "agent")), None)
    if offer is None:
        raise DomainError("offer_unknown", "This offer is not one made to you.")
    if offer.status == "accepted" and case.state == CaseState.APPROVED.value:
        return offer  # the same acceptance sent again (a double tap, a retry) changes nothing
    if offer.status != "open":
        raise DomainError("offer_not_open", "This offer is no longer open.")
    today = today or borrower_today(borrower)
    who = _borrower_actor(borrower)
    _move(
        session,
        case,
        CaseAction.ACCEPT,
        _case_actor(borrower),
        who,
        facts=CaseFacts(expires_on=offer.expires_on, today=today),
    )
    now = utcnow()
    for other in case.offers:
        if other.status == "open":
            with audit.change(session, who, "offer.decided", other, ("status",)):
                other.status = "accepted" if other.id == offer.id else "superseded"
                other.decided_at = now
    agreement = agreements.prepare(session, case, offer)
    session.commit()
    agreements.enqueue_render(agreement.id)
    return offer


def propose(
    session: Session,
    borrower: Borrower,
    case_id: int,
    *,
    monthly_amount: int,
    count: int,
    today: dt.date | None = None,
) -> Offer:
    """The borrower's own proposal goes to the negotiation department, with a review date from policy."""
    case = case_for(session, borrower, case_id, lock=True)
    if case is None:
        raise DomainError("case_unknown", "This case is not one of yours.")
    today = today or borrower_today(borrower)
    transition(CaseState(case.state), CaseAction.ASK_CUSTOM, _case_actor(borrower))
    policy = policy_service.current(session, today)
    proposal = offers.proposal_offer(position(case.account), monthly_amount, count, today, policy)
    who = _borrower_actor(borrower)
    row = offer_row(case, proposal, "borrower")
    session.add(row)
    for other in case.offers:
        if other.status == "open" and other.origin == "system":
            other.status, other.decided_at = "superseded", utcnow()
    _move(session, case, CaseAction.ASK_CUSTOM, _case_actor(borrower), who)
    enqueue(session, case, policy)
    session.flush()
    audit.record(
        session,
        who,
        "offer.proposed",
        "offer",
        row.id,
        after=audit.snapshot(row, ("key", "instalment_amount", "instalment_count", "total_repayable")),
    )
    session.commit()
    return row


def withdraw(session: Session, borrower: Borrower, case_id: int) -> None:
    case = case_for(session, borrower, case_id, lock=True)
    if case is None:
        raise DomainError("case_unknown", "This case is not one of yours.")
    who = _borrower_actor(borrower)
    _move(session, case, CaseAction.WITHDRAW, _case_actor(borrower), who)
    for offer in case.offers:
        if offer.status == "open":
            offer.status, offer.decided_at = "superseded", utcnow()
    lift_breathing_space(session, case, who)
    session.commit()


def expire_offers(session: Session, today: dt.date | None = None) -> list[Message]:
    """Close the cases whose offers have all passed their expiry (an hourly job), lifting their
    breathing space; returns the notices owed to the borrowers told so (the job sends them).
    Without `today`, each case is judged by the date in its borrower's time zone."""
    notices: list[Message] = []
    candidates = session.scalars(
        select(HardshipCase)
        .options(selectinload(HardshipCase.offers), selectinload(HardshipCase.borrower))
        .where(HardshipCase.state.in_([CaseState.OFFERED.value, CaseState.COUNTERED.value]))
        .order_by(HardshipCase.id)
        .with_for_update(of=HardshipCase)
    ).all()
    for case in candidates:
        deadline = offer_deadline(case)
        day = today or borrower_today(case.borrower)
        if deadline is None or deadline >= day:
            continue
        _move(
            session,
            case,
            CaseAction.EXPIRE,
            CaseActor(ActorKind.SYSTEM),
            audit.SYSTEM,
            facts=CaseFacts(expires_on=deadline, today=day),
        )
        for offer in case.offers:
            if offer.status == "open":
                offer.status, offer.decided_at = "expired", utcnow()
        lift_breathing_space(session, case, audit.SYSTEM)
        with force_locale(case.borrower.language):
            body = gettext(
                "The offers on your request for help have expired. You can ask for help again at any time."
            )
        session.add(CaseMessage(hardship_case_id=case.id, direction="to_borrower", kind="expired", body=body))
        notice = case_update_notice(case.borrower)
        if notice is not None:
            notices.append(notice)
    session.commit()
    return notices


# --- Review by the negotiation department ------------------------------------------------------


def days_waiting(case: HardshipCase, today: dt.date) -> int:
    if case.queued_at is None:
        return 0
    return max(0, (today - case.queued_at.astimezone(DESK_TZ).date()).days)


def refresh_priority(case: HardshipCase, account: Account, policy: Policy, today: dt.date) -> None:
    """What the review queue orders and filters by: the balance band and the priority from policy."""
    case.amount_band = authority.amount_band(account.total_balance, account.currency, policy)
    case.priority = authority.priority(
        account.total_balance,
        account.currency,
        Stage(account.stage),
        days_waiting(case, today),
        vulnerable=case.vulnerable,
        policy=policy,
    )


def enqueue(session: Session, case: HardshipCase, policy: Policy) -> None:
    """The case (re-)enters the review queue: unclaimed, with a review deadline from policy and
    its place in the queue. Time already waited counts. Never commits."""
    today = desk_today()
    if case.queued_at is None:
        case.queued_at = utcnow()
    case.claimed_by_id = case.claimed_at = None
    case.review_due_on = today + dt.timedelta(days=policy.hardship.review_sla_days)
    proposal = next((o for o in reversed(case.offers) if o.origin == "borrower"), None)
    if proposal is not None:
        reliefs = proposal.terms.get("reliefs") or []
        case.relief_asked = "settlement" if "settlement" in reliefs else (reliefs[0] if reliefs else None)
    refresh_priority(case, case.account, policy, today)
    session.flush()


def decline_counter(session: Session, borrower: Borrower, case_id: int) -> None:
    """The borrower turns down a counter-offer: the case goes back to the queue."""
    case = case_for(session, borrower, case_id, lock=True)
    if case is None:
        raise DomainError("case_unknown", "This case is not one of yours.")
    who = _borrower_actor(borrower)
    _move(session, case, CaseAction.DECLINE, _case_actor(borrower), who)
    now = utcnow()
    for offer in case.offers:
        if offer.status == "open" and offer.origin == "agent":
            offer.status, offer.decided_at = "declined", now
    enqueue(session, case, policy_service.current(session, borrower_today(borrower)))
    session.commit()


def respond(
    session: Session,
    borrower: Borrower,
    case_id: int,
    text: str,
    *,
    upload: Upload | None = None,
    storage: Storage | None = None,
) -> None:
    """The borrower answers a request for information, with a document if they have one; the
    case goes back to review. All or nothing: a refused file leaves the answer unsent."""
    body = (text or "").strip()
    if not body:
        raise DomainError("response_required", "Write your answer.")
    if len(body) > 4000:
        raise DomainError(
            "response_too_long", "Please keep your answer under {maximum} characters.", maximum=4000
        )
    case = case_for(session, borrower, case_id, lock=True)
    if case is None:
        raise DomainError("case_unknown", "This case is not one of yours.")

    def work(keep) -> None:  # type: ignore[no-untyped-def]
        who = _borrower_actor(borrower)
        _move(session, case, CaseAction.RESPOND, _case_actor(borrower), who)
        if upload is not None and storage is not None:
            _store_evidence(session, borrower, case, upload, storage=storage, keep=keep)
        session.add(
            CaseMessage(hardship_case_id=case.id, direction="from_borrower", kind="response", body=body)
        )
        enqueue(session, case, policy_service.current(session, borrower_today(borrower)))

    _commit_with_files(session, storage, work)


def case_update_notice(borrower: Borrower) -> Message | None:
    """A discreet message that there is news: it names neither the debt nor the lender, since a
    phone's lock screen shows it."""
    channel, recipient = ("sms", borrower.phone) if borrower.phone else ("email", borrower.email)
    if not recipient:
        return None
    with force_locale(borrower.language):
        body = gettext("There is news about your request in Accord. Please sign in to see it.")
        subject = gettext("News about your request")
    return Message(channel, recipient, body, "case_update", subject=subject)
