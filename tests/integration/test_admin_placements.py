"""The admin's placement page: a lender's file uploaded, checked or applied, and its report (counts,
what was applied, each refused row with its line, column and reason, as a page and as CSV)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import sqlite3

import pytest
from alembic import command
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import EnvironBuilder, TestResponse

from portal import tasks
from portal.db import utcnow
from portal.errors import MESSAGES
from portal.extensions import db
from portal.integrations.storage import Storage, document_storage_from_config
from portal.migrations import alembic_config
from portal.models import Account, AuditEvent, Creditor, LedgerEntry, PlacementImport, PlacementRejection
from portal.services import placements
from portal.services.hardship import desk_today
from tests import factories
from tests.conftest import sign_in
from workflows.access import Permission, Role, can
from workflows.placements import PlacementRow, check_header, parse_text_row

PLACE_UPLOAD = tasks.place_upload  # the job itself, before any test stands in for it

HEADER = (
    "account_reference",
    "borrower_reference",
    "full_name",
    "date_of_birth",
    "phone",
    "email",
    "product_type",
    "currency",
    "annual_rate",
    "opened_on",
    "balance_date",
    "principal",
    "interest",
    "fees",
    "total",
)
GOOD = {
    "borrower_reference": "C-1",
    "full_name": "王小明",
    "date_of_birth": "1985-06-01",
    "phone": "13800138000",
    "email": "",
    "product_type": "loan",
    "currency": "CNY",
    "annual_rate": "18.5",
    "opened_on": "2024-01-15",
    "balance_date": "2025-06-30",
    "principal": "1000.00",
    "interest": "20.50",
    "fees": "0",
    "total": "1020.50",
}


def _csv(*rows: dict[str, str], header: tuple[str, ...] = HEADER) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([row.get(name, "") for name in header] for row in rows)
    return buffer.getvalue().encode("utf-8")


def _row(reference: str, **changes: str) -> dict[str, str]:
    return {**GOOD, "account_reference": reference, **changes}


def _upload(
    client: FlaskClient, creditor: Creditor, data: bytes, *, name: str = "accounts.csv", dry_run: bool = False
) -> TestResponse:
    """POST a file to the upload form. Werkzeug's test client spools a body over 500 KB to a
    temporary file it never closes (a ResourceWarning later); this closes it."""
    form: dict[str, object] = {"creditor": str(creditor.id), "file": (io.BytesIO(data), name)}
    if dry_run:
        form["dry_run"] = "y"
    builder = EnvironBuilder(path="/admin/placements", method="POST", data=form)
    environ = builder.get_environ()
    builder.close()
    try:
        return client.open(environ)
    finally:
        environ["wsgi.input"].close()


def _import_id(response: TestResponse) -> int:
    assert response.status_code == 302, response.get_data(as_text=True)
    found = re.fullmatch(r"/admin/placements/(\d+)", response.location)
    assert found, response.location
    return int(found.group(1))


def _accounts(session: Session, creditor: Creditor) -> list[Account]:
    return list(
        session.scalars(
            select(Account).where(Account.creditor_id == creditor.id).order_by(Account.external_reference)
        )
    )


def _imports(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(PlacementImport)) or 0


def test_an_admin_applies_a_good_file_and_the_import_page_shows_what_was_applied(
    signed_in, session: Session
) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Role.ADMIN)
    creditor = factories.creditor(session)
    data = _csv(_row("LN-1"), _row("LN-2", borrower_reference="C-2", phone="13900139000"))

    response = _upload(client, creditor, data)

    import_id = _import_id(response)
    accounts = _accounts(session, creditor)
    assert [a.external_reference for a in accounts] == ["LN-1", "LN-2"]
    assert [(a.principal_balance, a.interest_balance, a.total_balance) for a in accounts] == [
        (100_000, 2_050, 102_050)
    ] * 2
    record = session.get(PlacementImport, import_id)
    assert record is not None and record.status == "applied" and record.source == "upload"
    assert record.filename == "accounts.csv" and record.size_bytes == len(data)
    page = client.get(response.location).get_data(as_text=True)
    assert "The file was applied." in page  # the flash
    assert "2 accounts applied: 2 new, 0 updated, 0 unchanged." in page
    assert record.sha256 in page and "accounts.csv" in page and creditor.name in page
    assert 'id="rejections-h"' not in page  # no table of refused rows

    again = client.get(f"/admin/placements/{_import_id(_upload(client, creditor, data))}")
    assert "2 accounts applied: 0 new, 0 updated, 2 unchanged." in again.get_data(as_text=True)
    assert len(_accounts(session, creditor)) == 2


def test_a_dry_run_applies_nothing_and_the_page_says_it_was_a_check(signed_in, session: Session) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Role.ADMIN)
    creditor = factories.creditor(session)

    response = _upload(client, creditor, _csv(_row("LN-1"), _row("LN-2")), dry_run=True)

    import_id = _import_id(response)
    assert _accounts(session, creditor) == []
    record = session.get(PlacementImport, import_id)
    assert record is not None and record.status == "validated" and record.dry_run
    page = client.get(response.location).get_data(as_text=True)
    assert "The file was checked. Nothing was applied." in page
    assert "Nothing was applied: this was a check." in page
    assert "2 rows would be applied." in page


def test_rows_with_problems_are_listed_with_line_column_and_reason_and_the_csv_matches(
    signed_in, session: Session
) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Role.ADMIN)
    creditor = factories.creditor(session)
    data = _csv(
        _row("LN-1"),
        _row("LN-2", phone="12345"),  # line 3
        _row("LN-1", borrower_reference="C-9"),  # line 4: the account is on line 2 already
        _row("=HYPERLINK(1)", total="5"),  # line 5: a bad reference and a wrong total
    )

    response = _upload(client, creditor, data)

    import_id = _import_id(response)
    assert [a.external_reference for a in _accounts(session, creditor)] == ["LN-1"]
    stored = session.execute(
        select(
            PlacementRejection.line,
            PlacementRejection.column,
            PlacementRejection.account_reference,
            PlacementRejection.code,
            PlacementRejection.message,
        )
        .where(PlacementRejection.import_id == import_id)
        .order_by(PlacementRejection.line, PlacementRejection.id)
    ).all()
    assert [(line, column, code) for line, column, _ref, code, _msg in stored] == [
        (3, "phone", "phone_invalid"),
        (4, "account_reference", "reference_duplicated"),
        (5, "account_reference", "reference_invalid"),
        (5, "total", "total_mismatch"),
    ]
    page = client.get(response.location).get_data(as_text=True)
    assert "1 account applied: 1 new, 0 updated, 0 unchanged." in page
    assert "3 rows were not applied, listed below." in page
    for line, column, _reference, code, message in stored:
        assert re.search(rf'<td class="num">{line}</td>\s*<td><code>{column}</code></td>', page), (
            line,
            column,
        )
        assert str(escape(message)) in page
        assert str(escape(MESSAGES[code] % {"column": column})) in page  # the staff's own language

    download = client.get(f"/admin/placements/{import_id}/rejections.csv")
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in download.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(download.get_data().decode("utf-8-sig"))))
    assert rows[0] == ["line", "column", "account_reference", "code", "message", "explanation"]
    expected = [[str(line), column, ref or "", code, message] for line, column, ref, code, message in stored]
    # The file's text is quoted where a spreadsheet would run it as a formula.
    expected[2][2] = expected[3][2] = "'=HYPERLINK(1)"
    expected[2][4] = "'" + expected[2][4]
    assert [row[:5] for row in rows[1:]] == expected
    assert all(row[5] for row in rows[1:])  # every code here has a sentence in the staff's language


def test_the_reasons_are_also_given_in_the_staff_members_language(
    app: Flask, client: FlaskClient, staff_of, session: Session
) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, staff_of(Role.ADMIN))
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "zh-CN"
    creditor = factories.creditor(session)

    response = _upload(client, creditor, _csv(_row("LN-1", phone="12345")))

    page = client.get(response.location).get_data(as_text=True)
    with app.test_request_context(headers={"Accept-Language": "zh-CN"}):
        translated = str(MESSAGES["phone_invalid"])
    assert str(escape(translated)) in page
    assert "12345 is not a phone number" in page  # the English sentence, with the value


def test_the_rows_not_applied_are_shown_a_hundred_a_page(signed_in, session: Session) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Role.ADMIN)
    creditor = factories.creditor(session)
    bad = [_row(f"BAD-{n:03d}", email="not-an-address", phone="") for n in range(1, 151)]

    import_id = _import_id(_upload(client, creditor, _csv(*bad), dry_run=True))

    first = client.get(f"/admin/placements/{import_id}").get_data(as_text=True)
    second = client.get(f"/admin/placements/{import_id}?page=2").get_data(as_text=True)
    shown_first = set(re.findall(r"<code>(BAD-\d+)</code>", first))
    shown_second = set(re.findall(r"<code>(BAD-\d+)</code>", second))
    assert shown_first == {f"BAD-{n:03d}" for n in range(1, 101)}
    assert shown_second == {f"BAD-{n:03d}" for n in range(101, 151)}
    assert "Page 1 of 2" in first and "Page 2 of 2" in second
    download = client.get(f"/admin/placements/{import_id}/rejections.csv").get_data().decode("utf-8-sig")
    assert len(list(csv.reader(io.StringIO(download)))) == 1 + 150


@pytest.mark.parametrize(
    ("data", "code", "shown"),
    [
        (b"", "file_empty", "The file is empty."),
        (
            b"account_reference;borrower_reference\r\nLN-1;C-1\r\n",
            "delimiter_wrong",
            "The columns are separated by a semicolon",
        ),
        (_csv(header=("account_reference", "colour")), "header_invalid", "colour is not a column"),
    ],
    ids=["empty", "semicolons", "bad-header"],
)
def test_a_refused_file_applies_nothing_and_the_page_says_why(
    data: bytes, code: str, shown: str, signed_in, session: Session
) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Role.ADMIN)
    creditor = factories.creditor(session)

    response = _upload(client, creditor, data)

    record = session.get(PlacementImport, _import_id(response))
    assert record is not None and record.status == "refused" and record.error_code == code
    assert _accounts(session, creditor) == []
    page = client.get(response.location).get_data(as_text=True)
    assert "The file was refused: nothing was applied. The reason is below." in page
    assert "Nothing was applied: the file was refused for the reason below." in page
    assert shown in page
    assert f"<code>{code}</code>" in page
    assert str(escape(MESSAGES[code])) in page


def test_a_file_too_large_gets_a_clear_message_and_creates_nothing(
    app: Flask, signed_in, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Role.ADMIN)
    creditor = factories.creditor(session)
    monkeypatch.setitem(app.config, "PLACEMENT_MAX_BYTES", 512 * 1024)
    before = _imports(session)
    row_bytes = len(_csv(_row("LN-00000"))) - len(_csv())
    data = _csv(*[_row(f"LN-{n:05d}") for n in range(512 * 1024 // row_bytes + 10)])
    assert 512 * 1024 < len(data) < 512 * 1024 + 64 * 1024  # read, then refused by its size
    bigger = data * 3  # refused before the form is read: more than the request may carry

    for upload, csrf in ((data, False), (bigger, False), (bigger, True)):
        # With CSRF protection on, the form is read (and found too large) before the view runs.
        monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", csrf)
        response = _upload(client, creditor, upload)
        assert response.status_code == 302 and response.location == "/admin/placements"
        page = client.get(response.location).get_data(as_text=True)
        assert "The file is larger than 0.5 MB, the most an import takes. Nothing was imported" in page
    assert _imports(session) == before
    assert _accounts(session, creditor) == []


def test_the_upload_may_be_larger_than_other_requests(
    app: Flask, signed_in, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Role.ADMIN)
    creditor = factories.creditor(session)
    data = _csv(*[_row(f"LN-{n:03d}", borrower_reference=f"C-{n}") for n in range(50)])
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", len(data) // 2)

    import_id = _import_id(_upload(client, creditor, data, dry_run=True))

    record = session.get(PlacementImport, import_id)
    assert record is not None and record.rows_accepted == 50
    assert client.post("/admin/staff", data={"email": "x" * len(data)}).status_code == 413


def test_the_upload_form_refuses_a_missing_file_or_lender(signed_in, session: Session) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Role.ADMIN)
    creditor = factories.creditor(session)
    before = _imports(session)

    no_file = client.post("/admin/placements", data={"creditor": str(creditor.id)})
    no_lender = client.post(
        "/admin/placements",
        data={"creditor": "0", "file": (io.BytesIO(_csv(_row("LN-1"))), "a.csv")},
        content_type="multipart/form-data",
    )

    assert no_file.status_code == 200 and "Choose a CSV or XLSX file." in no_file.get_data(as_text=True)
    assert no_lender.status_code == 200 and "Not a valid choice" in no_lender.get_data(as_text=True)
    assert _imports(session) == before


def test_the_template_has_every_column_and_an_example_row_the_rules_accept(
    signed_in, session: Session
) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Role.ADMIN)
    creditor = factories.creditor(session)

    response = client.get("/admin/placements/template.csv")

    assert response.status_code == 200 and "attachment" in response.headers["Content-Disposition"]
    header, example = list(csv.reader(io.StringIO(response.get_data().decode("utf-8-sig"))))
    assert check_header(header) == []
    assert isinstance(
        parse_text_row(dict(zip(header, example, strict=True)), today=desk_today()), PlacementRow
    )
    checked = session.get(
        PlacementImport, _import_id(_upload(client, creditor, response.get_data(), dry_run=True))
    )
    assert checked is not None and (checked.status, checked.rows_accepted, checked.rows_rejected) == (
        "validated",
        1,
        0,
    )


def test_the_page_lists_the_columns_and_recent_imports(signed_in, session: Session) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Role.ADMIN)
    creditor = factories.creditor(session)
    import_id = _import_id(_upload(client, creditor, _csv(_row("LN-1")), name="lender-june.csv"))

    page = client.get("/admin/placements").get_data(as_text=True)

    assert f'href="/admin/placements/{import_id}"' in page and "lender-june.csv" in page
    assert "<code>oldest_unpaid_due_on</code>" in page and 'href="/admin/placements/template.csv"' in page
    assert f'<option value="{creditor.id}">' in page
    assert 'href="/admin/placements">Placements</a>' in page  # the nav link


NOT_ALLOWED = [role for role in Role if not can(role, Permission.MANAGE_INTEGRATION)]


@pytest.mark.parametrize("role", NOT_ALLOWED, ids=str)
def test_staff_without_the_integration_permission_are_refused(
    role: Role, client: FlaskClient, staff_of, session: Session
) -> None:  # type: ignore[no-untyped-def]
    admin = sign_in(client, staff_of(Role.ADMIN))
    creditor = factories.creditor(session)
    import_id = _import_id(_upload(admin, creditor, _csv(_row("LN-1", phone="1"))))
    before = _imports(session)
    sign_in(client, staff_of(role))

    assert client.get("/staff/").status_code == 200
    assert 'href="/admin/placements"' not in client.get("/staff/").get_data(as_text=True)
    for url in (
        "/admin/placements",
        f"/admin/placements/{import_id}",
        f"/admin/placements/{import_id}/rejections.csv",
        "/admin/placements/template.csv",
    ):
        assert client.get(url).status_code == 403, url
    assert _upload(client, creditor, _csv(_row("LN-2"))).status_code == 403
    assert _imports(session) == before


def test_an_unknown_import_is_not_found(signed_in) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Role.ADMIN)
    assert client.get("/admin/placements/999999").status_code == 404
    assert client.get("/admin/placements/999999/rejections.csv").status_code == 404


# --- The upload's background job ------------------------------------------------------------------


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ids of the imports the upload form queues, their job not run (as when no worker has
    picked it up yet); ``tasks.place_upload`` runs one."""
    ids: list[int] = []
    monkeypatch.setattr(tasks, "place_upload", ids.append)
    return ids


