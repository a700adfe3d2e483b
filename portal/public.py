"""Pages anyone may open: the landing page, the language switch, health probes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import text

from portal.extensions import db, limiter
from portal.integrations.seal import seal_key_from_config
from portal.migrations import alembic_config
from portal.models import Borrower
from portal.services import agreements

bp = Blueprint("public", __name__)
MAX_VERIFY_BYTES = 20 * 1024 * 1024


@bp.get("/")
def index() -> Any:
    if isinstance(current_user._get_current_object(), Borrower):
        return redirect(url_for("borrower.home"))
    return render_template("public/index.html")


@bp.post("/language")
def language() -> Any:
    lang = request.form.get("lang", "")
    if lang in current_app.config["LANGUAGES"]:
        session["lang"] = lang
    target = request.form.get("next", "")
    if not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
        target = url_for("public.index")
    return redirect(target)


@bp.route("/verify", methods=["GET", "POST"])
@limiter.limit("30 per hour", methods=["POST"])
def verify() -> Any:
    """Anyone may check whether a PDF is a genuine, unaltered signed Accord agreement. The answer
    says that and the day it was signed, nothing else."""
    form = FlaskForm()
    verdict = None
    status = 200
    if request.method == "POST":
        upload = request.files.get("file")
        if not form.validate_on_submit():
            abort(400)
        if upload is None or not upload.filename:
            flash(_("Choose a PDF file to check."), "error")
            status = 422
        else:
            try:
                data = upload.read(MAX_VERIFY_BYTES + 1)
            finally:
                upload.close()  # a large upload is spooled to a temporary file: let it go now
            if len(data) > MAX_VERIFY_BYTES:
                flash(
                    _("The file is larger than %(limit_mb)s MB.", limit_mb=MAX_VERIFY_BYTES // 1024 // 1024),
                    "error",
                )
                status = 422
            else:
                verdict = agreements.verify_document(
                    db.session, data, seal_key_from_config(current_app.config)
                )
    return render_template("public/verify.html", form=form, verdict=verdict), status


@bp.get("/healthz")
def healthz() -> Any:
    """Liveness: the process answers."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Any:
    """Readiness: the database answers and its schema is at the newest migration."""
    try:
        with db.engine.connect().execution_options(read_only=True) as conn:
            conn.execute(text("SELECT 1"))
            current = MigrationContext.configure(conn).get_current_heads()
    except Exception:
        current_app.logger.exception("readiness: database unreachable")
        return jsonify(status="unavailable", database="unreachable"), 503
    head = ScriptDirectory.from_config(alembic_config()).get_heads()
    if set(current) != set(head):
        return jsonify(status="unavailable", database="ok", migrations="pending"), 503
    return jsonify(status="ok", database="ok", migrations="current")
