"""The supervisor's view of the negotiation desk: queue size and age, missed deadlines, decisions
per staff member, approval rates, average concession — and the cases awaiting a second approval,
decided several at once.

A bulk decision is one call of the desk's own approve or reject per case, each its own
transaction: a refused case is named with its reason and changes nothing, and does not stop the
others.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm.exc import StaleDataError

from portal.auth.guards import requires
from portal.db import MAX_ID
from portal.errors import user_message
from portal.extensions import db
from portal.models.hardship import DECISION_REASONS
from portal.services import desk_stats
from portal.services import negotiation_desk as desk
from portal.staff import bp
from portal.tasks import send_message
from workflows.access import Permission
from workflows.errors import DomainError
from workflows.negotiation import CaseState

PERIODS = (7, 30, 90)
"""The periods, in days, the decisions and concessions can be shown for."""
BULK_LIMIT = desk_stats.AWAITING_LIMIT
"""The most cases one bulk decision takes (the list shows no more)."""


@bp.get("/supervisor")
@requires(Permission.SUPERVISE_CASES)
def supervisor() -> Any:
    days = request.args.get("days", type=int)
    days = days if days in PERIODS else desk_stats.DEFAULT_DAYS
    return render_template(
        "staff/supervisor.html",
        stats=desk_stats.dashboard(db.session, days=days),
        periods=PERIODS,
        reasons=DECISION_REASONS,
        form=FlaskForm(),
    )


def _case_ids() -> tuple[list[int], list[str]]:
    """The checked cases, in the order given, once each; and whatever was sent that is not a case
    id at all (refused as unknown)."""
    seen: dict[int, None] = {}
    malformed: dict[str, None] = {}
    for text in request.form.getlist("case_id"):
        if text.isdigit() and len(text) <= 18 and int(text) <= MAX_ID:
            seen.setdefault(int(text), None)
        else:
            malformed.setdefault(text[:20], None)
    return list(seen), list(malformed)


def _decide_one(case_id: int, action: str, checked: dict[int, tuple[str, int]]) -> DomainError | None:
    """One case decided in its own transaction; the refusal, when there is one."""
    found = checked.get(case_id)
    if found is None:
        return DomainError("case_unknown", "This request was not found.")
    _state, version = found
    if request.form.get(f"version_{case_id}", type=int) != version:
        return DomainError("case_changed", "This case changed while you were looking at it. Reload it.")
    note = request.form.get("note")
    try:
        if action == "approve":
            outcome = desk.approve(
                db.session,
                current_user,
                case_id,
                version=version,
                note=note,
                only_from=CaseState.AWAITING_SECOND_APPROVAL,
            )
        else:
            outcome = desk.reject(
                db.session,
                current_user,
                case_id,
                version=version,
                reason=request.form.get("reason", ""),
                message=request.form.get("message", ""),
                note=note,
                only_from=CaseState.AWAITING_SECOND_APPROVAL,
            )
    except DomainError as exc:
        db.session.rollback()
        return exc
    except StaleDataError:
        db.session.rollback()
        return DomainError("case_changed", "This case changed while you were looking at it. Reload it.")
    for notice in outcome.notices:
        send_message(notice.to_dict())
    return None


@bp.post("/supervisor/second-approvals")
@requires(Permission.SUPERVISE_CASES)
def second_approvals() -> Any:
    if not FlaskForm().validate_on_submit():
        abort(400)
    action = request.form.get("action")
    if action not in ("approve", "reject"):
        abort(400)
    case_ids, malformed = _case_ids()
    if not case_ids and not malformed:
        flash(_("Choose at least one case."), "error")
        return redirect(url_for("staff.supervisor"))
    if len(case_ids) + len(malformed) > BULK_LIMIT:
        flash(_("Choose at most %(num)d cases at once.", num=BULK_LIMIT), "error")
        return redirect(url_for("staff.supervisor"))
    # Only cases awaiting a second approval, at the version the supervisor saw: the desk's own
    # version check then holds the case to that state while it is decided.
    checked = desk_stats.case_versions(db.session, case_ids)
    db.session.rollback()
    decided = 0
    refused: dict[str, list[str]] = {}
    if malformed:
        unknown = user_message(DomainError("case_unknown", "This request was not found."))
        refused[unknown] = [f"#{text}" for text in malformed]
    for case_id in case_ids:
        error = _decide_one(case_id, action, checked)
        if error is None:
            decided += 1
        else:
            refused.setdefault(user_message(error), []).append(f"#{case_id}")
    if decided:
        flash(ngettext("%(num)d case was decided.", "%(num)d cases were decided.", decided), "success")
    for reason, ids in refused.items():
        flash(
            _(
                "Not decided: %(cases)s. %(reason)s",
                cases=", ".join(ids),
                reason=reason,
            ),
            "error",
        )
    return redirect(url_for("staff.supervisor"))
