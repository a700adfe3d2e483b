"""Placements: an admin uploads a lender's file of borrowers and accounts (CSV or XLSX), to check
it (a dry run: nothing applied) or to apply it, and reads each import's report: its counts, what
was applied, why the file or each refused row was not, as a page and as a CSV.

The rules live in portal.services.placements (reading the file, upserting by the lender's
references, the report) and workflows.placements (the columns, each row's checks). These views
save the upload to a temporary file (refusing one over PLACEMENT_MAX_BYTES), have the service keep
it in the document store and queue its import for a background job (``tasks.place_upload``), and
show what the import recorded; its page reloads itself until the job has run.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import format_decimal, ngettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms import BooleanField, SelectField
from wtforms.validators import InputRequired

from portal import tasks
from portal.admin import admin_bp
from portal.auth.guards import requires
from portal.db import reads_only
from portal.errors import DETAILS, MESSAGES, TITLES
from portal.extensions import db
from portal.integrations.storage import document_storage_from_config
from portal.models import Creditor, StaffUser
from portal.models.placements import MAX_STORED_REJECTIONS, PlacementImport, PlacementRejection
from portal.services import placements as placements_service
from portal.services.audit import Actor
from workflows.access import Permission
from workflows.placements import COLUMNS

PAGE_SIZE = 100
"""Refused rows shown per page of an import's report."""
RECENT_IMPORTS = 50
_COPY_CHUNK = 64 * 1024
_FORM_ROOM = 64 * 1024  # the upload form's other fields and multipart boundaries, generously
_DOWNLOAD_BATCH = 1_000
# A spreadsheet runs a cell starting with one of these as a formula; the report quotes the file's text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

STATUSES = {
    "queued": _l("Waiting to run"),
    "running": _l("Running"),
    "validated": _l("Checked, nothing applied"),
    "applied": _l("Applied"),
    "refused": _l("File refused"),
    "failed": _l("Failed"),
}
SOURCES = {"upload": _l("Upload"), "cli": _l("Command line"), "api": _l("API")}

# The template's example row: one person in China with an overdue loan, valid as it stands
# (tests/integration/test_admin_placements.py reads it back with the file rules). The mobile number
# and the identity card number are written so that a spreadsheet keeps them as they are: no "+"
# (a formula) and a final X (not an 18-digit number, which would lose its last digits).
TEMPLATE_EXAMPLE = {
    "account_reference": "LN-2025-000123",
    "borrower_reference": "C-000045",
    "borrower_kind": "person",
    "full_name": "王小明",
    "date_of_birth": "1985-06-01",
    "national_id": "11010119850601001X",
    "phone": "13800138000",
    "email": "wang.xiaoming@example.com",
    "language": "zh_Hans_CN",
    "country": "CN",
    "time_zone": "Asia/Shanghai",
    "address_line1": "人民路 1 号",
    "city": "上海",
    "region": "上海",
    "postal_code": "200000",
    "product_type": "loan",
    "currency": "CNY",
    "annual_rate": "18.5",
    "opened_on": "2024-01-15",
    "balance_date": "2025-06-30",
    "principal": "12345.67",
    "interest": "890.10",
    "fees": "50.00",
    "total": "13285.77",
    "overdue_amount": "2100.00",
    "oldest_unpaid_due_on": "2025-04-15",
    "next_due_on": "2025-07-15",
    "next_due_amount": "1050.00",
}


class PlacementUploadForm(FlaskForm):
    creditor = SelectField(
        _l("Lender"),
        coerce=int,
        validators=[InputRequired(message=_l("Choose the lender the file comes from."))],
    )
    file = FileField(
        _l("Placement file"),
        validators=[FileRequired(message=_l("Choose a CSV or XLSX file."))],
        render_kw={"accept": ".csv,.xlsx,text/csv"},
    )
    dry_run = BooleanField(_l("Check only (dry run): report what is wrong and apply nothing"))


