"""Administration: staff accounts and their authenticators."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from portal.auth.guards import guard_staff_request, requires
from portal.errors import user_message
from portal.extensions import db
from portal.labels import ROLES
from portal.models import StaffUser
from portal.services import staff as staff_service
from portal.services.audit import Actor
from workflows.access import Permission
from workflows.errors import DomainError

admin_bp = Blueprint("admin", __name__, url_prefix="/admin")
admin_bp.before_request(guard_staff_request)


class StaffForm(FlaskForm):
    email = StringField(_l("E-mail"), validators=[DataRequired(), Length(max=254)])
    full_name = StringField(_l("Full name"), validators=[DataRequired(), Length(max=200)])
    role = SelectField(_l("Role"), choices=[SelectChoice(r.value, label) for r, label in ROLES.items()])
    password = PasswordField(
        _l("Initial password"),
        validators=[DataRequired(), Length(min=staff_service.MIN_PASSWORD_LENGTH, max=256)],
        description=_l("At least 12 characters. The user sets up an authenticator at first sign-in."),
    )


@admin_bp.route("/staff", methods=["GET", "POST"])
@requires(Permission.MANAGE_STAFF)
def staff_list() -> Any:
    form = StaffForm()
    if form.validate_on_submit():
        try:
            user = staff_service.create_staff(
                db.session,
                Actor.staff(current_user),
                email=form.email.data,
                full_name=form.full_name.data,
                role=form.role.data,
                password=form.password.data,
            )
        except DomainError as exc:
            flash(user_message(exc), "error")
        else:
            flash(_("%(name)s can now sign in.", name=user.full_name), "success")
            return redirect(url_for("admin.staff_list"))
    users = db.session.scalars(select(StaffUser).order_by(StaffUser.role, StaffUser.email)).all()
    return render_template("admin/staff.html", form=form, users=users)


@admin_bp.post("/staff/<int:user_id>/reset-totp")
@requires(Permission.MANAGE_STAFF)
def reset_totp(user_id: int) -> Any:
    try:
        user = staff_service.reset_totp(db.session, Actor.staff(current_user), user_id)
    except DomainError:
        abort(404)
    flash(_("%(name)s will set up a new authenticator at the next sign-in.", name=user.full_name), "success")
    return redirect(url_for("admin.staff_list"))


@admin_bp.post("/staff/<int:user_id>/disable")
@requires(Permission.MANAGE_STAFF)
def disable(user_id: int) -> Any:
    return _set_active(user_id, active=False)


@admin_bp.post("/staff/<int:user_id>/enable")
@requires(Permission.MANAGE_STAFF)
def enable(user_id: int) -> Any:
    return _set_active(user_id, active=True)


def _set_active(user_id: int, *, active: bool) -> Any:
    if db.session.get(StaffUser, user_id) is None:
        abort(404)
    try:
        user = staff_service.set_active(db.session, Actor.staff(current_user), user_id, active)
    except DomainError as exc:
        flash(user_message(exc), "error")
    else:
        message = _("%(name)s is enabled.") if active else _("%(name)s is disabled and signed out.")
        flash(message % {"name": user.full_name}, "success")
    return redirect(url_for("admin.staff_list"))


from portal.admin import (  # noqa: E402
    api_tokens,  # noqa: F401
    placements,  # noqa: F401
    retention,  # noqa: F401
    webhooks,  # noqa: F401
)
