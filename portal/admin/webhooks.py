"""Outgoing webhooks: an admin adds a lender's endpoint (its secret shown once), stops and resumes
it, replaces its secret, and reads the delivery log — each delivery's attempts, and "send again"
for one that failed. The rules live in portal.services.outgoing_webhooks."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from portal.admin import admin_bp
from portal.auth.guards import requires
from portal.errors import user_message
from portal.extensions import db
from portal.models import WebhookEndpoint
from portal.models.integration import DELIVERY_STATUSES, EVENT_TYPES
from portal.services import outgoing_webhooks as service
from portal.services.audit import Actor
from workflows.access import Permission
from workflows.errors import DomainError

EVENT_LABELS = {
    "payment.succeeded": _l("A payment was received"),
    "payment.reversed": _l("A payment was refunded or disputed"),
    "payment.reinstated": _l("A reversed payment was restored"),
    "plan.signed": _l("A repayment plan was signed"),
    "plan.completed": _l("A repayment plan was paid in full"),
    "plan.broken": _l("A repayment plan was broken"),
    "concession.granted": _l("An amount was waived"),
    "dispute.opened": _l("A borrower disputed the debt"),
    "dispute.closed": _l("A dispute was closed"),
    "account.recalled": _l("An account was recalled"),
}
DELIVERY_LABELS = {
    "pending": _l("Waiting"),
    "delivered": _l("Delivered"),
    "failed": _l("Failed"),
}


class EndpointForm(FlaskForm):
    creditor_id = SelectField(_l("Lender"), coerce=int, validators=[DataRequired()])
    url = StringField(
        _l("Address (URL)"),
        validators=[DataRequired(), Length(max=service.MAX_URL)],
        description=_l("Where the events are sent, starting with https://."),
    )
    event_types = SelectMultipleField(
        _l("Events"), choices=[SelectChoice(t, t) for t in EVENT_TYPES], validate_choice=True
    )


def _render_secret(endpoint: WebhookEndpoint, secret: str, *, rolled: bool) -> Any:
    """The one page that shows a secret: never cached, never put in a flash (a cookie)."""
    response = make_response(
        render_template(
            "admin/webhooks_secret.html",
            endpoint=endpoint,
            secret=secret,
            rolled=rolled,
        )
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@admin_bp.route("/webhooks", methods=["GET", "POST"])
@requires(Permission.MANAGE_INTEGRATION)
def webhooks() -> Any:
    found = service.overview(db.session)
    form = EndpointForm()
    form.creditor_id.choices = [SelectChoice(c.id, f"{c.name} ({c.code})") for c in found.creditors]
    if form.validate_on_submit():
        try:
            endpoint, secret = service.create_endpoint(
                db.session,
                Actor.staff(current_user),
                creditor_id=form.creditor_id.data,
                url=form.url.data or "",
                event_types=form.event_types.data,
            )
        except DomainError as exc:
            form.url.errors = [*form.url.errors, user_message(exc)]
        else:
            return _render_secret(endpoint, secret, rolled=False)
    return render_template(
        "admin/webhooks.html", form=form, overview=found, event_labels=EVENT_LABELS, event_types=EVENT_TYPES
    )


@admin_bp.get("/webhooks/<int:endpoint_id>")
@requires(Permission.MANAGE_INTEGRATION)
def webhook_endpoint(endpoint_id: int) -> Any:
    status = request.args.get("status") or None
    if status not in (None, *DELIVERY_STATUSES):
        status = None
    log = service.endpoint_log(db.session, endpoint_id, status=status)
    if log is None:
        abort(404)
    return render_template(
        "admin/webhooks_endpoint.html",
        log=log,
        status=status,
        statuses=DELIVERY_STATUSES,
        event_labels=EVENT_LABELS,
        delivery_labels=DELIVERY_LABELS,
    )


@admin_bp.post("/webhooks/<int:endpoint_id>/disable")
@requires(Permission.MANAGE_INTEGRATION)
def webhook_disable(endpoint_id: int) -> Any:
    return _set_active(endpoint_id, active=False)


@admin_bp.post("/webhooks/<int:endpoint_id>/enable")
@requires(Permission.MANAGE_INTEGRATION)
def webhook_enable(endpoint_id: int) -> Any:
    return _set_active(endpoint_id, active=True)


def _set_active(endpoint_id: int, *, active: bool) -> Any:
    try:
        service.set_active(db.session, Actor.staff(current_user), endpoint_id, active)
    except DomainError:
        abort(404)
    if active:
        flash(_("The endpoint is on again: it receives the events of the time it was off first."), "success")
    else:
        flash(_("The endpoint is off: nothing is sent to it until it is turned on again."), "success")
    return redirect(url_for("admin.webhook_endpoint", endpoint_id=endpoint_id))


@admin_bp.post("/webhooks/<int:endpoint_id>/roll-secret")
@requires(Permission.MANAGE_INTEGRATION)
def webhook_roll_secret(endpoint_id: int) -> Any:
    try:
        endpoint, secret = service.roll_secret(db.session, Actor.staff(current_user), endpoint_id)
    except DomainError:
        abort(404)
    return _render_secret(endpoint, secret, rolled=True)


@admin_bp.get("/webhooks/deliveries/<bigint:delivery_id>")
@requires(Permission.MANAGE_INTEGRATION)
def webhook_delivery(delivery_id: int) -> Any:
    detail = service.delivery_detail(db.session, delivery_id)
    if detail is None:
        abort(404)
    return render_template(
        "admin/webhooks_delivery.html",
        detail=detail,
        event_labels=EVENT_LABELS,
        delivery_labels=DELIVERY_LABELS,
    )


@admin_bp.post("/webhooks/deliveries/<bigint:delivery_id>/retry")
@requires(Permission.MANAGE_INTEGRATION)
def webhook_retry(delivery_id: int) -> Any:
    try:
        service.retry(db.session, Actor.staff(current_user), delivery_id)
    except DomainError as exc:
        if exc.code == "webhook_delivery_unknown":
            abort(404)
        flash(user_message(exc), "error")
    else:
        flash(_("The delivery will be sent again within a minute."), "success")
    return redirect(url_for("admin.webhook_delivery", delivery_id=delivery_id))
