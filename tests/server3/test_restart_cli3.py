"""A restart on the same data dir keeps everything (GETI3_API.md §1: ``geti.db`` plus
files), and ``geti-bulk serve --dialect geti3`` prints its one JSON start line."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

from .conftest import MakeGeti3, jpeg

PETS = "Pets classification"
SERVE = "from geti_bulk.server import serve_main; import sys; sys.exit(serve_main(sys.argv[1:]))"
TUS = {"Tus-Resumable": "1.0.0"}


async def test_restart_keeps_projects_media_annotations_uploads(make_geti3: MakeGeti3,
                                                                tmp_path: Path) -> None:
    data_dir = tmp_path / "kept"
    first = await make_geti3(data_dir=data_dir)
    media = (await first.upload(PETS, jpeg(), "persist.jpg")).json()
    cat = first.label(PETS, "cat")
    await first.annotate(PETS, media["id"], {"annotations": [
        {"labels": [{"id": cat}], "shape": {"type": "full_image"}}], "subset": "validation"})
    created = await first.call("POST", "/api/uploads", headers={**TUS, "Upload-Length": "10"})
    location = created.headers["Location"]
    await first.call("PATCH", location, data=b"12345", headers={
        **TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
    cert = first.server.cert_path
    assert cert is not None
    cert_bytes = cert.read_bytes()
    await first.server.stop()

    second = await make_geti3(data_dir=data_dir)
    assert second.server.info["projects"] == first.server.info["projects"]
    assert second.server.cert_path == cert and cert.read_bytes() == cert_bytes
    listing = (await second.call("GET", second.media_path(PETS))).json()
    assert listing["items"] == [media]
    got = (await second.call("GET", f"{second.media_path(PETS)}/{media['id']}/annotations")).json()
    assert got["annotations"][0]["labels"] == [{"id": cat}] and got["subset"] == "validation"
    head = await second.call("HEAD", location, headers=TUS)
    assert head.headers["Upload-Offset"] == "5"
    binary = await second.call("GET", f"{second.media_path(PETS)}/{media['id']}/binary")
    assert binary.body[:2] == b"\xff\xd8"


def test_cli_start_line_and_sigterm(tmp_path: Path) -> None:
    data_dir = tmp_path / "cli"
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, "--dialect", "geti3", "--data-dir", str(data_dir),
         "--port", "0", "--locked-writers", "3", "--locked-ms", "100", "--seed", "7",
         "--faults", "slow=0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["dialect"] == "geti3" and info["base_url"].startswith("https://127.0.0.1:")
        assert info["cert_path"] == str((data_dir / "cert.pem").resolve())
        assert info["admin_token"] and len(info["projects"]) == 4
        assert all(len(p["id"]) == 36 and p["labels"] for p in info["projects"])
        context = ssl.create_default_context(cafile=info["cert_path"])
        with urllib.request.urlopen(info["base_url"] + "/api/openapi.json", context=context,
                                    timeout=10) as resp:
            assert json.load(resp)["info"]["version"] == "3.2.0"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out == ""  # exactly one line was printed


def test_cli_refuses_bad_faults_and_plain_http_line(tmp_path: Path) -> None:
    bad = subprocess.run(
        [sys.executable, "-c", SERVE, "--dialect", "geti3", "--data-dir", str(tmp_path / "b"),
         "--faults", "502=0.1"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "bad fault" in bad.stderr
