"""The retention job: remove personal data whose policy period has passed, and report what it did.

``run`` selects in SQL what may be due (with the same cutoff day as ``workflows.retention``), gathers
the facts of each candidate, lets ``workflows.retention`` decide, and then:

- **anonymises a borrower** whose every account is finished and quiet for the period: name to a
  neutral placeholder; date of birth, identity number, phone, e-mail, address, company and
  registration number emptied (with no date of birth they can no longer sign in, and with no phone
  or e-mail nothing can reach them); every session ended; every hardship case of theirs cleared
  (below); their signed agreements' files and dispute files deleted from storage and the keys
  forgotten, the signer's typed name, address and browser forgotten; the free text of disputes,
  visits and referrals replaced; the numbers and addresses their contact history and sent messages
  name forgotten; saved cards marked removed.
- **clears a hardship case** closed for the period: its evidence files deleted from storage (rows
  marked removed), its budget lines deleted, its description emptied, its messages' and notes' text
  replaced.
- **removes old operational records** (``_old_records``), by age alone: the PDFs of letter batches
  sent before the cutoff, the refused rows of placement imports finished before it, and the personal
  data in the payloads of Stripe events received before it (``workflows.retention.
  minimal_stripe_payload``). Each run looks only at what became due since the last finished run
  (what is already removed would be counted as nothing anyway).

The ledger, credit entries, payments, refunds and the audit trail are never touched (financial
records, and the audit trail is append-only); they hold ids and amounts, not personal data. Each
borrower and each case is its own transaction, written with its audit events and a
``RetentionErasure`` row, so a second run finds nothing to do and a run stopped half-way resumes.
Files are deleted before the transaction commits: a commit that fails leaves the rows to the next
run, which deletes (nothing) again. A dry run counts exactly what a real run would do and changes
nothing but its own report row.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.integrations.storage import Storage, document_storage_from_config, storage_from_config
from portal.models import (
    Account,
    Agreement,
    AutopayMandate,
    Borrower,
    BudgetLine,
    CaseMessage,
    CaseNote,
    ContactAttempt,
    DebtDispute,
    Dispute,
    EvidenceFile,
    HardshipCase,
    HomeVisit,
    LedgerEntry,
    LegalReferral,
    OutboundMessage,
    Payment,
    PlacementImport,
    PlacementRejection,
    Plan,
    PromiseToPay,
    Refund,
    RetentionErasure,
    RetentionRun,
    SavedCard,
    SigninAttempt,
    StripeEvent,
    SuspenseItem,
)
from portal.services import audit
from portal.services import policy as policy_service
from portal.services.audit import Actor
from workflows.negotiation import OPEN_STATES
from workflows.retention import (
    ANONYMISED_NAME,
    REMOVED_TEXT,
    AccountFacts,
    CaseFacts,
    Reason,
    RetentionPolicy,
    borrower_reason,
    case_reason,
    cutoff,
    minimal_stripe_payload,
)

COUNT_KINDS = (
    "borrowers_anonymised",
    "cases_cleared",
    "evidence_files_deleted",
    "budget_lines_deleted",
    "documents_deleted",
    "texts_cleared",
    "letter_batches_deleted",
    "placement_rejections_deleted",
    "stripe_payloads_minimised",
)
"""What a run counts; ``RetentionRun.counts`` holds each, and ``held`` (borrowers kept, by reason)."""

UNSETTLED_PAYMENTS = ("created", "submitting", "requires_action", "processing", "suspense")
UNSETTLED_REFUNDS = ("awaiting_approval", "submitting", "pending")
BORROWER_FIELDS_EMPTIED = (
    "company_name",
    "registration_number",
    "date_of_birth",
    "national_id",
    "phone",
    "email",
    "address_line1",
    "address_line2",
    "city",
    "region",
    "postal_code",
)
"""Borrower columns an anonymisation empties (``full_name`` becomes ``ANONYMISED_NAME``)."""


@dataclass
class Report:
    run_id: int
    as_of: dt.date
    dry_run: bool
    years: int
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_KINDS, 0))
    held: Counter[str] = field(default_factory=Counter)
    """Borrowers with every account finished who are not due yet, by the first reason."""

    def lines(self) -> list[str]:
        head = f"retention {'dry run' if self.dry_run else 'run'} #{self.run_id} as of {self.as_of}"
        lines = [f"{head} (period {self.years} years)"]
        lines += [f"  {kind.replace('_', ' ')}: {self.counts[kind]}" for kind in COUNT_KINDS]
        lines += [f"  held, {reason.replace('_', ' ')}: {n}" for reason, n in sorted(self.held.items())]
        return lines


def _day(moment: dt.datetime | dt.date | None) -> dt.date | None:
    if isinstance(moment, dt.datetime):
        return moment.date()
    return moment


def _latest(*moments: dt.datetime | dt.date | None) -> dt.date | None:
    days = [day for day in map(_day, moments) if day is not None]
    return max(days) if days else None


def _end_of(day: dt.date) -> dt.datetime:
    """The first moment (UTC) after ``day``: something on or before ``day`` is earlier than it."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


