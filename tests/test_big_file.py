"""A 2 GiB file through the real uploader process: its memory stays flat.

Run with `pytest -m slow tests/test_big_file.py -s` (prints the figures).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import pytest

from geti_bulk.server.samples import mp4_bytes

SIZE = 2 * 1024**3


def make_big_mp4(path: Path, size: int) -> str:
    header = mp4_bytes(filler=0)[:-8]
    mdat = size - len(header)
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with path.open("wb") as f:
        head = header + mdat.to_bytes(4, "big") + b"mdat"
        f.write(head)
        digest.update(head)
        left = size - len(head)
        while left:
            chunk = block[: min(len(block), left)]
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def peak_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_two_gib_file_uploads_with_flat_memory(tmp_path):
    from geti_bulk.server.seed import generate_pat

    data = tmp_path / "videos"
    data.mkdir()
    digest = await asyncio.to_thread(make_big_mp4, data / "big.mp4", SIZE)
    token = generate_pat()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GETI_")}, "GETI_TOKEN": token}
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "geti_bulk.cli", "serve", "--data-dir", str(tmp_path / "srv"),
        "--discard", env=env, stdout=asyncio.subprocess.PIPE)
    try:
        assert server.stdout is not None
        info = json.loads(await server.stdout.readline())
        t0 = time.monotonic()
        up = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "geti_bulk.cli", "upload", str(data), "--host", info["base_url"],
            "--project", "Vehicle detection", "--progress", "none", "--no-journal",
            "--report", str(tmp_path / "r.jsonl"), env=env)
        peak = 0
        while up.returncode is None:
            peak = max(peak, peak_kib(up.pid))
            try:
                await asyncio.wait_for(up.wait(), 0.05)
            except TimeoutError:
                pass
        elapsed = time.monotonic() - t0
        assert up.returncode == 0
        import aiohttp
        async with aiohttp.ClientSession() as s, s.get(
                f"{info['base_url']}/_admin/media",
                headers={"x-admin-token": info["admin_token"]}) as r:
            [media] = (await r.json())["media"]
        assert media["sha256"] == digest and media["size"] == SIZE
        print(f"\nuploader peak RSS {peak / 1024:.1f} MiB while sending a {SIZE / 1024**3:.0f} GiB "
              f"file; {SIZE / elapsed / 1e6:.0f} MB/s including start-up")
        assert 0 < peak < 200 * 1024
    finally:
        server.terminate()
        await server.wait()
