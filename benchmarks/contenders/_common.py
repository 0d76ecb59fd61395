"""What every contender script shares: the command line, the file list, the summary.

    python <contender>.py --url UPLOAD_URL [--concurrency N] [--limit N] FOLDER

The token comes from ``GETI_TOKEN``; a TLS CA bundle from ``REQUESTS_CA_BUNDLE`` (the
requests contenders pick it up themselves) or ``SSL_CERT_FILE``. The last stdout line
is a JSON summary ``{"uploaded": n, "failed": m}``; exit 0 when nothing failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def parse_args(description: str, concurrency: int = 1) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--url", required=True, help="…/datasets/{id}/media/images")
    p.add_argument("--concurrency", type=int, default=concurrency)
    p.add_argument("--limit", type=int, default=0, help="only the first N files (sorted)")
    p.add_argument("folder")
    return p.parse_args()


def list_files(folder: str, limit: int = 0) -> list[str]:
    """Every non-hidden file under ``folder``, sorted, optionally the first ``limit``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [os.path.join(dirpath, f) for f in sorted(filenames) if not f.startswith(".")]
    return found[:limit] if limit else found


def finish(uploaded: int, failed: int, **extra: object) -> int:
    print(json.dumps({"uploaded": uploaded, "failed": failed, **extra}), flush=True)
    return 0 if failed == 0 else 1


def token() -> str:
    value = os.environ.get("GETI_TOKEN", "").strip()
    if not value:
        sys.exit("GETI_TOKEN is not set")
    return value
