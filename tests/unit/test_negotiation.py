"""The hardship case's state machine, table-tested for every (state, action, actor)."""

from datetime import date

import pytest

from workflows.errors import DomainError
from workflows.negotiation import (
    CLOSED_STATES,
    OPEN_STATES,
    ActorKind,
    CaseAction,
    CaseActor,
    CaseFacts,
    CaseState,
    allowed_actions,
    transition,
)

S, A, K = CaseState, CaseAction, ActorKind
TODAY = date(2026, 11, 30)

# Written out by hand from DESIGN.md section 3, independent of the module's table.
EXPECTED: dict[tuple[CaseState, CaseAction, ActorKind], CaseState] = {
    (S.DRAFT, A.SUBMIT, K.BORROWER): S.SUBMITTED,
    (S.SUBMITTED, A.EVALUATE, K.SYSTEM): S.OFFERED,
    (S.OFFERED, A.ACCEPT, K.BORROWER): S.APPROVED,
    (S.OFFERED, A.ASK_CUSTOM, K.BORROWER): S.IN_REVIEW,
    (S.OFFERED, A.EXPIRE, K.SYSTEM): S.EXPIRED,
    (S.IN_REVIEW, A.CLAIM, K.AGENT): S.CLAIMED,
    (S.IN_REVIEW, A.CLAIM, K.SUPERVISOR): S.CLAIMED,
    (S.CLAIMED, A.RELEASE, K.AGENT): S.IN_REVIEW,
    (S.CLAIMED, A.RELEASE, K.SUPERVISOR): S.IN_REVIEW,
    (S.CLAIMED, A.APPROVE, K.AGENT): S.APPROVED,
    (S.CLAIMED, A.APPROVE, K.SUPERVISOR): S.APPROVED,
    (S.CLAIMED, A.COUNTER, K.AGENT): S.COUNTERED,
    (S.CLAIMED, A.COUNTER, K.SUPERVISOR): S.COUNTERED,
    (S.CLAIMED, A.REQUEST_INFO, K.AGENT): S.AWAITING_BORROWER,
    (S.CLAIMED, A.REQUEST_INFO, K.SUPERVISOR): S.AWAITING_BORROWER,
    (S.CLAIMED, A.REJECT, K.AGENT): S.REJECTED,
    (S.CLAIMED, A.REJECT, K.SUPERVISOR): S.REJECTED,
    (S.AWAITING_SECOND_APPROVAL, A.APPROVE, K.SUPERVISOR): S.APPROVED,
    (S.AWAITING_SECOND_APPROVAL, A.REJECT, K.SUPERVISOR): S.REJECTED,
    (S.COUNTERED, A.ACCEPT, K.BORROWER): S.APPROVED,
    (S.COUNTERED, A.DECLINE, K.BORROWER): S.IN_REVIEW,
    (S.COUNTERED, A.EXPIRE, K.SYSTEM): S.EXPIRED,
    (S.AWAITING_BORROWER, A.RESPOND, K.BORROWER): S.IN_REVIEW,
    (S.APPROVED, A.PREPARE_AGREEMENT, K.SYSTEM): S.AWAITING_SIGNATURE,
    (S.AWAITING_SIGNATURE, A.SIGN, K.BORROWER): S.ACTIVE,
    (S.AWAITING_SIGNATURE, A.EXPIRE, K.SYSTEM): S.EXPIRED,
    (S.APPROVED, A.VOID_AGREEMENT, K.AGENT): S.IN_REVIEW,
    (S.APPROVED, A.VOID_AGREEMENT, K.SUPERVISOR): S.IN_REVIEW,
    (S.AWAITING_SIGNATURE, A.VOID_AGREEMENT, K.AGENT): S.IN_REVIEW,
    (S.AWAITING_SIGNATURE, A.VOID_AGREEMENT, K.SUPERVISOR): S.IN_REVIEW,
    **{(state, A.WITHDRAW, K.BORROWER): S.WITHDRAWN for state in OPEN_STATES},
}

STAFF_ID, OTHER_STAFF_ID, BORROWER_ID = 7, 8, 42


def actor_of(kind: ActorKind) -> CaseActor:
    return CaseActor(kind, {K.BORROWER: BORROWER_ID, K.SYSTEM: None}.get(kind, STAFF_ID))


def facts_for(state: CaseState, action: CaseAction) -> CaseFacts:
    """The facts under which an allowed move goes through to the table's target."""
    return CaseFacts(
        claimed_by=STAFF_ID,
        first_approver=OTHER_STAFF_ID,
        within_authority=True,
        # An offer that has not expired can be accepted; one that has can be left to expire.
        expires_on=TODAY if action in (A.ACCEPT, A.SIGN) else date(2026, 11, 29),
        today=TODAY,
    )


@pytest.mark.parametrize(
    ("state", "action", "kind"),
    [(state, action, kind) for state in CaseState for action in CaseAction for kind in ActorKind],
    ids=str,
)
def test_every_state_action_and_actor_follows_the_table(
    state: CaseState, action: CaseAction, kind: ActorKind
) -> None:
    expected = EXPECTED.get((state, action, kind))
    if expected is None:
        with pytest.raises(DomainError) as refused:
            transition(state, action, actor_of(kind), facts_for(state, action))
        if state in CLOSED_STATES:
            assert refused.value.code == "case_closed"
        else:
            assert refused.value.code in {"transition_not_allowed", "actor_not_allowed"}
        assert str(refused.value)  # a readable reason
    else:
        moved = transition(state, action, actor_of(kind), facts_for(state, action))
        assert (moved.before, moved.after, moved.action) == (state, expected, action)
        assert moved.actor == actor_of(kind)


