"""The borrower's say over collection contact: channel opt-outs, consent to the wider hours the
rules allow, a request to stop contact, the opt-out link every message carries — and disputes of
the debt, from the borrower opening one (with files) to staff resolving it.

What these choices do is decided elsewhere: ``portal.services.contact`` reads the preferences and
open disputes before every message, call and visit, and refuses what they cover. Here they are
only recorded: one transaction each, audited, and a refusal (bad input, a second open dispute)
raises DomainError before anything is written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flask_babel import force_locale, gettext
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, selectinload

from portal.db import utcnow
from portal.integrations.images import prepare_evidence
from portal.integrations.notify import Message
from portal.integrations.storage import Storage
from portal.models import Account, Borrower, ContactPreference, DebtDispute, StaffUser
from portal.models.collections import DEBT_DISPUTE_REASONS
from portal.services import audit, integration_events
from portal.services import contact as contact_service
from portal.services.audit import Actor
from workflows.contact_policy import Channel
from workflows.errors import DomainError

OPTABLE_CHANNELS = ("sms", "email", "call", "app")
"""What a borrower may opt out of. Letters are not listed: notices the law requires go by post
whatever the borrower chose (a request to stop contact still stops collection letters)."""
LINK_CHANNELS = ("sms", "email")
"""The channels whose messages carry a one-click opt-out link."""
MAX_DETAIL = 2000
MAX_DISPUTE_FILES = 5
MAX_RESOLUTION = 2000
OPT_OUT_SALT = "opt-out"
RESOLUTIONS = ("upheld", "rejected")

PREFERENCE_FIELDS = ("opted_out_channels", "consent_extended_hours", "cease_contact_at")
DISPUTE_FIELDS = ("status", "resolution", "resolved_by_id", "resolved_at")


def _actor(borrower: Borrower) -> Actor:
    return Actor("borrower", borrower.id)


# --- Preferences --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preferences:
    """What the borrower chose, and what the rules of their country offer."""

    opted_out: frozenset[str]
    consent_extended_hours: bool
    cease_contact_at: dt.datetime | None
    normal_hours: str
    """The hours messages and calls may come without consent, e.g. "08:00-21:00"."""
    extended_hours: str | None
    """The hours with consent, e.g. "08:00-22:00"; None where the rules offer no wider hours."""


def preferences(session: Session, borrower: Borrower) -> Preferences:
    row = session.get(ContactPreference, borrower.id)
    pack = contact_service.rule_pack(borrower)
    wide = pack.consent_windows.get(Channel.CALL)
    return Preferences(
        opted_out=frozenset(row.opted_out_channels if row else ()),
        consent_extended_hours=bool(row and row.consent_extended_hours),
        cease_contact_at=row.cease_contact_at if row else None,
        normal_hours=str(pack.windows[Channel.CALL]),
        extended_hours=str(wide) if wide is not None else None,
    )


def _preference_for_update(session: Session, borrower: Borrower) -> ContactPreference:
    row = session.get(ContactPreference, borrower.id, with_for_update=True)
    if row is None:
        row = ContactPreference(borrower_id=borrower.id, opted_out_channels=[], consent_extended_hours=False)
        session.add(row)
        session.flush()
    return row


def _audit_preference(
    session: Session, actor: Actor, action: str, row: ContactPreference, before: dict[str, Any]
) -> None:
    audit.record(
        session,
        actor,
        action,
        "contact_preference",
        row.borrower_id,
        before=before,
        after=audit.snapshot(row, PREFERENCE_FIELDS),
    )


def save_preferences(
    session: Session, borrower: Borrower, *, opted_out: Iterable[str], consent_extended_hours: bool
) -> bool:
    """Set the channels opted out of and the consent to wider hours; True if anything changed."""
    chosen = set(opted_out)
    unknown = chosen - set(OPTABLE_CHANNELS)
    if unknown:
        raise DomainError("contact_channel_invalid", "Choose from the listed ways to contact you.")
    if consent_extended_hours and preferences(session, borrower).extended_hours is None:
        consent_extended_hours = False  # nothing to consent to where the rules offer no wider hours
    row = _preference_for_update(session, borrower)
    before = audit.snapshot(row, PREFERENCE_FIELDS)
    # Letters are not the borrower's to opt out of here; an opt-out stored by other means stays.
    kept = [c for c in row.opted_out_channels if c not in OPTABLE_CHANNELS]
    new_channels = kept + [c for c in OPTABLE_CHANNELS if c in chosen]
    if new_channels == list(row.opted_out_channels) and row.consent_extended_hours == consent_extended_hours:
        session.rollback()
        return False
    row.opted_out_channels = new_channels
    row.consent_extended_hours = consent_extended_hours
    _audit_preference(session, _actor(borrower), "contact_preference.changed", row, before)
    session.commit()
    return True


def request_cease(session: Session, borrower: Borrower) -> bool:
    """The borrower asks us to stop contacting them; True if this is new."""
    row = _preference_for_update(session, borrower)
    if row.cease_contact_at is not None:
        session.rollback()
        return False
    before = audit.snapshot(row, PREFERENCE_FIELDS)
    row.cease_contact_at = utcnow()
    _audit_preference(session, _actor(borrower), "contact_preference.cease_requested", row, before)
    session.commit()
    return True


def lift_cease(session: Session, borrower: Borrower) -> bool:
    """The borrower allows contact again; True if a request to stop was in force."""
    row = _preference_for_update(session, borrower)
    if row.cease_contact_at is None:
        session.rollback()
        return False
    before = audit.snapshot(row, PREFERENCE_FIELDS)
    row.cease_contact_at = None
    _audit_preference(session, _actor(borrower), "contact_preference.cease_lifted", row, before)
    session.commit()
    return True


# --- The opt-out link ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OptOutLink:
    borrower_id: int
    channel: str


def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=OPT_OUT_SALT)


def opt_out_token(secret_key: str, borrower_id: int, channel: str) -> str:
    """The signed token in a message's opt-out link: who, and which channel."""
    if channel not in LINK_CHANNELS:
        raise ValueError(f"no opt-out link for {channel!r}")
    return str(_serializer(secret_key).dumps({"b": borrower_id, "c": channel}))


