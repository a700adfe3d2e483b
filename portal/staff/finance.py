"""Finance: every payment (by status, newest first), one payment with its allocation, ledger
entries, refunds, disputes and Stripe ids; the open suspense items; refunds asked for, approved
by a second finance user above the policy's threshold, or rejected.

Views parse the form and call one service in portal.services.refunds; a refusal is flashed in
the staff member's language and changes nothing.
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm.exc import StaleDataError

from portal.auth.guards import requires
from portal.errors import user_message
from portal.extensions import db
from portal.formatting import money
from portal.integrations.stripe_gateway import client_from_config
from portal.models import Refund
from portal.models.payments import PAYMENT_STATUSES
from portal.services import refunds
from portal.staff import bp
from workflows.access import Permission
from workflows.errors import DomainError


@bp.get("/finance/payments")
@requires(Permission.MANAGE_PAYMENTS)
def finance_payments() -> Any:
    status = request.args.get("status") if request.args.get("status") in PAYMENT_STATUSES else None
    page = refunds.list_payments(db.session, status, refunds.parse_cursor(request.args.get("after")))
    return render_template(
        "staff/finance/payments.html",
        page=page,
        status=status,
        statuses=PAYMENT_STATUSES,
        counts=refunds.status_counts(db.session),
        waiting=refunds.awaiting_approval(db.session),
        form=FlaskForm(),
    )


@bp.get("/finance/payments/<int:payment_id>")
@requires(Permission.MANAGE_PAYMENTS)
def finance_payment(payment_id: int) -> Any:
    detail = refunds.payment_detail(db.session, payment_id)
    if detail is None:
        abort(404)
    return render_template(
        "staff/finance/payment.html", detail=detail, payment=detail.payment, form=FlaskForm()
    )


@bp.get("/finance/suspense")
@requires(Permission.MANAGE_PAYMENTS)
def finance_suspense() -> Any:
    items = refunds.open_suspense(db.session, refunds.parse_cursor(request.args.get("after")))
    return render_template("staff/finance/suspense.html", items=items)


def _checked_form() -> None:
    if not FlaskForm().validate_on_submit():
        abort(400)


def _refused(exc: DomainError | StaleDataError) -> None:
    db.session.rollback()
    if isinstance(exc, StaleDataError):
        exc = DomainError("refund_not_awaiting", "This refund is no longer awaiting approval.")
    elif exc.code == "refund_too_large":  # the amount in the staff member's format
        params = dict(exc.params)
        params["refundable"] = money(int(str(params["refundable"])), str(params["currency"]))
        exc = DomainError(exc.code, str(exc), **params)
    flash(user_message(exc), "error")


@bp.post("/finance/payments/<int:payment_id>/refunds")
@requires(Permission.MANAGE_PAYMENTS)
def finance_refund(payment_id: int) -> Any:
    _checked_form()
    if refunds.payment_detail(db.session, payment_id) is None:
        abort(404)
    try:
        result = refunds.request_refund(
            db.session,
            client_from_config(current_app.config),
            current_user,
            payment_id,
            amount_text=request.form.get("amount", ""),
            reason=request.form.get("reason", ""),
        )
    except (DomainError, StaleDataError) as exc:
        _refused(exc)
    else:
        if result.status == "awaiting_approval":
            flash(_("The refund is above your limit and waits for a second finance approver."), "info")
        else:
            flash(_("The refund was sent to Stripe and posted to the ledger."), "success")
    return redirect(url_for("staff.finance_payment", payment_id=payment_id))


def _refund_payment_id(refund_id: int) -> int:
    refund = db.session.get(Refund, refund_id)
    if refund is None:
        abort(404)
    return refund.payment_id


@bp.post("/finance/refunds/<int:refund_id>/approve")
@requires(Permission.MANAGE_PAYMENTS)
def finance_refund_approve(refund_id: int) -> Any:
    _checked_form()
    payment_id = _refund_payment_id(refund_id)
    try:
        refunds.approve(db.session, client_from_config(current_app.config), current_user, refund_id)
    except (DomainError, StaleDataError) as exc:
        _refused(exc)
    else:
        flash(_("The refund was approved, sent to Stripe and posted to the ledger."), "success")
    return redirect(url_for("staff.finance_payment", payment_id=payment_id))


@bp.post("/finance/refunds/<int:refund_id>/reject")
@requires(Permission.MANAGE_PAYMENTS)
def finance_refund_reject(refund_id: int) -> Any:
    _checked_form()
    payment_id = _refund_payment_id(refund_id)
    try:
        refunds.reject(db.session, current_user, refund_id, request.form.get("note", ""))
    except (DomainError, StaleDataError) as exc:
        _refused(exc)
    else:
        flash(_("The refund was rejected. Nothing was refunded."), "info")
    return redirect(url_for("staff.finance_payment", payment_id=payment_id))
