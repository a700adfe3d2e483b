"""Browser-test fixtures, self-contained: a seeded SQLite file database, the app served on a free
127.0.0.1 port from a background thread, one Chromium per session and a fresh phone-sized context
per test. Also the checks every page must pass: axe-core (no serious or critical violation) and no
horizontal overflow at 390 and 360 CSS pixels. Each checked page is saved as a full-page screenshot
under test-artifacts/screenshots/ for a human to look at.

Background jobs run inline in the server (Huey's immediate mode), so a borrower's sign-in code is
in the outbox table by the time the next page shows: ``outbox`` reads it. ``borrowers`` hands out
demo borrowers with something overdue, a different one to each test that signs in (a borrower
gets at most three codes in 15 minutes).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, ViewportSize, sync_playwright
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from portal import create_app
from portal.config import ROOT
from portal.extensions import db
from portal.migrations import alembic_config
from portal.models import Account, Borrower, HardshipCase, OutboundMessage, StaffUser
from portal.services import demo
from portal.tasks import huey
from tests.stripe_support import LocalStripe, start_localstripe, stripe_config

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE: ViewportSize = {"width": 390, "height": 844}
NARROW_PHONE_WIDTH = 360  # many borrowers' phones
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
AXE_REPORTS = ARTIFACTS / "axe"
BLOCKING_IMPACTS = ("serious", "critical")
DEMO_BORROWERS = 60


@dataclass(frozen=True)
class DemoAccount:
    id: int
    external_reference: str
    currency: str
    total_balance: int
    phone: str
    national_id: str


@dataclass(frozen=True)
class BorrowerAccount:
    """One open account of a demo borrower, as the seed left it (amounts in minor units)."""

    id: int
    external_reference: str
    currency: str
    total_balance: int
    overdue_amount: int
    principal_balance: int
    interest_balance: int
    fees_balance: int
    dpd: int
    stage: str


@dataclass(frozen=True)
class DemoBorrower:
    """A demo borrower who can sign in: reference and date of birth; the code goes to ``phone``."""

    id: int
    language: str  # "en" or "zh_Hans_CN"
    reference: str  # the external reference of the borrower's most overdue account
    date_of_birth: dt.date
    phone: str
    accounts: tuple[BorrowerAccount, ...]  # open, most days late first (the dashboard's order)


@dataclass(frozen=True)
class LiveServer:
    url: str
    totp_secrets: dict[str, str]  # staff e-mail → TOTP secret, read once after seeding
    account: DemoAccount  # the first demo account, the one every journey looks up
    # Per language, demo borrowers with an open account past due, ``demo.sign_in_examples``' first.
    borrowers: dict[str, tuple[DemoBorrower, ...]] = field(default_factory=dict)
    app: Flask | None = field(default=None, repr=False, compare=False)  # for reading the database


class _QuietHandler(WSGIRequestHandler):
    """No access log per request (errors still reach the app's logger)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@pytest.fixture(scope="session")
def e2e_localstripe() -> Iterator[LocalStripe]:
    """localstripe for the live server: its API, and the fake Stripe.js the card page loads."""
    server = start_localstripe()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, e2e_localstripe: LocalStripe
) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("e2e")
    url = f"sqlite:///{workdir / 'accord-e2e.db'}"
    command.upgrade(alembic_config(url), "head")

    app = create_app(
        {
            **stripe_config(e2e_localstripe),
            "ACCORD_ENV": "test",
            "DATABASE_URL": url,
            "SECRET_KEY": "e2e-secret-key-not-for-production",
            "INSTANCE_PATH": str(workdir / "instance"),
            # Every journey signs in from 127.0.0.1; the limit itself is tested in the integration
            # tests. (Leave RATELIMIT_ENABLED alone: the Limiter is one process-wide object and
            # turning it off here would turn it off for every app built after this one.)
            "SIGNIN_RATE_LIMIT": "200 per minute",
            "BORROWER_SIGNIN_RATE_LIMIT": "200 per minute",
            "BORROWER_CODE_RATE_LIMIT": "200 per minute",
        }
    )
    with app.app_context(), db.session_scope() as session:
        demo.seed(session, env="test", today=dt.date.today(), borrowers=DEMO_BORROWERS)
        secrets = {u.email: u.totp_secret for u in session.scalars(select(StaffUser))}
        first = session.scalars(select(Account).order_by(Account.id).limit(1)).one()
        account = DemoAccount(
            id=first.id,
            external_reference=first.external_reference,
            currency=first.currency,
            total_balance=first.total_balance,
            phone=first.borrower.phone,
            national_id=first.borrower.national_id,
        )
        borrowers = _demo_borrowers(session)

    # No Huey consumer runs here: the sign-in code's job runs inline, in the request's thread.
    was_immediate = huey.immediate
    huey.immediate = True
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="accord-e2e-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(
            url=f"http://127.0.0.1:{server.server_port}",
            totp_secrets={email: s for email, s in secrets.items() if s},
            account=account,
            borrowers=borrowers,
            app=app,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        huey.immediate = was_immediate
        db.bound(app).engine.dispose()


