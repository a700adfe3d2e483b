"""Extensions, created unbound here and bound to an app in ``create_app``."""

from __future__ import annotations

from flask import request, session
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf import CSRFProtect

from portal.db import db
from portal.formatting import AccordBabel

__all__ = ["babel", "csrf", "db", "limiter", "login_manager", "select_locale"]

csrf = CSRFProtect()
login_manager = LoginManager()
limiter = Limiter(key_func=get_remote_address, default_limits=[])


def select_locale() -> str:
    """The language the user chose (kept in the session), else the browser's best match."""
    from flask import current_app

    languages = current_app.config["LANGUAGES"]
    chosen = session.get("lang")
    if chosen in languages:
        return str(chosen)
    match = request.accept_languages.best_match(["zh_Hans_CN", "zh", "zh-CN", "en"])
    if match is None:
        return str(current_app.config["BABEL_DEFAULT_LOCALE"])
    return "en" if match == "en" else "zh_Hans_CN"


babel = AccordBabel()
