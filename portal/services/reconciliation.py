"""Reconciliation: Stripe's balance transactions matched against what the ledger recorded, and the
exceptions queue finance works until every difference is resolved.

**Matching** (``reconcile``) reads, for a period of days ``start`` to ``end``:

- the ledger side: payments recorded as received (``succeeded``, by ``received_on``), refunds
  pending or succeeded (by when they were sent: decided, else asked for), dispute withdrawals
  (by when the dispute was seen) and reinstatements (won, by when it closed), and payments held
  in suspense (by their PaymentIntent: the money is in Stripe and explained by the suspense
  item, which is reported as its own exception);
- the Stripe side: stored balance transactions created in the period (UTC);

each with ``SLACK`` (one day) more on both sides, because the ledger books on the desk's day
(Asia/Shanghai) while Stripe stamps UTC, and a payment just before midnight lands on a
different date on each side. ``workflows.reconciliation.match`` pairs them; an exception is
kept only when its day (the Stripe transaction's UTC day, else the ledger item's booking day)
is inside the period, so the slack never reports what belongs to a neighbouring period. Payouts
created in the period are checked with ``check_payouts`` against the transactions stored with
their payout id; a payout whose contents were never imported is counted as unchecked, not
reported. Long periods are matched in windows of ``WINDOW_DAYS`` days (each with its slack).

The bulk of a period is the plain case: one payment, one charge, same amount. ``prematch``
pairs those in the database first (a temporary table, filled by joins that take a pair only
when nothing else claims either side, so that ``match`` would certainly pair it the same way),
and only the rest is read into Python and given to ``match``; the counts say how many were
``matched_in_database``. With ``PREMATCH = False`` everything goes through ``match`` — the
tests hold that both ways give the same results.

Every non-matched result is upserted as a ``ReconciliationException`` keyed by (kind, Stripe
ref, ledger ref): running again never duplicates one, and a resolved one stays resolved. An
open exception whose cause has gone (the ledger caught up, say) is not deleted: it stays open
for someone to resolve, with ``detail["cleared_in_run"]`` naming the run that no longer found
it. Open suspense items are exceptions of kind ``suspense``.

**Resolutions** (each audited, none editing history; a resolved item, or one changed since the
form was shown, is refused with a clear message and nothing changes):

- ``link``: a missing-in-ledger or suspense item explained by a payment;
- ``correct``: an amount on one component of the account's balance, posted with its own ledger
  entries (``adjustment`` when the debt goes down, ``reversal`` when it goes back up), cause
  ``correction:<id>``, effective on the next open day (the day after the last closed day for
  the currency, if that is later than today);
- ``request_write_off`` → ``approve_write_off`` by a second finance user (never the one who
  asked), or ``reject_write_off`` back to open;
- ``note``: why nothing needs doing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    exists,
    func,
    or_,
    select,
    text,
    tuple_,
    union_all,
)
from sqlalchemy.orm import Session

from portal.db import UTCDateTime, utcnow
from portal.models import (
    DayClose,
    Dispute,
    Payment,
    ReconciliationException,
    ReconciliationRun,
    Refund,
    StaffUser,
    StripeBalanceTxn,
    SuspenseItem,
)
from portal.models.finance import EXCEPTION_KINDS
from portal.services import audit, ledger
from portal.services.audit import SYSTEM, Actor
from portal.services.hardship import desk_today
from workflows.access import Permission
from workflows.errors import DomainError
from workflows.ledger import EntryKind, Posting
from workflows.money import Component, parse_amount
from workflows.reconciliation import (
    LedgerItem,
    LedgerKind,
    MatchResult,
    Outcome,
    PayoutResult,
    StripeTxn,
    check_payouts,
    match,
)

log = logging.getLogger(__name__)

SLACK = dt.timedelta(days=1)
WINDOW_DAYS = 31
MAX_PERIOD_DAYS = 366
CHUNK = 500
NOTE_MAX = 1000
PAGE = 50
REFUNDS_IN_STRIPE = ("pending", "succeeded")
OPEN = ("open", "awaiting_approval")


# --- Reading both sides --------------------------------------------------------------------------


def _start_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def _utc_day(value: dt.datetime) -> dt.date:
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC).date()


def ledger_items(
    session: Session, first: dt.date, last: dt.date, prematched: Table | None = None
) -> list[LedgerItem]:
    """What the ledger recorded from ``first`` to ``last`` (inclusive), as the matcher reads it
    (leaving out the payments already paired in ``prematched``)."""
    lo, hi = _start_of(first), _start_of(last + dt.timedelta(days=1))
    items: list[LedgerItem] = []
    payment_rows = select(
        Payment.id,
        Payment.amount,
        Payment.amount_received,
        Payment.currency,
        Payment.received_currency,
        Payment.payment_intent_id,
        Payment.charge_id,
        Payment.received_on,
    ).where(Payment.status == "succeeded", Payment.received_on >= first, Payment.received_on <= last)
    if prematched is not None:
        # NOT EXISTS, never NOT IN: PostgreSQL runs a large NOT IN as a nested loop.
        payment_rows = payment_rows.where(~exists().where(prematched.c.payment_id == Payment.id))
    payments = session.execute(payment_rows)
    for pid, amount, received, currency, received_currency, pi, charge, on in payments:
        items.append(
            LedgerItem(
                kind=LedgerKind.PAYMENT,
                record_id=f"payment:{pid}",
                amount=received if received is not None else amount,
                currency=received_currency or currency,
                payment_intent_id=pi,
                charge_id=charge,
                booked_on=on,
            )
        )
    sent = func.coalesce(Refund.decided_at, Refund.created_at)
    refunds = session.execute(
        select(
            Refund.id,
            Refund.amount,
            Refund.currency,
            Refund.stripe_refund_id,
            sent,
            Payment.payment_intent_id,
        )
        .join(Payment, Payment.id == Refund.payment_id)
        .where(Refund.status.in_(REFUNDS_IN_STRIPE), sent >= lo, sent < hi)
    )
    for rid, amount, currency, stripe_id, at, pi in refunds:
        items.append(
            LedgerItem(
                kind=LedgerKind.REFUND,
                record_id=f"refund:{rid}",
                amount=-amount,
                currency=currency,
                payment_intent_id=pi,
                refund_id=stripe_id,
                booked_on=_utc_day(at),
            )
        )
    disputes = session.execute(
        select(
            Dispute.id,
            Dispute.amount,
            Dispute.currency,
            Dispute.stripe_dispute_id,
            Dispute.status,
            Dispute.created_at,
            Dispute.closed_at,
            Payment.payment_intent_id,
        )
        .join(Payment, Payment.id == Dispute.payment_id)
        .where(
            or_(
                and_(Dispute.created_at >= lo, Dispute.created_at < hi),
                and_(Dispute.status == "won", Dispute.closed_at >= lo, Dispute.closed_at < hi),
            )
        )
    )
    for did, amount, currency, stripe_id, status, created, closed, pi in disputes:
        if lo <= created < hi:
            items.append(
                LedgerItem(
                    kind=LedgerKind.DISPUTE_WITHDRAWAL,
                    record_id=f"dispute:{did}",
                    amount=-amount,
                    currency=currency,
                    payment_intent_id=pi,
                    dispute_id=stripe_id,
                    booked_on=_utc_day(created),
                )
            )
        if status == "won" and closed is not None and lo <= closed < hi:
            items.append(
                LedgerItem(
                    kind=LedgerKind.DISPUTE_REINSTATEMENT,
                    record_id=f"dispute:{did}:reinstated",
                    amount=amount,
                    currency=currency,
                    payment_intent_id=pi,
                    dispute_id=stripe_id,
                    booked_on=_utc_day(closed),
                )
            )
    return items


def suspense_items(session: Session, txns: Sequence[StripeTxn]) -> list[LedgerItem]:
    """Payments held in suspense, as ledger items for the Stripe charges they explain (found by
    PaymentIntent whenever the suspense item was opened): the suspense item itself is reported,
    so its charge is not reported a second time as missing from the ledger."""
    intents = {t.payment_intent_id for t in txns if t.payment_intent_id}
    if not intents:
        return []
    held = session.execute(
        select(
            SuspenseItem.id,
            SuspenseItem.amount,
            SuspenseItem.currency,
            SuspenseItem.stripe_object_id,
            SuspenseItem.created_at,
        ).where(SuspenseItem.stripe_object_id.like("pi\\_%", escape="\\"))
    )
    return [
        LedgerItem(
            kind=LedgerKind.PAYMENT,
            record_id=f"suspense:{sid}",
            amount=amount,
            currency=currency,
            payment_intent_id=pi,
            booked_on=_utc_day(created),
        )
        for sid, amount, currency, pi, created in held
        if pi in intents and len(currency or "") == 3
    ]


_TXN_COLUMNS = (
    StripeBalanceTxn.id,
    StripeBalanceTxn.type,
    StripeBalanceTxn.source_id,
    StripeBalanceTxn.payment_intent_id,
    StripeBalanceTxn.amount,
    StripeBalanceTxn.fee,
    StripeBalanceTxn.net,
    StripeBalanceTxn.currency,
    StripeBalanceTxn.created,
    StripeBalanceTxn.payout_id,
)


def _txns(rows: Iterable[Sequence[Any]]) -> list[StripeTxn]:
    return [
        StripeTxn(
            id=tid,
            type=kind,
            source_id=source or "",
            payment_intent_id=pi,
            amount=amount,
            fee=fee,
            net=net,
            currency=currency,
            created=created,
            payout_id=payout,
        )
        for tid, kind, source, pi, amount, fee, net, currency, created, payout in rows
    ]


def stripe_txns(
    session: Session, first: dt.date, last: dt.date, prematched: Table | None = None
) -> list[StripeTxn]:
    """The stored balance transactions created from ``first`` to ``last`` (UTC days, inclusive),
    leaving out those already paired in ``prematched``."""
    lo, hi = _start_of(first), _start_of(last + dt.timedelta(days=1))
    stmt = select(*_TXN_COLUMNS).where(StripeBalanceTxn.created >= lo, StripeBalanceTxn.created < hi)
    if prematched is not None:
        stmt = stmt.where(~exists().where(prematched.c.txn_id == StripeBalanceTxn.id))
    return _txns(session.execute(stmt))


# --- The database's share: pairs nothing else can claim ------------------------------------------

PREMATCH = True
"""Pair in SQL the payments whose one Stripe charge is theirs alone (see ``prematch``)."""
_PAYMENT_TXN_TYPES = ("charge", "payment")
PREMATCH_WORK_MEM = "128MB"


def _prematched_table() -> Table:
    return Table(
        "recon_prematched",
        MetaData(),
        Column("txn_id", String(255), nullable=False),
        Column("payment_id", Integer, nullable=False),
        Column("created", UTCDateTime(), nullable=False),
        prefixes=["TEMPORARY"],
    )


def prematch(session: Session, first: dt.date, last: dt.date) -> Table:
    """Fill a temporary table with the (Stripe charge, payment) pairs that
    ``workflows.reconciliation.match`` would certainly report as matched, so that the bulk of a
    day — every payment paid once by one charge — is paired by joins in the database and only
    the rest is read into Python.

    Over the rows ``match`` would read (the period with its slack) the database lists every
    *claim* the first stage of ``match`` can see: a payment or a suspense item whose id for
    Stripe (a payment's charge id, else its PaymentIntent id; a suspense item's PaymentIntent)
    is a charge's own id or its PaymentIntent. A pair is taken only when its claim is the only
    claim of that charge *and* the only claim of that payment, the payment (not a suspense
    item) is in the charge's currency and for its gross amount (the ledger expects no fee, so
    no fee can differ). ``match`` pairs such a pair at its first stage whatever else it is
    given, and leaving the pair out changes no other result; anything less certain (two
    charges for one PaymentIntent, two records for one charge, a different amount) is left to
    ``match``, which reports it.
    """
    lo, hi = _start_of(first), _start_of(last + dt.timedelta(days=1))
    if session.get_bind().dialect.name == "postgresql":
        # The claims of a month are grouped in memory, not spilled to disk in batches (for this
        # transaction only).
        session.execute(text(f"SET LOCAL work_mem = '{PREMATCH_WORK_MEM}'"))
    table = _prematched_table()
    table.drop(session.connection(), checkfirst=True)  # one a failed run left on this connection
    table.create(session.connection())

    # Written out where used (not as CTEs): PostgreSQL then plans with the tables' statistics —
    # hash joins — instead of guessing at a materialised CTE and sorting a million ids.
    def txn() -> Any:
        return (
            select(
                StripeBalanceTxn.id,
                StripeBalanceTxn.source_id,
                StripeBalanceTxn.payment_intent_id,
                StripeBalanceTxn.amount,
                StripeBalanceTxn.currency,
                StripeBalanceTxn.created,
            )
            .where(
                StripeBalanceTxn.created >= lo,
                StripeBalanceTxn.created < hi,
                StripeBalanceTxn.type.in_(_PAYMENT_TXN_TYPES),
            )
            .subquery()
        )

    def records() -> Any:
        # A record's number: a payment's id, a suspense item's id negated.
        return union_all(
            select(
                Payment.id.label("record"),
                func.coalesce(Payment.charge_id, Payment.payment_intent_id).label("key"),
                func.coalesce(Payment.amount_received, Payment.amount).label("amount"),
                func.coalesce(Payment.received_currency, Payment.currency).label("currency"),
            ).where(Payment.status == "succeeded", Payment.received_on >= first, Payment.received_on <= last),
            select(
                (-SuspenseItem.id).label("record"),
                SuspenseItem.stripe_object_id.label("key"),
                SuspenseItem.amount.label("amount"),
                SuspenseItem.currency.label("currency"),
            ).where(SuspenseItem.stripe_object_id.like("pi\\_%", escape="\\")),
        ).subquery()

    def claims_by(column: str) -> Any:
        t, r = txn(), records()
        return select(
            t.c.id.label("txn_id"),
            r.c.record,
            t.c.created,
            and_(t.c.amount == r.c.amount, t.c.currency == r.c.currency).label("same"),
        ).join_from(t, r, t.c[column] == r.c.key)

    claims = union_all(claims_by("source_id"), claims_by("payment_intent_id")).cte("c")
    one_claim = select(claims.c.txn_id).group_by(claims.c.txn_id).having(func.count() == 1).cte("ot")
    one_txn = select(claims.c.record).group_by(claims.c.record).having(func.count() == 1).cte("orec")
    pairs = (
        select(claims.c.txn_id, claims.c.record, claims.c.created)
        .join(one_claim, one_claim.c.txn_id == claims.c.txn_id)
        .join(one_txn, one_txn.c.record == claims.c.record)
        .where(claims.c.record > 0, claims.c.same.is_(True))
    )
    session.execute(table.insert().from_select(["txn_id", "payment_id", "created"], pairs))
    return table


def _prematched_in(session: Session, table: Table, first: dt.date, last: dt.date) -> int:
    """How many of the pairs are the period's (by the charge's UTC day)."""
    lo, hi = _start_of(first), _start_of(last + dt.timedelta(days=1))
    return int(session.scalar(select(func.count()).where(table.c.created >= lo, table.c.created < hi)) or 0)


def _payout_contents(session: Session, payout_ids: Sequence[str]) -> list[StripeTxn]:
    found: list[StripeTxn] = []
    for start in range(0, len(payout_ids), CHUNK):
        chunk = list(payout_ids[start : start + CHUNK])
        found += _txns(session.execute(select(*_TXN_COLUMNS).where(StripeBalanceTxn.payout_id.in_(chunk))))
    return found


# --- Matching ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One exception as the run found it (before it is stored)."""

    kind: str
    day: dt.date
    stripe_ref: str
    ledger_ref: str
    amount: int
    currency: str
    difference: int | None
    detail: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.stripe_ref, self.ledger_ref)


