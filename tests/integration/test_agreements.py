"""Agreements: prepared and rendered from the approved offer, signed on the portal with consent,
a fresh code and the typed name, sealed with a certificate page, turned into the plan exactly —
and every way of signing wrongly refused with nothing half-done."""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pypdf import PdfReader
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import EnvironBuilder

from portal.integrations.seal import seal_key_from_config, verify_sealed
from portal.integrations.storage import document_storage_from_config
from portal.models import Agreement, HardshipCase, LedgerEntry, OutboundMessage, Plan, PlanInstalment
from portal.services import agreements, borrower_portal
from portal.services import hardship as hardship_service
from tests import factories
from tests.conftest import sign_in
from workflows.negotiation import CaseState


def _ready_agreement(session: Session, *, language: str = "en", fees: int = 10_000):  # type: ignore[no-untyped-def]
    """A borrower who accepted a pre-approved offer that waives the fees: the agreement is ready."""
    owner = factories.borrower(session, language=language, time_zone="Asia/Shanghai", full_name="Jeff Klein")
    account = factories.account(session, principal=900_000, interest=30_000, fees=fees, owner=owner)
    account.stage, account.dpd, account.overdue_amount = "mid", 45, 90_000
    session.commit()
    case = factories.hardship_case(session, account)
    offer = factories.offer(session, case)
    offer.terms = {**offer.terms, "waived": {"fees": fees, "interest": 0, "principal": 0}}
    offer.waived_total = fees
    session.commit()
    hardship_service.accept(session, owner, case.id, offer.id)
    agreement = agreements.latest_for_case(session, case.id)
    assert agreement is not None
    return agreement


def _code(session: Session, recipient: str) -> str:
    body = session.scalar(
        select(OutboundMessage.body)
        .where(OutboundMessage.recipient == recipient)
        .order_by(OutboundMessage.id.desc())
        .limit(1)
    )
    assert body is not None
    return re.search(r"\b(\d{6})\b", body).group(1)  # type: ignore[union-attr]


def _up_to_signing(client: FlaskClient, session: Session, agreement: Agreement) -> None:
    sign_in(client, agreement.borrower)
    base = f"/agreements/{agreement.id}"
    assert client.get(base).status_code == 200
    assert client.post(f"{base}/consent", data={"consent": "yes"}).status_code == 302
    assert client.post(f"{base}/code").status_code == 302
    assert (
        client.post(
            f"{base}/code/verify", data={"code": _code(session, agreement.borrower.phone)}
        ).status_code
        == 302
    )


def test_an_accepted_offer_becomes_an_agreement_with_its_schedule_and_hash(
    session: Session, app: Flask
) -> None:
    agreement = _ready_agreement(session)
    assert agreement.status == "ready"
    assert agreement.hardship_case.state == CaseState.AWAITING_SIGNATURE.value
    data = document_storage_from_config(app.config).open(agreement.document_key or "")
    assert agreements.pdf_sha256(data) == agreement.document_sha256
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    for instalment in agreement.facts["offer"]["schedule"]:
        assert "CN¥300.00" in text and str(instalment["number"]) in text
    assert "CN¥900.00" in text  # the total repayable


def test_a_chinese_agreement_is_set_in_noto_sans_cjk(session: Session, app: Flask) -> None:
    agreement = _ready_agreement(session, language="zh_Hans_CN")
    data = document_storage_from_config(app.config).open(agreement.document_key or "")
    fonts = set()
    for page in PdfReader(io.BytesIO(data)).pages:
        for font in (page["/Resources"].get("/Font") or {}).values():
            fonts.add(str(font.get_object()["/BaseFont"]))
    assert any("Noto-Sans-CJK-SC" in name for name in fonts), fonts


