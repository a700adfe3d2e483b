"""Your data: what Accord holds about the borrower, and a download of all of it (a ZIP with the
data as JSON and the documents as files). The download is a POST (CSRF-protected like every
borrower form), answered as an attachment that is never cached, audited, and mildly rate-limited."""

from __future__ import annotations

import io
from typing import Any

from flask import abort, current_app, render_template, send_file
from flask_login import current_user
from flask_wtf import FlaskForm

from portal.borrower import borrower_required, bp
from portal.extensions import db, limiter
from portal.integrations.storage import storage_from_config
from portal.services import data_export
from portal.services.hardship import desk_today


def _export_limit() -> str:
    return str(current_app.config["DATA_EXPORT_RATE_LIMIT"])


@bp.get("/my-data")
@borrower_required
def my_data() -> Any:
    return render_template("borrower/my_data.html", form=FlaskForm())


@bp.post("/my-data/download")
@borrower_required
@limiter.limit(_export_limit, key_func=lambda: f"data-export:{current_user.get_id()}")
def my_data_download() -> Any:
    if not FlaskForm().validate_on_submit():
        abort(400)
    data = data_export.export(db.session, current_user, storage_from_config(current_app.config))
    response = send_file(
        io.BytesIO(data),
        mimetype="application/zip",
        as_attachment=True,
        download_name=f"accord-my-data-{desk_today().isoformat()}.zip",
        max_age=0,
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
