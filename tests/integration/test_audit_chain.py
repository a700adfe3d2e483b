"""The audit chain: committed audit events, however they were written, are linked once each in the
order they became visible; the verification recomputes every link and names the first one an
alteration, a removal or a rewrite broke; the commands and tasks do the same."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask
from sqlalchemy import Engine, func, insert, make_url, select, text
from sqlalchemy.orm import Session

from portal import tasks
from portal.db import utcnow
from portal.models import AuditChain, AuditChainPending, AuditEvent
from portal.services import audit, audit_chain
from portal.services.audit import SYSTEM, Actor
from tests import factories
from tests.conftest import own_postgres_engine
from workflows.audit_chain import GENESIS, Problem


def _bulk_events(session: Session, count: int, **fields: object) -> list[int]:
    """Audit events inserted the way bulk jobs insert them (Core, no ORM objects)."""
    rows = [
        {
            "actor_type": "system",
            "action": "test.bulk",
            "object_type": "plan_instalment",
            "object_id": str(n),
            "before": {"status": "due"},
            "after": {"status": "missed", "n": n},
            **fields,
        }
        for n in range(count)
    ]
    statement = insert(AuditEvent.__table__).returning(AuditEvent.id, sort_by_parameter_order=True)
    return list(session.scalars(statement, rows))


def _pending(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(AuditChainPending)) or 0)


def _links(session: Session, event_ids: list[int]) -> dict[int, AuditChain]:
    found = session.scalars(select(AuditChain).where(AuditChain.event_id.in_(event_ids)))
    return {link.event_id: link for link in found}


@contextmanager
def _guards_off(session: Session, table: str) -> Iterator[None]:
    """Inside the test's transaction only, take the append-only triggers of ``table`` out of the
    way, as the database's owner could: to tamper with history and see the chain notice."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL session_replication_role = replica"))
        yield
        session.execute(text("SET LOCAL session_replication_role = origin"))
        return
    triggers = session.execute(
        text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t AND name LIKE :n"),
        {"t": table, "n": f"{table}_no_%"},
    ).all()
    assert triggers
    for name, _sql in triggers:
        session.execute(text(f"DROP TRIGGER {name}"))
    yield
    for _name, sql in triggers:
        session.execute(text(sql))


@pytest.fixture
def linked(session: Session) -> list[int]:
    """Events written by services and by a bulk insert, committed and linked: their ids."""
    account = factories.account(session, principal=50_000, fees=1_000)  # ledger postings, audited
    staff = factories.staff(session)
    audit.record(
        session, Actor.staff(staff), "test.decide", "account", account.id, before={"a": 1}, after={"a": 2}
    )
    _bulk_events(session, 3)
    session.commit()
    ids = list(session.scalars(select(AuditChainPending.event_id).order_by(AuditChainPending.event_id)))
    assert audit_chain.link(session) == len(ids) >= 6
    return ids


def test_link_chains_every_committed_event_once_in_id_order(session: Session) -> None:
    before = audit_chain.head(session)
    account = factories.account(session, principal=50_000, fees=1_000)
    audit.record(session, SYSTEM, "test.service", "account", account.id, after={"note": "收入下降"})
    bulk = _bulk_events(session, 3)
    session.commit()
    waiting = list(session.scalars(select(AuditChainPending.event_id).order_by(AuditChainPending.event_id)))
    assert set(bulk) < set(waiting)

    assert audit_chain.link(session) == len(waiting)

    links = _links(session, waiting)
    assert [links[event_id].seq for event_id in waiting] == list(
        range(before[0] + 1, before[0] + 1 + len(waiting))
    )
    assert links[waiting[0]].prev_hash == before[1]
    assert audit_chain.head(session) == (links[waiting[-1]].seq, links[waiting[-1]].hash)
    assert _pending(session) == 0
    report = audit_chain.verify(session)
    assert report.ok
    assert report.head == audit_chain.head(session)


def test_a_second_link_finds_nothing_and_changes_nothing(session: Session, linked: list[int]) -> None:
    head = audit_chain.head(session)
    assert audit_chain.link(session) == 0
    assert audit_chain.head(session) == head


