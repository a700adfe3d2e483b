"""Who may reach a staff route: signed in, session fresh, role holds the route's permission.

Every staff view declares its permission with ``@requires(...)``; the blueprint's
``before_request`` refuses anything undeclared, so a new route cannot be left open.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort, current_app, flash, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, logout_user

from portal.db import db
from portal.models import StaffUser
from workflows.access import Permission

F = TypeVar("F", bound=Callable[..., Any])


def requires(permission: Permission) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.can(permission):
                abort(403)
            return view(*args, **kwargs)

        wrapper.required_permission = permission  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def end_session() -> None:
    logout_user()
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang


def session_still_fresh(idle_minutes: int, absolute_hours: int) -> bool:
    """False (and the session ended) once it was idle or open too long; else note this visit."""
    now = time.time()
    seen, signed_in = session.get("seen_at", 0), session.get("auth_at", 0)
    if now - seen > idle_minutes * 60 or now - signed_in > absolute_hours * 3600:
        end_session()
        return False
    # Re-signing the cookie on every response costs time on every page; a minute's precision
    # on the idle limit does not matter.
    if now - seen > 60:
        session["seen_at"] = int(now)
    return True


def guard_staff_request() -> Any:
    """``before_request`` for staff blueprints."""
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "reads_only", False):
        db.read_only()  # before the user is loaded through the request's session
    if not isinstance(current_user._get_current_object(), StaffUser):
        return redirect(url_for("auth.staff_login", next=request.full_path.rstrip("?")))
    config = current_app.config
    if not session_still_fresh(config["STAFF_IDLE_MINUTES"], config["STAFF_ABSOLUTE_HOURS"]):
        flash(_("Your session has ended. Please sign in again."), "info")
        return redirect(url_for("auth.staff_login"))
    if view is None:
        return None  # 404/405 follow
    if getattr(view, "required_permission", None) is None:
        abort(403)
    return None
