"""Background jobs (Huey): SQLite storage by default, Redis when ``ACCORD_REDIS_URL`` is set.

The consumer: ``huey_consumer portal.tasks.huey -w 2 -k thread -m 1``. Each task runs in an
application context of its own process's app.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from flask import Flask
from huey import Huey, RedisHuey, SqliteHuey, crontab

from portal.config import load_config

log = logging.getLogger("accord.tasks")


def make_huey() -> Huey:
    config = load_config()
    if config["REDIS_URL"]:
        return RedisHuey("accord", url=config["REDIS_URL"])
    path = Path(config["HUEY_SQLITE_PATH"])
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey("accord", filename=str(path))


huey = make_huey()


@functools.cache
def _app() -> Flask:
    from portal import create_app

    return create_app()


@huey.periodic_task(crontab(hour="2", minute="30"))
def verify_ledger_nightly() -> int:
    """Every night: prove cached balances equal the ledger; log each account that does not."""
    from portal.extensions import db
    from portal.services import ledger

    with _app().app_context(), db.session_scope() as session:
        problems = ledger.discrepancies(session)
    for p in problems:
        log.error("ledger mismatch on account %s: cached %s, ledger %s", p.account_id, p.cached, p.ledger)
    return len(problems)
