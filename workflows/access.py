"""Staff roles, what each may do, and masking of personal data for those who may not see it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from enum import StrEnum
from types import MappingProxyType


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    COLLECTOR = "collector"
    FINANCE = "finance"
    ADMIN = "admin"


ALL_STAFF_ROLES: frozenset[Role] = frozenset(Role)


class Permission(StrEnum):
    VIEW_ACCOUNTS = "view_accounts"
    REVEAL_PERSONAL_DATA = "reveal_personal_data"
    MANAGE_STAFF = "manage_staff"
    WORK_CASES = "work_cases"
    """Work the negotiation queue: claim, decide within authority, counter, ask, reject."""
    SUPERVISE_CASES = "supervise_cases"
    """Second approvals, reassigning cases, the queue's health."""
    MANAGE_PAYMENTS = "manage_payments"
    """See every payment, refund, dispute and suspense item; ask for and approve refunds (a
    refund above the policy's threshold needs a second person holding this permission)."""
    WORK_COLLECTIONS = "work_collections"
    """Work the collection lists: claim call tasks, log calls and promises to pay, plan and record
    home visits, ask for a legal referral."""
    SUPERVISE_COLLECTIONS = "supervise_collections"
    """Approve or reject legal referrals (never one's own request)."""
    MANAGE_INTEGRATION = "manage_integration"
    """Import lenders' placement files, issue and revoke API tokens, set up outgoing webhooks."""


# Only the roles that talk to borrowers see their personal data unmasked; an admin manages
# people and policy, finance reconciles money, and neither needs a phone number for it.
ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = MappingProxyType(
    {
        Role.AGENT: frozenset(
            {Permission.VIEW_ACCOUNTS, Permission.REVEAL_PERSONAL_DATA, Permission.WORK_CASES}
        ),
        Role.SUPERVISOR: frozenset(
            {
                Permission.VIEW_ACCOUNTS,
                Permission.REVEAL_PERSONAL_DATA,
                Permission.WORK_CASES,
                Permission.SUPERVISE_CASES,
                Permission.WORK_COLLECTIONS,
                Permission.SUPERVISE_COLLECTIONS,
            }
        ),
        Role.COLLECTOR: frozenset(
            {Permission.VIEW_ACCOUNTS, Permission.REVEAL_PERSONAL_DATA, Permission.WORK_COLLECTIONS}
        ),
        Role.FINANCE: frozenset({Permission.VIEW_ACCOUNTS, Permission.MANAGE_PAYMENTS}),
        Role.ADMIN: frozenset(
            {
                Permission.VIEW_ACCOUNTS,
                Permission.MANAGE_STAFF,
                Permission.MANAGE_INTEGRATION,
                Permission.MANAGE_PAYMENTS,
                Permission.WORK_COLLECTIONS,
                Permission.SUPERVISE_COLLECTIONS,
            }
        ),
    }
)


def roles_with(permission: Permission) -> frozenset[Role]:
    """The roles that hold a permission."""
    return frozenset(role for role, held in ROLE_PERMISSIONS.items() if permission in held)


def can(role: Role | str, permission: Permission) -> bool:
    """A member of staff may do something only if their role grants it; an unknown role grants nothing."""
    try:
        return permission in ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return False


_MIN_HIDDEN = 4


def mask_phone(phone: str) -> str:
    """Show only the country code with the first digits and the last two: +86138******78."""
    digits = [char for char in phone if char.isdecimal()]
    international = phone.strip().startswith("+")
    head, tail = (5, 2) if international else (3, 2)
    if len(digits) - head - tail < _MIN_HIDDEN:
        # Too short to show both ends without giving most of the number away.
        head, tail = 0, (2 if len(digits) >= _MIN_HIDDEN + 2 else 0)
    hidden = len(digits) - head - tail
    shown_tail = digits[len(digits) - tail :]
    return ("+" if international else "") + "".join(digits[:head]) + "*" * hidden + "".join(shown_tail)


def mask_email(email: str) -> str:
    """Show the first letter and the domain: z***@example.com."""
    local, at, domain = email.strip().rpartition("@")
    if not at or not local:
        return "***"
    return f"{local[0]}***@{domain}"


def mask_date_of_birth(born_on: date) -> str:
    """Show only the year of birth: 1985-**-**."""
    return f"{born_on.year:04d}-**-**"


def mask_national_id(national_id: str) -> str:
    """Show the first two and last two characters of an identity number, nothing if it is short."""
    value = national_id.strip()
    if len(value) < 4 + _MIN_HIDDEN:
        return "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]
