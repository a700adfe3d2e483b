"""Placements: a lender hands Accord its borrowers and their accounts, in a file (CSV or XLSX, from
the staff UI or the command line) or through the JSON API. The row rules are
``workflows.placements``; this module reads files, checks rows against each other and against the
database, and applies them.

**A file** (``import_file``) is read twice. The first pass is cheap and judges the file as a
whole: its format by content (an XLSX workbook is a zip, ``PK\\x03\\x04``; anything else is read as
CSV), its encoding (a UTF-8 byte order mark is removed; strict UTF-8, else GB18030, else
``encoding_unknown``), its CSV structure (``csv_malformed`` names the line), the delimiter (only
commas: a one-column header holding ``;``, a tab or ``|`` is ``delimiter_wrong``), the header
(``header_invalid``, with each unknown, repeated or missing column) and the number of rows
(``too_many_rows`` as soon as the count passes the limit; ``file_empty``, ``no_rows``). A file
refused there changes nothing: its import is ``refused`` with the reason. Blank lines are skipped
everywhere; line numbers are the file's (1 is the header; a quoted value over several lines
counts from its first).

The second pass checks every row (``workflows.placements.parse_text_row``; a row whose number of
fields differs from the header's is ``field_count``), then the rows against each other: an
account reference seen on an earlier line rejects the later row (``reference_duplicated``), and
so does a borrower reference whose borrower details differ from an earlier line's
(``borrower_conflict``). Rows are then planned against the database in chunks
(``plan_change``: ``currency_changed``, ``borrower_changed``, ``balance_date_stale``,
``balance_negative`` reject the row) and written set-based. A rejected row is never applied,
every other row is, all in ONE transaction: the import's rejections name exactly the lines not
applied. A dry run makes the same checks, database included, and writes only the import and its
rejections. An error of ours rolls everything back and records the import as ``failed``.

**An upload** from the staff UI is not placed in its web request: ``queue_upload`` keeps the file
sealed in the document store and records the import ``queued``; a background job
(``place_queued``) claims it, places it as above and deletes the stored file. ``abandon_stalled``
records as ``failed`` an import whose worker or command died while it waited or ran.

**The API** (``apply_rows``) takes typed rows (``parse_json_row``) all or nothing: any rejection
refuses the whole request (``PlacementRefused``, every rejection listed) and nothing is written.

Applying a row: a new borrower is created with the lender's customer number
(``external_reference``); a known one gets the row's details where they differ. A new account opens
with one ledger entry per non-zero component; an existing one gets an adjustment per component
whose balance as of the row's balance date differs (entries Accord made after that date are kept),
its changed fields, its ``placed_as_of``, and is reopened if it was recalled. Days past due and
the stage follow from the oldest unpaid due date and the policy in force. Each account and
borrower created or changed gets one audit event (``account.placed``,
``account.placement_updated``, ``borrower.placed``, ``borrower.placement_updated``), each ledger
entry has the cause ``placement:<import id>`` and a memo naming the file and the line. A row that
changes nothing writes nothing, so the same file placed twice changes nothing the second time.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import json
import logging
import os
import queue
import tempfile
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol, cast

# openpyxl reads the workbook's XML through defusedxml (a dependency for that); an entity bomb is
# refused with a ValueError.
from defusedxml.ElementTree import ParseError
from flask import g, has_request_context, request
from sqlalchemy import (
    JSON,
    ColumnElement,
    Select,
    Table,
    bindparam,
    event,
    func,
    insert,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator

from portal.bulk import bulk_job
from portal.db import among, utcnow
from portal.integrations.storage import Storage
from portal.models import (
    Account,
    AuditEvent,
    Borrower,
    Creditor,
    LedgerEntry,
    PlacementImport,
    PlacementRejection,
)
from portal.models.placements import MAX_STORED_REJECTIONS
from portal.services import audit, integration_events
from portal.services import policy as policy_service
from portal.services.audit import SYSTEM, Actor
from workflows.collections import days_past_due, next_stage
from workflows.errors import DomainError
from workflows.ledger import EntryKind
from workflows.money import Component
from workflows.personal_data import redact
from workflows.placements import (
    ACCOUNT_FIELDS,
    BORROWER_FIELDS,
    FieldError,
    PlacedState,
    PlacementChange,
    PlacementRow,
    check_header,
    parse_json_row,
    parse_text_row,
    plan_change,
)
from workflows.policy import Policy

log = logging.getLogger(__name__)

CHUNK_ROWS = 2000
"""Rows planned and written together: one query per kind of existing row, one statement per write."""
MAX_REASON_LENGTH = 500
_XLSX_MAGIC = b"PK\x03\x04"
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # an old Excel (.xls) workbook
_SNIFF_BYTES = 8192
_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "vertical bar"}
_MESSAGE_LENGTH = 500
_REFERENCE_LENGTH = 64

A = cast(Table, Account.__table__)
B = cast(Table, Borrower.__table__)
L = cast(Table, LedgerEntry.__table__)
E = cast(Table, AuditEvent.__table__)
R = cast(Table, PlacementRejection.__table__)

_BALANCE_COLUMNS = {
    Component.PRINCIPAL: "principal_balance",
    Component.INTEREST: "interest_balance",
    Component.FEES: "fees_balance",
}
_CHANGE_COLUMNS = {
    "currency_changed": "currency",
    "borrower_changed": "borrower_reference",
    "balance_date_stale": "balance_date",
}
"""The column a refusal of ``plan_change`` is reported against (``balance_negative``: its component)."""
_ENTRY_COLUMNS = (
    "account_id",
    "component",
    "kind",
    "amount",
    "cause",
    "memo",
    "actor_type",
    "actor_id",
    "effective_on",
    "posted_at",
)
"""A placement's ledger entries, as ``_Placer.write`` builds them (the id from the table's default)."""
_EVENT_COLUMNS = (
    "occurred_at",
    "actor_type",
    "actor_id",
    "request_id",
    "ip",
    "action",
    "object_type",
    "object_id",
    "before",
    "after",
)
"""A placement's audit events, as ``_Placer._event`` builds them."""


# --- The public shapes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejection:
    """One problem with one row: the line (a file's line, 1 being the header; the API's index from
    0), the column ("" for the whole row), a stable code and an English sentence."""

    line: int
    column: str
    code: str
    message: str
    account_reference: str | None


class PlacementRefused(DomainError):  # noqa: N818 - the API's name for it
    """The API's rows were refused, all of them: nothing was written. ``rejections`` lists every
    problem."""

    def __init__(self, rejections: list[Rejection]) -> None:
        super().__init__(
            "placement_refused",
            "{count} problem(s) in the rows sent; nothing was placed.",
            count=len(rejections),
        )
        self.rejections = rejections


@dataclass(frozen=True)
class RowOutcome:
    """What placing one row did: ``created``, ``updated`` or ``unchanged`` (account_id is None for
    an account a dry run would create)."""

    line: int
    account_reference: str
    action: str
    account_id: int | None


class _FileRefusedError(DomainError):
    """The file as a whole cannot be placed; ``rejections`` point at the lines concerned."""

    def __init__(
        self, code: str, message: str, *, rejections: Sequence[Rejection] = (), **params: object
    ) -> None:
        super().__init__(code, message, **params)
        self.rejections = list(rejections)


def _rejection(line: int, error: FieldError, reference: str | None) -> Rejection:
    return Rejection(
        line=line,
        column=error.column[:_REFERENCE_LENGTH],
        code=error.code,
        message=error.text()[:_MESSAGE_LENGTH],
        account_reference=reference[:_REFERENCE_LENGTH] if reference else None,
    )


# --- Reading a file ------------------------------------------------------------------------------


class _Source(Protocol):
    """A file's records: (line, cells) for every non-blank record, the header first."""

    encoding: str | None
    exact_width: bool
    """Whether every record must have as many fields as the header (CSV); a sheet's row may
    leave trailing cells empty."""

    def records(self) -> Iterator[tuple[int, list[str]]]: ...


