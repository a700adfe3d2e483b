"""Translated names for the domain's codes (stages, roles, entry kinds…), one place for all."""

from __future__ import annotations

from flask import Flask
from flask_babel import lazy_gettext as _l

from workflows.access import Permission, Role
from workflows.delinquency import ConsequenceKind
from workflows.ledger import EntryKind
from workflows.money import Component
from workflows.policy import Stage

STAGES = {
    Stage.CURRENT: _l("Current"),
    Stage.EARLY: _l("Early arrears"),
    Stage.MID: _l("Mid arrears"),
    Stage.LATE: _l("Late arrears"),
    Stage.LEGAL: _l("Legal"),
    Stage.CHARGED_OFF: _l("Charged off"),
}
ROLES = {
    Role.AGENT: _l("Negotiation agent"),
    Role.SUPERVISOR: _l("Supervisor"),
    Role.COLLECTOR: _l("Collector"),
    Role.FINANCE: _l("Finance"),
    Role.ADMIN: _l("Administrator"),
}
PRODUCTS = {"loan": _l("Loan"), "credit_card": _l("Credit card")}
STATUSES = {"open": _l("Open"), "closed": _l("Closed"), "recalled": _l("Recalled")}
ENTRY_KINDS = {
    EntryKind.CHARGE: _l("Charge"),
    EntryKind.INTEREST: _l("Interest"),
    EntryKind.FEE: _l("Fee"),
    EntryKind.PAYMENT: _l("Payment"),
    EntryKind.WAIVER: _l("Waiver"),
    EntryKind.REVERSAL: _l("Reversal"),
    EntryKind.ADJUSTMENT: _l("Adjustment"),
}
COMPONENTS = {
    Component.PRINCIPAL: _l("Principal"),
    Component.INTEREST: _l("Interest"),
    Component.FEES: _l("Fees"),
}


def _lookup(table: dict, code: str) -> str:  # type: ignore[type-arg]
    return str(table.get(code, code))


# What each consequence means for the borrower, in plain words: (still to come, already in effect).
CONSEQUENCES = {
    ConsequenceKind.LATE_FEE: (_l("A late fee of %(amount)s will be added"), _l("A late fee was added")),
    ConsequenceKind.CALLS: (
        _l("Our collections team may start to call you"),
        _l("Our collections team may call you about the overdue amount"),
    ),
    ConsequenceKind.LETTERS: (
        _l("We may start to send you letters about the overdue amount"),
        _l("We may send you letters about the overdue amount"),
    ),
    ConsequenceKind.CREDIT_BUREAU: (
        _l("The overdue amount will be reported to the credit bureau"),
        _l("The overdue amount was reported to the credit bureau; paying updates the record"),
    ),
    ConsequenceKind.HOME_VISITS: (
        _l("A member of our team may visit you at home"),
        _l("A member of our team may visit you at home"),
    ),
    ConsequenceKind.LEGAL_REVIEW: (
        _l("The lender may review the account for legal action"),
        _l("The lender is reviewing the account for legal action"),
    ),
    ConsequenceKind.CHARGE_OFF: (
        _l("The lender may write the debt off in its books; you would still owe it"),
        _l("The lender has written the debt off in its books; you still owe it"),
    ),
}
BORROWER_STAGES = {
    Stage.CURRENT: _l("Up to date"),
    Stage.EARLY: _l("A payment is late"),
    Stage.MID: _l("Payments are more than a month late"),
    Stage.LATE: _l("Payments are more than three months late"),
    Stage.LEGAL: _l("Under legal review"),
    Stage.CHARGED_OFF: _l("Written off, still owed"),
}


# Statement lines as a borrower would say them.
BORROWER_ENTRIES = {
    EntryKind.CHARGE: _l("Amount owed taken over"),
    EntryKind.INTEREST: _l("Interest"),
    EntryKind.FEE: _l("Late fee"),
    EntryKind.PAYMENT: _l("Your payment"),
    EntryKind.WAIVER: _l("Waived for you"),
    EntryKind.REVERSAL: _l("Correction"),
    EntryKind.ADJUSTMENT: _l("Adjustment"),
}


def borrower_entry_label(kind: str, component: str) -> str:
    if kind == EntryKind.PAYMENT.value:
        return f"{BORROWER_ENTRIES[EntryKind.PAYMENT]} ({_lookup(COMPONENTS, component)})"
    return _lookup(BORROWER_ENTRIES, kind)


def consequence_text(kind: str, in_effect: bool, **values: object) -> str:
    future, past = CONSEQUENCES[ConsequenceKind(kind)]
    text = str(past if in_effect else future)
    return text % values if values else text


def init_app(app: Flask) -> None:
    app.jinja_env.globals.update(
        Permission=Permission,
        stage_label=lambda c: _lookup(STAGES, c),
        role_label=lambda c: _lookup(ROLES, c),
        product_label=lambda c: _lookup(PRODUCTS, c),
        status_label=lambda c: _lookup(STATUSES, c),
        entry_label=lambda c: _lookup(ENTRY_KINDS, c),
        component_label=lambda c: _lookup(COMPONENTS, c),
        borrower_stage_label=lambda c: _lookup(BORROWER_STAGES, c),
        consequence_text=consequence_text,
        borrower_entry_label=borrower_entry_label,
    )
