"""The supervisor's view of the negotiation desk: the queue's size, age and missed deadlines,
decisions and approval rates per staff member, the average concession of approved cases, and
second approvals decided several at once — where a refused case changes nothing and does not
stop the others."""

from __future__ import annotations

import datetime as dt

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.models import AuditEvent, HardshipCase, OutboundMessage, StaffUser
from portal.services import borrower_portal, desk_stats
from portal.services import hardship as hardship_service
from portal.services import negotiation_desk as desk
from tests import factories
from tests.conftest import sign_in
from workflows.access import Role
from workflows.negotiation import CaseState
from workflows.offers import CounterPlan, CounterTerms

# On a 24,000.00 principal with 600.00 interest and 100.00 fees (24,700.00 in all):
ABOVE_AGENT = {"monthly": 60_000, "count": 20}  # waives 12,700.00: a supervisor's second approval
WITHIN_AGENT = {"monthly": 100_000, "count": 20}  # waives 4,700.00: an agent may approve it alone
WITHIN_SUPERVISOR = {"monthly": 70_003, "count": 21}  # waives 9,999.37: above an agent, not a supervisor
ABOVE_SUPERVISOR = {"monthly": 20_000, "count": 40}  # waives 16,700.00: above a supervisor too


def _case_in_review(session: Session, *, monthly: int = 50_000, count: int = 24) -> HardshipCase:
    """A mid-stage borrower who sent their own proposal: the case waits in the queue."""
    owner = factories.borrower(session, language="en", time_zone="Asia/Shanghai")
    account = factories.account(session, principal=2_400_000, interest=60_000, fees=10_000, owner=owner)
    today = borrower_portal.borrower_today(owner)
    account.oldest_unpaid_due_on = today - dt.timedelta(days=45)
    account.dpd, account.stage, account.overdue_amount, account.next_due_amount = 45, "mid", 230_000, 110_000
    session.commit()
    case = factories.hardship_case(session, account, state="offered")
    hardship_service.propose(session, owner, case.id, monthly_amount=monthly, count=count)
    session.refresh(case)
    assert case.state == CaseState.IN_REVIEW.value
    return case


def _awaiting(
    session: Session, first_approver: StaffUser, terms: dict[str, int] = ABOVE_AGENT
) -> HardshipCase:
    case = _case_in_review(session, **terms)
    desk.claim(session, first_approver, case.id, version=None)
    outcome = desk.approve(session, first_approver, case.id, version=None, note="Long-term illness.")
    assert outcome.state == CaseState.AWAITING_SECOND_APPROVAL
    session.refresh(case)
    return case


def _fresh(session: Session, case_id: int) -> HardshipCase:
    session.expire_all()
    found = session.get(HardshipCase, case_id)
    assert found is not None
    return found


def _events(session: Session, case_id: int) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.object_type == "hardship_case", AuditEvent.object_id == str(case_id))
        )
        or 0
    )


def _sent(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(OutboundMessage)) or 0)


def _bulk(client: FlaskClient, cases: list[HardshipCase], **form: object):  # type: ignore[no-untyped-def]
    data: dict[str, object] = {"case_id": [str(c.id) for c in cases], **form}
    data.update({f"version_{c.id}": c.version for c in cases})
    return client.post("/staff/supervisor/second-approvals", data=data, follow_redirects=True)


# --- The figures ----------------------------------------------------------------------------------


