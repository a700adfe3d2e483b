"""How we may contact the borrower, and disputing a debt.

- Contact preferences: opt out of texts, e-mails, calls or app messages; consent to the wider
  hours the rules allow with consent; ask us to stop contacting them (a confirm step that says
  honestly what it does and does not do), or allow contact again.
- The opt-out link every text and e-mail carries: a public page that says which channel and
  confirms with a button.
- Dispute this debt: reason, description, optional files; withdraw it while it is open.

Views stay thin: parse the form, call one service in portal.services.borrower_contact, render or
redirect. Accounts are looked up through the signed-in borrower, so another borrower's id is a 404.
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import MultipleFileField
from wtforms import RadioField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length

from portal.borrower import borrower_required, bp
from portal.errors import user_message
from portal.extensions import db
from portal.integrations.storage import storage_from_config
from portal.models import Account
from portal.services import borrower_contact as service
from workflows.errors import DomainError

DISPUTE_REASONS = {
    "not_mine": _l("This debt is not mine"),
    "amount_wrong": _l("The amount is wrong"),
    "already_paid": _l("I have already paid it"),
    "fraud": _l("Someone used my identity (fraud)"),
    "other": _l("Something else"),
}
DISPUTE_STATUSES = {
    "open": _l("Open: our team is looking into it"),
    "upheld": _l("Decided in your favour"),
    "rejected": _l("Not upheld"),
    "withdrawn": _l("Withdrawn by you"),
}
CHANNELS = {
    "sms": _l("Text messages"),
    "email": _l("E-mails"),
    "call": _l("Phone calls"),
    "app": _l("Messages in the app"),
}


@bp.app_template_global()
def dispute_reason_label(code: str) -> str:
    return str(DISPUTE_REASONS.get(code, code))


@bp.app_template_global()
def dispute_status_label(code: str) -> str:
    return str(DISPUTE_STATUSES.get(code, code))


class DisputeForm(FlaskForm):
    reason = RadioField(
        _l("Why do you dispute this debt?"),
        choices=[SelectChoice(code, label) for code, label in DISPUTE_REASONS.items()],
        validators=[InputRequired(message=_l("Choose why you dispute this debt."))],
    )
    detail = TextAreaField(
        _l("Tell us what is wrong"),
        validators=[
            DataRequired(message=_l("Tell us why you dispute this debt.")),
            Length(max=service.MAX_DETAIL, message=_l("Please keep it under 2,000 characters.")),
        ],
        description=_l("For example: which amount is wrong and why, or when and how you paid."),
        render_kw={"rows": 6, "maxlength": service.MAX_DETAIL},
    )
    files = MultipleFileField(
        _l("Documents (optional)"),
        description=_l(
            "PDF, JPEG or PNG, up to 10 MB each, at most 5 files: a receipt, a bank statement,"
            " a police report."
        ),
        render_kw={"accept": "application/pdf,image/jpeg,image/png", "multiple": True},
    )


def _checked_form() -> None:
    if not FlaskForm().validate_on_submit():
        abort(400)


def _account(account_id: int) -> Account:
    account = service.account_for(db.session, current_user, account_id)
    if account is None:
        abort(404)
    return account


# --- Contact preferences ------------------------------------------------------------------------


def _preferences_page(error: str | None = None, status: int = 200) -> Any:
    return render_template(
        "borrower/contact/preferences.html",
        prefs=service.preferences(db.session, current_user),
        channels=CHANNELS,
        error=error,
        form=FlaskForm(),
    ), status


@bp.route("/contact-preferences", methods=["GET", "POST"])
@borrower_required
def contact_preferences() -> Any:
    if request.method == "GET":
        return _preferences_page()
    _checked_form()
    try:
        changed = service.save_preferences(
            db.session,
            current_user,
            opted_out=request.form.getlist("opt_out"),
            consent_extended_hours=request.form.get("extended_hours") == "yes",
        )
    except DomainError as exc:
        db.session.rollback()
        return _preferences_page(user_message(exc), 422)
    if changed:
        flash(_("Your contact preferences are saved."), "success")
    else:
        flash(_("Nothing changed: these were already your preferences."), "info")
    return redirect(url_for("borrower.contact_preferences"))


@bp.route("/contact-preferences/stop", methods=["GET", "POST"])
@borrower_required
def contact_cease() -> Any:
    if request.method == "POST":
        _checked_form()
        if request.form.get("confirm") != "yes":
            return render_template(
                "borrower/contact/cease.html",
                prefs=service.preferences(db.session, current_user),
                error=_("Tick the box to confirm that you want us to stop contacting you."),
                form=FlaskForm(),
            ), 422
        service.request_cease(db.session, current_user)
        flash(_("We will stop contacting you about your debts. This was recorded."), "success")
        return redirect(url_for("borrower.contact_preferences"))
    return render_template(
        "borrower/contact/cease.html",
        prefs=service.preferences(db.session, current_user),
        error=None,
        form=FlaskForm(),
    )


@bp.post("/contact-preferences/resume")
@borrower_required
def contact_resume() -> Any:
    _checked_form()
    if service.lift_cease(db.session, current_user):
        flash(_("We may contact you again, within your preferences."), "success")
    return redirect(url_for("borrower.contact_preferences"))


# --- The opt-out link (no sign-in: the signed token says who) -----------------------------------


@bp.route("/opt-out/<token>", methods=["GET", "POST"])
def opt_out(token: str) -> Any:
    secret = str(current_app.config["SECRET_KEY"])
    try:
        link = service.read_opt_out_token(secret, token)
    except DomainError:
        return render_template("borrower/contact/opt_out.html", link=None, done=False, form=None), 404
    done = changed = False
    if request.method == "POST":
        _checked_form()
        try:
            link, changed = service.opt_out_by_link(db.session, secret, token)
        except DomainError:
            return render_template("borrower/contact/opt_out.html", link=None, done=False, form=None), 404
        done = True
    return render_template(
        "borrower/contact/opt_out.html",
        link=link,
        channel=CHANNELS[link.channel],
        done=done,
        changed=changed,
        form=FlaskForm(),
    )


# --- Disputes -----------------------------------------------------------------------------------


def _uploads(form: DisputeForm) -> list[service.Upload]:
    files = [f for f in (form.files.data or []) if f is not None and getattr(f, "filename", "")]
    return [service.Upload(f.filename, f.read()) for f in files]


@bp.route("/accounts/<int:account_id>/dispute", methods=["GET", "POST"])
@borrower_required
def dispute(account_id: int) -> Any:
    account = _account(account_id)
    current = service.latest_dispute(db.session, current_user, account.id)
    form = DisputeForm()
    error, status = None, 200
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                service.open_dispute(
                    db.session,
                    current_user,
                    account.id,
                    reason=form.reason.data,
                    detail=form.detail.data,
                    uploads=_uploads(form),
                    storage=storage_from_config(current_app.config),
                )
            except DomainError as exc:
                db.session.rollback()
                if exc.code == "account_unknown":
                    abort(404)
                error = user_message(exc)
                if exc.code.startswith(("evidence_", "dispute_too_many")):
                    form.files.errors = [error]
                    error = None
            else:
                flash(
                    _("Your dispute is recorded. Collection contact about this account is paused."), "success"
                )
                return redirect(url_for("borrower.account", account_id=account.id))
        status = 422
    return render_template(
        "borrower/contact/dispute.html",
        account=account,
        dispute=current,
        form=form,
        error=error,
        reasons=DISPUTE_REASONS,
        statuses=DISPUTE_STATUSES,
    ), status


@bp.post("/accounts/<int:account_id>/dispute/withdraw")
@borrower_required
def dispute_withdraw(account_id: int) -> Any:
    _checked_form()
    account = _account(account_id)
    try:
        service.withdraw_dispute(db.session, current_user, account.id)
    except DomainError as exc:
        db.session.rollback()
        flash(user_message(exc), "error")
    else:
        flash(_("Your dispute is withdrawn. Collection contact about this account may resume."), "info")
    return redirect(url_for("borrower.account", account_id=account.id))
