"""Background jobs (Huey): SQLite storage by default, Redis when ``ACCORD_REDIS_URL`` is set.

The consumer: ``huey_consumer portal.tasks.huey -w 2 -k thread -m 1``. Each task runs in an
application context of its own process's app.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask, current_app, has_app_context
from huey import Huey, RedisExpireHuey, SqliteHuey, crontab
from huey.api import TaskLock
from huey.storage import RedisExpireStorage

from portal.config import load_config

log = logging.getLogger("accord.tasks")


def make_huey() -> Huey:
    config = load_config()
    if config["REDIS_URL"]:
        # Results and locks as keys of their own, which expire: a lock can lapse (``periodic``) on
        # any Redis (plain RedisHuey keeps them in one hash, whose fields expire only from 7.4).
        return RedisExpireHuey("accord", url=config["REDIS_URL"], expire_time=7 * 24 * 3600)
    path = Path(config["HUEY_SQLITE_PATH"])
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey("accord", filename=str(path))


huey = make_huey()


def periodic(schedule: Any, *, hold: int = 3600) -> Any:
    """A periodic task that runs once at a time across every consumer and host.

    Every consumer started without ``-n`` enqueues each periodic task on its schedule (Huey does
    not de-duplicate), and a run may outlast its period. A lock in Huey's store (Redis when
    shared) refuses a run while another holds it; ``hold`` seconds after a worker died mid-run,
    the lock lapses (on Redis; Huey's SQLite store keeps it until a consumer starts with ``-f``,
    as ``make run``'s does). Every periodic job is also idempotent (a second run finds nothing to
    do)."""

    def decorate(fn: Any) -> Any:
        return huey.periodic_task(schedule, name=fn.__name__)(run_alone(huey, fn.__name__, hold)(fn))

    return decorate


def run_alone(instance: Huey, name: str, hold: int) -> TaskLock:
    """The lock of the periodic job ``name`` in ``instance``'s store, lapsing after ``hold``
    seconds where the store can (Redis)."""
    lapses = isinstance(instance.storage, RedisExpireStorage)
    return instance.lock_task(f"periodic.{name}", ttl=hold if lapses else None)


@functools.cache
def _app() -> Flask:
    from portal import create_app

    return create_app()


INLINE_APP: Flask | None = None
"""The app for jobs run inline outside any app context (the test suite sets its own)."""


@contextmanager
def _app_context() -> Iterator[Flask]:
    """The caller's app when a task runs inline (tests, immediate mode), else this process's own."""
    if has_app_context():
        yield current_app._get_current_object()  # type: ignore[attr-defined]
        return
    app = INLINE_APP or _app()
    with app.app_context():
        yield app


@huey.task(retries=3, retry_delay=30)
def send_message(message: dict[str, Any] | None) -> None:
    """Send one message through the configured notifier. ``None`` is a no-op, enqueued where a
    message was not due so that both paths of a request do the same work (no timing tell)."""
    if message is None:
        return
    from portal.extensions import db
    from portal.integrations.notify import Message, notifier_from_config

    with _app_context() as app, db.session_scope() as session:
        notifier_from_config(app.config).send(session, Message(**message))


@periodic(crontab(hour="2", minute="30"), hold=4 * 3600)
def verify_ledger_nightly() -> int:
    """Every night: prove cached balances equal the ledger; log each account that does not."""
    from portal.extensions import db
    from portal.services import ledger

    with _app_context(), db.session_scope() as session:
        problems = ledger.discrepancies(session)
        credit = ledger.credit_discrepancies(session)
    for p in problems:
        log.error("ledger mismatch on account %s: cached %s, ledger %s", p.account_id, p.cached, p.ledger)
    for c in credit:
        log.error("credit mismatch on account %s: cached %s, entries %s", c.account_id, c.cached, c.entries)
    return len(problems) + len(credit)


@periodic(crontab(minute="*/5"), hold=600)
def link_audit_chain() -> int:
    """Every 5 minutes: chain the audit events committed since the last run (services/audit_chain)."""
    from portal.extensions import db
    from portal.services import audit_chain

    with _app_context(), db.session_scope() as session:
        return audit_chain.link(session)


@periodic(crontab(hour="2", minute="45"), hold=4 * 3600)
def verify_audit_chain_nightly() -> int:
    """Every night: recompute the audit chain and log the first broken link and the events left
    unlinked; when it holds, log its head (seq and hash), so the head is also kept outside the
    database. Returns the problems found."""
    from portal.extensions import db
    from portal.services import audit_chain

    with _app_context(), db.session_scope() as session:
        report = audit_chain.verify(session)
    broken = report.broken
    if broken is None:
        log.info("audit chain head %s:%s (%s links verified)", *report.head, report.links)
    else:
        log.error("audit chain broken at link %s (%s): %s", broken.seq, broken.problem, broken.detail)
    if report.unchained:
        log.error(
            "%s audit event(s) not linked after %s (oldest id %s)",
            report.unchained,
            audit_chain.UNCHAINED_GRACE,
            report.oldest_unchained,
        )
    return int(broken is not None) + report.unchained


@periodic(crontab(minute="5"), hold=3600)
def expire_hardship_offers_hourly() -> int:
    """Every hour: close the hardship cases whose offers have all expired, lifting their
    breathing space, and tell each borrower."""
    from portal.extensions import db
    from portal.services import hardship

    with _app_context(), db.session_scope() as session:
        notices = hardship.expire_offers(session)
    for notice in notices:
        send_message(notice.to_dict())
    return len(notices)


@periodic(crontab(hour="0", minute="20"), hold=4 * 3600)
def refresh_queue_priorities_daily() -> int:
    """Every night: days waiting grow, so the review queue's priorities are refreshed."""
    from portal.extensions import db
    from portal.services import negotiation_desk

    with _app_context(), db.session_scope() as session:
        return negotiation_desk.refresh_queue_priorities(session)


