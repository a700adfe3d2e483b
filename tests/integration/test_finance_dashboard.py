"""The finance dashboard: collections per day and channel over 30 days, per stage the account was
in when it paid, plans and instalments by status, waivers per day and open exceptions by age —
exact for a seeded portfolio, drawn as charts with their tables, and downloadable as CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io

from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from portal.models import Account, Payment, ReconciliationException, StageHistory
from portal.services import finance_dashboard, ledger
from portal.services.audit import SYSTEM
from portal.services.hardship import desk_today
from tests import factories, plan_support
from tests.conftest import sign_in
from tests.webhook_support import new_payment
from workflows.access import Role
from workflows.ledger import EntryKind, Posting
from workflows.money import Component

TODAY = desk_today()


def ago(days: int) -> dt.date:
    return TODAY - dt.timedelta(days=days)


def received(
    session: Session, account: Account, amount: int, day: dt.date, *, autopay: bool = False
) -> Payment:
    payment = new_payment(session, account, amount, status="succeeded")
    payment.received_on = day
    payment.origin = "autopay" if autopay else "borrower"
    session.commit()
    return payment


def seed(session: Session) -> None:
    mid, early, unknown = (factories.account(session) for _ in range(3))
    session.add_all(
        [
            StageHistory(account_id=mid.id, stage="early", entered_on=ago(90), left_on=ago(60)),
            StageHistory(account_id=mid.id, stage="mid", entered_on=ago(60)),
            StageHistory(account_id=early.id, stage="early", entered_on=ago(10), left_on=TODAY),
            StageHistory(account_id=early.id, stage="current", entered_on=TODAY),
        ]
    )
    session.commit()
    received(session, mid, 10_000, ago(1))
    received(session, early, 20_000, ago(1), autopay=True)
    received(session, unknown, 5_000, ago(5))
    received(session, mid, 7_700, ago(40))  # before the period
    received(session, factories.account(session, currency="USD"), 9_900, ago(1))  # another currency
    failed = new_payment(session, mid, 1_234, status="failed")
    assert failed.received_on is None

    plans = [plan_support.plan(session, [ago(20), ago(5), TODAY + dt.timedelta(days=30)]) for _ in range(4)]
    plans[1].status, plans[2].status = "completed", "broken"
    first, second, _later = plans[0].instalments
    first.status, first.paid_amount = "paid", first.amount
    second.status = "missed"
    plans[3].instalments[0].status, plans[3].instalments[0].paid_amount = (
        "paid",
        plans[3].instalments[0].amount,
    )
    plans[3].instalments[0].due_on = ago(45)  # before the period
    plans[2].instalments[0].status, plans[2].instalments[0].paid_amount = (
        "paid",
        plans[2].instalments[0].amount,
    )
    session.commit()

    account = ledger.lock_account(session, early.id)
    ledger.post(
        session,
        account,
        EntryKind.WAIVER,
        [Posting(Component.PRINCIPAL, -7_000)],
        cause="agreement:dash",
        actor=SYSTEM,
        effective_on=ago(2),
    )
    session.commit()

    exceptions = [
        (0, "open", "CNY"),
        (3, "open", "CNY"),
        (3, "awaiting_approval", "CNY"),
        (10, "open", "CNY"),
        (45, "open", "CNY"),
        (2, "resolved", "CNY"),
        (2, "open", "USD"),
    ]
    for n, (days, status, currency) in enumerate(exceptions):
        session.add(
            ReconciliationException(
                kind="missing_in_stripe",
                day=ago(days),
                ledger_ref=f"payment:dash{n}",
                amount=-1_000 * (n + 1),
                currency=currency,
                status=status,
            )
        )
    session.commit()


def test_the_dashboard_figures_are_exact(session: Session) -> None:
    seed(session)

    board = finance_dashboard.dashboard(session, "CNY", TODAY)

    assert board.first == ago(29) and len(board.daily) == 30 and board.daily[-1].day == TODAY
    by_day = {d.day: d for d in board.daily if d.total}
    assert by_day == {
        ago(1): finance_dashboard.DayCollections(ago(1), one_off=10_000, autopay=20_000, payments=2),
        ago(5): finance_dashboard.DayCollections(ago(5), one_off=5_000, autopay=0, payments=1),
    }
    assert board.totals == {"one_off": 15_000, "autopay": 20_000, "payments": 3}
    stages = {s.stage: (s.one_off, s.autopay, s.payments) for s in board.by_stage if s.payments}
    assert stages == {"mid": (10_000, 0, 1), "early": (0, 20_000, 1), "unrecorded": (5_000, 0, 1)}
    assert [s.stage for s in board.by_stage][-1] == "unrecorded" and len(board.by_stage) == len(
        finance_dashboard.STAGES
    )
    assert board.plans == {"active": 2, "completed": 1, "broken": 1}
    # Due in the period: 3 plans x 2 instalments + 1 (the fourth plan's first is older).
    assert board.instalments == {"paid": 2, "missed": 1, "due": 4}
    assert board.kept_rate_bp == 6666
    assert [amount for day, amount in board.waivers if amount] == [7_000]
    assert dict(board.waivers)[ago(2)] == 7_000
    assert [(b.label, b.count, b.amount) for b in board.exceptions] == [
        ("0-1", 1, 1_000),
        ("2-7", 2, 2_000 + 3_000),
        ("8-30", 1, 4_000),
        ("31+", 1, 5_000),
    ]
    usd = finance_dashboard.dashboard(session, "USD", TODAY)
    assert usd.totals["one_off"] == 9_900 and [b.count for b in usd.exceptions] == [0, 1, 0, 0]


def test_the_dashboard_page_draws_each_chart_with_its_table_and_csv_link(
    client: FlaskClient, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    seed(session)
    sign_in(client, staff_of(Role.FINANCE))

    html = client.get("/staff/finance/dashboard?currency=CNY").get_data(as_text=True)

    assert html.count("<svg") >= 6 and 'aria-hidden="true"' in html
    assert html.count("Show the figures as a table") == 2  # the two column charts; bars carry hidden tables
    for dataset in finance_dashboard.DATASETS:
        assert f"/staff/finance/dashboard/{dataset}.csv?currency=CNY" in html
    assert "of the instalments paid or missed were paid" in html


def test_the_numbers_behind_each_chart_download_as_csv(
    client: FlaskClient, session: Session, staff_of
) -> None:  # type: ignore[no-untyped-def]
    seed(session)
    sign_in(client, staff_of(Role.FINANCE))

    response = client.get("/staff/finance/dashboard/collections_daily.csv?currency=CNY")

    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith(
        'attachment; filename="accord-collections-daily-CNY-'
    )
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).removeprefix("\ufeff"))))
    assert rows[0] == [
        "day",
        "currency",
        "one_off_minor",
        "autopay_minor",
        "total_minor",
        "total",
        "payments",
    ]
    assert len(rows) == 31
    assert [ago(1).isoformat(), "CNY", "10000", "20000", "30000", "300.00", "2"] in rows
    exceptions = client.get("/staff/finance/dashboard/exceptions.csv?currency=CNY").get_data(as_text=True)
    assert "31+,CNY,1,5000,50.00" in exceptions
    for dataset in finance_dashboard.DATASETS:
        assert client.get(f"/staff/finance/dashboard/{dataset}.csv").status_code == 200
    assert client.get("/staff/finance/dashboard/nothing.csv").status_code == 404
