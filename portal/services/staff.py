"""Staff accounts and their sign-in: password (argon2id) then a single-use TOTP code."""

from __future__ import annotations

import datetime as dt
import hmac
import re

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.models import StaffUser
from portal.services import audit
from portal.services.audit import Actor
from workflows.access import Role
from workflows.errors import DomainError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when the e-mail is unknown, so both answers take the same time.
_DUMMY_HASH = _hasher.hash("accord-timing-equaliser")
TOTP_STEP = 30
TOTP_ISSUER = "Accord"
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{2,}$")
AUDITED_FIELDS = ("email", "full_name", "role", "is_active", "session_version", "totp_enrolled")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def normalise_email(email: str) -> str:
    return email.strip().lower()


def authenticate_password(session: Session, email: str, password: str) -> StaffUser | None:
    """The active staff user with this e-mail and password, else ``None`` (same time either way)."""
    user = session.scalar(select(StaffUser).where(StaffUser.email == normalise_email(email)))
    stored = user.password_hash if user is not None else _DUMMY_HASH
    try:
        _hasher.verify(stored, password[:MAX_PASSWORD_LENGTH])
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.is_active:
        return None
    return user


def start_totp_enrolment(session: Session, user: StaffUser) -> str:
    """Give a user without a confirmed authenticator a secret to scan (kept until confirmed)."""
    if user.totp_enrolled:
        raise DomainError("totp_already_enrolled", "An authenticator is already set up.")
    if user.totp_secret is None:
        user.totp_secret = pyotp.random_base32()
        audit.record(session, Actor.staff(user), "staff.totp_enrolment_started", "staff_user", user.id)
        session.commit()
    return user.totp_secret


def provisioning_uri(user: StaffUser) -> str:
    assert user.totp_secret is not None
    return pyotp.TOTP(user.totp_secret).provisioning_uri(name=user.email, issuer_name=TOTP_ISSUER)


def _matching_step(secret: str, code: str, now: dt.datetime) -> int | None:
    """The time step whose code equals ``code``, allowing one step of clock drift each way."""
    code = code.strip().replace(" ", "")
    if not re.fullmatch(r"\d{6}", code):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // TOTP_STEP
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def verify_totp(session: Session, user: StaffUser, code: str, now: dt.datetime | None = None) -> bool:
    """Accept a code once: a code already used (or older than the last one used) is refused.

    The first accepted code confirms enrolment. Success records the sign-in and commits.
    """
    now = now or utcnow()
    if user.totp_secret is None or not user.is_active:
        return False
    step = _matching_step(user.totp_secret, code, now)
    if step is None or (user.totp_last_step is not None and step <= user.totp_last_step):
        return False
    user.totp_last_step = step
    if not user.totp_enrolled:
        with audit.change(session, Actor.staff(user), "staff.totp_enrolled", user, ["totp_enrolled"]):
            user.totp_confirmed_at = now
    user.last_signed_in_at = now
    audit.record(session, Actor.staff(user), "staff.signed_in", "staff_user", user.id)
    session.commit()
    return True


def current_totp(user: StaffUser) -> str:
    """The code an authenticator app would show now (the demo's `flask demo totp`)."""
    if user.totp_secret is None:
        raise DomainError("totp_not_set_up", "This user has no authenticator secret yet.")
    return pyotp.TOTP(user.totp_secret).now()


def _validate_new_staff(session: Session, email: str, full_name: str, role: str, password: str) -> None:
    if not EMAIL_RE.match(email) or len(email) > 254:
        raise DomainError("email_invalid", "Enter a valid e-mail address.")
    if not full_name.strip() or len(full_name) > 200:
        raise DomainError("name_invalid", "Enter a name of 1 to 200 characters.")
    if role not in {r.value for r in Role}:
        raise DomainError("role_invalid", "Choose one of the listed roles.")
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise DomainError(
            "password_length",
            "The password must have {min} to {max} characters.",
            min=MIN_PASSWORD_LENGTH,
            max=MAX_PASSWORD_LENGTH,
        )
    if session.scalar(select(func.count()).where(StaffUser.email == email)):
        raise DomainError("email_taken", "A staff user with this e-mail already exists.")


def create_staff(
    session: Session, actor: Actor, *, email: str, full_name: str, role: str, password: str
) -> StaffUser:
    """Create a staff user who sets up an authenticator at first sign-in."""
    email = normalise_email(email)
    _validate_new_staff(session, email, full_name, role, password)
    user = StaffUser(
        email=email, full_name=full_name.strip(), role=role, password_hash=hash_password(password)
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor,
        "staff.created",
        "staff_user",
        user.id,
        after=audit.snapshot(user, AUDITED_FIELDS),
    )
    session.commit()
    return user


def _load(session: Session, user_id: int) -> StaffUser:
    user = session.get(StaffUser, user_id)
    if user is None:
        raise DomainError("staff_not_found", "No such staff user.")
    return user


def reset_totp(session: Session, actor: Actor, user_id: int) -> StaffUser:
    """Forget a user's authenticator (lost phone): they enrol again, and their sessions end."""
    user = _load(session, user_id)
    with audit.change(session, actor, "staff.totp_reset", user, AUDITED_FIELDS):
        user.totp_secret = None
        user.totp_confirmed_at = None
        user.totp_last_step = None
        user.session_version += 1
    session.commit()
    return user


def set_active(session: Session, actor: Actor, user_id: int, active: bool) -> StaffUser:
    """Disable or re-enable a staff user; disabling ends their sessions at once."""
    user = _load(session, user_id)
    if actor.type == "staff" and actor.id == user.id and not active:
        raise DomainError("cannot_disable_self", "You cannot disable your own account.")
    if user.is_active == active:
        return user
    with audit.change(session, actor, "staff.enabled" if active else "staff.disabled", user, AUDITED_FIELDS):
        user.is_active = active
        user.session_version += 1
    session.commit()
    return user


def sign_out_everywhere(session: Session, user: StaffUser) -> None:
    with audit.change(session, Actor.staff(user), "staff.signed_out_everywhere", user, ["session_version"]):
        user.session_version += 1
    session.commit()
