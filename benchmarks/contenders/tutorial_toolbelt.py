"""Contender 2: the streaming variant people reach for next: requests-toolbelt's
``MultipartEncoder``, sequential, no ``Session`` (as in the tutorial).

The encoder streams the file instead of building the body in memory and gives requests
an exact Content-Length. http.client then sends it in 8 KiB reads. Failed files are
counted and the loop goes on.
"""

from __future__ import annotations

import os
import sys

import requests
from _common import finish, list_files, parse_args, token
from requests_toolbelt import MultipartEncoder


def main() -> int:
    args = parse_args(__doc__ or "")
    api_key = token()
    uploaded = failed = 0
    for path in list_files(args.folder, args.limit):
        name = os.path.basename(path)
        try:
            with open(path, "rb") as fh:
                body = MultipartEncoder(fields={"file": (name, fh, "application/octet-stream")})
                response = requests.post(args.url, data=body, headers={
                    "x-api-key": api_key, "Content-Type": body.content_type})
        except requests.RequestException as e:
            print(f"{name}: {e}", file=sys.stderr)
            failed += 1
            continue
        if response.ok:
            uploaded += 1
        else:
            print(f"{name}: {response.status_code}", file=sys.stderr)
            failed += 1
    return finish(uploaded, failed)


if __name__ == "__main__":
    sys.exit(main())