def _txn_detail(txn: StripeTxn) -> dict[str, Any]:
    return {
        "id": txn.id,
        "type": txn.type,
        "source_id": txn.source_id,
        "payment_intent_id": txn.payment_intent_id,
        "amount": txn.amount,
        "fee": txn.fee,
        "net": txn.net,
        "currency": txn.currency,
        "created": txn.created.isoformat(),
        "payout_id": txn.payout_id,
    }


def _item_detail(item: LedgerItem) -> dict[str, Any]:
    return {
        "record_id": item.record_id,
        "kind": item.kind.value,
        "amount": item.amount,
        "currency": item.currency,
        "payment_intent_id": item.payment_intent_id,
        "charge_id": item.charge_id,
        "refund_id": item.refund_id,
        "dispute_id": item.dispute_id,
        "booked_on": item.booked_on.isoformat() if item.booked_on else None,
    }


def finding(result: MatchResult) -> Finding:
    txn, item = result.txn, result.item
    day = txn.day if txn else (item.booked_on if item and item.booked_on else desk_today())
    side = txn if txn is not None else item
    assert side is not None
    detail: dict[str, Any] = {
        "reason": result.reason.value if result.reason else None,
        "method": result.method.value if result.method else None,
    }
    if txn is not None:
        detail["stripe"] = _txn_detail(txn)
    if item is not None:
        detail["ledger"] = _item_detail(item)
    return Finding(
        kind=result.outcome.value,
        day=day,
        stripe_ref=txn.id if txn else "",
        ledger_ref=item.record_id if item else "",
        amount=side.amount,
        currency=side.currency,
        difference=result.difference,
        detail=detail,
    )