def _erased(kind: str, column: Any) -> ColumnElement[bool]:
    return exists(select(1).where(RetentionErasure.kind == kind, RetentionErasure.object_id == column))


# --- Facts -----------------------------------------------------------------------------------


def _last(column: Any, *where: Any) -> Any:
    return select(func.max(column)).where(*where).scalar_subquery()


def _account_facts(session: Session, borrower_ids: list[int]) -> dict[int, list[AccountFacts]]:
    """Per borrower, the facts of each account (a few aggregates each, in one statement)."""
    a = Account
    pay = Payment
    rows = session.execute(
        select(
            a.borrower_id,
            a.status,
            (a.principal_balance + a.interest_balance + a.fees_balance).label("balance"),
            a.credit_balance,
            a.recalled_at,
            a.updated_at,
            _last(LedgerEntry.effective_on, LedgerEntry.account_id == a.id).label("ledger_on"),
            _last(pay.created_at, pay.account_id == a.id).label("paid_at"),
            _last(ContactAttempt.at, ContactAttempt.account_id == a.id).label("contacted_at"),
            _last(PromiseToPay.created_at, PromiseToPay.account_id == a.id).label("promised_at"),
            _last(
                func.coalesce(HardshipCase.closed_at, HardshipCase.submitted_at, HardshipCase.created_at),
                HardshipCase.account_id == a.id,
            ).label("case_at"),
            _last(
                func.coalesce(DebtDispute.resolved_at, DebtDispute.created_at), DebtDispute.account_id == a.id
            ).label("disputed_at"),
            _last(func.coalesce(Plan.completed_on, Plan.broken_on), Plan.account_id == a.id).label("plan_on"),
            or_(
                exists(select(1).where(DebtDispute.account_id == a.id, DebtDispute.status == "open")),
                exists(
                    select(1)
                    .select_from(Dispute)
                    .join(pay, pay.id == Dispute.payment_id)
                    .where(pay.account_id == a.id, Dispute.status == "open")
                ),
            ).label("dispute_open"),
            or_(
                exists(select(1).where(pay.account_id == a.id, pay.status.in_(UNSETTLED_PAYMENTS))),
                exists(
                    select(1)
                    .select_from(Refund)
                    .join(pay, pay.id == Refund.payment_id)
                    .where(pay.account_id == a.id, Refund.status.in_(UNSETTLED_REFUNDS))
                ),
                exists(
                    select(1)
                    .select_from(SuspenseItem)
                    .join(pay, pay.id == SuspenseItem.payment_id)
                    .where(pay.account_id == a.id, SuspenseItem.status == "open")
                ),
            ).label("money_unsettled"),
            exists(select(1).where(Plan.account_id == a.id, Plan.status == "active")).label("plan_active"),
            exists(
                select(1).where(
                    HardshipCase.account_id == a.id,
                    HardshipCase.state.in_([s.value for s in OPEN_STATES]),
                )
            ).label("case_open"),
        )
        .where(a.borrower_id.in_(borrower_ids))
        .order_by(a.borrower_id, a.id)
    ).all()
    facts: dict[int, list[AccountFacts]] = {borrower_id: [] for borrower_id in borrower_ids}
    for row in rows:
        ended = _latest(row.ledger_on, row.recalled_at, row.updated_at if row.status == "closed" else None)
        facts[row.borrower_id].append(
            AccountFacts(
                status=row.status,
                balance=int(row.balance),
                credit=int(row.credit_balance),
                ended_on=ended,
                last_activity_on=_latest(
                    row.paid_at, row.contacted_at, row.promised_at, row.case_at, row.disputed_at, row.plan_on
                ),
                dispute_open=bool(row.dispute_open),
                money_unsettled=bool(row.money_unsettled),
                plan_active=bool(row.plan_active),
                case_open=bool(row.case_open),
            )
        )
    return facts


