"""The borrower's own data, as one download: a ZIP with ``data.json`` and the files we keep.

``data.json`` holds the borrower's profile (date of birth and identity number included: it is their
own data), their contact preferences, and for each account its balances and whole ledger
statement, payments with their refunds and chargebacks, money held for them, disputes, plans with
their instalments and the contact history addressed to them; and every request for help with its
income and expenditure statement, messages, evidence file names, offers and agreements. Money is
integer minor units next to its ISO currency code; dates and times are ISO 8601 (times in UTC).

The files: each agreement's PDF (the signed and sealed one once signed) under ``agreements/``, and
the evidence files they uploaded (still kept) under ``evidence/``. Staff-only material — internal
notes, the signing step-up token, Stripe's raw payloads — is not part of it, and every row is
reached through the borrower's own id, so nothing of another borrower's can be in it.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import zipfile
from collections.abc import Iterable
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.db import utcnow
from portal.integrations.storage import Storage, document_storage_from_config
from portal.models import (
    Account,
    Agreement,
    AutopayMandate,
    Borrower,
    ContactAttempt,
    ContactPreference,
    CreditEntry,
    DebtDispute,
    HardshipCase,
    LedgerEntry,
    Payment,
    Plan,
    SavedCard,
)
from portal.services import audit
from portal.services.audit import Actor

SCHEMA_VERSION = 1
PROFILE_FIELDS = (
    "kind",
    "full_name",
    "company_name",
    "registration_number",
    "date_of_birth",
    "national_id",
    "phone",
    "email",
    "language",
    "time_zone",
    "address_line1",
    "address_line2",
    "city",
    "region",
    "postal_code",
    "country",
    "created_at",
)


def _iso(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _pick(obj: Any, names: Iterable[str]) -> dict[str, Any]:
    return {name: _iso(getattr(obj, name)) for name in names}


def _safe_name(name: str) -> str:
    """A file name safe inside a ZIP on any system: no folders, no control characters."""
    cleaned = re.sub(r"[^\w.\- ]+", "_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")
    return cleaned[:100] or "file"


def _account(session: Session, account: Account) -> dict[str, Any]:
    currency = account.currency
    data = _pick(
        account,
        (
            "id",
            "external_reference",
            "product_type",
            "currency",
            "annual_rate_bp",
            "opened_on",
            "status",
            "stage",
            "dpd",
            "overdue_amount",
            "next_due_on",
            "next_due_amount",
            "recalled_at",
        ),
    )
    data["creditor"] = account.creditor.name
    data["balances"] = {
        "currency": currency,
        "principal": account.principal_balance,
        "interest": account.interest_balance,
        "fees": account.fees_balance,
        "total": account.total_balance,
        "credit_held": account.credit_balance,
    }
    data["ledger"] = [
        {
            **_pick(e, ("id", "effective_on", "posted_at", "kind", "component", "amount", "memo")),
            "currency": currency,
        }
        for e in session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.account_id == account.id)
            .order_by(LedgerEntry.effective_on, LedgerEntry.id)
        )
    ]
    data["credit_entries"] = [
        {**_pick(e, ("id", "effective_on", "amount", "cause")), "currency": currency}
        for e in session.scalars(
            select(CreditEntry).where(CreditEntry.account_id == account.id).order_by(CreditEntry.id)
        )
    ]
    data["payments"] = [
        {
            **_pick(
                p,
                (
                    "id",
                    "created_at",
                    "received_on",
                    "purpose",
                    "origin",
                    "status",
                    "amount",
                    "currency",
                    "amount_received",
                    "reversed_amount",
                    "receipt_number",
                ),
            ),
            "refunds": [
                _pick(r, ("id", "created_at", "amount", "currency", "status", "reason")) for r in p.refunds
            ],
            "chargebacks": [
                _pick(d, ("id", "created_at", "amount", "currency", "status", "closed_at"))
                for d in p.disputes
            ],
        }
        for p in session.scalars(select(Payment).where(Payment.account_id == account.id).order_by(Payment.id))
    ]
    data["disputes"] = [
        _pick(d, ("id", "created_at", "reason", "detail", "status", "resolution", "resolved_at"))
        | {"files": len(d.evidence_keys or [])}
        for d in session.scalars(
            select(DebtDispute).where(DebtDispute.account_id == account.id).order_by(DebtDispute.id)
        )
    ]
    data["plans"] = [
        {
            **_pick(
                plan,
                (
                    "id",
                    "status",
                    "currency",
                    "total",
                    "grace_days",
                    "created_at",
                    "completed_on",
                    "broken_on",
                ),
            ),
            "instalments": [
                _pick(i, ("number", "due_on", "amount", "paid_amount", "status", "paid_on", "missed_on"))
                for i in plan.instalments
            ],
            "autopay": [
                _pick(m, ("consented_at", "consent_version", "revoked_at"))
                for m in session.scalars(select(AutopayMandate).where(AutopayMandate.plan_id == plan.id))
            ],
        }
        for plan in session.scalars(select(Plan).where(Plan.account_id == account.id).order_by(Plan.id))
    ]
    data["contact_history"] = [
        _pick(c, ("at", "channel", "address", "outcome", "reached"))
        for c in session.scalars(
            select(ContactAttempt)
            .where(ContactAttempt.account_id == account.id, ContactAttempt.party == "borrower")
            .order_by(ContactAttempt.at, ContactAttempt.id)
        )
    ]
    return data


def _case(case: HardshipCase, files: dict[str, bytes], evidence: Storage) -> dict[str, Any]:
    data = _pick(
        case,
        (
            "id",
            "account_id",
            "state",
            "reason",
            "description",
            "adults",
            "children",
            "dependants",
            "employment_status",
            "relief_asked",
            "created_at",
            "submitted_at",
            "closed_at",
        ),
    )
    currency = case.account.currency
    data["budget_lines"] = [
        {**_pick(line, ("category", "amount", "frequency", "explanation")), "currency": currency}
        for line in case.budget_lines
    ]
    data["messages"] = [_pick(m, ("created_at", "direction", "kind", "body")) for m in case.messages]
    data["evidence_files"] = []
    for file in case.evidence_files:
        entry = _pick(
            file, ("id", "display_name", "content_type", "size", "sha256", "uploaded_at", "removed_at")
        )
        if file.removed_at is None:
            path = f"evidence/case-{case.id}-{file.id}-{_safe_name(file.display_name)}"
            try:
                files[path] = evidence.open(file.storage_key)
                entry["file"] = path
            except FileNotFoundError:
                entry["file"] = None
        data["evidence_files"].append(entry)
    data["offers"] = [
        _pick(
            o,
            (
                "id",
                "origin",
                "status",
                "currency",
                "instalment_amount",
                "instalment_count",
                "total_repayable",
                "waived_total",
                "first_due_on",
                "expires_on",
                "created_at",
                "decided_at",
            ),
        )
        for o in case.offers
    ]
    return data


def _agreement(agreement: Agreement, files: dict[str, bytes], documents: Storage) -> dict[str, Any]:
    data = _pick(
        agreement,
        (
            "id",
            "hardship_case_id",
            "account_id",
            "status",
            "language",
            "document_sha256",
            "final_sha256",
            "typed_name",
            "signed_at",
            "expires_on",
            "created_at",
        ),
    )
    key = agreement.final_key if agreement.status == "signed" else agreement.document_key
    data["file"] = None
    if key:
        path = f"agreements/agreement-{agreement.id}{'-signed' if agreement.status == 'signed' else ''}.pdf"
        try:
            files[path] = documents.open(key)
            data["file"] = path
        except FileNotFoundError:
            pass
    return data


def build(
    session: Session, borrower: Borrower, storage: Storage, documents: Storage
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The document and the files (path in the ZIP -> bytes), everything reached through ``borrower``."""
    files: dict[str, bytes] = {}
    prefs = session.get(ContactPreference, borrower.id)
    accounts = session.scalars(
        select(Account).where(Account.borrower_id == borrower.id).order_by(Account.id)
    ).all()
    cases = session.scalars(
        select(HardshipCase).where(HardshipCase.borrower_id == borrower.id).order_by(HardshipCase.id)
    ).all()
    agreements = session.scalars(
        select(Agreement).where(Agreement.borrower_id == borrower.id).order_by(Agreement.id)
    ).all()
    document = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": _iso(utcnow()),
        "conventions": {
            "money": "integer minor units (fen, cents) with the ISO 4217 currency code beside them",
            "dates": "ISO 8601; times in UTC",
        },
        "borrower": _pick(borrower, PROFILE_FIELDS),
        "contact_preferences": {
            "opted_out_channels": list(prefs.opted_out_channels) if prefs else [],
            "cease_contact_at": _iso(prefs.cease_contact_at) if prefs else None,
            "consent_extended_hours": bool(prefs and prefs.consent_extended_hours),
        },
        "saved_cards": [
            _pick(c, ("brand", "last4", "exp_month", "exp_year", "created_at", "removed_at"))
            for c in session.scalars(
                select(SavedCard).where(SavedCard.borrower_id == borrower.id).order_by(SavedCard.id)
            )
        ],
        "accounts": [_account(session, account) for account in accounts],
        "hardship_cases": [_case(case, files, storage) for case in cases],
        "agreements": [_agreement(agreement, files, documents) for agreement in agreements],
    }
    return document, files


def export(
    session: Session, borrower: Borrower, storage: Storage, *, documents: Storage | None = None
) -> bytes:
    """The ZIP of ``borrower``'s data (``storage``: the evidence store; ``documents``: where
    agreements are, by default the configured document store); audited, and committed."""
    document, files = build(
        session, borrower, storage, documents or document_storage_from_config(current_app.config)
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.json", json.dumps(document, ensure_ascii=False, indent=2))
        for path, data in sorted(files.items()):
            archive.writestr(path, data)
    audit.record(
        session,
        Actor("borrower", borrower.id),
        "borrower.data_exported",
        "borrower",
        borrower.id,
        after={"schema_version": SCHEMA_VERSION, "files": len(files)},  # no file names: they are theirs
    )
    session.commit()
    return buffer.getvalue()
