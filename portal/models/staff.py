"""Staff users: negotiation agents, supervisors, collectors, finance and admins."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import Base, utcnow
from portal.models._types import one_of
from workflows.access import Permission, Role, can


class StaffUser(Base):
    __tablename__ = "staff_user"
    __table_args__ = (one_of("role", [r.value for r in Role], "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-case
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_confirmed_at: Mapped[dt.datetime | None]
    # The last 30-second time step accepted: a code is good once.
    totp_last_step: Mapped[int | None]
    is_active: Mapped[bool] = mapped_column(default=True)
    # Bumped to end every session of this user (sign out everywhere, disabling, TOTP reset).
    session_version: Mapped[int] = mapped_column(default=1)
    last_signed_in_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    # Flask-Login protocol
    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str:
        return f"staff:{self.id}:{self.session_version}"

    def can(self, permission: Permission) -> bool:
        return self.is_active and can(self.role, permission)

    @property
    def totp_enrolled(self) -> bool:
        return self.totp_confirmed_at is not None
