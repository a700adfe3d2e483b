"""Stripe's balance transactions into Accord: from the API (paged, resumable) or from a CSV export
of Stripe's balance / payout reconciliation reports (for when API access is not allowed).

Every balance transaction is stored once, by its id: an id already stored is never changed (a
CSV line that disagrees with the stored copy is listed as a problem), so importing the same data
twice changes nothing.

**API** (``import_from_api``). Stripe lists balance transactions newest first; localstripe lists
them newest first by second but oldest first within one second, and a list may grow while it is
read. So the import does not rely on the order; it relies on two things:

- *the walk*: one run pages with ``starting_after`` (``expand=["data.source"]``, 100 a page),
  checks which ids of each page are already stored, inserts the others, and commits the page
  together with the run's cursor (the last id of the page). An interrupted run (a crash, a
  timeout, ``limit_pages``) stays ``running`` and the next call resumes it after its cursor with
  the same filters;
- *the watermark*: a new run asks only for transactions created at or after the newest one
  already stored, less ``WATERMARK_OVERLAP`` (``created[gte]``), and skips known ids. Where the
  server refuses the ``created`` filter (localstripe does), the run says so in its counts and
  walks the whole list instead, skipping known ids — slower, never wrong.

The PaymentIntent is taken from the expanded source (a charge's, a refund's or a dispute's
``payment_intent``). A payout's transactions are asked for by ``payout`` (where the server
supports it) so that payouts can be checked against what they paid out.

**CSV** (``import_csv``). UTF-8 with or without a byte order mark, else GB18030 (a file re-saved
by a Chinese spreadsheet); anything else is refused. Structural problems (undecodable, empty,
no header, required columns missing or named twice, a broken CSV) refuse the whole file: nothing
is imported. Row problems (a bad id, date, currency or amount — see
``workflows.reconciliation.parse_report_amount`` — net not gross less fee, a line repeated with
different values, a line that disagrees with the stored copy) are listed with their line number
and only those rows are left out. A line repeated identically is imported once and noted. The
same file again (same SHA-256) imports nothing new and says so.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import stripe
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.models import StaffUser, StripeBalanceTxn, StripeImport
from portal.services import audit
from portal.services.audit import SYSTEM, Actor
from workflows.errors import DomainError
from workflows.money import minor_units
from workflows.reconciliation import StripeTxn, check_columns, normalise_column, parse_report_amount

log = logging.getLogger(__name__)

PAGE_SIZE = 100
WATERMARK_OVERLAP = dt.timedelta(minutes=10)
"""A new API run re-reads this much before the newest stored transaction (known ids are skipped):
transactions created in the same second as the newest, or listed a little late, are not lost."""
CHUNK = 500
MAX_CSV_BYTES = 200 * 1024 * 1024
MAX_PROBLEMS = 1000
"""Problems listed per import; beyond it only counted (a wholly wrong file would list every line)."""

REQUIRED_COLUMNS = (
    "balance_transaction_id",
    "created_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
)
OPTIONAL_COLUMNS = (
    "available_on_utc",
    "description",
    "payment_intent_id",
    "charge_id",
    "automatic_payout_id",
    "type",
)
CATEGORY_TYPES = {
    "charge": "charge",
    "payment": "payment",
    "refund": "refund",
    "payment_refund": "payment_refund",
    "dispute": "adjustment",
    "dispute_reversal": "adjustment",
    "payout": "payout",
    "payout_reversal": "payout_cancel",
    "fee": "stripe_fee",
    "tax": "tax_fee",
}
"""A report's reporting_category → the balance transaction type the API would give."""
_ID = re.compile(r"[A-Za-z0-9_]{1,255}")
_TIMESTAMP_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ")


# --- Storing -------------------------------------------------------------------------------------


