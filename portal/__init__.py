"""The Accord Flask application."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from flask import Flask, abort, g, request, session
from flask.templating import Environment
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from portal import crypto, logging_setup
from portal.config import ROOT, load_config
from portal.db import MAX_BIG_ID, MAX_ID
from portal.extensions import babel, csrf, db, limiter, login_manager, select_locale

# Scripts, styles and images only from Accord itself; no inline script, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
# Every response of these blueprints holds personal or financial data, or is a step of signing in.
PRIVATE_BLUEPRINTS = ("staff", "admin", "auth", "borrower", "dev", "api")


class DatabaseIdConverter(IntegerConverter):
    """``<int:…>`` in a URL: a number an ``integer`` id column can hold. A larger one is not found
    (404), as any unknown id is, instead of failing in the database."""

    limit = MAX_ID

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", self.limit)
        super().__init__(map, *args, **kwargs)


class BigIdConverter(DatabaseIdConverter):
    """``<bigint:…>``: the id of a row of a BigId table (``bigint`` on PostgreSQL)."""

    limit = MAX_BIG_ID


def _holds_nul() -> bool:
    """Whether the request's URL, query, form or file names hold a NUL character."""
    texts = [*request.args.items(multi=True), *request.form.items(multi=True)]
    texts += [(name, upload.filename or "") for name, upload in request.files.items(multi=True)]
    texts += [(name, str(value)) for name, value in (request.view_args or {}).items()]
    return any("\x00" in name or "\x00" in value for name, value in texts)


def _signed_in() -> bool:
    """Whether the request comes with a signed-in session or an API token (read without the database)."""
    return "_user_id" in session or "Authorization" in request.headers


def _trust_proxies(app: Flask) -> None:
    """Behind a load balancer the connection comes from it: the client's address and scheme are
    in the X-Forwarded-For and -Proto it sets, believed from ``PROXY_HOPS`` proxies only."""
    hops = int(app.config["PROXY_HOPS"])
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]


class TemplateEnvironment(Environment):
    """Flask's Jinja environment whose templates' globals are a plain dict, not a ``ChainMap``.

    Jinja looks the globals up on every render, and on every ``{% from … import %}`` compares the
    importing template's globals with the imported one's: over a ``ChainMap`` of our sixty
    globals that is Python code, key by key (about 0.15 ms of the dashboard's 3.5 ms); over a
    dict it is C. The globals are all set while the app is created, before any template loads,
    as Jinja asks ("Environment globals should not be changed after loading any templates"), so
    a copy at load time holds the same as the ``ChainMap`` would."""

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **d} if d else dict(self.globals)


class Accord(Flask):
    jinja_environment = TemplateEnvironment


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Accord(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_relative_config=False,
    )
    app.url_map.converters["int"] = DatabaseIdConverter
    app.url_map.converters["bigint"] = BigIdConverter
    app.config.update(load_config(config))
    app.instance_path = app.config["INSTANCE_PATH"]
    _trust_proxies(app)
    crypto.install(crypto.keyring_from_config(app.config))
    logging_setup.init_app(app)

    db.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    babel.init_app(app, locale_selector=select_locale)
    login_manager.init_app(app)

    from portal import api, auth, borrower, errors, formatting, labels, public, staff, webhooks
    from portal.admin import admin_bp

    app.register_blueprint(public.bp)
    app.register_blueprint(borrower.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(staff.bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(api.bp)
    errors.init_app(app)
    formatting.init_app(app)
    labels.init_app(app)
    auth.init_login(app)

    if app.config["ACCORD_ENV"] == "development":
        from portal import dev

        app.register_blueprint(dev.bp)

    if app.config["BENCH_REFERENCE_ROUTE"]:
        from portal import bench_reference

        app.register_blueprint(bench_reference.bp)

    from portal import cli

    cli.init_app(app)

    @app.before_request
    def _refuse_nul() -> None:
        # No name, note, reference or file name holds a NUL character, and PostgreSQL cannot store
        # one in text: such a request is refused whole (400, "reload the page"), before any view.
        if _holds_nul():
            abort(400)

    @app.after_request
    def _headers(response: Any) -> Any:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        if "frame-ancestors" not in response.headers["Content-Security-Policy"]:
            # A view's own policy (a sandboxed evidence file) refuses framing all the same.
            response.headers["Content-Security-Policy"] += "; frame-ancestors 'none'"
        if app.config["ACCORD_ENV"] == "production":
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if request.blueprint in PRIVATE_BLUEPRINTS or (request.endpoint != "static" and _signed_in()):
            # Personal and financial data, or a page made for one signed-in user: never kept by the
            # browser or a proxy. Static files hold neither and stay cacheable for slow phones.
            response.headers["Cache-Control"] = "no-store"
        return response

    return app
