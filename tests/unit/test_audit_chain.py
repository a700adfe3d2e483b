"""The audit hash chain holds: any change to a chained event, any reordering, any removal is
found, at the link where it happened."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from workflows.audit_chain import (
    GENESIS,
    ChainedEvent,
    Problem,
    StoredLink,
    canonical,
    extend,
    link_hash,
    verify,
)

FIELDS = [f.name for f in dataclasses.fields(ChainedEvent)]

# Small values: what matters is that every field of every event can differ, not their size.
short_text = st.text(max_size=4)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | short_text,
    lambda children: st.lists(children, max_size=2) | st.dictionaries(short_text, children, max_size=2),
    max_leaves=3,
)
json_objects = st.none() | st.dictionaries(short_text, json_values, max_size=2)
FIELD_VALUES = {
    "id": st.integers(min_value=1, max_value=2**63 - 1),
    "occurred_at": st.datetimes(
        min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2040, 1, 1), timezones=st.just(dt.UTC)
    ),
    "actor_type": st.sampled_from(["staff", "borrower", "system"]),
    "actor_id": st.none() | st.integers(min_value=1, max_value=10**9),
    "action": st.text(min_size=1, max_size=6),
    "object_type": st.text(min_size=1, max_size=6),
    "object_id": st.text(min_size=1, max_size=6),
    "before": json_objects,
    "after": json_objects,
    "request_id": st.none() | short_text,
    "ip": st.none() | short_text,
}
assert set(FIELD_VALUES) == set(FIELDS), "every column the chain covers gets generated"
events = st.builds(ChainedEvent, **FIELD_VALUES)
event_lists = st.lists(events, min_size=1, max_size=4)
two_or_more = st.lists(events, min_size=2, max_size=4)


def _stored(chained: list[ChainedEvent]) -> list[StoredLink]:
    links = extend(0, GENESIS, chained)
    return [
        StoredLink(link.seq, link.prev_hash, link.hash, event)
        for link, event in zip(links, chained, strict=True)
    ]


def _head(links: list[StoredLink]) -> tuple[int, str]:
    return (links[-1].seq, links[-1].hash) if links else (0, GENESIS)


EVENT = ChainedEvent(
    id=42,
    occurred_at=dt.datetime(2026, 11, 30, 8, 15, 0, 123456, tzinfo=dt.UTC),
    actor_type="staff",
    actor_id=7,
    action="hardship_case.approve",
    object_type="hardship_case",
    object_id="1001",
    before={"state": "claimed", "version": 3},
    after={"state": "approved", "note": "收入下降", "version": 4},
    request_id="req-1",
    ip="203.0.113.9",
)


def test_the_canonical_form_is_fixed_byte_for_byte() -> None:
    # A chain written with one format cannot be checked with another: this pins the format.
    assert canonical(EVENT) == (
        b'{"action":"hardship_case.approve","actor_id":7,"actor_type":"staff",'
        b'"after":{"note":"\\u6536\\u5165\\u4e0b\\u964d","state":"approved","version":4},'
        b'"before":{"state":"claimed","version":3},"id":42,"ip":"203.0.113.9",'
        b'"object_id":"1001","object_type":"hardship_case","occurred_at":"2026-11-30T08:15:00.123456+00:00",'
        b'"request_id":"req-1"}'
    )
    assert link_hash(GENESIS, EVENT) == "a8bd22393c4bf2e6bb0824cc19c6e02855a6bdb56f4dc5dc10cebc7a4d516269"


def test_the_same_instant_in_another_zone_and_keys_in_another_order_give_the_same_bytes() -> None:
    shanghai = dt.timezone(dt.timedelta(hours=8))
    same = dataclasses.replace(
        EVENT,
        occurred_at=EVENT.occurred_at.astimezone(shanghai),
        after={"version": 4, "note": "收入下降", "state": "approved"},
    )
    assert canonical(same) == canonical(EVENT)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        canonical(dataclasses.replace(EVENT, occurred_at=dt.datetime(2026, 11, 30, 8, 15)))


@given(event_lists)
def test_a_chain_as_written_verifies_and_ends_at_its_head(chained: list[ChainedEvent]) -> None:
    links = _stored(chained)
    result = verify(iter(links), head=_head(links), anchors={len(links): links[-1].hash})
    assert result.broken is None
    assert result.checked == len(chained)
    assert result.head == _head(links)
    assert [link.prev_hash for link in links] == [GENESIS] + [link.hash for link in links[:-1]]


@given(st.lists(events, max_size=6), st.lists(events, min_size=1, max_size=6))
def test_extending_a_chain_later_gives_the_chain_written_at_once(
    first: list[ChainedEvent], second: list[ChainedEvent]
) -> None:
    start = _head(_stored(first)) if first else (0, GENESIS)
    later = list(extend(*start, second))
    at_once = list(extend(0, GENESIS, first + second))
    assert later == at_once[len(first) :]


@pytest.mark.parametrize("field", FIELDS)
@given(chained=event_lists, data=st.data())
def test_any_change_to_any_field_of_any_event_breaks_its_link(
    field: str, chained: list[ChainedEvent], data: st.DataObject
) -> None:
    links = _stored(chained)
    position = data.draw(st.integers(0, len(links) - 1), label="position")
    original = getattr(chained[position], field)
    changed = data.draw(FIELD_VALUES[field], label="changed")
    assume(changed != original)
    tampered = dataclasses.replace(chained[position], **{field: changed})
    links[position] = dataclasses.replace(links[position], event=tampered)
    result = verify(links, head=_head(links))
    assert result.broken is not None
    assert (result.broken.seq, result.broken.problem) == (position + 1, Problem.HASH)
    assert result.checked == position


@given(two_or_more, st.data())
def test_events_swapped_between_links_break_the_first_of_them(
    chained: list[ChainedEvent], data: st.DataObject
) -> None:
    links = _stored(chained)
    i, j = sorted(data.draw(st.lists(st.integers(0, len(links) - 1), min_size=2, max_size=2, unique=True)))
    assume(chained[i] != chained[j])
    links[i] = dataclasses.replace(links[i], event=chained[j])
    links[j] = dataclasses.replace(links[j], event=chained[i])
    result = verify(links, head=_head(links))
    assert result.broken is not None
    assert (result.broken.seq, result.broken.problem) == (i + 1, Problem.HASH)


@given(two_or_more, st.data())
def test_links_read_out_of_order_break_where_the_order_does(
    chained: list[ChainedEvent], data: st.DataObject
) -> None:
    links = _stored(chained)
    order = data.draw(st.permutations(range(len(links))))
    assume(order != sorted(order))
    first_out = next(n for n, k in enumerate(order) if k != n)
    result = verify([links[k] for k in order], head=_head(links))
    assert result.broken is not None
    assert (result.broken.seq, result.broken.problem) == (first_out + 1, Problem.SEQUENCE)


@given(event_lists, st.data())
def test_a_removed_link_breaks_the_chain_where_it_was(
    chained: list[ChainedEvent], data: st.DataObject
) -> None:
    links = _stored(chained)
    position = data.draw(st.integers(0, len(links) - 1), label="position")
    head = _head(links)
    del links[position]
    result = verify(links, head=head)
    assert result.broken is not None
    assert result.broken.seq == position + 1
    # Inside the chain the gap shows; at its end only the recorded head does.
    expected = Problem.SEQUENCE if position < len(links) else Problem.HEAD
    assert result.broken.problem == expected


@given(event_lists, st.data())
def test_a_removed_event_breaks_its_link(chained: list[ChainedEvent], data: st.DataObject) -> None:
    links = _stored(chained)
    position = data.draw(st.integers(0, len(links) - 1), label="position")
    links[position] = dataclasses.replace(links[position], event=None)
    result = verify(links, head=_head(links))
    assert result.broken is not None
    assert (result.broken.seq, result.broken.problem) == (position + 1, Problem.EVENT_MISSING)


@given(event_lists, st.data(), st.sampled_from(["prev_hash", "hash"]))
def test_an_altered_hash_breaks_its_link(
    chained: list[ChainedEvent], data: st.DataObject, field: str
) -> None:
    links = _stored(chained)
    position = data.draw(st.integers(0, len(links) - 1), label="position")
    forged = data.draw(st.text("0123456789abcdef", min_size=64, max_size=64))
    assume(forged != getattr(links[position], field))
    links[position] = dataclasses.replace(links[position], **{field: forged})
    result = verify(links)
    assert result.broken is not None
    expected = Problem.PREV_HASH if field == "prev_hash" else Problem.HASH
    assert (result.broken.seq, result.broken.problem) == (position + 1, expected)


@given(event_lists, st.data())
def test_a_chain_rewritten_from_an_altered_event_on_is_caught_only_by_an_anchor(
    chained: list[ChainedEvent], data: st.DataObject
) -> None:
    original = _stored(chained)
    position = data.draw(st.integers(0, len(chained) - 1), label="position")
    altered = dataclasses.replace(chained[position], action=chained[position].action + "!")
    rewritten = _stored([*chained[:position], altered, *chained[position + 1 :]])
    # Whoever can rewrite every later link (and the head) leaves a chain sound in itself.
    assert verify(rewritten, head=_head(rewritten)).broken is None
    anchored = data.draw(st.integers(position + 1, len(chained)), label="anchored")
    result = verify(rewritten, head=_head(rewritten), anchors={anchored: original[anchored - 1].hash})
    assert result.broken is not None
    assert (result.broken.seq, result.broken.problem) == (anchored, Problem.ANCHOR)


@given(event_lists, st.integers(1, 3))
def test_an_anchor_past_the_end_of_the_chain_is_reported(chained: list[ChainedEvent], beyond: int) -> None:
    links = _stored(chained)
    result = verify(links, head=_head(links), anchors={len(links) + beyond: "a" * 64})
    assert result.broken is not None
    assert (result.broken.seq, result.broken.problem) == (len(links) + beyond, Problem.ANCHOR)


def test_a_head_behind_the_chain_or_with_another_hash_is_reported() -> None:
    links = _stored([EVENT, dataclasses.replace(EVENT, id=43), dataclasses.replace(EVENT, id=44)])
    behind = verify(links, head=(2, links[1].hash)).broken
    assert behind is not None
    assert (behind.seq, behind.problem) == (3, Problem.HEAD)
    other = verify(links, head=(3, "f" * 64)).broken
    assert other is not None
    assert (other.seq, other.problem) == (3, Problem.HEAD)


def test_an_empty_chain_verifies_against_the_genesis_head() -> None:
    result = verify([], head=(0, GENESIS))
    assert (result.checked, result.head, result.broken) == (0, (0, GENESIS), None)


def test_anchors_name_links_from_one() -> None:
    with pytest.raises(ValueError, match="links 1 and up"):
        verify([], anchors={0: GENESIS})
