from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, StringField
from wtforms.validators import DataRequired, Length


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
