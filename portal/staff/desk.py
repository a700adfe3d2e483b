"""The negotiation desk for staff: the queue, a case on one screen, and the decisions on it.

Views parse the form, call one service in portal.services.negotiation_desk and redirect back to
the case; a refusal is flashed in the staff member's language and changes nothing.
"""

from __future__ import annotations

import io
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm.exc import StaleDataError

from portal import labels
from portal.auth.guards import requires
from portal.db import row_id
from portal.errors import user_message
from portal.extensions import db
from portal.integrations.storage import storage_from_config
from portal.models import EvidenceFile, HardshipCase
from portal.models.hardship import DECISION_REASONS
from portal.services import borrower_portal
from portal.services import hardship as hardship_service
from portal.services import negotiation_desk as desk
from portal.services import policy as policy_service
from portal.staff import bp
from portal.tasks import send_message
from workflows import affordability, authority, offers
from workflows.access import Permission
from workflows.errors import DomainError
from workflows.money import parse_amount, parse_rate_bp
from workflows.policy import Stage


def _filters() -> desk.QueueFilters:
    args = request.args
    vulnerable = {"1": True, "0": False}.get(args.get("vulnerable", ""))
    return desk.QueueFilters(
        view=args.get("view", "waiting")
        if args.get("view") in {"waiting", "mine", "second_approval", "all"}
        else "waiting",
        stage=args.get("stage") or None,
        band=args.get("band", type=int),
        relief=args.get("relief") or None,
        age=args.get("age") if args.get("age") in desk.AGE_BUCKETS else None,
        sla=args.get("sla") if args.get("sla") in {s.value for s in authority.SlaStatus} else None,
        assignee=args.get("assignee", type=row_id),
        vulnerable=vulnerable,
    )


@bp.get("/cases")
@requires(Permission.WORK_CASES)
def cases() -> Any:
    filters = _filters()
    page = desk.queue(db.session, current_user, filters, cursor=desk.parse_cursor(request.args.get("after")))
    return render_template(
        "staff/cases.html",
        page=page,
        filters=filters,
        tabs=desk.view_counts(db.session, current_user),
        staff=desk.desk_staff(db.session),
        **_filter_options(),
    )


def _filter_options() -> dict[str, list[tuple[str, str]]]:
    policy = policy_service.current(db.session, desk.desk_today())
    return {
        "stage_options": [(stage.value, labels.stage_label(stage.value)) for stage in Stage],
        "band_options": [(str(n), text) for n, text in enumerate(labels.amount_bands(policy))],
        "relief_options": [(code, str(text)) for code, text in labels.RELIEF_TYPES.items()],
        "sla_options": [(s.value, labels.sla_label(s.value)) for s in authority.SlaStatus],
    }


@bp.post("/cases/claim-next")
@requires(Permission.WORK_CASES)
def claim_next() -> Any:
    if not FlaskForm().validate_on_submit():
        abort(400)
    claimed = desk.claim_next(db.session, current_user)
    if claimed is None:
        flash(_("No case is waiting."), "info")
        return redirect(url_for("staff.cases"))
    return redirect(url_for("staff.case", case_id=claimed.id))


def _case_or_404(case_id: int) -> HardshipCase:
    found = desk.case_detail(db.session, case_id)
    if found is None:
        abort(404)
    return found


@bp.get("/cases/<int:case_id>")
@requires(Permission.WORK_CASES)
def case(case_id: int) -> Any:
    case_row = _case_or_404(case_id)
    account = case_row.account
    today = desk.desk_today()
    policy = policy_service.current(db.session, today)
    assessment = hardship_service.assessment(case_row, policy) if case_row.budget_lines else None
    proposal = next((o for o in reversed(case_row.offers) if o.origin == "borrower"), None)
    problems = desk.authority_for(current_user, proposal, account, policy) if proposal else []
    preview, preview_errors = _counter_preview(case_row, policy)
    return render_template(
        "staff/case.html",
        case=case_row,
        account=account,
        borrower=account.borrower,
        summary=borrower_portal.summary(db.session, account.borrower, account),
        assessment=assessment,
        proposal=proposal,
        concession=desk.concession(proposal, account) if proposal else None,
        authority_problems=problems,
        previous=desk.previous_cases(db.session, case_row),
        pause=desk.active_pause(db.session, case_row),
        staff=desk.desk_staff(db.session),
        reasons=DECISION_REASONS,
        preview=preview,
        preview_errors=preview_errors,
        counter_values=_counter_values(case_row),
        form=FlaskForm(),
        history=desk.history(db.session, case_row),
        mine=case_row.claimed_by_id == current_user.id,
        supervisor=current_user.can(Permission.SUPERVISE_CASES),
        today=today,
        days_waiting=hardship_service.days_waiting(case_row, today),
        sla=authority.sla_status(case_row.review_due_on, today) if case_row.review_due_on else None,
        affordability=affordability,
    )


