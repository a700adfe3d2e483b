"""API tokens: an admin issues a lender's token (shown once, never again), sees every token with its
scopes and use, and revokes one. The rules live in portal.services.api_tokens."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, make_response, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from portal.admin import admin_bp
from portal.auth.guards import requires
from portal.errors import user_message
from portal.extensions import db
from portal.models import ApiToken, Creditor
from portal.models.integration import API_SCOPES
from portal.services import api_tokens as service
from portal.services.audit import Actor
from workflows.access import Permission
from workflows.errors import DomainError

SCOPE_LABELS = {
    "placements:write": _l("Place and recall accounts"),
    "accounts:read": _l("Read the status of accounts"),
    "events:read": _l("Read events (payments, plans, disputes …)"),
}


class ApiTokenForm(FlaskForm):
    creditor_id = SelectField(_l("Lender"), coerce=int, validators=[DataRequired()])
    name = StringField(
        _l("Name"),
        validators=[DataRequired(), Length(max=service.MAX_NAME_LENGTH)],
        description=_l("Which of the lender's systems uses it, e.g. “Core banking, production”."),
    )
    scopes = SelectMultipleField(
        _l("What it may do"),
        choices=[SelectChoice(scope, SCOPE_LABELS[scope]) for scope in API_SCOPES],
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
    )
    expires_in_days = IntegerField(
        _l("Expires after (days)"),
        validators=[Optional(), NumberRange(min=1, max=service.MAX_EXPIRY_DAYS)],
        description=_l("Leave empty for a token that lasts until it is revoked."),
    )


def _form(creditors: dict[int, Creditor], **kwargs: Any) -> ApiTokenForm:
    form = ApiTokenForm(**kwargs)
    form.creditor_id.choices = [
        SelectChoice(row.id, f"{row.name} ({row.code})") for row in creditors.values()
    ]
    return form


def _page(
    form: ApiTokenForm, creditors: dict[int, Creditor], created: tuple[ApiToken, str] | None = None
) -> Any:
    response = make_response(
        render_template(
            "admin/api_tokens.html",
            form=form,
            tokens=service.listing(db.session),
            creditors=creditors,
            scope_labels=SCOPE_LABELS,
            created=created,
        )
    )
    # The page that shows a new token is never kept by the browser or a proxy.
    response.headers["Cache-Control"] = "no-store"
    return response


@admin_bp.route("/api-tokens", methods=["GET", "POST"])
@requires(Permission.MANAGE_INTEGRATION)
def api_tokens() -> Any:
    creditors = service.creditors(db.session)
    form = _form(creditors)
    if form.validate_on_submit():
        try:
            created = service.create(
                db.session,
                Actor.staff(current_user),
                creditor_id=form.creditor_id.data,
                name=form.name.data,
                scopes=form.scopes.data or [],
                expires_in_days=form.expires_in_days.data,
            )
        except DomainError as exc:
            flash(user_message(exc), "error")
        else:
            return _page(_form(creditors, formdata=None), creditors, created)
    return _page(form, creditors)


@admin_bp.post("/api-tokens/<int:token_id>/revoke")
@requires(Permission.MANAGE_INTEGRATION)
def revoke_api_token(token_id: int) -> Any:
    try:
        token = service.revoke(db.session, Actor.staff(current_user), token_id)
    except DomainError:
        abort(404)
    flash(_("The token %(prefix)s is revoked: it no longer works.", prefix=token.prefix), "success")
    return redirect(url_for("admin.api_tokens"))
