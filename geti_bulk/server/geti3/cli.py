"""``geti-bulk serve --dialect geti3``: run the local Geti 3 until SIGINT/SIGTERM, after
printing one JSON line (``LocalGeti3.info``: URL, projects, admin token, cert path)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from .. import quietlog
from .config import Geti3Config
from .faults import KINDS
from .server import LocalGeti3


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="geti-bulk serve --dialect geti3",
        description="Run a local Geti 3-compatible server (GETI3_API.md): HTTPS with a "
                    "self-signed certificate written to DATA_DIR (unless --tls-cert/--tls-key "
                    "or --plain-http), no authentication. Prints one JSON line, then serves "
                    "until Ctrl-C or SIGTERM.")
    p.add_argument("--dialect", choices=("geti2", "geti3"), default="geti3",
                   help=argparse.SUPPRESS)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=0,
                   help="0 picks a free port (real Geti 3 listens on 7860)")
    p.add_argument("--data-dir", type=Path, required=True,
                   help="where geti.db, the media, the uploads and the certificate live")
    p.add_argument("--admin-token", help="token for /_admin/* (generated if absent)")
    p.add_argument("--faults", default="",
                   help=f"kind=probability list applied to media uploads, from-upload and "
                        f"annotation POSTs, e.g. locked=0.05,reset=0.02. Kinds: "
                        f"{', '.join(sorted(KINDS))}")
    p.add_argument("--locked-writers", type=int, default=10,
                   help="writes in flight beyond this many answer 'database is locked' "
                        "(500 after --locked-ms, nothing committed); 0 disables (default 10)")
    p.add_argument("--locked-ms", type=int, default=30000,
                   help="how long a locked write waits before its 500 (default 30000, "
                        "SQLite's 30 s timeout in Geti 3)")
    p.add_argument("--write-ms", type=int, default=0,
                   help="each write's commit holds SQLite's single writer lock this long; "
                        "concurrent writes queue for it, so answers slow before "
                        "--locked-writers is reached (default 0)")
    p.add_argument("--latency-ms", type=int, default=0,
                   help="delay added before answering every API request")
    p.add_argument("--slow-ms", type=int, default=2000, help="delay of the 'slow' fault")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the ids of the seeded projects and the fault generator")
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--plain-http", action="store_true",
                     help="serve plain HTTP (benchmarks; real Geti 3 always serves HTTPS)")
    tls.add_argument("--tls-cert", type=Path, help="PEM certificate to serve instead")
    p.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    p.add_argument("--no-spa", action="store_true",
                   help="answer unknown paths with JSON 404 instead of the UI's index.html")
    return p


def serve3_main(argv: list[str] | None = None) -> int:
    """Entry point of ``geti-bulk serve --dialect geti3``; returns the exit code."""
    args = parser().parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        print("error: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    try:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        server = LocalGeti3(Geti3Config(
            data_dir=args.data_dir, host=args.host, port=args.port,
            admin_token=args.admin_token, faults=args.faults,
            locked_writers=args.locked_writers, locked_ms=args.locked_ms,
            latency_ms=args.latency_ms, write_ms=args.write_ms, slow_ms=args.slow_ms, seed=args.seed,
            plain_http=args.plain_http, tls_cert=args.tls_cert, tls_key=args.tls_key,
            spa=not args.no_spa))
    except (OSError, ValueError) as exc:
        print(f"geti-bulk serve: error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(server))
    except OSError as exc:
        print(f"geti-bulk serve: error: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(server: LocalGeti3) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    quietlog.install(loop)   # a client killed mid-request is one line, not a traceback
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        sys.stdout.write(json.dumps(server.info) + "\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await server.stop()
