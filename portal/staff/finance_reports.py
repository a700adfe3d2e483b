"""Finance reports: close a business day (its figures, its open exceptions, the close with an
optional note, the report PDF, the days closed), export postings and the journal as CSV, and the
dashboard with the numbers behind each chart as CSV.

Views parse the request and call one service (portal.services.finance_close, finance_exports,
finance_dashboard); a refusal is flashed in the staff member's language and changes nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from flask import (
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm

from portal.auth.guards import requires
from portal.errors import user_message
from portal.extensions import db
from portal.models import DayClose
from portal.services import finance_close, finance_dashboard, finance_exports
from portal.services.hardship import desk_today
from portal.staff import bp
from workflows.access import Permission
from workflows.errors import DomainError
from workflows.money import CURRENCY_EXPONENTS


def _currency(value: str | None) -> str:
    """The currency asked for when it is one Accord knows, else the first accounts are held in."""
    code = (value or "").strip().upper()
    return code if code in CURRENCY_EXPONENTS else finance_close.known_currencies(db.session)[0]


def _day(value: str | None, default: dt.date) -> dt.date:
    try:
        return dt.date.fromisoformat((value or "").strip())
    except ValueError:
        return default


def _csv_response(chunks: Iterable[str], name: str) -> Response:
    response = Response(stream_with_context(iter(chunks)), mimetype="text/csv")
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


# --- Daily close ------------------------------------------------------------------------------------


@bp.get("/finance/close")
@requires(Permission.MANAGE_PAYMENTS)
def finance_close_page() -> Any:
    day = _day(request.args.get("day"), desk_today() - dt.timedelta(days=1))
    view = finance_close.close_view(db.session, day, _currency(request.args.get("currency")))
    return render_template("staff/finance_reports/close.html", view=view, form=FlaskForm())


@bp.post("/finance/close")
@requires(Permission.MANAGE_PAYMENTS)
def finance_close_day() -> Any:
    if not FlaskForm().validate_on_submit():
        abort(400)
    day = _day(request.form.get("day"), dt.date.min)
    currency = (request.form.get("currency") or "").strip().upper()
    if day == dt.date.min or currency not in CURRENCY_EXPONENTS:
        abort(400)
    try:
        finance_close.close_day(db.session, day, currency, current_user, request.form.get("note"))
    except DomainError as exc:
        db.session.rollback()
        flash(user_message(exc), "error")
    else:
        flash(_("The day is closed. Later corrections post to the next open day."), "success")
    return redirect(url_for("staff.finance_close_page", day=day.isoformat(), currency=currency))


@bp.get("/finance/close/<int:close_id>/report.pdf")
@requires(Permission.MANAGE_PAYMENTS)
def finance_close_report(close_id: int) -> Any:
    row = db.session.get(DayClose, close_id)
    data = finance_close.report_pdf(row) if row else None
    if row is None or data is None:
        abort(404)
    response = send_file(
        io.BytesIO(data),
        mimetype="application/pdf",
        as_attachment=True,
        download_name=f"accord-day-{row.day.isoformat()}-{row.currency}.pdf",
        max_age=0,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# --- Exports ------------------------------------------------------------------------------------------


@bp.get("/finance/exports")
@requires(Permission.MANAGE_PAYMENTS)
def finance_exports_page() -> Any:
    today = desk_today()
    last = today - dt.timedelta(days=1)
    return render_template(
        "staff/finance_reports/exports.html",
        first=_day(request.args.get("from"), last.replace(day=1)),
        last=_day(request.args.get("to"), last),
        currency=(request.args.get("currency") or "").upper(),
        currencies=finance_close.known_currencies(db.session),
        max_days=finance_exports.MAX_DAYS,
    )


def _export(kind: str) -> Any:
    try:
        span = finance_exports.parse_range(
            request.args.get("from"), request.args.get("to"), request.args.get("currency")
        )
    except DomainError as exc:
        flash(user_message(exc), "error")
        return redirect(url_for("staff.finance_exports_page"))
    produce = finance_exports.postings_csv if kind == "postings" else finance_exports.journal_csv
    # The request's own transaction ends here; the rows are read on a read-only connection of
    # their own, closed when the download ends. A download the browser drops half-way leaves
    # that connection to the garbage collector — on SQLite a plain BEGIN (WAL: writers go on),
    # never the request's BEGIN IMMEDIATE, which would hold every writer back until then.
    db.session.rollback()
    factory = db.session_factory

    def chunks() -> Iterator[str]:
        session = factory()
        try:
            session.connection(execution_options={"read_only": True})
            yield from produce(session, span)
        finally:
            session.rollback()
            session.close()

    return _csv_response(chunks(), finance_exports.filename(kind, span))


@bp.get("/finance/exports/postings.csv")
@requires(Permission.MANAGE_PAYMENTS)
def finance_export_postings() -> Any:
    return _export("postings")


@bp.get("/finance/exports/journal.csv")
@requires(Permission.MANAGE_PAYMENTS)
def finance_export_journal() -> Any:
    return _export("journal")


# --- Dashboard ----------------------------------------------------------------------------------------


@bp.get("/finance/dashboard")
@requires(Permission.MANAGE_PAYMENTS)
def finance_dashboard_page() -> Any:
    currency = _currency(request.args.get("currency"))
    board = finance_dashboard.dashboard(db.session, currency, desk_today())
    return render_template(
        "staff/finance_reports/dashboard.html",
        board=board,
        currency=currency,
        currencies=finance_close.known_currencies(db.session),
        stages=finance_dashboard.STAGES,
    )


def _rows_csv(rows: Iterable[Sequence[object]]) -> Iterator[str]:
    buffer = io.StringIO()
    buffer.write("\ufeff")
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    yield buffer.getvalue()


@bp.get("/finance/dashboard/<dataset>.csv")
@requires(Permission.MANAGE_PAYMENTS)
def finance_dashboard_csv(dataset: str) -> Any:
    if dataset not in finance_dashboard.DATASETS:
        abort(404)
    currency = _currency(request.args.get("currency"))
    today = desk_today()
    board = finance_dashboard.dashboard(db.session, currency, today)
    rows = list(finance_dashboard.dataset_rows(board, dataset))
    db.session.rollback()  # the figures are read; nothing holds the database while they stream
    return _csv_response(
        _rows_csv(rows), f"accord-{dataset.replace('_', '-')}-{currency}-{today.isoformat()}.csv"
    )
