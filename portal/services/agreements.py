"""Repayment agreements: prepared from an approved offer, rendered to PDF (a job), read and signed
by the borrower on a phone, sealed, and turned into a plan in force — all or nothing.

The agreement's facts are frozen when it is prepared; the HTML the borrower reads and the PDF are
both rendered from them. The PDF's SHA-256 is stored from the first byte and checked again when
the borrower signs; the signed file (original pages + certificate page, sealed) is stored under its
own SHA-256 and registered so anyone can verify it later.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from flask import render_template
from flask_babel import force_locale, gettext
from pypdf import PdfReader, PdfWriter
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from portal.crypto import DecryptionError
from portal.db import utcnow
from portal.integrations.notify import Message
from portal.integrations.pdf import pdf_sha256, render_pdf
from portal.integrations.seal import SealError, SealKey, seal_pdf, verify_sealed
from portal.integrations.storage import Storage
from portal.models import Agreement, AgreementEvent, Borrower, HardshipCase, Offer, Plan, PlanInstalment
from portal.services import audit, integration_events, ledger
from portal.services import borrower_signin as signin_service
from portal.services import policy as policy_service
from portal.services.audit import Actor
from portal.services.borrower_portal import borrower_today
from workflows import plans
from workflows.access import mask_email, mask_phone
from workflows.errors import DomainError
from workflows.evidence import HEAD_BYTES, FileKind, sniff
from workflows.ledger import EntryKind
from workflows.money import Component
from workflows.negotiation import ActorKind, CaseAction, CaseActor, CaseFacts, CaseState, transition

TEMPLATE_VERSION = "2026-11-1"
"""The agreement's wording; a change to templates/agreement/ gets a new version."""
CONSENT_VERSION = "2026-11-1"
"""The disclosure on using electronic records; a change to its words gets a new version."""
STEP_UP_MINUTES = 5
MAX_DRAWN_SIGNATURE = 512 * 1024
"""The signing code must have been verified this recently."""


def _event(session: Session, agreement: Agreement, kind: str, **detail: Any) -> None:
    session.add(AgreementEvent(agreement_id=agreement.id, kind=kind, detail=detail or None))


# --- Preparing and rendering ------------------------------------------------------------------------


def _facts(case: HardshipCase, offer: Offer, today: dt.date) -> dict[str, Any]:
    """What the agreement states, as plain JSON: frozen now, rendered as often as needed."""
    account = case.account
    borrower = case.borrower
    terms = offer.terms
    return {
        "lender": account.creditor.name,
        "borrower": {"name": borrower.full_name, "company": borrower.company_name},
        "account": {
            "reference": account.external_reference,
            "product": account.product_type,
            "currency": account.currency,
            "principal": account.principal_balance,
            "interest": account.interest_balance,
            "fees": account.fees_balance,
            "total": account.total_balance,
            "annual_rate_bp": account.annual_rate_bp,
        },
        "offer": {
            "id": offer.id,
            "origin": offer.origin,
            "key": offer.key,
            "reliefs": terms.get("reliefs", []),
            "scope": terms.get("scope"),
            "waived": terms.get("waived", {}),
            "total_waived": offer.waived_total,
            "annual_rate_bp": terms.get("annual_rate_bp"),
            "interest_treatment": terms.get("interest_treatment"),
            "interest_frozen_months": terms.get("interest_frozen_months", 0),
            "holiday_months": terms.get("holiday_months", 0),
            "settlement_amount": terms.get("settlement_amount"),
            "monthly_payment": terms.get("monthly_payment"),
            "schedule": terms.get("schedule", []),
            "total_repayable": offer.total_repayable,
            "total_saved": terms.get("total_saved", 0),
        },
        "prepared_on": today.isoformat(),
    }