def payout_finding(result: PayoutResult, day: dt.date, txn_id: str) -> Finding:
    return Finding(
        kind="payout_mismatch",
        day=day,
        stripe_ref=result.payout_id,
        ledger_ref="",
        amount=result.amount if result.amount is not None else result.expected,
        currency=result.currency,
        difference=result.difference,
        detail={
            "reason": ",".join(p.value for p in result.problems),
            "payout_txn": txn_id,
            "expected": result.expected,
            "transactions": result.transaction_count,
        },
    )


def windows(start: dt.date, end: dt.date, days: int = WINDOW_DAYS) -> Iterator[tuple[dt.date, dt.date]]:
    day = start
    while day <= end:
        last = min(end, day + dt.timedelta(days=days - 1))
        yield day, last
        day = last + dt.timedelta(days=1)


def find(session: Session, start: dt.date, end: dt.date) -> tuple[list[Finding], Counter[str]]:
    """Every difference between Stripe and the ledger in the period (nothing is stored)."""
    findings: list[Finding] = []
    counts: Counter[str] = Counter()
    for first, last in windows(start, end):
        table = prematch(session, first - SLACK, last + SLACK) if PREMATCH else None
        if table is not None:
            paired = _prematched_in(session, table, first, last)
            counts["matched"] += paired
            counts["matched_in_database"] += paired
            counts["stripe_txns"] += paired
        txns = stripe_txns(session, first - SLACK, last + SLACK, table)
        items = ledger_items(session, first - SLACK, last + SLACK, table)
        if table is not None:
            table.drop(session.connection())
        items += suspense_items(session, txns)
        result = match(txns, items)
        for line in result.results:
            txn, item = line.txn, line.item
            day = txn.day if txn else (item.booked_on if item else None)
            if day is None or not first <= day <= last:
                continue
            counts[line.outcome.value] += 1
            if line.outcome is not Outcome.MATCHED:
                findings.append(finding(line))
        payouts = [t for t in result.outside_ledger if t.type == "payout" and first <= t.day <= last]
        if payouts:
            contents = _payout_contents(session, sorted({p.source_id for p in payouts}))
            own = {p.source_id: p for p in payouts}
            for checked in check_payouts(payouts, contents):
                if checked.transaction_count == 0:
                    counts["payouts_unchecked"] += 1
                    continue
                counts["payouts_checked"] += 1
                if not checked.ok:
                    payout = own[checked.payout_id]
                    findings.append(payout_finding(checked, payout.day, payout.id))
        counts["stripe_txns"] += sum(1 for t in txns if first <= t.day <= last)
    return findings, counts


