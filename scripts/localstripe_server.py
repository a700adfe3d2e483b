"""Run localstripe (a separate GPL-3.0 program, never imported by Accord itself) for the demo
and the tests: bound to 127.0.0.1 only, and without its pickle-on-every-write store, whose
latency grows with every payment (see STACK-NOTES).

    python scripts/localstripe_server.py --port 8420
"""

from __future__ import annotations

import argparse
import logging
import socket

from aiohttp import web
from localstripe import resources
from localstripe.server import app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    args = parser.parse_args()

    # The store is a dict that pickles itself to a fixed file in /tmp on every write: keep
    # it in memory only (it is reset with DELETE /_config/data).
    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
    resources.Store.try_load_from_disk = lambda self: None  # type: ignore[method-assign]

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    logging.basicConfig(level=logging.WARNING)
    web.run_app(app, sock=sock, access_log=None, print=None)


if __name__ == "__main__":
    main()
