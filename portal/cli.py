"""`flask --app wsgi …` commands: database, demo data, ledger checks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from alembic import command
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select

from portal.extensions import db
from portal.migrations import alembic_config
from portal.models import StaffUser
from portal.models.integration import API_SCOPES
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
audit_cli = AppGroup("audit", help="The audit trail's hash chain: link, verify, print the head.")
accounts_cli = AppGroup("accounts", help="Placements: the accounts lenders hand to Accord.")
webhooks_cli = AppGroup("webhooks", help="Outgoing webhooks to lenders.")
api_cli = AppGroup("api", help="The lenders' JSON API.")
api_token_cli = AppGroup("token", help="Lenders' API tokens: issue, revoke, list.")
api_cli.add_command(api_token_cli)
retention_cli = AppGroup("retention", help="Personal data past the policy's retention period.")
crypto_cli = AppGroup("crypto", help="Encryption at rest: new keys, what each key holds, rotation.")


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


@webhooks_cli.command("deliver")
def webhooks_deliver() -> None:
    """Number new lender events, queue them for the webhook endpoints and send what is due."""
    from portal.db import utcnow
    from portal.services import outgoing_webhooks

    with db.session_scope() as session:
        report = outgoing_webhooks.run(session, utcnow())
    click.echo(f"Webhooks: {report.summary()}.")


PRINTED_REJECTIONS = 20


@accounts_cli.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--creditor", "creditor_code", required=True, help="The lender's code.")
@click.option("--dry-run", is_flag=True, help="Check every row, against the database too; apply nothing.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the rejected rows to this CSV file.",
)
def accounts_import(path: Path, creditor_code: str, dry_run: bool, report_path: Path | None) -> None:
    """Place the borrowers and accounts of a CSV or XLSX file (upserted by the lender's reference)."""
    import csv

    from portal.services import placements
    from portal.services.audit import SYSTEM

    with db.session_scope() as session:
        try:
            creditor_id = placements.creditor_id_for(session, creditor_code)
        except DomainError as exc:
            raise click.ClickException(str(exc)) from exc
        with click.progressbar(length=0, label=f"Placing {path.name}", show_pos=True) as bar:

            def counted(rows: int) -> None:
                bar.length = rows

            record = placements.import_file(
                session,
                creditor_id=creditor_id,
                path=path,
                filename=path.name,
                source="cli",
                actor=SYSTEM,
                dry_run=dry_run,
                today=_day(None),
                max_rows=current_app.config["PLACEMENT_MAX_ROWS"],
                max_bytes=current_app.config["PLACEMENT_MAX_BYTES"],
                progress=bar.update,
                counted=counted,
            )
        click.echo(placements.summary(record))
        for rejection in placements.rejections(session, record.id, limit=PRINTED_REJECTIONS):
            column = rejection.column or "row"
            click.echo(f"  line {rejection.line}, {column}: {rejection.code}: {rejection.message}", err=True)
        if record.rows_rejected > PRINTED_REJECTIONS:
            click.echo(f"  … rejected rows: {record.rows_rejected} in all", err=True)
        if report_path is not None:
            with report_path.open("w", encoding="utf-8-sig", newline="") as out:
                writer = csv.writer(out)
                writer.writerow(["line", "column", "code", "message", "account_reference"])
                offset = 0
                while batch := placements.rejections(session, record.id, offset=offset, limit=1000):
                    writer.writerows(
                        [r.line, r.column, r.code, r.message, r.account_reference or ""] for r in batch
                    )
                    offset += len(batch)
            click.echo(f"Rejections written to {report_path} ({offset}).")
        if record.status in {"refused", "failed"}:
            raise click.ClickException(f"The file was {record.status}: nothing was applied.")


@accounts_cli.command("recall")
@click.argument("reference")
@click.option("--creditor", "creditor_code", required=True, help="The lender's code.")
@click.option("--reason", default=None, help="Why the lender takes the account back.")
def accounts_recall(reference: str, creditor_code: str, reason: str | None) -> None:
    """Hand an account back to its lender: it leaves collections (recalling it twice changes nothing)."""
    from portal.services import placements
    from portal.services.audit import SYSTEM

    with db.session_scope() as session:
        try:
            account = placements.recall(
                session,
                creditor_id=placements.creditor_id_for(session, creditor_code),
                account_reference=reference,
                actor=SYSTEM,
                reason=reason,
            )
        except DomainError as exc:
            raise click.ClickException(str(exc)) from exc
        recalled_at = account.recalled_at.isoformat() if account.recalled_at else "-"
        click.echo(f"Account {account.external_reference}: {account.status} (since {recalled_at}).")


@api_token_cli.command("create")
@click.option("--creditor", "creditor_code", required=True, help="The lender's code.")
@click.option("--name", required=True, help="Which of the lender's systems uses it.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(API_SCOPES),
    help="What it may do (repeat for several).",
)
@click.option("--days", type=int, default=None, help="Expires after this many days (default: never).")
def api_token_create(creditor_code: str, name: str, scopes: tuple[str, ...], days: int | None) -> None:
    """Issue a lender's API token and print it: this is the only time it is shown."""
    from portal.services import api_tokens, placements
    from portal.services.audit import SYSTEM

    with db.session_scope() as session:
        try:
            token, raw = api_tokens.create(
                session,
                SYSTEM,
                creditor_id=placements.creditor_id_for(session, creditor_code),
                name=name,
                scopes=scopes,
                expires_in_days=days,
            )
        except DomainError as exc:
            raise click.ClickException(str(exc)) from exc
        expires = token.expires_at.isoformat() if token.expires_at else "never"
        scopes_text = ", ".join(token.scopes)
        click.echo(f"Token {token.prefix} for {creditor_code} ({scopes_text}), expires {expires}.")
        click.echo("Copy it now: it is not stored and cannot be shown again.")
        click.echo(raw)


@api_token_cli.command("revoke")
@click.argument("prefix")
def api_token_revoke(prefix: str) -> None:
    """Revoke the token with this prefix at once (revoking it again changes nothing)."""
    from portal.services import api_tokens
    from portal.services.audit import SYSTEM

    with db.session_scope() as session:
        token = api_tokens.find(session, prefix)
        if token is None:
            raise click.ClickException(f"No API token {prefix}.")
        api_tokens.revoke(session, SYSTEM, token.id)
        click.echo(f"Token {token.prefix} revoked.")


@api_token_cli.command("list")
def api_token_list() -> None:
    """Every token: prefix, lender, name, scopes, expiry, last use, revocation."""
    from portal.services import api_tokens

    def when(moment: dt.datetime | None, empty: str) -> str:
        return moment.strftime("%Y-%m-%d %H:%M") if moment else empty

    with db.session_scope() as session:
        creditors = api_tokens.creditors(session)
        for token in api_tokens.listing(session):
            creditor = creditors[token.creditor_id].code
            click.echo(
                f"{token.prefix}  {creditor}  {token.name}  {','.join(token.scopes)}  "
                f"expires {when(token.expires_at, 'never')}  last used {when(token.last_used_at, 'never')}  "
                f"revoked {when(token.revoked_at, 'no')}"
            )


def _parse_anchors(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[int, str]:
    """``SEQ:HASH`` values as {seq: hash}: a link from 1 up, 64 lower-case hex digits."""
    anchors: dict[int, str] = {}
    for value in values:
        seq, _, digest = value.partition(":")
        hex_digits = len(digest) == 64 and set(digest) <= set("0123456789abcdef")
        if not (seq.isdigit() and int(seq) >= 1 and hex_digits):
            raise click.BadParameter(f"{value!r} is not SEQ:HASH (a link from 1 up, 64 hex digits)")
        anchors[int(seq)] = digest
    return anchors


@audit_cli.command("link")
def audit_link() -> None:
    """Chain the audit events committed since the last link (a task does it every 5 minutes)."""
    from portal.services import audit_chain

    with db.session_scope() as session:
        linked = audit_chain.link(session)
        seq, digest = audit_chain.head(session)
    click.echo(f"Audit chain: {linked} event(s) linked; head {seq}:{digest}.")


@audit_cli.command("verify")
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    metavar="SEQ:HASH",
    callback=_parse_anchors,
    help="A head kept outside the database (flask audit head): the chain must still hold it.",
)
def audit_verify(anchors: dict[int, str]) -> None:
    """Recompute every link of the audit chain; exit 1 with the first broken link, or when
    events committed over an hour ago are still not linked."""
    from portal.services import audit_chain

    with db.session_scope() as session:
        report = audit_chain.verify(session, anchors=anchors)
    broken = report.broken
    if broken is not None:
        click.echo(f"Broken at link {broken.seq} ({broken.problem}): {broken.detail}.", err=True)
    if report.unchained:
        click.echo(
            f"{report.unchained} audit event(s) older than {audit_chain.UNCHAINED_GRACE} are not "
            f"linked (oldest id {report.oldest_unchained}): is the linking task running? "
            "flask audit link links them.",
            err=True,
        )
    if not report.ok:
        raise click.ClickException("The audit chain does not verify.")
    seq, digest = report.head
    click.echo(f"Audit chain verified: {report.links} link(s), head {seq}:{digest}.")


@audit_cli.command("head")
def audit_head() -> None:
    """Print the chain's newest link as SEQ:HASH: keep it outside the database, and give it back
    to flask audit verify --anchor to prove the chain was not rewritten since."""
    from portal.services import audit_chain

    with db.session_scope() as session:
        seq, digest = audit_chain.head(session)
    click.echo(f"{seq}:{digest}")


@retention_cli.command("run")
@click.option(
    "--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Judge as of this day (default: today)."
)
@click.option("--dry-run", is_flag=True, help="Report what is due without changing anything.")
def retention_run_command(day: dt.datetime | None, dry_run: bool) -> None:
    """Anonymise borrowers and clear hardship cases past the policy's retention period, and print
    the report (a rerun finds nothing more to do)."""
    from portal.services import retention
    from portal.services.audit import SYSTEM

    with db.session_scope() as session:
        report = retention.run(
            session, today=_day(day.date() if day else None), dry_run=dry_run, actor=SYSTEM
        )
    click.echo("\n".join(report.lines()))


@crypto_cli.command("new-key")
@click.argument("key_id")
def crypto_new_key(key_id: str) -> None:
    """Print a new key as KEY_ID:BASE64, to put first in ACCORD_ENCRYPTION_KEYS."""
    from portal import crypto

    try:
        click.echo(crypto.new_key_text(key_id))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _stores() -> dict[str, Any]:
    from portal.integrations.storage import document_storage_from_config, storage_from_config

    return {
        "evidence": storage_from_config(current_app.config),
        "documents": document_storage_from_config(current_app.config),
    }


@crypto_cli.command("status")
def crypto_status() -> None:
    """Count, per encrypted column and per file store, what each key seals; the current key first."""
    from portal import crypto
    from portal.services import encryption

    with db.session_scope() as session:
        report = encryption.status(session, _stores())
    click.echo(f"Current key: {crypto.keyring().current}")
    for title, groups in (("Columns", report.columns), ("Files", report.files)):
        click.echo(f"{title}:")
        for name, counts in groups.items():
            held = ", ".join(f"{key_id}: {count}" for key_id, count in sorted(counts.items())) or "nothing"
            click.echo(f"  {name:28} {held}")


@crypto_cli.command("rotate")
@click.option("--batch", default=500, show_default=True, help="Values rewritten per transaction.")
def crypto_rotate(batch: int) -> None:
    """Seal every value and file not sealed with the current key again with it (stoppable and
    safe to run again); then an old key that `status` shows holding nothing can be dropped."""
    from portal.services import encryption
    from portal.services.audit import SYSTEM

    with db.session_scope() as session:
        result = encryption.rotate(session, _stores(), actor=SYSTEM, batch=batch)
    for name, count in {**result.columns, **result.files}.items():
        click.echo(f"  {name:28} {count} resealed")
    if result.skipped:
        click.echo(f"  {result.skipped} value(s) changed meanwhile were left as they are (already current).")


def init_app(app: Flask) -> None:
    for group in (db_cli, demo_cli, ledger_cli, payments_cli, collections_cli, finance_cli):
        app.cli.add_command(group)
    app.cli.add_command(accounts_cli)
    app.cli.add_command(webhooks_cli)
    app.cli.add_command(api_cli)
    app.cli.add_command(audit_cli)
    app.cli.add_command(retention_cli)
    app.cli.add_command(crypto_cli)