def _suspense_findings(session: Session) -> list[Finding]:
    rows = session.scalars(
        select(SuspenseItem).where(SuspenseItem.status == "open").order_by(SuspenseItem.id)
    )
    return [
        Finding(
            kind="suspense",
            day=_utc_day(item.created_at),
            stripe_ref=item.stripe_object_id,
            ledger_ref=f"suspense:{item.id}",
            amount=item.amount,
            currency=(item.currency or "")[:3] or (item.expected_currency or "XXX"),
            difference=item.amount - item.expected_amount if item.expected_amount is not None else None,
            detail={"reason": item.kind, "suspense_item": item.id, "payment_id": item.payment_id},
        )
        for item in rows
    ]


def _existing(
    session: Session, keys: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str, str], ReconciliationException]:
    found: dict[tuple[str, str, str], ReconciliationException] = {}
    for start in range(0, len(keys), CHUNK):
        chunk = list(keys[start : start + CHUNK])
        rows = session.scalars(
            select(ReconciliationException).where(
                tuple_(
                    ReconciliationException.kind,
                    ReconciliationException.stripe_ref,
                    ReconciliationException.ledger_ref,
                ).in_(chunk)
            )
        )
        found.update(((r.kind, r.stripe_ref, r.ledger_ref), r) for r in rows)
    return found


