"""Benchmark Accord pages against the reference route, on the same server in the same run.

    .venv/bin/python bench/run.py --accounts 100000 --duration 10 --connections 32 --threads 2
    .venv/bin/python bench/run.py --page borrower-home --rounds 3

Creates (if missing), migrates and seeds the PostgreSQL database ``accord_bench`` with N accounts
and 10 N hardship cases (see bench/seed.py; reused when it already holds N for today), starts
``gunicorn -w 2`` (sync workers) on a free loopback port and measures, with wrk, the reference
route (one primary-key query and a tiny template, random account ids) and each chosen page:

* ``staff-account``: ``GET /staff/accounts/<id>`` with random ids, as a staff agent signed in
  over HTTP (password, then TOTP);
* ``borrower-home``: the borrower dashboard ``GET /home`` ("What I owe"), each request as one of
  ``--borrowers`` random borrowers, whose session cookies the runner mints with the server's own
  secret key (their sign-in code goes to a phone, which a benchmark cannot read);
* ``staff-queue``: the negotiation desk's review queue ``GET /staff/cases`` over 1,000,000 hardship
  cases (150,000 on the desk), as the same staff agent: a mix of the default view, filtered views
  and deeper pages (``after=<priority>.<id>`` cursors taken from the data).

Before measuring it checks that every route answers 200 with the expected account reference and
that the pages refuse a request without a session. Prints one table per page (requests/s, p50,
p99, the ratio page/reference and whether the targets are met), and writes the figures to
bench/results/<timestamp>.json. Stops gunicorn by its PID in every case.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
LUA = BENCH / "wrk_requests.lua"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import seed as bench_seed  # noqa: E402

HOST = "127.0.0.1"
COOKIE = "accord_session"
REFERENCE = "/_bench/reference/"
STAFF_PAGE = "/staff/accounts/"
BORROWER_HOME = "/home"
QUEUE_PAGE = "/staff/cases"
TARGET_RATIO = 0.6  # the account page's and the dashboard's targets
TARGET_P99_MS = 100.0
QUEUE_PAGE_SIZE = 25  # portal.services.negotiation_desk.PAGE_SIZE
MAX_SECONDS = 300  # a bound on any single wrk run
UNSTABLE_SPREAD = 1.25  # fastest/slowest round of a route beyond this: the machine was not quiet
CHECKED_BORROWERS = 20  # minted cookies checked one by one over HTTP before measuring
PARAMETERS = (
    "pages", "accounts", "borrowers", "duration", "connections", "threads", "workers", "warmup", "rounds",
    "seed", "app",
)  # fmt: skip


@dataclass(frozen=True)
class Page:
    key: str  # the --page choice
    title: str
    label: str  # the row in the table
    path: str  # as recorded in the JSON
    target_ratio: float = TARGET_RATIO
    target_p99_ms: float = TARGET_P99_MS


PAGES = {
    "staff-account": Page(
        "staff-account", "staff account page", f"page {STAFF_PAGE}<id>", f"{STAFF_PAGE}<id>"
    ),
    "borrower-home": Page("borrower-home", "borrower dashboard", f"page {BORROWER_HOME}", BORROWER_HOME),
    # The queue's issue: 1,000,000 cases, ratio >= 0.5 and p99 <= 150 ms at 32 connections.
    "staff-queue": Page(
        "staff-queue", "staff review queue", f"page {QUEUE_PAGE}?…", f"{QUEUE_PAGE}?<mix>", 0.5, 150.0
    ),
}
STAFF_PAGES = ("staff-account", "staff-queue")


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------- HTTP, stdlib only


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: str

    @property
    def location(self) -> str:
        return urlsplit(self.headers.get("Location", "")).path

    @property
    def sets_session(self) -> bool:
        return any(h.startswith(f"{COOKIE}=") for h in self.headers.get_all("Set-Cookie") or [])


def http_request(
    port: int, method: str, path: str, *, cookie: str | None = None, form: dict[str, str] | None = None
) -> Response:
    """One request, redirects not followed, so every hop of the sign-in can be checked."""
    headers = {"Accept-Language": "zh-CN"}
    body = None
    if cookie:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    if form is not None:
        body = urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read().decode("utf-8", "replace"))
    finally:
        conn.close()


def session_cookie(resp: Response, previous: str | None) -> str | None:
    """The ``accord_session`` value a response sets, else the one the client already had."""
    for header in resp.headers.get_all("Set-Cookie") or []:
        match = re.match(rf"{COOKIE}=([^;]*)", header)
        if match:
            return match.group(1) or None
    return previous


def csrf_token(html: str) -> str:
    for tag in re.findall(r"<input[^>]*>", html):
        if 'name="csrf_token"' in tag:
            match = re.search(r'value="([^"]+)"', tag)
            if match:
                return match.group(1)
    raise BenchError("no csrf_token input in the sign-in page")


def sign_in(port: int, email: str, password: str, totp_secret: str) -> str:
    """Sign in as staff over HTTP (password, then TOTP code); return the session cookie."""
    import pyotp

    resp = http_request(port, "GET", "/staff/login")
    if resp.status != 200:
        raise BenchError(f"GET /staff/login answered {resp.status}")
    cookie = session_cookie(resp, None)
    form = {"email": email, "password": password, "csrf_token": csrf_token(resp.body)}
    resp = http_request(port, "POST", "/staff/login", cookie=cookie, form=form)
    if resp.status != 302 or resp.location != "/staff/login/code":
        raise BenchError(f"password step answered {resp.status} -> {resp.location!r}, not the code page")
    cookie = session_cookie(resp, cookie)
    resp = http_request(port, "GET", "/staff/login/code", cookie=cookie)
    if resp.status != 200:
        raise BenchError(f"GET /staff/login/code answered {resp.status}")
    cookie = session_cookie(resp, cookie)
    form = {"code": pyotp.TOTP(totp_secret).now(), "csrf_token": csrf_token(resp.body)}
    resp = http_request(port, "POST", "/staff/login/code", cookie=cookie, form=form)
    if resp.status != 302 or resp.location.startswith("/staff/login"):
        raise BenchError(f"TOTP step answered {resp.status} -> {resp.location!r}, not signed in")
    cookie = session_cookie(resp, cookie)
    if not cookie:
        raise BenchError("no session cookie after sign-in")
    return cookie


def check_reference(port: int, account_id: int, reference: str) -> None:
    """The reference route answers 200 with the account's reference, without a cookie."""
    path = f"{REFERENCE}{account_id}"
    resp = http_request(port, "GET", path)
    if resp.status != 200:
        raise BenchError(f"GET {path} answered {resp.status} -> {resp.location!r}")
    if reference not in resp.body:
        raise BenchError(f"GET {path} does not show {reference}")


