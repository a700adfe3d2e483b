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
    ContactAttempt,
    DebtDispute,
    EvidenceFile,
    HardshipCase,
    LedgerEntry,
    PlacementImport,
    PlacementRejection,
    RetentionRun,
    StripeEvent,
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


def _run(session: Session, app: Flask, *, dry_run: bool = False, today: dt.date = TODAY) -> retention.Report:
    with app.test_request_context():
        return retention.run(
            session,
            today=today,
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
        "letter_batches_deleted": 0,
        "placement_rejections_deleted": 0,
        "stripe_payloads_minimised": 0,
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


def _old_and_recent_records(session: Session, app: Flask) -> dict:  # type: ignore[type-arg]
    """For each kind of operational record, one past the period and one inside it: a day's letters
    (a stored PDF named by its letters' contact attempts), a placement import's refused rows, and a
    Stripe event whose payload names the card holder."""
    store = document_storage_from_config(app.config)
    account = factories.account(session)
    world: dict = {"account": account}  # type: ignore[type-arg]
    for age, moment in (("old", LONG_AGO), ("recent", RECENTLY)):
        key = store.put_content(f"%PDF letters {age}".encode(), suffix="pdf")
        for number in (1, 2):
            session.add(
                ContactAttempt(
                    account_id=account.id,
                    borrower_id=account.borrower_id,
                    channel="letter",
                    address="1 Mill Lane, Leeds",
                    at=moment,
                    outcome="sent",
                    notes=f"letter batch {key}, letter {number}",
                )
            )
        placement = PlacementImport(
            creditor_id=account.creditor_id,
            source="cli",
            filename=f"{age}.csv",
            sha256="0" * 64,
            status="applied",
            actor_type="system",
            started_at=moment,
            finished_at=moment,
        )
        session.add(placement)
        session.flush()
        for line in (2, 3):
            session.add(
                PlacementRejection(
                    import_id=placement.id,
                    line=line,
                    column="email",
                    code="email_invalid",
                    message="jeff.klein@@example is not an e-mail address.",
                )
            )
        event = StripeEvent(
            id=f"evt_{age}",
            type="payment_intent.succeeded",
            object_id=f"pi_{age}",
            stripe_created=moment,
            received_at=moment,
            source="webhook",
            outcome="applied",
            payload={
                "id": f"evt_{age}",
                "object": "event",
                "type": "payment_intent.succeeded",
                "data": {
                    "object": {
                        "id": f"pi_{age}",
                        "object": "payment_intent",
                        "amount": 12_345,
                        "currency": "cny",
                        "status": "succeeded",
                        "metadata": {"account_id": str(account.id)},
                        "receipt_email": "jeff.klein@example.com",
                        "charges": {"data": [{"billing_details": {"name": "Jeff Klein"}}]},
                    }
                },
            },
        )
        session.add(event)
        world[age] = {"letters": key, "import": placement.id, "event": event.id}
    session.commit()
    return world


def _records(session: Session, app: Flask, world: dict) -> dict:  # type: ignore[type-arg]
    session.expire_all()
    store = document_storage_from_config(app.config)
    found = {}
    for age in ("old", "recent"):
        refs = world[age]
        event = session.get(StripeEvent, refs["event"])
        assert event is not None
        found[age] = (
            store.exists(refs["letters"]),
            session.scalar(select(func.count()).where(PlacementRejection.import_id == refs["import"])),
            json.dumps(event.payload, sort_keys=True),
        )
    return found


def test_old_letters_refused_rows_and_stripe_payloads_go_and_recent_ones_stay(
    session: Session, app: Flask
) -> None:
    world = _old_and_recent_records(session, app)
    before = _records(session, app, world)
    assert "jeff.klein@example.com" in before["old"][2]

    dry = _run(session, app, dry_run=True)
    expected = {
        "letter_batches_deleted": 1,
        "placement_rejections_deleted": 2,
        "stripe_payloads_minimised": 1,
    }
    assert {k: dry.counts[k] for k in expected} == expected
    assert _records(session, app, world) == before  # a dry run changes nothing

    first = session.scalar(select(func.max(AuditEvent.id))) or 0
    report = _run(session, app)
    assert {k: report.counts[k] for k in expected} == expected
    after = _records(session, app, world)
    assert after["recent"] == before["recent"]
    letters_kept, rejections_left, payload = after["old"]
    assert not letters_kept and rejections_left == 0
    assert json.loads(payload) == {
        "id": "evt_old",
        "object": "event",
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": "pi_old",
                "object": "payment_intent",
                "amount": 12_345,
                "currency": "cny",
                "status": "succeeded",
                "metadata": {"account_id": str(world["account"].id)},
            }
        },
    }
    # The import's own row stays, with its counts; the contact history still names the batch.
    assert session.get(PlacementImport, world["old"]["import"]) is not None
    events = session.scalars(select(AuditEvent).where(AuditEvent.id > first).order_by(AuditEvent.id)).all()
    actions = {(e.action, e.object_type, e.object_id) for e in events}
    assert ("letter_batch.deleted", "document", world["old"]["letters"].partition(".")[0]) in actions
    assert ("placement_import.rejections_deleted", "placement_import", str(world["old"]["import"])) in actions
    assert ("stripe_event.minimised", "stripe_event", "evt_old") in actions
    text = json.dumps([[e.before, e.after] for e in events], ensure_ascii=False)
    assert "Jeff Klein" not in text and "jeff.klein" not in text

    # A second run finds nothing more; the recent records fall due in their turn, years later.
    again = _run(session, app)
    assert {k: again.counts[k] for k in expected} == dict.fromkeys(expected, 0)
    later = _run(session, app, today=dt.date(2045, 6, 1))
    assert {k: later.counts[k] for k in expected} == expected
    assert _records(session, app, world)["recent"][:2] == (False, 0)
