"""The borrower's data export: their own data as JSON and their documents as files, nobody
else's, only when signed in, audited."""

from __future__ import annotations

import io
import json
import zipfile

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.integrations.storage import storage_from_config
from portal.models import AuditEvent, Borrower, BudgetLine, CaseMessage
from portal.services import agreements, data_export
from portal.services import hardship as hardship_service
from tests import factories
from tests.conftest import sign_in


def _borrower_with_everything(session: Session, app: Flask, name: str) -> Borrower:
    """A borrower with an account, a request for help (statement, message, evidence file) and an
    agreement whose PDF is stored."""
    owner = factories.borrower(session, language="en", full_name=name)
    account = factories.account(session, principal=900_000, interest=12_345, owner=owner)
    case = factories.hardship_case(session, account)
    session.add(
        BudgetLine(
            hardship_case_id=case.id,
            category="rent",
            amount=250_000,
            frequency="monthly",
            explanation=f"{name}'s flat",
        )
    )
    session.add(
        CaseMessage(
            hardship_case_id=case.id, direction="from_borrower", kind="response", body=f"{name} wrote this."
        )
    )
    session.commit()
    factories.evidence_file(session, case, storage_from_config(app.config))
    offer = factories.offer(session, case)
    hardship_service.accept(session, owner, case.id, offer.id)
    session.expire_all()
    assert agreements.latest_for_case(session, case.id) is not None
    return session.get(Borrower, owner.id)  # type: ignore[return-value]


def _unzip(data: bytes) -> tuple[dict, dict[str, bytes]]:  # type: ignore[type-arg]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    return json.loads(files.pop("data.json")), files


def test_the_zip_holds_the_borrowers_own_data_and_documents_and_nobody_elses(
    session: Session, app: Flask
) -> None:
    mine = _borrower_with_everything(session, app, "Jeff Klein")
    theirs = _borrower_with_everything(session, app, "Ada Other")
    with app.test_request_context():
        document, files = _unzip(data_export.export(session, mine, storage_from_config(app.config)))

    assert document["schema_version"] == data_export.SCHEMA_VERSION
    profile = document["borrower"]
    assert profile["full_name"] == "Jeff Klein"
    assert profile["date_of_birth"] == "1985-03-15" and profile["national_id"] == mine.national_id
    [account] = document["accounts"]
    assert account["balances"] == {
        "currency": "CNY",
        "principal": 900_000,
        "interest": 12_345,
        "fees": 0,
        "total": 912_345,
        "credit_held": 0,
    }
    assert sorted(e["amount"] for e in account["ledger"]) == [12_345, 900_000]
    assert all(e["currency"] == "CNY" and isinstance(e["amount"], int) for e in account["ledger"])
    [case] = document["hardship_cases"]
    assert case["description"] == "Made redundant."
    assert {
        "category": "rent",
        "amount": 250_000,
        "frequency": "monthly",
        "explanation": "Jeff Klein's flat",
        "currency": "CNY",
    } in case["budget_lines"]
    assert [m["body"] for m in case["messages"]] == ["Jeff Klein wrote this."]
    assert case["offers"] and case["offers"][0]["total_repayable"] == 90_000
    [evidence] = case["evidence_files"]
    assert evidence["display_name"] == "payslip.png" and files[evidence["file"]].startswith(b"\x89PNG")
    [agreement] = document["agreements"]
    assert files[agreement["file"]].startswith(b"%PDF")

    text = json.dumps(document, ensure_ascii=False) + "".join(files)
    for other in (
        "Ada Other",
        theirs.national_id,
        theirs.phone,
        theirs.email,
        theirs.accounts[0].external_reference,
    ):
        assert other not in text, other


def test_the_download_needs_sign_in(client: FlaskClient, session: Session) -> None:
    assert client.get("/my-data").status_code == 302
    response = client.post("/my-data/download")
    assert response.status_code == 302 and "/signin" in response.headers["Location"]


def test_a_signed_in_borrower_downloads_their_own_data_not_cached_and_audited(
    client: FlaskClient, session: Session, app: Flask
) -> None:
    mine = _borrower_with_everything(session, app, "Jeff Klein")
    _borrower_with_everything(session, app, "Ada Other")
    sign_in(client, mine)
    page = client.get("/my-data")
    assert page.status_code == 200 and "Download my data" in page.get_data(as_text=True)
    assert "/my-data" in client.get("/home").get_data(as_text=True)

    response = client.post("/my-data/download")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/zip"
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert "no-store" in response.headers["Cache-Control"]
    document, files = _unzip(response.data)
    assert document["borrower"]["full_name"] == "Jeff Klein"
    assert "Ada Other" not in json.dumps(document, ensure_ascii=False)
    assert any(name.endswith(".pdf") and data.startswith(b"%PDF") for name, data in files.items())

    event = session.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == "borrower.data_exported")
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    assert event is not None and event.object_id == str(mine.id) and event.actor_type == "borrower"
    assert event.actor_id == mine.id
    assert mine.national_id not in json.dumps(event.after)


def test_the_download_refuses_a_request_without_a_csrf_token(
    client: FlaskClient, session: Session, app: Flask
) -> None:
    mine = factories.account(session).borrower
    sign_in(client, mine)
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        assert client.post("/my-data/download").status_code == 400
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