def check_staff_page(port: int, cookie: str, account_id: int, reference: str) -> str:
    """The page answers 200 with the account's reference with the staff cookie, and not without it.

    Returns the cookie a browser would hold after this first page: the server adds the CSRF
    token of the page's forms to the session (the sign-in ended the session that had one) and
    sends the cookie again; a browser stores it, wrk would not, and would make the server
    re-sign the session on every request."""
    path = f"{STAFF_PAGE}{account_id}"
    for _ in range(2):
        resp = http_request(port, "GET", path, cookie=cookie)
        if resp.status != 200:
            raise BenchError(f"GET {path} answered {resp.status} -> {resp.location!r}")
        if reference not in resp.body:
            raise BenchError(f"GET {path} does not show {reference}")
        cookie = session_cookie(resp, cookie) or cookie
    if resp.sets_session:
        print(f"warning: GET {path} re-signs the session cookie on every request")
    anonymous = http_request(port, "GET", path)
    if anonymous.status == 200:
        raise BenchError(f"GET {path} answered 200 without signing in")
    return cookie


# --------------------------------------------------------------------------- the review queue

# The queue's URLs: the default view (the waiting cases, highest priority first), the filter form
# as a browser submits it (every field, the empty ones too), and deeper pages as the "Next cases"
# link spells them, with the cursor of the last row of the page before. Each comes with the SQL
# condition that says, independently of the portal's code, which cases it must show.
QUEUE_FORM_FIELDS = ("stage", "band", "relief", "sla", "vulnerable", "age", "assignee")
QUEUE_FILTERS = {  # name: (the form's values, the cases it keeps)
    "stage=mid": ({"stage": "mid"}, "a.stage = 'mid'"),
    "sla=breached": ({"sla": "breached"}, "c.review_due_on < :today"),
    "vulnerable=1": ({"vulnerable": "1"}, "c.vulnerable"),
    "band=2": ({"band": "2"}, "c.amount_band = 2"),
}
QUEUE_DEEP_PAGES = {  # filter (None: the default view): page numbers reached with a cursor
    None: (2, 3, 5, 10, 30, 100, 300, 1000, 2000, 3000),
    "stage=mid": (4,),
    "sla=breached": (20,),
}
QUEUE_WEIGHTS = {"default": 10, "filtered": 2, "deep": 1}  # times each URL is in the file
# With these weights: 1/3 of the requests ask for the default view, 27 % for a filtered view
# (4 filters) and 40 % for a deeper page (12 cursors).


@dataclass(frozen=True)
class QueueUrl:
    kind: str  # default | filtered | deep
    path: str
    expected: tuple[int, ...]  # the case ids the page must list, in order


def _queue_form_path(values: dict[str, str]) -> str:
    fields = {"view": "waiting", **{name: values.get(name, "") for name in QUEUE_FORM_FIELDS}}
    return f"{QUEUE_PAGE}?{urlencode(fields)}"


