"""Closing a finance day: the day's figures per currency, the close that locks them, its report
(a page and a PDF stored content-addressed), and the rule that a closed day takes no more ledger
entries through the correction path — corrections post to the next open day.

Days are business days on the desk's calendar (Asia/Shanghai, `hardship.DESK_TZ`): a payment's
`received_on` and a ledger entry's `effective_on` are already such days; Stripe's balance
transactions (stored in UTC) count on the day their `created` falls on in Shanghai.

The figures come from the ledger (and the credit entries beside it), so once a day is closed —
nothing more can be dated on it — they stay what they were when it was closed:

- gross collected: payments received that day (`Payment.received_on`), split by origin into
  one-off (the borrower paid) and autopay;
- refunds, disputes withdrawn and disputes reinstated: the net cash effect of the entries whose
  cause names the refund or dispute (reversal entries on the balance, less credit entries), one
  dispute's net counting as withdrawn or reinstated by its sign; entries applied when a payment
  was recorded after its refund or dispute ("payment:…:waiting") are shown as other reversals;
- waivers granted: waiver entries (shown as a positive amount);
- Stripe fees and payouts: from the imported balance transactions (processing fees, Stripe's own
  account fees, payouts less returned payouts), or "not imported" when no balance transaction
  of that day and currency has been imported;
- net: gross less fees, refunds, disputes withdrawn and other reversals, plus disputes reinstated
  (unknown while fees are not imported).

Every figure is one SQL aggregate; nothing here loops over ORM rows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from flask import current_app, has_request_context, render_template
from flask_babel import force_locale, get_locale
from sqlalchemy import ColumnElement, SQLColumnExpression, case, func, select, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from portal.integrations.pdf import pdf_sha256, render_pdf
from portal.integrations.storage import Storage, document_storage_from_config
from portal.models import (
    Account,
    CreditEntry,
    DayClose,
    LedgerEntry,
    Payment,
    ReconciliationException,
    StaffUser,
    StripeBalanceTxn,
)
from portal.services import audit
from portal.services.audit import Actor
from portal.services.hardship import DESK_TZ, desk_today
from workflows.errors import DomainError
from workflows.money import check_currency

OPEN_EXCEPTION_STATUSES = ("open", "awaiting_approval")
NOTE_MAX = 2000
STRIPE_ACCOUNT_FEE_TYPES = ("stripe_fee", "stripe_fx_fee", "tax_fee")
PAYOUT_TYPES = ("payout", "payout_cancel", "payout_failure")
REPORT_EXCEPTIONS_LISTED = 200
"""The most open exceptions the report lists one by one (all are counted)."""


def day_start(day: dt.date) -> dt.datetime:
    """The first instant of a business day (aware, Asia/Shanghai)."""
    return dt.datetime.combine(day, dt.time.min, tzinfo=DESK_TZ)


def business_day(moment: dt.datetime) -> dt.date:
    """The business day an instant falls on (a naive datetime is taken as UTC)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return aware.astimezone(DESK_TZ).date()


@dataclass(frozen=True)
class DayFigures:
    """One day in one currency, every amount in minor units (positive: money in for collections,
    money out for refunds, disputes withdrawn, fees and payouts)."""

    day: dt.date
    currency: str
    gross: int
    one_off: int
    one_off_count: int
    autopay: int
    autopay_count: int
    refunds: int
    disputes_withdrawn: int
    disputes_reinstated: int
    other_reversals: int
    waivers: int
    waiver_entries: int
    stripe_imported: bool
    stripe_fees: int | None
    payouts: int | None
    payout_count: int

    @property
    def payment_count(self) -> int:
        return self.one_off_count + self.autopay_count

    @property
    def net(self) -> int | None:
        """Gross less fees, refunds, disputes withdrawn and other reversals, plus disputes
        reinstated; None while Stripe's fees for the day are not imported."""
        if self.stripe_fees is None:
            return None
        return (
            self.gross
            - self.stripe_fees
            - self.refunds
            - self.disputes_withdrawn
            + self.disputes_reinstated
            - self.other_reversals
        )

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["day"] = self.day.isoformat()
        values["net"] = self.net
        return values

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> DayFigures:
        fields = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        fields["day"] = dt.date.fromisoformat(str(values["day"]))
        return cls(**fields)


def _int(value: Any) -> int:
    return int(value or 0)


