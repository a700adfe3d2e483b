"""The audit trail's hash chain: each link holds the SHA-256 of its predecessor's hash and of one
audit event's columns, so changing, removing or reordering a chained event breaks its link, and
hiding that takes rewriting every link after it.

A link's hash is ``sha256(prev_hash + canonical(event)).hexdigest()``: ``prev_hash`` is the
previous link's hash as 64 lower-case hex characters (``GENESIS``, 64 zeros, before the first
link), ``canonical`` the event's columns as JSON with sorted keys, no whitespace and only ASCII
(``occurred_at`` in UTC, ISO 8601 with microseconds). The format is fixed: a chain written with
one format cannot be checked with another.

What it proves, and what it does not: a chain that verifies shows that no chained event was
altered or removed by someone who could not rewrite the whole chain after it. Whoever can write
the database can recompute every hash from the altered event on; only a head (seq and hash)
kept outside the database, and checked as an anchor, catches that. Removing the newest links
leaves a shorter chain that is valid in itself; the stored head, or an anchor, catches that too.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeAlias

GENESIS = "0" * 64
"""The ``prev_hash`` of the first link."""

JSON: TypeAlias = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None


@dataclass(frozen=True)
class ChainedEvent:
    """An audit event's columns, all of which its link's hash covers."""

    id: int
    occurred_at: dt.datetime
    actor_type: str
    actor_id: int | None
    action: str
    object_type: str
    object_id: str
    before: JSON
    after: JSON
    request_id: str | None
    ip: str | None


def canonical(event: ChainedEvent) -> bytes:
    """The event's columns as canonical JSON bytes: the same event always gives the same bytes."""
    if event.occurred_at.tzinfo is None:
        raise ValueError("an audit event's time must be timezone-aware (stored in UTC)")
    fields: dict[str, JSON] = {
        "id": event.id,
        "occurred_at": event.occurred_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "before": event.before,
        "after": event.after,
        "request_id": event.request_id,
        "ip": event.ip,
    }
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.encode("ascii")


def link_hash(prev_hash: str, event: ChainedEvent) -> str:
    """The hash of the link that chains ``event`` after the link whose hash is ``prev_hash``."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(event)).hexdigest()


@dataclass(frozen=True)
class Link:
    """One link of the chain: the ``seq``-th event chained, and the hashes that tie it in."""

    seq: int
    event_id: int
    prev_hash: str
    hash: str


def extend(head_seq: int, head_hash: str, events: Iterable[ChainedEvent]) -> Iterator[Link]:
    """The links that chain ``events``, in the order given, after the link (``head_seq``,
    ``head_hash``); after nothing when ``head_seq`` is 0 and ``head_hash`` is ``GENESIS``."""
    seq, prev = head_seq, head_hash
    for event in events:
        seq += 1
        digest = link_hash(prev, event)
        yield Link(seq, event.id, prev, digest)
        prev = digest


class Problem(enum.StrEnum):
    """What is wrong where the chain breaks."""

    SEQUENCE = "sequence"  # a link is missing (or out of place) where the next seq was expected
    PREV_HASH = "prev_hash"  # the link does not carry its predecessor's hash
    EVENT_MISSING = "event_missing"  # the chained event is gone
    HASH = "hash"  # the event (or the link's hash) is not what was chained
    HEAD = "head"  # the chain does not end at the recorded head
    ANCHOR = "anchor"  # a link kept elsewhere is not in the chain as it was


@dataclass(frozen=True)
class Break:
    """The first place the chain does not hold: the link ``seq``, what is wrong, in a sentence."""

    seq: int
    problem: Problem
    detail: str


@dataclass(frozen=True)
class StoredLink:
    """A link as read back, with its event's columns (None when the event row is gone)."""

    seq: int
    prev_hash: str
    hash: str
    event: ChainedEvent | None


@dataclass(frozen=True)
class Verification:
    """``checked`` links recomputed and found sound, ending at ``head`` (seq, hash); ``broken``
    is the first link that is not, or None."""

    checked: int
    head: tuple[int, str]
    broken: Break | None


def _check(link: StoredLink, expected: int, prev: str, anchors: Mapping[int, str]) -> Break | None:
    if link.seq != expected:
        return Break(
            expected, Problem.SEQUENCE, f"link {expected} is missing (link {link.seq} is in its place)"
        )
    if link.prev_hash != prev:
        return Break(
            link.seq, Problem.PREV_HASH, f"link {link.seq} does not carry link {expected - 1}'s hash"
        )
    if link.event is None:
        return Break(link.seq, Problem.EVENT_MISSING, f"link {link.seq}'s audit event is gone")
    if link_hash(prev, link.event) != link.hash:
        return Break(
            link.seq,
            Problem.HASH,
            f"link {link.seq}'s hash does not match audit event {link.event.id}: one of them was altered",
        )
    if link.seq in anchors and anchors[link.seq] != link.hash:
        return Break(link.seq, Problem.ANCHOR, f"link {link.seq} differs from the anchor kept for it")
    return None


def _after_the_end(
    last: tuple[int, str], head: tuple[int, str] | None, anchors: Mapping[int, str]
) -> Break | None:
    """What the recorded head and the anchors beyond the last link say about the chain's end."""
    found: list[Break] = []
    beyond = [seq for seq in anchors if seq > last[0]]
    if beyond:
        seq = min(beyond)
        found.append(
            Break(seq, Problem.ANCHOR, f"the chain ends at link {last[0]}, before anchored link {seq}")
        )
    if head is not None and head != last:
        if head[0] > last[0]:
            found.append(
                Break(last[0] + 1, Problem.HEAD, f"the chain ends at link {last[0]}, the head is {head[0]}")
            )
        elif head[0] < last[0]:
            found.append(
                Break(head[0] + 1, Problem.HEAD, f"the chain goes on past the head (link {head[0]})")
            )
        else:
            found.append(Break(head[0], Problem.HEAD, f"link {head[0]} differs from the recorded head"))
    return min(found, key=lambda b: b.seq, default=None)


def verify(
    links: Iterable[StoredLink],
    *,
    head: tuple[int, str] | None = None,
    anchors: Mapping[int, str] | None = None,
) -> Verification:
    """Recompute the chain from ``links`` (in seq order, read lazily: memory stays flat) and
    report the first link that does not hold. ``head`` is the (seq, hash) the chain must end
    at; ``anchors`` maps seqs to the hashes kept for them outside the database."""
    anchors = anchors or {}
    if any(seq < 1 for seq in anchors):
        raise ValueError("anchors name links 1 and up")
    expected, prev = 1, GENESIS
    for link in links:
        broken = _check(link, expected, prev, anchors)
        if broken is not None:
            return Verification(expected - 1, (expected - 1, prev), broken)
        expected, prev = expected + 1, link.hash
    last = (expected - 1, prev)
    return Verification(last[0], last, _after_the_end(last, head, anchors))