def _check_period(start: dt.date, end: dt.date) -> None:
    if end < start:
        raise DomainError("period_invalid", "The period ends before it starts.")
    if (end - start).days + 1 > MAX_PERIOD_DAYS:
        raise DomainError("period_too_long", "Reconcile at most {days} days at a time.", days=MAX_PERIOD_DAYS)


def reconcile(
    session: Session, start: dt.date, end: dt.date, user: StaffUser | None = None
) -> ReconciliationRun:
    """Match Stripe against the ledger from ``start`` to ``end`` and record every difference
    once (see the module docstring); commits once."""
    _check_period(start, end)
    actor = Actor.staff(user) if user is not None else SYSTEM
    findings, counts = find(session, start, end)
    findings += _suspense_findings(session)
    run = ReconciliationRun(
        period_start=start, period_end=end, counts={}, run_by_id=user.id if user else None
    )
    session.add(run)
    session.flush()
    unique = {f.key: f for f in findings}
    existing = _existing(session, list(unique))
    new = 0
    for key, found in unique.items():
        row = existing.get(key)
        if row is None:
            session.add(
                ReconciliationException(
                    kind=found.kind,
                    day=found.day,
                    stripe_ref=found.stripe_ref[:255],
                    ledger_ref=found.ledger_ref[:64],
                    amount=found.amount,
                    currency=found.currency,
                    difference=found.difference,
                    detail={**found.detail, "found_in_run": run.id},
                )
            )
            new += 1
        elif row.status in OPEN and (row.detail or {}).get("cleared_in_run"):
            detail = dict(row.detail or {})
            detail.pop("cleared_in_run")
            row.detail = detail
    cleared = 0
    still_open = session.scalars(
        select(ReconciliationException).where(
            ReconciliationException.status.in_(OPEN),
            or_(
                ReconciliationException.kind == "suspense",
                and_(ReconciliationException.day >= start, ReconciliationException.day <= end),
            ),
        )
    )
    for row in still_open:
        if (row.kind, row.stripe_ref, row.ledger_ref) in unique or (row.detail or {}).get("cleared_in_run"):
            continue
        row.detail = {**(row.detail or {}), "cleared_in_run": run.id}
        cleared += 1
    kinds = Counter(f.kind for f in unique.values())
    run.counts = {
        **dict(sorted(counts.items())),
        "exceptions": dict(sorted(kinds.items())),
        "exceptions_new": new,
        "exceptions_known": len(unique) - new,
        "exceptions_cleared": cleared,
    }
    audit.record(
        session,
        actor,
        "reconciliation.run",
        "reconciliation_run",
        run.id,
        after={"period": [start, end], "counts": run.counts},
    )
    session.commit()
    return run


