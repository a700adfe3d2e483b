"""The retention job: borrowers whose debts ended long ago are anonymised, their files deleted,
everything else left alone; a rerun and a dry run change nothing; every change is audited with no
personal value in the audit trail."""

from __future__ import annotations

import datetime as dt
import json

from click.testing import Result
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.integrations.storage import document_storage_from_config, storage_from_config
from portal.models import (
    Agreement,
    AuditEvent,
    Borrower,
    BudgetLine,
    CaseMessage,
    CaseNote,
    DebtDispute,
    EvidenceFile,
    HardshipCase,
    LedgerEntry,
    RetentionRun,
)
from portal.services import agreements, retention
from portal.services import borrower_signin as signin_service
from portal.services import hardship as hardship_service
from portal.services.audit import SYSTEM
from tests import factories
from workflows.retention import ANONYMISED_NAME, REMOVED_TEXT

TODAY = dt.date(2040, 6, 1)
"""Six years (the default period) after 2034-06-01: what ended in 2025 is due, 2039 is not."""
LONG_AGO = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
RECENTLY = dt.datetime(2039, 1, 1, tzinfo=dt.UTC)


def _finished_borrower(session: Session, app: Flask, *, ended: dt.datetime = LONG_AGO) -> dict:  # type: ignore[type-arg]
    """A borrower whose only account the lender recalled on ``ended``, with a closed request for
    help holding an evidence file, messages and notes, and an agreement whose PDF is stored."""
    owner = factories.borrower(session, language="en", full_name="Jeff Klein")
    account = factories.account(session, principal=900_000, owner=owner)
    case = factories.hardship_case(session, account)
    offer = factories.offer(session, case)
    hardship_service.accept(session, owner, case.id, offer.id)
    session.expire_all()  # the service moved the case on (its version too)
    agreement = agreements.latest_for_case(session, case.id)
    assert agreement is not None and agreement.document_key
    evidence = factories.evidence_file(session, case, storage_from_config(app.config))
    staff = factories.staff(session)
    session.add(
        CaseMessage(
            hardship_case_id=case.id,
            direction="from_borrower",
            kind="response",
            body="I lost my job at the mill.",
        )
    )
    session.add(CaseNote(hardship_case_id=case.id, author_id=staff.id, body="Spoke to Jeff, very upset."))
    case.state, case.closed_at = "expired", ended
    agreement.status = "expired"
    account.status, account.recalled_at = "recalled", ended
    session.commit()
    return {"borrower": owner, "account": account, "case": case, "agreement": agreement, "evidence": evidence}


def _run(session: Session, app: Flask, *, dry_run: bool = False) -> retention.Report:
    with app.test_request_context():
        return retention.run(
            session,
            today=TODAY,
            dry_run=dry_run,
            actor=SYSTEM,
            evidence=storage_from_config(app.config),
            documents=document_storage_from_config(app.config),
        )


def _state(session: Session, world: dict) -> tuple:  # type: ignore[type-arg]
    session.expire_all()
    b = session.get(Borrower, world["borrower"].id)
    case = session.get(HardshipCase, world["case"].id)
    assert b is not None and case is not None
    lines = session.scalar(select(func.count()).where(BudgetLine.hardship_case_id == case.id))
    return (b.full_name, b.date_of_birth, b.national_id, b.phone, b.email, case.description, lines)


def test_a_borrower_past_the_period_is_anonymised_and_their_files_deleted(
    session: Session, app: Flask
) -> None:
    world = _finished_borrower(session, app)
    evidence_store, documents = storage_from_config(app.config), document_storage_from_config(app.config)
    document_key = world["agreement"].document_key
    assert evidence_store.exists(world["evidence"].storage_key) and documents.exists(document_key)
    ledger_before = session.scalar(select(func.count()).where(LedgerEntry.account_id == world["account"].id))

    report = _run(session, app)

    assert report.counts == {
        "borrowers_anonymised": 1,
        "cases_cleared": 1,
        "evidence_files_deleted": 1,
        "budget_lines_deleted": 1,
        "documents_deleted": 1,
        "texts_cleared": 2,
    }
    session.expire_all()
    borrower = session.get(Borrower, world["borrower"].id)
    assert borrower is not None
    assert borrower.full_name == ANONYMISED_NAME
    assert (borrower.date_of_birth, borrower.national_id, borrower.phone, borrower.email) == (None,) * 4
    assert (borrower.address_line1, borrower.city, borrower.postal_code) == (None, None, None)
    case = session.get(HardshipCase, world["case"].id)
    assert case is not None and case.description is None and case.budget_lines == []
    assert [m.body for m in case.messages] == [REMOVED_TEXT] and [n.body for n in case.notes] == [
        REMOVED_TEXT
    ]
    file = session.get(EvidenceFile, world["evidence"].id)
    assert file is not None and file.removed_at is not None
    assert not evidence_store.exists(file.storage_key)
    assert not documents.exists(document_key)
    agreement = session.get(Agreement, world["agreement"].id)
    assert agreement is not None and agreement.document_key is None and agreement.document_sha256
    assert agreement.facts["borrower"]["name"] == ANONYMISED_NAME
    # The financial record stays whole.
    assert (
        session.scalar(select(func.count()).where(LedgerEntry.account_id == world["account"].id))
        == ledger_before
    )
    stored = session.get(RetentionRun, report.run_id)
    assert stored is not None and not stored.dry_run and stored.counts["borrowers_anonymised"] == 1