def test_signing_seals_the_document_and_puts_the_plan_in_force(
    client: FlaskClient, session: Session, app: Flask
) -> None:
    agreement = _ready_agreement(session)
    _up_to_signing(client, session, agreement)
    response = client.post(
        f"/agreements/{agreement.id}/sign", data={"typed_name": "jeff  KLEIN", "agree": "yes"}
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    session.expire_all()
    signed = session.get(Agreement, agreement.id)
    assert signed is not None and signed.status == "signed"
    case = session.get(HardshipCase, signed.hardship_case_id)
    assert case is not None and case.state == CaseState.ACTIVE.value

    plan = session.scalar(select(Plan).where(Plan.agreement_id == signed.id))
    assert plan is not None and plan.status == "active"
    instalments = session.scalars(
        select(PlanInstalment).where(PlanInstalment.plan_id == plan.id).order_by(PlanInstalment.number)
    ).all()
    schedule = signed.facts["offer"]["schedule"]
    assert [(i.number, i.due_on.isoformat(), i.amount) for i in instalments] == [
        (s["number"], s["due_on"], s["amount"]) for s in schedule
    ]
    assert plan.total == sum(s["amount"] for s in schedule)
    waiver = session.scalar(
        select(func.sum(LedgerEntry.amount)).where(
            LedgerEntry.account_id == signed.account_id, LedgerEntry.kind == "waiver"
        )
    )
    assert waiver == -10_000
    assert signed.account.fees_balance == 0
    assert hardship_service.active_pause(session, signed.account_id, hardship_service.desk_today()) is None

    final = document_storage_from_config(app.config).open(signed.final_key or "")
    check = verify_sealed(final, seal_key_from_config(app.config))
    assert check.ok, check
    pages = PdfReader(io.BytesIO(final)).pages
    original_pages = len(
        PdfReader(io.BytesIO(document_storage_from_config(app.config).open(signed.document_key or ""))).pages
    )
    assert len(pages) == original_pages + 1
    certificate = pages[-1].extract_text()
    for evidence in ("jeff KLEIN", signed.document_sha256 or "", "sms:", "UTC", "Asia/Shanghai"):
        assert evidence.replace("  ", " ") in certificate.replace("  ", " "), evidence
    # The dashboard's timeline now shows only what a kept plan does not stop.
    [summary] = borrower_portal.overview(session, signed.borrower)
    assert all(item.in_effect for item in summary.timeline)
    download = client.get(f"/agreements/{signed.id}/document.pdf")
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert download.data == final


def test_signing_twice_is_refused_and_changes_nothing(client: FlaskClient, session: Session) -> None:
    agreement = _ready_agreement(session)
    _up_to_signing(client, session, agreement)
    client.post(f"/agreements/{agreement.id}/sign", data={"typed_name": "Jeff Klein", "agree": "yes"})
    entries = session.scalar(select(func.count()).select_from(LedgerEntry))
    again = client.post(f"/agreements/{agreement.id}/sign", data={"typed_name": "Jeff Klein", "agree": "yes"})
    assert again.status_code == 422
    assert "already signed" in again.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(LedgerEntry)) == entries
    assert (
        session.scalar(select(func.count()).select_from(Plan).where(Plan.agreement_id == agreement.id)) == 1
    )


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"typed_name": "Jeff", "agree": "yes"}, "Type your full name"),
        ({"typed_name": "Jeff Klein"}, "Tick the box"),
    ],
)
def test_a_wrong_name_or_no_tick_is_refused(
    client: FlaskClient, session: Session, form: dict, message: str
) -> None:  # type: ignore[type-arg]
    agreement = _ready_agreement(session)
    _up_to_signing(client, session, agreement)
    response = client.post(f"/agreements/{agreement.id}/sign", data=form)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    session.expire_all()
    assert session.get(Agreement, agreement.id).status == "ready"  # type: ignore[union-attr]
    assert session.scalar(select(func.count()).select_from(Plan)) == 0 or not session.scalar(
        select(Plan).where(Plan.agreement_id == agreement.id)
    )


def test_a_stale_code_or_no_code_is_refused(client: FlaskClient, session: Session) -> None:
    agreement = _ready_agreement(session)
    sign_in(client, agreement.borrower)
    client.post(f"/agreements/{agreement.id}/consent", data={"consent": "yes"})
    no_code = client.post(
        f"/agreements/{agreement.id}/sign", data={"typed_name": "Jeff Klein", "agree": "yes"}
    )
    assert no_code.status_code == 422
    _up_to_signing(client, session, agreement)
    session.expire_all()
    row = session.get(Agreement, agreement.id)
    assert row is not None
    row.code_verified_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6)
    session.commit()
    stale = client.post(f"/agreements/{agreement.id}/sign", data={"typed_name": "Jeff Klein", "agree": "yes"})
    assert stale.status_code == 422
    assert "new code" in stale.get_data(as_text=True)