def summary(run: ReconciliationRun) -> str:
    counts = run.counts or {}
    kinds = counts.get("exceptions") or {}
    shown = ", ".join(f"{n} {kind}" for kind, n in kinds.items()) or "none"
    return (
        f"Reconciliation #{run.id} of {run.period_start} to {run.period_end}: {counts.get('stripe_txns', 0)} "
        f"Stripe transaction(s), {counts.get('matched', 0)} matched; exceptions: {shown} "
        f"({counts.get('exceptions_new', 0)} new, {counts.get('exceptions_cleared', 0)} no longer found "
        f"but kept open); payouts checked {counts.get('payouts_checked', 0)}, unchecked "
        f"{counts.get('payouts_unchecked', 0)}."
    )


# --- The queue -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueRow:
    exception: ReconciliationException
    age_days: int


@dataclass(frozen=True)
class QueuePage:
    rows: list[QueueRow]
    page: int
    more: bool
    open_by_kind: dict[str, int]


STATUS_FILTERS = ("open", "resolved", "all")


def queue(session: Session, *, kind: str | None = None, status: str = "open", page: int = 1) -> QueuePage:
    """Open (and awaiting approval) first, oldest day first; optionally of one kind."""
    today = desk_today()
    stmt = select(ReconciliationException)
    if kind in EXCEPTION_KINDS:
        stmt = stmt.where(ReconciliationException.kind == kind)
    if status == "open":
        stmt = stmt.where(ReconciliationException.status.in_(OPEN))
    elif status == "resolved":
        stmt = stmt.where(ReconciliationException.status == "resolved")
    order = case(
        (ReconciliationException.status == "open", 0),
        (ReconciliationException.status == "awaiting_approval", 1),
        else_=2,
    )
    page = max(1, min(page, 10_000))
    rows = list(
        session.scalars(
            stmt.order_by(order, ReconciliationException.day, ReconciliationException.id)
            .offset((page - 1) * PAGE)
            .limit(PAGE + 1)
        )
    )
    by_kind = dict(
        session.execute(  # type: ignore[arg-type]
            select(ReconciliationException.kind, func.count())
            .where(ReconciliationException.status.in_(OPEN))
            .group_by(ReconciliationException.kind)
        ).all()
    )
    return QueuePage(
        [QueueRow(r, max(0, (today - r.day).days)) for r in rows[:PAGE]], page, len(rows) > PAGE, by_kind
    )


@dataclass(frozen=True)
class Evidence:
    exception: ReconciliationException
    txn: StripeBalanceTxn | None
    payment: Payment | None
    """The payment the ledger item belongs to (or the one the Stripe transaction names)."""
    refund: Refund | None
    dispute: Dispute | None
    suspense: SuspenseItem | None
    linked: Payment | None
    related_txns: list[StripeBalanceTxn]
    """Other Stripe transactions of the same PaymentIntent."""
    staff: dict[int, str]
    age_days: int
    next_open_day: dt.date


def _ledger_record(
    session: Session, ref: str
) -> tuple[Payment | None, Refund | None, Dispute | None, SuspenseItem | None]:
    kind, _, rest = ref.partition(":")
    number = rest.split(":", 1)[0]
    if not number.isdigit():
        return None, None, None, None
    key = int(number)
    if kind == "payment":
        return session.get(Payment, key), None, None, None
    if kind == "refund":
        refund = session.get(Refund, key)
        return (refund.payment if refund else None), refund, None, None
    if kind == "dispute":
        dispute = session.get(Dispute, key)
        return (dispute.payment if dispute else None), None, dispute, None
    if kind == "suspense":
        item = session.get(SuspenseItem, key)
        payment = session.get(Payment, item.payment_id) if item and item.payment_id else None
        return payment, None, None, item
    return None, None, None, None