def _blank(cells: Sequence[str]) -> bool:
    return not "".join(cells).strip()


class _CsvSource:
    exact_width = True

    def __init__(self, path: Path, encoding: str) -> None:
        self.path = path
        self.encoding = encoding

    def records(self) -> Iterator[tuple[int, list[str]]]:
        codec = "utf-8-sig" if self.encoding in {"utf-8", "utf-8-sig"} else self.encoding
        with self.path.open(encoding=codec, errors="strict", newline="") as stream:
            reader = csv.reader(stream, strict=True)
            first = True
            while True:
                start = reader.line_num + 1
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as error:
                    raise _FileRefusedError(
                        "csv_malformed",
                        "The record starting on line {line} is not valid CSV ({reason}): check its quotes.",
                        line=start,
                        reason=str(error),
                        rejections=[
                            Rejection(
                                start,
                                "",
                                "csv_malformed",
                                f"The record starting on line {start} is not valid CSV ({error}).",
                                None,
                            )
                        ],
                    ) from error
                if first and cells and cells[0].startswith("\ufeff"):
                    cells[0] = cells[0][1:]  # a GB18030 byte order mark
                if _blank(cells):
                    continue
                first = False
                yield start, cells


class _XlsxSource:
    """The first sheet of a workbook, read once (at most ``max_rows`` + 1 non-blank rows are kept).

    Cells become the text a CSV would hold: a date is written ISO (``2026-11-30``), a number
    without a fraction without ``.0``, any other number by the ``repr`` of its float — so money is
    best kept in text cells, as a float cannot hold every amount exactly (a sum computed by the
    sheet may come out as ``0.30000000000000004``, which is refused, not rounded)."""

    encoding = None
    exact_width = False

    def __init__(self, path: Path, max_rows: int) -> None:
        import openpyxl
        from openpyxl.utils.exceptions import InvalidFileException

        self.rows: list[tuple[int, list[str]]] = []
        try:
            with warnings.catch_warnings():
                # Styles and extensions openpyxl cannot read do not matter to the values.
                warnings.simplefilter("ignore", UserWarning)
                workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
                try:
                    sheet = workbook.worksheets[0]
                    for line, values in enumerate(sheet.iter_rows(min_row=1, values_only=True), start=1):
                        cells = [_cell_text(value) for value in values]
                        while cells and not cells[-1].strip():
                            cells.pop()
                        if not cells:
                            continue
                        self.rows.append((line, cells))
                        if len(self.rows) > max_rows + 1:
                            break
                finally:
                    workbook.close()
        except (
            InvalidFileException,
            zipfile.BadZipFile,
            KeyError,
            IndexError,
            ValueError,
            TypeError,
            OSError,
            ParseError,
        ) as error:
            raise _FileRefusedError(
                "xlsx_unreadable",
                "The file is not an Excel workbook (.xlsx) that can be read: save it again as .xlsx "
                "or as CSV.",
            ) from error

    def records(self) -> Iterator[tuple[int, list[str]]]:
        return iter(self.rows)


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _csv_encoding(path: Path) -> str:
    """``utf-8-sig`` (a byte order mark), ``utf-8`` or ``gb18030``: the first that decodes the
    whole file strictly."""
    with path.open("rb") as stream:
        bom = stream.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8
    for encoding in ("utf-8-sig" if bom else "utf-8", "gb18030"):
        decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        try:
            with path.open("rb") as stream:
                while chunk := stream.read(1 << 20):
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        return encoding
    raise _FileRefusedError(
        "encoding_unknown",
        "The file is neither UTF-8 nor GB18030 text: save it as CSV UTF-8.",
    )


def _open(path: Path, *, max_rows: int, max_bytes: int | None) -> _Source:
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise _FileRefusedError(
            "file_too_large",
            "The file has {size} bytes; at most {max_bytes} are accepted: split it.",
            size=size,
            max_bytes=max_bytes,
        )
    if size == 0:
        raise _FileRefusedError("file_empty", "The file is empty.")
    with path.open("rb") as stream:
        head = stream.read(_SNIFF_BYTES)
    if head.startswith(_XLSX_MAGIC):
        return _XlsxSource(path, max_rows)
    if head.startswith(_OLE2_MAGIC):
        raise _FileRefusedError(
            "format_unsupported",
            "This is an old Excel workbook (.xls): save it as .xlsx or as CSV UTF-8.",
        )
    if b"\x00" in head:
        raise _FileRefusedError(
            "format_unsupported", "The file is not a CSV or XLSX file (it holds binary data)."
        )
    return _CsvSource(path, _csv_encoding(path))


@dataclass(frozen=True)
class _Scanned:
    header: list[str]
    header_line: int
    rows: int


def _scan(source: _Source, *, max_rows: int) -> _Scanned:
    """The first pass: the header judged, the rows counted (refused as soon as there are too many)."""
    records = source.records()
    first = next(records, None)
    if first is None:
        raise _FileRefusedError("file_empty", "The file has no header and no rows.")
    header_line, header = first
    _check_header(header_line, header)
    rows = 0
    for _record in records:
        rows += 1
        if rows > max_rows:
            raise _FileRefusedError(
                "too_many_rows",
                "The file has more than {max_rows} rows: split it into files of at most {max_rows}.",
                max_rows=max_rows,
            )
    if rows == 0:
        raise _FileRefusedError("no_rows", "The file has a header but no rows.")
    return _Scanned([name.strip().lower() for name in header], header_line, rows)


def _check_header(line: int, header: list[str]) -> None:
    if len(header) == 1:
        for delimiter, name in _OTHER_DELIMITERS.items():
            if delimiter in header[0]:
                message = (
                    f"The columns are separated by a {name}: save the file as CSV with commas "
                    "(Excel: CSV UTF-8)."
                )
                raise _FileRefusedError(
                    "delimiter_wrong",
                    "The columns are separated by a {delimiter}: save the file as CSV with commas "
                    "(Excel: CSV UTF-8).",
                    delimiter=name,
                    rejections=[Rejection(line, "", "delimiter_wrong", message, None)],
                )
    errors = check_header(header)
    if errors:
        raise _FileRefusedError(
            "header_invalid",
            "The header has {count} problem(s): {first}",
            count=len(errors),
            first=errors[0].text(),
            rejections=[_rejection(line, error, None) for error in errors],
        )


# --- Checking rows against each other -------------------------------------------------------------


class _Report:
    """The rejections of one import: every rejected row counted, the first MAX_STORED_REJECTIONS
    problems kept."""

    def __init__(self) -> None:
        self.rejections: list[Rejection] = []
        self.rows = 0

    def reject(self, line: int, errors: Sequence[FieldError], reference: str | None) -> None:
        self.rows += 1
        room = MAX_STORED_REJECTIONS - len(self.rejections)
        self.rejections += [_rejection(line, error, reference) for error in errors[: max(room, 0)]]