def _row(
    txn: StripeTxn,
    *,
    category: str | None,
    available_on: dt.date | None,
    description: str | None,
    import_id: int,
) -> dict[str, Any]:
    return {
        "id": txn.id,
        "type": txn.type[:32],
        "reporting_category": (category or None) and category[:64],
        "source_id": txn.source_id or None,
        "payment_intent_id": txn.payment_intent_id,
        "amount": txn.amount,
        "fee": txn.fee,
        "net": txn.net,
        "currency": txn.currency,
        "created": txn.created,
        "available_on": available_on,
        "payout_id": txn.payout_id,
        "description": (description or None) and description[:300],
        "import_id": import_id,
        "imported_at": utcnow(),
    }


def _stored(session: Session, ids: Sequence[str]) -> dict[str, StripeBalanceTxn]:
    found: dict[str, StripeBalanceTxn] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        found.update(
            (row.id, row)
            for row in session.scalars(select(StripeBalanceTxn).where(StripeBalanceTxn.id.in_(chunk)))
        )
    return found


def _insert(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        session.execute(insert(StripeBalanceTxn), list(rows[start : start + CHUNK]))


def stored_txn(row: StripeBalanceTxn) -> StripeTxn:
    """A stored balance transaction as the matcher reads it."""
    return StripeTxn(
        id=row.id,
        type=row.type,
        source_id=row.source_id or "",
        payment_intent_id=row.payment_intent_id,
        amount=row.amount,
        fee=row.fee,
        net=row.net,
        currency=row.currency,
        created=row.created,
        payout_id=row.payout_id,
    )


def _same(row: StripeBalanceTxn, txn: StripeTxn) -> bool:
    return stored_txn(row) == txn


def _finish(session: Session, run: StripeImport, actor: Actor, status: str) -> StripeImport:
    run.status, run.finished_at = status, utcnow()
    audit.record(
        session,
        actor,
        f"stripe_import.{status}",
        "stripe_import",
        run.id,
        after={
            "source": run.source,
            "filename": run.filename,
            "counts": run.counts,
            "problems": len(run.problems or []),
        },
    )
    session.commit()
    return run


def _actor(user: StaffUser | None) -> Actor:
    return Actor.staff(user) if user is not None else SYSTEM


# --- The API -------------------------------------------------------------------------------------


def _id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return str(value["id"]) if value.get("id") else None
    return str(value)


def _timestamp(value: Any) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(value), dt.UTC)


def txn_from_api(data: Mapping[str, Any]) -> StripeTxn:
    """A balance transaction as the API returns it (``source`` expanded or not)."""
    source = data.get("source")
    payment_intent = None
    if isinstance(source, Mapping):
        # A charge, a refund and a dispute each name their PaymentIntent.
        payment_intent = _id(source.get("payment_intent"))
    return StripeTxn(
        id=str(data["id"]),
        type=str(data.get("type") or ""),
        source_id=_id(source) or "",
        payment_intent_id=payment_intent,
        amount=int(data["amount"]),
        fee=int(data.get("fee") or 0),
        net=int(data["net"]),
        currency=str(data["currency"]).upper(),
        created=_timestamp(data["created"]),
    )


def _resumable(session: Session) -> StripeImport | None:
    return session.scalar(
        select(StripeImport)
        .where(StripeImport.source == "api", StripeImport.status == "running")
        .order_by(StripeImport.id.desc())
        .limit(1)
    )


def _watermark(session: Session) -> int | None:
    newest = session.scalar(select(func.max(StripeBalanceTxn.created)))
    if newest is None:
        return None
    if newest.tzinfo is None:
        newest = newest.replace(tzinfo=dt.UTC)
    return int((newest - WATERMARK_OVERLAP).timestamp())


def _list(client: stripe.StripeClient, params: dict[str, Any]) -> Any:
    return client.v1.balance_transactions.list(params=params)


