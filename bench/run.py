"""Benchmark an Accord page against the reference route, on the same server in the same run.

    .venv/bin/python bench/run.py --accounts 100000 --duration 10 --connections 32 --threads 2

Creates (if missing), migrates and seeds the PostgreSQL database ``accord_bench`` with N accounts
(see bench/seed.py; reused when it already holds N), starts ``gunicorn -w 2`` (sync workers) on a
free loopback port, signs a staff agent in over HTTP (password, then TOTP), checks that the page
answers 200 with the account's reference, warms up, then runs wrk with random account ids against
the reference route (one primary-key query and a tiny template) and the measured page. Prints
requests/s, p50 and p99 for both, the ratio page/reference and whether the targets are met, and
writes the figures to bench/results/<timestamp>.json. Stops gunicorn by its PID in every case.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
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
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
LUA = BENCH / "wrk_random_ids.lua"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import seed as bench_seed  # noqa: E402

HOST = "127.0.0.1"
COOKIE = "accord_session"
PAGE = "/staff/accounts/"
REFERENCE = "/_bench/reference/"
TARGET_RATIO = 0.6
TARGET_P99_MS = 100.0
MAX_SECONDS = 300  # a bound on any single wrk run
UNSTABLE_SPREAD = 1.25  # fastest/slowest round of a route beyond this: the machine was not quiet


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


def check_pages(port: int, cookie: str, account_id: int, reference: str) -> None:
    """Both routes answer 200 with the account's reference (the page with the staff cookie, the
    reference route without one), and the page without the cookie does not."""
    for path, with_cookie in ((f"{PAGE}{account_id}", cookie), (f"{REFERENCE}{account_id}", None)):
        resp = http_request(port, "GET", path, cookie=with_cookie)
        if resp.status != 200:
            raise BenchError(f"GET {path} answered {resp.status} -> {resp.location!r}")
        if reference not in resp.body:
            raise BenchError(f"GET {path} does not show {reference}")
    anonymous = http_request(port, "GET", f"{PAGE}{account_id}")
    if anonymous.status == 200:
        raise BenchError(f"GET {PAGE}{account_id} answered 200 without signing in")


# --------------------------------------------------------------------------- gunicorn


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_env(database_url: str, instance: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCORD_")}
    env.update(
        {
            "ACCORD_ENV": "development",  # production sets Secure cookies, which plain HTTP drops
            "ACCORD_SECRET_KEY": secrets.token_urlsafe(48),
            "ACCORD_DATABASE_URL": database_url,
            "ACCORD_INSTANCE_PATH": instance,
            "ACCORD_BENCH_REFERENCE_ROUTE": "1",
            "ACCORD_RATELIMIT_STORAGE_URI": "memory://",
        }
    )
    return env


def start_gunicorn(port: int, workers: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    gunicorn = Path(sys.executable).parent / "gunicorn"
    cmd = [
        str(gunicorn),
        "--workers", str(workers),
        "--worker-class", "sync",
        "--bind", f"{HOST}:{port}",
        "--chdir", str(ROOT),
        "--log-level", "warning",
        "wsgi:app",
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


@dataclass
class WrkResult:
    route: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_200: int
    statuses: str
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
    lua = re.search(r"^BENCH non200=(\d+) statuses=(\S*) requests=(\d+)", out, re.M)
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
        socket_errors=errors,
        latency_avg_ms=_ms(lat.group(1)),
        latency_max_ms=_ms(lat.group(2)),
    )


def run_wrk(args: argparse.Namespace, port: int, cookie: str | None, prefix: str, duration: int) -> str:
    cmd = [
        args.wrk,
        f"-t{args.threads}", f"-c{args.connections}", f"-d{duration}s", "--timeout", "10s", "--latency",
        *(["-H", f"Cookie: {COOKIE}={cookie}"] if cookie else []),
        "-s", str(LUA),
        f"http://{HOST}:{port}",
        "--", prefix, "1", str(args.accounts), str(args.seed),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout


def measure(args: argparse.Namespace, port: int, cookie: str | None, route: str, prefix: str) -> WrkResult:
    out = run_wrk(args, port, cookie, prefix, args.duration)
    if args.verbose:
        print(out)
    result = parse_wrk(route, out)
    if result.requests == 0:
        raise BenchError(f"{route}: wrk completed no request")
    if result.non_200:
        raise BenchError(
            f"{route}: {result.non_200} of {result.requests} responses were not 200 ({result.statuses}); "
            "the figures would not be for the real page"
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


def print_table(
    args: argparse.Namespace, ref: WrkResult, page: WrkResult, ratio: float, load: dict[str, object]
) -> None:
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
    print(f"{'route':<32} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'requests':>10}")
    for label, r in ((f"reference {REFERENCE}<id>", ref), (f"page {PAGE}<id>", page)):
        print(f"{label:<32} {r.requests_per_s:>10.1f} {r.p50_ms:>9.2f} {r.p99_ms:>9.2f} {r.requests:>10}")
        errors = {k: v for k, v in r.socket_errors.items() if v}
        if errors:
            print(f"  socket errors: {errors}")
    ratio_ok = ratio >= TARGET_RATIO
    p99_ok = page.p99_ms <= TARGET_P99_MS
    print(
        f"ratio page/reference: {ratio:.2f}  (target >= {TARGET_RATIO}: {'met' if ratio_ok else 'NOT MET'})"
    )
    verdict = "met" if p99_ok else "NOT MET"
    print(f"page p99: {page.p99_ms:.1f} ms  (target <= {TARGET_P99_MS:.0f} ms: {verdict})")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of wrk per route before measuring")
    parser.add_argument("--rounds", type=int, default=1, help="alternate reference/page this many times")
    parser.add_argument("--seed", type=int, default=2026, help="random seed of the account ids")
    parser.add_argument("--reseed", action="store_true", help="rebuild the data even if N accounts exist")
    parser.add_argument("--server", default=bench_seed.DEFAULT_SERVER, help="PostgreSQL URL, no database")
    parser.add_argument("--database", default=bench_seed.DEFAULT_DATABASE)
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--verbose", action="store_true", help="print wrk's full output")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= MAX_SECONDS or not 0 <= args.warmup <= MAX_SECONDS:
        parser.error(f"--duration and --warmup must be at most {MAX_SECONDS} s")
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be 1 to 10")
    if urlsplit(args.server).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("--server must be on a loopback address")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
        f"{seeded.ledger_entries:,} ledger entries in {seed_seconds} s {seeded.seconds}"
    )

    password = secrets.token_urlsafe(24)
    totp_secret = pyotp.random_base32()
    bench_seed.upsert_staff_user(url, hash_password(password), totp_secret)

    load: dict[str, object] = {"at_start": _loadavg(), "cpu_busy_before": cpu_busy()}
    if (busy := load["cpu_busy_before"]) is not None and busy > 0.25:  # type: ignore[operator]
        print(f"warning: the CPUs were {busy:.0%} busy just before the run: figures will be noisy")
    port = free_port()
    log = RESULTS / f"{stamp}-gunicorn.log"
    with tempfile.TemporaryDirectory(prefix="accord-bench-") as instance:
        proc = start_gunicorn(port, args.workers, server_env(url, instance), log)
        print(f"gunicorn pid {proc.pid} on http://{HOST}:{port} (log {log.relative_to(ROOT)})")
        try:
            wait_healthy(proc, port, log)
            cookie = sign_in(port, bench_seed.BENCH_STAFF_EMAIL, password, totp_secret)
            probe = max(1, args.accounts // 2)
            probe_ref = "CC-" if _is_card(url, probe) else "LN-"
            check_pages(port, cookie, probe, f"{probe_ref}{probe:07d}")
            print("signed in; page and reference answer 200 with the account's reference")
            # The reference route is measured as the cheapest database-backed page: no cookie,
            # so no staff user is loaded, one primary-key query.
            if args.warmup:
                run_wrk(args, port, None, REFERENCE, args.warmup)
                run_wrk(args, port, cookie, PAGE, args.warmup)
            load["before"] = _loadavg()
            counters = cpu_times()
            refs: list[WrkResult] = []
            pages: list[WrkResult] = []
            for _ in range(args.rounds):
                refs.append(measure(args, port, None, "reference", REFERENCE))
                pages.append(measure(args, port, cookie, "page", PAGE))
            load["after"] = _loadavg()
            load["cpu_during_measurement"] = cpu_share(counters, cpu_times())
            if proc.poll() is not None:
                raise BenchError(f"gunicorn died during the run:\n{tail(log)}")
        finally:
            stop(proc)

    ref, page = median_result("reference", refs), median_result("page", pages)
    ratio = page.requests_per_s / ref.requests_per_s
    print_table(args, ref, page, ratio, load)
    ratios = [p.requests_per_s / r.requests_per_s for r, p in zip(refs, pages, strict=True)]
    spread = {
        route: round(max(x.requests_per_s for x in runs) / min(x.requests_per_s for x in runs), 2)
        for route, runs in (("reference", refs), ("page", pages))
    }
    unstable = max(spread.values()) > UNSTABLE_SPREAD
    if len(refs) > 1:
        print(f"per-round ratios: {', '.join(f'{x:.2f}' for x in ratios)}")
    if unstable:
        print(
            f"warning: req/s varied by up to {max(spread.values()):.2f}x between rounds: something else "
            "used the CPUs; run again on a quiet machine"
        )
    met = ratio >= TARGET_RATIO and page.p99_ms <= TARGET_P99_MS
    result = {
        "started_at": started.isoformat(timespec="seconds"),
        "git": git_revision(),
        "machine": machine(),
        "postgresql": postgres_version(url),
        "load_average": load,
        "parameters": {
            k: getattr(args, k)
            for k in ("accounts", "duration", "connections", "threads", "workers", "warmup", "rounds", "seed")
        },
        "seed": {
            "reused": seeded.reused,
            "ledger_entries": seeded.ledger_entries,
            "seconds": seed_seconds,
            "phases": seeded.seconds,
        },
        "routes": {
            "reference": {"path": f"{REFERENCE}<id>", **asdict(ref)},
            "page": {"path": f"{PAGE}<id>", **asdict(page)},
        },
        "rounds": {"reference": [asdict(r) for r in refs], "page": [asdict(r) for r in pages]},
        "ratio": round(ratio, 3),
        "round_ratios": [round(x, 3) for x in ratios],
        "round_spread": spread,
        "unstable": unstable,
        "targets": {
            "ratio_min": TARGET_RATIO,
            "p99_max_ms": TARGET_P99_MS,
            "ratio_met": ratio >= TARGET_RATIO,
            "p99_met": page.p99_ms <= TARGET_P99_MS,
        },
    }
    out = RESULTS / f"{stamp}.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
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


def _is_card(url: str, account_id: int) -> bool:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            kind = conn.scalar(text("SELECT product_type FROM account WHERE id = :i"), {"i": account_id})
    finally:
        engine.dispose()
    if kind is None:
        raise BenchError(f"account {account_id} is missing from the bench database")
    return kind == "credit_card"


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
