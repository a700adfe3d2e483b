"""The gate every outbound collection contact passes: a message the run sends, a call a collector
makes, a home visit. It gathers what the rules read — the rule pack for the borrower's country,
their time zone, the contact history, their preferences, an open dispute, a breathing space — and
asks ``workflows.contact_policy``; a contact it refuses is never made, nor recorded as made."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.models import (
    Account,
    AccountPause,
    Borrower,
    ContactAttempt,
    ContactPreference,
    DebtDispute,
)
from portal.services import audit
from portal.services.audit import Actor
from workflows import contact_policy as rules
from workflows.contact_policy import Channel, Party, Refusal, RefusalCode
from workflows.errors import DomainError

# The rules of the country the borrower lives in; anywhere else, the strictest hours we know.
PACK_BY_COUNTRY = {"CN": "CN", "US": "US_REG_F", "GB": "UK_CONC"}
DEFAULT_PACK = "CN"
HISTORY_DAYS = 14
"""How far back the history the rules read goes: the longest window any pack counts (7 days)
with room for the run of unreachable attempts that opens third-party contact."""

REACHING_OUTCOMES = frozenset(
    {
        "reached",
        "promise_to_pay",
        "refused",
        "third_party",
        "callback_requested",
        "dispute_raised",
        "hardship_referred",
    }
)
CONVERSATION_OUTCOMES = REACHING_OUTCOMES - {"third_party"}


def rule_pack(borrower: Borrower) -> rules.RulePack:
    return rules.pack(PACK_BY_COUNTRY.get((borrower.country or "").upper(), DEFAULT_PACK))


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Situation:
    """Everything the rules read about one borrower and account at one moment."""

    pack: rules.RulePack
    time_zone: str
    history: tuple[rules.ContactAttempt, ...]
    restrictions: rules.Restrictions
    paused_until: dt.date | None


def situation(session: Session, account: Account, when: dt.datetime) -> Situation:
    borrower = account.borrower
    since = when - dt.timedelta(days=HISTORY_DAYS)
    rows = session.execute(
        select(
            ContactAttempt.at,
            ContactAttempt.channel,
            ContactAttempt.party,
            ContactAttempt.address,
            ContactAttempt.reached,
            ContactAttempt.conversation,
        )
        .where(ContactAttempt.borrower_id == borrower.id, ContactAttempt.at >= since)
        .order_by(ContactAttempt.at)
    ).all()
    history = tuple(
        rules.ContactAttempt(
            at=_aware(at),
            channel=Channel(channel),
            party=Party(party),
            number_or_address=address or "",
            reached=bool(reached),
            conversation=bool(conversation),
        )
        for at, channel, party, address, reached, conversation in rows
    )
    preference = session.get(ContactPreference, borrower.id)
    dispute_open = (
        session.scalar(
            select(DebtDispute.id)
            .where(DebtDispute.account_id == account.id, DebtDispute.status == "open")
            .limit(1)
        )
        is not None
    )
    today = when.astimezone(_zone(borrower.time_zone)).date()
    paused_until = session.scalar(
        select(AccountPause.ends_on)
        .where(
            AccountPause.account_id == account.id,
            AccountPause.pauses_contact.is_(True),
            AccountPause.lifted_at.is_(None),
            AccountPause.starts_on <= today,
            AccountPause.ends_on >= today,
        )
        .order_by(AccountPause.ends_on.desc())
        .limit(1)
    )
    restrictions = rules.Restrictions(
        opted_out_channels=frozenset(
            Channel(c) for c in (preference.opted_out_channels if preference else [])
        ),
        cease_contact=bool(preference and preference.cease_contact_at),
        dispute_open=dispute_open,
        consent_extended_hours=bool(preference and preference.consent_extended_hours),
    )
    return Situation(rule_pack(borrower), borrower.time_zone, history, restrictions, paused_until)


def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def check(
    session: Session,
    account: Account,
    channel: Channel,
    party: Party = Party.BORROWER,
    when: dt.datetime | None = None,
    *,
    address: str | None = None,
    collectors: int = 0,
    identified: bool = False,
    includes_opt_out: bool = False,
) -> rules.Decision:
    """May this contact happen now (or at ``when``)? Every rule it breaks is listed."""
    when = _aware(when or utcnow())
    facts = situation(session, account, when)
    decision = rules.check(
        facts.pack,
        channel,
        party,
        when,
        facts.time_zone,
        facts.history,
        facts.restrictions,
        collectors=collectors,
        identified=identified,
        includes_opt_out=includes_opt_out,
        number_or_address=address,
    )
    if facts.paused_until is None:
        return decision
    pause = Refusal(RefusalCode.BREATHING_SPACE, {"until": facts.paused_until.isoformat()})
    return rules.Decision(
        allowed=False,
        reasons=(*decision.reasons, pause),
        next_allowed_utc=None,
        may_disclose_debt=decision.may_disclose_debt,
    )


def counter(
    session: Session, account: Account, number: str, when: dt.datetime | None = None
) -> rules.CallCounter:
    """What the collector sees before a call: attempts left today and this week, and when."""
    when = _aware(when or utcnow())
    facts = situation(session, account, when)
    return rules.call_counter(
        facts.pack, number, when, facts.time_zone, facts.history, restrictions=facts.restrictions
    )


def refusal_messages(decision: rules.Decision) -> list[str]:
    """The reasons in the staff member's language (portal.errors holds the sentences)."""
    from portal.errors import contact_refusal_message

    return [contact_refusal_message(reason) for reason in decision.reasons]


def record_attempt(
    session: Session,
    account: Account,
    *,
    channel: Channel,
    outcome: str,
    actor: Actor,
    party: Party = Party.BORROWER,
    address: str | None = None,
    at: dt.datetime | None = None,
    action_id: int | None = None,
    notes: str | None = None,
    collectors: int = 0,
    identified: bool = False,
    includes_opt_out: bool = False,
) -> ContactAttempt:
    """Record a contact — after checking it was allowed at that moment. A call logged outside
    the window, beyond a cap, or to someone the borrower's choices protect is refused with the
    reasons, and nothing is written. Never commits."""
    at = _aware(at or utcnow())
    decision = check(
        session,
        account,
        channel,
        party,
        at,
        address=address,
        collectors=collectors,
        identified=identified,
        includes_opt_out=includes_opt_out,
    )
    if not decision.allowed:
        raise ContactRefusedError(decision)
    attempt = ContactAttempt(
        account_id=account.id,
        borrower_id=account.borrower_id,
        action_id=action_id,
        channel=channel.value,
        party=party.value,
        address=address,
        at=at,
        reached=outcome in REACHING_OUTCOMES,
        conversation=outcome in CONVERSATION_OUTCOMES,
        outcome=outcome,
        staff_id=actor.id if actor.type == "staff" else None,
        notes=notes,
    )
    session.add(attempt)
    session.flush()
    audit.record(
        session,
        actor,
        "contact.recorded",
        "account",
        account.id,
        after={"attempt": attempt.id, "channel": channel.value, "party": party.value, "outcome": outcome},
    )
    return attempt


class ContactRefusedError(DomainError):
    """The rules refuse this contact; ``decision`` holds every reason and when it may happen."""

    def __init__(self, decision: rules.Decision) -> None:
        super().__init__("contact_refused", "The contact rules do not allow this contact now.")
        self.decision = decision


def reasons_as_codes(decision: rules.Decision) -> Sequence[str]:
    return [reason.code.value for reason in decision.reasons]
