"""Bulk jobs: the cyclic collector's passes ten times rarer and the threads' switch interval short
inside, both as before once the last job running has ended — errors, nesting and threads included."""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator

import pytest

from portal.bulk import RELAXED_FACTOR, SWITCH_INTERVAL, bulk_job

NORMAL = ((700, 10, 10), 0.005)
INSIDE = ((700 * RELAXED_FACTOR, 10, 10), SWITCH_INTERVAL)


def _settings() -> tuple[tuple[int, int, int], float]:
    return gc.get_threshold(), sys.getswitchinterval()


@pytest.fixture(autouse=True)
def known_settings() -> Iterator[None]:
    before = _settings()
    gc.set_threshold(*NORMAL[0])
    sys.setswitchinterval(NORMAL[1])
    yield
    gc.set_threshold(*before[0])
    sys.setswitchinterval(before[1])


def test_both_are_set_inside_and_put_back_after() -> None:
    with bulk_job():
        assert _settings() == INSIDE
    assert _settings() == NORMAL


def test_a_switch_interval_already_shorter_is_kept() -> None:
    sys.setswitchinterval(SWITCH_INTERVAL / 2)
    with bulk_job():
        assert sys.getswitchinterval() == SWITCH_INTERVAL / 2
    assert sys.getswitchinterval() == SWITCH_INTERVAL / 2


def test_they_are_put_back_when_the_job_fails() -> None:
    with pytest.raises(ZeroDivisionError), bulk_job():
        _ = 1 / 0
    assert _settings() == NORMAL


def test_a_job_inside_another_neither_sets_them_twice_nor_puts_them_back_early() -> None:
    with bulk_job():
        with bulk_job():
            assert _settings() == INSIDE
        assert _settings() == INSIDE
    assert _settings() == NORMAL


def test_jobs_in_two_threads_ending_out_of_order_leave_them_as_they_were() -> None:
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, tuple[tuple[int, int, int], float]] = {}

    def first() -> None:
        with bulk_job():
            first_in.set()
            second_in.wait(5)
        seen["first gone, second running"] = _settings()
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with bulk_job():
            second_in.set()
            first_out.wait(5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert seen == {"first gone, second running": INSIDE}
    assert _settings() == NORMAL