def read_opt_out_token(secret_key: str, token: str) -> OptOutLink:
    """The link's borrower and channel; a token we did not sign (or altered) is refused."""
    try:
        data = _serializer(secret_key).loads(token)
    except BadSignature:
        raise DomainError("opt_out_link_invalid", "This link is not valid.") from None
    if not isinstance(data, dict) or not isinstance(data.get("b"), int) or data.get("c") not in LINK_CHANNELS:
        raise DomainError("opt_out_link_invalid", "This link is not valid.")
    return OptOutLink(data["b"], data["c"])


def opt_out_by_link(session: Session, secret_key: str, token: str) -> tuple[OptOutLink, bool]:
    """Opt the link's borrower out of its channel; the bool says whether anything changed (a
    second click changes nothing and writes nothing)."""
    link = read_opt_out_token(secret_key, token)
    borrower = session.get(Borrower, link.borrower_id)
    if borrower is None:
        raise DomainError("opt_out_link_invalid", "This link is not valid.")
    row = _preference_for_update(session, borrower)
    if link.channel in row.opted_out_channels:
        session.rollback()
        return link, False
    before = audit.snapshot(row, PREFERENCE_FIELDS)
    row.opted_out_channels = [*row.opted_out_channels, link.channel]
    _audit_preference(session, _actor(borrower), "contact_preference.opted_out_by_link", row, before)
    session.commit()
    return link, True


# --- Disputes: the borrower's side --------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


def _own_account(session: Session, borrower: Borrower, account_id: int, *, lock: bool = False) -> Account:
    stmt = select(Account).where(Account.id == account_id, Account.borrower_id == borrower.id)
    if lock:
        stmt = stmt.with_for_update()
    account = session.scalar(stmt)
    if account is None:
        raise DomainError("account_unknown", "This account is not one of yours.")
    return account


def account_for(session: Session, borrower: Borrower, account_id: int) -> Account | None:
    """The borrower's own account, or None: another borrower's id is as unknown as a wrong one."""
    return session.scalar(select(Account).where(Account.id == account_id, Account.borrower_id == borrower.id))


def latest_dispute(session: Session, borrower: Borrower, account_id: int) -> DebtDispute | None:
    """The borrower's newest dispute of this account (open or decided), if any."""
    return session.scalar(
        select(DebtDispute)
        .where(DebtDispute.account_id == account_id, DebtDispute.borrower_id == borrower.id)
        .order_by(DebtDispute.created_at.desc(), DebtDispute.id.desc())
        .limit(1)
    )


