"""Contender 3: what the Geti SDK's ``upload_folder`` does (GETI_API.md §6), without the SDK.

A ``ThreadPoolExecutor`` of 5 threads sharing one ``requests.Session``; each file is read
whole into memory and posted with ``files={"file": (name, data)}``. Like the SDK, a 503
is retried once after 1 s and nothing else is retried; unlike the SDK (which raises at
the end of ``executor.map``), failures are counted and reported in the summary.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from _common import finish, list_files, parse_args, token


def main() -> int:
    args = parse_args(__doc__ or "", concurrency=5)
    session = requests.Session()
    session.headers["x-api-key"] = token()

    def upload(path: str) -> bool:
        name = os.path.basename(path)
        with open(path, "rb") as fh:
            data = fh.read()
        try:
            for attempt in (1, 2):
                response = session.post(args.url, files={"file": (name, data)})
                if response.status_code == 503 and attempt == 1:
                    time.sleep(1)
                    continue
                if not response.ok:
                    print(f"{name}: {response.status_code}", file=sys.stderr)
                return response.ok
        except requests.RequestException as e:
            print(f"{name}: {e}", file=sys.stderr)
        return False

    with ThreadPoolExecutor(max_workers=args.concurrency) as executor:
        results = list(executor.map(upload, list_files(args.folder, args.limit)))
    ok = sum(results)
    return finish(ok, len(results) - ok)


if __name__ == "__main__":
    sys.exit(main())
