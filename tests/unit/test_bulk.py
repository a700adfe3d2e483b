"""The cyclic collector's passes while bulk jobs run: ten times rarer inside, as before once the
last job running has ended — errors, nesting and threads included."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from portal.bulk import RELAXED_FACTOR, relaxed_collector


@pytest.fixture(autouse=True)
def known_threshold() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield (700, 10, 10)
    gc.set_threshold(*before)


def test_the_first_threshold_is_raised_inside_and_put_back_after() -> None:
    with relaxed_collector():
        assert gc.get_threshold() == (700 * RELAXED_FACTOR, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_it_is_put_back_when_the_job_fails() -> None:
    with pytest.raises(ZeroDivisionError), relaxed_collector():
        _ = 1 / 0
    assert gc.get_threshold() == (700, 10, 10)


def test_a_job_inside_another_neither_raises_it_twice_nor_puts_it_back_early() -> None:
    with relaxed_collector():
        with relaxed_collector():
            assert gc.get_threshold() == (7000, 10, 10)
        assert gc.get_threshold() == (7000, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_jobs_in_two_threads_ending_out_of_order_leave_the_threshold_as_it_was() -> None:
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, tuple[int, int, int]] = {}

    def first() -> None:
        with relaxed_collector():
            first_in.set()
            second_in.wait(5)
        seen["first gone, second running"] = gc.get_threshold()
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with relaxed_collector():
            second_in.set()
            first_out.wait(5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert seen == {"first gone, second running": (7000, 10, 10)}
    assert gc.get_threshold() == (700, 10, 10)
