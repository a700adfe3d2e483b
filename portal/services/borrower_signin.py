"""Borrower sign-in without a password: identify (reference or phone, and date of birth), then a
one-time code sent to the phone or e-mail already on file.

Whatever the details, step 1 does the same work and gives the same answer, so nobody learns
from it whether a person has a debt with us.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from dataclasses import dataclass

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import func, select, union
from sqlalchemy.orm import Session

from portal.db import among, utcnow
from portal.integrations.notify import Message
from portal.models import Account, Borrower, SigninAttempt, SigninCode
from portal.services import audit
from portal.services.audit import Actor
from workflows import signin as rules
from workflows.errors import DomainError

MAX_IDENTIFIER = 64
E164_MAX_DIGITS = 15


@dataclass(frozen=True)
class Started:
    token: str  # kept in the browser's session; binds the code to this browser
    message: Message | None  # what to send (None when the details matched nobody)


MAX_CANDIDATES = 20
"""Borrowers one identifier can name (a reference is unique per lender; a phone may be shared by a
household): more are not compared, so a crafted identifier cannot make step 1 slow."""


def registered_phones(digits: str) -> list[str]:
    """The phones on file (E.164) that a phone number typed whole can be: itself, and, typed
    without its leading ``+``, also as a national number after any country code (1 to 3 digits,
    the first not 0) that keeps it within E.164's 15 digits. Looked up by equality, on the phone's
    index."""
    national = digits.lstrip("+")
    phones = ["+" + national]
    if not digits.startswith("+"):
        room = E164_MAX_DIGITS - len(national)
        phones += [f"+{code}{national}" for code in range(1, 10 ** min(3, room))]
    return phones


def _find_borrower(session: Session, identifier: str, born_on: dt.date) -> Borrower | None:
    identifier = identifier.strip()
    digits = re.sub(r"[\s\-()]", "", identifier)
    dialect = session.get_bind().dialect.name
    # Each way in uses an index: the reference typed in any case (ix_account_reference_upper),
    # a registered phone (ix_borrower_phone). A borrower with no account identifies nobody.
    owners = [select(Account.borrower_id).where(func.upper(Account.external_reference) == identifier.upper())]
    if re.fullmatch(r"\+?\d{10,15}", digits):
        # A registered phone, typed whole: in E.164, or the national number without the country
        # code (at least 10 digits, so a fragment of someone's number identifies nobody).
        owners.append(
            select(Account.borrower_id)
            .join(Borrower, Borrower.id == Account.borrower_id)
            .where(among(Borrower.phone, registered_phones(digits), dialect=dialect))
        )
    stmt = (
        select(Borrower)
        .where(Borrower.id.in_(union(*owners)), Borrower.date_of_birth.is_not(None))
        .order_by(Borrower.id)
        .limit(MAX_CANDIDATES)
    )
    # The date of birth is sealed (a new nonce each time it is written), so it is compared here,
    # once it has been opened, and every candidate is compared: the work does not depend on which
    # one matches.
    found = None
    for candidate in session.scalars(stmt):
        born = candidate.date_of_birth
        if born is not None and hmac.compare_digest(born.isoformat(), born_on.isoformat()) and found is None:
            found = candidate
    return found


def _code_message(borrower: Borrower, channel: str, code: str) -> Message:
    # The message names neither the debt nor the lender: a phone's lock screen shows it.
    with force_locale(borrower.language):
        body = _(
            "Your Accord sign-in code is %(code)s. It is valid for 10 minutes. Never share it.",
            code=code,
        )
        subject = _("Your Accord sign-in code")
    recipient = borrower.phone if channel == "sms" else borrower.email
    assert recipient is not None
    return Message(channel, recipient, body, "signin_code", subject=subject, secret=True)


def _issue_code(
    session: Session, attempt: SigninAttempt, borrower: Borrower | None, token: str, key: bytes
) -> Message | None:
    code = rules.new_code()
    channel = "sms" if borrower is None or borrower.phone else "email"
    session.add(
        SigninCode(
            attempt_id=attempt.id,
            borrower_id=borrower.id if borrower else None,
            channel=channel,
            code_hash=rules.code_digest(key, token, code),
            expires_at=utcnow() + rules.CODE_LIFETIME,
        )
    )
    return _code_message(borrower, channel, code) if borrower is not None else None


def start(session: Session, *, identifier: str, born_on: dt.date, ip: str | None, key: bytes) -> Started:
    """Step 1: record the attempt and, when the details match, a code for the contact on file."""
    if not identifier.strip() or len(identifier) > MAX_IDENTIFIER:
        raise DomainError("identifier_invalid", "Enter your account reference or phone number.")
    borrower = _find_borrower(session, identifier, born_on)
    token = rules.new_attempt_token()
    attempt = SigninAttempt(
        token_hash=rules.digest(key, token), borrower_id=borrower.id if borrower else None, ip=ip
    )
    session.add(attempt)
    session.flush()
    reachable = borrower is not None and bool(borrower.phone or borrower.email)
    if reachable and rules.resend_wait(_recent_code_times(session, attempt.borrower_id), utcnow()) is None:
        message = _issue_code(session, attempt, borrower, token, key)
    else:
        # Nobody matched, nobody can be reached, or this borrower had three codes in 15 minutes:
        # the same work and the same next page, with a code nobody receives (a resend says "wait").
        message = None
        _issue_code(session, attempt, None, token, key)
    session.commit()
    return Started(token, message)


def _recent_code_times(session: Session, borrower_id: int) -> list[dt.datetime]:
    since = utcnow() - rules.RESEND_WINDOW
    return list(
        session.scalars(
            select(SigninCode.created_at).where(
                SigninCode.borrower_id == borrower_id, SigninCode.created_at > since
            )
        )
    )


def _attempt(session: Session, token: str | None, key: bytes, purpose: str = "signin") -> SigninAttempt:
    attempt = (
        session.scalar(select(SigninAttempt).where(SigninAttempt.token_hash == rules.digest(key, token)))
        if token
        else None
    )
    if (
        attempt is None
        or attempt.purpose != purpose
        or attempt.completed_at is not None
        or utcnow() - attempt.created_at > dt.timedelta(hours=1)
    ):
        raise DomainError("signin_expired", "Please start again.")
    return attempt


def resend(session: Session, *, token: str | None, key: bytes) -> Message | None:
    """A new code for the same attempt (the old one stops working), at most three in 15 minutes."""
    attempt = _attempt(session, token, key)
    assert token is not None
    borrower = session.get(Borrower, attempt.borrower_id) if attempt.borrower_id else None
    if borrower is not None:
        times = _recent_code_times(session, borrower.id)
    else:
        since = utcnow() - rules.RESEND_WINDOW
        times = list(
            session.scalars(
                select(SigninCode.created_at).where(
                    SigninCode.attempt_id == attempt.id, SigninCode.created_at > since
                )
            )
        )
    wait = rules.resend_wait(times, utcnow())
    if wait is not None:
        raise DomainError(
            "resend_wait",
            "Please wait {minutes} minutes before asking for another code.",
            minutes=max(1, -(-int(wait.total_seconds()) // 60)),
        )
    _invalidate_codes(session, attempt)
    message = _issue_code(session, attempt, borrower, token, key)
    session.commit()
    return message


def _invalidate_codes(session: Session, attempt: SigninAttempt) -> None:
    for code in session.scalars(
        select(SigninCode).where(SigninCode.attempt_id == attempt.id, SigninCode.used_at.is_(None))
    ):
        code.used_at = utcnow()


def verify(session: Session, *, token: str | None, typed: str, key: bytes) -> Borrower:
    """Step 2: the newest code of this attempt, if it matches, signs the borrower in (once)."""
    attempt = _attempt(session, token, key)
    code = _accept_code(session, attempt, token, typed, key)
    borrower = session.get(Borrower, attempt.borrower_id)
    assert borrower is not None
    audit.record(
        session,
        Actor("borrower", borrower.id),
        "borrower.signed_in",
        "borrower",
        borrower.id,
        after={"channel": code.channel},
    )
    session.commit()
    return borrower


def step_up_start(session: Session, borrower: Borrower, *, key: bytes) -> tuple[str, Message]:
    """A fresh code for a signed-in borrower about to sign (step-up), to the phone or e-mail on
    file, under the same rules as sign-in codes (hashed, 10 minutes, single use, 5 tries, at most
    three in 15 minutes). Returns the attempt's token (kept in the session) and the message."""
    if not (borrower.phone or borrower.email):
        raise DomainError("no_contact", "We hold no phone number or e-mail address to send a code to.")
    wait = rules.resend_wait(_recent_code_times(session, borrower.id), utcnow())
    if wait is not None:
        raise DomainError(
            "resend_wait",
            "Please wait {minutes} minutes before asking for another code.",
            minutes=max(1, -(-int(wait.total_seconds()) // 60)),
        )
    token = rules.new_attempt_token()
    attempt = SigninAttempt(token_hash=rules.digest(key, token), borrower_id=borrower.id, purpose="step_up")
    session.add(attempt)
    session.flush()
    message = _issue_code(session, attempt, borrower, token, key)
    assert message is not None
    session.commit()
    return token, message


def step_up_verify(
    session: Session, borrower: Borrower, *, token: str | None, typed: str, key: bytes
) -> SigninCode:
    """The step-up code typed by the signed-in borrower: the code (its channel and time), once."""
    attempt = _attempt(session, token, key, purpose="step_up")
    if attempt.borrower_id != borrower.id:
        raise DomainError("signin_expired", "Please start again.")
    code = _accept_code(session, attempt, token, typed, key)
    audit.record(
        session,
        Actor("borrower", borrower.id),
        "borrower.step_up_verified",
        "borrower",
        borrower.id,
        after={"channel": code.channel},
    )
    return code


def _accept_code(
    session: Session, attempt: SigninAttempt, token: str | None, typed: str, key: bytes
) -> SigninCode:
    """The newest code of the attempt, checked and used up; a wrong one counts a try (committed)."""
    assert token is not None
    code = session.scalar(
        select(SigninCode).where(SigninCode.attempt_id == attempt.id).order_by(SigninCode.id.desc()).limit(1)
    )
    normalised = rules.normalise_code(typed)
    if normalised is None:
        raise DomainError("code_format", "Enter the 6 digits of the code we sent.")
    if code is None:
        raise DomainError("signin_expired", "Please start again.")
    now = utcnow()
    matches = attempt.borrower_id is not None and rules.code_digest(key, token, normalised) == code.code_hash
    result = rules.check_code(
        matches=matches,
        created_at=code.created_at,
        used=code.used_at is not None,
        wrong_tries=code.wrong_tries,
        now=now,
    )
    if result is rules.CodeCheck.WRONG:
        code.wrong_tries += 1
        session.commit()
        if code.wrong_tries >= rules.MAX_WRONG_TRIES:
            raise DomainError(
                rules.CodeCheck.TOO_MANY_TRIES.value, "Too many wrong codes. Ask for a new code."
            )
        raise DomainError(result.value, "That code is not right. Check it and try again.")
    if result is not rules.CodeCheck.ACCEPTED:
        raise DomainError(result.value, "This code can no longer be used. Ask for a new code.")
    code.used_at = now
    attempt.completed_at = now
    return code


def sign_out_everywhere(session: Session, borrower: Borrower) -> None:
    with audit.change(
        session,
        Actor("borrower", borrower.id),
        "borrower.signed_out_everywhere",
        borrower,
        ["session_version"],
    ):
        borrower.session_version += 1
    session.commit()