def _stored(app: Flask) -> Storage:
    return document_storage_from_config(app.config)


def _one_account_uploaded(signed_in, session: Session, reference: str) -> tuple[Creditor, int]:  # type: ignore[no-untyped-def]
    """A new lender's file of one account uploaded by an admin: the lender and the import."""
    creditor = factories.creditor(session)
    return creditor, _import_id(_upload(signed_in(Role.ADMIN), creditor, _csv(_row(reference))))


def test_an_upload_waits_for_its_job_sealed_in_storage_and_its_page_reloads_until_it_has_run(
    signed_in, session: Session, app: Flask, queued: list[int]
) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Role.ADMIN)
    creditor = factories.creditor(session)
    data = _csv(_row("LN-Q1"), _row("LN-Q2", borrower_reference="C-2", phone="13900139000"))

    response = _upload(client, creditor, data)

    import_id = _import_id(response)
    assert queued == [import_id]
    record = session.get(PlacementImport, import_id)
    assert record is not None and record.status == "queued" and record.upload_key is not None
    key = record.upload_key
    assert _stored(app).open(key) == data
    assert "王小明".encode() not in _stored(app).raw(key)  # sealed at rest, like every stored file
    assert _accounts(session, creditor) == []
    event = session.scalar(
        select(AuditEvent).where(
            AuditEvent.action == "placement_import.queued", AuditEvent.object_id == str(import_id)
        )
    )
    assert event is not None and event.actor_type == "staff" and event.after["sha256"] == record.sha256
    page = client.get(response.location).get_data(as_text=True)
    assert "The file was received." in page  # the flash
    assert "This import is waiting for a worker." in page and "Waiting to run" in page
    assert '<meta http-equiv="refresh" content="5">' in page
    assert 'id="counts-h"' not in page  # no counts before there are any

    PLACE_UPLOAD(import_id)  # the worker's turn

    session.expire_all()
    record = session.get(PlacementImport, import_id)
    assert record is not None and record.status == "applied" and record.upload_key is None
    actions = session.scalars(
        select(AuditEvent.action)
        .where(AuditEvent.object_type == "placement_import", AuditEvent.object_id == str(import_id))
        .order_by(AuditEvent.id)
    ).all()
    assert actions == ["placement_import.queued", "placement_import.started", "placement_import.applied"]
    assert not _stored(app).exists(key)
    assert [a.external_reference for a in _accounts(session, creditor)] == ["LN-Q1", "LN-Q2"]
    page = client.get(response.location).get_data(as_text=True)
    assert "2 accounts applied: 2 new, 0 updated, 0 unchanged." in page
    assert 'http-equiv="refresh"' not in page and 'id="counts-h"' in page


