"""Translated names for the domain's codes (stages, roles, entry kinds…), one place for all."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from babel.numbers import format_percent
from flask import Flask
from flask_babel import get_locale, gettext, ngettext
from flask_babel import lazy_gettext as _l

from workflows.access import Permission, Role
from workflows.affordability import SECTION_OF
from workflows.delinquency import ConsequenceKind
from workflows.ledger import EntryKind
from workflows.money import Component
from workflows.negotiation import OPEN_STATES
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


# --- Hardship ----------------------------------------------------------------------------------

HARDSHIP_REASONS = {
    "illness": _l("Illness or injury"),
    "job_loss": _l("I lost my job"),
    "income_drop": _l("My income went down"),
    "disaster": _l("A natural disaster or accident"),
    "bereavement": _l("Someone close to me died"),
    "other": _l("Something else"),
}
EMPLOYMENT_STATUSES = {
    "employed": _l("Employed"),
    "self_employed": _l("Self-employed"),
    "unemployed": _l("Not working, looking for work"),
    "retired": _l("Retired"),
    "student": _l("Student"),
    "unable_to_work": _l("Unable to work (illness or disability)"),
    "carer": _l("Caring for someone"),
    "other": _l("Other"),
}
FREQUENCIES = {
    "monthly": _l("a month"),
    "four_weekly": _l("every 4 weeks"),
    "fortnightly": _l("every 2 weeks"),
    "weekly": _l("a week"),
}
BUDGET_SECTIONS = {
    "income": _l("Income"),
    "fixed_costs": _l("Fixed costs"),
    "flexible_costs": _l("Everyday costs"),
    "priority_debts": _l("Priority debts"),
    "non_priority_debts": _l("Other debts"),
}
# Each line of the statement: (name, hint).
BUDGET_CATEGORIES = {
    "earnings": (_l("Your wages or salary, after tax"), _l("Take-home pay from work or self-employment.")),
    "partner_earnings": (_l("Your partner's take-home pay"), _l("Only if you share the household costs.")),
    "benefits": (_l("Benefits and allowances"), _l("Unemployment, housing, disability or child benefits.")),
    "pension": (_l("Pensions"), None),
    "maintenance_received": (_l("Maintenance or child support you receive"), None),
    "other_income": (_l("Other income"), _l("Rent from a lodger, help from family, and the like.")),
    "housing": (_l("Rent or mortgage"), None),
    "utilities": (_l("Gas, electricity and water"), None),
    "property_tax": (_l("Property or council tax"), None),
    "insurance": (_l("Insurance"), _l("Home, health or life insurance.")),
    "care_costs": (_l("Care costs"), _l("Care for an adult who depends on you.")),
    "other_fixed": (_l("Other fixed costs"), None),
    "food_housekeeping": (_l("Food and housekeeping"), _l("Groceries, toiletries, cleaning.")),
    "transport": (_l("Transport and travel"), _l("Fares, fuel, car costs.")),
    "communications": (_l("Phone, internet and TV"), None),
    "childcare": (_l("Childcare and school costs"), None),
    "health": (_l("Health"), _l("Medicines, treatment, glasses, dental care.")),
    "personal_clothing": (_l("Clothing and personal costs"), None),
    "other_flexible": (_l("Other everyday costs"), None),
    "priority_debt_payments": (
        _l("Payments to priority debts"),
        _l("Arrears on rent, mortgage, tax or utilities; fines."),
    ),
    "other_credit_payments": (
        _l("Payments to other loans and cards"),
        _l("Other lenders, not this account."),
    ),
}
HARDSHIP_STEPS = {
    "reason": _l("What has happened"),
    "household": _l("Your household and work"),
    "income": _l("Your income"),
    "spending": _l("Your regular costs"),
    "debts": _l("Your other debts"),
    "evidence": _l("Documents (optional)"),
    "review": _l("Check and send"),
}
STEP_INTROS = {
    "income": _l("What comes into your household after tax. Leave a line empty if it does not apply."),
    "spending": _l("What you pay for your home and everyday life. Leave a line empty if it does not apply."),
    "debts": _l("What you pay each month to other debts. Leave a line empty if it does not apply."),
}
# The case's state as the borrower follows it.
CASE_STATES = {
    "draft": _l("Not sent yet"),
    "submitted": _l("Sent"),
    "offered": _l("Offers ready for you"),
    "in_review": _l("With our negotiation team"),
    "claimed": _l("Being reviewed"),
    "awaiting_second_approval": _l("Being reviewed"),
    "countered": _l("We have made you an offer"),
    "awaiting_borrower": _l("We need more information from you"),
    "approved": _l("Approved"),
    "awaiting_signature": _l("Your agreement is ready to sign"),
    "active": _l("Your plan is in force"),
    "rejected": _l("Not approved"),
    "withdrawn": _l("Withdrawn"),
    "expired": _l("Offers expired"),
}
RELIEF_TYPES = {
    "instalment_plan": _l("Pay the overdue amount in instalments"),
    "term_extension": _l("Lower payments over a longer term"),
    "interest_relief": _l("Interest relief"),
    "fee_waiver": _l("Fees waived"),
    "payment_holiday": _l("A break from payments"),
    "settlement": _l("Settle for less than the balance"),
}


OFFER_SCOPES = {
    "arrears": _l("The overdue amount; your regular payments continue"),
    "balance": _l("Your whole balance; replaces your regular payments"),
    "deferral": _l("A pause: nothing is repaid during it"),
}
FEE_TREATMENTS = {
    "none": _l("No fees on the account"),
    "unchanged": _l("Stay as they are"),
    "repaid": _l("Repaid in the plan"),
    "waived": _l("Waived"),
    "partly_waived": _l("Partly waived"),
}
INTEREST_TREATMENTS = {
    "contractual": _l("As in your contract"),
    "charged": _l("%(rate)s a year"),
    "frozen": _l("None while the plan runs"),
    "frozen_then_charged": _l("None for %(months)s months, then %(rate)s a year"),
    "settled": _l("Nothing more once paid"),
}


_TITLE_ORDER = (
    "settlement",
    "term_extension",
    "instalment_plan",
    "payment_holiday",
    "interest_relief",
    "fee_waiver",
)


def offer_title(offer: Any) -> str:
    """What the offer does, in words: the plan first, then each concession with its length."""
    terms = offer.terms
    parts = []
    for relief in sorted(terms["reliefs"], key=_TITLE_ORDER.index):
        if relief == "payment_holiday":
            months = terms["holiday_months"]
            parts.append(ngettext("no payments for %(num)d month", "no payments for %(num)d months", months))
        elif relief == "interest_relief" and terms.get("interest_frozen_months"):
            months = terms["interest_frozen_months"]
            parts.append(ngettext("no interest for %(num)d month", "no interest for %(num)d months", months))
        elif relief == "interest_relief":
            parts.append(gettext("interest charged so far waived"))
        elif relief == "fee_waiver":
            parts.append(gettext("fees waived"))
        else:
            parts.append(_lookup(RELIEF_TYPES, relief))
    if not parts:
        return gettext("Your proposal")
    title = gettext(", ").join(parts)  # the list separator of the language
    return title[0].upper() + title[1:]


def offer_end(offer: Any) -> dt.date:
    return dt.date.fromisoformat(offer.terms["end_on"])


def interest_treatment_label(offer: Any) -> str:
    terms = offer.terms
    rate = format_percent(
        Decimal(terms["annual_rate_bp"]).scaleb(-4), format="#,##0.##%", locale=get_locale()
    )
    text = str(INTEREST_TREATMENTS.get(terms["interest_treatment"], terms["interest_treatment"]))
    return text % {"rate": rate, "months": terms["interest_frozen_months"]} if "%(" in text else text


def fees_treatment_label(offer: Any) -> str:
    return _lookup(FEE_TREATMENTS, offer.terms["fees_after"])


# The case's state as staff speak of it.
STAFF_CASE_STATES = {
    "draft": _l("Draft"),
    "submitted": _l("Submitted"),
    "offered": _l("Offers shown"),
    "in_review": _l("Waiting for review"),
    "claimed": _l("Claimed"),
    "awaiting_second_approval": _l("Awaiting second approval"),
    "countered": _l("Counter-offer sent"),
    "awaiting_borrower": _l("Waiting for the borrower"),
    "approved": _l("Approved"),
    "awaiting_signature": _l("Agreement awaiting signature"),
    "active": _l("Plan in force"),
    "rejected": _l("Rejected"),
    "withdrawn": _l("Withdrawn"),
    "expired": _l("Expired"),
}
DECISION_REASON_LABELS = {
    "not_affordable": _l("Not affordable on the figures given"),
    "insufficient_information": _l("Not enough information"),
    "proposal_too_low": _l("The proposal is too low"),
    "not_eligible": _l("Not eligible"),
    "fraud_suspected": _l("Suspected fraud"),
    "other": _l("Other"),
}
AUTHORITY_PROBLEMS = {
    "no_authority": _l("your role has no authority to approve concessions"),
    "waived_amount_above_authority": _l("the amount waived"),
    "waived_share_above_authority": _l("the share waived"),
    "term_above_authority": _l("the term"),
    "settlement_discount_above_authority": _l("the settlement discount"),
    "currency_not_in_authority": _l("no limit is set for this currency"),
}
OFFER_ORIGINS = {
    "system": _l("Pre-approved"),
    "borrower": _l("Borrower's proposal"),
    "agent": _l("Counter-offer"),
}
OFFER_STATUSES = {
    "open": _l("open"),
    "accepted": _l("accepted"),
    "superseded": _l("superseded"),
    "expired": _l("expired"),
    "declined": _l("declined"),
}


def bp_percent(bp: int) -> str:
    """Basis points as a percentage in the user's locale (2,000 → 20%)."""
    return format_percent(Decimal(bp).scaleb(-4), format="#,##0.##%", locale=get_locale())