def test_the_queue_is_counted_per_state_by_age_and_by_missed_deadline(session: Session, staff_of) -> None:  # type: ignore[no-untyped-def]
    before = desk_stats.queue_health(session)
    agent = staff_of(Role.AGENT)
    today = hardship_service.desk_today()
    waiting, overdue, old = (_case_in_review(session) for _ in range(3))
    claimed = _case_in_review(session)
    desk.claim(session, agent, claimed.id, version=None)
    _awaiting(session, agent)
    # Time passes: one case's deadline is behind it, another's is today; two waited long.
    overdue.review_due_on = today - dt.timedelta(days=1)
    overdue.queued_at = dt.datetime.combine(
        today - dt.timedelta(days=10), dt.time(12), tzinfo=desk_stats.DESK_TZ
    )
    waiting.review_due_on = today
    old.queued_at = utcnow() - dt.timedelta(days=20)
    session.commit()

    after = desk_stats.queue_health(session)

    assert after.queue.in_review - before.queue.in_review == 3
    assert after.queue.claimed - before.queue.claimed == 1
    assert after.queue.awaiting_second_approval - before.queue.awaiting_second_approval == 1
    assert after.queue.total - before.queue.total == 5
    assert after.sla.breached - before.sla.breached == 1
    assert after.sla.due_today - before.sla.due_today == 1
    growth = {a.label: a.count - b.count for a, b in zip(after.ages, before.ages, strict=True)}
    assert growth == {"0-2": 3, "3-7": 0, "8-14": 1, "15+": 1}
    assert after.oldest_days >= 20


def test_decisions_are_counted_per_staff_member_with_their_approval_rate(session: Session, staff_of) -> None:  # type: ignore[no-untyped-def]
    before = desk_stats.decisions(session)
    assert before.totals.total == 0, "every test starts on an empty desk"
    first, second, supervisor = staff_of(Role.AGENT), staff_of(Role.AGENT), staff_of(Role.SUPERVISOR)
    big = _awaiting(session, first)  # first: one approval (to a second approval)
    refused = _case_in_review(session)
    desk.claim(session, first, refused.id, version=None)
    desk.reject(
        session, first, refused.id, version=None, reason="not_affordable", message="Sorry.", note="No income."
    )  # first: one rejection
    asked, countered = _case_in_review(session), _case_in_review(session)
    desk.claim(session, second, asked.id, version=None)
    desk.request_info(session, second, asked.id, version=None, question="Your payslip?", note=None)
    desk.claim(session, second, countered.id, version=None)
    desk.counter(
        session,
        second,
        countered.id,
        version=None,
        terms=CounterTerms(plan=CounterPlan.INSTALMENTS, count=18, holiday_months=1, waive_fees=10_000),
        note="A pause first.",
    )
    desk.approve(session, supervisor, big.id, version=None, note="Evidence is clear.")  # supervisor: one

    figures = desk_stats.decisions(session)

    by_id = {s.staff_id: s for s in figures.by_staff}
    assert (by_id[first.id].approved, by_id[first.id].rejected, by_id[first.id].total) == (1, 1, 2)
    assert by_id[first.id].approval_rate_bp == 5_000
    assert by_id[first.id].name == first.full_name
    assert (by_id[second.id].countered, by_id[second.id].info_requested, by_id[second.id].total) == (1, 1, 2)
    assert by_id[second.id].approval_rate_bp is None  # neither approved nor rejected anything
    assert (by_id[supervisor.id].approved, by_id[supervisor.id].approval_rate_bp) == (1, 10_000)
    totals = figures.totals
    assert (totals.approved, totals.rejected, totals.countered, totals.info_requested) == (2, 1, 1, 1)
    assert totals.approval_rate_bp == 6_667  # 2 of 3, banker's rounded to a basis point

    # A decision older than the period is left out of it, and counted in a longer one: seen from
    # 31 days on (audit events are append-only, so the test moves "today", not the decision).
    later = hardship_service.desk_today() + dt.timedelta(days=31)
    month = {s.staff_id: s for s in desk_stats.decisions(session, days=30, today=later).by_staff}
    quarter = {s.staff_id: s for s in desk_stats.decisions(session, days=90, today=later).by_staff}
    assert first.id not in month
    assert quarter[first.id].rejected == 1


