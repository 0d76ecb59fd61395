"""Contender 1: the upload loop Intel's REST tutorial teaches.

One ``requests.post(url, headers=..., files={"file": open(path, "rb")})`` per file,
sequential, no ``Session``: every file pays a new TCP connection and, over HTTPS, a new
TLS context (the CA bundle is loaded again) and handshake. ``requests`` builds the whole
multipart body in memory. The tutorial has no error handling at all (a connection reset
would end the loop with a traceback); here a failed file is counted and the loop goes on,
which is the kindest reading of it.
"""

from __future__ import annotations

import os
import sys

import requests
from _common import finish, list_files, parse_args, token


def main() -> int:
    args = parse_args(__doc__ or "")
    headers = {"x-api-key": token()}
    uploaded = failed = 0
    for path in list_files(args.folder, args.limit):
        try:
            response = requests.post(args.url, headers=headers,
                                     files={"file": open(path, "rb")})  # noqa: SIM115 (as taught)
        except requests.RequestException as e:
            print(f"{os.path.basename(path)}: {e}", file=sys.stderr)
            failed += 1
            continue
        if response.ok:
            uploaded += 1
        else:
            print(f"{os.path.basename(path)}: {response.status_code}", file=sys.stderr)
            failed += 1
    return finish(uploaded, failed)


if __name__ == "__main__":
    sys.exit(main())
