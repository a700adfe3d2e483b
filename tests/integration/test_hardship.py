"""A borrower asks for help: the statement step by step, evidence, offers, accepting or proposing."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.models import AccountPause, AuditEvent, BudgetLine, EvidenceFile, HardshipCase, Offer
from portal.services import borrower_portal
from portal.services import hardship as service
from tests import factories
from tests.conftest import sign_in
from workflows.errors import DomainError
from workflows.negotiation import CaseState

INCOME = {"amount_earnings": "6000", "frequency_earnings": "monthly"}
SPENDING = {
    "amount_housing": "1500",
    "frequency_housing": "monthly",
    "amount_food_housekeeping": "250",
    "frequency_food_housekeeping": "weekly",
    "amount_utilities": "200",
    "frequency_utilities": "monthly",
}


def _mid_stage_account(session: Session, days: int = 45):  # type: ignore[no-untyped-def]
    owner = factories.borrower(session, language="en", time_zone="Asia/Shanghai")
    account = factories.account(session, principal=2_400_000, interest=60_000, fees=10_000, owner=owner)
    today = borrower_portal.borrower_today(owner)
    account.oldest_unpaid_due_on = today - dt.timedelta(days=days)
    account.dpd = days
    account.stage = "mid"
    account.overdue_amount = 230_000
    account.next_due_on = today + dt.timedelta(days=10)
    account.next_due_amount = 110_000
    session.commit()
    return account


def _start(client: FlaskClient, account) -> int:  # type: ignore[no-untyped-def]
    response = client.post("/help/start", data={"account_id": account.id})
    assert response.status_code == 302
    return int(response.location.split("/")[2])


def _fill_to_review(client: FlaskClient, case_id: int, spending: dict[str, str] | None = None) -> None:
    steps = [
        ("reason", {"reason": "job_loss", "description": "I was made redundant in October."}),
        ("household", {"adults": "2", "children": "1", "dependants": "0", "employment_status": "unemployed"}),
        ("income", INCOME),
        ("spending", spending or SPENDING),
        ("debts", {}),
    ]
    for step, data in steps:
        response = client.post(f"/help/{case_id}/{step}", data=data)
        assert response.status_code == 302, (step, response.get_data(as_text=True)[:2000])
    assert client.post(f"/help/{case_id}/evidence", data={"action": "continue"}).status_code == 302


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "teal").save(buffer, "PNG")
    return buffer.getvalue()


def test_a_borrower_gets_from_the_dashboard_to_an_accepted_offer(
    client: FlaskClient, session: Session
) -> None:
    account = _mid_stage_account(session)
    sign_in(client, account.borrower)
    assert "I need help paying" in client.get("/home").get_data(as_text=True)
    case_id = _start(client, account)
    _fill_to_review(client, case_id)
    review = client.get(f"/help/{case_id}/review").get_data(as_text=True)
    # Server-side monthly totals: 250 a week is 250 x 52 / 12 = 1,083.33 a month.
    assert "CN¥6,000.00" in review
    assert "CN¥2,783.33" in review
    response = client.post(f"/help/{case_id}/review", data={})
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]

    case = session.get(HardshipCase, case_id)
    session.refresh(case)
    assert case.state == CaseState.OFFERED.value
    offers = service.open_offers(case)
    assert offers, "a mid-stage borrower with money left each month gets offers"
    status = client.get(f"/help/{case_id}").get_data(as_text=True)
    assert "Your options side by side" in status
    assert "Breathing space until" in status

    chosen = offers[0]
    assert client.post(f"/help/{case_id}/offers/{chosen.id}/accept").status_code == 302
    session.expire_all()
    assert (
        case.state == CaseState.AWAITING_SIGNATURE.value
    )  # approved, and the agreement rendered (inline in tests)
    statuses = {
        o.id: o.status for o in session.scalars(select(Offer).where(Offer.hardship_case_id == case_id))
    }
    assert statuses.pop(chosen.id) == "accepted"
    assert set(statuses.values()) <= {"superseded"}
    page = client.get(f"/help/{case_id}").get_data(as_text=True)
    assert "We are preparing your agreement" in page
    # Each move of the state machine wrote one audit event.
    actions = list(
        session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.object_type == "hardship_case", AuditEvent.object_id == str(case_id))
            .order_by(AuditEvent.id)
        )
    )
    moves = [a for a in actions if a.split(".")[1] in {"submit", "evaluate", "accept"}]
    assert moves == ["hardship_case.submit", "hardship_case.evaluate", "hardship_case.accept"]


def test_accepting_twice_changes_nothing_the_second_time(client: FlaskClient, session: Session) -> None:
    account = _mid_stage_account(session)
    sign_in(client, account.borrower)
    case_id = _start(client, account)
    _fill_to_review(client, case_id)
    client.post(f"/help/{case_id}/review", data={})
    case = session.get(HardshipCase, case_id)
    session.refresh(case)
    offer = service.open_offers(case)[0]
    client.post(f"/help/{case_id}/offers/{offer.id}/accept")
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    client.post(f"/help/{case_id}/offers/{offer.id}/accept")
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events


def test_a_custom_proposal_goes_to_review_with_a_date(client: FlaskClient, session: Session) -> None:
    account = _mid_stage_account(session)
    sign_in(client, account.borrower)
    case_id = _start(client, account)
    _fill_to_review(client, case_id)
    client.post(f"/help/{case_id}/review", data={})
    response = client.post(f"/help/{case_id}/propose", data={"monthly_amount": "800", "count": "24"})
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    case = session.get(HardshipCase, case_id)
    session.refresh(case)
    assert case.state == CaseState.IN_REVIEW.value
    assert case.review_due_on is not None
    page = client.get(f"/help/{case_id}").get_data(as_text=True)
    assert "With our negotiation team" in page
    assert "You will hear from us by" in page
    proposal = session.scalar(
        select(Offer).where(Offer.hardship_case_id == case_id, Offer.origin == "borrower")
    )
    assert proposal is not None
    assert proposal.instalment_count == 24


@pytest.mark.parametrize(
    "typed", ["-5", "abc", "1e5", "NaN", "sNaN", "Infinity", "12.345", "99999999999", "0x10"]
)
def test_bad_amounts_are_refused_with_a_message_and_change_nothing(
    client: FlaskClient, session: Session, typed: str
) -> None:
    account = _mid_stage_account(session)
    sign_in(client, account.borrower)
    case_id = _start(client, account)
    client.post(f"/help/{case_id}/reason", data={"reason": "illness", "description": "In hospital."})
    client.post(
        f"/help/{case_id}/household",
        data={"adults": "1", "children": "0", "dependants": "0", "employment_status": "unable_to_work"},
    )
    response = client.post(
        f"/help/{case_id}/income", data={"amount_earnings": typed, "frequency_earnings": "monthly"}
    )
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'aria-invalid="true"' in page
    assert (
        session.scalar(
            select(func.count()).select_from(BudgetLine).where(BudgetLine.hardship_case_id == case_id)
        )
        == 0
    )
    case = session.get(HardshipCase, case_id)
    session.refresh(case)
    assert "income" not in case.steps_done


def test_nobody_skips_to_the_end(client: FlaskClient, session: Session) -> None:
    account = _mid_stage_account(session)
    sign_in(client, account.borrower)
    case_id = _start(client, account)
    for path in (f"/help/{case_id}/review", f"/help/{case_id}/spending", f"/help/{case_id}/evidence"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.location.endswith(f"/help/{case_id}/reason")
    assert client.post(f"/help/{case_id}/review", data={}).status_code == 302
    with pytest.raises(DomainError) as refused:
        service.submit(session, account.borrower, case_id)
    assert refused.value.code == "steps_missing"
    case = session.get(HardshipCase, case_id)
    session.refresh(case)
    assert case.state == CaseState.DRAFT.value


def test_a_submitted_case_cannot_be_submitted_or_edited_again(client: FlaskClient, session: Session) -> None:
    account = _mid_stage_account(session)
    sign_in(client, account.borrower)
    case_id = _start(client, account)
    _fill_to_review(client, case_id)
    client.post(f"/help/{case_id}/review", data={})
    offers = session.scalar(select(func.count()).select_from(Offer).where(Offer.hardship_case_id == case_id))
    response = client.post(f"/help/{case_id}/review", data={})
    assert response.status_code == 302
    with pytest.raises(DomainError) as refused:
        service.submit(session, account.borrower, case_id)
    assert refused.value.code == "transition_not_allowed"
    response = client.post(
        f"/help/{case_id}/income", data={"amount_earnings": "1", "frequency_earnings": "monthly"}
    )
    assert response.status_code == 302
    assert (
        session.scalar(select(func.count()).select_from(Offer).where(Offer.hardship_case_id == case_id))
        == offers
    )
    # Starting again on the same account returns the case already open, not a second one.
    assert _start(client, account) == case_id


def test_figures_above_the_reference_ask_for_an_explanation_before_sending(
    client: FlaskClient, session: Session
) -> None:
    account = _mid_stage_account(session)
    sign_in(client, account.borrower)
    case_id = _start(client, account)
    spending = {**SPENDING, "amount_transport": "9000", "frequency_transport": "monthly"}
    _fill_to_review(client, case_id, spending)
    page = client.get(f"/help/{case_id}/review").get_data(as_text=True)
    assert "A few figures need a word from you" in page
    refused = client.post(f"/help/{case_id}/review", data={"explain_transport": "  "})
    assert refused.status_code == 422
    case = session.get(HardshipCase, case_id)
    session.refresh(case)
    assert case.state == CaseState.DRAFT.value
    accepted = client.post(
        f"/help/{case_id}/review", data={"explain_transport": "I drive 80 km a day to dialysis."}
    )
    assert accepted.status_code == 302
    session.refresh(case)
    assert case.state == CaseState.OFFERED.value


def test_submitting_gives_the_account_a_breathing_space_that_withdrawing_lifts(
    client: FlaskClient, session: Session
) -> None:
    account = _mid_stage_account(session)
    sign_in(client, account.borrower)
    case_id = _start(client, account)
    _fill_to_review(client, case_id)
    client.post(f"/help/{case_id}/review", data={})
    today = borrower_portal.borrower_today(account.borrower)
    pause = service.active_pause(session, account.id, today)
    assert pause is not None
    assert pause.ends_on == today + dt.timedelta(days=29)
    assert pause.stops_fees and pause.pauses_contact
    home = client.get("/home").get_data(as_text=True)
    assert "Breathing space until" in home
    assert "Paused until" in home  # calls began on day 31 and are paused now

    assert client.post(f"/help/{case_id}/withdraw").status_code == 302
    case = session.get(HardshipCase, case_id)
    session.refresh(case)
    assert case.state == CaseState.WITHDRAWN.value
    assert service.active_pause(session, account.id, today) is None
    assert session.scalar(select(AccountPause.lifted_at).where(AccountPause.hardship_case_id == case_id))


def test_evidence_is_stored_re_encoded_and_downloaded_only_as_an_attachment(
    client: FlaskClient, session: Session
) -> None:
    account = _mid_stage_account(session)
    sign_in(client, account.borrower)
    case_id = _start(client, account)
    client.post(f"/help/{case_id}/reason", data={"reason": "illness", "description": "In hospital."})
    client.post(
        f"/help/{case_id}/household",
        data={"adults": "1", "children": "0", "dependants": "0", "employment_status": "unable_to_work"},
    )
    for step in ("income", "spending", "debts"):
        client.post(f"/help/{case_id}/{step}", data={})
    response = client.post(
        f"/help/{case_id}/evidence",
        data={"action": "upload", "file": (io.BytesIO(_png()), "scan.PNG")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 302
    [evidence] = session.scalars(select(EvidenceFile).where(EvidenceFile.hardship_case_id == case_id))
    assert evidence.kind == "png"
    assert "scan" not in evidence.storage_key
    download = client.get(f"/help/{case_id}/evidence/{evidence.id}")
    assert download.status_code == 200
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.data.startswith(b"\x89PNG")

    html = client.post(
        f"/help/{case_id}/evidence",
        data={"action": "upload", "file": (io.BytesIO(b"<html><script>x</script></html>"), "payslip.pdf")},
        content_type="multipart/form-data",
    )
    assert html.status_code == 422
    assert "cannot be uploaded" in html.get_data(as_text=True)
    assert (
        session.scalar(
            select(func.count()).select_from(EvidenceFile).where(EvidenceFile.hardship_case_id == case_id)
        )
        == 1
    )

    other = factories.account(session)
    sign_in(client, other.borrower)
    assert client.get(f"/help/{case_id}/evidence/{evidence.id}").status_code == 404


def test_an_expired_offer_cannot_be_accepted_and_the_nightly_job_closes_the_case(
    client: FlaskClient, session: Session
) -> None:
    account = _mid_stage_account(session)
    sign_in(client, account.borrower)
    case_id = _start(client, account)
    _fill_to_review(client, case_id)
    client.post(f"/help/{case_id}/review", data={})
    case = session.get(HardshipCase, case_id)
    session.refresh(case)
    offer = service.open_offers(case)[0]
    later = offer.expires_on + dt.timedelta(days=1)
    with pytest.raises(DomainError) as refused:
        service.accept(session, account.borrower, case_id, offer.id, today=later)
    assert refused.value.code == "offer_expired"
    assert service.expire_offers(session, offer.expires_on) == []
    [notice] = service.expire_offers(session, later)
    assert "news about your request" in notice.body.lower()
    session.refresh(case)
    assert case.state == CaseState.EXPIRED.value
    assert service.active_pause(session, account.id, borrower_portal.borrower_today(account.borrower)) is None


def test_a_forged_or_foreign_offer_id_is_not_found(client: FlaskClient, session: Session) -> None:
    mine = _mid_stage_account(session)
    theirs = _mid_stage_account(session)
    sign_in(client, theirs.borrower)
    their_case = _start(client, theirs)
    _fill_to_review(client, their_case)
    client.post(f"/help/{their_case}/review", data={})
    their_offer = session.scalar(select(Offer.id).where(Offer.hardship_case_id == their_case))

    sign_in(client, mine.borrower)
    my_case = _start(client, mine)
    _fill_to_review(client, my_case)
    client.post(f"/help/{my_case}/review", data={})
    assert client.post(f"/help/{my_case}/offers/{their_offer}/accept").status_code == 404
    assert client.post(f"/help/{my_case}/offers/999999/accept").status_code == 404
    assert client.post(f"/help/{their_case}/offers/{their_offer}/accept").status_code == 404
    case = session.get(HardshipCase, their_case)
    session.refresh(case)
    assert case.state == CaseState.OFFERED.value
