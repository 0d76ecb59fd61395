"""A 1 GiB video migrated by the real CLI process between the two local servers: memory
stays flat (the download streams into the upload), and both downloads hash the same.

Run with `pytest -m slow tests/test_migrate_big.py -s` (prints the figures).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import pytest

from geti_bulk.server import Geti3Config, LocalGeti, LocalGeti3, ServerConfig
from geti_bulk.server.seed import generate_pat
from tests.test_big_file import make_big_mp4, peak_kib

SIZE = 1024**3


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_a_one_gib_video_migrates_with_flat_memory(tmp_path):
    token = generate_pat()
    data = tmp_path / "videos"
    data.mkdir()
    await asyncio.to_thread(make_big_mp4, data / "big.mp4", SIZE)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GETI_")},
           "GETI_TOKEN": token, "GETI_FROM_TOKEN": token}
    g2 = LocalGeti(ServerConfig(data_dir=tmp_path / "g2", token=token, seed=7))
    g3 = LocalGeti3(Geti3Config(data_dir=tmp_path / "g3", seed=5))
    async with g2:
        await g3.start()
        try:
            seed = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "geti_bulk.cli", "upload", str(data), "--host",
                g2.base_url, "--project", "Vehicle detection", "--labels", "none",
                "--no-journal", "--progress", "none", "--report", str(tmp_path / "u.jsonl"),
                env=env)
            assert await seed.wait() == 0
            (data / "big.mp4").unlink()
            args = [sys.executable, "-m", "geti_bulk.cli", "migrate", "--from", g2.base_url,
                    "--from-project", "Vehicle detection", "--to", g3.base_url,
                    "--to-ca-bundle", str(g3.cert_path), "--create-project", "Big",
                    "--journal", str(tmp_path / "m.sqlite"), "--progress", "none"]
            t0 = time.monotonic()
            mig = await asyncio.create_subprocess_exec(*args, env=env)
            peak = 0
            while mig.returncode is None:           # ends with the process
                peak = max(peak, peak_kib(mig.pid))
                try:
                    await asyncio.wait_for(mig.wait(), 0.05)
                except TimeoutError:
                    pass
            elapsed = time.monotonic() - t0
            assert mig.returncode == 0
            check = await asyncio.create_subprocess_exec(
                *args, "--verify", "--sha256", "--report", str(tmp_path / "v.jsonl"), env=env,
                stdout=asyncio.subprocess.PIPE)
            out, _ = await check.communicate()
            assert check.returncode == 0, out.decode()
            assert "1 on the target once and right" in out.decode()
            print(f"\nmigrate peak RSS {peak / 1024:.1f} MiB moving a {SIZE / 1024**3:.0f} GiB "
                  f"video; {SIZE / elapsed / 1e6:.0f} MB/s including start-up")
            assert 0 < peak < 200 * 1024
        finally:
            await g3.stop()
