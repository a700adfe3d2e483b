from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflows.access import (
    ALL_STAFF_ROLES,
    ROLE_PERMISSIONS,
    Permission,
    Role,
    can,
    mask_date_of_birth,
    mask_email,
    mask_national_id,
    mask_phone,
    roles_with,
)


def test_every_staff_role_may_view_accounts() -> None:
    assert roles_with(Permission.VIEW_ACCOUNTS) == ALL_STAFF_ROLES == set(ROLE_PERMISSIONS)


def test_only_staff_who_talk_to_borrowers_see_personal_data() -> None:
    assert roles_with(Permission.REVEAL_PERSONAL_DATA) == {
        Role.AGENT,
        Role.SUPERVISOR,
        Role.COLLECTOR,
    }
    assert not can(Role.FINANCE, Permission.REVEAL_PERSONAL_DATA)
    assert not can(Role.ADMIN, Permission.REVEAL_PERSONAL_DATA)


def test_only_admins_manage_staff() -> None:
    assert roles_with(Permission.MANAGE_STAFF) == {Role.ADMIN}
    assert can("admin", Permission.MANAGE_STAFF)


def test_only_finance_and_admins_manage_payments_and_refunds() -> None:
    assert roles_with(Permission.MANAGE_PAYMENTS) == {Role.FINANCE, Role.ADMIN}
    assert not can(Role.AGENT, Permission.MANAGE_PAYMENTS)
    assert not can(Role.COLLECTOR, Permission.MANAGE_PAYMENTS)


def test_collectors_supervisors_and_admins_work_collections() -> None:
    assert roles_with(Permission.WORK_COLLECTIONS) == {Role.COLLECTOR, Role.SUPERVISOR, Role.ADMIN}
    assert not can(Role.AGENT, Permission.WORK_COLLECTIONS)
    assert not can(Role.FINANCE, Permission.WORK_COLLECTIONS)


def test_only_supervisors_and_admins_decide_legal_referrals() -> None:
    assert roles_with(Permission.SUPERVISE_COLLECTIONS) == {Role.SUPERVISOR, Role.ADMIN}
    assert not can(Role.COLLECTOR, Permission.SUPERVISE_COLLECTIONS)


@pytest.mark.parametrize("role", ["", "root", "Admin", "borrower"])
def test_an_unknown_role_may_do_nothing(role: str) -> None:
    assert not any(can(role, permission) for permission in Permission)


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+8613812345678", "+86138******78"),
        ("+86 138 1234 5678", "+86138******78"),
        ("13812345678", "138******78"),
        ("12345", "*****"),
        ("", ""),
    ],
)
def test_phone_numbers_show_only_their_ends(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


@given(st.text())
def test_masked_phone_never_shows_more_than_seven_digits_or_hides_fewer_than_four(
    phone: str,
) -> None:
    digits = [char for char in phone if char.isdecimal()]
    masked = mask_phone(phone)
    shown = [char for char in masked if char.isdecimal()]
    assert len(shown) <= 7
    assert masked.count("*") >= min(len(digits), 4)
    assert len(shown) + masked.count("*") == len(digits)


def test_email_shows_first_letter_and_domain() -> None:
    assert mask_email("zhang.wei@example.com") == "z***@example.com"
    assert mask_email("not-an-email") == "***"
    assert mask_email("@example.com") == "***"


@given(st.text())
def test_masked_email_never_shows_more_than_one_letter_of_the_name(email: str) -> None:
    masked = mask_email(email)
    local, _, domain = masked.partition("***")
    assert len(local) <= 1
    assert domain == "" or domain.startswith("@")


@given(st.dates())
def test_date_of_birth_shows_only_the_year(born_on: date) -> None:
    masked = mask_date_of_birth(born_on)
    assert masked == f"{born_on.year:04d}-**-**"


def test_national_id_shows_first_two_and_last_two() -> None:
    assert mask_national_id("110101199003071234") == "11**************34"
    assert mask_national_id("AB12") == "****"


@given(st.text())
def test_masked_national_id_hides_all_but_four_characters(national_id: str) -> None:
    masked = mask_national_id(national_id)
    assert len(masked) - masked.count("*") <= 4
    if len(masked) - masked.count("*"):
        assert masked.count("*") >= 4
