"""Development only (never registered in production): the outbox of messages Accord would send,
so the demo's sign-in codes can be read without a phone."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template
from sqlalchemy import select

from portal.extensions import db
from portal.models import OutboundMessage

bp = Blueprint("dev", __name__, url_prefix="/dev")


@bp.get("/outbox")
def outbox() -> Any:
    messages = db.session.scalars(select(OutboundMessage).order_by(OutboundMessage.id.desc()).limit(20)).all()
    return render_template("dev/outbox.html", messages=messages)
