"""The contact gate: the rules read the borrower's country, time zone, history and choices, an
open dispute and a breathing space; a contact they refuse is never recorded."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.models import AccountPause, ContactAttempt, ContactPreference, DebtDispute
from portal.services import contact
from portal.services.audit import SYSTEM
from tests import factories
from workflows.contact_policy import Channel, Party, RefusalCode

# 10:00 in Shanghai (UTC+8) on a weekday; 23:30 in Shanghai.
MORNING = dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC)
LATE_NIGHT = dt.datetime(2026, 11, 30, 15, 30, tzinfo=dt.UTC)


def _attempts(session: Session, account_id: int) -> int:
    return session.scalar(select(func.count()).where(ContactAttempt.account_id == account_id)) or 0


def test_a_call_in_the_window_is_recorded_and_counted(session: Session) -> None:
    account = factories.account(session)
    phone = account.borrower.phone
    before = contact.counter(session, account, phone, MORNING)
    assert before.attempts_left_today == 6
    contact.record_attempt(
        session, account, channel=Channel.CALL, outcome="no_answer", actor=SYSTEM, address=phone, at=MORNING
    )
    after = contact.counter(session, account, phone, MORNING + dt.timedelta(minutes=5))
    assert after.attempts_left_today == 5
    assert _attempts(session, account.id) == 1


def test_a_call_logged_outside_the_window_is_refused_and_nothing_is_written(session: Session) -> None:
    account = factories.account(session)
    with pytest.raises(contact.ContactRefusedError) as refused:
        contact.record_attempt(
            session,
            account,
            channel=Channel.CALL,
            outcome="reached",
            actor=SYSTEM,
            address=account.borrower.phone,
            at=LATE_NIGHT,
        )
    assert RefusalCode.OUTSIDE_HOURS in refused.value.decision.codes
    # The next allowed moment is 08:00 the next morning in Shanghai.
    assert refused.value.decision.next_allowed_utc == dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC)
    assert _attempts(session, account.id) == 0


def test_the_seventh_call_of_a_day_to_one_number_is_refused(session: Session) -> None:
    account = factories.account(session)
    phone = account.borrower.phone
    for n in range(6):
        contact.record_attempt(
            session,
            account,
            channel=Channel.CALL,
            outcome="no_answer",
            actor=SYSTEM,
            address=phone,
            at=MORNING + dt.timedelta(minutes=10 * n),
        )
    decision = contact.check(
        session, account, Channel.CALL, when=MORNING + dt.timedelta(hours=2), address=phone
    )
    assert not decision.allowed
    assert RefusalCode.DAILY_CALL_CAP in decision.codes
    assert contact.counter(session, account, phone, MORNING + dt.timedelta(hours=2)).attempts_left_today == 0


def test_opt_out_cease_contact_dispute_and_breathing_space_each_stop_contact(session: Session) -> None:
    account = factories.account(session)
    assert contact.check(session, account, Channel.SMS, when=MORNING, includes_opt_out=True).allowed

    session.add(ContactPreference(borrower_id=account.borrower_id, opted_out_channels=["sms"]))
    session.flush()
    assert (
        RefusalCode.OPTED_OUT
        in contact.check(session, account, Channel.SMS, when=MORNING, includes_opt_out=True).codes
    )
    assert contact.check(session, account, Channel.CALL, when=MORNING).allowed

    dispute = DebtDispute(
        account_id=account.id, borrower_id=account.borrower_id, reason="amount_wrong", detail="x"
    )
    session.add(dispute)
    session.flush()
    decision = contact.check(session, account, Channel.CALL, when=MORNING)
    assert RefusalCode.DISPUTE_OPEN in decision.codes
    assert decision.next_allowed_utc is None
    dispute.status = "rejected"
    session.flush()
    assert contact.check(session, account, Channel.CALL, when=MORNING).allowed

    session.add(
        AccountPause(
            account_id=account.id,
            starts_on=dt.date(2026, 11, 20),
            ends_on=dt.date(2026, 12, 20),
            stops_fees=True,
            pauses_contact=True,
        )
    )
    session.flush()
    decision = contact.check(session, account, Channel.CALL, when=MORNING)
    assert RefusalCode.BREATHING_SPACE in decision.codes
    assert not decision.allowed

    preference = session.get(ContactPreference, account.borrower_id)
    assert preference is not None
    preference.cease_contact_at = MORNING
    session.flush()
    assert RefusalCode.CEASE_CONTACT in contact.check(session, account, Channel.LETTER, when=MORNING).codes


def test_a_borrower_in_the_united_states_gets_regulation_f(session: Session) -> None:
    owner = factories.borrower(session, country="US", time_zone="America/New_York")
    account = factories.account(session, owner=owner, currency="USD")
    # 10:00 in New York; a conversation two days ago blocks calls for seven days.
    now = dt.datetime(2026, 11, 30, 15, 0, tzinfo=dt.UTC)
    contact.record_attempt(
        session,
        account,
        channel=Channel.CALL,
        outcome="reached",
        actor=SYSTEM,
        address=owner.phone,
        at=now - dt.timedelta(days=2),
    )
    decision = contact.check(session, account, Channel.CALL, Party.BORROWER, now, address=owner.phone)
    assert RefusalCode.AFTER_CONVERSATION in decision.codes
    assert decision.next_allowed_utc is not None and decision.next_allowed_utc >= now + dt.timedelta(days=5)
