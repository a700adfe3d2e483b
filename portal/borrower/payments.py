"""The borrower pays online: choose what to pay, the card page (Stripe.js), the result that waits
honestly for Stripe, the receipt (page and PDF), saved cards and automatic payments.

Views stay thin: parse the request, call one service in portal.services.checkout, render or
redirect. Every payment, card and plan is looked up through the signed-in borrower, so another
borrower's id is a 404.
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import urlsplit

import stripe
from flask import abort, current_app, flash, jsonify, redirect, render_template, request, send_file, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm

from portal import CONTENT_SECURITY_POLICY
from portal.borrower import borrower_required, bp
from portal.db import row_id
from portal.errors import user_message
from portal.extensions import db
from portal.formatting import money
from portal.integrations import stripe_gateway
from portal.models import Payment
from portal.services import checkout
from workflows.errors import DomainError

MONEY_PARAMS = ("minimum", "maximum")
FAILURES = {
    "card_declined": (lambda: _("Your card was declined. Try another card, or ask your bank why.")),
    "insufficient_funds": (lambda: _("There is not enough money on this card. Try another card.")),
    "expired_card": (lambda: _("This card has expired. Try another card.")),
    "incorrect_cvc": (lambda: _("The security code (CVC) is not right. Check it and try again.")),
    "payment_intent_authentication_failure": (
        lambda: _("Your bank's security check was not completed, so nothing was taken. Please try again.")
    ),
}


def _configured() -> bool:
    return stripe_gateway.is_configured(current_app.config)


def _client() -> stripe.StripeClient | None:
    return stripe_gateway.client_from_config(current_app.config) if _configured() else None


def _message(exc: DomainError, currency: str | None = None) -> str:
    """The error in the borrower's language, with its amounts formatted for them."""
    if currency and any(isinstance(exc.params.get(k), int) for k in MONEY_PARAMS):
        params = {k: money(v, currency) if k in MONEY_PARAMS else v for k, v in exc.params.items()}
        exc = DomainError(exc.code, exc.message, **params)
    return user_message(exc)


def _payment(payment_id: int) -> Payment:
    payment = checkout.payment_for(db.session, current_user, payment_id)
    if payment is None:
        abort(404)
    return payment


def _checked_form() -> None:
    if not FlaskForm().validate_on_submit():
        abort(400)


def failure_text(payment: Payment) -> str:
    known = FAILURES.get(payment.failure_code or "")
    if known is not None:
        return str(known())
    return _("The payment did not go through, so nothing was taken. Please try again or use another card.")


def _stripe_csp() -> str:
    """The app's policy, opened to Stripe.js: its script, its frames (3-D Secure) and its API."""
    js = urlsplit(str(current_app.config.get("STRIPE_JS_URL") or ""))
    origin = f"{js.scheme}://{js.netloc}" if js.scheme and js.netloc else ""
    connect, frames = [origin], [origin]
    if js.netloc == "js.stripe.com":  # Stripe's own: the API and the 3-D Secure pages too
        connect.append("https://api.stripe.com")
        frames.append("https://hooks.stripe.com")
    policy = CONTENT_SECURITY_POLICY.replace("script-src 'self'", f"script-src 'self' {origin}")
    return f"{policy}; connect-src 'self' {' '.join(connect)}; frame-src {' '.join(frames)}"


# --- Choose what to pay ------------------------------------------------------------------------


@bp.route("/accounts/<int:account_id>/pay", methods=["GET", "POST"])
@borrower_required
def pay(account_id: int) -> Any:
    try:
        account = checkout.payable_account(db.session, current_user, account_id)
    except DomainError:
        abort(404)
    offered, refused, error = None, None, None
    try:
        offered = checkout.options(db.session, current_user, account)
    except DomainError as exc:
        refused = _message(exc, account.currency)
    chosen = request.form.get("choice") or (offered.options[0].choice if offered else "")
    typed = request.form.get("amount", "")
    if request.method == "POST" and offered is not None and _configured():
        _checked_form()
        try:
            payment = checkout.start(
                db.session,
                current_user,
                account.id,
                chosen,
                typed,
                str(get_locale() or current_user.language),
            )
        except DomainError as exc:
            db.session.rollback()
            error = _message(exc, account.currency)
        else:
            return redirect(url_for("borrower.payment_card", payment_id=payment.id))
    return render_template(
        "borrower/payments/pay.html",
        account=account,
        offered=offered,
        refused=refused,
        error=error,
        chosen=chosen,
        typed=typed,
        online=_configured(),
        form=FlaskForm(),
    ), 422 if error else 200


# --- The card ----------------------------------------------------------------------------------