def _payout_contents(
    session: Session, client: stripe.StripeClient, payout_id: str, counts: dict[str, Any]
) -> None:
    """Mark the stored transactions a payout paid out (Stripe lists them with ``payout=``)."""
    ids: list[str] = []
    try:
        for item in client.v1.balance_transactions.list(
            params={"payout": payout_id, "limit": PAGE_SIZE}
        ).auto_paging_iter():
            ids.append(str(item["id"]))
    except stripe.InvalidRequestError:
        counts["payout_contents_unavailable"] = counts.get("payout_contents_unavailable", 0) + 1
        return
    for start in range(0, len(ids), CHUNK):
        session.execute(
            update(StripeBalanceTxn)
            .where(StripeBalanceTxn.id.in_(ids[start : start + CHUNK]), StripeBalanceTxn.id != payout_id)
            .values(payout_id=payout_id)
        )
    counts["payout_contents"] = counts.get("payout_contents", 0) + len(ids)


def import_from_api(
    session: Session,
    client: stripe.StripeClient,
    *,
    limit_pages: int | None = None,
    progress: Callable[[int], None] | None = None,
    user: StaffUser | None = None,
) -> StripeImport:
    """Read balance transactions from Stripe and store the new ones (see the module docstring):
    resumes an interrupted run, else starts one from the watermark. Commits after every page;
    with ``limit_pages`` the run stops after that many pages and stays resumable."""
    actor = _actor(user)
    run = _resumable(session)
    if run is None:
        since = _watermark(session)
        run = StripeImport(
            source="api",
            status="running",
            counts={"pages": 0, "read": 0, "new": 0, "known": 0, "created_gte": since},
            problems=[],
            imported_by_id=user.id if user else None,
        )
        session.add(run)
        session.flush()
        audit.record(
            session,
            actor,
            "stripe_import.started",
            "stripe_import",
            run.id,
            after={"source": "api", "created_gte": since},
        )
        session.commit()
    else:
        audit.record(
            session, actor, "stripe_import.resumed", "stripe_import", run.id, after={"cursor": run.cursor}
        )
        session.commit()
    pages = 0
    while limit_pages is None or pages < limit_pages:
        counts = dict(run.counts or {})
        params: dict[str, Any] = {"limit": PAGE_SIZE, "expand": ["data.source"]}
        if run.cursor:
            params["starting_after"] = run.cursor
        if counts.get("created_gte") is not None and not counts.get("created_filter_refused"):
            params["created"] = {"gte": counts["created_gte"]}
        try:
            page = _list(client, params)
        except stripe.InvalidRequestError as exc:
            if "created" in params and "created" in str(exc):
                # This server cannot filter by date: walk the whole list, skipping known ids.
                counts["created_filter_refused"] = True
                run.counts = counts
                session.commit()
                continue
            raise
        items = [item.to_dict() for item in page.data]
        if items:
            _store_page(session, client, run, items, counts)
        pages += 1
        counts["pages"] = counts.get("pages", 0) + 1
        run.counts = counts
        if progress:
            progress(len(items))
        if not items or not page.has_more:
            return _finish(session, run, actor, "completed")
        run.cursor = str(items[-1]["id"])[:255]
        session.commit()
    session.commit()
    return run


def _store_page(
    session: Session,
    client: stripe.StripeClient,
    run: StripeImport,
    items: list[dict[str, Any]],
    counts: dict[str, Any],
) -> None:
    txns: list[tuple[StripeTxn, dict[str, Any]]] = []
    for data in items:
        try:
            txns.append((txn_from_api(data), data))
        except (DomainError, KeyError, TypeError, ValueError) as exc:
            problems = list(run.problems or [])
            if len(problems) < MAX_PROBLEMS:
                problems.append({"id": str(data.get("id")), "code": "txn_invalid", "message": str(exc)[:300]})
            run.problems = problems
            counts["invalid"] = counts.get("invalid", 0) + 1
    counts["read"] = counts.get("read", 0) + len(items)
    known = _stored(session, [txn.id for txn, _ in txns])
    fresh: dict[str, dict[str, Any]] = {}
    for txn, data in txns:
        if txn.id in known or txn.id in fresh:
            continue
        available = data.get("available_on")
        fresh[txn.id] = _row(
            txn,
            category=data.get("reporting_category"),
            available_on=_timestamp(available).date() if available else None,
            description=data.get("description"),
            import_id=run.id,
        )
    _insert(session, list(fresh.values()))
    counts["known"] = counts.get("known", 0) + len(txns) - len(fresh)
    counts["new"] = counts.get("new", 0) + len(fresh)
    for txn, _ in txns:
        if txn.id in fresh and txn.type == "payout" and txn.source_id:
            _payout_contents(session, client, txn.source_id, counts)


