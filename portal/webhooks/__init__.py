"""Webhooks from Stripe: the one route without a CSRF token, authenticated by its signature."""

from __future__ import annotations

import json
import logging

from flask import Blueprint, abort, current_app, jsonify, request

from portal.extensions import csrf, db
from portal.integrations import stripe_gateway
from portal.services import payments
from portal.tasks import send_message
from workflows.errors import DomainError

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
log = logging.getLogger(__name__)

MAX_EVENT_BYTES = 512 * 1024


@bp.post("/stripe")
@csrf.exempt
def stripe_event():  # type: ignore[no-untyped-def]
    """Verify the signature on the raw body, then process the event once. 2xx tells Stripe to
    stop retrying: given for applied, ignored and duplicate events alike; 400 for a bad signature."""
    if (request.content_length or 0) > MAX_EVENT_BYTES:
        abort(413)
    payload = request.get_data(cache=False, as_text=False)
    config = current_app.config
    try:
        stripe_gateway.verify_event(
            payload,
            request.headers.get("Stripe-Signature", ""),
            stripe_gateway.webhook_secrets(config),
            int(config["STRIPE_WEBHOOK_TOLERANCE_SECONDS"]),
        )
        event = json.loads(payload)
        if (
            not isinstance(event, dict)
            or not {"id", "type", "data"} <= event.keys()
            or not isinstance(event["data"], dict)
            or not isinstance(event["data"].get("object"), dict)
        ):
            raise DomainError("webhook_payload", "The payload is not a Stripe event.")
    except (DomainError, ValueError) as exc:
        code = exc.code if isinstance(exc, DomainError) else "webhook_payload"
        log.warning("stripe webhook refused: %s", code)
        return jsonify(error=code), 400
    client = stripe_gateway.client_from_config(config) if stripe_gateway.is_configured(config) else None
    result = payments.handle_event(db.session, event, source="webhook", client=client)
    for notice in result.notices:
        send_message(notice.to_dict())
    return jsonify(received=True, outcome=result.outcome)
