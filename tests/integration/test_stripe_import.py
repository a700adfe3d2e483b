"""Importing Stripe's balance transactions: through the API of a real localstripe after payments
and a refund made through the portal's services (then reconciled to zero exceptions), resumably
and idempotently; and from CSV exports of Stripe's reports, good and bad, with the exact
problems each bad one gives and nothing invalid imported."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import stripe
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.integrations.stripe_gateway import client_from_config
from portal.models import AuditEvent, Payment, ReconciliationException, StripeBalanceTxn, StripeImport
from portal.services import autopay, ledger, reconciliation, refunds, stripe_import
from portal.services.hardship import desk_today
from tests import plan_support
from tests.conftest import sign_in
from tests.stripe_support import LocalStripe
from workflows.access import Role

DATA = Path(__file__).resolve().parent.parent / "data" / "stripe"
TODAY = desk_today()


@pytest.fixture
def stripe_client(app: Flask, localstripe: LocalStripe) -> stripe.StripeClient:
    localstripe.reset()
    return client_from_config(app.config)


@pytest.fixture
def app_context(app: Flask) -> Iterator[None]:
    with app.app_context():
        yield


def _txn_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(StripeBalanceTxn)) or 0)


def _paid(session: Session, client: stripe.StripeClient, amount: int) -> Payment:
    plan = plan_support.plan(session, [TODAY, TODAY + dt.timedelta(days=30)], amount=amount)
    plan_support.autopay(session, client, plan)
    report = autopay.run(session, client, TODAY)
    assert report.succeeded == 1
    payment = session.get(Payment, report.payment_ids[0])
    assert payment is not None and payment.status == "succeeded"
    return payment


def test_payments_and_a_refund_made_through_the_portal_import_and_reconcile_to_zero_exceptions(
    app_context: None, session: Session, stripe_client: stripe.StripeClient, staff_of
) -> None:  # type: ignore[no-untyped-def]
    first = _paid(session, stripe_client, 30_000)
    second = _paid(session, stripe_client, 12_345)
    finance = staff_of(Role.FINANCE)
    result = refunds.request_refund(
        session, stripe_client, finance, first.id, amount_text="100.00", reason="Paid twice by mistake"
    )
    assert result.status == "succeeded"

    run = stripe_import.import_from_api(session, stripe_client, user=finance)

    assert run.status == "completed" and run.counts["new"] == 3 and run.counts["known"] == 0
    rows = {row.source_id: row for row in session.scalars(select(StripeBalanceTxn))}
    charges = [row for row in rows.values() if row.type == "charge"]
    assert sorted(row.amount for row in charges) == [12_345, 30_000]
    assert {row.payment_intent_id for row in rows.values()} == {
        first.payment_intent_id,
        second.payment_intent_id,
    }
    [refund_txn] = [row for row in rows.values() if row.type == "refund"]
    assert refund_txn.amount == -10_000 and refund_txn.payment_intent_id == first.payment_intent_id
    assert refund_txn.source_id and refund_txn.source_id.startswith("re_")

    recon = reconciliation.reconcile(session, TODAY - dt.timedelta(days=1), TODAY, finance)

    assert recon.counts["matched"] == 3
    assert recon.counts["exceptions"] == {} and recon.counts["exceptions_new"] == 0
    assert session.scalar(select(func.count()).select_from(ReconciliationException)) == 0
    assert session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "reconciliation.run")
    )

    # The same import again: nothing new, nothing changed.
    again = stripe_import.import_from_api(session, stripe_client)
    assert again.status == "completed" and again.counts["new"] == 0 and again.counts["known"] == 3
    assert again.counts.get("created_filter_refused") is True  # localstripe: the whole list is read
    assert _txn_count(session) == 3
    assert not ledger.discrepancies(session)


def test_an_interrupted_api_import_resumes_after_its_cursor_and_stores_each_transaction_once(
    app_context: None, session: Session, stripe_client: stripe.StripeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for amount in (1_000, 2_000, 3_000, 4_000, 5_000):
        stripe_client.v1.payment_intents.create(
            params={
                "amount": amount,
                "currency": "cny",
                "payment_method_types": ["card"],
                "payment_method": "pm_card_visa",
                "confirm": True,
            }
        )
    monkeypatch.setattr(stripe_import, "PAGE_SIZE", 2)
    seen: list[int] = []

    stopped = stripe_import.import_from_api(session, stripe_client, limit_pages=1, progress=seen.append)

    assert stopped.status == "running" and stopped.cursor and stopped.counts["new"] == 2
    assert _txn_count(session) == 2 and seen == [2]

    resumed = stripe_import.import_from_api(session, stripe_client, progress=seen.append)

    assert resumed.id == stopped.id and resumed.status == "completed"
    assert resumed.counts["new"] == 5 and _txn_count(session) == 5
    assert sum(seen) == 5
    assert sorted(session.scalars(select(StripeBalanceTxn.amount))) == [1_000, 2_000, 3_000, 4_000, 5_000]
    assert stripe_import.import_from_api(session, stripe_client).counts["new"] == 0


# --- CSV -----------------------------------------------------------------------------------------


def _import(session: Session, name: str) -> StripeImport:
    return stripe_import.import_csv(session, (DATA / name).read_bytes(), name)


def _problems(run: StripeImport) -> list[tuple[int | None, str]]:
    return [(p["line"], p["code"]) for p in run.problems]


def test_a_good_report_imports_every_line_with_its_payout_and_the_same_ids_again_change_nothing(
    app_context: None, session: Session
) -> None:
    run = _import(session, "good.csv")

    assert run.status == "completed" and run.problems == []
    assert (run.counts["rows"], run.counts["new"], run.counts["encoding"]) == (5, 5, "utf-8-sig")
    charge = session.get(StripeBalanceTxn, "txn_csv_charge_1")
    assert charge is not None
    assert (charge.amount, charge.fee, charge.net, charge.currency, charge.type) == (
        30_000,
        900,
        29_100,
        "CNY",
        "charge",
    )
    assert (charge.payment_intent_id, charge.payout_id, charge.source_id) == (
        "pi_csv_1",
        "po_csv_1",
        "ch_csv_1",
    )
    assert charge.created == dt.datetime(2026, 11, 2, 9, 15, tzinfo=dt.UTC)
    assert charge.available_on == dt.date(2026, 11, 4)
    dispute = session.get(StripeBalanceTxn, "txn_csv_dispute_1")
    assert dispute is not None and (dispute.type, dispute.net) == ("adjustment", -151_500)

    same = _import(session, "good.csv")
    assert same.counts["same_file_as"] == run.id
    assert (same.counts["new"], same.counts["unchanged"]) == (0, 5)
    assert "already imported" in stripe_import.summary(same)
    # The same lines with a byte order mark and Windows line ends: the same ids, nothing new.
    bom = _import(session, "good_bom.csv")
    assert (bom.status, bom.counts["new"], bom.counts["unchanged"], bom.problems) == ("completed", 0, 5, [])
    assert _txn_count(session) == 5


def test_a_payout_in_a_report_is_checked_against_what_it_paid_out(
    app_context: None, session: Session
) -> None:
    _import(session, "good.csv")
    run = reconciliation.reconcile(session, dt.date(2026, 11, 2), dt.date(2026, 11, 4))
    assert run.counts["payouts_checked"] == 1
    assert "payout_mismatch" not in run.counts["exceptions"]
    # Without ledger records, each borrower transaction is missing in the ledger.
    assert run.counts["exceptions"]["missing_in_ledger"] == 4


def test_a_gb18030_report_from_a_chinese_spreadsheet_is_read(app_context: None, session: Session) -> None:
    run = _import(session, "gb18030.csv")
    assert (run.status, run.counts["encoding"], run.counts["new"], run.problems) == (
        "completed",
        "gb18030",
        2,
        [],
    )
    row = session.get(StripeBalanceTxn, "txn_csv_gb_1")
    assert row is not None and row.description == "还款 第一期" and row.amount == 120_000
    symbol = session.get(StripeBalanceTxn, "txn_csv_gb_2")
    assert symbol is not None and (symbol.amount, symbol.fee, symbol.net) == (8_800, 264, 8_536)


def test_amounts_with_commas_signs_and_codes_are_read_and_foreign_or_wrong_ones_refused_by_line(
    app_context: None, session: Session
) -> None:
    run = _import(session, "amounts.csv")
    assert run.status == "completed"
    assert (run.counts["rows"], run.counts["new"], run.counts["refused"]) == (7, 4, 3)
    assert _problems(run) == [
        (5, "report_symbol_mismatch"),
        (5, "report_symbol_mismatch"),
        (7, "report_amount_ambiguous"),
        (7, "report_amount_ambiguous"),
        (8, "report_amount_invalid"),
    ]
    amounts = {
        row.id: (row.amount, row.fee, row.net)
        for row in session.scalars(select(StripeBalanceTxn).where(StripeBalanceTxn.id.like("txn_csv_amt_%")))
    }
    assert amounts == {
        "txn_csv_amt_1": (123_456, 3_610, 119_846),
        "txn_csv_amt_2": (-1_200, 0, -1_200),
        "txn_csv_amt_3": (500, 45, 455),
        "txn_csv_amt_5": (1_234, 0, 1_234),  # yen: no decimals
    }

    foreign = _import(session, "foreign_decimals.csv")
    assert (
        _problems(foreign)
        == [(2, "report_amount_foreign_format")] * 3 + [(3, "report_amount_foreign_format")] * 2
    )
    assert foreign.counts["new"] == 1 and session.get(StripeBalanceTxn, "txn_csv_eu_1") is None


def test_bad_rows_are_listed_by_line_and_only_the_good_one_is_imported(
    app_context: None, session: Session
) -> None:
    run = _import(session, "bad_rows.csv")
    assert run.status == "completed"
    assert _problems(run) == [
        (2, "txn_net_invalid"),
        (3, "report_date_invalid"),
        (4, "unknown_currency"),
        (5, "report_id_invalid"),
        (6, "csv_row_width"),
    ]
    assert [row.id for row in session.scalars(select(StripeBalanceTxn))] == ["txn_csv_ok_6"]


def test_duplicate_rows_are_imported_once_and_conflicting_copies_not_at_all(
    app_context: None, session: Session
) -> None:
    run = _import(session, "duplicate_rows.csv")
    assert _problems(run) == [(3, "csv_duplicate_row"), (5, "csv_conflicting_row")]
    assert (run.counts["new"], run.counts["repeated"], run.counts["refused"]) == (2, 1, 2)
    assert sorted(session.scalars(select(StripeBalanceTxn.id))) == ["txn_csv_dup_1", "txn_csv_dup_3"]


def test_a_line_that_disagrees_with_the_stored_copy_keeps_the_stored_one(
    app_context: None, session: Session
) -> None:
    _import(session, "good.csv")
    changed = (DATA / "good.csv").read_bytes().replace(b"300.00,9.00,291.00", b"310.00,9.00,301.00")
    run = stripe_import.import_csv(session, changed, "good-edited.csv")
    assert _problems(run) == [(2, "csv_differs_from_stored")]
    stored = session.get(StripeBalanceTxn, "txn_csv_charge_1")
    assert stored is not None and stored.amount == 30_000


@pytest.mark.parametrize(
    ("name", "problems"),
    [
        ("empty.csv", [(None, "csv_empty")]),
        ("header_only.csv", [(None, "csv_empty")]),
        ("utf16.csv", [(None, "csv_encoding")]),
        ("latin1.csv", [(None, "csv_encoding")]),
        ("wrong_columns.csv", [(1, "csv_columns")] * 5),
        ("semicolons.csv", [(1, "csv_semicolons")] + [(1, "csv_columns")] * 8),
    ],
)
def test_a_file_with_a_structural_problem_is_refused_whole(
    app_context: None, session: Session, name: str, problems: list[tuple[int | None, str]]
) -> None:
    run = _import(session, name)
    assert run.status == "failed" and run.counts["imported"] == 0
    assert _problems(run) == problems
    assert _txn_count(session) == 0
    assert "refused" in stripe_import.summary(run)
    assert session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "stripe_import.failed")
    )


def test_wrong_columns_name_each_missing_column(app_context: None, session: Session) -> None:
    run = _import(session, "wrong_columns.csv")
    assert [p["message"] for p in run.problems] == [
        f"column {name!r} is missing"
        for name in ("balance_transaction_id", "created_utc", "gross", "reporting_category", "source_id")
    ]


def test_finance_uploads_a_report_and_reads_its_problems(
    client: FlaskClient, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, staff_of(Role.FINANCE))
    with (DATA / "bad_rows.csv").open("rb") as stream:
        response = client.post(
            "/staff/finance/reconciliation/imports",
            data={"file": (stream, "bad_rows.csv")},
            content_type="multipart/form-data",
        )
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "1 new balance transactions imported" in page
    assert "is not a date and time" in page and "report_date_invalid" in page
    empty = client.post(
        "/staff/finance/reconciliation/imports",
        data={},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    assert "Choose a CSV file exported from Stripe." in empty.get_data(as_text=True)


def test_the_cli_imports_a_report_with_a_summary(app: Flask, session: Session) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["finance", "import", "csv", str(DATA / "good.csv")])
    assert result.exit_code == 0, result.output
    assert "5 new" in result.output
    refused = runner.invoke(args=["finance", "import", "csv", str(DATA / "wrong_columns.csv")])
    assert refused.exit_code != 0 and "nothing was imported" in refused.output
