"""The outgoing webhook signature: what Accord sends verifies, and nothing else does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.webhook_signature import DEFAULT_TOLERANCE, sign, signature, verify

NOW = 1_764_547_200
secrets_ = st.text(min_size=1, max_size=60)
bodies = st.binary(max_size=2_000)
timestamps = st.integers(min_value=0, max_value=10**12)


def test_the_documented_example_is_what_sign_gives() -> None:
    assert sign("whsec_example", 1764547200, b'{"id":"evt_1"}') == (
        "t=1764547200,v1=fc7a225c6f519fd43941452528fed6c3749819e6a641c66b86a51060ae7c8512"
    )


@given(secret=secrets_, body=bodies, timestamp=timestamps)
def test_a_signed_body_verifies_at_the_time_it_was_signed(secret: str, body: bytes, timestamp: int) -> None:
    assert verify(secret, sign(secret, timestamp, body), body, now=timestamp)


@given(secret=secrets_, body=bodies.filter(bool), data=st.data())
def test_any_changed_byte_of_the_body_fails(secret: str, body: bytes, data: st.DataObject) -> None:
    position = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    changed = bytearray(body)
    changed[position] ^= flip
    assert not verify(secret, sign(secret, NOW, body), bytes(changed), now=NOW)


@given(secret=secrets_, body=bodies, extra=st.binary(min_size=1, max_size=10))
def test_a_longer_or_shorter_body_fails(secret: str, body: bytes, extra: bytes) -> None:
    header = sign(secret, NOW, body)
    assert not verify(secret, header, body + extra, now=NOW)
    longer = sign(secret, NOW, body + extra)
    assert not verify(secret, longer, body, now=NOW)


@given(secret=secrets_, other=secrets_, body=bodies)
def test_another_secret_fails(secret: str, other: str, body: bytes) -> None:
    if other != secret:
        assert not verify(other, sign(secret, NOW, body), body, now=NOW)


@given(skew=st.integers(min_value=-DEFAULT_TOLERANCE, max_value=DEFAULT_TOLERANCE))
def test_a_timestamp_within_the_tolerance_either_way_is_accepted(skew: int) -> None:
    assert verify("whsec_x", sign("whsec_x", NOW + skew, b"{}"), b"{}", now=NOW)


@given(skew=st.integers(min_value=DEFAULT_TOLERANCE + 1, max_value=10**9))
def test_a_stale_or_future_timestamp_is_refused(skew: int) -> None:
    stale = sign("whsec_x", NOW - skew, b"{}")
    future = sign("whsec_x", NOW + skew, b"{}")
    assert not verify("whsec_x", stale, b"{}", now=NOW)
    assert not verify("whsec_x", future, b"{}", now=NOW)


def test_the_tolerance_can_be_narrowed() -> None:
    header = sign("whsec_x", NOW - 10, b"{}")
    assert verify("whsec_x", header, b"{}", now=NOW, tolerance=10)
    assert not verify("whsec_x", header, b"{}", now=NOW, tolerance=9)


def test_a_replayed_signature_with_a_new_timestamp_fails() -> None:
    old = sign("whsec_x", NOW - 3_600, b"{}")
    replayed = old.replace(f"t={NOW - 3_600}", f"t={NOW}")
    assert not verify("whsec_x", replayed, b"{}", now=NOW)


def test_one_matching_v1_among_several_is_enough_and_other_schemes_are_ignored() -> None:
    good = signature("whsec_new", NOW, b"{}")
    old = signature("whsec_old", NOW, b"{}")
    assert verify("whsec_new", f"t={NOW},v1={old},v1={good}", b"{}", now=NOW)
    assert verify("whsec_new", f"t={NOW}, v0=abc, v1={good}", b"{}", now=NOW)
    assert not verify("whsec_new", f"t={NOW},v0={good}", b"{}", now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        f"v1={signature('whsec_x', NOW, b'{}')}",  # no timestamp
        f"t={NOW}",  # no signature
        f"t={NOW},t={NOW},v1={signature('whsec_x', NOW, b'{}')}",  # two timestamps
        f"t=-{NOW},v1={signature('whsec_x', NOW, b'{}')}",
        f"t={NOW}.5,v1={signature('whsec_x', NOW, b'{}')}",
        f"t=１７６４５４７２００,v1={signature('whsec_x', NOW, b'{}')}",  # full-width digits
        f"t={'9' * 5000},v1=00",
        f"t={NOW},v1=é{signature('whsec_x', NOW, b'{}')[1:]}",
        f"t={NOW},v1={signature('whsec_x', NOW, b'{}').upper()}",
    ],
)
def test_a_malformed_header_is_refused_without_raising(header: str) -> None:
    assert not verify("whsec_x", header, b"{}", now=NOW)


@given(header=st.text(max_size=300), body=bodies)
def test_verify_never_raises_whatever_the_header(header: str, body: bytes) -> None:
    assert verify("whsec_x", header, body, now=NOW) in (True, False)


def test_a_negative_timestamp_cannot_be_signed() -> None:
    with pytest.raises(ValueError, match="never negative"):
        sign("whsec_x", -1, b"{}")
