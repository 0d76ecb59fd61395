"""Security: the token never leaks, redirects never carry it, TLS is verified, and the
local server is safe to run. The real CLI (as a subprocess) and the real uploader against
real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from geti_bulk.config import UploadConfig
from geti_bulk.geti.client import GetiClient, Secret
from geti_bulk.sampledata import image_bytes, make_labelled_tree
from geti_bulk.server import ServerConfig
from geti_bulk.server.seed import generate_pat
from tests.conftest import make_cfg, sha256, stored_by_sha, upload

GETI_BULK = str(Path(sys.executable).with_name("geti-bulk"))


def secret_parts(token: str) -> list[str]:
    """The token and its secret middle: neither may show anywhere."""
    return [token, token.split("_")[2]]


def assert_absent(token: str, where: str, blob: bytes | str) -> None:
    data = blob.encode("utf-8", "surrogateescape") if isinstance(blob, str) else blob
    for part in secret_parts(token):
        assert part.encode() not in data, f"the token leaked into {where}"


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GETI")}
    env.update(XDG_STATE_HOME=str(tmp_path / "state"), NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost", COLUMNS="100", **extra)
    return env


async def cli(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    """`geti-bulk ARGS` as a subprocess; the in-process server keeps serving meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        GETI_BULK, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def tiny_server(handler: Handler) -> AsyncIterator[str]:
    """A bare aiohttp server on 127.0.0.1 answering every path with `handler`."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


# --- the token never leaks ---------------------------------------------------------------

def hostile_data(root: Path) -> None:
    make_labelled_tree(root, ["cat", "dog"], 24, size=(64, 48))
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "cat" / "text.jpg").write_bytes(b"not an image")
    raw = image_bytes(300, 200, seed=9)
    (root / "dog" / "cut.jpg").write_bytes(raw[: len(raw) // 3])     # server 415
    (root / "dog" / "notes.txt").write_text("x")


async def test_token_never_in_logs_reports_json_or_journal(server, token, tmp_path):
    data = tmp_path / "data"
    hostile_data(data)
    token_file = tmp_path / "token.env"
    token_file.write_text(f"GETI_TOKEN={token}\n")
    server.set_faults(spec="503=0.1,stored500=0.1,reset=0.05,429=0.05,502=0.05")
    env = cli_env(tmp_path)
    common = ["upload", str(data), "--host", server.base_url, "--project", "Pets classification",
              "--max-attempts", "3"]
    outputs: list[tuple[str, str]] = []

    code, out, err = await cli(*common, "--token-file", str(token_file), "-v", "--progress",
                               "plain", "--report", str(tmp_path / "r1.jsonl"), env=env)
    assert code == 1, err                          # bad files fail; the run completes
    assert "text.jpg" in out and "retry" in out.lower()
    outputs += [("plain stdout", out), ("plain stderr", err)]

    code, out, err = await cli(*common, "--json", "--reupload-changed", "--journal",
                               str(tmp_path / "j2.sqlite"), env={**env, "GETI_TOKEN": token})
    assert code == 1, err
    assert all(json.loads(line) for line in out.splitlines())
    outputs += [("json stdout", out), ("json stderr", err)]

    wrong = generate_pat()
    wrong_file = tmp_path / "wrong.token"
    wrong_file.write_text(wrong + "\n")
    code, out, err = await cli(*common, "--token-file", str(wrong_file), "-v", "--progress",
                               "plain", "--journal", str(tmp_path / "j3.sqlite"), env=env)
    assert code == 3 and "401" in err
    for where, text in [("wrong-token stdout", out), ("wrong-token stderr", err)]:
        assert_absent(wrong, where, text)
    outputs += [("wrong-token stdout", out), ("wrong-token stderr", err)]

    for where, text in outputs:
        assert_absent(token, where, text)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.parent != data
             and data not in p.parents and p not in (token_file, wrong_file)]
    names = {p.name for p in files}
    assert {"r1.jsonl", "j2.sqlite"} <= names     # the wrong-token run stops before its journal
    assert any(p.suffix == ".sqlite" and "state" in p.parts for p in files), "default journal"
    for p in files:
        assert_absent(token, str(p), p.read_bytes())
        assert_absent(wrong, str(p), p.read_bytes())


async def test_token_flag_warns_about_the_process_list(server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 2, size=(64, 48))
    code, out, err = await cli("upload", str(data), "--host", server.base_url, "--project",
                               "Pets classification", "--token", token, "--progress", "plain",
                               env=cli_env(tmp_path))
    assert code == 0, err
    assert "warning: --token is visible to other users in the process list" in err
    assert_absent(token, "stdout", out)
    assert_absent(token, "stderr", err)
    assert server.store.count() == 2


async def test_reprs_and_messages_hide_the_token(server, token, tmp_path):
    secret = Secret(token)
    cfg = make_cfg(server, token, tmp_path, (tmp_path,))
    assert isinstance(cfg, UploadConfig)
    async with aiohttp.ClientSession() as session:
        client = GetiClient(session, server.base_url, secret)
        shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", repr(cfg), str(cfg),
                 repr(client), repr([secret]), repr({"t": secret}),
                 repr(ServerConfig(data_dir=tmp_path, token=token))]
    for text in shown:
        assert_absent(token, text, text)
    assert secret.get() == token


async def test_a_server_echoing_the_token_in_an_error_does_not_leak_it(tmp_path):
    """A proxy or debug page may echo request headers in its error body; the message the
    user sees (and the report, and the JSON stream) must still not carry the token."""
    token = generate_pat()

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(
            {"error_code": "unauthorized",
             "message": f"bad key {request.headers.get('x-api-key')} "
                        f"(auth: {request.headers.get('Authorization')})"}, status=401)

    async with tiny_server(echo) as url:
        cfg = UploadConfig(host=url, project="p", token=Secret(token), sources=(tmp_path,),
                           journal=tmp_path / "j.sqlite", report=tmp_path / "r.jsonl")
        result, rec = await upload(cfg)
    assert result.exit_code == 3 and "401" in (result.fatal or "")
    assert_absent(token, "the fatal message", result.fatal or "")
    assert_absent(token, "the events", repr(rec.events))


# --- redirects never carry the token ---------------------------------------------------------

class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        await request.read()
        return web.json_response({"organizationId": "x" * 24})


async def test_redirect_to_another_host_is_fatal_and_never_followed(token, tmp_path):
    elsewhere = Recorder()
    async with tiny_server(elsewhere.handle) as b_url:
        async def redirect(request: web.Request) -> web.Response:
            return web.Response(status=302, headers={"Location": f"{b_url}{request.path_qs}"})

        async with tiny_server(redirect) as a_url:
            data = tmp_path / "data"
            make_labelled_tree(data, ["cat"], 2, size=(64, 48))
            cfg = UploadConfig(host=a_url, project="Pets classification", token=Secret(token),
                               sources=(data,), journal=tmp_path / "j.sqlite",
                               report=tmp_path / "r.jsonl")
            result, _ = await upload(cfg)
    assert result.exit_code == 3
    assert "redirected" in (result.fatal or "") and b_url in (result.fatal or "")
    assert "--host" in (result.fatal or "")
    assert elsewhere.requests == [], "the second host must never see a request"


async def test_upload_redirected_by_a_proxy_is_fatal_and_never_followed(server, token, tmp_path):
    """Discovery goes through; only the media POST answers 307 (which keeps the body and,
    if followed, the headers) towards another host."""
    elsewhere = Recorder()
    async with tiny_server(elsewhere.handle) as b_url, aiohttp.ClientSession() as upstream:
        async def proxy(request: web.Request) -> web.Response:
            if request.method == "POST" and "/media/" in request.path:
                return web.Response(status=307, headers={"Location": f"{b_url}{request.path_qs}"})
            keep = {k: v for k, v in request.headers.items()
                    if k.lower() not in ("host", "content-length", "transfer-encoding")}
            async with upstream.request(request.method, server.base_url + request.path_qs,
                                        headers=keep, data=await request.read(),
                                        allow_redirects=False) as r:
                return web.Response(status=r.status, body=await r.read(),
                                    content_type=r.content_type)

        async with tiny_server(proxy) as a_url:
            data = tmp_path / "data"
            make_labelled_tree(data, ["cat"], 3, size=(64, 48))
            cfg = UploadConfig(host=a_url, project="Pets classification", token=Secret(token),
                               sources=(data,), journal=tmp_path / "j.sqlite",
                               report=tmp_path / "r.jsonl", concurrency=1)
            result, _ = await upload(cfg)
    assert result.exit_code == 3, result
    assert "redirected an upload" in (result.fatal or "") and b_url in (result.fatal or "")
    assert elsewhere.requests == []
    assert server.store.count() == 0


# --- TLS --------------------------------------------------------------------------------------

async def test_tls_with_ca_bundle_uploads(tls_server, token, tmp_path):
    srv, ca_file = tls_server
    assert srv.base_url.startswith("https://127.0.0.1:")
    data = tmp_path / "data"
    paths = make_labelled_tree(data, ["cat", "dog"], 4, size=(64, 48))
    result, _ = await upload(make_cfg(srv, token, tmp_path, (data,), ca_bundle=str(ca_file)))
    assert (result.uploaded, result.exit_code) == (4, 0)
    assert set(stored_by_sha(srv)) == {sha256(p) for p in paths}


async def test_tls_cli_refuses_unknown_ca_and_insecure_warns_once(tls_server, token, tmp_path):
    srv, ca_file = tls_server
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 3, size=(64, 48))
    env = cli_env(tmp_path, GETI_TOKEN=token)
    common = ["upload", str(data), "--host", srv.base_url, "--project", "Pets classification",
              "--progress", "plain"]

    code, out, err = await cli(*common, "--journal", str(tmp_path / "j1.sqlite"), env=env)
    assert code == 3, err
    assert "TLS verification failed" in err and "--ca-bundle" in err
    assert srv.store.count() == 0 and srv.state.requests == 0

    code, out, err = await cli(*common, "--insecure", "--journal", str(tmp_path / "j2.sqlite"),
                               env=env)
    assert code == 0, err
    warnings = [ln for ln in err.splitlines() if "warning" in ln.lower()]
    assert len(warnings) == 1 and "TLS certificate verification is off" in warnings[0]
    assert srv.store.count() == 3

    code, out, err = await cli(*common, "--ca-bundle", str(ca_file), "--journal",
                               str(tmp_path / "j3.sqlite"), env=env)
    assert code == 0, err
    assert "warning" not in err.lower()
    assert srv.store.count() == 6
    for text in (out, err):
        assert_absent(token, "TLS run output", text)


# --- the local server is safe to run ------------------------------------------------------

def _non_loopback_address() -> str | None:
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))      # no packet is sent: picks the outgoing address
        addr: str = s.getsockname()[0]
        return None if addr.startswith("127.") else addr
    return None


async def test_server_binds_loopback_by_default(server):
    from geti_bulk.server.cli import _parser

    assert ServerConfig(data_dir=Path("x"), token="t").host == "127.0.0.1"
    assert _parser().parse_args(["--data-dir", "x"]).host == "127.0.0.1"
    assert server.base_url.startswith("http://127.0.0.1:")
    addr = _non_loopback_address()
    if addr is None:
        pytest.skip("this host has no non-loopback address to try")
    port = int(server.base_url.rsplit(":", 1)[1])
    with pytest.raises(OSError):
        await asyncio.wait_for(asyncio.open_connection(addr, port), 5)


async def test_admin_endpoints_refuse_a_geti_token(server, token):
    before = dict(server.state.faults.counts)
    attempts = [{"x-api-key": token}, {"Authorization": f"Bearer {token}"},
                {"x-admin-token": token}, {"x-admin-token": ""}, {}]
    async with aiohttp.ClientSession() as s:
        for headers in attempts:
            for method, path, body in [("GET", "/_admin/stats", None),
                                       ("GET", "/_admin/media", None),
                                       ("POST", "/_admin/faults", {"spec": "503=1.0"})]:
                async with s.request(method, server.base_url + path, json=body,
                                     headers={**headers, "x-geti-csrf-protection": "1"}) as r:
                    assert r.status == 403, (method, path, headers)
                    text = await r.text()
                    assert_absent(token, "the admin refusal", text)
                    assert server.info["admin_token"] not in text
    # the faults were not changed: an upload still goes through
    assert server.state.faults.next_fault() is None and server.state.faults.counts == before
