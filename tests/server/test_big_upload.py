"""A 2 GiB upload streamed through a server subprocess: its peak RSS must stay flat.

Run with ``pytest -m slow tests/server/test_big_upload.py -s`` (prints the figures).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest

from geti_bulk.server.samples import mp4_bytes

SERVE = "from geti_bulk.server import serve_main; import sys; sys.exit(serve_main(sys.argv[1:]))"
BODY_BYTES = 2 * 1024**3
CHUNK = 1 << 20


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_two_gib_upload_keeps_server_rss_flat(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if "slow" not in (request.config.option.markexpr or "").replace("not slow", ""):
        pytest.skip("moves 2 GiB: run with -m slow")
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, "--data-dir", str(tmp_path / "data"), "--port", "0"],
        stdout=subprocess.PIPE, text=True, env={k: v for k, v in os.environ.items()
                                                 if k != "GETI_TOKEN"},
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        token = Path(info["token_file"]).read_text().strip()
        project = next(p for p in info["projects"] if p["name"] == "Pets classification")
        path = (f"/api/v1/organizations/{info['organization_id']}/workspaces/"
                f"{info['workspace_id']}/projects/{project['id']}/datasets/"
                f"{project['datasets'][0]['id']}/media/videos")
        baseline = _status_kib(proc.pid, "VmRSS")

        # an mp4 whose mdat box carries the bulk of the 2 GiB
        boundary = uuid.uuid4().hex
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"big.mp4\"\r\nContent-Type: video/mp4\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        header = mp4_bytes(filler=0)[:-8]  # ftyp + moov, without the empty mdat
        mdat_payload = BODY_BYTES - len(head) - len(tail) - len(header) - 8
        file_head = header + (mdat_payload + 8).to_bytes(4, "big") + b"mdat"
        pattern = os.urandom(CHUNK)
        digest = hashlib.sha256(file_head)

        host, port = info["base_url"].removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nx-api-key: {token}\r\n"
             f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
             f"Content-Length: {BODY_BYTES}\r\n\r\n").encode() + head + file_head)
        left = mdat_payload
        while left:
            chunk = pattern[: min(CHUNK, left)]
            digest.update(chunk)
            writer.write(chunk)
            await writer.drain()
            left -= len(chunk)
        writer.write(tail)
        await writer.drain()
        status = await reader.readline()
        headers = b""
        while (line := await reader.readline()) not in (b"\r\n", b""):
            headers += line
        length = int(next(h.split(b":")[1] for h in headers.split(b"\r\n")
                          if h.lower().startswith(b"content-length")))
        body = json.loads(await reader.readexactly(length))
        writer.close()
        assert b" 200 " in status, (status, body)
        peak = _status_kib(proc.pid, "VmHWM")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{info['base_url']}/_admin/media",
                                   headers={"x-admin-token": info["admin_token"]}) as resp:
                media = (await resp.json())["media"]
        assert media[0]["sha256"] == digest.hexdigest()
        assert media[0]["size"] == len(file_head) + mdat_payload
        print(f"\nserver RSS baseline {baseline / 1024:.1f} MiB, peak (VmHWM) "
              f"{peak / 1024:.1f} MiB for a {BODY_BYTES / 1024**3:.0f} GiB upload")
        assert peak - baseline < 100 * 1024, (baseline, peak)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
