from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import DateField, IntegerField, RadioField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange

from portal import labels


class IdentifyForm(FlaskForm):
    identifier = StringField(
        _l("Account reference or mobile number"),
        validators=[
            DataRequired(message=_l("Enter your account reference or mobile number.")),
            Length(max=64),
        ],
        description=_l("The reference is on the letter or message we sent you, e.g. LN-00012-1."),
        render_kw={"autocomplete": "username", "autocapitalize": "characters", "spellcheck": "false"},
    )
    date_of_birth = DateField(
        _l("Date of birth"),
        validators=[DataRequired(message=_l("Enter your date of birth, e.g. 1985-03-15."))],
        render_kw={"autocomplete": "bday"},
    )


class CodeForm(FlaskForm):
    code = StringField(
        _l("6-digit code"),
        validators=[DataRequired(message=_l("Enter the 6 digits of the code we sent.")), Length(max=16)],
        render_kw={"inputmode": "numeric", "autocomplete": "one-time-code"},
    )


# --- Hardship: the statement, step by step ------------------------------------------------------


def _choices(table: Mapping[str, Any]) -> list[SelectChoice]:
    return [SelectChoice(code, label) for code, label in table.items()]


class ReasonForm(FlaskForm):
    reason = RadioField(
        _l("What has happened?"),
        choices=_choices(labels.HARDSHIP_REASONS),
        validators=[InputRequired(message=_l("Choose what has happened."))],
    )
    description = TextAreaField(
        _l("Tell us briefly about your situation"),
        validators=[
            DataRequired(message=_l("Write a few words about your situation.")),
            Length(max=2000, message=_l("Please keep it under 2,000 characters.")),
        ],
        description=_l("For example: when it started, and whether you expect it to change."),
        render_kw={"rows": 5, "maxlength": 2000},
    )


def _count(label: Any, minimum: int) -> IntegerField:
    return IntegerField(
        label,
        validators=[
            InputRequired(message=_l("Enter a whole number.")),
            NumberRange(min=minimum, max=20, message=_l("Enter a number from %(min)s to %(max)s.")),
        ],
        render_kw={"inputmode": "numeric"},
    )


class HouseholdForm(FlaskForm):
    adults = _count(_l("Adults in your household, including you"), 1)
    children = _count(_l("Children under 18"), 0)
    dependants = _count(_l("Other people who depend on you"), 0)
    employment_status = SelectField(
        _l("Your work"),
        choices=_choices(labels.EMPLOYMENT_STATUSES),
        validators=[InputRequired(message=_l("Choose what describes your work."))],
    )


class EvidenceForm(FlaskForm):
    file = FileField(
        _l("Add a file"),
        description=_l("PDF, JPEG or PNG, up to 10 MB each, at most 10 files."),
        render_kw={"accept": "application/pdf,image/jpeg,image/png"},
    )


class ProposalForm(FlaskForm):
    monthly_amount = StringField(
        _l("How much could you pay each month?"),
        validators=[DataRequired(message=_l("Enter an amount such as 1234.50.")), Length(max=40)],
        render_kw={"inputmode": "decimal", "autocomplete": "off"},
    )
    count = IntegerField(
        _l("For how many months?"),
        validators=[
            InputRequired(message=_l("Enter a whole number.")),
            NumberRange(min=1, max=120, message=_l("Enter a number from %(min)s to %(max)s.")),
        ],
        render_kw={"inputmode": "numeric"},
    )
