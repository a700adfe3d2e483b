"""The collector's workspace for staff: work lists, the call screen, home visits and the legal
referral queue.

Views parse the form, call one service in portal.services.collector and redirect; a refusal
(the contact rules, bad input, a step out of order) is flashed in the staff member's language and
changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm.exc import StaleDataError

from portal import labels
from portal.auth.guards import requires
from portal.errors import user_message
from portal.extensions import db
from portal.models import CollectionAction, HomeVisit
from portal.services import collector
from portal.services import contact as contact_service
from portal.staff import _revealed, bp
from workflows import visits
from workflows.access import Permission
from workflows.errors import DomainError
from workflows.policy import Stage

OUTCOMES = {
    "reached": _l("Reached the borrower"),
    "promise_to_pay": _l("Promise to pay"),
    "refused": _l("Refused to pay"),
    "wrong_number": _l("Wrong number"),
    "no_answer": _l("No answer"),
    "third_party": _l("Spoke to a third party"),
    "callback_requested": _l("Asked to be called back"),
    "dispute_raised": _l("Disputes the debt"),
    "hardship_referred": _l("Referred to hardship help"),
    "sent": _l("Sent"),
}
AGREEMENT_OUTCOMES = {
    "promise_to_pay": _l("Promise to pay"),
    "plan_requested": _l("Asked for a repayment plan"),
    "hardship_referred": _l("Referred to hardship help"),
    "no_agreement": _l("No agreement"),
}
PARTIES = {
    "borrower": _l("The borrower"),
    "related_third_party": _l("A relative or named contact"),
    "unrelated_third_party": _l("Someone else"),
}
CHANNELS = {
    "call": _l("Call"),
    "sms": _l("SMS"),
    "email": _l("E-mail"),
    "letter": _l("Letter"),
    "app": _l("App"),
    "home_visit": _l("Home visit"),
}
KINDS = {
    "call_task": _l("Call tasks"),
    "home_visit_proposal": _l("Visit proposals"),
    "legal_review": _l("Legal reviews"),
}
KIND = {
    "call_task": _l("Call task"),
    "home_visit_proposal": _l("Visit proposal"),
    "legal_review": _l("Legal review"),
}
VISIT_STATUSES = {
    "notify": _l("Notify the borrower"),
    "evaluate": _l("Evaluate"),
    "dispatch": _l("Dispatch"),
    "meet": _l("Meet"),
    "agreement": _l("Agreement"),
    "closed": _l("Closed"),
    "cancelled": _l("Cancelled"),
}
VISIT_BUTTONS = {
    "notify": _l("The borrower was notified"),
    "evaluate": _l("Evaluated: the visit goes ahead"),
    "dispatch": _l("Dispatch the collectors"),
    "meet": _l("Record the meeting"),
    "agreement": _l("Record the agreement and close"),
}
STATUSES = {
    "pending": _l("Waiting"),
    "approved": _l("Approved"),
    "rejected": _l("Rejected"),
    "open": _l("Open"),
    "kept": _l("Kept"),
    "broken": _l("Broken"),
    "cancelled": _l("Cancelled"),
    "done": _l("Done"),
    "sent": _l("Sent"),
    "blocked": _l("Blocked"),
}


def _label(table: dict[str, Any], code: str | None) -> str:
    return str(table.get(code or "", code or "—"))


def _moment(value: dt.datetime | None, zone: ZoneInfo) -> str:
    """A moment in a time zone, in the staff member's language, with the zone named."""
    if value is None:
        return "—"
    return f"{format_datetime(value, 'medium', tzinfo=zone, locale=get_locale())} ({zone.key})"


def _common() -> dict[str, Any]:
    return {
        "outcome_label": lambda c: _label(OUTCOMES | AGREEMENT_OUTCOMES, c),
        "party_label": lambda c: _label(PARTIES, c),
        "channel_label": lambda c: _label(CHANNELS, c),
        "visit_status_label": lambda c: _label(VISIT_STATUSES, c),
        "collection_status_label": lambda c: _label(STATUSES, c),
        "kind_label": lambda c: _label(KIND, c),
        "form": FlaskForm(),
    }


