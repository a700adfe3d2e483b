"""Messages Accord sent (or, in development, kept in the outbox instead of sending)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, utcnow
from portal.models._types import BigId, one_of
from portal.models.signin import CHANNELS


class OutboundMessage(Base):
    __tablename__ = "outbound_message"
    __table_args__ = (one_of("channel", CHANNELS, "channel"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(8))
    recipient: Mapped[str] = mapped_column(String(254), index=True)
    subject: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(String(32))  # "signin_code", later reminders, receipts…
    transport: Mapped[str] = mapped_column(String(16))  # "outbox", "smtp", "sms_gateway"
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
