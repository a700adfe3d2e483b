""" "I need help": the hardship statement step by step, evidence, offers, a proposal, the status.

Views stay thin: parse the form, call one service in portal.services.hardship, render or
redirect. Every case and file is looked up through the signed-in borrower, so another
borrower's id is a 404.
"""

from __future__ import annotations

import io
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from portal import labels
from portal.borrower import borrower_required, bp
from portal.borrower.forms import EvidenceForm, HouseholdForm, ProposalForm, ReasonForm
from portal.db import row_id
from portal.errors import user_message
from portal.extensions import db
from portal.integrations.storage import storage_from_config
from portal.models import HardshipCase
from portal.services import agreements as agreements_service
from portal.services import borrower_portal
from portal.services import hardship as service
from portal.services import policy as policy_service
from workflows import affordability
from workflows.affordability import BudgetCategory, Frequency
from workflows.errors import DomainError
from workflows.money import parse_amount, plain_amount
from workflows.negotiation import CaseState

BUDGET_STEPS = tuple(service.STEP_SECTIONS)


def _case(case_id: int) -> HardshipCase:
    case = service.case_for(db.session, current_user, case_id)
    if case is None:
        abort(404)
    return case


def _step_url(case: HardshipCase, step: str) -> str:
    if step in ("evidence", "review"):
        return url_for(f"borrower.hardship_{step}", case_id=case.id)
    return url_for("borrower.hardship_step", case_id=case.id, step=step)


def _to_status(case: HardshipCase) -> Any:
    return redirect(url_for("borrower.hardship_case", case_id=case.id))


def _guard_step(case: HardshipCase, step: str) -> Any | None:
    """Where to send the borrower instead of this step, if anywhere."""
    if case.state != CaseState.DRAFT.value:
        flash(_("This request has been sent and can no longer be changed."), "info")
        return _to_status(case)
    if not service.reachable(case, step):
        flash(_("Please complete this step first."), "info")
        return redirect(_step_url(case, service.next_step(case)))
    return None


def _after_save(case: HardshipCase, step: str) -> Any:
    following = service.STEPS[service.STEPS.index(step) + 1]
    return redirect(_step_url(case, following))


def _render_step(case: HardshipCase, step: str, status: int = 200, **context: Any) -> Any:
    return (
        render_template(
            f"borrower/hardship/{step}.html",
            case=case,
            step=step,
            steps=service.STEPS,
            step_number=service.STEPS.index(step) + 1,
            **context,
        ),
        status,
    )


@bp.get("/help")
@borrower_required
def hardship_start_page() -> Any:
    accounts = borrower_portal.overview(db.session, current_user)
    cases = service.cases_of(db.session, current_user)
    return render_template("borrower/hardship/start.html", accounts=accounts, cases=cases)


@bp.post("/help/start")
@borrower_required
def hardship_begin() -> Any:
    form = FlaskForm()
    account_id = request.form.get("account_id", type=row_id)
    if not form.validate_on_submit() or account_id is None:
        abort(400)
    try:
        case = service.start(db.session, current_user, account_id)
    except DomainError:
        abort(404)
    if case.state != CaseState.DRAFT.value:
        return _to_status(case)
    return redirect(_step_url(case, service.next_step(case)))


# --- The steps ----------------------------------------------------------------------------------


def _budget_form_class(categories: list[BudgetCategory]) -> type[FlaskForm]:
    fields: dict[str, Any] = {}
    for category in categories:
        fields[f"amount_{category.value}"] = StringField(
            labels.budget_category_label(category.value),
            validators=[Optional(), Length(max=40)],
            description=labels.budget_category_hint(category.value),
            render_kw={"inputmode": "decimal", "autocomplete": "off"},
        )
        fields[f"frequency_{category.value}"] = SelectField(
            _("How often"),
            choices=[SelectChoice(code, label) for code, label in labels.FREQUENCIES.items()],
            default=Frequency.MONTHLY.value,
        )
    return type("BudgetForm", (FlaskForm,), fields)


def _step_categories(step: str) -> list[BudgetCategory]:
    return [c for c in BudgetCategory if affordability.SECTION_OF[c] in service.STEP_SECTIONS[step]]


