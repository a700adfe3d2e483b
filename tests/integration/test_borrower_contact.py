"""The borrower's contact preferences, a request to stop contact, disputes of a debt (opened with
files, seen on the account page, withdrawn), and staff deciding them. Each change is confirmed
and audited, stops (or allows) contact through the gate, and bad input changes nothing."""

from __future__ import annotations

import datetime as dt
import io

from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.integrations.storage import LocalStorage, storage_from_config
from portal.models import Account, AuditEvent, ContactPreference, DebtDispute, OutboundMessage
from portal.services import contact as contact_service
from tests import factories
from tests.conftest import sign_in
from workflows.access import Role
from workflows.contact_policy import Channel, RefusalCode

MORNING = dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC)  # 10:00 in Shanghai


def _account(session: Session) -> Account:
    owner = factories.borrower(session, language="en")
    account = factories.account(session, principal=800_000, owner=owner)
    account.oldest_unpaid_due_on = dt.date.today() - dt.timedelta(days=40)
    account.dpd, account.stage, account.overdue_amount = 40, "mid", 80_000
    session.commit()
    return account


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _events(session: Session, action: str) -> int:
    return int(session.scalar(select(func.count()).where(AuditEvent.action == action)) or 0)


def _disputes(session: Session, account: Account) -> list[DebtDispute]:
    return list(session.scalars(select(DebtDispute).where(DebtDispute.account_id == account.id)))


def _allowed(session: Session, account: Account, channel: Channel = Channel.CALL) -> bool:
    return contact_service.check(session, account, channel, when=MORNING, includes_opt_out=True).allowed


# --- Preferences --------------------------------------------------------------------------------


def test_a_borrower_opts_out_of_channels_and_consents_to_wider_hours(
    client: FlaskClient, session: Session
) -> None:
    account = _account(session)
    sign_in(client, account.borrower)
    page = client.get("/contact-preferences")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Text messages" in text and "08:00-22:00" in text
    assert "notices the law requires" in text  # letters are explained, not offered

    saved = client.post(
        "/contact-preferences",
        data={"opt_out": ["sms", "call"], "extended_hours": "yes"},
        follow_redirects=True,
    )
    assert "Your contact preferences are saved." in saved.get_data(as_text=True)
    preference = session.get(ContactPreference, account.borrower_id)
    assert preference is not None
    assert preference.opted_out_channels == ["sms", "call"]
    assert preference.consent_extended_hours is True
    assert _events(session, "contact_preference.changed") == 1
    assert not _allowed(session, account, Channel.SMS)
    assert not _allowed(session, account, Channel.CALL)
    assert _allowed(session, account, Channel.EMAIL)
    # 21:30 in Shanghai: allowed by e-mail now that the borrower consented to the wider hours.
    late = dt.datetime(2026, 11, 30, 13, 30, tzinfo=dt.UTC)
    assert contact_service.check(session, account, Channel.EMAIL, when=late, includes_opt_out=True).allowed

    same = client.post(
        "/contact-preferences",
        data={"opt_out": ["sms", "call"], "extended_hours": "yes"},
        follow_redirects=True,
    )
    assert "Nothing changed" in same.get_data(as_text=True)
    assert _events(session, "contact_preference.changed") == 1


def test_an_unknown_channel_is_refused_and_nothing_changes(client: FlaskClient, session: Session) -> None:
    account = _account(session)
    sign_in(client, account.borrower)
    response = client.post("/contact-preferences", data={"opt_out": ["sms", "letter"]})
    assert response.status_code == 422
    assert "Choose from the listed ways to contact you." in response.get_data(as_text=True)
    assert session.get(ContactPreference, account.borrower_id) is None


def test_asking_to_stop_contact_explains_the_consequence_and_needs_a_confirmation(
    client: FlaskClient, session: Session
) -> None:
    account = _account(session)
    sign_in(client, account.borrower)
    page = client.get("/contact-preferences/stop").get_data(as_text=True)
    assert "The debt remains." in page
    assert "legal steps" in page

    unconfirmed = client.post("/contact-preferences/stop", data={})
    assert unconfirmed.status_code == 422
    assert session.get(ContactPreference, account.borrower_id) is None

    done = client.post("/contact-preferences/stop", data={"confirm": "yes"}, follow_redirects=True)
    assert "We will stop contacting you" in done.get_data(as_text=True)
    preference = session.get(ContactPreference, account.borrower_id)
    assert preference is not None and preference.cease_contact_at is not None
    assert _events(session, "contact_preference.cease_requested") == 1
    decision = contact_service.check(session, account, Channel.LETTER, when=MORNING)
    assert RefusalCode.CEASE_CONTACT in decision.codes

    resumed = client.post("/contact-preferences/resume", follow_redirects=True)
    assert "We may contact you again" in resumed.get_data(as_text=True)
    session.refresh(preference)
    assert preference.cease_contact_at is None
    assert _events(session, "contact_preference.cease_lifted") == 1
    assert _allowed(session, account)


