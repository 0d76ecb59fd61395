"""``geti-bulk serve``: run the local Geti server until SIGINT/SIGTERM.

Prints exactly one JSON line (``LocalGeti.info``) on stdout once listening; the token
itself is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from . import quietlog
from .config import ServerConfig
from .geti3.cli import serve3_main
from .overload import OVERLOAD_MODES
from .seed import generate_pat
from .server import LocalGeti

DIALECTS = ("geti2", "geti3")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="geti-bulk serve",
        description="Run a local Geti 2.x-compatible server (for rehearsals, tests and "
                    "benchmarks). Prints one JSON line (URL, ids, admin token; never the token) "
                    "then serves until Ctrl-C or SIGTERM. Token: --token-file, GETI_TOKEN, or "
                    "DATA_DIR/token (generated on the first start, kept across restarts).",
    )
    p.add_argument("--dialect", choices=DIALECTS, default="geti2",
                   help="geti2 (default: this server) or geti3 (a Geti 3 server, HTTPS, "
                        "no token; see --dialect geti3 --help)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: loopback only)")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--data-dir", type=Path, required=True,
                   help="where media blobs and the SQLite metadata live")
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token", help="the valid PAT (visible in the process list!)")
    token.add_argument("--token-file", type=Path, help="file holding the valid PAT")
    p.add_argument("--admin-token", help="token for /_admin/* (generated if absent)")
    p.add_argument("--faults", default="",
                   help="kind=probability list applied to uploads, e.g. "
                        "503=0.05,reset=0.02,stored500=0.02. Kinds: 502 503 504 429 (gateway, "
                        "plain text, no Retry-After), 429ra 503ra (with Retry-After: 1), reset "
                        "(connection cut mid-body), stored500 (stored, then 500), slow, crash (the "
                        "upload service dies with every upload in flight; see --restart-ms)")
    p.add_argument("--annotation-faults", default="",
                   help="kind=probability list applied to annotation POSTs (images and video "
                        "frames), same kinds as --faults but crash; stored500 stores the scene, "
                        "then answers 500")
    p.add_argument("--download-faults", default="",
                   help="kind=probability list applied to media downloads (display/full, "
                        "display/stream): 502/503/504/429 kinds, slow, reset (half the bytes, "
                        "then the connection drops)")
    p.add_argument("--latency-ms", type=int, default=0,
                   help="delay added before answering every API request")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the ids of the seeded projects and the fault generator")
    p.add_argument("--max-inflight", type=int, default=0,
                   help="overload mode: the upload service holds at most N uploads at once "
                        "(0: no limit); see --overload")
    p.add_argument("--overload", choices=OVERLOAD_MODES, default="oom",
                   help="what one upload more than --max-inflight does: oom (default; like "
                        "an OOM-killed Geti pod, every upload in flight gets a 503 and the "
                        "service is down for --restart-ms) or refuse (that upload alone gets "
                        "a 503)")
    p.add_argument("--restart-ms", type=int, default=2000,
                   help="after an OOM kill or a crash fault: how long the upload service "
                        "stays down (default 2000)")
    p.add_argument("--workers", type=int, default=0,
                   help="uploads processed at once; the others wait, still held (0: no limit)")
    p.add_argument("--service-ms", type=int, default=0,
                   help="simulated processing time of each upload, holding a worker")
    p.add_argument("--decode-ns-per-pixel", type=float, default=0.0,
                   help="more processing time per image pixel, holding a worker, as a "
                        "decoder's cost grows with the image (e.g. 10: an 8K image takes "
                        "0.33 s more, a 640x480 one 3 ms)")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate: serve HTTPS")
    p.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    p.add_argument("--seed-file", type=Path,
                   help="JSON file describing the projects to seed instead of the defaults")
    p.add_argument("--discard", action="store_true", help="hash bytes, do not keep them")
    p.add_argument("--disk-full", action="store_true", help="every upload answers 507")
    p.add_argument("--max-upload-bytes", type=int, default=int(4.7 * 1024**3),
                   help="413 above this size (default: Geti's 4.7 GiB)")
    p.add_argument("--no-decode", action="store_true", help="check image headers only")
    p.add_argument("--slow-ms", type=int, default=2000, help="delay of the 'slow' fault")
    return p


def _resolve_token(args: argparse.Namespace, data_dir: Path) -> tuple[str, Path | None]:
    if args.token:
        print(
            "warning: --token is visible in the process list; prefer --token-file or GETI_TOKEN",
            file=sys.stderr,
        )
        return args.token.strip(), None
    if args.token_file:
        return args.token_file.read_text(encoding="utf-8").strip(), args.token_file.resolve()
    if os.environ.get("GETI_TOKEN"):
        return os.environ["GETI_TOKEN"].strip(), None
    path = data_dir / "token"
    if path.is_file():   # a restart on the same data keeps its token, as a real PAT stays valid
        kept = path.read_text(encoding="utf-8").strip()
        if kept:
            return kept, path.resolve()
    token = generate_pat()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    os.chmod(path, 0o600)
    return token, path.resolve()


def _dialect(argv: list[str] | None) -> tuple[str, list[str]]:
    pre = argparse.ArgumentParser(prog="geti-bulk serve", add_help=False)
    pre.add_argument("--dialect", choices=DIALECTS, default="geti2")
    known, rest = pre.parse_known_args(argv)
    return str(known.dialect), rest


def serve_main(argv: list[str] | None = None) -> int:
    """Entry point of ``geti-bulk serve``; returns the exit code."""
    dialect, rest = _dialect(argv)
    if dialect == "geti3":
        return serve3_main(rest)
    args = _parser().parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        print("error: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    data_dir: Path = args.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        token, token_file = _resolve_token(args, data_dir)
        config = ServerConfig(
            data_dir=data_dir,
            token=token,
            host=args.host,
            port=args.port,
            admin_token=args.admin_token,
            faults=args.faults,
            annotation_faults=args.annotation_faults,
            download_faults=args.download_faults,
            latency_ms=args.latency_ms,
            seed=args.seed,
            max_inflight=args.max_inflight,
            overload=args.overload,
            restart_ms=args.restart_ms,
            workers=args.workers,
            service_ms=args.service_ms,
            decode_ns_per_pixel=args.decode_ns_per_pixel,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            seed_file=args.seed_file,
            discard=args.discard,
            max_upload_bytes=args.max_upload_bytes,
            disk_full=args.disk_full,
            decode_images=not args.no_decode,
            slow_ms=args.slow_ms,
        )
        server = LocalGeti(config)
    except (OSError, ValueError) as exc:
        print(f"geti-bulk serve: error: {exc}", file=sys.stderr)
        return 2
    server.token_file = str(token_file) if token_file else None
    try:
        asyncio.run(_serve(server))
    except OSError as exc:
        print(f"geti-bulk serve: error: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(server: LocalGeti) -> None:
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
