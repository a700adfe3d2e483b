"""`flask --app wsgi …` commands: database, demo data, ledger checks."""

from __future__ import annotations

import datetime as dt

import click
from alembic import command
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select

from portal.extensions import db
from portal.migrations import alembic_config
from portal.models import StaffUser
from portal.services import demo as demo_service
from portal.services import ledger as ledger_service
from portal.services import staff as staff_service
from workflows.errors import DomainError

db_cli = AppGroup("db", help="Database schema (Alembic).")
demo_cli = AppGroup("demo", help="Demo data for development.")
ledger_cli = AppGroup("ledger", help="Ledger checks.")
payments_cli = AppGroup("payments", help="Autopay, missed instalments and Stripe catch-up.")


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database to REVISION (default: the newest)."""
    command.upgrade(alembic_config(current_app.config["DATABASE_URL"]), revision)


@db_cli.command("revision")
@click.option("-m", "--message", required=True)
def db_revision(message: str) -> None:
    """Write a new migration from the difference between the models and the database."""
    command.revision(alembic_config(current_app.config["DATABASE_URL"]), message=message, autogenerate=True)


@db_cli.command("current")
def db_current() -> None:
    command.current(alembic_config(current_app.config["DATABASE_URL"]))


def _refuse_outside_development() -> None:
    if current_app.config["ACCORD_ENV"] == "production":
        raise click.ClickException("Demo commands are refused in production.")


@demo_cli.command("seed")
@click.option("--borrowers", default=300, show_default=True)
def demo_seed(borrowers: int) -> None:
    """Create the demo creditor, borrowers, accounts and staff (idempotent)."""
    _refuse_outside_development()
    with db.session_scope() as session:
        result = demo_service.seed(
            session,
            env=current_app.config["ACCORD_ENV"],
            today=dt.datetime.now(dt.UTC).date(),
            borrowers=borrowers,
        )
        examples = demo_service.sign_in_examples(session)
    click.echo(
        f"Demo data: {result.borrowers_created} borrowers, {result.accounts_created} accounts, "
        f"{result.staff_created} staff users created (existing ones kept)."
    )
    click.echo(f"Staff sign-in (password for all: {demo_service.DEMO_PASSWORD}):")
    for role, email, _name in demo_service.DEMO_STAFF:
        click.echo(f"  {role.value:<11} {email}")
    click.echo("The 6-digit code: flask --app wsgi demo totp EMAIL")
    click.echo("Borrower sign-in (/signin; the code is in the outbox at /dev/outbox):")
    for language, reference, born in examples:
        click.echo(f"  {language:<11} reference {reference}, date of birth {born.isoformat()}")


@demo_cli.command("totp")
@click.argument("email")
def demo_totp(email: str) -> None:
    """Print a demo staff user's current sign-in code (development only)."""
    _refuse_outside_development()
    with db.session_scope() as session:
        user = session.scalar(
            select(StaffUser).where(StaffUser.email == staff_service.normalise_email(email))
        )
        if user is None:
            raise click.ClickException(f"No staff user {email}.")
        try:
            click.echo(staff_service.current_totp(user))
        except DomainError as exc:
            raise click.ClickException(str(exc)) from exc


@ledger_cli.command("verify")
def ledger_verify() -> None:
    """Prove every account's cached balance equals the sum of its ledger entries."""
    with db.session_scope() as session:
        problems = ledger_service.discrepancies(session)
        credit = ledger_service.credit_discrepancies(session)
    if not problems and not credit:
        click.echo("Ledger verified: every cached balance and credit balance equals its entries.")
        return
    for p in problems[:100]:
        click.echo(f"account {p.account_id}: cached {p.cached} but ledger {p.ledger}", err=True)
    for c in credit[:100]:
        click.echo(
            f"account {c.account_id}: credit balance {c.cached} but credit entries {c.entries}", err=True
        )
    raise click.ClickException(f"{len(problems) + len(credit)} account(s) differ from their entries.")


def _stripe_client():  # type: ignore[no-untyped-def]
    from portal.integrations.stripe_gateway import StripeNotConfiguredError, client_from_config

    try:
        return client_from_config(current_app.config)
    except StripeNotConfiguredError as exc:
        raise click.ClickException(str(exc)) from exc


def _day(value: dt.date | None) -> dt.date:
    from portal.services.hardship import desk_today

    return value or desk_today()


@payments_cli.command("autopay")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Run as of this day (default: today).")
def payments_autopay(day: dt.datetime | None) -> None:
    """Charge the autopay instalments due (and retries), finishing any a crash left."""
    from portal.services import autopay

    with db.session_scope() as session:
        report = autopay.run(session, _stripe_client(), _day(day.date() if day else None))
    click.echo(f"Autopay: {report.summary()}.")


@payments_cli.command("check-plans")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Run as of this day (default: today).")
def payments_check_plans(day: dt.datetime | None) -> None:
    """Mark instalments missed after their grace days and break plans by policy."""
    from portal.services import autopay

    with db.session_scope() as session:
        report = autopay.check_plans(session, _day(day.date() if day else None))
    click.echo(f"Plans: {report.summary()}.")


@payments_cli.command("catch-up")
def payments_catch_up() -> None:
    """Process recent Stripe events the webhook missed (running it twice changes nothing)."""
    from portal.services import payments

    with db.session_scope() as session:
        client = _stripe_client()
        counts = payments.catch_up(session, client)
        recovered = payments.recover_stuck(session, client)
    shown = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no events"
    click.echo(f"Stripe catch-up: {shown}.")
    if recovered:
        stuck = ", ".join(f"{n} {outcome}" for outcome, n in sorted(recovered.items()))
        click.echo(f"Payments left in flight: {stuck}.")


def init_app(app: Flask) -> None:
    for group in (db_cli, demo_cli, ledger_cli, payments_cli):
        app.cli.add_command(group)
