"""Debt disputes: the queue (open first, oldest first), one dispute with the borrower's files, and
its resolution — upheld with a note on what was put right, or rejected with the reason, which the
borrower reads in the portal after a discreet message.

Collectors see disputes (they must know why an account is not to be contacted); supervisors
decide them. A refusal is flashed in the staff member's language and changes nothing.
"""

from __future__ import annotations

import io
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm.exc import StaleDataError

from portal.auth.guards import requires
from portal.db import utcnow
from portal.errors import user_message
from portal.extensions import db
from portal.integrations.storage import storage_from_config
from portal.models.collections import DEBT_DISPUTE_STATUSES
from portal.services import borrower_contact as service
from portal.staff import bp
from portal.tasks import send_message
from workflows.access import Permission
from workflows.errors import DomainError

STAFF_DISPUTE_STATUSES = {
    "open": _l("Open"),
    "upheld": _l("Upheld"),
    "rejected": _l("Rejected"),
    "withdrawn": _l("Withdrawn"),
}
_CONTENT_TYPES = {"pdf": "application/pdf", "jpg": "image/jpeg", "png": "image/png"}


def _detail(dispute_id: int) -> service.DisputeDetail:
    detail = service.dispute_detail(db.session, dispute_id)
    if detail is None:
        abort(404)
    return detail


@bp.get("/disputes")
@requires(Permission.WORK_COLLECTIONS)
def disputes() -> Any:
    status = request.args.get("status")
    status = status if status in DEBT_DISPUTE_STATUSES else None
    return render_template(
        "staff/disputes/list.html",
        rows=service.dispute_queue(db.session, status),
        status=status,
        statuses=STAFF_DISPUTE_STATUSES,
        open_count=service.open_count(db.session),
        now=utcnow(),
    )


@bp.get("/disputes/<int:dispute_id>")
@requires(Permission.WORK_COLLECTIONS)
def dispute(dispute_id: int) -> Any:
    detail = _detail(dispute_id)
    return render_template(
        "staff/disputes/dispute.html",
        dispute=detail.dispute,
        account=detail.account,
        statuses=STAFF_DISPUTE_STATUSES,
        may_resolve=current_user.can(Permission.SUPERVISE_COLLECTIONS),
        form=FlaskForm(),
    )


@bp.get("/disputes/<int:dispute_id>/files/<int:file_id>")
@requires(Permission.WORK_COLLECTIONS)
def dispute_file(dispute_id: int, file_id: int) -> Any:
    """The borrower's file number ``file_id`` (from 1), as a download: never shown inline."""
    key = service.dispute_file(_detail(dispute_id).dispute, file_id)
    if key is None:
        abort(404)
    suffix = key.rsplit(".", 1)[-1]
    response = send_file(
        io.BytesIO(storage_from_config(current_app.config).open(key)),
        mimetype=_CONTENT_TYPES.get(suffix, "application/octet-stream"),
        as_attachment=True,
        download_name=f"dispute-{dispute_id}-file-{file_id}.{suffix}",
        max_age=0,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.post("/disputes/<int:dispute_id>/resolve")
@requires(Permission.SUPERVISE_COLLECTIONS)
def dispute_resolve(dispute_id: int) -> Any:
    if not FlaskForm().validate_on_submit():
        abort(400)
    _detail(dispute_id)
    try:
        notice = service.resolve_dispute(
            db.session,
            current_user,
            dispute_id,
            outcome=request.form.get("outcome", ""),
            note=request.form.get("note", ""),
        )
    except (DomainError, StaleDataError) as exc:
        db.session.rollback()
        if isinstance(exc, StaleDataError):
            exc = DomainError("dispute_closed", "This dispute is already closed.")
        flash(user_message(exc), "error")
    else:
        if notice is not None:
            send_message(notice.to_dict())
        flash(_("The dispute is decided. The borrower was told to sign in to read the decision."), "success")
    return redirect(url_for("staff.dispute", dispute_id=dispute_id))