def test_allowed_actions_lists_exactly_the_table() -> None:
    for state in CaseState:
        for kind in ActorKind:
            listed = set(allowed_actions(state, kind))
            assert listed == {a for (s, a, k) in EXPECTED if s == state and k == kind}


def test_open_and_closed_states_partition_all_states() -> None:
    assert set(CaseState) == OPEN_STATES | CLOSED_STATES
    assert not OPEN_STATES & CLOSED_STATES
    assert {S.ACTIVE, S.REJECTED, S.WITHDRAWN, S.EXPIRED} == CLOSED_STATES


def test_approval_above_authority_waits_for_a_second_approval() -> None:
    agent = CaseActor(K.AGENT, STAFF_ID)
    moved = transition(S.CLAIMED, A.APPROVE, agent, CaseFacts(claimed_by=STAFF_ID, within_authority=False))
    assert moved.after == S.AWAITING_SECOND_APPROVAL


def test_approval_needs_the_authority_checked() -> None:
    agent = CaseActor(K.AGENT, STAFF_ID)
    with pytest.raises(DomainError) as refused:
        transition(S.CLAIMED, A.APPROVE, agent, CaseFacts(claimed_by=STAFF_ID))
    assert refused.value.code == "authority_unknown"


def test_only_the_claimant_decides_a_claimed_case() -> None:
    someone_else = CaseActor(K.SUPERVISOR, OTHER_STAFF_ID)
    for action in (A.APPROVE, A.COUNTER, A.REQUEST_INFO, A.REJECT, A.RELEASE):
        with pytest.raises(DomainError) as refused:
            transition(S.CLAIMED, action, someone_else, CaseFacts(claimed_by=STAFF_ID, within_authority=True))
        assert refused.value.code == "case_not_yours"


def test_nobody_gives_the_second_approval_to_their_own_approval() -> None:
    supervisor = CaseActor(K.SUPERVISOR, STAFF_ID)
    facts = CaseFacts(first_approver=STAFF_ID, within_authority=True)
    for action in (A.APPROVE, A.REJECT):
        with pytest.raises(DomainError) as refused:
            transition(S.AWAITING_SECOND_APPROVAL, action, supervisor, facts)
        assert refused.value.code == "approver_is_first_approver"


def test_an_agent_cannot_give_the_second_approval() -> None:
    agent = CaseActor(K.AGENT, STAFF_ID)
    with pytest.raises(DomainError) as refused:
        transition(
            S.AWAITING_SECOND_APPROVAL,
            A.APPROVE,
            agent,
            CaseFacts(first_approver=OTHER_STAFF_ID, within_authority=True),
        )
    assert refused.value.code == "actor_not_allowed"


def test_second_approval_above_the_supervisors_authority_is_refused() -> None:
    supervisor = CaseActor(K.SUPERVISOR, STAFF_ID)
    with pytest.raises(DomainError) as refused:
        transition(
            S.AWAITING_SECOND_APPROVAL,
            A.APPROVE,
            supervisor,
            CaseFacts(first_approver=OTHER_STAFF_ID, within_authority=False),
        )
    assert refused.value.code == "above_authority"


@pytest.mark.parametrize("state", [S.OFFERED, S.COUNTERED])
def test_an_expired_offer_cannot_be_accepted(state: CaseState) -> None:
    borrower = CaseActor(K.BORROWER, BORROWER_ID)
    expired = CaseFacts(expires_on=date(2026, 11, 29), today=TODAY)
    with pytest.raises(DomainError) as refused:
        transition(state, A.ACCEPT, borrower, expired)
    assert refused.value.code == "offer_expired"
    # The expiry date itself is the last day it can be accepted.
    last_day = CaseFacts(expires_on=TODAY, today=TODAY)
    assert transition(state, A.ACCEPT, borrower, last_day).after == S.APPROVED


def test_an_expires_only_after_its_expiry_date() -> None:
    with pytest.raises(DomainError) as refused:
        transition(S.OFFERED, A.EXPIRE, CaseActor(K.SYSTEM), CaseFacts(expires_on=TODAY, today=TODAY))
    assert refused.value.code == "offer_not_expired"


def test_every_move_but_the_systems_names_who_makes_it() -> None:
    with pytest.raises(DomainError) as refused:
        transition(S.DRAFT, A.SUBMIT, CaseActor(K.BORROWER))
    assert refused.value.code == "actor_unknown"


def test_resubmitting_a_submitted_case_is_refused() -> None:
    borrower = CaseActor(K.BORROWER, BORROWER_ID)
    for state in (S.SUBMITTED, S.OFFERED, S.IN_REVIEW):
        with pytest.raises(DomainError) as refused:
            transition(state, A.SUBMIT, borrower)
        assert refused.value.code == "transition_not_allowed"


def test_an_expired_agreement_cannot_be_signed() -> None:
    borrower = CaseActor(K.BORROWER, BORROWER_ID)
    with pytest.raises(DomainError) as refused:
        transition(
            S.AWAITING_SIGNATURE, A.SIGN, borrower, CaseFacts(expires_on=date(2026, 11, 29), today=TODAY)
        )
    assert refused.value.code == "agreement_expired"
