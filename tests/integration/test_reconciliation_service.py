"""Reconciliation against the database: 500 payments and their Stripe transactions with three
planted differences give exactly those three exceptions (and running again adds none, and keeps
an exception whose cause went away); open suspense items are in the queue; each resolution is
audited, posts only its own ledger entries, and is refused the second time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from portal.models import (
    Account,
    AuditEvent,
    DayClose,
    LedgerEntry,
    Payment,
    ReconciliationException,
    Refund,
    StripeBalanceTxn,
    SuspenseItem,
)
from portal.services import ledger, reconciliation
from portal.services.hardship import desk_today
from tests import factories
from tests.conftest import sign_in
from workflows.access import Role
from workflows.errors import DomainError

DAY = dt.date(2026, 11, 2)
AT = dt.datetime(2026, 11, 2, 3, 0, tzinfo=dt.UTC)
N = 500


@pytest.fixture
def app_context(app: Flask) -> Iterator[None]:
    with app.app_context():
        yield


def _exceptions(session: Session) -> list[ReconciliationException]:
    session.expire_all()
    return list(session.scalars(select(ReconciliationException).order_by(ReconciliationException.id)))


def _seed(session: Session, n: int = N, *, plant: bool = True) -> tuple[Account, dict[int, int]]:
    """``n`` payments of one account recorded on DAY, each with its Stripe charge, and 20 refunds
    with theirs; planted: payment 7's charge is 1.00 more in Stripe, payment 13's charge is not
    in Stripe, and Stripe has a charge nobody recorded. Returns the account and {i: payment id}."""
    account = factories.account(session, principal=100_000_000)
    payments = [
        {
            "account_id": account.id,
            "borrower_id": account.borrower_id,
            "purpose": "amount",
            "amount": 1_000 + i,
            "currency": "CNY",
            "idempotency_key": f"plant-{i}",
            "status": "succeeded",
            "payment_intent_id": f"pi_plant_{i}",
            "charge_id": f"ch_plant_{i}",
            "amount_received": 1_000 + i,
            "received_currency": "CNY",
            "received_on": DAY,
        }
        for i in range(n)
    ]
    session.execute(insert(Payment), payments)
    ids = {
        int(pi.rsplit("_", 1)[1]): pid
        for pi, pid in session.execute(select(Payment.payment_intent_id, Payment.id)).all()
        if pi and pi.startswith("pi_plant_")
    }
    txns = []
    for i in range(n):
        if plant and i == 13:
            continue
        amount = 1_000 + i + (100 if plant and i == 7 else 0)
        txns.append(_txn(f"txn_plant_{i}", "charge", f"ch_plant_{i}", f"pi_plant_{i}", amount))
    for i in range(0, min(n, 200), 10):
        session.add(
            Refund(
                payment_id=ids[i],
                stripe_refund_id=f"re_plant_{i}",
                amount=500,
                currency="CNY",
                reason="test",
                status="succeeded",
                created_at=AT,
            )
        )
        txns.append(_txn(f"txn_plant_re_{i}", "refund", f"re_plant_{i}", f"pi_plant_{i}", -500))
    if plant:
        txns.append(_txn("txn_plant_stranger", "charge", "ch_stranger", "pi_stranger", 4_200))
    session.execute(insert(StripeBalanceTxn), txns)
    session.commit()
    return account, ids


def _txn(tid: str, kind: str, source: str, pi: str | None, amount: int, *, fee: int = 0) -> dict[str, object]:
    return {
        "id": tid,
        "type": kind,
        "source_id": source,
        "payment_intent_id": pi,
        "amount": amount,
        "fee": fee,
        "net": amount - fee,
        "currency": "CNY",
        "created": AT,
    }


def test_five_hundred_payments_with_three_planted_differences_give_exactly_those_three(
    app_context: None, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    _, ids = _seed(session)
    finance = staff_of(Role.FINANCE)

    run = reconciliation.reconcile(session, DAY, DAY, finance)

    assert run.counts["matched"] == N - 2 + 20  # 498 payments, 20 refunds
    assert run.counts["exceptions"] == {"amount_mismatch": 1, "missing_in_ledger": 1, "missing_in_stripe": 1}
    found = {(x.kind, x.stripe_ref, x.ledger_ref): x for x in _exceptions(session)}
    assert set(found) == {
        ("amount_mismatch", "txn_plant_7", f"payment:{ids[7]}"),
        ("missing_in_stripe", "", f"payment:{ids[13]}"),
        ("missing_in_ledger", "txn_plant_stranger", ""),
    }
    mismatch = found[("amount_mismatch", "txn_plant_7", f"payment:{ids[7]}")]
    assert (mismatch.difference, mismatch.amount, mismatch.day, mismatch.status) == (100, 1_107, DAY, "open")
    assert mismatch.detail["stripe"]["id"] == "txn_plant_7" and mismatch.detail["ledger"]["amount"] == 1_007

    # Running again adds nothing; the neighbouring days (inside the slack) report nothing either.
    again = reconciliation.reconcile(session, DAY, DAY, finance)
    assert again.counts["exceptions_new"] == 0 and again.counts["exceptions_known"] == 3
    assert (
        reconciliation.reconcile(session, DAY + dt.timedelta(days=1), DAY + dt.timedelta(days=3)).counts[
            "exceptions"
        ]
        == {}
    )
    assert len(_exceptions(session)) == 3


def test_the_result_does_not_depend_on_the_period_boundaries(app_context: None, session: Session) -> None:
    _seed(session)
    week = reconciliation.reconcile(session, DAY - dt.timedelta(days=3), DAY + dt.timedelta(days=3))
    assert week.counts["exceptions"] == {"amount_mismatch": 1, "missing_in_ledger": 1, "missing_in_stripe": 1}
    assert week.counts["exceptions_new"] == 3 and len(_exceptions(session)) == 3


def test_an_exception_whose_cause_went_away_stays_open_with_the_run_noted(
    app_context: None, session: Session
) -> None:
    _seed(session)
    reconciliation.reconcile(session, DAY, DAY)
    # Stripe's missing charge turns up (a late import).
    session.execute(
        insert(StripeBalanceTxn), [_txn("txn_plant_13", "charge", "ch_plant_13", "pi_plant_13", 1_013)]
    )
    session.commit()

    run = reconciliation.reconcile(session, DAY, DAY)

    assert run.counts["exceptions_cleared"] == 1
    [kept] = [x for x in _exceptions(session) if x.kind == "missing_in_stripe"]
    assert kept.status == "open" and kept.detail["cleared_in_run"] == run.id
    assert len(_exceptions(session)) == 3


def test_open_suspense_items_are_in_the_queue_and_a_resolution_resolves_the_item(
    app_context: None, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    item = SuspenseItem(kind="unknown_payment", stripe_object_id="pi_nobody", amount=7_700, currency="CNY")
    session.add(item)
    session.add(StripeBalanceTxn(**_txn("txn_nobody", "charge", "ch_nobody", "pi_nobody", 7_700)))  # type: ignore[arg-type]
    session.commit()
    run = reconciliation.reconcile(session, DAY, DAY)
    # The money in Stripe is explained by the suspense item: one exception, not two.
    assert run.counts["exceptions"] == {"suspense": 1}
    [row] = _exceptions(session)
    assert (row.kind, row.stripe_ref, row.ledger_ref, row.amount) == (
        "suspense",
        "pi_nobody",
        f"suspense:{item.id}",
        7_700,
    )
    page = reconciliation.queue(session, kind="suspense")
    assert [r.exception.id for r in page.rows] == [row.id] and page.open_by_kind == {"suspense": 1}

    reconciliation.note(session, staff_of(Role.FINANCE), row.id, text="Sent back to the payer by the bank.")

    session.expire_all()
    assert session.get(SuspenseItem, item.id).status == "resolved"  # type: ignore[union-attr]
    assert reconciliation.queue(session).rows == []


def _one(session: Session, kind: str) -> ReconciliationException:
    return next(x for x in _exceptions(session) if x.kind == kind)


def test_linking_a_stripe_transaction_to_the_payment_that_explains_it(
    app_context: None, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    _, ids = _seed(session, 20)
    reconciliation.reconcile(session, DAY, DAY)
    stranger = _one(session, "missing_in_ledger")
    finance = staff_of(Role.FINANCE)

    with pytest.raises(DomainError) as refused:
        reconciliation.link(session, finance, stranger.id, 999_999_999, version=stranger.version)
    assert refused.value.code == "payment_unknown"
    reconciliation.link(
        session, finance, stranger.id, ids[3], version=stranger.version, note="Paid by the brother"
    )

    row = session.get(ReconciliationException, stranger.id)
    assert row is not None and (row.status, row.resolution, row.linked_payment_id, row.resolved_by_id) == (
        "resolved",
        "linked",
        ids[3],
        finance.id,
    )
    with pytest.raises(DomainError) as twice:
        reconciliation.link(session, finance, stranger.id, ids[3], version=row.version)
    assert twice.value.code == "exception_resolved"
    # A resolved difference is not raised again by the next run.
    assert reconciliation.reconcile(session, DAY, DAY).counts["exceptions_new"] == 0
    assert session.get(ReconciliationException, stranger.id).status == "resolved"  # type: ignore[union-attr]
    assert (
        session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "reconciliation.linked", AuditEvent.object_id == str(stranger.id))
        )
        == 1
    )


def test_a_correction_posts_its_own_entries_on_the_next_open_day_and_the_ledger_stays_whole(
    app_context: None, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    account, _ = _seed(session, 20)
    reconciliation.reconcile(session, DAY, DAY)
    mismatch = _one(session, "amount_mismatch")
    finance = staff_of(Role.FINANCE)
    today = desk_today()
    session.add(DayClose(day=today + dt.timedelta(days=2), currency="CNY", figures={}))
    session.add(DayClose(day=today + dt.timedelta(days=1), currency="USD", figures={}))
    session.commit()
    before = session.get(Account, account.id).principal_balance  # type: ignore[union-attr]

    for bad, code in (
        ({"amount_text": "1.00", "component": "nonsense", "direction": "reduce"}, "correction_component"),
        ({"amount_text": "one", "component": "principal", "direction": "reduce"}, "amount_invalid"),
        ({"amount_text": "1.00", "component": "principal", "direction": "sideways"}, "correction_direction"),
    ):
        with pytest.raises(DomainError) as refused:
            reconciliation.correct(session, finance, mismatch.id, note="x", version=mismatch.version, **bad)
        assert refused.value.code == code
        session.rollback()
    with pytest.raises(DomainError) as no_note:
        reconciliation.correct(
            session,
            finance,
            mismatch.id,
            amount_text="1.00",
            component="principal",
            direction="reduce",
            note=" ",
            version=mismatch.version,
        )
    assert no_note.value.code == "exception_note_required"
    session.rollback()

    reconciliation.correct(
        session,
        finance,
        mismatch.id,
        amount_text="1.00",
        component="principal",
        direction="reduce",
        note="Stripe took 1.00 more",
        version=mismatch.version,
    )

    entries = list(
        session.scalars(select(LedgerEntry).where(LedgerEntry.cause == f"correction:{mismatch.id}"))
    )
    assert [(e.kind, e.component, e.amount, e.effective_on) for e in entries] == [
        ("adjustment", "principal", -100, today + dt.timedelta(days=3))
    ]
    session.expire_all()
    assert session.get(Account, account.id).principal_balance == before - 100  # type: ignore[union-attr]
    assert not ledger.discrepancies(session)
    row = session.get(ReconciliationException, mismatch.id)
    assert row is not None and (row.status, row.resolution) == ("resolved", "corrected")
    assert row.detail["correction"]["effective_on"] == (today + dt.timedelta(days=3)).isoformat()
    with pytest.raises(DomainError) as twice:
        reconciliation.correct(
            session,
            finance,
            mismatch.id,
            amount_text="1.00",
            component="principal",
            direction="reduce",
            note="again",
        )
    assert twice.value.code == "exception_resolved"
    session.rollback()
    assert (
        session.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .where(LedgerEntry.cause == f"correction:{mismatch.id}")
        )
        == 1
    )


def test_a_correction_that_puts_the_debt_back_is_a_reversal(
    app_context: None, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    account, _ = _seed(session, 20)
    reconciliation.reconcile(session, DAY, DAY)
    missing = _one(session, "missing_in_stripe")
    reconciliation.correct(
        session,
        staff_of(Role.FINANCE),
        missing.id,
        amount_text="11.00",
        component="principal",
        direction="increase",
        note="Stripe never took it",
    )
    [entry] = session.scalars(select(LedgerEntry).where(LedgerEntry.cause == f"correction:{missing.id}"))
    assert (entry.kind, entry.amount, entry.account_id) == ("reversal", 1_100, account.id)
    assert not ledger.discrepancies(session)


def test_a_write_off_needs_a_second_finance_user(app_context: None, session: Session, staff_of) -> None:  # type: ignore[no-untyped-def]
    _seed(session, 20)
    reconciliation.reconcile(session, DAY, DAY)
    stranger = _one(session, "missing_in_ledger")
    asker, other = staff_of(Role.FINANCE), staff_of(Role.FINANCE)
    agent = staff_of(Role.AGENT)

    with pytest.raises(DomainError) as not_finance:
        reconciliation.request_write_off(session, agent, stranger.id, note="no")
    assert not_finance.value.code == "not_allowed"
    reconciliation.request_write_off(
        session, asker, stranger.id, note="Test charge by the bank", version=stranger.version
    )
    row = session.get(ReconciliationException, stranger.id)
    assert row is not None and row.status == "awaiting_approval"

    with pytest.raises(DomainError) as own:
        reconciliation.approve_write_off(session, asker, stranger.id)
    assert own.value.code == "write_off_own_request"
    session.rollback()
    with pytest.raises(DomainError) as noted:
        reconciliation.note(session, other, stranger.id, text="x")
    assert noted.value.code == "exception_awaiting"
    session.rollback()

    reconciliation.approve_write_off(session, other, stranger.id)
    session.expire_all()
    row = session.get(ReconciliationException, stranger.id)
    assert row is not None
    assert (row.status, row.resolution, row.resolved_by_id, row.approved_by_id) == (
        "resolved",
        "written_off",
        asker.id,
        other.id,
    )
    with pytest.raises(DomainError) as twice:
        reconciliation.approve_write_off(session, other, stranger.id)
    assert twice.value.code == "exception_resolved"
    actions = set(
        session.scalars(
            select(AuditEvent.action).where(
                AuditEvent.object_id == str(stranger.id), AuditEvent.object_type == "reconciliation_exception"
            )
        )
    )
    assert actions == {"reconciliation.write_off_requested", "reconciliation.written_off"}


def test_a_turned_down_write_off_is_open_again(app_context: None, session: Session, staff_of) -> None:  # type: ignore[no-untyped-def]
    _seed(session, 20)
    reconciliation.reconcile(session, DAY, DAY)
    stranger = _one(session, "missing_in_ledger")
    asker, other = staff_of(Role.FINANCE), staff_of(Role.FINANCE)
    reconciliation.request_write_off(session, asker, stranger.id, note="Test charge")
    reconciliation.reject_write_off(session, other, stranger.id)
    row = session.get(ReconciliationException, stranger.id)
    assert row is not None and (row.status, row.resolution, row.resolved_by_id) == ("open", None, None)


def test_a_note_with_a_stale_form_or_twice_is_refused_and_changes_nothing(
    app_context: None, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    _seed(session, 20)
    reconciliation.reconcile(session, DAY, DAY)
    row = _one(session, "missing_in_stripe")
    finance = staff_of(Role.FINANCE)
    with pytest.raises(DomainError) as stale:
        reconciliation.note(session, finance, row.id, text="Timing", version=row.version + 1)
    assert stale.value.code == "exception_changed"
    session.rollback()
    reconciliation.note(
        session, finance, row.id, text="Timing: Stripe books it tomorrow", version=row.version
    )
    with pytest.raises(DomainError) as twice:
        reconciliation.note(session, finance, row.id, text="Again", version=1)
    assert twice.value.code == "exception_resolved"
    session.rollback()
    session.expire_all()
    assert session.get(ReconciliationException, row.id).resolution_note == "Timing: Stripe books it tomorrow"  # type: ignore[union-attr]


def test_a_wrong_period_is_refused(app_context: None, session: Session) -> None:
    with pytest.raises(DomainError) as backwards:
        reconciliation.reconcile(session, DAY, DAY - dt.timedelta(days=1))
    assert backwards.value.code == "period_invalid"
    with pytest.raises(DomainError) as long:
        reconciliation.reconcile(session, DAY - dt.timedelta(days=400), DAY)
    assert long.value.code == "period_too_long"


# --- The pages -----------------------------------------------------------------------------------


def test_finance_works_the_queue_in_the_browser(client: FlaskClient, session: Session, staff_of) -> None:  # type: ignore[no-untyped-def]
    _, ids = _seed(session, 20)
    finance = staff_of(Role.FINANCE)
    sign_in(client, finance)
    client.post("/staff/finance/reconciliation/run", data={"start": DAY.isoformat(), "end": DAY.isoformat()})
    page = client.get("/staff/finance/reconciliation").get_data(as_text=True)
    assert "In Stripe, not in the ledger" in page and "txn_plant_stranger" in page
    assert "Amount differs" in page and "In the ledger, not in Stripe" in page
    row = _one(session, "amount_mismatch")
    detail = client.get(f"/staff/finance/reconciliation/{row.id}").get_data(as_text=True)
    assert "txn_plant_7" in detail and f"Payment #{ids[7]}" in detail and "Book a correction" in detail

    done = client.post(
        f"/staff/finance/reconciliation/{row.id}/note",
        data={"note": "Fee shown gross", "version": str(row.version)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "The item is resolved with your note." in done
    again = client.post(
        f"/staff/finance/reconciliation/{row.id}/note",
        data={"note": "Again", "version": str(row.version)},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "This item is already resolved. Nothing was changed." in again
    filtered = client.get("/staff/finance/reconciliation?kind=amount_mismatch").get_data(as_text=True)
    assert "Nothing to resolve here." in filtered


def test_the_queue_is_for_finance_only(client: FlaskClient, session: Session, staff_of) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, staff_of(Role.AGENT))
    assert client.get("/staff/finance/reconciliation").status_code == 403
    assert client.post("/staff/finance/reconciliation/run", data={}).status_code == 403


def test_the_cli_reconciles_a_period(app: Flask, session: Session) -> None:
    _seed(session, 20)
    result = app.test_cli_runner().invoke(
        args=["finance", "reconcile", "--from", DAY.isoformat(), "--to", DAY.isoformat()]
    )
    assert result.exit_code == 0, result.output
    assert "1 amount_mismatch" in result.output and "1 missing_in_ledger" in result.output


def test_pairing_in_the_database_gives_exactly_what_matching_everything_in_python_gives(
    app_context: None, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SQL pre-pass only takes pairs nobody else can claim: with it or without it, every
    result is the same, including the awkward ones."""
    account, ids = _seed(session, 60)
    base = {
        "account_id": account.id,
        "borrower_id": account.borrower_id,
        "purpose": "amount",
        "currency": "CNY",
        "status": "succeeded",
        "received_currency": "CNY",
        "received_on": DAY,
    }
    session.execute(
        insert(Payment),
        [
            # Two payments naming one charge: both are duplicates, the charge is claimed twice.
            {
                **base,
                "amount": 900,
                "amount_received": 900,
                "idempotency_key": "odd-1",
                "payment_intent_id": "pi_twice_a",
                "charge_id": "ch_twice",
            },
            {
                **base,
                "amount": 900,
                "amount_received": 900,
                "idempotency_key": "odd-2",
                "payment_intent_id": "pi_twice_b",
                "charge_id": "ch_twice",
            },
            # A payment known only by its PaymentIntent, which has two charges in Stripe.
            {
                **base,
                "amount": 800,
                "amount_received": 800,
                "idempotency_key": "odd-3",
                "payment_intent_id": "pi_two_charges",
                "charge_id": None,
            },
            # A payment known only by its PaymentIntent, with one charge: matched.
            {
                **base,
                "amount": 700,
                "amount_received": 700,
                "idempotency_key": "odd-4",
                "payment_intent_id": "pi_only",
                "charge_id": None,
            },
        ],
    )
    session.add(
        SuspenseItem(
            kind="amount_mismatch",
            stripe_object_id="pi_plant_20",
            payment_id=ids[20],
            amount=1_020,
            currency="CNY",
            expected_amount=1_020,
            expected_currency="CNY",
        )
    )
    session.execute(
        insert(StripeBalanceTxn),
        [
            _txn("txn_twice", "charge", "ch_twice", "pi_twice_a", 900),
            _txn("txn_two_1", "charge", "ch_two_1", "pi_two_charges", 800),
            _txn("txn_two_2", "charge", "ch_two_2", "pi_two_charges", 800),
            _txn("txn_only", "charge", "ch_only", "pi_only", 700),
            _txn("txn_fee", "charge", "ch_plant_30", "pi_plant_30", 1_030, fee=30) | {"id": "txn_plant_30b"},
        ],
    )
    session.commit()

    def results(prematch: bool) -> tuple[list[tuple[str, str, str, int | None]], int]:
        monkeypatch.setattr(reconciliation, "PREMATCH", prematch)
        found, counts = reconciliation.find(session, DAY - dt.timedelta(days=2), DAY + dt.timedelta(days=2))
        return sorted((f.kind, f.stripe_ref, f.ledger_ref, f.difference) for f in found), counts["matched"]

    in_python, matched_in_python = results(False)
    with_database, matched_with_database = results(True)
    assert with_database == in_python and matched_with_database == matched_in_python
    kinds = {kind for kind, *_ in in_python}
    assert {"duplicate", "missing_in_stripe", "missing_in_ledger", "amount_mismatch"} <= kinds
    _, counts = reconciliation.find(session, DAY, DAY)
    assert counts["matched_in_database"] > 40
