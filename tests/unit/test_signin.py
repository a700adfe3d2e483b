from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.signin import (
    CODE_LIFETIME,
    MAX_WRONG_TRIES,
    CodeCheck,
    check_code,
    code_digest,
    new_code,
    normalise_code,
    resend_wait,
)

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def test_codes_are_six_digits_and_vary() -> None:
    codes = {new_code() for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    assert len(codes) > 190


def test_a_code_digest_is_bound_to_its_attempt_and_key() -> None:
    assert code_digest(b"k", "attempt-1", "123456") != code_digest(b"k", "attempt-2", "123456")
    assert code_digest(b"k", "attempt-1", "123456") != code_digest(b"other", "attempt-1", "123456")
    assert code_digest(b"k", "attempt-1", "123456") == code_digest(b"k", "attempt-1", "123456")


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("123456", "123456"),
        ("123 456", "123456"),
        ("123-456", "123456"),
        ("１２３４５６", "123456"),
        ("12345", None),
        ("1234567", None),
        ("12a456", None),
        ("", None),
        ("١٢٣٤٥٦", None),
    ],
)
def test_typed_codes_are_normalised_or_refused(typed: str, expected: str | None) -> None:
    assert normalise_code(typed) == expected


@pytest.mark.parametrize(
    ("matches", "age", "used", "tries", "result"),
    [
        (True, dt.timedelta(minutes=1), False, 0, CodeCheck.ACCEPTED),
        (False, dt.timedelta(minutes=1), False, 0, CodeCheck.WRONG),
        (True, CODE_LIFETIME, False, 0, CodeCheck.EXPIRED),
        (True, dt.timedelta(minutes=1), True, 0, CodeCheck.USED),
        (True, dt.timedelta(minutes=1), False, MAX_WRONG_TRIES, CodeCheck.TOO_MANY_TRIES),
        (True, dt.timedelta(minutes=1), False, MAX_WRONG_TRIES - 1, CodeCheck.ACCEPTED),
    ],
)
def test_a_code_is_good_once_for_ten_minutes_and_five_tries(matches, age, used, tries, result) -> None:  # type: ignore[no-untyped-def]
    assert check_code(matches=matches, created_at=NOW - age, used=used, wrong_tries=tries, now=NOW) == result


def test_three_codes_per_fifteen_minutes_then_wait_for_the_oldest_to_age_out() -> None:
    sent = [NOW - dt.timedelta(minutes=m) for m in (14, 5, 1)]
    assert resend_wait(sent[:2], NOW) is None
    assert resend_wait(sent, NOW) == dt.timedelta(minutes=1)
    assert resend_wait([NOW - dt.timedelta(minutes=20)] * 5, NOW) is None


@given(st.lists(st.integers(min_value=0, max_value=60 * 60), max_size=10))
def test_resend_wait_never_allows_a_fourth_code_in_any_window(seconds_ago: list[int]) -> None:
    sent = [NOW - dt.timedelta(seconds=s) for s in seconds_ago]
    wait = resend_wait(sent, NOW)
    recent = [t for t in sent if NOW - t < dt.timedelta(minutes=15)]
    if wait is None:
        assert len(recent) < 3
    else:
        assert dt.timedelta(0) < wait <= dt.timedelta(minutes=15)
        later = NOW + wait
        assert len([t for t in sent if later - t < dt.timedelta(minutes=15)]) < 3