def _candidate_borrowers(session: Session, last_day: dt.date) -> list[int]:
    """Borrowers not anonymised yet, with accounts, none of them open with money on it or opened
    after the cutoff day (``workflows.retention`` decides the rest)."""
    a = Account
    still_owing = exists(
        select(1).where(
            a.borrower_id == Borrower.id,
            or_(
                and_(
                    a.status == "open",
                    or_(
                        a.principal_balance + a.interest_balance + a.fees_balance != 0,
                        a.credit_balance != 0,
                    ),
                ),
                a.opened_on > last_day,
            ),
        )
    )
    return list(
        session.scalars(
            select(Borrower.id)
            .where(
                exists(select(1).where(a.borrower_id == Borrower.id)),
                ~still_owing,
                ~_erased("borrower", Borrower.id),
            )
            .order_by(Borrower.id)
        )
    )


def _due_cases(session: Session, last_day: dt.date, policy: RetentionPolicy, today: dt.date) -> list[int]:
    """Closed hardship cases, not cleared yet, quiet since ``last_day`` or before."""
    c = HardshipCase
    before = _end_of(last_day)
    rows = session.execute(
        select(
            c.id,
            c.state,
            func.coalesce(c.closed_at, c.decided_at, c.updated_at).label("closed_at"),
            c.submitted_at,
            c.decided_at,
            _last(CaseMessage.created_at, CaseMessage.hardship_case_id == c.id).label("message_at"),
            _last(CaseNote.created_at, CaseNote.hardship_case_id == c.id).label("note_at"),
            _last(EvidenceFile.uploaded_at, EvidenceFile.hardship_case_id == c.id).label("upload_at"),
            _last(func.coalesce(Plan.completed_on, Plan.broken_on), Plan.hardship_case_id == c.id).label(
                "plan_ended_on"
            ),
            select(Plan.status)
            .where(Plan.hardship_case_id == c.id)
            .order_by(Plan.id.desc())
            .limit(1)
            .scalar_subquery()
            .label("plan_status"),
            exists(
                select(1).where(DebtDispute.account_id == c.account_id, DebtDispute.status == "open")
            ).label("dispute_open"),
        )
        .where(
            c.state.not_in([s.value for s in OPEN_STATES]),
            func.coalesce(c.closed_at, c.decided_at, c.updated_at) < before,
            ~_erased("hardship_case", c.id),
        )
        .order_by(c.id)
    ).all()
    due: list[int] = []
    for row in rows:
        facts = CaseFacts(
            state=row.state,
            closed_on=_day(row.closed_at),
            last_activity_on=_latest(
                row.submitted_at,
                row.decided_at,
                row.message_at,
                row.note_at,
                row.upload_at,
                row.plan_ended_on,
            ),
            plan_status=row.plan_status,
            dispute_open=bool(row.dispute_open),
        )
        if case_reason(facts, today=today, policy=policy) is Reason.DUE:
            due.append(row.id)
    return due


# --- Changes ---------------------------------------------------------------------------------


@dataclass
class _Work:
    """One run's context: its row, the stores, who runs it, the counts, the cases done so far."""

    run: RetentionRun
    evidence: Storage
    documents: Storage
    actor: Actor
    counts: dict[str, int]
    cases_done: set[int] = field(default_factory=set)


