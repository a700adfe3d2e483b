"""Pages anyone may open: the landing page, the language switch, health probes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Blueprint, current_app, jsonify, redirect, render_template, request, session, url_for
from flask_login import current_user
from sqlalchemy import text

from portal.extensions import db
from portal.migrations import alembic_config
from portal.models import Borrower

bp = Blueprint("public", __name__)


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
