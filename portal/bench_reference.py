"""The benchmark's reference route: one primary-key query and a small template.

Registered only when ``ACCORD_BENCH_REFERENCE_ROUTE=1`` (bench/run.py sets it), so pages can be
compared with the cheapest database-backed page on the same server in the same run.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template

from portal.extensions import db
from portal.models import Account

bp = Blueprint("bench_reference", __name__)

TEMPLATE = (
    "<!doctype html><title>{{ a.external_reference }}</title><p>{{ a.id }} {{ a.stage }} {{ a.dpd }}</p>"
)


@bp.get("/_bench/reference/<int:account_id>")
def reference(account_id: int) -> Any:
    account = db.session.get(Account, account_id)
    if account is None:
        abort(404)
    return render_template("bench/reference.html", a=account)