class _FileChecks:
    """The rules between rows of one file (or request): an account reference once; a borrower
    reference with one set of borrower details."""

    def __init__(self) -> None:
        self.accounts: dict[str, int] = {}
        self.borrowers: dict[str, tuple[int, dict[str, object]]] = {}

    def judge(
        self, report: _Report, line: int, reference: str | None, parsed: PlacementRow | list[FieldError]
    ) -> PlacementRow | None:
        """The row if it passes its own rules and those between rows; else None, its problems
        reported."""
        duplicate = self.claim(line, reference)
        if isinstance(parsed, list):
            report.reject(line, [*parsed, duplicate] if duplicate else parsed, reference)
            return None
        conflict = duplicate or self.borrower(line, parsed)
        if conflict is not None:
            report.reject(line, [conflict], reference)
            return None
        return parsed

    def claim(self, line: int, reference: str | None) -> FieldError | None:
        """The first row naming an account reference holds it, whatever becomes of that row."""
        if not reference:
            return None
        first = self.accounts.setdefault(reference, line)
        if first == line:
            return None
        return FieldError.from_error(
            "account_reference",
            DomainError(
                "reference_duplicated",
                "The account {reference} is already on line {first_line} of this file.",
                reference=reference,
                first_line=first,
            ),
        )

    def borrower(self, line: int, row: PlacementRow) -> FieldError | None:
        fields = row.borrower_fields()
        first = self.borrowers.setdefault(row.borrower_reference, (line, fields))
        if first[0] == line or first[1] == fields:
            return None
        differ = [name for name in BORROWER_FIELDS if first[1].get(name) != fields.get(name)]
        return FieldError.from_error(
            "borrower_reference",
            DomainError(
                "borrower_conflict",
                "The borrower {reference} is given with other details on line {first_line} ({fields}).",
                reference=row.borrower_reference,
                first_line=first[0],
                fields=", ".join(differ),
            ),
        )


# --- Planning and writing -------------------------------------------------------------------------


@dataclass
class _Counts:
    accepted: int = 0
    rejected: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    borrowers_created: int = 0
    borrowers_updated: int = 0
    adjustments: int = 0


@dataclass
class _AccountPlan:
    line: int
    row: PlacementRow
    change: PlacementChange
    balances: dict[Component, int]
    """The cached balances after the change's entries."""
    is_new: bool
    account_id: int | None = None
    version: int | None = None
    values: dict[str, object] = field(default_factory=dict)
    """What an update writes: every column a placement sets (the same keys for every row)."""
    before: dict[str, object] = field(default_factory=dict)
    after: dict[str, object] = field(default_factory=dict)

    @property
    def action(self) -> str:
        if self.is_new:
            return "created"
        return "updated" if self.after else "unchanged"


@dataclass
class _BorrowerPlan:
    reference: str
    fields: dict[str, object]
    borrower_id: int | None = None
    before: dict[str, object] = field(default_factory=dict)
    after: dict[str, object] = field(default_factory=dict)


@dataclass
class _ChunkPlan:
    accounts: list[_AccountPlan] = field(default_factory=list)
    new_borrowers: list[_BorrowerPlan] = field(default_factory=list)
    changed_borrowers: list[_BorrowerPlan] = field(default_factory=list)
    rejections: list[tuple[int, list[FieldError], str]] = field(default_factory=list)


def _json(values: Mapping[str, object]) -> dict[str, object]:
    return {
        name: value.isoformat() if isinstance(value, dt.date) else value for name, value in values.items()
    }


def _changed(
    before: Mapping[str, object], after: Mapping[str, object]
) -> tuple[dict[str, object], dict[str, object]]:
    """The fields whose value differs: their values before, and after."""
    names = [name for name in after if before.get(name) != after[name]]
    return {name: before.get(name) for name in names}, {name: after[name] for name in names}


def _balances_after(before: Mapping[Component, int], change: PlacementChange) -> dict[Component, int]:
    """The balances once the change's entries are posted. ``plan_change`` has already put them
    through ``workflows.ledger`` (each entry's sign, and no balance below zero after any of them),
    so here they are only added up."""
    balances = {component: before.get(component, 0) for component in _BALANCE_COLUMNS}
    for _kind, posting in change.postings:
        balances[posting.component] += posting.amount
    return balances


def _insert_rows(
    session: Session,
    table: Table,
    rows: Iterable[dict[str, Any]],
    *,
    ids: bool = False,
    waiting: threading.Event | None = None,
) -> list[int]:
    """INSERT ``rows`` (every row the same keys, every NOT NULL column given) in the session's
    transaction; with ``ids`` (``rows`` then a sequence) the new primary keys, in the rows' order.

    On PostgreSQL the ids are taken from the table's sequence first and the rows go in by
    ``COPY``: an executemany, or an INSERT of many VALUES, costs tens of microseconds a row in the
    driver (psycopg parses every multi-row statement's text afresh), COPY a few. Rows given as a
    generator are built while the copy runs: the server stores each part sent while the next is
    built, instead of the whole table's rows after all are built. ``waiting`` is set while the end
    of the copy is waited for (the server checks the foreign keys of all its rows then), for
    another thread to use that time (``_Judge``). Elsewhere a Core executemany (SQLite:
    ``RETURNING`` for the ids)."""
    connection = session.connection()
    if connection.dialect.name != "postgresql" or ids:
        listed = list(rows)
        if not listed:
            return []
        rows = listed
    if connection.dialect.name != "postgresql":
        if not ids:
            connection.execute(insert(table), listed)
            return []
        returned = connection.execute(
            insert(table).returning(table.c.id, sort_by_parameter_order=True), listed
        )
        return [row_id for (row_id,) in returned]
    pending = iter(rows)
    first = next(pending, None)
    if first is None:
        return []
    new_ids: list[int] = []
    if ids:
        new_ids = list(
            connection.execute(
                select(func.nextval(func.pg_get_serial_sequence(table.name, "id"))).select_from(
                    func.generate_series(1, len(listed))
                )
            ).scalars()
        )
    names = list(first)
    # One C call a row for the values in column order.
    in_order = itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],))
    values = map(in_order, chain((first,), pending))
    if ids:
        _insert_values(session, table, ["id", *names], map(_prepend, new_ids, values), waiting=waiting)
    else:
        _insert_values(session, table, names, values, waiting=waiting)
    return new_ids


def _prepend(first: object, rest: Sequence[object]) -> tuple[object, ...]:
    return (first, *rest)


def _insert_values(
    session: Session,
    table: Table,
    names: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    waiting: threading.Event | None = None,
) -> None:
    """INSERT ``rows`` given as values in the order of ``names`` (see ``_insert_rows``): what the
    bulk writes of many rows build directly, no dict a row."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        listed = [dict(zip(names, row, strict=True)) for row in rows]
        if listed:
            connection.execute(insert(table), listed)
        return
    processors = _bind_processors(table, names, connection.dialect)
    quoted = ", ".join(f'"{name}"' for name in names)
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        try:
            with cursor.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
                for row in rows:
                    if processors:
                        converted = list(row)
                        for position, process in processors:
                            converted[position] = process(converted[position])
                        copy.write_row(converted)
                    else:
                        copy.write_row(row)
                if waiting is not None:
                    waiting.set()
        finally:
            if waiting is not None:
                waiting.clear()


def _bind_processors(table: Table, names: Sequence[str], dialect: Dialect) -> list[tuple[int, Any]]:
    """(position, how a value is made ready for the database) for every column whose Python value is
    not what is stored: a JSON column's value becomes its JSON text, a ``TypeDecorator``'s goes
    through its ``process_bind_param`` (times in UTC, sealed personal data), as Core would do it —
    a COPY bypasses SQLAlchemy's own bind processing."""
    found: list[tuple[int, Any]] = []
    for position, name in enumerate(names):
        column_type = table.c[name].type
        if isinstance(column_type, TypeDecorator):
            found.append((position, _bound(column_type, dialect)))
        elif isinstance(column_type, JSON):
            found.append((position, _json_text))
    return found


def _bound(column_type: TypeDecorator[Any], dialect: Dialect) -> Callable[[object], object]:
    def process(value: object) -> object:
        return column_type.process_bind_param(value, dialect)

    return process


def _json_text(value: object) -> str | None:
    return None if value is None else json.dumps(value)


