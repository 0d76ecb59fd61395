"""`geti-bulk migrate` between the two local servers: items/s and peak RSS.

    .venv/bin/python benchmarks/migrate_bench.py [--images 2000] [--concurrency 8]

Starts a local Geti 2 (`geti-bulk serve`) and a local Geti 3 (`serve --dialect geti3
--plain-http`) as subprocesses, seeds the Geti 2 "Vehicle detection" project over its
REST API with N real JPEGs (about 8-12 KB each), each with one or two boxes, then runs
`geti-bulk migrate --create-project` as a subprocess and reads its peak RSS from
`wait4`. Side by side, as the baseline: `geti-bulk upload` of the same N files from disk
(media only, no annotations) into the same Geti 3 server, a fresh project. A migrated item
costs a download, an upload, an annotation GET and an annotation POST; an uploaded file
one upload. All processes share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geti_bulk.sampledata import image_bytes  # noqa: E402


def start_server(args: list[str]) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen([sys.executable, "-m", "geti_bulk.cli", "serve", *args],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, json.loads(line)


async def seed(info: dict[str, Any], token: str, n: int, folder: Path) -> None:
    project = next(p for p in info["projects"] if p["name"] == "Vehicle detection")
    ds = next(d for d in project["datasets"] if d["use_for_training"])
    base = (f"{info['base_url']}/api/v1/organizations/{info['organization_id']}/workspaces/"
            f"{info['workspace_id']}/projects/{project['id']}/datasets/{ds['id']}")
    car = next(lab["id"] for lab in project["labels"] if lab["name"] == "car")
    headers = {"x-api-key": token}
    sem = asyncio.Semaphore(8)

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        data = image_bytes(96, 72, seed=i, noise=0.4)
        (folder / f"img_{i:05d}.jpg").write_bytes(data)
        b = uuid.uuid4().hex
        body = (f'--{b}\r\nContent-Disposition: form-data; name="file"; filename='
                f'"img_{i:05d}.jpg"\r\n\r\n').encode() + data + f"\r\n--{b}--\r\n".encode()
        async with sem:
            async with session.post(f"{base}/media/images", data=body, headers={
                    **headers, "Content-Type": f"multipart/form-data; boundary={b}"}) as r:
                assert r.status == 200, await r.text()
                media_id = (await r.json())["id"]
            anns = [{"labels": [{"id": car}], "shape": {"type": "RECTANGLE", "x": 3 + i % 9,
                                                         "y": 4, "width": 30, "height": 20}}]
            async with session.post(f"{base}/media/images/{media_id}/annotations",
                                    json={"annotations": anns}, headers=headers) as r:
                assert r.status == 200, await r.text()

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, i) for i in range(n)))


def run_measured(args: list[str], env: dict[str, str]) -> tuple[float, float, int, float]:
    """(seconds, peak RSS MiB, exit code, CPU seconds) of one geti-bulk subprocess."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "geti_bulk.cli", *args], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0 and proc.stderr is not None:
        print(proc.stderr.read().decode()[-2000:], file=sys.stderr)
    return elapsed, usage.ru_maxrss / 1024, code, usage.ru_utime + usage.ru_stime


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--big-mib", type=int, default=0,
                   help="instead: migrate one video of this many MiB (memory stays flat)")
    a = p.parse_args()
    if a.big_mib:
        return big(a.big_mib)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        token_file = d / "token"
        from geti_bulk.server.seed import generate_pat

        token = generate_pat()
        token_file.write_text(token)
        g2, info2 = start_server(["--data-dir", str(d / "g2"), "--token-file", str(token_file)])
        g3, info3 = start_server(["--dialect", "geti3", "--data-dir", str(d / "g3"),
                                  "--plain-http"])
        try:
            folder = d / "images"
            folder.mkdir()
            t0 = time.monotonic()
            asyncio.run(seed(info2, token, a.images, folder))
            print(f"seeded {a.images} images with annotations in {time.monotonic() - t0:.1f} s")
            env = {**os.environ, "GETI_FROM_TOKEN": token}
            mig = ["migrate", "--from", info2["base_url"], "--from-project",
                   "Vehicle detection", "--to", info3["base_url"], "--create-project",
                   "Migrated", "--journal", str(d / "m.sqlite"), "--progress", "none",
                   "--concurrency", str(a.concurrency)]
            secs, rss, code, cpu = run_measured(mig, env)
            print(f"migrate: {a.images} items in {secs:.1f} s = {a.images / secs:.0f} items/s, "
                  f"peak RSS {rss:.0f} MiB, client CPU {cpu:.1f} s "
                  f"({cpu / a.images * 1000:.1f} ms/item), exit {code}")
            up = ["upload", str(folder), "--host", info3["base_url"], "--project",
                  "Vehicle detection", "--labels", "none", "--journal", str(d / "u.sqlite"),
                  "--progress", "none", "--concurrency", str(a.concurrency)]
            secs_u, rss_u, code_u, cpu_u = run_measured(up, dict(os.environ))
            print(f"baseline upload (media only, from disk): {a.images} files in "
                  f"{secs_u:.1f} s = {a.images / secs_u:.0f} files/s, peak RSS {rss_u:.0f} MiB, "
                  f"client CPU {cpu_u:.1f} s, exit {code_u}")
            print(f"migrate / upload time ratio: {secs / secs_u:.2f}")
            again, _, code2, _ = run_measured(mig, env)
            print(f"rerun of migrate (nothing to move): {again:.1f} s, exit {code2}")
            return 0 if code == code_u == code2 == 0 else 1
        finally:
            for proc in (g2, g3):
                proc.terminate()
                proc.wait(timeout=30)


