"""Settings from ``ACCORD_``-prefixed environment variables, with embedded defaults.

Development needs nothing set: SQLite and Huey's SQLite store live under ``instance/``
and a secret key is generated there once. Production refuses to start without an
explicit ``ACCORD_SECRET_KEY``.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE = ROOT / "instance"
ENVIRONMENTS = ("development", "test", "production")


class ConfigError(RuntimeError):
    """The environment does not describe a runnable Accord."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"ACCORD_{name}")
    return value if value not in (None, "") else default


def _int(name: str, default: int) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"ACCORD_{name} must be an integer, not {raw!r}") from exc


DB_APP_ROLE_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def db_app_role() -> str | None:
    """``ACCORD_DB_APP_ROLE``: the PostgreSQL role the web and worker processes connect as.

    Migrations run as the schema's owner (``ACCORD_DATABASE_URL`` naming the owner while
    ``flask db upgrade`` runs) and, when this is set, create the role if it is missing (it logs
    in; the operator gives it a password) and grant it rows, never the schema: read and insert
    only on the history that is never rewritten (ledger and credit entries, the audit trail and
    its hash chain), read, insert, update and delete on the rest. Unset: no role and no grants
    (SQLite, or a deployment with one role)."""
    role = _env("DB_APP_ROLE")
    if role is not None and not DB_APP_ROLE_PATTERN.fullmatch(role):
        raise ConfigError(f"ACCORD_DB_APP_ROLE must be a lower-case PostgreSQL role name, not {role!r}")
    return role


