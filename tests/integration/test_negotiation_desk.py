"""The negotiation desk: the queue, claiming, decisions within authority, four eyes, counter-offers
the borrower answers, requests for information, rejections — and refusals that change nothing."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.models import AuditEvent, CaseMessage, EvidenceFile, HardshipCase, Offer, OutboundMessage
from portal.services import borrower_portal
from portal.services import hardship as hardship_service
from portal.services import negotiation_desk as desk
from tests import factories
from tests.conftest import sign_in
from workflows.access import Role
from workflows.errors import DomainError
from workflows.negotiation import CaseState


def _case_in_review(session: Session, *, monthly: int = 50_000, count: int = 24, principal: int = 2_400_000):  # type: ignore[no-untyped-def]
    """A mid-stage borrower who sent their own proposal: the case waits in the queue."""
    owner = factories.borrower(session, language="en", time_zone="Asia/Shanghai")
    account = factories.account(session, principal=principal, interest=60_000, fees=10_000, owner=owner)
    today = borrower_portal.borrower_today(owner)
    account.oldest_unpaid_due_on = today - dt.timedelta(days=45)
    account.dpd, account.stage, account.overdue_amount, account.next_due_amount = 45, "mid", 230_000, 110_000
    session.commit()
    case = factories.hardship_case(session, account, state="offered")
    hardship_service.propose(session, owner, case.id, monthly_amount=monthly, count=count)
    session.refresh(case)
    assert case.state == CaseState.IN_REVIEW.value
    return case


def _state(session: Session, case_id: int) -> str:
    session.expire_all()
    return session.get(HardshipCase, case_id).state  # type: ignore[union-attr]


def test_a_proposal_enters_the_queue_with_a_deadline_and_a_priority(session: Session, staff_of) -> None:  # type: ignore[no-untyped-def]
    case = _case_in_review(session)
    assert case.review_due_on == hardship_service.desk_today() + dt.timedelta(days=5)
    assert case.priority > 0
    agent = staff_of(Role.AGENT)
    page = desk.queue(session, agent, desk.QueueFilters())
    assert case.id in [row.case.id for row in page.rows]
    assert page.counts["stage"]["mid"] >= 1


def test_the_queue_pages_by_keyset_without_repeating_or_skipping(session: Session, staff_of) -> None:  # type: ignore[no-untyped-def]
    ids = {_case_in_review(session).id for _ in range(7)}
    agent = staff_of(Role.AGENT)
    seen: list[int] = []
    cursor = None
    while True:
        page = desk.queue(session, agent, desk.QueueFilters(), cursor=cursor, limit=3, with_counts=False)
        seen += [row.case.id for row in page.rows]
        if page.next_cursor is None:
            break
        cursor = desk.parse_cursor(page.next_cursor)
    assert ids <= set(seen)
    assert len(seen) == len(set(seen))
    priorities = [session.get(HardshipCase, i).priority for i in seen]  # type: ignore[union-attr]
    assert priorities == sorted(priorities, reverse=True)


def test_filters_narrow_the_queue_and_count_each_value(session: Session, staff_of) -> None:  # type: ignore[no-untyped-def]
    case = _case_in_review(session)
    agent = staff_of(Role.AGENT)
    desk.set_vulnerable(session, agent, case.id, version=None, flag=True)
    flagged = desk.queue(session, agent, desk.QueueFilters(vulnerable=True))
    assert [row.case.id for row in flagged.rows] == [case.id] or case.id in [r.case.id for r in flagged.rows]
    assert all(row.case.vulnerable for row in flagged.rows)
    late = desk.queue(session, agent, desk.QueueFilters(stage="late"))
    assert case.id not in [row.case.id for row in late.rows]


def test_claim_next_takes_the_highest_priority_case_and_nobody_works_it_twice(
    session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    _case_in_review(session)
    first, second = staff_of(Role.AGENT), staff_of(Role.AGENT)
    claimed = desk.claim_next(session, first)
    assert claimed is not None
    assert claimed.claimed_by_id == first.id
    with pytest.raises(DomainError) as refused:
        desk.claim(session, second, claimed.id, version=None)
    assert refused.value.code == "transition_not_allowed"


def test_an_agent_counters_and_the_borrower_accepts_on_the_portal(
    client: FlaskClient, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    case = _case_in_review(session)
    agent = staff_of(Role.AGENT)
    sign_in(client, agent)
    assert client.post(f"/staff/cases/{case.id}/claim", data={"version": case.version}).status_code == 302
    page = client.get(
        f"/staff/cases/{case.id}",
        query_string={
            "plan": "instalments",
            "count": "18",
            "holiday_months": "1",
            "rate": "0",
            "waive_fees": "100",
        },
    ).get_data(as_text=True)
    assert "Within your authority." in page
    session.expire_all()
    version = session.get(HardshipCase, case.id).version  # type: ignore[union-attr]
    sent = client.post(
        f"/staff/cases/{case.id}/counter",
        data={
            "version": version,
            "plan": "instalments",
            "count": "18",
            "holiday_months": "1",
            "rate": "0",
            "waive_fees": "100",
            "note": "Income is lower than the proposal assumes; one month's pause first.",
        },
    )
    assert sent.status_code == 302
    assert _state(session, case.id) == CaseState.COUNTERED.value
    counter_offer = session.scalar(
        select(Offer).where(Offer.hardship_case_id == case.id, Offer.origin == "agent")
    )
    assert counter_offer is not None and counter_offer.created_by_id == agent.id
    assert counter_offer.waived_total == 10_000
    notice = session.scalar(select(OutboundMessage).order_by(OutboundMessage.id.desc()).limit(1))
    assert notice is not None and "news about your request" in notice.body.lower()
    assert "owe" not in notice.body.lower()

    sign_in(client, case.borrower)
    status = client.get(f"/help/{case.id}").get_data(as_text=True)
    assert "made you an offer" in status
    assert client.post(f"/help/{case.id}/offers/{counter_offer.id}/accept").status_code == 302
    assert _state(session, case.id) == CaseState.AWAITING_SIGNATURE.value


def test_approval_above_an_agents_authority_needs_a_supervisors_second_approval(
    session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    # Paying half of a large balance: the waived share is far above an agent's 25 %.
    case = _case_in_review(session, monthly=60_000, count=20, principal=2_400_000)
    agent, other_agent = staff_of(Role.AGENT), staff_of(Role.AGENT)
    supervisor, other_supervisor = staff_of(Role.SUPERVISOR), staff_of(Role.SUPERVISOR)
    desk.claim(session, agent, case.id, version=None)
    outcome = desk.approve(session, agent, case.id, version=None, note="Hardship is long-term.")
    assert outcome.state == CaseState.AWAITING_SECOND_APPROVAL
    for who, code in ((agent, "actor_not_allowed"), (other_agent, "actor_not_allowed")):
        with pytest.raises(DomainError) as refused:
            desk.approve(session, who, case.id, version=None, note="again")
        assert refused.value.code == code
        session.rollback()
    assert _state(session, case.id) == CaseState.AWAITING_SECOND_APPROVAL.value
    final = desk.approve(
        session, supervisor, case.id, version=None, note="Agreed: medical evidence is clear."
    )
    assert final.state == CaseState.APPROVED
    assert _state(session, case.id) == CaseState.AWAITING_SIGNATURE.value
    with pytest.raises(DomainError):
        desk.approve(session, other_supervisor, case.id, version=None, note="late")
    session.rollback()


def test_a_supervisor_does_not_second_approve_their_own_first_approval(session: Session, staff_of) -> None:  # type: ignore[no-untyped-def]
    case = _case_in_review(session, monthly=20_000, count=60, principal=20_000_000)
    supervisor = staff_of(Role.SUPERVISOR)
    desk.claim(session, supervisor, case.id, version=None)
    outcome = desk.approve(session, supervisor, case.id, version=None, note="Large case.")
    if outcome.state == CaseState.APPROVED:
        pytest.skip("within the supervisor's own authority under the default policy")
    with pytest.raises(DomainError) as refused:
        desk.approve(session, supervisor, case.id, version=None, note="self")
    assert refused.value.code == "approver_is_first_approver"


def test_acting_on_a_case_claimed_by_someone_else_changes_nothing(session: Session, staff_of) -> None:  # type: ignore[no-untyped-def]
    case = _case_in_review(session)
    owner, intruder = staff_of(Role.AGENT), staff_of(Role.AGENT)
    desk.claim(session, owner, case.id, version=None)
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    for attempt in (
        lambda: desk.approve(session, intruder, case.id, version=None, note="mine now"),
        lambda: desk.reject(
            session, intruder, case.id, version=None, reason="other", message="No.", note="x"
        ),
        lambda: desk.request_info(session, intruder, case.id, version=None, question="Payslip?", note=None),
    ):
        with pytest.raises(DomainError) as refused:
            attempt()
        assert refused.value.code == "case_not_yours"
        session.rollback()
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events
    assert _state(session, case.id) == CaseState.CLAIMED.value


def test_a_decision_on_a_stale_page_is_refused_with_reload(
    client: FlaskClient, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    case = _case_in_review(session)
    agent = staff_of(Role.AGENT)
    stale = case.version
    desk.claim(session, agent, case.id, version=None)
    sign_in(client, agent)
    response = client.post(
        f"/staff/cases/{case.id}/approve", data={"version": stale, "note": "ok"}, follow_redirects=True
    )
    assert "changed while you were looking" in response.get_data(as_text=True)
    assert _state(session, case.id) == CaseState.CLAIMED.value


def test_a_request_for_information_is_answered_with_text_and_a_file(
    client: FlaskClient, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    case = _case_in_review(session)
    agent = staff_of(Role.AGENT)
    desk.claim(session, agent, case.id, version=None)
    outcome = desk.request_info(
        session, agent, case.id, version=None, question="Please send your last payslip.", note=None
    )
    assert outcome.state == CaseState.AWAITING_BORROWER
    sign_in(client, case.borrower)
    page = client.get(f"/help/{case.id}").get_data(as_text=True)
    assert "Please send your last payslip." in page

    bad = client.post(
        f"/help/{case.id}/respond",
        data={
            "answer": "Here it is.",
            "file": (io.BytesIO(b"<svg xmlns='http://www.w3.org/2000/svg'/>"), "payslip.png"),
        },
        content_type="multipart/form-data",
    )
    assert bad.status_code == 422
    assert _state(session, case.id) == CaseState.AWAITING_BORROWER.value
    assert (
        session.scalar(
            select(func.count())
            .select_from(CaseMessage)
            .where(CaseMessage.direction == "from_borrower", CaseMessage.hardship_case_id == case.id)
        )
        == 0
    )

    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), "white").save(buffer, "JPEG")
    good = client.post(
        f"/help/{case.id}/respond",
        data={"answer": "Here it is.", "file": (io.BytesIO(buffer.getvalue()), "payslip.jpg")},
        content_type="multipart/form-data",
    )
    assert good.status_code == 302
    assert _state(session, case.id) == CaseState.IN_REVIEW.value
    assert (
        session.scalar(
            select(func.count()).select_from(EvidenceFile).where(EvidenceFile.hardship_case_id == case.id)
        )
        >= 1
    )


def test_a_rejection_needs_a_reason_and_lifts_the_breathing_space(session: Session, staff_of) -> None:  # type: ignore[no-untyped-def]
    case = _case_in_review(session)
    agent = staff_of(Role.AGENT)
    desk.claim(session, agent, case.id, version=None)
    with pytest.raises(DomainError) as refused:
        desk.reject(session, agent, case.id, version=None, reason="because", message="No.", note="x")
    assert refused.value.code == "reason_invalid"
    session.rollback()
    desk.reject(
        session,
        agent,
        case.id,
        version=None,
        reason="not_affordable",
        message="We cannot agree to this.",
        note="Income too low.",
    )
    assert _state(session, case.id) == CaseState.REJECTED.value
    today = hardship_service.desk_today()
    assert hardship_service.active_pause(session, case.account_id, today) is None


def test_a_counter_offer_above_the_agents_authority_is_refused(session: Session, staff_of) -> None:  # type: ignore[no-untyped-def]
    from workflows.offers import CounterPlan, CounterTerms

    case = _case_in_review(session)
    agent = staff_of(Role.AGENT)
    desk.claim(session, agent, case.id, version=None)
    generous = CounterTerms(plan=CounterPlan.INSTALMENTS, count=12, waive_principal=1_500_000)
    with pytest.raises(DomainError) as refused:
        desk.counter(session, agent, case.id, version=None, terms=generous, note="too much")
    assert refused.value.code == "above_authority"
    session.rollback()
    assert _state(session, case.id) == CaseState.CLAIMED.value


def test_the_case_page_shows_everything_on_one_screen(
    client: FlaskClient, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    case = _case_in_review(session)
    agent = staff_of(Role.AGENT)
    sign_in(client, agent)
    page = client.get(f"/staff/cases/{case.id}").get_data(as_text=True)
    for text in (
        "The borrower's proposal",
        "Income and expenditure",
        "Evidence",
        "Offers on this case",
        "Internal notes",
        "History",
        "What happens next",
    ):
        assert text in page, text
    # Personal data stays masked on the case page.
    assert case.borrower.phone not in page
    queue_page = client.get("/staff/cases").get_data(as_text=True)
    assert f"#{case.id}" in queue_page
