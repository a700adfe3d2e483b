"""Time to generate, sign and seal one repayment agreement against a bare WeasyPrint render of it.

    .venv/bin/python bench/agreements.py [--runs 20] [--language en|zh_Hans_CN|both]

In-process, no server: creates the app (``ACCORD_ENV=test``) on a temporary SQLite database
migrated to head with alembic, in a temporary instance folder (documents, development seal,
Huey's SQLite store; all deleted at the end). Per run, with a fresh borrower, account, hardship
case and accepted offer (an agreement can be signed once), it measures:

(a) the bare WeasyPrint render of the agreement's own HTML:
    ``render_pdf(agreements.document_html(agreement, for_pdf=True))``, nothing else;
(b) generation, ``agreements.render`` (the background job's work): the same render, the
    SHA-256, storage, the page count (pypdf), the case's move, events, audit, commit;
(c) signing, ``agreements.sign`` (the sign route's work): the checks, the stored file re-read and
    hashed, the certificate page rendered (a second WeasyPrint document) and merged after the
    original pages with pypdf, the PAdES seal (pyHanko, B-B: no time-stamp authority), the signed
    file stored, the plan, its instalments, the waivers posted to the ledger, audit, commit;
(d) within (b) and (c), timed by wrapping the functions ``portal.services.agreements`` calls
    (``render_pdf``, ``_with_certificate``, ``seal_pdf``) in this process only: the document's
    render in (b), the certificate's render, the template and merge, and the seal in (c).

The ratio (b+c)/(a) is the figure that matters (target <= 1.5): both sides run on the same machine
in the same run, so it moves less than the milliseconds. Prints one table per language with the
median and p90 of each step and the CPUs' busy share before and during; writes the figures to
bench/results/<timestamp>-agreements.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gc
import io
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from run import cpu_busy, cpu_share, cpu_times  # the page benchmark's helpers (bench/ is on sys.path)

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

TARGET_RATIO = 1.5
LANGUAGES = ("en", "zh_Hans_CN")
INSTALMENTS = 24
# fee_waiver + 6 months' interest freeze + the whole balance over 24 months at the contract rate:
# a mid-stage account's pre-approved terms (the default policy allows 24 months, 20 % waived,
# 6 months' freeze): 24 amortised instalments with their own due dates, as a real plan has.
OFFER_KEY = f"fee_waiver+interest_relief:freeze6+term_extension:{INSTALMENTS}"
PEOPLE = {  # the borrower of each language, as bench/seed.py seeds them
    "en": {"full_name": "Jeffrey Klein", "time_zone": "America/New_York", "currency": "USD", "country": "US"},
    "zh_Hans_CN": {"full_name": "张伟", "time_zone": "Asia/Shanghai", "currency": "CNY", "country": "CN"},
}
FLOOR_HTML = {
    "en": "<!doctype html><html lang=en><body><p>Accord repayment agreement.</p></body></html>",
    "zh_Hans_CN": "<!doctype html><html lang=zh-Hans><body><p>Accord 还款协议。</p></body></html>",
}
STEPS = (  # key, label; "  " marks a part of the step above it
    ("bare", "(a) bare WeasyPrint render of the document HTML"),
    ("generate", "(b) generate: agreements.render"),
    ("generate.render_pdf", "      of which the document's render_pdf"),
    ("generate.rest", "      of which template, hash, storage, page count, DB, commit"),
    ("sign", "(c) sign: agreements.sign"),
    ("sign.certificate_render", "      of which the certificate page's render_pdf"),
    ("sign.merge", "      of which its template + pypdf merge"),
    ("sign.seal", "      of which the seal: pyHanko seal_pdf (d)"),
    ("sign.rest", "      of which checks, re-read + hashes, storage, plan, ledger, commit"),
    ("generate+sign", "(b)+(c)"),
    ("floor", "for scale: render_pdf of a one-paragraph page"),
)


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------- timing


@dataclass
class Clock:
    """Seconds spent in the wrapped functions since the last ``take``."""

    spent: dict[str, float] = field(default_factory=dict)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - t

        return timed

    def take(self) -> dict[str, float]:
        spent, self.spent = self.spent, {}
        return spent


def instrument(agreements: Any) -> Clock:
    """Wrap what the agreement service calls (its own module's names, in this process only)."""
    clock = Clock()
    for name in ("render_pdf", "_with_certificate", "seal_pdf"):
        setattr(agreements, name, clock.wrap(name, getattr(agreements, name)))
    return clock


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def p90(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


# --------------------------------------------------------------------------- the app


@contextmanager
def accord_app(instance: Path) -> Iterator[Any]:
    """The app on a fresh SQLite database migrated to head, its files under ``instance``."""
    # Before portal is imported: portal.tasks builds its Huey store from the environment.
    os.environ.update(
        {
            "ACCORD_ENV": "test",
            "ACCORD_INSTANCE_PATH": str(instance),
            "ACCORD_DATABASE_URL": f"sqlite:///{instance / 'accord-bench.db'}",
            "ACCORD_HUEY_SQLITE_PATH": str(instance / "huey.db"),
            "ACCORD_SECRET_KEY": secrets.token_urlsafe(48),
        }
    )
    from alembic import command

    from portal import create_app, tasks
    from portal.extensions import db
    from portal.migrations import alembic_config

    url = os.environ["ACCORD_DATABASE_URL"]
    command.upgrade(alembic_config(url), "head")
    app = create_app(
        {
            "ACCORD_ENV": "test",
            "DATABASE_URL": url,
            "SECRET_KEY": os.environ["ACCORD_SECRET_KEY"],
            "INSTANCE_PATH": str(instance),
            "WTF_CSRF_ENABLED": False,
            "TESTING": True,
        }
    )
    # accept() enqueues the render job; it must wait in the (temporary) queue, not run inline:
    # the bench runs it itself, timed.
    tasks.huey.immediate = False
    tasks.INLINE_APP = app
    try:
        yield app
    finally:
        tasks.INLINE_APP = None
        db.bound(app).engine.dispose()


# --------------------------------------------------------------------------- the data


_seq = iter(range(1, 10**9))


def accepted_agreement(session: Any, language: str) -> Any:
    """A mid-stage borrower who accepted a 24-instalment offer: the agreement, not yet rendered.

    Built as the portal builds it: balances posted through the ledger service, the offer by
    ``workflows.offers`` from the account's position and the policy in force, stored by the
    hardship service's ``offer_row``, and accepted with ``hardship.accept`` (which prepares the
    agreement and enqueues its render)."""
    from portal.models import Account, Borrower, BudgetLine, Creditor, HardshipCase
    from portal.services import agreements, ledger
    from portal.services import hardship as hardship_service
    from portal.services import policy as policy_service
    from portal.services.audit import SYSTEM
    from portal.services.borrower_portal import borrower_today
    from workflows import offers
    from workflows.ledger import EntryKind, Posting
    from workflows.money import Component

    n = next(_seq)
    person = PEOPLE[language]
    creditor = Creditor(code=f"BENCH{n}", name=f"Bench Lender {n}")
    borrower = Borrower(
        full_name=person["full_name"],
        date_of_birth=dt.date(1985, 3, 15),
        national_id=f"11010119850315{n:04d}",
        phone=f"+861381{n:07d}",
        email=f"borrower{n}@bench.accord.example",
        address_line1="1 Main Street" if language == "en" else "人民路 1 号",
        city="New York" if language == "en" else "上海",
        postal_code="10001" if language == "en" else "200000",
        country=person["country"],
        language=language,
        time_zone=person["time_zone"],
    )
    session.add_all([creditor, borrower])
    session.flush()
    today = borrower_today(borrower)
    overdue_since = today - dt.timedelta(days=75)
    account = Account(
        creditor_id=creditor.id,
        borrower_id=borrower.id,
        external_reference=f"LN-B{n:07d}",
        product_type="loan",
        currency=person["currency"],
        annual_rate_bp=1800,
        opened_on=today - dt.timedelta(days=700),
        stage="mid",
        dpd=75,
        oldest_unpaid_due_on=overdue_since,
        overdue_amount=3 * 110_000 + 5_000,
        next_due_on=today + dt.timedelta(days=12),
        next_due_amount=110_000,
    )
    session.add(account)
    session.flush()
    for kind, component, amount in (
        (EntryKind.CHARGE, Component.PRINCIPAL, 2_400_000),
        (EntryKind.INTEREST, Component.INTEREST, 96_000),
        (EntryKind.FEE, Component.FEES, 15_000),
    ):
        ledger.post(
            session, account, kind, [Posting(component, amount)], cause="bench", actor=SYSTEM,
            effective_on=account.opened_on,
        )  # fmt: skip
    case = HardshipCase(
        borrower_id=borrower.id,
        account_id=account.id,
        state="offered",
        reason="job_loss",
        description="Made redundant in the spring; a new job starts next month.",
        adults=1,
        children=1,
        dependants=0,
        employment_status="unemployed",
        steps_done=["reason", "household", "income", "spending", "debts", "evidence"],
    )
    session.add(case)
    session.flush()
    session.add(
        BudgetLine(hardship_case_id=case.id, category="earnings", amount=900_000, frequency="monthly")
    )
    session.commit()

    policy = policy_service.current(session, today)
    position = hardship_service.position(account)
    built = offers.offer_from_key(OFFER_KEY, position, policy, today, origin=offers.OfferOrigin.SYSTEM)
    problems = offers.check_within_limits(built, position, policy)
    if problems:
        raise BenchError(f"the bench's offer {OFFER_KEY} is outside the policy's limits: {problems}")
    row = hardship_service.offer_row(case, built, "system")
    session.add(row)
    session.commit()
    hardship_service.accept(session, borrower, case.id, row.id)
    agreement = agreements.latest_for_case(session, case.id)
    if agreement is None or agreement.status != "preparing":
        raise BenchError("accepting the offer did not prepare an agreement")
    if len(agreement.facts["offer"]["schedule"]) != INSTALMENTS:
        raise BenchError(
            f"the offer has {len(agreement.facts['offer']['schedule'])} instalments, not {INSTALMENTS}"
        )
    return agreement


def verified_for_signing(session: Any, agreement: Any) -> None:
    """What consent() and verify_code() leave on the row, set directly (the code goes to a phone)."""
    from portal.db import utcnow
    from portal.services import agreements
    from workflows.access import mask_phone

    now = utcnow()
    agreement.consent_version, agreement.consented_at = agreements.CONSENT_VERSION, now
    agreement.code_verified_at = now
    agreement.code_channel = f"sms:{mask_phone(agreement.borrower.phone)}"
    session.commit()


# --------------------------------------------------------------------------- one run


def pages(data: bytes) -> int:
    from pypdf import PdfReader

    return len(PdfReader(io.BytesIO(data)).pages)


def one_run(app: Any, clock: Clock, language: str, *, check: bool, odd: bool) -> dict[str, Any]:
    from portal.extensions import db
    from portal.integrations.pdf import render_pdf
    from portal.integrations.seal import seal_key_from_config, verify_sealed
    from portal.integrations.storage import document_storage_from_config
    from portal.models import Agreement, Borrower
    from portal.services import agreements

    config = app.config
    with app.app_context(), db.session_scope() as session:
        agreement = accepted_agreement(session, language)
        agreement_id, borrower_id = agreement.id, agreement.borrower_id
        storage = document_storage_from_config(config)
        gc.collect()

        # (a) the bare render of the very HTML the job renders (the facts are frozen: the same
        # HTML before and after rendering), taken before (b) in even runs and after it in odd ones
        # so that neither side always runs first.
        html = agreements.document_html(agreement, for_pdf=True)

        def bare_render() -> tuple[bytes, float]:
            gc.collect()
            t = time.perf_counter()
            data = render_pdf(html)
            return data, time.perf_counter() - t

        if not odd:
            bare, bare_s = bare_render()

        # (b) generation, as the render job does it
        clock.take()
        gc.collect()
        t = time.perf_counter()
        agreements.render(session, agreement_id, storage)
        generate_s = time.perf_counter() - t
        in_generate = clock.take()
        if odd:
            bare, bare_s = bare_render()

        # The floor of any render: a page with one short paragraph, same fonts and stylesheet.
        gc.collect()
        t = time.perf_counter()
        render_pdf(FLOOR_HTML[language])
        floor_s = time.perf_counter() - t

        agreement = session.get(Agreement, agreement_id)
        assert agreement is not None
        if agreement.status != "ready":
            raise BenchError(f"agreement {agreement_id} is {agreement.status} after rendering")
        verified_for_signing(session, agreement)
        t = time.perf_counter()
        seal_key = seal_key_from_config(config)  # the sign route loads it on every request
        key_s = time.perf_counter() - t

    # (c) signing, in a request as the sign route runs it
    request = app.test_request_context(f"/agreements/{agreement_id}/sign", method="POST")
    with request, db.session_scope() as session:
        borrower = session.get(Borrower, borrower_id)
        assert borrower is not None
        gc.collect()
        t = time.perf_counter()
        signed = agreements.sign(
            session,
            borrower,
            agreement_id,
            typed_name=borrower.full_name,
            agreed=True,
            ip="127.0.0.1",
            user_agent="accord-bench",
            storage=storage,
            seal_key=seal_key,
            tsa_url=None,
        )
        sign_s = time.perf_counter() - t
        in_sign = clock.take()
        final = storage.open(signed.agreement.final_key or "")
        document = storage.open(signed.agreement.document_key or "")
        if signed.agreement.status != "signed" or signed.plan.status != "active":
            raise BenchError(f"agreement {agreement_id} was not signed")
        sizes = {
            "bare_pages": pages(bare),
            "document_pages": pages(document),
            "final_pages": pages(final),
            "bare_bytes": len(bare),
            "document_bytes": len(document),
            "final_bytes": len(final),
        }
        if (
            sizes["bare_pages"] != sizes["document_pages"]
            or sizes["final_pages"] != sizes["document_pages"] + 1
        ):
            raise BenchError(f"unexpected page counts: {sizes}")
        if check:  # once per language: the signed file is what /verify accepts
            seal_check = verify_sealed(final, seal_key)
            if not seal_check.ok:
                raise BenchError(f"the signed agreement does not verify: {seal_check}")

    certificate_render = in_sign.get("render_pdf", 0.0)
    with_certificate = in_sign.get("_with_certificate", 0.0)
    seal = in_sign.get("seal_pdf", 0.0)
    return {
        "agreement_id": agreement_id,
        "seconds": {
            "bare": bare_s,
            "generate": generate_s,
            "generate.render_pdf": in_generate.get("render_pdf", 0.0),
            "generate.rest": generate_s - in_generate.get("render_pdf", 0.0),
            "sign": sign_s,
            "sign.certificate_render": certificate_render,
            "sign.merge": with_certificate - certificate_render,
            "sign.seal": seal,
            "sign.rest": sign_s - with_certificate - seal,
            "generate+sign": generate_s + sign_s,
            "seal_key_load": key_s,
            "floor": floor_s,
        },
        **sizes,
    }


# --------------------------------------------------------------------------- report


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    keys = runs[0]["seconds"].keys()
    out: dict[str, dict[str, float]] = {}
    for key in keys:
        values = [r["seconds"][key] for r in runs]
        out[key] = {"median_ms": ms(statistics.median(values)), "p90_ms": ms(p90(values))}
    return out


def print_table(
    language: str, runs: list[dict[str, Any]], summary: dict[str, dict[str, float]], load: dict[str, Any]
) -> float:
    first = runs[0]
    print()
    print(
        f"agreement in {language}: {INSTALMENTS} instalments, {first['document_pages']} page(s) "
        f"({first['document_bytes'] / 1024:.0f} KiB), signed {first['final_pages']} pages "
        f"({first['final_bytes'] / 1024:.0f} KiB); {len(runs)} runs, a fresh agreement each"
    )
    width = max(len(label) for _, label in STEPS)
    print(f"{'step':<{width}} {'median ms':>10} {'p90 ms':>9}")
    for key, label in STEPS:
        print(f"{label:<{width}} {summary[key]['median_ms']:>10.1f} {summary[key]['p90_ms']:>9.1f}")
    bare = statistics.median(r["seconds"]["bare"] for r in runs)
    total = statistics.median(r["seconds"]["generate+sign"] for r in runs)
    ratio = float(total / bare)
    per_run = [r["seconds"]["generate+sign"] / r["seconds"]["bare"] for r in runs]
    verdict = "met" if ratio <= TARGET_RATIO else "NOT MET"
    print(
        f"ratio (b+c)/(a): {ratio:.2f}  (target <= {TARGET_RATIO}: {verdict}); per run "
        f"{min(per_run):.2f}-{max(per_run):.2f}; the seal key's load, outside (c): "
        f"{summary['seal_key_load']['median_ms']:.1f} ms"
    )
    busy = load.get("cpu_busy_before")
    during = load.get("cpu_during")
    print(
        "CPUs: "
        + (f"{busy:.0%} busy in the second before" if busy is not None else "busy share unknown before")
        + (f"; {during['busy']:.0%} busy during, {during['steal']:.1%} stolen" if during else "")
    )
    return ratio


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="measured runs per language (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured runs first, per language")
    parser.add_argument("--language", choices=[*LANGUAGES, "both"], default="both")
    parser.add_argument("--check", action="store_true", help="exit 1 when the ratio misses the target")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 200 or not 0 <= args.warmup <= 20:
        parser.error("--runs must be 1 to 200 and --warmup 0 to 20")
    args.languages = list(LANGUAGES) if args.language == "both" else [args.language]
    return args


def git_head() -> str:
    """The commit checked out (rev-parse reads; describe --dirty would refresh the index)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return ""
    return done.stdout.strip()


def versions() -> dict[str, str]:
    out = {}
    for name in ("weasyprint", "pydyf", "pypdf", "pyHanko", "cryptography", "Flask", "SQLAlchemy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "?"
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs; "
        + ", ".join(f"{k} {v}" for k, v in versions().items())
    )
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="accord-bench-agreements-") as tmp:
        t = time.perf_counter()
        with accord_app(Path(tmp)) as app:
            from portal.services import agreements

            clock = instrument(agreements)
            print(f"app on a temporary SQLite database, migrated to head in {time.perf_counter() - t:.1f} s")
            for language in args.languages:
                for i in range(args.warmup):
                    one_run(app, clock, language, check=i == 0, odd=bool(i % 2))
                load: dict[str, Any] = {
                    "loadavg_before": list(os.getloadavg()),
                    "cpu_busy_before": cpu_busy(),
                }
                counters = cpu_times()
                runs = [
                    one_run(app, clock, language, check=args.warmup == 0 and i == 0, odd=bool(i % 2))
                    for i in range(args.runs)
                ]
                load["cpu_during"] = cpu_share(counters, cpu_times())
                load["loadavg_after"] = list(os.getloadavg())
                summary = summarise(runs)
                ratio = print_table(language, runs, summary, load)
                results[language] = {
                    "ratio": round(ratio, 3),
                    "ratio_met": ratio <= TARGET_RATIO,
                    "summary": summary,
                    "load": load,
                    "runs": [
                        {**r, "seconds": {k: round(v, 5) for k, v in r["seconds"].items()}} for r in runs
                    ],
                }
    out = RESULTS / f"{stamp}-agreements.json"
    doc = {
        "started_at": started.isoformat(timespec="seconds"),
        "git_head": git_head(),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "versions": versions(),
        "parameters": {
            "runs": args.runs,
            "warmup": args.warmup,
            "languages": args.languages,
            "offer_key": OFFER_KEY,
        },
        "target": {"ratio_max": TARGET_RATIO},
        "languages": results,
    }
    out.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(f"\nresults: {out.relative_to(ROOT)}")
    met = all(r["ratio_met"] for r in results.values())
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