def test_the_average_concession_of_approved_cases_is_exact_per_currency(session: Session, staff_of) -> None:  # type: ignore[no-untyped-def]
    assert desk_stats.concessions(session) == [], "every test starts on an empty desk"
    agent, supervisor = staff_of(Role.AGENT), staff_of(Role.SUPERVISOR)
    alone = _case_in_review(session, **WITHIN_AGENT)
    desk.claim(session, agent, alone.id, version=None)
    assert desk.approve(session, agent, alone.id, version=None, note="ok").state == CaseState.APPROVED
    larger = _case_in_review(session, **WITHIN_SUPERVISOR)
    desk.claim(session, supervisor, larger.id, version=None)
    assert desk.approve(session, supervisor, larger.id, version=None, note="ok").state == CaseState.APPROVED
    _awaiting(session, agent)  # not approved yet: not counted

    [cny] = desk_stats.concessions(session)

    assert (cny.currency, cny.cases) == ("CNY", 2)
    assert cny.waived_total == 470_000 + 999_937
    assert cny.balance_total == 2 * 2_470_000
    # 1,469,937 / 2 = 734,968.5: the half goes to the even neighbour.
    assert cny.average_waived == 734_968
    # 14,699,370,000 / 4,940,000 = 2,975.58 basis points.
    assert cny.waived_share_bp == 2_976