def _demo_borrowers(session: Session) -> dict[str, tuple[DemoBorrower, ...]]:
    """Demo borrowers with a phone, a date of birth and an open account past due, per language;
    the one ``demo.sign_in_examples`` names comes first."""
    examples = {language: reference for language, reference, _born in demo.sign_in_examples(session)}
    found: dict[str, list[DemoBorrower]] = {}
    for borrower in session.scalars(select(Borrower).order_by(Borrower.id)):
        accounts = sorted((a for a in borrower.accounts if a.status == "open"), key=lambda a: (-a.dpd, a.id))
        if not (accounts and accounts[0].dpd > 0 and borrower.phone and borrower.date_of_birth):
            continue
        if session.scalar(select(HardshipCase.id).where(HardshipCase.borrower_id == borrower.id).limit(1)):
            continue  # the demo's own requests for help: the journeys start from a clean dashboard
        references = {a.external_reference for a in accounts}
        found.setdefault(borrower.language, []).append(
            DemoBorrower(
                id=borrower.id,
                language=borrower.language,
                reference=examples[borrower.language]
                if examples.get(borrower.language) in references
                else accounts[0].external_reference,
                date_of_birth=borrower.date_of_birth,
                phone=borrower.phone,
                accounts=tuple(
                    BorrowerAccount(
                        id=a.id,
                        external_reference=a.external_reference,
                        currency=a.currency,
                        total_balance=a.total_balance,
                        overdue_amount=a.overdue_amount,
                        principal_balance=a.principal_balance,
                        interest_balance=a.interest_balance,
                        fees_balance=a.fees_balance,
                        dpd=a.dpd,
                        stage=a.stage,
                    )
                    for a in accounts
                ),
            )
        )
    for language, candidates in found.items():
        candidates.sort(key=lambda b: b.reference != examples.get(language))  # stable: the example first
    return {language: tuple(candidates) for language, candidates in found.items()}


class BorrowerPool:
    """Hands each test that signs in a demo borrower no other test in this run has had."""

    def __init__(self, borrowers: dict[str, tuple[DemoBorrower, ...]]) -> None:
        self._left = {language: list(candidates) for language, candidates in borrowers.items()}

    def take(self, language: str, *, stage: str | None = None) -> DemoBorrower:
        """The next borrower in ``language``; with ``stage``, one whose most overdue account is in it."""
        left = self._left.get(language, [])
        for position, candidate in enumerate(left):
            if stage is None or candidate.accounts[0].stage == stage:
                return left.pop(position)
        pytest.fail(
            f"no demo borrower in {language!r} (stage {stage}) with something overdue is left", pytrace=False
        )


@pytest.fixture(scope="session")
def borrowers(live_server: LiveServer) -> BorrowerPool:
    """``borrowers.take("en")`` → a demo borrower with something overdue, new to this run."""
    return BorrowerPool(live_server.borrowers)


SIGNIN_CODE = re.compile(r"\b(\d{6})\b")


class Outbox:
    """The ``outbound_message`` table of the live server's database, where the outbox notifier
    keeps every message instead of sending it."""

    def __init__(self, app: Flask) -> None:
        self._sessions = db.bound(app).session_factory

    def _read(self) -> Session:
        return self._sessions()

    def last_id(self) -> int:
        with self._read() as session:
            return int(session.scalar(select(func.coalesce(func.max(OutboundMessage.id), 0))) or 0)

    def count(self) -> int:
        with self._read() as session:
            return int(session.scalar(select(func.count()).select_from(OutboundMessage)) or 0)

    def messages_after(self, after_id: int) -> list[OutboundMessage]:
        with self._read() as session:
            rows = session.scalars(
                select(OutboundMessage).where(OutboundMessage.id > after_id).order_by(OutboundMessage.id)
            ).all()
            session.expunge_all()
            return list(rows)

    def signin_code(self, recipient: str, *, after_id: int = 0, timeout: float = 5.0) -> str:
        """The code in the newest sign-in message to ``recipient`` newer than ``after_id``."""
        deadline = time.monotonic() + timeout
        while True:
            with self._read() as session:
                body = session.scalar(
                    select(OutboundMessage.body)
                    .where(
                        OutboundMessage.recipient == recipient,
                        OutboundMessage.purpose == "signin_code",
                        OutboundMessage.id > after_id,
                    )
                    .order_by(OutboundMessage.id.desc())
                    .limit(1)
                )
            if body is not None:
                found = SIGNIN_CODE.search(body)
                assert found, f"no 6-digit code in the sign-in message to {recipient}: {body!r}"
                return found.group(1)
            if time.monotonic() > deadline:
                raise AssertionError(f"no sign-in code reached the outbox for {recipient} within {timeout} s")
            time.sleep(0.05)


