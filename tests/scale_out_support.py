"""Two Accord hosts for tests/integration/test_scale_out.py: gunicorn and a Huey consumer per
host, each host with its own instance directory (nothing shared on a disk), started as separate
processes on the production settings, and what stands around them in production — a load
balancer's headers, an SMS gateway and a lender's webhook server (one small HTTP server here) —
and the job queue, reached as the consumers reach it.

The "load balancer" is the test's browser: it sends every request to the host the test names,
with the headers a load balancer adds (``X-Forwarded-For``, ``X-Forwarded-Proto: https``, the
public ``Host``). TLS ends there, so the browser keeps sending the session cookie (``Secure`` in
production) over the plain http between it and the hosts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import requests
from huey import RedisHuey
from huey.api import TaskWrapper

from portal.tasks import huey

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_HOST = "accord.test"
"""The name borrowers use: the load balancer passes it on as ``Host`` to whichever host serves."""
T = TypeVar("T")


# --- Processes -------------------------------------------------------------------------------------


@dataclass
class Process:
    """A process the test started, its output in ``log``."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self, last: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-last:]

    def json_lines(self) -> list[dict[str, Any]]:
        """The log's lines that are JSON objects (the application's; gunicorn's own start-up
        lines are plain text)."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                found.append(entry)
        return found

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@dataclass
class Host(Process):
    """One web host: gunicorn serving ``wsgi:app`` at ``url``."""

    url: str = ""


def _start(name: str, cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603


def start_web(name: str, env: dict[str, str], port: int, workdir: Path, workers: int = 2) -> Host:
    """``gunicorn -w N -b 127.0.0.1:PORT wsgi:app``, as the README runs it on every host."""
    gunicorn = Path(sys.executable).parent / "gunicorn"
    cmd = [
        str(gunicorn), "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
        "--graceful-timeout", "5", "--chdir", str(ROOT), "wsgi:app",
    ]  # fmt: skip
    log = workdir / f"{name}.log"
    return Host(name, _start(name, cmd, env, log), log, f"http://127.0.0.1:{port}")


def start_consumer(
    name: str, env: dict[str, str], workdir: Path, *, periodic: bool, workers: int = 2
) -> Process:
    """``huey_consumer portal.tasks.huey -w N -k thread``, as the README runs the workers; with
    ``-n`` (no scheduler) on all but one, or every periodic job would be queued once per consumer."""
    consumer = Path(sys.executable).parent / "huey_consumer"
    cmd = [str(consumer), "portal.tasks.huey", "-w", str(workers), "-k", "thread"]
    if not periodic:
        cmd.append("-n")
    log = workdir / f"{name}.log"
    return Process(name, _start(name, cmd, env, log), log)


def stop_all(processes: list[tuple[Process, int]]) -> None:
    """Signal every process first, then wait for each (they shut down side by side)."""
    for item, sig in processes:
        if item.process.poll() is None:
            item.process.send_signal(sig)
    for item, sig in processes:
        item.stop(sig)


def wait_ready(host: Host, timeout: float = 60.0) -> None:
    """Until the host's readiness endpoint says the database answers and is migrated."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.process.poll() is not None:
            raise RuntimeError(f"{host.name} exited:\n{host.output()}")
        try:
            with requests.get(f"{host.url}/readyz", timeout=2) as answer:
                if answer.status_code == 200:
                    return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{host.name} not ready in {timeout:.0f} s:\n{host.output()}")


def wait_for(condition: Callable[[], T], what: str, timeout: float = 30.0) -> T:
    """``condition()``'s first truthy value, polled; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# --- The job queue ---------------------------------------------------------------------------------


def enqueue(redis_url: str, task: TaskWrapper, *args: Any) -> None:
    """Put a job on the consumers' queue in Redis, as a web host or the consumers' scheduler
    does. The test process's own ``huey`` (SQLite, run inline) only names and serialises it."""
    queue = RedisHuey("accord", url=redis_url)
    queue.storage.enqueue(huey.serialize_task(task.s(*args)))


# --- The world outside: SMS gateway and lenders' webhook servers -----------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Inbox:
    """An HTTP server on 127.0.0.1 that answers every POST with 200 and ``{"id": …}`` (what an
    SMS gateway answers; a lender's server needs only the 2xx) and keeps what it was sent."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def start_inbox() -> Inbox:
    holder: list[Inbox] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            inbox = holder[0]
            with inbox.lock:
                inbox.received.append(Received(self.path, dict(self.headers.items()), body))
                number = len(inbox.received)
            answer = json.dumps({"id": f"msg-{number}"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    holder.append(Inbox(server, thread))
    thread.start()
    return holder[0]


# --- The browser behind the load balancer ----------------------------------------------------------


CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class Browser:
    """One borrower's browser at ``client_ip``; each request goes to the host given, with the
    load balancer's headers, so its cookie travels between hosts as it would behind one."""

    def __init__(self, client_ip: str) -> None:
        self.client_ip = client_ip
        self.http = requests.Session()
        self.http.headers["Accept-Language"] = "en"

    def _headers(self, path: str, request_id: str | None) -> dict[str, str]:
        headers = {
            "Host": PUBLIC_HOST,
            "X-Forwarded-For": self.client_ip,
            "X-Forwarded-Proto": "https",
            "Referer": f"https://{PUBLIC_HOST}{path}",  # the CSRF check wants it on https
        }
        if request_id:
            headers["X-Request-Id"] = request_id
        return headers

    def _tls_ends_at_the_balancer(self, response: requests.Response) -> requests.Response:
        """The browser talks https to the load balancer and it talks http to the hosts: the
        session cookie, ``Secure`` in production, still goes along."""
        for cookie in self.http.cookies:
            cookie.secure = False
        return response

    def get(self, host: Host, path: str, *, request_id: str | None = None) -> requests.Response:
        return self._tls_ends_at_the_balancer(
            self.http.get(
                host.url + path, headers=self._headers(path, request_id), allow_redirects=False, timeout=30
            )
        )

    def post(
        self, host: Host, path: str, data: dict[str, str], files: dict[str, Any] | None = None
    ) -> requests.Response:
        return self._tls_ends_at_the_balancer(
            self.http.post(
                host.url + path,
                data=data,
                files=files,
                headers=self._headers(path, None),
                allow_redirects=False,
                timeout=30,
            )
        )

    def form(self, host: Host, path: str) -> str:
        """The CSRF token of the form at ``path`` (asked of ``host``)."""
        page = self.get(host, path)
        assert page.status_code == 200, (path, page.status_code)
        match = CSRF.search(page.text)
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def cookie(self) -> str:
        value = self.http.cookies.get("accord_session")
        assert value, "no session cookie"
        return str(value)

    def close(self) -> None:
        self.http.close()


def with_cookie(host: Host, path: str, cookie: str, client_ip: str) -> requests.Response:
    """A request carrying a copied session cookie (someone who kept it), and nothing else."""
    with requests.Session() as other:
        return other.get(
            host.url + path,
            headers={
                "Host": PUBLIC_HOST,
                "X-Forwarded-For": client_ip,
                "X-Forwarded-Proto": "https",
                "Cookie": f"accord_session={cookie}",
            },
            allow_redirects=False,
            timeout=30,
        )


def environment(settings: dict[str, str]) -> dict[str, str]:
    """This process's environment without any ``ACCORD_`` or ``AWS_`` setting, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCORD_", "AWS_"))}
    env.update(settings)
    return env
