"""TLS with a self-signed CA, and ``serve_main`` as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp
import trustme

from geti_bulk.server.seed import generate_pat

from .conftest import MakeGeti

SERVE = "from geti_bulk.server import serve_main; import sys; sys.exit(serve_main(sys.argv[1:]))"


async def test_tls_self_signed(make_geti: MakeGeti, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    api = await make_geti(tls_cert=cert_file, tls_key=key_file)
    assert api.server.base_url.startswith("https://127.0.0.1:")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        url = f"{api.server.base_url}{api.ws_path}/projects"
        async with session.get(url, headers={"x-api-key": api.token}) as resp:
            assert resp.status == 200
            assert (await resp.json())["project_counts"] == 9
    # and a client that does not trust the CA is refused
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(f"{api.server.base_url}/api/v1/product_info"):
                raise AssertionError("untrusted certificate accepted")
        except aiohttp.ClientConnectorCertificateError:
            pass


def _start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SERVE, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
    )


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return out, err


async def test_serve_main_generates_token_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "GETI_TOKEN"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, "--data-dir", str(data_dir), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    info = json.loads(line)
    token_file = Path(info["token_file"])
    token = token_file.read_text().strip()
    assert token.startswith("geti_pat_") and len(token.split("_")) == 4
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token not in line
    assert info["base_url"].startswith("http://127.0.0.1:")
    assert {"organization_id", "workspace_id", "workspace_name", "admin_token", "data_dir",
            "projects"} <= set(info)
    assert {"id", "name", "task_type", "datasets", "labels"} <= set(info["projects"][0])
    async with aiohttp.ClientSession() as session:
        url = f"{info['base_url']}/api/v1/organizations/{info['organization_id']}/workspaces"
        async with session.get(url, headers={"x-api-key": token}) as resp:
            assert resp.status == 200
        async with session.get(f"{info['base_url']}/_admin/stats",
                               headers={"x-admin-token": info["admin_token"]}) as resp:
            assert resp.status == 200
    out, _ = _stop(proc)
    assert out == ""  # exactly one line was printed
    # a restart on the same data keeps the token: a client waiting out the restart as an
    # outage goes on with the token it has, as with a real PAT
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, "--data-dir", str(data_dir), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    again = json.loads(proc.stdout.readline())
    assert token_file.read_text().strip() == token
    async with aiohttp.ClientSession() as session:
        url = f"{again['base_url']}/api/v1/organizations/{again['organization_id']}/workspaces"
        async with session.get(url, headers={"x-api-key": token}) as resp:
            assert resp.status == 200
    _stop(proc)


async def test_serve_main_token_flag_warns_and_never_prints_token(tmp_path: Path) -> None:
    token = generate_pat()
    proc = _start(["--data-dir", str(tmp_path / "d"), "--token", token, "--seed", "5"])
    assert proc.stdout is not None
    line = proc.stdout.readline()
    info = json.loads(line)
    assert info["token_file"] is None and token not in line
    _, err = _stop(proc)
    assert "process list" in err and token not in err


async def test_serve_main_token_from_env(tmp_path: Path) -> None:
    token = generate_pat()
    proc = _start(["--data-dir", str(tmp_path / "d")], env={"GETI_TOKEN": token})
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    async with aiohttp.ClientSession() as session:
        url = f"{info['base_url']}/api/v1/organizations/{info['organization_id']}/workspaces"
        async with session.get(url, headers={"x-api-key": token}) as resp:
            assert resp.status == 200
    _stop(proc)
    assert not (tmp_path / "d" / "token").exists()


async def test_seed_file(make_geti: MakeGeti, tmp_path: Path) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps({"projects": [
        {"name": "Mine", "task_type": "classification", "labels": ["a", "b"],
         "datasets": [{"name": "Train", "use_for_training": True}, {"name": "Extra"}]},
        {"name": "Boxes", "task_type": "detection", "labels": ["box"]},
    ]}))
    api = await make_geti(seed_file=seed_file)
    assert set(api.projects) == {"Mine", "Boxes"}
    mine = api.project("Mine")
    assert [d["name"] for d in mine["datasets"]] == ["Train", "Extra"]
    assert [d["use_for_training"] for d in mine["datasets"]] == [True, False]
    assert [lab["name"] for lab in api.project("Boxes")["labels"]] == ["box", "No object"]


def test_empty_token_is_refused(tmp_path: Path) -> None:
    import pytest

    from geti_bulk.server import LocalGeti, ServerConfig

    with pytest.raises(ValueError, match="non-empty token"):
        LocalGeti(ServerConfig(data_dir=tmp_path, token="  "))
    empty = tmp_path / "empty"
    empty.write_text("")
    proc = _start(["--data-dir", str(tmp_path / "d"), "--token-file", str(empty)])
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and "non-empty token" in err