def big(mib: int) -> int:
    """One large video: seeded into Geti 2 with `geti-bulk upload`, then migrated; the
    migrate process's peak RSS against the file's size."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_big_file import make_big_mp4  # the upload path's big-file generator

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        from geti_bulk.server.seed import generate_pat

        token = generate_pat()
        (d / "token").write_text(token)
        g2, info2 = start_server(["--data-dir", str(d / "g2"), "--token-file",
                                  str(d / "token")])
        g3, info3 = start_server(["--dialect", "geti3", "--data-dir", str(d / "g3"),
                                  "--plain-http"])
        try:
            folder = d / "big"
            folder.mkdir()
            make_big_mp4(folder / "big.mp4", mib << 20)
            env = {**os.environ, "GETI_TOKEN": token, "GETI_FROM_TOKEN": token}
            _, _, code, _ = run_measured(["upload", str(folder), "--host", info2["base_url"],
                                          "--project", "Vehicle detection", "--labels", "none",
                                          "--no-journal", "--progress", "none"], env)
            assert code == 0, "seeding the big video failed"
            (folder / "big.mp4").unlink()
            secs, rss, code, cpu = run_measured(
                ["migrate", "--from", info2["base_url"], "--from-project", "Vehicle detection",
                 "--to", info3["base_url"], "--create-project", "Big", "--journal",
                 str(d / "m.sqlite"), "--progress", "none"], env)
            print(f"migrate of one {mib} MiB video: {secs:.1f} s = {mib / secs:.0f} MiB/s, "
                  f"peak RSS {rss:.0f} MiB, client CPU {cpu:.1f} s, exit {code}")
            _, _, vcode, _ = run_measured(
                ["migrate", "--from", info2["base_url"], "--from-project", "Vehicle detection",
                 "--to", info3["base_url"], "--create-project", "Big", "--journal",
                 str(d / "m.sqlite"), "--verify", "--sha256", "--report", str(d / "v.jsonl")],
                env)
            print(f"verify --sha256 (both downloads hashed): exit {vcode}")
            return code or vcode
        finally:
            for proc in (g2, g3):
                proc.terminate()
                proc.wait(timeout=60)


if __name__ == "__main__":
    raise SystemExit(main())