AGREEMENT_EVENTS = {
    "created": _l("Agreement prepared"),
    "rendered": _l("Document generated"),
    "viewed": _l("Read by the signer"),
    "consented": _l("Consent to electronic records"),
    "code_sent": _l("Signing code sent"),
    "code_verified": _l("Signing code confirmed"),
    "signed": _l("Signed"),
    "sealed": _l("Sealed"),
    "voided": _l("Voided"),
    "expired": _l("Expired"),
}
SLA_STATUSES = {
    "on_time": _l("On time"),
    "due_today": _l("Due today"),
    "breached": _l("Overdue"),
}


def sla_label(code: str) -> str:
    return _lookup(SLA_STATUSES, code)


def stage_label(code: str) -> str:
    return _lookup(STAGES, code)


def amount_bands(policy: Any) -> list[str]:
    """The balance bands of the queue filter, worded from the policy's thresholds (CNY shown)."""
    from portal.formatting import money

    tables = {
        currency: list(t) for currency, t in sorted(policy.hardship.priority.balance_bands.items()) if t
    }
    if not tables:
        return [gettext("Any balance")]

    def each(position: int) -> str:
        return " / ".join(money(t[position], currency) for currency, t in tables.items())

    count = min(len(t) for t in tables.values())
    bands = [gettext("Under %(amount)s", amount=each(0))]
    bands += [gettext("%(low)s to %(high)s", low=each(n), high=each(n + 1)) for n in range(count - 1)]
    bands.append(gettext("%(amount)s or more", amount=each(count - 1)))
    return bands