# --- Disputes -----------------------------------------------------------------------------------


def test_a_borrower_disputes_a_debt_with_a_file_and_contact_stops(
    client: FlaskClient, session: Session, app: Flask
) -> None:
    account = _account(session)
    sign_in(client, account.borrower)
    assert "Dispute this debt" in client.get(f"/accounts/{account.id}").get_data(as_text=True)

    response = client.post(
        f"/accounts/{account.id}/dispute",
        data={
            "reason": "already_paid",
            "detail": "I paid the whole amount in October by bank transfer.",
            "files": [(io.BytesIO(_png()), "receipt.png")],
        },
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Your dispute is recorded." in text
    assert "Your dispute" in text and "I have already paid it" in text  # on the account page

    [dispute] = _disputes(session, account)
    assert (dispute.status, dispute.reason) == ("open", "already_paid")
    [key] = dispute.evidence_keys
    assert storage_from_config(app.config).open(key).startswith(b"\x89PNG")
    assert _events(session, "debt_dispute.opened") == 1
    decision = contact_service.check(session, account, Channel.CALL, when=MORNING)
    assert RefusalCode.DISPUTE_OPEN in decision.codes

    twice = client.post(f"/accounts/{account.id}/dispute", data={"reason": "other", "detail": "Again."})
    assert twice.status_code == 422
    assert "You already dispute this debt." in twice.get_data(as_text=True)
    assert len(_disputes(session, account)) == 1


def test_bad_dispute_input_is_refused_with_a_message_and_nothing_is_kept(
    client: FlaskClient, session: Session
) -> None:
    account = _account(session)
    sign_in(client, account.borrower)
    url = f"/accounts/{account.id}/dispute"

    empty = client.post(url, data={"reason": "amount_wrong", "detail": "   "})
    assert empty.status_code == 422
    assert "Tell us why you dispute this debt." in empty.get_data(as_text=True)

    no_reason = client.post(url, data={"detail": "The fee is wrong."})
    assert no_reason.status_code == 422
    assert "Choose why you dispute this debt." in no_reason.get_data(as_text=True)

    too_long = client.post(url, data={"reason": "amount_wrong", "detail": "x" * 2001})
    assert too_long.status_code == 422
    assert "2,000 characters" in too_long.get_data(as_text=True)

    bad_file = client.post(
        url,
        data={
            "reason": "amount_wrong",
            "detail": "The fee is wrong.",
            "files": [(io.BytesIO(_png()), "good.png"), (io.BytesIO(b"<html><script>x</script>"), "bad.pdf")],
        },
        content_type="multipart/form-data",
    )
    assert bad_file.status_code == 422
    assert "This type of file cannot be uploaded" in bad_file.get_data(as_text=True)

    assert _disputes(session, account) == []
    assert _events(session, "debt_dispute.opened") == 0


def test_a_refused_file_leaves_no_file_behind(session: Session, app: Flask) -> None:
    from portal.services import borrower_contact
    from workflows.errors import DomainError

    account = _account(session)
    storage = storage_from_config(app.config)
    assert isinstance(storage, LocalStorage)
    before = set(storage.root.rglob("*"))
    try:
        borrower_contact.open_dispute(
            session,
            account.borrower,
            account.id,
            reason="amount_wrong",
            detail="Wrong fee.",
            uploads=[
                borrower_contact.Upload("a.png", _png()),
                borrower_contact.Upload("b.pdf", b"not a pdf at all"),
            ],
            storage=storage,
        )
    except DomainError as exc:
        assert exc.code == "evidence_type_not_allowed"
    else:
        raise AssertionError("a file that is not a PDF was accepted")
    after = set(storage.root.rglob("*"))
    assert {p for p in after - before if p.is_file()} == set()
    assert _disputes(session, account) == []


def test_a_borrower_withdraws_a_dispute_and_contact_may_resume(client: FlaskClient, session: Session) -> None:
    account = _account(session)
    sign_in(client, account.borrower)
    client.post(f"/accounts/{account.id}/dispute", data={"reason": "not_mine", "detail": "Not my loan."})
    assert not _allowed(session, account)

    withdrawn = client.post(f"/accounts/{account.id}/dispute/withdraw", follow_redirects=True)
    assert "Your dispute is withdrawn." in withdrawn.get_data(as_text=True)
    [dispute] = _disputes(session, account)
    assert dispute.status == "withdrawn" and dispute.resolved_at is not None
    assert _events(session, "debt_dispute.withdrawn") == 1
    assert _allowed(session, account)

    nothing_open = client.post(f"/accounts/{account.id}/dispute/withdraw", follow_redirects=True)
    assert "There is no open dispute on this account." in nothing_open.get_data(as_text=True)
    assert _events(session, "debt_dispute.withdrawn") == 1


def test_another_borrowers_account_cannot_be_disputed(client: FlaskClient, session: Session) -> None:
    mine, theirs = _account(session), _account(session)
    sign_in(client, mine.borrower)
    assert client.get(f"/accounts/{theirs.id}/dispute").status_code == 404
    refused = client.post(f"/accounts/{theirs.id}/dispute", data={"reason": "not_mine", "detail": "x"})
    assert refused.status_code == 404
    assert _disputes(session, theirs) == []


# --- Staff decide -------------------------------------------------------------------------------


def _open_dispute(client: FlaskClient, session: Session) -> tuple[Account, DebtDispute]:
    account = _account(session)
    sign_in(client, account.borrower)
    client.post(
        f"/accounts/{account.id}/dispute",
        data={
            "reason": "amount_wrong",
            "detail": "The late fee was charged twice.",
            "files": [(io.BytesIO(_png()), "s.png")],
        },
        content_type="multipart/form-data",
    )
    [dispute] = _disputes(session, account)
    return account, dispute


def test_collectors_see_the_disputes_queue_open_first_but_only_supervisors_decide(
    client: FlaskClient, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    account, dispute = _open_dispute(client, session)
    sign_in(client, staff_of(Role.COLLECTOR))
    queue = client.get("/staff/disputes").get_data(as_text=True)
    assert account.external_reference in queue
    page = client.get(f"/staff/disputes/{dispute.id}")
    assert page.status_code == 200
    assert "The late fee was charged twice." in page.get_data(as_text=True)
    download = client.get(f"/staff/disputes/{dispute.id}/files/1")
    assert download.status_code == 200 and download.data.startswith(b"\x89PNG")
    assert client.get(f"/staff/disputes/{dispute.id}/files/2").status_code == 404
    refused = client.post(f"/staff/disputes/{dispute.id}/resolve", data={"outcome": "rejected", "note": "x"})
    assert refused.status_code == 403
    session.refresh(dispute)
    assert dispute.status == "open"


def test_a_supervisor_rejects_a_dispute_with_reasons_the_borrower_reads(
    client: FlaskClient, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    account, dispute = _open_dispute(client, session)
    supervisor = staff_of(Role.SUPERVISOR)
    sign_in(client, supervisor)

    no_note = client.post(
        f"/staff/disputes/{dispute.id}/resolve",
        data={"outcome": "rejected", "note": " "},
        follow_redirects=True,
    )
    assert "Write a short note" in no_note.get_data(as_text=True)
    session.refresh(dispute)
    assert dispute.status == "open"

    reason = "The fee was charged once, on 5 October; the second line is its reversal."
    decided = client.post(
        f"/staff/disputes/{dispute.id}/resolve",
        data={"outcome": "rejected", "note": reason},
        follow_redirects=True,
    )
    assert "The dispute is decided." in decided.get_data(as_text=True)
    session.refresh(dispute)
    assert (dispute.status, dispute.resolution, dispute.resolved_by_id) == ("rejected", reason, supervisor.id)
    assert _events(session, "debt_dispute.rejected") == 1
    assert _allowed(session, account)  # contact may resume

    notice = session.scalar(
        select(OutboundMessage).where(
            OutboundMessage.recipient == account.borrower.phone, OutboundMessage.purpose == "dispute_decided"
        )
    )
    assert notice is not None
    assert reason not in notice.body and account.external_reference not in notice.body  # discreet

    again = client.post(
        f"/staff/disputes/{dispute.id}/resolve",
        data={"outcome": "upheld", "note": "x"},
        follow_redirects=True,
    )
    assert "already closed" in again.get_data(as_text=True)
    session.refresh(dispute)
    assert dispute.status == "rejected"

    sign_in(client, account.borrower)
    shown = client.get(f"/accounts/{account.id}").get_data(as_text=True)
    assert reason in shown and "Not upheld" in shown