def queue_urls(url: str) -> list[QueueUrl]:
    """The queue's URL mix, each with the cases it must show, read from the bench database."""
    from sqlalchemy import create_engine, text

    from portal.services.hardship import desk_today

    def rows(where: str, after: tuple[int, int] | None, offset: int, limit: int) -> list[Any]:
        cursor = "AND (c.priority, c.id) < (:priority, :id)" if after else ""
        return conn.execute(
            text(
                f"""
                SELECT c.priority, c.id FROM hardship_case c JOIN account a ON a.id = c.account_id
                WHERE c.state = 'in_review' AND {where} {cursor}
                ORDER BY c.priority DESC, c.id DESC OFFSET :offset LIMIT :limit
                """
            ),
            {"today": desk_today(), "priority": after[0] if after else 0, "id": after[1] if after else 0,
             "offset": offset, "limit": limit},
        ).all()  # fmt: skip

    urls: list[QueueUrl] = []
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            top = tuple(r.id for r in rows("true", None, 0, QUEUE_PAGE_SIZE))
            urls.append(QueueUrl("default", QUEUE_PAGE, top))
            for values, where in QUEUE_FILTERS.values():
                first = tuple(r.id for r in rows(where, None, 0, QUEUE_PAGE_SIZE))
                urls.append(QueueUrl("filtered", _queue_form_path(values), first))
            for name, pages in QUEUE_DEEP_PAGES.items():
                values, where = QUEUE_FILTERS[name] if name else ({}, "true")
                for number in pages:
                    last = rows(where, None, QUEUE_PAGE_SIZE * (number - 1) - 1, 1)
                    if not last:
                        continue  # fewer pages than that (a small --accounts)
                    after = (int(last[0].priority), int(last[0].id))
                    expected = tuple(r.id for r in rows(where, after, 0, QUEUE_PAGE_SIZE))
                    query = urlencode({"after": f"{after[0]}.{after[1]}", "view": "waiting", **values})
                    urls.append(QueueUrl("deep", f"{QUEUE_PAGE}?{query}", expected))
    finally:
        engine.dispose()
    empty = [u.path for u in urls if not u.expected]
    if empty:
        raise BenchError(f"the bench data have no waiting case for {empty[0]}")
    return urls


def write_queue_paths(urls: list[QueueUrl], path: Path) -> None:
    path.write_text("".join(f"{u.path}\n" * QUEUE_WEIGHTS[u.kind] for u in urls))


_CASE_LINK = re.compile(rf'href="{QUEUE_PAGE}/(\d+)"')


def check_queue(port: int, cookie: str, urls: list[QueueUrl]) -> str:
    """Every URL of the mix answers 200 with the staff cookie and lists exactly the cases the SQL
    says, in order; without a session the queue does not answer 200. Returns the cookie a browser
    would hold after the first page (see check_staff_page)."""
    for queue_url in urls:
        for _ in range(2):
            resp = http_request(port, "GET", queue_url.path, cookie=cookie)
            if resp.status != 200:
                raise BenchError(f"GET {queue_url.path} answered {resp.status} -> {resp.location!r}")
            cookie = session_cookie(resp, cookie) or cookie
        shown = tuple(int(x) for x in _CASE_LINK.findall(resp.body))
        if shown != queue_url.expected:
            raise BenchError(
                f"GET {queue_url.path} lists cases {shown[:3]}… ({len(shown)}), "
                f"not {queue_url.expected[:3]}… ({len(queue_url.expected)})"
            )
        if resp.sets_session:
            print(f"warning: GET {queue_url.path} re-signs the session cookie on every request")
    anonymous = http_request(port, "GET", QUEUE_PAGE)
    if anonymous.status == 200:
        raise BenchError(f"GET {QUEUE_PAGE} answered 200 without signing in")
    return cookie


# --------------------------------------------------------------------------- borrower sessions


@dataclass(frozen=True)
class Borrower:
    id: int
    session_version: int
    language: str
    references: tuple[str, ...]  # of the open accounts the dashboard lists