class _Placer:
    """Plans rows against the database in chunks and writes them, in the caller's transaction."""

    def __init__(
        self,
        session: Session,
        *,
        creditor_id: int,
        actor: Actor,
        today: dt.date,
        memo: Callable[[int], str],
        lock: bool,
    ) -> None:
        self.session = session
        self.creditor_id = creditor_id
        self.actor = actor
        self.today = today
        self.memo = memo
        self.policy: Policy = policy_service.current(session, today)
        self.postgresql = postgresql = session.get_bind().dialect.name == "postgresql"
        # Row locks (PostgreSQL) on what is to be written; a dry run writes nothing and takes none.
        self.lock = lock and postgresql
        self.counts = _Counts()
        # Borrowers this import has met (created, changed or found), by reference: a later row
        # of the same borrower (the same details: _FileChecks) has nothing more to do. The id is
        # None while the borrower is only planned (a dry run, or a request not yet written).
        self.borrowers: dict[str, int | None] = {}
        self._shared: tuple[Any, ...] = ()
        """The values the audit events of the chunk being written share (``_shared_event_fields``)."""
        self.waiting: threading.Event | None = None
        """Set while the end of a copy is waited for (``_insert_rows``)."""

    # Reading what exists

    def _among(self, column: Any, values: Sequence[object]) -> ColumnElement[bool]:
        return among(column, values, dialect=self.session.get_bind().dialect.name)

    def _existing_borrowers(self, references: Iterable[str]) -> dict[str, dict[str, Any]]:
        # Not set(references) - self.borrowers.keys(): that walks every borrower met so far.
        met = self.borrowers
        wanted = sorted({reference for reference in references if reference not in met})
        if not wanted:
            return {}
        stmt = self._by_reference(
            B, [B.c.id, B.c.external_reference, *(B.c[name] for name in BORROWER_FIELDS)], wanted
        )
        return {row.external_reference: dict(row._mapping) for row in self.session.execute(stmt)}

    def _existing_accounts(self, references: Sequence[str]) -> dict[str, dict[str, Any]]:
        # Locked (when self.lock): a concurrent change of the same account waits for this import;
        # one made from a copy read before it fails on the version _update_accounts bumps. The
        # borrower's reference is read by its primary key, not joined: it is not locked, and no
        # join order is left to plan from statistics that miss this import's own rows.
        columns = [
            A.c.id,
            A.c.external_reference,
            A.c.currency,
            A.c.placed_as_of,
            A.c.status,
            A.c.recalled_at,
            A.c.version,
            A.c.dpd,
            A.c.stage,
            *(A.c[name] for name in ACCOUNT_FIELDS),
            *(A.c[name] for name in _BALANCE_COLUMNS.values()),
            A.c.borrower_id,
            select(B.c.external_reference)
            .where(B.c.id == A.c.borrower_id)
            .scalar_subquery()
            .label("borrower_reference"),
        ]
        stmt = self._by_reference(A, columns, references)
        return {row.external_reference: dict(row._mapping) for row in self.session.execute(stmt)}

    def _by_reference(self, table: Table, columns: Sequence[Any], references: Sequence[str]) -> Select[Any]:
        """The lender's rows of ``table`` (borrowers or accounts) with these external references,
        locked when the import writes.

        On PostgreSQL one probe of the ``(creditor_id, external_reference)`` index per reference:
        the references unnested, each joined LATERAL to its row. With ``external_reference =
        ANY(:array)`` the planner chose by its statistics, which know nothing of the rows this
        import has written so far in its own transaction: it expected a handful of rows for the
        lender and read all of them to filter by the array — 12-15 ms a chunk of 2,000, growing
        with the import, against 2-4 ms for the probes. Elsewhere ``IN``."""
        mine = table.c.creditor_id == self.creditor_id
        if not self.postgresql:
            return select(*columns).where(mine, self._among(table.c.external_reference, references))
        wanted = (
            func.unnest(bindparam(None, list(references), type_=ARRAY(table.c.external_reference.type)))
            .table_valued("reference")
            .render_derived(name="wanted")
        )
        probe = select(*columns).where(mine, table.c.external_reference == wanted.c.reference)
        if self.lock:
            probe = probe.with_for_update()
        found = probe.lateral("found")
        return select(found).select_from(wanted).join(found, true())

    def _ledger_as_of(self, accounts: Mapping[int, dt.date]) -> dict[int, dict[Component, int]]:
        """Each account's ledger sum per component, counting the entries effective on or before
        its own date (one query per distinct date: a file usually has one balance date)."""
        sums: dict[int, dict[Component, int]] = {account_id: {} for account_id in accounts}
        by_day: dict[dt.date, list[int]] = {}
        for account_id, day in accounts.items():
            by_day.setdefault(day, []).append(account_id)
        for day, ids in by_day.items():
            stmt = (
                select(L.c.account_id, L.c.component, func.sum(L.c.amount))
                .where(self._among(L.c.account_id, ids), L.c.effective_on <= day)
                .group_by(L.c.account_id, L.c.component)
            )
            for account_id, component, total in self.session.execute(stmt):
                sums[account_id][Component(component)] = int(total)
        return sums

    # Planning

    @contextmanager
    def _custom_plans(self) -> Iterator[None]:
        """psycopg prepares a statement run five times; PostgreSQL may then plan the lookups by
        2,000 references once for any values, by a scan comparing every row with each of them
        (0.5 s a chunk instead of 20 ms). Within this block each lookup is planned with its
        values. Only within it: the foreign-key checks of the rows written afterwards are
        prepared statements too, and planning each of them afresh doubled the server's work."""
        if not self.postgresql:
            yield
            return
        previous = self.session.scalar(text("SELECT current_setting('plan_cache_mode')"))
        self.session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        yield
        self.session.execute(text("SELECT set_config('plan_cache_mode', :mode, true)"), {"mode": previous})

    def plan(self, rows: Sequence[tuple[int, PlacementRow]]) -> _ChunkPlan:
        """Judge a chunk of valid rows against the database (reads only)."""
        with self._custom_plans():
            return self._plan(rows)

    def _plan(self, rows: Sequence[tuple[int, PlacementRow]]) -> _ChunkPlan:
        plan = _ChunkPlan()
        existing = self._existing_accounts([row.account_reference for _, row in rows])
        ledger = self._ledger_as_of(
            {
                existing[row.account_reference]["id"]: row.balance_date
                for _, row in rows
                if row.account_reference in existing
            }
        )
        for line, row in rows:
            found = existing.get(row.account_reference)
            try:
                plan.accounts.append(self._plan_account(line, row, found, ledger))
            except DomainError as error:
                column = _CHANGE_COLUMNS.get(error.code) or str(error.params.get("component", ""))
                plan.rejections.append((line, [FieldError.from_error(column, error)], row.account_reference))
        accepted = [account.row for account in plan.accounts]
        known = self._existing_borrowers(row.borrower_reference for row in accepted)
        for row in accepted:
            reference = row.borrower_reference
            if reference in self.borrowers:
                continue
            fields = row.borrower_fields()
            current = known.get(reference)
            if current is None:
                plan.new_borrowers.append(_BorrowerPlan(reference, fields))
                self.borrowers[reference] = None
                continue
            self.borrowers[reference] = current["id"]
            before, after = _changed(current, fields)
            if after:
                plan.changed_borrowers.append(_BorrowerPlan(reference, fields, current["id"], before, after))
        return plan

    def _plan_account(
        self,
        line: int,
        row: PlacementRow,
        found: Mapping[str, Any] | None,
        ledger: Mapping[int, Mapping[Component, int]],
    ) -> _AccountPlan:
        if found is None:
            change = plan_change(row, None)
            return _AccountPlan(line, row, change, _balances_after({}, change), is_new=True)
        now = {component: int(found[column]) for component, column in _BALANCE_COLUMNS.items()}
        state = PlacedState(
            borrower_reference=found["borrower_reference"] or "(none)",
            currency=found["currency"],
            placed_as_of=found["placed_as_of"],
            balances=now,
            ledger_as_of=ledger[found["id"]],
        )
        change = plan_change(row, state)
        balances = _balances_after(now, change)
        wanted: dict[str, object] = {
            **row.account_fields(),
            **{_BALANCE_COLUMNS[component]: amount for component, amount in balances.items()},
            "placed_as_of": row.balance_date,
            "status": "open" if found["status"] == "recalled" else found["status"],
            "recalled_at": None if found["status"] == "recalled" else found["recalled_at"],
            "dpd": found["dpd"],
            "stage": found["stage"],
        }
        if row.oldest_unpaid_due_on != found["oldest_unpaid_due_on"]:
            dpd = days_past_due(row.oldest_unpaid_due_on, self.today)
            wanted["dpd"], wanted["stage"] = dpd, next_stage(found["stage"], dpd, self.policy)
        before, after = _changed(found, wanted)
        return _AccountPlan(
            line,
            row,
            change,
            balances,
            is_new=False,
            account_id=found["id"],
            version=found["version"],
            values=wanted,
            before=before,
            after=after,
        )

    def count(self, plan: _ChunkPlan) -> list[RowOutcome]:
        """Count what the chunk does (or would do) and say it row by row."""
        counts = self.counts
        counts.borrowers_created += len(plan.new_borrowers)
        counts.borrowers_updated += len(plan.changed_borrowers)
        outcomes = []
        for account in plan.accounts:
            action = account.action
            counts.accepted += 1
            counts.created += action == "created"
            counts.updated += action == "updated"
            counts.unchanged += action == "unchanged"
            if not account.is_new:
                counts.adjustments += sum(kind is EntryKind.ADJUSTMENT for kind, _ in account.change.postings)
            outcomes.append(
                RowOutcome(account.line, account.row.account_reference, action, account.account_id)
            )
        return outcomes

    # Writing

    def write(self, plan: _ChunkPlan, import_id: int) -> None:
        """Write a planned chunk set-based: borrowers, accounts, ledger entries, audit events."""
        self._shared = self._shared_event_fields()
        # The entries and the audit events are generators: built while their copies run.
        events = [self._write_borrowers(plan, import_id)]
        created = [account for account in plan.accounts if account.action == "created"]
        updated = [account for account in plan.accounts if account.action == "updated"]
        if created:
            self._insert_accounts(created)
            events.append(self._created_event(account, import_id) for account in created)
        if updated:
            self._update_accounts(updated)
            events.append(
                self._event(
                    action="account.placement_updated",
                    object_type="account",
                    object_id=account.account_id,
                    before=account.before,
                    after=account.after,
                    import_id=import_id,
                )
                for account in updated
            )
        cause, posted_at, actor_type, actor_id = (
            f"placement:{import_id}",
            utcnow(),
            self.actor.type,
            self.actor.id,
        )
        entries = (
            (
                account.account_id,
                posting.component.value,
                kind.value,
                posting.amount,
                cause,
                self.memo(account.line),
                actor_type,
                actor_id,
                account.row.balance_date,
                posted_at,
            )
            for account in plan.accounts
            for kind, posting in account.change.postings
        )
        _insert_values(self.session, L, _ENTRY_COLUMNS, entries, waiting=self.waiting)
        _insert_values(self.session, E, _EVENT_COLUMNS, chain.from_iterable(events), waiting=self.waiting)

    def _write_borrowers(self, plan: _ChunkPlan, import_id: int) -> Iterator[tuple[Any, ...]]:
        """Insert the new borrowers (their ids noted for their accounts), update the changed ones;
        their audit events, to be built as they are written."""
        events: list[Iterable[tuple[Any, ...]]] = []
        if plan.new_borrowers:
            now = utcnow()
            new_ids = _insert_rows(
                self.session,
                B,
                [
                    {
                        "creditor_id": self.creditor_id,
                        "external_reference": borrower.reference,
                        **borrower.fields,
                        "session_version": 1,
                        "created_at": now,
                    }
                    for borrower in plan.new_borrowers
                ],
                ids=True,
                waiting=self.waiting,
            )
            for borrower, borrower_id in zip(plan.new_borrowers, new_ids, strict=True):
                self.borrowers[borrower.reference] = borrower_id
            events.append(
                self._event(
                    action="borrower.placed",
                    object_type="borrower",
                    object_id=self.borrowers[borrower.reference],
                    before=None,
                    after={"external_reference": borrower.reference, **borrower.fields},
                    import_id=import_id,
                )
                for borrower in plan.new_borrowers
            )
        if plan.changed_borrowers:
            self.session.execute(
                update(B).where(B.c.id == bindparam("_id")),
                [{"_id": borrower.borrower_id, **borrower.fields} for borrower in plan.changed_borrowers],
            )
            events.append(
                self._event(
                    action="borrower.placement_updated",
                    object_type="borrower",
                    object_id=borrower.borrower_id,
                    before=borrower.before,
                    after=borrower.after,
                    import_id=import_id,
                )
                for borrower in plan.changed_borrowers
            )
        return chain.from_iterable(events)

    def _insert_accounts(self, accounts: Sequence[_AccountPlan]) -> None:
        now = utcnow()
        rows = []
        for account in accounts:
            row = account.row
            dpd = days_past_due(row.oldest_unpaid_due_on, self.today)
            account.values = {
                "creditor_id": self.creditor_id,
                "borrower_id": self.borrowers[row.borrower_reference],
                "external_reference": row.account_reference,
                "currency": row.currency,
                **row.account_fields(),
                **{_BALANCE_COLUMNS[component]: amount for component, amount in account.balances.items()},
                "placed_as_of": row.balance_date,
                "dpd": dpd,
                "stage": next_stage("current", dpd, self.policy),
                "status": "open",
                "credit_balance": 0,
                "version": 1,
                "created_at": now,
                "updated_at": now,
            }
            rows.append(account.values)
        new_ids = _insert_rows(self.session, A, rows, ids=True, waiting=self.waiting)
        for account, account_id in zip(accounts, new_ids, strict=True):
            account.account_id = account_id

    def _update_accounts(self, accounts: Sequence[_AccountPlan]) -> None:
        """Every placed column of each account, where its version is still the one planned from
        (bumped, so a concurrent ORM change of the account fails instead of being lost)."""
        now = utcnow()
        result = self.session.execute(
            update(A).where(A.c.id == bindparam("_id"), A.c.version == bindparam("_version")),
            [
                {
                    "_id": account.account_id,
                    "_version": account.version,
                    **account.values,
                    "version": cast(int, account.version) + 1,
                    "updated_at": now,
                }
                for account in accounts
            ],
        )
        if result.rowcount != len(accounts):  # type: ignore[attr-defined]
            raise RuntimeError(
                "An account changed while the placement was being applied: nothing was placed; "
                "import the file again."
            )

    def _created_event(self, account: _AccountPlan, import_id: int) -> tuple[Any, ...]:
        values = account.values
        after = {
            "external_reference": values["external_reference"],
            "borrower_reference": account.row.borrower_reference,
            "currency": values["currency"],
            **{name: values[name] for name in ACCOUNT_FIELDS},
            **{column: values[column] for column in _BALANCE_COLUMNS.values()},
            "placed_as_of": values["placed_as_of"],
            "dpd": values["dpd"],
            "stage": values["stage"],
        }
        return self._event(
            action="account.placed",
            object_type="account",
            object_id=account.account_id,
            before=None,
            after=after,
            import_id=import_id,
        )

    def _event(
        self,
        *,
        action: str,
        object_type: str,
        object_id: int | None,
        before: Mapping[str, object] | None,
        after: Mapping[str, object],
        import_id: int,
    ) -> tuple[Any, ...]:
        """An audit event as ``audit.record`` writes it, as a row (``_EVENT_COLUMNS``) for one bulk
        INSERT: the one place a placement's audit events are built. As there, the sensitive fields
        of the object's table (``object_type``) are recorded as set or empty, never by value
        (``personal_data.redact``)."""
        return (
            *self._shared,
            action,
            object_type,
            str(object_id),
            redact(object_type, _json(before)) if before is not None else None,
            redact(object_type, _json(after)) | {"placement_import": import_id},
        )

    def _shared_event_fields(self) -> tuple[Any, ...]:
        """What every audit event of a chunk holds alike (the first five of ``_EVENT_COLUMNS``): the
        time, the actor, the request."""
        in_request = has_request_context()
        return (
            utcnow(),
            self.actor.type,
            self.actor.id,
            g.get("request_id") if in_request else None,
            request.remote_addr if in_request else None,
        )


