"""Agreements for staff: the list on a case or an account, voiding one that is not signed yet,
and the signing evidence as plain JSON.

Voiding is one transaction: the agreement row is locked, its version must be the one the staff
member read, and the change, its agreement event and its audit event are committed together.
The hardship case keeps its state: the negotiation state machine has no move for a voided
agreement (see ``void``); only the breathing space is lifted, so the account is not left paused
with nothing for the borrower to sign.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.models import Agreement, AgreementEvent, HardshipCase, StaffUser
from portal.services import audit
from portal.services.audit import Actor
from workflows.access import Permission, Role
from workflows.errors import DomainError
from workflows.negotiation import ActorKind, CaseAction, CaseActor, CaseState, transition

VOIDABLE_STATUSES = ("preparing", "ready")
"""A signed agreement is binding and is never voided; closed ones have nothing left to void."""
REASON_MAX = 300


def agreements_for_case(session: Session, case_id: int) -> list[Agreement]:
    """The case's agreements, newest first."""
    return list(
        session.scalars(
            select(Agreement)
            .where(Agreement.hardship_case_id == case_id)
            .order_by(Agreement.created_at.desc(), Agreement.id.desc())
        )
    )


def agreements_for_account(session: Session, account_id: int) -> list[Agreement]:
    """The account's agreements across all its cases, newest first."""
    return list(
        session.scalars(
            select(Agreement)
            .where(Agreement.account_id == account_id)
            .order_by(Agreement.created_at.desc(), Agreement.id.desc())
        )
    )


def void(session: Session, staff: StaffUser, agreement_id: int, *, version: int | None, reason: str) -> None:
    """Void an agreement that is not signed yet, with the reason, audited. Commits.

    The case goes back to the review queue (workflows.negotiation's void_agreement move), to be
    decided again; its breathing space stays while the request is open."""
    if not staff.can(Permission.WORK_CASES):
        raise DomainError("not_allowed", "Your role may not do this.")
    agreement = session.scalar(
        select(Agreement)
        .where(Agreement.id == agreement_id)
        .with_for_update(of=Agreement)
        .execution_options(populate_existing=True)
    )
    if agreement is None:
        raise DomainError("agreement_unknown", "This agreement was not found.")
    if version is not None and agreement.version != version:
        raise DomainError("case_changed", "This agreement changed while you were looking at it. Reload it.")
    if agreement.status not in VOIDABLE_STATUSES:
        raise DomainError("agreement_not_voidable", "Only an agreement that is not signed yet can be voided.")
    text = (reason or "").strip()
    if not text or len(text) > REASON_MAX:
        raise DomainError(
            "void_reason_required",
            "Write why the agreement is voided, in at most {maximum} characters.",
            maximum=REASON_MAX,
        )

    who = Actor.staff(staff)
    before = audit.snapshot(agreement, ("status",))
    agreement.status = "voided"
    agreement.voided_at = utcnow()
    agreement.voided_by_id = staff.id
    agreement.void_reason = text
    session.add(AgreementEvent(agreement_id=agreement.id, kind="voided", detail={"by_staff_id": staff.id}))
    audit.record(
        session,
        who,
        "agreement.voided",
        "agreement",
        agreement.id,
        before=before,
        after={"status": agreement.status, "reason": text, "hardship_case_id": agreement.hardship_case_id},
    )
    # The case goes back to the review queue to be decided again; its breathing space stays,
    # since the borrower's request for help is still open.
    case = session.get(HardshipCase, agreement.hardship_case_id)
    if case is not None and not _other_open_agreement(session, agreement):
        actor_kind = ActorKind.SUPERVISOR if staff.role == Role.SUPERVISOR.value else ActorKind.AGENT
        moved = transition(CaseState(case.state), CaseAction.VOID_AGREEMENT, CaseActor(actor_kind, staff.id))
        case_before = audit.snapshot(case, ("state",))
        case.state = moved.after.value
        for offer in case.offers:
            if offer.status == "accepted":
                # A borrower's proposal can be decided again; an offer made to them lapses.
                offer.status = "open" if offer.origin == "borrower" else "superseded"
        # Imported here like portal.services.agreements does: the hardship service imports the
        # agreement services.
        from portal.services import policy as policy_service
        from portal.services.hardship import desk_today, enqueue

        enqueue(session, case, policy_service.current(session, desk_today()))
        audit.record(
            session,
            who,
            "hardship_case.void_agreement",
            "hardship_case",
            case.id,
            before=case_before,
            after={"state": case.state, "agreement_id": agreement.id},
        )
    session.commit()


def _other_open_agreement(session: Session, agreement: Agreement) -> bool:
    return (
        session.scalar(
            select(Agreement.id)
            .where(
                Agreement.hardship_case_id == agreement.hardship_case_id,
                Agreement.id != agreement.id,
                Agreement.status.in_(VOIDABLE_STATUSES),
            )
            .limit(1)
        )
        is not None
    )


# --- Evidence ---------------------------------------------------------------------------------------


def _utc(moment: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC (``2026-11-30T09:30:05.123456Z``), or None."""
    if moment is None:
        return None
    if moment.tzinfo is None:  # stored in UTC; a driver may hand it back without its zone
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


_SECRET_DETAIL_WORDS = ("token", "code_hash", "secret")


def _public_detail(detail: dict[str, Any] | None) -> dict[str, Any] | None:
    """An event's detail without anything that could help replay a signing step."""
    if not detail:
        return None
    return {k: v for k, v in detail.items() if not any(word in k.lower() for word in _SECRET_DETAIL_WORDS)}


def evidence_json(agreement: Agreement) -> dict[str, Any]:
    """What the certificate of completion states, and the events behind it, as JSON-ready values.

    Never the step-up token's hash: it is a credential for the signing step, not evidence."""
    return {
        "agreement_id": agreement.id,
        "hardship_case_id": agreement.hardship_case_id,
        "account_id": agreement.account_id,
        "status": agreement.status,
        "template_version": agreement.template_version,
        "language": agreement.language,
        "created_at": _utc(agreement.created_at),
        "expires_on": agreement.expires_on.isoformat() if agreement.expires_on else None,
        "document_sha256": agreement.document_sha256,
        "final_sha256": agreement.final_sha256,
        "consent": {"version": agreement.consent_version, "at": _utc(agreement.consented_at)},
        "code": {"channel": agreement.code_channel, "verified_at": _utc(agreement.code_verified_at)},
        "typed_name": agreement.typed_name,
        "signature_sha256": agreement.signature_sha256,
        "signer_ip": agreement.signer_ip,
        "signer_user_agent": agreement.signer_user_agent,
        "signed_at": _utc(agreement.signed_at),
        "voided": (
            {
                "at": _utc(agreement.voided_at),
                "by_staff_id": agreement.voided_by_id,
                "reason": agreement.void_reason,
            }
            if agreement.status == "voided"
            else None
        ),
        "events": [
            {"kind": event.kind, "at": _utc(event.at), "detail": _public_detail(event.detail)}
            for event in agreement.events
        ],
    }
