"""SIGTERM and SIGHUP stop a run as gracefully as the first Ctrl-C: no new files, the
uploads in flight finish, the summary and the stderr line name the signal, and the exit
code is 128 + its number (143, 129; Ctrl-C stays 130). The rerun completes exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from geti_bulk.sampledata import make_labelled_tree
from geti_bulk.server import LocalGeti, ServerConfig
from tests.conftest import sha256, stored_by_sha


def _cmd(server: LocalGeti, data: Path, tmp_path: Path, report: str) -> list[str]:
    return [sys.executable, "-m", "geti_bulk.cli", "upload", str(data), "--host",
            server.base_url, "--project", "Pets classification", "--journal",
            str(tmp_path / "j.sqlite"), "--report", str(tmp_path / report), "--progress",
            "plain", "--concurrency", "4"]


async def _start(cmd: list[str], token: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GETI_")}
    env["GETI_TOKEN"] = token
    return await asyncio.create_subprocess_exec(
        *cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def _until_uploading(proc: asyncio.subprocess.Process) -> list[str]:
    """Lines up to the first `uploaded` one: the run is in flight."""
    assert proc.stdout is not None
    lines: list[str] = []

    async def read() -> None:
        while raw := await proc.stdout.readline():   # type: ignore[union-attr]
            lines.append(raw.decode())
            if raw.startswith(b"uploaded "):
                return

    await asyncio.wait_for(read(), 60)
    return lines


def _states(journal: Path) -> dict[str, str]:
    with sqlite3.connect(journal) as c:
        return dict(c.execute("SELECT key, state FROM files"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
async def test_sigterm_and_sighup_stop_like_the_first_ctrl_c(tmp_path, token, signum):
    name = signal.Signals(signum).name
    data = tmp_path / "data"
    files = await asyncio.to_thread(make_labelled_tree, data, ["cat", "dog"], 80, size=(48, 40))
    srv = LocalGeti(ServerConfig(data_dir=tmp_path / "srv", token=token, latency_ms=30))
    async with srv:
        proc = await _start(_cmd(srv, data, tmp_path, "r1.jsonl"), token)
        head = await _until_uploading(proc)
        proc.send_signal(signum)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        text = "".join(head) + out.decode()
        assert proc.returncode == 128 + signum, text[-2000:] + err.decode()
        assert f"stopping: interrupted ({name})" in text
        assert f"status:      interrupted by {name}" in text
        assert err.decode().splitlines() == [
            f"geti-bulk: stopped by {name}; rerun the same command to resume"]
        # graceful: every file that was started has its answer, none is left `sending`
        states = _states(tmp_path / "j.sqlite")
        assert states and set(states.values()) == {"uploaded"}
        assert len(states) < len(files)
        proc = await _start(_cmd(srv, data, tmp_path, "r2.jsonl"), token)
        out, err = await asyncio.wait_for(proc.communicate(), 100)
        assert proc.returncode == 0, out.decode()[-2000:] + err.decode()
        by_sha = stored_by_sha(srv)
        assert sorted(len(by_sha.get(sha256(f), [])) for f in files) == [1] * len(files)


async def test_a_second_sigterm_cancels_the_uploads_in_flight(tmp_path, token):
    data = tmp_path / "data"
    files = await asyncio.to_thread(make_labelled_tree, data, ["cat", "dog"], 30, size=(48, 40))
    srv = LocalGeti(ServerConfig(data_dir=tmp_path / "srv", token=token, latency_ms=400))
    async with srv:
        proc = await _start(_cmd(srv, data, tmp_path, "r1.jsonl"), token)
        await _until_uploading(proc)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 143, out.decode()[-2000:] + err.decode()
        assert "Traceback" not in err.decode()
        # cancelled mid-answer (400 ms each): those files stay `sending`, to be asked for
        assert "sending" in set(_states(tmp_path / "j.sqlite").values())
        proc = await _start(_cmd(srv, data, tmp_path, "r2.jsonl"), token)
        out, err = await asyncio.wait_for(proc.communicate(), 100)
        assert proc.returncode == 0, out.decode()[-2000:] + err.decode()
        by_sha = stored_by_sha(srv)
        assert sorted(len(by_sha.get(sha256(f), [])) for f in files) == [1] * len(files)