def _open_dispute(session: Session, account_id: int) -> DebtDispute | None:
    return session.scalar(
        select(DebtDispute).where(DebtDispute.account_id == account_id, DebtDispute.status == "open").limit(1)
    )


def _check_dispute(reason: str, detail: str, uploads: Sequence[Upload]) -> str:
    if reason not in DEBT_DISPUTE_REASONS:
        raise DomainError("dispute_reason_invalid", "Choose why you dispute this debt.")
    text = (detail or "").strip()
    if not text:
        raise DomainError("dispute_detail_required", "Tell us why you dispute this debt.")
    if len(text) > MAX_DETAIL:
        raise DomainError(
            "dispute_detail_too_long", "Please keep it under {maximum} characters.", maximum=MAX_DETAIL
        )
    if len(uploads) > MAX_DISPUTE_FILES:
        raise DomainError("dispute_too_many_files", "Send at most {limit} files.", limit=MAX_DISPUTE_FILES)
    return text


def open_dispute(
    session: Session,
    borrower: Borrower,
    account_id: int,
    *,
    reason: str,
    detail: str,
    uploads: Sequence[Upload] = (),
    storage: Storage | None = None,
) -> DebtDispute:
    """The borrower disputes the debt: collection contact about the account stops while the
    dispute is open. Files pass the same checks as hardship evidence. All or nothing: a refused
    file, or a dispute already open on the account, leaves nothing behind (files included)."""
    text = _check_dispute(reason, detail, uploads)
    account = _own_account(session, borrower, account_id, lock=True)
    if _open_dispute(session, account.id) is not None:
        session.rollback()
        raise DomainError("dispute_already_open", "You already dispute this debt.")
    # Every file is checked before any is stored, so a bad third file stores nothing.
    prepared = [prepare_evidence(u.filename, u.data, n) for n, u in enumerate(uploads)]
    stored: list[str] = []
    try:
        for item in prepared:
            assert storage is not None, "files need a store"
            stored.append(storage.put(item.data, suffix=item.kind.extension))
        dispute = DebtDispute(
            account_id=account.id,
            borrower_id=borrower.id,
            reason=reason,
            detail=text,
            evidence_keys=stored,
            status="open",
        )
        session.add(dispute)
        session.flush()
        audit.record(
            session,
            _actor(borrower),
            "debt_dispute.opened",
            "debt_dispute",
            dispute.id,
            after={
                "account_id": account.id,
                "reason": reason,
                "files": [{"name": p.display_name, "sha256": p.sha256, "size": p.size} for p in prepared],
            },
        )
        integration_events.emit(
            session, account, "dispute.opened", {"dispute_id": dispute.id, "reason": reason}
        )
        session.commit()
    except BaseException:
        session.rollback()
        for key in stored:
            if storage is not None:
                storage.delete(key)
        raise
    return dispute


def withdraw_dispute(session: Session, borrower: Borrower, account_id: int) -> DebtDispute:
    """The borrower withdraws their open dispute; collection contact may resume."""
    account = _own_account(session, borrower, account_id, lock=True)
    dispute = session.scalar(
        select(DebtDispute)
        .where(
            DebtDispute.account_id == account.id,
            DebtDispute.borrower_id == borrower.id,
            DebtDispute.status == "open",
        )
        .with_for_update()
    )
    if dispute is None:
        session.rollback()
        raise DomainError("dispute_not_open", "There is no open dispute on this account.")
    with audit.change(session, _actor(borrower), "debt_dispute.withdrawn", dispute, DISPUTE_FIELDS):
        dispute.status = "withdrawn"
        dispute.resolved_at = utcnow()
    _dispute_closed(session, account, dispute)
    session.commit()
    return dispute


# --- Disputes: staff ----------------------------------------------------------------------------

QUEUE_LIMIT = 200


@dataclass(frozen=True)
class QueueRow:
    id: int
    account_id: int
    reference: str
    reason: str
    status: str
    created_at: dt.datetime
    resolved_at: dt.datetime | None
    files: int

    def age_days(self, now: dt.datetime) -> int:
        end = self.resolved_at or now
        return max(0, (end - self.created_at).days)


