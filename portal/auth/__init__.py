"""Sign-in. Staff: e-mail and password, then a TOTP code (enrolling an authenticator the first time)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import segno
from flask import Blueprint, Flask, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import login_user
from markupsafe import Markup
from sqlalchemy.orm import defer

from portal.auth.forms import StaffLoginForm, TotpForm
from portal.auth.guards import end_session
from portal.extensions import db, limiter, login_manager
from portal.models import Borrower, StaffUser
from portal.services import staff as staff_service

bp = Blueprint("auth", __name__, url_prefix="/staff")
PENDING_SECONDS = 300
BORROWER_DEFERRED = (defer(Borrower.date_of_birth), defer(Borrower.national_id))


def _signin_limit() -> str:
    return str(current_app.config["SIGNIN_RATE_LIMIT"])


def _email_key() -> str:
    return "signin:" + request.form.get("email", "").strip().lower()[:254]


def init_login(app: Flask) -> None:
    login_manager.login_view = "auth.staff_login"

    @login_manager.user_loader
    def load_user(user_id: str) -> Any:
        """ "staff:<id>:<session version>" or "borrower:<id>:<session version>": a bumped version
        (sign out everywhere, a disabled user) ends every session that carries the old one."""
        kind, _, rest = user_id.partition(":")
        model = {"staff": StaffUser, "borrower": Borrower}.get(kind)
        raw_id, _, version = rest.partition(":")
        if model is None or not raw_id.isdigit():
            return None
        # A borrower's sealed columns (date of birth, identity number) are read only by the pages
        # that show or check them, not decrypted on every request.
        options = BORROWER_DEFERRED if model is Borrower else ()
        user = db.session.get(model, int(raw_id), options=options)
        if user is None or not user.is_active or str(user.session_version) != version:
            return None
        return user


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("staff.home")


def _pending_user() -> StaffUser | None:
    """The user who passed the password step within the last five minutes, if any."""
    pending = session.get("pending_staff")
    if not pending or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        return None
    user = db.session.get(StaffUser, pending["id"])
    if user is None or not user.is_active or user.session_version != pending["ver"]:
        return None
    return user


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_signin_limit, methods=["POST"])
@limiter.limit("20 per hour", methods=["POST"], key_func=_email_key)
def staff_login() -> Any:
    form = StaffLoginForm()
    if form.validate_on_submit():
        user = staff_service.authenticate_password(db.session, form.email.data, form.password.data)
        if user is None:
            # One message whether the e-mail exists or not.
            flash(_("E-mail or password is not right."), "error")
        else:
            next_url = _safe_next(request.args.get("next"))
            end_session()
            session["pending_staff"] = {"id": user.id, "ver": user.session_version, "at": time.time()}
            session["next"] = next_url
            return redirect(url_for("auth.staff_totp" if user.totp_enrolled else "auth.staff_enrol"))
    elif request.method == "POST":
        flash(_("Enter your e-mail and password."), "error")
    return render_template("auth/staff_login.html", form=form)


def _finish_sign_in(user: StaffUser) -> Any:
    next_url = session.get("next") or url_for("staff.home")
    end_session()  # a fresh session at sign-in: nothing carried over from before
    login_user(user)
    now = int(time.time())
    session["auth_at"] = now
    session["seen_at"] = now
    return redirect(_safe_next(next_url))


@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit(_signin_limit, methods=["POST"])
def staff_totp() -> Any:
    user = _pending_user()
    if user is None or not user.totp_enrolled:
        flash(_("Please sign in again."), "info")
        return redirect(url_for("auth.staff_login"))
    form = TotpForm()
    if form.validate_on_submit():
        if staff_service.verify_totp(db.session, user, form.code.data):
            return _finish_sign_in(user)
        flash(_("That code is not right or was already used. Wait for the next code."), "error")
    elif request.method == "POST":
        flash(_("Enter the 6-digit code from your authenticator app."), "error")
    return render_template("auth/staff_totp.html", form=form)


@bp.route("/login/enrol", methods=["GET", "POST"])
@limiter.limit(_signin_limit, methods=["POST"])
def staff_enrol() -> Any:
    user = _pending_user()
    if user is None or user.totp_enrolled:
        return redirect(url_for("auth.staff_login"))
    secret = staff_service.start_totp_enrolment(db.session, user)
    form = TotpForm()
    if form.validate_on_submit():
        if staff_service.verify_totp(db.session, user, form.code.data):
            flash(_("Your authenticator is set up."), "success")
            return _finish_sign_in(user)
        flash(_("That code is not right. Check the time on your phone and try the next code."), "error")
    elif request.method == "POST":
        flash(_("Enter the 6-digit code from your authenticator app."), "error")
    uri = staff_service.provisioning_uri(user)
    qr_svg = Markup(  # noqa: S704 - segno writes the SVG from the URI it encodes; no user HTML  # nosec B704
        segno.make(uri, error="m").svg_inline(scale=5, dark="#111")
    )
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    return render_template("auth/staff_enrol.html", form=form, qr_svg=qr_svg, secret=grouped)


@bp.route("/logout", methods=["POST"])
def staff_logout() -> Any:
    end_session()
    flash(_("You are signed out."), "info")
    return redirect(url_for("auth.staff_login"))
