"""The keyring: AES-256-GCM seals that open only with their key and in their place."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal import crypto
from portal.config import ConfigError
from portal.crypto import DecryptionError, Keyring


def _ring(*ids: str) -> Keyring:
    return crypto.parse_keys(",".join(crypto.new_key_text(key_id) for key_id in ids))


@given(plaintext=st.binary(max_size=4096), where=st.text(max_size=40))
def test_a_sealed_value_opens_to_itself_and_hides_it(plaintext: bytes, where: str) -> None:
    ring = _ring("k1")
    sealed = ring.seal(plaintext, where.encode())
    assert ring.open(sealed, where.encode()) == plaintext
    assert ring.key_id_of(sealed) == "k1"
    if len(plaintext) >= 8:
        assert plaintext not in sealed


def test_the_same_value_is_sealed_differently_every_time() -> None:
    ring = _ring("k1")
    assert ring.seal(b"1985-06-01", b"borrower.date_of_birth") != ring.seal(
        b"1985-06-01", b"borrower.date_of_birth"
    )


def test_a_value_moved_to_another_column_does_not_open() -> None:
    ring = _ring("k1")
    sealed = ring.seal(b"110101198506010011", b"borrower.national_id")
    with pytest.raises(DecryptionError, match="altered, or moved"):
        ring.open(sealed, b"hardship_case.description")


@given(position=st.integers(min_value=0))
def test_any_altered_byte_is_refused(position: int) -> None:
    ring = _ring("k1")
    sealed = bytearray(ring.seal(b"a household's income", b"budget_line.explanation"))
    index = position % len(sealed)
    sealed[index] ^= 0x01
    with pytest.raises(DecryptionError):
        ring.open(bytes(sealed), b"budget_line.explanation")


def test_an_old_key_still_opens_what_it_sealed_and_the_current_one_seals() -> None:
    old = _ring("2025")
    sealed = old.seal(b"value", b"t.c")
    both = Keyring({**old.keys, "2026": _ring("2026").keys["2026"]}, "2026")
    assert both.open(sealed, b"t.c") == b"value"
    assert both.key_id_of(both.seal(b"value", b"t.c")) == "2026"
    without_old = Keyring({"2026": both.keys["2026"]}, "2026")
    with pytest.raises(DecryptionError, match="'2025' is not configured"):
        without_old.open(sealed, b"t.c")


def test_files_are_sealed_behind_a_marker_and_files_stored_in_the_clear_are_still_read() -> None:
    ring = _ring("k1")
    pdf = b"%PDF-1.7 a payslip"
    stored = ring.seal_file(pdf, "ab" * 16 + ".pdf")
    assert stored.startswith(crypto.FILE_MAGIC) and pdf not in stored
    assert ring.open_file(stored, "ab" * 16 + ".pdf") == pdf
    assert ring.file_key_id(stored) == "k1"
    with pytest.raises(DecryptionError):
        ring.open_file(stored, "cd" * 16 + ".pdf")  # under another name
    assert ring.open_file(pdf, "ab" * 16 + ".pdf") == pdf
    assert ring.file_key_id(pdf) is None


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("", "names no key"),
        ("k1", "each key is id:base64"),
        ("bad id:" + base64.urlsafe_b64encode(b"x" * 32).decode(), "each key is id:base64"),
        ("k1:" + base64.urlsafe_b64encode(b"x" * 16).decode(), "must be 32 bytes, not 16"),
        ("k1:%%%", "not base64"),
        ("k1:{k},k1:{k}".format(k=base64.urlsafe_b64encode(b"x" * 32).decode()), "appears twice"),
    ],
)
def test_a_wrong_key_setting_is_refused_with_what_is_wrong(setting: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        crypto.parse_keys(setting)


def test_the_first_key_is_current_and_production_needs_keys_of_its_own() -> None:
    text = f"{crypto.new_key_text('new')},{crypto.new_key_text('old')}"
    assert crypto.keyring_from_config({"ENCRYPTION_KEYS": text}).current == "new"
    assert crypto.keyring_from_config({"ACCORD_ENV": "development"}) is crypto.DEVELOPMENT_KEYRING
    with pytest.raises(ConfigError, match="must be set in production"):
        crypto.keyring_from_config({"ACCORD_ENV": "production"})


def test_column_types_refuse_values_of_another_type() -> None:
    with pytest.raises(TypeError, match="holds a date"):
        crypto.EncryptedDate("borrower.date_of_birth").encode(dt.datetime(1985, 6, 1))
    with pytest.raises(TypeError, match="holds an integer"):
        crypto.EncryptedInteger("budget_line.amount").encode(True)
    with pytest.raises(TypeError, match="holds text"):
        crypto.EncryptedText("borrower.national_id").encode(12345)


@given(day=st.dates(), amount=st.integers(min_value=0, max_value=2**62), text=st.text(max_size=200))
def test_column_types_round_trip(day: dt.date, amount: int, text: str) -> None:
    crypto.install(crypto.DEVELOPMENT_KEYRING)
    date_type = crypto.EncryptedDate("t.d")
    int_type = crypto.EncryptedInteger("t.i")
    text_type = crypto.EncryptedText("t.t")
    for kind, value in ((date_type, day), (int_type, amount), (text_type, text)):
        sealed = kind.process_bind_param(value, None)  # type: ignore[arg-type]
        assert isinstance(sealed, bytes)
        assert kind.process_result_value(sealed, None) == value  # type: ignore[arg-type]
    assert date_type.process_bind_param(None, None) is None  # type: ignore[arg-type]