def dispute_queue(session: Session, status: str | None = None) -> list[QueueRow]:
    """Disputes, the open ones first and the oldest of those first; decided ones newest first."""
    open_first = case((DebtDispute.status == "open", 0), else_=1)
    stmt = (
        select(
            DebtDispute.id,
            DebtDispute.account_id,
            Account.external_reference,
            DebtDispute.reason,
            DebtDispute.status,
            DebtDispute.created_at,
            DebtDispute.resolved_at,
            DebtDispute.evidence_keys,
        )
        .join(Account, Account.id == DebtDispute.account_id)
        .order_by(
            open_first,
            case((DebtDispute.status == "open", DebtDispute.created_at), else_=None).asc(),
            func.coalesce(DebtDispute.resolved_at, DebtDispute.created_at).desc(),
            DebtDispute.id,
        )
        .limit(QUEUE_LIMIT)
    )
    if status:
        stmt = stmt.where(DebtDispute.status == status)
    return [
        QueueRow(i, a, ref, reason, st, created, resolved, len(keys or []))
        for i, a, ref, reason, st, created, resolved, keys in session.execute(stmt)
    ]


def open_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).where(DebtDispute.status == "open")) or 0)


@dataclass(frozen=True)
class DisputeDetail:
    dispute: DebtDispute
    account: Account


def dispute_detail(session: Session, dispute_id: int) -> DisputeDetail | None:
    row = session.execute(
        select(DebtDispute, Account)
        .join(Account, Account.id == DebtDispute.account_id)
        .options(selectinload(DebtDispute.borrower))
        .where(DebtDispute.id == dispute_id)
    ).first()
    return None if row is None else DisputeDetail(*row)


def dispute_file(dispute: DebtDispute, position: int) -> str | None:
    """The storage key of the dispute's file number ``position`` (from 1), if there is one."""
    keys = dispute.evidence_keys or []
    return keys[position - 1] if 1 <= position <= len(keys) else None


def resolve_dispute(
    session: Session, staff: StaffUser, dispute_id: int, *, outcome: str, note: str
) -> Message | None:
    """Staff decide an open dispute: upheld (with a note on what was put right) or rejected (with
    the reason, which the borrower reads in the portal). Returns the discreet notice owed to the
    borrower, to be sent after the commit."""
    if outcome not in RESOLUTIONS:
        raise DomainError("dispute_outcome_invalid", "Choose whether the dispute is upheld or rejected.")
    text = (note or "").strip()
    if not text:
        raise DomainError("note_required", "Write a short note on why you decide this.")
    if len(text) > MAX_RESOLUTION:
        raise DomainError(
            "note_too_long", "Keep the note under {maximum} characters.", maximum=MAX_RESOLUTION
        )
    dispute = session.scalar(
        select(DebtDispute)
        .options(selectinload(DebtDispute.borrower))
        .where(DebtDispute.id == dispute_id)
        .with_for_update(of=DebtDispute)
        .execution_options(populate_existing=True)
    )
    if dispute is None:
        raise DomainError("dispute_unknown", "This dispute was not found.")
    if dispute.status != "open":
        session.rollback()
        raise DomainError("dispute_closed", "This dispute is already closed.")
    with audit.change(session, Actor.staff(staff), f"debt_dispute.{outcome}", dispute, DISPUTE_FIELDS):
        dispute.status = outcome
        dispute.resolution = text
        dispute.resolved_by_id = staff.id
        dispute.resolved_at = utcnow()
    account = session.get(Account, dispute.account_id)
    assert account is not None  # a dispute's account always exists
    _dispute_closed(session, account, dispute)
    notice = dispute_notice(dispute.borrower)
    session.commit()
    return notice


def _dispute_closed(session: Session, account: Account, dispute: DebtDispute) -> None:
    """Tell the lender a dispute ended: its outcome is withdrawn, upheld or rejected (the note
    stays here: it is written to the borrower)."""
    integration_events.emit(
        session,
        account,
        "dispute.closed",
        {"dispute_id": dispute.id, "reason": dispute.reason, "outcome": dispute.status},
    )


def dispute_notice(borrower: Borrower) -> Message | None:
    """A discreet message that the dispute was decided: it names neither the debt nor the lender
    (a phone's lock screen shows it); the decision and its reasons are read after signing in."""
    channel, recipient = ("sms", borrower.phone) if borrower.phone else ("email", borrower.email)
    if not recipient:
        return None
    with force_locale(borrower.language):
        body = gettext("There is news about your account in Accord. Please sign in to see it.")
        subject = gettext("News about your account")
    return Message(channel, recipient, body, "dispute_decided", subject=subject)