@bp.get("/payments/<int:payment_id>/card")
@borrower_required
def payment_card(payment_id: int) -> Any:
    payment = _payment(payment_id)
    client = _client()
    if client is None:
        return redirect(url_for("borrower.pay", account_id=payment.account_id))
    authenticate, setup_secret = None, None
    try:
        if payment.status == "requires_action":
            authenticate = checkout.authentication_secret(db.session, client, current_user, payment.id)
        elif payment.status == "created":
            setup_secret = checkout.setup_card(db.session, client, current_user, payment.id)
    except stripe.StripeError:
        current_app.logger.warning("card page for payment %s: Stripe unavailable", payment.id, exc_info=True)
        db.session.rollback()
        return render_template("borrower/payments/unavailable.html", payment=payment), 503
    if authenticate is None and setup_secret is None:
        return redirect(url_for("borrower.payment_result", payment_id=payment.id))
    plan = checkout.options(db.session, current_user, payment.account).plan if setup_secret else None
    consent = checkout.consent_text(db.session, plan) if plan is not None else None
    response = current_app.make_response(
        render_template(
            "borrower/payments/card.html",
            payment=payment,
            setup_secret=setup_secret,
            authenticate=authenticate,
            cards=checkout.saved_cards(db.session, current_user),
            plan=plan,
            consent=consent,
            consent_sha=checkout.consent_fingerprint(consent) if consent else "",
            publishable_key=current_app.config["STRIPE_PUBLISHABLE_KEY"],
            stripe_js=current_app.config["STRIPE_JS_URL"],
            form=FlaskForm(),
        )
    )
    response.headers["Content-Security-Policy"] = _stripe_csp()
    return response


@bp.post("/payments/<int:payment_id>/confirm")
@borrower_required
def payment_confirm(payment_id: int) -> Any:
    payment = _payment(payment_id)
    client = _client()
    if client is None:
        return jsonify(error=_("Online payment is not available just now.")), 503
    try:
        result = checkout.confirm(
            db.session,
            client,
            current_user,
            payment.id,
            setup_intent_id=request.form.get("setup_intent_id") or None,
            saved_card_id=request.form.get("saved_card_id", type=row_id),
            save_card=request.form.get("save_card") == "yes",
            autopay=request.form.get("autopay") == "yes",
            consent=request.form.get("consent_sha"),
            ip=request.remote_addr,
        )
    except DomainError as exc:
        db.session.rollback()
        return jsonify(error=_message(exc, payment.currency)), 422
    return jsonify(
        status=result.status,
        client_secret=result.client_secret,
        next=url_for("borrower.payment_result", payment_id=payment.id),
    )


# --- The result and the receipt ---------------------------------------------------------------


@bp.get("/payments/<int:payment_id>")
@borrower_required
def payment_result(payment_id: int) -> Any:
    payment = _payment(payment_id)
    if payment.status == "created":
        return redirect(url_for("borrower.payment_card", payment_id=payment.id))
    payment = checkout.refresh(db.session, _client(), current_user, payment.id)
    found = checkout.receipt(db.session, current_user, payment.id) if payment.status == "succeeded" else None
    return render_template(
        "borrower/payments/result.html",
        payment=payment,
        receipt=found,
        failure=failure_text(payment) if payment.status in ("failed", "canceled") else None,
    )


@bp.get("/payments/<int:payment_id>/status")
@borrower_required
def payment_status(payment_id: int) -> Any:
    payment = checkout.refresh(db.session, _client(), current_user, _payment(payment_id).id)
    return jsonify(status=payment.status, done=payment.status not in ("submitting", "processing"))


@bp.get("/payments/<int:payment_id>/receipt.pdf")
@borrower_required
def payment_receipt_pdf(payment_id: int) -> Any:
    payment = _payment(payment_id)
    try:
        data = checkout.receipt_pdf(db.session, current_user, payment.id)
    except DomainError:
        # No receipt yet: the payment's own page says where it stands.
        return redirect(url_for("borrower.payment_result", payment_id=payment.id))
    response = send_file(
        io.BytesIO(data),
        mimetype="application/pdf",
        as_attachment=True,
        download_name=f"accord-receipt-{payment.receipt_number}.pdf",
        max_age=0,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# --- Saved cards and automatic payments --------------------------------------------------------


def _cards_page(error: str | None = None, status: int = 200) -> Any:
    return render_template(
        "borrower/payments/cards.html",
        settings=checkout.settings(db.session, current_user),
        fingerprint=checkout.consent_fingerprint,
        error=error,
        form=FlaskForm(),
    ), status


@bp.get("/payments/cards")
@borrower_required
def payment_cards() -> Any:
    return _cards_page()


@bp.post("/payments/cards/<int:card_id>/remove")
@borrower_required
def payment_card_remove(card_id: int) -> Any:
    _checked_form()
    try:
        checkout.remove_card(db.session, _client(), current_user, card_id)
    except DomainError:
        abort(404)  # not one of this borrower's saved cards
    flash(_("The card was removed. Automatic payments that used it are turned off."), "success")
    return redirect(url_for("borrower.payment_cards"))


@bp.post("/payments/autopay/<int:plan_id>")
@borrower_required
def payment_autopay(plan_id: int) -> Any:
    _checked_form()
    try:
        if request.form.get("action") == "disable":
            checkout.disable_autopay(db.session, current_user, plan_id)
            flash(_("Automatic payments are turned off."), "success")
        else:
            checkout.enable_autopay(
                db.session,
                current_user,
                plan_id,
                request.form.get("card_id", type=row_id),
                agreed=request.form.get("agree") == "yes",
                consent=request.form.get("consent_sha"),
                ip=request.remote_addr,
            )
            flash(_("Automatic payments are turned on."), "success")
    except DomainError as exc:
        db.session.rollback()
        if exc.code == "autopay_plan_unknown":
            abort(404)  # not a plan in force on one of this borrower's accounts
        return _cards_page(_message(exc), 422)
    return redirect(url_for("borrower.payment_cards"))