def _run(action: Callable[[], Any], success: str) -> bool:
    """Run one service call: a refusal is flashed and changes nothing."""
    if not FlaskForm().validate_on_submit():
        abort(400)
    try:
        action()
    except contact_service.ContactRefusedError as exc:
        db.session.rollback()
        flash(_("The contact rules do not allow this now. Nothing was recorded."), "error")
        for message in contact_service.refusal_messages(exc.decision):
            flash(message, "error")
        return False
    except DomainError as exc:
        db.session.rollback()
        if exc.code in {"action_unknown", "account_unknown", "visit_unknown", "referral_unknown"}:
            abort(404)
        flash(user_message(exc), "error")
        return False
    except StaleDataError:
        db.session.rollback()
        flash(_("This changed while you were looking at it. Reload it."), "error")
        return False
    flash(success, "success")
    return True


def _form_id(name: str) -> int | None:
    value = request.form.get(name, "")
    return int(value) if value.isdigit() and len(value) < 19 else None


# --- Work lists -----------------------------------------------------------------------------------


def _filters() -> collector.WorkFilters:
    args = request.args
    stage = args.get("stage") or None
    view, kind = args.get("view", ""), args.get("kind", "")
    return collector.WorkFilters(
        view=view if view in collector.VIEWS else "waiting",
        kind=kind if kind in collector.WORK_KINDS else "call_task",
        stage=stage if stage in {s.value for s in Stage} else None,
    )


@bp.get("/collections")
@requires(Permission.WORK_COLLECTIONS)
def collections() -> Any:
    filters = _filters()
    page = collector.work_list(
        db.session, current_user, filters, cursor=collector.parse_cursor(request.args.get("after"))
    )
    return render_template(
        "staff/collections/work_list.html",
        page=page,
        filters=filters,
        tabs=collector.view_counts(db.session, current_user, filters.kind),
        stage_options=[(s.value, labels.stage_label(s.value)) for s in Stage],
        kinds=KINDS,
        **_common(),
    )


@bp.post("/collections/claim-next")
@requires(Permission.WORK_COLLECTIONS)
def collections_claim_next() -> Any:
    if not FlaskForm().validate_on_submit():
        abort(400)
    stage = request.form.get("stage") or None
    claimed = collector.claim_next(
        db.session, current_user, stage=stage if stage in {s.value for s in Stage} else None
    )
    if claimed is None:
        flash(_("No call task is waiting."), "info")
        return redirect(url_for("staff.collections"))
    return redirect(url_for("staff.collection_action", action_id=claimed.id))


# --- The call screen ------------------------------------------------------------------------------


def _call_screen(account_id: int, action: CollectionAction | None) -> Any:
    account = collector.get_account(db.session, account_id)
    if account is None:
        abort(404)
    screen = collector.call_screen(db.session, account)
    borrower_today = screen.now.astimezone(screen.borrower_zone).date()
    visit_names = collector.staff_names(
        db.session, sorted({i for v in screen.visits for i in v.collector_ids})
    )
    return render_template(
        "staff/collections/call.html",
        screen=screen,
        account=account,
        borrower=account.borrower,
        action=action,
        action_open=action is not None and action.status == "pending",
        mine=action is not None and action.assigned_to_id == current_user.id,
        revealed=_revealed(account.borrower_id),
        may_reveal=current_user.can(Permission.REVEAL_PERSONAL_DATA),
        refusals=contact_service.refusal_messages(screen.decision),
        next_borrower=_moment(screen.counter.next_allowed_utc, screen.borrower_zone),
        next_collector=_moment(screen.counter.next_allowed_utc, collector.COLLECTOR_TZ),
        now_borrower=_moment(screen.now, screen.borrower_zone),
        now_collector=_moment(screen.now, collector.COLLECTOR_TZ),
        promise_min=borrower_today.isoformat(),
        promise_max=(borrower_today + dt.timedelta(days=collector.PROMISE_MAX_DAYS)).isoformat(),
        call_outcomes=[(c, OUTCOMES[c]) for c in collector.CALL_OUTCOMES],
        parties=[(p.value, PARTIES[p.value]) for p in collector.CALL_PARTIES],
        visit_names=visit_names,
        open_visit=next((v for v in screen.visits if v.status in collector.OPEN_VISIT), None),
        pending_referral=next((r for r in screen.referrals if r.status == "pending"), None),
        **_common(),
    )