# --- The import of a file ------------------------------------------------------------------------


def _digest(path: Path) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def _text_row(header: Sequence[str], cells: Sequence[str]) -> dict[str, str]:
    return dict(zip(header, cells, strict=False))


def _store_rejections(session: Session, import_id: int, rejections: Sequence[Rejection]) -> None:
    rows = [
        {
            "import_id": import_id,
            "line": rejection.line,
            "column": rejection.column,
            "code": rejection.code,
            "message": rejection.message,
            "account_reference": rejection.account_reference,
        }
        for rejection in rejections[:MAX_STORED_REJECTIONS]
    ]
    _insert_rows(session, R, rows)


def _finish(session: Session, record: PlacementImport, actor: Actor, status: str) -> PlacementImport:
    record.status, record.finished_at = status, utcnow()
    audit.record(
        session,
        actor,
        f"placement_import.{status}",
        "placement_import",
        record.id,
        after={
            "creditor_id": record.creditor_id,
            "source": record.source,
            "filename": record.filename,
            "sha256": record.sha256,
            "dry_run": record.dry_run,
            "error_code": record.error_code,
            "rows_total": record.rows_total,
            "rows_accepted": record.rows_accepted,
            "rows_rejected": record.rows_rejected,
            "accounts_created": record.accounts_created,
            "accounts_updated": record.accounts_updated,
            "accounts_unchanged": record.accounts_unchanged,
            "borrowers_created": record.borrowers_created,
            "borrowers_updated": record.borrowers_updated,
            "adjustment_entries": record.adjustment_entries,
        },
    )
    session.commit()
    return record