def test_later_events_are_chained_after_the_head(session: Session, linked: list[int]) -> None:
    head = audit_chain.head(session)
    later = _bulk_events(session, 2)
    session.commit()
    assert audit_chain.link(session) == 2
    links = _links(session, later)
    assert (links[later[0]].seq, links[later[0]].prev_hash) == (head[0] + 1, head[1])
    assert links[later[1]].prev_hash == links[later[0]].hash
    assert audit_chain.verify(session).ok


def test_link_works_through_batches(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_chain, "LINK_BATCH", 2)
    ids = _bulk_events(session, 5)
    session.commit()
    waiting = _pending(session)
    assert audit_chain.link(session) == waiting >= 5
    links = _links(session, ids)
    assert [links[i].seq for i in ids] == sorted(links[i].seq for i in ids)
    assert audit_chain.verify(session).ok


def test_an_altered_event_breaks_the_chain_at_its_link(session: Session, linked: list[int]) -> None:
    victim = linked[len(linked) // 2]
    with _guards_off(session, "audit_event"):
        session.execute(
            text("UPDATE audit_event SET object_id = 'someone else' WHERE id = :id"),
            {"id": victim},
        )
    report = audit_chain.verify(session)
    seq = _links(session, [victim])[victim].seq
    assert report.broken is not None
    assert (report.broken.seq, report.broken.problem) == (seq, Problem.HASH)
    assert report.links == seq - 1
    assert not report.ok


def test_an_event_removed_with_its_link_breaks_the_chain_where_it_was(
    session: Session, linked: list[int]
) -> None:
    victim = linked[1]
    seq = _links(session, [victim])[victim].seq
    with _guards_off(session, "audit_chain"), _guards_off(session, "audit_event"):
        session.execute(text("DELETE FROM audit_chain WHERE seq = :seq"), {"seq": seq})
        session.execute(text("DELETE FROM audit_event WHERE id = :id"), {"id": victim})
    broken = audit_chain.verify(session).broken
    assert broken is not None
    assert (broken.seq, broken.problem) == (seq, Problem.SEQUENCE)


def test_removing_the_newest_link_shows_against_the_head(session: Session, linked: list[int]) -> None:
    head = audit_chain.head(session)
    with _guards_off(session, "audit_chain"):
        session.execute(text("DELETE FROM audit_chain WHERE seq = :seq"), {"seq": head[0]})
    broken = audit_chain.verify(session).broken
    assert broken is not None
    assert (broken.seq, broken.problem) == (head[0], Problem.HEAD)


def test_an_event_deleted_under_its_link_is_reported_missing(
    session: Session, linked: list[int], database_url: str
) -> None:
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("SQLite enforces the link's foreign key even to the file's owner")
    victim = linked[0]
    with _guards_off(session, "audit_event"):  # replica mode skips the foreign key's triggers too
        session.execute(text("DELETE FROM audit_event WHERE id = :id"), {"id": victim})
    broken = audit_chain.verify(session).broken
    assert broken is not None
    assert (broken.seq, broken.problem) == (_links(session, [victim])[victim].seq, Problem.EVENT_MISSING)


def test_events_left_unlinked_past_the_grace_period_are_reported(session: Session, linked: list[int]) -> None:
    now = utcnow()
    (stale,) = _bulk_events(
        session, 1, occurred_at=now - audit_chain.UNCHAINED_GRACE - dt.timedelta(minutes=1)
    )
    (fresh,) = _bulk_events(session, 1, occurred_at=now)
    session.commit()
    report = audit_chain.verify(session, now=now)
    assert report.broken is None
    assert (report.unchained, report.oldest_unchained) == (1, stale)
    assert not report.ok

    # An event taken off the queue (so it would never be linked) is still reported.
    session.execute(text("DELETE FROM audit_chain_pending WHERE event_id = :id"), {"id": stale})
    session.commit()
    assert audit_chain.link(session) == 1  # the fresh one
    assert audit_chain.verify(session, now=now).unchained == 1
    assert fresh in _links(session, [fresh])


# --- the commands and the tasks ------------------------------------------------------------------


def test_the_commands_link_verify_and_print_the_head(app: Flask, session: Session) -> None:
    _bulk_events(session, 2)
    session.commit()
    runner = app.test_cli_runner()

    linked = runner.invoke(args=["audit", "link"])
    assert linked.exit_code == 0, linked.output
    seq, digest = audit_chain.head(session)
    assert seq >= 2
    assert f"head {seq}:{digest}" in linked.output

    head = runner.invoke(args=["audit", "head"])
    assert head.output.strip() == f"{seq}:{digest}"

    verified = runner.invoke(args=["audit", "verify", "--anchor", f"{seq}:{digest}"])
    assert verified.exit_code == 0, verified.output
    assert f"Audit chain verified: {seq} link(s)" in verified.output

    other = "0" * 63 + "1"
    wrong = runner.invoke(args=["audit", "verify", "--anchor", f"{seq}:{other}"])
    assert wrong.exit_code == 1
    assert f"Broken at link {seq} (anchor)" in wrong.output

    garbled = runner.invoke(args=["audit", "verify", "--anchor", "0:" + GENESIS])
    assert garbled.exit_code == 2
    assert "is not SEQ:HASH" in garbled.output


def test_the_verify_command_fails_on_a_broken_chain(app: Flask, session: Session, linked: list[int]) -> None:
    seq = _links(session, [linked[0]])[linked[0]].seq
    with _guards_off(session, "audit_event"):
        session.execute(
            text("UPDATE audit_event SET action = 'test.forged' WHERE id = :id"), {"id": linked[0]}
        )
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert f"Broken at link {seq} (hash)" in result.output


def test_the_tasks_link_and_verify_and_log_the_head(
    session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    _bulk_events(session, 2)
    session.commit()
    assert tasks.link_audit_chain.call_local() >= 2
    with caplog.at_level(logging.INFO, logger="accord.tasks"):
        assert tasks.verify_audit_chain_nightly.call_local() == 0
    seq, digest = audit_chain.head(session)
    assert f"audit chain head {seq}:{digest}" in caplog.text

    with _guards_off(session, "audit_chain"):
        session.execute(text("DELETE FROM audit_chain WHERE seq = :seq"), {"seq": seq})
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="accord.tasks"):
        assert tasks.verify_audit_chain_nightly.call_local() == 1
    assert f"audit chain broken at link {seq} (head)" in caplog.text
    assert "audit chain head" not in caplog.text


# --- PostgreSQL: real commits, out of id order, and linkers side by side -----------------------


@pytest.fixture(scope="module")
def own_engine(database_url: str) -> Iterator[Engine]:
    """A database of this module's own, where transactions really commit."""
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("SQLite runs writers one at a time: events commit in id order there")
    with own_postgres_engine(database_url, "chain") as engine:
        yield engine


def _link(engine: Engine) -> int:
    with Session(engine) as session:
        return audit_chain.link(session)


def test_an_event_that_commits_late_is_chained_after_those_committed_before_it(own_engine: Engine) -> None:
    with own_engine.connect() as slow:
        transaction = slow.begin()
        with Session(bind=slow) as uncommitted:
            (early_id,) = _bulk_events(uncommitted, 1)  # the lower id, not committed yet
        with Session(own_engine) as other:
            (late_id,) = _bulk_events(other, 1)
            other.commit()
        assert early_id < late_id
        assert _link(own_engine) == 1  # only what has committed
        transaction.commit()
    assert _link(own_engine) == 1

    with Session(own_engine) as session:
        links = _links(session, [early_id, late_id])
        assert links[late_id].seq + 1 == links[early_id].seq
        assert links[early_id].prev_hash == links[late_id].hash
        assert audit_chain.verify(session).ok


def test_linkers_side_by_side_chain_each_event_once(
    own_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_chain, "LINK_BATCH", 7)
    with Session(own_engine) as session:
        ids = _bulk_events(session, 200)
        session.commit()
    counts: list[int] = []
    start = threading.Barrier(4)

    def run() -> None:
        start.wait()
        counts.append(_link(own_engine))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 200
    with Session(own_engine) as session:
        assert len(_links(session, ids)) == 200
        report = audit_chain.verify(session)
        assert report.ok
        assert report.links == session.scalar(select(func.count()).select_from(AuditChain))