@bp.get("/collections/actions/<bigint:action_id>")
@requires(Permission.WORK_COLLECTIONS)
def collection_action(action_id: int) -> Any:
    action = collector.action_detail(db.session, action_id)
    if action is None:
        abort(404)
    return _call_screen(action.account_id, action)


@bp.get("/collections/accounts/<int:account_id>")
@requires(Permission.WORK_COLLECTIONS)
def collection_account(account_id: int) -> Any:
    return _call_screen(account_id, None)


def _back(account_id: int, action_id: int | None) -> Any:
    if action_id is not None:
        return redirect(url_for("staff.collection_action", action_id=action_id))
    return redirect(url_for("staff.collection_account", account_id=account_id))


def _action_back(action_id: int) -> Any:
    return redirect(url_for("staff.collection_action", action_id=action_id))


@bp.post("/collections/actions/<bigint:action_id>/claim")
@requires(Permission.WORK_COLLECTIONS)
def collection_action_claim(action_id: int) -> Any:
    _run(lambda: collector.claim(db.session, current_user, action_id), _("The task is yours."))
    return _action_back(action_id)


@bp.post("/collections/actions/<bigint:action_id>/release")
@requires(Permission.WORK_COLLECTIONS)
def collection_action_release(action_id: int) -> Any:
    _run(lambda: collector.release(db.session, current_user, action_id), _("The task is back on the list."))
    return _action_back(action_id)


@bp.post("/collections/actions/<bigint:action_id>/complete")
@requires(Permission.WORK_COLLECTIONS)
def collection_action_complete(action_id: int) -> Any:
    _run(lambda: collector.complete(db.session, current_user, action_id), _("The task is done."))
    return _action_back(action_id)


@bp.post("/collections/accounts/<int:account_id>/calls")
@requires(Permission.WORK_COLLECTIONS)
def collection_log_call(account_id: int) -> Any:
    action_id = _form_id("action_id")
    outcome = request.form.get("outcome", "")
    promise = collector.PromiseInput(
        request.form.get("promise_amount", ""), request.form.get("promise_due_on", "")
    )
    _run(
        lambda: collector.log_call(
            db.session,
            current_user,
            account_id,
            outcome=outcome,
            party=request.form.get("party", "borrower"),
            notes=request.form.get("notes"),
            action_id=action_id,
            promise=promise,
            complete_action=request.form.get("complete") == "1",
        ),
        _("The promise to pay was recorded with the call.")
        if outcome == "promise_to_pay"
        else _("The call was recorded."),
    )
    return _back(account_id, action_id)


# --- Home visits ----------------------------------------------------------------------------------


@bp.post("/collections/accounts/<int:account_id>/visits")
@requires(Permission.WORK_COLLECTIONS)
def collection_visit_propose(account_id: int) -> Any:
    action_id = _form_id("action_id")
    made: list[HomeVisit] = []
    ok = _run(
        lambda: made.append(
            collector.propose_visit(
                db.session, current_user, account_id, action_id=action_id, notes=request.form.get("notes")
            )
        ),
        _("The home visit is planned. Next: notify the borrower."),
    )
    if ok and made:
        return redirect(url_for("staff.collection_visit", visit_id=made[0].id))
    return _back(account_id, action_id)


@bp.get("/collections/visits")
@requires(Permission.WORK_COLLECTIONS)
def collection_visits() -> Any:
    return render_template(
        "staff/collections/visits.html", visits=collector.open_visits(db.session), **_common()
    )


