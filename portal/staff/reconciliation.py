"""Finance: reconciliation. The exceptions queue (open first, with their age, by kind), one
exception with its evidence and the ways to resolve it (link to a payment, book a correction,
write off with a second finance user's approval, note), Stripe imports (a CSV upload, the API
in the background) and a reconciliation run over a period.

Views parse the form and call one service in portal.services.reconciliation or
portal.services.stripe_import; a refusal is flashed in the staff member's language and changes
nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm.exc import StaleDataError

from portal.auth.guards import requires
from portal.db import MAX_ID
from portal.errors import user_message
from portal.extensions import db
from portal.models import StripeImport
from portal.models.finance import EXCEPTION_KINDS
from portal.services import reconciliation, stripe_import
from portal.services.hardship import desk_today
from portal.staff import bp
from workflows.access import Permission
from workflows.errors import DomainError
from workflows.money import Component


def _checked_form() -> None:
    if not FlaskForm().validate_on_submit():
        abort(400)


def _refused(exc: DomainError | StaleDataError) -> None:
    db.session.rollback()
    if isinstance(exc, StaleDataError):
        exc = DomainError("exception_changed", "This item changed since you opened it.")
    flash(user_message(exc), "error")


def _version() -> int | None:
    raw = request.form.get("version", "")
    return int(raw) if raw.isdigit() and len(raw) < 10 else None


def _date(name: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(request.form.get(name, "") or request.args.get(name, ""))
    except ValueError:
        return None


@bp.get("/finance/reconciliation")
@requires(Permission.MANAGE_PAYMENTS)
def finance_reconciliation() -> Any:
    kind = request.args.get("kind") if request.args.get("kind") in EXCEPTION_KINDS else None
    status = request.args.get("status", "open")
    if status not in reconciliation.STATUS_FILTERS:
        status = "open"
    page_no = request.args.get("page", "1")
    page = reconciliation.queue(
        db.session,
        kind=kind,
        status=status,
        page=int(page_no) if page_no.isdigit() and len(page_no) < 6 else 1,
    )
    today = desk_today()
    return render_template(
        "staff/reconciliation/queue.html",
        page=page,
        kind=kind,
        status=status,
        kinds=EXCEPTION_KINDS,
        imports=stripe_import.recent_imports(db.session, 10),
        today=today,
        yesterday=today - dt.timedelta(days=1),
        form=FlaskForm(),
    )


@bp.get("/finance/reconciliation/<int:exception_id>")
@requires(Permission.MANAGE_PAYMENTS)
def finance_reconciliation_item(exception_id: int) -> Any:
    found = reconciliation.evidence(db.session, exception_id)
    if found is None:
        abort(404)
    return render_template(
        "staff/reconciliation/item.html",
        ev=found,
        item=found.exception,
        components=[c.value for c in Component],
        may_approve=found.exception.resolved_by_id != current_user.id,
        form=FlaskForm(),
    )


def _back(exception_id: int) -> Any:
    return redirect(url_for("staff.finance_reconciliation_item", exception_id=exception_id))


def _resolve(exception_id: int, done: str, call: Any) -> Any:
    _checked_form()
    try:
        call()
    except (DomainError, StaleDataError) as exc:
        _refused(exc)
    else:
        flash(done, "success")
    return _back(exception_id)


@bp.post("/finance/reconciliation/<int:exception_id>/link")
@requires(Permission.MANAGE_PAYMENTS)
def finance_reconciliation_link(exception_id: int) -> Any:
    raw = request.form.get("payment_id", "").strip().lstrip("#")
    payment_id = int(raw) if raw.isdigit() and len(raw) < 18 and int(raw) <= MAX_ID else None
    return _resolve(
        exception_id,
        _("The item is linked to the payment and resolved."),
        lambda: reconciliation.link(
            db.session,
            current_user,
            exception_id,
            payment_id,
            version=_version(),
            note=request.form.get("note"),
        ),
    )


@bp.post("/finance/reconciliation/<int:exception_id>/correct")
@requires(Permission.MANAGE_PAYMENTS)
def finance_reconciliation_correct(exception_id: int) -> Any:
    raw = request.form.get("payment_id", "").strip().lstrip("#")
    return _resolve(
        exception_id,
        _("The correction was posted to the ledger with its own entries, and the item is resolved."),
        lambda: reconciliation.correct(
            db.session,
            current_user,
            exception_id,
            amount_text=request.form.get("amount", ""),
            component=request.form.get("component", ""),
            direction=request.form.get("direction", ""),
            note=request.form.get("note"),
            payment_id=int(raw) if raw.isdigit() and len(raw) < 18 and int(raw) <= MAX_ID else None,
            version=_version(),
        ),
    )


@bp.post("/finance/reconciliation/<int:exception_id>/write-off")
@requires(Permission.MANAGE_PAYMENTS)
def finance_reconciliation_write_off(exception_id: int) -> Any:
    return _resolve(
        exception_id,
        _("The write-off waits for a second finance user's approval."),
        lambda: reconciliation.request_write_off(
            db.session, current_user, exception_id, note=request.form.get("note"), version=_version()
        ),
    )


@bp.post("/finance/reconciliation/<int:exception_id>/write-off/approve")
@requires(Permission.MANAGE_PAYMENTS)
def finance_reconciliation_approve(exception_id: int) -> Any:
    return _resolve(
        exception_id,
        _("The write-off is approved and the item resolved."),
        lambda: reconciliation.approve_write_off(db.session, current_user, exception_id, version=_version()),
    )


@bp.post("/finance/reconciliation/<int:exception_id>/write-off/reject")
@requires(Permission.MANAGE_PAYMENTS)
def finance_reconciliation_reject(exception_id: int) -> Any:
    return _resolve(
        exception_id,
        _("The write-off was turned down. The item is open again."),
        lambda: reconciliation.reject_write_off(db.session, current_user, exception_id, version=_version()),
    )


@bp.post("/finance/reconciliation/<int:exception_id>/note")
@requires(Permission.MANAGE_PAYMENTS)
def finance_reconciliation_note(exception_id: int) -> Any:
    return _resolve(
        exception_id,
        _("The item is resolved with your note."),
        lambda: reconciliation.note(
            db.session, current_user, exception_id, text=request.form.get("note"), version=_version()
        ),
    )


@bp.post("/finance/reconciliation/run")
@requires(Permission.MANAGE_PAYMENTS)
def finance_reconciliation_run() -> Any:
    _checked_form()
    start, end = _date("start"), _date("end")
    if start is None or end is None:
        flash(_("Enter the first and the last day of the period."), "error")
        return redirect(url_for("staff.finance_reconciliation"))
    try:
        run = reconciliation.reconcile(db.session, start, end, current_user)
    except DomainError as exc:
        _refused(exc)
    else:
        counts = run.counts or {}
        flash(
            _(
                "Reconciled %(start)s to %(end)s: %(matched)s matched, %(new)s new exceptions.",
                start=start.isoformat(),
                end=end.isoformat(),
                matched=counts.get("matched", 0),
                new=counts.get("exceptions_new", 0),
            ),
            "success",
        )
    return redirect(url_for("staff.finance_reconciliation"))


@bp.post("/finance/reconciliation/imports")
@requires(Permission.MANAGE_PAYMENTS)
def finance_reconciliation_upload() -> Any:
    _checked_form()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash(user_message(DomainError("csv_upload_missing", "Choose a CSV file.")), "error")
        return redirect(url_for("staff.finance_reconciliation"))
    run = stripe_import.import_csv(db.session, upload.stream, upload.filename, user=current_user)
    counts = run.counts or {}
    if run.status == "failed":
        flash(_("The file was refused: nothing was imported. See what is wrong below."), "error")
    elif counts.get("same_file_as"):
        flash(_("This file was imported before: nothing new was imported."), "info")
    else:
        flash(
            _(
                "%(new)s new balance transactions imported, %(known)s already there, "
                "%(refused)s lines refused.",
                new=counts.get("new", 0),
                known=counts.get("unchanged", 0),
                refused=counts.get("refused", 0),
            ),
            "success" if not run.problems else "info",
        )
    return redirect(url_for("staff.finance_reconciliation_import", import_id=run.id))


@bp.post("/finance/reconciliation/imports/api")
@requires(Permission.MANAGE_PAYMENTS)
def finance_reconciliation_import_api() -> Any:
    _checked_form()
    from portal.tasks import import_stripe_balance

    user_id = current_user.id
    # End this request's transaction first: the job has its own session, and on SQLite (where
    # every transaction takes the write lock) an inline job would wait for this one.
    db.session.rollback()
    import_stripe_balance(user_id)
    flash(_("The import from Stripe has started. It appears below when it is done."), "info")
    return redirect(url_for("staff.finance_reconciliation"))


@bp.get("/finance/reconciliation/imports/<int:import_id>")
@requires(Permission.MANAGE_PAYMENTS)
def finance_reconciliation_import(import_id: int) -> Any:
    run = db.session.get(StripeImport, import_id)
    if run is None:
        abort(404)
    return render_template("staff/reconciliation/import.html", run=run)
