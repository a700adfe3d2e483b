"""The hardship case and the one table of moves it may make (DESIGN.md section 3).

A case starts as the borrower's draft, is submitted, gets the offers the policy allows without
review, and ends approved (an offer accepted), or goes to the negotiation department as the
borrower's own proposal, where an agent claims it and approves, counters, asks for information or
rejects. Every move names who makes it; `transition` refuses with a reason when the actor, the
state or the authority does not allow it, and says exactly which state follows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from types import MappingProxyType

from workflows.errors import DomainError


class CaseState(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    OFFERED = "offered"
    IN_REVIEW = "in_review"
    CLAIMED = "claimed"
    AWAITING_SECOND_APPROVAL = "awaiting_second_approval"
    COUNTERED = "countered"
    AWAITING_BORROWER = "awaiting_borrower"
    APPROVED = "approved"
    AWAITING_SIGNATURE = "awaiting_signature"
    ACTIVE = "active"
    """Signed: the plan is in force (the plan itself then runs to completed or broken)."""
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


class CaseAction(StrEnum):
    SUBMIT = "submit"
    EVALUATE = "evaluate"
    ACCEPT = "accept"
    ASK_CUSTOM = "ask_custom"
    CLAIM = "claim"
    RELEASE = "release"
    APPROVE = "approve"
    COUNTER = "counter"
    DECLINE = "decline"
    REQUEST_INFO = "request_info"
    RESPOND = "respond"
    REJECT = "reject"
    WITHDRAW = "withdraw"
    EXPIRE = "expire"
    PREPARE_AGREEMENT = "prepare_agreement"
    SIGN = "sign"
    VOID_AGREEMENT = "void_agreement"


class ActorKind(StrEnum):
    BORROWER = "borrower"
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    SYSTEM = "system"


@dataclass(frozen=True)
class CaseActor:
    kind: ActorKind
    id: int | None = None
    """The borrower's or staff user's id; None for the system."""


SYSTEM_ACTOR = CaseActor(ActorKind.SYSTEM)

OPEN_STATES: frozenset[CaseState] = frozenset(
    {
        CaseState.DRAFT,
        CaseState.SUBMITTED,
        CaseState.OFFERED,
        CaseState.IN_REVIEW,
        CaseState.CLAIMED,
        CaseState.AWAITING_SECOND_APPROVAL,
        CaseState.COUNTERED,
        CaseState.AWAITING_BORROWER,
        CaseState.APPROVED,
        CaseState.AWAITING_SIGNATURE,
    }
)
"""States in which the case is not settled yet; the borrower may withdraw from any of them
(an approved offer is not binding until the agreement is signed)."""

CLOSED_STATES: frozenset[CaseState] = frozenset(CaseState) - OPEN_STATES
"""Final for this case. Active is final here: the signed plan takes over from it."""

_STAFF = frozenset({ActorKind.AGENT, ActorKind.SUPERVISOR})
_SUPERVISOR = frozenset({ActorKind.SUPERVISOR})
_BORROWER = frozenset({ActorKind.BORROWER})
_SYSTEM = frozenset({ActorKind.SYSTEM})


@dataclass(frozen=True)
class _Move:
    to: CaseState
    by: frozenset[ActorKind]


# (state, action) -> the state it leads to and who may make the move. Moves that depend on more
# than the state (authority, who claimed, who approved first, expiry) are checked in `transition`.
_MOVES: Mapping[tuple[CaseState, CaseAction], _Move] = MappingProxyType(
    {
        (CaseState.DRAFT, CaseAction.SUBMIT): _Move(CaseState.SUBMITTED, _BORROWER),
        (CaseState.SUBMITTED, CaseAction.EVALUATE): _Move(CaseState.OFFERED, _SYSTEM),
        (CaseState.OFFERED, CaseAction.ACCEPT): _Move(CaseState.APPROVED, _BORROWER),
        (CaseState.OFFERED, CaseAction.ASK_CUSTOM): _Move(CaseState.IN_REVIEW, _BORROWER),
        (CaseState.OFFERED, CaseAction.EXPIRE): _Move(CaseState.EXPIRED, _SYSTEM),
        (CaseState.IN_REVIEW, CaseAction.CLAIM): _Move(CaseState.CLAIMED, _STAFF),
        (CaseState.CLAIMED, CaseAction.RELEASE): _Move(CaseState.IN_REVIEW, _STAFF),
        # Within authority the approval is final; above it the case waits for a second person.
        (CaseState.CLAIMED, CaseAction.APPROVE): _Move(CaseState.APPROVED, _STAFF),
        (CaseState.CLAIMED, CaseAction.COUNTER): _Move(CaseState.COUNTERED, _STAFF),
        (CaseState.CLAIMED, CaseAction.REQUEST_INFO): _Move(CaseState.AWAITING_BORROWER, _STAFF),
        (CaseState.CLAIMED, CaseAction.REJECT): _Move(CaseState.REJECTED, _STAFF),
        # Four eyes: the second approval (or rejection) needs a person of higher authority.
        (CaseState.AWAITING_SECOND_APPROVAL, CaseAction.APPROVE): _Move(CaseState.APPROVED, _SUPERVISOR),
        (CaseState.AWAITING_SECOND_APPROVAL, CaseAction.REJECT): _Move(CaseState.REJECTED, _SUPERVISOR),
        (CaseState.COUNTERED, CaseAction.ACCEPT): _Move(CaseState.APPROVED, _BORROWER),
        (CaseState.COUNTERED, CaseAction.DECLINE): _Move(CaseState.IN_REVIEW, _BORROWER),
        (CaseState.COUNTERED, CaseAction.EXPIRE): _Move(CaseState.EXPIRED, _SYSTEM),
        (CaseState.AWAITING_BORROWER, CaseAction.RESPOND): _Move(CaseState.IN_REVIEW, _BORROWER),
        # The agreement: generated from the approved offer, then signed (or left to expire).
        (CaseState.APPROVED, CaseAction.PREPARE_AGREEMENT): _Move(CaseState.AWAITING_SIGNATURE, _SYSTEM),
        (CaseState.AWAITING_SIGNATURE, CaseAction.SIGN): _Move(CaseState.ACTIVE, _BORROWER),
        (CaseState.AWAITING_SIGNATURE, CaseAction.EXPIRE): _Move(CaseState.EXPIRED, _SYSTEM),
        # Staff void an unsigned agreement (wrong terms, a changed balance): the case goes back to
        # the review queue to be decided again, never silently closed.
        (CaseState.APPROVED, CaseAction.VOID_AGREEMENT): _Move(CaseState.IN_REVIEW, _STAFF),
        (CaseState.AWAITING_SIGNATURE, CaseAction.VOID_AGREEMENT): _Move(CaseState.IN_REVIEW, _STAFF),
        **{
            (state, CaseAction.WITHDRAW): _Move(CaseState.WITHDRAWN, _BORROWER)
            for state in sorted(OPEN_STATES)
        },
    }
)


@dataclass(frozen=True)
class CaseFacts:
    """What some moves need to know beyond the state. Leave a field at its default when the
    move does not depend on it; `transition` refuses a move whose facts are missing."""

    claimed_by: int | None = None
    """The staff user working the case (claimed)."""
    first_approver: int | None = None
    """Who approved first, for a case awaiting a second approval."""
    within_authority: bool | None = None
    """Whether the approving staff member's authority covers the concession."""
    expires_on: date | None = None
    """The last day the offer (or the agreement) being accepted, signed or left to expire is open."""
    today: date | None = None


