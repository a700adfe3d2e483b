"""The borrower's portal: sign-in with a one-time code, what I owe, what happens next."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user

from portal.auth.guards import end_session, session_still_fresh
from portal.borrower.forms import CodeForm, IdentifyForm
from portal.db import reads_only
from portal.errors import user_message
from portal.extensions import db, limiter
from portal.models import Borrower
from portal.services import borrower_contact, borrower_portal
from portal.services import borrower_signin as signin_service
from portal.tasks import send_message
from workflows.errors import DomainError

bp = Blueprint("borrower", __name__)
F = TypeVar("F", bound=Callable[..., Any])
ATTEMPT_KEY = "signin_attempt"


def _key() -> bytes:
    return str(current_app.config["SECRET_KEY"]).encode()


def _enqueue(message: Any) -> None:
    # Always one job, with or without a message: both answers of step 1 do the same work.
    send_message(message.to_dict() if message is not None else None)


def borrower_required(view: F) -> F:
    """Signed in as a borrower, within 15 minutes idle and 12 hours absolute; else to sign-in."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not isinstance(current_user._get_current_object(), Borrower):
            return redirect(url_for("borrower.signin"))
        config = current_app.config
        if not session_still_fresh(config["BORROWER_IDLE_MINUTES"], config["BORROWER_ABSOLUTE_HOURS"]):
            flash(_("You were signed out to protect your information. Please sign in again."), "info")
            return redirect(url_for("borrower.signin"))
        return view(*args, **kwargs)

    wrapper.borrower_only = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def _signin_limit() -> str:
    return str(current_app.config["BORROWER_SIGNIN_RATE_LIMIT"])


def _code_limit() -> str:
    return str(current_app.config["BORROWER_CODE_RATE_LIMIT"])


@bp.route("/signin", methods=["GET", "POST"])
@limiter.limit(_signin_limit, methods=["POST"])
def signin() -> Any:
    form = IdentifyForm()
    if form.validate_on_submit():
        try:
            started = signin_service.start(
                db.session,
                identifier=form.identifier.data,
                born_on=form.date_of_birth.data,
                ip=request.remote_addr,
                key=_key(),
            )
        except DomainError as exc:
            flash(user_message(exc), "error")
        else:
            _enqueue(started.message)
            end_session()
            session[ATTEMPT_KEY] = started.token
            return redirect(url_for("borrower.signin_code"))
    return render_template(
        "borrower/signin.html", form=form
    ), 200 if request.method == "GET" or not form.errors else 422


@bp.route("/signin/code", methods=["GET", "POST"])
@limiter.limit(_code_limit, methods=["POST"])
def signin_code() -> Any:
    if ATTEMPT_KEY not in session:
        return redirect(url_for("borrower.signin"))
    form = CodeForm()
    if form.validate_on_submit():
        try:
            borrower = signin_service.verify(
                db.session, token=session.get(ATTEMPT_KEY), typed=form.code.data, key=_key()
            )
        except DomainError as exc:
            if exc.code == "signin_expired":
                session.pop(ATTEMPT_KEY, None)
                flash(user_message(exc), "error")
                return redirect(url_for("borrower.signin"))
            form.code.errors.append(user_message(exc))  # shown at the field, tied to it for screen readers
        else:
            end_session()  # a fresh session: nothing from before sign-in carries over
            login_user(borrower)
            session.setdefault("lang", borrower.language)
            session["auth_at"] = session["seen_at"] = int(time.time())
            return redirect(url_for("borrower.home"))
    return render_template("borrower/signin_code.html", form=form)


@bp.post("/signin/resend")
@limiter.limit(_signin_limit)
def signin_resend() -> Any:
    try:
        message = signin_service.resend(db.session, token=session.get(ATTEMPT_KEY), key=_key())
    except DomainError as exc:
        flash(user_message(exc), "error")
        if exc.code == "signin_expired":
            return redirect(url_for("borrower.signin"))
    else:
        _enqueue(message)
        flash(
            _("If your details matched, a new code is on its way. The previous code no longer works."), "info"
        )
    return redirect(url_for("borrower.signin_code"))


@bp.post("/signout")
def signout() -> Any:
    # Sessions live in signed cookies, so the only way to make a copied cookie useless is the
    # borrower's session version: signing out ends every session of this borrower.
    if isinstance(current_user._get_current_object(), Borrower):
        signin_service.sign_out_everywhere(db.session, current_user)
    end_session()
    flash(_("You are signed out."), "info")
    return redirect(url_for("public.index"))


@bp.post("/signout-everywhere")
def signout_everywhere() -> Any:
    if isinstance(current_user._get_current_object(), Borrower):
        signin_service.sign_out_everywhere(db.session, current_user)
    end_session()
    flash(_("You are signed out on every device."), "info")
    return redirect(url_for("public.index"))


@bp.get("/home")
@reads_only
@borrower_required
def home() -> Any:
    overview = borrower_portal.overview(db.session, current_user)
    return render_template("borrower/home.html", overview=overview)


@bp.get("/accounts/<int:account_id>")
@borrower_required
def account(account_id: int) -> Any:
    view = borrower_portal.account_view(db.session, current_user, account_id)
    if view is None:
        abort(404)
    dispute = borrower_contact.latest_dispute(db.session, current_user, account_id)
    return render_template("borrower/account.html", view=view, dispute=dispute)


@bp.get("/accounts/<int:account_id>/statement")
@borrower_required
def statement_print(account_id: int) -> Any:
    view = borrower_portal.account_view(db.session, current_user, account_id, whole_statement=True)
    if view is None:
        abort(404)
    return render_template("borrower/statement_print.html", view=view)


from portal.borrower import agreements as _agreements  # noqa: E402, F401  (registers the agreement routes on bp)
from portal.borrower import contact as _contact  # noqa: E402, F401  (registers contact preferences and disputes on bp)
from portal.borrower import data as _data  # noqa: E402, F401  (registers "your data" and its download on bp)
from portal.borrower import hardship as _hardship  # noqa: E402, F401  (registers the hardship routes on bp)
from portal.borrower import payments as _payments  # noqa: E402, F401  (registers the payment routes on bp)