# --- The counter-offer editor ----------------------------------------------------------------------

COUNTER_FIELDS = (
    "plan",
    "count",
    "holiday_months",
    "rate",
    "waive_fees",
    "waive_interest",
    "waive_principal",
    "settlement_amount",
)


def _counter_values(case_row: HardshipCase) -> dict[str, str]:
    """What the editor shows: what was typed (a preview), else a start from the borrower's proposal."""
    if request.args.get("plan"):
        return {name: request.args.get(name, "") for name in COUNTER_FIELDS}
    proposal = next((o for o in reversed(case_row.offers) if o.origin == "borrower"), None)
    return {
        "plan": "instalments",
        "count": str(proposal.instalment_count if proposal else 12),
        "holiday_months": "0",
        "rate": "0",
        "waive_fees": "",
        "waive_interest": "",
        "waive_principal": "",
        "settlement_amount": "",
    }


def _counter_terms(values: dict[str, str], currency: str) -> offers.CounterTerms:
    def amount(name: str) -> int:
        text = (values.get(name) or "").strip()
        return parse_amount(text, currency) if text else 0

    def whole(name: str, default: int = 0) -> int:
        text = (values.get(name) or "").strip()
        if not text:
            return default
        if not text.isdigit() or len(text) > 4:
            raise DomainError(
                "counter_terms_invalid",
                "These terms cannot be offered on this account: {reason}.",
                reason=name,
            )
        return int(text)

    rate_bp = parse_rate_bp((values.get("rate") or "0").strip() or "0")
    plan = values.get("plan") or "instalments"
    if plan == offers.CounterPlan.SETTLEMENT.value:
        # A settlement stands alone: one payment, nothing else waived, no holiday, no rate.
        return offers.CounterTerms(
            plan=offers.CounterPlan.SETTLEMENT, settlement_amount=amount("settlement_amount")
        )
    return offers.CounterTerms(
        plan=offers.CounterPlan(plan)
        if plan in {p.value for p in offers.CounterPlan}
        else offers.CounterPlan.INSTALMENTS,
        count=whole("count", 1),
        waive_fees=amount("waive_fees"),
        waive_interest=amount("waive_interest"),
        waive_principal=amount("waive_principal"),
        holiday_months=whole("holiday_months"),
        annual_rate_bp=rate_bp,
    )


def _counter_preview(case_row: HardshipCase, policy: Any) -> tuple[Any, list[str]]:
    """The counter-offer the editor's values make, with its concession and the sender's authority."""
    if not request.args.get("plan"):
        return None, []
    try:
        terms = _counter_terms(_counter_values(case_row), case_row.account.currency)
        built = offers.counter_offer(
            hardship_service.position(case_row.account), terms, desk.desk_today(), policy
        )
    except DomainError as exc:
        return None, [user_message(exc)]
    row = hardship_service.offer_row(case_row, built, "agent")
    return {
        "offer": built,
        "concession": desk.concession(row, case_row.account),
        "problems": desk.authority_for(current_user, row, case_row.account, policy),
    }, []


@bp.get("/cases/<int:case_id>/counter-preview")
@requires(Permission.WORK_CASES)
def case_counter_preview(case_id: int) -> Any:
    """The preview alone, for the editor's script to refresh as the agent types."""
    case_row = _case_or_404(case_id)
    policy = policy_service.current(db.session, desk.desk_today())
    preview, preview_errors = _counter_preview(case_row, policy)
    return render_template(
        "staff/_counter_preview.html",
        case=case_row,
        account=case_row.account,
        currency=case_row.account.currency,
        preview=preview,
        preview_errors=preview_errors,
        counter_values=_counter_values(case_row),
        form=FlaskForm(),
    )


# --- Decisions ------------------------------------------------------------------------------------


def _decide(case_id: int, action: Any, success: str) -> Any:
    """Run one decision; its notices go out once it is committed; a refusal changes nothing."""
    if not FlaskForm().validate_on_submit():
        abort(400)
    try:
        outcome = action()
    except DomainError as exc:
        db.session.rollback()
        if exc.code == "case_unknown":
            abort(404)
        flash(user_message(exc), "error")
    except StaleDataError:
        db.session.rollback()
        flash(user_message(DomainError("case_changed", "")), "error")
    else:
        for notice in getattr(outcome, "notices", []) or []:
            send_message(notice.to_dict())
        flash(success, "success")
    return redirect(url_for("staff.case", case_id=case_id))