@dataclass(frozen=True)
class Transition:
    before: CaseState
    after: CaseState
    action: CaseAction
    actor: CaseActor


def _refuse(code: str, message: str, **params: object) -> DomainError:
    return DomainError(code, message, **params)


def _check_staff_move(
    state: CaseState, action: CaseAction, actor: CaseActor, facts: CaseFacts
) -> CaseState | None:
    """The rules that depend on who the staff member is; returns a different target state
    when the move leads somewhere else than the table says."""
    if state == CaseState.CLAIMED and (facts.claimed_by is None or facts.claimed_by != actor.id):
        raise _refuse("case_not_yours", "Only the person who claimed this case may decide it.")
    if action == CaseAction.APPROVE and state == CaseState.CLAIMED:
        if facts.within_authority is None:
            raise _refuse("authority_unknown", "The approver's authority must be checked first.")
        if not facts.within_authority:
            return CaseState.AWAITING_SECOND_APPROVAL
    if state == CaseState.AWAITING_SECOND_APPROVAL:
        # Four eyes: never the first approver.
        if facts.first_approver is None or facts.first_approver == actor.id:
            raise _refuse("approver_is_first_approver", "Nobody may give the second approval to their own.")
        if action == CaseAction.APPROVE and facts.within_authority is not True:
            raise _refuse("above_authority", "This concession is above your authority.")
    return None


def _check_expiry(action: CaseAction, facts: CaseFacts) -> None:
    if action not in (CaseAction.ACCEPT, CaseAction.EXPIRE, CaseAction.SIGN):
        return
    if facts.expires_on is None or facts.today is None:
        raise _refuse("offer_expiry_unknown", "The offer's expiry must be known.")
    expired = facts.today > facts.expires_on
    if action == CaseAction.ACCEPT and expired:
        raise _refuse("offer_expired", "This offer expired on {expires_on}.", expires_on=facts.expires_on)
    if action == CaseAction.SIGN and expired:
        raise _refuse(
            "agreement_expired", "This agreement expired on {expires_on}.", expires_on=facts.expires_on
        )
    if action == CaseAction.EXPIRE and not expired:
        raise _refuse(
            "offer_not_expired",
            "This offer is still open until {expires_on}.",
            expires_on=facts.expires_on,
        )


def transition(
    state: CaseState, action: CaseAction, actor: CaseActor, facts: CaseFacts | None = None
) -> Transition:
    """The move `action` by `actor` from `state`, or a DomainError saying why not."""
    facts = facts or CaseFacts()
    move = _MOVES.get((state, action))
    if move is None:
        if state in CLOSED_STATES:
            raise _refuse("case_closed", "This case is closed ({state}).", state=state.value)
        raise _refuse(
            "transition_not_allowed",
            "A case that is {state} cannot be sent to {action}.",
            state=state.value,
            action=action.value,
        )
    if actor.kind not in move.by:
        raise _refuse(
            "actor_not_allowed",
            "A {actor} may not {action} a case that is {state}.",
            actor=actor.kind.value,
            action=action.value,
            state=state.value,
        )
    if actor.kind != ActorKind.SYSTEM and actor.id is None:
        raise _refuse("actor_unknown", "Every move must name who makes it.")
    after = move.to
    if actor.kind in _STAFF:
        after = _check_staff_move(state, action, actor, facts) or after
    _check_expiry(action, facts)
    return Transition(before=state, after=after, action=action, actor=actor)


def allowed_actions(state: CaseState, kind: ActorKind) -> list[CaseAction]:
    """The actions the table offers an actor of this kind in this state (facts may still refuse)."""
    return [
        action for (from_state, action), move in _MOVES.items() if from_state == state and kind in move.by
    ]