def _upload_form() -> PlacementUploadForm:
    form = PlacementUploadForm()
    creditors = db.session.execute(select(Creditor.id, Creditor.name, Creditor.code).order_by(Creditor.name))
    form.creditor.choices = [(row.id, f"{row.name} ({row.code})") for row in creditors]
    form.file.description = _(
        "Up to %(rows)s rows and %(size)s MB. The first line names the columns listed below.",
        rows=format_decimal(current_app.config["PLACEMENT_MAX_ROWS"]),
        size=_megabytes(current_app.config["PLACEMENT_MAX_BYTES"]),
    )
    return form


def _megabytes(size: int) -> str:
    return format_decimal(round(size / (1024 * 1024), 1))


def _too_large_message() -> str:
    return _(
        "The file is larger than %(size)s MB, the most an import takes. Nothing was imported: "
        "split the file and upload each part.",
        size=_megabytes(current_app.config["PLACEMENT_MAX_BYTES"]),
    )


# --- Upload ----------------------------------------------------------------------------------------


@admin_bp.get("/placements")
@reads_only  # opened while an import runs: on SQLite it would wait for the import's write lock
@requires(Permission.MANAGE_INTEGRATION)
def placements() -> Any:
    return _placements_page(_upload_form())


@admin_bp.post("/placements")
@requires(Permission.MANAGE_INTEGRATION)
def placements_upload() -> Any:
    form = _upload_form()
    if not form.validate_on_submit():
        return _placements_page(form)
    upload: FileStorage = form.file.data
    path = _saved_upload(upload.stream, current_app.config["PLACEMENT_MAX_BYTES"])
    if path is None:
        flash(_too_large_message(), "error")
        return redirect(url_for("admin.placements"))
    try:
        record = _queue_import(
            path,
            creditor_id=form.creditor.data,
            filename=upload.filename or path.name,
            dry_run=form.dry_run.data,
        )
    finally:
        path.unlink(missing_ok=True)
    message, category = _outcome_flash(record)
    flash(message, category)
    return redirect(url_for("admin.placement_import", import_id=record.id))


def _placements_page(form: PlacementUploadForm) -> str:
    """The upload form (with its errors, after a refused upload) and the recent imports."""
    recent = db.session.execute(
        select(PlacementImport, Creditor.name)
        .join(Creditor, Creditor.id == PlacementImport.creditor_id)
        .order_by(PlacementImport.id.desc())
        .limit(RECENT_IMPORTS)
    ).all()
    return render_template(
        "admin/placements.html",
        form=form,
        recent=recent,
        columns=COLUMNS,
        statuses=STATUSES,
        sources=SOURCES,
    )