@huey.task(retries=2, retry_delay=10)
def render_agreement(agreement_id: int) -> None:
    """Render an agreement's PDF (WeasyPrint) away from the request; the page polls for it."""
    from portal.extensions import db
    from portal.integrations.storage import document_storage_from_config
    from portal.services import agreements

    with _app_context() as app, db.session_scope() as session:
        agreements.render(session, agreement_id, document_storage_from_config(app.config))


@periodic(crontab(minute="15"), hold=3600)
def expire_unsigned_agreements_hourly() -> int:
    from portal.extensions import db
    from portal.services import agreements

    with _app_context(), db.session_scope() as session:
        return agreements.expire_unsigned(session)


@periodic(crontab(hour="1", minute="10"), hold=4 * 3600)
def check_plans_daily() -> int:
    """Every night: instalments past their grace days are missed; plans broken by policy end."""
    from portal.extensions import db
    from portal.services import autopay
    from portal.services.hardship import desk_today

    with _app_context(), db.session_scope() as session:
        report = autopay.check_plans(session, desk_today())
    log.info("plan check: %s", report.summary())
    return report.broken


@periodic(crontab(hour="1", minute="30"), hold=4 * 3600)
def collections_run_daily() -> int:
    """Every night: the day's collections run (DPD and stages, interest, late fees, instalments,
    promises, actions). It resumes where a crashed attempt stopped and is a no-op once complete."""
    from portal.extensions import db
    from portal.services import collections_run
    from portal.services.hardship import desk_today

    with _app_context(), db.session_scope() as session:
        report = collections_run.run(session, desk_today())
    log.info("%s", report.summary())
    return len(report.steps_run)


@periodic(crontab(day_of_week="0", hour="3", minute="30"), hold=4 * 3600)
def retention_run_weekly() -> int:
    """Every Sunday night: anonymise borrowers and clear hardship cases past the policy's retention
    period (services/retention); returns how many borrowers were anonymised."""
    from portal.extensions import db
    from portal.services import retention
    from portal.services.audit import SYSTEM
    from portal.services.hardship import desk_today

    with _app_context(), db.session_scope() as session:
        report = retention.run(session, today=desk_today(), dry_run=False, actor=SYSTEM)
    log.info("%s", "; ".join(report.lines()))
    return report.counts["borrowers_anonymised"]


@periodic(crontab(minute="*/15"), hold=900)
def send_collection_messages() -> int:
    """Every 15 minutes: the collection messages whose time has come go out (as the contact
    rules allow at that moment); each text and e-mail is its own job, after the commit."""
    from portal.extensions import db
    from portal.services import collection_messages

    with _app_context(), db.session_scope() as session:
        report = collection_messages.dispatch(session)
    for message in report.messages:
        send_message(message.to_dict())
    log.info("collection messages: %s", report.summary())
    return report.sent + report.letters


@periodic(crontab(hour="6", minute="0"), hold=4 * 3600)
def autopay_daily() -> int:
    """Every morning: charge the instalments due today (and retries) on their saved cards."""
    from portal.extensions import db
    from portal.integrations.stripe_gateway import client_from_config, is_configured
    from portal.services import autopay
    from portal.services.hardship import desk_today

    with _app_context() as app, db.session_scope() as session:
        if not is_configured(app.config):
            log.warning("autopay skipped: Stripe is not configured")
            return 0
        report = autopay.run(session, client_from_config(app.config), desk_today())
    log.info("autopay: %s", report.summary())
    return report.succeeded


