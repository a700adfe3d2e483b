"""Translated names for the domain's codes (stages, roles, entry kinds…), one place for all."""

from __future__ import annotations

from flask import Flask
from flask_babel import lazy_gettext as _l

from workflows.access import Permission, Role
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


def init_app(app: Flask) -> None:
    app.jinja_env.globals.update(
        Permission=Permission,
        stage_label=lambda c: _lookup(STAGES, c),
        role_label=lambda c: _lookup(ROLES, c),
        product_label=lambda c: _lookup(PRODUCTS, c),
        status_label=lambda c: _lookup(STATUSES, c),
        entry_label=lambda c: _lookup(ENTRY_KINDS, c),
        component_label=lambda c: _lookup(COMPONENTS, c),
    )