def test_a_tampered_file_is_refused(client: FlaskClient, session: Session, app: Flask) -> None:
    agreement = _ready_agreement(session)
    _up_to_signing(client, session, agreement)
    path = document_storage_from_config(app.config)._path(agreement.document_key or "")  # type: ignore[attr-defined]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    response = client.post(
        f"/agreements/{agreement.id}/sign", data={"typed_name": "Jeff Klein", "agree": "yes"}
    )
    assert response.status_code == 422
    session.expire_all()
    assert session.get(Agreement, agreement.id).status == "ready"  # type: ignore[union-attr]


def test_an_expired_agreement_cannot_be_signed_and_the_job_closes_it(
    client: FlaskClient, session: Session
) -> None:
    agreement = _ready_agreement(session)
    _up_to_signing(client, session, agreement)
    session.expire_all()
    row = session.get(Agreement, agreement.id)
    assert row is not None
    row.expires_on = dt.date.today() - dt.timedelta(days=3)
    session.commit()
    refused = client.post(
        f"/agreements/{agreement.id}/sign", data={"typed_name": "Jeff Klein", "agree": "yes"}
    )
    assert refused.status_code == 422
    assert agreements.expire_unsigned(session) >= 1
    session.expire_all()
    assert session.get(Agreement, agreement.id).status == "expired"  # type: ignore[union-attr]
    assert session.get(HardshipCase, agreement.hardship_case_id).state == CaseState.EXPIRED.value  # type: ignore[union-attr]


def test_another_borrowers_agreement_is_not_found(client: FlaskClient, session: Session) -> None:
    agreement = _ready_agreement(session)
    other = factories.account(session)
    sign_in(client, other.borrower)
    for path in ("", "/document.pdf"):
        assert client.get(f"/agreements/{agreement.id}{path}").status_code == 404
    assert (
        client.post(
            f"/agreements/{agreement.id}/sign", data={"typed_name": "Jeff Klein", "agree": "yes"}
        ).status_code
        == 404
    )


def _upload(client: FlaskClient, data: bytes):  # type: ignore[no-untyped-def]
    """POST a file to /verify. Werkzeug's test client spools a body over 500 KB to a temporary
    file it never closes (a ResourceWarning later); this closes it."""
    builder = EnvironBuilder(path="/verify", method="POST", data={"file": (io.BytesIO(data), "a.pdf")})
    environ = builder.get_environ()
    builder.close()
    try:
        return client.open(environ)
    finally:
        environ["wsgi.input"].close()


def test_anyone_can_verify_a_signed_agreement_and_an_altered_copy_fails(
    client: FlaskClient, session: Session, app: Flask
) -> None:
    agreement = _ready_agreement(session)
    _up_to_signing(client, session, agreement)
    client.post(f"/agreements/{agreement.id}/sign", data={"typed_name": "Jeff Klein", "agree": "yes"})
    session.expire_all()
    signed = session.get(Agreement, agreement.id)
    final = document_storage_from_config(app.config).open(signed.final_key or "")  # type: ignore[union-attr]
    anonymous = app.test_client()
    anonymous.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    genuine = _upload(anonymous, final)
    assert "Genuine" in genuine.get_data(as_text=True)
    assert "Jeff" not in genuine.get_data(as_text=True)
    altered = bytearray(final)
    altered[len(altered) // 3] ^= 0x01
    bad = _upload(anonymous, bytes(altered))
    assert "Not valid" in bad.get_data(as_text=True)
    html = _upload(anonymous, b"<html></html>")
    assert "Not valid" in html.get_data(as_text=True)


def _png_data_url() -> str:
    import base64

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (60, 20), "white").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_a_drawn_signature_is_kept_as_its_hash_and_a_fake_one_refused(
    client: FlaskClient, session: Session
) -> None:
    agreement = _ready_agreement(session)
    _up_to_signing(client, session, agreement)
    fake = client.post(
        f"/agreements/{agreement.id}/sign",
        data={"typed_name": "Jeff Klein", "agree": "yes", "signature": "data:image/svg+xml;base64,PHN2Zz4="},
    )
    assert fake.status_code == 422
    assert "drawn signature could not be read" in fake.get_data(as_text=True)
    drawn = _png_data_url()
    signed = client.post(
        f"/agreements/{agreement.id}/sign",
        data={"typed_name": "Jeff Klein", "agree": "yes", "signature": drawn},
    )
    assert signed.status_code == 302
    session.expire_all()
    row = session.get(Agreement, agreement.id)
    assert row is not None and row.status == "signed"
    import base64
    import hashlib

    assert row.signature_sha256 == hashlib.sha256(base64.b64decode(drawn.split(",", 1)[1])).hexdigest()
