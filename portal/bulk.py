"""Long bulk jobs and two process-wide settings of the interpreter: the cyclic garbage collector's
threshold and the threads' switch interval.

**The collector** looks for reference cycles whenever 700 more container objects (dicts, lists,
instances…) have been made than freed, and every so often walks every such object the process
holds. A bulk job makes millions of objects, hundreds of thousands alive at once, and next to no
cyclic garbage: in the import of 100,000 placement rows (``bench/placements.py``) the collector
found ~1,000 objects in cycles and its full walks took 3.6 s of 26 s, each one over the
application's ~270,000 objects from start-up and the import's own rows again and again. While a
bulk job runs its passes are ten times rarer (7,000 objects between passes instead of 700), so
the full walks come ten times less often. Garbage that is not in a cycle is freed at once as
always (reference counting); the little cyclic garbage waits a little longer.

**The switch interval** is how long a thread that wants the interpreter waits for the one that
holds it before asking it to let go (5 ms by default). The placement import reads and judges
rows in a second thread while the first waits for the database; when the database answers, the
first thread would wait up to 5 ms for the second to let go, some 150 times an import of 100,000
rows. While a bulk job runs the interval is ``SWITCH_INTERVAL`` (0.5 ms).

Both are process-wide, so they are set when the first bulk job running in the process starts and
put back when the last one ends (a lock counts them), errors included.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

RELAXED_FACTOR = 10
"""How many times rarer the collector's passes are while a bulk job runs."""
SWITCH_INTERVAL = 0.0005
"""Seconds a thread waits for the interpreter before asking its holder to let go, while a bulk job
runs (never longer than the interval set before)."""


class _Jobs:
    """The bulk jobs running in the process, and the settings to put back after the last."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.threshold = gc.get_threshold()
        self.interval = sys.getswitchinterval()

    def start(self) -> None:
        with self.lock:
            if self.running == 0:
                self.threshold, self.interval = gc.get_threshold(), sys.getswitchinterval()
                gc.set_threshold(self.threshold[0] * RELAXED_FACTOR, self.threshold[1], self.threshold[2])
                sys.setswitchinterval(min(self.interval, SWITCH_INTERVAL))
            self.running += 1

    def end(self) -> None:
        with self.lock:
            self.running -= 1
            if self.running == 0:
                gc.set_threshold(*self.threshold)
                sys.setswitchinterval(self.interval)


_jobs = _Jobs()


@contextmanager
def bulk_job() -> Iterator[None]:
    """Run the block with the collector's first threshold ``RELAXED_FACTOR`` times higher and the
    switch interval at most ``SWITCH_INTERVAL``."""
    _jobs.start()
    try:
        yield
    finally:
        _jobs.end()