def pick_borrowers(url: str, count: int, seed: int) -> list[Borrower]:
    """``count`` borrowers drawn at random (the same ones for the same seed), with open accounts."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ids = sorted(conn.scalars(text("SELECT id FROM borrower")))
            chosen = random.Random(seed).sample(ids, min(count, len(ids)))  # noqa: S311
            rows = conn.execute(
                text(
                    """
                    SELECT b.id, b.session_version, b.language,
                           array_agg(a.external_reference ORDER BY a.id) AS refs
                    FROM borrower b JOIN account a ON a.borrower_id = b.id AND a.status = 'open'
                    WHERE b.id = ANY(:ids)
                    GROUP BY b.id
                    """
                ),
                {"ids": chosen},
            ).all()
    finally:
        engine.dispose()
    found = {r.id: Borrower(r.id, r.session_version, r.language, tuple(r.refs)) for r in rows}
    missing = [i for i in chosen if i not in found]
    if missing:
        raise BenchError(f"{len(missing)} sampled borrowers have no open account, e.g. borrower {missing[0]}")
    return [found[i] for i in chosen]


class Sessions:
    """Signed session cookies, made with the server's own secret key and its own code.

    A borrower signs in with a one-time code sent to their phone, which the benchmark cannot read
    over HTTP (and the server runs no task consumer to send it), so the runner builds the session
    that ``borrower.signin_code`` would: ``login_user`` (user id with session version, fresh, and
    Flask-Login's identifier of the client, here a loopback client with no User-Agent, as wrk
    is), the borrower's language, ``auth_at`` and ``seen_at``; plus the CSRF token the first page
    after sign-in adds (its forms need one), so the cookie is the one a browser holds from then
    on and the server has no reason to sign it again on every request."""

    def __init__(self, config: dict[str, Any]) -> None:
        from portal import create_app

        self.app = create_app(config)
        self.database_url = str(config["DATABASE_URL"])
        self.serializer = self.app.session_interface.get_signing_serializer(self.app)  # type: ignore[attr-defined]
        if self.serializer is None:
            raise BenchError("the app has no secret key to sign sessions with")

    def borrower(self, borrower: Borrower, now: int) -> str:
        from flask import session
        from flask_login import login_user
        from flask_wtf.csrf import generate_csrf

        from portal.models import Borrower as BorrowerModel

        user = BorrowerModel(
            id=borrower.id, session_version=borrower.session_version, language=borrower.language
        )
        with self.app.test_request_context(BORROWER_HOME, environ_base={"REMOTE_ADDR": HOST}):
            if not login_user(user):
                raise BenchError(f"borrower {borrower.id} cannot sign in")
            session.setdefault("lang", borrower.language)
            session["auth_at"] = session["seen_at"] = now
            generate_csrf()
            return str(self.serializer.dumps(dict(session)))

    def touch(self, cookie: str) -> str:
        """The cookie with ``seen_at`` now, as the server re-signs it once a minute and a browser
        keeps it: wrk sends one cookie for a whole run, and one older than a minute would make
        the server sign a new one on every request."""
        payload = self.serializer.loads(cookie)
        payload["seen_at"] = int(time.time())
        return str(self.serializer.dumps(payload))

    def close(self) -> None:
        from portal.extensions import db

        db.bound(self.app).dispose()


def write_borrower_cookies(sessions: Sessions, borrowers: list[Borrower], path: Path) -> list[str]:
    """Mint one cookie per borrower, signed in just now (so no ``seen_at`` refresh during a run)."""
    now = int(time.time())
    cookies = [sessions.borrower(b, now) for b in borrowers]
    path.write_text("".join(f"{c}\n" for c in cookies))
    return cookies


def check_borrower_home(port: int, borrowers: list[Borrower], cookies: list[str]) -> None:
    """Without a session /home redirects to the sign-in page; with a minted cookie it answers 200
    with that borrower's own account references, for a spread sample of the borrowers."""
    anonymous = http_request(port, "GET", BORROWER_HOME)
    if anonymous.status != 302 or anonymous.location != "/signin":
        raise BenchError(
            f"GET {BORROWER_HOME} without a session answered {anonymous.status} -> {anonymous.location!r}, "
            "not a redirect to /signin"
        )
    step = max(1, len(borrowers) // CHECKED_BORROWERS)
    resigned = 0
    for borrower, cookie in list(zip(borrowers, cookies, strict=True))[::step]:
        resp = http_request(port, "GET", BORROWER_HOME, cookie=cookie)
        if resp.status != 200:
            raise BenchError(
                f"GET {BORROWER_HOME} as borrower {borrower.id} answered {resp.status} -> {resp.location!r}"
            )
        for reference in borrower.references:
            if reference not in resp.body:
                raise BenchError(f"GET {BORROWER_HOME} as borrower {borrower.id} does not show {reference}")
        resigned += resp.sets_session
    if resigned:
        print(f"warning: GET {BORROWER_HOME} re-signed {resigned} minted session cookies")


# --------------------------------------------------------------------------- gunicorn


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_config(database_url: str, instance: str, secret_key: str) -> dict[str, Any]:
    """The app's settings, the same for gunicorn (as ACCORD_ variables) and the cookie minter."""
    return {
        "ACCORD_ENV": "development",  # production sets Secure cookies, which plain HTTP drops
        "SECRET_KEY": secret_key,
        "DATABASE_URL": database_url,
        "INSTANCE_PATH": instance,
        "BENCH_REFERENCE_ROUTE": True,
        "RATELIMIT_STORAGE_URI": "memory://",
    }


def server_env(config: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCORD_")}
    env.update(
        {
            "ACCORD_ENV": config["ACCORD_ENV"],
            "ACCORD_SECRET_KEY": config["SECRET_KEY"],
            "ACCORD_DATABASE_URL": config["DATABASE_URL"],
            "ACCORD_INSTANCE_PATH": config["INSTANCE_PATH"],
            "ACCORD_BENCH_REFERENCE_ROUTE": "1" if config["BENCH_REFERENCE_ROUTE"] else "",
            "ACCORD_RATELIMIT_STORAGE_URI": config["RATELIMIT_STORAGE_URI"],
        }
    )
    return env


def start_gunicorn(
    port: int, workers: int, env: dict[str, str], log: Path, app: str = "wsgi:app"
) -> subprocess.Popen[bytes]:
    """``app`` is ``module:callable``, or ``path/to/file.py:callable`` for an experiment (a
    throw-away module that patches the app), whose folder goes on gunicorn's Python path."""
    module, _sep, name = app.rpartition(":")
    extra: list[str] = []
    if module.endswith(".py"):
        extra = ["--pythonpath", str(Path(module).resolve().parent)]
        module = Path(module).stem
    gunicorn = Path(sys.executable).parent / "gunicorn"
    cmd = [
        str(gunicorn),
        "--workers", str(workers),
        "--worker-class", "sync",
        "--bind", f"{HOST}:{port}",
        "--chdir", str(ROOT),
        "--log-level", "warning",
        *extra,
        f"{module}:{name}",
    ]  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"gunicorn exited with {proc.returncode}:\n{tail(log)}")
        try:
            if http_request(port, "GET", "/healthz").status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"gunicorn did not answer /healthz within {timeout:.0f} s:\n{tail(log)}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)  # gunicorn's graceful stop; its workers exit with it
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------- wrk


@dataclass(frozen=True)
class Target:
    """What one wrk run requests: a Lua script, its arguments, and a cookie for every request."""

    route: str
    script: Path
    script_args: tuple[str, ...]
    cookie: str | None = None


@dataclass
class WrkResult:
    route: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_200: int
    statuses: str
    set_cookie: int  # responses that signed the session again (wrk does not keep cookies)
    socket_errors: dict[str, int]
    latency_avg_ms: float
    latency_max_ms: float


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not match:
        raise BenchError(f"unreadable wrk latency {value!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(route: str, out: str) -> WrkResult:
    """Read wrk's own text (Requests/sec, the 50% and 99% latency lines) and our Lua summary."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    lat = re.search(r"^\s+Latency\s+(\S+)\s+\S+\s+(\S+)", out, re.M)
    lua = re.search(r"^BENCH non200=(\d+) statuses=(\S*) requests=(\d+) set_cookie=(\d+)", out, re.M)
    if not (rps and p50 and p99 and lat and lua):
        raise BenchError(f"could not read wrk's output:\n{out}")
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors = dict(zip(errors, map(int, sock.groups()), strict=True))
    return WrkResult(
        route=route,
        requests_per_s=float(rps.group(1)),
        p50_ms=_ms(p50.group(1)),
        p99_ms=_ms(p99.group(1)),
        requests=int(lua.group(3)),
        non_200=int(lua.group(1)),
        statuses=lua.group(2),
        set_cookie=int(lua.group(4)),
        socket_errors=errors,
        latency_avg_ms=_ms(lat.group(1)),
        latency_max_ms=_ms(lat.group(2)),
    )


def run_wrk(args: argparse.Namespace, port: int, target: Target, duration: int) -> str:
    cmd = [
        args.wrk,
        f"-t{args.threads}", f"-c{args.connections}", f"-d{duration}s", "--timeout", "10s", "--latency",
        *(["-H", f"Cookie: {COOKIE}={target.cookie}"] if target.cookie else []),
        "-s", str(target.script),
        f"http://{HOST}:{port}",
        "--", *target.script_args,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    drain(port)
    return done.stdout


def drain(port: int, timeout: float = 120.0) -> None:
    """Wait for the requests wrk left queued at its end: gunicorn's sync workers still answer
    every connection accepted into the listen backlog, and a slow page's backlog would otherwise
    be served during the next route's measurement. A request sent now is served after them."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        conn.getresponse().read()
    except OSError as exc:
        raise BenchError(f"the server did not answer after a wrk run: {exc}") from exc
    finally:
        conn.close()


def measure(args: argparse.Namespace, port: int, target: Target) -> WrkResult:
    out = run_wrk(args, port, target, args.duration)
    if args.verbose:
        print(out)
    result = parse_wrk(target.route, out)
    if result.requests == 0:
        raise BenchError(f"{target.route}: wrk completed no request")
    if result.non_200:
        raise BenchError(
            f"{target.route}: {result.non_200} of {result.requests} responses were not 200 "
            f"({result.statuses}); the figures would not be for the real page"
        )
    if result.set_cookie:
        print(
            f"warning: {target.route}: {result.set_cookie} of {result.requests} responses signed the session "
            "cookie again (a browser would keep the new cookie; wrk pays for it on every request)"
        )
    return result


def median_result(route: str, rounds: list[WrkResult]) -> WrkResult:
    if len(rounds) == 1:
        return rounds[0]
    return WrkResult(
        route=route,
        requests_per_s=round(statistics.median(r.requests_per_s for r in rounds), 2),
        p50_ms=round(statistics.median(r.p50_ms for r in rounds), 3),
        p99_ms=round(statistics.median(r.p99_ms for r in rounds), 3),
        requests=sum(r.requests for r in rounds),
        non_200=sum(r.non_200 for r in rounds),
        statuses="",
        set_cookie=sum(r.set_cookie for r in rounds),
        socket_errors={k: sum(r.socket_errors[k] for r in rounds) for k in rounds[0].socket_errors},
        latency_avg_ms=round(statistics.mean(r.latency_avg_ms for r in rounds), 3),
        latency_max_ms=max(r.latency_max_ms for r in rounds),
    )


# --------------------------------------------------------------------------- report


def machine() -> dict[str, object]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }


def git_revision() -> str:
    git = shutil.which("git")
    if not git:
        return ""
    done = subprocess.run(
        [git, "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip()


def postgres_version(url: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.scalar(text("SHOW server_version")))
    finally:
        engine.dispose()


def print_header(args: argparse.Namespace, load: dict[str, object]) -> None:
    print()
    print(
        f"Accord bench: {args.accounts:,} accounts, gunicorn -w {args.workers} (sync), "
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s"
        + (f", median of {args.rounds} rounds" if args.rounds > 1 else "")
    )
    busy, during = load.get("cpu_busy_before"), load.get("cpu_during_measurement")
    if isinstance(busy, float) and isinstance(during, dict):
        print(
            f"{os.cpu_count()} CPUs: {busy:.0%} busy in the second before the run; during it "
            f"{during['busy']:.0%} busy, {during['steal']:.1%} stolen by the VM host"
        )


def print_table(
    args: argparse.Namespace, page: Page, ref: WrkResult, result: WrkResult, ratio: float
) -> None:
    title = page.title
    if page.key == "borrower-home":
        title += f" ({args.borrowers:,} random borrowers, a signed-in session each)"
    if page.key == "staff-queue":
        title += " (default view, filtered views, deeper pages; as the signed-in staff agent)"
    print()
    print(title)
    print(f"{'route':<34} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'requests':>10}")
    for label, r in ((f"reference {REFERENCE}<id>", ref), (page.label, result)):
        print(f"{label:<34} {r.requests_per_s:>10.1f} {r.p50_ms:>9.2f} {r.p99_ms:>9.2f} {r.requests:>10}")
        errors = {k: v for k, v in r.socket_errors.items() if v}
        if errors:
            print(f"  socket errors: {errors}")
    ratio_ok = ratio >= page.target_ratio
    p99_ok = result.p99_ms <= page.target_p99_ms
    shown = f"{ratio:.2f}" if (round(ratio, 2) >= page.target_ratio) == ratio_ok else f"{ratio:.3f}"
    print(
        f"ratio page/reference: {shown}  (target >= {page.target_ratio}: {'met' if ratio_ok else 'NOT MET'})"
    )
    verdict = "met" if p99_ok else "NOT MET"
    print(f"page p99: {result.p99_ms:.1f} ms  (target <= {page.target_p99_ms:.0f} ms: {verdict})")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--page",
        choices=[*PAGES, "all"],
        default="all",
        help="the page to measure against the reference route (default: all)",
    )
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument(
        "--borrowers", type=int, default=1000, help="signed-in borrowers /home is requested as"
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of wrk per route before measuring")
    parser.add_argument("--rounds", type=int, default=1, help="alternate reference/pages this many times")
    parser.add_argument("--seed", type=int, default=2026, help="random seed of the account ids and borrowers")
    parser.add_argument("--reseed", action="store_true", help="rebuild the data even if N accounts exist")
    parser.add_argument("--server", default=bench_seed.DEFAULT_SERVER, help="PostgreSQL URL, no database")
    parser.add_argument("--database", default=bench_seed.DEFAULT_DATABASE)
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--app",
        default="wsgi:app",
        help="the WSGI app gunicorn serves: module:callable, or path/to/file.py:callable for an experiment",
    )
    parser.add_argument("--verbose", action="store_true", help="print wrk's full output")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= MAX_SECONDS or not 0 <= args.warmup <= MAX_SECONDS:
        parser.error(f"--duration and --warmup must be at most {MAX_SECONDS} s")
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be 1 to 10")
    if not 1 <= args.borrowers <= min(args.accounts, 100_000):
        parser.error("--borrowers must be 1 to the number of accounts (at most 100,000)")
    if urlsplit(args.server).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("--server must be on a loopback address")
    args.pages = list(PAGES) if args.page == "all" else [args.page]
    return args


def prepare_targets(
    args: argparse.Namespace,
    port: int,
    sessions: Sessions,
    *,
    probe: int,
    probe_ref: str,
    staff: tuple[str, str],
    borrowers: list[Borrower],
    cookie_file: Path,
    queue_file: Path,
) -> dict[str, Callable[[], Target]]:
    """Sign in and check each route; return, per route, how to make its next wrk run."""
    check_reference(port, probe, probe_ref)
    ids = ("1", str(args.accounts), str(args.seed))
    # The reference route is measured as the cheapest database-backed page: no cookie, so no
    # user is loaded, one primary-key query.
    targets: dict[str, Callable[[], Target]] = {
        "reference": lambda: Target("reference", LUA, ("ids", REFERENCE, *ids))
    }
    staff_cookie = ""
    if any(page in STAFF_PAGES for page in args.pages):  # one sign-in: a TOTP code is single-use
        staff_cookie = sign_in(port, bench_seed.BENCH_STAFF_EMAIL, *staff)
        print("staff agent signed in over HTTP (password, then TOTP)")
    if "staff-account" in args.pages:
        staff_cookie = check_staff_page(port, staff_cookie, probe, probe_ref)
        print("the staff account page answers 200 with the account's reference, and not without a session")
        targets["staff-account"] = lambda: Target(
            "staff-account", LUA, ("ids", STAFF_PAGE, *ids), sessions.touch(staff_cookie)
        )
    if "staff-queue" in args.pages:
        urls = queue_urls(sessions.database_url)
        staff_cookie = check_queue(port, staff_cookie, urls)
        write_queue_paths(urls, queue_file)
        weights = {kind: sum(QUEUE_WEIGHTS[kind] for u in urls if u.kind == kind) for kind in QUEUE_WEIGHTS}
        share = {kind: n / sum(weights.values()) for kind, n in weights.items()}
        print(
            f"the review queue answers 200 with the expected cases for each of its {len(urls)} URLs, and "
            f"not without a session; requests: {share['default']:.0%} the default view, "
            f"{share['filtered']:.0%} filtered views, {share['deep']:.0%} deeper pages"
        )
        targets["staff-queue"] = lambda: Target(
            "staff-queue", LUA, ("paths", str(queue_file), str(args.seed)), sessions.touch(staff_cookie)
        )
    if "borrower-home" in args.pages:
        cookies = write_borrower_cookies(sessions, borrowers, cookie_file)
        check_borrower_home(port, borrowers, cookies)
        print(
            f"{len(borrowers):,} borrower sessions minted; /home answers 200 with each checked borrower's "
            "accounts and redirects to /signin without a session"
        )

        def borrower_home() -> Target:
            write_borrower_cookies(sessions, borrowers, cookie_file)  # signed in just now
            return Target("borrower-home", LUA, ("cookies", BORROWER_HOME, str(cookie_file), str(args.seed)))

        targets["borrower-home"] = borrower_home
    return targets


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: run `scripts/setup.sh bench` (as root it installs the Debian package)")
        return 2
    import pyotp

    from portal.services.staff import hash_password

    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    url = bench_seed.database_url(args.server, args.database)

    t = time.perf_counter()
    seeded = bench_seed.prepare(url, args.accounts, reseed=args.reseed)
    seed_seconds = round(time.perf_counter() - t, 2)
    state = "reused" if seeded.reused else "seeded"
    print(
        f"database {args.database}: {state} {seeded.accounts:,} accounts, "
        f"{seeded.ledger_entries:,} ledger entries, {seeded.cases:,} hardship cases, "
        f"{seeded.offers:,} offers in {seed_seconds} s {seeded.seconds}"
    )

    staff = (secrets.token_urlsafe(24), pyotp.random_base32())  # password, TOTP secret
    if any(page in STAFF_PAGES for page in args.pages):
        bench_seed.upsert_staff_user(url, hash_password(staff[0]), staff[1])
    borrowers = pick_borrowers(url, args.borrowers, args.seed) if "borrower-home" in args.pages else []
    probe = max(1, args.accounts // 2)
    probe_ref = account_reference(url, probe)

    load: dict[str, object] = {"at_start": _loadavg(), "cpu_busy_before": cpu_busy()}
    if (busy := load["cpu_busy_before"]) is not None and busy > 0.25:  # type: ignore[operator]
        print(f"warning: the CPUs were {busy:.0%} busy just before the run: figures will be noisy")
    port = free_port()
    log = RESULTS / f"{stamp}-gunicorn.log"
    rounds: dict[str, list[WrkResult]] = {"reference": [], **{key: [] for key in args.pages}}
    with tempfile.TemporaryDirectory(prefix="accord-bench-") as instance:
        config = server_config(url, instance, secrets.token_urlsafe(48))
        sessions = Sessions(config)
        cookie_file = Path(instance) / "borrower-cookies.txt"
        proc = start_gunicorn(port, args.workers, server_env(config), log, args.app)
        print(f"gunicorn pid {proc.pid} on http://{HOST}:{port} (log {log.relative_to(ROOT)})")
        try:
            wait_healthy(proc, port, log)
            check_reference(port, probe, probe_ref)
            targets = prepare_targets(
                args,
                port,
                sessions,
                probe=probe,
                probe_ref=probe_ref,
                staff=staff,
                borrowers=borrowers,
                cookie_file=cookie_file,
                queue_file=Path(instance) / "queue-paths.txt",
            )
            if args.warmup:
                for make in targets.values():
                    run_wrk(args, port, make(), args.warmup)
            load["before"] = _loadavg()
            counters = cpu_times()
            for _ in range(args.rounds):
                for route, make in targets.items():
                    rounds[route].append(measure(args, port, make()))
            load["after"] = _loadavg()
            load["cpu_during_measurement"] = cpu_share(counters, cpu_times())
            if proc.poll() is not None:
                raise BenchError(f"gunicorn died during the run:\n{tail(log)}")
        finally:
            stop(proc)
            sessions.close()

    medians = {route: median_result(route, runs) for route, runs in rounds.items()}
    ref = medians["reference"]
    print_header(args, load)
    pages: dict[str, dict[str, object]] = {}
    for key in args.pages:
        result = medians[key]
        ratio = result.requests_per_s / ref.requests_per_s
        print_table(args, PAGES[key], ref, result, ratio)
        ratios = [
            p.requests_per_s / r.requests_per_s for r, p in zip(rounds["reference"], rounds[key], strict=True)
        ]
        if len(ratios) > 1:
            print(f"per-round ratios: {', '.join(f'{x:.2f}' for x in ratios)}")
        pages[key] = {
            "path": PAGES[key].path,
            "ratio": round(ratio, 3),
            "round_ratios": [round(x, 3) for x in ratios],
            "ratio_met": ratio >= PAGES[key].target_ratio,
            "p99_met": result.p99_ms <= PAGES[key].target_p99_ms,
            "targets": {"ratio_min": PAGES[key].target_ratio, "p99_max_ms": PAGES[key].target_p99_ms},
        }
    spread = {
        route: round(max(x.requests_per_s for x in runs) / min(x.requests_per_s for x in runs), 2)
        for route, runs in rounds.items()
    }
    unstable = max(spread.values()) > UNSTABLE_SPREAD
    if unstable:
        print(
            f"warning: req/s varied by up to {max(spread.values()):.2f}x between rounds: something else "
            "used the CPUs; run again on a quiet machine"
        )
    met = all(p["ratio_met"] and p["p99_met"] for p in pages.values())
    paths = {"reference": f"{REFERENCE}<id>", **{key: PAGES[key].path for key in args.pages}}
    result_doc = {
        "started_at": started.isoformat(timespec="seconds"),
        "git": git_revision(),
        "machine": machine(),
        "postgresql": postgres_version(url),
        "load_average": load,
        "parameters": {k: getattr(args, k) for k in PARAMETERS},
        "seed": {
            "reused": seeded.reused,
            "ledger_entries": seeded.ledger_entries,
            "hardship_cases": seeded.cases,
            "offers": seeded.offers,
            "seconds": seed_seconds,
            "phases": seeded.seconds,
        },
        "routes": {route: {"path": paths[route], **asdict(r)} for route, r in medians.items()},
        "rounds": {route: [asdict(r) for r in runs] for route, runs in rounds.items()},
        "pages": pages,
        "round_spread": spread,
        "unstable": unstable,
        "targets": {"met": met},  # each page's own are in "pages"
    }
    out = RESULTS / f"{stamp}.json"
    out.write_text(json.dumps(result_doc, indent=2, ensure_ascii=False) + "\n")
    print(f"results: {out.relative_to(ROOT)}")
    return 1 if args.check and not met else 0


def cpu_times() -> list[int] | None:
    """The machine's CPU time counters (user nice system idle iowait irq softirq steal)."""
    try:
        return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None


def cpu_share(before: list[int] | None, after: list[int] | None) -> dict[str, float] | None:
    """Busy and stolen (by the VM's host) shares of all CPUs between two ``cpu_times``."""
    if not before or not after:
        return None
    delta = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(delta)
    if total <= 0:
        return None
    return {"busy": round(1 - (delta[3] + delta[4]) / total, 3), "steal": round(delta[7] / total, 3)}


def cpu_busy(seconds: float = 1.0) -> float | None:
    """The share of all CPUs busy over the next ``seconds``, or None where unknown."""
    before = cpu_times()
    time.sleep(seconds)
    share = cpu_share(before, cpu_times())
    return share["busy"] if share else None


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def account_reference(url: str, account_id: int) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ref = conn.scalar(text("SELECT external_reference FROM account WHERE id = :i"), {"i": account_id})
    finally:
        engine.dispose()
    if ref is None:
        raise BenchError(f"account {account_id} is missing from the bench database")
    return str(ref)


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
