"""Agreements for staff: listed on the case and the account, the PDF and the evidence downloaded,
and an agreement not signed yet voided with a reason (audited) — a signed one never, and every
refusal changes nothing."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.integrations.storage import document_storage_from_config
from portal.models import AccountPause, Agreement, AgreementEvent, AuditEvent, HardshipCase, StaffUser
from portal.services import agreement_admin, agreements
from portal.services import hardship as hardship_service
from tests.conftest import sign_in
from tests.integration.test_agreements import _ready_agreement, _up_to_signing
from workflows.access import Role
from workflows.errors import DomainError
from workflows.negotiation import CaseState

StaffOf = Callable[[Role], StaffUser]


@pytest.fixture
def staff_client(app: Flask, session: Session) -> FlaskClient:
    """A second browser for staff, so a borrower can stay signed in on ``client``."""
    browser = app.test_client()
    browser.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return browser


def _sign(client: FlaskClient, session: Session, agreement: Agreement) -> Agreement:
    _up_to_signing(client, session, agreement)
    response = client.post(
        f"/agreements/{agreement.id}/sign", data={"typed_name": "Jeff Klein", "agree": "yes"}
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    return _fresh(session, agreement.id)


def _fresh(session: Session, agreement_id: int) -> Agreement:
    session.expire_all()
    found = session.get(Agreement, agreement_id)
    assert found is not None
    return found


def _pause(session: Session, agreement: Agreement) -> AccountPause:
    """The breathing space the borrower's request started (the factory case skips submitting)."""
    today = hardship_service.desk_today()
    pause = AccountPause(
        account_id=agreement.account_id,
        hardship_case_id=agreement.hardship_case_id,
        starts_on=today,
        ends_on=today + dt.timedelta(days=30),
        stops_fees=True,
        pauses_contact=True,
    )
    session.add(pause)
    session.commit()
    return pause


def _void(browser: FlaskClient, agreement: Agreement, **form: object) -> str:
    data = {"version": agreement.version, "reason": "The offer's schedule was wrong.", **form}
    response = browser.post(f"/staff/agreements/{agreement.id}/void", data=data, follow_redirects=True)
    assert response.status_code == 200
    assert response.request.path == f"/staff/cases/{agreement.hardship_case_id}"
    return response.get_data(as_text=True)


def test_agreements_are_listed_on_the_case_and_the_account(
    session: Session, staff_client: FlaskClient, staff_of: StaffOf
) -> None:
    agreement = _ready_agreement(session)
    sign_in(staff_client, staff_of(Role.AGENT))
    for path in (f"/staff/cases/{agreement.hardship_case_id}", f"/staff/accounts/{agreement.account_id}"):
        page = staff_client.get(path).get_data(as_text=True)
        assert "Agreements" in page
        assert "Ready to sign" in page
        assert (agreement.document_sha256 or "x") in page
        assert f"/staff/agreements/{agreement.id}/document.pdf" in page
        assert f"/staff/agreements/{agreement.id}/evidence.json" in page
        assert f"/staff/agreements/{agreement.id}/void" in page


def test_a_collector_sees_the_agreements_but_no_void_form_and_may_not_void(
    session: Session, staff_client: FlaskClient, staff_of: StaffOf
) -> None:
    agreement = _ready_agreement(session)
    sign_in(staff_client, staff_of(Role.COLLECTOR))
    page = staff_client.get(f"/staff/accounts/{agreement.account_id}").get_data(as_text=True)
    assert f"/staff/agreements/{agreement.id}/evidence.json" in page
    assert f"/staff/agreements/{agreement.id}/void" not in page
    refused = staff_client.post(
        f"/staff/agreements/{agreement.id}/void", data={"version": agreement.version, "reason": "No."}
    )
    assert refused.status_code == 403
    assert _fresh(session, agreement.id).status == "ready"


def test_an_agent_voids_a_ready_agreement_and_the_borrower_can_no_longer_sign_it(
    client: FlaskClient, session: Session, staff_client: FlaskClient, staff_of: StaffOf
) -> None:
    agreement = _ready_agreement(session)
    _pause(session, agreement)
    _up_to_signing(client, session, agreement)  # the borrower is one step from signing
    agent = staff_of(Role.AGENT)
    sign_in(staff_client, agent)
    page = _void(staff_client, _fresh(session, agreement.id))
    assert "The agreement was voided." in page

    voided = _fresh(session, agreement.id)
    assert voided.status == "voided"
    assert voided.voided_by_id == agent.id and voided.voided_at is not None
    assert voided.void_reason == "The offer's schedule was wrong."
    kinds = session.scalars(select(AgreementEvent.kind).where(AgreementEvent.agreement_id == voided.id)).all()
    assert kinds[-1] == "voided"
    audit = session.scalar(
        select(AuditEvent).where(
            AuditEvent.action == "agreement.voided", AuditEvent.object_id == str(voided.id)
        )
    )
    assert audit is not None
    assert (audit.actor_type, audit.actor_id) == ("staff", agent.id)
    assert audit.before == {"status": "ready"}
    assert audit.after is not None and audit.after["status"] == "voided"
    assert audit.after["reason"] == "The offer's schedule was wrong."
    # The case goes back to the review queue to be decided again; the breathing space stays.
    case = session.get(HardshipCase, voided.hardship_case_id)
    assert case is not None and case.state == CaseState.IN_REVIEW.value
    assert case.review_due_on is not None
    assert (
        hardship_service.active_pause(session, voided.account_id, hardship_service.desk_today()) is not None
    )

    refused = client.post(
        f"/agreements/{agreement.id}/sign", data={"typed_name": "Jeff Klein", "agree": "yes"}
    )
    assert refused.status_code == 422
    assert "can no longer be signed" in refused.get_data(as_text=True)
    assert _fresh(session, agreement.id).status == "voided"


