"""Reconciliation: Stripe matched against the ledger, payouts, the journal, and report hygiene."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workflows.errors import DomainError
from workflows.reconciliation import (
    Account,
    EventKind,
    JournalEvent,
    JournalLine,
    LedgerItem,
    LedgerKind,
    Method,
    Outcome,
    PayoutProblem,
    Reason,
    Reconciliation,
    StripeTxn,
    balanced,
    check_columns,
    check_payouts,
    imbalances,
    journal_lines,
    match,
    parse_report_amount,
)

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
DAY = NOON.date()


def charge(n: int, amount: int = 10_000, fee: int = 320, currency: str = "usd", **more: object) -> StripeTxn:
    fields: dict[str, object] = {
        "id": f"txn_{n}",
        "type": "charge",
        "source_id": f"ch_{n}",
        "payment_intent_id": f"pi_{n}",
        "amount": amount,
        "fee": fee,
        "net": amount - fee,
        "currency": currency,
        "created": NOON,
    } | more
    return StripeTxn(**fields)  # type: ignore[arg-type]


def payment(n: int, amount: int = 10_000, **more: object) -> LedgerItem:
    fields: dict[str, object] = {
        "kind": LedgerKind.PAYMENT,
        "record_id": f"payment:{n}",
        "amount": amount,
        "currency": "USD",
        "payment_intent_id": f"pi_{n}",
        "charge_id": f"ch_{n}",
    } | more
    return LedgerItem(**fields)  # type: ignore[arg-type]


# --- A consistent world: every Stripe transaction and its ledger item -----------------------


def pair(n: int, kind: LedgerKind, amount: int, *, ids: str, payment_of: int, day: date) -> tuple:  # type: ignore[type-arg]
    """Transaction n and its ledger item. `ids`: "full" (the ledger knows the object id), "intent"
    (only the PaymentIntent; refunds and disputes) or "none" (the fallback by amount and day)."""
    created = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=n % 24)
    intent = f"pi_{payment_of}"
    if kind is LedgerKind.PAYMENT:
        txn_type, source, intent, sign, fee = "charge", f"ch_{n}", f"pi_{n}", 1, amount // 30
    elif kind is LedgerKind.REFUND:
        txn_type, source, sign, fee = "refund", f"re_{n}", -1, 0
    elif kind is LedgerKind.DISPUTE_WITHDRAWAL:
        txn_type, source, sign, fee = "adjustment", f"dp_{n}", -1, 1500
    else:
        txn_type, source, sign, fee = "adjustment", f"dp_{n}", 1, -1500
    txn = StripeTxn(
        f"txn_{n}", txn_type, source, intent, sign * amount, fee, sign * amount - fee, "usd", created
    )
    known = {"payment_intent_id": intent} if ids != "none" else {}
    if ids == "full":
        field = {
            LedgerKind.PAYMENT: "charge_id",
            LedgerKind.REFUND: "refund_id",
            LedgerKind.DISPUTE_WITHDRAWAL: "dispute_id",
            LedgerKind.DISPUTE_REINSTATEMENT: "dispute_id",
        }[kind]
        known[field] = source
    if kind is LedgerKind.PAYMENT and ids == "intent":
        known = {"payment_intent_id": intent}
    item = LedgerItem(
        kind,
        f"{kind}:{n}",
        sign * amount,
        "USD",
        expected_fee=fee if n % 3 == 0 else None,
        booked_on=day if n % 5 else created.date(),
        **known,  # type: ignore[arg-type]
    )
    return txn, item


@st.composite
def worlds(draw: st.DrawFn, max_size: int = 30) -> tuple[list[StripeTxn], list[LedgerItem]]:
    size = draw(st.integers(min_value=0, max_value=max_size))
    # Unique amounts keep the fallback keys unique; ambiguity has its own tests.
    amounts = draw(st.lists(st.integers(1, 10**7), min_size=size, max_size=size, unique=True))
    txns: list[StripeTxn] = []
    items: list[LedgerItem] = []
    for n, amount in enumerate(amounts):
        kind = draw(st.sampled_from(LedgerKind)) if n else LedgerKind.PAYMENT
        ids = draw(st.sampled_from(["full", "intent", "none"]))
        day = DAY + timedelta(days=draw(st.integers(0, 3)))
        txn, item = pair(n, kind, amount, ids=ids, payment_of=draw(st.integers(0, n)), day=day)
        txns.append(txn)
        items.append(item)
    txns.append(StripeTxn("txn_po", "payout", "po_1", None, -5, 0, -5, "usd", NOON))
    txns.append(StripeTxn("txn_radar", "stripe_fee", "fee_1", None, -7, 0, -7, "usd", NOON))
    return txns, items


def by_item(reconciliation: Reconciliation) -> dict[str, tuple[Outcome, str | None]]:
    return {
        r.item.record_id: (r.outcome, r.txn.id if r.txn else None) for r in reconciliation.results if r.item
    }


def without_duplicates(reconciliation: Reconciliation) -> Reconciliation:
    kept = tuple(r for r in reconciliation.results if r.outcome is not Outcome.DUPLICATE)
    return replace(reconciliation, results=kept)


# --- Matching: properties -------------------------------------------------------------------


@given(worlds())
def test_a_consistent_world_matches_completely(world: tuple[list[StripeTxn], list[LedgerItem]]) -> None:
    txns, items = world
    result = match(txns, items)
    assert result.counts()[Outcome.MATCHED] == len(items)
    assert not result.exceptions
    assert {t.type for t in result.outside_ledger} == {"payout", "stripe_fee"}
    assert all(
        r.txn and r.item and r.txn.id.split("_")[1] == r.item.record_id.split(":")[1] for r in result.results
    )


@given(worlds(), st.randoms(use_true_random=False))
def test_shuffled_input_gives_the_same_result(
    world: tuple[list[StripeTxn], list[LedgerItem]], rng: random.Random
) -> None:
    txns, items = world
    shuffled_txns, shuffled_items = txns[:], items[:]
    rng.shuffle(shuffled_txns)
    rng.shuffle(shuffled_items)
    assert match(shuffled_txns, shuffled_items) == match(txns, items)


@given(worlds(), st.data())
def test_duplicated_input_is_reported_and_never_matched_twice(
    world: tuple[list[StripeTxn], list[LedgerItem]], data: st.DataObject
) -> None:
    txns, items = world
    extra_txns = data.draw(st.lists(st.sampled_from(txns), max_size=5))
    extra_items = data.draw(st.lists(st.sampled_from(items), max_size=5)) if items else []
    doubled = match(txns + extra_txns, items + extra_items)
    assert without_duplicates(doubled) == match(txns, items)
    duplicates = doubled.of(Outcome.DUPLICATE)
    assert len(duplicates) == len(extra_txns) + len(extra_items)
    assert Counter(r.reason for r in duplicates) == Counter(
        [Reason.TXN_REPEATED] * len(extra_txns) + [Reason.RECORD_REPEATED] * len(extra_items)
    )
    matched_txns = [r.txn.id for r in doubled.of(Outcome.MATCHED) if r.txn]
    assert len(matched_txns) == len(set(matched_txns))


@given(worlds(), st.data())
def test_removing_a_ledger_item_moves_exactly_its_partner_to_missing_in_ledger(
    world: tuple[list[StripeTxn], list[LedgerItem]], data: st.DataObject
) -> None:
    txns, items = world
    removed = data.draw(st.sets(st.sampled_from(items), max_size=6)) if items else set()
    before = by_item(match(txns, items))
    after = match(txns, [item for item in items if item not in removed])
    partners = {before[item.record_id][1] for item in removed}
    missing = after.of(Outcome.MISSING_IN_LEDGER)
    assert {r.txn.id for r in missing if r.txn} == partners
    assert all(r.reason is Reason.NOT_IN_LEDGER for r in missing)
    assert by_item(after) == {
        key: value for key, value in before.items() if key not in {i.record_id for i in removed}
    }


@given(worlds(), st.data())
def test_removing_a_stripe_transaction_moves_exactly_its_partner_to_missing_in_stripe(
    world: tuple[list[StripeTxn], list[LedgerItem]], data: st.DataObject
) -> None:
    txns, items = world
    removed = data.draw(st.sets(st.sampled_from(txns), max_size=6))
    before = by_item(match(txns, items))
    after = match([txn for txn in txns if txn not in removed], items)
    removed_ids = {txn.id for txn in removed}
    partners = {record for record, (_, txn_id) in before.items() if txn_id in removed_ids}
    assert {r.item.record_id for r in after.of(Outcome.MISSING_IN_STRIPE) if r.item} == partners
    assert all(r.reason is Reason.NOT_IN_STRIPE for r in after.of(Outcome.MISSING_IN_STRIPE))
    assert {k: v for k, v in by_item(after).items() if k not in partners} == {
        k: v for k, v in before.items() if k not in partners
    }


ids = st.sampled_from(["1", "2", "3"])
messy_txns = st.builds(
    lambda n, kind, pi, amount, fee, currency, hours: StripeTxn(
        f"txn_{n}",
        kind,
        f"{'dp' if kind == 'adjustment' else 'ch' if kind == 'charge' else 're'}_{n}",
        f"pi_{pi}",
        amount,
        fee,
        amount - fee,
        currency,
        NOON + timedelta(hours=hours),
    ),
    ids,
    st.sampled_from(["charge", "refund", "adjustment", "transfer", "payout"]),
    ids,
    st.sampled_from([-300, 100, 300]),
    st.sampled_from([0, 5]),
    st.sampled_from(["usd", "eur"]),
    st.sampled_from([0, 30]),
)
messy_items = st.builds(
    lambda n, kind, amount, currency, pi, charge_id, refund_id, dispute_id, fee, booked: LedgerItem(
        kind, f"r:{n}", amount, currency, pi, charge_id, refund_id, dispute_id, fee, booked
    ),
    ids,
    st.sampled_from(LedgerKind),
    st.sampled_from([-300, 100, 300]),
    st.sampled_from(["USD", "EUR"]),
    st.none() | ids.map(lambda i: f"pi_{i}"),
    st.none() | ids.map(lambda i: f"ch_{i}"),
    st.none() | ids.map(lambda i: f"re_{i}"),
    st.none() | ids.map(lambda i: f"dp_{i}"),
    st.none() | st.sampled_from([0, 5]),
    st.none() | st.just(DAY),
)


@settings(max_examples=300)
@given(st.lists(messy_txns, max_size=8), st.lists(messy_items, max_size=8), st.randoms(use_true_random=False))
def test_every_input_is_accounted_for_and_order_never_matters_even_when_ids_collide(
    txns: list[StripeTxn], items: list[LedgerItem], rng: random.Random
) -> None:
    result = match(txns, items)
    shuffled_txns, shuffled_items = txns[:], items[:]
    rng.shuffle(shuffled_txns)
    rng.shuffle(shuffled_items)
    assert match(shuffled_txns, shuffled_items) == result
    doubled = match(shuffled_txns + shuffled_txns[:2], shuffled_items + shuffled_items[:2])
    first = tuple(r for r in doubled.results if r.reason not in _COPY_REASONS)
    assert first == tuple(r for r in result.results if r.reason not in _COPY_REASONS)
    # Each distinct record appears once (extra copies aside); each distinct transaction once,
    # unless two records claim it; payouts only outside the ledger.
    kept: dict[str, StripeTxn] = {}
    for txn in sorted(txns, key=StripeTxn.sort_key):
        kept.setdefault(txn.id, txn)
    records = Counter(r.item.record_id for r in first if r.item)
    assert set(records) == {i.record_id for i in items} and set(records.values()) <= {1}
    seen = Counter(r.txn.id for r in first if r.txn)
    assert set(seen) == {t.id for t in kept.values() if t.type != "payout"}
    for txn_id, count in seen.items():
        if count > 1:
            assert {r.reason for r in first if r.txn and r.txn.id == txn_id} == {Reason.CLAIMED_TWICE}
    assert {t.id for t in result.outside_ledger} == {t.id for t in kept.values() if t.type == "payout"}


_COPY_REASONS = {
    Reason.TXN_REPEATED,
    Reason.TXN_CONFLICTING_COPY,
    Reason.RECORD_REPEATED,
    Reason.RECORD_CONFLICTING_COPY,
}


def test_five_hundred_transactions_with_three_planted_differences_report_exactly_those() -> None:
    rng = random.Random(9)  # noqa: S311  (test data, not a secret)
    amounts = rng.sample(range(100, 10**7), 500)
    txns, items = [], []
    for n, amount in enumerate(amounts):
        kind = LedgerKind.PAYMENT if n < 300 else rng.choice(list(LedgerKind))
        ids = rng.choice(["full", "full", "intent", "none"])
        txn, item = pair(
            n, kind, amount, ids=ids, payment_of=rng.randrange(300), day=DAY + timedelta(days=n % 7)
        )
        txns.append(txn)
        items.append(item)
    # The amount is changed on a record that knows its Stripe id: without one, a different
    # amount is no pair at all (see the fallback rules) and shows as missing on both sides.
    changed = rng.choice([n for n, item in enumerate(items) if item.object_key])
    unrecorded, unknown = rng.sample([n for n in range(500) if n != changed], 2)
    items[changed] = replace(items[changed], amount=items[changed].amount + 1)
    rng.shuffle(txns)
    rng.shuffle(items)
    missing_record = f"txn_{unrecorded}"
    items = [i for i in items if i.record_id.split(":")[1] != str(unrecorded)]
    txns = [t for t in txns if t.id != f"txn_{unknown}"]

    result = match(txns, items)

    assert len(result.exceptions) == 3
    assert result.counts()[Outcome.MATCHED] == 497  # 498 pairs left, one of them changed
    (amount,) = result.of(Outcome.AMOUNT_MISMATCH)
    assert amount.txn and amount.txn.id == f"txn_{changed}" and amount.difference == -1
    (in_ledger,) = result.of(Outcome.MISSING_IN_LEDGER)
    assert in_ledger.txn and in_ledger.txn.id == missing_record
    (in_stripe,) = result.of(Outcome.MISSING_IN_STRIPE)
    assert in_stripe.item and in_stripe.item.record_id.endswith(f":{unknown}")


# --- Matching: the rules, one by one --------------------------------------------------------


def test_a_payment_matches_by_charge_or_by_payment_intent() -> None:
    result = match([charge(1), charge(2)], [payment(1), payment(2, charge_id=None)])
    assert [(r.outcome, r.method) for r in result.results] == [(Outcome.MATCHED, Method.OBJECT_ID)] * 2


def test_a_different_currency_is_an_amount_mismatch_with_its_reason() -> None:
    (result,) = match([charge(1, currency="eur")], [payment(1)]).results
    assert result.outcome is Outcome.AMOUNT_MISMATCH
    assert result.reason is Reason.CURRENCY_DIFFERS and result.difference is None
    (other,) = match([charge(1, amount=9_000)], [payment(1)]).results
    assert (other.outcome, other.reason, other.difference) == (
        Outcome.AMOUNT_MISMATCH,
        Reason.AMOUNT_DIFFERS,
        -1000,
    )


def test_a_fee_mismatch_is_reported_only_when_the_ledger_expected_a_fee() -> None:
    assert match([charge(1, fee=350)], [payment(1)]).results[0].outcome is Outcome.MATCHED
    (result,) = match([charge(1, fee=350)], [payment(1, expected_fee=320)]).results
    assert (result.outcome, result.reason, result.difference) == (
        Outcome.FEE_MISMATCH,
        Reason.FEE_DIFFERS,
        30,
    )
    # An amount difference outranks a fee difference.
    worse = match([charge(1, amount=1, fee=350)], [payment(1, expected_fee=320)]).results[0]
    assert worse.outcome is Outcome.AMOUNT_MISMATCH


def test_two_ledger_items_claiming_one_stripe_object_are_both_duplicates() -> None:
    # One knows the charge, the other only the PaymentIntent: the same transaction either way.
    result = match([charge(1)], [payment(1), payment(2, payment_intent_id="pi_1", charge_id=None)])
    assert [(r.outcome, r.reason, r.txn and r.txn.id) for r in result.results] == [
        (Outcome.DUPLICATE, Reason.CLAIMED_TWICE, "txn_1")
    ] * 2
    assert not result.of(Outcome.MISSING_IN_LEDGER)


def test_a_transaction_listed_twice_with_different_contents_is_read_once_and_flagged() -> None:
    first, second = charge(1), charge(1, fee=1)
    for order in ([first, second], [second, first]):
        result = match(order, [payment(1)])
        assert [r.outcome for r in result.results] == [Outcome.DUPLICATE, Outcome.MATCHED]
        assert result.results[0].reason is Reason.TXN_CONFLICTING_COPY
        assert result.results[1].txn == second  # the canonical copy: the smaller fee sorts first


def test_an_id_stripe_does_not_have_never_falls_back_to_the_amount() -> None:
    result = match([charge(2)], [payment(1)])
    assert sorted((r.outcome, r.reason) for r in result.results) == [
        (Outcome.MISSING_IN_LEDGER, Reason.NOT_IN_LEDGER),
        (Outcome.MISSING_IN_STRIPE, Reason.NOT_IN_STRIPE),
    ]


def test_the_fallback_pairs_one_to_one_and_leaves_ambiguity_to_a_person() -> None:
    anonymous = payment(7, payment_intent_id=None, charge_id=None, booked_on=DAY)
    (single,) = match([charge(1)], [anonymous]).results
    assert (single.outcome, single.method) == (Outcome.MATCHED, Method.AMOUNT_AND_DAY)
    # Two transactions of the same amount that day: neither is paired.
    result = match([charge(1), charge(2)], [anonymous])
    assert sorted((r.outcome, r.reason) for r in result.results) == [
        (Outcome.MISSING_IN_LEDGER, Reason.AMBIGUOUS),
        (Outcome.MISSING_IN_LEDGER, Reason.AMBIGUOUS),
        (Outcome.MISSING_IN_STRIPE, Reason.AMBIGUOUS),
    ]
    # Two records against one transaction: the same.
    twin = replace(anonymous, record_id="payment:8")
    assert {r.reason for r in match([charge(1)], [anonymous, twin]).results} == {Reason.AMBIGUOUS}
    # Another day, or no day at all, is no match.
    other_day = replace(anonymous, booked_on=DAY + timedelta(days=1))
    assert match([charge(1)], [other_day]).counts()[Outcome.MATCHED] == 0
    no_day = match([], [replace(anonymous, booked_on=None)]).results[0]
    assert no_day.reason is Reason.NO_IDENTIFIER


def test_the_fallback_day_is_the_utc_day_of_the_transaction() -> None:
    late_in_shanghai = datetime(2026, 3, 3, 1, 30, tzinfo=timezone(timedelta(hours=8)))
    anonymous = payment(7, payment_intent_id=None, charge_id=None, booked_on=DAY)
    assert match([charge(1, created=late_in_shanghai)], [anonymous]).results[0].outcome is Outcome.MATCHED
    naive = datetime(2026, 3, 2, 23, 59)  # naive is read as UTC
    assert match([charge(1, created=naive)], [anonymous]).results[0].outcome is Outcome.MATCHED


def test_refunds_known_only_by_payment_intent_pair_by_amount_within_it() -> None:
    def refund(n: int, amount: int) -> StripeTxn:
        return StripeTxn(f"txn_r{n}", "refund", f"re_{n}", "pi_1", -amount, 0, -amount, "usd", NOON)

    def recorded(n: int, amount: int) -> LedgerItem:
        return LedgerItem(LedgerKind.REFUND, f"refund:{n}", -amount, "USD", payment_intent_id="pi_1")

    result = match([refund(1, 500), refund(2, 700)], [recorded(1, 700), recorded(2, 500)])
    assert [(r.item and r.item.record_id, r.txn and r.txn.id, r.method) for r in result.results] == [
        ("refund:1", "txn_r2", Method.PAYMENT_INTENT),
        ("refund:2", "txn_r1", Method.PAYMENT_INTENT),
    ]
    # A different amount is not paired on a PaymentIntent alone: both sides are shown missing.
    result = match([refund(1, 500), refund(2, 700)], [recorded(1, 500), recorded(2, 650)])
    assert sorted((r.outcome, r.reason or "") for r in result.results) == [
        (Outcome.MATCHED, ""),
        (Outcome.MISSING_IN_LEDGER, Reason.NOT_IN_LEDGER),
        (Outcome.MISSING_IN_STRIPE, Reason.NOT_IN_STRIPE),
    ]
    # With its refund id, the same difference is an amount mismatch.
    known = replace(recorded(2, 650), refund_id="re_2")
    assert match([refund(2, 700)], [known]).results[0].outcome is Outcome.AMOUNT_MISMATCH
    # Two equal refunds: which is which is unknowable, so neither pairs.
    result = match([refund(1, 500), refund(2, 500)], [recorded(1, 500), recorded(2, 500)])
    assert {r.reason for r in result.results} == {Reason.AMBIGUOUS}
    assert len(result.results) == 4


def test_disputes_match_by_dispute_id_and_direction() -> None:
    withdrawn = StripeTxn("txn_d1", "adjustment", "dp_1", "pi_1", -10_000, 1500, -11_500, "usd", NOON)
    won_back = StripeTxn("txn_d2", "adjustment", "dp_1", "pi_1", 10_000, -1500, 11_500, "usd", NOON)
    items = [
        LedgerItem(
            LedgerKind.DISPUTE_WITHDRAWAL,
            "dispute:1:out",
            -10_000,
            "USD",
            dispute_id="dp_1",
            expected_fee=1500,
        ),
        LedgerItem(LedgerKind.DISPUTE_REINSTATEMENT, "dispute:1:back", 10_000, "USD", dispute_id="dp_1"),
    ]
    result = match([won_back, withdrawn], items)
    assert [(r.outcome, r.txn and r.txn.id) for r in result.results] == [
        (Outcome.MATCHED, "txn_d2"),
        (Outcome.MATCHED, "txn_d1"),
    ]


def test_stripe_activity_that_is_not_borrower_money_stays_out_of_the_exceptions() -> None:
    payout = StripeTxn("txn_p", "payout", "po_1", None, -9680, 0, -9680, "usd", NOON)
    manual = StripeTxn("txn_m", "adjustment", "ia_1", None, -50, 0, -50, "usd", NOON)
    result = match([payout, manual, charge(1)], [payment(1)])
    assert result.outside_ledger == (payout,)
    (exception,) = result.exceptions
    assert (exception.txn, exception.outcome, exception.reason) == (
        manual,
        Outcome.MISSING_IN_LEDGER,
        Reason.UNEXPECTED_TYPE,
    )


def test_a_balance_transaction_whose_net_is_not_amount_less_fee_is_refused() -> None:
    with pytest.raises(DomainError) as refused:
        StripeTxn("txn_1", "charge", "ch_1", "pi_1", 100, 3, 98, "usd", NOON)
    assert refused.value.code == "txn_net_invalid"
    with pytest.raises(DomainError):
        StripeTxn("txn_1", "charge", "ch_1", "pi_1", 1.5, 0, 1.5, "usd", NOON)  # type: ignore[arg-type]


# --- Payouts --------------------------------------------------------------------------------


def payout_txn(payout_id: str, amount: int, currency: str = "usd") -> StripeTxn:
    return StripeTxn(f"txn_{payout_id}", "payout", payout_id, None, amount, 0, amount, currency, NOON)


def test_a_payout_equals_minus_the_net_of_its_transactions() -> None:
    inside = [charge(1, payout_id="po_1"), charge(2, amount=5000, fee=175, payout_id="po_1")]
    refund = StripeTxn("txn_r", "refund", "re_1", "pi_1", -2000, 0, -2000, "usd", NOON, "po_1")
    net = sum(t.net for t in [*inside, refund])
    own = payout_txn("po_1", -net)
    (result,) = check_payouts([own], [*inside, refund, replace(own, payout_id="po_1")])
    assert result.ok and result.difference == 0 and result.transaction_count == 3
    (short,) = check_payouts([payout_txn("po_1", -net + 1)], [*inside, refund])
    assert short.problems == (PayoutProblem.AMOUNT_DIFFERS,) and short.difference == 1


def test_payout_problems_are_reported_not_raised() -> None:
    euro = charge(3, currency="eur", payout_id="po_1")
    stray = charge(4, payout_id="po_9")
    results = check_payouts(
        [payout_txn("po_1", -9680), payout_txn("po_1", -9680), payout_txn("po_2", 0)],
        [charge(1, payout_id="po_1"), euro, stray, stray],
    )
    assert [(r.payout_id, r.problems) for r in results] == [
        ("po_1", (PayoutProblem.CURRENCY_DIFFERS, PayoutProblem.PAYOUT_REPEATED)),
        ("po_2", ()),
        ("po_9", (PayoutProblem.PAYOUT_UNKNOWN,)),
    ]
    assert results[2].amount is None and results[2].expected == -stray.net
    with pytest.raises(DomainError) as refused:
        check_payouts([charge(1)], [])
    assert refused.value.code == "payout_invalid"


# --- Journal --------------------------------------------------------------------------------

events = st.builds(
    lambda kind, amount, share, currency, n: JournalEvent(
        kind,
        amount,
        currency,
        f"ref:{n}",
        to_credit=amount * share // 4
        if kind
        in {
            EventKind.PAYMENT_RECEIVED,
            EventKind.REFUND,
            EventKind.DISPUTE_WITHDRAWAL,
            EventKind.DISPUTE_REINSTATEMENT,
        }
        else 0,
    ),
    st.sampled_from(EventKind),
    st.integers(1, 10**12),
    st.integers(0, 4),
    st.sampled_from(["CNY", "USD", "JPY"]),
    st.integers(0, 99),
)


@given(st.lists(events, max_size=40))
def test_the_journal_always_balances_in_every_currency(mix: list[JournalEvent]) -> None:
    lines = journal_lines(mix)
    assert balanced(lines)
    for currency in {e.currency for e in mix}:
        of = [line for line in lines if line.currency == currency]
        assert sum(line.debit for line in of) == sum(line.credit for line in of)
    assert all((line.debit > 0) != (line.credit > 0) for line in lines)
    assert {line.reference for line in lines} == {e.reference for e in mix}


@given(st.lists(events, max_size=40))
def test_the_stripe_clearing_account_moves_with_the_cash_events_only(mix: list[JournalEvent]) -> None:
    lines = journal_lines(mix)
    sign = {
        EventKind.PAYMENT_RECEIVED: 1,
        EventKind.DISPUTE_REINSTATEMENT: 1,
        EventKind.STRIPE_FEE_RETURNED: 1,
        EventKind.REFUND: -1,
        EventKind.DISPUTE_WITHDRAWAL: -1,
        EventKind.STRIPE_FEE: -1,
        EventKind.PAYOUT: -1,
    }
    for currency in {e.currency for e in mix}:
        clearing = sum(
            line.debit - line.credit
            for line in lines
            if line.account is Account.STRIPE_CLEARING and line.currency == currency
        )
        assert clearing == sum(sign.get(e.kind, 0) * e.amount for e in mix if e.currency == currency)


@pytest.mark.parametrize(
    ("kind", "debit", "credit"),
    [
        (EventKind.PAYMENT_RECEIVED, Account.STRIPE_CLEARING, Account.RECEIVABLE),
        (EventKind.STRIPE_FEE, Account.STRIPE_FEES, Account.STRIPE_CLEARING),
        (EventKind.STRIPE_FEE_RETURNED, Account.STRIPE_CLEARING, Account.STRIPE_FEES),
        (EventKind.REFUND, Account.RECEIVABLE, Account.STRIPE_CLEARING),
        (EventKind.DISPUTE_WITHDRAWAL, Account.RECEIVABLE, Account.STRIPE_CLEARING),
        (EventKind.DISPUTE_REINSTATEMENT, Account.STRIPE_CLEARING, Account.RECEIVABLE),
        (EventKind.PAYOUT, Account.CASH, Account.STRIPE_CLEARING),
        (EventKind.WAIVER, Account.WAIVER_EXPENSE, Account.RECEIVABLE),
        (EventKind.FEE_CHARGED, Account.RECEIVABLE, Account.FEE_INCOME),
        (EventKind.INTEREST_CHARGED, Account.RECEIVABLE, Account.INTEREST_INCOME),
    ],
)
def test_each_event_posts_to_its_accounts(kind: EventKind, debit: Account, credit: Account) -> None:
    assert journal_lines([JournalEvent(kind, 500, "cny", "e:1")]) == [
        JournalLine(debit, 500, 0, "CNY", "e:1"),
        JournalLine(credit, 0, 500, "CNY", "e:1"),
    ]


def test_the_part_of_a_payment_beyond_the_debt_is_the_borrowers_credit() -> None:
    lines = journal_lines(
        [JournalEvent(EventKind.PAYMENT_RECEIVED, 12_000, "CNY", "payment:1", to_credit=2000)]
    )
    assert lines == [
        JournalLine(Account.STRIPE_CLEARING, 12_000, 0, "CNY", "payment:1"),
        JournalLine(Account.RECEIVABLE, 0, 10_000, "CNY", "payment:1"),
        JournalLine(Account.BORROWER_CREDIT, 0, 2000, "CNY", "payment:1"),
    ]


@pytest.mark.parametrize(
    ("event", "code"),
    [
        (JournalEvent(EventKind.WAIVER, 0, "CNY", "w"), "journal_amount_not_positive"),
        (JournalEvent(EventKind.WAIVER, -5, "CNY", "w"), "journal_amount_not_positive"),
        (JournalEvent(EventKind.WAIVER, 5, "CNY", "w", to_credit=1), "journal_credit_invalid"),
        (JournalEvent(EventKind.REFUND, 5, "CNY", "r", to_credit=6), "journal_credit_invalid"),
        (JournalEvent(EventKind.REFUND, 5, "XXX", "r"), "unknown_currency"),
    ],
)
def test_an_event_that_cannot_be_journalled_is_refused(event: JournalEvent, code: str) -> None:
    with pytest.raises(DomainError) as refused:
        journal_lines([event])
    assert refused.value.code == code


def test_an_unbalanced_journal_is_caught_per_currency() -> None:
    lines = journal_lines(
        [JournalEvent(EventKind.PAYOUT, 100, "USD", "p"), JournalEvent(EventKind.PAYOUT, 7, "JPY", "q")]
    )
    assert balanced(lines)
    # Debits and credits equal in total, but not within each currency.
    tampered = [replace(lines[0], currency="JPY"), *lines[1:]]
    assert not balanced(tampered)
    assert imbalances(tampered) == {"JPY": 100, "USD": -100}


# --- Report hygiene -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "currency", "amount"),
    [
        ("1234.56", "USD", 123_456),
        ("1,234.56", "USD", 123_456),
        ("-1,234.56", "USD", -123_456),
        ("(1,234.56)", "USD", -123_456),
        ("$1,234.56", "USD", 123_456),
        ("-$5", "USD", -500),
        ("$-5", "USD", -500),
        ("($5.00)", "USD", -500),
        ("\u22125.00", "USD", -500),
        ("¥1,234.56", "CNY", 123_456),
        ("￥1,234", "JPY", 1234),
        ("1000.00", "JPY", 1000),
        ("USD 12.00", "USD", 1200),
        ("12.00 usd", "USD", 1200),
        ("HK$10", "HKD", 1000),
        ("1,234,567", "USD", 123_456_700),
        ("1,234", "USD", 123_400),
        ("1.234", "KWD", 1234),
        (" 0.5 ", "EUR", 50),
        (".5", "EUR", 50),
        ("-0.00", "EUR", 0),
    ],
)
def test_report_amounts_are_read_exactly(text: str, currency: str, amount: int) -> None:
    assert parse_report_amount(text, currency) == amount


@pytest.mark.parametrize(
    ("text", "currency", "code"),
    [
        ("1 234,56", "EUR", "report_amount_foreign_format"),
        ("1.234,56", "EUR", "report_amount_foreign_format"),
        ("12,34", "EUR", "report_amount_foreign_format"),
        ("1 234.56", "EUR", "report_amount_foreign_format"),
        ("1.234.567", "EUR", "report_amount_foreign_format"),
        ("1,234", "KWD", "report_amount_ambiguous"),
        ("1.234", "USD", "report_amount_ambiguous"),
        ("1.000", "JPY", "report_amount_ambiguous"),
        ("1.5", "JPY", "report_amount_too_precise"),
        ("1.2345", "USD", "report_amount_too_precise"),
        ("$1", "CNY", "report_symbol_mismatch"),
        ("¥1", "USD", "report_symbol_mismatch"),
        ("1.00 EUR", "USD", "report_symbol_mismatch"),
        ("", "USD", "report_amount_invalid"),
        ("$", "USD", "report_amount_invalid"),
        ("--1", "USD", "report_amount_invalid"),
        ("-(1)", "USD", "report_amount_invalid"),
        ("1.00-", "USD", "report_amount_invalid"),
        ("12abc", "USD", "report_amount_invalid"),
        ("1,23,456", "USD", "report_amount_invalid"),
        ("１２", "USD", "report_amount_invalid"),
        ("9" * 19, "USD", "report_amount_invalid"),
        ("1" * 10_000, "USD", "report_amount_invalid"),
        ("1", "XXX", "unknown_currency"),
    ],
)
def test_unclear_report_amounts_are_refused_with_a_code(text: str, currency: str, code: str) -> None:
    with pytest.raises(DomainError) as refused:
        parse_report_amount(text, currency)
    assert refused.value.code == code


@given(st.integers(-(10**15), 10**15), st.sampled_from(["USD", "JPY", "KWD"]), st.booleans())
def test_a_formatted_amount_reads_back_to_itself(amount: int, currency: str, accounting: bool) -> None:
    places = {"USD": 2, "JPY": 0, "KWD": 3}[currency]
    whole, fraction = divmod(abs(amount), 10**places)
    text = f"{whole:,}" + (f".{fraction:0{places}d}" if places else "")
    if amount < 0:
        text = f"({text})" if accounting else f"-{text}"
    assert parse_report_amount(text, currency) == amount


def test_columns_are_checked_by_name_whatever_the_case_spacing_or_byte_order_mark() -> None:
    required = ["balance_transaction_id", "gross", "fee", "net", "currency"]
    header = ["\ufeffBalance_Transaction_ID", " gross", "FEE", "net", "currency", "description"]
    assert check_columns(header, required) == []
    assert check_columns(["id", "gross", "Gross", ""], ["gross", "net"]) == [
        "column 'gross' appears 2 times",
        "a column has no name",
        "column 'net' is missing",
    ]
    assert check_columns(["ï»¿id", "net"], ["id"])[0].startswith("the header has garbled characters")
