"""Command line: run the Hub stand-in until interrupted.

    python -m tests.hubserver --storage DIR --token TOKEN [--port 0] [--no-xet]
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from .hub import DEFAULT_LFS_THRESHOLD
from .server import HubServer
from .store import DEFAULT_USER


def _parse_tokens(values: list[str]) -> dict[str, str]:
    """``TOKEN`` (user test-user) or ``USER=TOKEN``."""
    tokens = {}
    for value in values:
        user, sep, token = value.rpartition("=")
        tokens[token] = user if sep else DEFAULT_USER
    return tokens


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.hubserver",
        description="A local stand-in for the Hugging Face Hub (Xet and LFS transfers).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--storage", required=True, help="directory for repos and objects")
    parser.add_argument("--token", action="append", required=True,
                        help="a valid token, TOKEN or USER=TOKEN; repeatable")
    parser.add_argument("--lfs-threshold", type=int, default=DEFAULT_LFS_THRESHOLD)
    parser.add_argument("--xet", action=argparse.BooleanOptionalAction, default=True,
                        help="offer the Xet transport (default); --no-xet: LFS only")
    parser.add_argument("--allow-anonymous-read", action="store_true",
                        help="serve public repos without a token, as the Hub does")
    parser.add_argument("--verbose", action="store_true", help="log request lines (no headers)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(message)s")
    server = HubServer(args.storage, _parse_tokens(args.token), host=args.host, port=args.port,
                       lfs_threshold=args.lfs_threshold, xet=args.xet,
                       allow_anonymous_read=args.allow_anonymous_read)
    server.start()
    print(f"Hub test server listening on {server.url}", flush=True)
    stop = threading.Event()
    # Explicit SIGINT handler too: shells start background jobs with SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