def prepare(session: Session, case: HardshipCase, offer: Offer) -> Agreement:
    """The agreement for an approved case, waiting to be rendered (the job does it). Never commits."""
    today = borrower_today(case.borrower)
    policy = policy_service.current(session, today)
    facts = _facts(case, offer, today)
    facts["grace_days"] = policy.hardship.plan_grace_days
    facts["breach"] = {"late_fee": dict(policy.late_fee_amount), "charge_off_dpd": policy.charge_off_dpd}
    agreement = Agreement(
        hardship_case_id=case.id,
        offer_id=offer.id,
        borrower_id=case.borrower_id,
        account_id=case.account_id,
        status="preparing",
        language=case.borrower.language,
        template_version=TEMPLATE_VERSION,
        facts=facts,
        expires_on=today + dt.timedelta(days=policy.hardship.agreement_valid_days),
    )
    session.add(agreement)
    session.flush()
    _event(session, agreement, "created")
    audit.record(
        session,
        audit.SYSTEM,
        "agreement.created",
        "agreement",
        agreement.id,
        after={"hardship_case_id": case.id, "offer_id": offer.id, "template_version": TEMPLATE_VERSION},
    )
    return agreement


def enqueue_render(agreement_id: int) -> None:
    """Render in the background, never in the request (called once the preparing is committed)."""
    from portal.tasks import render_agreement

    render_agreement(agreement_id)


def document_html(agreement: Agreement, *, for_pdf: bool) -> str:
    with force_locale(agreement.language):
        return render_template(
            "agreement/document.html", agreement=agreement, facts=agreement.facts, for_pdf=for_pdf
        )