def _set_counts(record: PlacementImport, counts: _Counts, rows_total: int) -> None:
    record.rows_total = rows_total
    record.rows_accepted = counts.accepted
    record.rows_rejected = counts.rejected
    record.accounts_created = counts.created
    record.accounts_updated = counts.updated
    record.accounts_unchanged = counts.unchanged
    record.borrowers_created = counts.borrowers_created
    record.borrowers_updated = counts.borrowers_updated
    record.adjustment_entries = counts.adjustments


def import_file(
    session: Session,
    *,
    creditor_id: int,
    path: Path,
    filename: str,
    source: str,
    actor: Actor,
    dry_run: bool,
    today: dt.date,
    max_rows: int,
    progress: Callable[[int], None] | None = None,
    counted: Callable[[int], None] | None = None,
    max_bytes: int | None = None,
) -> PlacementImport:
    """Place the accounts of a CSV or XLSX file (see the module docstring); commits.

    Returns the import: ``refused`` (the file as a whole: nothing applied, ``error_code`` says
    why), ``validated`` (a dry run: nothing applied), ``applied``, or ``failed`` (an error of
    ours: nothing applied). Rejected rows are stored as ``PlacementRejection`` (at most
    ``MAX_STORED_REJECTIONS``; the counts cover them all). ``counted`` is told the number of rows
    once the first pass has counted them, ``progress`` the rows judged after each chunk;
    ``max_bytes`` refuses a larger file (``file_too_large``)."""
    record = _new_import(
        session,
        creditor_id=creditor_id,
        path=path,
        filename=filename,
        source=source,
        actor=actor,
        dry_run=dry_run,
        status="running",
    )
    return _run_import(
        session,
        record,
        path,
        actor=actor,
        today=today,
        max_rows=max_rows,
        progress=progress,
        counted=counted,
        max_bytes=max_bytes,
    )


def queue_upload(
    session: Session,
    *,
    creditor_id: int,
    path: Path,
    filename: str,
    actor: Actor,
    dry_run: bool,
    storage: Storage,
    enqueue: Callable[[int], object],
) -> PlacementImport:
    """An uploaded file kept for its job: sealed in ``storage``, its import recorded as ``queued``
    (audited as ``placement_import.queued``) and ``enqueue`` given the import's id; commits.

    The job (``place_queued``) places the file away from the request: a file of the most rows an
    import takes outlasts any web server's timeout. An import that cannot be queued (``enqueue``
    raises: the queue is unreachable) is recorded as failed at once, its file deleted. Returns
    the import as it is now (already finished where the job runs inline, as in the tests)."""
    key = storage.put(path.read_bytes(), suffix=".upload")
    try:
        record = _new_import(
            session,
            creditor_id=creditor_id,
            path=path,
            filename=filename,
            source="upload",
            actor=actor,
            dry_run=dry_run,
            status="queued",
            upload_key=key,
        )
    except BaseException:
        session.rollback()
        storage.delete(key)
        raise
    try:
        enqueue(record.id)
    except Exception:
        log.exception("placement import %s could not be queued", record.id)
        session.rollback()
        message = "The import could not be queued for a worker. Nothing was applied: upload the file again."
        abandon(session, record.id, "import_not_queued", message, storage=storage)
    session.refresh(record)
    return record


def place_queued(
    session: Session, import_id: int, *, storage: Storage, today: dt.date, max_rows: int
) -> PlacementImport | None:
    """Run a queued import (``queue_upload``) and delete its stored file; commits.

    The import is claimed first, ``queued`` → ``running`` in one conditional UPDATE, so the job
    run twice (a retry, two workers) places the file once: the second finds nothing to claim and
    returns None. Once claimed, every outcome is recorded (a file that cannot be read fails the
    import), and the stored file is deleted after it."""
    claimed = session.execute(
        update(PlacementImport)
        .where(PlacementImport.id == import_id, PlacementImport.status == "queued")
        .values(status="running", started_at=utcnow())
    )
    if not claimed.rowcount:  # type: ignore[attr-defined]
        session.commit()  # the UPDATE changed nothing; the caller's transaction ends as always
        return None
    audit.record(
        session,
        SYSTEM,
        "placement_import.started",
        "placement_import",
        import_id,
        before={"status": "queued"},
        after={"status": "running"},
    )
    session.commit()
    record = session.get(PlacementImport, import_id, populate_existing=True)
    assert record is not None
    assert record.upload_key is not None
    key, actor = record.upload_key, Actor(record.actor_type, record.actor_id)
    try:
        data = storage.open(key)
    except FileNotFoundError:
        message = "The uploaded file was no longer stored. Nothing was applied: upload it again."
        return abandon(session, import_id, "upload_missing", message, storage=storage)
    except Exception as error:  # the store unreachable, the file not opening with our keys
        log.exception("placement import %s: its stored file could not be read", import_id)
        message = f"The uploaded file could not be read: {type(error).__name__}: {error}"
        return abandon(session, import_id, "import_failed", message, storage=storage)
    fd, name = tempfile.mkstemp(prefix="accord-placement-", suffix=".upload")  # 0600
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        del data
        record = _run_import(session, record, path, actor=actor, today=today, max_rows=max_rows)
    finally:
        path.unlink(missing_ok=True)
    _forget_upload(session, record, storage)
    return record


def abandon(
    session: Session, import_id: int, code: str, message: str, *, storage: Storage | None = None
) -> PlacementImport | None:
    """A queued or running import that will not finish recorded as ``failed`` with ``code`` and
    ``message`` (nothing of it was applied: an import applies all in one transaction), its stored
    file deleted; commits. None if it had finished already."""
    record = session.get(PlacementImport, import_id, with_for_update=True, populate_existing=True)
    if record is None or record.status not in ("queued", "running"):
        session.rollback()
        return None
    record.error_code, record.error_message = code, message[:_MESSAGE_LENGTH]
    record = _finish(session, record, SYSTEM, "failed")
    if storage is not None:
        _forget_upload(session, record, storage)
    return record