@periodic(crontab(minute="*/15"), hold=900)
def stripe_catch_up() -> int:
    """Every 15 minutes: Stripe events a webhook outage missed go through the same handler."""
    from portal.extensions import db
    from portal.integrations.stripe_gateway import client_from_config, is_configured
    from portal.services import payments

    with _app_context() as app, db.session_scope() as session:
        if not is_configured(app.config):
            return 0
        client = client_from_config(app.config)
        counts = payments.catch_up(session, client)
        recovered = payments.recover_stuck(session, client)
    return sum(n for outcome, n in counts.items() if outcome != "known") + sum(recovered.values())


@periodic(crontab(), hold=300)
def outgoing_webhooks_every_minute() -> int:
    """Every minute: number the new lender events, queue them for the lenders' webhook
    endpoints, and send the deliveries that are due (overlapping runs skip each other's)."""
    from portal.db import utcnow
    from portal.extensions import db
    from portal.services import outgoing_webhooks

    with _app_context(), db.session_scope() as session:
        report = outgoing_webhooks.run(session, utcnow())
    log.info("outgoing webhooks: %s", report.summary())
    return report.delivered


@huey.task()
def import_stripe_balance(staff_user_id: int | None = None) -> int:
    """Import Stripe's balance transactions through the API (a finance user asked, or the
    morning run); an interrupted import resumes. Returns how many were new."""
    from portal.extensions import db
    from portal.integrations.stripe_gateway import client_from_config, is_configured
    from portal.models import StaffUser
    from portal.services import stripe_import

    with _app_context() as app, db.session_scope() as session:
        if not is_configured(app.config):
            log.warning("Stripe import skipped: Stripe is not configured")
            return 0
        user = session.get(StaffUser, staff_user_id) if staff_user_id else None
        run = stripe_import.import_from_api(session, client_from_config(app.config), user=user)
    log.info("%s", stripe_import.summary(run))
    return int((run.counts or {}).get("new", 0))


@periodic(crontab(hour="7", minute="0"), hold=4 * 3600)
def reconcile_daily() -> int:
    """Every morning: import yesterday's Stripe activity and reconcile the last two days (a day
    of Stripe activity can arrive late); returns the open exceptions found."""
    import datetime as dt

    from portal.extensions import db
    from portal.integrations.stripe_gateway import is_configured
    from portal.services import reconciliation
    from portal.services.hardship import desk_today

    with _app_context() as app:
        if is_configured(app.config):
            import_stripe_balance.call_local()
        yesterday = desk_today() - dt.timedelta(days=1)
        with db.session_scope() as session:
            run = reconciliation.reconcile(session, yesterday - dt.timedelta(days=1), yesterday)
    log.info("%s", reconciliation.summary(run))
    return sum((run.counts or {}).get("exceptions", {}).values())


@huey.task(retries=2, retry_delay=60)
def place_upload(import_id: int) -> None:
    """Place a lender's file uploaded by an admin (queued by ``placements.queue_upload``). A run
    that has claimed the import records its outcome, so a retry (after an error before the claim:
    the database busy or unreachable) or a second run finds nothing to claim. A worker that died
    mid-import leaves it to ``abandon_stalled_placements_hourly``."""
    from portal.extensions import db
    from portal.integrations.storage import document_storage_from_config
    from portal.services import placements
    from portal.services.hardship import desk_today

    with _app_context() as app, db.session_scope() as session:
        record = placements.place_queued(
            session,
            import_id,
            storage=document_storage_from_config(app.config),
            today=desk_today(),
            max_rows=app.config["PLACEMENT_MAX_ROWS"],
        )
    if record is not None:
        log.info("placement import %s: %s", import_id, record.status)


@periodic(crontab(minute="40"), hold=3600)
def abandon_stalled_placements_hourly() -> int:
    """Every hour: imports queued or running for over six hours (an import of the most rows takes
    minutes; its worker or command died) recorded as failed, their stored files deleted."""
    import datetime as dt

    from portal.extensions import db
    from portal.integrations.storage import document_storage_from_config
    from portal.services import placements

    with _app_context() as app, db.session_scope() as session:
        return placements.abandon_stalled(
            session, storage=document_storage_from_config(app.config), older_than=dt.timedelta(hours=6)
        )