def render(session: Session, agreement_id: int, storage: Storage) -> Agreement | None:
    """Render the PDF from the frozen facts, store it under its SHA-256, and open it for signing."""
    agreement = session.scalar(
        select(Agreement)
        .where(Agreement.id == agreement_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if agreement is None or agreement.status != "preparing":
        # Voided (or already rendered by a retry) before the job ran: nothing to do.
        session.rollback()
        return agreement
    data = render_pdf(document_html(agreement, for_pdf=True))
    agreement.document_key = storage.put_content(data, suffix=".pdf")
    agreement.document_sha256 = pdf_sha256(data)
    agreement.status = "ready"
    case = agreement.hardship_case
    moved = transition(CaseState(case.state), CaseAction.PREPARE_AGREEMENT, CaseActor(ActorKind.SYSTEM))
    before = audit.snapshot(case, ("state",))
    case.state = moved.after.value
    audit.record(
        session,
        audit.SYSTEM,
        "hardship_case.prepare_agreement",
        "hardship_case",
        case.id,
        before=before,
        after={"state": case.state},
    )
    _event(
        session,
        agreement,
        "rendered",
        sha256=agreement.document_sha256,
        pages=len(PdfReader(io.BytesIO(data)).pages),
    )
    audit.record(
        session,
        audit.SYSTEM,
        "agreement.rendered",
        "agreement",
        agreement.id,
        after={"sha256": agreement.document_sha256},
    )
    session.commit()
    return agreement


# --- The borrower's side ----------------------------------------------------------------------------


def agreement_for(
    session: Session, borrower: Borrower, agreement_id: int, *, lock: bool = False
) -> Agreement | None:
    """The borrower's own agreement, or None: another borrower's id is as unknown as a wrong one."""
    stmt = (
        select(Agreement)
        .options(joinedload(Agreement.hardship_case), joinedload(Agreement.account))
        .where(Agreement.id == agreement_id, Agreement.borrower_id == borrower.id)
    )
    if lock:
        stmt = stmt.with_for_update(of=Agreement).execution_options(populate_existing=True)
    return session.scalar(stmt)


def latest_for_case(session: Session, case_id: int) -> Agreement | None:
    return session.scalar(
        select(Agreement).where(Agreement.hardship_case_id == case_id).order_by(Agreement.id.desc()).limit(1)
    )


def _owned(session: Session, borrower: Borrower, agreement_id: int) -> Agreement:
    agreement = agreement_for(session, borrower, agreement_id, lock=True)
    if agreement is None:
        raise DomainError("agreement_unknown", "This agreement was not found.")
    return agreement


def _open_for_signing(agreement: Agreement, today: dt.date) -> None:
    if agreement.status == "signed":
        raise DomainError("agreement_signed", "This agreement is already signed.")
    if agreement.status in ("voided", "expired", "failed") or today > agreement.expires_on:
        raise DomainError("agreement_closed", "This agreement can no longer be signed.")
    if agreement.status != "ready":
        raise DomainError("agreement_preparing", "This agreement is still being prepared.")


def viewed(session: Session, borrower: Borrower, agreement_id: int) -> Agreement:
    agreement = _owned(session, borrower, agreement_id)
    if agreement.status == "ready":
        _event(session, agreement, "viewed")
    session.commit()
    return agreement


def consent(session: Session, borrower: Borrower, agreement_id: int) -> None:
    """The borrower agrees to use electronic records for this agreement (a versioned disclosure)."""
    agreement = _owned(session, borrower, agreement_id)
    _open_for_signing(agreement, borrower_today(borrower))
    agreement.consent_version, agreement.consented_at = CONSENT_VERSION, utcnow()
    _event(session, agreement, "consented", version=CONSENT_VERSION)
    session.commit()


def send_code(session: Session, borrower: Borrower, agreement_id: int, *, key: bytes) -> tuple[str, Message]:
    """A fresh one-time code for signing, to the phone or e-mail on file (never a new one)."""
    agreement = _owned(session, borrower, agreement_id)
    _open_for_signing(agreement, borrower_today(borrower))
    if agreement.consented_at is None:
        raise DomainError("consent_missing", "Please agree to use electronic records first.")
    session.commit()  # release the lock: the code service runs its own transaction
    token, message = signin_service.step_up_start(session, borrower, key=key)
    agreement = _owned(session, borrower, agreement_id)
    agreement.step_up_token_hash = hashlib.sha256(token.encode()).hexdigest()
    _event(session, agreement, "code_sent", channel=message.channel)
    session.commit()
    return token, message


def verify_code(
    session: Session, borrower: Borrower, agreement_id: int, *, token: str | None, typed: str, key: bytes
) -> None:
    agreement = _owned(session, borrower, agreement_id)
    _open_for_signing(agreement, borrower_today(borrower))
    if token is None or agreement.step_up_token_hash != hashlib.sha256(token.encode()).hexdigest():
        raise DomainError("signin_expired", "Please ask for a new code.")
    code = signin_service.step_up_verify(session, borrower, token=token, typed=typed, key=key)
    recipient = borrower.phone if code.channel == "sms" else borrower.email
    masked = mask_phone(recipient) if code.channel == "sms" and recipient else mask_email(recipient or "")
    agreement.code_verified_at, agreement.code_channel = utcnow(), f"{code.channel}:{masked}"
    _event(session, agreement, "code_verified", channel=agreement.code_channel)
    session.commit()


@dataclass(frozen=True)
class Signed:
    agreement: Agreement
    plan: Plan
    notice: Message | None


def sign(
    session: Session,
    borrower: Borrower,
    agreement_id: int,
    *,
    typed_name: str,
    agreed: bool,
    ip: str | None,
    user_agent: str | None,
    storage: Storage,
    seal_key: SealKey,
    tsa_url: str | None = None,
    drawn_signature: bytes | None = None,
) -> Signed:
    """One action signs: every check first, then the certificate page, the seal, the plan, the
    waivers and the case's last move, committed together. A failure anywhere leaves the agreement
    unsigned, no plan, no waiver (a sealed file stored before a failed commit is unreferenced)."""
    agreement = _owned(session, borrower, agreement_id)
    today = borrower_today(borrower)
    _open_for_signing(agreement, today)
    if agreement.consented_at is None or agreement.consent_version != CONSENT_VERSION:
        raise DomainError("consent_missing", "Please agree to use electronic records first.")
    if agreement.code_verified_at is None or utcnow() - agreement.code_verified_at > dt.timedelta(
        minutes=STEP_UP_MINUTES
    ):
        raise DomainError(
            "code_stale", "Please confirm with a new code: the last one was verified more than 5 minutes ago."
        )
    if not plans.names_match(typed_name, borrower.full_name):
        raise DomainError("name_mismatch", "Type your full name exactly as it appears on the agreement.")
    if not agreed:
        raise DomainError("agreement_not_ticked", "Tick the box to confirm you agree to sign.")
    if drawn_signature is not None and (
        len(drawn_signature) > MAX_DRAWN_SIGNATURE or sniff(drawn_signature[:HEAD_BYTES]) is not FileKind.PNG
    ):
        raise DomainError(
            "signature_invalid", "The drawn signature could not be read. Clear it and draw again."
        )
    try:
        original: bytes | None = storage.open(agreement.document_key or "")
    except DecryptionError:  # sealed bytes altered in the store
        original = None
    if original is None or pdf_sha256(original) != agreement.document_sha256:
        raise DomainError(
            "agreement_tampered", "This agreement's file does not match what was prepared. Please contact us."
        )
    case = agreement.hardship_case
    who = Actor("borrower", borrower.id)
    moved = transition(
        CaseState(case.state),
        CaseAction.SIGN,
        CaseActor(ActorKind.BORROWER, borrower.id),
        CaseFacts(expires_on=agreement.expires_on, today=today),
    )
    now = utcnow()
    agreement.typed_name = typed_name.strip()[:200]
    agreement.signer_ip, agreement.signer_user_agent = ip, (user_agent or "")[:300]
    # The drawing itself is not kept: its SHA-256 is the evidence that one was drawn, and which.
    agreement.signature_sha256 = hashlib.sha256(drawn_signature).hexdigest() if drawn_signature else None
    agreement.signed_at = now
    _event(session, agreement, "signed", typed_name=agreement.typed_name)
    session.flush()

    try:
        final = seal_pdf(
            _with_certificate(agreement, original),
            seal_key,
            reason=f"Accord agreement {agreement.id}",
            tsa_url=tsa_url,
        )
    except SealError as exc:  # e.g. the time-stamp authority did not answer: nothing is signed
        raise DomainError(
            "seal_failed", "The signature could not be completed just now. Please try again."
        ) from exc
    agreement.final_key = storage.put_content(final, suffix=".pdf")
    agreement.final_sha256 = pdf_sha256(final)
    agreement.status = "signed"
    _event(session, agreement, "sealed", sha256=agreement.final_sha256)

    plan = _activate(session, agreement, case, who, today)
    before = audit.snapshot(case, ("state",))
    case.state = moved.after.value
    case.closed_at = now
    audit.record(
        session,
        who,
        "hardship_case.sign",
        "hardship_case",
        case.id,
        before=before,
        after={"state": case.state, "plan_id": plan.id},
    )
    audit.record(
        session,
        who,
        "agreement.signed",
        "agreement",
        agreement.id,
        after={
            "document_sha256": agreement.document_sha256,
            "final_sha256": agreement.final_sha256,
            "typed_name": agreement.typed_name,
            "ip": ip,
        },
    )
    _lift_breathing_space(session, case, who)
    session.commit()
    return Signed(agreement, plan, _signed_notice(borrower))


def _lift_breathing_space(session: Session, case: HardshipCase, who: Actor) -> None:
    # The plan (or the end of the request) replaces the breathing space. Imported here because
    # the hardship service prepares agreements (it imports this module).
    from portal.services.hardship import lift_breathing_space

    lift_breathing_space(session, case, who)


def _activate(session: Session, agreement: Agreement, case: HardshipCase, who: Actor, today: dt.date) -> Plan:
    """The plan exactly as agreed, and the concessions as waiver entries of their own."""
    facts = agreement.facts
    schedule = [
        (int(i["number"]), dt.date.fromisoformat(i["due_on"]), int(i["amount"]))
        for i in facts["offer"]["schedule"]
    ]
    planned = plans.instalments(schedule)
    account = ledger.lock_account(session, agreement.account_id)
    waived = {Component(k): int(v) for k, v in (facts["offer"]["waived"] or {}).items()}
    postings = plans.waiver_postings(waived, account.balances())
    if postings:
        ledger.post(
            session,
            account,
            EntryKind.WAIVER,
            postings,
            cause=f"agreement:{agreement.id}",
            actor=who,
            effective_on=today,
            memo="Concession under the signed agreement",
        )
    plan = Plan(
        account_id=account.id,
        hardship_case_id=case.id,
        agreement_id=agreement.id,
        status="active",
        currency=account.currency,
        total=sum(i.amount for i in planned),
        grace_days=int(facts.get("grace_days") or 0),
    )
    session.add(plan)
    session.flush()
    session.add_all(
        PlanInstalment(plan_id=plan.id, number=i.number, due_on=i.due_on, amount=i.amount) for i in planned
    )
    audit.record(
        session,
        who,
        "plan.activated",
        "plan",
        plan.id,
        after={"agreement_id": agreement.id, "total": plan.total, "instalments": len(planned)},
    )
    integration_events.emit(
        session,
        account,
        "plan.signed",
        {
            "plan_id": plan.id,
            "agreement_id": agreement.id,
            "instalments": len(planned),
            "total": plan.total,
            "first_due_on": planned[0].due_on.isoformat(),
            "first_amount": planned[0].amount,
        },
    )
    if postings:
        waived_now = {p.component.value: -p.amount for p in postings}
        integration_events.emit(
            session,
            account,
            "concession.granted",
            {
                "plan_id": plan.id,
                "agreement_id": agreement.id,
                "waived": waived_now,
                "total": sum(waived_now.values()),
                "reliefs": list(facts["offer"].get("reliefs") or []),
            },
        )
    return plan


def _with_certificate(agreement: Agreement, original: bytes) -> bytes:
    """The original pages, unchanged, followed by the certificate of completion."""
    zone = ZoneInfo(agreement.borrower.time_zone)
    with force_locale(agreement.language):
        html = render_template(
            "agreement/certificate.html", agreement=agreement, zone=zone, events=agreement.events
        )
    certificate = render_pdf(html)
    writer = PdfWriter()
    for source in (original, certificate):
        for page in PdfReader(io.BytesIO(source)).pages:
            writer.add_page(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _signed_notice(borrower: Borrower) -> Message | None:
    channel, recipient = ("email", borrower.email) if borrower.email else ("sms", borrower.phone)
    if not recipient:
        return None
    with force_locale(borrower.language):
        body = gettext("Your signed agreement is ready. Sign in to Accord to download your copy.")
        subject = gettext("Your signed agreement")
    return Message(channel, recipient, body, "agreement_signed", subject=subject)


# --- Expiry, voiding and verification -----------------------------------------------------------------


def expire_unsigned(session: Session) -> int:
    """Agreements not signed in time expire, and the case's offer with them (an hourly job)."""
    expired = 0
    for agreement in session.scalars(
        select(Agreement).where(Agreement.status.in_(["preparing", "ready"])).with_for_update(of=Agreement)
    ):
        today = borrower_today(agreement.borrower)
        if today <= agreement.expires_on:
            continue
        case = agreement.hardship_case
        moved = transition(
            CaseState(case.state),
            CaseAction.EXPIRE,
            CaseActor(ActorKind.SYSTEM),
            CaseFacts(expires_on=agreement.expires_on, today=today),
        )
        before = audit.snapshot(case, ("state",))
        case.state, case.closed_at = moved.after.value, utcnow()
        agreement.status = "expired"
        agreement.offer.status = "expired"
        _event(session, agreement, "expired")
        audit.record(
            session,
            audit.SYSTEM,
            "hardship_case.expire",
            "hardship_case",
            case.id,
            before=before,
            after={"state": case.state, "agreement_id": agreement.id},
        )
        _lift_breathing_space(session, case, audit.SYSTEM)
        expired += 1
    session.commit()
    return expired


@dataclass(frozen=True)
class Verdict:
    genuine: bool
    reason: str
    """genuine | unknown_document | altered | not_sealed | untrusted"""
    signed_on: dt.date | None = None


def verify_document(session: Session, data: bytes, seal_key: SealKey) -> Verdict:
    """Is this a genuine, unaltered signed Accord agreement? Says that and the day it was signed,
    nothing else (no names, no amounts)."""
    check = verify_sealed(data, seal_key)
    registered = session.scalar(
        select(Agreement).where(Agreement.final_sha256 == pdf_sha256(data), Agreement.status == "signed")
    )
    if not check.sealed:
        return Verdict(False, "not_sealed")
    if not (check.intact and check.covers_whole_file):
        return Verdict(False, "altered")
    if not check.trusted:
        return Verdict(False, "untrusted")
    if registered is None:
        return Verdict(False, "unknown_document")
    signed = registered.signed_at.date() if registered.signed_at else None
    return Verdict(True, "genuine", signed)


def case_agreement_facts(session: Session, case: HardshipCase) -> Agreement | None:
    return latest_for_case(session, case.id)
