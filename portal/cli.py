"""`flask --app wsgi …` commands: database, demo data, ledger checks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

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
finance_cli = AppGroup("finance", help="Stripe imports and reconciliation.")
finance_import_cli = AppGroup("import", help="Import Stripe balance transactions (API or CSV).")
finance_cli.add_command(finance_import_cli)
collections_cli = AppGroup("collections", help="The daily collections run and strategy simulation.")


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


@finance_import_cli.command("api")
@click.option("--pages", type=click.IntRange(min=1), help="Stop after N pages (the next run resumes).")
def finance_import_api(pages: int | None) -> None:
    """Read Stripe's balance transactions through the API (resumes an interrupted import)."""
    from portal.services import stripe_import

    with db.session_scope() as session, click.progressbar(length=0, label="Balance transactions") as bar:
        run = stripe_import.import_from_api(session, _stripe_client(), limit_pages=pages, progress=bar.update)
    click.echo()
    click.echo(stripe_import.summary(run))
    for line in list(stripe_import.problem_lines(run))[:50]:
        click.echo(f"  {line}", err=True)


@finance_import_cli.command("csv")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def finance_import_csv(path: Path) -> None:
    """Import a CSV export of Stripe's balance or payout reconciliation report."""
    from portal.services import stripe_import

    size = path.stat().st_size
    with db.session_scope() as session:
        with click.progressbar(length=size, label=f"Reading {path.name}") as bar, path.open("rb") as stream:
            data = stream.read()
            bar.update(size)
        run = stripe_import.import_csv(session, data, path.name)
    click.echo(stripe_import.summary(run))
    lines = list(stripe_import.problem_lines(run))
    for line in lines[:100]:
        click.echo(f"  {line}", err=True)
    if len(lines) > 100:
        click.echo(f"  … and {len(lines) - 100} more", err=True)
    if run.status == "failed":
        raise click.ClickException("The file was refused: nothing was imported.")


@finance_cli.command("reconcile")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First day (UTC).")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Last day (UTC).")
def finance_reconcile(start: dt.datetime, end: dt.datetime) -> None:
    """Match Stripe against the ledger for the days given; list what differs."""
    from portal.services import reconciliation

    with db.session_scope() as session:
        try:
            run = reconciliation.reconcile(session, start.date(), end.date())
        except DomainError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(reconciliation.summary(run))


finance_export_cli = AppGroup("export", help="CSV exports for the core banking system.")
finance_cli.add_command(finance_export_cli)


@finance_cli.command("close")
@click.option("--day", "day", type=click.DateTime(["%Y-%m-%d"]), required=True, help="The business day.")
@click.option("--currency", required=True, help="ISO currency code, e.g. CNY.")
@click.option("--note", default=None, help="Why the day is closed with exceptions still open.")
def finance_close_command(day: dt.datetime, currency: str, note: str | None) -> None:
    """Close a past business day in one currency: figures frozen, report PDF stored."""
    from portal.services import finance_close

    with db.session_scope() as session:
        try:
            row = finance_close.close_day(session, day.date(), currency, None, note)
        except DomainError as exc:
            raise click.ClickException(str(exc)) from exc
        figures = finance_close.frozen_figures(row)
        net = figures.net if figures.net is not None else "unknown (Stripe fees not imported)"
        click.echo(
            f"Closed {row.day.isoformat()} {row.currency}: gross {figures.gross}, net {net} (minor units); "
            f"{row.open_exceptions} open exception(s); report {row.report_key} sha256 {row.report_sha256}."
        )


def _export(
    kind: str, first: dt.datetime, last: dt.datetime, currency: str | None, output: str | None
) -> None:
    from portal.services import finance_exports

    try:
        span = finance_exports.parse_range(first.date(), last.date(), currency)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from exc
    target = Path(output) if output else Path(finance_exports.filename(kind, span))
    with db.session_scope() as session, target.open("w", encoding="utf-8", newline="") as handle:
        chunks = (
            finance_exports.postings_csv(session, span)
            if kind == "postings"
            else finance_exports.journal_csv(session, span)
        )
        for chunk in chunks:
            handle.write(chunk)
        if kind == "journal":
            for code, (debit, credit) in finance_exports.journal_totals(session, span).items():
                state = "balanced" if debit == credit else "NOT BALANCED"
                click.echo(f"{code}: debits {debit}, credits {credit} (minor units): {state}")
    click.echo(f"Wrote {target}.")


_EXPORT_OPTIONS = (
    click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), required=True),
    click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), required=True),
    click.option("--currency", default=None, help="Only this currency (default: all)."),
    click.option("--output", "-o", default=None, help="The file to write (default: a name from the range)."),
)


def _with_export_options(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_EXPORT_OPTIONS):
        command = option(command)
    return command


@finance_export_cli.command("postings")
@_with_export_options
def finance_export_postings(
    first: dt.datetime, last: dt.datetime, currency: str | None, output: str | None
) -> None:
    """Ledger postings per account and component (business days FROM to TO, both included)."""
    _export("postings", first, last, currency, output)


@finance_export_cli.command("journal")
@_with_export_options
def finance_export_journal(
    first: dt.datetime, last: dt.datetime, currency: str | None, output: str | None
) -> None:
    """The double-entry journal (business days FROM to TO, both included), with its totals."""
    _export("journal", first, last, currency, output)


@collections_cli.command("run")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Run for this day (default: today).")
def collections_run_command(day: dt.datetime | None) -> None:
    """DPD and stages, interest, late fees, instalments, promises and the day's actions; a rerun
    changes nothing and an interrupted run resumes."""
    from portal.services import collections_run

    with db.session_scope() as session:
        try:
            report = collections_run.run(session, _day(day.date() if day else None))
        except DomainError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(report.summary())
    if report.steps_skipped:
        click.echo(f"Already done before: {', '.join(report.steps_skipped)}.")


@collections_cli.command("simulate")
@click.option("--days", default=30, show_default=True, help="How many past days to replay.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="The last day (default: yesterday).")
@click.option(
    "--policy-file",
    type=click.Path(exists=True, dir_okay=False),
    help="A policy (JSON, as stored) whose collections strategies are compared with the current ones.",
)
def collections_simulate(days: int, until: dt.datetime | None, policy_file: str | None) -> None:
    """What a changed strategy would have produced on the last N days, against the current one."""
    import json
    from pathlib import Path

    from portal.services import strategy_simulation
    from workflows.policy import Policy

    with db.session_scope() as session:
        try:
            if policy_file:
                proposed = Policy.from_dict(json.loads(Path(policy_file).read_text(encoding="utf-8")))
            else:
                proposed = Policy()
            report = strategy_simulation.simulate(
                session, proposed, days=days, until=until.date() if until else None
            )
        except (DomainError, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(report.table())


@collections_cli.command("send")
def collections_send() -> None:
    """Send the collection messages whose time has come, as the contact rules allow now."""
    from portal.services import collection_messages
    from portal.tasks import send_message

    with db.session_scope() as session:
        report = collection_messages.dispatch(session)
    for message in report.messages:
        send_message(message.to_dict())
    click.echo(report.summary())
    if report.letter_batch:
        click.echo(f"Letters: document {report.letter_batch}")
    for reason, count in sorted(report.blocked_reasons.items()):
        click.echo(f"  blocked, {reason}: {count}")


def init_app(app: Flask) -> None:
    for group in (db_cli, demo_cli, ledger_cli, payments_cli, collections_cli, finance_cli):
        app.cli.add_command(group)
