"""The staff workspace: search accounts, read an account and its ledger."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal.auth.guards import end_session, guard_staff_request, requires
from portal.errors import user_message
from portal.extensions import db
from portal.services import accounts as account_service
from portal.services import staff as staff_service
from portal.services.audit import Actor
from workflows.access import Permission
from workflows.errors import DomainError

bp = Blueprint("staff", __name__, url_prefix="/staff")
bp.before_request(guard_staff_request)


def _revealed(borrower_id: int) -> bool:
    until = session.get("revealed", {}).get(str(borrower_id), 0)
    return bool(time.time() < until and current_user.can(Permission.REVEAL_PERSONAL_DATA))


@bp.get("/")
@requires(Permission.VIEW_ACCOUNTS)
def home() -> Any:
    return render_template("staff/home.html")


@bp.get("/accounts")
@requires(Permission.VIEW_ACCOUNTS)
def search() -> Any:
    query = request.args.get("q", "")
    results: list[Any] = []
    try:
        results = account_service.search(db.session, query)
    except DomainError as exc:
        flash(user_message(exc), "error")
    return render_template("staff/search.html", query=query, results=results)


@bp.get("/accounts/<int:account_id>")
@requires(Permission.VIEW_ACCOUNTS)
def account(account_id: int) -> Any:
    acct = account_service.get_account(db.session, account_id)
    if acct is None:
        abort(404)
    cursor = account_service.parse_cursor(request.args.get("before"))
    stmt = account_service.statement(db.session, acct, cursor)
    return render_template(
        "staff/account.html",
        account=acct,
        borrower=acct.borrower,
        statement=stmt,
        revealed=_revealed(acct.borrower_id),
        may_reveal=current_user.can(Permission.REVEAL_PERSONAL_DATA),
    )


@bp.post("/borrowers/<int:borrower_id>/reveal")
@requires(Permission.REVEAL_PERSONAL_DATA)
def reveal(borrower_id: int) -> Any:
    account_id = request.form.get("account_id", type=int)
    try:
        account_service.reveal_personal_data(
            db.session, Actor.staff(current_user), current_user.role, borrower_id
        )
    except DomainError:
        abort(404)
    minutes = current_app.config["REVEAL_MINUTES"]
    revealed = dict(session.get("revealed", {}))
    revealed[str(borrower_id)] = time.time() + minutes * 60
    session["revealed"] = revealed
    flash(_("Personal data is shown for %(minutes)d minutes. This was recorded.", minutes=minutes), "info")
    if account_id:
        return redirect(url_for("staff.account", account_id=account_id))
    return redirect(url_for("staff.home"))


@bp.post("/sign-out-everywhere")
@requires(Permission.VIEW_ACCOUNTS)
def sign_out_everywhere() -> Any:
    staff_service.sign_out_everywhere(db.session, current_user)
    end_session()
    flash(_("You are signed out on every device."), "info")
    return redirect(url_for("auth.staff_login"))


from portal.staff import agreements as _agreements  # noqa: E402, F401  (registers the agreement downloads and voiding on bp)
from portal.staff import collections as _collections  # noqa: E402, F401  (registers the collector's workspace on bp)
from portal.staff import desk as _desk  # noqa: E402, F401  (registers the negotiation desk's routes on bp)
from portal.staff import disputes as _disputes  # noqa: E402, F401  (registers the disputes queue and decisions on bp)
from portal.staff import finance as _finance  # noqa: E402, F401  (registers the finance pages on bp)
from portal.staff import finance_reports as _finance_reports  # noqa: E402, F401  (registers the daily close, exports and dashboard on bp)
from portal.staff import reconciliation as _reconciliation  # noqa: E402, F401  (registers the reconciliation pages on bp)
from portal.staff import supervisor as _supervisor  # noqa: E402, F401  (registers the supervisor view on bp)