# --- CSV -----------------------------------------------------------------------------------------


@dataclass
class _Problems:
    items: list[dict[str, Any]]
    total: int = 0

    def add(self, line: int | None, code: str, message: str, **params: Any) -> None:
        self.total += 1
        if len(self.items) < MAX_PROBLEMS:
            self.items.append({"line": line, "code": code, "message": message, "params": params})

    def error(self, line: int, exc: DomainError, column: str | None = None) -> None:
        params = {k: str(v) for k, v in exc.params.items()}
        if column:
            params["column"] = column
        message = f"{column}: {exc}" if column else str(exc)
        self.add(line, exc.code, message, **params)


def _decode(raw: bytes) -> tuple[str, str] | None:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return None


def _parse_time(text: str) -> dt.datetime:
    value = text.strip()
    for fmt in _TIMESTAMP_FORMATS:
        try:
            return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise DomainError("report_date_invalid", "{text} is not a date and time.", text=value[:40]) from None
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _amounts(values: Mapping[str, str], currency: str, line: int, problems: _Problems) -> dict[str, int]:
    amounts: dict[str, int] = {}
    for column in ("gross", "fee", "net"):
        try:
            amounts[column] = parse_report_amount(values[column], currency)
        except DomainError as exc:
            problems.error(line, exc, column)
    return amounts


def _csv_txn(
    values: Mapping[str, str], line: int, problems: _Problems
) -> tuple[StripeTxn, dict[str, Any]] | None:
    """One report line as a balance transaction, or None with its problems listed."""
    found = len(problems.items), problems.total
    txn_id = values["balance_transaction_id"].strip()
    if not _ID.fullmatch(txn_id):
        problems.add(line, "report_id_invalid", "balance_transaction_id is missing or not a Stripe id.")
    currency = values["currency"].strip().upper()
    try:
        minor_units(currency)
    except DomainError as exc:
        problems.error(line, exc, "currency")
        currency = ""
    amounts = _amounts(values, currency, line, problems) if currency else {}
    created = None
    try:
        created = _parse_time(values["created_utc"])
    except DomainError as exc:
        problems.error(line, exc, "created_utc")
    available = None
    if values.get("available_on_utc", "").strip():
        try:
            available = _parse_time(values["available_on_utc"]).date()
        except DomainError as exc:
            problems.error(line, exc, "available_on_utc")
    category = values["reporting_category"].strip()
    if not category:
        problems.add(line, "report_category_missing", "reporting_category is empty.")
    source_id = values["source_id"].strip()
    refs = {k: values.get(k, "").strip() for k in ("payment_intent_id", "charge_id", "automatic_payout_id")}
    for name, value in [("source_id", source_id), *refs.items()]:
        if value and not _ID.fullmatch(value):
            problems.add(line, "report_id_invalid", f"{name} is not a Stripe id.", column=name)
    if (len(problems.items), problems.total) != found or created is None or len(amounts) < 3:
        return None
    kind = values.get("type", "").strip() or CATEGORY_TYPES.get(category, category)
    try:
        txn = StripeTxn(
            id=txn_id,
            type=kind,
            source_id=source_id,
            payment_intent_id=refs["payment_intent_id"] or None,
            amount=amounts["gross"],
            fee=amounts["fee"],
            net=amounts["net"],
            currency=currency,
            created=created,
            payout_id=refs["automatic_payout_id"] or None,
        )
    except DomainError as exc:
        problems.error(line, exc)
        return None
    return txn, {"category": category, "available_on": available, "description": values.get("description")}


