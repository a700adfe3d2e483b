"""Agreements for staff: listed on the case and account pages (template globals), the PDF and the
signing evidence as downloads, and voiding one that is not signed yet.

Views parse the form, call portal.services.agreement_admin and redirect back to the case; a
refusal is flashed in the staff member's language and changes nothing.
"""

from __future__ import annotations

import io
import json
from typing import Any

from flask import Response, abort, current_app, flash, redirect, request, send_file, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm.exc import StaleDataError

from portal.auth.guards import requires
from portal.errors import user_message
from portal.extensions import db
from portal.integrations.storage import document_storage_from_config
from portal.models import Agreement
from portal.services import agreement_admin
from portal.staff import bp
from workflows.access import Permission
from workflows.errors import DomainError


@bp.app_template_global()
def staff_agreements_for_case(case_id: int) -> list[Agreement]:
    return agreement_admin.agreements_for_case(db.session, case_id)


@bp.app_template_global()
def staff_agreements_for_account(account_id: int) -> list[Agreement]:
    return agreement_admin.agreements_for_account(db.session, account_id)


def _agreement_or_404(agreement_id: int) -> Agreement:
    found = db.session.get(Agreement, agreement_id)
    if found is None:
        abort(404)
    return found


@bp.get("/agreements/<int:agreement_id>/document.pdf")
@requires(Permission.VIEW_ACCOUNTS)
def agreement_document(agreement_id: int) -> Any:
    """The signed and sealed file once signed; otherwise the file as prepared (if rendered)."""
    found = _agreement_or_404(agreement_id)
    signed = found.status == "signed"
    key = found.final_key if signed else found.document_key
    if not key:
        abort(404)
    data = document_storage_from_config(current_app.config).open(key)
    response = send_file(
        io.BytesIO(data),
        mimetype="application/pdf",
        as_attachment=True,
        download_name=f"accord-agreement-{found.id}{'-signed' if signed else ''}.pdf",
        max_age=0,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/agreements/<int:agreement_id>/evidence.json")
@requires(Permission.VIEW_ACCOUNTS)
def agreement_evidence(agreement_id: int) -> Any:
    found = _agreement_or_404(agreement_id)
    body = json.dumps(agreement_admin.evidence_json(found), ensure_ascii=False, indent=2)
    response = Response(body, mimetype="application/json")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="accord-agreement-{found.id}-evidence.json"'
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.post("/agreements/<int:agreement_id>/void")
@requires(Permission.WORK_CASES)
def agreement_void(agreement_id: int) -> Any:
    found = _agreement_or_404(agreement_id)
    case_id = found.hardship_case_id
    if not FlaskForm().validate_on_submit():
        abort(400)
    try:
        agreement_admin.void(
            db.session,
            current_user,
            agreement_id,
            version=request.form.get("version", type=int),
            reason=request.form.get("reason", ""),
        )
    except DomainError as exc:
        db.session.rollback()
        if exc.code == "agreement_unknown":
            abort(404)
        flash(user_message(exc), "error")
    except StaleDataError:
        db.session.rollback()
        flash(user_message(DomainError("case_changed", "")), "error")
    else:
        flash(_("The agreement was voided. The borrower can no longer sign it."), "success")
    return redirect(url_for("staff.case", case_id=case_id))
