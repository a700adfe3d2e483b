"""The borrower reads and signs their repayment agreement on a phone, and downloads it."""

from __future__ import annotations

import base64
import io
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, send_file, session, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup

from portal.borrower import _key, borrower_required, bp
from portal.errors import user_message
from portal.extensions import db
from portal.integrations.seal import seal_key_from_config
from portal.integrations.storage import document_storage_from_config
from portal.models import Agreement
from portal.services import agreements as service
from portal.tasks import send_message
from workflows.errors import DomainError

STEP_UP_KEY = "step_up_token"


def _mine(agreement_id: int) -> Agreement:
    agreement = service.agreement_for(db.session, current_user, agreement_id)
    if agreement is None:
        abort(404)
    return agreement


def _agreement_text(found: Agreement) -> Markup | None:
    """The agreement as HTML, in the agreement's own language (the PDF's): Accord's template
    rendered from the frozen facts, every value escaped by Jinja there, so it is safe markup."""
    if found.status not in ("ready", "signed"):
        return None
    return Markup(service.document_html(found, for_pdf=False))  # noqa: S704 - see the docstring  # nosec B704


def _drawn_signature(data_url: str) -> bytes | None:
    """The optional drawing sent by the signing page as a PNG data URL; anything that is not one
    is passed on as bytes for the service to refuse."""
    if not data_url:
        return None
    prefix = "data:image/png;base64,"
    if not data_url.startswith(prefix) or len(data_url) > 800_000:
        return b"not a png"
    try:
        return base64.b64decode(data_url[len(prefix) :], validate=True)
    except ValueError:
        return b"not a png"


def _back(agreement: Agreement, anchor: str = "") -> Any:
    return redirect(url_for("borrower.agreement", agreement_id=agreement.id) + anchor)


def _checked_form() -> None:
    if not FlaskForm().validate_on_submit():
        abort(400)


@bp.get("/agreements/<int:agreement_id>")
@borrower_required
def agreement(agreement_id: int, error: str | None = None, error_field: str | None = None) -> Any:
    found = _mine(agreement_id)
    if found.status == "ready":
        found = service.viewed(db.session, current_user, agreement_id)
    code_sent = bool(session.get(STEP_UP_KEY, {}).get(str(found.id)))
    return render_template(
        "borrower/agreement.html",
        agreement=found,
        text=_agreement_text(found),
        code_sent=code_sent,
        form=FlaskForm(),
        error=error,
        error_field=error_field,
    ), 422 if error else 200


@bp.get("/agreements/<int:agreement_id>/document.pdf")
@borrower_required
def agreement_pdf(agreement_id: int) -> Any:
    """The signed and sealed file once signed; before that, the file as prepared."""
    found = _mine(agreement_id)
    key = found.final_key if found.status == "signed" else found.document_key
    if not key or found.status not in ("ready", "signed"):
        abort(404)
    data = document_storage_from_config(current_app.config).open(key)
    name = f"accord-agreement-{found.id}{'-signed' if found.status == 'signed' else ''}.pdf"
    response = send_file(
        io.BytesIO(data), mimetype="application/pdf", as_attachment=True, download_name=name, max_age=0
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _act(agreement_id: int, work: Any, field: str) -> Any:
    found = _mine(agreement_id)
    _checked_form()
    try:
        work(found)
    except DomainError as exc:
        db.session.rollback()
        return agreement(agreement_id, error=user_message(exc), error_field=field)
    return _back(found, f"#{field}")


@bp.post("/agreements/<int:agreement_id>/consent")
@borrower_required
def agreement_consent(agreement_id: int) -> Any:
    def work(found: Agreement) -> None:
        if request.form.get("consent") != "yes":
            raise DomainError("consent_missing", "")
        service.consent(db.session, current_user, found.id)

    return _act(agreement_id, work, "step-consent")


@bp.post("/agreements/<int:agreement_id>/code")
@borrower_required
def agreement_send_code(agreement_id: int) -> Any:
    def work(found: Agreement) -> None:
        token, message = service.send_code(db.session, current_user, found.id, key=_key())
        tokens = dict(session.get(STEP_UP_KEY, {}))
        tokens[str(found.id)] = token
        session[STEP_UP_KEY] = tokens
        send_message(message.to_dict())
        flash(_("We sent you a code. It is valid for 10 minutes."), "info")

    return _act(agreement_id, work, "step-code")


@bp.post("/agreements/<int:agreement_id>/code/verify")
@borrower_required
def agreement_verify_code(agreement_id: int) -> Any:
    def work(found: Agreement) -> None:
        token = session.get(STEP_UP_KEY, {}).get(str(found.id))
        service.verify_code(
            db.session, current_user, found.id, token=token, typed=request.form.get("code", ""), key=_key()
        )

    return _act(agreement_id, work, "step-code")


@bp.post("/agreements/<int:agreement_id>/sign")
@borrower_required
def agreement_sign(agreement_id: int) -> Any:
    found = _mine(agreement_id)
    _checked_form()
    config = current_app.config
    try:
        signed = service.sign(
            db.session,
            current_user,
            found.id,
            typed_name=request.form.get("typed_name", ""),
            agreed=request.form.get("agree") == "yes",
            ip=request.remote_addr,
            user_agent=request.headers.get("User-Agent"),
            storage=document_storage_from_config(config),
            seal_key=seal_key_from_config(config),
            tsa_url=config.get("SEAL_TSA_URL"),
            drawn_signature=_drawn_signature(request.form.get("signature", "")),
        )
    except DomainError as exc:
        db.session.rollback()
        return agreement(agreement_id, error=user_message(exc), error_field="step-sign")
    if signed.notice is not None:
        send_message(signed.notice.to_dict())
    session.get(STEP_UP_KEY, {}).pop(str(found.id), None)
    flash(_("You signed the agreement. Your plan is in force; download your signed copy below."), "success")
    return _back(found)