def _clear_case(session: Session, case: HardshipCase, work: _Work) -> None:
    """Remove a case's evidence, statement and free text (or, in a dry run, count them)."""
    run, counts, actor = work.run, work.counts, work.actor
    work.cases_done.add(case.id)
    now = utcnow()
    files = list(session.scalars(select(EvidenceFile).where(EvidenceFile.hardship_case_id == case.id)))
    live = [f for f in files if f.removed_at is None]
    lines = session.scalar(select(func.count()).where(BudgetLine.hardship_case_id == case.id)) or 0
    texts = 0
    for model in (CaseMessage, CaseNote):
        texts += (
            session.scalar(
                select(func.count()).where(model.hardship_case_id == case.id, model.body != REMOVED_TEXT)
            )
            or 0
        )
    counts["cases_cleared"] += 1
    counts["evidence_files_deleted"] += len(live)
    counts["budget_lines_deleted"] += lines
    counts["texts_cleared"] += texts
    if run.dry_run:
        return
    for file in files:  # a file the borrower removed earlier keeps no bytes either
        work.evidence.delete(file.storage_key)
    for file in live:
        file.removed_at = now
    session.execute(delete(BudgetLine).where(BudgetLine.hardship_case_id == case.id))
    session.expire(case, ["budget_lines"])
    for model in (CaseMessage, CaseNote):
        session.execute(
            update(model)
            .where(model.hardship_case_id == case.id, model.body != REMOVED_TEXT)
            .values(body=REMOVED_TEXT)
            .execution_options(synchronize_session=False)
        )
    case.description = None
    session.add(RetentionErasure(run_id=run.id, kind="hardship_case", object_id=case.id))
    audit.record(
        session,
        actor,
        "hardship_case.cleared",
        "hardship_case",
        case.id,
        after={
            "run": run.id,
            "evidence_files_deleted": [f.id for f in live],
            "budget_lines_deleted": lines,
            "description": None,
            "texts_cleared": texts,
        },
    )


def _unshared(session: Session, keys: Iterable[str | None], borrower_id: int) -> list[str]:
    """Document keys no other borrower's agreement names (documents are content-addressed)."""
    wanted = sorted({key for key in keys if key})
    if not wanted:
        return []
    shared = set(
        session.scalars(
            select(Agreement.document_key).where(
                Agreement.borrower_id != borrower_id, Agreement.document_key.in_(wanted)
            )
        )
    ) | set(
        session.scalars(
            select(Agreement.final_key).where(
                Agreement.borrower_id != borrower_id, Agreement.final_key.in_(wanted)
            )
        )
    )
    return [key for key in wanted if key not in shared]


def _anonymise(session: Session, borrower: Borrower, work: _Work) -> None:
    run, counts, actor = work.run, work.counts, work.actor
    cases = session.scalars(
        select(HardshipCase)
        .where(HardshipCase.borrower_id == borrower.id, ~_erased("hardship_case", HardshipCase.id))
        .order_by(HardshipCase.id)
    ).all()
    for case in cases:
        _clear_case(session, case, work)
    agreements = session.scalars(
        select(Agreement).where(Agreement.borrower_id == borrower.id).order_by(Agreement.id)
    ).all()
    documents = _unshared(
        session, [key for a in agreements for key in (a.document_key, a.final_key)], borrower.id
    )
    disputes = session.scalars(select(DebtDispute).where(DebtDispute.borrower_id == borrower.id)).all()
    dispute_files = [key for d in disputes for key in d.evidence_keys or []]
    counts["borrowers_anonymised"] += 1
    counts["documents_deleted"] += len(documents) + len(dispute_files)
    counts["texts_cleared"] += len(disputes)
    if run.dry_run:
        return
    for key in documents:
        work.documents.delete(key)
    for key in dispute_files:
        work.evidence.delete(key)
    for agreement in agreements:
        agreement.document_key = agreement.final_key = None  # the SHA-256 stay: what was signed
        agreement.typed_name = agreement.signer_ip = agreement.signer_user_agent = None
        agreement.code_channel = None
        agreement.facts = {**agreement.facts, "borrower": {"name": ANONYMISED_NAME, "company": None}}
        audit.record(
            session,
            actor,
            "agreement.anonymised",
            "agreement",
            agreement.id,
            after={"run": run.id, "files_deleted": True, "signer_details": None},
        )
    for dispute in disputes:
        dispute.evidence_keys = []
        dispute.detail = REMOVED_TEXT
        if dispute.resolution is not None:
            dispute.resolution = REMOVED_TEXT
    account_ids = select(Account.id).where(Account.borrower_id == borrower.id)
    plan_ids = select(Plan.id).where(Plan.account_id.in_(account_ids))
    for statement in (
        update(ContactAttempt)
        .where(ContactAttempt.borrower_id == borrower.id)
        .values(address=None, notes=None),
        update(SigninAttempt).where(SigninAttempt.borrower_id == borrower.id).values(ip=None),
        update(AutopayMandate).where(AutopayMandate.plan_id.in_(plan_ids)).values(consent_ip=None),
        update(SavedCard)
        .where(SavedCard.borrower_id == borrower.id, SavedCard.removed_at.is_(None))
        .values(removed_at=utcnow()),
        update(HomeVisit).where(HomeVisit.account_id.in_(account_ids)).values(notes=None),
        update(LegalReferral)
        .where(LegalReferral.account_id.in_(account_ids))
        .values(reason=REMOVED_TEXT, decision_note=None),
    ):
        session.execute(statement.execution_options(synchronize_session=False))
    _forget_messages(session, borrower)
    fields = ["full_name", *BORROWER_FIELDS_EMPTIED]
    borrower.full_name = ANONYMISED_NAME
    for name in BORROWER_FIELDS_EMPTIED:
        setattr(borrower, name, None)
    borrower.session_version += 1  # ends every session of theirs
    session.add(RetentionErasure(run_id=run.id, kind="borrower", object_id=borrower.id))
    audit.record(
        session,
        actor,
        "borrower.anonymised",
        "borrower",
        borrower.id,
        after={
            "run": run.id,
            "fields": fields,
            "cases_cleared": [case.id for case in cases],
            "agreements": [agreement.id for agreement in agreements],
            "documents_deleted": len(documents) + len(dispute_files),
        },
    )