def abandon_stalled(session: Session, *, storage: Storage, older_than: dt.timedelta) -> int:
    """Imports queued or running for longer than ``older_than`` — their worker or command died, as
    an import of the most rows takes minutes — recorded as ``failed`` (``import_interrupted``),
    and the stored files of finished imports that the store failed to delete deleted; commits.
    Returns how many imports were abandoned."""
    stalled = session.scalars(
        select(PlacementImport.id).where(
            PlacementImport.status.in_(("queued", "running")),
            PlacementImport.started_at < utcnow() - older_than,
        )
    ).all()
    message = "The import stopped before it finished (its worker or command ended). Nothing was applied."
    abandoned = sum(
        abandon(session, import_id, "import_interrupted", message, storage=storage) is not None
        for import_id in stalled
    )
    left_behind = session.scalars(  # finished, but the store failed when their file was deleted
        select(PlacementImport).where(
            PlacementImport.status.not_in(("queued", "running")), PlacementImport.upload_key.is_not(None)
        )
    ).all()
    for record in left_behind:
        _forget_upload(session, record, storage)
    session.commit()
    return abandoned


def _forget_upload(session: Session, record: PlacementImport, storage: Storage) -> None:
    """The stored upload of a finished import deleted, and the import no longer naming it. If the
    store fails, the import keeps the key, and ``abandon_stalled`` deletes the file later."""
    if record.upload_key is None:
        return
    try:
        storage.delete(record.upload_key)
    except Exception:
        log.exception("placement import %s: its stored file could not be deleted", record.id)
        return
    record.upload_key = None
    session.commit()


def _new_import(
    session: Session,
    *,
    creditor_id: int,
    path: Path,
    filename: str,
    source: str,
    actor: Actor,
    dry_run: bool,
    status: str,
    upload_key: str | None = None,
) -> PlacementImport:
    sha256, size = _digest(path)
    record = PlacementImport(
        creditor_id=creditor_id,
        source=source,
        filename=filename[:255],
        sha256=sha256,
        size_bytes=size,
        dry_run=dry_run,
        status=status,
        upload_key=upload_key,
        actor_type=actor.type,
        actor_id=actor.id,
    )
    session.add(record)
    if status == "queued":
        session.flush()
        audit.record(
            session,
            actor,
            "placement_import.queued",
            "placement_import",
            record.id,
            after={
                "creditor_id": creditor_id,
                "source": source,
                "filename": record.filename,
                "sha256": sha256,
                "size_bytes": size,
                "dry_run": dry_run,
            },
        )
    session.commit()
    return record


def _run_import(
    session: Session,
    record: PlacementImport,
    path: Path,
    *,
    actor: Actor,
    today: dt.date,
    max_rows: int,
    progress: Callable[[int], None] | None = None,
    counted: Callable[[int], None] | None = None,
    max_bytes: int | None = None,
) -> PlacementImport:
    """Both passes over the file of an import that is ``running`` (see ``import_file``)."""
    record_id, encoding = record.id, None
    try:
        with bulk_job():
            file_source = _open(path, max_rows=max_rows, max_bytes=max_bytes)
            encoding = file_source.encoding
            scanned = _scan(file_source, max_rows=max_rows)
            if counted is not None:
                counted(scanned.rows)
            counts = _place_file(
                session,
                record,
                file_source,
                scanned,
                actor=actor,
                today=today,
                dry_run=record.dry_run,
                progress=progress,
            )
    except _FileRefusedError as refused:
        record = _reloaded(session, record_id)
        record.error_code, record.error_message = refused.code, str(refused)[:_MESSAGE_LENGTH]
        record.encoding = encoding
        _store_rejections(session, record.id, refused.rejections)
        return _finish(session, record, actor, "refused")
    except Exception as error:
        log.exception("placement import %s failed", record_id)
        record = _reloaded(session, record_id)
        record.error_code = "import_failed"
        record.error_message = f"{type(error).__name__}: {error}"[:_MESSAGE_LENGTH]
        record.encoding = encoding
        return _finish(session, record, actor, "failed")
    record.encoding = encoding
    _set_counts(record, counts, scanned.rows)
    return _finish(session, record, actor, "validated" if record.dry_run else "applied")


def _reloaded(session: Session, record_id: int) -> PlacementImport:
    """The import's row in a fresh transaction, whatever the failed one had written."""
    session.rollback()
    record = session.get(PlacementImport, record_id, populate_existing=True)
    assert record is not None
    return record


def _place_file(
    session: Session,
    record: PlacementImport,
    source: _Source,
    scanned: _Scanned,
    *,
    actor: Actor,
    today: dt.date,
    dry_run: bool,
    progress: Callable[[int], None] | None,
) -> _Counts:
    """The second pass, in the session's transaction: every row judged, the accepted applied."""
    filename = record.filename
    placer = _Placer(
        session,
        creditor_id=record.creditor_id,
        actor=actor,
        today=today,
        memo=lambda line: f"Placement {filename}, line {line}"[:200],
        lock=not dry_run,
    )
    judge = _Judge(source, scanned.header, today=today)
    placer.waiting = judge.waiting
    report = _Report()
    with judge.running(), _signalling_statements(session.connection(), judge.waiting):
        for chunk, judged in judge.chunks():
            plan = placer.plan(chunk)
            for line, errors, reference in plan.rejections:
                report.reject(line, errors, reference)
            placer.count(plan)
            if not dry_run:
                placer.write(plan, record.id)
            if progress is not None:
                progress(judged)
    placer.counts.rejected = report.rows + judge.report.rows
    rejections = sorted(judge.report.rejections + report.rejections, key=lambda r: r.line)
    _store_rejections(session, record.id, rejections)
    return placer.counts


@contextmanager
def _signalling_statements(connection: Connection, waiting: threading.Event) -> Iterator[None]:
    """Within the block, ``waiting`` is set while each statement on ``connection`` runs, from the
    moment it is sent until the driver has its result (the lookups, the ids taken from the
    sequences, the updates: the server's time, which the judging thread may use)."""

    def sent(*_: object) -> None:
        waiting.set()

    def answered(*_: object) -> None:
        waiting.clear()

    # A statement that fails leaves it set: the import fails with it, and _Judge.running stops
    # the judging thread (handle_error cannot be heard on one connection).
    hooks = (("before_cursor_execute", sent), ("after_cursor_execute", answered))
    for name, hook in hooks:
        event.listen(connection, name, hook)
    try:
        yield
    finally:
        for name, hook in hooks:
            event.remove(connection, name, hook)