def _version() -> int | None:
    return request.form.get("version", type=int)


@bp.post("/cases/<int:case_id>/claim")
@requires(Permission.WORK_CASES)
def case_claim(case_id: int) -> Any:
    return _decide(
        case_id,
        lambda: desk.claim(db.session, current_user, case_id, version=_version()),
        _("The case is yours."),
    )


@bp.post("/cases/<int:case_id>/release")
@requires(Permission.WORK_CASES)
def case_release(case_id: int) -> Any:
    return _decide(
        case_id,
        lambda: desk.release(db.session, current_user, case_id, version=_version()),
        _("The case is back in the queue."),
    )


@bp.post("/cases/<int:case_id>/approve")
@requires(Permission.WORK_CASES)
def case_approve(case_id: int) -> Any:
    return _decide(
        case_id,
        lambda: desk.approve(
            db.session, current_user, case_id, version=_version(), note=request.form.get("note")
        ),
        _("Your approval was recorded."),
    )


@bp.post("/cases/<int:case_id>/counter")
@requires(Permission.WORK_CASES)
def case_counter(case_id: int) -> Any:
    case_row = _case_or_404(case_id)
    values = {name: request.form.get(name, "") for name in COUNTER_FIELDS}

    def send() -> Any:
        terms = _counter_terms(values, case_row.account.currency)
        return desk.counter(
            db.session,
            current_user,
            case_id,
            version=_version(),
            terms=terms,
            note=request.form.get("note"),
            message=request.form.get("message"),
        )

    return _decide(case_id, send, _("The counter-offer was sent to the borrower."))


@bp.post("/cases/<int:case_id>/request-info")
@requires(Permission.WORK_CASES)
def case_request_info(case_id: int) -> Any:
    return _decide(
        case_id,
        lambda: desk.request_info(
            db.session,
            current_user,
            case_id,
            version=_version(),
            question=request.form.get("question", ""),
            note=request.form.get("note"),
        ),
        _("Your question was sent to the borrower."),
    )


@bp.post("/cases/<int:case_id>/reject")
@requires(Permission.WORK_CASES)
def case_reject(case_id: int) -> Any:
    return _decide(
        case_id,
        lambda: desk.reject(
            db.session,
            current_user,
            case_id,
            version=_version(),
            reason=request.form.get("reason", ""),
            message=request.form.get("message", ""),
            note=request.form.get("note"),
        ),
        _("The request was rejected and the borrower told."),
    )


@bp.post("/cases/<int:case_id>/notes")
@requires(Permission.WORK_CASES)
def case_note(case_id: int) -> Any:
    return _decide(
        case_id,
        lambda: desk.add_note(db.session, current_user, case_id, request.form.get("body", "")),
        _("Note added."),
    )


@bp.post("/cases/<int:case_id>/vulnerable")
@requires(Permission.WORK_CASES)
def case_vulnerable(case_id: int) -> Any:
    flag = request.form.get("flag") == "1"
    return _decide(
        case_id,
        lambda: desk.set_vulnerable(db.session, current_user, case_id, version=_version(), flag=flag),
        _("Saved."),
    )


@bp.post("/cases/<int:case_id>/reassign")
@requires(Permission.SUPERVISE_CASES)
def case_reassign(case_id: int) -> Any:
    to = request.form.get("to", type=row_id)
    return _decide(
        case_id,
        lambda: desk.reassign(db.session, current_user, case_id, version=_version(), to_staff_id=to or 0),
        _("The case was reassigned."),
    )


@bp.get("/cases/<int:case_id>/evidence/<int:file_id>")
@requires(Permission.WORK_CASES)
def case_evidence(case_id: int, file_id: int) -> Any:
    """Images and PDFs open in the browser for staff (re-encoded images; PDFs checked for active
    content at upload), sandboxed so nothing in them can run with Accord's origin."""
    evidence = db.session.get(EvidenceFile, file_id)
    if evidence is None or evidence.hardship_case_id != case_id or evidence.removed_at is not None:
        abort(404)
    data = storage_from_config(current_app.config).open(evidence.storage_key)
    response = send_file(
        io.BytesIO(data),
        mimetype=evidence.content_type,
        as_attachment=False,
        download_name=evidence.display_name,
        max_age=0,
    )
    response.headers["Content-Security-Policy"] = (
        "sandbox; default-src 'none'; img-src 'self'; plugin-types application/pdf"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