def test_the_cases_awaiting_second_approval_are_listed_with_first_approver_and_amount(
    session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    agent = staff_of(Role.AGENT)
    case = _awaiting(session, agent)
    case.first_approved_at = utcnow() - dt.timedelta(days=3)
    session.commit()
    [row] = [r for r in desk_stats.awaiting_second_approval(session) if r.case_id == case.id]
    assert (row.first_approver_id, row.first_approver_name) == (agent.id, agent.full_name)
    assert (row.waived, row.currency, row.waived_share_bp) == (1_270_000, "CNY", 5_142)
    assert row.waiting_days == 3
    assert row.version == _fresh(session, case.id).version
    assert row.account_reference == case.account.external_reference


def test_the_dashboard_shows_the_figures_and_charts_without_inline_styles(
    client: FlaskClient, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    agent, supervisor = staff_of(Role.AGENT), staff_of(Role.SUPERVISOR)
    case = _awaiting(session, agent)
    sign_in(client, supervisor)
    response = client.get("/staff/supervisor")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    for text in (
        "Awaiting second approval",
        "Decisions",
        "Average concession",
        agent.full_name,
        f"#{case.id}",
    ):
        assert text in page, text
    assert page.count("<svg") >= 2
    assert 'class="visually-hidden"' in page  # each chart's figures as a table
    assert "style=" not in page
    assert "<script" not in page.split("</main>")[0].split("<main")[-1]
    assert f'name="version_{case.id}" value="{_fresh(session, case.id).version}"' in page
    assert client.get("/staff/supervisor?days=7").status_code == 200


# --- Bulk second approvals ------------------------------------------------------------------------


def test_a_supervisor_approves_two_awaiting_cases_at_once(
    client: FlaskClient, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    agent, supervisor = staff_of(Role.AGENT), staff_of(Role.SUPERVISOR)
    cases = [_awaiting(session, agent), _awaiting(session, agent)]
    sent_before = _sent(session)
    sign_in(client, supervisor)

    page = _bulk(client, cases, action="approve", note="Both well evidenced.").get_data(as_text=True)

    assert "2 cases were decided." in page
    for case in cases:
        fresh = _fresh(session, case.id)
        assert fresh.state == CaseState.AWAITING_SIGNATURE.value
        assert fresh.decided_by_id == supervisor.id
    # Each borrower is told there is news, once the decision is committed.
    assert _sent(session) - sent_before == 2


def test_a_supervisor_rejects_awaiting_cases_with_a_reason_and_a_message(
    client: FlaskClient, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    agent, supervisor = staff_of(Role.AGENT), staff_of(Role.SUPERVISOR)
    cases = [_awaiting(session, agent), _awaiting(session, agent)]
    sign_in(client, supervisor)

    without_message = _bulk(client, cases, action="reject", note="Too generous.", reason="proposal_too_low")
    assert "Write the message to the borrower." in without_message.get_data(as_text=True)
    assert {_fresh(session, c.id).state for c in cases} == {CaseState.AWAITING_SECOND_APPROVAL.value}

    page = _bulk(
        client,
        cases,
        action="reject",
        note="Too generous.",
        reason="proposal_too_low",
        message="We cannot agree to this; please call us.",
    ).get_data(as_text=True)
    assert "2 cases were decided." in page
    for case in cases:
        fresh = _fresh(session, case.id)
        assert (fresh.state, fresh.decision_reason) == (CaseState.REJECTED.value, "proposal_too_low")


def test_a_supervisors_own_first_approval_is_refused_and_the_others_are_decided(
    client: FlaskClient, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    agent, supervisor = staff_of(Role.AGENT), staff_of(Role.SUPERVISOR)
    own = _awaiting(session, supervisor, ABOVE_SUPERVISOR)  # above the supervisor's authority too
    other = _awaiting(session, agent)
    own_events, own_version = _events(session, own.id), own.version
    sign_in(client, supervisor)

    page = _bulk(client, [own, other], action="approve", note="Agreed.").get_data(as_text=True)

    assert "1 case was decided." in page
    assert f"Not decided: #{own.id}. Nobody may give the second approval to their own approval." in page
    assert _fresh(session, other.id).state == CaseState.AWAITING_SIGNATURE.value
    unchanged = _fresh(session, own.id)
    assert (unchanged.state, unchanged.version) == (CaseState.AWAITING_SECOND_APPROVAL.value, own_version)
    assert unchanged.decided_by_id is None
    assert _events(session, own.id) == own_events


def test_forged_unknown_stale_or_not_awaiting_ids_are_refused_and_change_nothing(
    client: FlaskClient, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    agent, supervisor = staff_of(Role.AGENT), staff_of(Role.SUPERVISOR)
    claimed = _case_in_review(session)
    desk.claim(session, supervisor, claimed.id, version=None)  # the supervisor's own claimed case
    claimed = _fresh(session, claimed.id)
    stale = _awaiting(session, agent)
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    sign_in(client, supervisor)

    page = client.post(
        "/staff/supervisor/second-approvals",
        data={
            "case_id": ["999999999", "abc", str(claimed.id), str(stale.id)],
            "version_999999999": "1",
            f"version_{claimed.id}": str(claimed.version),
            f"version_{stale.id}": str(stale.version - 1),
            "action": "approve",
            "note": "Forged.",
        },
        follow_redirects=True,
    ).get_data(as_text=True)

    assert "were decided" not in page and "was decided" not in page
    assert "Not decided: #abc, #999999999. This request was not found." in page
    assert f"Not decided: #{claimed.id}. This cannot be done at this stage" in page
    assert f"Not decided: #{stale.id}. This case changed while you were looking at it." in page
    assert _fresh(session, claimed.id).state == CaseState.CLAIMED.value
    assert _fresh(session, stale.id).state == CaseState.AWAITING_SECOND_APPROVAL.value
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events

    nothing = client.post(
        "/staff/supervisor/second-approvals", data={"action": "approve", "note": "x"}, follow_redirects=True
    )
    assert "Choose at least one case." in nothing.get_data(as_text=True)
    assert (
        client.post("/staff/supervisor/second-approvals", data={"case_id": str(stale.id)}).status_code == 400
    )


def test_an_agent_may_not_open_the_supervisor_view_or_decide_in_bulk(
    client: FlaskClient, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    agent = staff_of(Role.AGENT)
    case = _awaiting(session, staff_of(Role.AGENT))
    events = _events(session, case.id)
    sign_in(client, agent)
    assert client.get("/staff/supervisor").status_code == 403
    response = client.post(
        "/staff/supervisor/second-approvals",
        data={
            "case_id": str(case.id),
            f"version_{case.id}": str(case.version),
            "action": "approve",
            "note": "x",
        },
    )
    assert response.status_code == 403
    assert _fresh(session, case.id).state == CaseState.AWAITING_SECOND_APPROVAL.value
    assert _events(session, case.id) == events
