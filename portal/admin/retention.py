"""Retention: the runs of the job that anonymises borrowers and clears hardship cases past the
policy's period (portal.services.retention), each with its report; and a dry run on demand, which
says what a run today would remove and changes nothing. The real run is the weekly job (or
``flask retention run``): nobody removes personal data with a click."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, redirect, render_template, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm

from portal.admin import admin_bp
from portal.auth.guards import requires
from portal.extensions import db
from portal.services import policy as policy_service
from portal.services import retention as service
from portal.services.audit import Actor
from portal.services.hardship import desk_today
from workflows.access import Permission

RUNS_SHOWN = 50
COUNT_LABELS = {
    "borrowers_anonymised": _l("Borrowers anonymised"),
    "cases_cleared": _l("Requests for help cleared"),
    "evidence_files_deleted": _l("Evidence files deleted"),
    "budget_lines_deleted": _l("Income and spending lines deleted"),
    "documents_deleted": _l("Documents deleted"),
    "texts_cleared": _l("Texts cleared"),
    "letter_batches_deleted": _l("Letter batches deleted"),
    "placement_rejections_deleted": _l("Refused import rows deleted"),
    "stripe_payloads_minimised": _l("Stripe payloads minimised"),
}


@admin_bp.get("/retention")
@requires(Permission.MANAGE_STAFF)
def retention() -> Any:
    session = db.session
    today = desk_today()
    runs = service.runs(session, RUNS_SHOWN)
    years = policy_service.current(session, today).retention.years
    return render_template(
        "admin/retention.html",
        runs=runs,
        years=years,
        today=today,
        count_labels=COUNT_LABELS,
        form=FlaskForm(),
    )


@admin_bp.post("/retention/dry-run")
@requires(Permission.MANAGE_STAFF)
def retention_dry_run() -> Any:
    if not FlaskForm().validate_on_submit():
        abort(400)
    session = db.session
    session.rollback()  # the run commits its own row; start it from a fresh transaction
    service.run(session, today=desk_today(), dry_run=True, actor=Actor.staff(current_user))
    current_app.logger.info("retention dry run by staff %s", current_user.id)
    return redirect(url_for("admin.retention"))
