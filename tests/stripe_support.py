"""A localstripe server for the tests (a separate process, see scripts/localstripe_server.py),
and Stripe events built and signed the way Stripe signs them, for the kinds localstripe never
sends (charge.refunded, charge.dispute.*)."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from portal.integrations.stripe_gateway import sign_payload

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_SECRET = "whsec_test_accord"
SECRET_KEY = "sk_test_accord"
PUBLISHABLE_KEY = "pk_test_accord"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalStripe:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def js_url(self) -> str:
        return f"{self.api_base}/js.stripe.com/v3/"

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.api_base}/_config/data", method="DELETE")  # noqa: S310
        urllib.request.urlopen(request, timeout=5).close()  # noqa: S310 (our own loopback server)

    def register_webhook(self, url: str, secret: str = WEBHOOK_SECRET) -> None:
        body = json.dumps({"url": url, "secret": secret}).encode()
        request = urllib.request.Request(  # noqa: S310 (our own loopback server)
            f"{self.api_base}/_config/webhooks/accord",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=5).close()  # noqa: S310 (our own loopback server)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_localstripe(port: int | None = None) -> LocalStripe:
    port = port or free_port()
    process = subprocess.Popen(  # noqa: S603 (our own script)
        [sys.executable, str(ROOT / "scripts" / "localstripe_server.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = LocalStripe(port, process)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("localstripe exited at start")
        try:
            urllib.request.urlopen(server.js_url, timeout=1).close()  # noqa: S310 (our own loopback server)
            return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError("localstripe did not start in 20 s")


def stripe_config(server: LocalStripe) -> dict[str, Any]:
    return {
        "STRIPE_SECRET_KEY": SECRET_KEY,
        "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": server.api_base,
        "STRIPE_JS_URL": server.js_url,
        "STRIPE_MAX_NETWORK_RETRIES": 0,
    }


def event(
    kind: str, obj: dict[str, Any], *, event_id: str | None = None, created: int | None = None
) -> dict[str, Any]:
    """A Stripe event around ``obj``, as Stripe would send it."""
    return {
        "id": event_id or f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "type": kind,
        "created": created or int(time.time()),
        "livemode": False,
        "data": {"object": obj},
    }


def signed(
    evt: dict[str, Any], secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers of a webhook delivery of ``evt``."""
    body = json.dumps(evt).encode()
    return body, {
        "Stripe-Signature": sign_payload(body, secret, timestamp),
        "Content-Type": "application/json",
    }


def charge_refunded(
    charge_id: str, pi_id: str, amount: int, currency: str, refunds: list[dict[str, Any]]
) -> dict[str, Any]:
    """A charge.refunded event's object: the charge with its refunds listed."""
    return {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_refunded": sum(r["amount"] for r in refunds if r.get("status") != "failed"),
        "currency": currency.lower(),
        "payment_intent": pi_id,
        "refunded": True,
        "refunds": {"object": "list", "data": refunds},
    }


def refund(
    refund_id: str, amount: int, currency: str, status: str = "succeeded", **extra: Any
) -> dict[str, Any]:
    return {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "currency": currency.lower(),
        "status": status,
        **extra,
    }


def dispute(
    dispute_id: str, *, charge_id: str, pi_id: str, amount: int, currency: str, status: str
) -> dict[str, Any]:
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": amount,
        "currency": currency.lower(),
        "charge": charge_id,
        "payment_intent": pi_id,
        "reason": "fraudulent",
        "status": status,
    }