def budget_category_label(code: str) -> str:
    name, _hint = BUDGET_CATEGORIES.get(code, (code, None))
    return str(name)


def budget_category_hint(code: str) -> str | None:
    _name, hint = BUDGET_CATEGORIES.get(code, (code, None))
    return None if hint is None else str(hint)


def borrower_entry_label(kind: str, component: str) -> str:
    if kind == EntryKind.PAYMENT.value:
        return f"{BORROWER_ENTRIES[EntryKind.PAYMENT]} ({_lookup(COMPONENTS, component)})"
    return _lookup(BORROWER_ENTRIES, kind)


def consequence_text(kind: str, in_effect: bool, **values: object) -> str:
    future, past = CONSEQUENCES[ConsequenceKind(kind)]
    text = str(past if in_effect else future)
    return text % values if values else text


def init_app(app: Flask) -> None:
    app.jinja_env.filters["authority_problem_label"] = lambda c: _lookup(AUTHORITY_PROBLEMS, c)
    app.jinja_env.globals.update(
        Permission=Permission,
        stage_label=stage_label,
        sla_label=sla_label,
        event_label=lambda c: _lookup(AGREEMENT_EVENTS, c),
        staff_case_state_label=lambda c: _lookup(STAFF_CASE_STATES, c),
        decision_reason_label=lambda c: _lookup(DECISION_REASON_LABELS, c),
        offer_origin_label=lambda c: _lookup(OFFER_ORIGINS, c),
        offer_status_label=lambda c: _lookup(OFFER_STATUSES, c),
        bp_percent=bp_percent,
        role_label=lambda c: _lookup(ROLES, c),
        product_label=lambda c: _lookup(PRODUCTS, c),
        status_label=lambda c: _lookup(STATUSES, c),
        entry_label=lambda c: _lookup(ENTRY_KINDS, c),
        component_label=lambda c: _lookup(COMPONENTS, c),
        borrower_stage_label=lambda c: _lookup(BORROWER_STAGES, c),
        consequence_text=consequence_text,
        borrower_entry_label=borrower_entry_label,
        step_names=HARDSHIP_STEPS,
        step_intros=STEP_INTROS,
        section_of=SECTION_OF.__getitem__,
        open_states=[state.value for state in OPEN_STATES],
        reason_label=lambda c: _lookup(HARDSHIP_REASONS, c),
        employment_label=lambda c: _lookup(EMPLOYMENT_STATUSES, c),
        frequency_label=lambda c: _lookup(FREQUENCIES, c),
        section_label=lambda c: _lookup(BUDGET_SECTIONS, c),
        case_state_label=lambda c: _lookup(CASE_STATES, c),
        relief_label=lambda c: _lookup(RELIEF_TYPES, c),
        budget_category_label=budget_category_label,
        offer_title=offer_title,
        offer_end=offer_end,
        offer_scope_label=lambda o: _lookup(OFFER_SCOPES, o.terms["scope"]),
        interest_treatment_label=interest_treatment_label,
        fees_treatment_label=fees_treatment_label,
        budget_category_hint=budget_category_hint,
    )
