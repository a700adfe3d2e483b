"""Health probes, configuration, demo data and background jobs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal import crypto
from portal.config import ConfigError, load_config
from portal.models import Account, AuditEvent, StaffUser
from portal.services import demo, ledger
from workflows.policy import Stage


def test_liveness_and_readiness_when_migrated(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {"status": "ok", "database": "ok", "migrations": "current"}


def test_readiness_fails_when_migrations_are_pending(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["migrations"] == "pending"


def test_readiness_fails_when_the_database_is_unreachable(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["database"] == "unreachable"


def test_production_refuses_to_start_without_a_secret_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ACCORD_ENV", "production")
    monkeypatch.setenv("ACCORD_ENCRYPTION_KEYS", crypto.development_keys_text())
    monkeypatch.delenv("ACCORD_SECRET_KEY", raising=False)
    monkeypatch.setenv("ACCORD_INSTANCE_PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="ACCORD_SECRET_KEY"):
        load_config()
    monkeypatch.setenv("ACCORD_SECRET_KEY", "from-the-vault")
    config = load_config()
    assert config["SECRET_KEY"] == "from-the-vault"
    assert config["SESSION_COOKIE_SECURE"] is True
    monkeypatch.delenv("ACCORD_ENCRYPTION_KEYS")
    with pytest.raises(ConfigError, match="ACCORD_ENCRYPTION_KEYS must be set in production"):
        load_config()


def test_development_generates_its_secret_key_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ACCORD_ENV", raising=False)
    monkeypatch.delenv("ACCORD_SECRET_KEY", raising=False)
    monkeypatch.setenv("ACCORD_INSTANCE_PATH", str(tmp_path))
    first = load_config()["SECRET_KEY"]
    assert len(first) >= 40
    assert load_config()["SECRET_KEY"] == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert load_config()["DATABASE_URL"] == f"sqlite:///{tmp_path / 'accord.db'}"


@pytest.mark.parametrize(
    ("name", "value"), [("ACCORD_ENV", "staging"), ("ACCORD_STAFF_IDLE_MINUTES", "soon")]
)
def test_bad_settings_are_refused_with_their_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    monkeypatch.setenv("ACCORD_SECRET_KEY", "x")
    with pytest.raises(ConfigError, match=name):
        load_config()


def test_demo_seed_is_realistic_idempotent_and_adds_up(session: Session) -> None:
    today = dt.date(2026, 11, 25)
    first = demo.seed(session, env="development", today=today, borrowers=60)
    assert first.borrowers_created == 60
    assert first.accounts_created >= 60
    assert first.staff_created == len(demo.DEMO_STAFF)
    again = demo.seed(session, env="development", today=today, borrowers=60)
    assert (again.borrowers_created, again.accounts_created, again.staff_created) == (0, 0, 0)

    stages = dict(session.execute(select(Account.stage, func.count()).group_by(Account.stage)).all())
    assert {Stage.CURRENT, Stage.EARLY, Stage.MID, Stage.LATE, Stage.LEGAL} <= set(stages)
    assert ledger.discrepancies(session) == []
    roles = set(session.scalars(select(StaffUser.role)))
    assert roles == {"agent", "supervisor", "collector", "finance", "admin"}
    assert session.scalar(select(func.count()).where(AuditEvent.action == "account.created")) == sum(
        stages.values()
    )
    assert (
        session.scalar(select(func.count()).where(Account.dpd > 0, Account.oldest_unpaid_due_on.is_(None)))
        == 0
    )


def test_demo_data_and_codes_are_refused_in_production(session: Session, app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(demo.DemoRefusedError):
        demo.seed(session, env="production", today=dt.date(2026, 11, 25), borrowers=1)
    monkeypatch.setitem(app.config, "ACCORD_ENV", "production")
    runner = app.test_cli_runner()
    for args in (["demo", "seed"], ["demo", "totp", "admin@demo.accord.example"]):
        result = runner.invoke(args=args)
        assert result.exit_code != 0
        assert "refused in production" in result.output


def test_demo_totp_prints_the_code_that_signs_in(session: Session, app) -> None:  # type: ignore[no-untyped-def]
    import pyotp

    demo.seed(session, env="development", today=dt.date(2026, 11, 25), borrowers=1)
    email = demo.DEMO_STAFF[0][1]
    result = app.test_cli_runner().invoke(args=["demo", "totp", email])
    assert result.exit_code == 0
    user = session.scalars(select(StaffUser).where(StaffUser.email == email)).one()
    assert result.output.strip() in {
        pyotp.TOTP(user.totp_secret).at(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=s)) for s in (-30, 0)
    }


def test_background_jobs_use_sqlite_by_default_and_redis_when_configured(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from huey import RedisHuey, SqliteHuey

    from portal.tasks import make_huey

    monkeypatch.delenv("ACCORD_REDIS_URL", raising=False)
    monkeypatch.setenv("ACCORD_SECRET_KEY", "x")
    monkeypatch.setenv("ACCORD_HUEY_SQLITE_PATH", str(tmp_path / "huey.db"))
    assert isinstance(make_huey(), SqliteHuey)
    monkeypatch.setenv("ACCORD_REDIS_URL", "redis://127.0.0.1:6379/15")
    redis_huey = make_huey()
    assert isinstance(redis_huey, RedisHuey)

    @redis_huey.task()
    def add(a: int, b: int) -> int:
        return a + b

    redis_huey.flush()
    result = add(2, 3)
    task = redis_huey.dequeue()
    redis_huey.execute(task)
    assert result.get() == 5
    redis_huey.flush()


def test_the_nightly_ledger_check_counts_accounts_that_differ(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic import command
    from sqlalchemy import update

    from portal import tasks
    from portal.extensions import db
    from portal.migrations import alembic_config

    url = f"sqlite:///{tmp_path / 'nightly.db'}"
    command.upgrade(alembic_config(url), "head")
    monkeypatch.setenv("ACCORD_DATABASE_URL", url)
    monkeypatch.setenv("ACCORD_SECRET_KEY", "nightly")
    monkeypatch.setenv("ACCORD_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setattr(tasks, "INLINE_APP", None)  # this job runs in the app the environment describes
    tasks._app.cache_clear()
    try:
        app = tasks._app()
        with app.app_context(), db.session_scope() as scratch:
            demo.seed(scratch, env="development", today=dt.date(2026, 11, 25), borrowers=3)
        assert tasks.verify_ledger_nightly.call_local() == 0
        with app.app_context(), db.session_scope() as scratch:
            scratch.execute(
                update(Account).where(Account.id == 1).values(fees_balance=Account.fees_balance + 1)
            )
            scratch.commit()
        assert tasks.verify_ledger_nightly.call_local() == 1
    finally:
        db.bound(tasks._app()).dispose()
        tasks._app.cache_clear()


def test_a_periodic_job_runs_once_at_a_time_across_consumers(app: Flask) -> None:
    """Each consumer enqueues every periodic job: while one run holds the job's lock in Huey's
    store (shared through Redis by every host), another is refused rather than run alongside."""
    from huey.exceptions import TaskLockedException

    from portal import tasks

    lock = tasks.huey.lock_task("periodic.verify_ledger_nightly")
    with lock, pytest.raises(TaskLockedException):
        tasks.verify_ledger_nightly.call_local()
    assert not lock.is_locked()  # released by the run that held it


def test_the_periodic_lock_works_in_both_stores_and_lapses_on_redis(tmp_path: Path) -> None:
    import time

    from huey import RedisExpireHuey, SqliteHuey
    from huey.exceptions import TaskLockedException

    from portal.tasks import run_alone

    sqlite_store = SqliteHuey("lock-test", filename=str(tmp_path / "huey.db"))
    redis_store = RedisExpireHuey("lock-test", url="redis://127.0.0.1:6379/15")
    for store in (sqlite_store, redis_store):
        store.flush_locks()
        with run_alone(store, "job", 60), pytest.raises(TaskLockedException), run_alone(store, "job", 60):
            pass
        with run_alone(store, "job", 60):  # released: the next run goes ahead
            pass
    held = run_alone(redis_store, "crashed", 1)
    held.acquire()  # a worker that died mid-run never releases it: on Redis the lock lapses
    time.sleep(1.5)
    with run_alone(redis_store, "crashed", 1):
        pass
    redis_store.flush_locks()