def _forget_messages(session: Session, borrower: Borrower) -> None:
    """Messages sent to the borrower's phone or e-mail, unless another borrower still has it."""
    addresses = [value for value in (borrower.phone, borrower.email) if value]
    if not addresses:
        return
    others = set(
        session.scalars(
            select(Borrower.phone).where(Borrower.id != borrower.id, Borrower.phone.in_(addresses))
        )
    ) | set(
        session.scalars(
            select(Borrower.email).where(Borrower.id != borrower.id, Borrower.email.in_(addresses))
        )
    )
    mine = [address for address in addresses if address not in others]
    if mine:
        session.execute(
            update(OutboundMessage)
            .where(OutboundMessage.recipient.in_(mine))
            .values(recipient=ANONYMISED_NAME, subject=None, body=REMOVED_TEXT)
            .execution_options(synchronize_session=False)
        )


# --- The run ---------------------------------------------------------------------------------


def run(
    session: Session,
    *,
    today: dt.date,
    dry_run: bool,
    actor: Actor,
    evidence: Storage | None = None,
    documents: Storage | None = None,
) -> Report:
    """Do (or, with ``dry_run``, count) everything retention has due as of ``today``."""
    version, policy = policy_service.current_version(session, today)
    rules = policy.retention
    row = RetentionRun(
        as_of=today,
        dry_run=dry_run,
        years=rules.years,
        policy_version=version,
        actor_type=actor.type,
        actor_id=actor.id,
        counts={},
    )
    session.add(row)
    session.commit()
    report = Report(row.id, today, dry_run, rules.years)
    work = _Work(
        row,
        evidence or storage_from_config(current_app.config),
        documents or document_storage_from_config(current_app.config),
        actor,
        report.counts,
    )
    last_day = cutoff(today, rules)

    candidates = _candidate_borrowers(session, last_day)
    for start in range(0, len(candidates), 500):
        chunk = candidates[start : start + 500]
        for borrower_id, accounts in _account_facts(session, chunk).items():
            reason = borrower_reason(accounts, anonymised=False, today=today, policy=rules)
            if reason is not Reason.DUE:
                report.held[reason.value] += 1
                continue
            borrower = session.get(Borrower, borrower_id)
            assert borrower is not None
            _anonymise(session, borrower, work)
            if not dry_run:
                session.commit()

    for case_id in _due_cases(session, last_day, rules, today):
        case = session.get(HardshipCase, case_id)
        if case is None or case_id in work.cases_done:  # a dry run counted it with its borrower
            continue
        _clear_case(session, case, work)
        if not dry_run:
            session.commit()

    _old_records(session, _end_of(last_day), _since(session, row), work)

    row.counts = {**report.counts, "held": dict(report.held)}
    row.finished_at = utcnow()
    audit.record(
        session,
        actor,
        "retention.dry_run" if dry_run else "retention.run",
        "retention_run",
        row.id,
        after={"as_of": today, "years": rules.years, "policy_version": version, "counts": report.counts},
    )
    session.commit()
    return report


