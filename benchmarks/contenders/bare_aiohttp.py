"""Contender 5, the ceiling: a bare aiohttp uploader with nothing but the upload.

N workers over one ``ClientSession``, the same concurrency as geti-bulk's default (8);
the multipart body is written by hand with an exact Content-Length and streamed in
1 MiB reads. The reads are plain blocking ``read()`` calls on the event loop, the
cheapest possible from a warm page cache (and wrong for a slow disk). No retries, no
journal, no display, no label handling, no checks before sending.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import ssl
import sys
from collections.abc import AsyncIterator

import aiohttp
from _common import finish, list_files, parse_args, token

CHUNK = 1 << 20


def body(path: str, boundary: str, size: int) -> tuple[AsyncIterator[bytes], int]:
    name = os.path.basename(path).replace('"', "%22")
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"'
            "\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def chunks() -> AsyncIterator[bytes]:
        yield head
        with open(path, "rb") as fh:
            while data := fh.read(CHUNK):
                yield data
        yield tail

    return chunks(), len(head) + size + len(tail)


async def upload_all(url: str, files: list[str], concurrency: int) -> tuple[int, int]:
    cafile = os.environ.get("SSL_CERT_FILE")
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=context if context else True)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    api_key = token()
    queue = iter(files)
    counts = [0, 0]

    async def worker(session: aiohttp.ClientSession) -> None:
        for path in queue:
            boundary = secrets.token_hex(16)
            data, length = body(path, boundary, os.path.getsize(path))
            headers = {"x-api-key": api_key, "Content-Length": str(length),
                       "Content-Type": f"multipart/form-data; boundary={boundary}"}
            try:
                async with session.post(url, data=data, headers=headers) as resp:
                    await resp.read()
                    ok = 200 <= resp.status < 300
                    if not ok:
                        print(f"{os.path.basename(path)}: {resp.status}", file=sys.stderr)
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                print(f"{os.path.basename(path)}: {e!r}", file=sys.stderr)
                ok = False
            counts[0 if ok else 1] += 1

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return counts[0], counts[1]


def main() -> int:
    args = parse_args(__doc__ or "", concurrency=8)
    uploaded, failed = asyncio.run(
        upload_all(args.url, list_files(args.folder, args.limit), args.concurrency))
    return finish(uploaded, failed)


if __name__ == "__main__":
    sys.exit(main())