def evidence(session: Session, exception_id: int) -> Evidence | None:
    row = session.get(ReconciliationException, exception_id)
    if row is None:
        return None
    txn = session.get(StripeBalanceTxn, row.stripe_ref) if row.stripe_ref else None
    payment, refund, dispute, suspense = _ledger_record(session, row.ledger_ref)
    intent = txn.payment_intent_id if txn else None
    if payment is None and intent:
        payment = session.scalar(select(Payment).where(Payment.payment_intent_id == intent))
    if payment is None and suspense is None and row.kind == "suspense":
        suspense = session.scalar(select(SuspenseItem).where(SuspenseItem.stripe_object_id == row.stripe_ref))
    intent = intent or (payment.payment_intent_id if payment else None)
    related = (
        list(
            session.scalars(
                select(StripeBalanceTxn)
                .where(StripeBalanceTxn.payment_intent_id == intent)
                .order_by(StripeBalanceTxn.created)
                .limit(20)
            )
        )
        if intent
        else []
    )
    ids = {row.resolved_by_id, row.approved_by_id} - {None}
    staff = (
        dict(session.execute(select(StaffUser.id, StaffUser.full_name).where(StaffUser.id.in_(ids))).all())  # type: ignore[arg-type]
        if ids
        else {}
    )
    linked = session.get(Payment, row.linked_payment_id) if row.linked_payment_id else None
    return Evidence(
        row,
        txn,
        payment,
        refund,
        dispute,
        suspense,
        linked,
        related,
        staff,
        max(0, (desk_today() - row.day).days),
        next_open_day(session, row.currency),
    )


# --- Resolutions ---------------------------------------------------------------------------------


def _require(user: StaffUser) -> None:
    if not user.can(Permission.MANAGE_PAYMENTS):
        raise DomainError("not_allowed", "Your role may not do this.")