def _refuse(session: Session, run: StripeImport, actor: Actor, problems: _Problems) -> StripeImport:
    run.problems = problems.items
    run.counts = {**(run.counts or {}), "imported": 0, "problems": problems.total}
    return _finish(session, run, actor, "failed")


@dataclass
class _Parsed:
    """The lines of a file that passed the row checks, by id, and what was counted on the way."""

    rows: int = 0
    repeated: int = 0
    lines: dict[str, tuple[int, StripeTxn, dict[str, Any]]] | None = None


def _text(raw: bytes, run: StripeImport, problems: _Problems) -> str | None:
    """The file as text, or None with the structural problem listed."""
    if len(raw) > MAX_CSV_BYTES:
        problems.add(None, "csv_too_large", f"The file is larger than {MAX_CSV_BYTES >> 20} MB.")
        return None
    decoded = _decode(raw)
    if decoded is None:
        problems.add(None, "csv_encoding", "The file is neither UTF-8 nor GB18030 text.")
        return None
    text, encoding = decoded
    run.counts = {**run.counts, "encoding": encoding}
    if "\x00" in text:
        problems.add(None, "csv_encoding", "The file holds NUL characters: it is not a CSV text file.")
        return None
    return text


def _header(reader: Any, problems: _Problems) -> list[str] | None:
    header = next((row for row in reader if any(cell.strip() for cell in row)), None)
    if header is None:
        problems.add(None, "csv_empty", "The file is empty.")
        return None
    wrong = check_columns(header, REQUIRED_COLUMNS)
    if not wrong:
        return [normalise_column(name) for name in header]
    if len(header) == 1 and ";" in header[0]:
        problems.add(
            reader.line_num, "csv_semicolons", "The columns are separated by semicolons, not commas."
        )
    for problem in wrong:
        problems.add(reader.line_num, "csv_columns", problem)
    return None


def _take(
    parsed: _Parsed,
    conflicting: set[str],
    line: int,
    found: tuple[StripeTxn, dict[str, Any]],
    problems: _Problems,
) -> None:
    txn, extra = found
    lines = parsed.lines if parsed.lines is not None else {}
    parsed.lines = lines
    if txn.id not in lines:
        lines[txn.id] = (line, txn, extra)
        return
    first_line, first, _ = lines[txn.id]
    if first == txn:
        parsed.repeated += 1
        problems.add(
            line, "csv_duplicate_row", f"The same as line {first_line}: imported once.", first_line=first_line
        )
    else:
        conflicting.add(txn.id)
        problems.add(
            line,
            "csv_conflicting_row",
            f"{txn.id} is also on line {first_line} with other values: neither is imported.",
            first_line=first_line,
        )


def _parse(text: str, problems: _Problems) -> _Parsed | None:
    """Every line checked; None when the file is refused whole."""
    reader = csv.reader(io.StringIO(text, newline=""))
    parsed = _Parsed(lines={})
    conflicting: set[str] = set()
    try:
        columns = _header(reader, problems)
        if columns is None:
            return None
        wanted = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            parsed.rows += 1
            if len(cells) != len(columns):
                problems.add(
                    line, "csv_row_width", f"The line has {len(cells)} fields; the header has {len(columns)}."
                )
                continue
            values = {col: cell for col, cell in zip(columns, cells, strict=True) if col in wanted}
            found = _csv_txn(values, line, problems)
            if found is not None:
                _take(parsed, conflicting, line, found, problems)
    except csv.Error as exc:
        problems.add(reader.line_num, "csv_broken", f"The file is not valid CSV: {exc}.")
        return None
    if parsed.rows == 0:
        problems.add(None, "csv_empty", "The file has a header but no lines.")
        return None
    for txn_id in conflicting:
        (parsed.lines or {}).pop(txn_id, None)
    return parsed


