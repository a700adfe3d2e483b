"""How Accord signs the webhooks it sends to a lender, and how the lender's server checks them.

Every POST to a lender's endpoint carries the header ``Accord-Signature: t=<time>,v1=<signature>``.
``t`` is when the request was signed, in Unix seconds. ``v1`` is the lower-case hex HMAC-SHA256,
keyed with the endpoint's secret (the ``whsec_…`` string, as UTF-8 bytes), of the timestamp, a
dot and the raw body::

    v1 = HMAC_SHA256(key=secret, message=f"{t}.".encode() + body).hexdigest()

For example, the secret ``whsec_example``, ``t`` 1764547200 and the body ``{"id":"evt_1"}`` give::

    t=1764547200,v1=fc7a225c6f519fd43941452528fed6c3749819e6a641c66b86a51060ae7c8512

To check a request (``verify`` does exactly this):

1. Take the body as received, byte for byte, before any JSON parsing.
2. Split the header on ``,`` into ``key=value`` pairs; read the one ``t`` and every ``v1`` (more
   than one may appear, e.g. while a secret is being replaced; other schemes are ignored).
3. Refuse the request when ``t`` is more than the tolerance (5 minutes) before or after your
   clock: an old request replayed, or a forged one from the future.
4. Compute the expected ``v1`` and compare it with each received one in constant time; accept
   when one matches.

The signature covers the timestamp, so a captured request cannot be replayed with a new one.
The ``Accord-Event-Id`` header names the event: a request may arrive twice (a retry after a lost
answer), and a receiver that remembers the ids it processed can skip the second.
"""

from __future__ import annotations

import hashlib
import hmac

SCHEME = "v1"
DEFAULT_TOLERANCE = 300
"""Seconds a signature's timestamp may differ from the receiver's clock, either way."""
_MAX_TIMESTAMP_DIGITS = 15


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}."`` followed by the body, keyed with ``secret``."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Accord-Signature`` header value: ``t=<timestamp>,v1=<signature>``."""
    if timestamp < 0:
        raise ValueError("a signature's timestamp is a Unix time, never negative")
    return f"t={timestamp},{SCHEME}={signature(secret, timestamp, body)}"


def _parse(header: str) -> tuple[int, list[str]] | None:
    """The header's one timestamp and its ``v1`` values; None when it is not a signature header."""
    timestamps: list[str] = []
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamps.append(value)
        elif key == SCHEME:
            candidates.append(value)
    if len(timestamps) != 1 or not candidates:
        return None
    stamp = timestamps[0]
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= _MAX_TIMESTAMP_DIGITS):
        return None
    return int(stamp), candidates


def verify(secret: str, header: str, body: bytes, *, now: int, tolerance: int = DEFAULT_TOLERANCE) -> bool:
    """True when ``header`` holds a ``v1`` signature of ``body`` made with ``secret`` at a time
    within ``tolerance`` seconds of ``now`` (Unix seconds). Never raises on a malformed header."""
    parsed = _parse(header)
    if parsed is None:
        return False
    timestamp, candidates = parsed
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).encode()
    matched = False
    for candidate in candidates:
        # Every candidate is compared, each in constant time (bytes: a non-ASCII one cannot raise).
        matched |= hmac.compare_digest(expected, candidate.encode())
    return matched
