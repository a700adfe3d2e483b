"""The collector's workspace: work lists and claiming, the call screen's counter and restrictions,
calls the contact rules refuse (nothing written), promises to pay, home visits in order, and
legal referrals decided by another supervisor."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, make_url, select
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.extensions import db
from portal.migrations import alembic_config
from portal.models import (
    Account,
    AuditEvent,
    CollectionAction,
    ContactAttempt,
    ContactPreference,
    DebtDispute,
    HomeVisit,
    LegalReferral,
    PromiseToPay,
    StaffUser,
    StageHistory,
)
from portal.services import collector, contact
from tests import factories
from tests.conftest import _prepare_postgres, sign_in
from workflows.access import Role
from workflows.contact_policy import RefusalCode
from workflows.errors import DomainError

# 10:00 and 23:30 in Shanghai (UTC+8).
MORNING = dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC)
LATE_NIGHT = dt.datetime(2026, 11, 30, 15, 30, tzinfo=dt.UTC)
MORNING_DAY = dt.date(2026, 11, 30)


def zone_at(local_hour: int, now: dt.datetime | None = None) -> str:
    """A fixed-offset zone where it is now ``local_hour`` o'clock (for tests through the routes,
    which run at the real time)."""
    moment = now or dt.datetime.now(dt.UTC)
    offset = (local_hour - moment.hour) % 24
    if offset > 14:
        offset -= 24
    return f"Etc/GMT{-offset:+d}"


def _account(session: Session, *, zone: str = "Asia/Shanghai", stage: str = "mid", dpd: int = 45) -> Account:
    owner = factories.borrower(session, language="en", time_zone=zone)
    account = factories.account(session, principal=500_000, interest=20_000, fees=5_000, owner=owner)
    account.stage, account.dpd = stage, dpd
    account.oldest_unpaid_due_on = dt.date.today() - dt.timedelta(days=dpd)
    account.overdue_amount = 120_000
    session.commit()
    return account


def _task(
    session: Session,
    account: Account,
    *,
    kind: str = "call_task",
    priority: int = 0,
    run_date: dt.date = MORNING_DAY,
    status: str = "pending",
    assigned_to_id: int | None = None,
    next_allowed_at: dt.datetime | None = None,
) -> CollectionAction:
    action = CollectionAction(
        account_id=account.id,
        run_date=run_date,
        rule_key=f"{account.stage}:{kind}:{priority}:{run_date}",
        kind=kind,
        channel="call" if kind == "call_task" else None,
        stage=account.stage,
        priority=priority,
        status=status,
        assigned_to_id=assigned_to_id,
        next_allowed_at=next_allowed_at,
    )
    session.add(action)
    session.commit()
    return action


def _count(session: Session, model: type, **where: object) -> int:
    stmt = select(func.count()).select_from(model)
    for name, value in where.items():
        stmt = stmt.where(getattr(model, name) == value)
    return int(session.scalar(stmt) or 0)


# --- Work lists ---------------------------------------------------------------------------------


def test_the_work_list_puts_the_highest_priority_first_then_the_oldest_and_pages_by_keyset(
    session: Session,
) -> None:
    collector_user = factories.staff(session, role=Role.COLLECTOR)
    account = _account(session)
    late = _account(session, stage="late", dpd=120)
    day = MORNING_DAY
    low = _task(session, account, priority=1, run_date=day)
    high_new = _task(session, account, priority=5, run_date=day)
    high_old = _task(session, late, priority=5, run_date=day - dt.timedelta(days=2))
    middle = _task(session, late, priority=3, run_date=day - dt.timedelta(days=1))
    # Not on the list: done, another kind.
    _task(session, account, priority=9, run_date=day - dt.timedelta(days=3), status="done")
    _task(session, account, priority=9, kind="legal_review")

    filters = collector.WorkFilters(view="all")
    seen: list[int] = []
    cursor = None
    while True:
        page = collector.work_list(session, collector_user, filters, cursor=cursor, limit=2)
        seen += [row.action.id for row in page.rows]
        if page.next_cursor is None:
            break
        cursor = collector.parse_cursor(page.next_cursor)
    ours = [i for i in seen if i in {low.id, high_new.id, high_old.id, middle.id}]
    assert ours == [high_old.id, high_new.id, middle.id, low.id]

    by_stage = collector.work_list(session, collector_user, collector.WorkFilters(view="all", stage="late"))
    assert {row.action.id for row in by_stage.rows} >= {high_old.id, middle.id}
    assert all(row.action.stage == "late" for row in by_stage.rows)
    assert by_stage.stage_counts["late"] >= 2 and by_stage.stage_counts["mid"] >= 2
    assert by_stage.total == by_stage.stage_counts["late"]


def test_my_tasks_hold_what_i_claimed_and_waiting_only_what_nobody_holds(session: Session) -> None:
    me = factories.staff(session, role=Role.COLLECTOR)
    other = factories.staff(session, role=Role.COLLECTOR)
    account = _account(session)
    mine = _task(session, account, priority=2)
    theirs = _task(session, account, priority=3, assigned_to_id=other.id)
    free = _task(session, account, priority=1)
    collector.claim(session, me, mine.id)

    my_page = collector.work_list(session, me, collector.WorkFilters(view="mine"))
    assert [row.action.id for row in my_page.rows] == [mine.id]
    waiting = {row.action.id for row in collector.work_list(session, me, collector.WorkFilters()).rows}
    assert free.id in waiting and mine.id not in waiting and theirs.id not in waiting
    counts = collector.view_counts(session, me)
    assert counts["mine"] == 1 and counts["all"] >= 3

    with pytest.raises(DomainError) as taken:
        collector.claim(session, me, theirs.id)
    assert taken.value.code == "action_taken"


def test_claim_next_takes_the_most_urgent_free_task_whose_time_has_come(session: Session) -> None:
    me = factories.staff(session, role=Role.COLLECTOR)
    account = _account(session)
    not_yet = _task(session, account, priority=99, next_allowed_at=utcnow() + dt.timedelta(hours=3))
    urgent = _task(session, account, priority=98)
    _task(session, account, priority=1)
    claimed = collector.claim_next(session, me)
    assert claimed is not None and claimed.id == urgent.id
    assert claimed.assigned_to_id == me.id
    assert session.get(CollectionAction, not_yet.id).assigned_to_id is None
    assert _count(session, AuditEvent, action="collection_action.claim", object_id=str(urgent.id)) == 1


@pytest.fixture
def race_app(database_url: str, make_app, tmp_path: Path) -> Flask:  # type: ignore[no-untyped-def]
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        own = url.set(database=f"{url.database}_collect").render_as_string(hide_password=False)
        _prepare_postgres(own)
    else:
        own = f"sqlite:///{tmp_path / 'collect-race.db'}"
    command.upgrade(alembic_config(own), "head")
    return make_app(DATABASE_URL=own, WTF_CSRF_ENABLED=False, TESTING=True)  # type: ignore[no-any-return]


def test_collectors_claiming_at_once_each_get_a_different_task(race_app: Flask) -> None:
    parallel = 8
    with race_app.app_context(), db.session_scope() as session:
        staff_ids = [factories.staff(session, role=Role.COLLECTOR).id for _ in range(parallel)]
        account = _account(session)
        for n in range(parallel):
            _task(session, account, priority=n)
    claimed: list[int | None] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(parallel)

    def work(staff_id: int) -> None:
        try:
            barrier.wait(timeout=10)
            with race_app.app_context(), db.session_scope() as session:
                staff = session.get(StaffUser, staff_id)
                action = collector.claim_next(session, staff)
                claimed.append(action.id if action else None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in staff_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    got = [c for c in claimed if c is not None]
    assert len(got) == len(set(got)), claimed
    with race_app.app_context(), db.session_scope() as session:
        holders = session.scalars(select(CollectionAction.assigned_to_id)).all()
        assert len([h for h in holders if h is not None]) == len(got)


# --- The call screen ------------------------------------------------------------------------------


def test_the_call_screen_shows_the_counter_before_the_call(client: FlaskClient, session: Session) -> None:
    account = _account(session, zone=zone_at(12))
    action = _task(session, account)
    sign_in(client, factories.staff(session, role=Role.COLLECTOR))
    page = client.get(f"/staff/collections/actions/{action.id}").get_data(as_text=True)
    assert "Calls left today" in page
    assert "<dd>6</dd>" in page  # the CN pack: six calls a day to one number
    assert "No weekly limit" in page
    assert "The contact rules allow a call now." in page
    assert "What happens next" in page
    assert "No opt-out, stop request, dispute or breathing space." in page
    assert "disabled" not in page.split('id="log-h"')[1].split("</form>")[0]


def test_restrictions_are_flagged_and_the_call_form_is_disabled(
    client: FlaskClient, session: Session
) -> None:
    account = _account(session, zone=zone_at(12))
    session.add(
        DebtDispute(
            account_id=account.id,
            borrower_id=account.borrower_id,
            reason="amount_wrong",
            detail="The fees are wrong.",
        )
    )
    session.add(ContactPreference(borrower_id=account.borrower_id, opted_out_channels=["sms"]))
    session.commit()
    action = _task(session, account)
    sign_in(client, factories.staff(session, role=Role.COLLECTOR))
    page = client.get(f"/staff/collections/actions/{action.id}").get_data(as_text=True)
    assert "The borrower disputes this debt" in page
    assert "Opted out of:" in page and "SMS" in page
    assert "No call now." in page
    assert "<fieldset disabled>" in page


def test_a_call_outside_hours_is_refused_with_the_reasons_and_nothing_is_written(
    client: FlaskClient, session: Session
) -> None:
    account = _account(session, zone=zone_at(2))
    action = _task(session, account)
    sign_in(client, factories.staff(session, role=Role.COLLECTOR))
    audits = _count(session, AuditEvent)
    page = client.get(f"/staff/collections/actions/{action.id}").get_data(as_text=True)
    assert "No call now." in page and "<fieldset disabled>" in page

    response = client.post(
        f"/staff/collections/accounts/{account.id}/calls",
        data={
            "action_id": action.id,
            "outcome": "promise_to_pay",
            "promise_amount": "100.00",
            "promise_due_on": (dt.date.today() + dt.timedelta(days=3)).isoformat(),
            "complete": "1",
        },
        follow_redirects=True,
    )
    text = response.get_data(as_text=True)
    assert "Nothing was recorded." in text
    assert "allowed 08:00" in text  # the translated outside-hours reason
    assert _count(session, ContactAttempt, account_id=account.id) == 0
    assert _count(session, PromiseToPay, account_id=account.id) == 0
    session.expire_all()
    assert session.get(CollectionAction, action.id).status == "pending"
    assert _count(session, AuditEvent) == audits


def test_the_service_refuses_a_late_night_call_and_writes_nothing(session: Session) -> None:
    me = factories.staff(session, role=Role.COLLECTOR)
    account = _account(session)
    action = _task(session, account)
    with pytest.raises(contact.ContactRefusedError) as refused:
        collector.log_call(
            session,
            me,
            account.id,
            outcome="no_answer",
            action_id=action.id,
            complete_action=True,
            now=LATE_NIGHT,
        )
    session.rollback()
    assert RefusalCode.OUTSIDE_HOURS in refused.value.decision.codes
    assert _count(session, ContactAttempt, account_id=account.id) == 0
    assert session.get(CollectionAction, action.id).assigned_to_id is None


def test_a_call_with_a_promise_to_pay_records_both_and_completes_the_task(
    client: FlaskClient, session: Session
) -> None:
    account = _account(session, zone=zone_at(12))
    action = _task(session, account)
    me = factories.staff(session, role=Role.COLLECTOR)
    sign_in(client, me)
    today = dt.datetime.now(ZoneInfo(account.borrower.time_zone)).date()
    response = client.post(
        f"/staff/collections/accounts/{account.id}/calls",
        data={
            "action_id": action.id,
            "outcome": "promise_to_pay",
            "party": "borrower",
            "promise_amount": "1,200.50",
            "promise_due_on": (today + dt.timedelta(days=7)).isoformat(),
            "notes": "Will pay after payday.",
            "complete": "1",
        },
        follow_redirects=True,
    )
    assert "The promise to pay was recorded with the call." in response.get_data(as_text=True)
    attempt = session.scalars(select(ContactAttempt).where(ContactAttempt.account_id == account.id)).one()
    assert attempt.outcome == "promise_to_pay" and attempt.conversation and attempt.staff_id == me.id
    assert attempt.action_id == action.id
    promise = session.scalars(select(PromiseToPay).where(PromiseToPay.account_id == account.id)).one()
    assert (promise.amount, promise.status, promise.due_on) == (120_050, "open", today + dt.timedelta(days=7))
    assert promise.contact_attempt_id == attempt.id and promise.taken_by_id == me.id
    session.expire_all()
    done = session.get(CollectionAction, action.id)
    assert done.status == "done" and done.done_at is not None and done.assigned_to_id == me.id
    for name in ("contact.recorded", "promise_to_pay.created", "collection_action.done"):
        assert _count(session, AuditEvent, action=name) >= 1, name
    # The counter now shows one call fewer, and the promise is listed.
    page = client.get(f"/staff/collections/accounts/{account.id}").get_data(as_text=True)
    assert "<dd>5</dd>" in page
    assert "1,200.50" in page


@pytest.mark.parametrize(
    ("amount", "days", "code"),
    [
        ("100.00", -1, "promise_date_past"),
        ("100.00", 31, "promise_date_too_far"),
        ("5250.01", 5, "promise_amount_above_balance"),
        ("0", 5, "promise_amount_zero"),
        ("", 5, "promise_amount_missing"),
        ("12abc", 5, "amount_invalid"),
        ("-5", 5, "amount_negative"),
    ],
)
def test_a_promise_in_the_past_too_far_or_above_the_balance_is_refused_and_nothing_written(
    session: Session, amount: str, days: int, code: str
) -> None:
    me = factories.staff(session, role=Role.COLLECTOR)
    account = _account(session)  # owes 5,250.00
    with pytest.raises(DomainError) as refused:
        collector.log_call(
            session,
            me,
            account.id,
            outcome="promise_to_pay",
            promise=collector.PromiseInput(amount, (MORNING_DAY + dt.timedelta(days=days)).isoformat()),
            now=MORNING,
        )
    session.rollback()
    assert refused.value.code == code
    assert _count(session, ContactAttempt, account_id=account.id) == 0
    assert _count(session, PromiseToPay, account_id=account.id) == 0


def test_a_promise_for_the_whole_balance_on_the_last_allowed_day_is_taken(session: Session) -> None:
    me = factories.staff(session, role=Role.COLLECTOR)
    account = _account(session)
    logged = collector.log_call(
        session,
        me,
        account.id,
        outcome="promise_to_pay",
        promise=collector.PromiseInput("5250.00", (MORNING_DAY + dt.timedelta(days=30)).isoformat()),
        now=MORNING,
    )
    assert logged.promise is not None and logged.promise.amount == account.total_balance


def test_an_unknown_outcome_is_refused(client: FlaskClient, session: Session) -> None:
    account = _account(session, zone=zone_at(12))
    sign_in(client, factories.staff(session, role=Role.COLLECTOR))
    response = client.post(
        f"/staff/collections/accounts/{account.id}/calls",
        data={"outcome": "threatened"},
        follow_redirects=True,
    )
    assert "Choose what happened." in response.get_data(as_text=True)
    assert _count(session, ContactAttempt, account_id=account.id) == 0


# --- Home visits ------------------------------------------------------------------------------------


def _step(session: Session, staff: StaffUser, visit: HomeVisit, step: str, **values: object) -> HomeVisit:
    return collector.advance_visit(
        session,
        staff,
        visit.id,
        version=visit.version,
        step=collector.VisitStep(step=step, **values),  # type: ignore[arg-type]
        now=MORNING,
    )


def test_a_home_visit_goes_notify_evaluate_dispatch_meet_agreement_in_order(session: Session) -> None:
    me = factories.staff(session, role=Role.COLLECTOR)
    partner = factories.staff(session, role=Role.COLLECTOR)
    account = _account(session, stage="late", dpd=100)
    proposal = _task(session, account, kind="home_visit_proposal")
    visit = collector.propose_visit(session, me, account.id, action_id=proposal.id, now=MORNING)
    assert visit.status == "notify"
    assert session.get(CollectionAction, proposal.id).status == "done"

    with pytest.raises(DomainError) as early:
        _step(session, me, visit, "dispatch", collector_ids=[me.id, partner.id])
    session.rollback()
    assert early.value.code == "visit_step_out_of_order"

    visit = _step(session, me, visit, "notify")
    visit = _step(session, me, visit, "evaluate", notes="Safe area, borrower unreachable by phone.")
    assert visit.status == "dispatch"
    for ids, code in (
        ([me.id], "visit_needs_two_collectors"),
        ([me.id, me.id], "visit_needs_two_collectors"),
    ):
        with pytest.raises(DomainError) as one:
            _step(session, me, visit, "dispatch", collector_ids=ids)
        session.rollback()
        assert one.value.code == code
    visit = session.get(HomeVisit, visit.id)
    assert visit.status == "dispatch" and visit.collector_ids == []
    visit = _step(session, me, visit, "dispatch", collector_ids=[partner.id, me.id])
    assert visit.status == "meet" and visit.collector_ids == sorted([me.id, partner.id])

    with pytest.raises(DomainError) as unidentified:
        _step(session, me, visit, "meet", outcome="reached")
    session.rollback()
    assert unidentified.value.code == "visit_not_identified"
    visit = session.get(HomeVisit, visit.id)
    with pytest.raises(contact.ContactRefusedError):
        collector.advance_visit(
            session,
            me,
            visit.id,
            version=visit.version,
            step=collector.VisitStep(step="meet", identified=True, outcome="reached"),
            now=LATE_NIGHT,
        )
    session.rollback()
    visit = session.get(HomeVisit, visit.id)
    assert visit.status == "meet"
    assert _count(session, ContactAttempt, account_id=account.id) == 0

    visit = _step(session, me, visit, "meet", identified=True, outcome="reached", notes="Met at the door.")
    assert visit.status == "agreement" and visit.identified
    attempt = session.scalars(select(ContactAttempt).where(ContactAttempt.account_id == account.id)).one()
    assert attempt.channel == "home_visit" and attempt.outcome == "reached"
    visit = _step(session, me, visit, "agreement", outcome="plan_requested")
    assert visit.status == "closed" and visit.outcome == "plan_requested"
    steps = session.scalars(
        select(AuditEvent.action).where(
            AuditEvent.object_type == "home_visit", AuditEvent.object_id == str(visit.id)
        )
    ).all()
    assert steps == [
        "home_visit.proposed",
        "home_visit.notify",
        "home_visit.evaluate",
        "home_visit.dispatch",
        "home_visit.meet",
        "home_visit.agreement",
    ]
    with pytest.raises(DomainError) as after:
        _step(session, me, visit, "agreement", outcome="no_agreement")
    assert after.value.code == "visit_step_out_of_order"


def test_a_stale_visit_version_and_a_cancelled_visit_change_nothing(session: Session) -> None:
    me = factories.staff(session, role=Role.COLLECTOR)
    account = _account(session, stage="late", dpd=100)
    visit = collector.propose_visit(session, me, account.id, now=MORNING)
    stale = visit.version
    collector.advance_visit(
        session, me, visit.id, version=stale, step=collector.VisitStep("notify"), now=MORNING
    )
    with pytest.raises(DomainError) as changed:
        collector.advance_visit(
            session, me, visit.id, version=stale, step=collector.VisitStep("evaluate"), now=MORNING
        )
    session.rollback()
    assert changed.value.code == "visit_changed"
    visit = session.get(HomeVisit, visit.id)
    with pytest.raises(DomainError):
        collector.cancel_visit(session, me, visit.id, version=visit.version, notes="")
    session.rollback()
    visit = collector.cancel_visit(session, me, visit.id, version=visit.version, notes="Borrower paid.")
    assert visit.status == "cancelled"
    with pytest.raises(DomainError) as closed:
        _step(session, me, visit, "evaluate")
    assert closed.value.code == "visit_step_out_of_order"


def test_no_home_visit_is_planned_while_the_borrower_disputes_the_debt(session: Session) -> None:
    me = factories.staff(session, role=Role.COLLECTOR)
    account = _account(session, stage="late", dpd=100)
    session.add(
        DebtDispute(
            account_id=account.id, borrower_id=account.borrower_id, reason="not_mine", detail="Not me."
        )
    )
    session.commit()
    with pytest.raises(contact.ContactRefusedError) as refused:
        collector.propose_visit(session, me, account.id, now=MORNING)
    session.rollback()
    assert RefusalCode.DISPUTE_OPEN in refused.value.decision.codes
    assert _count(session, HomeVisit, account_id=account.id) == 0


def test_the_visit_pages_walk_through_the_steps(client: FlaskClient, session: Session) -> None:
    me = factories.staff(session, role=Role.COLLECTOR)
    partner = factories.staff(session, role=Role.COLLECTOR)
    account = _account(session, stage="late", dpd=100, zone=zone_at(12))
    sign_in(client, me)
    response = client.post(
        f"/staff/collections/accounts/{account.id}/visits", data={"notes": "No answer for weeks."}
    )
    visit = session.scalars(select(HomeVisit).where(HomeVisit.account_id == account.id)).one()
    assert response.location.endswith(f"/staff/collections/visits/{visit.id}")
    for step in ("notify", "evaluate"):
        client.post(f"/staff/collections/visits/{visit.id}/advance", data={"step": step})
    page = client.post(
        f"/staff/collections/visits/{visit.id}/advance",
        data={"step": "dispatch", "collectors": [str(me.id)]},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Name at least two different collectors for the visit." in page
    page = client.post(
        f"/staff/collections/visits/{visit.id}/advance",
        data={"step": "notify"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "This step cannot be done now" in page
    client.post(
        f"/staff/collections/visits/{visit.id}/advance",
        data={"step": "dispatch", "collectors": [str(me.id), str(partner.id)]},
    )
    session.expire_all()
    assert session.get(HomeVisit, visit.id).status == "meet"
    page = client.get(f"/staff/collections/visits/{visit.id}").get_data(as_text=True)
    assert "Every collector showed their identification" in page


# --- Legal referrals ---------------------------------------------------------------------------------


def test_a_referral_is_approved_by_another_supervisor_only_and_moves_the_account_to_legal(
    session: Session,
) -> None:
    requester = factories.staff(session, role=Role.SUPERVISOR)
    other = factories.staff(session, role=Role.SUPERVISOR)
    account = _account(session, stage="late", dpd=150)
    session.add(
        StageHistory(account_id=account.id, stage="late", entered_on=MORNING_DAY - dt.timedelta(days=60))
    )
    session.commit()
    review = _task(session, account, kind="legal_review")
    referral = collector.request_referral(
        session, requester, account.id, reason="No payment in 150 days.", action_id=review.id
    )
    assert session.get(CollectionAction, review.id).status == "done"
    with pytest.raises(DomainError) as twice:
        collector.request_referral(session, requester, account.id, reason="Again.")
    session.rollback()
    assert twice.value.code == "referral_pending"

    with pytest.raises(DomainError) as own:
        collector.decide_referral(session, requester, referral.id, version=None, approve=True, note=None)
    session.rollback()
    assert own.value.code == "referral_own_request"
    assert session.get(Account, account.id).stage == "late"

    collector.decide_referral(
        session, other, referral.id, version=referral.version, approve=True, note=None, today=MORNING_DAY
    )
    session.expire_all()
    assert session.get(LegalReferral, referral.id).status == "approved"
    assert session.get(Account, account.id).stage == "legal"
    history = session.scalars(
        select(StageHistory).where(StageHistory.account_id == account.id).order_by(StageHistory.entered_on)
    ).all()
    assert [(h.stage, h.left_on) for h in history] == [("late", MORNING_DAY), ("legal", None)]
    assert _count(session, AuditEvent, action="account.stage", object_id=str(account.id)) == 1
    assert _count(session, AuditEvent, action="legal_referral.approved", object_id=str(referral.id)) == 1

    with pytest.raises(DomainError) as decided:
        collector.decide_referral(session, other, referral.id, version=None, approve=False, note="No.")
    assert decided.value.code == "referral_decided"


def test_a_referral_is_rejected_only_with_a_reason_and_the_stage_stays(
    client: FlaskClient, session: Session
) -> None:
    collector_user = factories.staff(session, role=Role.COLLECTOR)
    supervisor = factories.staff(session, role=Role.SUPERVISOR)
    account = _account(session, stage="late", dpd=150)
    sign_in(client, collector_user)
    client.post(f"/staff/collections/accounts/{account.id}/referrals", data={"reason": "Refuses every plan."})
    referral = session.scalars(select(LegalReferral).where(LegalReferral.account_id == account.id)).one()
    assert referral.requested_by_id == collector_user.id
    assert client.post(f"/staff/collections/referrals/{referral.id}/approve").status_code == 403

    sign_in(client, supervisor)
    queue = client.get("/staff/collections/referrals").get_data(as_text=True)
    assert "Refuses every plan." in queue
    page = client.post(
        f"/staff/collections/referrals/{referral.id}/reject", data={"note": ""}, follow_redirects=True
    ).get_data(as_text=True)
    assert "Write a short note" in page
    client.post(f"/staff/collections/referrals/{referral.id}/reject", data={"note": "Try a plan first."})
    session.expire_all()
    assert session.get(LegalReferral, referral.id).status == "rejected"
    assert session.get(Account, account.id).stage == "late"
    page = client.post(f"/staff/collections/referrals/{referral.id}/approve", follow_redirects=True).get_data(
        as_text=True
    )
    assert "This referral has already been decided." in page
    session.expire_all()
    assert session.get(Account, account.id).stage == "late"


def test_the_work_list_page_shows_counts_per_stage_and_claims_the_next_call(
    client: FlaskClient, session: Session
) -> None:
    me = factories.staff(session, role=Role.COLLECTOR)
    account = _account(session)
    action = _task(session, account, priority=10_000)
    sign_in(client, me)
    page = client.get("/staff/collections?view=all").get_data(as_text=True)
    assert f"#{action.id}" in page
    assert "Mid-stage" in page or "mid" in page
    response = client.post("/staff/collections/claim-next")
    assert response.location.endswith(f"/staff/collections/actions/{action.id}")
    session.expire_all()
    assert session.get(CollectionAction, action.id).assigned_to_id == me.id
    mine = client.get("/staff/collections?view=mine").get_data(as_text=True)
    assert f"#{action.id}" in mine
