"""When a lender's webhook delivery is tried again, and when Accord gives up on it.

A delivery is a POST of one event to the lender's URL; any 2xx answer delivers it. Anything else
(another status, a timeout, a refused connection) is tried again after a growing wait — a minute,
then five, half an hour, two, six, twelve and twenty-four hours — each with up to a tenth more at
random, so that deliveries that failed together (the lender's server was down) do not all come
back in the same second. After ``MAX_ATTEMPTS`` failed attempts the delivery is failed; an admin
may send it again.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from enum import StrEnum

BACKOFF: tuple[dt.timedelta, ...] = (
    dt.timedelta(minutes=1),
    dt.timedelta(minutes=5),
    dt.timedelta(minutes=30),
    dt.timedelta(hours=2),
    dt.timedelta(hours=6),
    dt.timedelta(hours=12),
    dt.timedelta(hours=24),
)
"""The wait after the 1st, 2nd, … failed attempt, before its jitter."""
MAX_ATTEMPTS = len(BACKOFF) + 1
"""After this many failed attempts a delivery is failed."""
JITTER_DIVISOR = 10
"""Up to 1/10 of the wait is added at random."""


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRYING = "retrying"
    FAILED = "failed"


def outcome(*, attempts: int, succeeded: bool) -> Outcome:
    """What becomes of a delivery after its ``attempts``-th attempt (counting this one)."""
    if attempts < 1:
        raise ValueError("a delivery's outcome follows at least one attempt")
    if succeeded:
        return Outcome.DELIVERED
    return Outcome.FAILED if attempts >= MAX_ATTEMPTS else Outcome.RETRYING


def backoff(failed_attempts: int, randbelow: Callable[[int], int] = secrets.randbelow) -> dt.timedelta:
    """How long to wait after the ``failed_attempts``-th failure: the schedule (its last step for
    any later failure) plus a random part below a tenth of it (``randbelow(n)`` gives 0 … n-1)."""
    if failed_attempts < 1:
        raise ValueError("a wait follows a failed attempt")
    delay = BACKOFF[min(failed_attempts, len(BACKOFF)) - 1]
    jitter = randbelow(int(delay.total_seconds()) // JITTER_DIVISOR + 1)
    return delay + dt.timedelta(seconds=jitter)