def _saved_upload(stream: IO[bytes], limit: int) -> Path | None:
    """The upload copied to a temporary file a chunk at a time (never whole in memory); None, with
    nothing left behind, when it holds more than `limit` bytes. The caller removes the file."""
    fd, name = tempfile.mkstemp(prefix="accord-placement-", suffix=".upload")  # 0600
    path = Path(name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(_COPY_CHUNK):
                size += len(chunk)
                if size > limit:
                    break
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size > limit:
        path.unlink(missing_ok=True)
        return None
    return path


def _queue_import(path: Path, *, creditor_id: int, filename: str, dry_run: bool) -> PlacementImport:
    # The service runs its own transactions on this session; the one this request opened to read
    # the lenders ends here (on SQLite every transaction holds the write lock).
    db.session.rollback()
    return placements_service.queue_upload(
        db.session,
        creditor_id=creditor_id,
        path=path,
        filename=filename,
        actor=Actor.staff(current_user),
        dry_run=dry_run,
        storage=document_storage_from_config(current_app.config),
        enqueue=tasks.place_upload,
    )


def _outcome_flash(record: PlacementImport) -> tuple[str, str]:
    """A line on how the import ended, or that it is on its way; its page says what it did."""
    if record.status in ("queued", "running"):
        return _(
            "The file was received. Its import runs in the background; this page shows how it ends."
        ), "info"
    if record.status == "applied":
        return _("The file was applied."), "info" if record.rows_rejected else "success"
    if record.status == "validated":
        return _("The file was checked. Nothing was applied."), "info"
    if record.status == "refused":
        return _("The file was refused: nothing was applied. The reason is below."), "error"
    return _("The import failed on our side: nothing was applied. Please try again later."), "error"


@admin_bp.url_value_preprocessor
def _room_for_a_placement_file(endpoint: str | None, _values: dict[str, Any] | None) -> None:
    """Let an upload of a placement file, by staff who may import one, be as large as
    PLACEMENT_MAX_BYTES (and the form around it) instead of the application's MAX_CONTENT_LENGTH.
    It is set here because Flask runs URL value preprocessors before every before_request function,
    and CSRF protection, one of those, reads the whole form."""
    if endpoint != "admin.placements_upload":
        return
    user = current_user._get_current_object()
    if isinstance(user, StaffUser) and user.can(Permission.MANAGE_INTEGRATION):
        request.max_content_length = current_app.config["PLACEMENT_MAX_BYTES"] + _FORM_ROOM


@admin_bp.errorhandler(RequestEntityTooLarge)
def _request_too_large(_exc: RequestEntityTooLarge) -> Any:
    """An upload bigger than the whole request may be: said plainly on the placements page, which
    the staff member is sent back to; elsewhere the usual error page."""
    if request.endpoint == "admin.placements_upload":
        flash(_too_large_message(), "error")
        return redirect(url_for("admin.placements"))
    return render_template("error.html", title=TITLES[413], detail=DETAILS.get(413, "")), 413


# --- One import's report -------------------------------------------------------------------------


@dataclass(frozen=True)
class Reason:
    """Why a row or a file was refused: the sentence in the staff member's language when there is
    one for its code (None otherwise) and the English sentence the service stored."""

    translated: str | None
    english: str


def reason(code: str | None, english: str, column: str = "") -> Reason:
    """The stored English `english` with, where portal.errors.MESSAGES has one for `code`, its
    sentence in the staff member's language. Only the column is known of the original error's
    values, so a sentence that needs any other falls back to the English alone, as does one that
    says no more than the English."""
    template = MESSAGES.get(code or "")
    if template is None:
        return Reason(None, english)
    try:
        translated = str(template) % {"column": column}
    except (KeyError, TypeError, ValueError):
        return Reason(None, english)
    return Reason(translated if translated != english else None, english)


@admin_bp.get("/placements/<int:import_id>")
@reads_only  # reloaded while the import runs: on SQLite it would wait for the import's write lock
@requires(Permission.MANAGE_INTEGRATION)
def placement_import(import_id: int) -> Any:
    record = db.session.get(PlacementImport, import_id)
    if record is None:
        abort(404)
    stored = (
        db.session.scalar(
            select(func.count())
            .select_from(PlacementRejection)
            .where(PlacementRejection.import_id == import_id)
        )
        or 0
    )
    pages = max(1, math.ceil(stored / PAGE_SIZE))
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), pages)
    rows = placements_service.rejections(
        db.session, import_id, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
    )
    return render_template(
        "admin/placement_import.html",
        record=record,
        pending=record.status in ("queued", "running"),
        creditor=db.session.get(Creditor, record.creditor_id),
        who=_who(record),
        statuses=STATUSES,
        sources=SOURCES,
        outcome=_outcome(record),
        file_error=reason(record.error_code, record.error_message or "") if record.error_code else None,
        rejections=[(row, reason(row.code, row.message, row.column)) for row in rows],
        stored=stored,
        truncated=stored >= MAX_STORED_REJECTIONS,
        page=page,
        pages=pages,
    )