def _budget_step(case: HardshipCase, step: str) -> Any:
    categories = _step_categories(step)
    form = _budget_form_class(categories)()
    existing = {line.category: line for line in case.budget_lines}
    if request.method == "GET":
        for category in categories:
            line = existing.get(category.value)
            if line is not None:
                getattr(form, f"amount_{category.value}").data = plain_amount(
                    line.amount, case.account.currency
                )
                getattr(form, f"frequency_{category.value}").data = line.frequency
    if form.validate_on_submit():
        lines: dict[BudgetCategory, service.LineInput] = {}
        for category in categories:
            amount_field = getattr(form, f"amount_{category.value}")
            text = (amount_field.data or "").strip()
            if not text:
                continue
            try:
                amount = parse_amount(text, case.account.currency)
                frequency = Frequency(getattr(form, f"frequency_{category.value}").data)
            except DomainError as exc:
                amount_field.errors = [*amount_field.errors, user_message(exc)]
            except ValueError:
                amount_field.errors = [*amount_field.errors, _("Choose how often.")]
            else:
                lines[category] = service.LineInput(amount, frequency)
        if not any(getattr(form, f"amount_{c.value}").errors for c in categories):
            try:
                service.save_budget(
                    db.session,
                    current_user,
                    case.id,
                    step,
                    lines,
                    today=borrower_portal.borrower_today(current_user),
                )
            except DomainError as exc:
                db.session.rollback()
                _attach_error(form, exc)
            else:
                return _after_save(case, step)
    status = 422 if request.method == "POST" else 200
    return _render_step(case, step, status, form=form, categories=categories)


def _attach_error(form: FlaskForm, exc: DomainError) -> None:
    """A refusal about one line goes next to that line; anything else above the form."""
    category = exc.params.get("category")
    target = getattr(form, f"amount_{category}", None) if category else None
    if target is not None:
        target.errors = [*target.errors, user_message(exc)]
    else:
        flash(user_message(exc), "error")


@bp.route(
    "/help/<int:case_id>/<any(reason, household, income, spending, debts):step>", methods=["GET", "POST"]
)
@borrower_required
def hardship_step(case_id: int, step: str) -> Any:
    case = _case(case_id)
    redirect_to = _guard_step(case, step)
    if redirect_to is not None:
        return redirect_to
    if step in BUDGET_STEPS:
        return _budget_step(case, step)
    try:
        if step == "reason":
            form: FlaskForm = ReasonForm(obj=case)
            if form.validate_on_submit():
                service.save_reason(
                    db.session,
                    current_user,
                    case.id,
                    reason=form.reason.data,
                    description=form.description.data,
                )
                return _after_save(case, step)
        else:
            form = HouseholdForm(obj=case)
            if form.validate_on_submit():
                service.save_household(
                    db.session,
                    current_user,
                    case.id,
                    adults=form.adults.data,
                    children=form.children.data,
                    dependants=form.dependants.data,
                    employment_status=form.employment_status.data,
                )
                return _after_save(case, step)
    except DomainError as exc:
        db.session.rollback()
        flash(user_message(exc), "error")
    return _render_step(case, step, 422 if request.method == "POST" else 200, form=form)


# --- Evidence -----------------------------------------------------------------------------------


@bp.route("/help/<int:case_id>/evidence", methods=["GET", "POST"])
@borrower_required
def hardship_evidence(case_id: int) -> Any:
    case = _case(case_id)
    redirect_to = _guard_step(case, "evidence")
    if redirect_to is not None:
        return redirect_to
    form = EvidenceForm()
    status = 200
    if request.method == "POST" and form.validate_on_submit():
        if request.form.get("action") == "continue":
            service.finish_evidence_step(db.session, current_user, case.id)
            return _after_save(case, "evidence")
        upload = form.file.data
        if upload is None or not getattr(upload, "filename", ""):
            form.file.errors = [_("Choose a file to add.")]
            status = 422
        else:
            try:
                service.add_evidence(
                    db.session,
                    current_user,
                    case.id,
                    filename=upload.filename,
                    data=upload.read(),
                    storage=storage_from_config(current_app.config),
                )
            except DomainError as exc:
                form.file.errors = [user_message(exc)]
                status = 422
            else:
                flash(_("The file was added."), "info")
                return redirect(url_for("borrower.hardship_evidence", case_id=case.id))
    elif request.method == "POST":
        status = 422
    files = [f for f in case.evidence_files if f.removed_at is None]
    return _render_step(case, "evidence", status, form=form, files=files)


