"""Stripe through the official SDK: the client from configuration, and webhook verification.

With real keys this talks to Stripe; the demo and the tests set ``STRIPE_API_BASE`` to a local
localstripe server (scripts/localstripe_server.py). Nothing here fakes a response.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import stripe

from workflows.errors import DomainError


class StripeNotConfiguredError(RuntimeError):
    """Online payments need ACCORD_STRIPE_SECRET_KEY and ACCORD_STRIPE_PUBLISHABLE_KEY."""


def is_configured(config: dict[str, Any]) -> bool:
    return bool(config.get("STRIPE_SECRET_KEY") and config.get("STRIPE_PUBLISHABLE_KEY"))


def client_from_config(config: dict[str, Any]) -> stripe.StripeClient:
    key = config.get("STRIPE_SECRET_KEY")
    if not key:
        raise StripeNotConfiguredError("ACCORD_STRIPE_SECRET_KEY is not set")
    base = config.get("STRIPE_API_BASE")
    return stripe.StripeClient(
        key,
        base_addresses={"api": base} if base else {},
        max_network_retries=int(config.get("STRIPE_MAX_NETWORK_RETRIES", 2)),
    )


def webhook_secrets(config: dict[str, Any]) -> list[str]:
    """The active signing secrets: one normally, two while a secret is being rotated."""
    raw = config.get("STRIPE_WEBHOOK_SECRET") or ""
    return [secret.strip() for secret in raw.split(",") if secret.strip()]


def _signed_at(header: str) -> int | None:
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            return int(value)
    return None


def verify_event(
    payload: bytes, signature_header: str, secrets: list[str], tolerance: int, now: float | None = None
) -> stripe.Event:
    """The event in ``payload`` if its signature matches one of ``secrets`` and it was signed
    within ``tolerance`` seconds of now (in either direction); DomainError otherwise."""
    if not secrets:
        raise DomainError("webhook_not_configured", "Webhooks are not configured.")
    signed_at = _signed_at(signature_header or "")
    now = time.time() if now is None else now
    if signed_at is None:
        raise DomainError("webhook_signature", "The signature header is missing or malformed.")
    # The SDK refuses signatures that are too old; one from the future is refused here.
    if signed_at > now + tolerance or signed_at < now - tolerance:
        raise DomainError("webhook_timestamp", "The signature's timestamp is outside the tolerance.")
    text = payload.decode("utf-8")
    for secret in secrets:
        try:
            return stripe.Webhook.construct_event(text, signature_header, secret, tolerance=tolerance)
        except stripe.SignatureVerificationError:
            continue
        except (ValueError, AttributeError, TypeError) as exc:
            # Signed, but not a JSON object (the SDK fails on a list or a bare value).
            raise DomainError("webhook_payload", "The payload is not a Stripe event.") from exc
    raise DomainError("webhook_signature", "No signature matches.")


def sign_payload(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header for ``payload``, as Stripe computes it (used by the catch-up
    job's tests and by tools that replay events; never to accept an event)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"