def _collections(session: Session, day: dt.date, currency: str) -> dict[str, Any]:
    one_off = Payment.origin != "autopay"
    row = session.execute(
        select(
            func.coalesce(func.sum(case((one_off, Payment.amount), else_=0)), 0),
            func.count(case((one_off, Payment.id))),
            func.coalesce(func.sum(case((~one_off, Payment.amount), else_=0)), 0),
            func.count(case((~one_off, Payment.id))),
        ).where(
            Payment.received_on == day,
            Payment.currency == currency,
            Payment.status == "succeeded",
        )
    ).one()
    return {
        "one_off": _int(row[0]),
        "one_off_count": _int(row[1]),
        "autopay": _int(row[2]),
        "autopay_count": _int(row[3]),
    }


def _reversal_cause(cause: SQLColumnExpression[str]) -> ColumnElement[bool]:
    return cause.like("refund:%") | cause.like("dispute:%") | cause.like("payment:%:waiting")


def _reversals(session: Session, day: dt.date, currency: str) -> dict[str, Any]:
    """Net cash out per refund or dispute cause (balance entries less credit entries), summed by
    kind; a dispute's net counts as withdrawn when positive and reinstated when negative."""
    on_balance = (
        select(LedgerEntry.cause.label("cause"), LedgerEntry.amount.label("amount"))
        .join(Account, Account.id == LedgerEntry.account_id)
        .where(
            LedgerEntry.effective_on == day,
            Account.currency == currency,
            LedgerEntry.kind.in_(("reversal", "payment")),
            _reversal_cause(LedgerEntry.cause),
        )
    )
    on_credit = (
        select(CreditEntry.cause.label("cause"), (-CreditEntry.amount).label("amount"))
        .join(Account, Account.id == CreditEntry.account_id)
        .where(
            CreditEntry.effective_on == day,
            Account.currency == currency,
            _reversal_cause(CreditEntry.cause),
        )
    )
    both = union_all(on_balance, on_credit).subquery()
    per_cause = select(both.c.cause, func.sum(both.c.amount).label("net")).group_by(both.c.cause).subquery()
    is_refund = per_cause.c.cause.like("refund:%")
    is_dispute = per_cause.c.cause.like("dispute:%")
    row = session.execute(
        select(
            func.coalesce(func.sum(case((is_refund, per_cause.c.net), else_=0)), 0),
            func.coalesce(func.sum(case((is_dispute & (per_cause.c.net > 0), per_cause.c.net), else_=0)), 0),
            func.coalesce(func.sum(case((is_dispute & (per_cause.c.net < 0), -per_cause.c.net), else_=0)), 0),
            func.coalesce(
                func.sum(case((~is_refund & ~is_dispute, per_cause.c.net), else_=0)),
                0,
            ),
        )
    ).one()
    return {
        "refunds": _int(row[0]),
        "disputes_withdrawn": _int(row[1]),
        "disputes_reinstated": _int(row[2]),
        "other_reversals": _int(row[3]),
    }


def _waivers(session: Session, day: dt.date, currency: str) -> dict[str, Any]:
    row = session.execute(
        select(func.coalesce(-func.sum(LedgerEntry.amount), 0), func.count(LedgerEntry.id))
        .join(Account, Account.id == LedgerEntry.account_id)
        .where(LedgerEntry.effective_on == day, Account.currency == currency, LedgerEntry.kind == "waiver")
    ).one()
    return {"waivers": _int(row[0]), "waiver_entries": _int(row[1])}


