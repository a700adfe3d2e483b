"""Two (or twenty) staff deciding the same case at the same moment: exactly one decision lands,
every other request is told the case changed, and nothing is recorded twice.

Real transactions on their own connections (not the rolled-back test transaction), through the
HTTP routes, on a database of their own: PostgreSQL when the suite runs on it, else SQLite."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from alembic import command
from flask import Flask
from sqlalchemy import func, make_url, select

from portal.extensions import db
from portal.migrations import alembic_config
from portal.models import AuditEvent, CaseNote, HardshipCase, StaffUser
from portal.services import hardship as hardship_service
from portal.services import negotiation_desk as desk
from tests import factories
from tests.conftest import _prepare_postgres
from workflows.access import Role
from workflows.negotiation import CaseState

PARALLEL = 20


@pytest.fixture
def race_app(database_url: str, make_app, tmp_path: Path) -> Flask:  # type: ignore[no-untyped-def]
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        own = url.set(database=f"{url.database}_race").render_as_string(hide_password=False)
        _prepare_postgres(own)
    else:
        own = f"sqlite:///{tmp_path / 'race.db'}"
    command.upgrade(alembic_config(own), "head")
    return make_app(DATABASE_URL=own, WTF_CSRF_ENABLED=False, TESTING=True)  # type: ignore[no-any-return]


def _claimed_case(app: Flask) -> tuple[int, int, int]:
    with app.app_context(), db.session_scope() as session:
        agent = factories.staff(session, role=Role.AGENT)
        owner = factories.borrower(session, language="en", time_zone="Asia/Shanghai")
        account = factories.account(session, principal=2_400_000, interest=60_000, fees=10_000, owner=owner)
        account.stage, account.dpd = "mid", 45
        session.commit()
        case = factories.hardship_case(session, account, state="offered")
        hardship_service.propose(session, owner, case.id, monthly_amount=110_000, count=23)
        desk.claim(session, agent, case.id, version=None)
        return case.id, agent.id, case.version


def _client_for(app: Flask, staff_id: int):  # type: ignore[no-untyped-def]
    with app.app_context(), db.session_scope() as session:
        staff = session.get(StaffUser, staff_id)
        client = app.test_client()
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"  # the refusals are read in English below
        with client.session_transaction() as sess:
            sess["_user_id"] = staff.get_id()  # type: ignore[union-attr]
            sess["_fresh"] = True
            sess["auth_at"] = sess["seen_at"] = int(time.time())
        return client


def test_twenty_parallel_decisions_on_one_case_make_exactly_one(race_app: Flask) -> None:
    case_id, agent_id, version = _claimed_case(race_app)
    clients = [_client_for(race_app, agent_id) for _ in range(PARALLEL)]
    start = threading.Barrier(PARALLEL)
    outcomes: list[str] = []
    lock = threading.Lock()

    def decide(n: int) -> None:
        client = clients[n]
        # Half approve, half reject, all from the page they loaded at the same version.
        if n % 2:
            path, data = "approve", {"version": version, "note": f"approve {n}"}
        else:
            path = "reject"
            data = {"version": version, "reason": "other", "message": "No.", "note": f"reject {n}"}
        start.wait()
        response = client.post(f"/staff/cases/{case_id}/{path}", data=data, follow_redirects=True)
        text = response.get_data(as_text=True)
        with lock:
            if "changed while you were looking" in text or "cannot be sent to" in text or "closed" in text:
                outcomes.append("refused")
            elif response.status_code == 200:
                outcomes.append(path)
            else:
                outcomes.append(f"status {response.status_code}")

    threads = [threading.Thread(target=decide, args=(n,)) for n in range(PARALLEL)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    tally = Counter(outcomes)
    assert len(outcomes) == PARALLEL
    assert tally["refused"] == PARALLEL - 1, tally
    with race_app.app_context(), db.session_scope() as session:
        case = session.get(HardshipCase, case_id)
        assert case is not None
        assert case.state in {CaseState.AWAITING_SIGNATURE.value, CaseState.REJECTED.value}
        decisions = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(
                AuditEvent.object_type == "hardship_case",
                AuditEvent.object_id == str(case_id),
                AuditEvent.action.in_(["hardship_case.approve", "hardship_case.reject"]),
            )
        )
        assert decisions == 1
        assert (
            session.scalar(
                select(func.count()).select_from(CaseNote).where(CaseNote.hardship_case_id == case_id)
            )
            == 1
        )