def _who(record: PlacementImport) -> str:
    if record.actor_type == "staff" and record.actor_id is not None:
        user = db.session.get(StaffUser, record.actor_id)
        if user is not None:
            return f"{user.full_name} ({user.email})"
    return str(SOURCES.get(record.source, record.source))


def _outcome(record: PlacementImport) -> list[str]:
    """What the import did to the accounts, in plain sentences."""
    if record.status == "queued":
        return [_("This import is waiting for a worker. This page reloads itself until it has run.")]
    if record.status == "running":
        return [_("This import is running. This page reloads itself until it ends.")]
    if record.status == "refused":
        return [_("Nothing was applied: the file was refused for the reason below.")]
    if record.status == "failed":
        return [_("Nothing was applied: the import failed on our side and was rolled back.")]
    accepted, rejected = record.rows_accepted, record.rows_rejected
    if record.status == "validated":
        sentences = [
            _("Nothing was applied: this was a check."),
            ngettext(
                "%(count)s row would be applied.",
                "%(count)s rows would be applied.",
                accepted,
                count=format_decimal(accepted),
            ),
        ]
        if rejected:
            sentences.append(
                ngettext(
                    "%(count)s row would not, listed below.",
                    "%(count)s rows would not, listed below.",
                    rejected,
                    count=format_decimal(rejected),
                )
            )
        return sentences
    sentences = [
        ngettext(
            "%(count)s account applied: %(created)s new, %(updated)s updated, %(unchanged)s unchanged.",
            "%(count)s accounts applied: %(created)s new, %(updated)s updated, %(unchanged)s unchanged.",
            accepted,
            count=format_decimal(accepted),
            created=format_decimal(record.accounts_created),
            updated=format_decimal(record.accounts_updated),
            unchanged=format_decimal(record.accounts_unchanged),
        )
    ]
    if rejected:
        sentences.append(
            ngettext(
                "%(count)s row was not applied, listed below.",
                "%(count)s rows were not applied, listed below.",
                rejected,
                count=format_decimal(rejected),
            )
        )
    return sentences


# --- Downloads ------------------------------------------------------------------------------------


@admin_bp.get("/placements/<int:import_id>/rejections.csv")
@requires(Permission.MANAGE_INTEGRATION)
def placement_rejections_csv(import_id: int) -> Any:
    """Every refused row the report keeps, in the order of the file."""
    if db.session.get(PlacementImport, import_id) is None:
        abort(404)
    rows: list[list[object]] = []
    offset = 0
    while batch := placements_service.rejections(db.session, import_id, offset=offset, limit=_DOWNLOAD_BATCH):
        for row in batch:
            explained = reason(row.code, row.message, row.column)
            rows.append(
                [
                    row.line,
                    _text(row.column),
                    _text(row.account_reference or ""),
                    row.code,
                    _text(row.message),
                    _text(explained.translated or ""),
                ]
            )
        offset += len(batch)
    db.session.rollback()  # everything is read; nothing holds the database while it downloads
    header = ["line", "column", "account_reference", "code", "message", "explanation"]
    return _csv_response(_csv_text(header, rows), f"accord-placement-{import_id}-rejections.csv")


@admin_bp.get("/placements/template.csv")
@requires(Permission.MANAGE_INTEGRATION)
def placement_template_csv() -> Any:
    """A file to start from: every column of `COLUMNS` in order and one example row."""
    header = [column.name for column in COLUMNS]
    example = [TEMPLATE_EXAMPLE.get(name, "") for name in header]
    return _csv_response(_csv_text(header, [example]), "accord-placement-template.csv")


def _text(value: str) -> str:
    """A text cell a spreadsheet will not run as a formula."""
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """UTF-8 CSV with a byte order mark (so spreadsheets read the Chinese right)."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _csv_response(text: str, name: str) -> Response:
    response = Response(text.encode("utf-8"), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