LETTER_NOTE = re.compile(r"^letter batch (\S+), letter \d+$")
"""How a letter's contact attempt names its batch (``collection_messages._send_letters``)."""


def _since(session: Session, run: RetentionRun) -> dt.datetime | None:
    """Where the last finished (not dry) run's cutoff was: what is older was removed then."""
    last = session.scalars(
        select(RetentionRun)
        .where(
            RetentionRun.id != run.id, RetentionRun.finished_at.is_not(None), RetentionRun.dry_run.is_(False)
        )
        .order_by(RetentionRun.id.desc())
        .limit(1)
    ).first()
    if last is None:
        return None
    return _end_of(cutoff(last.as_of, RetentionPolicy(years=last.years)))


def _old_records(session: Session, before: dt.datetime, since: dt.datetime | None, work: _Work) -> None:
    """Letter batches, refused placement rows and Stripe payloads older than ``before`` (and not
    older than ``since``, removed by an earlier run); each kind committed with its audit events."""
    run, counts, actor = work.run, work.counts, work.actor

    def window(column: Any) -> ColumnElement[bool]:
        return and_(column < before, column >= since) if since is not None else column < before

    notes = session.scalars(
        select(ContactAttempt.notes)
        .where(ContactAttempt.channel == "letter", window(ContactAttempt.at))
        .distinct()
    )
    keys = sorted({m.group(1) for note in notes if note and (m := LETTER_NOTE.match(note))})
    for key in keys:
        if not work.documents.exists(key):
            continue
        counts["letter_batches_deleted"] += 1
        if run.dry_run:
            continue
        # The event is committed before the file goes: a deletion is never unrecorded (if the
        # delete fails, the next run finds the file and deletes and records it again).
        audit.record(
            session, actor, "letter_batch.deleted", "document", key.partition(".")[0], after={"run": run.id}
        )
        session.commit()
        work.documents.delete(key)

    refused = session.execute(
        select(PlacementImport.id, func.count(PlacementRejection.id))
        .join(PlacementRejection, PlacementRejection.import_id == PlacementImport.id)
        .where(window(PlacementImport.finished_at))
        .group_by(PlacementImport.id)
        .order_by(PlacementImport.id)
    ).all()
    for import_id, rows in refused:
        counts["placement_rejections_deleted"] += rows
        if run.dry_run:
            continue
        session.execute(delete(PlacementRejection).where(PlacementRejection.import_id == import_id))
        audit.record(
            session,
            actor,
            "placement_import.rejections_deleted",
            "placement_import",
            import_id,
            after={"run": run.id, "rejections_deleted": rows},
        )
        session.commit()

    last_id = ""
    while True:  # in batches: years of events
        events = list(
            session.scalars(
                select(StripeEvent)
                .where(window(StripeEvent.received_at), StripeEvent.id > last_id)
                .order_by(StripeEvent.id)
                .limit(500)
            )
        )
        if not events:
            break
        last_id = events[-1].id
        for event in events:
            smaller = minimal_stripe_payload(event.payload)
            if smaller == event.payload:
                continue
            counts["stripe_payloads_minimised"] += 1
            if not run.dry_run:
                event.payload = smaller
                audit.record(
                    session, actor, "stripe_event.minimised", "stripe_event", event.id, after={"run": run.id}
                )
        if not run.dry_run:
            session.commit()


def runs(session: Session, limit: int = 50) -> list[RetentionRun]:
    """The latest runs, newest first (the admin's list)."""
    return list(session.scalars(select(RetentionRun).order_by(RetentionRun.id.desc()).limit(limit)))