def test_an_anonymised_borrower_can_no_longer_sign_in(session: Session, app: Flask) -> None:
    world = _finished_borrower(session, app)
    reference = world["account"].external_reference
    key = b"test-secret-key"
    assert signin_service.start(
        session, identifier=reference, born_on=dt.date(1985, 3, 15), ip=None, key=key
    ).message
    _run(session, app)
    started = signin_service.start(
        session, identifier=reference, born_on=dt.date(1985, 3, 15), ip=None, key=key
    )
    assert started.message is None


def test_borrowers_inside_the_period_with_an_open_account_or_an_open_dispute_are_untouched(
    session: Session, app: Flask
) -> None:
    recent = _finished_borrower(session, app, ended=RECENTLY)
    owing = factories.account(session, principal=50_000)  # still owed
    disputed = _finished_borrower(session, app)
    session.add(
        DebtDispute(
            account_id=disputed["account"].id,
            borrower_id=disputed["borrower"].id,
            reason="not_mine",
            detail="Not me.",
        )
    )
    session.commit()
    before = [_state(session, w) for w in (recent, disputed)]
    owing_name = owing.borrower.full_name

    report = _run(session, app)

    assert report.counts["borrowers_anonymised"] == 0
    assert report.held["within_period"] >= 1 and report.held["dispute_open"] >= 1
    assert [_state(session, w) for w in (recent, disputed)] == before
    assert session.get(Borrower, owing.borrower_id).full_name == owing_name  # type: ignore[union-attr]
    for world in (recent, disputed):
        assert storage_from_config(app.config).exists(world["evidence"].storage_key)


def test_a_second_run_changes_nothing(session: Session, app: Flask) -> None:
    world = _finished_borrower(session, app)
    _run(session, app)
    after_first = _state(session, world)
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    report = _run(session, app)
    assert set(report.counts.values()) == {0}
    assert _state(session, world) == after_first
    # Only the run's own event is new.
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events + 1


def test_a_dry_run_counts_what_is_due_and_changes_nothing(session: Session, app: Flask) -> None:
    world = _finished_borrower(session, app)
    before = _state(session, world)
    dry = _run(session, app, dry_run=True)
    assert dry.counts["borrowers_anonymised"] == 1 and dry.counts["evidence_files_deleted"] == 1
    assert _state(session, world) == before
    assert storage_from_config(app.config).exists(world["evidence"].storage_key)
    stored = session.get(RetentionRun, dry.run_id)
    assert stored is not None and stored.dry_run
    # The real run then does exactly what the dry run said.
    assert _run(session, app).counts == dry.counts


def test_a_closed_case_past_the_period_is_cleared_while_the_account_stays_open(
    session: Session, app: Flask
) -> None:
    account = factories.account(session, principal=50_000)
    case = factories.hardship_case(session, account, state="rejected")
    case.closed_at = case.decided_at = case.submitted_at = LONG_AGO
    session.commit()
    report = _run(session, app)
    assert report.counts["cases_cleared"] == 1 and report.counts["borrowers_anonymised"] == 0
    session.expire_all()
    cleared = session.get(HardshipCase, case.id)
    assert cleared is not None and cleared.description is None and cleared.budget_lines == []
    assert session.get(Borrower, account.borrower_id).date_of_birth is not None  # type: ignore[union-attr]


def test_audit_events_are_written_and_hold_no_personal_values(session: Session, app: Flask) -> None:
    world = _finished_borrower(session, app)
    borrower = world["borrower"]
    secrets = [
        borrower.national_id,
        borrower.phone,
        borrower.email,
        "Jeff Klein",
        "1985-03-15",
        "Made redundant",
        "lost my job",
    ]
    first = session.scalar(select(func.max(AuditEvent.id))) or 0
    report = _run(session, app)
    events = session.scalars(select(AuditEvent).where(AuditEvent.id > first).order_by(AuditEvent.id)).all()
    actions = {(e.action, e.object_type, e.object_id) for e in events}
    assert ("borrower.anonymised", "borrower", str(borrower.id)) in actions
    assert ("hardship_case.cleared", "hardship_case", str(world["case"].id)) in actions
    assert ("agreement.anonymised", "agreement", str(world["agreement"].id)) in actions
    assert ("retention.run", "retention_run", str(report.run_id)) in actions
    text = json.dumps([[e.before, e.after] for e in events], ensure_ascii=False)
    for value in secrets:
        assert value and value not in text, value


def test_the_command_prints_the_report(session: Session, app: Flask) -> None:
    _finished_borrower(session, app)
    result: Result = app.test_cli_runner().invoke(
        args=["retention", "run", "--date", "2040-06-01", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output and "borrowers anonymised: 1" in result.output