@bp.get("/collections/visits/<int:visit_id>")
@requires(Permission.WORK_COLLECTIONS)
def collection_visit(visit_id: int) -> Any:
    visit = collector.visit_detail(db.session, visit_id)
    if visit is None:
        abort(404)
    account = collector.get_account(db.session, visit.account_id)
    return render_template(
        "staff/collections/visit.html",
        visit=visit,
        account=account,
        steps=visits.VISIT_STEPS,
        step_labels=VISIT_STATUSES,
        buttons=VISIT_BUTTONS,
        collectors=collector.collectors(db.session),
        names=collector.staff_names(db.session, list(visit.collector_ids or [])),
        visit_outcomes=[(c, OUTCOMES[c]) for c in collector.VISIT_OUTCOMES],
        agreement_outcomes=list(AGREEMENT_OUTCOMES.items()),
        **_common(),
    )


def _planned_for() -> dt.datetime | None:
    """The visit's time as typed (the collector's own clock), in UTC."""
    text = (request.form.get("planned_for") or "").strip()
    if not text:
        return None
    try:
        local = dt.datetime.fromisoformat(text[:32])
    except ValueError:
        raise DomainError("visit_time_invalid", "Enter the visit's date and time.") from None
    if local.tzinfo is None:
        local = local.replace(tzinfo=collector.COLLECTOR_TZ)
    return local.astimezone(dt.UTC)


@bp.post("/collections/visits/<int:visit_id>/advance")
@requires(Permission.WORK_COLLECTIONS)
def collection_visit_advance(visit_id: int) -> Any:
    def advance() -> Any:
        step = collector.VisitStep(
            step=request.form.get("step", ""),
            collector_ids=[int(v) for v in request.form.getlist("collectors") if v.isdigit() and len(v) < 19],
            planned_for=_planned_for(),
            identified=request.form.get("identified") == "1",
            outcome=request.form.get("outcome") or None,
            notes=request.form.get("notes"),
        )
        return collector.advance_visit(
            db.session, current_user, visit_id, version=request.form.get("version", type=int), step=step
        )

    _run(advance, _("The step was recorded."))
    return redirect(url_for("staff.collection_visit", visit_id=visit_id))


@bp.post("/collections/visits/<int:visit_id>/cancel")
@requires(Permission.WORK_COLLECTIONS)
def collection_visit_cancel(visit_id: int) -> Any:
    _run(
        lambda: collector.cancel_visit(
            db.session,
            current_user,
            visit_id,
            version=request.form.get("version", type=int),
            notes=request.form.get("notes"),
        ),
        _("The home visit was cancelled."),
    )
    return redirect(url_for("staff.collection_visit", visit_id=visit_id))


# --- Legal referrals ------------------------------------------------------------------------------


@bp.post("/collections/accounts/<int:account_id>/referrals")
@requires(Permission.WORK_COLLECTIONS)
def collection_referral_request(account_id: int) -> Any:
    action_id = _form_id("action_id")
    _run(
        lambda: collector.request_referral(
            db.session, current_user, account_id, reason=request.form.get("reason"), action_id=action_id
        ),
        _("The referral was sent to a supervisor."),
    )
    return _back(account_id, action_id)


@bp.get("/collections/referrals")
@requires(Permission.SUPERVISE_COLLECTIONS)
def collection_referrals() -> Any:
    rows = collector.referral_queue(db.session)
    ids = sorted({i for r, _a in rows for i in (r.requested_by_id, r.decided_by_id) if i})
    return render_template(
        "staff/collections/referrals.html",
        rows=rows,
        names=collector.staff_names(db.session, ids),
        **_common(),
    )


def _decide_referral(referral_id: int, *, approve: bool) -> Any:
    _run(
        lambda: collector.decide_referral(
            db.session,
            current_user,
            referral_id,
            version=request.form.get("version", type=int),
            approve=approve,
            note=request.form.get("note"),
        ),
        _("The referral was approved: the account is now in the legal stage.")
        if approve
        else _("The referral was rejected."),
    )
    return redirect(url_for("staff.collection_referrals"))


@bp.post("/collections/referrals/<int:referral_id>/approve")
@requires(Permission.SUPERVISE_COLLECTIONS)
def collection_referral_approve(referral_id: int) -> Any:
    return _decide_referral(referral_id, approve=True)


@bp.post("/collections/referrals/<int:referral_id>/reject")
@requires(Permission.SUPERVISE_COLLECTIONS)
def collection_referral_reject(referral_id: int) -> Any:
    return _decide_referral(referral_id, approve=False)
