"""Browser-test fixtures, self-contained: a seeded SQLite file database, the app served on a free
127.0.0.1 port from a background thread, one Chromium per session and a fresh phone-sized context
per test. Also the checks every page must pass: axe-core (no serious or critical violation) and no
horizontal overflow at 390 and 360 CSS pixels. Each checked page is saved as a full-page screenshot
under test-artifacts/screenshots/ for a human to look at.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from portal import create_app
from portal.config import ROOT
from portal.extensions import db
from portal.migrations import alembic_config
from portal.models import Account, StaffUser
from portal.services import demo

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
PHONE = {"width": 390, "height": 844}
NARROW_PHONE_WIDTH = 360  # many borrowers' phones
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
AXE_REPORTS = ARTIFACTS / "axe"
BLOCKING_IMPACTS = ("serious", "critical")
DEMO_BORROWERS = 30


@dataclass(frozen=True)
class DemoAccount:
    id: int
    external_reference: str
    currency: str
    total_balance: int
    phone: str
    national_id: str


@dataclass(frozen=True)
class LiveServer:
    url: str
    totp_secrets: dict[str, str]  # staff e-mail → TOTP secret, read once after seeding
    account: DemoAccount  # the first demo account, the one every journey looks up


class _QuietHandler(WSGIRequestHandler):
    """No access log per request (errors still reach the app's logger)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("e2e")
    url = f"sqlite:///{workdir / 'accord-e2e.db'}"
    command.upgrade(alembic_config(url), "head")

    app = create_app(
        {
            "ACCORD_ENV": "test",
            "DATABASE_URL": url,
            "SECRET_KEY": "e2e-secret-key-not-for-production",
            "INSTANCE_PATH": str(workdir / "instance"),
            # Every journey signs in from 127.0.0.1; the limit itself is tested in the integration
            # tests. (Leave RATELIMIT_ENABLED alone: the Limiter is one process-wide object and
            # turning it off here would turn it off for every app built after this one.)
            "SIGNIN_RATE_LIMIT": "200 per minute",
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

    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="accord-e2e-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(
            url=f"http://127.0.0.1:{server.server_port}",
            totp_secrets={email: s for email, s in secrets.items() if s},
            account=account,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        db.bound(app).engine.dispose()


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
    """``new_context(locale="zh-CN")`` → a fresh phone-sized context (own cookies), closed after the test."""
    contexts: list[BrowserContext] = []

    def make(locale: str = "en-US", accept_language: str | None = None) -> BrowserContext:
        context = browser.new_context(
            base_url=live_server.url,
            viewport=PHONE,
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


def _overflow_at(page: Page, width: int) -> str | None:
    page.set_viewport_size({"width": width, "height": PHONE["height"]})
    page.wait_for_function("w => document.documentElement.clientWidth === w", arg=width)
    found: dict[str, Any] = page.evaluate(_OVERFLOW_JS)
    if found["scrollWidth"] <= found["width"]:
        return None
    return f"at {width} px the page is {found['scrollWidth']} px wide; wider elements: " + (
        "; ".join(found["offenders"]) or "none found"
    )


def assert_no_horizontal_overflow(page: Page, name: str) -> None:
    problems = []
    try:
        for width in (PHONE["width"], NARROW_PHONE_WIDTH):
            problem = _overflow_at(page, width)
            if problem:
                problems.append(problem)
                screenshot(page, f"{name}-{width}px")
    finally:
        page.set_viewport_size(PHONE)
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