def _lock(session: Session, exception_id: int, version: int | None, *states: str) -> ReconciliationException:
    row = session.scalar(
        select(ReconciliationException)
        .where(ReconciliationException.id == exception_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if row is None:
        raise DomainError("exception_unknown", "This reconciliation item was not found.")
    if row.status not in states:
        if row.status == "resolved":
            raise DomainError("exception_resolved", "This item is already resolved.")
        if row.status == "awaiting_approval":
            raise DomainError("exception_awaiting", "This item's write-off is waiting for approval.")
        raise DomainError("exception_not_awaiting", "This item is not waiting for a write-off approval.")
    if version is not None and row.version != version:
        raise DomainError("exception_changed", "This item changed since you opened it. Look at it again.")
    return row


def _note(text: str | None, *, required: bool) -> str | None:
    cleaned = " ".join((text or "").split())
    if required and not cleaned:
        raise DomainError(
            "exception_note_required", "Write why, in at most {maximum} characters.", maximum=NOTE_MAX
        )
    if len(cleaned) > NOTE_MAX:
        raise DomainError(
            "exception_note_required", "Write why, in at most {maximum} characters.", maximum=NOTE_MAX
        )
    return cleaned or None


_FIELDS = ("status", "resolution", "resolution_note", "linked_payment_id", "resolved_by_id", "approved_by_id")


def _resolve(
    session: Session,
    row: ReconciliationException,
    user: StaffUser,
    resolution: str,
    note: str | None,
    *,
    action: str,
    extra: dict[str, Any] | None = None,
) -> ReconciliationException:
    with audit.change(session, Actor.staff(user), action, row, _FIELDS):
        row.status, row.resolution, row.resolution_note = "resolved", resolution, note
        row.resolved_by_id = row.resolved_by_id if resolution == "written_off" else user.id
        if resolution == "written_off":
            row.approved_by_id = user.id
        row.resolved_at = utcnow()
        if extra:
            row.detail = {**(row.detail or {}), **extra}
    _close_suspense(session, row, user)
    session.commit()
    return row


def _close_suspense(session: Session, row: ReconciliationException, user: StaffUser) -> None:
    """Resolving a suspense exception resolves its suspense item too (same words, audited)."""
    if row.kind != "suspense":
        return
    item_id = (row.detail or {}).get("suspense_item")
    item = session.get(SuspenseItem, int(item_id)) if item_id else None
    if item is None or item.status != "open":
        return
    with audit.change(session, Actor.staff(user), "suspense.resolved", item, ("status", "resolution")):
        item.status, item.resolved_at, item.resolved_by_id = "resolved", utcnow(), user.id
        item.resolution = f"{row.resolution}: {row.resolution_note or ''}".strip(": ")[:300]


LINKABLE = ("missing_in_ledger", "suspense", "duplicate")


def link(
    session: Session,
    user: StaffUser,
    exception_id: int,
    payment_id: int | None,
    *,
    version: int | None = None,
    note: str | None = None,
) -> ReconciliationException:
    """Resolve a Stripe transaction the ledger does not show by the payment that explains it."""
    _require(user)
    row = _lock(session, exception_id, version, "open")
    if row.kind not in LINKABLE:
        raise DomainError(
            "exception_not_linkable", "Only an item missing from the ledger can be linked to a payment."
        )
    payment = session.get(Payment, payment_id) if payment_id else None
    if payment is None:
        raise DomainError("payment_unknown", "This payment was not found.")
    if row.currency not in (payment.currency, payment.received_currency):
        raise DomainError("exception_currency_differs", "This payment is in another currency.")
    row.linked_payment_id = payment.id
    return _resolve(session, row, user, "linked", _note(note, required=False), action="reconciliation.linked")


def next_open_day(session: Session, currency: str, today: dt.date | None = None) -> dt.date:
    """Today, or the day after the last closed day for the currency when that is later."""
    today = today or desk_today()
    last = session.scalar(select(func.max(DayClose.day)).where(DayClose.currency == currency))
    return max(today, last + dt.timedelta(days=1)) if last else today


DIRECTIONS = ("reduce", "increase")


def correct(
    session: Session,
    user: StaffUser,
    exception_id: int,
    *,
    amount_text: str,
    component: str,
    direction: str,
    note: str | None,
    payment_id: int | None = None,
    version: int | None = None,
) -> ReconciliationException:
    """Book a correction on the account of the payment concerned: its own ledger entries
    (``adjustment`` to reduce the debt, ``reversal`` to put it back), on the next open day."""
    _require(user)
    row = _lock(session, exception_id, version, "open")
    cleaned = _note(note, required=True)
    payment = _ledger_record(session, row.ledger_ref)[0]
    if payment is None and payment_id:
        payment = session.get(Payment, payment_id)
    if payment is None and row.stripe_ref:
        txn = session.get(StripeBalanceTxn, row.stripe_ref)
        if txn is not None and txn.payment_intent_id:
            payment = session.scalar(
                select(Payment).where(Payment.payment_intent_id == txn.payment_intent_id)
            )
    if payment is None:
        raise DomainError("correction_no_account", "Choose the payment whose account the correction is for.")
    if component not in {c.value for c in Component}:
        raise DomainError("correction_component", "Choose principal, interest or fees.")
    if direction not in DIRECTIONS:
        raise DomainError("correction_direction", "Choose whether the balance goes down or up.")
    account = ledger.lock_account(session, payment.account_id)
    amount = parse_amount(amount_text or "", account.currency)
    if amount <= 0:
        raise DomainError("correction_not_positive", "A correction must be more than zero.")
    on = next_open_day(session, account.currency)
    kind = EntryKind.ADJUSTMENT if direction == "reduce" else EntryKind.REVERSAL
    signed = -amount if direction == "reduce" else amount
    ledger.post(
        session,
        account,
        kind,
        [Posting(Component(component), signed)],
        cause=f"correction:{row.id}",
        actor=Actor.staff(user),
        effective_on=on,
        memo="Reconciliation correction",
    )
    extra = {
        "correction": {
            "account_id": account.id,
            "component": component,
            "amount": signed,
            "kind": kind.value,
            "effective_on": on.isoformat(),
        }
    }
    return _resolve(session, row, user, "corrected", cleaned, action="reconciliation.corrected", extra=extra)


def request_write_off(
    session: Session, user: StaffUser, exception_id: int, *, note: str | None, version: int | None = None
) -> ReconciliationException:
    """Ask to write an item off: it waits for a second finance user's approval."""
    _require(user)
    row = _lock(session, exception_id, version, "open")
    cleaned = _note(note, required=True)
    with audit.change(session, Actor.staff(user), "reconciliation.write_off_requested", row, _FIELDS):
        row.status, row.resolution, row.resolution_note = "awaiting_approval", "written_off", cleaned
        row.resolved_by_id = user.id
    session.commit()
    return row


def approve_write_off(
    session: Session, user: StaffUser, exception_id: int, *, version: int | None = None
) -> ReconciliationException:
    _require(user)
    row = _lock(session, exception_id, version, "awaiting_approval")
    if row.resolved_by_id == user.id:
        raise DomainError(
            "write_off_own_request", "Nobody may approve their own write-off: another finance user must."
        )
    return _resolve(
        session, row, user, "written_off", row.resolution_note, action="reconciliation.written_off"
    )


def reject_write_off(
    session: Session, user: StaffUser, exception_id: int, *, version: int | None = None
) -> ReconciliationException:
    """Turn a write-off down (or withdraw one's own): the item is open again."""
    _require(user)
    row = _lock(session, exception_id, version, "awaiting_approval")
    with audit.change(session, Actor.staff(user), "reconciliation.write_off_rejected", row, _FIELDS):
        row.status, row.resolution, row.resolution_note, row.resolved_by_id = "open", None, None, None
    session.commit()
    return row


def note(
    session: Session, user: StaffUser, exception_id: int, *, text: str | None, version: int | None = None
) -> ReconciliationException:
    """Resolve an item that needs nothing, saying why."""
    _require(user)
    row = _lock(session, exception_id, version, "open")
    return _resolve(session, row, user, "noted", _note(text, required=True), action="reconciliation.noted")
