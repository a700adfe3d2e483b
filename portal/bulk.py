"""Long bulk jobs and Python's cyclic garbage collector.

The collector looks for reference cycles whenever 700 more container objects (dicts, lists,
instances…) have been made than freed, and every so often walks every such object the process
holds. A bulk job makes millions of objects, hundreds of thousands alive at once, and next to no
cyclic garbage: in the import of 100,000 placement rows (``bench/placements.py``) the collector
found ~1,000 objects in cycles and its full walks took 3.6 s of 26 s, each one over the
application's ~270,000 objects from start-up and the import's own rows again and again.

``relaxed_collector`` makes the collector's passes ten times rarer while a bulk job runs: 7,000
objects between passes instead of 700, so the full walks come ten times less often. Garbage that
is not in a cycle is freed at once as always (reference counting); the little cyclic garbage
waits a little longer. The threshold is process-wide, so it is set when the first job running in
the process starts and put back when the last one ends (a lock counts them), errors included.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

RELAXED_FACTOR = 10
"""How many times rarer the collector's passes are while a bulk job runs."""


class _Jobs:
    """The bulk jobs running in the process, and the threshold to put back after the last."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.saved = gc.get_threshold()

    def start(self) -> None:
        with self.lock:
            if self.running == 0:
                self.saved = gc.get_threshold()
                gc.set_threshold(self.saved[0] * RELAXED_FACTOR, self.saved[1], self.saved[2])
            self.running += 1

    def end(self) -> None:
        with self.lock:
            self.running -= 1
            if self.running == 0:
                gc.set_threshold(*self.saved)


_jobs = _Jobs()


@contextmanager
def relaxed_collector() -> Iterator[None]:
    """Run the block with the cyclic collector's first threshold ``RELAXED_FACTOR`` times higher."""
    _jobs.start()
    try:
        yield
    finally:
        _jobs.end()