@bp.post("/help/<int:case_id>/evidence/<int:file_id>/remove")
@borrower_required
def hardship_evidence_remove(case_id: int, file_id: int) -> Any:
    case = _case(case_id)
    if (
        service.evidence_for(db.session, current_user, case.id, file_id) is None
        or not FlaskForm().validate_on_submit()
    ):
        abort(404)
    try:
        service.remove_evidence(db.session, current_user, case.id, file_id)
    except DomainError as exc:
        db.session.rollback()
        flash(user_message(exc), "error")
    else:
        flash(_("The file was removed."), "info")
    return redirect(url_for("borrower.hardship_evidence", case_id=case.id))


@bp.get("/help/<int:case_id>/evidence/<int:file_id>")
@borrower_required
def hardship_evidence_download(case_id: int, file_id: int) -> Any:
    evidence = service.evidence_for(db.session, current_user, case_id, file_id)
    if evidence is None:
        abort(404)
    data = storage_from_config(current_app.config).open(evidence.storage_key)
    response = send_file(
        io.BytesIO(data),
        mimetype=evidence.content_type,
        as_attachment=True,
        download_name=evidence.display_name,
        max_age=0,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# --- Review and submit --------------------------------------------------------------------------


@bp.route("/help/<int:case_id>/review", methods=["GET", "POST"])
@borrower_required
def hardship_review(case_id: int) -> Any:
    case = _case(case_id)
    redirect_to = _guard_step(case, "review")
    if redirect_to is not None:
        return redirect_to
    policy = policy_service.current(db.session, borrower_portal.borrower_today(current_user))
    result = service.assessment(case, policy)
    above = [check for check in result.checks if check.above_reference]
    form_class = type(
        "ExplanationForm",
        (FlaskForm,),
        {
            f"explain_{check.category.value}": TextAreaField(
                labels.budget_category_label(check.category.value),
                validators=[Length(max=500)],
                render_kw={"rows": 3, "maxlength": 500},
            )
            for check in above
        },
    )
    form = form_class()
    if request.method == "GET":
        explanations = {line.category: line.explanation for line in case.budget_lines}
        for check in above:
            getattr(form, f"explain_{check.category.value}").data = explanations.get(check.category.value)
    status = 200
    if form.validate_on_submit():
        try:
            if above:
                service.save_explanations(
                    db.session,
                    current_user,
                    case.id,
                    {c.category: getattr(form, f"explain_{c.category.value}").data or "" for c in above},
                )
            service.submit(db.session, current_user, case.id)
        except DomainError as exc:
            db.session.rollback()
            flash(user_message(exc), "error")
            status = 422
            case = _case(case_id)
            result = service.assessment(case, policy)
        else:
            return _to_status(case)
    elif request.method == "POST":
        status = 422
    return _render_step(
        case,
        "review",
        status,
        form=form,
        result=result,
        above=above,
        breathing_space_rules=policy.hardship,
        files_count=sum(1 for f in case.evidence_files if f.removed_at is None),
        step_categories={step: _step_categories(step) for step in BUDGET_STEPS},
    )


# --- After sending: status, offers, proposal, withdrawal ---------------------------------------


@bp.get("/help/<int:case_id>")
@borrower_required
def hardship_case(case_id: int, answer_error: str | None = None) -> Any:
    case = _case(case_id)
    if case.state == CaseState.DRAFT.value:
        return redirect(_step_url(case, service.next_step(case)))
    today = borrower_portal.borrower_today(current_user)
    timeline = borrower_portal.summary(db.session, current_user, case.account).timeline
    return render_template(
        "borrower/hardship/status.html",
        stopped=[c for c in timeline if c.stopped_by_plan],
        case=case,
        offers=service.open_offers(case)
        if case.state in (CaseState.OFFERED.value, CaseState.COUNTERED.value)
        else [],
        messages=case.messages,
        agreement=agreements_service.latest_for_case(db.session, case.id),
        answer_error=answer_error,
        proposal=next((o for o in reversed(case.offers) if o.origin == "borrower"), None),
        accepted=next((o for o in case.offers if o.status == "accepted"), None),
        pause=service.active_pause(db.session, case.account_id, today),
        deadline=service.offer_deadline(case),
        form=FlaskForm(),
    )


@bp.post("/help/<int:case_id>/offers/<int:offer_id>/accept")
@borrower_required
def hardship_accept(case_id: int, offer_id: int) -> Any:
    case = _case(case_id)
    if not FlaskForm().validate_on_submit():
        abort(400)
    try:
        service.accept(db.session, current_user, case.id, offer_id)
    except DomainError as exc:
        db.session.rollback()
        if exc.code == "offer_unknown":
            abort(404)
        flash(user_message(exc), "error")
    else:
        flash(_("You accepted the offer. We are preparing your agreement."), "info")
    return _to_status(case)


@bp.route("/help/<int:case_id>/propose", methods=["GET", "POST"])
@borrower_required
def hardship_propose(case_id: int) -> Any:
    case = _case(case_id)
    if case.state != CaseState.OFFERED.value:
        return _to_status(case)
    form = ProposalForm()
    valid = form.validate_on_submit()
    amount = None
    if request.method == "POST" and form.monthly_amount.data:
        # Parsed whatever the other field says, so every mistake is named at once.
        try:
            amount = parse_amount(form.monthly_amount.data, case.account.currency)
        except DomainError as exc:
            form.monthly_amount.errors = [*form.monthly_amount.errors, user_message(exc)]
    if valid and amount is not None:
        try:
            service.propose(db.session, current_user, case.id, monthly_amount=amount, count=form.count.data)
        except DomainError as exc:
            db.session.rollback()
            form.monthly_amount.errors = [*form.monthly_amount.errors, user_message(exc)]
        else:
            flash(_("Your proposal was sent to our negotiation team."), "info")
            return _to_status(case)
    return render_template(
        "borrower/hardship/propose.html", case=case, form=form
    ), 422 if request.method == "POST" else 200


@bp.post("/help/<int:case_id>/withdraw")
@borrower_required
def hardship_withdraw(case_id: int) -> Any:
    case = _case(case_id)
    if not FlaskForm().validate_on_submit():
        abort(400)
    try:
        service.withdraw(db.session, current_user, case.id)
    except DomainError as exc:
        db.session.rollback()
        flash(user_message(exc), "error")
    else:
        flash(_("Your request was withdrawn."), "info")
    return _to_status(case)


@bp.post("/help/<int:case_id>/decline")
@borrower_required
def hardship_decline(case_id: int) -> Any:
    case = _case(case_id)
    if not FlaskForm().validate_on_submit():
        abort(400)
    try:
        service.decline_counter(db.session, current_user, case.id)
    except DomainError as exc:
        db.session.rollback()
        flash(user_message(exc), "error")
    else:
        flash(_("You declined the offer. Our negotiation team will look at your request again."), "info")
    return _to_status(case)


@bp.post("/help/<int:case_id>/respond")
@borrower_required
def hardship_respond(case_id: int) -> Any:
    """The borrower answers a request for information, with a document if they have one: the
    document is checked first, so a refused file leaves the answer unsent and nothing changed."""
    case = _case(case_id)
    if not FlaskForm().validate_on_submit():
        abort(400)
    upload = request.files.get("file")
    try:
        service.respond(
            db.session,
            current_user,
            case.id,
            request.form.get("answer", ""),
            upload=service.Upload(upload.filename, upload.read())
            if upload is not None and upload.filename
            else None,
            storage=storage_from_config(current_app.config),
        )
    except DomainError as exc:
        db.session.rollback()
        return hardship_case(case.id, answer_error=user_message(exc)), 422
    flash(_("Your answer was sent to our negotiation team."), "info")
    return _to_status(case)