def stripe_window(first: dt.date, last: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The instants (UTC) from the start of `first` to the end of `last`, business days."""
    return (
        day_start(first).astimezone(dt.UTC),
        day_start(last + dt.timedelta(days=1)).astimezone(dt.UTC),
    )


def _stripe(session: Session, day: dt.date, currency: str) -> dict[str, Any]:
    start, end = stripe_window(day, day)
    txn = StripeBalanceTxn
    account_fee = txn.type.in_(STRIPE_ACCOUNT_FEE_TYPES)
    payout = txn.type.in_(PAYOUT_TYPES)
    row = session.execute(
        select(
            func.count(txn.id),
            func.coalesce(func.sum(txn.fee), 0),
            func.coalesce(func.sum(case((account_fee, -txn.amount), else_=0)), 0),
            func.coalesce(func.sum(case((payout, -txn.amount), else_=0)), 0),
            func.count(case((txn.type == "payout", txn.id))),
        ).where(txn.created >= start, txn.created < end, func.upper(txn.currency) == currency)
    ).one()
    imported = _int(row[0]) > 0
    return {
        "stripe_imported": imported,
        "stripe_fees": _int(row[1]) + _int(row[2]) if imported else None,
        "payouts": _int(row[3]) if imported else None,
        "payout_count": _int(row[4]),
    }


def day_figures(session: Session, day: dt.date, currency: str) -> DayFigures:
    """The figures of one business day in one currency, as the ledger and Stripe have them now."""
    currency = check_currency(currency.upper())
    collected = _collections(session, day, currency)
    return DayFigures(
        day=day,
        currency=currency,
        gross=collected["one_off"] + collected["autopay"],
        **collected,
        **_reversals(session, day, currency),
        **_waivers(session, day, currency),
        **_stripe(session, day, currency),
    )


# --- Open exceptions ------------------------------------------------------------------------------


def open_exceptions(
    session: Session, day: dt.date, currency: str, *, limit: int | None = None
) -> list[ReconciliationException]:
    """Exceptions of that day and currency not yet resolved, oldest first."""
    stmt = (
        select(ReconciliationException)
        .where(
            ReconciliationException.day == day,
            ReconciliationException.currency == currency,
            ReconciliationException.status.in_(OPEN_EXCEPTION_STATUSES),
        )
        .order_by(ReconciliationException.id)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def count_open_exceptions(session: Session, day: dt.date, currency: str) -> int:
    return _int(
        session.scalar(
            select(func.count(ReconciliationException.id)).where(
                ReconciliationException.day == day,
                ReconciliationException.currency == currency,
                ReconciliationException.status.in_(OPEN_EXCEPTION_STATUSES),
            )
        )
    )


# --- Closed days ----------------------------------------------------------------------------------


def closed(session: Session, day: dt.date, currency: str) -> DayClose | None:
    return session.scalar(select(DayClose).where(DayClose.day == day, DayClose.currency == currency.upper()))


def closed_days(session: Session, *, currency: str | None = None, limit: int = 60) -> list[DayClose]:
    """The latest closed days, newest first."""
    stmt = select(DayClose).order_by(DayClose.day.desc(), DayClose.currency).limit(limit)
    if currency:
        stmt = stmt.where(DayClose.currency == currency.upper())
    return list(session.scalars(stmt))


def next_open_day(session: Session, currency: str, after: dt.date) -> dt.date:
    """The first day on or after `after` that is not closed in `currency`: where a correction
    about something on `after` is dated (the day itself while it is open, otherwise the day after
    the closed run that contains it)."""
    candidate = after
    days = session.scalars(
        select(DayClose.day)
        .where(DayClose.currency == currency.upper(), DayClose.day >= after)
        .order_by(DayClose.day)
    )
    for day in days:
        if day != candidate:
            break
        candidate += dt.timedelta(days=1)
    return candidate


def ensure_open(session: Session, day: dt.date, currency: str) -> None:
    """Refuse a ledger entry dated on a closed day (the correction path calls this before posting;
    `next_open_day` says where to post instead)."""
    if closed(session, day, currency) is not None:
        raise DomainError(
            "day_closed",
            "{day} is closed in {currency}: date the entry on {next_open} instead.",
            day=day.isoformat(),
            currency=currency.upper(),
            next_open=next_open_day(session, currency, day).isoformat(),
        )


def _check_closable(session: Session, day: dt.date, currency: str) -> None:
    today = desk_today()
    if day > today:
        raise DomainError("day_close_future", "{day} has not happened yet.", day=day.isoformat())
    if day == today:
        raise DomainError(
            "day_close_not_ended", "{day} is today: it can be closed once it has ended.", day=day.isoformat()
        )
    if closed(session, day, currency) is not None:
        raise DomainError(
            "day_already_closed",
            "{day} is already closed in {currency}.",
            day=day.isoformat(),
            currency=currency,
        )


def report_html(
    close: DayClose, figures: DayFigures, exceptions: list[ReconciliationException], closed_by: str | None
) -> str:
    """The report in the language of the person closing (the default language from a command)."""
    language = str(get_locale()) if has_request_context() else str(current_app.config["BABEL_DEFAULT_LOCALE"])
    with force_locale(language):
        return render_template(
            "finance/day_report.html",
            close=close,
            figures=figures,
            exceptions=exceptions,
            closed_by=closed_by,
            desk_tz=DESK_TZ,
        )


def _actor_name(session: Session, actor: StaffUser | Actor | None) -> tuple[Actor, int | None, str | None]:
    if actor is None:
        return audit.SYSTEM, None, None
    if isinstance(actor, Actor):
        user = session.get(StaffUser, actor.id) if actor.type == "staff" and actor.id else None
        return actor, user.id if user else None, user.full_name if user else None
    return Actor.staff(actor), actor.id, actor.full_name


def close_day(
    session: Session,
    day: dt.date,
    currency: str,
    actor: StaffUser | Actor | None,
    note: str | None = None,
    *,
    storage: Storage | None = None,
) -> DayClose:
    """Close a past business day in one currency: its figures frozen, its report rendered and
    stored (content-addressed), one audit event; commits.

    Refused (nothing changes): a day not yet ended, a day already closed, and a day with open
    reconciliation exceptions unless a note says why it is closed anyway.
    """
    currency = check_currency(currency.upper().strip())
    text = (note or "").strip() or None
    if text is not None and len(text) > NOTE_MAX:
        raise DomainError(
            "day_close_note_too_long", "Keep the note under {maximum} characters.", maximum=NOTE_MAX
        )
    _check_closable(session, day, currency)
    pending = count_open_exceptions(session, day, currency)
    if pending and text is None:
        raise DomainError(
            "day_close_note_required",
            "{count} reconciliation exceptions of {day} are still open: write why the day is closed anyway.",
            count=pending,
            day=day.isoformat(),
        )
    figures = day_figures(session, day, currency)
    who, closed_by_id, closed_by = _actor_name(session, actor)
    row = DayClose(
        day=day,
        currency=currency,
        figures=figures.to_json(),
        open_exceptions=pending,
        note=text,
        closed_by_id=closed_by_id,
        closed_at=dt.datetime.now(dt.UTC),
    )
    listed = open_exceptions(session, day, currency, limit=REPORT_EXCEPTIONS_LISTED) if pending else []
    data = render_pdf(report_html(row, figures, listed, closed_by))
    target = storage or document_storage_from_config(current_app.config)
    row.report_key = target.put_content(data, suffix=".pdf")
    row.report_sha256 = pdf_sha256(data)
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:  # closed at the same moment by someone else
        session.rollback()
        raise DomainError(
            "day_already_closed",
            "{day} is already closed in {currency}.",
            day=day.isoformat(),
            currency=currency,
        ) from exc
    audit.record(
        session,
        who,
        "day.closed",
        "day_close",
        row.id,
        after={
            "day": day,
            "currency": currency,
            "open_exceptions": pending,
            "note": text,
            "gross": figures.gross,
            "net": figures.net,
            "report_sha256": row.report_sha256,
        },
    )
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise DomainError(
            "day_already_closed",
            "{day} is already closed in {currency}.",
            day=day.isoformat(),
            currency=currency,
        ) from exc
    return row


def report_pdf(close: DayClose, storage: Storage | None = None) -> bytes | None:
    """The stored report of a closed day (None when it has none)."""
    if not close.report_key:
        return None
    return (storage or document_storage_from_config(current_app.config)).open(close.report_key)


def frozen_figures(close: DayClose) -> DayFigures:
    return DayFigures.from_json(close.figures)


def known_currencies(session: Session) -> list[str]:
    """The currencies accounts are held in (for pickers), CNY first when present."""
    found = sorted(set(session.scalars(select(Account.currency).distinct())))
    return sorted(found, key=lambda c: (c != "CNY", c)) or ["CNY"]


@dataclass(frozen=True)
class CloseView:
    """What the daily close page shows for one day and currency."""

    day: dt.date
    currency: str
    today: dt.date
    closed: DayClose | None
    figures: DayFigures
    pending: int
    exceptions: list[ReconciliationException]
    next_open: dt.date
    closed_days: list[DayClose]
    currencies: list[str]

    @property
    def closable(self) -> bool:
        return self.closed is None and self.day < self.today


def close_view(session: Session, day: dt.date, currency: str) -> CloseView:
    """The day's figures (frozen when closed, as they are now otherwise), its open exceptions,
    where a correction would post, and the latest closed days."""
    currency = check_currency(currency.upper())
    row = closed(session, day, currency)
    return CloseView(
        day=day,
        currency=currency,
        today=desk_today(),
        closed=row,
        figures=frozen_figures(row) if row else day_figures(session, day, currency),
        pending=count_open_exceptions(session, day, currency),
        exceptions=open_exceptions(session, day, currency, limit=REPORT_EXCEPTIONS_LISTED),
        next_open=next_open_day(session, currency, day),
        closed_days=closed_days(session),
        currencies=known_currencies(session),
    )