def test_the_job_run_twice_places_the_file_once(
    signed_in, session: Session, app: Flask, queued: list[int]
) -> None:  # type: ignore[no-untyped-def]
    _, import_id = _one_account_uploaded(signed_in, session, "LN-T1")
    PLACE_UPLOAD(import_id)
    session.expire_all()
    entries = session.scalar(select(func.count()).select_from(LedgerEntry)) or 0

    again = placements.place_queued(session, import_id, storage=_stored(app), today=desk_today(), max_rows=10)

    assert again is None
    assert session.scalar(select(func.count()).select_from(LedgerEntry)) == entries
    record = session.get(PlacementImport, import_id)
    assert record is not None and record.status == "applied" and record.accounts_created == 1


def test_an_upload_that_cannot_be_queued_fails_at_once_and_leaves_no_file(
    signed_in, session: Session, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    def unreachable(_import_id: int) -> None:
        raise ConnectionError("the queue is not reachable")

    monkeypatch.setattr(tasks, "place_upload", unreachable)
    client = signed_in(Role.ADMIN)
    creditor = factories.creditor(session)
    files = set(_stored(app).stored_keys())

    response = _upload(client, creditor, _csv(_row("LN-U1")))

    record = session.get(PlacementImport, _import_id(response))
    assert record is not None and record.status == "failed" and record.error_code == "import_not_queued"
    assert record.upload_key is None and record.finished_at is not None
    assert set(_stored(app).stored_keys()) == files  # the upload's file deleted
    assert _accounts(session, creditor) == []
    page = client.get(response.location).get_data(as_text=True)
    assert "The import failed on our side: nothing was applied." in page  # the flash
    assert "import_not_queued" in page


def test_a_job_whose_file_is_gone_records_the_import_as_failed(
    signed_in, session: Session, app: Flask, queued: list[int]
) -> None:  # type: ignore[no-untyped-def]
    creditor, import_id = _one_account_uploaded(signed_in, session, "LN-G1")
    record = session.get(PlacementImport, import_id)
    assert record is not None and record.upload_key is not None
    _stored(app).delete(record.upload_key)

    PLACE_UPLOAD(import_id)

    session.expire_all()
    record = session.get(PlacementImport, import_id)
    assert record is not None and record.status == "failed" and record.error_code == "upload_missing"
    assert record.upload_key is None and _accounts(session, creditor) == []


def test_imports_left_waiting_or_running_for_hours_are_recorded_as_failed(
    signed_in, session: Session, app: Flask, queued: list[int]
) -> None:  # type: ignore[no-untyped-def]
    client = signed_in(Role.ADMIN)
    creditor = factories.creditor(session)
    stalled, recent, done = (
        _import_id(_upload(client, creditor, _csv(_row(reference))))
        for reference in ("LN-S1", "LN-S2", "LN-S3")
    )
    PLACE_UPLOAD(done)
    session.expire_all()
    records = {i: session.get(PlacementImport, i) for i in (stalled, recent, done)}
    long_ago = utcnow() - dt.timedelta(hours=7)
    for import_id in (stalled, done):
        records[import_id].started_at = long_ago  # type: ignore[union-attr]
    stalled_key = records[stalled].upload_key  # type: ignore[union-attr]
    session.commit()

    count = placements.abandon_stalled(session, storage=_stored(app), older_than=dt.timedelta(hours=6))

    assert count == 1
    session.expire_all()
    assert [session.get(PlacementImport, i).status for i in (stalled, recent, done)] == [  # type: ignore[union-attr]
        "failed",
        "queued",
        "applied",
    ]
    assert session.get(PlacementImport, stalled).error_code == "import_interrupted"  # type: ignore[union-attr]
    assert stalled_key is not None and not _stored(app).exists(stalled_key)
    assert placements.abandon_stalled(session, storage=_stored(app), older_than=dt.timedelta(hours=6)) == 0


def test_on_sqlite_the_import_pages_are_served_while_an_import_holds_the_lock(make_app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An import's page reloads itself while the import runs, and an import holds SQLite's one
    write lock until it has placed the whole file (tens of seconds for 100,000 rows): that page
    and the list of imports only read, and do not queue behind it (they would wait for
    busy_timeout, 30 s, and then fail)."""
    path = tmp_path / "locked.db"
    command.upgrade(alembic_config(f"sqlite:///{path}"), "head")
    app = make_app(DATABASE_URL=f"sqlite:///{path}")
    with app.app_context(), db.session_scope() as setup:
        admin = factories.staff(setup, role=Role.ADMIN)
        creditor = factories.creditor(setup)
        setup.flush()
        record = PlacementImport(
            creditor_id=creditor.id,
            source="upload",
            filename="big.csv",
            sha256="0" * 64,
            status="running",
            actor_type="staff",
            actor_id=admin.id,
        )
        setup.add(record)
        setup.commit()
        client = sign_in(app.test_client(), admin)
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
        import_id = record.id
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # what the running import holds
    writer.execute("UPDATE creditor SET name = name")
    try:
        page = client.get(f"/admin/placements/{import_id}")
        listing = client.get("/admin/placements")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert page.status_code == 200
    assert "This import is running." in page.get_data(as_text=True)
    assert listing.status_code == 200
    assert f'href="/admin/placements/{import_id}"' in listing.get_data(as_text=True)


class _Failing:
    """The document store, but failing as asked: ``open`` or ``delete`` raising OSError."""

    def __init__(self, store: Storage, *, failing: str) -> None:
        self.store, self.failing = store, failing

    def __getattr__(self, name: str) -> object:
        if name == self.failing:
            raise OSError("the store is unreachable")
        return getattr(self.store, name)


def test_a_stored_file_that_cannot_be_read_fails_the_import_and_applies_nothing(
    signed_in, session: Session, app: Flask, queued: list[int]
) -> None:  # type: ignore[no-untyped-def]
    creditor, import_id = _one_account_uploaded(signed_in, session, "LN-R1")
    store = _Failing(_stored(app), failing="open")

    record = placements.place_queued(session, import_id, storage=store, today=desk_today(), max_rows=10)  # type: ignore[arg-type]

    assert record is not None and record.status == "failed" and record.error_code == "import_failed"
    assert "OSError: the store is unreachable" in (record.error_message or "")
    assert record.upload_key is None and _accounts(session, creditor) == []


def test_a_file_the_store_failed_to_delete_is_deleted_by_the_hourly_sweep(
    signed_in, session: Session, app: Flask, queued: list[int]
) -> None:  # type: ignore[no-untyped-def]
    _, import_id = _one_account_uploaded(signed_in, session, "LN-D1")
    store = _Failing(_stored(app), failing="delete")

    record = placements.place_queued(session, import_id, storage=store, today=desk_today(), max_rows=10)  # type: ignore[arg-type]

    assert record is not None and record.status == "applied" and record.upload_key is not None
    key = record.upload_key
    assert _stored(app).exists(key)  # kept, and named by the import, until the store works again
    assert placements.abandon_stalled(session, storage=_stored(app), older_than=dt.timedelta(hours=6)) == 0
    session.expire_all()
    record = session.get(PlacementImport, import_id)
    assert record is not None and record.status == "applied" and record.upload_key is None
    assert not _stored(app).exists(key)