def _dev_secret_key(instance: Path) -> str:
    """Generate the development secret once and keep it, so sessions survive restarts."""
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def load_config(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the Flask config mapping from the environment, then apply ``overrides``."""
    overrides = dict(overrides or {})
    env = overrides.get("ACCORD_ENV") or _env("ENV", "development")
    if env not in ENVIRONMENTS:
        raise ConfigError(f"ACCORD_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
    instance = Path(overrides.get("INSTANCE_PATH") or _env("INSTANCE_PATH", str(DEFAULT_INSTANCE)))
    redis_url = _env("REDIS_URL")

    secret_key = overrides.get("SECRET_KEY") or _env("SECRET_KEY")
    if not secret_key:
        if env == "production":
            raise ConfigError("ACCORD_SECRET_KEY must be set in production")
        secret_key = _dev_secret_key(instance)

    config: dict[str, Any] = {
        "ACCORD_ENV": env,
        "INSTANCE_PATH": str(instance),
        "SECRET_KEY": secret_key,
        # Sensitive columns and stored files are sealed with AES-256-GCM under these keys
        # ("id:base64,id:base64", the first current; portal/crypto.py). Required in production;
        # elsewhere, unset, a fixed development key (public: never for real people's data).
        "ENCRYPTION_KEYS": _env("ENCRYPTION_KEYS"),
        "DATABASE_URL": _env("DATABASE_URL", f"sqlite:///{instance / 'accord.db'}"),
        "REDIS_URL": redis_url,
        "HUEY_SQLITE_PATH": _env("HUEY_SQLITE_PATH", str(instance / "huey.db")),
        # Evidence files (local storage): outside static/, never served directly.
        "EVIDENCE_DIR": _env("EVIDENCE_DIR", str(instance / "evidence")),
        "DOCUMENT_DIR": _env("DOCUMENT_DIR", str(instance / "documents")),
        # Files (evidence and documents) in those directories ("local") or in an S3 bucket ("s3"),
        # under S3_PREFIX, at S3_ENDPOINT_URL for an S3-compatible store. Credentials come from
        # boto3's own chain (AWS_* variables, a profile, an instance role), never from here.
        "STORAGE_BACKEND": _env("STORAGE_BACKEND", "local"),
        "S3_BUCKET": _env("S3_BUCKET"),
        "S3_PREFIX": _env("S3_PREFIX", ""),
        "S3_ENDPOINT_URL": _env("S3_ENDPOINT_URL"),
        "S3_REGION": _env("S3_REGION"),
        "S3_SERVER_SIDE_ENCRYPTION": _env("S3_SERVER_SIDE_ENCRYPTION"),
        # The organisation's seal on signed agreements: a PKCS#12 in production; in development a
        # key and self-signed certificate are generated once under instance/seal/.
        "SEAL_PKCS12_PATH": _env("SEAL_PKCS12_PATH"),
        "SEAL_PKCS12_PASSWORD": _env("SEAL_PKCS12_PASSWORD"),
        "SEAL_TSA_URL": _env("SEAL_TSA_URL"),
        # Sessions live in a signed cookie, so any number of web hosts can serve.
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": env == "production",
        "SESSION_COOKIE_NAME": "accord_session",
        "STAFF_IDLE_MINUTES": _int("STAFF_IDLE_MINUTES", 30),
        "STAFF_ABSOLUTE_HOURS": _int("STAFF_ABSOLUTE_HOURS", 12),
        "REVEAL_MINUTES": _int("REVEAL_MINUTES", 5),
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
        "RATELIMIT_STORAGE_URI": _env("RATELIMIT_STORAGE_URI", redis_url or "memory://"),
        "RATELIMIT_HEADERS_ENABLED": True,
        "SIGNIN_RATE_LIMIT": _env("SIGNIN_RATE_LIMIT", "10 per minute;50 per hour"),
        # Per IP address: asking for codes, and typing them (a code also dies after 5 wrong tries).
        "BORROWER_SIGNIN_RATE_LIMIT": _env("BORROWER_SIGNIN_RATE_LIMIT", "20 per hour"),
        "BORROWER_CODE_RATE_LIMIT": _env("BORROWER_CODE_RATE_LIMIT", "30 per hour"),
        # Per borrower: downloads of "Your data" (each builds a ZIP of everything held).
        "DATA_EXPORT_RATE_LIMIT": _env("DATA_EXPORT_RATE_LIMIT", "10 per hour"),
        "BABEL_DEFAULT_LOCALE": "zh_Hans_CN",
        "BABEL_DEFAULT_TIMEZONE": "UTC",
        "BABEL_TRANSLATION_DIRECTORIES": str(ROOT / "translations"),
        "LANGUAGES": ("zh_Hans_CN", "en"),
        # Messages: "outbox" keeps them in the database (development, demo); "live" sends them.
        "NOTIFIER": _env("NOTIFIER", "live" if env == "production" else "outbox"),
        "SMTP_HOST": _env("SMTP_HOST"),
        "SMTP_PORT": _int("SMTP_PORT", 25),
        "SMTP_FROM": _env("SMTP_FROM", "Accord <no-reply@accord.invalid>"),
        "SMTP_STARTTLS": _env("SMTP_STARTTLS") == "1",
        "SMTP_USERNAME": _env("SMTP_USERNAME"),
        "SMTP_PASSWORD": _env("SMTP_PASSWORD"),
        "SMS_GATEWAY_URL": _env("SMS_GATEWAY_URL"),
        "SMS_GATEWAY_TOKEN": _env("SMS_GATEWAY_TOKEN"),
        "BORROWER_IDLE_MINUTES": _int("BORROWER_IDLE_MINUTES", 15),
        "BORROWER_ABSOLUTE_HOURS": _int("BORROWER_ABSOLUTE_HOURS", 12),
        # The review queue's counts are kept this many seconds per worker (0: computed per request).
        "DESK_COUNTS_SECONDS": _int("DESK_COUNTS_SECONDS", 30),
        # The policy in force is kept this many seconds per worker (0: read on every request).
        "POLICY_CACHE_SECONDS": _int("POLICY_CACHE_SECONDS", 60),
        # The address borrowers reach Accord at, for links in messages sent outside a request.
        "PUBLIC_URL": _env("PUBLIC_URL", "http://127.0.0.1:5000"),
        # Stripe: real keys talk to Stripe; the demo and the tests point the SDK at a local
        # localstripe (ACCORD_STRIPE_API_BASE) and load its Stripe.js (ACCORD_STRIPE_JS_URL).
        # Two webhook secrets, comma-separated, may be active while one is being rotated.
        "STRIPE_SECRET_KEY": _env("STRIPE_SECRET_KEY"),
        "STRIPE_PUBLISHABLE_KEY": _env("STRIPE_PUBLISHABLE_KEY"),
        "STRIPE_WEBHOOK_SECRET": _env("STRIPE_WEBHOOK_SECRET"),
        "STRIPE_API_BASE": _env("STRIPE_API_BASE"),
        "STRIPE_JS_URL": _env("STRIPE_JS_URL", "https://js.stripe.com/v3/"),
        # Webhook signatures older than this, or this far in the future, are refused.
        "STRIPE_WEBHOOK_TOLERANCE_SECONDS": _int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", 300),
        "STRIPE_MAX_NETWORK_RETRIES": _int("STRIPE_MAX_NETWORK_RETRIES", 2),
        "BENCH_REFERENCE_ROUTE": _env("BENCH_REFERENCE_ROUTE") == "1",
        # Log lines: one JSON object each for a log collector (production), or plain text to read.
        "LOG_FORMAT": _env("LOG_FORMAT", "json" if env == "production" else "text"),
        # Placement files: more rows, or more bytes, refuse the whole file.
        "PLACEMENT_MAX_ROWS": _int("PLACEMENT_MAX_ROWS", 200_000),
        "PLACEMENT_MAX_BYTES": _int("PLACEMENT_MAX_BYTES", 100 * 1024 * 1024),
        # The lenders' JSON API: requests per token (Flask-Limiter's notation), and the largest body.
        "API_RATE_LIMIT": _env("API_RATE_LIMIT", "600 per minute"),
        "API_MAX_BODY_BYTES": _int("API_MAX_BODY_BYTES", 1024 * 1024),
        "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
        # Proxies in front of Accord (a load balancer: 1) whose X-Forwarded-For and -Proto are
        # believed: the client's address (per-address rate limits, sign-in records) and https.
        # 0: the connection's own address, and no header can claim another.
        "PROXY_HOPS": _int("PROXY_HOPS", 0),
    }
    config.update(overrides)
    if config["NOTIFIER"] not in ("outbox", "live"):
        raise ConfigError(f"ACCORD_NOTIFIER must be outbox or live, not {config['NOTIFIER']!r}")
    if config["STORAGE_BACKEND"] not in ("local", "s3"):
        raise ConfigError(f"ACCORD_STORAGE_BACKEND must be local or s3, not {config['STORAGE_BACKEND']!r}")
    if config["STORAGE_BACKEND"] == "s3" and not config["S3_BUCKET"]:
        raise ConfigError("ACCORD_STORAGE_BACKEND=s3 needs ACCORD_S3_BUCKET, the bucket files are kept in")
    if config["S3_SERVER_SIDE_ENCRYPTION"] not in (None, "AES256", "aws:kms"):
        raise ConfigError(
            "ACCORD_S3_SERVER_SIDE_ENCRYPTION must be AES256 or aws:kms, "
            f"not {config['S3_SERVER_SIDE_ENCRYPTION']!r}"
        )
    if config["LOG_FORMAT"] not in ("json", "text"):
        raise ConfigError(f"ACCORD_LOG_FORMAT must be json or text, not {config['LOG_FORMAT']!r}")
    if env == "production" and not config["ENCRYPTION_KEYS"]:
        raise ConfigError("ACCORD_ENCRYPTION_KEYS must be set in production (flask crypto new-key)")
    if env == "production" and config["NOTIFIER"] == "outbox":
        raise ConfigError(
            "ACCORD_NOTIFIER=outbox keeps sign-in codes instead of sending them: not in production"
        )
    return config