@pytest.fixture(scope="session")
def outbox(live_server: LiveServer) -> Outbox:
    assert live_server.app is not None
    return Outbox(live_server.app)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing, so the browser tests cannot run. Run `make setup` "
            "(it installs Debian's chromium package); browser tests are never skipped.",
            pytrace=False,
        )
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()


NewContext = Callable[..., BrowserContext]


@pytest.fixture
def new_context(browser: Browser, live_server: LiveServer) -> Iterator[NewContext]:
    """``new_context(locale="zh-CN")`` → a fresh phone-sized context (own cookies), closed after the test.
    ``viewport={"width": 360, "height": 780}`` for another phone than the default 390 by 844."""
    contexts: list[BrowserContext] = []

    def make(
        locale: str = "en-US", accept_language: str | None = None, viewport: ViewportSize | None = None
    ) -> BrowserContext:
        context = browser.new_context(
            base_url=live_server.url,
            viewport=viewport or PHONE,
            device_scale_factor=1,
            is_mobile=True,
            has_touch=True,
            locale=locale,
            extra_http_headers={"Accept-Language": accept_language or f"{locale},en;q=0.5"},
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_context: NewContext) -> Page:
    """A page in a fresh English context."""
    return new_context().new_page()


# --- page checks -------------------------------------------------------------------------------

# The width is the layout viewport's, documentElement.clientWidth: in a mobile context (is_mobile)
# Chromium zooms out to fit content wider than the screen, and window.innerWidth then grows with
# the content (a 500 px wide div makes it 509), so `scrollWidth <= innerWidth` would always hold.
_OVERFLOW_JS = """
() => {
  const width = document.documentElement.clientWidth;
  const scrollWidth = document.documentElement.scrollWidth;
  const offenders = [];
  if (scrollWidth > width) {
    for (const el of document.querySelectorAll("body *")) {
      const box = el.getBoundingClientRect();
      if (box.width > 0 && box.right > width + 0.5) {
        const cls = el.getAttribute("class");
        offenders.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
          + (cls ? "." + cls.trim().split(/\\s+/).join(".") : "")
          + " (right edge " + Math.round(box.right) + " px)");
      }
    }
  }
  return {width, scrollWidth, offenders: offenders.slice(0, 8)};
}
"""


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def screenshot_at(page: Page, name: str, width: int) -> Path:
    """A full-page screenshot at another width; the page's own viewport is restored after."""
    original = page.viewport_size or PHONE
    try:
        page.set_viewport_size({"width": width, "height": original["height"]})
        page.wait_for_function("w => document.documentElement.clientWidth === w", arg=width)
        return screenshot(page, name)
    finally:
        page.set_viewport_size(original)


def _overflow_at(page: Page, width: int, height: int = PHONE["height"]) -> str | None:
    page.set_viewport_size({"width": width, "height": height})
    page.wait_for_function("w => document.documentElement.clientWidth === w", arg=width)
    found: dict[str, Any] = page.evaluate(_OVERFLOW_JS)
    if found["scrollWidth"] <= found["width"]:
        return None
    return f"at {width} px the page is {found['scrollWidth']} px wide; wider elements: " + (
        "; ".join(found["offenders"]) or "none found"
    )


def assert_no_horizontal_overflow(page: Page, name: str) -> None:
    problems = []
    original = page.viewport_size or PHONE  # put back after: a 360 px context stays 360 px wide
    try:
        for width in (PHONE["width"], NARROW_PHONE_WIDTH):
            problem = _overflow_at(page, width, original["height"])
            if problem:
                problems.append(problem)
                screenshot(page, f"{name}-{width}px")
    finally:
        page.set_viewport_size(original)
    assert not problems, f"{name}: horizontal overflow on a phone\n  " + "\n  ".join(problems)


_axe = Axe()


def assert_accessible(page: Page, name: str) -> None:
    """Screenshot the page, run axe-core on it and check it fits a 390 and a 360 px wide phone.

    Fails on any axe violation of impact serious or critical (all violations, whatever their
    impact, are written to test-artifacts/axe/<name>.json).
    """
    screenshot(page, name)
    violations: list[dict[str, Any]] = _axe.run(page).response["violations"]
    AXE_REPORTS.mkdir(parents=True, exist_ok=True)
    (AXE_REPORTS / f"{name}.json").write_text(
        json.dumps(
            [
                {
                    "id": v["id"],
                    "impact": v["impact"],
                    "help": v["help"],
                    "targets": [n["target"] for n in v["nodes"]],
                }
                for v in violations
            ],
            indent=2,
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    blocking = [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
    assert not blocking, f"{name} ({page.url}): axe found serious or critical violations:\n" + "\n".join(
        f"  - [{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})\n"
        + "\n".join(f"      at {' '.join(map(str, node['target']))}" for node in v["nodes"])
        for v in blocking
    )
    assert_no_horizontal_overflow(page, name)


@pytest.fixture(name="assert_accessible")
def assert_accessible_fixture() -> Callable[[Page, str], None]:
    """The page check as a fixture, so tests need not import from a conftest."""
    return assert_accessible
