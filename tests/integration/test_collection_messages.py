"""Collection messages: the run's pending messages go out only as the contact rules allow at that
moment — sent (with an opt-out link, no amount in a text), deferred to the next allowed time, or
blocked for a lasting reason — and letters leave as one PDF batch. The opt-out link works once,
changes nothing the second time, and a tampered one is refused."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.integrations.storage import document_storage_from_config
from portal.models import (
    Account,
    AuditEvent,
    CollectionAction,
    ContactAttempt,
    ContactPreference,
    DebtDispute,
    OutboundMessage,
)
from portal.services import collection_messages
from portal.services import contact as contact_service
from portal.tasks import send_message
from tests import factories
from workflows.contact_policy import Channel, RefusalCode

# 10:00 and 23:30 in Shanghai (UTC+8), where the factories' borrowers live.
MORNING = dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC)
LATE_NIGHT = dt.datetime(2026, 11, 30, 15, 30, tzinfo=dt.UTC)
NEXT_MORNING_0800 = dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC)
RUN_DATE = dt.date(2026, 11, 30)
OPT_OUT_URL = re.compile(r"https?://\S+/opt-out/(\S+)")


@pytest.fixture(autouse=True)
def _app_context(app: Flask) -> Iterator[None]:
    with app.app_context():
        yield


def _overdue_account(session: Session, *, language: str = "en", **borrower_fields: object) -> Account:
    owner = factories.borrower(session, language=language, **borrower_fields)
    account = factories.account(session, principal=1_200_000, owner=owner)
    account.oldest_unpaid_due_on = RUN_DATE - dt.timedelta(days=35)
    account.dpd, account.stage, account.overdue_amount = 35, "mid", 123_456
    session.commit()
    return account


def _action(
    session: Session,
    account: Account,
    kind: str,
    *,
    template: str | None = None,
    run_date: dt.date = RUN_DATE,
) -> CollectionAction:
    channel = {"sms": "sms", "email": "email", "letter": "letter"}.get(kind)
    row = CollectionAction(
        account_id=account.id,
        run_date=run_date,
        rule_key=f"test:{kind}:{template}",
        kind=kind,
        channel=channel,
        template=template,
        stage=account.stage,
    )
    session.add(row)
    session.commit()
    return row


def _attempts(session: Session, action: CollectionAction) -> list[ContactAttempt]:
    return list(session.scalars(select(ContactAttempt).where(ContactAttempt.action_id == action.id)))


def _deliver(report: collection_messages.DispatchReport) -> None:
    for message in report.messages:
        send_message(message.to_dict())


def test_an_allowed_text_message_is_sent_recorded_and_carries_an_opt_out_link_but_no_amount(
    session: Session,
) -> None:
    account = _overdue_account(session)
    action = _action(session, account, "sms", template="overdue_sms")

    report = collection_messages.dispatch(session, MORNING)
    _deliver(report)

    session.refresh(action)
    assert (action.status, action.done_at) == ("sent", MORNING)
    [attempt] = _attempts(session, action)
    assert (attempt.channel, attempt.outcome, attempt.address) == ("sms", "sent", account.borrower.phone)
    [message] = report.messages
    assert message.channel == "sms" and message.recipient == account.borrower.phone
    assert OPT_OUT_URL.search(message.body), message.body
    assert "1,234.56" not in message.body and "1234" not in message.body  # never an amount on a lock screen
    assert account.external_reference not in message.body
    kept = session.scalar(select(OutboundMessage).where(OutboundMessage.recipient == account.borrower.phone))
    assert kept is not None and kept.purpose == "collection_sms"


def test_an_email_may_state_the_amount_to_the_borrower(session: Session) -> None:
    account = _overdue_account(session)
    action = _action(session, account, "email", template="overdue_email")
    report = collection_messages.dispatch(session, MORNING)
    [message] = report.messages
    assert message.channel == "email" and message.recipient == account.borrower.email
    assert "1,234.56" in message.body
    assert account.external_reference in (message.subject or "")
    assert OPT_OUT_URL.search(message.body)
    session.refresh(action)
    assert action.status == "sent"


def test_a_chinese_speaking_borrower_gets_the_chinese_text(session: Session) -> None:
    account = _overdue_account(session, language="zh_Hans_CN")
    _action(session, account, "sms", template="overdue_sms")
    [message] = collection_messages.dispatch(session, MORNING).messages
    assert "请登录" in message.body
    assert "退订" in message.body or "opt-out" in message.body  # the opt-out line, translated or not


def test_outside_the_allowed_hours_a_message_waits_until_the_next_allowed_time(session: Session) -> None:
    account = _overdue_account(session)
    action = _action(session, account, "sms", template="overdue_sms")

    report = collection_messages.dispatch(session, LATE_NIGHT)
    assert (report.sent, report.deferred) == (0, 1)
    session.refresh(action)
    assert (action.status, action.next_allowed_at) == ("pending", NEXT_MORNING_0800)
    assert _attempts(session, action) == []

    # Looked at again before then, it is not even considered; from 08:00 it goes out.
    assert collection_messages.dispatch(session, LATE_NIGHT + dt.timedelta(hours=2)).deferred == 0
    later = collection_messages.dispatch(session, NEXT_MORNING_0800 + dt.timedelta(minutes=1))
    assert later.sent == 1
    session.refresh(action)
    assert action.status == "sent"


@pytest.mark.parametrize(
    ("arrange", "reason"),
    [
        ("opted_out", RefusalCode.OPTED_OUT),
        ("cease", RefusalCode.CEASE_CONTACT),
        ("dispute", RefusalCode.DISPUTE_OPEN),
    ],
)
def test_a_lasting_refusal_blocks_the_message_with_its_reason(
    session: Session, arrange: str, reason: RefusalCode
) -> None:
    account = _overdue_account(session)
    if arrange == "opted_out":
        session.add(ContactPreference(borrower_id=account.borrower_id, opted_out_channels=["sms"]))
    elif arrange == "cease":
        session.add(ContactPreference(borrower_id=account.borrower_id, cease_contact_at=MORNING))
    else:
        session.add(
            DebtDispute(account_id=account.id, borrower_id=account.borrower_id, reason="not_mine", detail="x")
        )
    session.commit()
    sms = _action(session, account, "sms", template="overdue_sms")
    letter = _action(session, account, "letter", template="consequences_letter")

    report = collection_messages.dispatch(session, MORNING)

    session.refresh(sms)
    session.refresh(letter)
    assert (sms.status, sms.blocked_reason) == ("blocked", str(reason))
    assert report.messages == []
    assert _attempts(session, sms) == []
    # A text opt-out leaves letters alone; a request to stop, or a dispute, stops them too.
    if arrange == "opted_out":
        assert letter.status == "sent"
    else:
        assert (letter.status, letter.blocked_reason) == ("blocked", str(reason))
        assert report.letter_batch is None


def test_an_app_reminder_goes_as_a_text_unless_the_borrower_opted_out_of_app_messages(
    session: Session,
) -> None:
    account = _overdue_account(session)
    sent = _action(session, account, "reminder", template="due_soon")
    sent.channel = "app"
    session.commit()
    [message] = collection_messages.dispatch(session, MORNING).messages
    assert message.channel == "sms" and OPT_OUT_URL.search(message.body)
    session.refresh(sent)
    assert sent.status == "sent"

    other = _overdue_account(session)
    session.add(ContactPreference(borrower_id=other.borrower_id, opted_out_channels=["app"]))
    blocked = _action(session, other, "reminder", template="due_soon")
    blocked.channel = "app"
    session.commit()
    assert collection_messages.dispatch(session, MORNING).messages == []
    session.refresh(blocked)
    assert (blocked.status, blocked.blocked_reason) == ("blocked", "opted_out")


def test_a_message_without_an_address_is_blocked(session: Session) -> None:
    account = _overdue_account(session, phone=None)
    action = _action(session, account, "sms", template="overdue_sms")
    collection_messages.dispatch(session, MORNING)
    session.refresh(action)
    assert (action.status, action.blocked_reason) == ("blocked", "no_address")


def test_a_text_template_that_would_show_an_amount_is_blocked_not_sent(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        collection_messages,
        "_policy_templates",
        lambda _s, _d: {"leaky": {"en": "You owe {overdue_amount}", "zh_Hans_CN": "{overdue_amount}"}},
    )
    account = _overdue_account(session)
    action = _action(session, account, "sms", template="leaky")
    report = collection_messages.dispatch(session, MORNING)
    session.refresh(action)
    assert (action.status, action.blocked_reason) == ("blocked", "template_invalid")
    assert report.messages == []


def test_a_message_the_run_asked_for_days_ago_is_cancelled_as_stale(session: Session) -> None:
    account = _overdue_account(session)
    action = _action(
        session, account, "sms", template="overdue_sms", run_date=RUN_DATE - dt.timedelta(days=5)
    )
    assert collection_messages.dispatch(session, MORNING).cancelled == 1
    session.refresh(action)
    assert (action.status, action.blocked_reason) == ("cancelled", "stale")


def test_letters_leave_as_one_pdf_batch_each_recorded_against_it(session: Session, app: Flask) -> None:
    english = _overdue_account(session)
    chinese = _overdue_account(session, language="zh_Hans_CN")
    first = _action(session, english, "letter", template="consequences_letter")
    second = _action(session, chinese, "letter", template="final_notice_letter")

    report = collection_messages.dispatch(session, MORNING)

    assert report.letters == 2 and report.letter_batch is not None
    pdf = document_storage_from_config(app.config).open(report.letter_batch)
    assert pdf.startswith(b"%PDF-")
    for action in (first, second):
        session.refresh(action)
        assert action.status == "sent"
        [attempt] = _attempts(session, action)
        assert attempt.channel == "letter"
        assert report.letter_batch in (attempt.notes or "")
    assert report.messages == []  # letters are not for the Notifier
    batched = session.scalar(
        select(func.count()).where(
            AuditEvent.action == "collection_letters.batched",
            AuditEvent.object_id == report.letter_batch.partition(".")[0],
        )
    )
    assert batched == 1


def test_a_second_dispatch_sends_nothing_twice(session: Session) -> None:
    account = _overdue_account(session)
    _action(session, account, "sms", template="overdue_sms")
    assert collection_messages.dispatch(session, MORNING).sent == 1
    again = collection_messages.dispatch(session, MORNING + dt.timedelta(minutes=15))
    assert (again.sent, again.deferred, again.blocked) == (0, 0, 0)


def _token_from(session: Session, account: Account) -> str:
    _action(session, account, "sms", template="overdue_sms")
    [message] = collection_messages.dispatch(session, MORNING).messages
    found = OPT_OUT_URL.search(message.body)
    assert found
    return found.group(1)


def _opt_out_events(session: Session, borrower_id: int) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                AuditEvent.action == "contact_preference.opted_out_by_link",
                AuditEvent.object_id == str(borrower_id),
            )
        )
        or 0
    )


def test_the_opt_out_link_names_its_channel_and_stops_it_once(session: Session, client: FlaskClient) -> None:
    account = _overdue_account(session)
    token = _token_from(session, account)

    page = client.get(f"/opt-out/{token}")
    assert page.status_code == 200
    assert "Text messages" in page.get_data(as_text=True)
    assert session.get(ContactPreference, account.borrower_id) is None  # opening the link changes nothing

    done = client.post(f"/opt-out/{token}")
    assert done.status_code == 200
    assert "we will send you no more" in done.get_data(as_text=True)
    preference = session.get(ContactPreference, account.borrower_id)
    assert preference is not None and preference.opted_out_channels == ["sms"]
    assert _opt_out_events(session, account.borrower_id) == 1
    decision = contact_service.check(session, account, Channel.SMS, when=MORNING, includes_opt_out=True)
    assert RefusalCode.OPTED_OUT in decision.codes

    again = client.post(f"/opt-out/{token}")
    assert again.status_code == 200
    assert "already stopped" in again.get_data(as_text=True)
    session.refresh(preference)
    assert preference.opted_out_channels == ["sms"]
    assert _opt_out_events(session, account.borrower_id) == 1


def test_a_tampered_opt_out_link_is_refused_and_changes_nothing(
    session: Session, client: FlaskClient
) -> None:
    account = _overdue_account(session)
    token = _token_from(session, account)
    payload, _dot, signature = token.rpartition(".")
    for forged in (f"{payload}.{signature[:-2]}xx", f"{payload}x.{signature}", "not-a-token"):
        assert client.get(f"/opt-out/{forged}").status_code == 404
        assert client.post(f"/opt-out/{forged}").status_code == 404
    assert session.get(ContactPreference, account.borrower_id) is None


def test_a_token_signed_with_another_key_or_salt_is_refused(session: Session, client: FlaskClient) -> None:
    from itsdangerous import URLSafeSerializer

    account = _overdue_account(session)
    other_key = URLSafeSerializer("another-key", salt="opt-out").dumps({"b": account.borrower_id, "c": "sms"})
    other_salt = URLSafeSerializer("test-secret-key", salt="other").dumps(
        {"b": account.borrower_id, "c": "sms"}
    )
    for forged in (other_key, other_salt):
        assert client.post(f"/opt-out/{forged}").status_code == 404
    assert session.get(ContactPreference, account.borrower_id) is None


def test_the_cli_sends_what_is_due(session: Session, app: Flask) -> None:
    account = _overdue_account(session)
    action = _action(
        session, account, "email", template="overdue_email", run_date=dt.datetime.now(dt.UTC).date()
    )
    # The command runs at the real "now": make it a moment the rules allow for this borrower.
    account.borrower.time_zone = "UTC"
    session.commit()
    result = app.test_cli_runner().invoke(args=["collections", "send"])
    assert result.exit_code == 0, result.output
    assert "message(s) sent" in result.output
    session.refresh(action)
    hour = dt.datetime.now(dt.UTC).hour
    assert action.status == ("sent" if 8 <= hour < 21 else "pending")
