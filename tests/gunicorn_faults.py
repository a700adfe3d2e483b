"""A gunicorn config file for tests: a pause point inside payment processing, so a test can kill
a worker at a known moment (``gunicorn -c tests/gunicorn_faults.py wsgi:app``).

With ``ACCORD_TEST_PAUSE_FILE`` set, each worker wraps ``portal.services.ledger.post`` (in its own
process only; nothing in portal/ knows). The first call that finds the file claims it — renames
it to ``<file>.held``, writes its pid there — and waits while ``<file>.held`` exists: inside the
event's transaction, after the StripeEvent row, the payment and the account are locked and before
anything is posted. Exactly one request pauses (the rename is atomic); every other call, in any
worker, goes straight through. Without the variable the workers are plain."""

from __future__ import annotations

import os
import time
from typing import Any

PAUSE_FILE = "ACCORD_TEST_PAUSE_FILE"


def post_fork(server: Any, worker: Any) -> None:
    marker = os.environ.get(PAUSE_FILE)
    if not marker:
        return
    from portal.services import ledger

    original = ledger.post
    held = f"{marker}.held"

    def paused_post(*args: Any, **kwargs: Any) -> Any:
        try:
            os.rename(marker, held)
        except FileNotFoundError:
            return original(*args, **kwargs)  # not armed, or another request claimed it
        with open(held, "w") as out:
            out.write(str(os.getpid()))
        while os.path.exists(held):
            time.sleep(0.02)
        return original(*args, **kwargs)

    ledger.post = paused_post