def test_the_breathing_space_stays_while_another_agreement_on_the_case_is_open(
    session: Session, staff_of: StaffOf
) -> None:
    first = _ready_agreement(session)
    _pause(session, first)
    case = session.get(HardshipCase, first.hardship_case_id)
    assert case is not None
    second = agreements.prepare(session, case, first.offer)
    session.commit()
    agreement_admin.void(session, staff_of(Role.AGENT), first.id, version=None, reason="Replaced.")
    assert hardship_service.active_pause(session, first.account_id, hardship_service.desk_today()) is not None
    assert _fresh(session, second.id).status == "preparing"


def test_a_signed_agreement_cannot_be_voided(
    client: FlaskClient, session: Session, staff_client: FlaskClient, staff_of: StaffOf
) -> None:
    signed = _sign(client, session, _ready_agreement(session))
    sign_in(staff_client, staff_of(Role.SUPERVISOR))
    page = _void(staff_client, signed)
    assert "Only an agreement that is not signed yet can be voided." in page
    after = _fresh(session, signed.id)
    assert after.status == "signed" and after.voided_at is None and after.void_reason is None
    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "agreement.voided")) is None


@pytest.mark.parametrize("reason", ["", "   ", "x" * 301])
def test_voiding_needs_a_reason_of_at_most_300_characters(
    session: Session, staff_client: FlaskClient, staff_of: StaffOf, reason: str
) -> None:
    agreement = _ready_agreement(session)
    sign_in(staff_client, staff_of(Role.AGENT))
    page = _void(staff_client, agreement, reason=reason)
    assert "Write why the agreement is voided, in at most 300 characters." in page
    assert _fresh(session, agreement.id).status == "ready"


def test_voiding_what_changed_since_it_was_read_is_refused(
    session: Session, staff_client: FlaskClient, staff_of: StaffOf
) -> None:
    agreement = _ready_agreement(session)
    sign_in(staff_client, staff_of(Role.AGENT))
    page = _void(staff_client, agreement, version=agreement.version - 1)
    assert "changed while you were looking at it" in page
    assert _fresh(session, agreement.id).status == "ready"
    with pytest.raises(DomainError) as refused:
        agreement_admin.void(
            session, staff_of(Role.AGENT), agreement.id, version=agreement.version + 1, reason="Wrong."
        )
    assert refused.value.code == "case_changed"


def test_the_evidence_is_json_with_the_signing_facts_and_no_token_hash(
    client: FlaskClient, session: Session, staff_client: FlaskClient, staff_of: StaffOf
) -> None:
    agreement = _ready_agreement(session)
    _up_to_signing(client, session, agreement)
    token_hash = _fresh(session, agreement.id).step_up_token_hash
    assert token_hash
    signed = _sign(client, session, agreement)
    sign_in(staff_client, staff_of(Role.FINANCE))
    response = staff_client.get(f"/staff/agreements/{signed.id}/evidence.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].startswith("attachment")
    body = response.get_data(as_text=True)
    assert token_hash not in body and "token" not in body
    evidence = json.loads(body)
    assert evidence["agreement_id"] == signed.id
    assert evidence["status"] == "signed"
    assert evidence["template_version"] == signed.template_version
    assert evidence["language"] == "en"
    assert evidence["document_sha256"] == signed.document_sha256
    assert evidence["final_sha256"] == signed.final_sha256
    assert evidence["consent"]["version"] == signed.consent_version
    assert evidence["code"]["channel"].startswith("sms:") and "*" in evidence["code"]["channel"]
    assert evidence["typed_name"] == "Jeff Klein"
    assert "signature_sha256" in evidence and "signer_ip" in evidence and "signer_user_agent" in evidence
    for moment in (evidence["signed_at"], evidence["consent"]["at"], evidence["code"]["verified_at"]):
        assert moment.endswith("Z")
        assert dt.datetime.fromisoformat(moment).utcoffset() == dt.timedelta(0)
    kinds = [event["kind"] for event in evidence["events"]]
    assert kinds[0] == "created"
    assert {"rendered", "consented", "code_sent", "code_verified", "signed", "sealed"} <= set(kinds)
    assert all(event["at"].endswith("Z") for event in evidence["events"])


def test_the_pdf_downloads_as_an_attachment_equal_to_the_stored_file(
    client: FlaskClient, session: Session, staff_client: FlaskClient, staff_of: StaffOf, app: Flask
) -> None:
    storage = document_storage_from_config(app.config)
    agreement = _ready_agreement(session)
    sign_in(staff_client, staff_of(Role.COLLECTOR))
    prepared = staff_client.get(f"/staff/agreements/{agreement.id}/document.pdf")
    assert prepared.status_code == 200
    assert prepared.mimetype == "application/pdf"
    assert prepared.headers["Content-Disposition"].startswith("attachment")
    assert prepared.data == storage.open(agreement.document_key or "")

    signed = _sign(client, session, agreement)
    final = staff_client.get(f"/staff/agreements/{signed.id}/document.pdf")
    assert final.headers["Content-Disposition"].startswith("attachment")
    assert final.data == storage.open(signed.final_key or "")
    assert final.data != prepared.data


def test_an_unknown_agreement_is_not_found(
    session: Session, staff_client: FlaskClient, staff_of: StaffOf
) -> None:
    sign_in(staff_client, staff_of(Role.AGENT))
    missing = 987_654
    assert staff_client.get(f"/staff/agreements/{missing}/document.pdf").status_code == 404
    assert staff_client.get(f"/staff/agreements/{missing}/evidence.json").status_code == 404
    assert (
        staff_client.post(f"/staff/agreements/{missing}/void", data={"reason": "x", "version": 1}).status_code
        == 404
    )