class _Judge:
    """The file's rows read and judged (the row rules, then the rules between rows) in a thread of
    their own, handed over in chunks of accepted rows to the thread that plans and writes them.

    The judging thread works only while the other waits (``waiting`` set): for the next chunk,
    for a statement's result (``_signalling_statements``), or for the server to finish a copy,
    when it checks the foreign keys of all the copy's rows — about 3.5 s of a 19 s import of
    100,000 accounts in which that thread sat idle. At any other moment the two would take turns
    at the interpreter (a thread runs Python only while it holds it), each slowing the other
    down: so the judging thread looks at ``waiting`` before each row and waits for it otherwise.
    When the server answers, the writing thread has the interpreter back within the switch
    interval (``portal.bulk``: 0.5 ms while an import runs). Measured at 100,000 accounts: the
    first import about 2-3 s faster (bench/README.md, session 10).

    Rows are judged in the file's order, one chunk at most ahead of the one being written; the
    judging thread's rejections are its own ``report``. An error in either thread stops both and
    is raised in the writing thread."""

    AHEAD = 1
    """Chunks judged and not yet taken."""

    def __init__(self, source: _Source, header: list[str], *, today: dt.date) -> None:
        self.source, self.header, self.today = source, header, today
        self.report = _Report()
        self.waiting = threading.Event()
        self._handed: queue.Queue[tuple[list[tuple[int, PlacementRow]], int] | BaseException | None] = (
            queue.Queue(maxsize=self.AHEAD)
        )
        self._stop = False
        self._thread = threading.Thread(target=self._work, name="placement-judge", daemon=True)

    @contextmanager
    def running(self) -> Iterator[None]:
        """The judging thread runs within the block; on leaving it, it is stopped and joined."""
        self._thread.start()
        try:
            yield
        finally:
            self._stop = True
            self.waiting.set()
            while self._thread.is_alive():  # let a hand-over blocked on a full queue end
                with suppress(queue.Empty):
                    self._handed.get_nowait()
                self._thread.join(0.01)

    def chunks(self) -> Iterator[tuple[list[tuple[int, PlacementRow]], int]]:
        """Each chunk of accepted rows (line, row) and how many rows were judged for it."""
        while True:
            self.waiting.set()
            try:
                handed = self._handed.get()
            finally:
                self.waiting.clear()
            if handed is None:
                return
            if isinstance(handed, BaseException):
                raise handed
            yield handed

    def _work(self) -> None:
        try:
            self._judge_all()
        except BaseException as error:  # noqa: BLE001 - handed over, raised in the writing thread
            self._hand(error)

    def _hand(self, item: tuple[list[tuple[int, PlacementRow]], int] | BaseException | None) -> None:
        while not self._stop:
            with suppress(queue.Full):
                self._handed.put(item, timeout=0.1)
                return

    def _judge_all(self) -> None:
        checks, report, today, waiting = _FileChecks(), self.report, self.today, self.waiting
        header, width, exact_width = self.header, len(self.header), self.source.exact_width
        records = self.source.records()
        next(records)  # the header, judged by _scan
        chunk: list[tuple[int, PlacementRow]] = []
        judged = 0
        for line, cells in records:
            if not waiting.is_set():
                waiting.wait()
            if self._stop:
                return
            judged += 1
            values = _text_row(header, cells)
            reference = values.get("account_reference", "").strip() or None
            if len(cells) > width or (exact_width and len(cells) != width):
                error = FieldError.from_error(
                    "",
                    DomainError(
                        "field_count",
                        "This line has {found} fields; the header has {expected}.",
                        found=len(cells),
                        expected=width,
                    ),
                )
                report.reject(line, [error], reference)
                continue
            row = checks.judge(report, line, reference, parse_text_row(values, today=today))
            if row is None:
                continue
            chunk.append((line, row))
            if len(chunk) >= CHUNK_ROWS:
                self._hand((chunk, judged))
                chunk, judged = [], 0
        self._hand((chunk, judged))
        self._hand(None)


# --- The API -------------------------------------------------------------------------------------


def apply_rows(
    session: Session,
    *,
    creditor_id: int,
    rows: Sequence[Mapping[str, object]],
    actor: Actor,
    today: dt.date,
) -> tuple[PlacementImport, list[RowOutcome]]:
    """Place the JSON API's rows, all or nothing: any problem with any row (its fields, a reference
    repeated in the request, a borrower given with two sets of details, a refusal of
    ``plan_change``) raises ``PlacementRefused`` listing every problem, and nothing is written.
    Otherwise one transaction writes them with their import (source ``api``; lines are the
    rows' indexes from 0) and commits. No rows at all is ``no_rows``."""
    if not rows:
        raise DomainError("no_rows", "The request has no rows to place.")
    placer = _Placer(
        session,
        creditor_id=creditor_id,
        actor=actor,
        today=today,
        memo=lambda line: f"Placement through the API, row {line}",
        lock=True,
    )
    checks, report = _FileChecks(), _Report()
    valid: list[tuple[int, PlacementRow]] = []
    for line, values in enumerate(rows):
        raw = values.get("account_reference") if isinstance(values, Mapping) else None
        reference = raw.strip() if isinstance(raw, str) else None
        row = checks.judge(report, line, reference, parse_json_row(values, today=today))
        if row is not None:
            valid.append((line, row))
    plans = []
    for start in range(0, len(valid), CHUNK_ROWS):
        plan = placer.plan(valid[start : start + CHUNK_ROWS])
        for line, errors, reference in plan.rejections:
            report.reject(line, errors, reference)
        plans.append(plan)
    if report.rows:
        session.rollback()  # the row locks taken while planning
        raise PlacementRefused(sorted(report.rejections, key=lambda r: r.line))
    body = json.dumps([dict(values) for values in rows], sort_keys=True, default=str).encode()
    record = PlacementImport(
        creditor_id=creditor_id,
        source="api",
        filename="api",
        sha256=hashlib.sha256(body).hexdigest(),
        size_bytes=len(body),
        dry_run=False,
        status="running",
        actor_type=actor.type,
        actor_id=actor.id,
    )
    session.add(record)
    session.flush()
    outcomes: list[RowOutcome] = []
    for plan in plans:
        placer.write(plan, record.id)
        outcomes += placer.count(plan)
    _set_counts(record, placer.counts, len(rows))
    return _finish(session, record, actor, "applied"), outcomes


# --- Recall and reports --------------------------------------------------------------------------


def recall(
    session: Session, *, creditor_id: int, account_reference: str, actor: Actor, reason: str | None
) -> Account:
    """The lender takes an account back: it is ``recalled`` (no more collections), audited, and the
    lender's ``account.recalled`` event is written in the same transaction. Recalling a recalled
    account changes nothing. Commits."""
    reason = (reason or "").strip() or None
    if reason is not None and len(reason) > MAX_REASON_LENGTH:
        raise DomainError(
            "reason_too_long", "Give the reason in at most {maximum} characters.", maximum=MAX_REASON_LENGTH
        )
    account = session.scalar(
        select(Account)
        .where(Account.creditor_id == creditor_id, Account.external_reference == account_reference)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if account is None:
        raise DomainError(
            "account_unknown",
            "This lender has no account {reference}.",
            reference=account_reference[:_REFERENCE_LENGTH],
        )
    if account.status == "recalled":
        session.rollback()
        return account
    with audit.change(session, actor, "account.recalled", account, ["status", "recalled_at"]):
        account.status = "recalled"
        account.recalled_at = utcnow()
    integration_events.emit(session, account, "account.recalled", {"reason": reason})
    session.commit()
    return account


def rejections(
    session: Session, import_id: int, *, offset: int = 0, limit: int = 100
) -> list[PlacementRejection]:
    """An import's stored rejections in line order."""
    return list(
        session.scalars(
            select(PlacementRejection)
            .where(PlacementRejection.import_id == import_id)
            .order_by(PlacementRejection.line, PlacementRejection.id)
            .offset(offset)
            .limit(limit)
        )
    )


def creditor_id_for(session: Session, code: str) -> int:
    """A creditor's id by its code (``creditor_unknown`` when there is none)."""
    found = session.scalar(select(Creditor.id).where(Creditor.code == code))
    if found is None:
        raise DomainError("creditor_unknown", "There is no creditor {creditor}.", creditor=code[:32])
    return found


def summary(record: PlacementImport) -> str:
    """One line on what an import did (or why it did nothing), for the command line and logs."""
    name = f"Placement {record.filename} ({record.status})"
    if record.status in {"refused", "failed"}:
        return f"{name}: {record.error_message} Nothing was applied."
    return (
        f"{name}: {record.rows_total} rows, {record.accounts_created} created, "
        f"{record.accounts_updated} updated, {record.accounts_unchanged} unchanged, "
        f"{record.rows_rejected} rejected; {record.adjustment_entries} adjustment entries; "
        f"{record.borrowers_created} borrowers created, {record.borrowers_updated} updated"
        + (" (a dry run: nothing was applied)." if record.dry_run else ".")
    )
