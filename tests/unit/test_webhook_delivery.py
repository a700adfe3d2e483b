"""Retries of a lender's webhook delivery: the waits, their jitter, and when Accord gives up."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.webhook_delivery import BACKOFF, MAX_ATTEMPTS, Outcome, backoff, outcome


def test_the_schedule_grows_from_a_minute_to_a_day() -> None:
    assert BACKOFF[0] == dt.timedelta(minutes=1) and BACKOFF[-1] == dt.timedelta(hours=24)
    assert all(a < b for a, b in itertools.pairwise(BACKOFF))
    assert MAX_ATTEMPTS == 8


@given(failed=st.integers(min_value=1, max_value=50), fraction=st.floats(min_value=0, max_value=1))
def test_a_wait_is_its_step_plus_less_than_a_tenth_more(failed: int, fraction: float) -> None:
    step = BACKOFF[min(failed, len(BACKOFF)) - 1]
    wait = backoff(failed, lambda n: min(int(fraction * n), n - 1))
    assert step <= wait <= step + step / 10


def test_the_jitter_is_drawn_within_its_bound() -> None:
    bounds: list[int] = []
    backoff(3, lambda n: bounds.append(n) or 0)
    assert bounds == [30 * 60 // 10 + 1]  # 0 … 180 s more after half an hour


@given(attempts=st.integers(min_value=1, max_value=40))
def test_a_success_delivers_and_failures_retry_until_the_last_attempt(attempts: int) -> None:
    assert outcome(attempts=attempts, succeeded=True) is Outcome.DELIVERED
    expected = Outcome.FAILED if attempts >= MAX_ATTEMPTS else Outcome.RETRYING
    assert outcome(attempts=attempts, succeeded=False) is expected


def test_every_wait_follows_a_failed_attempt() -> None:
    with pytest.raises(ValueError, match="follows a failed attempt"):
        backoff(0)
    with pytest.raises(ValueError, match="at least one attempt"):
        outcome(attempts=0, succeeded=False)