def import_csv(
    session: Session, stream: IO[bytes] | bytes, filename: str, *, user: StaffUser | None = None
) -> StripeImport:
    """Import a CSV export of Stripe's balance or payout reconciliation report (see the module
    docstring for what is refused); commits once, with the import's counts and problems."""
    actor = _actor(user)
    raw = stream if isinstance(stream, bytes) else stream.read(MAX_CSV_BYTES + 1)
    digest = hashlib.sha256(raw).hexdigest()
    name = (filename or "upload.csv").replace("\\", "/").rsplit("/", 1)[-1][:255] or "upload.csv"
    earlier = session.scalar(
        select(StripeImport.id)
        .where(StripeImport.file_sha256 == digest, StripeImport.status == "completed")
        .order_by(StripeImport.id)
        .limit(1)
    )
    run = StripeImport(
        source="csv",
        filename=name,
        file_sha256=digest,
        status="running",
        counts={"bytes": len(raw)} | ({"same_file_as": earlier} if earlier else {}),
        problems=[],
        imported_by_id=user.id if user else None,
    )
    session.add(run)
    session.flush()
    problems = _Problems([])
    text = _text(raw, run, problems)
    parsed = _parse(text, problems) if text is not None else None
    if parsed is None:
        return _refuse(session, run, actor, problems)
    lines = parsed.lines or {}
    stored = _stored(session, list(lines))
    fresh: list[dict[str, Any]] = []
    unchanged = 0
    for txn_id, (line, txn, extra) in lines.items():
        row = stored.get(txn_id)
        if row is None:
            fresh.append(
                _row(
                    txn,
                    category=extra["category"],
                    available_on=extra["available_on"],
                    description=extra["description"],
                    import_id=run.id,
                )
            )
        elif _same(row, txn):
            unchanged += 1
        else:
            problems.add(
                line,
                "csv_differs_from_stored",
                f"{txn_id} is already stored with other values: the stored copy is kept.",
            )
    _insert(session, fresh)
    run.counts = {
        **run.counts,
        "rows": parsed.rows,
        "new": len(fresh),
        "unchanged": unchanged,
        "repeated": parsed.repeated,
        "refused": parsed.rows - len(fresh) - unchanged - parsed.repeated,
        "problems": problems.total,
    }
    run.problems = problems.items
    return _finish(session, run, actor, "completed")


def recent_imports(session: Session, limit: int = 20) -> list[StripeImport]:
    return list(session.scalars(select(StripeImport).order_by(StripeImport.id.desc()).limit(limit)))


def summary(run: StripeImport) -> str:
    """One line for the command line (English, like the other commands)."""
    counts = run.counts or {}
    if run.source == "api":
        text = (
            f"Stripe import #{run.id} ({run.status}): {counts.get('read', 0)} read in "
            f"{counts.get('pages', 0)} page(s), {counts.get('new', 0)} new, "
            f"{counts.get('known', 0)} already stored"
        )
        if counts.get("created_filter_refused"):
            text += " (the server cannot filter by date: the whole list was read)"
        if run.status == "running":
            text += "; stopped early, the next run resumes after " + str(run.cursor)
        return text + "."
    if run.status == "failed":
        return f"CSV import #{run.id} of {run.filename} refused: nothing was imported."
    text = (
        f"CSV import #{run.id} of {run.filename} ({counts.get('encoding')}): "
        f"{counts.get('rows', 0)} line(s), "
        f"{counts.get('new', 0)} new, {counts.get('unchanged', 0)} already stored, "
        f"{counts.get('refused', 0)} refused, {counts.get('repeated', 0)} repeated"
    )
    if counts.get("same_file_as"):
        text += f"; this file was already imported (import #{counts['same_file_as']})"
    return text + "."


def problem_lines(run: StripeImport) -> Iterable[str]:
    for problem in run.problems or []:
        where = f"line {problem['line']}: " if problem.get("line") else ""
        yield f"{where}{problem.get('message')} [{problem.get('code')}]"
